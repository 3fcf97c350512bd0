//! Connectors and the lakehouse: real files in temp folders synced into real Delta tables,
//! read back with SQL. Updates, deletions, new columns, type conflicts, declared types
//! (`[schema]`), a crash between the data commit and the cursor, malformed rows, and the CLI
//! (`init` + `sync` + `sql`, writes refused).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conveyor::connectors::gold::{self, GoldReport, GoldStatus};
use conveyor::connectors::sync::{self, SyncContext, SyncOptions, SyncReport};
use conveyor::connectors::{self, Definition};
use conveyor::lakehouse::{Lakehouse, LakehouseConfig, Layer, OutputFormat};
use conveyor::store::{RunClaim, Store};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{conveyor, show};

/// A project folder with a store, a lakehouse and a connectors folder.
struct Lab {
    dir: TempDir,
    store: Store,
    lake: Lakehouse,
}

impl Lab {
    async fn new() -> Self {
        Self::with_store(None).await
    }

    /// With the store at `url` (SQLite in the temp folder when `None`).
    async fn with_store(url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match url {
            Some(u) => u.to_string(),
            None => format!("sqlite://{}", dir.path().join("c.db").display()),
        };
        let store = Store::connect(&url).await.unwrap();
        let lake = Lakehouse::open(&LakehouseConfig::default(), dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Self { dir, store, lake }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn connector(&self, name: &str, body: &str) -> Definition {
        self.write(
            &format!("connectors/{name}.toml"),
            &format!("name = \"{name}\"\nkind = \"files\"\n{body}"),
        );
        connectors::load_dir(&self.path("connectors"), self.dir.path())
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .unwrap()
    }

    async fn sync_with(&self, def: &Definition, opts: SyncOptions) -> SyncReport {
        sync::run(
            SyncContext {
                store: &self.store,
                lake: &self.lake,
                lease: Duration::from_secs(60),
            },
            def,
            opts,
        )
        .await
        .unwrap()
    }

    async fn sync(&self, def: &Definition) -> SyncReport {
        self.sync_with(def, SyncOptions::default()).await
    }

    async fn rows(&self, query: &str) -> Vec<Value> {
        let out = self.lake.query(query, None).await.unwrap();
        serde_json::from_str(&out.render(OutputFormat::Json).unwrap()).unwrap()
    }
}

fn ok(r: &SyncReport) {
    assert!(r.error.is_none(), "run failed: {:?}", r.error);
}

#[tokio::test]
async fn updates_deletions_and_new_columns_reach_silver() {
    let lab = Lab::new().await;
    lab.write(
        "data/customers.csv",
        "id,name,plan,signed_up_at\n1,Ada,pro,2026-01-05T10:00:00Z\n2,Bob,starter,2026-02-01T09:30:00Z\n3,Cy,pro,2026-03-01T12:00:00+02:00\n",
    );
    let def = lab.connector(
        "customers",
        "path = \"data/customers.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );

    let first = lab.sync(&def).await;
    ok(&first);
    assert_eq!((first.rows_read, first.inserted), (3, 3));
    let rows = lab
        .rows("SELECT id, name, plan, signed_up_at FROM customers ORDER BY id")
        .await;
    assert_eq!(rows.len(), 3);
    // Typed: integers stay integers, RFC 3339 text became a timestamp (in UTC).
    assert_eq!(rows[0]["id"], json!(1));
    assert!(
        rows[2]["signed_up_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01T10:00:00"),
        "{rows:?}"
    );

    // Unchanged file: nothing read, nothing written.
    let same = lab.sync(&def).await;
    ok(&same);
    assert_eq!((same.files_read, same.files_unchanged), (0, 1));
    assert_eq!(same.silver_version, first.silver_version);

    // Bob changes plan, Cy disappears, Dee arrives, and the source grows a column.
    lab.write(
        "data/customers.csv",
        "id,name,plan,signed_up_at,seats\n1,Ada,pro,2026-01-05T10:00:00Z,\n2,Bob,pro,2026-02-01T09:30:00Z,12\n4,Dee,starter,2026-04-01T08:00:00Z,3\n",
    );
    let second = lab.sync(&def).await;
    ok(&second);
    assert_eq!(second.new_columns, vec!["seats".to_string()]);
    assert_eq!(second.inserted, 1);
    assert_eq!(second.updated, 1, "only Bob changed: {second:?}");
    assert_eq!(second.deleted, 1);
    let rows = lab
        .rows("SELECT id, name, plan, seats FROM silver.customers ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "name": "Ada", "plan": "pro", "seats": null}),
            json!({"id": 2, "name": "Bob", "plan": "pro", "seats": 12}),
            json!({"id": 4, "name": "Dee", "plan": "starter", "seats": 3}),
        ]
    );
    // Bronze kept both runs' raw records, tagged by run.
    let bronze = lab
        .rows("SELECT _run_id, count(*) AS n FROM bronze.customers GROUP BY _run_id ORDER BY n")
        .await;
    assert_eq!(bronze.len(), 2, "{bronze:?}");
    assert_eq!(
        lab.lake.version(Layer::Silver, "customers").await.unwrap(),
        second.silver_version
    );

    // The history records both runs that wrote, and the one that had nothing to do.
    let runs = lab.store.runs(Some("customers"), 10).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.status == "ok"), "{runs:?}");
    assert_eq!(runs[0].rows_deleted, 1);
}

#[tokio::test]
async fn a_removed_file_removes_its_rows_and_a_key_may_move_between_files() {
    let lab = Lab::new().await;
    lab.write(
        "data/orders/a.jsonl",
        "{\"order_id\": \"A1\", \"total\": 10.5}\n{\"order_id\": \"A2\", \"total\": 3}\n",
    );
    lab.write(
        "data/orders/b.jsonl",
        "{\"order_id\": \"B1\", \"total\": 7, \"paid\": true}\n",
    );
    let def = lab.connector(
        "orders",
        "path = \"data/orders\"\nformat = \"jsonl\"\nprimary_key = \"order_id\"\n",
    );
    ok(&lab.sync(&def).await);
    assert_eq!(lab.rows("SELECT * FROM orders").await.len(), 3);

    std::fs::remove_file(lab.path("data/orders/a.jsonl")).unwrap();
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!((r.files_removed, r.deleted), (1, 2));
    let rows = lab
        .rows("SELECT order_id, total, paid, _source FROM orders")
        .await;
    assert_eq!(
        rows,
        vec![json!({"order_id": "B1", "total": 7.0, "paid": true, "_source": "b.jsonl"})]
    );
}

