//! Scheduled connector runs inside `serve`.
//!
//! `serve` starts a [`Scheduler`] when some connector has a cron `schedule` (five fields, or
//! six with seconds first; evaluated in UTC). It sleeps until the earliest next fire time,
//! then runs the due connectors through the same [`Pipeline`] as `conveyor sync`: the runs in
//! name order, then the gold models, then the index feed into the index `serve` already holds
//! (of every connector with `[index]`: a table that a `conveyor sync` changed while `serve`
//! held the index is indexed by the next scheduled pass).
//!
//! - One run per connector at a time: each run takes the connector's claim in the store, so a
//!   `conveyor sync` running at the same moment (or another `serve`) wins or loses cleanly; a
//!   busy connector is skipped with an info line and runs again at its next fire time.
//!   Fire times that pass while a pass is running are not queued up: they become one run,
//!   right after.
//! - A failed run is recorded in the run history (by `sync::run`) and logged as a warning; it
//!   does not stop the other connectors.
//! - Catch-up: at start, a connector whose most recent fire time passed after its last run
//!   (serve was down then) runs once right away — one run, however many fire times were
//!   missed. A connector that has never run is not caught up; it runs at its next fire time
//!   (or with `conveyor sync NAME`).
//! - The definitions are read once at start: a restart picks up changed schedules.
//! - On shutdown no new run starts; a run in progress finishes within the server's drain
//!   timeout or is abandoned, and its claim expires after `connectors.run_lease`.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::gold::{GoldReport, GoldStatus};
use super::pipeline::{Events, IndexAccess, Pipeline, PipelineReport};
use super::sync::SyncReport;
use super::{Definition, RunSettings};
use crate::error::{Error, Result};
use crate::knowledge::Knowledge;
use crate::lakehouse::Lakehouse;
use crate::metrics::Metrics;
use crate::store::Store;

/// Parses a connector `schedule` and checks that it can fire, or says what is wrong with it:
/// [`parse_pattern`], and a next run within [`FIRES_WITHIN_YEARS`] years (`0 0 30 2 *`,
/// 30 February, never fires). Run once, when the definition is loaded.
pub fn parse_schedule(text: &str) -> std::result::Result<croner::Cron, String> {
    let cron = parse_pattern(text)?;
    // With every field non-empty, the search steps at most by days; a pattern that matches
    // no date (30 February) is walked year by year, which is quick, and found out here.
    let now = Utc::now();
    let horizon = now + chrono::Duration::days(366 * FIRES_WITHIN_YEARS);
    match cron.find_next_occurrence(&now, false) {
        Ok(next) if next <= horizon => Ok(cron),
        _ => Err(format!(
            "it never fires in the next {FIRES_WITHIN_YEARS} years (a date that does not exist, like 30 February?)"
        )),
    }
}

/// Parses a schedule and refuses the patterns croner accepts that match no time at all (an
/// empty item in a list such as `, * * * *` leaves the minute field with no value):
/// searching for their next run walks minute by minute to the year 5000, minutes of CPU.
/// Cheap (no search), so every next/previous-run lookup goes through it.
pub fn parse_pattern(text: &str) -> std::result::Result<croner::Cron, String> {
    use std::str::FromStr;
    for (i, field) in text.split_whitespace().enumerate() {
        if field.split(',').any(str::is_empty) {
            return Err(format!(
                "field {} (`{field}`) has an empty item in its list; write the values separated by single commas, like \"0,30\"",
                i + 1
            ));
        }
    }
    let cron = croner::Cron::from_str(text).map_err(|e| e.to_string())?;
    let p = &cron.pattern;
    for (name, component) in [
        ("seconds", &p.seconds),
        ("minutes", &p.minutes),
        ("hours", &p.hours),
        ("months", &p.months),
    ] {
        if component.values().is_empty() {
            return Err(format!("the {name} field matches no value"));
        }
    }
    let days = p.days.values().is_empty() && !p.days.has_modifiers();
    let weekdays = p.days_of_week.values().is_empty() && !p.days_of_week.has_modifiers();
    if days && weekdays {
        return Err("the day-of-month and day-of-week fields match no day".into());
    }
    Ok(cron)
}

/// How far ahead [`parse_schedule`] looks for a schedule's next run.
pub const FIRES_WITHIN_YEARS: i64 = 10;

/// The longest the scheduler sleeps before looking at the clock again, so a wall clock that
/// jumps (a suspended machine, a corrected clock) delays a run by at most this much.
const MAX_NAP: Duration = Duration::from_secs(60);

