//! Governed queries: SQL that sees only named views.
//!
//! A [`View`] is a name and a read-only query over the lakehouse's tables (for the semantic
//! layer: an entity's table with the caller's row filters and without the columns hidden from
//! them). [`Lakehouse::query_views`] plans each view the query names in a session that holds
//! the tables, then runs the query in a second session that holds *only* the views, so no text
//! the query contains can reach a table, a layer schema or a column the views leave out: there
//! is nothing else to name. Both sessions share the lakehouse's runtime (memory budget, Parquet
//! metadata cache), and the query passes the same read-only check, row limit and time limit as
//! `conveyor sql`.

use std::time::Duration;

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;

use super::{ColType, Lakehouse, Layer, sql};
use crate::error::{Error, Result};

/// A named read-only query the governed session shows as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The name queries use (an entity's name).
    pub name: String,
    /// A read-only query over `silver.`/`gold.`/`bronze.` tables (plain names mean silver).
    pub sql: String,
}

/// One column of a table or of a query's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Its type as a record type, `None` for types records do not have (lists, binary, …).
    pub ty: Option<ColType>,
    /// The engine's own name of the type (`Utf8`, `Decimal128(38, 2)`, …), for messages.
    pub engine_type: String,
}

impl ColumnInfo {
    fn of(name: &str, dt: &DataType) -> Self {
        let ty = match dt {
            // Results widen types (a sum of decimals, a count); say what they hold.
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Some(ColType::Int),
            DataType::Float32 => Some(ColType::Float),
            DataType::Utf8View | DataType::LargeUtf8 => Some(ColType::Text),
            DataType::Date64 => Some(ColType::Date),
            DataType::Timestamp(..) => Some(ColType::Timestamp),
            other => ColType::from_arrow(other),
        };
        Self {
            name: name.to_string(),
            ty,
            engine_type: dt.to_string(),
        }
    }

    /// Whether the column holds numbers.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self.ty,
            Some(ColType::Int | ColType::Float | ColType::Decimal(..))
        )
    }
}

impl Lakehouse {
    /// Most rows a query returns (`lakehouse.sql_row_limit`).
    pub fn row_limit(&self) -> usize {
        self.row_limit
    }

    /// Longest a query may run (`lakehouse.sql_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The columns of `LAYER.NAME` (conveyor's own `_` columns left out); `None` when the
    /// table does not exist.
    pub async fn columns(&self, layer: Layer, name: &str) -> Result<Option<Vec<ColumnInfo>>> {
        let Some(table) = self.load_current(layer, name).await? else {
            return Ok(None);
        };
        let snapshot = table.snapshot().map_err(|e| {
            Error::upstream(
                format!("reading the schema of {}.{name}", layer.as_str()),
                e,
            )
        })?;
        Ok(Some(
            snapshot
                .snapshot()
                .arrow_schema()
                .fields()
                .iter()
                .filter(|f| !super::is_meta(f.name()))
                .map(|f| ColumnInfo::of(f.name(), f.data_type()))
                .collect(),
        ))
    }

