//! The audit log: append-only and hash-chained.
//!
//! Each record's hash is `hex(sha256(prev_hash || "\n" || canonical JSON of the record))`,
//! where the canonical JSON has sorted keys and no whitespace and includes `id` and `ts`. The
//! `arguments` and `result` columns store their canonical JSON text, and verification hashes
//! that stored text as it is, so a value never has to survive a parse and re-serialise round
//! trip (floats might not) to verify. Deleting the newest records cannot be detected by the
//! chain alone; any other change, insertion or deletion can.

use sha2::{Digest, Sha256};

use super::{AuditEntry, AuditRow, AuditVerdict, Backend, Store, db_err, get, now_ms, parse_json};
use crate::error::Result;

/// The `prev_hash` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The PostgreSQL advisory lock key that serialises audit appends ("convaudt" in ASCII).
/// sqlx's migration lock uses a different, CRC-derived key.
const AUDIT_LOCK: i64 = 0x636F_6E76_6175_6474;

/// How many records verification reads per query, to bound memory on a long log.
const VERIFY_BATCH: i64 = 500;

const COLUMNS: &str = "id, ts, user_id, channel, conversation, action, arguments, result, \
                       outcome, duration_ms, prev_hash, hash";

/// The hashed fields of one record, with `arguments` and `result` as canonical JSON text.
struct Fields<'a> {
    id: i64,
    ts: i64,
    user_id: &'a str,
    channel: &'a str,
    conversation: &'a str,
    action: &'a str,
    arguments: &'a str,
    result: &'a str,
    outcome: &'a str,
    duration_ms: i64,
}

