//! The lakehouse: Delta tables under `[lakehouse] uri`, laid out as `<uri>/<layer>/<name>`.
//!
//! - `bronze/NAME`: the raw records of every run, appended, with `_run_id`, `_fetched_at` and
//!   `_source` (the file or object a record came from): as text for untyped sources (CSV,
//!   JSON, HTTP), with their own types for typed ones (Parquet, SQL tables; see [`typed`]).
//! - `silver/NAME`: typed (the source's types where it has them; otherwise inferred per
//!   column: integer, float, decimal, date, boolean, RFC 3339 timestamp, text — or declared,
//!   [`RunWrite::declared`]; an existing column is never re-typed), one row per primary key,
//!   kept current with a Delta MERGE: changed rows updated, new
//!   ones inserted, and rows whose source object was re-listed without them (or removed)
//!   deleted. New source columns are added to the table; a value that does not fit a column's
//!   type fails the run before anything is written, so the previous version stays as it was.
//! - `gold/NAME`: SQL models (`connectors/NAME.sql`), one query over silver and gold tables,
//!   materialised by overwriting the table as a new version (see [`gold`]).
//!
//! This module is the only one that imports deltalake (and through it DataFusion, Arrow and
//! Parquet). Records cross into it staged on disk ([`RecordStager`], fed [`SourceRecord`]s or
//! text rows) or as Parquet files, and leave as query results rendered to text, JSON or CSV.

mod gold;
pub mod records;
mod scan;
mod sql;
pub mod staged;
pub mod tpch;
pub mod typed;
mod views;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use serde::{Deserialize, Serialize};

pub use gold::{GoldBuild, TableName, model_inputs};
pub use records::{ColType, SourceRecord};
pub use sql::{OutputFormat, QueryOutput, check_read_only, is_explain};
pub use staged::{RecordStager, StagedRecords};
pub use typed::{ParquetInput, parquet_row_count};
pub use views::{ColumnInfo, View};

use crate::error::{Error, Result};
use crate::values::HumanDuration;

/// Rows a source stages per batch (see [`RecordStager`]); a batch also ends at
/// [`staged::MAX_BATCH_BYTES`] of text.
pub const STAGE_ROWS: usize = 65_536;

/// Columns every table gets; a source may not use these names.
pub const RUN_ID: &str = "_run_id";
/// When the run fetched the record (UTC).
pub const FETCHED_AT: &str = "_fetched_at";
/// The file or object the record came from.
pub const SOURCE: &str = "_source";

/// `[lakehouse]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakehouseConfig {
    /// Root of the tables: a folder (relative to the config file), `file:///abs/path`, or an
    /// object-store bucket and prefix: `s3://bucket/prefix` (AWS, or an S3-compatible store
    /// through `storage`), `gs://bucket/prefix` (Google Cloud Storage) or
    /// `az://container/prefix` (Azure Blob Storage; also `abfs://` and `abfss://`).
    pub uri: String,
    /// Object-store options passed to delta-rs, e.g. `AWS_REGION`, `AWS_ENDPOINT_URL` (MinIO,
    /// R2, …), `GOOGLE_BASE_URL`, `AZURE_STORAGE_ACCOUNT_NAME`. Credentials come from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `GOOGLE_SERVICE_ACCOUNT_KEY`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
    /// `AZURE_CLIENT_SECRET`, instance roles and managed identities), never from this file.
    pub storage: BTreeMap<String, String>,
    /// Most rows `conveyor sql` returns; a result cut there says so.
    pub sql_row_limit: usize,
    /// Time limit of one SQL query.
    pub sql_timeout: HumanDuration,
    /// Rows per record batch between a source and the Delta writer; a run's memory is
    /// bounded by a few batches, whatever the table's size.
    pub batch_rows: usize,
    /// Memory the query engine may use (MiB) for syncs, gold models and `conveyor sql`;
    /// sorts and aggregates spill to disk past it, and a query that cannot spill fails with
    /// a message instead of exhausting the machine.
    pub memory_limit_mb: usize,
    /// Threads a query runs on; 0 means one per core.
    pub target_partitions: usize,
}

impl Default for LakehouseConfig {
    fn default() -> Self {
        Self {
            uri: "data/lake".into(),
            storage: BTreeMap::new(),
            sql_row_limit: 10_000,
            sql_timeout: HumanDuration(Duration::from_secs(30)),
            batch_rows: 65_536,
            memory_limit_mb: 1024,
            target_partitions: 0,
        }
    }
}

/// Where the tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local folder.
    Local(PathBuf),
    /// An object store: the root URL (ending in `/`) and the options for delta-rs.
    Remote {
        /// `s3://bucket/prefix/`, `gs://bucket/prefix/` or `az://container/prefix/`.
        url: reqwest::Url,
        /// Storage options.
        options: std::collections::HashMap<String, String>,
    },
}

/// The object stores this build speaks to, by URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    S3,
    Gcs,
    Azure,
}

impl Store {
    /// The store of a URI scheme (lower case), `None` for one this build does not speak to.
    fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "s3" | "s3a" => Some(Self::S3),
            "gs" => Some(Self::Gcs),
            "az" | "abfs" | "abfss" => Some(Self::Azure),
            _ => None,
        }
    }

    /// An example URI, for messages.
    fn example(self) -> &'static str {
        match self {
            Self::S3 => "s3://my-bucket/lake",
            Self::Gcs => "gs://my-bucket/lake",
            Self::Azure => "az://my-container/lake",
        }
    }

    /// What the host part of the URI names.
    fn root_noun(self) -> &'static str {
        match self {
            Self::S3 | Self::Gcs => "bucket",
            Self::Azure => "container",
        }
    }

    /// What to check when the store does not answer.
    fn hint(self) -> &'static str {
        match self {
            Self::S3 => {
                "check lakehouse.uri (bucket and prefix), lakehouse.storage (AWS_ENDPOINT_URL, AWS_REGION) and the AWS credentials in the environment"
            }
            Self::Gcs => {
                "check lakehouse.uri (bucket and prefix), lakehouse.storage (GOOGLE_BASE_URL for an emulator) and the Google credentials in the environment (GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT_KEY)"
            }
            Self::Azure => {
                "check lakehouse.uri (container and prefix), lakehouse.storage (AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_USE_EMULATOR) and the Azure credentials in the environment (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY or AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID)"
            }
        }
    }

    /// Option keys (by upper-case suffix, covering delta-rs' aliases) that would put a
    /// credential in the config file, each with the environment variable to use instead.
    fn secret_options(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // aws_secret_access_key, secret_access_key; aws_session_token, aws_token, token.
            Self::S3 => &[
                ("SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
                ("TOKEN", "AWS_SESSION_TOKEN"),
            ],
            // google_service_account_key, service_account_key (the key's JSON itself; a path
            // to a key file is not a secret and may stay in the file).
            Self::Gcs => &[("SERVICE_ACCOUNT_KEY", "GOOGLE_SERVICE_ACCOUNT_KEY")],
            // azure_storage_{account,access,master}_key, account_key, access_key, master_key;
            // azure_storage_sas_{key,token}, sas_key, sas_token; azure_client_secret,
            // client_secret; azure_storage_token, bearer_token, token; fabric_session_token.
            Self::Azure => &[
                ("ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT_KEY"),
                ("ACCESS_KEY", "AZURE_STORAGE_ACCOUNT_KEY"),
                ("MASTER_KEY", "AZURE_STORAGE_ACCOUNT_KEY"),
                ("SAS_KEY", "AZURE_STORAGE_SAS_KEY"),
                ("SAS_TOKEN", "AZURE_STORAGE_SAS_KEY"),
                ("CLIENT_SECRET", "AZURE_CLIENT_SECRET"),
                ("SESSION_TOKEN", "AZURE_FABRIC_SESSION_TOKEN"),
                ("TOKEN", "AZURE_STORAGE_TOKEN"),
            ],
        }
    }

    /// The store of a `Location::Remote` URL.
    fn of_url(url: &reqwest::Url) -> Option<Self> {
        Self::of_scheme(url.scheme())
    }
}

