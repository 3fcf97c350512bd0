//! One pass of the data pipeline: connector runs → gold models → index feed.
//!
//! `conveyor sync` and the scheduler inside `serve` both go through [`Pipeline::run`], so a
//! scheduled run does exactly what a manual one does. The steps keep their own failure rules:
//! a run that fails (or cannot start because another process holds the connector) does not
//! stop the other runs; gold models are built after the runs, each only when its SQL or an
//! input changed; the index feed runs last and never undoes a data commit. What happens is
//! reported to a [`Events`] as it happens (the CLI prints, the scheduler logs) and returned
//! as a [`PipelineReport`].

use serde::Serialize;

use super::feed::{self, FeedReport};
use super::gold::{self, GoldReport, GoldStatus};
use super::sync::{self, SyncContext, SyncOptions, SyncReport};
use super::{Definition, RunSettings};
use crate::error::{Error, Result};
use crate::knowledge::Knowledge;
use crate::lakehouse::Lakehouse;
use crate::store::Store;

/// Where the index feed writes.
#[derive(Clone, Copy)]
pub enum IndexAccess<'a> {
    /// An index this process already holds open (`serve`).
    Held(&'a Knowledge),
    /// Open the configured index after the runs, only when some connector has `[index]`
    /// (`conveyor sync`). When another process holds it, the feed is skipped and the next
    /// pass catches up.
    OpenWhenNeeded,
}

/// What a pass needs.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    /// The store (claims, cursors, history, gold and index markers).
    pub store: &'a Store,
    /// The lakehouse.
    pub lake: &'a Lakehouse,
    /// The configuration (run lease, connectors folder, the index to open).
    pub settings: &'a RunSettings,
    /// The knowledge index for the feed.
    pub index: IndexAccess<'a>,
    /// Draw progress bars for the runs (on a terminal).
    pub progress: bool,
    /// Read every source in full, ignoring the saved cursors (`conveyor sync --full`).
    pub full: bool,
    /// Feed every connector with `[index]`, not only those run in this pass. A feed whose
    /// silver table did not move is a no-op, so this is cheap; `serve` uses it to catch up
    /// on tables a `conveyor sync` changed but could not index while `serve` held the index.
    pub feed_all: bool,
}

