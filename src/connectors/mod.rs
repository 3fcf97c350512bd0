//! Connectors: declarative definitions of where business data comes from.
//!
//! One file per connector in `[connectors] dir` (`connectors/*.toml` next to the config):
//! `name`, `kind`, an optional cron `schedule`, `on_error`, kind-specific keys, an optional
//! `[index]` table and an optional `[schema]` of declared silver column types. Every file is
//! checked when the folder is loaded and every problem of every file is reported at once, each
//! with its file and key.
//!
//! A kind is a config struct implementing [`SourceConfig`] (read and check its keys, name its
//! primary key, `build(cx)` the running [`Source`] from a [`BuildContext`]), registered in
//! one place: the [`KINDS`] table, which `load_dir` looks `kind = "…"` up in. Adding a kind
//! is a module with its config struct and source plus one line in [`KINDS`].
//!
//! Kinds: `files` ([`files`]), `http` for REST JSON APIs ([`http`]) and `sql` for
//! PostgreSQL, MySQL/MariaDB and SQLite ([`sql`]). One run of one connector is [`sync::run`];
//! a pass over several — runs, then the gold models ([`gold`]), then the index feed of
//! `[index]` ([`feed`]) — is [`pipeline::Pipeline`], used by `conveyor sync` and by the
//! [`schedule::Scheduler`] that `serve` starts for connectors with a `schedule`.

pub mod feed;
pub mod files;
pub mod gold;
pub mod http;
pub mod pipeline;
pub mod schedule;
pub mod sql;
pub mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lakehouse::records::DECLARABLE;
use crate::lakehouse::{ColType, KeyListing, ParquetInput};
use crate::values::HumanDuration;

/// What connector runs read from the config: `[connectors]`, `[index]` (the index feed opens
/// it when the process does not hold it) and the folder relative paths resolve against.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `[connectors]`.
    pub connectors: ConnectorsConfig,
    /// `[index]`.
    pub index: crate::knowledge::IndexConfig,
    /// The config file's folder.
    pub base_dir: PathBuf,
}

impl RunSettings {
    /// The connectors folder, resolved.
    pub fn dir(&self) -> PathBuf {
        if self.connectors.dir.is_absolute() {
            self.connectors.dir.clone()
        } else {
            self.base_dir.join(&self.connectors.dir)
        }
    }
}

/// `[connectors]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    /// Folder of connector definitions (`*.toml`), relative to the config folder.
    pub dir: PathBuf,
    /// How long a run's claim on its connector holds without being renewed; a run that
    /// crashed is taken over after this.
    pub run_lease: HumanDuration,
    /// Gold models written inline (`[connectors.models]`, name = SQL), beside the
    /// `connectors/NAME.sql` files.
    pub models: BTreeMap<String, String>,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("connectors"),
            run_lease: HumanDuration(Duration::from_secs(600)),
            models: BTreeMap::new(),
        }
    }
}

impl ConnectorsConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.run_lease.0 < Duration::from_secs(10) {
            problems.push("connectors.run_lease: must be at least 10s".into());
        }
        for (name, sql) in &self.models {
            if !valid_name(name) {
                problems.push(format!(
                    "connectors.models.{name}: the name becomes the table gold.{name}, so it must start with a lowercase letter and hold only lowercase letters, digits and '_'"
                ));
            }
            if sql.trim().is_empty() {
                problems.push(format!(
                    "connectors.models.{name}: empty; write one query, e.g. {name} = \"SELECT … FROM orders\""
                ));
            }
        }
    }
}

/// What to do with a record that cannot be read (a malformed CSV row, a JSON line that does
/// not parse, a record without its primary key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Count it, report it with file and line, and go on.
    #[default]
    Skip,
    /// Fail the run; nothing is written.
    Fail,
}

/// `[index]` of a connector: which columns make the document a row becomes in the knowledge
/// index (written by [`feed::run`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    /// The column that is the document title.
    pub title: Option<String>,
    /// Columns that make the document text, in order.
    pub text: Vec<String>,
    /// Columns kept in the payload (for filters and citations).
    #[serde(default)]
    pub payload: Vec<String>,
}