impl LakehouseConfig {
    /// Where the tables live, with a relative path resolved against `base_dir`.
    ///
    /// Local folders, S3 (`s3://`, `s3a://`, including S3-compatible stores), Google Cloud
    /// Storage (`gs://`) and Azure Blob Storage (`az://`, `abfs://`, `abfss://`) are built in;
    /// other schemes are refused with a sentence, and so are storage options that hold a
    /// credential.
    pub fn location(&self, base_dir: &Path) -> Result<Location> {
        let uri = self.uri.trim();
        if uri.is_empty() {
            return Err(Error::Config(
                "lakehouse.uri: empty; give a folder, e.g. uri = \"data/lake\", or a bucket, e.g. uri = \"s3://my-bucket/lake\"".into(),
            ));
        }
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            let Some(store) = Store::of_scheme(&scheme) else {
                return Err(Error::Config(format!(
                    "lakehouse.uri: `{scheme}://` is not supported by this build, which stores Delta tables in local folders, S3 (s3://bucket/prefix, also S3-compatible stores such as MinIO or R2 through lakehouse.storage.AWS_ENDPOINT_URL), Google Cloud Storage (gs://bucket/prefix) or Azure Blob Storage (az://container/prefix)"
                )));
            };
            let example = store.example();
            let with_slash = if uri.ends_with('/') {
                uri.to_string()
            } else {
                format!("{uri}/")
            };
            let url = reqwest::Url::parse(&with_slash).map_err(|e| {
                Error::Config(format!(
                    "lakehouse.uri: `{uri}` is not a URL ({e}); write it like uri = \"{example}\""
                ))
            })?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(Error::Config(format!(
                    "lakehouse.uri: `{uri}` names no {}; write it like uri = \"{example}\"",
                    store.root_noun()
                )));
            }
            for k in self.storage.keys() {
                let upper = k.to_ascii_uppercase();
                if let Some((_, env)) = store
                    .secret_options()
                    .iter()
                    .find(|(suffix, _)| upper.ends_with(suffix))
                {
                    return Err(Error::Config(format!(
                        "lakehouse.storage.{k}: credentials do not belong in the config file; set the environment variable {env} instead"
                    )));
                }
            }
            return Ok(Location::Remote {
                url,
                options: self
                    .storage
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }
        if !self.storage.is_empty() {
            return Err(Error::Config(
                "lakehouse.storage: only used with an object store (uri = \"s3://…\", \"gs://…\" or \"az://…\"); remove it for a local folder".into(),
            ));
        }
        let p = Path::new(uri);
        Ok(Location::Local(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        }))
    }

    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, base_dir: &Path, problems: &mut Vec<String>) {
        if let Err(e) = self.location(base_dir) {
            problems.push(e.to_string());
        }
        if self.sql_row_limit == 0 {
            problems.push("lakehouse.sql_row_limit: must be at least 1".into());
        }
        if self.sql_timeout.0.is_zero() {
            problems.push("lakehouse.sql_timeout: must be longer than 0s".into());
        }
        if !(1024..=1 << 24).contains(&self.batch_rows) {
            problems.push(format!(
                "lakehouse.batch_rows: {} is out of range; use 1024 to 16777216 (default 65536)",
                self.batch_rows
            ));
        }
        if self.memory_limit_mb < 64 {
            problems.push(format!(
                "lakehouse.memory_limit_mb: {} is too small; give at least 64 (default 1024)",
                self.memory_limit_mb
            ));
        }
    }
}

/// The three layers of the lakehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Raw records, appended per run.
    Bronze,
    /// Typed, deduplicated, current.
    Silver,
    /// SQL models over silver and other gold tables (`connectors/*.sql`).
    Gold,
}

impl Layer {
    /// Every layer, in order.
    pub const ALL: [Layer; 3] = [Layer::Bronze, Layer::Silver, Layer::Gold];

    /// The folder (and SQL schema) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bronze => "bronze",
            Self::Silver => "silver",
            Self::Gold => "gold",
        }
    }
}

/// What one run hands to the lakehouse.
#[derive(Debug, Clone)]
pub struct RunWrite<'a> {
    /// The table name (the connector's name).
    pub table: &'a str,
    /// The run's id, stored in `_run_id`.
    pub run_id: &'a str,
    /// When the records were fetched.
    pub fetched_at: chrono::DateTime<chrono::Utc>,
    /// The records of new and changed source objects, staged on disk by the source as it
    /// read them (CSV and JSON files, API pages); `None` when the run read no records.
    pub staged: Option<&'a StagedRecords>,
    /// Whether every value arrived as text (CSV), so types are read from the text.
    pub values_are_text: bool,
    /// The primary key columns.
    pub primary_key: &'a [String],
    /// Source objects read in full this run: their rows not in this run are deleted.
    pub replaced: &'a [String],
    /// Source objects that disappeared: all their rows are deleted.
    pub removed: &'a [String],
    /// The run read the whole source (`conveyor sync --full`): every silver row not in this
    /// run is deleted, whatever its source object.
    pub full: bool,
    /// Every primary key the source holds now, listed by a run that read only changes (the
    /// `sql` kind with `incremental_column`): silver rows of that source object whose key is
    /// not listed are deleted.
    pub listed: Option<&'a KeyListing>,
    /// Parquet files read in full this run (typed sources): streamed into bronze and silver
    /// with their own column types; `staged` is then `None`.
    pub files: &'a [ParquetInput],
    /// Declared column types (a connector's `[schema]`): these columns get this type instead
    /// of the inferred one, a value that cannot be read as it fails the run, and an existing
    /// column of another type is an error (the table is never re-typed).
    pub declared: &'a BTreeMap<String, ColType>,
    /// Column types the source itself gives (a SQL table's `numeric(12,2)`, `date`, …): used
    /// instead of inference; unlike `declared`, an existing column that holds them (text, or
    /// a wider number) keeps its type, and `full` rebuilds the table when they differ.
    pub source_types: &'a BTreeMap<String, ColType>,
    /// Columns silver is partitioned by when it is created (or rebuilt by a `full` run); an
    /// existing table partitioned otherwise fails a plain run with the command to rebuild it.
    pub partition_by: &'a [String],
}

/// A key-only listing of one source object (see [`RunWrite::listed`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyListing {
    /// The source object, as in `_source`.
    pub source: String,
    /// A Parquet file of the primary key columns, one row per source row; `None` when the
    /// source has no rows.
    pub file: Option<ParquetInput>,
    /// Keys listed.
    pub rows: u64,
}

/// One row-level change of a silver table, read from its change data feed.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    /// The row was inserted or updated; its current values (without `_` columns).
    Upsert(serde_json::Map<String, serde_json::Value>),
    /// The row with these primary key values was deleted.
    Delete(serde_json::Map<String, serde_json::Value>),
}

/// What a run did to the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteReport {
    /// Rows appended to bronze.
    pub bronze_rows: u64,
    /// Rows inserted into silver.
    pub inserted: u64,
    /// Rows of silver updated because their values changed.
    pub updated: u64,
    /// Rows deleted from silver.
    pub deleted: u64,
    /// Columns added to silver by this run.
    pub new_columns: Vec<String>,
    /// The silver table's version after the run.
    pub silver_version: Option<i64>,
}

/// What `conveyor optimize` did to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Optimized {
    /// The table's layer.
    pub layer: Layer,
    /// The table.
    pub name: String,
    /// `compact` (small files merged) or `zorder(a, b)` (files rewritten clustered by the
    /// connector's `cluster_by`).
    pub how: String,
    /// Data files rewritten.
    pub files_removed: u64,
    /// Data files written.
    pub files_added: u64,
    /// Files no version within the retention reads any more, deleted.
    pub files_vacuumed: usize,
    /// The table's version afterwards.
    pub version: Option<i64>,
}

/// A table that exists, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Its layer.
    pub layer: Layer,
    /// Its name.
    pub name: String,
    /// Its current Delta version.
    pub version: i64,
}

/// The lakehouse over one root folder or bucket prefix.
#[derive(Debug, Clone)]
pub struct Lakehouse {
    location: Location,
    row_limit: usize,
    timeout: Duration,
    batch_rows: usize,
    memory_limit: usize,
    partitions: usize,
    queries: Arc<Queries>,
}

/// What the queries of one lakehouse share: one runtime (the memory budget and the Parquet
/// metadata cache), the tables they opened, kept to be brought up to date, and each table's
/// provider with the version it reads (rebuilt only when the table has moved on).
#[derive(Default)]
struct Queries {
    runtime: std::sync::OnceLock<Arc<deltalake::datafusion::execution::runtime_env::RuntimeEnv>>,
    tables: std::sync::Mutex<std::collections::HashMap<(Layer, String), DeltaTable>>,
    providers: std::sync::Mutex<std::collections::HashMap<(Layer, String), KeptProvider>>,
}

/// A table's query provider and the version it reads.
type KeptProvider = (i64, Arc<dyn deltalake::datafusion::catalog::TableProvider>);

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.tables.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("Queries")
            .field("open_tables", &open)
            .finish()
    }
}

