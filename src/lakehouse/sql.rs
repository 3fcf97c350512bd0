//! Read-only SQL over the lakehouse with DataFusion.
//!
//! Every Delta table is registered under its layer (`bronze.NAME`, `silver.NAME`, `gold.NAME`)
//! and silver tables also under their plain name. A statement is checked before it is planned:
//! only a single query (`SELECT …`, `WITH …`, `VALUES …`) passes, so DDL, DML, `COPY`, `SET`
//! and the rest are refused with a sentence and never reach a planner that could act on them.
//! DataFusion's own `SQLOptions` refuse them a second time. Results are cut at a row limit
//! (and say so) and the query runs under a time limit.

use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::catalog::{MemorySchemaProvider, TableProvider};
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::{DFParser, Statement as DfStatement};
use deltalake::datafusion::sql::sqlparser::ast::Statement;
use serde::Serialize;

use super::{Lakehouse, Layer};
use crate::error::{Error, Result};

/// How `conveyor sql` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// A JSON array of objects, typed values.
    Json,
    /// CSV with a header row.
    Csv,
}

/// The result of a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Column names.
    pub columns: Vec<String>,
    /// The result's schema (kept for results without rows).
    schema: SchemaRef,
    /// The rows, in Arrow batches.
    batches: Vec<RecordBatch>,
    /// Rows returned.
    pub rows: usize,
    /// Whether the result was cut at the row limit.
    pub truncated: bool,
    /// The limit that applied.
    pub limit: usize,
}

impl QueryOutput {
    /// The rows as JSON objects (numbers and booleans typed, other values as text).
    pub fn json_rows(&self) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        Ok(self
            .value_rows()?
            .into_iter()
            .map(|row| self.columns.iter().cloned().zip(row).collect())
            .collect())
    }

    /// The rows as lists of values in column order (numbers and booleans typed, other values
    /// as text).
    pub fn value_rows(&self) -> Result<Vec<Vec<serde_json::Value>>> {
        let mut rows = Vec::with_capacity(self.rows);
        for batch in &self.batches {
            let cols: Vec<Cell<'_>> = batch
                .columns()
                .iter()
                .map(|a| Cell::new(a.as_ref()))
                .collect::<Result<_>>()?;
            for i in 0..batch.num_rows() {
                rows.push(cols.iter().map(|c| c.json(i)).collect());
            }
        }
        Ok(rows)
    }

    /// Renders the rows.
    pub fn render(&self, format: OutputFormat) -> Result<String> {
        match format {
            OutputFormat::Table => {
                let empty;
                let batches = if self.batches.is_empty() {
                    empty = [RecordBatch::new_empty(self.schema.clone())];
                    &empty[..]
                } else {
                    &self.batches[..]
                };
                deltalake::arrow::util::pretty::pretty_format_batches(batches)
                    .map(|t| t.to_string())
                    .map_err(|e| Error::internal("sql: formatting the result", e))
            }
            OutputFormat::Json => {
                let rows: Vec<serde_json::Value> = self
                    .json_rows()?
                    .into_iter()
                    .map(serde_json::Value::Object)
                    .collect();
                serde_json::to_string_pretty(&rows)
                    .map_err(|e| Error::internal("sql: encoding the result as JSON", e))
            }
            OutputFormat::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let csv_err = |e: csv::Error| Error::internal("sql: writing CSV", e);
                w.write_record(&self.columns).map_err(csv_err)?;
                for batch in &self.batches {
                    let cols: Vec<Cell<'_>> = batch
                        .columns()
                        .iter()
                        .map(|a| Cell::new(a.as_ref()))
                        .collect::<Result<_>>()?;
                    for i in 0..batch.num_rows() {
                        w.write_record(cols.iter().map(|c| c.text(i)))
                            .map_err(csv_err)?;
                    }
                }
                let bytes = w
                    .into_inner()
                    .map_err(|e| Error::internal("sql: writing CSV", e))?;
                String::from_utf8(bytes).map_err(|e| Error::internal("sql: writing CSV", e))
            }
        }
    }
}

/// One column of a batch, ready to read cell by cell.
pub(super) struct Cell<'a> {
    array: &'a dyn Array,
    fmt: ArrayFormatter<'a>,
}

impl<'a> Cell<'a> {
    pub(super) fn new(array: &'a dyn Array) -> Result<Self> {
        let fmt = ArrayFormatter::try_new(array, &FORMAT)
            .map_err(|e| Error::internal("sql: formatting a column", e))?;
        Ok(Self { array, fmt })
    }

