//! The lakehouse at warehouse scale: typed sources keep their types end to end (TPC-H's
//! decimals and dates), the 22 TPC-H queries answer as the official answers say, typed
//! schema evolution (widening with `--full`, incompatible types refused with the table left
//! as it was), duplicate keys across Parquet files, and CSV inference of decimals and dates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conveyor::bench::tpch::{QUERIES, answers, compare, write_project};
use conveyor::connectors::sync::{self, SyncContext, SyncOptions, SyncReport};
use conveyor::connectors::{self, Definition};
use conveyor::lakehouse::{Lakehouse, LakehouseConfig, OutputFormat, tpch};
use conveyor::store::Store;
use deltalake::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use deltalake::parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

async fn open(root: &Path) -> (Store, Lakehouse) {
    let store = Store::connect(&format!("sqlite://{}", root.join("c.db").display()))
        .await
        .unwrap();
    let lake = Lakehouse::open(&LakehouseConfig::default(), root).unwrap();
    (store, lake)
}

async fn run(store: &Store, lake: &Lakehouse, def: &Definition, full: bool) -> SyncReport {
    sync::run(
        SyncContext {
            store,
            lake,
            lease: Duration::from_secs(60),
        },
        def,
        SyncOptions {
            full,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn rows(lake: &Lakehouse, query: &str) -> Vec<Value> {
    let out = lake.query(query, None).await.unwrap();
    serde_json::from_str(&out.render(OutputFormat::Json).unwrap()).unwrap()
}

fn defs(root: &Path) -> Vec<Definition> {
    connectors::load_dir(&root.join("connectors"), root).unwrap()
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The official TPC-H data at scale factor 0.01, as DuckDB's `dbgen` writes it (see
/// `tests/fixtures/tpch-sf0.01/SOURCES.md`), synced into a fresh project: every query's
/// answer must equal the official answer.
#[tokio::test]
async fn tpch_keeps_decimals_and_dates_and_answers_all_22_queries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_project(root).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tpch-sf0.01");
    std::fs::create_dir_all(root.join("data")).unwrap();
    copy_tree(&fixtures, &root.join("data"));
    let counts = [
        ("region", 5),
        ("nation", 25),
        ("supplier", 100),
        ("customer", 1500),
        ("part", 2000),
        ("partsupp", 8000),
        ("orders", 15000),
        ("lineitem", 60175),
    ];
    let (store, lake) = open(root).await;
    for def in defs(root) {
        let r = run(&store, &lake, &def, false).await;
        assert!(r.error.is_none(), "{}: {:?}", def.name, r.error);
        let expected = counts.iter().find(|(t, _)| *t == def.name).unwrap().1;
        assert_eq!(r.rows_read, expected, "{}", def.name);
        assert_eq!(r.inserted, expected, "{}", def.name);
    }
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(l_extendedprice) AS price, arrow_typeof(l_shipdate) AS shipped, \
             arrow_typeof(l_linenumber) AS line, arrow_typeof(l_comment) AS comment, \
             count(*) OVER () AS n FROM lineitem LIMIT 1"
        )
        .await,
        vec![json!({
            "price": "Decimal128(15, 2)",
            "shipped": "Date32",
            "line": "Int64",
            "comment": "Utf8View",
            "n": 60175
        })]
    );
    // Bronze keeps the source's types too.
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(o_totalprice) AS t FROM bronze.orders LIMIT 1"
        )
        .await,
        vec![json!({"t": "Decimal128(15, 2)"})]
    );

    let official = answers(0.01).unwrap();
    let mut wrong = Vec::new();
    for (i, q) in QUERIES.iter().enumerate() {
        match lake
            .query_with(q, 1_000_000, Duration::from_secs(300))
            .await
        {
            Ok(out) => {
                if let Err(p) = compare(&out.render(OutputFormat::Csv).unwrap(), official[i]) {
                    wrong.push(format!("Q{:02}: {p}", i + 1));
                }
            }
            Err(e) => wrong.push(format!("Q{:02} failed: {e}", i + 1)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Another implementation reads the same tables with the same types and counts: Python's
    // `deltalake` (delta-rs' Python package over pyarrow), when CONVEYOR_TEST_PYTHON_DELTALAKE
    // names a Python that has it (`.ci/run` installs one).
    match std::env::var("CONVEYOR_TEST_PYTHON_DELTALAKE") {
        Err(_) => eprintln!(
            "skipped: CONVEYOR_TEST_PYTHON_DELTALAKE not set (reading with Python's deltalake)"
        ),
        Ok(python) => {
            let script = "import json, sys\nfrom deltalake import DeltaTable\nout = {}\nfor p in sys.argv[1:]:\n    t = DeltaTable(p).to_pyarrow_table()\n    out[p.rsplit('/', 1)[-1]] = {'rows': t.num_rows, 'types': {f.name: str(f.type) for f in t.schema}}\nprint(json.dumps(out), flush=True)\n# deltalake's runtime threads can abort the interpreter at exit; the answer is out.\nimport os\nos._exit(0)\n";
            let silver = root.join("data/lake/silver");
            let out = std::process::Command::new(python)
                .arg("-c")
                .arg(script)
                .arg(silver.join("lineitem"))
                .arg(silver.join("orders"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", crate::common::show(&out));
            let read: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(read["lineitem"]["rows"], json!(60175));
            assert_eq!(read["orders"]["rows"], json!(15000));
            let types = &read["lineitem"]["types"];
            assert_eq!(
                types["l_extendedprice"],
                json!("decimal128(15, 2)"),
                "{types}"
            );
            assert_eq!(types["l_shipdate"], json!("date32[day]"), "{types}");
            assert_eq!(types["l_orderkey"], json!("int64"), "{types}");
            assert_eq!(
                read["orders"]["types"]["o_totalprice"],
                json!("decimal128(15, 2)")
            );
        }
    }

    // Nothing changed: a second pass reads no file and writes nothing.
    for def in defs(root) {
        let r = run(&store, &lake, &def, false).await;
        assert!(r.error.is_none());
        assert_eq!((r.rows_read, r.inserted, r.updated), (0, 0, 0));
    }
}

/// Data generated in-process (the benchmark's generator) keeps its types through the sync.
#[tokio::test]
async fn generated_tpch_data_syncs_typed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_project(root).unwrap();
    let data = root.join("data");
    let generated = tokio::task::spawn_blocking(move || tpch::generate(&data, 0.001, &|_| {}))
        .await
        .unwrap()
        .unwrap();
    let (store, lake) = open(root).await;
    for def in defs(root)
        .into_iter()
        .filter(|d| d.name == "lineitem" || d.name == "orders")
    {
        let r = run(&store, &lake, &def, false).await;
        assert!(r.error.is_none(), "{}: {:?}", def.name, r.error);
        let rows = generated.iter().find(|g| g.table == def.name).unwrap().rows;
        assert!(rows > 1000);
        assert_eq!(r.inserted, rows);
    }
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(l_tax) AS tax, arrow_typeof(l_receiptdate) AS received, \
             arrow_typeof(l_linenumber) AS line FROM lineitem LIMIT 1"
        )
        .await,
        vec![json!({"tax": "Decimal128(15, 2)", "received": "Date32", "line": "Int32"})]
    );
}

#[tokio::test]
async fn typed_schema_changes_are_widened_with_full_and_refused_when_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::write(
        root.join("connectors/m.toml"),
        "name = \"m\"\nkind = \"files\"\npath = \"data/m\"\nformat = \"parquet\"\nprimary_key = \"id\"\n",
    )
    .unwrap();
    let file = root.join("data/m/a.parquet");
    write_parquet(
        &file,
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("qty", Arc::new(Int32Array::from(vec![10, 20])) as ArrayRef),
        ],
    );
    let (store, lake) = open(root).await;
    let def = defs(root).remove(0);
    let r = run(&store, &lake, &def, false).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    let v1 = r.silver_version;

    // int32 → int64 is a widening: applied (the table's column is widened), in bronze too.
    write_parquet(
        &file,
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "qty",
                Arc::new(Int64Array::from(vec![10, 5_000_000_000])) as ArrayRef,
            ),
        ],
    );
    let r = run(&store, &lake, &def, false).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.updated, 1);
    assert_eq!(
        rows(
            &lake,
            "SELECT id, qty, arrow_typeof(qty) AS t FROM m ORDER BY id"
        )
        .await,
        vec![
            json!({"id": 1, "qty": 10, "t": "Int64"}),
            json!({"id": 2, "qty": 5_000_000_000i64, "t": "Int64"})
        ]
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n, max(qty) AS top, arrow_typeof(max(qty)) AS t FROM bronze.m"
        )
        .await,
        vec![json!({"n": 4, "top": 5_000_000_000i64, "t": "Int64"})]
    );

    // Text where the table has integers: refused, naming the column and both types; the
    // table stays as it was.
    let before = lake
        .version(conveyor::lakehouse::Layer::Silver, "m")
        .await
        .unwrap();
    assert_ne!(before, v1);
    write_parquet(
        &file,
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "qty",
                Arc::new(StringArray::from(vec!["ten", "x"])) as ArrayRef,
            ),
        ],
    );
    let r = run(&store, &lake, &def, false).await;
    let e = r.error.unwrap();
    assert!(
        e.contains("`qty`") && e.contains("Int64") && e.contains("Utf8") && e.contains("--full"),
        "{e}"
    );
    assert_eq!(
        lake.version(conveyor::lakehouse::Layer::Silver, "m")
            .await
            .unwrap(),
        before
    );
    // `sync --full` rebuilds the table with the source's types.
    let r = run(&store, &lake, &def, true).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        rows(&lake, "SELECT id, qty FROM m ORDER BY id").await,
        vec![json!({"id": 1, "qty": "ten"}), json!({"id": 2, "qty": "x"})]
    );
}

