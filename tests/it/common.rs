//! Helpers shared by the test modules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::process::{Command, Output, Stdio};

use sqlx::Connection;

/// Runs `body` with a PostgreSQL URL whose `search_path` is a fresh schema, then drops the
/// schema (also when `body` panics, whose panic is then passed on). Tests run in parallel in
/// one database, so each gets a schema of its own, selected through the `options` startup
/// parameter that every pooled connection sends.
///
/// Returns `false`, after printing `skipped: …`, when `CONVEYOR_TEST_POSTGRES_URL` is not set.
pub async fn with_pg_schema<F, Fut>(body: F) -> bool
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(base) = std::env::var("CONVEYOR_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CONVEYOR_TEST_POSTGRES_URL not set");
        return false;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    // Spawned so that a failed assertion still lets us drop the schema below.
    let outcome = tokio::spawn(body(url)).await;
    // Best effort: a leftover schema is harmless.
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    true
}

/// The binary, with an environment that cannot leak the developer's settings into the test.
pub fn conveyor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CONVEYOR") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Status, stdout and stderr of a finished command, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Changes one row of the `conveyor init` demo's products (PRD-002's description gains
/// "with priority support"), for tests of updates reaching silver and the index.
pub fn give_demo_product_priority_support(demo: &std::path::Path) {
    let file = demo.join("data/products.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("billed monthly", "billed monthly, with priority support"),
    )
    .unwrap();
}