    fn text(&self, i: usize) -> String {
        if self.array.is_null(i) {
            String::new()
        } else {
            self.fmt.value(i).to_string()
        }
    }

    /// The value as JSON: numbers and booleans typed, everything else as its display text
    /// (timestamps with a time zone in RFC 3339).
    pub(super) fn json(&self, i: usize) -> serde_json::Value {
        use serde_json::Value;
        let a = self.array;
        if a.is_null(i) {
            return Value::Null;
        }
        macro_rules! int {
            ($t:ty) => {
                Value::from(a.as_primitive::<$t>().value(i))
            };
        }
        match a.data_type() {
            DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
            DataType::Int8 => int!(Int8Type),
            DataType::Int16 => int!(Int16Type),
            DataType::Int32 => int!(Int32Type),
            DataType::Int64 => int!(Int64Type),
            DataType::UInt8 => int!(UInt8Type),
            DataType::UInt16 => int!(UInt16Type),
            DataType::UInt32 => int!(UInt32Type),
            DataType::UInt64 => int!(UInt64Type),
            DataType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(i))),
            DataType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
            DataType::Decimal128(..) => decimal(self.fmt.value(i).to_string()),
            _ => Value::String(self.fmt.value(i).to_string()),
        }
    }
}

/// A decimal as a JSON number when a double holds it exactly (at most 15 significant digits),
/// else as its exact text, so that no digit of money is ever changed on the way out.
fn decimal(text: String) -> serde_json::Value {
    let significant = text
        .trim_start_matches('-')
        .trim_start_matches(['0', '.'])
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    if significant <= 15
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return serde_json::Value::Number(n);
    }
    serde_json::Value::String(text)
}

fn float(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

const FORMAT: FormatOptions<'static> = FormatOptions::new();

/// Deepest nesting of `(` and `[` a query may have. DataFusion's SQL parser backtracks at
/// each `CASE (`, `CAST((` or `ARRAY[(`, so its time doubles with every level: 16 levels took
/// seconds and the 240 a fuzzer wrote never finished. Real queries nest a few levels.
const MAX_SQL_NESTING: usize = 12;

/// The deepest nesting of `(` and `[` in `text`, outside string literals, quoted names and
/// comments.
fn nesting(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                // To the closing quote (a doubled quote inside is two quoted runs).
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Checks that `text` is one read-only query; the refusal names what it is instead.
pub fn check_read_only(text: &str) -> Result<()> {
    if nesting(text) > MAX_SQL_NESTING {
        return Err(Error::BadInput(format!(
            "the query nests parentheses more than {MAX_SQL_NESTING} levels deep; conveyor refuses deeper nesting (the SQL parser's time doubles with each level), so flatten it with WITH"
        )));
    }
    let statements = DFParser::parse_sql(text)
        .map_err(|e| Error::BadInput(format!("the SQL does not parse: {e}")))?;
    if statements.len() != 1 {
        return Err(Error::BadInput(format!(
            "give exactly one query (found {} statements)",
            statements.len()
        )));
    }
    if statements.front().is_some_and(reads_only) {
        return Ok(());
    }
    let verb: String = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    Err(Error::BadInput(format!(
        "`{verb}` statements are refused: conveyor sql runs read-only queries (SELECT … or WITH …); the lakehouse is written only by `conveyor sync`, and nothing was changed"
    )))
}

/// Whether `text` is an `EXPLAIN` (of anything); `false` when it does not parse or nests too
/// deep to be parsed (see [`check_read_only`]).
pub fn is_explain(text: &str) -> bool {
    nesting(text) <= MAX_SQL_NESTING
        && DFParser::parse_sql(text).is_ok_and(|statements| {
            statements.iter().any(|s| match s {
                DfStatement::Explain(_) => true,
                DfStatement::Statement(s) => matches!(s.as_ref(), Statement::Explain { .. }),
                _ => false,
            })
        })
}

/// A query, or `EXPLAIN [ANALYZE]` of one (which shows the plan, and with `ANALYZE` runs the
/// query and shows each operator's rows and time).
fn reads_only(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) => true,
            Statement::Explain { statement, .. } => {
                matches!(statement.as_ref(), Statement::Query(_))
            }
            _ => false,
        },
        DfStatement::Explain(e) => reads_only(&e.statement),
        _ => false,
    }
}

/// A DataFusion session for the lakehouse: at most `memory_limit` bytes for the operators
/// that track memory (sorts, aggregates and joins spill to the temporary folder past their
/// share, and one that cannot fails with "resources exhausted" rather than growing), queries
/// on `partitions` threads, file statistics collected and Parquet row groups and pages pruned
/// with them.
pub(super) fn engine(memory_limit: usize, partitions: usize) -> Result<SessionContext> {
    engine_with(runtime(memory_limit)?, partitions)
}