/// Which connectors the scheduler of this process runs; shared with `GET /v1/connectors`.
#[derive(Debug, Default)]
pub struct ScheduleStatus {
    scheduled: OnceLock<BTreeSet<String>>,
}

impl ScheduleStatus {
    /// Whether the scheduler of this process runs `connector` on its schedule.
    pub fn runs(&self, connector: &str) -> bool {
        self.scheduled
            .get()
            .is_some_and(|names| names.contains(connector))
    }
}

/// What the scheduler of a running server works with: the parts of the app it needs, handed
/// over by whoever starts it (so the connectors do not depend on the composition root).
pub struct SchedulerParts<'a> {
    /// The state store (claims, cursors, run history).
    pub store: &'a Store,
    /// The lakehouse the runs write to.
    pub lake: &'a Lakehouse,
    /// The configuration (connectors folder, run lease, index).
    pub settings: RunSettings,
    /// The index the server holds open; the feed writes into it.
    pub knowledge: &'a Knowledge,
    /// The server's metrics, whose index size gauge follows the feed.
    pub metrics: &'a Arc<Metrics>,
    /// Told which connectors the scheduler runs (`GET /v1/connectors` reads it).
    pub status: &'a ScheduleStatus,
}

/// Runs connectors on their cron schedules.
pub struct Scheduler {
    store: Store,
    lake: Lakehouse,
    settings: Arc<RunSettings>,
    knowledge: Option<Knowledge>,
    /// Every definition (gold models may read any connector's table).
    defs: Vec<Definition>,
    /// The server's metrics, whose index size gauge follows the feed.
    metrics: Option<Arc<Metrics>>,
}

impl Scheduler {
    /// A scheduler over `defs`. With `knowledge`, the index feed writes into that open index;
    /// without, it opens the configured index when a due connector has `[index]`.
    pub fn new(
        store: Store,
        lake: Lakehouse,
        settings: Arc<RunSettings>,
        knowledge: Option<Knowledge>,
        defs: Vec<Definition>,
    ) -> Self {
        Self {
            store,
            lake,
            settings,
            knowledge,
            defs,
            metrics: None,
        }
    }

    /// The scheduler of a running server, over the definitions in `connectors.dir` as they
    /// are now; `None` when no connector has a schedule. `parts.status` learns which
    /// connectors it runs.
    pub fn for_server(parts: SchedulerParts<'_>) -> Result<Option<Self>> {
        let defs = super::load_dir(&parts.settings.dir(), &parts.settings.base_dir)?;
        let mut scheduler = Self::new(
            parts.store.clone(),
            parts.lake.clone(),
            Arc::new(parts.settings),
            Some(parts.knowledge.clone()),
            defs,
        );
        scheduler.metrics = Some(Arc::clone(parts.metrics));
        if scheduler.scheduled().next().is_none() {
            return Ok(None);
        }
        let _ = parts
            .status
            .scheduled
            .set(scheduler.scheduled().map(|d| d.name.clone()).collect());
        Ok(Some(scheduler))
    }

    /// The connectors with a schedule.
    pub fn scheduled(&self) -> impl Iterator<Item = &Definition> {
        self.defs.iter().filter(|d| d.schedule.is_some())
    }

    /// The earliest fire time after `since`, of any connector.
    pub fn next_fire(&self, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scheduled().filter_map(|d| d.next_run(since)).min()
    }

