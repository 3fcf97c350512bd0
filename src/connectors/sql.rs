//! The `sql` connector: a table or a query of PostgreSQL, MySQL/MariaDB or SQLite.
//!
//! The connection URL comes from the environment (`url_env`), so a password never sits in a
//! connector file. Rows are read in batches of `batch_size` with keyset pagination (`ORDER BY`
//! the incremental column, then the primary key, and `WHERE (…) > (last values)`), never with
//! `OFFSET`. With `incremental_column`, a run reads only rows whose value is greater than the
//! cursor (the largest value read by the last committed run), then lists every primary key
//! (`SELECT key columns FROM …`, one narrow query), so rows deleted at the source are deleted
//! from silver too; rows whose incremental column is NULL are never read. Without it every run
//! is a full listing and rows gone from the source are deleted from silver.
//!
//! Values become JSON: integers and floats as numbers, DECIMAL/NUMERIC as strings (exact, without
//! trailing zeros; cast in SQL when a float is wanted), booleans, text, timestamps as RFC 3339 strings (a timestamp
//! without a time zone is taken as UTC), dates as `YYYY-MM-DD`, times as `HH:MM:SS`, JSON
//! columns as their JSON, bytes as base64, NULL as null. SQLite has no date types: its values
//! come as stored.
//!
//! This module is the only one outside `src/store/` that uses sqlx.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::types::BigDecimal;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, Row, SqlSafeStr, Statement,
    TypeInfo, ValueRef,
};

use super::http::{fail_on_issues, key_issue};
use super::{
    BuildContext, Env, Extract, OnError, PrimaryKey, Progress, Source, SourceConfig,
    deserialize_strict,
};
use crate::error::{Error, Result};
use crate::lakehouse::typed::{KeyColumns, KeyValue};
use crate::lakehouse::{ColType, KeyListing};
use crate::values::Secret;

/// Binds one [`Cell`] to a query of a driver with typed parameters (PostgreSQL, MySQL); the
/// drivers differ only in how an unsigned integer goes in (`$uint` maps it).
macro_rules! bind_typed {
    ($q:ident, $cell:expr, $uint:expr) => {
        match $cell.clone() {
            Cell::Null => $q.bind(None::<String>),
            Cell::Bool(v) => $q.bind(v),
            Cell::Int(v) => $q.bind(v),
            Cell::UInt(v) => $q.bind(($uint)(v)),
            Cell::Float(v) => $q.bind(v),
            Cell::Decimal(v) => {
                $q.bind(BigDecimal::from_str(&v).map_err(|e| format!("decimal {v}: {e}"))?)
            }
            Cell::Text(v) => $q.bind(v),
            Cell::Bytes(v) => $q.bind(v),
            Cell::Timestamp(v) => $q.bind(v),
            Cell::NaiveTimestamp(v) => $q.bind(v),
            Cell::Date(v) => $q.bind(v),
            Cell::Time(v) => $q.bind(v),
            Cell::Json(v) => $q.bind(sqlx::types::Json(v)),
        }
    };
}

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The keys of a `kind = "sql"` connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// The environment variable holding the connection URL (`postgres://`, `mysql://`,
    /// `mariadb://`, `sqlite://`).
    pub url_env: String,
    /// The table to read (`orders` or `schema.orders`).
    #[serde(default)]
    pub table: Option<String>,
    /// A query to read instead of a table.
    #[serde(default)]
    pub query: Option<String>,
    /// The column (or columns) that identify a row.
    pub primary_key: PrimaryKey,
    /// Read only rows whose value here is greater than the last run's largest.
    #[serde(default)]
    pub incremental_column: Option<String>,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// The config file's folder (relative SQLite paths start there).
    #[serde(skip)]
    base_dir: PathBuf,
}

fn default_batch_size() -> u32 {
    10_000
}

impl SqlConfig {
    /// Remembers the config folder, against which a relative SQLite path is resolved.
    fn resolve(&mut self, base_dir: &Path) {
        self.base_dir = base_dir.to_path_buf();
    }

    /// Adds every problem of these keys to `problems`.
    fn validate(&self, problems: &mut Vec<String>) {
        match (&self.table, &self.query) {
            (Some(_), Some(_)) => {
                problems.push("table, query: give one of them, not both".into());
            }
            (None, None) => problems.push(
                "table: missing; name the table (table = \"orders\") or give a query (query = \"SELECT …\")".into(),
            ),
            (Some(t), None) if t.trim().is_empty() => problems.push("table: is empty".into()),
            (None, Some(q)) if q.trim().is_empty() => problems.push("query: is empty".into()),
            _ => {}
        }
        if self.url_env.trim().is_empty() {
            problems.push(
                "url_env: name the environment variable that holds the connection URL, e.g. url_env = \"SHOP_DB_URL\"".into(),
            );
        }
        if self.batch_size == 0 {
            problems.push("batch_size: must be at least 1".into());
        }
    }
}

impl SourceConfig for SqlConfig {
    fn parse(table: toml::Table, base_dir: &Path, problems: &mut Vec<String>) -> Option<Self> {
        let mut config: Self = deserialize_strict(table, problems)?;
        config.resolve(base_dir);
        config.validate(problems);
        Some(config)
    }

    fn primary_key(&self) -> &[String] {
        &self.primary_key.0
    }

    /// The connection URL comes from `cx.env` when a run starts.
    fn build(&self, cx: &BuildContext) -> Arc<dyn Source> {
        Arc::new(SqlSource {
            name: cx.name.clone(),
            config: self.clone(),
            env: cx.env.clone(),
        })
    }
}

/// Reads one table or query.
#[derive(Clone)]
pub struct SqlSource {
    name: String,
    config: SqlConfig,
    env: Env,
}

/// One value read from the database, typed well enough to be bound back as a keyset or
/// cursor value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Timestamp(DateTime<Utc>),
    NaiveTimestamp(NaiveDateTime),
    Date(NaiveDate),
    Time(NaiveTime),
    Json(Value),
}

