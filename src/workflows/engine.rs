//! The engine: starts runs, executes them step by step with every attempt journaled in the
//! store, resumes what a crash, a sleep or an approval left, and lets operators cancel and
//! retry.
//!
//! A run is executed by whichever process holds its lease. Before a step's attempt does
//! anything it is journaled (`running`, with its rendered input); after it, its outcome. A
//! resumed run replays the journal: a step whose last row finished is not run again (its
//! output is read back), a `running` row is an attempt a crash cut short and the step is tried
//! again under its own retry rules, with the same idempotency keys for its side effects
//! (egress ledger keys and `Idempotency-Key` headers are `run:step`, not per attempt). A run
//! that suspends (an approval, a sleep, a long backoff, a sub-workflow) releases its lease and
//! is claimed again when its wake time comes or a decision wakes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::def::{Step, StepKind, Trigger, Workflow};
use super::steps::{Failure, Outcome, Parts};
use super::template::Templates;
use crate::error::{Error, Result};
use crate::store::workflows::{
    JournalOp, NewRun, RunState, Started, StepState, WorkflowRun, WorkflowStep,
};
use crate::store::{Lease, Store};
use crate::tools::Caller;
use crate::values::HumanDuration;

/// `[workflows]` in conveyor.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// How long a process owns a run without writing to it; renewed while it runs. After it
    /// runs out (the process died) another process resumes the run.
    pub lease: HumanDuration,
    /// How often `serve` looks for runs to resume (woken sooner by local events).
    pub poll: HumanDuration,
    /// Runs this process executes at once.
    pub max_running: usize,
    /// Hosts `http` steps may reach on private addresses (a local service).
    pub allow_private: Vec<String>,
    /// A backoff shorter than this waits in the process; a longer one suspends the run.
    pub max_inline_wait: HumanDuration,
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        Self {
            lease: HumanDuration(Duration::from_secs(30)),
            poll: HumanDuration(Duration::from_secs(1)),
            max_running: 64,
            allow_private: Vec::new(),
            max_inline_wait: HumanDuration(Duration::from_secs(5)),
        }
    }
}

impl WorkflowsConfig {
    /// Problems with the section, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lease.0 < Duration::from_secs(1) {
            problems.push("workflows.lease: at least 1s".into());
        }
        if self.poll.0.is_zero() {
            problems.push("workflows.poll: must be longer than 0s".into());
        }
        if self.max_running == 0 {
            problems.push("workflows.max_running: at least 1".into());
        }
        problems
    }
}

/// Who or what starts a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The workflow.
    pub workflow: String,
    /// Its input, checked against the workflow's `[inputs]` schema.
    pub input: Value,
    /// `hook`, `schedule`, `command`, `data`, `tool`, `api`, `cli`, `workflow`.
    pub kind: String,
    /// The trigger's details, readable as `trigger.*` in templates.
    pub trigger: Value,
    /// The person (or API key) who started it, for tool policies and approvals.
    pub by: Option<Caller>,
    /// An idempotency key given by the trigger itself (a webhook's delivery id, a schedule's
    /// fire time); the workflow's own `idempotency` template wins over it.
    pub key: Option<String>,
    /// For a sub-workflow: the parent run and step.
    pub parent: Option<(String, String)>,
}

/// What a decision on an approval came to ([`Engine::decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Recorded; the run resumes.
    Recorded,
    /// Someone decided first.
    Already {
        /// Their decision.
        decision: String,
        /// Who.
        by: String,
    },
    /// This person may not decide, and why.
    NotAllowed(String),
    /// No such approval.
    Unknown,
}

/// The workflow engine (cheap to clone).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineHandle>,
}

