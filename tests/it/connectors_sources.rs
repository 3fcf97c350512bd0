//! The `http` and `sql` connector kinds against real sources: a local REST API
//! (`support::rest_api`) with every pagination style, retries, 401 and the SSRF guard; SQLite
//! in a temp file always, PostgreSQL with `CONVEYOR_TEST_POSTGRES_URL` and MariaDB/MySQL with
//! `CONVEYOR_TEST_MYSQL_URL`. End to end: source → sync → `silver.NAME`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::connectors::sync::{self, SyncContext, SyncOptions};
use conveyor::connectors::{
    self, BuildContext, Definition, Env, Extract, OnError, Progress, Source,
};
use conveyor::lakehouse::{Lakehouse, LakehouseConfig, OutputFormat};
use conveyor::store::Store;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::common::{conveyor, show, with_pg_schema};
use crate::support::rest_api::{RestApi, TOKEN};

struct Quiet;
impl Progress for Quiet {
    fn total(&self, _: u64) {}
    fn step(&self, _: &str) {}
}

fn define(dir: &Path, name: &str, kind: &str, body: &str) -> Definition {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!("name = \"{name}\"\nkind = \"{kind}\"\n{body}"),
    )
    .unwrap();
    connectors::load_dir(dir, dir)
        .unwrap()
        .into_iter()
        .find(|d| d.name == name)
        .unwrap()
}

/// The definition's source, with `env` as its only environment.
fn source(def: &Definition, env: &[(&str, &str)]) -> Arc<dyn Source> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = Env::from_pairs(env);
    def.kind.build(&BuildContext {
        name: def.name.clone(),
        env: lookup,
    })
}

async fn extract(
    src: &Arc<dyn Source>,
    cursor: Option<&Value>,
) -> conveyor::error::Result<Extract> {
    src.extract(cursor, OnError::Skip, &Quiet).await
}

/// Every row a run read: the rows of the files it staged (the `sql` kind stages typed
/// Parquet; the `http` kind stages each page's records as text, read back here as JSON).
fn rows_of(x: &Extract) -> Vec<serde_json::Map<String, Value>> {
    let mut rows = Vec::new();
    for f in x.staged.iter().flat_map(|s| &s.files) {
        for mut row in
            conveyor::lakehouse::records::parquet_rows(std::fs::read(&f.path).unwrap()).unwrap()
        {
            for v in row.values_mut() {
                if let Value::String(s) = v
                    && let Ok(parsed) = serde_json::from_str::<Value>(s)
                {
                    *v = parsed;
                }
            }
            rows.push(row);
        }
    }
    for f in &x.files {
        rows.extend(
            conveyor::lakehouse::records::parquet_rows(std::fs::read(&f.path).unwrap()).unwrap(),
        );
    }
    rows
}

fn ids(x: &Extract) -> Vec<i64> {
    let mut v: Vec<i64> = rows_of(x)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    v.sort();
    v
}

fn api_records(n: i64) -> Vec<Value> {
    (1..=n)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "updated_at": format!("2026-01-0{i}T00:00:00Z")}))
        .collect()
}

