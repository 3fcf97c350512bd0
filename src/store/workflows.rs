//! Workflow runs and their journal: every run and every step attempt written before and after
//! it runs, so a run resumes after a crash at its first unfinished step, in this process or
//! another.
//!
//! The rules are the inbox's: a run is owned by whoever holds its [`Lease`] (key = run id), and
//! every write after the claim is owner-checked in the same transaction, so a process that lost
//! its lease (it stalled, the run was cancelled or taken over) writes nothing more to the run.
//! Several journal operations go in one write ([`Store::wf_journal`]): a step's end and the
//! next step's start cost one commit.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{Backend, Lease, Store, db_err, get, new_id, now_ms, parse_json};
use crate::error::{Error, Result};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting to be claimed.
    Queued,
    /// Owned by a process that runs it.
    Running,
    /// Suspended (approval, sleep, sub-workflow); costs nothing until woken.
    Waiting,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

impl RunState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "waiting" => RunState::Waiting,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            _ => return None,
        })
    }

    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Started; a crash leaves it so, and the resumed run tries again.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Not run: its `skip_if` held, or its branch arm was not taken.
    Skipped,
    /// This attempt failed; another follows.
    Errored,
    /// The step's final failure.
    Failed,
    /// Suspended (approval, sleep, sub-workflow).
    Waiting,
}

impl StepState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Skipped => "skipped",
            StepState::Errored => "errored",
            StepState::Failed => "failed",
            StepState::Waiting => "waiting",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => StepState::Running,
            "succeeded" => StepState::Succeeded,
            "skipped" => StepState::Skipped,
            "errored" => StepState::Errored,
            "failed" => StepState::Failed,
            "waiting" => StepState::Waiting,
            _ => return None,
        })
    }
}

/// A run to start ([`Store::wf_start`]).
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The workflow's name.
    pub workflow: String,
    /// Runs started with the same key are one run (`None`: always a new run).
    pub idem_key: Option<String>,
    /// The run's input (already checked against the workflow's schema).
    pub input: Value,
    /// What started it: `hook`, `schedule`, `command`, `data`, `tool`, `api`, `cli`,
    /// `workflow`.
    pub trigger_kind: String,
    /// The trigger's details (who, which hook or fire time, …).
    pub trigger: Value,
    /// How long the run may take in all.
    pub timeout: Duration,
    /// The run and step that started it, for a sub-workflow.
    pub parent: Option<(String, String)>,
    /// The workflow's `concurrency`: when that many of its runs are running, a new one is
    /// queued instead of owned.
    pub concurrency: Option<u32>,
}

/// The outcome of [`Store::wf_start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new run, owned by the caller (`Some`) or queued for whoever claims it.
    New {
        /// Its id.
        id: String,
        /// The caller's claim, when it may run it now.
        lease: Option<Lease>,
        /// When it is failed if unfinished (unix ms).
        deadline: i64,
    },
    /// The idempotency key names an earlier run: that one.
    Existing {
        /// Its id.
        id: String,
        /// Where it stands.
        state: RunState,
    },
}