#[tokio::test]
async fn parquet_files_that_disagree_are_named_and_duplicate_keys_keep_the_last_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::write(
        root.join("connectors/d.toml"),
        "name = \"d\"\nkind = \"files\"\npath = \"data/d\"\nformat = \"parquet\"\nprimary_key = \"id\"\n",
    )
    .unwrap();
    write_parquet(
        &root.join("data/d/1.parquet"),
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2, 2])) as ArrayRef),
            (
                "v",
                Arc::new(StringArray::from(vec!["a", "b-old", "b-mid"])) as ArrayRef,
            ),
        ],
    );
    write_parquet(
        &root.join("data/d/2.parquet"),
        vec![
            ("id", Arc::new(Int64Array::from(vec![2, 3])) as ArrayRef),
            (
                "v",
                Arc::new(StringArray::from(vec!["b-new", "c"])) as ArrayRef,
            ),
        ],
    );
    let (store, lake) = open(root).await;
    let def = defs(root).remove(0);
    let r = run(&store, &lake, &def, false).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.inserted, 3);
    assert_eq!(
        rows(&lake, "SELECT id, v FROM d ORDER BY id").await,
        vec![
            json!({"id": 1, "v": "a"}),
            json!({"id": 2, "v": "b-new"}),
            json!({"id": 3, "v": "c"})
        ]
    );
    // Bronze keeps every record as sent.
    assert_eq!(
        rows(&lake, "SELECT count(*) AS n FROM bronze.d").await,
        vec![json!({"n": 5})]
    );

    // Both files change in one run and disagree on `id`: both are named.
    write_parquet(
        &root.join("data/d/1.parquet"),
        vec![
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("v", Arc::new(StringArray::from(vec!["a2"])) as ArrayRef),
        ],
    );
    write_parquet(
        &root.join("data/d/2.parquet"),
        vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["2", "3"])) as ArrayRef,
            ),
            ("v", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ],
    );
    let e = run(&store, &lake, &def, false).await.error.unwrap();
    assert!(
        e.contains("1.parquet") && e.contains("2.parquet") && e.contains("`id`"),
        "{e}"
    );

    // A file without the primary key is named; nothing is written.
    std::fs::remove_file(root.join("data/d/2.parquet")).unwrap();
    write_parquet(
        &root.join("data/d/3.parquet"),
        vec![("v", Arc::new(StringArray::from(vec!["orphan"])) as ArrayRef)],
    );
    let before = lake
        .version(conveyor::lakehouse::Layer::Silver, "d")
        .await
        .unwrap();
    let e = run(&store, &lake, &def, false).await.error.unwrap();
    assert!(
        e.contains("3.parquet has no primary key column `id`"),
        "{e}"
    );
    assert_eq!(
        lake.version(conveyor::lakehouse::Layer::Silver, "d")
            .await
            .unwrap(),
        before
    );
}