/// Every kind of connector, by the name written in `kind = "…"`: the one place a kind is
/// registered.
pub const KINDS: &[Registration] = &[
    // Files in a folder, a glob or one file.
    Registration::of::<files::FilesConfig>("files"),
    // A REST JSON API.
    Registration::of::<http::HttpConfig>("http"),
    // A table or query of a SQL database.
    Registration::of::<sql::SqlConfig>("sql"),
];

/// The keys of one kind of connector: a config struct that reads and checks itself and builds
/// the running [`Source`].
pub trait SourceConfig: std::fmt::Debug + Send + Sync {
    /// Reads this kind's keys from `table` (the file without the keys every connector has),
    /// resolves relative paths against `base_dir` (the config file's folder) and checks the
    /// values. Every problem goes to `problems`, each naming its key; `None` when the keys
    /// could not be read at all.
    fn parse(table: toml::Table, base_dir: &Path, problems: &mut Vec<String>) -> Option<Self>
    where
        Self: Sized;

    /// The primary key columns.
    fn primary_key(&self) -> &[String];

    /// The running source.
    fn build(&self, cx: &BuildContext) -> Arc<dyn Source>;
}

/// What a kind's [`SourceConfig::build`] is given.
#[derive(Clone)]
pub struct BuildContext {
    /// The connector's name (also its table name), for errors and logs.
    pub name: String,
    /// Where secrets and connection URLs are read when a run starts: the process environment,
    /// or what a test injects.
    pub env: Env,
}

impl BuildContext {
    /// The context of the connector `name`, reading the process environment.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            env: Env::process(),
        }
    }
}

/// Reads an environment variable; sources take one so that tests can inject variables.
pub use crate::values::Env;

/// Reads one kind's keys into its config (see [`SourceConfig::parse`]).
type ParseFn = fn(toml::Table, &Path, &mut Vec<String>) -> Option<Arc<dyn SourceConfig>>;

/// One entry of [`KINDS`]: a kind's name and how its keys are read.
pub struct Registration {
    /// The name written in `kind = "…"`.
    pub name: &'static str,
    parse: ParseFn,
}

impl Registration {
    /// The kind `name`, whose keys are the config struct `C`.
    const fn of<C: SourceConfig + 'static>(name: &'static str) -> Self {
        Self {
            name,
            parse: parse_as::<C>,
        }
    }
}

/// [`SourceConfig::parse`] of `C`, boxed for the table.
fn parse_as<C: SourceConfig + 'static>(
    table: toml::Table,
    base_dir: &Path,
    problems: &mut Vec<String>,
) -> Option<Arc<dyn SourceConfig>> {
    C::parse(table, base_dir, problems).map(|c| Arc::new(c) as Arc<dyn SourceConfig>)
}

/// The kind names of [`KINDS`] as a user writes them: `"files", "http" or "sql"`.
fn kind_names() -> String {
    let quoted: Vec<String> = KINDS.iter().map(|k| format!("\"{}\"", k.name)).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A connector's kind and its kind-specific settings.
#[derive(Debug, Clone)]
pub struct Kind {
    name: &'static str,
    config: Arc<dyn SourceConfig>,
}

impl Kind {
    /// The kind's name as written in the file.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The running source, built with `cx`.
    pub fn build(&self, cx: &BuildContext) -> Arc<dyn Source> {
        self.config.build(cx)
    }
}

/// One connector definition.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The name; also the table name (`bronze.NAME`, `silver.NAME`).
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The cron schedule as written, if any.
    pub schedule: Option<String>,
    /// What to do with unreadable records.
    pub on_error: OnError,
    /// The index feed settings, if any.
    pub index: Option<IndexSpec>,
    /// Declared silver column types (`[schema]`); other columns are inferred.
    pub schema: BTreeMap<String, ColType>,
    /// Columns silver is partitioned by (`partition_by`), one folder per value: for a column
    /// with few values that queries filter on (a region, a month).
    pub partition_by: Vec<String>,
    /// Columns `conveyor optimize` clusters silver's files by (`cluster_by`, Z-order), so that
    /// queries filtering on them skip most files.
    pub cluster_by: Vec<String>,
    /// Kind-specific settings.
    pub kind: Kind,
}