impl Started {
    /// The run's id, new or earlier.
    pub fn id(&self) -> &str {
        match self {
            Started::New { id, .. } | Started::Existing { id, .. } => id,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRun {
    /// Its id (time-ordered).
    pub id: String,
    /// The workflow.
    pub workflow: String,
    /// The idempotency key it was started with.
    pub idem_key: Option<String>,
    /// The run that started it as a sub-workflow.
    pub parent_run: Option<String>,
    /// The parent's step.
    pub parent_step: Option<String>,
    /// Its input.
    pub input: Value,
    /// What started it.
    pub trigger_kind: String,
    /// The trigger's details.
    pub trigger: Value,
    /// Where it stands.
    pub state: RunState,
    /// Claims so far.
    pub attempts: i64,
    /// Operator retries so far.
    pub retries: i64,
    /// Its output, when it succeeded.
    pub output: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// First claimed (unix ms).
    pub started_at: Option<i64>,
    /// Finished (unix ms).
    pub finished_at: Option<i64>,
    /// When it is failed if still unfinished (unix ms).
    pub deadline: i64,
    /// When a waiting run is woken (unix ms).
    pub wake_at: Option<i64>,
    /// When its owner's lease runs out (unix ms; 0 when none).
    pub lease_until: i64,
}

/// One step attempt as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowStep {
    /// The step's place in its run (`id`, or `LOOP[i].id`).
    pub path: String,
    /// 1, 2, … for retries.
    pub attempt: i64,
    /// Where it stands.
    pub state: StepState,
    /// What it was given (rendered templates).
    pub input: Option<Value>,
    /// What it produced.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
}

/// An approval waiting for (or given) a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowSignal {
    /// The short id a button or link carries.
    pub id: String,
    /// The run it resumes.
    pub run_id: String,
    /// The step it resumes.
    pub path: String,
    /// Who may decide (the engine's JSON).
    pub rules: Value,
    /// `approve` or `reject`, once decided.
    pub decision: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When (unix ms).
    pub decided_at: Option<i64>,
}

/// One change to a run, written by its owner ([`Store::wf_journal`]).
#[derive(Debug, Clone)]
pub enum JournalOp {
    /// A step attempt starts.
    Begin {
        /// The step.
        path: String,
        /// Which attempt.
        attempt: i64,
        /// Its rendered input.
        input: Value,
    },
    /// A step attempt ended (or was suspended).
    End {
        /// The step.
        path: String,
        /// Which attempt.
        attempt: i64,
        /// How.
        state: StepState,
        /// What it produced.
        output: Option<Value>,
        /// Why it failed.
        error: Option<String>,
    },
    /// An approval is created (its buttons are posted after this commits).
    Signal {
        /// Its short id.
        id: String,
        /// The approval step.
        path: String,
        /// Who may decide.
        rules: Value,
    },
    /// The run suspends until `wake_at` (or a signal wakes it); the lease is released.
    Suspend {
        /// Unix ms.
        wake_at: i64,
    },
    /// The run finished; a waiting parent is woken.
    Finish {
        /// `Succeeded` or `Failed`.
        state: RunState,
        /// Its output.
        output: Option<Value>,
        /// Why it failed.
        error: Option<String>,
    },
}

/// Which runs [`Store::wf_runs`] lists.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs started by this run.
    pub parent: Option<String>,
    /// At most this many (newest first); 0: all.
    pub limit: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const RUN_COLUMNS: &str = "id, workflow, idem_key, parent_run, parent_step, input, trigger_kind, trigger, state, \
     attempts, retries, output, error, created_at, started_at, finished_at, deadline, wake_at, lease_until";

fn run_row(row: &sqlx::any::AnyRow) -> Result<WorkflowRun> {
    let input: String = get(row, "input")?;
    let trigger: String = get(row, "trigger")?;
    let output: Option<String> = get(row, "output")?;
    let state: String = get(row, "state")?;
    Ok(WorkflowRun {
        id: get(row, "id")?,
        workflow: get(row, "workflow")?,
        idem_key: get(row, "idem_key")?,
        parent_run: get(row, "parent_run")?,
        parent_step: get(row, "parent_step")?,
        input: parse_json("workflow_runs", "input", &input)?,
        trigger_kind: get(row, "trigger_kind")?,
        trigger: parse_json("workflow_runs", "trigger", &trigger)?,
        state: RunState::parse(&state).ok_or_else(|| {
            Error::Internal(format!("store: workflow_runs.state `{state}` is unknown"))
        })?,
        attempts: get(row, "attempts")?,
        retries: get(row, "retries")?,
        output: output
            .map(|o| parse_json("workflow_runs", "output", &o))
            .transpose()?,
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        deadline: get(row, "deadline")?,
        wake_at: get(row, "wake_at")?,
        lease_until: get(row, "lease_until")?,
    })
}

fn step_row(row: &sqlx::any::AnyRow) -> Result<WorkflowStep> {
    let input: Option<String> = get(row, "input")?;
    let output: Option<String> = get(row, "output")?;
    let state: String = get(row, "state")?;
    Ok(WorkflowStep {
        path: get(row, "path")?,
        attempt: get(row, "attempt")?,
        state: StepState::parse(&state).ok_or_else(|| {
            Error::Internal(format!("store: workflow_steps.state `{state}` is unknown"))
        })?,
        input: input
            .map(|i| parse_json("workflow_steps", "input", &i))
            .transpose()?,
        output: output
            .map(|o| parse_json("workflow_steps", "output", &o))
            .transpose()?,
        error: get(row, "error")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

fn signal_row(row: &sqlx::any::AnyRow) -> Result<WorkflowSignal> {
    let rules: String = get(row, "rules")?;
    Ok(WorkflowSignal {
        id: get(row, "id")?,
        run_id: get(row, "run_id")?,
        path: get(row, "path")?,
        rules: parse_json("workflow_signals", "rules", &rules)?,
        decision: get(row, "decision")?,
        decided_by: get(row, "decided_by")?,
        decided_at: get(row, "decided_at")?,
    })
}

/// On PostgreSQL, serialises the transactions that count a workflow's running runs (its
/// `concurrency`), so two processes cannot both take the last slot. SQLite has one writer.
async fn lock_workflow(conn: &mut sqlx::AnyConnection, backend: Backend, name: &str) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS l")
            .bind(format!("conveyor.workflow:{name}"))
            .execute(&mut *conn)
            .await
            .map_err(db_err("locking a workflow's concurrency slots"))?;
    }
    Ok(())
}

/// Whether fewer than `limit` runs of `workflow` run now (leases alive).
async fn has_slot(
    conn: &mut sqlx::AnyConnection,
    workflow: &str,
    limit: Option<u32>,
    now: i64,
) -> Result<bool> {
    let Some(limit) = limit else { return Ok(true) };
    let running: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM workflow_runs WHERE workflow = $1 AND state = 'running' AND lease_until >= $2",
    )
    .bind(workflow)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err("counting a workflow's running runs"))?;
    Ok(running < i64::from(limit))
}

