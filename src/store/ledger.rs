//! The ingress and egress ledgers.
//!
//! Every state change is a single statement that the database makes atomic (`INSERT … ON
//! CONFLICT DO NOTHING`, a conditional `UPDATE`), never a read followed by a write, so the
//! ledgers stay correct with many workers and many processes on one database.

use std::time::Duration;

use sqlx::AnyConnection;

use super::{Claim, EgressRow, Lease, NewEgress, Store, db_err, get, new_id, now_ms, parse_json};
use crate::error::{Error, Result};

/// How often a claim re-reads a row that changed under it before giving up. Each retry means
/// another worker made progress (inserted, released or took over the row), so a handful is
/// plenty; the bound only keeps a pathological race from looping forever.
const CLAIM_ATTEMPTS: usize = 8;

/// How long the delivery that recorded (or last attempted) a reply owns it. The delivery
/// renews it every third of this while it sends the reply's parts ([`Store::egress_renew`]),
/// however long pacing and `Retry-After` make it wait; after that, a reply still `pending` is
/// taken to be orphaned (its sender crashed or gave up) and [`Store::egress_claim_due`] hands
/// it to the resender.
pub const EGRESS_LEASE_MS: i64 = 30_000;

/// The outcome of [`Store::ingress_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressStatus {
    /// Being answered right now.
    Processing,
    /// Answered; the recorded response (a JSON string).
    Done(String),
}