/// The engine's runtime: a memory pool of `memory_limit` bytes whose operators spill past
/// their share, and the Parquet metadata cache (footers and page indexes), shared by every
/// session built on it.
pub(super) fn runtime(
    memory_limit: usize,
) -> Result<Arc<deltalake::datafusion::execution::runtime_env::RuntimeEnv>> {
    use deltalake::datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    // An exhausted pool names its five largest consumers in the error.
    let top = std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN);
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(memory_limit),
            top,
        )))
        .build_arc()
        .map_err(|e| Error::internal("lakehouse: the query engine's runtime", e))
}

/// A session of [`engine`] on an existing runtime.
pub(super) fn engine_with(
    runtime: Arc<deltalake::datafusion::execution::runtime_env::RuntimeEnv>,
    partitions: usize,
) -> Result<SessionContext> {
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::prelude::SessionConfig;
    // DataFusion's own settings can be tuned from the environment (`DATAFUSION_EXECUTION_
    // BATCH_SIZE=16384`, …); the ones below are conveyor's and win.
    let config = SessionConfig::from_env()
        .map_err(|e| {
            Error::Config(format!(
                "a DATAFUSION_* environment variable is not a valid query engine setting: {e}; fix or unset it"
            ))
        })?
        .with_target_partitions(partitions.max(1))
        .with_collect_statistics(true)
        .with_parquet_pruning(true)
        .with_parquet_page_index_pruning(true)
        // delta-rs' own sessions turn this off: hash-join IN-list pushdown can panic on
        // dictionary-encoded join keys in this DataFusion release.
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
        .set_usize(
            "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
            0,
        );
    // The Delta planner turns delta-rs' own plan nodes (writes, MERGE) into execution plans.
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// A DataFusion session with the tables registered: `bronze.NAME`, `silver.NAME`, `gold.NAME`,
/// and silver tables also as plain `NAME`, of those in `wanted` (a query pays only for the
/// tables it names; a table opened by an earlier query reads only the log entries committed
/// since). Sessions share one runtime, so concurrent queries share the memory budget and
/// Parquet footers are read once. Returns the qualified names of every table, for messages.
pub(super) async fn session(
    lake: &Lakehouse,
    wanted: &[super::TableName],
) -> Result<(SessionContext, Vec<String>)> {
    let ctx = lake.query_engine()?;
    let mut names = Vec::new();
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Internal("sql: DataFusion has no default catalog".into()))?;
    for layer in Layer::ALL {
        let schema = Arc::new(MemorySchemaProvider::new());
        for name in lake.table_names(layer).await? {
            if !wanted.iter().any(|t| t.layer == layer && t.name == name) {
                names.push(format!("{}.{name}", layer.as_str()));
                continue;
            }
            let Some(table) = lake.load_current(layer, &name).await? else {
                continue;
            };
            let what = format!("sql: opening {}.{name}", layer.as_str());
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|e| Error::upstream(&what, e))?;
            let key = (layer, name.clone());
            let version = table.version().map(super::version_i64);
            let cached = lake.queries.providers.lock().ok().and_then(|p| {
                p.get(&key)
                    .filter(|(v, _)| Some(*v) == version)
                    .map(|(_, provider)| provider.clone())
            });
            let provider = match cached {
                Some(provider) => provider,
                None => {
                    let delta: Arc<dyn TableProvider> = table
                        .table_provider()
                        .await
                        .map_err(|e| Error::upstream(&what, e))?;
                    // DataFusion's own Parquet scan where the table allows it (see `scan`).
                    let provider: Arc<dyn TableProvider> =
                        match super::scan::ParquetSnapshot::try_new(
                            &table,
                            delta.schema(),
                            &ctx.state(),
                        )? {
                            Some(native) => Arc::new(native),
                            None => delta,
                        };
                    if let (Some(v), Ok(mut p)) = (version, lake.queries.providers.lock()) {
                        p.insert(key, (v, provider.clone()));
                    }
                    provider
                }
            };
            deltalake::datafusion::catalog::SchemaProvider::register_table(
                schema.as_ref(),
                name.clone(),
                provider.clone(),
            )
            .map_err(|e| Error::upstream(&what, e))?;
            if layer == Layer::Silver {
                ctx.register_table(name.as_str(), provider)
                    .map_err(|e| Error::upstream(&what, e))?;
            }
            names.push(format!("{}.{name}", layer.as_str()));
        }
        catalog
            .register_schema(layer.as_str(), schema)
            .map_err(|e| Error::internal("sql: registering a schema", e))?;
    }

    Ok((ctx, names))
}

