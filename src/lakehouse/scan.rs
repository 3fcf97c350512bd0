//! Delta tables read by DataFusion's own Parquet scan, for queries.
//!
//! delta-rs' table provider reads a table through the Delta kernel: every batch is split by
//! file, passed through the kernel's expression evaluator and adapted again, Parquet footers
//! are read again for every query, and filters are always evaluated inside the Parquet decoder
//! (slower than a filter above the scan for most analytical queries). For the tables conveyor
//! writes (no deletion vectors, no column mapping) a Delta snapshot is nothing more than a list
//! of Parquet files with their partition values and row counts, so queries read those files
//! with DataFusion's Parquet scan directly: footers come from the runtime's metadata cache,
//! row groups and pages are pruned by their statistics, files by their partition values, and
//! the row counts from the Delta log feed the join planner.
//!
//! A table that uses a feature this reader does not handle (deletion vectors, column mapping,
//! files outside the table's directory) is read by delta-rs' own provider instead.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::{ScalarValue, Statistics};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::object_store::ObjectStoreUrl;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use deltalake::datafusion::datasource::table_schema::TableSchema;
use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use deltalake::logstore::LogStore;

use crate::error::{Error, Result};

/// One snapshot of a Delta table as a list of Parquet files.
pub(super) struct ParquetSnapshot {
    /// The table's columns, in the order (and with the types) delta-rs presents them.
    schema: SchemaRef,
    /// The columns stored in the files, then the partition columns (DataFusion's order).
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    /// For each column of `schema`, its index in `file_schema` + `partition_fields`.
    physical: Vec<usize>,
    store: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    statistics: Statistics,
}

impl fmt::Debug for ParquetSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParquetSnapshot")
            .field("store", &self.store)
            .field("files", &self.files.len())
            .finish()
    }
}

