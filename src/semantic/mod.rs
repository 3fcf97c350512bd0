//! The semantic layer: business questions → governed queries over the lakehouse.
//!
//! A model (`connectors/*.semantic.toml`, [`model`]) names entities over silver and gold
//! tables, their dimensions, measures, segments and joins, metrics built from measures, and
//! per-role access rules. [`Semantic::open`] checks it against the tables (every column and
//! expression planned by DataFusion, every problem reported at once). A question becomes a
//! [`compile::MetricQuery`] — offline by [`parse`], or from an LLM through the
//! `query_metrics` tool — and then one SQL query ([`compile`]) run over the caller's views:
//! each entity is a view carrying the row filters of the caller's roles (propagated along
//! many-to-one joins, so a sales rep restricted to a region sees only that region's orders
//! too) and without the columns hidden from them. Raw SQL (`run_sql`) runs over the same
//! views and nothing else. [`present`] turns a result into a sentence, a table and a chart.

pub mod catalog;
pub mod chart;
pub mod compile;
pub mod eval;
pub mod model;
pub mod parse;
pub mod present;
pub mod when;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lakehouse::{ColType, Lakehouse, Layer, View};
use compile::{Compiled, MetricQuery, OutColumn};
use model::{Model, Source, quote_ident};

/// Most distinct values of one dimension read for matching questions.
const MAX_VALUES: usize = 2_000;
/// Every grain, finest first.
const ALL_GRAINS: [when::Grain; 5] = [
    when::Grain::Day,
    when::Grain::Week,
    when::Grain::Month,
    when::Grain::Quarter,
    when::Grain::Year,
];
/// How often the tables' versions are looked at for new dimension values (at most).
const VALUES_CHECK: Duration = Duration::from_secs(1);
/// Results kept for repeated questions (the oldest goes first).
const CACHED_RESULTS: usize = 256;
/// A result with more rows than this is not kept (memory stays bounded by both numbers).
const CACHED_ROWS: usize = 1_000;

/// The checked model over the lakehouse.
pub struct Semantic {
    model: Model,
    lake: Lakehouse,
    /// Entities whose tables do not exist yet (a sync has not run), with the table.
    missing: Vec<(String, String)>,
    values: Mutex<Option<Values>>,
    results: Mutex<ResultCache>,
    /// Whether repeated queries are answered from [`ResultCache`] (on by default; off for
    /// benchmarks of the uncached path).
    cache_results: std::sync::atomic::AtomicBool,
    /// Most rows an answer returns (`lakehouse.sql_row_limit`).
    pub row_limit: usize,
    /// Longest a query may run (`lakehouse.sql_timeout`).
    pub timeout: Duration,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic")
            .field("entities", &self.model.entities.len())
            .field("measures", &self.model.measures.len())
            .field("metrics", &self.model.metrics.len())
            .finish()
    }
}

/// The dimension values a question can name.
#[derive(Debug, Default)]
pub struct ValueIndex {
    /// Dimension key → its values as stored.
    pub values: BTreeMap<String, Vec<String>>,
    /// The parser's vocabulary over the model and these values (built on first use).
    vocabulary: std::sync::OnceLock<parse::Vocabulary>,
}

/// The dimension values read from the data, with the table versions they were read at.
struct Values {
    checked: Instant,
    versions: Vec<(String, Option<i64>)>,
    index: Arc<ValueIndex>,
}

/// Results of earlier queries, by their SQL, views and row limit, each with the versions of
/// the tables it read: a hit needs every table still at its version, so a sync that commits
/// to any of them makes the next question run again.
#[derive(Debug, Default)]
struct ResultCache {
    entries: std::collections::HashMap<String, CachedResult>,
    order: std::collections::VecDeque<String>,
}

#[derive(Debug)]
struct CachedResult {
    versions: Vec<(String, Option<i64>)>,
    rows: Arc<Vec<Vec<serde_json::Value>>>,
    truncated: bool,
}

