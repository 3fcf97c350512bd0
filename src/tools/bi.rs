//! The BI tools an LLM may call: `query_metrics` (a structured metric query over the semantic
//! model; preferred) and `run_sql` (read-only SQL over the caller's views).
//!
//! Both run with the caller's access rules: row filters and hidden columns of their roles are
//! in the views the query sees, so neither the model's choice of metrics nor any SQL text can
//! reach rows or columns the caller may not see. `run_sql` plans the query before running it
//! and gives a planning error back to the model to correct, at most [`MAX_CORRECTIONS`] times
//! per conversation turn; after that the model is told to stop and explain the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Caller, Tool, ToolOutput, ToolPolicy};
use crate::error::{Error, Result};
use crate::model::DataAnswer;
use crate::semantic::catalog::Catalog;
use crate::semantic::compile::MetricQuery;
use crate::semantic::{Grants, Semantic, present};

/// Failed `run_sql` calls a conversation gets before it is told to stop.
pub const MAX_CORRECTIONS: u32 = 3;
/// Most rows `run_sql` returns to the model.
const SQL_ROWS: usize = 200;
/// Failures older than this no longer count (a new turn).
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// `query_metrics`.
pub struct QueryMetrics {
    semantic: Arc<Semantic>,
    description: String,
    parameters: Value,
    policy: ToolPolicy,
    catalog: Option<Arc<Catalog>>,
}

