//! The durable state of conveyor: ingress and egress ledgers, conversations, the audit log,
//! and connector runs (claims, cursors, history).
//!
//! # Why `sqlx::Any`
//!
//! conveyor runs on SQLite by default (one file, nothing to install) and on PostgreSQL when
//! several gateway processes share state. Going through sqlx's `Any` driver keeps one code path
//! and one set of migrations (`src/store/migrations`) for both, so the two backends cannot
//! drift apart. The price is that every statement must be portable:
//!
//! - `$1` placeholders (both drivers accept them through `Any`);
//! - ids are `TEXT` (uuid v7 strings, which sort by creation time), timestamps are `BIGINT`
//!   unix milliseconds, JSON is `TEXT`;
//! - `INTEGER` instead of `BOOLEAN` (`Any` cannot decode a SQLite `BOOLEAN`);
//! - no backend-specific auto-increment; `INSERT … ON CONFLICT … DO NOTHING` and `RETURNING`
//!   (both backends have them) instead of read-then-write;
//! - `Any` decodes only basic types (`i64`, `f64`, `String`, `Option` of those), and a
//!   PostgreSQL `SUM(bigint)` is `NUMERIC`, so it must be cast to `BIGINT`.
//!
//! Where the backends really differ (how to serialise audit appends, how to open the
//! database) the code branches on [`Backend`] and says why.
//!
//! sqlx never leaves this module: callers see [`Store`], plain structs and [`crate::Error`].

mod audit;
mod commit;
mod conversation;
pub use conversation::new_message_id;
mod ledger;
pub use ledger::{EGRESS_LEASE_MS, IngressStatus};
mod access;
pub use access::{AccessGrant, PairingCode};
mod connectors;
pub use connectors::{RunClaim, RunOutcome, RunRow};
mod gold;
pub use gold::GoldState;
mod keys;
pub use keys::{ApiKey, Scope};
mod inbox;
/// Workflow runs and their journal.
pub mod workflows;
pub use inbox::{InboxEntry, InboxRow, InboxState};

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use crate::error::{Error, Result};
use crate::values::{Env, Secret};

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` (relative to the config folder) or `postgres://…` without a password.
    pub url: String,
    /// Name of an environment variable holding the whole URL; wins over `url`. Use it when the
    /// URL carries credentials.
    pub url_env: Option<String>,
}

impl StoreConfig {
    /// The store URL: read from `url_env` through `env` when set, else `url`; a relative
    /// SQLite path resolves against `base_dir` (the config file's folder).
    pub fn url_in(&self, base_dir: &std::path::Path, env: &Env) -> Result<String> {
        let raw = match &self.url_env {
            Some(var) => Secret::from_lookup(var, "store.url_env", env)?
                .expose()
                .to_string(),
            None => self.url.clone(),
        };
        if let Some(rest) = raw.strip_prefix("sqlite://") {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let path = base_dir.join(path);
            let mut url = format!("sqlite://{}", path.display());
            if let Some(q) = query {
                url.push('?');
                url.push_str(q);
            }
            Ok(url)
        } else if raw.starts_with("sqlite:")
            || raw.starts_with("postgres://")
            || raw.starts_with("postgresql://")
        {
            Ok(raw)
        } else {
            Err(Error::Config(
                "store.url: expected sqlite://PATH or postgres://HOST/DB".to_string(),
            ))
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/conveyor.db".into(),
            url_env: None,
        }
    }
}

/// Migrations are embedded at compile time. After editing a file under `migrations/`, touch
/// this file so the macro runs again (the crate has no build script to track the folder).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

/// How long we wait for the database to answer the first connection. A store that does not
/// answer within this is reported as unreachable instead of hanging start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long SQLite waits for a lock held by another connection or process before failing.
const SQLITE_BUSY_TIMEOUT_MS: i64 = 5_000;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local SQLite file (or an in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Picks the backend from the url scheme; anything else is a configuration mistake.
    fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            // Only the scheme is echoed: the rest of the url may hold a password.
            let scheme = url.split(':').next().unwrap_or_default();
            Err(Error::Config(format!(
                "store.url has an unsupported scheme `{scheme}:`; use `sqlite://path/to/file.db`, \
                 `sqlite::memory:` or `postgres://user@host:port/database`"
            )))
        }
    }
}

