//! Conversations and their messages.

use super::{Lease, NewMessage, Role, Store, Turn, db_err, get, new_id, now_ms, parse_json};
use crate::error::{Error, Result};

/// Writes `m` under `id` on `conn` (inside a write transaction), creating its conversation
/// row on its first message.
async fn insert_message(
    conn: &mut sqlx::AnyConnection,
    m: &NewMessage,
    id: &str,
    now: i64,
) -> Result<()> {
    touch_conversation(conn, m, now).await?;
    insert_message_row(conn, m, id, now).await
}

/// Creates `m`'s conversation row, or marks it updated at `now`.
async fn touch_conversation(
    conn: &mut sqlx::AnyConnection,
    m: &NewMessage,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO conversations (conv_key, channel, created_at, updated_at) \
         VALUES ($1, $2, $3, $3) \
         ON CONFLICT (conv_key) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(&m.conversation)
    .bind(&m.channel)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err("saving a conversation"))?;
    Ok(())
}

/// Writes `m` under `id`; its conversation row must exist.
async fn insert_message_row(
    conn: &mut sqlx::AnyConnection,
    m: &NewMessage,
    id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages (id, conversation, role, user_id, body, meta, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&m.conversation)
    .bind(m.role.as_str())
    .bind(&m.user_id)
    .bind(&m.text)
    .bind(m.meta.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err("saving a message"))?;
    Ok(())
}

/// A fresh message id (uuid v7: ids taken later sort later, which orders a conversation).
pub fn new_message_id() -> String {
    new_id()
}

impl Store {
    /// Appends a message, creating the conversation row on its first message, and returns the
    /// new message id (uuid v7).
    pub async fn append_message(&self, m: &NewMessage) -> Result<String> {
        let id = new_id();
        let (m, at) = (m.clone(), id.clone());
        // One transaction, so a message never exists without its conversation row.
        self.write("saving a message", move |conn| {
            Box::pin(async move { insert_message(conn, &m, &at, now_ms()).await })
        })
        .await?;
        Ok(id)
    }

    /// Ends a turn in one transaction (one commit): stores `messages` (the question and its
    /// answer, each under the id given, from [`new_message_id`]) and records `response` (a
    /// JSON string) against the ingress key `lease` holds, marking it done. Only while the
    /// lease is held: a lease that was taken over stores nothing (no second answer in the
    /// conversation) and is an [`Error::Conflict`].
    pub async fn finish_turn(
        &self,
        lease: &Lease,
        messages: Vec<(String, NewMessage)>,
        response: String,
    ) -> Result<()> {
        let lease = lease.clone();
        self.write("saving an answer", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                if !super::ledger::mark_done(conn, &lease, &response, now).await? {
                    return Err(Error::Conflict(format!(
                        "the ingress key `{}` was taken over by another delivery after this one's lease ran out; its answer was not recorded",
                        lease.key
                    )));
                }
                let mut touched: Option<&str> = None;
                for (id, m) in &messages {
                    if touched != Some(m.conversation.as_str()) {
                        touch_conversation(conn, m, now).await?;
                        touched = Some(&m.conversation);
                    }
                    insert_message_row(conn, m, id, now).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The last `n` messages of `conversation`, oldest first.
    pub async fn recent_turns(&self, conversation: &str, n: usize) -> Result<Vec<Turn>> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        // uuid v7 ids are time-ordered and monotonic within a process, so they order messages
        // even when several share a millisecond.
        let rows = sqlx::query(
            "SELECT id, role, user_id, body, meta, created_at FROM messages \
             WHERE conversation = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(conversation)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading conversation history"))?;
        let mut turns = rows
            .iter()
            .map(|row| {
                let role: String = get(row, "role")?;
                Ok(Turn {
                    id: get(row, "id")?,
                    role: Role::parse(&role)?,
                    user_id: get(row, "user_id")?,
                    text: get(row, "body")?,
                    meta: parse_json("messages", "meta", &get::<String>(row, "meta")?)?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        turns.reverse();
        Ok(turns)
    }

    /// One message's conversation and meta, by id; `None` when there is no such message.
    pub async fn message_meta(&self, id: &str) -> Result<Option<(String, serde_json::Value)>> {
        let row = sqlx::query("SELECT conversation, meta FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading a message"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            get(&row, "conversation")?,
            parse_json("messages", "meta", &get::<String>(&row, "meta")?)?,
        )))
    }

    /// How many messages are stored, across conversations.
    pub async fn message_count(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("counting messages"))
    }
}