impl Store {
    /// Tries to take ownership of processing `key`.
    ///
    /// - no row: inserts it as `processing`, owned by a fresh token → [`Claim::Owned`];
    /// - a `done` row → [`Claim::Done`] with the recorded response;
    /// - a `processing` row older than `lease` (its owner crashed) → taken over → [`Claim::Owned`];
    /// - a `processing` row within its lease → [`Claim::Busy`].
    ///
    /// Race-free across tasks and processes: exactly one concurrent caller gets `Owned`.
    pub async fn ingress_claim(
        &self,
        key: &str,
        request_hash: &str,
        lease: Duration,
    ) -> Result<Claim> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let (key, request_hash) = (key.to_string(), request_hash.to_string());
        self.write_statements("claiming an ingress key", move |conn| {
            Box::pin(async move { claim_in(conn, &key, &request_hash, lease_ms).await })
        })
        .await
    }

    /// Reads where `key` stands without claiming it (no write): [`Claim::Done`] or
    /// [`Claim::Busy`] as [`Store::ingress_claim`] would answer, `None` when there is no row
    /// or its lease ran out (then [`Store::ingress_claim`] may take it). A duplicate that waits
    /// for the first delivery's answer polls this, so waiting costs the writer nothing.
    pub async fn ingress_peek(&self, key: &str, lease: Duration) -> Result<Option<Claim>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "SELECT state, request_hash, response, claimed_at FROM ingress WHERE idem_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an ingress key"))?;
        match row {
            Some(row) => seen(&row, now_ms().saturating_sub(lease_ms)),
            None => Ok(None),
        }
    }

    /// Records the response (a JSON string) under `lease` and marks the key `done`, only while
    /// the lease is still held.
    ///
    /// Completing a key that is already `done` keeps the first response, so every retry sees
    /// the same reply. A lease that was taken over (it ran out and another delivery claimed the
    /// key) records nothing and is a [`Error::Conflict`]: the new owner answers. The gateway
    /// records its answers with [`Store::finish_turn`], which does this and stores the turn in
    /// the same commit.
    pub async fn ingress_complete(&self, lease: &Lease, response: &str) -> Result<()> {
        let (lease, response) = (lease.clone(), response.to_string());
        self.write_statements("completing an ingress key", move |conn| {
            Box::pin(async move { complete_in(conn, &lease, &response, now_ms()).await })
        })
        .await
    }

    /// Extends `lease` from now; `false` when it is no longer held (taken over, or the key is
    /// done).
    pub async fn ingress_renew(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.write_statements("renewing an ingress lease", move |conn| {
            Box::pin(async move {
                let renewed = sqlx::query(
                    "UPDATE ingress SET claimed_at = $3 \
                     WHERE idem_key = $1 AND state = 'processing' AND owner = $2",
                )
                .bind(&lease.key)
                .bind(&lease.owner)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(db_err("renewing an ingress lease"))?;
                Ok(renewed.rows_affected() == 1)
            })
        })
        .await
    }

    /// Deletes the `processing` row `lease` holds so that a later retry can run (processing
    /// failed or was rate-limited). A `done` row, or a row another owner took over, is left.
    pub async fn ingress_release(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.write_statements("releasing an ingress key", move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM ingress WHERE idem_key = $1 AND state = 'processing' AND owner = $2",
                )
                .bind(&lease.key)
                .bind(&lease.owner)
                .execute(&mut *conn)
                .await
                .map_err(db_err("releasing an ingress key"))?;
                Ok(())
            })
        })
        .await
    }

    /// How many keys the ingress ledger holds.
    pub async fn ingress_count(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM ingress")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("counting ingress keys"))
    }

    /// Where the ingress key `key` stands: `None` when the ledger has no row for it, else
    /// [`IngressStatus::Processing`] or the recorded response (a JSON string).
    pub async fn ingress_response(&self, key: &str) -> Result<Option<IngressStatus>> {
        let row = sqlx::query("SELECT state, response FROM ingress WHERE idem_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading an ingress key"))?;
        let Some(row) = row else { return Ok(None) };
        let state: String = get(&row, "state")?;
        if state == "done" {
            let response: Option<String> = get(&row, "response")?;
            Ok(Some(IngressStatus::Done(response.unwrap_or_default())))
        } else {
            Ok(Some(IngressStatus::Processing))
        }
    }

    /// Records a reply as `pending` before it is sent and returns its id. Recording the same
    /// `dedupe_key` again returns the existing row's id and changes nothing.
    pub async fn egress_record(&self, e: &NewEgress) -> Result<String> {
        let inserted = self.egress_record_new(e).await?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        // Rows are never deleted, so the conflicting row is still there.
        sqlx::query_scalar("SELECT id FROM egress WHERE dedupe_key = $1")
            .bind(&e.dedupe_key)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("reading an outbound message"))
    }

    /// Like [`Store::egress_record`], but returns the id only when this call recorded the row:
    /// `None` means another delivery recorded (and is sending, or sent) it, so the caller must
    /// not send it again.
    pub async fn egress_record_new(&self, e: &NewEgress) -> Result<Option<String>> {
        let ids = self.egress_record_all(std::slice::from_ref(e)).await?;
        Ok(ids.into_iter().next().flatten())
    }

    /// Records every part of one reply in one transaction, before any is sent: either all
    /// parts are in the ledger (and the resender finishes what a crash interrupted) or none
    /// is. Per part, like [`Store::egress_record_new`]: its id when this call recorded it,
    /// `None` when an earlier delivery did.
    pub async fn egress_record_all(&self, parts: &[NewEgress]) -> Result<Vec<Option<String>>> {
        Ok(self.egress_record_answering(parts, None).await?.0)
    }

    /// [`Store::egress_record_all`], and in the same commit the inbox row `inbox` holds marked
    /// done (as [`Store::inbox_done`]): once its reply is in the ledger the message is
    /// answered, so the two need not be two commits. The flag says whether the row was marked
    /// (`false`: no row given, or the lease on it was lost).
    pub async fn egress_record_answering(
        &self,
        parts: &[NewEgress],
        inbox: Option<&Lease>,
    ) -> Result<(Vec<Option<String>>, bool)> {
        if parts.is_empty() && inbox.is_none() {
            return Ok((Vec::new(), false));
        }
        let (parts, inbox) = (parts.to_vec(), inbox.cloned());
        self.write("recording an outbound message", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let mut ids = Vec::with_capacity(parts.len());
                for e in &parts {
                    let id: Option<String> = sqlx::query_scalar(
                        "INSERT INTO egress (id, channel, conversation, dedupe_key, payload, state, attempts, created_at, lease_until) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7) \
                         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                    )
                    .bind(new_id())
                    .bind(&e.channel)
                    .bind(&e.conversation)
                    .bind(&e.dedupe_key)
                    .bind(e.payload.to_string())
                    .bind(now)
                    .bind(now.saturating_add(EGRESS_LEASE_MS))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err("recording an outbound message"))?;
                    ids.push(id);
                }
                let answered = match &inbox {
                    Some(lease) => super::inbox::done_in(conn, lease, now).await?,
                    None => false,
                };
                Ok((ids, answered))
            })
        })
        .await
    }

    /// Counts one send attempt of a pending reply and returns the new count, so a channel can
    /// give up on a reply that keeps failing. The attempt renews the sender's lease on the row
    /// ([`EGRESS_LEASE_MS`]), so the resender leaves it alone while it is being sent.
    pub async fn egress_attempt(&self, id: &str) -> Result<i64> {
        let owned = id.to_string();
        let attempts: Option<i64> = self
            .write_statements("counting a send attempt", move |conn| {
                Box::pin(async move {
                    sqlx::query_scalar(
                        "UPDATE egress SET attempts = attempts + 1, lease_until = $2 WHERE id = $1 RETURNING attempts",
                    )
                    .bind(&owned)
                    .bind(now_ms().saturating_add(EGRESS_LEASE_MS))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err("counting a send attempt"))
                })
            })
            .await?;
        attempts.ok_or_else(|| Error::NotFound(format!("no outbound message with id `{id}`")))
    }

    /// Extends the sender's lease on the replies `ids` that are still `pending` by
    /// [`EGRESS_LEASE_MS`] from now; returns how many it renewed.
    pub async fn egress_renew(&self, ids: &[&str]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE egress SET lease_until = $1 WHERE state = 'pending' AND id IN ({})",
            placeholders.join(", ")
        );
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_string()).collect();
        self.write_statements("renewing the lease on replies being sent", move |conn| {
            Box::pin(async move {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms().saturating_add(EGRESS_LEASE_MS));
                for id in &ids {
                    query = query.bind(id);
                }
                let renewed = query
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("renewing the lease on replies being sent"))?;
                Ok(renewed.rows_affected())
            })
        })
        .await
    }

    /// Marks a reply as sent; `remote_id` is the platform's id for it, when there is one.
    /// Confirming twice is harmless.
    pub async fn egress_confirm(&self, id: &str, remote_id: Option<&str>) -> Result<()> {
        let (owned, remote) = (id.to_string(), remote_id.map(str::to_string));
        let updated = self
            .write_statements("confirming an outbound message", move |conn| {
                Box::pin(async move {
                    let updated = sqlx::query(
                        "UPDATE egress SET state = 'confirmed', remote_id = COALESCE($2, remote_id), \
                         confirmed_at = $3 WHERE id = $1",
                    )
                    .bind(&owned)
                    .bind(&remote)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("confirming an outbound message"))?;
                    Ok(updated.rows_affected())
                })
            })
            .await?;
        if updated == 0 {
            return Err(Error::NotFound(format!(
                "no outbound message with id `{id}`"
            )));
        }
        Ok(())
    }

    /// The newest `limit` rows of one conversation, newest first (the web feed of workflow
    /// messages reads its posts this way).
    pub async fn egress_of(&self, conversation: &str, limit: i64) -> Result<Vec<EgressRow>> {
        let rows = sqlx::query(
            "SELECT id, channel, conversation, dedupe_key, payload, attempts, created_at \
             FROM egress WHERE conversation = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(conversation)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing a conversation's outbound messages"))?;
        rows.iter().map(egress_row).collect()
    }

    /// Replies of `channel` recorded but not confirmed, oldest first: what to send again after
    /// a crash.
    pub async fn egress_pending(&self, channel: &str) -> Result<Vec<EgressRow>> {
        let rows = sqlx::query(
            "SELECT id, channel, conversation, dedupe_key, payload, attempts, created_at \
             FROM egress WHERE channel = $1 AND state = 'pending' ORDER BY created_at, id",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing pending outbound messages"))?;
        rows.iter().map(egress_row).collect()
    }

    /// Claims up to `limit` replies of `channel` that are still `pending` and whose lease ran
    /// out by `now` (unix ms), oldest first, taking a new lease of `lease_ms` on each. Each row
    /// is claimed with a conditional `UPDATE`, so two resenders (processes) never both get it.
    pub async fn egress_claim_due(
        &self,
        channel: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<EgressRow>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM egress WHERE channel = $1 AND state = 'pending' AND lease_until < $2 \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(channel)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing replies to send again"))?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "UPDATE egress SET lease_until = $3 \
                 WHERE id = $1 AND state = 'pending' AND lease_until < $2 \
                 RETURNING id, channel, conversation, dedupe_key, payload, attempts, created_at",
            )
            .bind(&id)
            .bind(now)
            .bind(now.saturating_add(lease_ms))
            .fetch_optional(&self.writer)
            .await
            .map_err(db_err("claiming a reply to send again"))?;
            if let Some(row) = row {
                claimed.push(egress_row(&row)?);
            }
        }
        Ok(claimed)
    }

    /// Notes why the last attempt to send a reply failed; the reply stays `pending`.
    pub async fn egress_note_error(&self, id: &str, error: &str) -> Result<()> {
        self.egress_set_error(
            "noting a send error",
            "UPDATE egress SET last_error = $2 WHERE id = $1",
            id,
            error,
        )
        .await
    }

    /// Gives up on a reply: it becomes `failed` with `error` and is never sent again.
    pub async fn egress_fail(&self, id: &str, error: &str) -> Result<()> {
        self.egress_set_error(
            "marking a reply as failed",
            "UPDATE egress SET state = 'failed', last_error = $2 WHERE id = $1 AND state = 'pending'",
            id,
            error,
        )
        .await
    }

    /// Runs `sql` with `$1` the reply's id and `$2` an error text.
    async fn egress_set_error(
        &self,
        op: &'static str,
        sql: &'static str,
        id: &str,
        error: &str,
    ) -> Result<()> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write_statements(op, move |conn| {
            Box::pin(async move {
                sqlx::query(sql)
                    .bind(&id)
                    .bind(&error)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err(op))?;
                Ok(())
            })
        })
        .await
    }

    /// The state of the reply recorded under `dedupe_key` (`pending`, `confirmed` or
    /// `failed`) and its last error, if it exists.
    pub async fn egress_state(&self, dedupe_key: &str) -> Result<Option<(String, Option<String>)>> {
        let row = sqlx::query("SELECT state, last_error FROM egress WHERE dedupe_key = $1")
            .bind(dedupe_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading a reply's state"))?;
        match row {
            Some(row) => Ok(Some((get(&row, "state")?, get(&row, "last_error")?))),
            None => Ok(None),
        }
    }
}