/// A connector whose run could not start.
#[derive(Debug, Clone, Serialize)]
pub struct NotRun {
    /// The connector.
    pub connector: String,
    /// Whether another run holds the connector (`Error::Conflict`): not a failure, it is
    /// already being synced.
    pub busy: bool,
    /// Why.
    pub error: String,
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineReport {
    /// The runs that started, in order (a failed run has `error` set).
    pub runs: Vec<SyncReport>,
    /// The connectors whose run could not start.
    pub not_run: Vec<NotRun>,
    /// The gold models.
    pub gold: Vec<GoldReport>,
    /// The index feeds that ran.
    pub index: Vec<FeedReport>,
    /// Why the index could not be opened, when it could not (not a failure: the next pass
    /// catches up).
    pub index_unavailable: Option<String>,
    /// Connectors whose index feed failed, with the error.
    pub index_failed: Vec<NotRun>,
}

impl PipelineReport {
    /// Whether anything failed: a run that failed or could not start, a gold model, a feed.
    pub fn failed(&self) -> bool {
        !self.not_run.is_empty()
            || self.runs.iter().any(|r| r.error.is_some())
            || self
                .gold
                .iter()
                .any(|g| matches!(g.status, GoldStatus::Failed { .. }))
            || !self.index_failed.is_empty()
    }
}

/// Hears about each step as it ends. Every method does nothing by default.
pub trait Events: Send + Sync {
    /// A run ended (its `error` says whether it failed).
    fn run_done(&self, _report: &SyncReport) {}
    /// A run could not start (`Error::Conflict` when another run holds the connector).
    fn not_run(&self, _def: &Definition, _error: &Error) {}
    /// The gold models were built (or found unchanged, waiting, failed).
    fn gold_done(&self, _reports: &[GoldReport]) {}
    /// The index could not be opened; the feed is skipped.
    fn index_unavailable(&self, _error: &Error) {}
    /// One connector's feed ended.
    fn fed(&self, _report: &FeedReport) {}
    /// One connector's feed failed.
    fn feed_failed(&self, _def: &Definition, _error: &Error) {}
}

/// Events nobody listens to.
pub struct Quiet;

impl Events for Quiet {}

impl Pipeline<'_> {
    /// Runs `defs` in order, then every gold model, then the index feed of those of `defs`
    /// with `[index]` (of every connector in `all` with [`Pipeline::feed_all`]). `all` is
    /// every defined connector (a gold model reading one
    /// that has not run yet waits instead of failing). `keep_going` is asked before each run
    /// and before gold; when it says no, the rest of the pass is left out. `Err` only when the gold model files cannot be read or the store
    /// fails while building gold.
    pub async fn run(
        &self,
        defs: &[Definition],
        all: &[Definition],
        events: &dyn Events,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<PipelineReport> {
        let cx = SyncContext {
            store: self.store,
            lake: self.lake,
            lease: self.settings.connectors.run_lease.0,
        };
        let mut report = PipelineReport::default();
        for def in defs {
            if !keep_going() {
                break;
            }
            let opts = SyncOptions {
                progress: self.progress,
                full: self.full,
                ..Default::default()
            };
            match sync::run(cx, def, opts).await {
                Ok(r) => {
                    events.run_done(&r);
                    report.runs.push(r);
                }
                Err(e) => {
                    events.not_run(def, &e);
                    report.not_run.push(NotRun {
                        connector: def.name.clone(),
                        busy: matches!(e, Error::Conflict(_)),
                        error: e.to_string(),
                    });
                }
            }
        }
        if !keep_going() {
            // Stopping (shutdown): gold and the feed follow table versions, so the next
            // pass builds and indexes what this one committed.
            return Ok(report);
        }
        // Gold models after the sources: each is rebuilt only if its SQL or an input changed.
        let models = gold::all_models(&self.settings.dir(), &self.settings.connectors.models)?;
        let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
        report.gold = gold::build_all(self.lake, self.store, &models, &names).await?;
        events.gold_done(&report.gold);
        let fed = if self.feed_all { all } else { defs };
        self.feed(fed, events, &mut report).await;
        Ok(report)
    }

    /// The index feed of the connectors of `defs` with `[index]`, after the data commits.
    async fn feed(&self, defs: &[Definition], events: &dyn Events, report: &mut PipelineReport) {
        if !defs.iter().any(|d| d.index.is_some()) {
            return;
        }
        let opened;
        let knowledge = match self.index {
            IndexAccess::Held(k) => k,
            IndexAccess::OpenWhenNeeded => {
                match Knowledge::open(&self.settings.index, &self.settings.base_dir) {
                    Ok(k) => {
                        opened = k;
                        &opened
                    }
                    Err(e) => {
                        // The data commit stands; the marker in the store was not moved, so the
                        // next pass indexes what changed. Not a failure of this one.
                        events.index_unavailable(&e);
                        report.index_unavailable = Some(e.to_string());
                        return;
                    }
                }
            }
        };
        let indexer = knowledge.indexer();
        for def in defs {
            match feed::run(
                self.store,
                self.lake,
                &indexer,
                knowledge.index.as_ref(),
                def,
            )
            .await
            {
                Ok(Some(r)) => {
                    events.fed(&r);
                    report.index.push(r);
                }
                Ok(None) => {}
                Err(e) => {
                    events.feed_failed(def, &e);
                    report.index_failed.push(NotRun {
                        connector: def.name.clone(),
                        busy: false,
                        error: e.to_string(),
                    });
                }
            }
        }
    }
}