#[tokio::test]
async fn http_every_pagination_style_returns_every_record_once() {
    let api = RestApi::start(api_records(7)).await;
    let dir = tempfile::tempdir().unwrap();
    let styles = [
        (
            "paged",
            "/page",
            "records = \"data\"\npagination = { type = \"page\", size = 3 }",
        ),
        (
            "offsets",
            "/offset",
            "pagination = { type = \"offset\", limit = 3 }",
        ),
        (
            "cursors",
            "/cursor",
            "records = \"/items\"\npagination = { type = \"cursor\", field = \"meta.next_cursor\" }",
        ),
        ("linked", "/link", "pagination = { type = \"link\" }"),
        ("single", "/items", "records = \"results\""),
    ];
    for (name, path, extra) in styles {
        api.clear_seen();
        let def = define(
            dir.path(),
            name,
            "http",
            &format!(
                "url = \"{}{path}\"\nprimary_key = \"id\"\nallow_private = true\nrate = \"off\"\n{extra}\n",
                api.url
            ),
        );
        let x = extract(&source(&def, &[]), None).await.unwrap();
        assert_eq!(
            ids(&x),
            (1..=7).collect::<Vec<_>>(),
            "{name}: {:?}",
            api.seen()
        );
        assert!(x.issues.is_empty(), "{name}: {:?}", x.issues);
        // A full listing: pruning applies.
        assert_eq!(x.replaced, vec![format!("{}{path}", api.url)], "{name}");
        assert!(!api.seen().is_empty());
    }
    // Page sizes were sent, and paging stopped at the short page.
    api.clear_seen();
    let def = define(
        dir.path(),
        "paged",
        "http",
        &format!(
            "url = \"{}/page\"\nprimary_key = \"id\"\nallow_private = true\nrecords = \"data\"\npagination = {{ type = \"page\", size = 3 }}\n",
            api.url
        ),
    );
    extract(&source(&def, &[]), None).await.unwrap();
    assert_eq!(
        api.seen(),
        vec![
            "/page?page=1&per_page=3",
            "/page?page=2&per_page=3",
            "/page?page=3&per_page=3"
        ]
    );
}

/// Issue 12, finding 8: a whole response was read into memory however large; in `serve` one
/// huge page could take the gateway down. A page over `max_page_bytes` fails the run instead.
#[tokio::test]
async fn http_a_page_over_max_page_bytes_fails_the_run_with_advice() {
    let api = RestApi::start(api_records(7)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "capped",
        "http",
        &format!(
            "url = \"{}/items\"\nprimary_key = \"id\"\nallow_private = true\nrate = \"off\"\nrecords = \"results\"\nmax_page_bytes = 100\n",
            api.url
        ),
    );
    let err = extract(&source(&def, &[]), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("larger than max_page_bytes (100 bytes)") && err.contains("smaller pages"),
        "{err}"
    );
    // The same API with the default cap syncs.
    let def = define(
        dir.path(),
        "uncapped",
        "http",
        &format!(
            "url = \"{}/items\"\nprimary_key = \"id\"\nallow_private = true\nrate = \"off\"\nrecords = \"results\"\n",
            api.url
        ),
    );
    assert_eq!(
        ids(&extract(&source(&def, &[]), None).await.unwrap()).len(),
        7
    );
}