/// What the ingress row `row` tells a claimer: [`Claim::Done`], [`Claim::Busy`] while its
/// lease runs (claimed at or after `cutoff`), `None` once it ran out (the key may be taken).
fn seen(row: &sqlx::any::AnyRow, cutoff: i64) -> Result<Option<Claim>> {
    let state: String = get(row, "state")?;
    let request_hash: String = get(row, "request_hash")?;
    if state == "done" {
        let response: Option<String> = get(row, "response")?;
        return Ok(Some(Claim::Done {
            response: response.unwrap_or_default(),
            request_hash,
        }));
    }
    let claimed_at: i64 = get(row, "claimed_at")?;
    Ok((claimed_at >= cutoff).then_some(Claim::Busy { request_hash }))
}

/// [`Store::ingress_claim`] on `conn`, inside a write transaction.
async fn claim_in(
    conn: &mut AnyConnection,
    key: &str,
    request_hash: &str,
    lease_ms: i64,
) -> Result<Claim> {
    for _ in 0..CLAIM_ATTEMPTS {
        let now = now_ms();
        let owner = new_id();
        let inserted = sqlx::query(
            "INSERT INTO ingress (idem_key, request_hash, state, owner, claimed_at, created_at) \
             VALUES ($1, $2, 'processing', $3, $4, $4) \
             ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(key)
        .bind(request_hash)
        .bind(&owner)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err("claiming an ingress key"))?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Owned(Lease {
                key: key.to_string(),
                owner,
            }));
        }

        let row = sqlx::query(
            "SELECT state, request_hash, response, claimed_at FROM ingress WHERE idem_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err("reading an ingress key"))?;
        // Released between our insert and this read (PostgreSQL, another connection): try
        // to insert again.
        let Some(row) = row else { continue };

        let cutoff = now.saturating_sub(lease_ms);
        if let Some(claim) = seen(&row, cutoff)? {
            return Ok(claim);
        }

        // The owner's lease ran out. The WHERE clause repeats the conditions we just read,
        // so of several callers racing to take over, exactly one updates the row.
        let taken = sqlx::query(
            "UPDATE ingress SET owner = $2, claimed_at = $3, request_hash = $4 \
             WHERE idem_key = $1 AND state = 'processing' AND claimed_at < $5",
        )
        .bind(key)
        .bind(&owner)
        .bind(now)
        .bind(request_hash)
        .bind(cutoff)
        .execute(&mut *conn)
        .await
        .map_err(db_err("taking over an expired ingress key"))?;
        if taken.rows_affected() == 1 {
            tracing::info!(key, "took over an ingress key whose owner's lease expired");
            return Ok(Claim::Owned(Lease {
                key: key.to_string(),
                owner,
            }));
        }
        // Someone else took it over or completed it; read again to report what they did.
    }
    Err(Error::Upstream(format!(
        "store: the ingress key `{key}` kept changing while it was being claimed; try again"
    )))
}