impl Store {
    /// Starts a run, or finds the earlier run of its idempotency key. With `own`, the caller
    /// owns the new run for that long (it runs it now) unless the workflow's `concurrency`
    /// is reached, in which case the run is queued for whoever has a slot first.
    pub async fn wf_start(&self, new: &NewRun, own: Option<Duration>) -> Result<Started> {
        let new = new.clone();
        let backend = self.backend;
        self.write("starting a workflow run", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                if let Some(key) = &new.idem_key {
                    let earlier = sqlx::query(
                        "SELECT id, state FROM workflow_runs WHERE workflow = $1 AND idem_key = $2",
                    )
                    .bind(&new.workflow)
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err("looking up a workflow run by its key"))?;
                    if let Some(row) = earlier {
                        let state: String = get(&row, "state")?;
                        return Ok(Started::Existing {
                            id: get(&row, "id")?,
                            state: RunState::parse(&state).unwrap_or(RunState::Queued),
                        });
                    }
                }
                let mut owner = String::new();
                let mut lease_until = 0;
                if let Some(length) = own {
                    if new.concurrency.is_some() {
                        lock_workflow(conn, backend, &new.workflow).await?;
                    }
                    if has_slot(conn, &new.workflow, new.concurrency, now).await? {
                        owner = new_id();
                        lease_until = now.saturating_add(ms(length));
                    }
                }
                let id = new_id();
                let owned = !owner.is_empty();
                let deadline = now.saturating_add(ms(new.timeout));
                let (parent_run, parent_step) = new.parent.clone().unzip();
                let inserted = sqlx::query(
                    "INSERT INTO workflow_runs (id, workflow, idem_key, parent_run, parent_step, input, trigger_kind, \
                     trigger, state, owner, lease_until, deadline, attempts, retries, created_at, started_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $14) \
                     ON CONFLICT (workflow, idem_key) DO NOTHING",
                )
                .bind(&id)
                .bind(&new.workflow)
                .bind(new.idem_key.as_deref())
                .bind(parent_run.as_deref())
                .bind(parent_step.as_deref())
                .bind(new.input.to_string())
                .bind(&new.trigger_kind)
                .bind(new.trigger.to_string())
                .bind(if owned { "running" } else { "queued" })
                .bind(&owner)
                .bind(lease_until)
                .bind(deadline)
                .bind(i64::from(owned))
                .bind(now)
                .bind(owned.then_some(now))
                .execute(&mut *conn)
                .await
                .map_err(db_err("starting a workflow run"))?;
                if inserted.rows_affected() == 0 {
                    // Another process started the same key between the look-up and the insert
                    // (PostgreSQL; SQLite has one writer).
                    let row = sqlx::query(
                        "SELECT id, state FROM workflow_runs WHERE workflow = $1 AND idem_key = $2",
                    )
                    .bind(&new.workflow)
                    .bind(new.idem_key.as_deref())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err("looking up a workflow run by its key"))?;
                    let state: String = get(&row, "state")?;
                    return Ok(Started::Existing {
                        id: get(&row, "id")?,
                        state: RunState::parse(&state).unwrap_or(RunState::Queued),
                    });
                }
                Ok(Started::New {
                    lease: owned.then(|| Lease {
                        key: id.clone(),
                        owner,
                    }),
                    id,
                    deadline,
                })
            })
        })
        .await
    }

    /// Writes `ops` for the run `lease` holds, in one transaction, and renews the lease by
    /// `renew`. `false` (and nothing written) when the lease is no longer held: the run was
    /// cancelled, or another process took it over after this one stalled.
    pub async fn wf_journal(
        &self,
        lease: &Lease,
        ops: Vec<JournalOp>,
        renew: Duration,
    ) -> Result<bool> {
        let lease = lease.clone();
        self.write("writing a workflow run's journal", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let held = sqlx::query(
                    "UPDATE workflow_runs SET lease_until = $3, updated_at = $4 \
                     WHERE id = $1 AND owner = $2 AND state = 'running'",
                )
                .bind(&lease.key)
                .bind(&lease.owner)
                .bind(now.saturating_add(ms(renew)))
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err("renewing a workflow run's lease"))?;
                if held.rows_affected() != 1 {
                    return Ok(false);
                }
                for op in ops {
                    journal_op(conn, &lease, op, now).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    /// Claims up to `limit` runs that need a process, oldest first, each for `lease` with its
    /// claim counted: queued runs, runs whose owner's lease ran out, waiting runs whose wake
    /// time came, and any unfinished run past its deadline (to be failed). `limits` gives the
    /// `concurrency` of workflows that have one: such a run is claimed only while a slot is
    /// free (a run past its deadline always is).
    pub async fn wf_claim_due(
        &self,
        lease: Duration,
        limit: i64,
        limits: &[(String, u32)],
    ) -> Result<Vec<(Lease, WorkflowRun)>> {
        let now = now_ms();
        let candidates = sqlx::query(
            "SELECT id, workflow FROM workflow_runs WHERE \
             (state IN ('queued', 'running') AND lease_until < $1) \
             OR (state = 'waiting' AND (wake_at <= $1 OR deadline < $1)) \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing workflow runs to resume"))?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for row in candidates {
            let id: String = get(&row, "id")?;
            let workflow: String = get(&row, "workflow")?;
            let slots = limits
                .iter()
                .find(|(name, _)| *name == workflow)
                .map(|(_, n)| *n);
            let owner = new_id();
            let until = now_ms().saturating_add(ms(lease));
            let backend = self.backend;
            let (id_, owner_) = (id.clone(), owner.clone());
            let got = self
                .write("claiming a workflow run", move |conn| {
                    Box::pin(async move {
                        let now = now_ms();
                        if slots.is_some() {
                            lock_workflow(conn, backend, &workflow).await?;
                            let past: Option<i64> = sqlx::query_scalar(
                                "SELECT deadline FROM workflow_runs WHERE id = $1",
                            )
                            .bind(&id_)
                            .fetch_optional(&mut *conn)
                            .await
                            .map_err(db_err("reading a workflow run's deadline"))?;
                            let overdue = past.is_some_and(|d| d < now);
                            if !overdue && !has_slot(conn, &workflow, slots, now).await? {
                                return Ok(None);
                            }
                        }
                        let sql = format!(
                            "UPDATE workflow_runs SET state = 'running', owner = $2, lease_until = $3, \
                             attempts = attempts + 1, started_at = COALESCE(started_at, $4), wake_at = NULL, \
                             updated_at = $4 WHERE id = $1 AND (\
                             (state IN ('queued', 'running') AND lease_until < $4) \
                             OR (state = 'waiting' AND (wake_at <= $4 OR deadline < $4))) \
                             RETURNING {RUN_COLUMNS}"
                        );
                        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(&id_)
                            .bind(&owner_)
                            .bind(until)
                            .bind(now)
                            .fetch_optional(&mut *conn)
                            .await
                            .map_err(db_err("claiming a workflow run"))?;
                        row.as_ref().map(run_row).transpose()
                    })
                })
                .await?;
            // Another process claimed it between the list and the update.
            if let Some(run) = got {
                claimed.push((Lease { key: id, owner }, run));
            }
        }
        Ok(claimed)
    }

    /// Hands a run this process cannot finish (it is shutting down) back at once: the next
    /// process claims it without waiting for the lease.
    pub async fn wf_hand_back(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.write_statements("handing a workflow run back", move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE workflow_runs SET lease_until = 0, owner = '', updated_at = $3 \
                     WHERE id = $1 AND owner = $2 AND state = 'running'",
                )
                .bind(&lease.key)
                .bind(&lease.owner)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(db_err("handing a workflow run back"))?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// One run.
    pub async fn wf_run(&self, id: &str) -> Result<Option<WorkflowRun>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading a workflow run"))?;
        row.as_ref().map(run_row).transpose()
    }

    /// Every step attempt of a run, in the order they started.
    pub async fn wf_steps(&self, run: &str) -> Result<Vec<WorkflowStep>> {
        let rows = sqlx::query(
            "SELECT path, attempt, state, input, output, error, started_at, finished_at \
             FROM workflow_steps WHERE run_id = $1 ORDER BY seq, attempt",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading a workflow run's steps"))?;
        rows.iter().map(step_row).collect()
    }

    /// Runs, newest first.
    pub async fn wf_runs(&self, filter: &RunFilter) -> Result<Vec<WorkflowRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE ($1 = '' OR workflow = $1) \
             AND ($2 = '' OR state = $2) AND ($3 = '' OR parent_run = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.workflow.clone().unwrap_or_default())
            .bind(filter.state.map(RunState::as_str).unwrap_or_default())
            .bind(filter.parent.clone().unwrap_or_default())
            .bind(if filter.limit <= 0 {
                i64::MAX
            } else {
                filter.limit
            })
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing workflow runs"))?;
        rows.iter().map(run_row).collect()
    }

    /// Runs per workflow and state, for `/metrics` and `conveyor workflows list`.
    pub async fn wf_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT workflow, state, COUNT(*) AS n FROM workflow_runs GROUP BY workflow, state ORDER BY workflow, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("counting workflow runs"))?;
        rows.iter()
            .map(|row| Ok((get(row, "workflow")?, get(row, "state")?, get(row, "n")?)))
            .collect()
    }

    /// Runs that need a process and have none: queued, or running under a lease that ran out
    /// (its process died). A gauge of what a crash left, and of a backlog.
    pub async fn wf_orphans(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM workflow_runs WHERE state IN ('queued', 'running') AND lease_until < $1",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("counting workflow runs without a process"))
    }

    /// When the last run of `workflow` started by `trigger_kind` was created (unix ms).
    pub async fn wf_last_started(&self, workflow: &str, trigger_kind: &str) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT MAX(created_at) FROM workflow_runs WHERE workflow = $1 AND trigger_kind = $2",
        )
        .bind(workflow)
        .bind(trigger_kind)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("reading a workflow's last run"))
    }

    /// Cancels a run that has not finished, and every unfinished run it started (its
    /// sub-workflows); a waiting parent is woken to see it. The owner, if one runs it now,
    /// finds its lease gone at its next write and stops. Returns the run's state before, or
    /// `None` when there is no such run.
    pub async fn wf_cancel(&self, id: &str, why: &str) -> Result<Option<RunState>> {
        let (id, why) = (id.to_string(), why.to_string());
        self.write("cancelling a workflow run", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM workflow_runs WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db_err("reading a workflow run"))?;
                let Some(state) = state else { return Ok(None) };
                let before = RunState::parse(&state).unwrap_or(RunState::Queued);
                if before.is_finished() {
                    return Ok(Some(before));
                }
                sqlx::query(
                    "UPDATE workflow_runs SET state = 'cancelled', error = $2, finished_at = $3, updated_at = $3, \
                     owner = '', lease_until = 0 WHERE state IN ('queued', 'running', 'waiting') AND id IN (\
                     WITH RECURSIVE tree(id) AS (SELECT CAST($1 AS TEXT) UNION ALL \
                     SELECT r.id FROM workflow_runs r JOIN tree t ON r.parent_run = t.id) SELECT id FROM tree)",
                )
                .bind(&id)
                .bind(&why)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err("cancelling a workflow run"))?;
                wake_parent(conn, &id, now).await?;
                Ok(Some(before))
            })
        })
        .await
    }

    /// Queues a failed or cancelled run again, with a new deadline `timeout` from now. The
    /// journal rows of `paths` (and of their loop items, `PATH[i]…`) are dropped so those
    /// steps run again; with `paths` empty, every step that did not finish well is dropped.
    /// Steps that succeeded are replayed, not re-run. `false` when the run is not failed or
    /// cancelled.
    pub async fn wf_retry(&self, id: &str, paths: &[String], timeout: Duration) -> Result<bool> {
        let (id, paths) = (id.to_string(), paths.to_vec());
        self.write("retrying a workflow run", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let queued = sqlx::query(
                    "UPDATE workflow_runs SET state = 'queued', owner = '', lease_until = 0, error = NULL, \
                     output = NULL, finished_at = NULL, wake_at = NULL, deadline = $2, retries = retries + 1, \
                     updated_at = $3 WHERE id = $1 AND state IN ('failed', 'cancelled')",
                )
                .bind(&id)
                .bind(now.saturating_add(ms(timeout)))
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err("retrying a workflow run"))?;
                if queued.rows_affected() != 1 {
                    return Ok(false);
                }
                if paths.is_empty() {
                    sqlx::query(
                        "DELETE FROM workflow_steps WHERE run_id = $1 AND state NOT IN ('succeeded', 'skipped')",
                    )
                    .bind(&id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("dropping a workflow run's failed steps"))?;
                }
                for path in &paths {
                    sqlx::query(
                        "DELETE FROM workflow_steps WHERE run_id = $1 AND (path = $2 \
                         OR substr(path, 1, length($2) + 1) = $2 || '[')",
                    )
                    .bind(&id)
                    .bind(path)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("dropping a workflow run's steps"))?;
                }
                sqlx::query(
                    "DELETE FROM workflow_signals WHERE run_id = $1 AND decision IS NULL",
                )
                .bind(&id)
                .execute(&mut *conn)
                .await
                .map_err(db_err("dropping a workflow run's open approvals"))?;
                Ok(true)
            })
        })
        .await
    }

    /// How far the data trigger of `workflow` on `source` has read (a silver version).
    pub async fn wf_cursor(&self, workflow: &str, source: &str) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT version FROM workflow_cursors WHERE workflow = $1 AND source = $2",
        )
        .bind(workflow)
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a data trigger's cursor"))
    }

    /// Moves the cursor from `from` (`None`: there was none) to `to`; `false` when another
    /// process moved it first (it started those runs).
    pub async fn wf_cursor_move(
        &self,
        workflow: &str,
        source: &str,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        let (workflow, source) = (workflow.to_string(), source.to_string());
        self.write_statements("moving a data trigger's cursor", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let moved = match from {
                    None => sqlx::query(
                        "INSERT INTO workflow_cursors (workflow, source, version, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (workflow, source) DO NOTHING",
                    )
                    .bind(&workflow)
                    .bind(&source)
                    .bind(to)
                    .bind(now)
                    .execute(&mut *conn)
                    .await,
                    Some(old) => sqlx::query(
                        "UPDATE workflow_cursors SET version = $3, updated_at = $5 \
                         WHERE workflow = $1 AND source = $2 AND version = $4",
                    )
                    .bind(&workflow)
                    .bind(&source)
                    .bind(to)
                    .bind(old)
                    .bind(now)
                    .execute(&mut *conn)
                    .await,
                }
                .map_err(db_err("moving a data trigger's cursor"))?;
                Ok(moved.rows_affected() == 1)
            })
        })
        .await
    }

    /// An approval.
    pub async fn wf_signal(&self, id: &str) -> Result<Option<WorkflowSignal>> {
        let row = sqlx::query(
            "SELECT id, run_id, path, rules, decision, decided_by, decided_at FROM workflow_signals WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an approval"))?;
        row.as_ref().map(signal_row).transpose()
    }

    /// The approval of a run's step.
    pub async fn wf_signal_of(&self, run: &str, path: &str) -> Result<Option<WorkflowSignal>> {
        let row = sqlx::query(
            "SELECT id, run_id, path, rules, decision, decided_by, decided_at FROM workflow_signals \
             WHERE run_id = $1 AND path = $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(run)
        .bind(path)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an approval"))?;
        row.as_ref().map(signal_row).transpose()
    }

    /// Records a decision on an approval and wakes its run. `false` when it was already
    /// decided (the first decision stands) or does not exist. Who may decide is the caller's
    /// check.
    pub async fn wf_decide(&self, id: &str, decision: &str, by: &str) -> Result<bool> {
        let (id, decision, by) = (id.to_string(), decision.to_string(), by.to_string());
        self.write("recording an approval", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let run: Option<String> = sqlx::query_scalar(
                    "UPDATE workflow_signals SET decision = $2, decided_by = $3, decided_at = $4 \
                     WHERE id = $1 AND decision IS NULL RETURNING run_id",
                )
                .bind(&id)
                .bind(&decision)
                .bind(&by)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err("recording an approval"))?;
                let Some(run) = run else { return Ok(false) };
                sqlx::query(
                    "UPDATE workflow_runs SET wake_at = $2, updated_at = $2 WHERE id = $1 AND state = 'waiting'",
                )
                .bind(&run)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err("waking a workflow run"))?;
                Ok(true)
            })
        })
        .await
    }
}

