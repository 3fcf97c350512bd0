//! The inbox: accepted messages written before they are acknowledged, answered by their
//! accepting task or, after a crash or a shutdown, by whichever process claims them next.
//!
//! Like the ledgers, every state change is one statement the database makes atomic, and every
//! change after the claim is owner-checked ([`Lease`]): a process whose lease ran out (it
//! stalled, another took the row over) can neither finish nor hand back the new owner's row.

use std::time::Duration;

use super::{Lease, Store, db_err, get, new_id, now_ms, parse_json};
use crate::error::Result;

/// One queued message claimed by [`Store::inbox_claim_due`].
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow {
    /// The claim: only its holder renews, finishes, fails or hands back the row.
    pub lease: Lease,
    /// The surface that accepted it (`slack`, `telegram`, `webhook`, …).
    pub channel: String,
    /// What the surface recorded: the message and where its answer goes.
    pub payload: serde_json::Value,
    /// How many times it has been claimed, this claim included.
    pub attempts: i64,
    /// When it was accepted (unix ms).
    pub created_at: i64,
}

/// An inbox row as an operator sees it ([`Store::inbox_list`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboxEntry {
    /// The message's key (`{channel}:{idempotency key}`).
    pub key: String,
    /// The surface that accepted it.
    pub channel: String,
    /// `queued`, `done` or `failed`.
    pub state: String,
    /// Claims so far.
    pub attempts: i64,
    /// Why it failed, for a failed row.
    pub last_error: Option<String>,
    /// When it was accepted (unix ms).
    pub created_at: i64,
    /// When its owner's lease runs out (unix ms); 0 when handed back.
    pub lease_until: i64,
}

