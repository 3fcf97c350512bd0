//! Access grants, pairing codes and answer feedback.
//!
//! A pairing code is handed to an unknown user who writes to the bot directly; an admin turns
//! it into a grant with `conveyor access approve CODE`. Codes expire. Approving is one
//! conditional `UPDATE` (only an unexpired, unapproved code matches), so a code is used once.

use serde::Serialize;

use super::{Store, db_err, get, now_ms};
use crate::error::{Error, Result};

/// Letters and digits that cannot be mistaken for each other when read aloud or typed
/// (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A user let in on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessGrant {
    /// The platform (`slack`, `discord`, `telegram`).
    pub channel: String,
    /// The platform's user id.
    pub user_id: String,
    /// The display name the user had when the grant was made.
    pub user_name: Option<String>,
    /// Unix milliseconds.
    pub granted_at: i64,
    /// Who approved it (the OS user running `conveyor access approve`, or `config`).
    pub granted_by: String,
}

/// A pairing code handed out to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairingCode {
    /// The code, like `ABCD-2345`.
    pub code: String,
    /// The platform.
    pub channel: String,
    /// The platform's user id.
    pub user_id: String,
    /// The user's display name, when the platform gave one.
    pub user_name: Option<String>,
    /// The chat the code was handed out in.
    pub chat: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; the code is refused after this.
    pub expires_at: i64,
}

/// A fresh random code, `XXXX-XXXX` over [`CODE_ALPHABET`] (about 40 bits).
fn new_code() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut code = String::with_capacity(9);
    for (i, b) in bytes.iter().take(8).enumerate() {
        if i == 4 {
            code.push('-');
        }
        code.push(char::from(
            CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()],
        ));
    }
    code
}

/// Normalises what an admin typed: case, spaces and a missing dash do not matter.
pub fn normalise_code(input: &str) -> String {
    let clean: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if clean.len() == 8 {
        format!("{}-{}", &clean[..4], &clean[4..])
    } else {
        clean
    }
}