/// Wakes the run that started `child` as a sub-workflow, when it waits.
async fn wake_parent(conn: &mut sqlx::AnyConnection, child: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE workflow_runs SET wake_at = $2, updated_at = $2 WHERE state = 'waiting' \
         AND id = (SELECT parent_run FROM workflow_runs WHERE id = $1)",
    )
    .bind(child)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err("waking a workflow's parent run"))?;
    Ok(())
}

async fn journal_op(
    conn: &mut sqlx::AnyConnection,
    lease: &Lease,
    op: JournalOp,
    now: i64,
) -> Result<()> {
    match op {
        JournalOp::Begin {
            path,
            attempt,
            input,
        } => {
            sqlx::query(
                "INSERT INTO workflow_steps (run_id, path, attempt, seq, state, input, started_at) \
                 VALUES ($1, $2, $3, (SELECT COUNT(*) FROM workflow_steps WHERE run_id = $1), 'running', $4, $5)",
            )
            .bind(&lease.key)
            .bind(&path)
            .bind(attempt)
            .bind(input.to_string())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db_err("journaling a workflow step's start"))?;
        }
        JournalOp::End {
            path,
            attempt,
            state,
            output,
            error,
        } => {
            // A step that never began (skipped, replayed as done) gets its row here.
            sqlx::query(
                "INSERT INTO workflow_steps (run_id, path, attempt, seq, state, output, error, started_at, finished_at) \
                 VALUES ($1, $2, $3, (SELECT COUNT(*) FROM workflow_steps WHERE run_id = $1), $4, $5, $6, $7, $8) ON CONFLICT (run_id, path, attempt) DO UPDATE SET \
                 state = excluded.state, output = excluded.output, error = excluded.error, finished_at = excluded.finished_at",
            )
            .bind(&lease.key)
            .bind(&path)
            .bind(attempt)
            .bind(state.as_str())
            .bind(output.map(|o| o.to_string()))
            .bind(error)
            .bind(now)
            .bind((state != StepState::Waiting).then_some(now))
            .execute(&mut *conn)
            .await
            .map_err(db_err("journaling a workflow step's end"))?;
        }
        JournalOp::Signal { id, path, rules } => {
            sqlx::query(
                "INSERT INTO workflow_signals (id, run_id, path, rules, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(&lease.key)
            .bind(&path)
            .bind(rules.to_string())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db_err("creating an approval"))?;
        }
        JournalOp::Suspend { wake_at } => {
            sqlx::query(
                "UPDATE workflow_runs SET state = 'waiting', wake_at = $3, owner = '', lease_until = 0, updated_at = $4 \
                 WHERE id = $1 AND owner = $2",
            )
            .bind(&lease.key)
            .bind(&lease.owner)
            .bind(wake_at)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db_err("suspending a workflow run"))?;
        }
        JournalOp::Finish {
            state,
            output,
            error,
        } => {
            sqlx::query(
                "UPDATE workflow_runs SET state = $3, output = $4, error = $5, finished_at = $6, updated_at = $6, \
                 owner = '', lease_until = 0 WHERE id = $1 AND owner = $2",
            )
            .bind(&lease.key)
            .bind(&lease.owner)
            .bind(state.as_str())
            .bind(output.map(|o| o.to_string()))
            .bind(error)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db_err("finishing a workflow run"))?;
            wake_parent(conn, &lease.key, now).await?;
        }
    }
    Ok(())
}