/// Where an inbox row stands ([`Store::inbox_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxState {
    /// Waiting to be answered, or being answered.
    Queued,
    /// Answered.
    Done,
    /// Given up, with why.
    Failed(String),
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Writes an accepted message under `key` before the surface acknowledges it, owned by the
    /// caller for `lease`. `None` when the key is already in the inbox, queued or done (a
    /// redelivery: the first copy is, or was, answered). A `failed` row is queued again with
    /// the new payload: resending a message that was given up on tries it once more.
    pub async fn inbox_put(
        &self,
        channel: &str,
        key: &str,
        payload: &serde_json::Value,
        lease: Duration,
    ) -> Result<Option<Lease>> {
        let now = now_ms();
        let owner = new_id();
        let until = now.saturating_add(lease_ms(lease));
        let text = payload.to_string();
        let (key_, channel, owner_) = (key.to_string(), channel.to_string(), owner.clone());
        let queued = self
            .write_statements("writing a message to the inbox", move |conn| {
                Box::pin(async move {
                    let inserted = sqlx::query(
                        "INSERT INTO inbox (msg_key, channel, payload, state, owner, lease_until, attempts, created_at) \
                         VALUES ($1, $2, $3, 'queued', $4, $5, 1, $6) ON CONFLICT (msg_key) DO NOTHING",
                    )
                    .bind(&key_)
                    .bind(&channel)
                    .bind(&text)
                    .bind(&owner_)
                    .bind(until)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("writing a message to the inbox"))?;
                    if inserted.rows_affected() == 1 {
                        return Ok(true);
                    }
                    let requeued = sqlx::query(
                        "UPDATE inbox SET state = 'queued', payload = $2, owner = $3, lease_until = $4, \
                         attempts = 1, last_error = NULL, done_at = NULL \
                         WHERE msg_key = $1 AND state = 'failed'",
                    )
                    .bind(&key_)
                    .bind(&text)
                    .bind(&owner_)
                    .bind(until)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("queueing a failed inbox message again"))?;
                    Ok(requeued.rows_affected() == 1)
                })
            })
            .await?;
        Ok(queued.then(|| Lease {
            key: key.to_string(),
            owner,
        }))
    }

    /// Extends the claim from now by `lease`; `false` when it is no longer held (the row was
    /// taken over, finished or handed back).
    pub async fn inbox_renew(&self, lease: &Lease, length: Duration) -> Result<bool> {
        let until = now_ms().saturating_add(lease_ms(length));
        self.owned_update(
            "renewing an inbox lease",
            "UPDATE inbox SET lease_until = $3 WHERE msg_key = $1 AND owner = $2 AND state = 'queued'",
            lease,
            vec![Bind::Int(until)],
        )
        .await
    }

    /// Marks the row answered (its payload is cleared: the message lives on in the
    /// conversation); `false` when the claim was no longer held.
    pub async fn inbox_done(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.write_statements("finishing an inbox message", move |conn| {
            Box::pin(async move { done_in(conn, &lease, now_ms()).await })
        })
        .await
    }

    /// Gives the row up with `error` (it is kept, with its payload, for an operator to look
    /// at; a resend of the same message queues it again).
    pub async fn inbox_fail(&self, lease: &Lease, error: &str) -> Result<bool> {
        self.owned_update(
            "failing an inbox message",
            "UPDATE inbox SET state = 'failed', last_error = $3, done_at = $4 \
             WHERE msg_key = $1 AND owner = $2 AND state = 'queued'",
            lease,
            vec![Bind::Text(error.to_string()), Bind::Int(now_ms())],
        )
        .await
    }

    /// Hands a row this process could not finish (it is shutting down) back to the queue at
    /// once: the next process to look claims it without waiting for the lease, and the
    /// attempt is not counted against it.
    pub async fn inbox_hand_back(&self, lease: &Lease) -> Result<bool> {
        self.owned_update(
            "handing an inbox message back",
            "UPDATE inbox SET lease_until = 0, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE msg_key = $1 AND owner = $2 AND state = 'queued'",
            lease,
            Vec::new(),
        )
        .await
    }

    /// Claims up to `limit` queued rows of `channels` whose lease ran out (their owner crashed,
    /// or handed them back), oldest first, each for `lease` and with its attempt counted. Each
    /// row is taken by a conditional `UPDATE`, so of several processes exactly one gets it.
    /// Rows of channels not listed (a platform this process does not run) are left alone.
    pub async fn inbox_claim_due(
        &self,
        channels: &[&str],
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<InboxRow>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let placeholders: Vec<String> =
            (0..channels.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT msg_key FROM inbox WHERE state = 'queued' AND lease_until < $1 \
             AND channel IN ({}) ORDER BY created_at, msg_key LIMIT $2",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit);
        for channel in channels {
            query = query.bind(*channel);
        }
        let keys = query
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("listing inbox messages to answer"))?;
        let until = now.saturating_add(lease_ms(lease));
        let mut claimed = Vec::with_capacity(keys.len());
        for key in keys {
            let owner = new_id();
            let row = sqlx::query(
                "UPDATE inbox SET owner = $2, lease_until = $3, attempts = attempts + 1 \
                 WHERE msg_key = $1 AND state = 'queued' AND lease_until < $4 \
                 RETURNING channel, payload, attempts, created_at",
            )
            .bind(&key)
            .bind(&owner)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.writer)
            .await
            .map_err(db_err("claiming an inbox message"))?;
            // Another process claimed it between the list and the update.
            let Some(row) = row else { continue };
            let payload: String = get(&row, "payload")?;
            claimed.push(InboxRow {
                lease: Lease { key, owner },
                channel: get(&row, "channel")?,
                payload: parse_json("inbox", "payload", &payload)?,
                attempts: get(&row, "attempts")?,
                created_at: get(&row, "created_at")?,
            });
        }
        Ok(claimed)
    }

    /// Where the message `key` stands in the inbox; `None` when it was never queued.
    pub async fn inbox_state(&self, key: &str) -> Result<Option<InboxState>> {
        let row = sqlx::query("SELECT state, last_error FROM inbox WHERE msg_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading an inbox message"))?;
        let Some(row) = row else { return Ok(None) };
        let state: String = get(&row, "state")?;
        Ok(Some(match state.as_str() {
            "done" => InboxState::Done,
            "failed" => {
                let error: Option<String> = get(&row, "last_error")?;
                InboxState::Failed(error.unwrap_or_default())
            }
            _ => InboxState::Queued,
        }))
    }

    /// Rows that are not done (queued or failed), oldest first, at most `limit`; only
    /// `failed` ones with `failed_only`.
    pub async fn inbox_list(&self, failed_only: bool, limit: i64) -> Result<Vec<InboxEntry>> {
        let rows = sqlx::query(
            "SELECT msg_key, channel, state, attempts, last_error, created_at, lease_until FROM inbox \
             WHERE state = 'failed' OR (state = 'queued' AND $1 = 0) ORDER BY created_at, msg_key LIMIT $2",
        )
        .bind(i64::from(failed_only))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing the inbox"))?;
        rows.iter()
            .map(|row| {
                Ok(InboxEntry {
                    key: get(row, "msg_key")?,
                    channel: get(row, "channel")?,
                    state: get(row, "state")?,
                    attempts: get(row, "attempts")?,
                    last_error: get(row, "last_error")?,
                    created_at: get(row, "created_at")?,
                    lease_until: get(row, "lease_until")?,
                })
            })
            .collect()
    }

    /// Queues a failed row again, claimable at once with its attempts reset (an operator fixed
    /// what made it fail); `false` when `key` is not a failed row.
    pub async fn inbox_retry(&self, key: &str) -> Result<bool> {
        let retried = sqlx::query(
            "UPDATE inbox SET state = 'queued', lease_until = 0, attempts = 0, done_at = NULL \
             WHERE msg_key = $1 AND state = 'failed'",
        )
        .bind(key)
        .execute(&self.writer)
        .await
        .map_err(db_err("queueing an inbox message again"))?;
        Ok(retried.rows_affected() == 1)
    }

    /// How many messages wait in the inbox (queued, whether or not someone answers them now),
    /// per channel, for `/metrics` and start-up logs.
    pub async fn inbox_queued(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT channel, COUNT(*) AS n FROM inbox WHERE state = 'queued' GROUP BY channel ORDER BY channel",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("counting queued inbox messages"))?;
        rows.iter()
            .map(|row| Ok((get(row, "channel")?, get(row, "n")?)))
            .collect()
    }

    /// Deletes rows answered before `before` (unix ms). A redelivery after that is still
    /// answered once: the ingress and egress ledgers keep its answer and its sent parts.
    pub async fn inbox_prune(&self, before: i64) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM inbox WHERE state = 'done' AND done_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await
            .map_err(db_err("pruning the inbox"))?;
        Ok(deleted.rows_affected())
    }
}