impl Cell {
    fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::UInt(u) => Value::from(*u),
            Self::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Self::Decimal(s) | Self::Text(s) => Value::String(s.clone()),
            Self::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Self::Timestamp(t) => Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::NaiveTimestamp(t) => {
                Value::String(t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Self::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Self::Time(t) => Value::String(t.format("%H:%M:%S%.f").to_string()),
            Self::Json(v) => v.clone(),
        }
    }
}

/// The cursor saved between runs: the incremental column's largest value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    since: Option<Cell>,
}

/// A connection to one of the three databases.
enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

/// What the URL says, for messages: the scheme and host:port (or the SQLite file), never the
/// user or password.
fn describe_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "sqlite" => format!("the SQLite database {}", u.path()),
        Ok(u) => format!(
            "{} at {}:{}",
            u.scheme(),
            u.host_str().unwrap_or("localhost"),
            u.port().map_or_else(
                || match u.scheme() {
                    "postgres" | "postgresql" => "5432".to_string(),
                    _ => "3306".to_string(),
                },
                |p| p.to_string()
            )
        ),
        Err(_) => "the database".to_string(),
    }
}

/// A driver error as text with the URL's password (if any) scrubbed.
fn scrub(e: &dyn std::fmt::Display, url: &str) -> String {
    let mut text = e.to_string();
    if let Ok(u) = reqwest::Url::parse(url)
        && let Some(p) = u.password()
        && !p.is_empty()
    {
        text = text.replace(p, "***");
    }
    text
}

impl Conn {
    async fn open(url: &str) -> std::result::Result<Self, String> {
        let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
        let fut = async {
            match scheme.as_str() {
                // Reading a large table in batches is slow by nature: sqlx's slow-statement
                // warnings would only be noise (the run reports its own progress).
                "postgres" | "postgresql" => PgConnectOptions::from_str(url)?
                    .disable_statement_logging()
                    .connect()
                    .await
                    .map(Self::Pg),
                "mysql" | "mariadb" => {
                    let url = match url.strip_prefix("mariadb://") {
                        Some(rest) => format!("mysql://{rest}"),
                        None => url.to_string(),
                    };
                    MySqlConnectOptions::from_str(&url)?
                        .disable_statement_logging()
                        .connect()
                        .await
                        .map(Self::My)
                }
                "sqlite" => SqliteConnectOptions::from_str(url)?
                    .disable_statement_logging()
                    .connect()
                    .await
                    .map(Self::Lite),
                _ => Err(sqlx::Error::Configuration(
                    "the URL must start with postgres://, mysql://, mariadb:// or sqlite://".into(),
                )),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(scrub(&e, url)),
            Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
        }
    }

    fn quote(&self, ident: &str) -> String {
        match self {
            Self::My(_) => format!("`{}`", ident.replace('`', "``")),
            _ => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    fn placeholder(&self, n: usize) -> String {
        match self {
            Self::Pg(_) => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// The columns a statement returns with the driver's type name of each (upper case).
    async fn column_type_names(
        &mut self,
        sql: &str,
    ) -> std::result::Result<Vec<(String, String)>, sqlx::Error> {
        fn named<C: Column>(cols: &[C]) -> Vec<(String, String)> {
            cols.iter()
                .map(|c| {
                    (
                        c.name().to_string(),
                        c.type_info().name().to_ascii_uppercase(),
                    )
                })
                .collect()
        }
        let sql = AssertSqlSafe(sql.to_string());
        Ok(match self {
            Self::Pg(c) => named(c.prepare(sql.into_sql_str()).await?.columns()),
            Self::My(c) => named(c.prepare(sql.into_sql_str()).await?.columns()),
            Self::Lite(c) => named(c.prepare(sql.into_sql_str()).await?.columns()),
        })
    }

    /// Runs a query with bound values; every row as cells in column order.
    async fn fetch(
        &mut self,
        sql: &str,
        binds: &[Cell],
    ) -> std::result::Result<(Vec<String>, Vec<Vec<Cell>>), String> {
        match self {
            Self::Pg(c) => {
                let mut q = sqlx::query::<Postgres>(AssertSqlSafe(sql.to_string()));
                for b in binds {
                    // PostgreSQL has no unsigned integers.
                    q = bind_typed!(q, b, |v: u64| i64::try_from(v).unwrap_or(i64::MAX));
                }
                let rows = q.fetch_all(&mut *c).await.map_err(|e| e.to_string())?;
                let cols = rows
                    .first()
                    .map(|r| names_pg(r.columns()))
                    .unwrap_or_default();
                let cells = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| pg_cell(r, i)).collect())
                    .collect::<std::result::Result<_, _>>()?;
                Ok((cols, cells))
            }
            Self::My(c) => {
                let mut q = sqlx::query::<MySql>(AssertSqlSafe(sql.to_string()));
                for b in binds {
                    q = bind_typed!(q, b, |v: u64| v);
                }
                let rows = q.fetch_all(&mut *c).await.map_err(|e| e.to_string())?;
                let cols = rows
                    .first()
                    .map(|r| names_my(r.columns()))
                    .unwrap_or_default();
                let cells = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| my_cell(r, i)).collect())
                    .collect::<std::result::Result<_, _>>()?;
                Ok((cols, cells))
            }
            Self::Lite(c) => {
                let mut q = sqlx::query::<Sqlite>(AssertSqlSafe(sql.to_string()));
                for b in binds {
                    q = match b.clone() {
                        Cell::Null => q.bind(None::<String>),
                        Cell::Bool(v) => q.bind(v),
                        Cell::Int(v) => q.bind(v),
                        Cell::UInt(v) => q.bind(i64::try_from(v).unwrap_or(i64::MAX)),
                        Cell::Float(v) => q.bind(v),
                        Cell::Decimal(v) | Cell::Text(v) => q.bind(v),
                        Cell::Bytes(v) => q.bind(v),
                        Cell::Timestamp(v) => q.bind(v),
                        Cell::NaiveTimestamp(v) => q.bind(v),
                        Cell::Date(v) => q.bind(v),
                        Cell::Time(v) => q.bind(v),
                        Cell::Json(v) => q.bind(sqlx::types::Json(v)),
                    };
                }
                let rows = q.fetch_all(&mut *c).await.map_err(|e| e.to_string())?;
                let cols = rows
                    .first()
                    .map(|r| names_lite(r.columns()))
                    .unwrap_or_default();
                let cells = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| lite_cell(r, i)).collect())
                    .collect::<std::result::Result<_, _>>()?;
                Ok((cols, cells))
            }
        }
    }

    async fn close(self) {
        let _ = match self {
            Self::Pg(c) => c.close().await,
            Self::My(c) => c.close().await,
            Self::Lite(c) => c.close().await,
        };
    }
}

