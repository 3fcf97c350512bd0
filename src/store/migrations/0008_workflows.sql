-- Workflow runs and their journal (issue "Autonomous workflows").
--
-- A run is 'queued' (to be claimed), 'running' (owned by `owner` until lease_until, unix ms,
-- renewed while it runs), 'waiting' (suspended: an approval, a sleep, a sub-workflow; no
-- owner, woken at wake_at), or finished: 'succeeded', 'failed' or 'cancelled'. A queued or
-- running row whose lease ran out (its process died) is claimed by any process; a waiting row
-- once wake_at has passed; any unfinished row once its deadline has passed, to be failed with
-- the reason. So no state lasts past its deadline, and nothing is owned by a dead process
-- past its lease. attempts counts claims; retries counts operator retries (a retried step's
-- side effects get keys of their own). idem_key makes runs started with the same key one
-- run (UNIQUE per workflow; NULL keys do not collide).
CREATE TABLE workflow_runs (
    id          TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    idem_key    TEXT,
    parent_run  TEXT,
    parent_step TEXT,
    input       TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    state       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    wake_at     BIGINT,
    deadline    BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    retries     BIGINT NOT NULL,
    output      TEXT,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    updated_at  BIGINT NOT NULL
);

CREATE UNIQUE INDEX workflow_runs_idem ON workflow_runs (workflow, idem_key);
CREATE INDEX workflow_runs_due ON workflow_runs (state, lease_until);
CREATE INDEX workflow_runs_wake ON workflow_runs (state, wake_at);
CREATE INDEX workflow_runs_recent ON workflow_runs (created_at);
CREATE INDEX workflow_runs_parent ON workflow_runs (parent_run);

-- One row per step attempt, written before the attempt runs ('running') and updated after it
-- ('succeeded', 'skipped', 'errored': this attempt failed and another follows, 'failed': the
-- step's final failure, 'waiting': suspended). path names the step in its run: its id, or
-- LOOP[i].ID inside a for_each. A resumed run replays each path's last row: a finished step
-- is never run again; a 'running' row is an attempt a crash interrupted. seq orders the rows of
-- a run as they were written (several are written in one commit, with one timestamp).
CREATE TABLE workflow_steps (
    run_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    state       TEXT NOT NULL,
    input       TEXT,
    output      TEXT,
    error       TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (run_id, path, attempt)
);

-- Approvals waiting for a person: a short id (what a button carries), the run and step it
-- resumes, who may decide (JSON), and the decision once made (first one wins).
CREATE TABLE workflow_signals (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    rules       TEXT NOT NULL,
    decision    TEXT,
    decided_by  TEXT,
    decided_at  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE INDEX workflow_signals_run ON workflow_signals (run_id);

-- Where each data trigger (a workflow started by new or changed rows of a silver table) has
-- read the table's change data feed up to: the silver version.
CREATE TABLE workflow_cursors (
    workflow    TEXT NOT NULL,
    source      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (workflow, source)
);
