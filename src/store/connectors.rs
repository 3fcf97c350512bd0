//! Connector runs: the one-run-at-a-time claim, the cursor, and the run history.
//!
//! The claim is a conditional `UPDATE` on the connector's row (free, or its lease ran out),
//! so of two processes starting the same connector exactly one runs. The cursor is written
//! by [`Store::run_finish`] in the statement that also frees the claim, and only if this run
//! still holds it: a run whose lease was taken over cannot overwrite a newer cursor.

use std::time::Duration;

use serde::Serialize;

use super::{Store, db_err, get, now_ms, parse_json};
use crate::error::{Error, Result};

/// The outcome of [`Store::run_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunClaim {
    /// The caller now owns the connector; the run is recorded as `running`.
    Owned,
    /// Another run holds it.
    Busy {
        /// That run's id.
        run_id: String,
        /// When its lease ends (unix ms).
        lease_until: i64,
    },
}

/// How a run ended, for [`Store::run_finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    /// Records read from the source.
    pub rows_read: i64,
    /// Rows inserted or updated in silver.
    pub rows_written: i64,
    /// Rows deleted from silver.
    pub rows_deleted: i64,
    /// Malformed records skipped.
    pub rows_skipped: i64,
    /// Source objects (files) read.
    pub files_read: i64,
    /// The silver table's version after the run.
    pub silver_version: Option<i64>,
    /// Why it failed; `None` for a run that succeeded.
    pub error: Option<String>,
    /// Malformed records, as JSON (`[{source, line, reason}]`).
    pub issues: serde_json::Value,
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// The run id (uuid v7).
    pub id: String,
    /// The connector.
    pub connector: String,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms, when finished.
    pub finished_at: Option<i64>,
    /// Records read.
    pub rows_read: i64,
    /// Rows inserted or updated in silver.
    pub rows_written: i64,
    /// Rows deleted from silver.
    pub rows_deleted: i64,
    /// Malformed records skipped.
    pub rows_skipped: i64,
    /// Files read.
    pub files_read: i64,
    /// Silver version after the run.
    pub silver_version: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Malformed records.
    pub issues: serde_json::Value,
}