impl Lakehouse {
    /// Opens the lakehouse of `config` (`base_dir` is the config file's folder); a local root
    /// folder is created on first write.
    pub fn open(config: &LakehouseConfig, base_dir: &Path) -> Result<Self> {
        let location = config.location(base_dir)?;
        if matches!(location, Location::Remote { .. }) {
            // deltalake also registers them from a constructor at start-up; registering them
            // here says which stores this code relies on and does not depend on link order.
            static STORES: std::sync::Once = std::sync::Once::new();
            STORES.call_once(|| {
                deltalake::aws::register_handlers(None);
                deltalake::gcp::register_handlers(None);
                deltalake::azure::register_handlers(None);
            });
        }
        Ok(Self {
            location,
            row_limit: config.sql_row_limit,
            timeout: config.sql_timeout.0,
            batch_rows: config.batch_rows.max(1),
            memory_limit: config.memory_limit_mb.saturating_mul(1 << 20),
            partitions: match config.target_partitions {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
            queries: Arc::default(),
        })
    }

    /// Where the tables live.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Where one table lives, as a path or URL (for messages and other tools).
    pub fn table_location(&self, layer: Layer, name: &str) -> String {
        match &self.location {
            Location::Local(root) => root.join(layer.as_str()).join(name).display().to_string(),
            Location::Remote { url, .. } => format!("{url}{}/{name}", layer.as_str()),
        }
    }

    /// The current version of a table, `None` when it does not exist yet.
    pub async fn version(&self, layer: Layer, name: &str) -> Result<Option<i64>> {
        Ok(self
            .load(layer, name)
            .await?
            .and_then(|t| t.version())
            .map(version_i64))
    }

    /// Every table, by layer and name.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        for layer in Layer::ALL {
            for name in self.table_names(layer).await? {
                if let Some(v) = self.version(layer, &name).await? {
                    out.push(TableInfo {
                        layer,
                        name,
                        version: v,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Names of the tables (folders or prefixes) in one layer; for an object store, every
    /// prefix, whether or not it holds a Delta log yet (`load` tells).
    async fn table_names(&self, layer: Layer) -> Result<Vec<String>> {
        let (root, options) = match &self.location {
            Location::Local(root) => return local_table_names(&root.join(layer.as_str())),
            Location::Remote { url, options } => (url, options),
        };
        let layer_url = root
            .join(&format!("{}/", layer.as_str()))
            .map_err(|e| Error::internal("lakehouse: a layer URL", e))?;
        let what = format!("listing {layer_url}");
        let store = deltalake::DeltaTableBuilder::from_url(layer_url.clone())
            .map(|b| b.with_storage_options(options.clone()))
            .and_then(|b| b.build_storage())
            .map_err(delta_err(&what))?
            .object_store(None);
        let listing = store.list_with_delimiter(None).await.map_err(|e| {
            Error::Upstream(format!(
                "lakehouse: {what} failed: {e}; {}",
                self.remote_hint()
            ))
        })?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The URL of one table.
    fn table_url(&self, layer: Layer, name: &str) -> Result<reqwest::Url> {
        match &self.location {
            Location::Local(root) => table_url(&root.join(layer.as_str()).join(name)),
            Location::Remote { url, .. } => url
                .join(&format!("{}/{name}/", layer.as_str()))
                .map_err(|e| Error::internal("lakehouse: a table URL", e)),
        }
    }

    /// A builder for one table, with the storage options.
    fn builder(&self, layer: Layer, name: &str) -> Result<deltalake::DeltaTableBuilder> {
        let url = self.table_url(layer, name)?;
        let builder = deltalake::DeltaTableBuilder::from_url(url)
            .map_err(delta_err(format!("opening {}.{name}", layer.as_str())))?;
        Ok(match &self.location {
            Location::Local(_) => builder,
            Location::Remote { options, .. } => builder.with_storage_options(options.clone()),
        })
    }

    /// Opens a table, `None` when it does not exist.
    async fn load(&self, layer: Layer, name: &str) -> Result<Option<DeltaTable>> {
        if let Location::Local(root) = &self.location
            && !root
                .join(layer.as_str())
                .join(name)
                .join("_delta_log")
                .is_dir()
        {
            return Ok(None);
        }
        if let Location::Remote { .. } = &self.location
            && !self.remote_log_exists(layer, name).await?
        {
            return Ok(None);
        }
        match self.builder(layer, name)?.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_))
                if matches!(self.location, Location::Remote { .. }) =>
            {
                Ok(None)
            }
            Err(e) => Err(delta_err(format!("opening {}.{name}", layer.as_str()))(e)),
        }
    }

    /// What to check when the object store does not answer.
    fn remote_hint(&self) -> &'static str {
        match &self.location {
            Location::Local(_) => "check lakehouse.uri",
            Location::Remote { url, .. } => {
                Store::of_url(url).map_or("check lakehouse.uri and lakehouse.storage", Store::hint)
            }
        }
    }

    /// Whether an object-store table has a Delta log (one listing request), so that a table
    /// not created yet is not loaded (which the Delta kernel would log as an error).
    async fn remote_log_exists(&self, layer: Layer, name: &str) -> Result<bool> {
        let what = format!("looking for {}", self.table_location(layer, name));
        let store = self
            .builder(layer, name)?
            .build_storage()
            .map_err(delta_err(&what))?
            .object_store(None);
        let log = deltalake::Path::from("_delta_log");
        let listing = store.list_with_delimiter(Some(&log)).await.map_err(|e| {
            Error::Upstream(format!(
                "lakehouse: {what} failed: {e}; {}",
                self.remote_hint()
            ))
        })?;
        Ok(!listing.objects.is_empty())
    }

    /// A handle for writing a table, created when it does not exist yet.
    async fn load_or_new(&self, layer: Layer, name: &str) -> Result<DeltaTable> {
        if let Location::Local(root) = &self.location {
            let dir = root.join(layer.as_str()).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::Upstream(format!(
                    "lakehouse: cannot create {} ({e}); check lakehouse.uri and the folder's permissions",
                    dir.display()
                ))
            })?;
        }
        if let Some(table) = self.load(layer, name).await? {
            return Ok(table);
        }
        // A table not created yet: a handle without loading, which the first write creates.
        // (Loading it would log an error from the Delta kernel about an empty log.)
        self.builder(layer, name)?
            .build()
            .map_err(delta_err(format!("creating {}.{name}", layer.as_str())))
    }

    /// Writes one run: its rows appended to bronze, merged into silver, deletions applied.
    ///
    /// Every row is streamed from files on disk, in batches of `lakehouse.batch_rows`: typed
    /// files (Parquet, a SQL table's staged rows) or staged records ([`RunWrite::staged`];
    /// a run without either writes no rows). Type conflicts, bad values of declared
    /// columns and duplicate keys are found before anything is written, so a run that fails on
    /// its data leaves both tables as they were. Bronze and silver are written at the same
    /// time; a crash between their commits is repaired by the next run, which reads the same
    /// source objects again (the caller saves its cursor only after this returns) and merges
    /// them idempotently.
    pub async fn write_run(&self, run: &RunWrite<'_>) -> Result<WriteReport> {
        if run.primary_key.is_empty() {
            return Err(Error::BadInput(format!(
                "silver.{} needs a primary key; set primary_key in the connector",
                run.table
            )));
        }
        if !run.files.is_empty() {
            return self.write_typed(run).await;
        }
        let none = StagedRecords::default();
        self.write_records(run, run.staged.unwrap_or(&none)).await
    }

    /// Writes a run of staged records: column types reconciled with silver's (by the rules
    /// of records, see [`plan_columns`]), values of declared columns checked, then the staged
    /// text streamed into bronze as it is and into silver parsed to the column types.
    async fn write_records(
        &self,
        run: &RunWrite<'_>,
        staged: &StagedRecords,
    ) -> Result<WriteReport> {
        let silver = self.load(Layer::Silver, run.table).await?;
        let location = self.table_location(Layer::Silver, run.table);
        let misfits = self.declared_misfits(run, staged).await?;
        let plan = if layout_changes(run, silver.as_ref())? {
            let mut plan = plan_columns(run, staged, &misfits, None, &location)?;
            plan.rebuild = true;
            plan
        } else {
            plan_columns(run, staged, &misfits, silver.as_ref(), &location)?
        };
        let fields: Vec<Field> = staged
            .columns
            .iter()
            .map(|c| Field::new(&c.name, DataType::Utf8, true))
            .collect();
        self.stream_write(run, &staged.files, &fields, plan, silver, staged.rows)
            .await
    }

    /// The values of declared columns (`[schema]`) that cannot be read as their type: by
    /// column, the first one (`"value" in SOURCE line N`) and how many there are. Reads the
    /// staged files' declared columns only, and nothing when no column is declared.
    async fn declared_misfits(
        &self,
        run: &RunWrite<'_>,
        staged: &StagedRecords,
    ) -> Result<BTreeMap<String, (String, usize)>> {
        let declared: Vec<(String, ColType)> = staged
            .columns
            .iter()
            .filter_map(|c| run.declared.get(&c.name).map(|t| (c.name.clone(), *t)))
            .collect();
        if declared.is_empty() || staged.rows == 0 {
            return Ok(BTreeMap::new());
        }
        let files = staged.files.clone();
        let batch_rows = self.batch_rows;
        tokio::task::spawn_blocking(move || staged::misfits(&files, &declared, batch_rows))
            .await
            .map_err(|e| Error::internal("lakehouse: checking declared types", e))?
    }