#[tokio::test]
async fn http_incremental_run_fetches_only_newer_records() {
    let api = RestApi::start(api_records(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "inc",
        "http",
        &format!(
            "url = \"{}/items\"\nrecords = \"results\"\nprimary_key = \"id\"\nallow_private = true\nincremental = {{ field = \"updated_at\", param = \"updated_since\" }}\n",
            api.url
        ),
    );
    let src = source(&def, &[]);
    let first = extract(&src, None).await.unwrap();
    assert_eq!(ids(&first), vec![1, 2, 3]);
    assert_eq!(api.seen(), vec!["/items"]);
    assert_eq!(first.cursor, json!({"since": "2026-01-03T00:00:00Z"}));
    assert_eq!(first.replaced.len(), 1, "the first run is a full listing");

    let mut recs = api_records(3);
    recs[1]["updated_at"] = json!("2026-01-05T00:00:00Z");
    recs[1]["name"] = json!("renamed");
    recs.push(json!({"id": 4, "name": "new", "updated_at": "2026-01-04T00:00:00Z"}));
    api.set_records(recs);
    api.clear_seen();
    let second = extract(&src, Some(&first.cursor)).await.unwrap();
    assert_eq!(ids(&second), vec![2, 4]);
    assert_eq!(
        api.seen(),
        vec!["/items?updated_since=2026-01-03T00%3A00%3A00Z"]
    );
    assert_eq!(second.cursor, json!({"since": "2026-01-05T00:00:00Z"}));
    assert!(
        second.replaced.is_empty() && second.removed.is_empty(),
        "an incremental run cannot see deletions"
    );

    // Nothing new: the cursor stays.
    let third = extract(&src, Some(&second.cursor)).await.unwrap();
    assert!(rows_of(&third).is_empty() && third.staged.is_none());
    assert_eq!(third.cursor, second.cursor);
}

/// `incremental.full_every`: an incremental connector lists everything again once that long
/// has passed since its last full listing, so deletions at the source are seen.
#[tokio::test]
async fn http_incremental_lists_everything_again_on_its_full_every_schedule() {
    let api = RestApi::start(api_records(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "inc_full",
        "http",
        &format!(
            "url = \"{}/items\"\nrecords = \"results\"\nprimary_key = \"id\"\nallow_private = true\nincremental = {{ field = \"updated_at\", param = \"updated_since\", full_every = \"1h\" }}\n",
            api.url
        ),
    );
    let src = source(&def, &[]);
    let first = extract(&src, None).await.unwrap();
    assert_eq!(first.replaced.len(), 1, "the first run is a full listing");
    let full_at = first.cursor["full_at"].as_i64().expect("full_at kept");
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - full_at).abs() < 60_000, "{full_at} vs {now}");

    // Within the hour: incremental, no pruning, full_at unchanged.
    api.clear_seen();
    let second = extract(&src, Some(&first.cursor)).await.unwrap();
    assert_eq!(
        api.seen(),
        vec!["/items?updated_since=2026-01-03T00%3A00%3A00Z"]
    );
    assert!(second.replaced.is_empty());
    assert_eq!(second.cursor["full_at"], first.cursor["full_at"]);

    // Record 2 deleted at the source; the last full listing was two hours ago: this run lists
    // everything (no updated-since) and marks the source replaced, so silver drops record 2.
    let mut recs = api_records(3);
    recs.remove(1);
    api.set_records(recs);
    api.clear_seen();
    let stale = json!({"since": "2026-01-03T00:00:00Z", "full_at": now - 2 * 3_600_000});
    let third = extract(&src, Some(&stale)).await.unwrap();
    assert_eq!(api.seen(), vec!["/items"]);
    assert_eq!(ids(&third), vec![1, 3]);
    assert_eq!(third.replaced, vec![format!("{}/items", api.url)]);
    assert!(third.cursor["full_at"].as_i64().unwrap() > now - 60_000);
    assert_eq!(third.cursor["since"], json!("2026-01-03T00:00:00Z"));
}