    /// The connectors with a fire time in (`since`, `now`].
    pub fn due(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<&Definition> {
        self.scheduled()
            .filter(|d| d.next_run(since).is_some_and(|t| t <= now))
            .collect()
    }

    /// The connectors whose most recent fire time at or before `now` came after the start of
    /// their last run: a run was missed. Connectors that never ran are left out.
    pub async fn missed(&self, now: DateTime<Utc>) -> Result<Vec<&Definition>> {
        let mut out = Vec::new();
        for def in self.scheduled() {
            let Some(fired) = def.previous_run(now) else {
                continue;
            };
            let Some(last) = self
                .store
                .runs(Some(&def.name), 1)
                .await?
                .into_iter()
                .next()
            else {
                continue;
            };
            if last.started_at < fired.timestamp_millis() {
                out.push(def);
            }
        }
        Ok(out)
    }

    /// Runs the connectors due in (`since`, `now`] (see [`Scheduler::due`]); `None` when none
    /// is due.
    pub async fn run_due(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<PipelineReport>> {
        let due: Vec<Definition> = self.due(since, now).into_iter().cloned().collect();
        self.pass(&due, &|| true).await
    }

    /// Runs once each connector that missed a run (see [`Scheduler::missed`]); `None` when
    /// none did.
    pub async fn catch_up(&self, now: DateTime<Utc>) -> Result<Option<PipelineReport>> {
        let missed: Vec<Definition> = self.missed(now).await?.into_iter().cloned().collect();
        self.pass(&missed, &|| true).await
    }

    /// One pipeline pass over `defs`, logged.
    async fn pass(
        &self,
        defs: &[Definition],
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<PipelineReport>> {
        if defs.is_empty() {
            return Ok(None);
        }
        let pipeline = Pipeline {
            store: &self.store,
            lake: &self.lake,
            settings: &self.settings,
            index: match &self.knowledge {
                Some(k) => IndexAccess::Held(k),
                None => IndexAccess::OpenWhenNeeded,
            },
            progress: false,
            full: false,
            feed_all: true,
        };
        let report = pipeline.run(defs, &self.defs, &Log, keep_going).await?;
        if let (Some(metrics), Some(knowledge)) = (&self.metrics, &self.knowledge)
            && report.index.iter().any(|f| !f.up_to_date)
        {
            match knowledge.index.count().await {
                Ok(n) => metrics.set_index_chunks(n),
                Err(e) => tracing::warn!(error = %e, "cannot count the index's chunks"),
            }
        }
        Ok(Some(report))
    }

    /// Runs until `shutdown`: first the catch-up of missed runs, then each fire time.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!("schedule");
        self.run_inner(shutdown).instrument(span).await;
    }

    async fn run_inner(self, shutdown: CancellationToken) {
        let scheduled: Vec<String> = self.scheduled().map(|d| d.name.clone()).collect();
        tracing::info!(
            connectors = %scheduled.join(", "),
            "scheduled connector runs are on (schedules are read at start; restart to change them)"
        );
        let keep_going = || !shutdown.is_cancelled();
        let start = Utc::now();
        match self.missed(start).await {
            Ok(missed) if !missed.is_empty() => {
                let missed: Vec<Definition> = missed.into_iter().cloned().collect();
                let names: Vec<&str> = missed.iter().map(|d| d.name.as_str()).collect();
                tracing::info!(
                    connectors = %names.join(", "),
                    "catching up on runs missed while serve was down"
                );
                if let Err(e) = self.pass(&missed, &keep_going).await {
                    tracing::warn!(error = %e, "scheduled pass failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the run history to catch up"),
        }
        let mut since = start;
        while !shutdown.is_cancelled() {
            let Some(next) = self.next_fire(since) else {
                tracing::info!("no schedule fires again; the scheduler stops");
                return;
            };
            let now = Utc::now();
            if next > now {
                let nap = (next - now).to_std().unwrap_or(Duration::ZERO).min(MAX_NAP);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(nap) => {}
                }
                continue;
            }
            let due: Vec<Definition> = self.due(since, now).into_iter().cloned().collect();
            since = now;
            if let Err(e) = self.pass(&due, &keep_going).await {
                tracing::warn!(error = %e, "scheduled pass failed");
            }
        }
    }
}

/// Logs what a scheduled pass did: failures as warnings, a busy connector at info.
struct Log;

impl Events for Log {
    fn run_done(&self, report: &SyncReport) {
        if let Some(error) = &report.error {
            tracing::warn!(
                connector = %report.connector,
                run_id = %report.run_id,
                %error,
                "scheduled sync failed; it is in the run history and runs again at its next fire time"
            );
        }
    }

    fn not_run(&self, def: &Definition, error: &Error) {
        if matches!(error, Error::Conflict(_)) {
            tracing::info!(connector = %def.name, %error, "scheduled sync skipped: the connector is busy");
        } else {
            tracing::warn!(connector = %def.name, %error, "scheduled sync could not start");
        }
    }

    fn gold_done(&self, reports: &[GoldReport]) {
        for g in reports {
            match &g.status {
                GoldStatus::Built { version, rows } => {
                    tracing::info!(model = %g.model, version, rows, "gold model built");
                }
                GoldStatus::Failed { error } => {
                    tracing::warn!(model = %g.model, %error, "gold model failed");
                }
                GoldStatus::Unchanged { .. } | GoldStatus::Waiting { .. } => {}
            }
        }
    }

    fn index_unavailable(&self, error: &Error) {
        tracing::warn!(%error, "index feed not run; the next pass catches up");
    }

    fn feed_failed(&self, def: &Definition, error: &Error) {
        tracing::warn!(connector = %def.name, %error, "index feed failed; the next pass retries it");
    }
}