/// A decimal as exact text without trailing zeros after the point (`2.2500` → `2.25`,
/// `100.00` → `100`), the same whatever scale the driver reports.
fn decimal_text(d: &BigDecimal) -> String {
    let text = d.to_plain_string();
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn name_of<C: Column>(c: &C) -> String {
    c.name().to_string()
}
fn names_pg(cols: &[sqlx::postgres::PgColumn]) -> Vec<String> {
    cols.iter().map(name_of).collect()
}
fn names_my(cols: &[sqlx::mysql::MySqlColumn]) -> Vec<String> {
    cols.iter().map(name_of).collect()
}
fn names_lite(cols: &[sqlx::sqlite::SqliteColumn]) -> Vec<String> {
    cols.iter().map(name_of).collect()
}

/// A decoding failure named by column and type.
fn cannot<E: std::fmt::Display>(col: &str, ty: &str) -> impl FnOnce(E) -> String {
    let (col, ty) = (col.to_string(), ty.to_string());
    move |e| {
        format!(
            "the column `{col}` has the type {ty}, which could not be read ({e}); cast it in a query, e.g. query = \"SELECT CAST({col} AS TEXT) AS {col}, … FROM …\""
        )
    }
}

fn pg_cell(row: &PgRow, i: usize) -> std::result::Result<Cell, String> {
    let col = row.column(i).name().to_string();
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let ty = row.column(i).type_info().name().to_ascii_uppercase();
    let err = || cannot::<sqlx::Error>(&col, &ty);
    Ok(match ty.as_str() {
        "BOOL" => Cell::Bool(row.try_get(i).map_err(err())?),
        "INT2" => Cell::Int(i64::from(row.try_get::<i16, _>(i).map_err(err())?)),
        "INT4" => Cell::Int(i64::from(row.try_get::<i32, _>(i).map_err(err())?)),
        "INT8" => Cell::Int(row.try_get(i).map_err(err())?),
        "FLOAT4" => Cell::Float(f64::from(row.try_get::<f32, _>(i).map_err(err())?)),
        "FLOAT8" => Cell::Float(row.try_get(i).map_err(err())?),
        "NUMERIC" => Cell::Decimal(decimal_text(
            &row.try_get::<BigDecimal, _>(i).map_err(err())?,
        )),
        "TIMESTAMPTZ" => Cell::Timestamp(row.try_get(i).map_err(err())?),
        "TIMESTAMP" => Cell::NaiveTimestamp(row.try_get(i).map_err(err())?),
        "DATE" => Cell::Date(row.try_get(i).map_err(err())?),
        "TIME" => Cell::Time(row.try_get(i).map_err(err())?),
        "BYTEA" => Cell::Bytes(row.try_get(i).map_err(err())?),
        "JSON" | "JSONB" => Cell::Json(
            row.try_get::<sqlx::types::Json<Value>, _>(i)
                .map_err(err())?
                .0,
        ),
        _ => Cell::Text(row.try_get(i).map_err(err())?),
    })
}

fn my_cell(row: &MySqlRow, i: usize) -> std::result::Result<Cell, String> {
    let col = row.column(i).name().to_string();
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let ty = row.column(i).type_info().name().to_ascii_uppercase();
    let err = || cannot::<sqlx::Error>(&col, &ty);
    Ok(match ty.as_str() {
        "BOOLEAN" => Cell::Bool(row.try_get(i).map_err(err())?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            Cell::Int(row.try_get(i).map_err(err())?)
        }
        t if t.ends_with("UNSIGNED") => Cell::UInt(row.try_get(i).map_err(err())?),
        "YEAR" => Cell::UInt(u64::from(row.try_get::<u16, _>(i).map_err(err())?)),
        "FLOAT" => Cell::Float(f64::from(row.try_get::<f32, _>(i).map_err(err())?)),
        "DOUBLE" => Cell::Float(row.try_get(i).map_err(err())?),
        "DECIMAL" => Cell::Decimal(decimal_text(
            &row.try_get::<BigDecimal, _>(i).map_err(err())?,
        )),
        "TIMESTAMP" => Cell::Timestamp(row.try_get(i).map_err(err())?),
        "DATETIME" => Cell::NaiveTimestamp(row.try_get(i).map_err(err())?),
        "DATE" => Cell::Date(row.try_get(i).map_err(err())?),
        "TIME" => Cell::Time(row.try_get(i).map_err(err())?),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT"
        | "GEOMETRY" => Cell::Bytes(row.try_get(i).map_err(err())?),
        "JSON" => Cell::Json(
            row.try_get::<sqlx::types::Json<Value>, _>(i)
                .map_err(err())?
                .0,
        ),
        _ => Cell::Text(row.try_get(i).map_err(err())?),
    })
}

fn lite_cell(row: &SqliteRow, i: usize) -> std::result::Result<Cell, String> {
    let col = row.column(i).name().to_string();
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    // SQLite types values, not columns: read what the value is, and booleans by the declared
    // column type.
    let value_ty = raw.type_info().name().to_ascii_uppercase();
    let declared = row.column(i).type_info().name().to_ascii_uppercase();
    let err = || cannot::<sqlx::Error>(&col, &value_ty);
    Ok(match value_ty.as_str() {
        "INTEGER" if declared == "BOOLEAN" => {
            Cell::Bool(row.try_get_unchecked::<i64, _>(i).map_err(err())? != 0)
        }
        "INTEGER" => Cell::Int(row.try_get_unchecked(i).map_err(err())?),
        "REAL" => Cell::Float(row.try_get_unchecked(i).map_err(err())?),
        "BLOB" => Cell::Bytes(row.try_get_unchecked(i).map_err(err())?),
        _ => Cell::Text(row.try_get_unchecked(i).map_err(err())?),
    })
}

/// The silver type of a column from its driver type name (upper case) and, for decimals, the
/// precision and scale the database declares. `None` leaves the column to inference: a
/// decimal whose precision is not known (an unconstrained `numeric`, or a column of a
/// `query`) stays exact text unless `[schema]` declares it.
fn column_type(conn: &Conn, name: &str, decimal: Option<(u8, i8)>) -> Option<ColType> {
    let known = decimal;
    let decimal = || known.map(|(p, s)| ColType::Decimal(p, s));
    match conn {
        Conn::Pg(_) => Some(match name {
            "BOOL" => ColType::Bool,
            "INT2" | "INT4" | "INT8" | "OID" => ColType::Int,
            "FLOAT4" | "FLOAT8" => ColType::Float,
            "NUMERIC" => return decimal(),
            "DATE" => ColType::Date,
            "TIMESTAMPTZ" | "TIMESTAMP" => ColType::Timestamp,
            _ => ColType::Text,
        }),
        Conn::My(_) => Some(match name {
            "BOOLEAN" => ColType::Bool,
            "BIGINT UNSIGNED" => ColType::Decimal(20, 0),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => ColType::Int,
            t if t.ends_with("UNSIGNED") && !t.starts_with("DECIMAL") => ColType::Int,
            "FLOAT" | "DOUBLE" => ColType::Float,
            "DECIMAL" => return decimal(),
            "DATE" => ColType::Date,
            "DATETIME" | "TIMESTAMP" => ColType::Timestamp,
            _ => ColType::Text,
        }),
        // SQLite: the declared type's affinity words.
        Conn::Lite(_) => {
            let t = name.trim();
            if let Some((p, s)) = known.or_else(|| declared_decimal(t)) {
                return Some(ColType::Decimal(p, s));
            }
            Some(if t.contains("INT") {
                ColType::Int
            } else if t.contains("BOOL") {
                ColType::Bool
            } else if t == "DATE" {
                ColType::Date
            } else if t.contains("DATETIME") || t.contains("TIMESTAMP") {
                ColType::Timestamp
            } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
                ColType::Float
            } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
                ColType::Text
            } else {
                return None;
            })
        }
    }
}

