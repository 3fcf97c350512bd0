//! `conveyor sync`, `optimize`, `runs` and `sql`: connector runs into the lakehouse, table
//! maintenance, run history and read-only SQL.

use std::path::Path;
use std::process::ExitCode;

use super::SqlFormat;
use crate::config::Config;
use crate::{Error, Result};

/// `conveyor sync [NAME]`: one run per connector, in name order; a failed run does not stop
/// the others, but makes the exit code non-zero. Then the gold models, then the index feed of
/// connectors with `[index]` (`connectors::pipeline`). The index is opened only when some
/// connector has `[index]`; when another process (`serve`) holds it, the feed says so and the
/// next sync catches up.
/// Every connector of the config and those a command names (all of them without a name);
/// no connectors at all, or an unknown name, is an error that says what there is.
pub(super) fn connectors_named(
    config: &Config,
    only: Option<&str>,
) -> Result<(
    Vec<crate::connectors::Definition>,
    Vec<crate::connectors::Definition>,
)> {
    let dir = config.connectors_dir();
    let all = crate::connectors::load_dir(&dir, &config.base_dir)?;
    if all.is_empty() {
        return Err(Error::BadInput(format!(
            "there are no connectors in {}; add one file per connector there, e.g. orders.toml with name, kind = \"files\", path, format and primary_key",
            dir.display()
        )));
    }
    let mut defs = all.clone();
    if let Some(name) = only {
        defs.retain(|d| d.name == name);
        if defs.is_empty() {
            let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
            return Err(Error::NotFound(format!(
                "no connector is named `{name}`; the connectors in {} are: {}",
                dir.display(),
                names.join(", ")
            )));
        }
    }
    Ok((all, defs))
}

