//! Gold models: one SQL query over silver (and other gold) tables, materialised into a Delta
//! table `gold/NAME`, overwritten as a new table version each time it is rebuilt.
//!
//! The query passes the same read-only check as `conveyor sql` before anything is planned,
//! and runs in the same session (every table registered under its layer). The result
//! replaces the table's contents in one Delta commit, so a model that fails leaves its
//! previous version as it was.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::sql::parser::DFParser;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use super::sql::{check_read_only, session};
use super::{Lakehouse, Layer, delta_err, version_i64};
use crate::error::{Error, Result};

/// A table a model reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// `Silver`, `Gold` or `Bronze`.
    pub layer: Layer,
    /// The table's name.
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.layer.as_str(), self.name)
    }
}

/// What building a model wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldBuild {
    /// The gold table's version after the build.
    pub version: i64,
    /// Rows in the table.
    pub rows: u64,
}

/// The tables `sql` reads, after checking it is one read-only query. A plain name means the
/// silver table of that name (as in `conveyor sql`).
pub fn model_inputs(sql: &str) -> Result<Vec<TableName>> {
    check_read_only(sql)?;
    let statements = DFParser::parse_sql(sql)
        .map_err(|e| Error::BadInput(format!("the SQL does not parse: {e}")))?;
    let statement = statements
        .front()
        .ok_or_else(|| Error::BadInput("the SQL holds no query".into()))?;
    let state = deltalake::datafusion::prelude::SessionContext::new().state();
    let refs = state
        .resolve_table_references(statement)
        .map_err(|e| Error::BadInput(format!("the SQL's tables cannot be read: {e}")))?;
    let mut out = Vec::new();
    for r in refs {
        let (schema, table) = match &r {
            TableReference::Bare { table } => (None, table.as_ref()),
            TableReference::Partial { schema, table } => (Some(schema.as_ref()), table.as_ref()),
            TableReference::Full { .. } => {
                return Err(Error::BadInput(format!(
                    "`{r}`: name tables as silver.NAME, gold.NAME, bronze.NAME or plain NAME"
                )));
            }
        };
        let layer = match schema {
            None | Some("silver") => Layer::Silver,
            Some("gold") => Layer::Gold,
            Some("bronze") => Layer::Bronze,
            Some(other) => {
                return Err(Error::BadInput(format!(
                    "`{r}`: there is no schema `{other}`; the lakehouse has bronze, silver and gold"
                )));
            }
        };
        let t = TableName {
            layer,
            name: table.to_string(),
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out.sort();
    Ok(out)
}

impl Lakehouse {
    /// Runs the model's query and overwrites `gold/NAME` with the result as a new version.
    pub async fn build_gold(&self, name: &str, sql: &str) -> Result<GoldBuild> {
        let wanted = model_inputs(sql)?;
        let (ctx, _) = session(self, &wanted).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let failed = |e: deltalake::datafusion::error::DataFusionError| {
            Error::BadInput(format!("the query failed: {e}"))
        };
        let df = ctx.sql_with_options(sql, options).await.map_err(failed)?;
        let schema = df.schema().inner().clone();
        let work = df.collect();
        let batches = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                Error::BadInput(format!(
                    "the query did not finish within {}s (lakehouse.sql_timeout)",
                    self.timeout.as_secs_f64()
                ))
            })?
            .map_err(failed)?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let batches = if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        };
        let table = self.load_or_new(Layer::Gold, name).await?;
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .await
            .map_err(delta_err(format!("writing gold.{name}")))?;
        let version = table.version().map(version_i64).ok_or_else(|| {
            Error::Internal(format!("gold.{name} has no version after writing it"))
        })?;
        Ok(GoldBuild { version, rows })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn inputs_are_found_and_writes_refused() {
        let t = model_inputs(
            "SELECT c.plan, sum(o.total) FROM silver.orders o JOIN customers c ON o.customer_id = c.id \
             JOIN gold.x g ON g.a = c.id GROUP BY c.plan",
        )
        .unwrap();
        let names: Vec<String> = t.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["silver.customers", "silver.orders", "gold.x"]);
        assert!(model_inputs("DROP TABLE orders").is_err());
        assert!(model_inputs("SELECT * FROM other.t").is_err());
    }
}