/// The handle to the database. Cheap to clone: it holds the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    /// Reads.
    pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: SQLite takes one writer at a time anyway,
    /// and queueing for the pool is fair and immediate, where several connections would race
    /// for the file lock and back off in sleeps (tail latencies of hundreds of milliseconds
    /// under load). On PostgreSQL the same pool as reads.
    writer: AnyPool,
    /// SQLite: the group-commit task that [`Store::write`] hands writes to.
    committer: Option<commit::Committer>,
    backend: Backend,
}

/// A claim on an ingress key or an inbox row: only its holder can renew, complete or release it, so a stale
/// owner whose lease was taken over cannot overwrite or delete the new owner's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The ingress key (or the inbox row's key).
    pub key: String,
    /// The claim's owner token.
    pub owner: String,
}

/// The outcome of [`Store::ingress_claim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "claim", rename_all = "snake_case")]
pub enum Claim {
    /// The caller now owns the key and must process it, then complete or release it with
    /// this lease (renewing it while the work runs).
    Owned(Lease),
    /// The key was already processed; `response` is what was recorded then.
    Done {
        /// The recorded response (a JSON string).
        response: String,
        /// The hash of the request that produced it, to detect a key reused for other content.
        request_hash: String,
    },
    /// Someone else is processing the key right now (within its lease).
    Busy {
        /// The hash of the request being processed.
        request_hash: String,
    },
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A person, through a channel.
    User,
    /// conveyor itself.
    Assistant,
}

impl Role {
    /// The stored spelling.
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// Parses the stored spelling; anything else means the row was written by something else.
    fn parse(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            other => Err(Error::Internal(format!(
                "the messages table holds an unknown role `{other}`"
            ))),
        }
    }
}

/// A message to append to a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewMessage {
    /// The conversation storage key, like `api:abc`.
    pub conversation: String,
    /// The channel the conversation lives on.
    pub channel: String,
    /// Who wrote it.
    pub role: Role,
    /// The platform user id (for the assistant, whatever the caller uses for itself).
    pub user_id: String,
    /// The message text.
    pub text: String,
    /// Free-form metadata kept with the message.
    pub meta: serde_json::Value,
}

/// A message as read back for conversation history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    /// The message id (uuid v7).
    pub id: String,
    /// Who wrote it.
    pub role: Role,
    /// The platform user id.
    pub user_id: String,
    /// The message text.
    pub text: String,
    /// What was stored with it (for answers: their citations).
    pub meta: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A reply to record in the egress ledger before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEgress {
    /// The channel that will send it.
    pub channel: String,
    /// The conversation storage key.
    pub conversation: String,
    /// Identifies the reply: recording the same key twice yields the same row.
    pub dedupe_key: String,
    /// Everything the channel needs to send it again after a crash.
    pub payload: serde_json::Value,
}

/// A reply in the egress ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressRow {
    /// The row id (uuid v7).
    pub id: String,
    /// The channel that sends it.
    pub channel: String,
    /// The conversation storage key.
    pub conversation: String,
    /// The key it was recorded under.
    pub dedupe_key: String,
    /// What to send.
    pub payload: serde_json::Value,
    /// How many send attempts were counted with [`Store::egress_attempt`].
    pub attempts: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A tool call (or other privileged action) to write to the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Who asked.
    pub user_id: String,
    /// From which channel.
    pub channel: String,
    /// In which conversation.
    pub conversation: String,
    /// What was done, e.g. the tool name.
    pub action: String,
    /// The arguments, already redacted by the caller.
    pub arguments: serde_json::Value,
    /// The result, already redacted by the caller.
    pub result: serde_json::Value,
    /// `ok`, `error`, `denied`, …
    pub outcome: String,
    /// How long it took.
    pub duration_ms: i64,
}