/// Plans and runs one query.
pub(super) async fn run(
    lake: &Lakehouse,
    text: &str,
    limit: usize,
    timeout: Duration,
) -> Result<QueryOutput> {
    let wanted = super::model_inputs(text)?;
    let (ctx, names) = session(lake, &wanted).await?;
    execute(lake, ctx, &names, text, limit, timeout).await
}

/// The options every query is planned with: no DDL, no DML, no statements.
pub(super) fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans and runs one query in `ctx` (whose tables are `names`, for messages).
pub(super) async fn execute(
    lake: &Lakehouse,
    ctx: SessionContext,
    names: &[String],
    text: &str,
    limit: usize,
    timeout: Duration,
) -> Result<QueryOutput> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let plan_err = |e: deltalake::datafusion::error::DataFusionError| {
        let mut msg = format!("the query failed: {e}");
        if msg.contains("not found") {
            if names.is_empty() {
                msg.push_str(" (the lakehouse has no tables yet; run `conveyor sync` first)");
            } else {
                msg.push_str(&format!(" (tables: {})", names.join(", ")));
            }
        }
        Error::BadInput(msg)
    };
    let attempt = |ctx: SessionContext| async move {
        let df = ctx.sql_with_options(text, options).await?;
        // EXPLAIN's plan must stay the root (its few rows need no limit).
        use deltalake::datafusion::logical_expr::LogicalPlan;
        let df = match df.logical_plan() {
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => df,
            _ => df.limit(0, Some(limit + 1))?,
        };
        let schema = df.schema().inner().clone();
        let batches = df.collect().await?;
        Ok::<_, deltalake::datafusion::error::DataFusionError>((schema, batches))
    };
    let work = async {
        match attempt(ctx.clone()).await {
            Ok(out) => Ok(out),
            // Hash joins cannot spill: a query whose join outgrows the memory budget runs
            // again with sort-merge joins, whose sorts spill to disk (slower, but it answers).
            Err(e)
                if matches!(
                    e.find_root(),
                    deltalake::datafusion::error::DataFusionError::ResourcesExhausted(_)
                ) =>
            {
                tracing::info!(error = %e, "query over its memory budget: planning it again with spilling joins");
                // Each sort holds a spill reservation up front: a small one leaves room for
                // the many sorts of a query with several joins.
                let reserve = (lake.memory_limit / 64).clamp(64 << 10, 10 << 20);
                for set in [
                    "SET datafusion.optimizer.prefer_hash_join = false".to_string(),
                    format!("SET datafusion.execution.sort_spill_reservation_bytes = {reserve}"),
                ] {
                    ctx.sql(&set).await.map_err(plan_err)?;
                }
                attempt(ctx).await.map_err(plan_err)
            }
            Err(e) => Err(plan_err(e)),
        }
    };
    let (schema, batches) = tokio::time::timeout(timeout, work).await.map_err(|_| {
        Error::BadInput(format!(
            "the query did not finish within {}s (lakehouse.sql_timeout); add a WHERE clause or a LIMIT",
            timeout.as_secs_f64()
        ))
    })??;

    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let truncated = total > limit;
    let batches = if truncated {
        cut(batches, limit)
    } else {
        batches
    };
    Ok(QueryOutput {
        columns,
        schema,
        rows: total.min(limit),
        batches: batches.into_iter().filter(|b| b.num_rows() > 0).collect(),
        truncated,
        limit,
    })
}

/// Every row of `table`'s change data feed from version `start` on, as JSON objects with
/// `_change_type` and `_commit_version`.
pub(super) async fn change_rows(
    table: deltalake::DeltaTable,
    start: u64,
    timeout: Duration,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let what = "change data feed";
    let provider = deltalake::delta_datafusion::DeltaCdfTableProvider::try_new(
        table.scan_cdf().with_starting_version(start),
    )
    .map_err(|e| Error::upstream(what, e))?;
    let ctx = SessionContext::new();
    let df = ctx
        .read_table(Arc::new(provider))
        .map_err(|e| Error::upstream(what, e))?;
    json_rows_within(df, timeout, what).await
}