impl ResultCache {
    fn get(
        &self,
        key: &str,
        versions: &[(String, Option<i64>)],
    ) -> Option<(Arc<Vec<Vec<serde_json::Value>>>, bool)> {
        self.entries
            .get(key)
            .filter(|c| c.versions == versions)
            .map(|c| (c.rows.clone(), c.truncated))
    }

    fn put(&mut self, key: String, result: CachedResult) {
        if self.entries.insert(key.clone(), result).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CACHED_RESULTS {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// What a caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Entity → row conditions (any of the groups holds; within a group all hold). An entity
    /// absent from the map is not filtered.
    pub filters: BTreeMap<String, Vec<Vec<String>>>,
    /// Entity → columns hidden.
    pub hidden: BTreeMap<String, BTreeSet<String>>,
    /// The access sections that applied (for audit and messages).
    pub rules: Vec<String>,
    /// Attributes those sections read that the caller does not have (their conditions let no
    /// row through).
    pub missing: Vec<String>,
}

/// Who asks, for the access rules: their roles (`[roles]` in conveyor.toml) and their
/// attributes (`[attributes."PLATFORM:ID"]`: what `{{ user.NAME }}` in a rule reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asker {
    /// Role names.
    pub roles: Vec<String>,
    /// Attribute name → values.
    pub attributes: crate::model::Attributes,
}

impl Asker {
    /// A caller with `roles` and no attributes.
    pub fn with_roles(roles: &[String]) -> Self {
        Self {
            roles: roles.to_vec(),
            attributes: crate::model::Attributes::new(),
        }
    }
}

/// A BI answer: what was understood, the SQL run, the result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BiAnswer {
    /// How the question was understood, in words.
    pub interpretation: String,
    /// The structured query.
    pub query: MetricQuery,
    /// The SQL run over the caller's views.
    pub sql: String,
    /// The result's columns.
    pub columns: Vec<OutColumn>,
    /// The rows, typed JSON values.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether the rows were cut at the row limit.
    pub truncated: bool,
    /// How long the query took.
    pub elapsed_ms: f64,
    /// Whether the rows came from the result of the same query at the same table versions.
    pub cached: bool,
    /// Why the caller may see fewer rows than there are, when their access rules read an
    /// attribute they do not have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_note: Option<String>,
}

/// What became of a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered.
    Answer(Box<BiAnswer>),
    /// A question back, with the options to choose from.
    Clarify {
        /// The question to the person.
        text: String,
        /// Choices (each a question that can be asked as it is).
        options: Vec<String>,
    },
    /// Understood as a BI question but not answerable: why, in plain words.
    Refused(String),
    /// Not a BI question (answer from documents).
    NotBi,
}