impl Fields<'_> {
    /// The canonical JSON of the record: keys in sorted order, no whitespace.
    fn canonical(&self) -> String {
        format!(
            "{{\"action\":{},\"arguments\":{},\"channel\":{},\"conversation\":{},\
             \"duration_ms\":{},\"id\":{},\"outcome\":{},\"result\":{},\"ts\":{},\"user_id\":{}}}",
            json_str(self.action),
            self.arguments,
            json_str(self.channel),
            json_str(self.conversation),
            self.duration_ms,
            self.id,
            json_str(self.outcome),
            self.result,
            self.ts,
            json_str(self.user_id),
        )
    }

    /// The chained hash of this record.
    fn hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.canonical().as_bytes());
        hex::encode(h.finalize())
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// JSON with object keys sorted at every level and no whitespace. Written by hand because
/// `serde_json` keeps insertion order when its `preserve_order` feature is on, and another
/// crate in the build turns it on.
pub(super) fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_str(k));
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One stored record, columns as text, before its JSON is parsed.
struct RawRow {
    id: i64,
    ts: i64,
    user_id: String,
    channel: String,
    conversation: String,
    action: String,
    arguments: String,
    result: String,
    outcome: String,
    duration_ms: i64,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn read(row: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(Self {
            id: get(row, "id")?,
            ts: get(row, "ts")?,
            user_id: get(row, "user_id")?,
            channel: get(row, "channel")?,
            conversation: get(row, "conversation")?,
            action: get(row, "action")?,
            arguments: get(row, "arguments")?,
            result: get(row, "result")?,
            outcome: get(row, "outcome")?,
            duration_ms: get(row, "duration_ms")?,
            prev_hash: get(row, "prev_hash")?,
            hash: get(row, "hash")?,
        })
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            id: self.id,
            ts: self.ts,
            user_id: &self.user_id,
            channel: &self.channel,
            conversation: &self.conversation,
            action: &self.action,
            arguments: &self.arguments,
            result: &self.result,
            outcome: &self.outcome,
            duration_ms: self.duration_ms,
        }
    }

    fn into_row(self) -> Result<AuditRow> {
        Ok(AuditRow {
            arguments: parse_json("audit", "arguments", &self.arguments)?,
            result: parse_json("audit", "result", &self.result)?,
            id: self.id,
            ts: self.ts,
            user_id: self.user_id,
            channel: self.channel,
            conversation: self.conversation,
            action: self.action,
            outcome: self.outcome,
            duration_ms: self.duration_ms,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

impl Store {
    /// Appends a record to the audit log and returns its id.
    ///
    /// Appends are serialised so the chain never forks: on SQLite by the `BEGIN IMMEDIATE`
    /// write lock, on PostgreSQL by a transaction-scoped advisory lock (row locks cannot help:
    /// the row that would need locking does not exist yet).
    pub async fn audit_append(&self, r: &AuditEntry) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Selected as a count because `Any` cannot decode the `void` the function returns.
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS audit_lock",
            )
            .bind(AUDIT_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err("locking the audit log"))?;
        }
        let last = sqlx::query("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("reading the audit log"))?;
        let (id, prev_hash) = match last {
            Some(row) => (get::<i64>(&row, "id")? + 1, get::<String>(&row, "hash")?),
            None => (1, GENESIS.to_owned()),
        };
        let arguments = canonical_json(&r.arguments);
        let result = canonical_json(&r.result);
        let fields = Fields {
            id,
            ts: now_ms(),
            user_id: &r.user_id,
            channel: &r.channel,
            conversation: &r.conversation,
            action: &r.action,
            arguments: &arguments,
            result: &result,
            outcome: &r.outcome,
            duration_ms: r.duration_ms,
        };
        let hash = fields.hash(&prev_hash);
        sqlx::query(
            "INSERT INTO audit (id, ts, user_id, channel, conversation, action, arguments, \
             result, outcome, duration_ms, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(fields.id)
        .bind(fields.ts)
        .bind(fields.user_id)
        .bind(fields.channel)
        .bind(fields.conversation)
        .bind(fields.action)
        .bind(fields.arguments)
        .bind(fields.result)
        .bind(fields.outcome)
        .bind(fields.duration_ms)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(db_err("appending to the audit log"))?;
        tx.commit()
            .await
            .map_err(db_err("appending to the audit log"))?;
        Ok(id)
    }

    /// Recomputes the whole chain in id order and reports the first record whose `prev_hash`
    /// or `hash` does not match.
    pub async fn audit_verify(&self) -> Result<AuditVerdict> {
        let mut prev_hash = GENESIS.to_owned();
        let mut last_id = 0_i64;
        let mut records = 0_i64;
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit WHERE id > $1 ORDER BY id LIMIT $2"
            )))
            .bind(last_id)
            .bind(VERIFY_BATCH)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("reading the audit log"))?;
            if rows.is_empty() {
                return Ok(AuditVerdict::Intact { records });
            }
            for row in &rows {
                let raw = RawRow::read(row)?;
                if raw.prev_hash != prev_hash {
                    let reason = if raw.id == 1 {
                        "its prev_hash is not the genesis hash".to_owned()
                    } else {
                        format!(
                            "its prev_hash does not match the hash of the record before it \
                             (id {last_id}); a record was changed, removed or inserted"
                        )
                    };
                    return Ok(AuditVerdict::Broken { id: raw.id, reason });
                }
                if raw.fields().hash(&raw.prev_hash) != raw.hash {
                    return Ok(AuditVerdict::Broken {
                        id: raw.id,
                        reason: "its hash does not match its contents; the record was changed"
                            .to_owned(),
                    });
                }
                prev_hash = raw.hash;
                last_id = raw.id;
                records += 1;
            }
        }
    }

    /// The last `n` audit records, oldest first.
    pub async fn audit_tail(&self, n: usize) -> Result<Vec<AuditRow>> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("reading the audit log"))?;
        let mut out = rows
            .iter()
            .map(|row| RawRow::read(row)?.into_row())
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": [1, {"z": null, "a": "x\"y"}], "a": 1.5});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":1.5,"b":[1,{"a":"x\"y","z":null}]}"#
        );
    }

    #[test]
    fn hash_covers_id_and_prev_hash() {
        let f = |id| Fields {
            id,
            ts: 1,
            user_id: "u",
            channel: "c",
            conversation: "v",
            action: "a",
            arguments: "{}",
            result: "null",
            outcome: "ok",
            duration_ms: 3,
        };
        assert_ne!(f(1).hash(GENESIS), f(2).hash(GENESIS));
        assert_ne!(f(1).hash(GENESIS), f(1).hash(&"1".repeat(64)));
        assert_eq!(f(1).hash(GENESIS).len(), 64);
    }
}