impl Definition {
    /// The primary key columns.
    pub fn primary_key(&self) -> &[String] {
        self.kind.config.primary_key()
    }

    /// The next time the schedule fires after `after`, when there is a schedule.
    pub fn next_run(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron = schedule::parse_pattern(self.schedule.as_deref()?).ok()?;
        cron.find_next_occurrence(&after, false).ok()
    }

    /// The last time the schedule fired at or before `at`, when there is a schedule.
    pub fn previous_run(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron = schedule::parse_pattern(self.schedule.as_deref()?).ok()?;
        cron.find_previous_occurrence(&at, true).ok()
    }

    /// Builds the running source, reading secrets from the process environment.
    pub fn build(&self) -> Arc<dyn Source> {
        self.kind.build(&BuildContext::new(&self.name))
    }
}

/// A malformed record, reported with where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// The file (or object).
    pub source: String,
    /// The line (1-based; for CSV the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for RowIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}: {}", self.source, self.line, self.reason)
    }
}

/// What a source read in one run.
#[derive(Debug, Clone, Default)]
pub struct Extract {
    /// Records of new and changed source objects, staged on disk as they were read (text
    /// files, API pages).
    pub staged: Option<crate::lakehouse::StagedRecords>,
    /// Typed files (Parquet) of new and changed source objects, streamed by the lakehouse
    /// itself instead of being read into `records`.
    pub files: Vec<ParquetInput>,
    /// Rows in `files` (from their footers).
    pub file_rows: u64,
    /// The temporary folder of files a source staged for this run (removed when the last
    /// clone of the extract is dropped, after the lakehouse wrote them).
    pub staging: Option<Arc<tempfile::TempDir>>,
    /// Column types the source knows (a SQL table's declared types), used instead of
    /// inference; a connector's `[schema]` still wins.
    pub column_types: BTreeMap<String, ColType>,
    /// Whether every value is text (CSV), so the lakehouse infers types from the text.
    pub values_are_text: bool,
    /// Source objects read in full: their old rows missing from `records` are deleted.
    pub replaced: Vec<String>,
    /// Source objects gone since the last run: all their rows are deleted.
    pub removed: Vec<String>,
    /// Every primary key the source holds now, when the run read only changes but could list
    /// keys cheaply (`sql` with `incremental_column`): rows whose key is gone are deleted.
    pub listed: Option<KeyListing>,
    /// Source objects unchanged since the last run (not read again).
    pub unchanged: usize,
    /// Records that could not be read.
    pub issues: Vec<RowIssue>,
    /// The cursor to save once the data is committed.
    pub cursor: serde_json::Value,
}

/// A source's saved cursor as its own type: the default when there is none yet.
pub(crate) fn decode_cursor<T: serde::de::DeserializeOwned + Default>(
    cursor: Option<&serde_json::Value>,
    connector: &str,
) -> Result<T> {
    match cursor {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            Error::Internal(format!(
                "the saved cursor of `{connector}` cannot be read: {e}"
            ))
        }),
    }
}

/// Progress reporting from a source to whoever draws it.
pub trait Progress: Send + Sync {
    /// Total units of work (files), once known.
    fn total(&self, n: u64);
    /// One unit done, with a short label.
    fn step(&self, label: &str);
}

/// A place data is read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Reads what changed since `cursor` (the value a previous run's [`Extract::cursor`] held,
    /// `None` on the first run).
    async fn extract(
        &self,
        cursor: Option<&serde_json::Value>,
        on_error: OnError,
        progress: &dyn Progress,
    ) -> Result<Extract>;
}