impl Semantic {
    /// Loads `dir`'s semantic model and checks it against `lake`'s tables; `None` when the
    /// folder holds no `*.semantic.toml`.
    pub async fn open(dir: &Path, lake: &Lakehouse) -> Result<Option<Arc<Self>>> {
        let Some((mut model, mut problems)) = model::load_dir(dir)? else {
            return Ok(None);
        };
        let mut missing = Vec::new();
        check_against_tables(&mut model, lake, &mut problems, &mut missing).await?;
        if !problems.is_empty() {
            return Err(Error::Config(format!(
                "the semantic model has {} problem{}:\n  - {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("\n  - ")
            )));
        }
        if !missing.is_empty() {
            let tables: Vec<&str> = missing.iter().map(|(_, t)| t.as_str()).collect();
            tracing::warn!(tables = %tables.join(", "), "the semantic model names tables that do not exist yet; questions about them are answered once `conveyor sync` has run");
        }
        Ok(Some(Arc::new(Self {
            model,
            lake: lake.clone(),
            missing,
            values: Mutex::new(None),
            results: Mutex::new(ResultCache::default()),
            cache_results: std::sync::atomic::AtomicBool::new(true),
            row_limit: lake.row_limit(),
            timeout: lake.timeout(),
        })))
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Entities whose tables do not exist yet, with the table.
    pub fn missing_tables(&self) -> &[(String, String)] {
        &self.missing
    }

    /// What `who` may see: the `[access.ROLE]` sections of their roles combined (a row
    /// visible to any of them is visible; a column is hidden only when every one hides it),
    /// `[access.default]` when they have none, everything when there is no default either.
    /// `{{ user.NAME }}` in a row filter is their attribute NAME; a filter naming one they do
    /// not have lets no row through.
    pub fn grants(&self, who: &Asker) -> Grants {
        let mut rules: Vec<(&String, &model::AccessRule)> = self
            .model
            .access
            .iter()
            .filter(|(name, _)| who.roles.contains(name))
            .collect();
        if rules.is_empty()
            && let Some(d) = self.model.access.get_key_value("default")
        {
            rules.push(d);
        }
        let mut grants = Grants {
            rules: rules.iter().map(|(n, _)| (*n).clone()).collect(),
            ..Grants::default()
        };
        if rules.is_empty() {
            return grants;
        }
        for entity in self.model.entities.keys() {
            // Unfiltered for one rule → unfiltered.
            let groups: Option<Vec<Vec<String>>> = rules
                .iter()
                .map(|(_, r)| {
                    r.filters.get(entity).map(|conds| {
                        for c in conds {
                            for a in model::attributes_read(c) {
                                if who.attributes.get(a).is_none_or(|v| v.is_empty())
                                    && !grants.missing.iter().any(|m| m == a)
                                {
                                    grants.missing.push(a.to_string());
                                }
                            }
                        }
                        conds
                            .iter()
                            .map(|c| model::fill_user(c, &who.attributes))
                            .collect()
                    })
                })
                .collect();
            if let Some(groups) = groups {
                grants.filters.insert(entity.clone(), groups);
            }
            let mut hidden: Option<BTreeSet<String>> = None;
            for (_, r) in &rules {
                let h = r.hidden.get(entity).cloned().unwrap_or_default();
                hidden = Some(match hidden {
                    None => h,
                    Some(prev) => prev.intersection(&h).cloned().collect(),
                });
            }
            if let Some(h) = hidden.filter(|h| !h.is_empty()) {
                grants.hidden.insert(entity.clone(), h);
            }
        }
        grants
    }

    /// The views of every entity for `grants`: each entity's rows with its row filters (and
    /// those of the entities it points at, through its joins), without hidden columns.
    pub fn views(&self, grants: &Grants) -> Vec<View> {
        self.model
            .entities
            .values()
            .map(|e| {
                let base = self.filtered_rows(&e.name, grants, 0);
                let cols = match grants.hidden.get(&e.name) {
                    Some(hidden) if !e.columns.is_empty() => e
                        .columns
                        .iter()
                        .filter(|c| !hidden.contains(&c.to_lowercase()))
                        .map(|c| quote_ident(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    // A table synced after start-up: its columns were not read, so the hidden
                    // ones are left out by name (a name that is not there fails the query).
                    Some(hidden) if !hidden.is_empty() => format!(
                        "* EXCLUDE ({})",
                        hidden
                            .iter()
                            .map(|c| quote_ident(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => "*".to_string(),
                };
                View {
                    name: e.name.clone(),
                    sql: format!("SELECT {cols} FROM ({base}) AS _v"),
                }
            })
            .collect()
    }

    /// `SELECT * FROM <entity's source> WHERE <its filters and those it inherits>`.
    fn filtered_rows(&self, entity: &str, grants: &Grants, depth: usize) -> String {
        let Some(e) = self.model.entities.get(entity) else {
            return "SELECT 1 WHERE false".into();
        };
        let mut conds = Vec::new();
        if let Some(groups) = grants.filters.get(entity) {
            let any: Vec<String> = groups
                .iter()
                .map(|g| format!("({})", g.join(" AND ")))
                .collect();
            conds.push(format!("({})", any.join(" OR ")));
        }
        if depth < 8 {
            for j in self.model.joins.iter().filter(|j| j.from == entity) {
                if self.restricted(&j.to, grants, depth + 1) {
                    conds.push(format!(
                        "{} IN (SELECT {} FROM ({}) AS _p)",
                        quote_ident(&j.from_column),
                        quote_ident(&j.to_column),
                        self.filtered_rows(&j.to, grants, depth + 1)
                    ));
                }
            }
        }
        let from = e.source.from_sql();
        if conds.is_empty() {
            format!("SELECT * FROM {from}")
        } else {
            format!("SELECT * FROM {from} WHERE {}", conds.join(" AND "))
        }
    }

    /// Whether `entity`'s rows are filtered for `grants`, itself or through its joins.
    fn restricted(&self, entity: &str, grants: &Grants, depth: usize) -> bool {
        grants.filters.contains_key(entity)
            || (depth < 8
                && self
                    .model
                    .joins
                    .iter()
                    .filter(|j| j.from == entity)
                    .any(|j| self.restricted(&j.to, grants, depth + 1)))
    }

    /// The dimension values questions can name, read from the data again when a table of the
    /// model got a new version (looked at, at most, every [`VALUES_CHECK`]).
    pub async fn values(&self) -> Arc<ValueIndex> {
        if let Ok(guard) = self.values.lock()
            && let Some(v) = guard.as_ref()
            && v.checked.elapsed() < VALUES_CHECK
        {
            return v.index.clone();
        }
        let views = self.views(&Grants::default());
        let versions = match self.lake.views_versions(&views).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reading the model's table versions failed");
                Vec::new()
            }
        };
        if let Ok(mut guard) = self.values.lock()
            && let Some(v) = guard.as_mut()
            && v.versions == versions
            && !versions.is_empty()
        {
            v.checked = Instant::now();
            return v.index.clone();
        }
        let mut index = ValueIndex::default();
        // An entity whose tables do not exist (yet) has no values to read.
        let mut present = BTreeSet::new();
        for v in &views {
            let text = format!("SELECT 1 FROM {}", quote_ident(&v.name));
            if let Ok(versions) = self
                .lake
                .view_versions(std::slice::from_ref(v), &text)
                .await
                && versions.iter().all(|(_, version)| version.is_some())
            {
                present.insert(v.name.clone());
            }
        }
        for d in self.model.dimensions.iter().filter(|d| d.text && !d.time) {
            if !present.contains(&d.entity) {
                continue;
            }
            let sql = format!(
                "SELECT DISTINCT CAST({} AS VARCHAR) AS v FROM (SELECT * FROM {}) AS _e WHERE {} IS NOT NULL LIMIT {}",
                d.expr,
                quote_ident(&d.entity),
                d.expr,
                MAX_VALUES + 1
            );
            match self
                .lake
                .query_views(&views, &sql, MAX_VALUES + 1, self.timeout)
                .await
                .and_then(|out| out.json_rows())
            {
                Ok(rows) => {
                    let vals: Vec<String> = rows
                        .into_iter()
                        .filter_map(|r| r.get("v").and_then(|v| v.as_str().map(str::to_string)))
                        .filter(|v| !v.trim().is_empty())
                        .take(MAX_VALUES)
                        .collect();
                    index.values.insert(d.key(), vals);
                }
                Err(e) => {
                    tracing::warn!(dimension = %d.key(), error = %e, "reading a dimension's values failed")
                }
            }
        }
        let index = Arc::new(index);
        if let Ok(mut guard) = self.values.lock() {
            *guard = Some(Values {
                checked: Instant::now(),
                versions,
                index: index.clone(),
            });
        }
        index
    }

    /// Answers `question` for `who`, `today` being the date relative periods count from.
    pub async fn ask(&self, question: &str, who: &Asker, today: chrono::NaiveDate) -> Outcome {
        let values = self.values().await;
        let grants = self.grants(who);
        match parse::parse(&self.model, &values, question, today) {
            parse::Parsed::NotBi => Outcome::NotBi,
            parse::Parsed::Clarify { text, options } => Outcome::Clarify { text, options },
            parse::Parsed::Refused(why) => Outcome::Refused(why),
            parse::Parsed::Query(q) => match self.run(&q, &grants).await {
                Ok(a) => Outcome::Answer(Box::new(a)),
                Err(why) => Outcome::Refused(why),
            },
        }
    }

    /// Runs a metric query for `grants`; the error is a sentence for the person who asked.
    pub async fn run(
        &self,
        q: &MetricQuery,
        grants: &Grants,
    ) -> std::result::Result<BiAnswer, String> {
        self.check_visible(q, grants)?;
        let compiled: Compiled = compile::compile(&self.model, q)?;
        let views = self.views(grants);
        let limit = q.limit.unwrap_or(self.row_limit).min(self.row_limit);
        let started = Instant::now();
        let caching = self
            .cache_results
            .load(std::sync::atomic::Ordering::Relaxed);
        // The views carry the caller's filters and columns, so they are part of the key.
        let key = format!(
            "{limit}\u{0}{}\u{0}{}",
            compiled.sql,
            views
                .iter()
                .map(|v| v.sql.as_str())
                .collect::<Vec<_>>()
                .join("\u{0}")
        );
        // The tables the query reads, at their versions: one that does not exist yet is said
        // plainly (a sync since start-up may have made it).
        let versions = self
            .lake
            .view_versions(&views, &compiled.sql)
            .await
            .map_err(|e| plain_error(&e))?;
        if let Some((t, _)) = versions.iter().find(|(_, v)| v.is_none()) {
            return Err(format!(
                "{t} has no data yet; run `conveyor sync` to load it"
            ));
        }
        let hit = if caching {
            self.results
                .lock()
                .ok()
                .and_then(|c| c.get(&key, &versions))
        } else {
            None
        };
        let (rows, truncated, cached) = match hit {
            Some((rows, truncated)) => ((*rows).clone(), truncated, true),
            None => {
                let out = self
                    .lake
                    .query_views(&views, &compiled.sql, limit, self.timeout)
                    .await
                    .map_err(|e| plain_error(&e))?;
                // The query names its columns by the labels.
                let at: Vec<Option<usize>> = compiled
                    .columns
                    .iter()
                    .map(|c| out.columns.iter().position(|n| *n == c.label))
                    .collect();
                let rows: Vec<Vec<serde_json::Value>> = out
                    .value_rows()
                    .map_err(|e| plain_error(&e))?
                    .into_iter()
                    .map(|r| {
                        at.iter()
                            .map(|i| i.and_then(|i| r.get(i).cloned()).unwrap_or_default())
                            .collect()
                    })
                    .collect();
                if caching
                    && rows.len() <= CACHED_ROWS
                    && let Ok(mut c) = self.results.lock()
                {
                    c.put(
                        key,
                        CachedResult {
                            versions,
                            rows: Arc::new(rows.clone()),
                            truncated: out.truncated,
                        },
                    );
                }
                (rows, out.truncated, false)
            }
        };
        Ok(BiAnswer {
            interpretation: present::interpretation(&self.model, q),
            query: q.clone(),
            sql: compiled.sql,
            columns: compiled.columns,
            rows,
            truncated,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            cached,
            access_note: (!grants.missing.is_empty()).then(|| {
                format!(
                    "Your access rules ({}) read your {}, which is not set for you, so they let no rows through; an administrator sets it under [attributes] in conveyor.toml.",
                    grants.rules.join(", "),
                    grants
                        .missing
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            }),
        })
    }

    /// Turns the result cache on or off (benchmarks measure the uncached path with it off).
    pub fn set_result_cache(&self, on: bool) {
        self.cache_results
            .store(on, std::sync::atomic::Ordering::Relaxed);
        if !on && let Ok(mut c) = self.results.lock() {
            *c = ResultCache::default();
        }
    }

    /// A query over a dimension, measure or filter that reads a column hidden from the caller
    /// is refused, naming it.
    fn check_visible(&self, q: &MetricQuery, grants: &Grants) -> std::result::Result<(), String> {
        if grants.hidden.is_empty() {
            return Ok(());
        }
        let hidden = |entity: &str, columns: &[String]| -> Option<String> {
            let h = grants.hidden.get(entity)?;
            columns.iter().find(|c| h.contains(*c)).cloned()
        };
        for m in &q.metrics {
            for name in self.model.measures_of(m) {
                if let Some(x) = self.model.measure(&name)
                    && let Some(c) = hidden(&x.entity, &x.columns)
                {
                    return Err(format!(
                        "{} is not available to you: it reads {}.{c}, which your access rules hide",
                        x.label, x.entity
                    ));
                }
            }
        }
        for key in q
            .dimensions
            .iter()
            .chain(q.filters.iter().map(|f| &f.dimension))
            .chain(q.focus.iter().map(|f| &f.dimension))
        {
            if let Ok(d) = self.model.find_dimension(key)
                && let Some(c) = hidden(&d.entity, &d.columns)
            {
                return Err(format!(
                    "{} is not available to you: it reads {}.{c}, which your access rules hide",
                    d.label, d.entity
                ));
            }
        }
        Ok(())
    }

    /// Plans read-only `sql` over the caller's views without running it (the columns, or the
    /// planner's error).
    pub async fn plan_sql(
        &self,
        sql: &str,
        grants: &Grants,
    ) -> Result<Vec<crate::lakehouse::ColumnInfo>> {
        self.lake.plan_views(&self.views(grants), sql).await
    }

    /// Runs read-only `sql` over the caller's views (and nothing else), at most `limit` rows.
    pub async fn run_sql(
        &self,
        sql: &str,
        grants: &Grants,
        limit: usize,
    ) -> Result<crate::lakehouse::QueryOutput> {
        self.lake
            .query_views(
                &self.views(grants),
                sql,
                limit.min(self.row_limit),
                self.timeout,
            )
            .await
    }

    /// Runs `sql` over the lakehouse's own tables (no views, no access rules) for reference
    /// answers: what `conveyor eval bi` compares an answer with when a case gives its SQL.
    pub async fn reference_rows(&self, sql: &str) -> Result<Vec<Vec<serde_json::Value>>> {
        self.lake
            .query_with(sql, self.row_limit, self.timeout)
            .await?
            .value_rows()
    }

    /// The model and the views' columns as text, for an LLM's system prompt or tool
    /// description: the views of `grants` (hidden columns and what reads them left out), of
    /// the entities `only` names (all when `None`).
    pub fn describe_for_llm(&self, grants: &Grants, only: Option<&[String]>) -> String {
        present::model_summary(&self.model, grants, only)
    }
}

/// An engine error in plain words.
fn plain_error(e: &Error) -> String {
    let text = e.to_string();
    let text = text
        .strip_prefix("bad input: ")
        .unwrap_or(&text)
        .to_string();
    format!("the query could not run: {text}")
}

/// Checks every entity, column and expression of `model` against the tables, filling each
/// entity's columns and each dimension's kind; a table that does not exist yet goes to
/// `missing` (its expressions are checked at the next start-up; until then a wrong one fails
/// the question that uses it, with the planner's message in plain words).
async fn check_against_tables(
    model: &mut Model,
    lake: &Lakehouse,
    problems: &mut Vec<String>,
    missing: &mut Vec<(String, String)>,
) -> Result<()> {
    let views: Vec<View> = model
        .entities
        .values()
        .map(|e| View {
            name: e.name.clone(),
            sql: format!("SELECT * FROM {}", e.source.from_sql()),
        })
        .collect();
    let names: Vec<String> = model.entities.keys().cloned().collect();
    let mut absent: BTreeSet<String> = BTreeSet::new();
    for name in &names {
        let Some(e) = model.entities.get(name) else {
            continue;
        };
        let origin = e.origin.clone();
        let columns = match &e.source {
            Source::Table { layer, name: table } => {
                let layer = match layer.as_str() {
                    "gold" => Layer::Gold,
                    "bronze" => Layer::Bronze,
                    _ => Layer::Silver,
                };
                match lake.columns(layer, table).await? {
                    Some(cols) => cols,
                    None => {
                        missing.push((name.clone(), format!("{}.{table}", layer.as_str())));
                        absent.insert(name.clone());
                        continue;
                    }
                }
            }
            Source::Sql(_) => match lake
                .plan_views(&views, &format!("SELECT * FROM {}", quote_ident(name)))
                .await
            {
                Ok(cols) => cols,
                Err(e) => {
                    problems.push(format!("{origin}: entities.{name}.sql: {e}"));
                    absent.insert(name.clone());
                    continue;
                }
            },
        };
        let have: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let lower: Vec<String> = have.iter().map(|c| c.to_lowercase()).collect();
        if let Some(e) = model.entities.get_mut(name) {
            for k in &e.primary_key {
                if !lower.contains(&k.to_lowercase()) {
                    problems.push(format!(
                        "{origin}: entities.{name}.primary_key: `{k}` is not a column of {}{} (columns: {})",
                        e.source.from_sql(),
                        model::suggest(k, have.iter()),
                        have.join(", ")
                    ));
                }
            }
            if let Some(l) = &e.label
                && !lower.contains(&l.to_lowercase())
            {
                problems.push(format!(
                    "{origin}: entities.{name}.label: `{l}` is not a column of {}{}",
                    e.source.from_sql(),
                    model::suggest(l, have.iter())
                ));
            }
            e.columns = have.clone();
        }
        for j in model.joins.iter().filter(|j| j.from == *name) {
            if !lower.contains(&j.from_column.to_lowercase()) {
                problems.push(format!(
                    "{origin}: entities.{name}.joins (to {}): `{}` is not a column of {name}{}",
                    j.to,
                    j.from_column,
                    model::suggest(&j.from_column, have.iter())
                ));
            }
        }
    }
    for j in &model.joins {
        if absent.contains(&j.to) {
            continue;
        }
        if let Some(t) = model.entities.get(&j.to)
            && !t.columns.is_empty()
            && !t
                .columns
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&j.to_column))
        {
            let origin = model
                .entities
                .get(&j.from)
                .map(|e| e.origin.clone())
                .unwrap_or_default();
            problems.push(format!(
                "{origin}: entities.{}.joins (to {}): `{}` is not a column of {}{}",
                j.from,
                j.to,
                j.to_column,
                j.to,
                model::suggest(&j.to_column, t.columns.iter())
            ));
        }
    }
    // Every expression, planned against its entity's rows.
    let origin_of = |model: &Model, e: &str| {
        model
            .entities
            .get(e)
            .map(|x| x.origin.clone())
            .unwrap_or_default()
    };
    let plan = |entity: &str, expr: String| {
        let sql = format!("SELECT {expr} AS x FROM {} LIMIT 0", quote_ident(entity));
        let views = &views;
        async move { lake.plan_views(views, &sql).await }
    };
    let col_list = |model: &Model, e: &str| -> String {
        model
            .entities
            .get(e)
            .map(|x| x.columns.join(", "))
            .unwrap_or_default()
    };
    for i in 0..model.dimensions.len() {
        let Some(d) = model.dimensions.get(i).cloned() else {
            continue;
        };
        if absent.contains(&d.entity) {
            continue;
        }
        match plan(&d.entity, d.expr.clone()).await {
            Ok(cols) => {
                let ty = cols.first().and_then(|c| c.ty);
                if let Some(dim) = model.dimensions.get_mut(i) {
                    let is_time = matches!(ty, Some(ColType::Date | ColType::Timestamp));
                    if !dim.kind_declared {
                        dim.time = is_time;
                    }
                    dim.text = !dim.time && matches!(ty, Some(ColType::Text) | None);
                    dim.timestamp = dim.time && !matches!(ty, Some(ColType::Date));
                    if dim.time && dim.grains.is_empty() {
                        dim.grains = ALL_GRAINS.to_vec();
                    }
                }
            }
            Err(e) => problems.push(format!(
                "{}: entities.{}.dimensions.{}: {} (columns of {}: {})",
                origin_of(model, &d.entity),
                d.entity,
                d.name,
                expr_problem(&e),
                d.entity,
                col_list(model, &d.entity)
            )),
        }
    }
    for m in model.measures.clone() {
        if absent.contains(&m.entity) || !m.declared {
            continue;
        }
        let arg = if m.expr == "*" {
            "*".to_string()
        } else {
            m.expr.clone()
        };
        if matches!(m.agg, model::Agg::Sum | model::Agg::Avg)
            && m.expr != "*"
            && let Ok(cols) = plan(&m.entity, m.expr.clone()).await
            && cols.first().is_some_and(|c| !c.is_numeric())
        {
            problems.push(format!(
                "{}: entities.{}.measures.{}: `{}` is {}, not a number; `{}` needs numbers (declare the column's type in its connector's [schema], e.g. decimal(12,2))",
                origin_of(model, &m.entity),
                m.entity,
                m.name,
                m.expr,
                cols.first().map(|c| c.engine_type.clone()).unwrap_or_default(),
                match m.agg { model::Agg::Avg => "avg", _ => "sum" }
            ));
            continue;
        }
        let mut sql_expr = m.agg.sql(&arg);
        if let Some(f) = &m.filter {
            sql_expr = format!("{sql_expr} FILTER (WHERE {f})");
        }
        if let Err(e) = plan(&m.entity, sql_expr).await {
            problems.push(format!(
                "{}: entities.{}.measures.{}: {} (columns of {}: {})",
                origin_of(model, &m.entity),
                m.entity,
                m.name,
                expr_problem(&e),
                m.entity,
                col_list(model, &m.entity)
            ));
        }
    }
    for s in model.segments.clone() {
        if absent.contains(&s.entity) {
            continue;
        }
        if let Err(e) = plan(&s.entity, format!("CASE WHEN {} THEN 1 END", s.filter)).await {
            problems.push(format!(
                "{}: entities.{}.segments.{}: {}",
                origin_of(model, &s.entity),
                s.entity,
                s.name,
                expr_problem(&e)
            ));
        }
    }
    for e in model.entities.values() {
        if absent.contains(&e.name) {
            continue;
        }
        for (i, f) in e.default_filters.iter().enumerate() {
            if let Err(err) = plan(&e.name, format!("CASE WHEN {f} THEN 1 END")).await {
                problems.push(format!(
                    "{}: entities.{}.default_filters[{i}]: {}",
                    e.origin,
                    e.name,
                    expr_problem(&err)
                ));
            }
        }
        if let Some(t) = &e.time
            && let Some(d) = model.dimension(&e.name, t)
            && !d.time
        {
            problems.push(format!(
                "{}: entities.{}.time: `{t}` is not a date or timestamp column",
                e.origin, e.name
            ));
        }
    }
    for (role, rule) in &model.access {
        for (entity, conds) in &rule.filters {
            if absent.contains(entity) {
                continue;
            }
            for c in conds {
                let c = model::fill_sample(c);
                if let Err(e) = plan(entity, format!("CASE WHEN {c} THEN 1 END")).await {
                    problems.push(format!(
                        "access.{role}: the row filter on {entity}: {}",
                        expr_problem(&e)
                    ));
                }
            }
        }
        for (entity, cols) in &rule.hidden {
            let Some(e) = model.entities.get(entity) else {
                continue;
            };
            if e.columns.is_empty() {
                continue;
            }
            for c in cols {
                if !e.columns.iter().any(|x| x.eq_ignore_ascii_case(c)) {
                    problems.push(format!(
                        "access.{role}.hidden: `{entity}.{c}` is not a column of {entity}{}",
                        model::suggest(c, e.columns.iter())
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The planner's complaint about an expression, without the query around it.
fn expr_problem(e: &Error) -> String {
    let t = e.to_string();
    let t = t.strip_prefix("bad input: ").unwrap_or(&t);
    let t = t.strip_prefix("the query failed: ").unwrap_or(t);
    let t = t.split(" (tables:").next().unwrap_or(t);
    let t = t.lines().next().unwrap_or(t);
    t.strip_prefix("Schema error: ").unwrap_or(t).to_string()
}
