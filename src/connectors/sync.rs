//! One sync run: claim → read what changed → bronze + silver → cursor → history.
//!
//! The order is what makes a crash harmless. The cursor is saved in the store only after the
//! lakehouse commit, in the same transaction that frees the claim; a run that dies after the
//! commit and before the cursor leaves the old cursor, so the next run reads the same source
//! objects again and merges them into silver by primary key, which changes nothing twice.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tracing::Instrument;

use super::{Definition, Progress, RowIssue};
use crate::error::{Error, Result};
use crate::lakehouse::{Lakehouse, RunWrite};
use crate::store::{RunClaim, RunOutcome, Store};

/// How many malformed records a run keeps in its history row.
const MAX_RECORDED_ISSUES: usize = 100;

/// What a run needs.
#[derive(Clone, Copy)]
pub struct SyncContext<'a> {
    /// The store (claims, cursors, history).
    pub store: &'a Store,
    /// The lakehouse the data goes to.
    pub lake: &'a Lakehouse,
    /// How long a claim holds without renewal (`connectors.run_lease`).
    pub lease: Duration,
}

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Draw a progress bar (shown only on a terminal).
    pub progress: bool,
    /// Ignore the saved cursor and read the whole source (`conveyor sync --full`): every
    /// silver row the source no longer has is deleted.
    pub full: bool,
    /// Fault injection for tests: fail right after the lakehouse commit, before the cursor
    /// is saved, as a crash there would.
    #[doc(hidden)]
    pub fail_after_commit: bool,
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// The connector.
    pub connector: String,
    /// The run id.
    pub run_id: String,
    /// Files (source objects) read.
    pub files_read: u64,
    /// Files unchanged since the last run.
    pub files_unchanged: u64,
    /// Files gone since the last run.
    pub files_removed: u64,
    /// Records read.
    pub rows_read: u64,
    /// Rows inserted into silver.
    pub inserted: u64,
    /// Rows updated in silver.
    pub updated: u64,
    /// Rows deleted from silver.
    pub deleted: u64,
    /// Columns added to silver.
    pub new_columns: Vec<String>,
    /// Malformed records (skipped).
    pub issues: Vec<RowIssue>,
    /// Silver's version after the run.
    pub silver_version: Option<i64>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Why the run failed; `None` when it succeeded.
    pub error: Option<String>,
}

/// Draws source progress on a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn total(&self, n: u64) {
        self.0.set_length(n);
    }
    fn step(&self, label: &str) {
        self.0.set_message(label.to_string());
        self.0.inc(1);
    }
}

/// Runs one connector once. A run that fails on its data or its source is recorded as failed
/// and returned with `error` set; `Err` means the run could not start (another run holds the
/// connector) or the store failed.
pub async fn run(cx: SyncContext<'_>, def: &Definition, opts: SyncOptions) -> Result<SyncReport> {
    let run_id = uuid::Uuid::now_v7().to_string();
    match cx.store.run_claim(&def.name, &run_id, cx.lease).await? {
        RunClaim::Owned => {}
        RunClaim::Busy {
            run_id: other,
            lease_until,
        } => {
            let until = chrono::DateTime::from_timestamp_millis(lease_until)
                .map(|t| t.format("%H:%M:%S UTC").to_string())
                .unwrap_or_default();
            return Err(Error::Conflict(format!(
                "`{}` is already syncing (run {other}); wait for it to finish, or, if that process died, until its claim expires at {until}",
                def.name
            )));
        }
    }
    let span = tracing::info_span!("sync", connector = %def.name, run_id = %run_id);
    let started = Instant::now();
    let mut report = SyncReport {
        connector: def.name.clone(),
        run_id: run_id.clone(),
        ..Default::default()
    };
    let result = attempt(cx, def, opts, &run_id, &mut report)
        .instrument(span.clone())
        .await;
    report.seconds = started.elapsed().as_secs_f64();
    let mut outcome = RunOutcome {
        rows_read: to_i64(report.rows_read),
        rows_written: to_i64(report.inserted + report.updated),
        rows_deleted: to_i64(report.deleted),
        rows_skipped: to_i64(report.issues.len() as u64),
        files_read: to_i64(report.files_read),
        silver_version: report.silver_version,
        error: None,
        issues: serde_json::to_value(
            report
                .issues
                .iter()
                .take(MAX_RECORDED_ISSUES)
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    };
    match result {
        Ok(cursor) => {
            cx.store
                .run_finish(&def.name, &run_id, Some(&cursor), &outcome)
                .await?;
            span.in_scope(|| {
                tracing::info!(
                    rows_read = report.rows_read,
                    inserted = report.inserted,
                    updated = report.updated,
                    deleted = report.deleted,
                    "sync finished"
                );
            });
        }
        Err(e) => {
            let message = e.to_string();
            // Recorded in the history and returned; the caller (the CLI, later the scheduler)
            // reports it, so it is logged here only at info level, not a second time as a
            // warning.
            span.in_scope(|| tracing::info!(error = %message, "sync failed"));
            outcome.error = Some(message.clone());
            cx.store
                .run_finish(&def.name, &run_id, None, &outcome)
                .await?;
            report.error = Some(message);
        }
    }
    Ok(report)
}

/// The run's work; returns the cursor to save.
async fn attempt(
    cx: SyncContext<'_>,
    def: &Definition,
    opts: SyncOptions,
    run_id: &str,
    report: &mut SyncReport,
) -> Result<serde_json::Value> {
    let cursor = if opts.full {
        None
    } else {
        cx.store.run_cursor(&def.name).await?
    };
    let bar = if opts.progress {
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} files  {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(def.name.clone());
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = Bar(bar.clone());
    let source = def.build();
    let fetched_at = chrono::Utc::now();
    let extract = source
        .extract(cursor.as_ref(), def.on_error, &progress)
        .await;
    bar.finish_and_clear();
    let extract = extract?;
    report.files_read = extract.replaced.len() as u64;
    report.files_unchanged = extract.unchanged as u64;
    report.files_removed = extract.removed.len() as u64;
    report.rows_read = extract.file_rows + extract.staged.as_ref().map_or(0, |s| s.rows);
    report.issues = extract.issues.clone();

    cx.store.run_renew(&def.name, run_id, cx.lease).await?;
    let written = cx
        .lake
        .write_run(&RunWrite {
            table: &def.name,
            run_id,
            fetched_at,
            staged: extract.staged.as_ref(),
            files: &extract.files,
            values_are_text: extract.values_are_text,
            primary_key: def.primary_key(),
            replaced: &extract.replaced,
            removed: &extract.removed,
            full: opts.full,
            listed: extract.listed.as_ref(),
            declared: &def.schema,
            source_types: &extract.column_types,
            partition_by: &def.partition_by,
        })
        .await?;
    report.inserted = written.inserted;
    report.updated = written.updated;
    report.deleted = written.deleted;
    report.new_columns = written.new_columns;
    report.silver_version = written.silver_version;
    if opts.fail_after_commit {
        return Err(Error::Internal(
            "fault injected after the lakehouse commit, before the cursor was saved".into(),
        ));
    }
    Ok(extract.cursor)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
