//! API keys of the HTTP surface. A key reads `cvk_<id>_<secret>`: the id finds its row, and
//! only the SHA-256 of the secret is stored (secrets are 244 random bits, so a plain hash is
//! enough), compared in constant time. The whole key is shown once, when it is created.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, db_err, get, now_ms};
use crate::error::{Error, Result};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Ask questions: `POST /v1/messages` and the web chat page.
    Chat,
    /// Read: chunks, source pages, connectors, runs, webhook deliveries, metrics.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 3] = [Scope::Chat, Scope::Read, Scope::Admin];

    /// The name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Reads a scope name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name.trim())
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "`{name}` is not a scope; use chat, read or admin (admin allows everything)"
                ))
            })
    }
}

/// One API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The public part of the key (`cvk_<id>_…`), used to list and revoke it.
    pub id: String,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Who created it (the OS user running `conveyor keys create`).
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

impl ApiKey {
    /// Whether the key allows `scope` (`admin` allows everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

const PREFIX: &str = "cvk_";

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equal-length byte strings compared without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn scopes_of(text: &str) -> Vec<Scope> {
    text.split(',')
        .filter_map(|s| Scope::parse(s).ok())
        .collect()
}

fn row_to_key(row: &sqlx::any::AnyRow) -> Result<ApiKey> {
    let scopes: String = get(row, "scopes")?;
    Ok(ApiKey {
        id: get(row, "id")?,
        name: get(row, "name")?,
        scopes: scopes_of(&scopes),
        created_at: get(row, "created_at")?,
        created_by: get(row, "created_by")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

impl Store {
    /// Creates a key named `name` with `scopes`; returns the whole key (shown once) and its
    /// record.
    pub async fn api_key_create(
        &self,
        name: &str,
        scopes: &[Scope],
        created_by: &str,
    ) -> Result<(String, ApiKey)> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(Error::BadInput(
                "give the key a name of 1 to 100 characters saying what it is for".into(),
            ));
        }
        if scopes.is_empty() {
            return Err(Error::BadInput(
                "give the key at least one scope: chat, read or admin".into(),
            ));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let id = random_hex()[..12].to_string();
        let secret = format!("{}{}", random_hex(), random_hex());
        let key = ApiKey {
            id: id.clone(),
            name: name.trim().to_string(),
            scopes,
            created_at: now_ms(),
            created_by: created_by.to_string(),
            revoked_at: None,
        };
        let scope_text = key
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(
            "INSERT INTO api_keys (id, name, scopes, secret_hash, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&scope_text)
        .bind(hash(&secret))
        .bind(key.created_at)
        .bind(&key.created_by)
        .execute(&self.writer)
        .await
        .map_err(db_err("creating an API key"))?;
        Ok((format!("{PREFIX}{id}_{secret}"), key))
    }

    /// Every key, newest first (revoked ones too).
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, created_by, revoked_at FROM api_keys \
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("listing API keys"))?;
        rows.iter().map(row_to_key).collect()
    }

    /// How many keys are not revoked.
    pub async fn api_keys_active(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("counting API keys"))
    }

    /// Revokes the key `id` (the `cvk_<id>` part, with or without the prefix); `false` when
    /// there is no such active key.
    pub async fn api_key_revoke(&self, id: &str) -> Result<bool> {
        let id = id.trim().trim_start_matches(PREFIX);
        let id = id.split('_').next().unwrap_or(id);
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now_ms())
                .execute(&self.writer)
                .await
                .map_err(db_err("revoking an API key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The active key `presented` is, or `None` (malformed, unknown, revoked or a wrong
    /// secret: the caller learns nothing about which).
    pub async fn api_key_check(&self, presented: &str) -> Result<Option<ApiKey>> {
        let Some(rest) = presented.trim().strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let Some((id, secret)) = rest.split_once('_') else {
            return Ok(None);
        };
        if id.len() != 12 || secret.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, name, scopes, created_at, created_by, revoked_at, secret_hash \
             FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("reading an API key"))?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = get(&row, "secret_hash")?;
        let key = row_to_key(&row)?;
        if !same(stored.as_bytes(), hash(secret).as_bytes()) || key.revoked_at.is_some() {
            return Ok(None);
        }
        Ok(Some(key))
    }
}