    /// Writes a run of typed files (Parquet): the files' schema is checked against itself
    /// and the tables first, then the rows are streamed in batches into bronze (typed as the
    /// source sent them, or as an older bronze table's columns) and silver (appended when
    /// the table is new, MERGEd otherwise; with `run.full` and a column whose type changed,
    /// rebuilt with the new types). Memory is bounded by a few batches.
    async fn write_typed(&self, run: &RunWrite<'_>) -> Result<WriteReport> {
        let files = run.files.to_vec();
        let table_name = run.table.to_string();
        let primary_key = run.primary_key.to_vec();
        let (fields, total_rows) = tokio::task::spawn_blocking(move || {
            typed::files_schema(&table_name, &files, &primary_key)
        })
        .await
        .map_err(|e| Error::internal("lakehouse: reading Parquet footers", e))??;

        // Type conflicts with the table; a `full` run rebuilds the table instead.
        let mut problems = Vec::new();
        // Declared types win over the files' (a cast that fails stops the write uncommitted).
        let fields: Vec<Field> = fields
            .into_iter()
            .map(|f| match run.declared.get(f.name()) {
                Some(t) => Field::new(f.name(), t.arrow(), true),
                None => f,
            })
            .collect();

        let silver = self.load(Layer::Silver, run.table).await?;
        let location = self.table_location(Layer::Silver, run.table);
        let mut target: Vec<Field> = Vec::new();
        let mut new_columns = Vec::new();
        let mut rebuild = layout_changes(run, silver.as_ref())?;
        // Existing silver columns a widening source type applies to, with their new type.
        let mut widen: Vec<(String, DataType)> = Vec::new();
        if let Some(table) = &silver {
            let snapshot = table
                .snapshot()
                .map_err(delta_err("reading the silver schema"))?;
            let existing = snapshot.snapshot().arrow_schema();
            for old in existing.fields().iter().filter(|f| !is_meta(f.name())) {
                let t = old.data_type();
                let Some(new) = fields.iter().find(|f| f.name() == old.name()) else {
                    target.push(Field::new(old.name(), t.clone(), true));
                    continue;
                };
                let r = new.data_type();
                if r == t {
                    target.push(Field::new(old.name(), t.clone(), true));
                } else if run.full {
                    // `sync --full` re-reads everything: the table is rebuilt with the
                    // source's types (this is how text columns of older versions get typed).
                    rebuild = true;
                } else if typed::wider(t, r).as_ref() == Some(t) || *t == DataType::Utf8 {
                    target.push(Field::new(old.name(), t.clone(), true));
                } else if let Some(w) = typed::wider(t, r) {
                    // int32 → int64, float → double, a decimal with more digits: the table's
                    // column is widened (the table rewritten with the column cast) first.
                    widen.push((old.name().clone(), w.clone()));
                    target.push(Field::new(old.name(), w, true));
                } else if holds_arrow(t, r) {
                    target.push(Field::new(old.name(), t.clone(), true));
                } else {
                    problems.push(format!(
                        "column `{}` is {t} in silver.{} but {r} in this run's files; fix the source, or run `conveyor sync {} --full` to rebuild the table ({location}) with the files' types",
                        old.name(),
                        run.table,
                        run.table
                    ));
                }
            }
            if rebuild {
                target = fields.clone();
                problems.clear();
                widen.clear();
            } else {
                for f in &fields {
                    if !target.iter().any(|t| t.name() == f.name()) {
                        new_columns.push(f.name().clone());
                        target.push(f.clone());
                    }
                }
            }
        } else {
            target = fields.clone();
        }
        if !problems.is_empty() {
            return Err(Error::BadInput(format!(
                "the run cannot be written to silver.{}: {}",
                run.table,
                problems.join("; ")
            )));
        }
        let plan = ColumnPlan {
            target,
            new_columns,
            widen,
            rebuild,
        };
        self.stream_write(run, run.files, &fields, plan, silver, total_rows)
            .await
    }