/// A record of the audit log as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// Position in the chain, from 1.
    pub id: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// Who asked.
    pub user_id: String,
    /// From which channel.
    pub channel: String,
    /// In which conversation.
    pub conversation: String,
    /// What was done.
    pub action: String,
    /// The arguments.
    pub arguments: serde_json::Value,
    /// The result.
    pub result: serde_json::Value,
    /// The outcome.
    pub outcome: String,
    /// How long it took.
    pub duration_ms: i64,
    /// The hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// The result of [`Store::audit_verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum AuditVerdict {
    /// Every record matches its hash and links to the one before.
    Intact {
        /// How many records were checked.
        records: i64,
    },
    /// The first record that does not match.
    Broken {
        /// Its id.
        id: i64,
        /// What does not match, as a sentence.
        reason: String,
    },
}

impl Store {
    /// Opens the store and applies migrations.
    ///
    /// `url` is `sqlite://ABSOLUTE/OR/RELATIVE/path.db` (already resolved by config),
    /// `sqlite::memory:` or `postgres://…`. A SQLite file and its parent folders are created
    /// if missing; the file uses the WAL journal, a 5 s busy timeout and foreign keys.
    /// An unreachable PostgreSQL is an [`Error::Upstream`] that names host and port but never
    /// the password.
    pub async fn connect(url: &str) -> Result<Store> {
        // Guarded by a `Once` inside sqlx, so calling it on every connect is fine.
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let (pool, writer) = match backend {
            Backend::Sqlite => open_sqlite(url).await?,
            Backend::Postgres => {
                let pool = open_postgres(url).await?;
                (pool.clone(), pool)
            }
        };
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| Error::upstream("store: applying database migrations failed", e))?;
        tracing::debug!(?backend, "store ready");
        let committer =
            (backend == Backend::Sqlite).then(|| commit::Committer::start(writer.clone()));
        Ok(Store {
            pool,
            writer,
            committer,
            backend,
        })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (`SELECT 1`), for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        self.pool
            .execute("SELECT 1")
            .await
            .map_err(db_err("ping"))?;
        Ok(())
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

impl Store {
    /// Starts a transaction that will write.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads first and then
    /// writes fails with `SQLITE_BUSY` at the upgrade, without waiting for the busy timeout,
    /// whereas an immediate one takes the write lock up front and waits for it. That also
    /// serialises such transactions, which the audit chain relies on.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
        .map_err(db_err("starting a transaction"))
    }
}

/// Now, in unix milliseconds: the one clock of the store.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fresh time-ordered id.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Maps a sqlx error of an ordinary operation to [`Error::Upstream`] naming the operation.
fn db_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::upstream(format!("store: {op} failed"), e)
}

/// Reads a column, turning a decode failure into an internal error (the schema is ours).
fn get<T>(row: &sqlx::any::AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(col)
        .map_err(|e| Error::internal(format!("store: reading column `{col}`"), e))
}

/// Parses a JSON column written by this module.
fn parse_json(table: &str, col: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal(format!("store: {table}.{col} holds invalid JSON"), e))
}