/// The primary key: one column name or several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrimaryKey(pub Vec<String>);

impl<'de> Deserialize<'de> for PrimaryKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let cols = match OneOrMany::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a column name or a list of them, e.g. primary_key = \"id\"",
            )
        })? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if cols.is_empty() || cols.iter().any(|c| c.trim().is_empty()) {
            return Err(serde::de::Error::custom(
                "name at least one column, e.g. primary_key = \"id\"",
            ));
        }
        Ok(Self(cols))
    }
}

/// Loads every connector definition in `dir` (a missing folder means no connectors).
/// `base_dir` resolves relative paths inside the definitions (the config file's folder).
pub fn load_dir(dir: &Path, base_dir: &Path) -> Result<Vec<Definition>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read the connectors folder {} (connectors.dir): {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.ends_with(".toml")
                        && !n.starts_with('.')
                        && !crate::semantic::model::is_model_file(n)
                })
        })
        .collect();
    files.sort();

    let mut problems = Vec::new();
    let mut defs: Vec<Definition> = Vec::new();
    let mut defined_in: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        let origin = file.display().to_string();
        match load_file(file, base_dir) {
            Ok(def) => {
                if let Some(first) = defined_in.get(&def.name) {
                    problems.push(format!(
                        "{origin}: name: `{}` is already used by {}; connector names must be unique (they are table names)",
                        def.name,
                        first.display()
                    ));
                    continue;
                }
                defined_in.insert(def.name.clone(), file.clone());
                defs.push(def);
            }
            Err(ps) => problems.extend(ps.into_iter().map(|p| format!("{origin}: {p}"))),
        }
    }
    if problems.is_empty() {
        Ok(defs)
    } else {
        let mut msg = format!(
            "{} problem{} in the connector files of {}:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            dir.display()
        );
        for p in &problems {
            msg.push_str("\n  - ");
            msg.push_str(p);
        }
        Err(Error::Config(msg))
    }
}

/// Reads one definition; every problem is returned, each naming its key.
fn load_file(file: &Path, base_dir: &Path) -> std::result::Result<Definition, Vec<String>> {
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read the file: {e}")])?;
    parse_definition(&text, file, base_dir)
}

/// One definition from the TOML `text` of `file` (what [`load_dir`] does with each file); every
/// problem is returned, each naming its key. Public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn parse_definition(
    text: &str,
    file: &Path,
    base_dir: &Path,
) -> std::result::Result<Definition, Vec<String>> {
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| vec![format!("not valid TOML: {}", e.to_string().trim_end())])?;
    let mut problems = Vec::new();

    let name = take_string(&mut table, "name", &mut problems);
    let kind = take_string(&mut table, "kind", &mut problems);
    let schedule = take_string(&mut table, "schedule", &mut problems);
    let on_error = match table.remove("on_error") {
        None => OnError::Skip,
        Some(v) => match OnError::deserialize(v) {
            Ok(o) => o,
            Err(_) => {
                problems.push("on_error: expected \"skip\" or \"fail\"".into());
                OnError::Skip
            }
        },
    };
    let index = match table.remove("index") {
        None => None,
        Some(v) => match serde_path_to_error::deserialize::<_, IndexSpec>(v) {
            Ok(i) => Some(i),
            Err(e) => {
                problems.push(key_error("index", &e));
                None
            }
        },
    };
    let schema = match table.remove("schema") {
        None => BTreeMap::new(),
        Some(v) => take_schema(v, &mut problems),
    };
    let partition_by = take_columns(&mut table, "partition_by", &mut problems);
    let cluster_by = take_columns(&mut table, "cluster_by", &mut problems);

    match &name {
        None => problems.push(
            "name: missing; add name = \"orders\" (lowercase letters, digits and '_'; it becomes the table name)".into(),
        ),
        Some(n) if !valid_name(n) => problems.push(format!(
            "name: `{n}` must start with a lowercase letter and hold only lowercase letters, digits and '_' (it becomes the table name silver.{n})"
        )),
        _ => {}
    }
    if let Some(s) = &schedule
        && let Err(e) = schedule::parse_schedule(s)
    {
        problems.push(format!(
            "schedule: `{s}` is not a usable cron expression ({e}); use five fields like \"0 * * * *\" (hourly) or \"*/15 * * * *\", or six with seconds first such as \"*/30 * * * * *\""
        ));
    }

    let kind = match kind.as_deref() {
        Some(name) => match KINDS.iter().find(|k| k.name == name) {
            Some(k) => (k.parse)(table, base_dir, &mut problems).map(|config| Kind {
                name: k.name,
                config,
            }),
            None => {
                problems.push(format!(
                    "kind: \"{name}\" is not a connector kind; use kind = {}",
                    kind_names()
                ));
                None
            }
        },
        None => {
            problems.push(format!("kind: missing; add kind = {}", kind_names()));
            None
        }
    };
    if let Some(index) = &index
        && index.text.is_empty()
    {
        problems.push("index.text: name at least one column that makes the document text".into());
    }

    match (name, kind) {
        (Some(name), Some(kind)) if problems.is_empty() => Ok(Definition {
            name,
            file: file.to_path_buf(),
            schedule,
            on_error,
            index,
            schema,
            partition_by,
            cluster_by,
            kind,
        }),
        _ => Err(problems),
    }
}