#[tokio::test]
async fn csv_decimals_and_dates_are_typed_and_can_be_declared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("data/orders.csv"),
        "id,amount,rate,placed,zip,price\n1,12.50,0.5,2026-01-15,01234,3\n2,3.00,0.25,2026-02-01,99999,4.5\n3,,1.125,,00501,\n",
    )
    .unwrap();
    std::fs::write(
        root.join("connectors/orders.toml"),
        "name = \"orders\"\nkind = \"files\"\npath = \"data/orders.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n[schema]\nprice = \"decimal(10,2)\"\n",
    )
    .unwrap();
    let (store, lake) = open(root).await;
    let def = defs(root).remove(0);
    let r = run(&store, &lake, &def, false).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(amount) AS amount, arrow_typeof(rate) AS rate, \
             arrow_typeof(placed) AS placed, arrow_typeof(zip) AS zip, \
             arrow_typeof(price) AS price FROM orders LIMIT 1"
        )
        .await,
        vec![json!({
            "amount": "Decimal128(38, 2)",
            "rate": "Float64",
            "placed": "Date32",
            "zip": "Utf8View",
            "price": "Decimal128(10, 2)"
        })]
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT CAST(sum(amount) AS VARCHAR) AS total, CAST(sum(price) AS VARCHAR) AS prices, \
             CAST(max(placed) AS VARCHAR) AS last FROM orders"
        )
        .await,
        vec![json!({"total": "15.50", "prices": "7.50", "last": "2026-02-01"})]
    );

    // A declared decimal with more than 38 digits is refused with the column named.
    std::fs::write(
        root.join("connectors/orders.toml"),
        "name = \"orders\"\nkind = \"files\"\npath = \"data/orders.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n[schema]\nprice = \"decimal(40,2)\"\n",
    )
    .unwrap();
    let e = connectors::load_dir(&root.join("connectors"), root)
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema.price"), "{e}");
}