    /// Streams a run's files into bronze (typed as `fields`, the run's own columns, or as an
    /// older bronze table's columns) and into silver as `plan` says: appended when the table
    /// is new, rebuilt, or MERGEd. Duplicate keys are found first (the last row wins).
    async fn stream_write(
        &self,
        run: &RunWrite<'_>,
        files: &[ParquetInput],
        fields: &[Field],
        plan: ColumnPlan,
        silver: Option<DeltaTable>,
        total_rows: u64,
    ) -> Result<WriteReport> {
        let ColumnPlan {
            target,
            new_columns,
            widen,
            rebuild,
        } = plan;
        if total_rows == 0 {
            // Nothing read: only deletions (source objects re-read empty or gone, a full run
            // of an empty source, keys no longer listed) can change silver.
            let Some(table) = &silver else {
                return Ok(WriteReport::default());
            };
            if run.replaced.is_empty() && run.removed.is_empty() && !run.full {
                let report = WriteReport {
                    silver_version: table.version().map(version_i64),
                    ..Default::default()
                };
                return self.prune_unlisted(run, table.clone(), report).await;
            }
        }
        let names: Vec<String> = target.iter().map(|f| f.name().clone()).collect();
        check_partition_columns(run, &names)?;

        let ctx = self.engine()?;
        let key_fields: Vec<Field> = run
            .primary_key
            .iter()
            .filter_map(|k| target.iter().find(|f| f.name() == k).cloned())
            .collect();
        let meta = typed::Meta {
            run_id: run.run_id.to_string(),
            fetched_at: run.fetched_at.timestamp_micros(),
        };
        let session: Arc<dyn deltalake::datafusion::catalog::Session> = Arc::new(ctx.state());
        let mut report = WriteReport {
            new_columns: new_columns.clone(),
            ..Default::default()
        };

        // Bronze keeps what the source sent, typed; a column an older version wrote as text
        // stays text (the typed values are cast to it).
        // A column whose new type widens the old one is widened in bronze too, and one whose
        // type changed incompatibly becomes text there (bronze is a log: it holds both).
        let mut bronze = self.load_or_new(Layer::Bronze, run.table).await?;
        let bronze_schema = bronze.snapshot().ok().map(|s| s.snapshot().arrow_schema());
        let mut bronze_widen: Vec<(String, DataType)> = Vec::new();
        let bronze_fields: Vec<Field> = fields
            .iter()
            .map(|f| {
                let new = f.data_type();
                match bronze_schema
                    .as_ref()
                    .and_then(|s| s.field_with_name(f.name()).ok())
                {
                    Some(old) if old.data_type() != new => {
                        let t = old.data_type();
                        let keep = *t == DataType::Utf8 || typed::wider(t, new).as_ref() == Some(t);
                        let ty = if keep {
                            t.clone()
                        } else {
                            let w = typed::wider(t, new).unwrap_or(DataType::Utf8);
                            bronze_widen.push((f.name().clone(), w.clone()));
                            w
                        };
                        Field::new(f.name(), ty, true)
                    }
                    _ => f.clone(),
                }
            })
            .collect();
        report.bronze_rows = total_rows;
        // Bronze and silver are written at the same time (each write encodes on its own
        // core); both land before the caller saves the cursor, so a failure of either
        // repeats the run, as a crash between them would.
        let bronze_write = async {
            if total_rows == 0 {
                return Ok(());
            }
            if !bronze_widen.is_empty() {
                bronze = self
                    .retype(Layer::Bronze, run.table, bronze, &bronze_widen, &ctx)
                    .await?;
            }
            let stream = typed::RunStream::new(
                files,
                &bronze_fields,
                Some(meta.clone()),
                Arc::new(typed::Dropped::new()),
                self.batch_rows,
                true,
            );
            let plan = ctx
                .read_table(stream.table()?)
                .map_err(|e| Error::internal("lakehouse: the bronze input", e))?
                .logical_plan()
                .clone();
            filling(bronze.write(Vec::new()))
                .with_input_plan(plan)
                .with_session_state(session.clone())
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge)
                .await
                .map_err(delta_err(format!("appending to bronze.{}", run.table)))?;
            Ok::<_, Error>(())
        };
        let silver_write = async {
            // Rows whose key repeats later in the run (the last one wins): found while bronze,
            // which keeps every row, is already being written.
            let (all, batch_rows) = (files.to_vec(), self.batch_rows);
            let dropped = Arc::new(
                tokio::task::spawn_blocking(move || {
                    typed::duplicate_rows(&all, &key_fields, batch_rows, total_rows)
                })
                .await
                .map_err(|e| Error::internal("lakehouse: checking the primary key", e))??,
            );
            let duplicates: u64 = dropped.values().map(|d| d.len() as u64).sum();
            let stream = typed::RunStream::new(
                files,
                &target,
                Some(meta.clone()),
                dropped,
                self.batch_rows,
                false,
            );
            let source = ctx
                .read_table(stream.table()?)
                .map_err(|e| Error::internal("lakehouse: the silver input", e))?;
            let what = format!("writing silver.{}", run.table);
            match silver {
                Some(table) if !rebuild => {
                    let table = if widen.is_empty() {
                        table
                    } else {
                        self.retype(Layer::Silver, run.table, table, &widen, &ctx)
                            .await?
                    };
                    let data_columns: Vec<String> =
                        target.iter().map(|f| f.name().clone()).collect();
                    self.merge_silver(
                        run,
                        table,
                        &ctx,
                        source,
                        &data_columns,
                        &new_columns,
                        files,
                        report,
                    )
                    .await
                }
                existing => {
                    let table = match existing {
                        Some(t) => t,
                        None => self.load_or_new(Layer::Silver, run.table).await?,
                    };
                    let mut write = filling(table.write(Vec::new()))
                        .with_input_plan(source.logical_plan().clone())
                        .with_session_state(session.clone())
                        .with_partition_columns(run.partition_by.to_vec());
                    write = if rebuild {
                        write
                            .with_save_mode(SaveMode::Overwrite)
                            .with_schema_mode(SchemaMode::Overwrite)
                    } else {
                        // The change data feed lets the index feed read row-level changes.
                        write
                            .with_save_mode(SaveMode::Append)
                            .with_configuration([(CHANGE_DATA_FEED, Some("true"))])
                    };
                    let table = write.await.map_err(delta_err(&what))?;
                    report.inserted = total_rows.saturating_sub(duplicates);
                    report.silver_version = table.version().map(version_i64);
                    Ok(report)
                }
            }
        };
        let ((), report) = tokio::try_join!(bronze_write, silver_write)?;
        Ok(report)
    }

    /// Rewrites `table` with the columns of `types` cast to their new type (a widening, or
    /// text in bronze), in one overwrite commit streamed through the engine: the previous
    /// version stays readable until it lands, and memory stays bounded.
    async fn retype(
        &self,
        layer: Layer,
        name: &str,
        table: DeltaTable,
        types: &[(String, DataType)],
        ctx: &SessionContext,
    ) -> Result<DeltaTable> {
        use deltalake::datafusion::prelude::{cast, ident};
        let what = format!(
            "changing the type of {} in {}.{name}",
            types
                .iter()
                .map(|(c, t)| format!("`{c}` to {t}"))
                .collect::<Vec<_>>()
                .join(", "),
            layer.as_str()
        );
        table
            .update_datafusion_session(&ctx.state())
            .map_err(delta_err(&what))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| Error::upstream(format!("lakehouse: {what} failed"), e))?;
        let df = ctx
            .read_table(provider)
            .map_err(|e| Error::internal("lakehouse: reading a table to retype it", e))?;
        let exprs: Vec<_> = df
            .schema()
            .fields()
            .iter()
            .map(|f| match types.iter().find(|(c, _)| c == f.name()) {
                Some((c, t)) => cast(ident(c), t.clone()).alias(c),
                None => ident(f.name()),
            })
            .collect();
        let df = df
            .select(exprs)
            .map_err(|e| Error::internal("lakehouse: planning a retype", e))?;
        tracing::info!(table = %format!("{}.{name}", layer.as_str()), "{what}");
        filling(table.write(Vec::new()))
            .with_input_plan(df.logical_plan().clone())
            .with_session_state(Arc::new(ctx.state()))
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .await
            .map_err(delta_err(&what))
    }

    /// Maintains a connector's tables (`conveyor optimize`): bronze's small files compacted,
    /// silver's compacted or, with `cluster_by`, rewritten Z-ordered by those columns, then
    /// (with `retain`) files that no version younger than `retain` reads vacuumed. Optimize
    /// commits change no data (the change data feed and the index feed ignore them); a sync
    /// committing at the same moment makes this commit fail, and optimize can be run again.
    pub async fn optimize(
        &self,
        name: &str,
        cluster_by: &[String],
        retain: Option<Duration>,
    ) -> Result<Vec<Optimized>> {
        use deltalake::operations::optimize::OptimizeType;
        let mut out = Vec::new();
        for layer in [Layer::Bronze, Layer::Silver] {
            let Some(table) = self.load(layer, name).await? else {
                continue;
            };
            if layer == Layer::Silver
                && let Ok(snapshot) = table.snapshot()
            {
                let schema = snapshot.snapshot().arrow_schema();
                let missing: Vec<&String> = cluster_by
                    .iter()
                    .filter(|c| schema.field_with_name(c).is_err())
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::BadInput(missing_columns(
                        "cluster_by",
                        name,
                        &missing,
                    )));
                }
            }
            let (kind, how) = if layer == Layer::Silver && !cluster_by.is_empty() {
                (
                    OptimizeType::ZOrder(cluster_by.to_vec()),
                    format!("zorder({})", cluster_by.join(", ")),
                )
            } else {
                (OptimizeType::Compact, "compact".to_string())
            };
            let what = format!("optimizing {}.{name}", layer.as_str());
            let ctx = self.engine()?;
            let (table, metrics) = table
                .optimize()
                .with_type(kind)
                .with_writer_properties(writer_properties())
                .with_session_state(Arc::new(ctx.state()))
                .await
                .map_err(delta_err(&what))?;
            let mut files_vacuumed = 0;
            let table = match retain {
                None => table,
                Some(r) => {
                    let period = chrono::Duration::from_std(r).map_err(|e| {
                        Error::BadInput(format!("the retention {r:?} is too long: {e}"))
                    })?;
                    // Delta's own floor is a week; a shorter retention is the operator's call
                    // (readers of older versions, and time travel to them, then fail).
                    let (table, m) = table
                        .vacuum()
                        .with_retention_period(period)
                        .with_enforce_retention_duration(r >= Duration::from_secs(7 * 24 * 3600))
                        .await
                        .map_err(delta_err(format!("vacuuming {}.{name}", layer.as_str())))?;
                    files_vacuumed = m.files_deleted.len();
                    table
                }
            };
            out.push(Optimized {
                layer,
                name: name.to_string(),
                how,
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
                files_vacuumed,
                version: table.version().map(version_i64),
            });
        }
        Ok(out)
    }

    /// A DataFusion session with the engine settings of `[lakehouse]` (see [`sql::engine`]).
    fn engine(&self) -> Result<SessionContext> {
        sql::engine(self.memory_limit, self.partitions)
    }

    /// A session for queries (`conveyor sql`, gold models), on the runtime every query of this
    /// lakehouse shares: one memory budget for all of them, and Parquet footers and page
    /// indexes read once.
    fn query_engine(&self) -> Result<SessionContext> {
        let runtime = match self.queries.runtime.get() {
            Some(r) => r.clone(),
            None => {
                let r = sql::runtime(self.memory_limit)?;
                self.queries.runtime.get_or_init(|| r).clone()
            }
        };
        sql::engine_with(runtime, self.partitions)
    }

    /// A table as it is now, for reading: one a query opened before is brought up to date
    /// (only the log entries committed since are read); `None` when it does not exist.
    async fn load_current(&self, layer: Layer, name: &str) -> Result<Option<DeltaTable>> {
        let key = (layer, name.to_string());
        let cached = self
            .queries
            .tables
            .lock()
            .ok()
            .and_then(|t| t.get(&key).cloned());
        if let Some(mut table) = cached
            && self.still_there(layer, name, &table)
            && table.update_incremental(None).await.is_ok()
        {
            if let Ok(mut t) = self.queries.tables.lock() {
                t.insert(key, table.clone());
            }
            return Ok(Some(table));
        }
        let table = self.load(layer, name).await?;
        // Opened afresh: a provider kept for it may read another table of the same version.
        if let Ok(mut p) = self.queries.providers.lock() {
            p.remove(&key);
        }
        if let Ok(mut t) = self.queries.tables.lock() {
            match &table {
                Some(table) => t.insert(key, table.clone()),
                None => t.remove(&key),
            };
        }
        Ok(table)
    }

    /// Whether the log of a table opened before still has the version it was opened at (a
    /// folder deleted, or deleted and made again, is opened afresh). Object stores are
    /// trusted: their tables are written only through Delta commits.
    fn still_there(&self, layer: Layer, name: &str, table: &DeltaTable) -> bool {
        match (&self.location, table.version()) {
            (Location::Local(root), Some(v)) => root
                .join(layer.as_str())
                .join(name)
                .join("_delta_log")
                .join(format!("{v:020}.json"))
                .is_file(),
            (Location::Local(_), None) => false,
            (Location::Remote { .. }, _) => true,
        }
    }

    /// MERGEs a run's rows (`source`: its data columns, then `_source`, `_run_id`,
    /// `_fetched_at`) into the existing silver `table`: rows whose values changed are updated,
    /// new keys inserted; then keys gone from re-read or removed source objects (or from the
    /// whole source, with `run.full`) deleted by [`Self::delete_unlisted`] (whose keys are
    /// read from the run's `files`), and [`Self::prune_unlisted`].
    #[allow(clippy::too_many_arguments)]
    async fn merge_silver(
        &self,
        run: &RunWrite<'_>,
        table: DeltaTable,
        ctx: &SessionContext,
        source: deltalake::datafusion::dataframe::DataFrame,
        data_columns: &[String],
        new_columns: &[String],
        files: &[ParquetInput],
        mut report: WriteReport,
    ) -> Result<WriteReport> {
        let what = format!("merging into silver.{}", run.table);
        let on = key_match(run.primary_key);
        let changed = data_columns
            .iter()
            .map(|c| {
                if new_columns.contains(c) {
                    format!("(source.{} IS NOT NULL)", quote(c))
                } else {
                    format!("(target.{q} IS DISTINCT FROM source.{q})", q = quote(c))
                }
            })
            .collect::<Vec<_>>();
        let mut all_columns = data_columns.to_vec();
        all_columns.extend([SOURCE.to_string(), RUN_ID.into(), FETCHED_AT.into()]);
        // `_source` moves with the row: a key that moved to another file is updated.
        let mut changed = changed;
        changed.push(format!(
            "(target.{q} IS DISTINCT FROM source.{q})",
            q = quote(SOURCE)
        ));
        let changed = changed.join(" OR ");
        let merge = table
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(Arc::new(ctx.state()))
            .with_streaming(true)
            .with_writer_properties(writer_properties())
            .with_merge_schema(!new_columns.is_empty())
            .when_matched_update(|u| {
                let mut u = u.predicate(changed.clone());
                for c in &all_columns {
                    u = u.update(Column::new_unqualified(c), format!("source.{}", quote(c)));
                }
                u
            })
            .map_err(delta_err(&what))?
            .when_not_matched_insert(|i| {
                let mut i = i;
                for c in &all_columns {
                    i = i.set(Column::new_unqualified(c), format!("source.{}", quote(c)));
                }
                i
            })
            .map_err(delta_err(&what))?;
        // Rows gone from re-read source objects are deleted by a second step rather than a
        // `when_not_matched_by_source` clause: that clause makes the MERGE scan every file
        // of the table, and delta-rs holds the rows of each scanned file until it sees a
        // change in it, so memory would grow with the table. Without it, the MERGE reads
        // only the files the run's keys can touch (skipped by their key statistics).
        let (table, metrics) = merge.await.map_err(delta_err(&what))?;
        report.inserted = metrics.num_target_rows_inserted as u64;
        report.updated = metrics.num_target_rows_updated as u64;
        report.deleted = metrics.num_target_rows_deleted as u64;
        report.silver_version = table.version().map(version_i64);
        let sources: Vec<&str> = run
            .replaced
            .iter()
            .chain(run.removed)
            .map(String::as_str)
            .collect();
        let table = if run.full {
            self.delete_unlisted(run, table, None, files, &mut report)
                .await?
        } else if !sources.is_empty() {
            self.delete_unlisted(run, table, Some(&sources), files, &mut report)
                .await?
        } else {
            table
        };
        self.prune_unlisted(run, table, report).await
    }

    /// Deletes the silver rows of `run.listed`'s source object whose key the listing lacks
    /// (rows deleted at a source that was read incrementally). A second commit after the
    /// merge; a crash between the two is repaired by the next run, which lists again.
    async fn prune_unlisted(
        &self,
        run: &RunWrite<'_>,
        table: DeltaTable,
        mut report: WriteReport,
    ) -> Result<WriteReport> {
        let Some(listing) = run.listed else {
            return Ok(report);
        };
        let listed: Vec<ParquetInput> = listing.file.iter().cloned().collect();
        let table = self
            .delete_unlisted(
                run,
                table,
                Some(&[listing.source.as_str()]),
                &listed,
                &mut report,
            )
            .await?;
        report.silver_version = table.version().map(version_i64);
        Ok(report)
    }

    /// Deletes the silver rows of the source objects `scope` (every row with `None`) whose
    /// primary key is not among the keys of `listed` (a run's own files, or a key listing).
    /// The keys are compared by an anti join planned as a sort-merge join, whose sorts spill
    /// to disk, so memory stays within the engine's pool whatever the table's size; the keys
    /// found are staged to a file and deleted by a MERGE that reads only the files they can
    /// be in. A commit of its own: a crash before it is repaired by the next run, which reads
    /// the same source objects again.
    async fn delete_unlisted(
        &self,
        run: &RunWrite<'_>,
        table: DeltaTable,
        scope: Option<&[&str]>,
        listed: &[ParquetInput],
        report: &mut WriteReport,
    ) -> Result<DeltaTable> {
        use deltalake::datafusion::prelude::{col, ident, lit};
        let what = format!("deleting rows gone from the source in silver.{}", run.table);
        let pred = scope.map(|sources| {
            let list: Vec<String> = sources.iter().map(|s| sql_string(s)).collect();
            format!("{} IN ({})", quote(SOURCE), list.join(", "))
        });
        if listed.is_empty() {
            // No key listed at all: every row in scope is gone.
            let mut delete = table.delete();
            if let Some(p) = &pred {
                delete = delete.with_predicate(p.clone());
            }
            let (table, metrics) = delete.await.map_err(delta_err(&what))?;
            report.deleted += metrics.num_deleted_rows.unwrap_or(0) as u64;
            report.silver_version = table.version().map(version_i64);
            return Ok(table);
        }
        let schema = table
            .snapshot()
            .map_err(delta_err("reading the silver schema"))?
            .snapshot()
            .arrow_schema();
        let mut key_fields = Vec::with_capacity(run.primary_key.len());
        for k in run.primary_key {
            let field = schema.field_with_name(k).map_err(|_| {
                Error::Internal(format!("silver.{} has no column `{k}`", run.table))
            })?;
            key_fields.push(Field::new(k, field.data_type().clone(), true));
        }

        // The keys of this source's rows that the listing lacks: an anti join planned as a
        // sort-merge join, whose sorts spill to disk, so memory stays within the engine's pool
        // whatever the table's size. The keys found are staged to a file (usually few).
        let ctx = self.engine()?;
        ctx.sql("SET datafusion.optimizer.prefer_hash_join = false")
            .await
            .map_err(|e| Error::internal("lakehouse: configuring the key comparison", e))?;
        table
            .update_datafusion_session(&ctx.state())
            .map_err(delta_err(&what))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| Error::upstream(format!("lakehouse: {what} failed"), e))?;
        let planned = |e: deltalake::datafusion::error::DataFusionError| {
            Error::internal("lakehouse: planning the comparison of keys", e)
        };
        let mut held = ctx.read_table(provider).map_err(planned)?;
        if let Some(sources) = scope {
            let list = sources.iter().map(|s| lit(*s)).collect();
            held = held
                .filter(col(SOURCE).in_list(list, false))
                .map_err(planned)?;
        }
        let held = held
            .select(run.primary_key.iter().map(ident).collect::<Vec<_>>())
            .map_err(planned)?;
        let listed_names: Vec<String> = (0..key_fields.len())
            .map(|i| format!("__listed_{i}"))
            .collect();
        let listed = typed::RunStream::new(
            listed,
            &key_fields,
            None,
            Arc::new(typed::Dropped::new()),
            self.batch_rows,
            false,
        );
        let listed = ctx
            .read_table(listed.table()?)
            .map_err(planned)?
            .select(
                run.primary_key
                    .iter()
                    .zip(&listed_names)
                    .map(|(k, n)| ident(k).alias(n))
                    .collect::<Vec<_>>(),
            )
            .map_err(planned)?;
        let left: Vec<&str> = run.primary_key.iter().map(String::as_str).collect();
        let right: Vec<&str> = listed_names.iter().map(String::as_str).collect();
        let gone = held
            .join(
                listed,
                deltalake::datafusion::common::JoinType::LeftAnti,
                &left,
                &right,
                None,
            )
            .map_err(planned)?;
        let mut stream = gone
            .execute_stream()
            .await
            .map_err(|e| Error::upstream(format!("lakehouse: {what} failed"), e))?;
        let stage = tempfile::Builder::new()
            .prefix("conveyor-gone-")
            .tempdir()
            .map_err(|e| Error::Upstream(format!("lakehouse: {what}: no staging folder: {e}")))?;
        let mut out = typed::ParquetFile::new(stage.path().join("gone.parquet"));
        while let Some(batch) = futures_util::StreamExt::next(&mut stream).await {
            let batch =
                batch.map_err(|e| Error::upstream(format!("lakehouse: {what} failed"), e))?;
            if batch.num_rows() > 0 {
                out.write(&batch)?;
            }
        }
        let Some((path, _)) = out.close()? else {
            return Ok(table);
        };
        let gone = typed::RunStream::new(
            &[ParquetInput {
                source: "the keys gone from the source".into(),
                path,
                staged: None,
            }],
            &key_fields,
            None,
            Arc::new(typed::Dropped::new()),
            self.batch_rows,
            false,
        );
        let ctx = self.engine()?;
        let source = ctx
            .read_table(gone.table()?)
            .map_err(|e| Error::internal("lakehouse: reading the deleted keys", e))?;
        let on = key_match(run.primary_key);
        let (table, metrics) = table
            .merge(source, on)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_session_state(Arc::new(ctx.state()))
            .with_streaming(true)
            .when_matched_delete(|d| match &pred {
                Some(p) => d.predicate(format!("target.{p}")),
                None => d,
            })
            .map_err(delta_err(&what))?
            .await
            .map_err(delta_err(&what))?;
        report.deleted += metrics.num_target_rows_deleted as u64;
        report.silver_version = table.version().map(version_i64);
        Ok(table)
    }

    /// The row-level changes of `silver.NAME` after version `since` up to the current version,
    /// one per primary key (its last change), read from the table's change data feed.
    /// `Ok(None)` when the feed cannot answer (the table was created without it, or the
    /// versions are gone): the caller then reads the whole table.
    pub async fn silver_changes(
        &self,
        name: &str,
        primary_key: &[String],
        since: i64,
    ) -> Result<Option<(i64, Vec<RowChange>)>> {
        let (table, current, start) = match self.change_feed(name, since).await? {
            Feed::Unavailable => return Ok(None),
            Feed::Unchanged(current) => return Ok(Some((current, Vec::new()))),
            Feed::From(table, current, start) => (table, current, start),
        };
        let cdf = match sql::change_rows(table, start, self.timeout).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::info!(table = %name, error = %e, "the change data feed cannot answer; reading the whole table");
                return Ok(None);
            }
        };
        // The last change of each key wins: by commit version, and within one commit a
        // post-image or insert over a pre-image.
        let rank = |t: &str| match t {
            "update_preimage" => 0,
            "delete" => 1,
            _ => 2,
        };
        let mut last: std::collections::HashMap<Vec<String>, (i64, i32, RowChange)> =
            std::collections::HashMap::new();
        for mut row in cdf {
            let kind = row
                .remove("_change_type")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let version = row
                .remove("_commit_version")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            row.remove("_commit_timestamp");
            if kind == "update_preimage" {
                continue;
            }
            row.retain(|k, _| !is_meta(k));
            let key: Vec<String> = primary_key
                .iter()
                .map(|k| row.get(k).map(records::render).unwrap_or_default())
                .collect();
            let r = rank(&kind);
            let change = if kind == "delete" {
                let mut k = serde_json::Map::new();
                for c in primary_key {
                    k.insert(
                        c.clone(),
                        row.get(c).cloned().unwrap_or(serde_json::Value::Null),
                    );
                }
                RowChange::Delete(k)
            } else {
                RowChange::Upsert(row)
            };
            match last.get(&key) {
                Some((v, rk, _)) if (*v, *rk) > (version, r) => {}
                _ => {
                    last.insert(key, (version, r, change));
                }
            }
        }
        let mut changes: Vec<(Vec<String>, RowChange)> =
            last.into_iter().map(|(k, (_, _, c))| (k, c)).collect();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some((
            current,
            changes.into_iter().map(|(_, c)| c).collect(),
        )))
    }

    /// Where the change data feed of `silver.NAME` stands after version `since`.
    async fn change_feed(&self, name: &str, since: i64) -> Result<Feed> {
        let Some(table) = self.load(Layer::Silver, name).await? else {
            return Ok(Feed::Unavailable);
        };
        let Some(current) = table.version().map(version_i64) else {
            return Ok(Feed::Unavailable);
        };
        let enabled = table
            .snapshot()
            .ok()
            .and_then(|s| {
                s.metadata()
                    .configuration()
                    .get(CHANGE_DATA_FEED)
                    .map(|v| v.eq_ignore_ascii_case("true"))
            })
            .unwrap_or(false);
        if !enabled {
            return Ok(Feed::Unavailable);
        }
        if current <= since {
            return Ok(Feed::Unchanged(current));
        }
        match u64::try_from(since + 1) {
            Ok(start) => Ok(Feed::From(table, current, start)),
            Err(_) => Ok(Feed::Unavailable),
        }
    }

    /// The rows of `silver.NAME` inserted or changed after version `since` that match the
    /// SQL condition `filter`, each with the version that wrote it (`_commit_version`;
    /// conveyor's other `_` columns left out), and the current version. `Ok(None)` when the
    /// table does not exist or has no change data feed.
    pub async fn silver_new_rows(
        &self,
        name: &str,
        since: i64,
        filter: Option<&str>,
    ) -> Result<Option<(i64, Vec<serde_json::Map<String, serde_json::Value>>)>> {
        let (table, current, start) = match self.change_feed(name, since).await? {
            Feed::Unavailable => return Ok(None),
            Feed::Unchanged(current) => return Ok(Some((current, Vec::new()))),
            Feed::From(table, current, start) => (table, current, start),
        };
        let mut rows = sql::new_rows_where(table, start, filter, self.timeout).await?;
        for row in &mut rows {
            row.remove("_change_type");
            row.remove("_commit_timestamp");
            row.retain(|k, _| k == "_commit_version" || !is_meta(k));
        }
        Ok(Some((current, rows)))
    }

    /// The current version of `silver.NAME`, `None` when it does not exist.
    pub async fn silver_version(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .load(Layer::Silver, name)
            .await?
            .and_then(|t| t.version().map(version_i64)))
    }

    /// Every row of `silver.NAME` as JSON objects (without conveyor's `_` columns); empty
    /// when the table does not exist yet. Not cut at the SQL row limit: the index feed reads
    /// the whole table.
    pub async fn silver_rows(
        &self,
        name: &str,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        if self.load(Layer::Silver, name).await?.is_none() {
            return Ok(Vec::new());
        }
        let text = format!("SELECT * FROM silver.\"{}\"", name.replace('"', "\"\""));
        // DataFusion takes the limit as an i64; 2^40 rows is more than any table we read whole.
        let out = sql::run(self, &text, 1 << 40, self.timeout).await?;
        let mut rows = out.json_rows()?;
        for row in &mut rows {
            row.retain(|k, _| !is_meta(k));
        }
        Ok(rows)
    }

    /// Runs one read-only SQL query with its own row and time limits (benchmarks, which
    /// read whole results and run longer than `lakehouse.sql_timeout`).
    pub async fn query_with(
        &self,
        text: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<QueryOutput> {
        sql::run(self, text, limit.max(1), timeout).await
    }

    /// Runs one read-only SQL query over every table (see [`sql`]).
    pub async fn query(&self, text: &str, limit: Option<usize>) -> Result<QueryOutput> {
        let limit = limit.unwrap_or(self.row_limit).min(self.row_limit).max(1);
        sql::run(self, text, limit, self.timeout).await
    }
}