pub(super) async fn sync(
    config_path: &Path,
    only: Option<&str>,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    use crate::connectors::pipeline::{IndexAccess, Pipeline};
    let config = Config::load(config_path)?;
    let (all, defs) = connectors_named(&config, only)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let lake = crate::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let pipeline = Pipeline {
        store: &store,
        lake: &lake,
        settings: &config.run_settings(),
        index: IndexAccess::OpenWhenNeeded,
        progress: !json,
        full,
        feed_all: false,
    };
    let report = pipeline.run(&defs, &all, &Printer { json }, &|| true).await;
    store.close().await;
    let report = report?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "runs": report.runs,
                "index": report.index,
                "gold": report.gold,
                "peak_rss_bytes": crate::bench::peak_rss_bytes(),
            }))
            .unwrap_or_default()
        );
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) async fn optimize(
    config_path: &Path,
    only: Option<&str>,
    retain: Option<std::time::Duration>,
    json: bool,
) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let (_, defs) = connectors_named(&config, only)?;
    let lake = crate::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let mut all = Vec::new();
    let mut failed = false;
    for def in &defs {
        match lake.optimize(&def.name, &def.cluster_by, retain).await {
            Ok(tables) => {
                for t in &tables {
                    if !json {
                        out!(
                            "{}.{}: {}: {} files rewritten into {}, {} old files vacuumed, version {}",
                            t.layer.as_str(),
                            t.name,
                            t.how,
                            t.files_removed,
                            t.files_added,
                            t.files_vacuumed,
                            t.version.map(|v| v.to_string()).unwrap_or_default()
                        );
                    }
                }
                all.extend(tables);
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", def.name);
            }
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints each step of `conveyor sync` as it ends (results on stdout unless `--json`,
/// problems on stderr).
pub(super) struct Printer {
    json: bool,
}

impl crate::connectors::pipeline::Events for Printer {
    fn run_done(&self, report: &crate::connectors::sync::SyncReport) {
        if !self.json {
            print_sync_report(report);
        }
    }

    fn not_run(&self, def: &crate::connectors::Definition, error: &Error) {
        eprintln!("{}: not run: {error}", def.name);
    }

    fn gold_done(&self, reports: &[crate::connectors::gold::GoldReport]) {
        use crate::connectors::gold::GoldStatus;
        if self.json {
            return;
        }
        for g in reports {
            match &g.status {
                GoldStatus::Built { version, rows } => out!(
                    "gold.{}: built, {rows} rows, version {version} ({:.2}s)",
                    g.model,
                    g.seconds
                ),
                GoldStatus::Unchanged { version } => {
                    out!("gold.{}: unchanged (version {version})", g.model);
                }
                GoldStatus::Waiting { table } => out!(
                    "gold.{}: waiting for {table} (its connector has not run yet)",
                    g.model
                ),
                GoldStatus::Failed { error } => out!("gold.{}: failed: {error}", g.model),
            }
        }
    }

    fn index_unavailable(&self, error: &Error) {
        eprintln!(
            "index feed: not run: {error}\n  The data was synced; the next `conveyor sync` indexes what changed."
        );
    }

    fn fed(&self, r: &crate::connectors::feed::FeedReport) {
        if self.json || r.up_to_date {
            return;
        }
        if r.mode == "changes" {
            out!(
                "{}: indexed {} changed rows of silver.{} ({} chunks), removed {}",
                r.connector,
                r.documents,
                r.connector,
                r.chunks,
                r.removed
            );
        } else {
            out!(
                "{}: indexed {} rows of silver.{} ({} chunks)",
                r.connector,
                r.documents,
                r.connector,
                r.chunks
            );
        }
    }

    fn feed_failed(&self, def: &crate::connectors::Definition, error: &Error) {
        eprintln!(
            "{}: index feed failed: {error}; the next sync retries it",
            def.name
        );
    }
}

pub(super) fn print_sync_report(r: &crate::connectors::sync::SyncReport) {
    if let Some(e) = &r.error {
        out!("{}: failed after {:.2}s: {e}", r.connector, r.seconds);
        return;
    }
    out!(
        "{}: read {} rows from {} file{} ({} unchanged, {} removed) → silver.{}: {} inserted, {} updated, {} deleted{} ({:.2}s)",
        r.connector,
        r.rows_read,
        r.files_read,
        if r.files_read == 1 { "" } else { "s" },
        r.files_unchanged,
        r.files_removed,
        r.connector,
        r.inserted,
        r.updated,
        r.deleted,
        r.silver_version
            .map(|v| format!(", version {v}"))
            .unwrap_or_default(),
        r.seconds
    );
    if !r.new_columns.is_empty() {
        out!("  new columns: {}", r.new_columns.join(", "));
    }
    if !r.issues.is_empty() {
        out!("  skipped {} malformed record(s):", r.issues.len());
        for i in r.issues.iter().take(20) {
            out!("    {i}");
        }
        if r.issues.len() > 20 {
            out!(
                "    … and {} more (conveyor runs --json shows up to 100)",
                r.issues.len() - 20
            );
        }
    }
}

/// `conveyor runs [NAME]`.
pub(super) async fn runs(
    config_path: &Path,
    only: Option<&str>,
    n: usize,
    json: bool,
) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let rows = store.runs(only, n).await?;
    store.close().await;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out!("no sync runs yet; run `conveyor sync`");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<19}  {:<16} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8}  error",
        "started",
        "connector",
        "status",
        "read",
        "written",
        "deleted",
        "skipped",
        "duration"
    );
    for r in &rows {
        let started = chrono::DateTime::from_timestamp_millis(r.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let duration = r
            .finished_at
            .map(|f| format!("{:.2}s", (f - r.started_at) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        out!(
            "{started:<19}  {:<16} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8}  {}",
            r.connector,
            r.status,
            r.rows_read,
            r.rows_written,
            r.rows_deleted,
            r.rows_skipped,
            duration,
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `conveyor sql "SELECT …"`.
pub(super) async fn sql(
    config_path: &Path,
    query: &str,
    format: SqlFormat,
    limit: Option<usize>,
) -> Result<ExitCode> {
    use crate::lakehouse::OutputFormat;
    let config = Config::load(config_path)?;
    let lake = crate::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let result = lake.query(query, limit).await?;
    let format = match format {
        SqlFormat::Table => OutputFormat::Table,
        SqlFormat::Json => OutputFormat::Json,
        SqlFormat::Csv => OutputFormat::Csv,
    };
    let text = result.render(format)?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = stdout.write_all(b"\n");
        }
    }
    if result.truncated {
        eprintln!(
            "(showing the first {} rows; the result has more: add a LIMIT or a WHERE clause, or raise --limit up to lakehouse.sql_row_limit)",
            result.limit
        );
    }
    Ok(ExitCode::SUCCESS)
}