/// Reads `[schema]`: column name → declared type. Every bad entry is a problem naming its key.
fn take_schema(value: toml::Value, problems: &mut Vec<String>) -> BTreeMap<String, ColType> {
    let mut schema = BTreeMap::new();
    let toml::Value::Table(cols) = value else {
        problems.push(format!(
            "schema: expected a table of column = \"type\" ({DECLARABLE}), found {}",
            value.type_str()
        ));
        return schema;
    };
    for (col, ty) in cols {
        if col.starts_with('_') {
            problems.push(format!(
                "schema.{col}: column names starting with '_' are conveyor's own (_run_id, _fetched_at, _source); declare only source columns"
            ));
            continue;
        }
        match ty.as_str().and_then(ColType::declared) {
            Some(t) => {
                schema.insert(col, t);
            }
            None => problems.push(match &ty {
                toml::Value::String(s) if s.trim().starts_with("decimal(") => format!(
                    "schema.{col}: \"{s}\" has more than 38 digits, a scale above its precision or is not written decimal(P,S); a decimal holds 1 to 38 digits (P) of which S are after the point, e.g. decimal(18,2)"
                ),
                toml::Value::String(s) => {
                    format!("schema.{col}: \"{s}\" is not a column type; use {DECLARABLE}")
                }
                other => format!(
                    "schema.{col}: expected a type name, found {}; use {DECLARABLE}",
                    other.type_str()
                ),
            }),
        }
    }
    schema
}

/// Removes `key` from `table` when it is a string; anything else is a problem.
/// A list of source column names (`key = "col"` or `key = ["a", "b"]`); conveyor's own `_`
/// columns are refused.
fn take_columns(table: &mut toml::Table, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    let cols = match table.remove(key) {
        None => return Vec::new(),
        Some(toml::Value::String(s)) => vec![s],
        Some(toml::Value::Array(items)) => {
            let mut cols = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::String(s) => cols.push(s),
                    other => {
                        problems.push(format!(
                            "{key}: expected column names, found {}; e.g. {key} = [\"region\"]",
                            other.type_str()
                        ));
                        return Vec::new();
                    }
                }
            }
            cols
        }
        Some(other) => {
            problems.push(format!(
                "{key}: expected a column name or a list of them, found {}; e.g. {key} = [\"region\"]",
                other.type_str()
            ));
            return Vec::new();
        }
    };
    for c in &cols {
        if c.trim().is_empty() || c.starts_with('_') {
            problems.push(format!(
                "{key}: `{c}` is not a source column name (empty, or one of conveyor's own `_` columns)"
            ));
        }
    }
    cols
}