/// A SQL table's declared types reach silver: `numeric(12,2)` as Decimal128(12,2), `date` as
/// Date32, timestamps as timestamps (through `conveyor sync`, which reads the URL from the
/// environment).
async fn sql_types_reach_silver(url: String, create: Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::write(root.join("conveyor.toml"), "").unwrap();
    crate::connectors_sources::exec(&url, &create).await;
    std::fs::write(
        root.join("connectors/sales.toml"),
        "name = \"sales\"\nkind = \"sql\"\nurl_env = \"WAREHOUSE_TEST_URL\"\ntable = \"sales\"\nprimary_key = \"id\"\n",
    )
    .unwrap();
    let cfg = root.join("conveyor.toml");
    let out = tokio::task::spawn_blocking(move || {
        crate::common::conveyor()
            .arg("--config")
            .arg(cfg)
            .args(["sync", "--json"])
            .env("WAREHOUSE_TEST_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", crate::common::show(&out));
    // `conveyor optimize` maintains both tables and reports them.
    let cfg = root.join("conveyor.toml");
    let out = tokio::task::spawn_blocking(move || {
        crate::common::conveyor()
            .arg("--config")
            .arg(cfg)
            .args(["optimize", "sales", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", crate::common::show(&out));
    let report: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let layers: Vec<&str> = report
        .iter()
        .map(|t| t["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["bronze", "silver"]);
    let lake = Lakehouse::open(&LakehouseConfig::default(), &root).unwrap();
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(amount) AS amount, arrow_typeof(day) AS day, \
             arrow_typeof(at) AS at, CAST(sum(amount) OVER () AS VARCHAR) AS total, \
             CAST(day AS VARCHAR) AS first_day \
             FROM sales ORDER BY id LIMIT 1"
        )
        .await,
        vec![json!({
            "amount": "Decimal128(12, 2)",
            "day": "Date32",
            "at": "Timestamp(µs, \"UTC\")",
            "total": "13.75",
            "first_day": "2026-03-01"
        })]
    );
}

#[tokio::test]
async fn sqlite_declared_types_reach_silver() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    sql_types_reach_silver(
        url,
        vec![
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, amount DECIMAL(12,2), day DATE, at DATETIME)".into(),
            "INSERT INTO sales VALUES (1, 10.5, '2026-03-01', '2026-03-01 09:30:00'), (2, 3.25, '2026-03-02', '2026-03-02T10:00:00Z')".into(),
        ],
    )
    .await;
}

#[tokio::test]
async fn postgres_numeric_date_and_timestamptz_reach_silver() {
    crate::common::with_pg_schema(|url| async move {
        sql_types_reach_silver(
            url,
            vec![
                "CREATE TABLE sales (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), day DATE, at TIMESTAMPTZ)".into(),
                "INSERT INTO sales VALUES (1, 10.50, '2026-03-01', '2026-03-01 09:30:00+00'), (2, 3.25, '2026-03-02', '2026-03-02 10:00:00+00')".into(),
            ],
        )
        .await
    })
    .await;
}

/// `partition_by` lays silver out in folders by value; `conveyor optimize` compacts bronze,
/// Z-orders silver by `cluster_by` and vacuums, leaving the data as it was; a changed layout
/// needs `--full`.
#[tokio::test]
async fn partitioned_silver_and_optimize_compact_zorder_and_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::create_dir_all(root.join("data/sales")).unwrap();
    let connector = |partition: &str| {
        std::fs::write(
            root.join("connectors/sales.toml"),
            format!(
                "name = \"sales\"\nkind = \"files\"\npath = \"data/sales\"\nformat = \"csv\"\nprimary_key = \"id\"\npartition_by = {partition}\ncluster_by = [\"amount\", \"id\"]\n"
            ),
        )
        .unwrap();
    };
    connector("\"region\"");
    let (store, lake) = open(root).await;
    // Five runs, one new file each: five small files per table.
    for part in 0..5 {
        let mut csv = String::from("id,region,amount\n");
        for i in 0..20 {
            let id = part * 20 + i;
            csv.push_str(&format!(
                "{id},{},{}.{:02}\n",
                ["eu", "us"][id % 2],
                id * 7 % 100,
                id % 100
            ));
        }
        std::fs::write(root.join(format!("data/sales/{part}.csv")), csv).unwrap();
        let r = run(&store, &lake, &defs(root).remove(0), false).await;
        assert!(r.error.is_none(), "{:?}", r.error);
    }
    assert!(root.join("data/lake/silver/sales/region=eu").is_dir());
    assert!(root.join("data/lake/silver/sales/region=us").is_dir());
    let summary = "SELECT count(*) AS n, CAST(sum(amount) AS VARCHAR) AS total, \
                   count(DISTINCT region) AS regions FROM sales";
    let before = rows(&lake, summary).await;
    assert_eq!(before[0]["n"], json!(100));

    let def = defs(root).remove(0);
    let report = lake
        .optimize("sales", &def.cluster_by, Some(Duration::ZERO))
        .await
        .unwrap();
    let silver = report
        .iter()
        .find(|t| t.layer == conveyor::lakehouse::Layer::Silver)
        .unwrap();
    assert_eq!(silver.how, "zorder(amount, id)");
    assert!(silver.files_removed > silver.files_added, "{report:?}");
    assert!(silver.files_vacuumed > 0, "{report:?}");
    let bronze = report
        .iter()
        .find(|t| t.layer == conveyor::lakehouse::Layer::Bronze)
        .unwrap();
    assert_eq!(bronze.how, "compact");
    assert!(
        bronze.files_removed >= 5 && bronze.files_added == 1,
        "{report:?}"
    );
    assert_eq!(rows(&lake, summary).await, before);

    // A cluster_by column that does not exist is named.
    let e = lake
        .optimize("sales", &["nope".to_string()], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`nope`"), "{e}");

    // Another layout: refused by a plain run, applied by --full.
    connector("[]");
    std::fs::write(
        root.join("data/sales/0.csv"),
        "id,region,amount\n0,eu,1.50\n",
    )
    .unwrap();
    let def = defs(root).remove(0);
    let e = run(&store, &lake, &def, false).await.error.unwrap();
    assert!(
        e.contains("partitioned by region") && e.contains("--full"),
        "{e}"
    );
    let r = run(&store, &lake, &def, true).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        rows(&lake, "SELECT count(*) AS n FROM sales").await,
        vec![json!({"n": 81})]
    );
}

/// Queries read silver's current files with DataFusion's Parquet scan: files replaced by a
/// later run (still on disk until a vacuum) are not read, typed partition values (a date, an
/// integer, a missing value) come from the Delta log and prune by filter, and a column added
/// by a later file reads as null in the files written before it.
#[tokio::test]
async fn queries_read_current_files_with_typed_partitions_and_added_columns() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).unwrap();
    std::fs::create_dir_all(root.join("data/sales")).unwrap();
    std::fs::write(
        root.join("connectors/sales.toml"),
        "name = \"sales\"\nkind = \"files\"\npath = \"data/sales\"\nformat = \"csv\"\nprimary_key = \"id\"\npartition_by = [\"day\", \"shop\"]\n",
    )
    .unwrap();
    let (store, lake) = open(root).await;
    std::fs::write(
        root.join("data/sales/a.csv"),
        "id,day,shop,amount\n1,2024-05-01,7,10.50\n2,2024-05-01,8,20.25\n3,2024-05-02,7,1.00\n4,2024-05-02,,4.75\n",
    )
    .unwrap();
    let r = run(&store, &lake, &defs(root).remove(0), false).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    // Row 1 changes, row 3 is gone: the files holding them are replaced in the log.
    std::fs::write(
        root.join("data/sales/a.csv"),
        "id,day,shop,amount\n1,2024-05-01,7,11.50\n2,2024-05-01,8,20.25\n4,2024-05-02,,4.75\n",
    )
    .unwrap();
    std::fs::write(
        root.join("data/sales/b.csv"),
        "id,day,shop,amount,note\n5,2024-05-03,9,2.00,late\n",
    )
    .unwrap();
    let r = run(&store, &lake, &defs(root).remove(0), false).await;
    assert!(r.error.is_none(), "{:?}", r.error);

    assert_eq!(
        rows(
            &lake,
            "SELECT id, CAST(day AS VARCHAR) AS day, shop, CAST(amount AS VARCHAR) AS amount, note \
             FROM sales ORDER BY id"
        )
        .await,
        vec![
            json!({"id": 1, "day": "2024-05-01", "shop": 7, "amount": "11.50", "note": null}),
            json!({"id": 2, "day": "2024-05-01", "shop": 8, "amount": "20.25", "note": null}),
            json!({"id": 4, "day": "2024-05-02", "shop": null, "amount": "4.75", "note": null}),
            json!({"id": 5, "day": "2024-05-03", "shop": 9, "amount": "2.00", "note": "late"}),
        ]
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT arrow_typeof(day) AS d, arrow_typeof(shop) AS s, arrow_typeof(amount) AS a \
             FROM sales LIMIT 1"
        )
        .await,
        vec![json!({"d": "Date32", "s": "Int64", "a": "Decimal128(38, 2)"})]
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n FROM sales WHERE day = DATE '2024-05-01' AND shop = 7"
        )
        .await,
        vec![json!({"n": 1})]
    );
    assert_eq!(
        rows(&lake, "SELECT id FROM sales WHERE shop IS NULL").await,
        vec![json!({"id": 4})]
    );
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*) AS n FROM silver.sales WHERE note IS NULL"
        )
        .await,
        vec![json!({"n": 3})]
    );
    // Read by DataFusion's Parquet scan (not delta-rs' kernel scan), pruned by partition.
    let plan = serde_json::to_string(
        &rows(
            &lake,
            "EXPLAIN SELECT id FROM sales WHERE day = DATE '2024-05-03'",
        )
        .await,
    )
    .unwrap();
    assert!(plan.contains("file_type=parquet"), "{plan}");
    assert!(!plan.contains("DeltaScan"), "{plan}");
}