/// Where a table's change data feed stands ([`Lakehouse::change_feed`]).
enum Feed {
    /// No table, no feed, or versions it cannot read from.
    Unavailable,
    /// Nothing after the version asked for; the current version.
    Unchanged(i64),
    /// Changes to read: the table, its current version, the first version to read.
    From(deltalake::DeltaTable, i64, u64),
}

/// The silver batch of a run and what it changes in the schema.
/// Silver's columns for a run, and how the table changes.
struct ColumnPlan {
    /// The columns the run's rows are written with, in table order (existing ones first, then
    /// new ones), each with the type it has (or gets) in the table.
    target: Vec<Field>,
    /// Columns the table does not have yet.
    new_columns: Vec<String>,
    /// Existing columns widened first (the table rewritten with them cast).
    widen: Vec<(String, DataType)>,
    /// The table is replaced by the run's rows (a full run with other types or layout).
    rebuild: bool,
}

/// Reconciles a run of records' inferred types with the table's by the rules of records: an
/// existing column keeps its type when it holds the run's values ([`ColType::holds`]) and a
/// conflict fails the run, naming the column, both types and an offending value. Declared
/// columns (`run.declared`) take the declared type; their values must all be readable as it
/// (`misfits` lists those that are not), and an existing column must already have it
/// (`location`, the table's folder, is named in that message). A `full` run whose types
/// differ from the table's rebuilds it.
fn plan_columns(
    run: &RunWrite<'_>,
    staged: &StagedRecords,
    misfits: &BTreeMap<String, (String, usize)>,
    table: Option<&DeltaTable>,
    location: &str,
) -> Result<ColumnPlan> {
    let mut inferred = staged.columns.clone();
    // The source's own column types (a SQL table's) stand in for inference.
    for c in &mut inferred {
        if let Some(&t) = run.source_types.get(&c.name)
            && c.ty != ColType::Null
        {
            c.ty = t;
        }
    }
    let existing: Vec<(String, DataType)> = match table {
        Some(t) => {
            let snapshot = t
                .snapshot()
                .map_err(delta_err("reading the silver schema"))?;
            snapshot
                .snapshot()
                .arrow_schema()
                .fields()
                .iter()
                .filter(|f| !is_meta(f.name()))
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        }
        None => Vec::new(),
    };

    // `sync --full` reads everything, so a column whose type the run sees differently (an
    // older version's text or float column of decimals or dates, a new declared type) makes
    // the run rebuild the table with the run's types instead of merging into it.
    if run.full && table.is_some() && staged.rows > 0 {
        let differs = existing.iter().any(|(name, dt)| {
            let want = run.declared.get(name).copied().or_else(|| {
                inferred
                    .iter()
                    .find(|c| &c.name == name && c.ty != ColType::Null)
                    .map(|c| c.ty)
            });
            match want {
                Some(w) => ColType::from_arrow(dt) != Some(w) || *dt != w.arrow(),
                None => false,
            }
        });
        if differs {
            let mut plan = plan_columns(run, staged, misfits, None, location)?;
            plan.rebuild = true;
            return Ok(plan);
        }
    }

    let misfit = |name: &str, ty: ColType| -> Option<String> {
        let (first, count) = misfits.get(name)?;
        let more = match count {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        Some(format!(
            "column `{name}` is declared {} in the connector's [schema] but this run has values that cannot be read as {}: {first}{more}; fix the values at the source, or declare the column text",
            ty.name(),
            ty.name()
        ))
    };
    let mut target: Vec<Field> = Vec::new();
    let mut new_columns = Vec::new();
    let mut problems = Vec::new();
    for (name, dt) in &existing {
        let Some(table_ty) = ColType::from_arrow(dt) else {
            // A column of a typed source (binary, list, struct): records cannot fill it, so
            // it is left out of this run (inserted rows get null there) unless they try.
            if inferred
                .iter()
                .any(|c| &c.name == name && c.ty != ColType::Null)
                || run.declared.contains_key(name)
            {
                problems.push(format!(
                    "column `{name}` of silver.{} has the type {dt}, which this connector's records cannot be written as; rename the column at the source or drop the table",
                    run.table
                ));
            }
            continue;
        };
        if let Some(&want) = run.declared.get(name) {
            if want != table_ty {
                problems.push(format!(
                    "column `{name}` is {} in silver.{} but the connector's [schema] declares it {}; a plain run does not change the type of an existing column ({location}): run `conveyor sync {} --full` to rebuild the table with the declared type, or declare it {}",
                    table_ty.name(),
                    run.table,
                    want.name(),
                    run.table,
                    table_ty.name()
                ));
            } else if let Some(p) = misfit(name, want) {
                problems.push(p);
            } else {
                target.push(Field::new(name, dt.clone(), true));
            }
            continue;
        }
        if let Some(c) = inferred.iter().find(|c| &c.name == name)
            && table_ty.holds(c.ty).is_none()
        {
            let example = c
                .example
                .as_deref()
                .map(|e| format!(" (e.g. {e})"))
                .unwrap_or_default();
            problems.push(format!(
                "column `{name}` is {} in silver.{} but this run's values are {}{example}; fix the values at the source, or drop the table to let conveyor infer the type again",
                table_ty.name(),
                run.table,
                c.ty.name()
            ));
            continue;
        }
        // The values are read as the table's type (integers into a float or decimal
        // column, anything into text).
        target.push(Field::new(name, dt.clone(), true));
    }
    for c in &inferred {
        if existing.iter().any(|(n, _)| n == &c.name) {
            continue;
        }
        // A column seen only with nulls gets no type yet; it is added once a value arrives.
        if c.ty == ColType::Null && table.is_some() {
            continue;
        }
        let ty = match run.declared.get(&c.name) {
            None => c.ty,
            Some(&want) => {
                if let Some(p) = misfit(&c.name, want) {
                    problems.push(p);
                    continue;
                }
                want
            }
        };
        if table.is_some() {
            new_columns.push(c.name.clone());
        }
        target.push(Field::new(&c.name, ty.arrow(), true));
    }
    if staged.rows > 0 {
        for k in run.primary_key {
            if !target.iter().any(|f| f.name() == k) {
                problems.push(format!(
                    "the primary key column `{k}` is not in the records of this run; check primary_key against the source's columns"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::BadInput(format!(
            "the run cannot be written to silver.{}: {}",
            run.table,
            problems.join("; ")
        )));
    }
    Ok(ColumnPlan {
        target,
        new_columns,
        widen: Vec::new(),
        rebuild: false,
    })
}

/// The size a writer fills a data file to before it starts the next. A writer holds the file
/// it is filling in memory, so this bounds a write's buffers (delta-rs' default is 100 MiB).
const TARGET_FILE_SIZE: std::num::NonZeroU64 = match std::num::NonZeroU64::new(32 << 20) {
    Some(n) => n,
    None => std::num::NonZeroU64::MIN,
};

/// A write with the lakehouse's file settings ([`writer_properties`], [`TARGET_FILE_SIZE`]).
fn filling(
    write: deltalake::operations::write::WriteBuilder,
) -> deltalake::operations::write::WriteBuilder {
    write
        .with_writer_properties(writer_properties())
        .with_target_file_size(Some(TARGET_FILE_SIZE))
}

/// How data files are written: Snappy-compressed Parquet with row groups of 122,880 rows
/// (small enough that a writer holds little, large enough for fast scans) and statistics
/// per page, which queries use to skip row groups and pages.
fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(122_880))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

/// Whether a column of type `table` keeps its type for values of type `run` by the rules of
/// records (integers into float and decimal columns, decimals into float columns and decimals
/// of a larger scale): the run's values are cast to it.
fn holds_arrow(table: &DataType, run: &DataType) -> bool {
    match (ColType::from_arrow(table), ColType::from_arrow(run)) {
        (Some(t), Some(r)) => t.holds(r) == Some(t) && t != ColType::Null,
        _ => false,
    }
}

/// Whether silver's partition columns differ from the connector's `partition_by`: `true` for
/// a `full` run (which then rebuilds the table), an error naming both for any other.
fn layout_changes(run: &RunWrite<'_>, table: Option<&DeltaTable>) -> Result<bool> {
    let Some(table) = table else {
        return Ok(false);
    };
    let snapshot = table
        .snapshot()
        .map_err(delta_err("reading the silver layout"))?;
    let current: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    if current == run.partition_by {
        return Ok(false);
    }
    if run.full {
        return Ok(true);
    }
    let show = |c: &[String]| {
        if c.is_empty() {
            "nothing".to_string()
        } else {
            c.join(", ")
        }
    };
    Err(Error::BadInput(format!(
        "silver.{} is partitioned by {} but the connector says partition_by = [{}]; run `conveyor sync {} --full` to rebuild the table with the new layout",
        run.table,
        show(&current),
        run.partition_by.join(", "),
        run.table
    )))
}

/// Every `partition_by` column must be a column of the run.
fn check_partition_columns(run: &RunWrite<'_>, columns: &[String]) -> Result<()> {
    let missing: Vec<&String> = run
        .partition_by
        .iter()
        .filter(|c| !columns.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::BadInput(format!(
        "{}; its columns are: {}",
        missing_columns("partition_by", run.table, &missing),
        columns.join(", ")
    )))
}

/// What is wrong with a connector key (`partition_by`, `cluster_by`) naming columns silver
/// does not have.
fn missing_columns(key: &str, table: &str, missing: &[&String]) -> String {
    format!(
        "{key} names {} which silver.{table} does not have",
        missing
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The table property that turns on Delta's change data feed.
const CHANGE_DATA_FEED: &str = "delta.enableChangeDataFeed";

fn is_meta(name: &str) -> bool {
    matches!(name, RUN_ID | FETCHED_AT | SOURCE)
}

/// The MERGE condition matching target and source rows on the primary key.
fn key_match(primary_key: &[String]) -> String {
    primary_key
        .iter()
        .map(|k| format!("(target.{q} = source.{q})", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A SQL identifier in double quotes.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Names of the Delta tables in a local layer folder.
fn local_table_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Upstream(format!(
                "lakehouse: cannot list {}: {e}",
                dir.display()
            )));
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_delta_log").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn table_url(dir: &Path) -> Result<reqwest::Url> {
    deltalake::ensure_table_uri(dir.to_string_lossy()).map_err(|e| {
        Error::Upstream(format!(
            "lakehouse: {} is not a usable table location: {e}",
            dir.display()
        ))
    })
}

fn version_i64(v: deltalake::kernel::Version) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Maps a deltalake error to [`Error::Upstream`], naming what was being done.
fn delta_err(what: impl std::fmt::Display) -> impl FnOnce(DeltaTableError) -> Error {
    move |e| {
        let text = e.to_string();
        // The engine refused to grow past lakehouse.memory_limit_mb (a MERGE's join of a very
        // large changed source cannot spill): say what to change.
        let hint = if text.contains("Resources exhausted") {
            "; the query engine reached lakehouse.memory_limit_mb: raise it, or split the source into smaller files so that a change re-reads less"
        } else {
            ""
        };
        Error::Upstream(format!("lakehouse: {what} failed: {text}{hint}"))
    }
}