/// Marks the key `lease` holds `done` with `response`, only while `lease` holds it (the row
/// is `processing` and its owner); whether it did.
pub(super) async fn mark_done(
    conn: &mut AnyConnection,
    lease: &Lease,
    response: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE ingress SET state = 'done', response = $2, completed_at = $3 \
         WHERE idem_key = $1 AND state = 'processing' AND owner = $4",
    )
    .bind(&lease.key)
    .bind(response)
    .bind(now)
    .bind(&lease.owner)
    .execute(&mut *conn)
    .await
    .map_err(db_err("completing an ingress key"))?;
    Ok(done.rows_affected() == 1)
}

/// Marks the key `lease` holds `done` with `response`, on `conn` inside a write transaction;
/// see [`Store::ingress_complete`].
async fn complete_in(
    conn: &mut AnyConnection,
    lease: &Lease,
    response: &str,
    now: i64,
) -> Result<()> {
    if mark_done(conn, lease, response, now).await? {
        return Ok(());
    }
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM ingress WHERE idem_key = $1")
        .bind(&lease.key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err("reading an ingress key"))?;
    match state.as_deref() {
        Some("done") => Ok(()),
        Some(_) => Err(Error::Conflict(format!(
            "the ingress key `{}` was taken over by another delivery after this one's lease ran out; its answer was not recorded",
            lease.key
        ))),
        None => Err(Error::Internal(format!(
            "the ingress key `{}` was completed but is no longer in the ledger; the response was not recorded",
            lease.key
        ))),
    }
}

fn egress_row(row: &sqlx::any::AnyRow) -> Result<EgressRow> {
    let payload: String = get(row, "payload")?;
    Ok(EgressRow {
        id: get(row, "id")?,
        channel: get(row, "channel")?,
        conversation: get(row, "conversation")?,
        dedupe_key: get(row, "dedupe_key")?,
        payload: parse_json("egress", "payload", &payload)?,
        attempts: get(row, "attempts")?,
        created_at: get(row, "created_at")?,
    })
}