impl Store {
    /// Whether `user_id` was let in on `channel`.
    pub async fn access_granted(&self, channel: &str, user_id: &str) -> Result<bool> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM access_grants WHERE channel = $1 AND user_id = $2",
        )
        .bind(channel)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an access grant"))?;
        Ok(found.is_some())
    }

    /// The user's pairing code: the unexpired one handed out before (so a user who writes
    /// twice gets the same code), or a new one valid for `ttl_ms`.
    pub async fn pairing_code_for(
        &self,
        channel: &str,
        user_id: &str,
        user_name: Option<&str>,
        chat: &str,
        ttl_ms: i64,
    ) -> Result<PairingCode> {
        let now = now_ms();
        if let Some(existing) = self.pending_code(channel, user_id, now).await? {
            return Ok(existing);
        }
        // A collision of two random 40-bit codes is unlikely; retry a few times anyway.
        for _ in 0..4 {
            let code = new_code();
            let inserted = sqlx::query(
                "INSERT INTO pairing_codes (code, channel, user_id, user_name, chat, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (code) DO NOTHING",
            )
            .bind(&code)
            .bind(channel)
            .bind(user_id)
            .bind(user_name)
            .bind(chat)
            .bind(now)
            .bind(now.saturating_add(ttl_ms))
            .execute(&self.writer)
            .await
            .map_err(db_err("recording a pairing code"))?;
            if inserted.rows_affected() == 1 {
                return Ok(PairingCode {
                    code,
                    channel: channel.into(),
                    user_id: user_id.into(),
                    user_name: user_name.map(str::to_string),
                    chat: chat.into(),
                    created_at: now,
                    expires_at: now.saturating_add(ttl_ms),
                });
            }
        }
        Err(Error::Internal(
            "could not find a free pairing code after 4 tries".into(),
        ))
    }

    async fn pending_code(
        &self,
        channel: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Option<PairingCode>> {
        let row = sqlx::query(
            "SELECT code, channel, user_id, user_name, chat, created_at, expires_at FROM pairing_codes \
             WHERE channel = $1 AND user_id = $2 AND expires_at > $3 AND approved_at IS NULL \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(channel)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading a pairing code"))?;
        row.as_ref().map(pairing_row).transpose()
    }

    /// Approves a pairing code and lets its user in. Unknown, expired and already used codes
    /// are refused with a sentence that says which and what to do.
    pub async fn pairing_approve(&self, code: &str, by: &str) -> Result<AccessGrant> {
        let code = normalise_code(code);
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE pairing_codes SET approved_at = $2 \
             WHERE code = $1 AND approved_at IS NULL AND expires_at > $2 \
             RETURNING code, channel, user_id, user_name, chat, created_at, expires_at",
        )
        .bind(&code)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("approving a pairing code"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.why_not_approvable(&code, now).await?);
        };
        let pairing = pairing_row(&row)?;
        sqlx::query(
            "INSERT INTO access_grants (channel, user_id, user_name, granted_at, granted_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, user_id) DO NOTHING",
        )
        .bind(&pairing.channel)
        .bind(&pairing.user_id)
        .bind(&pairing.user_name)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(db_err("recording an access grant"))?;
        tx.commit()
            .await
            .map_err(db_err("committing an access grant"))?;
        Ok(AccessGrant {
            channel: pairing.channel,
            user_id: pairing.user_id,
            user_name: pairing.user_name,
            granted_at: now,
            granted_by: by.into(),
        })
    }

    async fn why_not_approvable(&self, code: &str, now: i64) -> Result<Error> {
        let row = sqlx::query("SELECT expires_at, approved_at FROM pairing_codes WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("reading a pairing code"))?;
        let Some(row) = row else {
            return Ok(Error::NotFound(format!(
                "no pairing code `{code}`; check the spelling (codes look like ABCD-2345), or \
                 ask the user to message the bot again for a new one"
            )));
        };
        let approved_at: Option<i64> = get(&row, "approved_at")?;
        let expires_at: i64 = get(&row, "expires_at")?;
        if approved_at.is_some() {
            return Ok(Error::Conflict(format!(
                "pairing code `{code}` was already approved"
            )));
        }
        let ago = (now - expires_at).max(0) / 60_000;
        Ok(Error::BadInput(format!(
            "pairing code `{code}` expired {ago} min ago; ask the user to message the bot again \
             for a new one"
        )))
    }

    /// Adds a grant directly (`conveyor access grant`).
    pub async fn access_grant(
        &self,
        channel: &str,
        user_id: &str,
        user_name: Option<&str>,
        by: &str,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO access_grants (channel, user_id, user_name, granted_at, granted_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, user_id) DO NOTHING",
        )
        .bind(channel)
        .bind(user_id)
        .bind(user_name)
        .bind(now_ms())
        .bind(by)
        .execute(&self.writer)
        .await
        .map_err(db_err("recording an access grant"))?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Removes a grant; returns whether there was one.
    pub async fn access_revoke(&self, channel: &str, user_id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM access_grants WHERE channel = $1 AND user_id = $2")
            .bind(channel)
            .bind(user_id)
            .execute(&self.writer)
            .await
            .map_err(db_err("removing an access grant"))?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Every grant, by platform and user.
    pub async fn access_grants(&self) -> Result<Vec<AccessGrant>> {
        let rows = sqlx::query(
            "SELECT channel, user_id, user_name, granted_at, granted_by FROM access_grants \
             ORDER BY channel, user_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing access grants"))?;
        rows.iter()
            .map(|row| {
                Ok(AccessGrant {
                    channel: get(row, "channel")?,
                    user_id: get(row, "user_id")?,
                    user_name: get(row, "user_name")?,
                    granted_at: get(row, "granted_at")?,
                    granted_by: get(row, "granted_by")?,
                })
            })
            .collect()
    }

    /// Pairing codes that can still be approved, newest first.
    pub async fn pairing_pending(&self) -> Result<Vec<PairingCode>> {
        let rows = sqlx::query(
            "SELECT code, channel, user_id, user_name, chat, created_at, expires_at FROM pairing_codes \
             WHERE approved_at IS NULL AND expires_at > $1 ORDER BY created_at DESC",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing pairing codes"))?;
        rows.iter().map(pairing_row).collect()
    }

    /// Records a 👍 (`1`) or 👎 (`-1`) by `user_id` on the stored answer `message_id`; a new
    /// vote by the same user replaces the old one. An unknown message is [`Error::NotFound`].
    pub async fn feedback_record(
        &self,
        message_id: &str,
        user_id: &str,
        channel: &str,
        rating: i64,
    ) -> Result<()> {
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM messages WHERE id = $1 AND role = 'assistant'")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading an answer"))?;
        if known.is_none() {
            return Err(Error::NotFound(format!(
                "no stored answer with id `{message_id}`"
            )));
        }
        sqlx::query(
            "INSERT INTO feedback (message_id, user_id, channel, rating, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (message_id, user_id) DO UPDATE SET rating = excluded.rating, \
             created_at = excluded.created_at",
        )
        .bind(message_id)
        .bind(user_id)
        .bind(channel)
        .bind(rating.signum())
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(db_err("recording feedback"))?;
        Ok(())
    }

    /// The votes on one answer: `(user_id, rating)`.
    pub async fn feedback_for(&self, message_id: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT user_id, rating FROM feedback WHERE message_id = $1 ORDER BY user_id",
        )
        .bind(message_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading feedback"))?;
        rows.iter()
            .map(|row| Ok((get(row, "user_id")?, get(row, "rating")?)))
            .collect()
    }
}

fn pairing_row(row: &sqlx::any::AnyRow) -> Result<PairingCode> {
    Ok(PairingCode {
        code: get(row, "code")?,
        channel: get(row, "channel")?,
        user_id: get(row, "user_id")?,
        user_name: get(row, "user_name")?,
        chat: get(row, "chat")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(
                code.chars()
                    .filter(|c| *c != '-')
                    .all(|c| CODE_ALPHABET.contains(&(c as u8)))
            );
        }
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(normalise_code("abcd2345"), "ABCD-2345");
        assert_eq!(normalise_code(" abcd-2345 "), "ABCD-2345");
        assert_eq!(normalise_code("xyz"), "XYZ");
    }
}