#[tokio::test]
async fn http_429_and_500_are_retried_then_a_clear_error() {
    let api = RestApi::start(api_records(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "flaky",
        "http",
        &format!(
            "url = \"{}/items\"\nrecords = \"results\"\nprimary_key = \"id\"\nallow_private = true\nmax_retries = 2\n",
            api.url
        ),
    );
    let src = source(&def, &[]);
    api.fail_next(&[(500, None), (429, Some(1))]);
    let started = Instant::now();
    let x = extract(&src, None).await.unwrap();
    assert_eq!(ids(&x), vec![1, 2]);
    assert_eq!(api.seen().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );

    api.fail_next(&[(503, None), (502, None), (500, None)]);
    let err = extract(&src, None).await.unwrap_err().to_string();
    assert!(
        err.contains("connector `flaky`")
            && err.contains("failed after 3 attempts")
            && err.contains("HTTP 500"),
        "{err}"
    );
}

#[tokio::test]
async fn http_401_fails_naming_the_connector_and_variable() {
    let api = RestApi::start(api_records(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "secured",
        "http",
        &format!(
            "url = \"{}/secure\"\nrecords = \"results\"\nprimary_key = \"id\"\nallow_private = true\nauth = {{ type = \"bearer\", token_env = \"SHOP_API_TOKEN\" }}\n",
            api.url
        ),
    );
    let err = extract(&source(&def, &[("SHOP_API_TOKEN", "expired-s3cret")]), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("connector `secured`")
            && err.contains("401")
            && err.contains("SHOP_API_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("expired-s3cret"), "{err}");
    assert_eq!(api.seen().len(), 1, "a 401 is not retried");

    let x = extract(&source(&def, &[("SHOP_API_TOKEN", TOKEN)]), None)
        .await
        .unwrap();
    assert_eq!(ids(&x), vec![1, 2]);

    let err = extract(&source(&def, &[]), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SHOP_API_TOKEN") && err.contains("not set"),
        "{err}"
    );
}

#[tokio::test]
async fn http_ssrf_guard_refuses_loopback_without_allow_private() {
    let api = RestApi::start(api_records(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "internal",
        "http",
        &format!(
            "url = \"{}/items\"\nrecords = \"results\"\nprimary_key = \"id\"\n",
            api.url
        ),
    );
    let err = extract(&source(&def, &[]), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused")
            && err.contains("127.0.0.1")
            && err.contains("allow_private = true"),
        "{err}"
    );
    assert!(!err.contains("tools.allow_hosts"), "{err}");
    assert!(api.seen().is_empty(), "nothing reached the API");
}

#[tokio::test]
async fn http_sync_end_to_end_prunes_on_a_full_listing() {
    let api = RestApi::start(api_records(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let lake = Lakehouse::open(&LakehouseConfig::default(), dir.path()).unwrap();
    let cdir = dir.path().join("connectors");
    std::fs::create_dir_all(&cdir).unwrap();
    let def = define(
        &cdir,
        "api_items",
        "http",
        &format!(
            "url = \"{}/items\"\nrecords = \"results\"\nprimary_key = \"id\"\nallow_private = true\n",
            api.url
        ),
    );
    let cx = SyncContext {
        store: &store,
        lake: &lake,
        lease: Duration::from_secs(60),
    };
    let r = sync::run(cx, &def, SyncOptions::default()).await.unwrap();
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.inserted, 3);
    let mut recs = api_records(3);
    recs.remove(0);
    recs[0]["name"] = json!("renamed");
    api.set_records(recs);
    let r = sync::run(cx, &def, SyncOptions::default()).await.unwrap();
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!((r.updated, r.deleted), (1, 1), "{r:?}");
    let out = lake
        .query("SELECT id, name FROM silver.api_items ORDER BY id", None)
        .await
        .unwrap();
    let rows: Value = serde_json::from_str(&out.render(OutputFormat::Json).unwrap()).unwrap();
    assert_eq!(
        rows,
        json!([{"id": 2, "name": "renamed"}, {"id": 3, "name": "item 3"}])
    );
}

// ---------------------------------------------------------------------------------------
// sql

#[derive(Clone, Copy, PartialEq, Debug)]
enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

pub(crate) async fn exec(url: &str, statements: &[String]) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let _ = c.close().await;
}

/// Full and incremental runs, value mapping, a missing primary-key column.
async fn sql_suite(url: String, dialect: Dialect) {
    let table = format!("items_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let created_type = match dialect {
        Dialect::Postgres => "TIMESTAMP",
        Dialect::Mysql => "DATETIME",
        Dialect::Sqlite => "TEXT",
    };
    let blob = match dialect {
        Dialect::Postgres => "BYTEA",
        _ => "BLOB",
    };
    let bytes = match dialect {
        Dialect::Postgres => "'\\x0102'::bytea",
        _ => "X'0102'",
    };
    let mut stmts = vec![format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(50), price DOUBLE PRECISION, amount DECIMAL(10,2), active BOOLEAN, created {created_type}, data {blob}, version INTEGER)"
    )];
    for i in 1..=5 {
        stmts.push(format!(
            "INSERT INTO {table} VALUES ({i}, 'item {i}', {i}.5, {i}.25, {}, '2026-01-0{i} 03:04:05', {bytes}, {i})",
            if i % 2 == 0 { "TRUE" } else { "FALSE" }
        ));
    }
    stmts.push(format!("INSERT INTO {table} (id, name) VALUES (6, NULL)"));
    exec(&url, &stmts).await;

    let dir = tempfile::tempdir().unwrap();
    let env = [("TEST_DB_URL", url.as_str())];
    let full = define(
        dir.path(),
        "full",
        "sql",
        &format!(
            "url_env = \"TEST_DB_URL\"\ntable = \"{table}\"\nprimary_key = \"id\"\nbatch_size = 2\n"
        ),
    );
    let src = source(&full, &env);
    let x = extract(&src, None).await.unwrap();
    assert_eq!(ids(&x), vec![1, 2, 3, 4, 5, 6], "{dialect:?}");
    assert_eq!(x.replaced, vec![format!("table {table}")], "a full listing");
    let rows = rows_of(&x);
    let r2 = rows.iter().find(|r| r["id"] == json!(2)).unwrap();
    assert_eq!(r2["name"], json!("item 2"));
    assert_eq!(r2["price"], json!(2.5));
    assert_eq!(r2["data"], json!("AQI="), "bytes as base64");
    let r6 = rows.iter().find(|r| r["id"] == json!(6)).unwrap();
    assert_eq!(r6["name"], Value::Null);
    match dialect {
        Dialect::Sqlite => {
            assert_eq!(r2["active"], json!(true));
            assert_eq!(r2["created"], json!("2026-01-02 03:04:05"));
        }
        _ => {
            assert_eq!(r2["active"], json!(true), "{dialect:?}");
            assert_eq!(r2["amount"], json!(2.25), "decimal(10,2)");
            assert_eq!(r2["created"], json!("2026-01-02T03:04:05Z"));
        }
    }
    // The database's column types, for silver.
    use conveyor::lakehouse::ColType;
    let t = &x.column_types;
    assert_eq!(t.get("id"), Some(&ColType::Int), "{dialect:?}: {t:?}");
    assert_eq!(t.get("price"), Some(&ColType::Float), "{dialect:?}: {t:?}");
    assert_eq!(
        t.get("amount"),
        Some(&ColType::Decimal(10, 2)),
        "{dialect:?}: {t:?}"
    );
    assert_eq!(t.get("name"), Some(&ColType::Text), "{dialect:?}: {t:?}");
    assert_eq!(t.get("active"), Some(&ColType::Bool), "{dialect:?}: {t:?}");
    let created = if dialect == Dialect::Sqlite {
        ColType::Text
    } else {
        ColType::Timestamp
    };
    assert_eq!(t.get("created"), Some(&created), "{dialect:?}: {t:?}");
    // Without an incremental column every run is full (deletions detected).
    let again = extract(&src, Some(&x.cursor)).await.unwrap();
    assert_eq!(rows_of(&again).len(), 6);
    assert_eq!(again.replaced.len(), 1);

    // Incremental on `version`.
    let inc = define(
        dir.path(),
        "inc",
        "sql",
        &format!(
            "url_env = \"TEST_DB_URL\"\nquery = \"SELECT id, name, version FROM {table}\"\nprimary_key = \"id\"\nincremental_column = \"version\"\nbatch_size = 2\n"
        ),
    );
    let src = source(&inc, &env);
    let first = extract(&src, None).await.unwrap();
    assert_eq!(
        ids(&first),
        vec![1, 2, 3, 4, 5],
        "rows with a NULL version are not read"
    );
    assert_eq!(first.replaced, vec!["query".to_string()]);
    exec(
        &url,
        &[
            format!("UPDATE {table} SET name = 'renamed', version = 9 WHERE id = 2"),
            format!("INSERT INTO {table} (id, name, version) VALUES (7, 'seven', 8)"),
        ],
    )
    .await;
    let second = extract(&src, Some(&first.cursor)).await.unwrap();
    assert_eq!(ids(&second), vec![2, 7], "{dialect:?}");
    assert!(
        second.replaced.is_empty(),
        "an incremental run does not replace the source object"
    );
    let listed_ids = |x: &conveyor::connectors::Extract| {
        let l = x
            .listed
            .as_ref()
            .expect("an incremental run lists every key");
        assert_eq!(l.source, "query");
        let file = l.file.as_ref().expect("the keys are staged");
        let rows =
            conveyor::lakehouse::records::parquet_rows(std::fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(l.rows, rows.len() as u64);
        let mut ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        listed_ids(&second),
        vec![1, 2, 3, 4, 5, 6, 7],
        "{dialect:?}"
    );
    assert!(
        first.listed.is_none(),
        "a full listing needs no key listing"
    );
    // Row 3 deleted at the source: nothing new to read, and the key listing lacks it.
    exec(&url, &[format!("DELETE FROM {table} WHERE id = 3")]).await;
    let third = extract(&src, Some(&second.cursor)).await.unwrap();
    assert!(rows_of(&third).is_empty());
    assert_eq!(listed_ids(&third), vec![1, 2, 4, 5, 6, 7], "{dialect:?}");

    // A missing primary-key column fails cleanly, naming the table and the column.
    let bad = define(
        dir.path(),
        "bad",
        "sql",
        &format!("url_env = \"TEST_DB_URL\"\ntable = \"{table}\"\nprimary_key = \"sku\"\n"),
    );
    let err = extract(&source(&bad, &env), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("table {table}"))
            && err.contains("`sku`")
            && err.contains("primary_key"),
        "{err}"
    );
    if dialect != Dialect::Sqlite {
        exec(&url, &[format!("DROP TABLE {table}")]).await;
    }
}

#[tokio::test]
async fn sql_sqlite_full_incremental_and_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shop.db").display());
    sql_suite(url, Dialect::Sqlite).await;
}

#[tokio::test]
async fn sql_postgres_full_incremental_and_missing_key() {
    with_pg_schema(|url| async move { sql_suite(url, Dialect::Postgres).await }).await;
}

#[tokio::test]
async fn sql_mysql_full_incremental_and_missing_key() {
    let Ok(url) = std::env::var("CONVEYOR_TEST_MYSQL_URL") else {
        eprintln!("skipped: CONVEYOR_TEST_MYSQL_URL not set");
        return;
    };
    sql_suite(url, Dialect::Mysql).await;
}

#[tokio::test]
async fn sql_unreachable_database_names_host_port_but_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let def = define(
        dir.path(),
        "gone",
        "sql",
        "url_env = \"GONE_URL\"\ntable = \"t\"\nprimary_key = \"id\"\n",
    );
    for url in [
        "postgres://app:hunter2secret@127.0.0.1:1/shop",
        "mysql://app:hunter2secret@127.0.0.1:1/shop",
    ] {
        let err = extract(&source(&def, &[("GONE_URL", url)]), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("127.0.0.1:1") && err.contains("GONE_URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2secret"), "{err}");
    }
    let err = extract(&source(&def, &[]), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("GONE_URL") && err.contains("not set"), "{err}");
}

/// SQLite → `conveyor sync` → silver, through the CLI (the URL comes from the environment);
/// an update and a deletion at the source reach silver.
#[test]
fn sql_sync_end_to_end_update_and_deletion_reach_silver() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let cfg = dir.join("conveyor.toml");
    let db = dir.join("shop.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(exec(
        &url,
        &[
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, seats INTEGER)".into(),
            "INSERT INTO accounts VALUES (1, 'Ada', 3), (2, 'Bob', 5), (3, 'Cy', 7)".into(),
        ],
    ));
    std::fs::write(
        dir.join("connectors/accounts.toml"),
        "name = \"accounts\"\nkind = \"sql\"\nurl_env = \"SHOP_DB_URL\"\ntable = \"accounts\"\nprimary_key = \"id\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        conveyor()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("SHOP_DB_URL", &url)
            .output()
            .unwrap()
    };
    let out = run(&["sync", "accounts"]);
    assert!(out.status.success(), "{}", show(&out));
    let query = "SELECT count(*) AS n, sum(seats) AS seats FROM silver.accounts";
    let out = run(&["sql", query, "--format", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!([{"n": 3, "seats": 15}]), "{}", show(&out));

    rt.block_on(exec(
        &url,
        &[
            "UPDATE accounts SET seats = 10 WHERE id = 2".into(),
            "DELETE FROM accounts WHERE id = 3".into(),
        ],
    ));
    let out = run(&["sync", "accounts"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = run(&["sql", query, "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!([{"n": 2, "seats": 13}]), "{}", show(&out));

    // Without the variable the run fails naming it.
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args(["sync", "accounts"])
        .output()
        .unwrap();
    let text = show(&out);
    assert!(text.contains("SHOP_DB_URL"), "{text}");
}

/// PostgreSQL lists integer and text keys with `COPY`: keys with tabs, backslashes, newlines
/// and non-ASCII text are listed exactly as the row path reads them (else a re-sync would
/// delete them from silver), in a composite key; a key type `COPY` is not used for (a date) is
/// still listed, in keyset pages.
#[tokio::test]
async fn sql_postgres_key_listing_keeps_text_keys_exact() {
    with_pg_schema(|url| async move {
        let table = format!("keys_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        exec(
            &url,
            &[
                format!("CREATE TABLE {table} (code TEXT, n BIGINT, d DATE NOT NULL, version INTEGER, PRIMARY KEY (code, n))"),
                format!(
                    "INSERT INTO {table} VALUES \
                     (E'tab\\there', 1, '2024-01-01', 1), \
                     (E'back\\\\slash', 2, '2024-01-02', 1), \
                     (E'new\\nline\\r', 3, '2024-01-03', 1), \
                     ('é ☃ \\N', -4, '2024-01-04', 1), \
                     ('plain', 5, '2024-01-05', 1)"
                ),
            ],
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let env = [("TEST_DB_URL", url.as_str())];
        let listed = |x: &conveyor::connectors::Extract, key: &[&str]| {
            let l = x.listed.as_ref().expect("an incremental run lists every key");
            let file = l.file.as_ref().expect("the keys are staged");
            let rows = conveyor::lakehouse::records::parquet_rows(std::fs::read(&file.path).unwrap())
                .unwrap();
            assert_eq!(l.rows, rows.len() as u64);
            let mut keys: Vec<String> = rows
                .iter()
                .map(|r| key.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>().join("|"))
                .collect();
            keys.sort();
            keys
        };
        for (name, key) in [("composite", vec!["code", "n"]), ("by_date", vec!["d"])] {
            let def = define(
                dir.path(),
                name,
                "sql",
                &format!(
                    "url_env = \"TEST_DB_URL\"\ntable = \"{table}\"\nprimary_key = [{}]\nincremental_column = \"version\"\n",
                    key.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
                ),
            );
            let src = source(&def, &env);
            let first = extract(&src, None).await.unwrap();
            let mut read: Vec<String> = rows_of(&first)
                .iter()
                .map(|r| key.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>().join("|"))
                .collect();
            read.sort();
            assert_eq!(read.len(), 5);
            let second = extract(&src, Some(&first.cursor)).await.unwrap();
            assert!(rows_of(&second).is_empty());
            assert_eq!(listed(&second, &key), read, "{name}");
        }
        exec(&url, &[format!("DROP TABLE {table}")]).await;
    })
    .await;
}
