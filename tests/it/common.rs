//! Helpers shared by the test modules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

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