    /// Runs `text` (one read-only query) in a session whose only tables are `views`, under
    /// `limit` rows and `timeout`. A query naming anything else fails with the names it may use.
    pub async fn query_views(
        &self,
        views: &[View],
        text: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<super::QueryOutput> {
        let started = tokio::time::Instant::now();
        let (ctx, names) = tokio::time::timeout(timeout, self.view_session(views, text))
            .await
            .map_err(|_| too_slow(timeout))??;
        let left = timeout.saturating_sub(started.elapsed());
        sql::execute(self, ctx, &names, text, limit.max(1), left).await
    }

    /// The version of every table `text` reads through `views` (`None`: the table does not
    /// exist), in a stable order: a result computed at these versions is still the result
    /// while they are unchanged. Costs one log listing per table.
    pub async fn view_versions(
        &self,
        views: &[View],
        text: &str,
    ) -> Result<Vec<(String, Option<i64>)>> {
        let (_, wanted) = view_inputs(views, text)?;
        self.versions(wanted).await
    }

    /// The version of every table any of `views` reads, like [`Lakehouse::view_versions`].
    pub async fn views_versions(&self, views: &[View]) -> Result<Vec<(String, Option<i64>)>> {
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        let (_, wanted) = view_inputs(views, &format!("SELECT 1 FROM {}", names.join(", ")))?;
        self.versions(wanted).await
    }

    async fn versions(
        &self,
        mut wanted: Vec<super::TableName>,
    ) -> Result<Vec<(String, Option<i64>)>> {
        wanted.sort();
        let mut out = Vec::with_capacity(wanted.len());
        for t in wanted {
            let version = self
                .load_current(t.layer, &t.name)
                .await?
                .and_then(|table| table.version())
                .map(super::version_i64);
            out.push((t.to_string(), version));
        }
        Ok(out)
    }

    /// Plans `text` over `views` without running it: the columns of its result, or the
    /// planner's error (what a model is given back to correct its SQL).
    pub async fn plan_views(&self, views: &[View], text: &str) -> Result<Vec<ColumnInfo>> {
        let (ctx, names) = self.view_session(views, text).await?;
        let df = ctx
            .sql_with_options(text, sql::read_only_options())
            .await
            .map_err(|e| plan_error(&e.to_string(), &names))?;
        Ok(df
            .schema()
            .fields()
            .iter()
            .map(|f| ColumnInfo::of(f.name(), f.data_type()))
            .collect())
    }

    /// The session of `views` for `text`: the views `text` names, each planned over the
    /// tables, registered in a session of their own. Returns the names of every view, for
    /// messages.
    async fn view_session(
        &self,
        views: &[View],
        text: &str,
    ) -> Result<(SessionContext, Vec<String>)> {
        let (used, wanted) = view_inputs(views, text)?;
        let base = if used.is_empty() {
            None
        } else {
            Some(sql::session(self, &wanted).await?.0)
        };
        let ctx = self.query_engine()?;
        for v in used {
            let Some(base) = &base else { break };
            let df = base
                .sql_with_options(&v.sql, sql::read_only_options())
                .await
                .map_err(|e| {
                    Error::BadInput(format!("the view `{}` cannot be planned: {e}", v.name))
                })?;
            ctx.register_table(v.name.as_str(), df.into_view())
                .map_err(|e| Error::internal("registering a view", e))?;
        }
        Ok((ctx, views.iter().map(|v| v.name.clone()).collect()))
    }
}

/// The views `text` names and the tables they read. The same check as `conveyor sql` runs on
/// `text` first, before anything is planned.
fn view_inputs<'v>(
    views: &'v [View],
    text: &str,
) -> Result<(Vec<&'v View>, Vec<super::TableName>)> {
    let named = super::model_inputs(text)?;
    let used: Vec<&View> = views
        .iter()
        .filter(|v| {
            named
                .iter()
                .any(|t| t.layer == Layer::Silver && t.name.eq_ignore_ascii_case(&v.name))
        })
        .collect();
    let mut wanted: Vec<super::TableName> = Vec::new();
    for v in &used {
        for t in super::model_inputs(&v.sql).map_err(|e| {
            Error::Internal(format!(
                "the view `{}` is not a read-only query: {e}",
                v.name
            ))
        })? {
            if !wanted.contains(&t) {
                wanted.push(t);
            }
        }
    }
    Ok((used, wanted))
}

fn too_slow(timeout: Duration) -> Error {
    Error::BadInput(format!(
        "the query did not finish within {}s (lakehouse.sql_timeout); add a filter or a LIMIT",
        timeout.as_secs_f64()
    ))
}

/// A planning error, with the tables the query may use when it named another.
fn plan_error(error: &str, names: &[String]) -> Error {
    let mut msg = format!("the query failed: {error}");
    if msg.contains("not found") {
        if names.is_empty() {
            msg.push_str(" (no tables are available to you)");
        } else {
            msg.push_str(&format!(" (tables: {})", names.join(", ")));
        }
    }
    Error::BadInput(msg)
}