#[tokio::test]
async fn a_key_listed_twice_in_one_run_is_one_row_and_the_later_record_wins() {
    let lab = Lab::new().await;
    lab.write("data/k/1.csv", "id,v\n1,old\n2,x\n1,older-line-wins-not\n");
    lab.write("data/k/2.csv", "id,v\n1,newest\n");
    let def = lab.connector(
        "k",
        "path = \"data/k/*.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!((r.rows_read, r.inserted), (4, 2));
    assert_eq!(
        lab.rows("SELECT id, v, _source FROM k ORDER BY id").await,
        vec![
            json!({"id": 1, "v": "newest", "_source": "2.csv"}),
            json!({"id": 2, "v": "x", "_source": "1.csv"}),
        ]
    );
}

#[tokio::test]
async fn parquet_files_keep_their_types() {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::parquet::arrow::ArrowWriter;

    let lab = Lab::new().await;
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "name",
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
        ),
        (
            "score",
            Arc::new(Float64Array::from(vec![0.5, 1.0, 2.5])) as ArrayRef,
        ),
        (
            "ok",
            Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
        ),
    ])
    .unwrap();
    std::fs::create_dir_all(lab.path("data/pq")).unwrap();
    let file = std::fs::File::create(lab.path("data/pq/part-1.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    lab.write("data/pq/broken.parquet", "not parquet");

    let def = lab.connector(
        "pq",
        "path = \"data/pq\"\nformat = \"parquet\"\nprimary_key = \"id\"\n",
    );
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!(r.inserted, 3);
    assert_eq!(r.issues.len(), 1);
    assert!(
        r.issues[0].to_string().contains("broken.parquet"),
        "{:?}",
        r.issues
    );
    assert_eq!(
        lab.rows("SELECT id, name, score, ok FROM pq ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "name": "a", "score": 0.5, "ok": true}),
            json!({"id": 2, "name": null, "score": 1.0, "ok": false}),
            json!({"id": 3, "name": "c", "score": 2.5, "ok": true}),
        ]
    );
}

#[tokio::test]
async fn a_type_conflict_fails_cleanly_and_the_previous_version_stays_readable() {
    let lab = Lab::new().await;
    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"price\": 10}\n{\"sku\": \"Y\", \"price\": 12}\n",
    );
    let def = lab.connector(
        "products",
        "path = \"data/p.jsonl\"\nformat = \"jsonl\"\nprimary_key = \"sku\"\n",
    );
    let first = lab.sync(&def).await;
    ok(&first);

    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"price\": 10}\n{\"sku\": \"Y\", \"price\": \"cheap\"}\n",
    );
    let bad = lab.sync(&def).await;
    let err = bad.error.clone().expect("the run must fail");
    assert!(
        err.contains("`price`") && err.contains("integer") && err.contains("text"),
        "{err}"
    );
    assert!(err.contains("p.jsonl line 2"), "{err}");
    // Nothing was written: same silver version, same values, and no bronze rows for the run.
    assert_eq!(
        lab.lake.version(Layer::Silver, "products").await.unwrap(),
        first.silver_version
    );
    assert_eq!(
        lab.rows("SELECT sku, price FROM products ORDER BY sku")
            .await,
        vec![
            json!({"sku": "X", "price": 10}),
            json!({"sku": "Y", "price": 12})
        ]
    );
    assert_eq!(
        lab.rows("SELECT count(*) AS n FROM bronze.products").await,
        vec![json!({"n": 2})]
    );
    let runs = lab.store.runs(Some("products"), 1).await.unwrap();
    assert_eq!(runs[0].status, "failed");
    assert!(runs[0].error.as_deref().unwrap().contains("price"));

    // Fixed at the source: the next run goes through (the cursor was not advanced).
    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"price\": 10}\n{\"sku\": \"Y\", \"price\": 11}\n",
    );
    let fixed = lab.sync(&def).await;
    ok(&fixed);
    assert_eq!(fixed.updated, 1);
}

#[tokio::test]
async fn declared_text_keeps_zip_codes_and_declared_float_takes_integers() {
    let lab = Lab::new().await;
    // Every zip of the first run looks like a number, every amount like an integer.
    lab.write("data/c/a.csv", "id,zip,amount\n1,90210,10\n2,12345,7\n");
    let def = lab.connector(
        "customers",
        "path = \"data/c\"\nformat = \"csv\"\nprimary_key = \"id\"\n[schema]\nzip = \"text\"\namount = \"float\"\n",
    );
    ok(&lab.sync(&def).await);
    // Leading zeros arrive later and survive; a decimal amount fits the float column.
    lab.write("data/c/b.csv", "id,zip,amount\n3,01234,2.5\n");
    ok(&lab.sync(&def).await);
    assert_eq!(
        lab.rows("SELECT id, zip, amount FROM customers ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "zip": "90210", "amount": 10.0}),
            json!({"id": 2, "zip": "12345", "amount": 7.0}),
            json!({"id": 3, "zip": "01234", "amount": 2.5}),
        ]
    );

    // JSON numbers in a declared text column are stored as their text.
    lab.write(
        "data/j.jsonl",
        "{\"id\": 1, \"zip\": 501, \"ok\": \"true\"}\n{\"id\": 2, \"zip\": \"00501\", \"ok\": false}\n",
    );
    let def = lab.connector(
        "places",
        "path = \"data/j.jsonl\"\nformat = \"jsonl\"\nprimary_key = \"id\"\n[schema]\nzip = \"text\"\nok = \"boolean\"\n",
    );
    ok(&lab.sync(&def).await);
    assert_eq!(
        lab.rows("SELECT id, zip, ok FROM places ORDER BY id").await,
        vec![
            json!({"id": 1, "zip": "501", "ok": true}),
            json!({"id": 2, "zip": "00501", "ok": false}),
        ]
    );
}

#[tokio::test]
async fn a_value_that_does_not_fit_its_declared_type_fails_and_nothing_is_written() {
    let lab = Lab::new().await;
    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"qty\": 1}\n{\"sku\": \"Y\", \"qty\": \"2\"}\n",
    );
    let def = lab.connector(
        "stock",
        "path = \"data/p.jsonl\"\nformat = \"jsonl\"\nprimary_key = \"sku\"\n[schema]\nqty = \"integer\"\n",
    );
    let first = lab.sync(&def).await;
    ok(&first);

    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"qty\": 1}\n{\"sku\": \"Y\", \"qty\": \"many\"}\n{\"sku\": \"Z\", \"qty\": 2.5}\n",
    );
    let bad = lab.sync(&def).await;
    let err = bad.error.clone().expect("the run must fail");
    assert!(
        err.contains("column `qty` is declared integer")
            && err.contains("\"many\" in ")
            && err.contains("p.jsonl line 2 and 1 more"),
        "{err}"
    );
    assert_eq!(
        lab.lake.version(Layer::Silver, "stock").await.unwrap(),
        first.silver_version
    );
    assert_eq!(
        lab.rows("SELECT sku, qty FROM stock ORDER BY sku").await,
        vec![json!({"sku": "X", "qty": 1}), json!({"sku": "Y", "qty": 2})]
    );
    assert_eq!(
        lab.rows("SELECT count(*) AS n FROM bronze.stock").await,
        vec![json!({"n": 2})]
    );

    // A first run that does not fit creates no table at all.
    lab.write("data/q.jsonl", "{\"id\": 1, \"at\": \"yesterday\"}\n");
    let def = lab.connector(
        "events",
        "path = \"data/q.jsonl\"\nformat = \"jsonl\"\nprimary_key = \"id\"\n[schema]\nat = \"timestamp\"\n",
    );
    let err = lab.sync(&def).await.error.expect("the run must fail");
    assert!(
        err.contains("`at` is declared timestamp") && err.contains("q.jsonl line 1"),
        "{err}"
    );
    assert_eq!(
        lab.lake.version(Layer::Silver, "events").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_declared_type_that_differs_from_the_table_fails_until_a_full_sync_rebuilds_it() {
    let lab = Lab::new().await;
    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"price\": 10}\n{\"sku\": \"Y\", \"price\": 12}\n",
    );
    let plain = "path = \"data/p.jsonl\"\nformat = \"jsonl\"\nprimary_key = \"sku\"\n";
    let def = lab.connector("products", plain);
    let first = lab.sync(&def).await;
    ok(&first);

    let def = lab.connector("products", &format!("{plain}[schema]\nprice = \"text\"\n"));
    // A plain run re-reads the changed file and refuses to re-type the column.
    lab.write(
        "data/p.jsonl",
        "{\"sku\": \"X\", \"price\": 10}\n{\"sku\": \"Y\", \"price\": 13}\n",
    );
    let err = lab.sync(&def).await.error.expect("the run must fail");
    assert!(
        err.contains("column `price` is integer in silver.products")
            && err.contains("declares it text")
            && err.contains("conveyor sync products --full"),
        "{err}"
    );
    assert_eq!(
        lab.lake.version(Layer::Silver, "products").await.unwrap(),
        first.silver_version
    );

    // `sync --full` rebuilds the table with the declared type.
    let full = SyncOptions {
        full: true,
        ..Default::default()
    };
    ok(&lab.sync_with(&def, full).await);
    assert_eq!(
        lab.rows("SELECT sku, price FROM products ORDER BY sku")
            .await,
        vec![
            json!({"sku": "X", "price": "10"}),
            json!({"sku": "Y", "price": "13"})
        ]
    );
}