impl ParquetSnapshot {
    /// The snapshot of `table` as Parquet files, with `schema` (delta-rs' provider's schema,
    /// so a query sees the same column types either way). `None` when the table needs delta-rs'
    /// reader: deletion vectors, column mapping, a file outside the table's directory, or a
    /// partition value that does not parse as its column's type.
    pub(super) fn try_new(
        table: &DeltaTable,
        schema: SchemaRef,
        session: &dyn Session,
    ) -> Result<Option<Self>> {
        let state = table
            .snapshot()
            .map_err(|e| Error::upstream("lakehouse: reading a table's snapshot", e))?;
        // Column mapping (Delta's `delta.columnMapping.mode` = `name` or `id`) stores columns
        // under physical names that only the kernel translates.
        if state
            .metadata()
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|mode| !mode.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let partition_columns = state.metadata().partition_columns();
        let mut file_fields = Vec::new();
        let mut partition_fields: Vec<FieldRef> = Vec::new();
        for name in partition_columns {
            let Ok(field) = schema.field_with_name(name) else {
                return Ok(None);
            };
            partition_fields.push(Arc::new(field.clone()));
        }
        let mut physical = Vec::with_capacity(schema.fields().len());
        // A log naming a partition column twice is left to delta-rs.
        let Some(stored) = schema.fields().len().checked_sub(partition_fields.len()) else {
            return Ok(None);
        };
        for field in schema.fields() {
            match partition_columns.iter().position(|p| p == field.name()) {
                Some(i) => physical.push(stored + i),
                None => {
                    physical.push(file_fields.len());
                    file_fields.push(field.clone());
                }
            }
        }
        if file_fields.len() != stored {
            return Ok(None);
        }

        let file_schema = Arc::new(Schema::new(file_fields));
        let physical_schema = Schema::new(
            file_schema
                .fields()
                .iter()
                .chain(partition_fields.iter())
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut files = Vec::with_capacity(state.log_data().num_files());
        let mut rows = Precision::Exact(0usize);
        let mut bytes = Precision::Exact(0usize);
        for view in state.log_data().iter() {
            if view.deletion_vector_descriptor().is_some() || view.path().contains("://") {
                return Ok(None);
            }
            let mut partition_values = Vec::with_capacity(partition_fields.len());
            if !partition_fields.is_empty() {
                let values = view.partition_values_map();
                for field in &partition_fields {
                    let value = match values.get(field.name()).cloned().flatten() {
                        Some(text) => match partition_value(&text, field.data_type()) {
                            Some(v) => v,
                            None => return Ok(None),
                        },
                        None => match ScalarValue::try_from(field.data_type()) {
                            Ok(v) => v,
                            Err(_) => return Ok(None),
                        },
                    };
                    partition_values.push(value);
                }
            }
            let size = u64::try_from(view.size()).unwrap_or(0);
            let mut file = PartitionedFile::new(view.object_store_path().to_string(), size);
            file.partition_values = partition_values;
            let file_rows = match view.num_records() {
                Some(n) => Precision::Exact(n),
                None => Precision::Absent,
            };
            let file_bytes = Precision::Inexact(usize::try_from(size).unwrap_or(usize::MAX));
            rows = rows.add(&file_rows);
            bytes = bytes.add(&file_bytes);
            let mut stats = Statistics::new_unknown(&physical_schema);
            stats.num_rows = file_rows;
            stats.total_byte_size = file_bytes;
            if let Some(json) = view.stats() {
                file_column_bounds(&json, &file_schema, &mut stats);
            }
            file.statistics = Some(Arc::new(stats));
            files.push(file);
        }
        let mut statistics = Statistics::new_unknown(&physical_schema);
        statistics.num_rows = rows;
        statistics.total_byte_size = bytes;

        // The table's directory as an object store of its own (paths in the log are relative).
        let log_store = table.log_store();
        let store = log_store.object_store_url();
        let runtime = session.runtime_env();
        if runtime.object_store(&store).is_err() {
            runtime.register_object_store(store.as_ref(), log_store.object_store(None));
        }
        Ok(Some(ParquetSnapshot {
            file_schema,
            partition_fields,
            physical,
            schema,
            store,
            files,
            statistics,
        }))
    }
}

/// Per-file bounds of the columns whose Delta statistics are exact values (integers, dates,
/// timestamps), which let DataFusion skip whole files: `{"minValues": {…}, "maxValues": {…},
/// "nullCount": {…}}` of the file's `add` action. Text bounds may be truncated prefixes and
/// decimals pass through JSON floats, so they are left to the Parquet footers.
fn file_column_bounds(json: &str, file_schema: &Schema, stats: &mut Statistics) {
    let Ok(serde_json::Value::Object(parsed)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return;
    };
    let section = |key: &str| parsed.get(key).and_then(serde_json::Value::as_object);
    let (min, max, nulls) = (
        section("minValues"),
        section("maxValues"),
        section("nullCount"),
    );
    for (i, field) in file_schema.fields().iter().enumerate() {
        let Some(column) = stats.column_statistics.get_mut(i) else {
            continue;
        };
        if let Some(n) = nulls
            .and_then(|m| m.get(field.name()))
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
        {
            column.null_count = Precision::Exact(n);
        }
        let ty = field.data_type();
        let bounded = ty.is_integer()
            || matches!(
                ty,
                DataType::Date32 | DataType::Timestamp(TimeUnit::Microsecond, _)
            );
        if !bounded {
            continue;
        }
        let value = |m: Option<&serde_json::Map<String, serde_json::Value>>| {
            let v = m?.get(field.name())?;
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => return None,
            };
            ScalarValue::try_from_string(text, ty)
                .ok()
                .filter(|v| !v.is_null())
        };
        let (Some(low), Some(high)) = (value(min), value(max)) else {
            continue;
        };
        // Delta keeps timestamps to the millisecond: the true maximum can be up to 999 µs later.
        let high = match high {
            ScalarValue::TimestampMicrosecond(Some(us), tz) => {
                ScalarValue::TimestampMicrosecond(Some(us.saturating_add(999)), tz)
            }
            other => other,
        };
        column.min_value = Precision::Exact(low);
        column.max_value = Precision::Exact(high);
    }
}

/// A partition value from its text in the Delta log (`2024-05-01`, `12.50`, `true`, …).
fn partition_value(text: &str, data_type: &DataType) -> Option<ScalarValue> {
    if text.is_empty() && data_type != &DataType::Utf8 && data_type != &DataType::Utf8View {
        return ScalarValue::try_from(data_type).ok();
    }
    ScalarValue::try_from_string(text.to_string(), data_type).ok()
}

#[async_trait]
impl TableProvider for ParquetSnapshot {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projected: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.physical[i]).collect(),
            None => self.physical.clone(),
        };
        if self.files.is_empty() {
            let schema = Arc::new(self.schema.project(
                projection.map_or(&(0..self.schema.fields().len()).collect::<Vec<_>>(), |p| p),
            )?);
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let source = format.file_source(table_schema);
        let groups =
            FileGroup::new(self.files.clone()).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.store.clone(), source)
            .with_file_groups(groups)
            .with_statistics(self.statistics.clone())
            .with_projection_indices(Some(projected))?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The scan prunes with them; a filter above it still removes every row they exclude.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