fn take_string(table: &mut toml::Table, key: &str, problems: &mut Vec<String>) -> Option<String> {
    match table.remove(key) {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(other) => {
            problems.push(format!(
                "{key}: expected a string, found {}",
                other.type_str()
            ));
            None
        }
    }
}

/// Deserialises kind-specific keys in one go: an error names its key and nothing is read.
fn deserialize_strict<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    problems: &mut Vec<String>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table)) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(key_error("", &e));
            None
        }
    }
}

/// Deserialises kind-specific keys, reporting every bad key: missing `required` keys are
/// named first; then on each error the key is noted, dropped, and the rest tried again (as
/// `Config::from_toml` does), so one typo does not hide the next. Bounded: each round removes
/// a key or stops.
fn deserialize_all<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    required: &[&str],
    problems: &mut Vec<String>,
) -> Option<T> {
    let mut failed = false;
    for key in required {
        if !table.contains_key(*key) {
            problems.push(format!("{key}: missing; this kind of connector needs it"));
            failed = true;
        }
    }
    let mut dropped: Vec<String> = Vec::new();
    for _ in 0..32 {
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone())) {
            Ok(v) => return (!failed).then_some(v),
            Err(e) => {
                let message = e.inner().to_string();
                if let Some(field) = missing_field(&message)
                    && (required.contains(&field) || dropped.iter().any(|d| d == field))
                {
                    // Already reported (missing, or dropped after its own error).
                    return None;
                }
                failed = true;
                problems.push(key_error("", &e));
                let first = e.path().iter().find_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    _ => None,
                });
                match first {
                    Some(key) if table.remove(&key).is_some() => dropped.push(key),
                    _ => return None,
                }
            }
        }
    }
    None
}

/// The key named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// A deserialisation error as `path: message`.
fn key_error(prefix: &str, e: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let path = e.path().to_string();
    let path = match (prefix.is_empty(), path.as_str()) {
        (true, ".") => "(top level)".to_string(),
        (true, p) => p.to_string(),
        (false, ".") => prefix.to_string(),
        (false, p) => format!("{prefix}.{p}"),
    };
    let message = e.inner().to_string();
    let message = message.split("\nin `").next().unwrap_or("").trim();
    // serde names a missing key in the message, at the level above it; name it as the key.
    if let Some(field) = missing_field(message) {
        let key = match path.as_str() {
            "(top level)" => field.to_string(),
            p => format!("{p}.{field}"),
        };
        return format!("{key}: missing; this kind of connector needs it");
    }
    format!("{path}: {message}")
}