/// [`Store::inbox_done`] on `conn`, inside a write.
pub(super) async fn done_in(
    conn: &mut sqlx::AnyConnection,
    lease: &Lease,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE inbox SET state = 'done', payload = '{}', done_at = $3, last_error = NULL \
         WHERE msg_key = $1 AND owner = $2 AND state = 'queued'",
    )
    .bind(&lease.key)
    .bind(&lease.owner)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err("finishing an inbox message"))?;
    Ok(done.rows_affected() == 1)
}

/// A value bound after a row's key and owner in [`Store::owned_update`].
enum Bind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Runs `sql` (`$1` the row's key, `$2` its owner, then `binds`) as a write; whether it
    /// changed the row, that is whether `lease` still held it.
    async fn owned_update(
        &self,
        op: &'static str,
        sql: &'static str,
        lease: &Lease,
        binds: Vec<Bind>,
    ) -> Result<bool> {
        let lease = lease.clone();
        self.write_statements(op, move |conn| {
            Box::pin(async move {
                let mut query = sqlx::query(sql).bind(&lease.key).bind(&lease.owner);
                for bind in &binds {
                    query = match bind {
                        Bind::Int(v) => query.bind(*v),
                        Bind::Text(v) => query.bind(v),
                    };
                }
                let changed = query.execute(&mut *conn).await.map_err(db_err(op))?;
                Ok(changed.rows_affected() == 1)
            })
        })
        .await
    }
}
