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

/// A 2×2 PNG (real, with CR, LF and NUL bytes in it, which a careless upload would mangle).
pub const PNG: [u8; 76] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x13, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xc0,
    0x00, 0xc2, 0x0c, 0xff, 0x79, 0xb9, 0xa4, 0x00, 0x1a, 0x49, 0x03, 0x2f, 0x56, 0x0d, 0x99, 0xd2,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The alt text of [`png_file`].
pub const PNG_ALT: &str = "Revenue by month: 10k in January rising to 14k in March";

/// The CSV of [`csv_file`].
pub const CSV: &str =
    "month,revenue\r\n2025-01,10000.00\r\n2025-02,12000.50\r\n2025-03,14000.00\r\n";

/// A chart as a reply carries it.
pub fn png_file() -> conveyor::channels::chat::OutFile {
    conveyor::channels::chat::OutFile {
        name: "revenue.png".into(),
        mime: "image/png".into(),
        alt: Some(PNG_ALT.into()),
        bytes: PNG.to_vec(),
    }
}

/// A table as a reply carries it.
pub fn csv_file() -> conveyor::channels::chat::OutFile {
    conveyor::channels::chat::OutFile {
        name: "revenue.csv".into(),
        mime: "text/csv".into(),
        alt: None,
        bytes: CSV.as_bytes().to_vec(),
    }
}

/// An answer with `text`, then a PNG (with alt text) and a CSV.
pub fn reply_with_files(text: &str) -> conveyor::channels::chat::Reply {
    let mut reply =
        conveyor::channels::chat::Reply::text(conveyor::channels::chat::ReplyKind::Answer, text);
    reply.files = vec![png_file(), csv_file()];
    reply
}

/// An answer with `text` and a file of `size` bytes named `huge.csv`.
pub fn reply_with_file_of(text: &str, size: usize) -> conveyor::channels::chat::Reply {
    let mut reply =
        conveyor::channels::chat::Reply::text(conveyor::channels::chat::ReplyKind::Answer, text);
    reply.files = vec![conveyor::channels::chat::OutFile {
        name: "huge.csv".into(),
        mime: "text/csv".into(),
        alt: None,
        bytes: vec![b'x'; size],
    }];
    reply
}

/// The `conveyor init` demo in a temp folder; with `synced`, its data loaded by
/// `conveyor sync` (BI questions need the tables).
pub async fn demo(synced: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    if synced {
        let out = conveyor()
            .current_dir(dir.path())
            .arg("sync")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    dir
}