/// A connector name is a plain SQL identifier.
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && n.len() <= 64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Found by the `cron` fuzz target: croner accepted `, * * * *` (an empty minute list)
    /// and its next-run search then walked minute by minute to the year 5000. Patterns that
    /// cannot fire are refused when the definition loads, and never searched.
    #[test]
    fn schedules_that_never_fire_are_refused_at_load() {
        use schedule::parse_schedule;
        for (pattern, says) in [
            (", * * * *", "empty item"),
            ("0,,30 * * * *", "empty item"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4 *", "never fires"),
        ] {
            let err = parse_schedule(pattern).unwrap_err();
            assert!(err.contains(says), "{pattern}: {err}");
            let toml = format!(
                "name = \"orders\"\nkind = \"files\"\npath = \"orders.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\nschedule = \"{pattern}\"\n"
            );
            let dir = tempfile::tempdir().unwrap();
            let err = parse_definition(&toml, Path::new("a.toml"), dir.path())
                .unwrap_err()
                .join("\n");
            assert!(err.contains("schedule") && err.contains(says), "{err}");
        }
        for fine in [
            "*/15 * * * *",
            "0 9 * * 1-5",
            "0 0 29 2 *",
            "0 0 L * *",
            "*/30 * * * * *",
        ] {
            let cron = parse_schedule(fine).unwrap();
            assert!(
                cron.find_next_occurrence(&chrono::Utc::now(), false)
                    .is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn every_problem_of_every_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "name = \"Orders\"\nkind = \"files\"\npath = \"x.csv\"\nformat = \"xml\"\nprimary_key = []\nschedule = \"every day\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.toml"), "name = \"b\"\nkind = \"ftp\"\n").unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            "name = \"c\"\nkind = \"files\"\npath = \"x.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\ncolour = 1\n",
        )
        .unwrap();
        let err = load_dir(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.toml: name"), "{err}");
        assert!(err.contains("a.toml: format"), "{err}");
        assert!(err.contains("a.toml: primary_key"), "{err}");
        assert!(err.contains("a.toml: schedule"), "{err}");
        assert!(err.contains("b.toml: kind"), "{err}");
        assert!(err.contains("c.toml") && err.contains("colour"), "{err}");
    }

    #[test]
    fn an_unknown_or_missing_kind_names_every_registered_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.toml"), "name = \"b\"\nkind = \"ftp\"\n").unwrap();
        std::fs::write(dir.path().join("c.toml"), "name = \"c\"\n").unwrap();
        let err = load_dir(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("b.toml: kind: \"ftp\" is not a connector kind; use kind = \"files\", \"http\" or \"sql\""),
            "{err}"
        );
        assert!(
            err.contains("c.toml: kind: missing; add kind = \"files\", \"http\" or \"sql\""),
            "{err}"
        );
    }

    #[test]
    fn a_good_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orders.toml"),
            "name = \"orders\"\nkind = \"files\"\npath = \"data/orders.csv\"\nformat = \"csv\"\nprimary_key = [\"order_id\"]\nschedule = \"*/15 * * * *\"\non_error = \"fail\"\n[index]\ntitle = \"order_id\"\ntext = [\"notes\"]\n",
        )
        .unwrap();
        let defs = load_dir(dir.path(), dir.path()).unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].primary_key(), ["order_id".to_string()]);
        assert_eq!(defs[0].on_error, OnError::Fail);
        assert!(defs[0].next_run(chrono::Utc::now()).is_some());
        assert!(defs[0].schema.is_empty());
    }

    #[test]
    fn schema_types_are_read_and_bad_ones_named_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let head = "kind = \"files\"\npath = \"x.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n";
        std::fs::write(
            dir.path().join("good.toml"),
            format!("name = \"good\"\n{head}[schema]\nzip = \"text\"\nid = \"integer\"\namount = \"float\"\nok = \"boolean\"\nat = \"timestamp\"\nprice = \"decimal(12, 2)\"\nday = \"date\"\n"),
        )
        .unwrap();
        let defs = load_dir(dir.path(), dir.path()).unwrap();
        assert_eq!(defs[0].schema["zip"], ColType::Text);
        assert_eq!(defs[0].schema["id"], ColType::Int);
        assert_eq!(defs[0].schema["amount"], ColType::Float);
        assert_eq!(defs[0].schema["ok"], ColType::Bool);
        assert_eq!(defs[0].schema["at"], ColType::Timestamp);
        assert_eq!(defs[0].schema["price"], ColType::Decimal(12, 2));
        assert_eq!(defs[0].schema["day"], ColType::Date);

        std::fs::write(
            dir.path().join("bad.toml"),
            format!(
                "name = \"bad\"\n{head}[schema]\nzip = \"varchar\"\nn = 3\n_source = \"text\"\nbig = \"decimal(40,2)\"\n"
            ),
        )
        .unwrap();
        let err = load_dir(dir.path(), dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml: schema.zip: \"varchar\" is not a column type; use integer, float, decimal(P,S), boolean, date, timestamp or text"),
            "{err}"
        );
        assert!(
            err.contains("bad.toml: schema.n: expected a type name, found integer"),
            "{err}"
        );
        assert!(err.contains("bad.toml: schema._source"), "{err}");
        assert!(
            err.contains("bad.toml: schema.big: \"decimal(40,2)\" has more than 38 digits"),
            "{err}"
        );
        assert!(!err.contains("good.toml"), "{err}");
    }
}