impl Store {
    /// Claims `connector` for the run `run_id` for `lease`, and records the run as `running`.
    /// A run left `running` by a crashed process is marked failed when its claim is taken over.
    pub async fn run_claim(
        &self,
        connector: &str,
        run_id: &str,
        lease: Duration,
    ) -> Result<RunClaim> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO connector_state (connector, lease_until, updated_at) VALUES ($1, 0, $2) \
             ON CONFLICT (connector) DO NOTHING",
        )
        .bind(connector)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("creating a connector's state"))?;
        let taken = sqlx::query(
            "UPDATE connector_state SET run_id = $2, lease_until = $3, updated_at = $4 \
             WHERE connector = $1 AND (run_id IS NULL OR lease_until < $4)",
        )
        .bind(connector)
        .bind(run_id)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("claiming a connector"))?;
        if taken.rows_affected() != 1 {
            let row =
                sqlx::query("SELECT run_id, lease_until FROM connector_state WHERE connector = $1")
                    .bind(connector)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("reading a connector's claim"))?;
            let holder: Option<String> = get(&row, "run_id")?;
            let lease_until: i64 = get(&row, "lease_until")?;
            tx.rollback()
                .await
                .map_err(db_err("ending a transaction"))?;
            return Ok(RunClaim::Busy {
                run_id: holder.unwrap_or_default(),
                lease_until,
            });
        }
        sqlx::query(
            "UPDATE sync_runs SET status = 'failed', finished_at = $2, \
             error = 'the run stopped before it finished (the process ended); its claim was taken over' \
             WHERE connector = $1 AND status = 'running'",
        )
        .bind(connector)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("closing an abandoned run"))?;
        sqlx::query(
            "INSERT INTO sync_runs (id, connector, status, started_at) VALUES ($1, $2, 'running', $3)",
        )
        .bind(run_id)
        .bind(connector)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a run"))?;
        tx.commit().await.map_err(db_err("claiming a connector"))?;
        Ok(RunClaim::Owned)
    }

    /// Extends the run's claim; fails when another run took it over.
    pub async fn run_renew(&self, connector: &str, run_id: &str, lease: Duration) -> Result<()> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "UPDATE connector_state SET lease_until = $3, updated_at = $4 \
             WHERE connector = $1 AND run_id = $2",
        )
        .bind(connector)
        .bind(run_id)
        .bind(until)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db_err("renewing a connector's claim"))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "the run of `{connector}` lost its claim (its lease ran out and another run took over); this run stops without saving its cursor"
            )))
        }
    }

    /// The cursor saved by the last successful run, `None` before the first.
    pub async fn run_cursor(&self, connector: &str) -> Result<Option<serde_json::Value>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT cursor FROM connector_state WHERE connector = $1")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading a connector's cursor"))?;
        match text.flatten() {
            Some(t) => parse_json("connector_state", "cursor", &t).map(Some),
            None => Ok(None),
        }
    }

    /// The silver version of `connector` that its index feed last indexed; `None` before the
    /// first feed.
    pub async fn indexed_version(&self, connector: &str) -> Result<Option<i64>> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT indexed_version FROM connector_state WHERE connector = $1")
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading a connector's indexed version"))?;
        Ok(v.flatten())
    }

    /// Saves the silver version the index feed of `connector` has indexed (after indexing).
    pub async fn set_indexed_version(&self, connector: &str, version: i64) -> Result<()> {
        sqlx::query("UPDATE connector_state SET indexed_version = $1 WHERE connector = $2")
            .bind(version)
            .bind(connector)
            .execute(&self.pool)
            .await
            .map_err(db_err("saving a connector's indexed version"))?;
        Ok(())
    }

    /// Ends a run: records its outcome, saves `cursor` (when given) and frees the claim, in
    /// one transaction, and only while this run holds the claim.
    pub async fn run_finish(
        &self,
        connector: &str,
        run_id: &str,
        cursor: Option<&serde_json::Value>,
        outcome: &RunOutcome,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let freed = match cursor {
            Some(c) => sqlx::query(
                "UPDATE connector_state SET cursor = $3, run_id = NULL, lease_until = 0, updated_at = $4 \
                 WHERE connector = $1 AND run_id = $2",
            )
            .bind(connector)
            .bind(run_id)
            .bind(c.to_string())
            .bind(now),
            None => sqlx::query(
                "UPDATE connector_state SET run_id = NULL, lease_until = 0, updated_at = $3 \
                 WHERE connector = $1 AND run_id = $2",
            )
            .bind(connector)
            .bind(run_id)
            .bind(now),
        }
        .execute(&mut *tx)
        .await
        .map_err(db_err("saving a connector's cursor"))?;
        let lost = freed.rows_affected() != 1;
        let error = match (&outcome.error, lost) {
            (Some(e), _) => Some(e.clone()),
            (None, true) => Some(
                "the run lost its claim before it finished; its cursor was not saved".to_string(),
            ),
            (None, false) => None,
        };
        sqlx::query(
            "UPDATE sync_runs SET status = $2, finished_at = $3, rows_read = $4, rows_written = $5, \
             rows_deleted = $6, rows_skipped = $7, files_read = $8, silver_version = $9, error = $10, \
             issues = $11 WHERE id = $1",
        )
        .bind(run_id)
        .bind(if error.is_some() { "failed" } else { "ok" })
        .bind(now)
        .bind(outcome.rows_read)
        .bind(outcome.rows_written)
        .bind(outcome.rows_deleted)
        .bind(outcome.rows_skipped)
        .bind(outcome.files_read)
        .bind(outcome.silver_version)
        .bind(error.as_deref())
        .bind(outcome.issues.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording a run's outcome"))?;
        tx.commit().await.map_err(db_err("finishing a run"))?;
        if lost && cursor.is_some() {
            return Err(Error::Conflict(format!(
                "the run of `{connector}` lost its claim before it finished; its cursor was not saved and the next run reads the same data again"
            )));
        }
        Ok(())
    }

    /// The most recent runs, newest first; of one connector when given.
    pub async fn runs(&self, connector: Option<&str>, limit: usize) -> Result<Vec<RunRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let cols = "id, connector, status, started_at, finished_at, rows_read, rows_written, \
                    rows_deleted, rows_skipped, files_read, silver_version, error, issues";
        let rows = match connector {
            Some(c) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {cols} FROM sync_runs WHERE connector = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
                )))
                .bind(c)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {cols} FROM sync_runs ORDER BY started_at DESC, id DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db_err("reading the run history"))?;
        rows.iter()
            .map(|r| {
                let issues: Option<String> = get(r, "issues")?;
                Ok(RunRow {
                    id: get(r, "id")?,
                    connector: get(r, "connector")?,
                    status: get(r, "status")?,
                    started_at: get(r, "started_at")?,
                    finished_at: get(r, "finished_at")?,
                    rows_read: get(r, "rows_read")?,
                    rows_written: get(r, "rows_written")?,
                    rows_deleted: get(r, "rows_deleted")?,
                    rows_skipped: get(r, "rows_skipped")?,
                    files_read: get(r, "files_read")?,
                    silver_version: get(r, "silver_version")?,
                    error: get(r, "error")?,
                    issues: match issues {
                        Some(t) => parse_json("sync_runs", "issues", &t)?,
                        None => serde_json::Value::Array(Vec::new()),
                    },
                })
            })
            .collect()
    }
}