/// `DECIMAL(10,2)` / `NUMERIC(10, 2)` as precision and scale (SQLite keeps declared types as
/// written).
fn declared_decimal(t: &str) -> Option<(u8, i8)> {
    let upper = t.to_ascii_uppercase();
    let inner = upper
        .strip_prefix("DECIMAL")
        .or_else(|| upper.strip_prefix("NUMERIC"))?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    let p: u8 = p.trim().parse().ok()?;
    let s: i8 = s.trim().parse().ok()?;
    ((1..=38).contains(&p) && s >= 0 && i16::from(s) <= i16::from(p)).then_some((p, s))
}

/// A value of a typed column made readable as that type: floats of a decimal column (SQLite
/// stores them as REAL) at the column's scale, and SQLite's `YYYY-MM-DD HH:MM:SS` text of a
/// timestamp column as RFC 3339 in UTC.
fn conform(value: Value, ty: Option<&ColType>) -> Value {
    match (ty, value) {
        (Some(ColType::Decimal(_, s)), Value::Number(n)) if n.is_f64() => {
            let scale = usize::try_from(*s).unwrap_or(0);
            match n.as_f64() {
                Some(f) => Value::String(format!("{f:.scale$}")),
                None => Value::Number(n),
            }
        }
        (Some(ColType::Timestamp), Value::String(t))
            if crate::lakehouse::records::parse_timestamp(&t).is_none() =>
        {
            let naive = [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(&t, f).ok());
            match naive {
                Some(n) => Value::String(n.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                None => Value::String(t),
            }
        }
        (_, v) => v,
    }
}

impl SqlSource {
    /// The silver types of the columns of the table or query (see [`column_type`]), with
    /// decimals' precision and scale from the catalog when a table is read. A catalog that
    /// cannot be read leaves decimals to inference; it never fails the run.
    async fn column_types(&self, conn: &mut Conn) -> Result<Vec<(String, Option<ColType>)>> {
        let from = self.source_clause(conn);
        let names = conn
            .column_type_names(&format!("SELECT * FROM {from}"))
            .await
            .map_err(|e| {
                Error::Upstream(format!(
                    "connector `{}`: cannot read the {}: {e}",
                    self.name,
                    self.what()
                ))
            })?;
        let mut decimals: BTreeMap<String, (u8, i8)> = BTreeMap::new();
        // SQLite keeps each column's declared type as written; sqlx names only its affinity.
        let mut declared: BTreeMap<String, String> = BTreeMap::new();
        if let Some(table) = &self.config.table {
            let (schema, bare) = match table.rsplit_once('.') {
                Some((s, t)) => (Some(s.trim().to_string()), t.trim().to_string()),
                None => (None, table.trim().to_string()),
            };
            let (sql, binds) = match conn {
                Conn::Pg(_) => (
                    format!(
                        "SELECT column_name::text, numeric_precision::int8, numeric_scale::int8 FROM information_schema.columns WHERE table_name = $1 AND data_type = 'numeric' AND numeric_precision IS NOT NULL{}",
                        if schema.is_some() {
                            " AND table_schema = $2"
                        } else {
                            " AND table_schema = current_schema()"
                        }
                    ),
                    [Some(bare.clone()), schema.clone()],
                ),
                Conn::My(_) => (
                    format!(
                        "SELECT CAST(column_name AS CHAR), CAST(numeric_precision AS SIGNED), CAST(numeric_scale AS SIGNED) FROM information_schema.columns WHERE table_name = ? AND data_type = 'decimal'{}",
                        if schema.is_some() {
                            " AND table_schema = ?"
                        } else {
                            " AND table_schema = DATABASE()"
                        }
                    ),
                    [Some(bare.clone()), schema.clone()],
                ),
                Conn::Lite(_) => (
                    format!(
                        "SELECT name, type FROM pragma_table_info({})",
                        sql_text(&bare)
                    ),
                    [None, None],
                ),
            };
            let binds: Vec<Cell> = binds.into_iter().flatten().map(Cell::Text).collect();
            if let Ok((_, rows)) = conn.fetch(&sql, &binds).await {
                for row in rows {
                    match row.as_slice() {
                        [Cell::Text(c), Cell::Int(p), Cell::Int(s)] => {
                            if let (Ok(p), Ok(s)) = (u8::try_from(*p), i8::try_from(*s))
                                && (1..=38).contains(&p)
                            {
                                decimals.insert(c.clone(), (p, s));
                            }
                        }
                        [Cell::Text(c), Cell::Text(t)] => {
                            if let Some(d) = declared_decimal(t) {
                                decimals.insert(c.clone(), d);
                            }
                            declared.insert(c.clone(), t.to_ascii_uppercase());
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(names
            .into_iter()
            .map(|(c, t)| {
                let t = declared.get(&c).cloned().unwrap_or(t);
                let ty = column_type(conn, &t, decimals.get(&c).copied());
                (c, ty)
            })
            .collect())
    }

    /// What is read, for messages and as the rows' source object.
    fn what(&self) -> String {
        match (&self.config.table, &self.config.query) {
            (Some(t), _) => format!("table {t}"),
            _ => "query".to_string(),
        }
    }

    fn source_clause(&self, conn: &Conn) -> String {
        match (&self.config.table, &self.config.query) {
            (Some(t), _) => format!(
                "{} AS conveyor_src",
                t.split('.')
                    .map(|p| conn.quote(p.trim()))
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            (None, Some(q)) => format!("({}) AS conveyor_src", q.trim().trim_end_matches(';')),
            (None, None) => "(SELECT 1) AS conveyor_src".to_string(),
        }
    }

    async fn read(
        &self,
        conn: &mut Conn,
        since: Option<Cell>,
        progress: &dyn Progress,
        out: &mut Extract,
        source: &Arc<str>,
    ) -> Result<Option<Cell>> {
        let from = self.source_clause(conn);
        let fail = |what: String| Error::Upstream(format!("connector `{}`: {what}", self.name));

        // The columns and their types (one prepared statement), checked before any row is read.
        let types = self.column_types(conn).await?;
        let columns: Vec<String> = types.iter().map(|(c, _)| c.clone()).collect();
        let mut order: Vec<String> = Vec::new();
        if let Some(inc) = &self.config.incremental_column {
            order.push(inc.clone());
        }
        for k in &self.config.primary_key.0 {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
        for c in &order {
            if !columns.contains(c) {
                let key = if Some(c) == self.config.incremental_column.as_ref() {
                    "incremental_column"
                } else {
                    "primary_key"
                };
                return Err(Error::BadInput(format!(
                    "connector `{}`: the {} has no column `{c}` ({key}); its columns are: {}. Fix {key} or the source",
                    self.name,
                    self.what(),
                    columns.join(", ")
                )));
            }
        }
        out.column_types = types
            .iter()
            .filter_map(|(c, t)| t.map(|t| (c.clone(), t)))
            .collect();
        // Rows are staged to a typed Parquet file batch by batch, never held all at once.
        let staging = Arc::new(tempfile::tempdir().map_err(|e| {
            Error::Upstream(format!(
                "connector `{}`: cannot create a temporary folder to stage rows in: {e}",
                self.name
            ))
        })?);
        let mut stager = crate::lakehouse::typed::Stager::new(
            staging.path().join("rows.parquet"),
            source,
            &types,
            self.config.batch_size as usize,
        );
        out.staging = Some(staging);
        let positions: Vec<usize> = order
            .iter()
            .filter_map(|c| columns.iter().position(|x| x == c))
            .collect();
        let quoted: Vec<String> = order.iter().map(|c| conn.quote(c)).collect();
        let inc_pos = self
            .config
            .incremental_column
            .as_ref()
            .and_then(|c| columns.iter().position(|x| x == c));

        let mut largest = since.clone();
        let mut last: Option<Vec<Cell>> = None;
        let mut batch_no = 0u64;
        let mut line = 0u64;
        loop {
            let mut conds = Vec::new();
            let mut binds = Vec::new();
            if let Some(inc) = quoted.first().filter(|_| inc_pos.is_some()) {
                conds.push(format!("{inc} IS NOT NULL"));
                if let Some(s) = &since {
                    binds.push(s.clone());
                    conds.push(format!("{inc} > {}", conn.placeholder(binds.len())));
                }
            }
            if let Some(prev) = &last {
                let mut ph = Vec::new();
                for v in prev {
                    binds.push(v.clone());
                    ph.push(conn.placeholder(binds.len()));
                }
                conds.push(format!("({}) > ({})", quoted.join(", "), ph.join(", ")));
            }
            let sql = format!(
                "SELECT * FROM {from}{} ORDER BY {} LIMIT {}",
                if conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conds.join(" AND "))
                },
                quoted.join(", "),
                self.config.batch_size
            );
            let (cols, rows) = conn
                .fetch(&sql, &binds)
                .await
                .map_err(|e| fail(format!("reading the {} failed: {e}", self.what())))?;
            batch_no += 1;
            progress.step(&format!("batch {batch_no} ({} rows)", rows.len()));
            let n = rows.len();
            if let Some(row) = rows.last() {
                let keys: Vec<Cell> = positions
                    .iter()
                    .map(|p| row.get(*p).cloned().unwrap_or(Cell::Null))
                    .collect();
                if n as u64 >= u64::from(self.config.batch_size)
                    && let Some(i) = keys.iter().position(|k| *k == Cell::Null)
                {
                    return Err(fail(format!(
                        "the column `{}` is NULL in some rows; the columns rows are ordered by (primary_key, incremental_column) must not be NULL",
                        order.get(i).map_or("", String::as_str)
                    )));
                }
                if let Some(p) = inc_pos
                    && let Some(v) = row.get(p)
                    && *v != Cell::Null
                {
                    largest = Some(v.clone());
                }
                last = Some(keys);
            }
            for row in rows {
                line += 1;
                let mut map = Map::with_capacity(cols.len());
                for (c, v) in cols.iter().zip(row.iter()) {
                    map.insert(c.clone(), conform(v.to_json(), out.column_types.get(c)));
                }
                match key_issue(&self.config.primary_key, source, line, &map) {
                    Some(issue) => out.issues.push(issue),
                    None => stager.push(crate::lakehouse::SourceRecord {
                        source: source.clone(),
                        line,
                        data: map,
                    })?,
                }
            }
            if (n as u64) < u64::from(self.config.batch_size) {
                break;
            }
        }
        progress.total(batch_no);
        if let Some((input, rows)) = stager.finish()? {
            out.files.push(input);
            out.file_rows += rows;
        }
        Ok(largest)
    }
}

impl SqlSource {
    /// Every primary key of the table or query (`SELECT key columns FROM …`), read in
    /// keyset-paginated batches and staged to a Parquet file next to the run's rows, so a
    /// table of any size is listed in bounded memory.
    async fn list_keys(
        &self,
        conn: &mut Conn,
        source: &Arc<str>,
        out: &Extract,
    ) -> Result<KeyListing> {
        let fail = |e: String| {
            Error::Upstream(format!(
                "connector `{}`: listing the keys of the {} (to find deleted rows) failed: {e}",
                self.name,
                self.what()
            ))
        };
        let keys = &self.config.primary_key.0;
        let quoted: Vec<String> = keys.iter().map(|k| conn.quote(k)).collect();
        let from = self.source_clause(conn);
        let dir = out
            .staging
            .as_ref()
            .ok_or_else(|| Error::Internal("sql: no staging folder for the key listing".into()))?;
        let types: Vec<(String, Option<ColType>)> = keys
            .iter()
            .map(|k| (k.clone(), out.column_types.get(k).copied()))
            .collect();
        // Keys are narrow: larger batches than rows.
        let batch = u64::from(self.config.batch_size).max(100_000);
        if let Conn::Pg(c) = conn
            && let Some(kinds) = copy_key_kinds(c, &quoted, &from, &types).await
        {
            let path = dir.path().join("keys.parquet");
            let rows = copy_keys(c, &quoted, &from, &kinds, path.clone(), batch)
                .await
                .map_err(fail)?;
            return Ok(KeyListing {
                source: source.to_string(),
                file: (rows > 0).then(|| crate::lakehouse::ParquetInput {
                    source: source.to_string(),
                    path,
                    staged: None,
                }),
                rows,
            });
        }
        let mut stager = crate::lakehouse::typed::Stager::new(
            dir.path().join("keys.parquet"),
            source,
            &types,
            usize::try_from(batch).unwrap_or(usize::MAX),
        );
        let mut last: Option<Vec<Cell>> = None;
        loop {
            let mut binds = Vec::new();
            let mut filter = String::new();
            if let Some(prev) = &last {
                let mut ph = Vec::new();
                for v in prev {
                    binds.push(v.clone());
                    ph.push(conn.placeholder(binds.len()));
                }
                filter = format!(" WHERE ({}) > ({})", quoted.join(", "), ph.join(", "));
            }
            let sql = format!(
                "SELECT {cols} FROM {from}{filter} ORDER BY {cols} LIMIT {batch}",
                cols = quoted.join(", ")
            );
            let (cols, rows) = conn.fetch(&sql, &binds).await.map_err(fail)?;
            let n = rows.len() as u64;
            last = rows.last().cloned();
            for row in rows {
                let mut map = Map::with_capacity(cols.len());
                for (c, v) in cols.iter().zip(row.iter()) {
                    map.insert(c.clone(), conform(v.to_json(), out.column_types.get(c)));
                }
                stager.push(crate::lakehouse::SourceRecord {
                    source: source.clone(),
                    line: 0,
                    data: map,
                })?;
            }
            if n < batch {
                break;
            }
        }
        let (file, rows) = match stager.finish()? {
            Some((input, rows)) => (Some(input), rows),
            None => (None, 0),
        };
        Ok(KeyListing {
            source: source.to_string(),
            file,
            rows,
        })
    }
}

/// A key column read from PostgreSQL's `COPY` text format.
#[derive(Debug, Clone)]
struct CopyKey {
    name: String,
    int: bool,
}

/// The key columns, when every one is an integer (`int2`, `int4`, `int8`) or plain text
/// (`text`, `varchar`, `char`, `name`) typed as the run types it: their `COPY` text is exactly
/// the value the row path stores, so the listing can be streamed by `COPY`. `None` otherwise
/// (the listing is then read in keyset pages).
async fn copy_key_kinds(
    c: &mut PgConnection,
    quoted: &[String],
    from: &str,
    types: &[(String, Option<ColType>)],
) -> Option<Vec<CopyKey>> {
    let sql = format!("SELECT {} FROM {from}", quoted.join(", "));
    let described = c.prepare(AssertSqlSafe(sql).into_sql_str()).await.ok()?;
    let cols = described.columns();
    if cols.len() != types.len() {
        return None;
    }
    cols.iter()
        .zip(types)
        .map(|(col, (name, ty))| {
            let pg = col.type_info().name().to_ascii_uppercase();
            match (pg.as_str(), ty) {
                ("INT2" | "INT4" | "INT8", Some(ColType::Int)) => Some(CopyKey {
                    name: name.clone(),
                    int: true,
                }),
                ("TEXT" | "VARCHAR" | "BPCHAR" | "NAME", Some(ColType::Text)) => Some(CopyKey {
                    name: name.clone(),
                    int: false,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Streams every key with `COPY (SELECT keys FROM …) TO STDOUT` into the Parquet file `path`,
/// `batch` rows at a time; returns the rows written.
async fn copy_keys(
    c: &mut PgConnection,
    quoted: &[String],
    from: &str,
    kinds: &[CopyKey],
    path: PathBuf,
    batch: u64,
) -> std::result::Result<u64, String> {
    use futures_util::StreamExt;
    let sql = format!("COPY (SELECT {} FROM {from}) TO STDOUT", quoted.join(", "));
    let batch = usize::try_from(batch).unwrap_or(usize::MAX).max(1);
    let mut keys = CopyKeys::new(kinds, path, batch);
    {
        let mut stream = c.copy_out_raw(&sql).await.map_err(|e| e.to_string())?;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            pending.extend_from_slice(&chunk);
            let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in pending[..end].split(|&b| b == b'\n') {
                keys.push_line(line)?;
            }
            pending.drain(..=end);
        }
        if !pending.is_empty() {
            return Err("the COPY stream ended inside a row".into());
        }
    }
    keys.finish()
}

/// Key rows parsed from `COPY` text lines into the lakehouse's typed key columns, written as
/// Parquet per batch.
struct CopyKeys<'a> {
    kinds: &'a [CopyKey],
    columns: KeyColumns,
}

impl<'a> CopyKeys<'a> {
    fn new(kinds: &'a [CopyKey], path: PathBuf, batch: usize) -> Self {
        let columns: Vec<(String, bool)> = kinds.iter().map(|k| (k.name.clone(), k.int)).collect();
        Self {
            kinds,
            columns: KeyColumns::new(&columns, path, batch),
        }
    }

    /// One row: fields separated by tabs, `\N` for null, backslash escapes in text. A row
    /// that does not parse adds nothing.
    fn push_line(&mut self, line: &[u8]) -> std::result::Result<(), String> {
        let mut fields = line.split(|&b| b == b'\t');
        let mut row = Vec::with_capacity(self.kinds.len());
        for kind in self.kinds {
            let field = fields
                .next()
                .ok_or_else(|| format!("a COPY row has no value for `{}`", kind.name))?;
            let value = if field == b"\\N" {
                None
            } else {
                Some(copy_text(field).map_err(|e| format!("column `{}`: {e}", kind.name))?)
            };
            row.push(if kind.int {
                KeyValue::Int(
                    value
                        .map(|v| {
                            v.parse::<i64>().map_err(|_| {
                                format!("column `{}`: `{v}` is not an integer", kind.name)
                            })
                        })
                        .transpose()?,
                )
            } else {
                KeyValue::Text(value)
            });
        }
        if fields.next().is_some() {
            return Err("a COPY row has more values than key columns".into());
        }
        self.columns.push(row).map_err(|e| e.to_string())
    }

    fn finish(self) -> std::result::Result<u64, String> {
        self.columns.finish().map_err(|e| e.to_string())
    }
}

/// A field of PostgreSQL's `COPY` text format with its backslash escapes decoded (`\\`,
/// `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, octal `\123`, hex `\x4F`); the result must be UTF-8.
fn copy_text(field: &[u8]) -> std::result::Result<String, String> {
    if !field.contains(&b'\\') {
        return String::from_utf8(field.to_vec()).map_err(|_| "a value is not UTF-8".to_string());
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = field.get(i) else {
            return Err("a value ends with a lone backslash".into());
        };
        i += 1;
        match e {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match field.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push((v & 0xff) as u8);
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "a value is not UTF-8".to_string())
}

#[async_trait]
impl Source for SqlSource {
    async fn extract(
        &self,
        cursor: Option<&Value>,
        on_error: OnError,
        progress: &dyn Progress,
    ) -> Result<Extract> {
        let previous: Cursor = super::decode_cursor(cursor, &self.name)?;
        let since = match &self.config.incremental_column {
            Some(_) => previous.since,
            None => None,
        };
        let url = Secret::from_lookup(
            &self.config.url_env,
            &format!("connector `{}`: url_env", self.name),
            &self.env,
        )?;
        let url = sqlite_relative(url.expose(), &self.config.base_dir);
        let mut conn = Conn::open(&url).await.map_err(|e| {
            Error::Upstream(format!(
                "connector `{}`: cannot connect to {} (the URL in {}): {e}; check that the database is running and the URL is right",
                self.name,
                describe_url(&url),
                self.config.url_env
            ))
        })?;
        let source: Arc<str> = Arc::from(self.what().as_str());
        let mut out = Extract::default();
        let full = since.is_none();
        let result = self
            .read(&mut conn, since, progress, &mut out, &source)
            .await;
        let largest = match result {
            // An incremental run sees no deletions by itself: list every key (one narrow
            // query), and the lakehouse deletes the silver rows whose key is gone.
            Ok(largest) if !full => match self.list_keys(&mut conn, &source, &out).await {
                Ok(listing) => {
                    out.listed = Some(listing);
                    Ok(largest)
                }
                Err(e) => Err(e),
            },
            other => other,
        };
        conn.close().await;
        let largest = largest?;
        fail_on_issues(&out, on_error)?;
        if full {
            // Every row of the table or query is in `records`: rows gone from the source
            // are deleted from silver.
            out.replaced.push(source.to_string());
        }
        out.cursor = serde_json::to_value(Cursor {
            since: if self.config.incremental_column.is_some() {
                largest
            } else {
                None
            },
        })
        .map_err(|e| Error::internal("encoding the cursor", e))?;
        Ok(out)
    }
}

/// A SQL string literal.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `statements` in order on the database at `url` (benchmarks generate their source
/// tables with it).
pub async fn execute(url: &str, statements: &[String]) -> Result<()> {
    let mut conn = Conn::open(url)
        .await
        .map_err(|e| Error::Upstream(format!("cannot connect to {}: {e}", describe_url(url))))?;
    let mut result = Ok(());
    for s in statements {
        let done = match &mut conn {
            Conn::Pg(c) => sqlx::raw_sql(AssertSqlSafe(s.clone()))
                .execute(&mut *c)
                .await
                .map(|_| ()),
            Conn::My(c) => sqlx::raw_sql(AssertSqlSafe(s.clone()))
                .execute(&mut *c)
                .await
                .map(|_| ()),
            Conn::Lite(c) => sqlx::raw_sql(AssertSqlSafe(s.clone()))
                .execute(&mut *c)
                .await
                .map(|_| ()),
        };
        if let Err(e) = done {
            result = Err(Error::Upstream(format!("{s}: {e}")));
            break;
        }
    }
    conn.close().await;
    result
}

/// `sqlite://relative/path.db` is relative to the config folder, like other paths.
fn sqlite_relative(url: &str, base_dir: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_string();
    };
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty()
        || path.starts_with('/')
        || path.starts_with(':')
        || base_dir.as_os_str().is_empty()
    {
        return url.to_string();
    }
    format!("sqlite://{}", base_dir.join(rest).display())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_are_described_without_passwords() {
        assert_eq!(
            describe_url("postgres://u:secret@db.example:6543/x"),
            "postgres at db.example:6543"
        );
        assert_eq!(
            describe_url("mysql://root@127.0.0.1/test"),
            "mysql at 127.0.0.1:3306"
        );
        let e = "password authentication failed: secret";
        assert!(!scrub(&e, "postgres://u:secret@h/x").contains("secret"));
    }

    #[test]
    fn cells_become_json() {
        for (raw, text) in [
            ("2.2500", "2.25"),
            ("100.00", "100"),
            ("-0.50", "-0.5"),
            ("1200", "1200"),
        ] {
            assert_eq!(decimal_text(&BigDecimal::from_str(raw).unwrap()), text);
        }
        assert_eq!(
            Cell::Decimal("12.50".into()).to_json(),
            Value::String("12.50".into())
        );
        assert_eq!(
            Cell::Bytes(vec![1, 2]).to_json(),
            Value::String("AQI=".into())
        );
        let t = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        assert_eq!(
            Cell::NaiveTimestamp(t).to_json(),
            Value::String("2024-01-02T03:04:05Z".into())
        );
        let c = serde_json::to_value(Cursor {
            since: Some(Cell::Int(7)),
        })
        .unwrap();
        let back: Cursor = serde_json::from_value(c).unwrap();
        assert_eq!(back.since, Some(Cell::Int(7)));
    }

    #[test]
    fn relative_sqlite_paths() {
        assert_eq!(
            sqlite_relative("sqlite://data/x.db", Path::new("/cfg")),
            "sqlite:///cfg/data/x.db"
        );
        assert_eq!(
            sqlite_relative("sqlite:///abs.db", Path::new("/cfg")),
            "sqlite:///abs.db"
        );
    }

    #[test]
    fn copy_text_decodes_escapes_and_refuses_what_is_not_text() {
        assert_eq!(copy_text(b"plain").unwrap(), "plain");
        assert_eq!(
            copy_text(b"a\\tb\\\\c\\nd\\101\\x42\\q").unwrap(),
            "a\tb\\c\ndABq"
        );
        assert_eq!(copy_text("é\\303\\251".as_bytes()).unwrap(), "éé");
        assert!(copy_text(b"end\\").unwrap_err().contains("lone backslash"));
        assert!(copy_text(b"\\377").unwrap_err().contains("UTF-8"));
        // Hostile bytes never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut field = Vec::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                field.push(
                    [b'\\', b'x', b'7', b'N', b'\t', 0xc3, 0xa9, b'f', 0xff][(x % 9) as usize],
                );
            }
            let _ = copy_text(&field);
            x = x.wrapping_add(1);
        }
    }

    #[test]
    fn copy_rows_become_typed_key_columns() {
        let dir = tempfile::tempdir().unwrap();
        let kinds = vec![
            CopyKey {
                name: "id".into(),
                int: true,
            },
            CopyKey {
                name: "code".into(),
                int: false,
            },
        ];
        let path = dir.path().join("keys.parquet");
        let mut keys = CopyKeys::new(&kinds, path.clone(), 2);
        keys.push_line(b"1\tA\\tB").unwrap();
        keys.push_line(b"\\N\t\\N").unwrap();
        keys.push_line(b"-7\tz").unwrap();
        let e = keys.push_line(b"x\ty").unwrap_err();
        assert!(e.contains("`id`") && e.contains("not an integer"), "{e}");
        assert!(
            keys.push_line(b"1")
                .unwrap_err()
                .contains("no value for `code`")
        );
        assert!(
            keys.push_line(b"1\ta\tb")
                .unwrap_err()
                .contains("more values")
        );
        assert_eq!(keys.finish().unwrap(), 3);
        assert_eq!(crate::lakehouse::parquet_row_count(&path).unwrap(), 3);
    }
}