impl QueryMetrics {
    /// The tool over `semantic`.
    pub fn new(semantic: Arc<Semantic>) -> Self {
        let description = metrics_description(&semantic, &Grants::default(), None);
        let period = json!({
            "type": "object",
            "properties": {
                "start": {"type": "string", "description": "first day, YYYY-MM-DD"},
                "end": {"type": "string", "description": "day after the last, YYYY-MM-DD"},
                "label": {"type": "string"}
            },
            "required": ["start", "end"]
        });
        let filter: Value = json!({
            "type": "object",
            "properties": {
                "dimension": {"type": "string"},
                "values": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["dimension", "values"]
        });
        let parameters = json!({
            "type": "object",
            "properties": {
                "metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "dimensions": {"type": "array", "items": {"type": "string"}},
                "filters": {"type": "array", "items": filter},
                "segments": {"type": "array", "items": {"type": "string"}},
                "time": period,
                "compare": period,
                "grain": {"type": "string", "enum": ["day", "week", "month", "quarter", "year"]},
                "share": {"type": "boolean", "description": "each metric as its share of the total over the groups"},
                "focus": {"type": "array", "items": filter, "description": "after shares: keep only these groups (what share came from X)"},
                "order": {"type": "object", "properties": {"by": {"type": "string"}, "desc": {"type": "boolean"}}, "required": ["by"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000}
            },
            "required": ["metrics"]
        });
        Self {
            semantic,
            description,
            parameters,
            policy: ToolPolicy::default(),
            catalog: None,
        }
    }

    /// Describes, per question, only the entities `catalog` retrieves for it.
    pub fn with_catalog(mut self, catalog: Option<Arc<Catalog>>) -> Self {
        self.catalog = catalog;
        self
    }
}

/// The metrics, dimensions and segments of `entities` (all when `None`) that `grants` let the
/// caller use, as `query_metrics`' description.
fn metrics_description(
    semantic: &Semantic,
    grants: &Grants,
    entities: Option<&[String]>,
) -> String {
    let model = semantic.model();
    let shown = |e: &str| entities.is_none_or(|o| o.iter().any(|n| n == e));
    let open = |entity: &str, columns: &[String]| {
        shown(entity) && !present::reads_hidden(columns, grants.hidden.get(entity))
    };
    let measures: Vec<&crate::semantic::model::Measure> = model
        .measures
        .iter()
        .filter(|m| open(&m.entity, &m.columns))
        .collect();
    let metrics: Vec<String> = measures
        .iter()
        .map(|m| format!("{} ({})", m.name, m.describe()))
        .chain(
            model
                .metrics
                .iter()
                .filter(|m| {
                    present::metric_uses(m).iter().all(|u| {
                        measures.iter().any(|x| x.name == *u)
                            || model.metrics.iter().any(|x| x.name == *u)
                    })
                })
                .map(|m| format!("{} ({})", m.name, m.label)),
        )
        .collect();
    let dims: Vec<String> = model
        .dimensions
        .iter()
        .filter(|d| open(&d.entity, &d.columns))
        .map(|d| format!("{}{}", d.key(), if d.time { " (time)" } else { "" }))
        .collect();
    let segments: Vec<String> = model
        .segments
        .iter()
        .filter(|s| shown(&s.entity))
        .map(|s| format!("{}.{}", s.entity, s.name))
        .collect();
    format!(
        "Answer a numbers question from the business data through the semantic model (preferred over run_sql). Returns how the query was understood, the SQL, the rows and `cite_as`: put that marker after the numbers you quote (the person sees the table and chart with your answer). Metrics: {}. Dimensions: {}. Segments: {}. Periods are ISO dates, end exclusive.",
        metrics.join("; "),
        dims.join(", "),
        if segments.is_empty() {
            "none".into()
        } else {
            segments.join(", ")
        }
    )
}

/// The entities to describe for `question`: those `catalog` retrieves, or all.
async fn entities_for(
    semantic: &Semantic,
    catalog: Option<&Catalog>,
    question: &str,
) -> Option<Vec<String>> {
    let catalog = catalog?;
    match catalog.entities_for(semantic.model(), question).await {
        Ok(entities) => Some(entities),
        Err(e) => {
            tracing::warn!(error = %e, "retrieving the semantic model for a question failed; describing all of it");
            None
        }
    }
}

#[async_trait]
impl Tool for QueryMetrics {
    fn name(&self) -> &str {
        "query_metrics"
    }
    fn description(&self) -> &str {
        &self.description
    }
    async fn describe_for(&self, caller: &Caller, question: &str) -> Option<String> {
        let entities = entities_for(&self.semantic, self.catalog.as_deref(), question).await;
        let grants = self.semantic.grants(&asker(caller));
        Some(metrics_description(
            &self.semantic,
            &grants,
            entities.as_deref(),
        ))
    }
    fn parameters(&self) -> &Value {
        &self.parameters
    }
    fn policy(&self) -> &ToolPolicy {
        &self.policy
    }
    async fn call(&self, caller: &Caller, args: Value) -> Result<Value> {
        Ok(self.call_for_answer(caller, args).await?.value)
    }
    async fn call_for_answer(&self, caller: &Caller, args: Value) -> Result<ToolOutput> {
        let q: MetricQuery = serde_json::from_value(args)
            .map_err(|e| Error::BadInput(format!("the arguments are not a metric query: {e}")))?;
        let grants = self.semantic.grants(&asker(caller));
        let a = self
            .semantic
            .run(&q, &grants)
            .await
            .map_err(Error::BadInput)?;
        let data = present::data_answer(self.semantic.model(), &a);
        let value = json!({
            "interpretation": a.interpretation,
            "sql": a.sql,
            "columns": data.columns,
            "rows": data.rows,
            "row_count": a.rows.len(),
            "truncated": a.truncated,
            "no_data": present::is_empty(&a),
        });
        Ok(ToolOutput {
            value,
            data: Some(Box::new(data)),
        })
    }
}

/// `run_sql`.
pub struct RunSql {
    semantic: Arc<Semantic>,
    description: String,
    parameters: Value,
    policy: ToolPolicy,
    failures: Mutex<HashMap<String, (u32, Instant, String)>>,
    catalog: Option<Arc<Catalog>>,
}

impl RunSql {
    /// The tool over `semantic`'s views.
    pub fn new(semantic: Arc<Semantic>) -> Self {
        let description = sql_description(&semantic.describe_for_llm(&Grants::default(), None));
        let parameters = json!({
            "type": "object",
            "properties": {
                "sql": {"type": "string", "description": "one SELECT query over the views"},
                "limit": {"type": "integer", "minimum": 1, "maximum": SQL_ROWS}
            },
            "required": ["sql"]
        });
        Self {
            semantic,
            description,
            parameters,
            policy: ToolPolicy::default(),
            failures: Mutex::new(HashMap::new()),
            catalog: None,
        }
    }

    /// Describes, per question, only the views of the entities `catalog` retrieves for it.
    pub fn with_catalog(mut self, catalog: Option<Arc<Catalog>>) -> Self {
        self.catalog = catalog;
        self
    }

    /// Counts a failure for `conversation`; the error for the model.
    fn failed(&self, conversation: &str, error: &str) -> Error {
        let count = match self.failures.lock() {
            Ok(mut f) => {
                f.retain(|_, (_, at, _)| at.elapsed() < FAILURE_WINDOW);
                let entry =
                    f.entry(conversation.to_string())
                        .or_insert((0, Instant::now(), String::new()));
                entry.0 += 1;
                entry.1 = Instant::now();
                entry.2 = error.to_string();
                entry.0
            }
            Err(_) => MAX_CORRECTIONS,
        };
        if count >= MAX_CORRECTIONS {
            Error::BadInput(format!(
                "the SQL failed {count} times; do not call run_sql again for this question. Tell the user plainly that the query could not be run and why: {error}"
            ))
        } else {
            Error::BadInput(format!(
                "the SQL failed (attempt {count} of {MAX_CORRECTIONS}): {error}. Correct the query and call run_sql again."
            ))
        }
    }

    fn over_limit(&self, conversation: &str) -> Option<String> {
        let f = self.failures.lock().ok()?;
        let (count, at, last) = f.get(conversation)?;
        (*count >= MAX_CORRECTIONS && at.elapsed() < FAILURE_WINDOW).then(|| last.clone())
    }
}

#[async_trait]
impl Tool for RunSql {
    fn name(&self) -> &str {
        "run_sql"
    }
    fn description(&self) -> &str {
        &self.description
    }
    async fn describe_for(&self, caller: &Caller, question: &str) -> Option<String> {
        let entities = entities_for(&self.semantic, self.catalog.as_deref(), question).await;
        let grants = self.semantic.grants(&asker(caller));
        Some(sql_description(
            &self.semantic.describe_for_llm(&grants, entities.as_deref()),
        ))
    }
    fn parameters(&self) -> &Value {
        &self.parameters
    }
    fn policy(&self) -> &ToolPolicy {
        &self.policy
    }
    async fn call(&self, caller: &Caller, args: Value) -> Result<Value> {
        Ok(self.call_for_answer(caller, args).await?.value)
    }
    async fn call_for_answer(&self, caller: &Caller, args: Value) -> Result<ToolOutput> {
        let sql = args.get("sql").and_then(Value::as_str).unwrap_or_default();
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(SQL_ROWS, |n| usize::try_from(n).unwrap_or(SQL_ROWS))
            .min(SQL_ROWS);
        if let Some(last) = self.over_limit(&caller.conversation) {
            return Err(Error::BadInput(format!(
                "run_sql already failed {MAX_CORRECTIONS} times for this question; tell the user plainly that the query could not be run and why: {last}"
            )));
        }
        let grants = self.semantic.grants(&asker(caller));
        // Planned first: a wrong column or table comes back to the model without running.
        if let Err(e) = self.semantic.plan_sql(sql, &grants).await {
            return Err(self.failed(&caller.conversation, &e.to_string()));
        }
        let started = Instant::now();
        let out = match self.semantic.run_sql(sql, &grants, limit).await {
            Ok(out) => out,
            Err(e) => return Err(self.failed(&caller.conversation, &e.to_string())),
        };
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&caller.conversation);
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let rows = out.json_rows()?;
        let data = sql_data(sql, &out)?;
        let value = json!({
            "sql": sql,
            "columns": out.columns,
            "rows": rows,
            "row_count": out.rows,
            "truncated": out.truncated,
            "row_limit": limit,
            "elapsed_ms": elapsed_ms,
        });
        Ok(ToolOutput {
            value,
            data: Some(Box::new(data)),
        })
    }
}

/// The table of a `run_sql` result for people: numbers with thousands separators, no chart
/// (the columns' meaning is the model's, not the semantic model's).
fn sql_data(sql: &str, out: &crate::lakehouse::QueryOutput) -> Result<DataAnswer> {
    let values = out.value_rows()?;
    let numeric: Vec<bool> = (0..out.columns.len())
        .map(|i| {
            let mut cells = values
                .iter()
                .filter_map(|r| r.get(i))
                .filter(|v| !v.is_null());
            let first = cells.next();
            first.is_some_and(|v| present::number(v).is_some() && !v.is_boolean())
                && cells.all(|v| present::number(v).is_some())
        })
        .collect();
    let rows = values
        .iter()
        .map(|r| {
            r.iter()
                .zip(&numeric)
                .map(|(v, num)| match (v, num) {
                    (Value::Null, _) => "–".to_string(),
                    (v, true) => {
                        let decimals = if v.is_i64() || v.is_u64() { 0 } else { 2 };
                        present::number(v)
                            .map(|n| crate::semantic::model::Format::Number { decimals }.show(n))
                            .unwrap_or_else(|| v.to_string())
                    }
                    (Value::String(s), _) => s.clone(),
                    (v, _) => v.to_string(),
                })
                .collect()
        })
        .collect();
    Ok(DataAnswer {
        interpretation: "A query written by the model over your views of the data".into(),
        sql: sql.to_string(),
        columns: out.columns.clone(),
        numeric,
        rows,
        truncated: out.truncated,
        csv: out.render(crate::lakehouse::OutputFormat::Csv)?,
        csv_url: None,
        chart: None,
    })
}

/// `run_sql`'s description over the views `summary` describes.
fn sql_description(summary: &str) -> String {
    format!(
        "Run one read-only SQL query (DataFusion dialect) over the business data when query_metrics cannot express the question. The only tables are these views (columns hidden from the caller are absent, and rows are filtered by their access rules):\n{summary}At most {SQL_ROWS} rows are returned, with `cite_as`: put that marker after the numbers you quote. A query that fails is returned with the error so you can correct it, at most {MAX_CORRECTIONS} times."
    )
}

/// The access rules' view of a tool's caller.
fn asker(caller: &Caller) -> crate::semantic::Asker {
    crate::semantic::Asker {
        roles: caller.roles.clone(),
        attributes: caller.attributes.clone(),
    }
}