/// The engine's shared state (what [`Engine`] clones point at).
pub struct EngineHandle {
    store: Store,
    defs: BTreeMap<String, Arc<Workflow>>,
    validators: BTreeMap<String, jsonschema::Validator>,
    parts: Parts,
    templates: Templates,
    config: WorkflowsConfig,
    /// Runs this process executes now, with the token that stops them.
    local: Mutex<HashMap<String, CancellationToken>>,
    /// Wakes the resume loop (a run was queued, an approval decided).
    wake: Notify,
    /// Bounds the runs executing at once.
    slots: Arc<Semaphore>,
    /// Callers of [`Engine::wait`], by run: told when that run settles here (finishes or
    /// suspends).
    waiters: Mutex<HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workflows", &self.inner.defs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The default caller of a run nobody started by hand (a schedule, a data event).
fn system_caller(workflow: &str, run: &str) -> Caller {
    Caller {
        user_id: format!("workflow:{workflow}"),
        channel: crate::model::Channel::WORKFLOW.as_str().into(),
        conversation: format!("workflow:{run}"),
        roles: Vec::new(),
        attributes: BTreeMap::new(),
    }
}

impl Engine {
    /// An engine over checked definitions.
    pub fn new(
        store: Store,
        defs: Vec<Workflow>,
        parts: Parts,
        config: WorkflowsConfig,
    ) -> Result<Self> {
        let mut validators = BTreeMap::new();
        let mut map = BTreeMap::new();
        for w in defs {
            let v = jsonschema::validator_for(&w.inputs).map_err(|e| {
                Error::Config(format!(
                    "{}: inputs: not a valid JSON Schema: {e}",
                    w.origin
                ))
            })?;
            validators.insert(w.name.clone(), v);
            map.insert(w.name.clone(), Arc::new(w));
        }
        Ok(Self {
            inner: Arc::new(EngineHandle {
                store,
                defs: map,
                validators,
                parts,
                templates: Templates::default(),
                slots: Arc::new(Semaphore::new(config.max_running)),
                config,
                local: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                waiters: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// A reference that does not keep the engine alive (for the tools it is built after).
    pub fn downgrade(&self) -> std::sync::Weak<EngineHandle> {
        Arc::downgrade(&self.inner)
    }

    /// The engine behind `weak`, while it exists.
    pub fn upgrade(weak: &std::sync::Weak<EngineHandle>) -> Option<Engine> {
        weak.upgrade().map(|inner| Engine { inner })
    }

    /// The workflows, by name.
    pub fn workflows(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.inner.defs.values()
    }

    /// One workflow.
    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.inner.defs.get(name)
    }

    /// The store the runs are journaled in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The tasks executing runs (awaited on shutdown).
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Checks the input and starts a run (or finds the earlier run of its idempotency key).
    /// A new run is executed in the background by this process when a slot is free, else
    /// queued for whichever process has one. Errors: an unknown workflow
    /// ([`Error::NotFound`]), an input that fails the schema ([`Error::BadInput`] with each
    /// reason), a key template that does not render.
    pub async fn start(&self, req: StartRequest) -> Result<Started> {
        let Some(wf) = self.inner.defs.get(&req.workflow).cloned() else {
            return Err(Error::NotFound(format!(
                "no workflow `{}`; known: {}",
                req.workflow,
                self.inner
                    .defs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        self.check_input(&wf, &req.input)?;
        let mut trigger = match req.trigger {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        trigger.insert("kind".into(), Value::String(req.kind.clone()));
        if let Some(by) = &req.by {
            trigger.insert("by".into(), serde_json::to_value(by).unwrap_or(Value::Null));
        }
        let trigger = Value::Object(trigger);
        let key = match &wf.idempotency {
            Some(t) => {
                let ctx = json!({"input": req.input, "trigger": trigger});
                let k = self
                    .inner
                    .templates
                    .text(t, &ctx)
                    .map_err(|e| Error::BadInput(format!("idempotency: {e}")))?;
                let k = k.trim().to_string();
                (!k.is_empty()).then_some(k)
            }
            None => req.key.clone(),
        };
        let new = NewRun {
            workflow: wf.name.clone(),
            idem_key: key,
            input: req.input,
            trigger_kind: req.kind,
            trigger,
            timeout: wf.timeout,
            parent: req.parent,
            concurrency: wf.concurrency,
        };
        // Own it only when a slot is free here; otherwise the resume loop (here or
        // elsewhere) takes it.
        let permit = Arc::clone(&self.inner.slots).try_acquire_owned().ok();
        let own = permit.as_ref().map(|_| self.inner.config.lease.0);
        let started = self.inner.store.wf_start(&new, own).await?;
        if matches!(started, Started::New { .. }) {
            self.inner.parts.metrics.workflow_started(&wf.name);
        }
        match (&started, permit) {
            (
                Started::New {
                    id,
                    lease: Some(lease),
                    deadline,
                },
                Some(permit),
            ) => {
                let run = Fresh {
                    id: id.clone(),
                    input: new.input,
                    trigger: new.trigger,
                    deadline: *deadline,
                };
                self.spawn(wf, lease.clone(), RunSource::Fresh(run), permit);
            }
            (Started::New { .. }, _) => self.inner.wake.notify_one(),
            (Started::Existing { .. }, _) => {}
        }
        Ok(started)
    }

    fn check_input(&self, wf: &Workflow, input: &Value) -> Result<()> {
        let Some(v) = self.inner.validators.get(&wf.name) else {
            return Ok(());
        };
        let problems: Vec<String> = v
            .iter_errors(input)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::BadInput(format!(
                "the input does not match workflow `{}`'s [inputs]: {}",
                wf.name,
                problems.join("; ")
            )))
        }
    }

    /// Waits until run `id` has finished or suspended, at most `limit`; the run as it is then.
    pub async fn wait(&self, id: &str, limit: Duration) -> Result<WorkflowRun> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            self.forget_waiters(id);
            // Registered before the look, so a settle in between is not missed.
            let (tx, rx) = tokio::sync::oneshot::channel();
            if let Ok(mut w) = self.inner.waiters.lock() {
                w.entry(id.to_string()).or_default().push(tx);
            }
            let run = self
                .inner
                .store
                .wf_run(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no workflow run `{id}`")))?;
            let busy_here = self.is_local(id);
            if run.state.is_finished()
                || (run.state == RunState::Waiting && !busy_here)
                || tokio::time::Instant::now() >= until
            {
                drop(rx);
                self.forget_waiters(id);
                return Ok(run);
            }
            // Woken when the run settles here; a run in another process is polled.
            let nap = tokio::time::sleep_until(
                until.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            );
            tokio::select! {
                _ = rx => {}
                () = nap => {}
            }
        }
    }

    /// Drops the registrations of `id` whose waiter is gone (it returned, or napped and
    /// registers again), so runs that never settle here leave nothing behind.
    fn forget_waiters(&self, id: &str) {
        if let Ok(mut w) = self.inner.waiters.lock()
            && let Some(list) = w.get_mut(id)
        {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                w.remove(id);
            }
        }
    }

    fn is_local(&self, id: &str) -> bool {
        self.inner
            .local
            .lock()
            .map(|m| m.contains_key(id))
            .unwrap_or(false)
    }

    /// Cancels a run (and its sub-workflows); a step running here is stopped at once, one
    /// running in another process at its next lease renewal. The state before, or `None`.
    pub async fn cancel(&self, id: &str, by: &str) -> Result<Option<RunState>> {
        let before = self
            .inner
            .store
            .wf_cancel(id, &format!("cancelled by {by}"))
            .await?;
        if let Ok(local) = self.inner.local.lock()
            && let Some(token) = local.get(id)
        {
            token.cancel();
        }
        Ok(before)
    }

    /// Queues a failed or cancelled run again: from step `from` on (that step and every
    /// later one run again), or, without `from`, the steps that did not succeed. `false` when
    /// the run is not failed or cancelled.
    pub async fn retry(&self, id: &str, from: Option<&str>) -> Result<bool> {
        let run = self
            .inner
            .store
            .wf_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no workflow run `{id}`")))?;
        let wf = self.inner.defs.get(&run.workflow).ok_or_else(|| {
            Error::Config(format!(
                "run {id} is of workflow `{}`, which is no longer defined",
                run.workflow
            ))
        })?;
        let paths = match from {
            None => Vec::new(),
            Some(step) => paths_from(&wf.steps, step).ok_or_else(|| {
                Error::BadInput(format!(
                    "workflow `{}` has no top-level step `{step}`; its steps: {}",
                    wf.name,
                    wf.steps
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let ok = self.inner.store.wf_retry(id, &paths, wf.timeout).await?;
        if ok {
            self.inner.wake.notify_one();
        }
        Ok(ok)
    }

    /// Records `who`'s decision (`PLATFORM:ID`) on approval `signal`, when they may decide,
    /// and wakes the run.
    pub async fn decide(&self, signal: &str, approve: bool, who: &str) -> Result<Decided> {
        let Some(s) = self.inner.store.wf_signal(signal).await? else {
            return Ok(Decided::Unknown);
        };
        if let (Some(decision), Some(by)) = (&s.decision, &s.decided_by) {
            return Ok(Decided::Already {
                decision: decision.clone(),
                by: by.clone(),
            });
        }
        if let Err(why) = super::steps::may_decide(&s.rules, who) {
            return Ok(Decided::NotAllowed(why));
        }
        let decision = if approve { "approve" } else { "reject" };
        if !self.inner.store.wf_decide(signal, decision, who).await? {
            let again = self.inner.store.wf_signal(signal).await?;
            return Ok(match again {
                Some(s) => Decided::Already {
                    decision: s.decision.unwrap_or_default(),
                    by: s.decided_by.unwrap_or_default(),
                },
                None => Decided::Unknown,
            });
        }
        self.inner.wake.notify_one();
        Ok(Decided::Recorded)
    }

    /// Claims the runs that need a process (queued, orphaned, woken, past their deadline) as
    /// far as free slots allow and executes them in the background; how many it took.
    pub async fn resume_due(&self) -> Result<usize> {
        let free = self.inner.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let limits: Vec<(String, u32)> = self
            .inner
            .defs
            .values()
            .filter_map(|w| w.concurrency.map(|c| (w.name.clone(), c)))
            .collect();
        let claimed = self
            .inner
            .store
            .wf_claim_due(
                self.inner.config.lease.0,
                i64::try_from(free).unwrap_or(i64::MAX),
                &limits,
            )
            .await?;
        let n = claimed.len();
        for (lease, run) in claimed {
            let Some(wf) = self.inner.defs.get(&run.workflow).cloned() else {
                // A workflow removed from the definitions: its runs cannot go on.
                let why = format!(
                    "workflow `{}` is no longer defined (removed from tools.dir)",
                    run.workflow
                );
                tracing::warn!(run = %run.id, "{why}");
                self.inner
                    .store
                    .wf_journal(
                        &lease,
                        vec![JournalOp::Finish {
                            state: RunState::Failed,
                            output: None,
                            error: Some(why),
                        }],
                        self.inner.config.lease.0,
                    )
                    .await?;
                continue;
            };
            let Ok(permit) = Arc::clone(&self.inner.slots).try_acquire_owned() else {
                // Slots filled meanwhile: hand it back for the next pass.
                self.inner.store.wf_hand_back(&lease).await?;
                continue;
            };
            self.spawn(wf, lease, RunSource::Stored(Box::new(run)), permit);
        }
        Ok(n)
    }

    /// Resumes due runs now and then every `workflows.poll` (sooner when woken) until
    /// `shutdown`; then stops the runs executing here and hands them back.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut since = chrono::Utc::now();
        match self.catch_up_schedules(since).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                runs = n,
                "started scheduled workflow runs missed while no process ran"
            ),
            Err(e) => tracing::warn!(error = %e, "catching up workflow schedules failed"),
        }
        let mut data_checked = tokio::time::Instant::now() - DATA_EVERY;
        loop {
            let now = chrono::Utc::now();
            match self.fire_schedules(since, now).await {
                Ok(_) => since = now,
                Err(e) => {
                    tracing::warn!(error = %e, "starting scheduled workflow runs failed; trying again")
                }
            }
            if data_checked.elapsed() >= DATA_EVERY {
                data_checked = tokio::time::Instant::now();
                if let Err(e) = self.check_data_triggers().await {
                    tracing::warn!(error = %e, "reading changed rows for data triggers failed; trying again");
                }
            }
            match self.resume_due().await {
                Ok(n) if n > 0 => tracing::debug!(runs = n, "resumed workflow runs"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "looking for workflow runs to resume failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.poll.0) => {}
            }
        }
        self.halt().await;
    }

    /// Starts a run for each fire time of every schedule trigger in (`since`, `now`] — only
    /// the latest when more than [`MAX_FIRES`] passed (a process that was stopped does not
    /// start a burst). The run's key is `schedule:{fire time}`, unique per workflow in the
    /// store: however many processes fire it, it runs once. How many runs this call started.
    pub async fn fire_schedules(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize> {
        let mut started = 0;
        for (workflow, pattern) in self.schedules() {
            let Ok(cron) = crate::connectors::schedule::parse_pattern(&pattern) else {
                continue;
            };
            let mut fires = Vec::new();
            let mut at = since;
            while let Ok(next) = cron.find_next_occurrence(&at, false) {
                if next > now {
                    break;
                }
                fires.push(next);
                at = next;
                if fires.len() > MAX_FIRES {
                    break;
                }
            }
            if fires.len() > MAX_FIRES {
                fires = cron
                    .find_previous_occurrence(&now, true)
                    .map(|t| vec![t])
                    .unwrap_or_default();
            }
            for fire in fires {
                if self.fire(&workflow, &pattern, fire).await? {
                    started += 1;
                }
            }
        }
        Ok(started)
    }

    /// At start-up: a schedule whose latest fire time passed while no process ran fires once
    /// now (the same unique key, so several processes starting together fire it once).
    /// Workflows that never ran on their schedule are left to their next fire time.
    pub async fn catch_up_schedules(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize> {
        let mut started = 0;
        for (workflow, pattern) in self.schedules() {
            let Ok(cron) = crate::connectors::schedule::parse_pattern(&pattern) else {
                continue;
            };
            let Ok(fire) = cron.find_previous_occurrence(&now, true) else {
                continue;
            };
            let Some(last) = self
                .inner
                .store
                .wf_last_started(&workflow, "schedule")
                .await?
            else {
                continue;
            };
            if last < fire.timestamp_millis() && self.fire(&workflow, &pattern, fire).await? {
                started += 1;
            }
        }
        Ok(started)
    }

    /// Starts a run for every row of a data trigger's silver table inserted or changed since
    /// the trigger last looked that matches its filter (input: the row). The first look only
    /// notes where the table is: rows synced before the workflow existed start nothing (a
    /// table that does not exist yet starts from its first sync). Each run's key is the
    /// table, the version and the row, so a repeated pass (a crash before the cursor moved,
    /// another process) starts nothing twice. How many runs started.
    pub async fn check_data_triggers(&self) -> Result<usize> {
        let Some(lake) = &self.inner.parts.lake else {
            return Ok(0);
        };
        let mut started = 0;
        for w in self.inner.defs.values() {
            for t in &w.triggers {
                let Trigger::Data { table, filter } = t else {
                    continue;
                };
                let name = table.strip_prefix("silver.").unwrap_or(table);
                let store = &self.inner.store;
                let Some(cursor) = store.wf_cursor(&w.name, table).await? else {
                    let at = lake.silver_version(name).await?.unwrap_or(-1);
                    store.wf_cursor_move(&w.name, table, None, at).await?;
                    continue;
                };
                if lake.silver_version(name).await? == Some(cursor) {
                    continue;
                }
                let (current, rows) = match lake
                    .silver_new_rows(name, cursor, filter.as_deref())
                    .await
                {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        tracing::warn!(workflow = %w.name, %table, "the data trigger's table has no change data feed (or its versions are gone); rebuild it with `conveyor sync --full`");
                        continue;
                    }
                    Err(Error::BadInput(why)) => {
                        tracing::error!(workflow = %w.name, %table, "the data trigger's filter is wrong: {why}");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for mut row in rows {
                    let version = row
                        .remove("_commit_version")
                        .and_then(|v| v.as_i64())
                        .unwrap_or(current);
                    let row = Value::Object(row);
                    let digest = {
                        use sha2::Digest;
                        let d = sha2::Sha256::digest(row.to_string().as_bytes());
                        d.iter()
                            .take(12)
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    };
                    let req = StartRequest {
                        workflow: w.name.clone(),
                        input: row,
                        kind: "data".into(),
                        trigger: json!({"table": table, "version": version, "filter": filter}),
                        by: None,
                        key: Some(format!("data:{table}:v{version}:{digest}")),
                        parent: None,
                    };
                    match self.start(req).await {
                        Ok(Started::New { .. }) => started += 1,
                        Ok(Started::Existing { .. }) => {}
                        Err(Error::BadInput(why)) => {
                            tracing::error!(workflow = %w.name, %table, "a changed row does not fit the workflow's input; skipped: {why}");
                        }
                        Err(e) => return Err(e),
                    }
                }
                store
                    .wf_cursor_move(&w.name, table, Some(cursor), current)
                    .await?;
            }
        }
        Ok(started)
    }

    fn schedules(&self) -> Vec<(String, String)> {
        schedules(&self.inner.defs.values().cloned().collect::<Vec<_>>())
    }

    async fn fire(
        &self,
        workflow: &str,
        pattern: &str,
        fire: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        let at = fire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let started = self
            .start(StartRequest {
                workflow: workflow.to_string(),
                input: json!({}),
                kind: "schedule".into(),
                trigger: json!({"schedule": pattern, "fire_time": at}),
                by: None,
                key: Some(format!("schedule:{at}")),
                parent: None,
            })
            .await;
        match started {
            Ok(Started::New { id, .. }) => {
                tracing::info!(%workflow, run = %id, fire_time = %at, "started a scheduled workflow run");
                Ok(true)
            }
            Ok(Started::Existing { .. }) => Ok(false),
            // A workflow whose input the schedule cannot give: said at every fire time.
            Err(Error::BadInput(why)) => {
                tracing::error!(%workflow, fire_time = %at, "a scheduled run cannot start: {why}");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops every run executing here; each hands its lease back so another process (or the
    /// next start) resumes it at once.
    pub async fn halt(&self) {
        if let Ok(local) = self.inner.local.lock() {
            for token in local.values() {
                token.cancel();
            }
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn spawn(
        &self,
        wf: Arc<Workflow>,
        lease: Lease,
        source: RunSource,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let token = CancellationToken::new();
        if let Ok(mut local) = self.inner.local.lock() {
            local.insert(lease.key.clone(), token.clone());
        }
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            let id = lease.key.clone();
            if let Err(e) = engine.execute(wf, lease.clone(), source, token.clone()).await {
                // The store failed: the lease runs out and the run is resumed later.
                tracing::warn!(run = %id, error = %e, "a workflow run stopped on a store error; it resumes after its lease");
            }
            if token.is_cancelled() {
                // Stopped here (shutdown or cancel): let the next process take it at once.
                let _ = engine.inner.store.wf_hand_back(&lease).await;
            }
            if let Ok(mut local) = engine.inner.local.lock() {
                local.remove(&id);
            }
            drop(permit);
            let told = engine
                .inner
                .waiters
                .lock()
                .ok()
                .and_then(|mut w| w.remove(&id))
                .unwrap_or_default();
            for tx in told {
                let _ = tx.send(());
            }
            // A slot is free: queued runs may go.
            engine.inner.wake.notify_one();
        });
    }

    async fn execute(
        &self,
        wf: Arc<Workflow>,
        lease: Lease,
        source: RunSource,
        cancel: CancellationToken,
    ) -> Result<()> {
        let (run, journal) = match source {
            RunSource::Fresh(f) => (
                RunView {
                    id: f.id,
                    input: f.input,
                    trigger: f.trigger,
                    deadline: f.deadline,
                    retries: 0,
                    attempts: 1,
                },
                HashMap::new(),
            ),
            RunSource::Stored(r) => {
                let steps = self.inner.store.wf_steps(&r.id).await?;
                let mut last: HashMap<String, WorkflowStep> = HashMap::new();
                for s in steps {
                    let newer = last
                        .get(&s.path)
                        .is_none_or(|old: &WorkflowStep| s.attempt >= old.attempt);
                    if newer {
                        last.insert(s.path.clone(), s);
                    }
                }
                (
                    RunView {
                        id: r.id,
                        input: r.input,
                        trigger: r.trigger,
                        deadline: r.deadline,
                        retries: r.retries,
                        attempts: r.attempts,
                    },
                    last,
                )
            }
        };
        let caller = run
            .trigger
            .get("by")
            .and_then(|b| serde_json::from_value::<Caller>(b.clone()).ok())
            .unwrap_or_else(|| system_caller(&wf.name, &run.id));
        let base = json!({
            "input": run.input,
            "trigger": run.trigger,
            "run": {"id": run.id, "workflow": wf.name, "attempt": run.attempts, "retries": run.retries},
        });
        let exec = Exec {
            engine: self.clone(),
            wf: Arc::clone(&wf),
            lease,
            run,
            caller,
            base,
            journal,
            pending: Mutex::new(Vec::new()),
            cancel,
        };
        exec.run_all().await
    }
}

/// The journal paths to drop to run again from top-level step `from`: its id and every
/// later top-level step's, with the ids of their branches (loop items follow by prefix).
/// `None` when there is no such step.
pub fn paths_from(steps: &[Step], from: &str) -> Option<Vec<String>> {
    let at = steps.iter().position(|s| s.id == from)?;
    let mut out = Vec::new();
    for s in &steps[at..] {
        collect_ids(s, &mut out);
    }
    Some(out)
}

fn collect_ids(s: &Step, out: &mut Vec<String>) {
    out.push(s.id.clone());
    if let StepKind::Branch(arms) = &s.kind {
        for arm in arms {
            for inner in &arm.steps {
                collect_ids(inner, out);
            }
        }
    }
}

enum RunSource {
    Fresh(Fresh),
    Stored(Box<WorkflowRun>),
}

struct Fresh {
    id: String,
    input: Value,
    trigger: Value,
    deadline: i64,
}

struct RunView {
    id: String,
    input: Value,
    trigger: Value,
    deadline: i64,
    retries: i64,
    attempts: i64,
}

/// How a list of steps ended.
enum Flow {
    /// Every step finished (or failed with `continue_on_error`); the last output.
    Done(Value),
    /// A step failed for good.
    Failed(String),
    /// Suspended until this time (unix ms).
    Suspend(i64),
    /// The lease is gone (cancelled, taken over, shutting down): stop, write nothing more.
    Lost,
}

/// One run being executed.
struct Exec {
    engine: Engine,
    wf: Arc<Workflow>,
    lease: Lease,
    run: RunView,
    caller: Caller,
    base: Value,
    /// Each path's last journal row when the run was resumed.
    journal: HashMap<String, WorkflowStep>,
    /// Journal operations not yet written (written with the next one that must be durable).
    pending: Mutex<Vec<JournalOp>>,
    cancel: CancellationToken,
}

/// What templates of a step see besides the run: earlier outputs and the loop variables.
#[derive(Clone, Default)]
struct Scope {
    steps: Map<String, Value>,
    item: Option<(Value, usize)>,
    error: Option<String>,
}

impl Exec {
    fn inner(&self) -> &EngineHandle {
        &self.engine.inner
    }

    fn ctx(&self, scope: &Scope) -> Value {
        let mut ctx = self.base.clone();
        if let Value::Object(m) = &mut ctx {
            m.insert("steps".into(), Value::Object(scope.steps.clone()));
            if let Some((item, index)) = &scope.item {
                m.insert("item".into(), item.clone());
                m.insert("index".into(), json!(index));
            }
            if let Some(e) = &scope.error {
                m.insert("error".into(), Value::String(e.clone()));
            }
        }
        ctx
    }

    fn push(&self, op: JournalOp) {
        if let Ok(mut p) = self.pending.lock() {
            p.push(op);
        }
    }

    /// Queues the end of an attempt.
    fn end(
        &self,
        path: &str,
        attempt: i64,
        state: StepState,
        output: Option<Value>,
        error: Option<String>,
    ) {
        self.push(JournalOp::End {
            path: path.into(),
            attempt,
            state,
            output,
            error,
        });
    }

    /// Writes the pending operations (and renews the lease); `false` when the lease is gone.
    async fn flush(&self) -> Result<bool> {
        let ops = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        if self.cancel.is_cancelled() {
            return Ok(false);
        }
        self.inner()
            .store
            .wf_journal(&self.lease, ops, self.inner().config.lease.0)
            .await
    }

    async fn run_all(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let now = now_ms();
        let flow = if now > self.run.deadline {
            Flow::Failed(format!(
                "the run took longer than its timeout ({})",
                HumanDuration(self.wf.timeout)
            ))
        } else {
            let mut scope = Scope::default();
            let flow = self.steps(&self.wf.steps, "", &mut scope).await?;
            match flow {
                Flow::Done(last) => match &self.wf.output {
                    Some(t) => match self.inner().templates.value(t, &self.ctx(&scope)) {
                        Ok(v) => Flow::Done(v),
                        Err(e) => Flow::Failed(format!("output: {e}")),
                    },
                    None => Flow::Done(last),
                },
                other => other,
            }
        };
        let metrics = &self.inner().parts.metrics;
        match flow {
            Flow::Done(output) => {
                self.push(JournalOp::Finish {
                    state: RunState::Succeeded,
                    output: Some(output),
                    error: None,
                });
                if self.flush().await? {
                    metrics.workflow_finished(&self.wf.name, true, started.elapsed());
                }
            }
            Flow::Failed(error) => {
                tracing::info!(run = %self.run.id, workflow = %self.wf.name, %error, "workflow run failed");
                if let Some(step) = &self.wf.on_failure {
                    let mut scope = Scope {
                        error: Some(error.clone()),
                        ..Scope::default()
                    };
                    // Its own outcome does not change the run's: it failed.
                    if let Flow::Lost = self
                        .steps(std::slice::from_ref(step), "", &mut scope)
                        .await?
                    {
                        return Ok(());
                    }
                }
                self.push(JournalOp::Finish {
                    state: RunState::Failed,
                    output: None,
                    error: Some(error),
                });
                if self.flush().await? {
                    metrics.workflow_finished(&self.wf.name, false, started.elapsed());
                }
            }
            Flow::Suspend(at) => {
                self.push(JournalOp::Suspend {
                    wake_at: at.min(self.run.deadline.saturating_add(1)),
                });
                self.flush().await?;
            }
            Flow::Lost => {}
        }
        Ok(())
    }

    /// Runs `steps` in order, each under `prefix` (`LOOP[i].` inside a loop).
    fn steps<'a>(
        &'a self,
        steps: &'a [Step],
        prefix: &'a str,
        scope: &'a mut Scope,
    ) -> futures_util::future::BoxFuture<'a, Result<Flow>> {
        Box::pin(async move {
            let mut last = Value::Null;
            for step in steps {
                let path = format!("{prefix}{}", step.id);
                match self.step(step, &path, scope).await? {
                    Flow::Done(out) => {
                        scope.steps.insert(step.id.clone(), out.clone());
                        last = out;
                    }
                    other => return Ok(other),
                }
            }
            Ok(Flow::Done(last))
        })
    }

    /// One step: replayed from the journal when it finished, else run (with its retries).
    async fn step(&self, step: &Step, path: &str, scope: &mut Scope) -> Result<Flow> {
        let last = self.journal.get(path);
        match last.map(|l| l.state) {
            Some(StepState::Succeeded | StepState::Skipped) => {
                return Ok(Flow::Done(
                    last.and_then(|l| l.output.clone()).unwrap_or(Value::Null),
                ));
            }
            Some(StepState::Failed) => {
                let error = last.and_then(|l| l.error.clone()).unwrap_or_default();
                return Ok(if step.continue_on_error {
                    Flow::Done(json!({"error": error}))
                } else {
                    Flow::Failed(format!("step `{path}`: {error}"))
                });
            }
            _ => {}
        }
        if self.cancel.is_cancelled() {
            return Ok(Flow::Lost);
        }
        let ctx = self.ctx(scope);
        if let Some(skip) = &step.skip_if {
            match self.inner().templates.truthy(skip, &ctx) {
                Ok(true) => {
                    let attempt = last.map_or(1, |l| l.attempt);
                    self.end(path, attempt, StepState::Skipped, None, None);
                    return Ok(Flow::Done(Value::Null));
                }
                Ok(false) => {}
                Err(e) => return self.fail(step, path, 1, format!("skip_if: {e}")).await,
            }
        }
        match &step.kind {
            StepKind::Branch(arms) => return self.branch(step, path, arms, scope).await,
            StepKind::ForEach {
                items,
                parallelism,
                steps,
            } => {
                return self
                    .for_each(step, path, items, *parallelism, steps, scope)
                    .await;
            }
            _ => {}
        }
        // A suspended attempt resumes as itself; anything else is a new attempt.
        let (mut attempt, mut resuming) = match last {
            Some(l) if l.state == StepState::Waiting => (l.attempt, Some(l.clone())),
            Some(l) => (l.attempt + 1, None),
            None => (1, None),
        };
        loop {
            // An attempt cut short by a crash is not the step's failure: it is tried again
            // even without retries, a few times more than its retry budget.
            let interrupted = resuming.is_none()
                && attempt > 1
                && last.is_some_and(|l| l.state == StepState::Running && l.attempt == attempt - 1);
            let budget =
                i64::from(step.retry.attempts) + if interrupted { MAX_INTERRUPTIONS } else { 0 };
            if attempt > budget {
                let why = if interrupted {
                    format!(
                        "the process running it stopped during each of its last attempts ({} in all)",
                        attempt - 1
                    )
                } else {
                    "no attempts left".into()
                };
                return self.fail(step, path, attempt - 1, why).await;
            }
            let input = match &resuming {
                Some(row) => row.input.clone().unwrap_or(Value::Null),
                None => match super::steps::render_input(
                    &self.inner().templates,
                    &step.kind,
                    &ctx,
                    now_ms(),
                ) {
                    Ok(i) => i,
                    Err(e) => return self.fail(step, path, attempt, e).await,
                },
            };
            if resuming.is_none() {
                self.push(JournalOp::Begin {
                    path: path.into(),
                    attempt,
                    input: input.clone(),
                });
                // The attempt is on disk before it does anything.
                if !self.flush().await? {
                    return Ok(Flow::Lost);
                }
            }
            let outcome = self
                .held(self.perform(step, path, &input, resuming.as_ref()))
                .await;
            let Some(outcome) = outcome else {
                return Ok(Flow::Lost);
            };
            match outcome {
                Outcome::Done(output) => {
                    self.end(
                        path,
                        attempt,
                        StepState::Succeeded,
                        Some(output.clone()),
                        None,
                    );
                    return Ok(Flow::Done(output));
                }
                Outcome::Suspend { wake_at, note } => {
                    self.end(path, attempt, StepState::Waiting, note, None);
                    return Ok(Flow::Suspend(wake_at));
                }
                Outcome::Signal { op, wake_at } => {
                    // The approval row and the waiting step in one write, before the
                    // question is posted.
                    self.push(op);
                    self.end(path, attempt, StepState::Waiting, None, None);
                    if !self.flush().await? {
                        return Ok(Flow::Lost);
                    }
                    let row = WorkflowStep {
                        path: path.into(),
                        attempt,
                        state: StepState::Waiting,
                        input: Some(input.clone()),
                        output: None,
                        error: None,
                        started_at: now_ms(),
                        finished_at: None,
                    };
                    // Post it (and find out whether it was decided meanwhile).
                    match self
                        .held(self.perform(step, path, &input, Some(&row)))
                        .await
                    {
                        None => return Ok(Flow::Lost),
                        Some(Outcome::Done(output)) => {
                            self.end(
                                path,
                                attempt,
                                StepState::Succeeded,
                                Some(output.clone()),
                                None,
                            );
                            return Ok(Flow::Done(output));
                        }
                        Some(Outcome::Failed(f)) => {
                            return self.fail(step, path, attempt, f.message).await;
                        }
                        Some(Outcome::Suspend { note, .. }) => {
                            // What it waits for, for `workflows show` and the API.
                            self.end(path, attempt, StepState::Waiting, note, None);
                            return Ok(Flow::Suspend(wake_at));
                        }
                        Some(Outcome::Signal { .. }) => return Ok(Flow::Suspend(wake_at)),
                    }
                }
                Outcome::Failed(failure) => {
                    if attempt < i64::from(step.retry.attempts) && failure.retryable(&step.retry.on)
                    {
                        let pause = backoff(&step.retry, attempt);
                        self.end(
                            path,
                            attempt,
                            StepState::Errored,
                            None,
                            Some(failure.message.clone()),
                        );
                        if pause > self.inner().config.max_inline_wait.0 {
                            // A long pause costs nothing: suspend until it is over.
                            return Ok(Flow::Suspend(now_ms().saturating_add(ms(pause))));
                        }
                        if !self.flush().await? {
                            return Ok(Flow::Lost);
                        }
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = self.cancel.cancelled() => return Ok(Flow::Lost),
                        }
                        attempt += 1;
                        resuming = None;
                        continue;
                    }
                    return self.fail(step, path, attempt, failure.message).await;
                }
            }
        }
    }

    /// Records the step's final failure: the run goes on with `continue_on_error`, else fails.
    async fn fail(&self, step: &Step, path: &str, attempt: i64, error: String) -> Result<Flow> {
        self.end(
            path,
            attempt.max(1),
            StepState::Failed,
            None,
            Some(error.clone()),
        );
        if step.continue_on_error {
            return Ok(Flow::Done(json!({"error": error})));
        }
        Ok(Flow::Failed(format!("step `{path}`: {error}")))
    }

    /// Runs `work` while renewing the lease; `None` when the lease is lost or the run is
    /// cancelled (the work is dropped).
    async fn held<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let every = self.inner().config.lease.0 / 3;
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                match self.flush().await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(run = %self.run.id, error = %e, "renewing a workflow run's lease failed");
                    }
                }
            }
        };
        tokio::select! {
            v = work => Some(v),
            () = renew => None,
            () = self.cancel.cancelled() => None,
        }
    }

    async fn perform(
        &self,
        step: &Step,
        path: &str,
        input: &Value,
        resuming: Option<&WorkflowStep>,
    ) -> Outcome {
        let now = now_ms();
        let left = Duration::from_millis(u64::try_from(self.run.deadline - now).unwrap_or(0));
        let limit = step.timeout.map_or(left, |t| t.min(left));
        let call = super::steps::Call {
            parts: &self.inner().parts,
            engine: &self.engine,
            run: &self.run.id,
            workflow: &self.wf.name,
            path,
            retries: self.run.retries,
            deadline: self.run.deadline,
            caller: &self.caller,
            input,
            resuming,
        };
        match tokio::time::timeout(limit, super::steps::perform(&call, &step.kind)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(Failure::timeout(format!(
                "took longer than {}",
                HumanDuration(limit)
            ))),
        }
    }

    async fn branch(
        &self,
        step: &Step,
        path: &str,
        arms: &[super::def::Branch],
        scope: &mut Scope,
    ) -> Result<Flow> {
        let ctx = self.ctx(scope);
        let mut chosen = None;
        for (i, arm) in arms.iter().enumerate() {
            let holds = match &arm.when {
                None => true,
                Some(w) => match self.inner().templates.truthy(w, &ctx) {
                    Ok(b) => b,
                    Err(e) => {
                        return self
                            .fail(step, path, 1, format!("branch[{i}].when: {e}"))
                            .await;
                    }
                },
            };
            if holds {
                chosen = Some(i);
                break;
            }
        }
        // Steps of arms not taken read as empty.
        for (i, arm) in arms.iter().enumerate() {
            if Some(i) != chosen {
                for s in &arm.steps {
                    scope.steps.insert(s.id.clone(), Value::Null);
                }
            }
        }
        let Some(i) = chosen else {
            self.end(
                path,
                1,
                StepState::Succeeded,
                Some(json!({"arm": null})),
                None,
            );
            return Ok(Flow::Done(json!({"arm": null})));
        };
        let arm = &arms[i];
        let prefix = path.strip_suffix(&step.id).unwrap_or("");
        match self.steps(&arm.steps, prefix, scope).await? {
            Flow::Done(last) => {
                let out = json!({"arm": i, "output": last});
                self.end(path, 1, StepState::Succeeded, Some(out.clone()), None);
                Ok(Flow::Done(out))
            }
            other => Ok(other),
        }
    }

    async fn for_each(
        &self,
        step: &Step,
        path: &str,
        items: &str,
        parallelism: u32,
        steps: &[Step],
        scope: &mut Scope,
    ) -> Result<Flow> {
        let ctx = self.ctx(scope);
        let list = match self.inner().templates.value(items, &ctx) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) => Vec::new(),
            Ok(other) => {
                return self
                    .fail(
                        step,
                        path,
                        1,
                        format!(
                            "for_each: `{items}` gave {} rather than a list",
                            kind_of(&other)
                        ),
                    )
                    .await;
            }
            Err(e) => return self.fail(step, path, 1, format!("for_each: {e}")).await,
        };
        use futures_util::StreamExt;
        let runs = futures_util::stream::iter(list.into_iter().enumerate().map(|(i, item)| {
            let mut inner = scope.clone();
            inner.item = Some((item, i));
            let prefix = format!("{path}[{i}].");
            async move { self.steps(steps, &prefix, &mut inner).await }
        }))
        .buffered(usize::try_from(parallelism.max(1)).unwrap_or(1))
        .collect::<Vec<_>>()
        .await;
        let mut outputs = Vec::with_capacity(runs.len());
        let mut wake: Option<i64> = None;
        for flow in runs {
            match flow? {
                Flow::Done(v) => outputs.push(v),
                Flow::Failed(e) => {
                    self.end(path, 1, StepState::Failed, None, Some(e.clone()));
                    return Ok(if step.continue_on_error {
                        Flow::Done(json!({"error": e}))
                    } else {
                        Flow::Failed(e)
                    });
                }
                Flow::Suspend(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
                Flow::Lost => return Ok(Flow::Lost),
            }
        }
        if let Some(at) = wake {
            return Ok(Flow::Suspend(at));
        }
        let out = Value::Array(outputs);
        self.end(path, 1, StepState::Succeeded, Some(out.clone()), None);
        Ok(Flow::Done(out))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The pause before attempt `attempt + 1`.
pub fn backoff(r: &super::def::Retry, attempt: i64) -> Duration {
    let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = r.backoff.as_secs_f64() * r.factor.powi(exp);
    let mut pause = Duration::from_secs_f64(secs.min(r.max_backoff.as_secs_f64()));
    if r.jitter {
        // ±20%, from a random id's bits (no RNG crate for one number).
        let r = (uuid::Uuid::new_v4().as_u128() & 0xFFFF_FFFF) as f64 / f64::from(u32::MAX);
        let f = 0.8 + 0.4 * r;
        pause = pause.mul_f64(f);
    }
    pause
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Attempts beyond a step's retry budget allowed when the ones before were cut short by a
/// crash (a step that keeps killing its process fails after these).
const MAX_INTERRUPTIONS: i64 = 3;

/// Most fire times of one schedule started in one look; more passed (a process was stopped)
/// start only the latest.
const MAX_FIRES: usize = 10;

/// How often `serve` looks for rows that data triggers start runs for.
const DATA_EVERY: Duration = Duration::from_secs(5);

/// The schedule triggers of the workflows: (workflow, cron pattern).
pub fn schedules(defs: &[Arc<Workflow>]) -> Vec<(String, String)> {
    defs.iter()
        .flat_map(|w| {
            w.triggers.iter().filter_map(|t| match t {
                Trigger::Schedule(s) => Some((w.name.clone(), s.clone())),
                _ => None,
            })
        })
        .collect()
}