/// The rows inserted or updated (post-images) in `table` from version `start` on that match
/// the SQL condition `filter` over the table's columns, each a JSON object with its
/// `_commit_version`. A condition that does not parse or names unknown columns is
/// [`Error::BadInput`] with DataFusion's reason.
pub(super) async fn new_rows_where(
    table: deltalake::DeltaTable,
    start: u64,
    filter: Option<&str>,
    timeout: Duration,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    use deltalake::datafusion::prelude::{col, lit};
    let what = "change data feed";
    let provider = deltalake::delta_datafusion::DeltaCdfTableProvider::try_new(
        table.scan_cdf().with_starting_version(start),
    )
    .map_err(|e| Error::upstream(what, e))?;
    let ctx = SessionContext::new();
    let mut df = ctx
        .read_table(Arc::new(provider))
        .map_err(|e| Error::upstream(what, e))?
        .filter(
            col("_change_type")
                .eq(lit("insert"))
                .or(col("_change_type").eq(lit("update_postimage"))),
        )
        .map_err(|e| Error::upstream(what, e))?;
    if let Some(f) = filter.filter(|f| !f.trim().is_empty()) {
        let expr = df
            .parse_sql_expr(f)
            .map_err(|e| Error::BadInput(format!("filter `{f}` does not read: {e}")))?;
        df = df
            .filter(expr)
            .map_err(|e| Error::BadInput(format!("filter `{f}` cannot apply: {e}")))?;
    }
    json_rows_within(df, timeout, what).await
}

/// Collects `df` under the time limit, every row as a JSON object.
async fn json_rows_within(
    df: deltalake::datafusion::dataframe::DataFrame,
    timeout: Duration,
    what: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let schema = df.schema().inner().clone();
    let batches = tokio::time::timeout(timeout, df.collect())
        .await
        .map_err(|_| {
            Error::Upstream(format!(
                "{what}: not read within {}s (lakehouse.sql_timeout)",
                timeout.as_secs_f64()
            ))
        })?
        .map_err(|e| Error::upstream(what, e))?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    QueryOutput {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        schema,
        rows,
        batches,
        truncated: false,
        limit: rows,
    }
    .json_rows()
}

/// The first `limit` rows of `batches`.
fn cut(batches: Vec<RecordBatch>, limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let n = b.num_rows().min(left);
        out.push(b.slice(0, n));
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Found by the fuzz target `sql_guard` (`fuzz/`): a TPC-H query with `CASE (` nested 240
    /// deep never came back from DataFusion's parser (its time doubles with each level).
    #[test]
    fn deep_nesting_is_refused_before_the_parser_sees_it() {
        let deep = format!("SELECT {}1 FROM t", "CASE (".repeat(240));
        let started = std::time::Instant::now();
        let e = check_read_only(&deep).unwrap_err().to_string();
        assert!(e.contains("nests parentheses"), "{e}");
        assert!(!is_explain(&format!("EXPLAIN {deep}")));
        assert!(started.elapsed() < Duration::from_secs(1));
        // Parentheses in strings and comments do not count; a dozen real levels pass.
        let quoted = format!("SELECT '{}' -- {}\n", "(".repeat(50), "[".repeat(50));
        assert!(check_read_only(&quoted).is_ok());
        let twelve = format!("SELECT {}1{}", "(".repeat(12), ")".repeat(12));
        assert!(check_read_only(&twelve).is_ok());
        assert_eq!(nesting("SELECT ARRAY[(1), [2]] /* ((( */"), 2);
    }

    #[test]
    fn only_queries_pass() {
        assert!(check_read_only("SELECT 1").is_ok());
        assert!(check_read_only("with t as (select 1) select * from t").is_ok());
        assert!(check_read_only("EXPLAIN SELECT 1").is_ok());
        assert!(check_read_only("explain analyze select 1").is_ok());
        assert!(is_explain("-- the plan\nexplain select 1"));
        assert!(!is_explain("select 1") && !is_explain("not sql"));
        for bad in [
            "EXPLAIN DELETE FROM orders",
            "DROP TABLE orders",
            "INSERT INTO orders VALUES (1)",
            "DELETE FROM orders",
            "UPDATE orders SET a = 1",
            "CREATE TABLE x (a INT)",
            "COPY orders TO '/tmp/x.csv'",
            "SET datafusion.execution.batch_size = 1",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "SELECT 1; DROP TABLE orders",
            "EXPLAIN ANALYZE INSERT INTO orders VALUES (1)",
            "EXPLAIN COPY orders TO '/tmp/x.csv'",
        ] {
            let err = check_read_only(bad).unwrap_err().to_string();
            assert!(
                err.contains("refused") || err.contains("exactly one"),
                "{bad}: {err}"
            );
        }
    }
}