#[tokio::test]
async fn a_bad_schema_type_is_reported_with_file_and_key() {
    let lab = Lab::new().await;
    lab.write(
        "connectors/bad.toml",
        "name = \"bad\"\nkind = \"files\"\npath = \"data/x.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n[schema]\nzip = \"string\"\n_run_id = \"text\"\n",
    );
    let err = connectors::load_dir(&lab.path("connectors"), lab.dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.toml: schema.zip: \"string\" is not a column type; use integer, float, decimal(P,S), boolean, date, timestamp or text"),
        "{err}"
    );
    assert!(err.contains("bad.toml: schema._run_id"), "{err}");
}

#[tokio::test]
async fn a_crash_between_commit_and_cursor_does_not_duplicate_rows() {
    crash_between_commit_and_cursor(None).await;
}

#[tokio::test]
async fn a_crash_between_commit_and_cursor_does_not_duplicate_rows_postgres() {
    crate::common::with_pg_schema(|url| async move {
        crash_between_commit_and_cursor(Some(&url)).await;
    })
    .await;
}

async fn crash_between_commit_and_cursor(store: Option<&str>) {
    let lab = Lab::with_store(store).await;
    lab.write("data/c.csv", "id,v\n1,a\n2,b\n");
    let def = lab.connector(
        "c",
        "path = \"data/c.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    ok(&lab.sync(&def).await);
    lab.write("data/c.csv", "id,v\n1,a\n2,B\n3,c\n");
    let crashed = lab
        .sync_with(
            &def,
            SyncOptions {
                fail_after_commit: true,
                ..Default::default()
            },
        )
        .await;
    assert!(
        crashed
            .error
            .as_deref()
            .unwrap()
            .contains("before the cursor")
    );
    // The data was committed; the cursor was not.
    assert_eq!(lab.rows("SELECT * FROM c").await.len(), 3);

    let again = lab.sync(&def).await;
    ok(&again);
    assert_eq!(again.files_read, 1, "the file is read again");
    assert_eq!((again.inserted, again.updated, again.deleted), (0, 0, 0));
    assert_eq!(
        lab.rows("SELECT count(*) AS n, count(DISTINCT id) AS k FROM c")
            .await,
        vec![json!({"n": 3, "k": 3})]
    );
    let runs = lab.store.runs(Some("c"), 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        vec!["ok", "failed", "ok"]
    );
}

#[tokio::test]
async fn malformed_rows_are_reported_with_lines_and_on_error_fail_writes_nothing() {
    let lab = Lab::new().await;
    lab.write(
        "data/m.csv",
        "id,name,qty\n1,Ada,2\n2,Bob\n,NoKey,1\n3,Cy,4\n",
    );
    let def = lab.connector(
        "m",
        "path = \"data/m.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!(r.inserted, 2);
    let issues: Vec<String> = r.issues.iter().map(ToString::to_string).collect();
    assert_eq!(issues.len(), 2, "{issues:?}");
    assert!(
        issues[0].starts_with("m.csv line 3:") && issues[0].contains("2 fields"),
        "{issues:?}"
    );
    assert!(
        issues[1].starts_with("m.csv line 4:") && issues[1].contains("primary key"),
        "{issues:?}"
    );
    let runs = lab.store.runs(Some("m"), 1).await.unwrap();
    assert_eq!(runs[0].rows_skipped, 2);
    assert_eq!(runs[0].issues[0]["line"], json!(3));

    let strict = lab.connector(
        "strict",
        "path = \"data/m.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\non_error = \"fail\"\n",
    );
    let r = lab.sync(&strict).await;
    let err = r.error.unwrap();
    assert!(
        err.contains("line 3") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        lab.lake.version(Layer::Silver, "strict").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn one_run_per_connector_at_a_time() {
    let lab = Lab::new().await;
    lab.write("data/x.csv", "id\n1\n");
    let def = lab.connector(
        "x",
        "path = \"data/x.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    // Another process holds the claim.
    assert_eq!(
        lab.store
            .run_claim("x", "other-run", Duration::from_secs(60))
            .await
            .unwrap(),
        RunClaim::Owned
    );
    let err = sync::run(
        SyncContext {
            store: &lab.store,
            lake: &lab.lake,
            lease: Duration::from_secs(60),
        },
        &def,
        SyncOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("already syncing"), "{err}");
    assert_eq!(lab.lake.version(Layer::Silver, "x").await.unwrap(), None);
}

/// The claim, its takeover after a crash, the cursor and the history, on one backend.
async fn claims_and_cursors_on(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let lease = Duration::from_secs(60);
    assert_eq!(
        store.run_claim("k", "r1", lease).await.unwrap(),
        RunClaim::Owned
    );
    match store.run_claim("k", "r2", lease).await.unwrap() {
        RunClaim::Busy { run_id, .. } => assert_eq!(run_id, "r1"),
        other => panic!("{other:?}"),
    }
    store.run_renew("k", "r1", lease).await.unwrap();
    let outcome = conveyor::store::RunOutcome {
        rows_read: 3,
        rows_written: 2,
        issues: json!([]),
        ..Default::default()
    };
    store
        .run_finish(
            "k",
            "r1",
            Some(&json!({"files": {"a.csv": "h1"}})),
            &outcome,
        )
        .await
        .unwrap();
    assert_eq!(
        store.run_cursor("k").await.unwrap(),
        Some(json!({"files": {"a.csv": "h1"}}))
    );

    // r2 claims with a lease that runs out at once, as if its process died.
    assert_eq!(
        store
            .run_claim("k", "r2", Duration::from_millis(1))
            .await
            .unwrap(),
        RunClaim::Owned
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store.run_claim("k", "r3", lease).await.unwrap(),
        RunClaim::Owned
    );
    // The dead run can no longer save a cursor over the one that took over.
    assert!(store.run_renew("k", "r2", lease).await.is_err());
    assert!(
        store
            .run_finish("k", "r2", Some(&json!({"files": {}})), &outcome)
            .await
            .is_err()
    );
    assert_eq!(
        store.run_cursor("k").await.unwrap(),
        Some(json!({"files": {"a.csv": "h1"}}))
    );
    let runs = store.runs(Some("k"), 10).await.unwrap();
    let status: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.id.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        status,
        vec![("r3", "running"), ("r2", "failed"), ("r1", "ok")]
    );
    assert_eq!(runs[2].rows_read, 3);
    store.close().await;
}

#[tokio::test]
async fn claims_and_cursors_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    claims_and_cursors_on(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn claims_and_cursors_postgres() {
    crate::common::with_pg_schema(|url| async move { claims_and_cursors_on(&url).await }).await;
}

fn run_cli(config: &Path, args: &[&str]) -> std::process::Output {
    conveyor()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn init_sync_and_sql_work_out_of_the_box_and_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let cfg = dir.join("conveyor.toml");

    let out = run_cli(&cfg, &["sync"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("customers: read 36 rows"), "{}", show(&out));
    assert!(text.contains("orders: read 60 rows"), "{}", show(&out));
    assert!(
        text.contains("products: indexed") && text.contains("rows of silver.products"),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("gold.revenue_by_plan: built"),
        "{}",
        show(&out)
    );
    // The demo's gold model matches the same query over silver.
    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT g.revenue_usd - s.rev AS diff FROM gold.revenue_by_plan g JOIN \
             (SELECT c.plan, sum(o.total_usd) AS rev FROM orders o JOIN customers c ON o.customer_id = c.customer_id \
              WHERE o.status = 'paid' GROUP BY c.plan) s ON s.plan = g.plan",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["diff"].as_f64().unwrap().abs() < 1e-6),
        "{rows:?}"
    );
    // A second sync (nothing changed at the source) leaves the gold model as it is.
    let out = run_cli(&cfg, &["sync"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gold.revenue_by_plan: unchanged"),
        "{}",
        show(&out)
    );

    // While another process holds the index, the data still syncs and the feed says it could
    // not run; the next sync catches up.
    crate::common::give_demo_product_priority_support(&dir);
    {
        let config = conveyor::config::Config::load(&cfg).unwrap();
        let _held = conveyor::knowledge::Knowledge::open(&config.index, &config.base_dir).unwrap();
        let out = run_cli(&cfg, &["sync", "products"]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 updated"),
            "{}",
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("index feed: not run"), "{}", show(&out));
    }
    let out = run_cli(&cfg, &["sync", "products"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("products: indexed 1 changed rows of silver.products"),
        "{}",
        show(&out)
    );
    let out = run_cli(&cfg, &["ask", "Which plan has priority support?"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("silver.products#PRD-002"),
        "{}",
        show(&out)
    );

    // The index feed made the products searchable; the answer cites the silver row.
    let out = run_cli(
        &cfg,
        &["ask", "What does Lumen Desk Pro cost per monthly seat?"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("silver.products#PRD-002"), "{}", show(&out));

    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT c.plan, count(*) AS orders FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.plan ORDER BY c.plan",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let total: i64 = rows.iter().map(|r| r["orders"].as_i64().unwrap()).sum();
    assert_eq!(total, 60, "{rows:?}");

    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT product_id, price_usd FROM silver.products ORDER BY product_id LIMIT 2",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "product_id,price_usd\nPRD-001,0.00\nPRD-002,12.00\n",
        "prices written with two decimals are exact decimals, printed as written"
    );

    for bad in [
        "DROP TABLE customers",
        "DELETE FROM customers",
        "INSERT INTO customers (customer_id) VALUES (1)",
        "COPY customers TO 'x.csv'",
        "CREATE TABLE t AS SELECT 1",
    ] {
        let out = run_cli(&cfg, &["sql", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused") && err.contains("read-only"),
            "{bad}: {err}"
        );
    }
    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT count(*) AS n FROM customers",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows, vec![json!({"n": 36})]);

    // The row limit cuts and says so.
    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT * FROM orders",
            "--limit",
            "5",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    assert!(String::from_utf8_lossy(&out.stderr).contains("first 5 rows"));

    // A result without rows still names its columns.
    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT order_id, status FROM orders WHERE 1 = 0",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "order_id,status\n");

    // The time limit stops a runaway query with a sentence.
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args([
            "sql",
            "SELECT count(*) FROM generate_series(1, 100000000000) a",
        ])
        .env("CONVEYOR__LAKEHOUSE__SQL_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not finish within 1s"),
        "{}",
        show(&out)
    );

    let out = run_cli(&cfg, &["runs"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        // three from the first sync, three from the second, two of products around the held index
        text.lines().filter(|l| l.contains(" ok ")).count(),
        8,
        "{text}"
    );

    // An unknown connector is named with the ones that exist.
    let out = run_cli(&cfg, &["sync", "invoices"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`invoices`") && err.contains("customers, orders, products"),
        "{err}"
    );

    // A broken connector file stops sync with every problem, file and key named.
    std::fs::write(
        dir.join("connectors/bad.toml"),
        "name = \"bad\"\nkind = \"files\"\npath = \"data/x.csv\"\nformat = \"xlsx\"\nschedule = \"hourly\"\n",
    )
    .unwrap();
    let out = run_cli(&cfg, &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml: schedule"), "{err}");
    assert!(err.contains("bad.toml: format"), "{err}");
    assert!(err.contains("bad.toml: primary_key: missing"), "{err}");
}

/// The index feed: a row updated at the source changes its document, a deleted row leaves the
/// index, the payload links back to the table and key, and an unchanged table is not re-fed.
/// After the first (full) feed, the feed reads silver's change data feed: only changed rows
/// are indexed again, several syncs between two feeds collapse to each key's last change, and
/// a column added at the source does not break it.
#[tokio::test]
async fn updates_and_deletions_reach_the_index_with_lineage() {
    use conveyor::config::Config;
    use conveyor::connectors::feed;
    use conveyor::knowledge::Knowledge;

    let lab = Lab::new().await;
    let config = Config::from_toml("", "test config", lab.dir.path(), &[]).unwrap();
    let knowledge = Knowledge::open(&config.index, &config.base_dir).unwrap();
    let indexer = knowledge.indexer();
    let retriever = knowledge.retriever();
    lab.write(
        "data/customers.csv",
        "customer_id,name,notes,country\nCUS-001,Acme,Wants the zeppelin upgrade,BR\nCUS-002,Globex,Pays by invoice with walrus stamps,US\nCUS-003,Initech,Orders staplers by the pallet,US\n",
    );
    let def = lab.connector(
        "customers",
        "path = \"data/customers.csv\"\nformat = \"csv\"\nprimary_key = \"customer_id\"\n[index]\ntitle = \"name\"\ntext = [\"name\", \"notes\"]\npayload = [\"country\"]\n",
    );
    let feed = || async {
        feed::run(
            &lab.store,
            &lab.lake,
            &indexer,
            knowledge.index.as_ref(),
            &def,
        )
        .await
        .unwrap()
        .unwrap()
    };
    ok(&lab.sync(&def).await);
    let r = feed().await;
    assert_eq!(r.documents, 3, "{r:?}");
    assert_eq!(r.mode, "full", "the first feed indexes the whole table");
    assert!(!r.up_to_date);

    let hits = retriever.retrieve("zeppelin", 5).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let p = &hits[0].payload;
    assert_eq!(p.source, "silver.customers#CUS-001");
    assert_eq!(p.title, "Acme");
    let lineage = p.lineage.as_ref().unwrap();
    assert_eq!(lineage.table, "silver.customers");
    assert_eq!(
        Value::Object(lineage.key.clone()),
        json!({"customer_id": "CUS-001"})
    );
    assert_eq!(
        Value::Object(lineage.fields.clone()),
        json!({"country": "BR"})
    );

    // Nothing changed: the feed does nothing.
    ok(&lab.sync(&def).await);
    assert!(feed().await.up_to_date);

    // CUS-001 updated, CUS-002 deleted at the source; CUS-003 unchanged.
    lab.write(
        "data/customers.csv",
        "customer_id,name,notes,country\nCUS-001,Acme,Now wants the blimp package,BR\nCUS-003,Initech,Orders staplers by the pallet,US\n",
    );
    ok(&lab.sync(&def).await);
    let r = feed().await;
    assert_eq!(r.mode, "changes", "{r:?}");
    assert_eq!(
        r.documents, 1,
        "only the changed row is indexed again: {r:?}"
    );
    assert_eq!(r.removed, 1, "{r:?}");
    assert!(retriever.retrieve("zeppelin", 5).await.unwrap().is_empty());
    assert!(
        retriever
            .retrieve("walrus stamps", 5)
            .await
            .unwrap()
            .is_empty()
    );
    let hits = retriever.retrieve("blimp", 5).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].payload.source, "silver.customers#CUS-001");
    assert_eq!(hits[0].payload.text, "Acme\n\nNow wants the blimp package");
    let hits = retriever.retrieve("staplers pallet", 5).await.unwrap();
    assert_eq!(hits.len(), 1, "the unchanged row stays indexed: {hits:?}");
    assert_eq!(hits[0].payload.source, "silver.customers#CUS-003");

    // Two syncs before the next feed, and a column added at the source: CUS-004 inserted then
    // deleted (nothing indexed), CUS-003 changed twice (the last text wins), CUS-002 back.
    lab.write(
        "data/customers.csv",
        "customer_id,name,notes,country,tier\nCUS-001,Acme,Now wants the blimp package,BR,gold\nCUS-003,Initech,Switched to printer toner,US,\nCUS-004,Hooli,Buys kombucha kegs,US,\n",
    );
    ok(&lab.sync(&def).await);
    lab.write(
        "data/customers.csv",
        "customer_id,name,notes,country,tier\nCUS-001,Acme,Now wants the blimp package,BR,gold\nCUS-002,Globex,Back with walrus stamps,US,\nCUS-003,Initech,Settled on fax paper,US,silver\n",
    );
    ok(&lab.sync(&def).await);
    let r = feed().await;
    assert_eq!(r.mode, "changes", "{r:?}");
    assert!(
        retriever
            .retrieve("kombucha kegs", 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(retriever.retrieve("toner", 5).await.unwrap().is_empty());
    let hits = retriever.retrieve("fax paper", 5).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].payload.source, "silver.customers#CUS-003");
    let hits = retriever.retrieve("walrus stamps", 5).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].payload.source, "silver.customers#CUS-002");
    // The index holds exactly the three current rows.
    assert_eq!(knowledge.index.count().await.unwrap(), 3);
}

/// `conveyor sync --full` (SyncOptions::full): the saved cursor is ignored, the whole source
/// is read, and silver rows the source no longer has are deleted whatever file they came from.
#[tokio::test]
async fn a_full_sync_reads_everything_and_deletes_what_the_source_lost() {
    let lab = Lab::new().await;
    lab.write("data/a.csv", "id,v\n1,a\n2,b\n");
    lab.write("data/b.csv", "id,v\n3,c\n");
    let def = lab.connector(
        "fullsync",
        "path = \"data/*.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    ok(&lab.sync(&def).await);
    // Unchanged files are skipped by a normal run, read by a full one.
    let r = lab.sync(&def).await;
    assert_eq!(r.files_read, 0, "{r:?}");
    let r = lab
        .sync_with(
            &def,
            SyncOptions {
                full: true,
                ..Default::default()
            },
        )
        .await;
    ok(&r);
    assert_eq!(
        (r.files_read, r.inserted, r.updated, r.deleted),
        (2, 0, 0, 0),
        "{r:?}"
    );
    // b.csv removed while its cursor entry is ignored: the full run still deletes row 3.
    std::fs::remove_file(lab.path("data/b.csv")).unwrap();
    let r = lab
        .sync_with(
            &def,
            SyncOptions {
                full: true,
                ..Default::default()
            },
        )
        .await;
    ok(&r);
    assert_eq!(r.deleted, 1, "{r:?}");
    assert_eq!(
        lab.rows("SELECT id FROM silver.fullsync ORDER BY id").await,
        vec![json!({"id": 1}), json!({"id": 2})]
    );
}

impl Lab {
    /// Builds the models of `connectors/*.sql`, by model name.
    async fn gold(&self) -> std::collections::BTreeMap<String, GoldStatus> {
        let models = gold::load_models(&self.path("connectors")).unwrap();
        let reports: Vec<GoldReport> = gold::build_all(&self.lake, &self.store, &models, &[])
            .await
            .unwrap();
        reports.into_iter().map(|r| (r.model, r.status)).collect()
    }
}

fn built(s: &GoldStatus) -> bool {
    matches!(s, GoldStatus::Built { .. })
}

fn unchanged(s: &GoldStatus) -> bool {
    matches!(s, GoldStatus::Unchanged { .. })
}

fn failed_with(s: &GoldStatus) -> &str {
    match s {
        GoldStatus::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Two sources and three models: `by_plan` over silver, `top_plan` over `by_plan` (gold over
/// gold), `plan_count` over `top_plan`.
async fn gold_lab() -> (Lab, Definition, Definition) {
    let lab = Lab::new().await;
    lab.write("data/customers.csv", "id,plan\n1,pro\n2,starter\n3,pro\n");
    lab.write(
        "data/orders.csv",
        "id,customer_id,total\n10,1,100.5\n11,2,20\n12,3,30\n",
    );
    let customers = lab.connector(
        "customers",
        "path = \"data/customers.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    let orders = lab.connector(
        "orders",
        "path = \"data/orders.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n",
    );
    ok(&lab.sync(&customers).await);
    ok(&lab.sync(&orders).await);
    // Written in an order the names would not sort into: dependencies decide.
    lab.write(
        "connectors/a_plan_count.sql",
        "SELECT count(*) AS plans FROM gold.top_plan",
    );
    lab.write(
        "connectors/by_plan.sql",
        "SELECT c.plan, sum(o.total) AS revenue FROM silver.orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.plan",
    );
    lab.write(
        "connectors/top_plan.sql",
        "SELECT plan, revenue FROM gold.by_plan ORDER BY revenue DESC LIMIT 1",
    );
    (lab, customers, orders)
}

#[tokio::test]
async fn gold_models_build_once_in_dependency_order_and_again_after_a_silver_change() {
    let (lab, _customers, orders) = gold_lab().await;
    let first = lab.gold().await;
    assert!(first.values().all(built), "{first:?}");
    assert_eq!(
        lab.rows("SELECT plan, revenue FROM gold.top_plan").await,
        vec![json!({"plan": "pro", "revenue": 130.5})]
    );
    assert_eq!(
        lab.rows("SELECT plans FROM gold.a_plan_count").await,
        vec![json!({"plans": 1})]
    );

    // Nothing changed: nothing is rebuilt, no new versions.
    let again = lab.gold().await;
    assert!(again.values().all(unchanged), "{again:?}");
    let v = lab.lake.version(Layer::Gold, "by_plan").await.unwrap();

    // A silver change rebuilds the model and the models that read it.
    lab.write(
        "data/orders.csv",
        "id,customer_id,total\n10,1,100.5\n11,2,500\n12,3,30\n",
    );
    ok(&lab.sync(&orders).await);
    let third = lab.gold().await;
    assert!(third.values().all(built), "{third:?}");
    assert_eq!(
        lab.lake.version(Layer::Gold, "by_plan").await.unwrap(),
        v.map(|v| v + 1)
    );
    assert_eq!(
        lab.rows("SELECT plan, revenue FROM gold.top_plan").await,
        vec![json!({"plan": "starter", "revenue": 500.0})]
    );

    // Changing only the SQL text rebuilds that model (and its readers), not the others.
    lab.write(
        "connectors/a_plan_count.sql",
        "SELECT count(*) AS plans, 'x' AS tag FROM gold.top_plan",
    );
    let fourth = lab.gold().await;
    assert!(built(&fourth["a_plan_count"]), "{fourth:?}");
    assert!(unchanged(&fourth["by_plan"]) && unchanged(&fourth["top_plan"]));
    assert_eq!(
        lab.rows("SELECT plans, tag FROM gold.a_plan_count").await,
        vec![json!({"plans": 1, "tag": "x"})]
    );
}

#[tokio::test]
async fn a_bad_model_fails_cleanly_and_the_others_still_build() {
    let (lab, _customers, orders) = gold_lab().await;
    let first = lab.gold().await;
    assert!(first.values().all(built), "{first:?}");

    // by_plan now refers to a missing column: it fails, naming its file; top_plan and
    // a_plan_count, which read it, fail too; a model of its own still builds.
    lab.write(
        "connectors/by_plan.sql",
        "SELECT c.plan, sum(o.no_such_column) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.plan",
    );
    lab.write(
        "connectors/n_orders.sql",
        "SELECT count(*) AS n FROM orders",
    );
    lab.write("connectors/writes.sql", "DELETE FROM orders");
    lab.write("connectors/unknown.sql", "SELECT * FROM silver.nope");
    lab.write("connectors/ghost.sql", "SELECT * FROM gold.not_a_model");
    lab.write("connectors/cyc_a.sql", "SELECT * FROM gold.cyc_b");
    lab.write("connectors/cyc_b.sql", "SELECT * FROM gold.cyc_a");
    lab.write(
        "data/orders.csv",
        "id,customer_id,total\n10,1,100.5\n11,2,500\n12,3,30\n",
    );
    ok(&lab.sync(&orders).await);
    let r = lab.gold().await;
    let e = failed_with(&r["by_plan"]);
    assert!(
        e.contains("by_plan.sql") && e.contains("no_such_column"),
        "{e}"
    );
    assert!(failed_with(&r["top_plan"]).contains("gold.by_plan, which failed"));
    assert!(failed_with(&r["a_plan_count"]).contains("gold.top_plan, which failed"));
    let e = failed_with(&r["writes"]);
    assert!(e.contains("writes.sql") && e.contains("refused"), "{e}");
    let e = failed_with(&r["unknown"]);
    assert!(
        e.contains("unknown.sql") && e.contains("silver.nope"),
        "{e}"
    );
    let e = failed_with(&r["ghost"]);
    assert!(e.contains("ghost.sql") && e.contains("not a model"), "{e}");
    for m in ["cyc_a", "cyc_b"] {
        let e = failed_with(&r[m]);
        assert!(
            e.contains(&format!("{m}.sql")) && e.contains("cycle"),
            "{e}"
        );
    }
    assert!(built(&r["n_orders"]), "{r:?}");
    assert_eq!(
        lab.rows("SELECT n FROM gold.n_orders").await,
        vec![json!({"n": 3})]
    );
    // The previous versions stay readable.
    assert_eq!(
        lab.rows("SELECT plan, revenue FROM gold.top_plan").await,
        vec![json!({"plan": "pro", "revenue": 130.5})]
    );

    // Fixed: rebuilt on the next pass.
    lab.write(
        "connectors/by_plan.sql",
        "SELECT c.plan, sum(o.total) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.plan",
    );
    let r = lab.gold().await;
    assert!(built(&r["by_plan"]) && built(&r["top_plan"]), "{r:?}");
    assert!(unchanged(&r["n_orders"]), "{r:?}");
    assert_eq!(
        lab.rows("SELECT plan, revenue FROM gold.top_plan").await,
        vec![json!({"plan": "starter", "revenue": 500.0})]
    );
}

#[test]
fn bench_sync_reports_throughput_and_the_incremental_resync() {
    let tmp = tempfile::tempdir().unwrap();
    let out = conveyor()
        .args(["bench", "sync", "--rows", "2000", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 rows in 100 CSV files"), "{text}");
    assert!(text.contains("20 rows read, 20 updated"), "{text}");
    assert!(text.contains("silver has 2000 rows"), "{text}");
}

/// End to end with the binary: a SQLite database read incrementally by `conveyor sync`. A row
/// updated and a row deleted at the source reach silver (the update by the incremental column,
/// the deletion by the key listing) and the knowledge index (row-level feed), and `--full`
/// reads everything again.
#[tokio::test]
async fn sql_source_updates_and_deletions_reach_silver_and_the_index() {
    use sqlx::Connection;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("conveyor.toml"), "").unwrap();
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    std::fs::write(
        dir.join("connectors/items.toml"),
        "name = \"items\"\nkind = \"sql\"\nurl_env = \"SHOP_DB_URL\"\ntable = \"items\"\nprimary_key = \"id\"\nincremental_column = \"version\"\nbatch_size = 2\n[index]\ntitle = \"name\"\ntext = [\"notes\"]\n",
    )
    .unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.join("shop.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    for s in [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, notes TEXT, version INTEGER NOT NULL)",
        "INSERT INTO items VALUES (1, 'Anvil', 'Drop-forged anvil for roadrunner traps', 1)",
        "INSERT INTO items VALUES (2, 'Rocket skates', 'Skates with a tiny rocket', 1)",
        "INSERT INTO items VALUES (3, 'Bird seed', 'Premium iron bird seed', 1)",
    ] {
        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
    }
    let cfg = dir.join("conveyor.toml");
    let sync = |args: &[&str]| {
        let out = conveyor()
            .arg("--config")
            .arg(&cfg)
            .arg("sync")
            .args(args)
            .arg("--json")
            .env("SHOP_DB_URL", &db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
    };
    let first = sync(&[]);
    assert_eq!(first["runs"][0]["inserted"], json!(3), "{first}");
    assert_eq!(first["index"][0]["documents"], json!(3), "{first}");

    for s in [
        "UPDATE items SET notes = 'Skates with a jet turbine', version = 2 WHERE id = 2",
        "DELETE FROM items WHERE id = 3",
    ] {
        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
    }
    let second = sync(&[]);
    let run = &second["runs"][0];
    assert_eq!(
        (&run["rows_read"], &run["updated"], &run["deleted"]),
        (&json!(1), &json!(1), &json!(1)),
        "only the changed row is read; the deletion comes from the key listing: {second}"
    );
    let feed = &second["index"][0];
    assert_eq!(feed["mode"], json!("changes"), "{second}");
    assert_eq!(
        (&feed["documents"], &feed["removed"]),
        (&json!(1), &json!(1)),
        "{second}"
    );

    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT id, notes FROM items ORDER BY id",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "id,notes\n1,Drop-forged anvil for roadrunner traps\n2,Skates with a jet turbine\n"
    );
    let out = run_cli(&cfg, &["ask", "Which skates have a jet turbine?"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("silver.items#2"),
        "{}",
        show(&out)
    );
    let out = run_cli(&cfg, &["ask", "Is there premium iron bird seed?"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("silver.items#3"),
        "the deleted row is gone from the index: {}",
        show(&out)
    );

    // `--full` reads every row again; nothing changed, so nothing is written.
    let full = sync(&["items", "--full"]);
    let run = &full["runs"][0];
    assert_eq!(run["rows_read"], json!(2), "{full}");
    assert_eq!(
        (&run["inserted"], &run["updated"], &run["deleted"]),
        (&json!(0), &json!(0), &json!(0)),
        "{full}"
    );
    conn.close().await.unwrap();
}

/// `conveyor bench sync --index --json`: CSV with the index feed, and PostgreSQL (in a schema
/// of its own) as the source, each with the 1% re-sync reading only what changed.
#[tokio::test]
async fn bench_sync_measures_postgres_and_the_index_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = conveyor()
        .args([
            "bench", "sync", "--rows", "1000", "--index", "--json", "--dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["silver_rows"], json!(1000), "{r}");
    assert_eq!(r["index"]["documents"], json!(1000), "{r}");
    assert_eq!(
        r["index"]["changed_documents"],
        json!(10),
        "only the changed rows: {r}"
    );

    crate::common::with_pg_schema(|url| async move {
        let tmp = tempfile::tempdir().unwrap();
        let out = conveyor()
            .args([
                "bench", "sync", "--source", "postgres", "--rows", "1000", "--json", "--dir",
            ])
            .arg(tmp.path())
            .env("CONVEYOR_BENCH_POSTGRES_URL", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["source"], json!("postgres"), "{r}");
        assert_eq!(r["silver_rows"], json!(1000), "{r}");
        assert_eq!(
            (&r["incremental_rows_read"], &r["incremental_updated"]),
            (&json!(10), &json!(10)),
            "{r}"
        );
    })
    .await;
    // Without the URL: a clear error.
    let out = conveyor()
        .args(["bench", "sync", "--source", "postgres", "--rows", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CONVEYOR_BENCH_POSTGRES_URL"),
        "{}",
        show(&out)
    );
}

/// The lakehouse on S3 (an S3-compatible server at `CONVEYOR_TEST_S3_URL`, e.g. moto or
/// MinIO): the demo syncs, answers SQL, and an update reaches silver, gold's inputs and the
/// index, all through the S3 wire protocol.
#[tokio::test]
async fn the_lakehouse_works_on_s3() {
    let Ok(endpoint) = std::env::var("CONVEYOR_TEST_S3_URL") else {
        eprintln!("skipped: CONVEYOR_TEST_S3_URL not set");
        return;
    };
    let bucket = unique_bucket();
    // CreateBucket: a plain PUT (the test server does not check signatures).
    let res = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "creating bucket {bucket}: {res:?}"
    );
    demo_on_object_store(
        &format!(
            "uri = \"s3://{bucket}/lake\"\nstorage = {{ AWS_ENDPOINT_URL = \"{endpoint}\", AWS_ALLOW_HTTP = \"true\", AWS_REGION = \"us-east-1\" }}"
        ),
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
}

/// The lakehouse on Google Cloud Storage (a server of its JSON and XML APIs at
/// `CONVEYOR_TEST_GCS_URL`, e.g. the fake-gcs-server fork that object_store's CI runs with
/// `-scheme http -public-host HOST:PORT`): the same demo through the GCS client. Upstream
/// fake-gcs-server 1.54 lists but refuses plain XML uploads, and gcp-storage-emulator does not
/// list, so neither passes.
#[tokio::test]
async fn the_lakehouse_works_on_gcs() {
    let Ok(endpoint) = std::env::var("CONVEYOR_TEST_GCS_URL") else {
        eprintln!("skipped: CONVEYOR_TEST_GCS_URL not set");
        return;
    };
    let bucket = unique_bucket();
    gcs_create_bucket(&endpoint, &bucket).await;
    let creds = gcs_emulator_credentials();
    demo_on_object_store(
        &format!(
            "uri = \"gs://{bucket}/lake\"\nstorage = {{ GOOGLE_BASE_URL = \"{endpoint}\", GOOGLE_ALLOW_HTTP = \"true\" }}"
        ),
        &[("GOOGLE_SERVICE_ACCOUNT", creds.path().to_str().unwrap())],
    );
}

/// A service-account file that turns OAuth off (object_store's switch for emulators), to be
/// named by GOOGLE_SERVICE_ACCOUNT in the environment as a real key file would be. (The
/// `google_skip_signature` option is not enough: object_store 0.13 still asks the metadata
/// server for a token before each upload.)
fn gcs_emulator_credentials() -> tempfile::NamedTempFile {
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        creds.path(),
        json!({ "private_key": "", "private_key_id": "", "client_email": "", "disable_oauth": true })
            .to_string(),
    )
    .unwrap();
    creds
}

/// Creates a bucket through buckets.insert of the JSON API (emulators do not check
/// credentials).
async fn gcs_create_bucket(endpoint: &str, bucket: &str) {
    let res = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .json(&json!({ "name": bucket }))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "creating bucket {bucket}: {res:?}"
    );
}

/// Reading the lakehouse from Google Cloud Storage: the demo's tables, written locally, are
/// uploaded through the JSON API of the server at `CONVEYOR_TEST_GCS_READ_URL` (or
/// `CONVEYOR_TEST_GCS_URL`), then `conveyor sql` lists the layers, finds the Delta logs and
/// reads silver and gold through the GCS client. This runs against fake-gcs-server 1.54, which
/// serves the XML listing and downloads but not the XML uploads that writing needs
/// (`the_lakehouse_works_on_gcs` covers those).
#[tokio::test]
async fn the_lakehouse_reads_from_gcs() {
    let Ok(endpoint) = std::env::var("CONVEYOR_TEST_GCS_READ_URL")
        .or_else(|_| std::env::var("CONVEYOR_TEST_GCS_URL"))
    else {
        eprintln!("skipped: neither CONVEYOR_TEST_GCS_READ_URL nor CONVEYOR_TEST_GCS_URL set");
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let bucket = unique_bucket();
    gcs_create_bucket(&endpoint, &bucket).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let cfg = dir.join("conveyor.toml");
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .arg("sync")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Every file of the local lake, as `lake/<layer>/<table>/…` objects (objects.insert).
    let lake = dir.join("data/lake");
    let client = reqwest::Client::new();
    let mut files = vec![lake.clone()];
    let mut uploaded = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path.strip_prefix(&lake).unwrap().to_str().unwrap();
        let res = client
            .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
            .query(&[("uploadType", "media"), ("name", &format!("lake/{rel}"))])
            .header("content-type", "application/octet-stream")
            .body(std::fs::read(&path).unwrap())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "uploading {rel}: {res:?}");
        uploaded += 1;
    }
    assert!(uploaded > 10, "{uploaded} files");
    std::fs::remove_dir_all(&lake).unwrap();
    set_lakehouse(
        &cfg,
        &format!(
            "uri = \"gs://{bucket}/lake\"\nstorage = {{ GOOGLE_BASE_URL = \"{endpoint}\", GOOGLE_ALLOW_HTTP = \"true\" }}"
        ),
    );
    let creds = gcs_emulator_credentials();
    let sql = |query: &str| {
        let out = conveyor()
            .arg("--config")
            .arg(&cfg)
            .args(["sql", query, "--format", "csv"])
            .env("GOOGLE_SERVICE_ACCOUNT", creds.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{query}: {}", show(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("ERROR"),
            "{query}: {}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(sql("SELECT count(*) AS n FROM silver.orders"), "n\n60\n");
    assert_eq!(
        sql("SELECT count(*) AS n FROM products WHERE product_id = 'PRD-002'"),
        "n\n1\n"
    );
    let text = sql("SELECT plan FROM gold.revenue_by_plan ORDER BY plan");
    assert_eq!(text, "plan\nenterprise\npro\nstarter\n");
    // Nothing came back to a local lake folder.
    assert!(!lake.exists());
}

/// Azurite's well-known account and key (public, the same in every installation).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The lakehouse on Azure Blob Storage (Azurite's blob service at `CONVEYOR_TEST_AZURE_URL`):
/// the same demo through the Azure client, with the account key from the environment.
#[tokio::test]
async fn the_lakehouse_works_on_azure() {
    let Ok(endpoint) = std::env::var("CONVEYOR_TEST_AZURE_URL") else {
        eprintln!("skipped: CONVEYOR_TEST_AZURE_URL not set");
        return;
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let container = unique_bucket();
    azurite_create_container(&endpoint, &container).await;
    // The emulator mode of the Azure client addresses Azurite's path-style URLs; it reads the
    // blob endpoint from AZURITE_BLOB_STORAGE_URL.
    demo_on_object_store(
        &format!(
            "uri = \"az://{container}/lake\"\nstorage = {{ AZURE_STORAGE_USE_EMULATOR = \"true\", AZURE_STORAGE_ACCOUNT_NAME = \"{AZURITE_ACCOUNT}\" }}"
        ),
        &[
            ("AZURITE_BLOB_STORAGE_URL", &endpoint),
            ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ],
    );
}

/// Creates a container in Azurite: `PUT /ACCOUNT/CONTAINER?restype=container`, signed with
/// the account key (Shared Key authorization, as every Azure Storage request is).
async fn azurite_create_container(endpoint: &str, container: &str) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    // VERB, eleven standard headers (all empty here), the x-ms- headers, the resource.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    let res = reqwest::Client::new()
        .put(format!(
            "{endpoint}/{AZURITE_ACCOUNT}/{container}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header(
            "authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "creating container {container}: {status} {}",
        res.text().await.unwrap_or_default()
    );
}

/// A bucket or container name that no other run uses (lower case, letters and digits).
fn unique_bucket() -> String {
    format!(
        "conveyor-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The demo on an object store: `conveyor init`, the `[lakehouse] uri` line replaced by
/// `lakehouse` (uri and storage), then sync, SQL, an update that reaches silver and the index,
/// and an answer citing the updated row; `env` goes to every command (the credentials).
fn demo_on_object_store(lakehouse: &str, env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let cfg = dir.join("conveyor.toml");
    set_lakehouse(&cfg, lakehouse);
    let run = |args: &[&str]| {
        let out = conveyor()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("ERROR"),
            "{args:?}: {}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["sync"]);
    assert!(text.contains("orders: read 60 rows"), "{text}");
    assert!(text.contains("gold.revenue_by_plan: built"), "{text}");
    let text = run(&[
        "sql",
        "SELECT count(*) AS n FROM silver.orders",
        "--format",
        "csv",
    ]);
    assert_eq!(text, "n\n60\n");
    crate::common::give_demo_product_priority_support(&dir);
    let text = run(&["sync", "products"]);
    assert!(text.contains("1 updated"), "{text}");
    assert!(text.contains("products: indexed 1 changed rows"), "{text}");
    let text = run(&["ask", "Which plan has priority support?"]);
    assert!(text.contains("silver.products#PRD-002"), "{text}");
    // Nothing was written to a local lake folder.
    assert!(!dir.join("data/lake").exists());
}

/// Replaces the `uri = "data/lake"` line of a `conveyor init` config with `lakehouse`.
fn set_lakehouse(cfg: &Path, lakehouse: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let uri_line = text
        .lines()
        .find(|l| l.starts_with("uri = \"data/lake\""))
        .unwrap()
        .to_string();
    std::fs::write(cfg, text.replace(&uri_line, lakehouse)).unwrap();
}

/// `format = "markdown"`: a folder of documents becomes `silver.NAME` (one row per file:
/// path, title, text) and, with `[index]`, searchable documents; an edited file changes its
/// row and document, a removed file removes both.
#[tokio::test]
async fn a_folder_of_markdown_files_is_a_table_and_a_searchable_source() {
    use conveyor::config::Config;
    use conveyor::connectors::feed;
    use conveyor::knowledge::Knowledge;

    let lab = Lab::new().await;
    let config = Config::from_toml("", "test config", lab.dir.path(), &[]).unwrap();
    let knowledge = Knowledge::open(&config.index, &config.base_dir).unwrap();
    let indexer = knowledge.indexer();
    let retriever = knowledge.retriever();
    lab.write(
        "wiki/refunds.md",
        "# Refund policy\n\nRefunds are granted within 30 days for unused seats.\n",
    );
    lab.write(
        "wiki/ops/oncall.md",
        "Intro line.\n\n## On-call rota\n\nThe pager rotates every Tuesday at noon.\n",
    );
    lab.write("wiki/ignored.txt", "not markdown");
    let def = lab.connector(
        "wiki",
        "path = \"wiki\"\nformat = \"markdown\"\nprimary_key = \"path\"\n[index]\ntitle = \"title\"\ntext = [\"text\"]\n",
    );
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!(r.inserted, 2, "{r:?}");
    assert_eq!(
        lab.rows("SELECT path, title FROM silver.wiki ORDER BY path")
            .await,
        vec![
            json!({"path": "ops/oncall.md", "title": "On-call rota"}),
            json!({"path": "refunds.md", "title": "Refund policy"}),
        ]
    );
    let feed = || async {
        feed::run(
            &lab.store,
            &lab.lake,
            &indexer,
            knowledge.index.as_ref(),
            &def,
        )
        .await
        .unwrap()
        .unwrap()
    };
    assert_eq!(feed().await.documents, 2);
    let hits = retriever
        .retrieve("pager rotates Tuesday", 5)
        .await
        .unwrap();
    assert_eq!(hits[0].payload.source, "silver.wiki#ops/oncall.md");
    assert_eq!(hits[0].payload.title, "On-call rota");

    lab.write(
        "wiki/ops/oncall.md",
        "## On-call rota\n\nThe pager now rotates every Friday.\n",
    );
    std::fs::remove_file(lab.path("wiki/refunds.md")).unwrap();
    let r = lab.sync(&def).await;
    ok(&r);
    assert_eq!((r.updated, r.deleted), (1, 1), "{r:?}");
    let f = feed().await;
    assert_eq!((f.mode, f.documents, f.removed), ("changes", 1, 1), "{f:?}");
    assert!(
        retriever
            .retrieve("refunds unused seats", 5)
            .await
            .unwrap()
            .is_empty()
    );
    let hits = retriever.retrieve("pager Friday", 5).await.unwrap();
    assert_eq!(hits[0].payload.source, "silver.wiki#ops/oncall.md");
}

/// Gold models written inline in the config (`[connectors.models]`) build like model files;
/// a name defined both ways, or a bad name, is a clear error.
#[test]
fn inline_gold_models_build_beside_model_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let cfg = dir.join("conveyor.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{base}\n[connectors.models]\npaid_orders = \"SELECT order_id, total_usd FROM orders WHERE status = 'paid'\"\n"
        ),
    )
    .unwrap();
    let out = run_cli(&cfg, &["sync"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gold.paid_orders: built"), "{}", show(&out));
    assert!(
        text.contains("gold.revenue_by_plan: built"),
        "{}",
        show(&out)
    );
    let out = run_cli(
        &cfg,
        &[
            "sql",
            "SELECT (SELECT count(*) FROM gold.paid_orders) - (SELECT count(*) FROM orders WHERE status = 'paid') AS diff",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "diff\n0\n",
        "{}",
        show(&out)
    );

    // Defined twice: as a file and inline.
    std::fs::write(
        &cfg,
        format!("{base}\n[connectors.models]\nrevenue_by_plan = \"SELECT 1 AS x\"\n"),
    )
    .unwrap();
    let out = run_cli(&cfg, &["sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`revenue_by_plan` is defined twice") && err.contains("revenue_by_plan.sql"),
        "{}",
        show(&out)
    );
    // A name that cannot be a table.
    std::fs::write(
        &cfg,
        format!("{base}\n[connectors.models]\n\"Bad-Name\" = \"SELECT 1 AS x\"\n"),
    )
    .unwrap();
    let out = run_cli(&cfg, &["sync"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connectors.models.Bad-Name"),
        "{}",
        show(&out)
    );
}