/// Opens (creating if needed) a SQLite database and returns a pool over it.
/// Opens SQLite as a read pool and a one-connection write pool (see [`Store`]).
async fn open_sqlite(url: &str) -> Result<(AnyPool, AnyPool)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let in_memory = path == ":memory:" || query.is_some_and(|q| q.contains("mode=memory"));

    if in_memory {
        // Through `Any`, every new connection parses the url again and gets a *new* private
        // in-memory database, so the pool must hold exactly one connection, forever.
        let opts = AnyConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("store.url is not a valid SQLite url: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _| Box::pin(async move { sqlite_pragmas(conn).await }))
            .connect_with(opts)
            .await
            .map_err(|e| Error::upstream("cannot open an in-memory SQLite database", e))?;
        return Ok((pool.clone(), pool));
    }

    if path.is_empty() {
        return Err(Error::Config(
            "store.url names no SQLite file; use `sqlite://path/to/file.db`".into(),
        ));
    }
    // Absolute, so that the url cannot be misread (a relative first segment would parse as a
    // host and be lower-cased) and the message names the file unambiguously.
    let file = std::path::absolute(path).map_err(|e| {
        Error::Config(format!(
            "store.url: cannot resolve the SQLite path `{path}`: {e}"
        ))
    })?;
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            Error::Upstream(format!(
                "cannot create the folder {} for the SQLite database ({e}); check store.url and \
                 the folder's permissions",
                parent.display()
            ))
        })?;
    }
    let query = match query {
        None | Some("") => "mode=rwc".to_owned(),
        Some(q) if q.contains("mode=") => q.to_owned(),
        Some(q) => format!("{q}&mode=rwc"),
    };
    // '%' first, so that the escapes added for '?' and '#' are not escaped again.
    let encoded = file
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    let full = format!("sqlite://{encoded}?{query}");
    let open_err = |e: sqlx::Error| {
        Error::Upstream(format!(
            "cannot open the SQLite database at {} ({e}); check store.url and that the folder is \
             writable",
            file.display()
        ))
    };
    let opts = AnyConnectOptions::from_str(&full).map_err(open_err)?;

    // The WAL journal is a property of the file, so it is set once here rather than on every
    // connection: switching it needs an exclusive lock that the busy timeout cannot wait for.
    let mut first = AnyConnection::connect_with(&opts).await.map_err(open_err)?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&mut first)
        .await
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "SQLite refused the WAL journal; concurrent readers will wait for writers");
    }
    first.close().await.map_err(open_err)?;

    // A pooled SQLite connection is a file handle in this process: it cannot have died while
    // idle the way a network connection can, so the ping sqlx sends before handing one out
    // (a round trip to the connection's worker thread, on every query) buys nothing.
    let readers = AnyPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(async move { sqlite_pragmas(conn).await }))
        .connect_with(opts.clone())
        .await
        .map_err(open_err)?;
    let writer = AnyPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(async move { sqlite_pragmas(conn).await }))
        .connect_with(opts)
        .await
        .map_err(open_err)?;
    Ok((readers, writer))
}

/// Per-connection SQLite settings. sqlx sets the same by default today; saying them here keeps
/// the guarantees the ledgers rely on from depending on a library default.
async fn sqlite_pragmas(conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    conn.execute(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
    )))
    .await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

/// Connects to PostgreSQL, turning failure into a sentence that names host and port only.
async fn open_postgres(url: &str) -> Result<AnyPool> {
    // The parse error of the url crate never echoes its input, so it is safe to show.
    let opts = AnyConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("store.url is not a valid PostgreSQL url: {e}")))?;
    let target = format!(
        "{}:{}",
        opts.database_url.host_str().unwrap_or("localhost"),
        opts.database_url.port().unwrap_or(5432)
    );
    let password = opts.database_url.password().map(str::to_owned);
    let unreachable = |reason: String| {
        let reason = scrub(&reason, password.as_deref());
        Error::Upstream(format!(
            "cannot connect to PostgreSQL at {target} ({reason}); check store.url and that the \
             server is running"
        ))
    };

    // One direct attempt first: the pool retries refused connections until its deadline and
    // then reports only "timed out", which hides the reason the person needs.
    match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(&opts)).await {
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(unreachable(connect_reason(&e))),
        Ok(Ok(conn)) => {
            // Closing politely is a courtesy; the pool below opens its own connections.
            let _ = conn.close().await;
        }
    }

    AnyPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .map_err(|e| unreachable(connect_reason(&e)))
}

/// A short, human reason for a failed connection.
fn connect_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        other => other.to_string(),
    }
}

/// Removes a password from a message, in case a driver ever echoes it (raw or url-encoded).
fn scrub(message: &str, password: Option<&str>) -> String {
    let mut out = message.to_owned();
    if let Some(pw) = password.filter(|p| !p.is_empty()) {
        out = out.replace(pw, "***");
        if let Ok(decoded) = percent_decode(pw)
            && !decoded.is_empty()
        {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

/// Decodes `%XX` escapes (url passwords are stored encoded).
fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let msg = "auth failed for s3cr%2Ft and s3cr/t";
        assert_eq!(scrub(msg, Some("s3cr%2Ft")), "auth failed for *** and ***");
        assert_eq!(scrub("nothing", None), "nothing");
    }

    #[test]
    fn unknown_scheme_is_a_config_error_without_the_rest_of_the_url() {
        let err = Backend::from_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(!err.to_string().contains("hunter2"));
    }
}
