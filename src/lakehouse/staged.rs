//! Records staged on disk: the rows of an untyped source (CSV, JSON, JSON Lines, text files,
//! HTTP APIs) written, as they are read, to local Parquet files, while their column types are
//! inferred.
//!
//! A [`RecordStager`] keeps one batch of `lakehouse.batch_rows` rows in memory, as text
//! columns (the values as the source sent them; JSON numbers, booleans and nested values as
//! their JSON text), and classifies every value as it arrives (see [`records::classify`]).
//! When the run is read, the lakehouse knows every column's type without having held the run:
//! bronze gets the text as it is, and silver's values are parsed from it with the rules of
//! records ([`text_column`]) while the files are streamed into the Delta writers.
//!
//! A staged file also holds where each row came from: `_source` (the file or object) and the
//! row's line, stored under `_run_id` (a name no source column may use; it never reaches a
//! table). A column that first appears after rows were written starts a new file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Array,
    Int64Builder, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::records::{self, ColType, Inferred, SourceRecord};
use super::typed::{ParquetFile, ParquetInput};
use super::{RUN_ID, SOURCE, is_meta};
use crate::error::{Error, Result};

/// The text a stager holds before it writes a batch, whatever the rows (wide rows make
/// shorter batches).
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// The column of a staged file holding each row's line in its source.
pub const LINE: &str = RUN_ID;

/// How a staged file's text is read into typed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// Blank text is a missing value (CSV), rather than an empty string (JSON).
    pub blank_is_null: bool,
}

/// What a [`RecordStager`] wrote: the files, every column with the type that holds all of its
/// values (in the order first seen), and the rows.
#[derive(Debug, Clone, Default)]
pub struct StagedRecords {
    /// The staged files, in the order the rows were read.
    pub files: Vec<ParquetInput>,
    /// Every column with its inferred type (and, for text, the value that made it text).
    pub columns: Vec<Inferred>,
    /// Rows staged.
    pub rows: u64,
    /// The folder the files are in, when the stager made it (removed with the last clone).
    pub dir: Option<Arc<tempfile::TempDir>>,
}

struct Column {
    inferred: Inferred,
    values: StringBuilder,
}

/// Writes a run's records to staged Parquet files in batches, inferring column types as it
/// goes (see the module documentation). Blocking work.
pub struct RecordStager {
    dir: PathBuf,
    keep: Option<Arc<tempfile::TempDir>>,
    text: bool,
    batch_rows: usize,
    columns: Vec<Column>,
    position: HashMap<String, usize>,
    sources: StringBuilder,
    lines: Int64Builder,
    pending: usize,
    /// Bytes of text in the pending rows.
    bytes: usize,
    file: Option<ParquetFile>,
    /// Columns of the file being written (fixed once its first batch is written).
    file_columns: Option<usize>,
    files: Vec<ParquetInput>,
    rows: u64,
    /// Which columns the row being added has.
    scratch: Vec<bool>,
}

impl RecordStager {
    /// A stager writing into `dir` (which must exist). `text` says every value arrives as
    /// text (CSV): types are read from the text, and blank text is a missing value.
    pub fn new(dir: &Path, text: bool, batch_rows: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            keep: None,
            text,
            batch_rows: batch_rows.max(1),
            columns: Vec::new(),
            position: HashMap::new(),
            sources: StringBuilder::new(),
            lines: Int64Builder::new(),
            pending: 0,
            bytes: 0,
            file: None,
            file_columns: None,
            files: Vec::new(),
            rows: 0,
            scratch: Vec::new(),
        }
    }

    /// A stager writing into a new temporary folder (under `TMPDIR`), removed when the last
    /// clone of the [`StagedRecords`] is dropped.
    pub fn temporary(text: bool, batch_rows: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("conveyor-stage-")
            .tempdir()
            .map_err(|e| {
                Error::Upstream(format!(
                    "cannot make a staging folder under {}: {e}; set TMPDIR to a writable folder with room for the run",
                    std::env::temp_dir().display()
                ))
            })?;
        let mut stager = Self::new(dir.path(), text, batch_rows);
        stager.keep = Some(Arc::new(dir));
        Ok(stager)
    }

    /// Rows staged so far.
    pub fn rows(&self) -> u64 {
        self.rows + self.pending as u64
    }

    /// The position of column `name`, added when it is new. `source` and `line` name the
    /// record for the message when the name is reserved.
    fn column(&mut self, name: &str, source: &str, line: u64) -> Result<usize> {
        if let Some(&i) = self.position.get(name) {
            return Ok(i);
        }
        if is_meta(name) {
            return Err(Error::BadInput(format!(
                "{source} line {line} has a column named `{name}`, which conveyor reserves for its own bookkeeping; rename it at the source"
            )));
        }
        // A file's schema is fixed once a batch of it is written: the rows before this
        // one go to it, and a new file starts with the new column.
        if self.file_columns.is_some() {
            self.flush()?;
            self.close_file()?;
        }
        let mut values = StringBuilder::new();
        values.append_nulls(self.pending);
        self.columns.push(Column {
            inferred: Inferred {
                name: name.to_string(),
                ty: ColType::Null,
                example: None,
            },
            values,
        });
        self.position
            .insert(name.to_string(), self.columns.len() - 1);
        Ok(self.columns.len() - 1)
    }

    /// Registers the columns of a header (CSV): their positions, in the header's order.
    pub fn header(&mut self, names: &[String], source: &str) -> Result<Vec<usize>> {
        names.iter().map(|n| self.column(n, source, 1)).collect()
    }

    /// Adds one record (a JSON object).
    pub fn push(&mut self, record: &SourceRecord) -> Result<()> {
        let mut at = Vec::with_capacity(record.data.len());
        for name in record.data.keys() {
            at.push(self.column(name, &record.source, record.line)?);
        }
        self.scratch.clear();
        self.scratch.resize(self.columns.len(), false);
        for (i, value) in at.into_iter().zip(record.data.values()) {
            self.scratch[i] = true;
            let column = &mut self.columns[i];
            note(column, value, self.text, &record.source, record.line);
            match value {
                Value::Null => column.values.append_null(),
                Value::String(s) => {
                    self.bytes += s.len();
                    column.values.append_value(s);
                }
                other => {
                    let s = other.to_string();
                    self.bytes += s.len();
                    column.values.append_value(s);
                }
            }
        }
        for (i, seen) in self.scratch.iter().enumerate() {
            if !seen {
                self.columns[i].values.append_null();
            }
        }
        self.end_row(&record.source, record.line)
    }

    /// Adds one row of text values (a CSV row) for the columns at `columns` (from
    /// [`Self::header`]); columns the row does not have are missing.
    pub fn push_text<'a>(
        &mut self,
        source: &str,
        line: u64,
        columns: &[usize],
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let complete = columns.len() == self.columns.len();
        if !complete {
            self.scratch.clear();
            self.scratch.resize(self.columns.len(), false);
        }
        for (&i, value) in columns.iter().zip(values) {
            let column = &mut self.columns[i];
            let c = &mut column.inferred;
            // A text column stays text whatever comes: no need to classify its values.
            if c.ty != ColType::Text {
                let ty = records::classify_text(value);
                let unified = c.ty.unify(ty);
                if unified == ColType::Text && c.example.is_none() && ty != ColType::Null {
                    c.example = Some(format!("{} in {source} line {line}", records::short(value)));
                }
                c.ty = unified;
            }
            column.values.append_value(value);
            self.bytes += value.len();
            if !complete {
                self.scratch[i] = true;
            }
        }
        if !complete {
            for (i, seen) in self.scratch.iter().enumerate() {
                if !seen {
                    self.columns[i].values.append_null();
                }
            }
        }
        self.end_row(source, line)
    }

    fn end_row(&mut self, source: &str, line: u64) -> Result<()> {
        self.sources.append_value(source);
        self.lines
            .append_value(i64::try_from(line).unwrap_or(i64::MAX));
        self.pending += 1;
        if self.pending >= self.batch_rows || self.bytes >= MAX_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending rows as one batch.
    fn flush(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut fields = Vec::with_capacity(self.columns.len() + 2);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 2);
        for c in &mut self.columns {
            fields.push(Field::new(&c.inferred.name, DataType::Utf8, true));
            arrays.push(Arc::new(c.values.finish()));
        }
        fields.push(Field::new(SOURCE, DataType::Utf8, true));
        arrays.push(Arc::new(self.sources.finish()));
        fields.push(Field::new(LINE, DataType::Int64, true));
        arrays.push(Arc::new(self.lines.finish()));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema, arrays)
            .map_err(|e| Error::internal("lakehouse: staging a batch", e))?;
        let n = self.files.len();
        let file = self.file.get_or_insert_with(|| {
            ParquetFile::new(self.dir.join(format!("records-{n:05}.parquet")))
                .with_properties(staging_properties())
        });
        file.write(&batch)?;
        self.file_columns = Some(self.columns.len());
        self.rows += self.pending as u64;
        self.pending = 0;
        self.bytes = 0;
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        self.file_columns = None;
        if let Some(file) = self.file.take()
            && let Some((path, _)) = file.close()?
        {
            self.files.push(ParquetInput {
                source: "the run's staged records".into(),
                path,
                staged: Some(Staged {
                    blank_is_null: self.text,
                }),
            });
        }
        Ok(())
    }

    /// Writes what is left and closes the last file.
    pub fn finish(mut self) -> Result<StagedRecords> {
        self.flush()?;
        self.close_file()?;
        Ok(StagedRecords {
            files: self.files,
            columns: self.columns.into_iter().map(|c| c.inferred).collect(),
            rows: self.rows,
            dir: self.keep,
        })
    }
}

/// Classifies `value` into `column`'s type (remembering the value that made it text).
fn note(column: &mut Column, value: &Value, text: bool, source: &str, line: u64) {
    let c = &mut column.inferred;
    if c.ty == ColType::Text {
        return;
    }
    let ty = records::classify(value, text);
    let unified = c.ty.unify(ty);
    if unified == ColType::Text && c.example.is_none() && ty != ColType::Null {
        c.example = Some(format!(
            "{} in {source} line {line}",
            records::short(&records::render(value))
        ));
    }
    c.ty = unified;
}

/// Staged files are read back a few times and then deleted: fast compression, no statistics.
fn staging_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(65_536))
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

/// Where a row of a staged batch came from, for messages.
pub struct Origin<'a> {
    /// `_source`.
    pub sources: Option<&'a StringArray>,
    /// The lines.
    pub lines: Option<&'a Int64Array>,
}

impl Origin<'_> {
    /// `SOURCE line N` of row `i`.
    pub fn at(&self, i: usize) -> String {
        let source = self
            .sources
            .filter(|s| s.is_valid(i))
            .map_or("a record", |s| s.value(i));
        match self.lines.filter(|l| l.is_valid(i)) {
            Some(l) => format!("{source} line {}", l.value(i)),
            None => source.to_string(),
        }
    }
}

/// The staged text of column `name` read as `target` (a silver column's type) with the rules
/// of records: integers, floats, decimals, booleans, `YYYY-MM-DD` dates and RFC 3339
/// timestamps parsed from the text (surrounding blanks ignored), text kept as it is. With
/// `blank_is_null` blank text is a missing value. A value that cannot be read fails naming
/// the column, where the value came from and the value.
pub fn text_column(
    name: &str,
    text: &StringArray,
    target: &DataType,
    blank_is_null: bool,
    origin: &Origin<'_>,
) -> Result<ArrayRef> {
    let Some(ty) = ColType::from_arrow(target) else {
        return Err(Error::BadInput(format!(
            "column `{name}` has the type {target} in the table, which records cannot be written as; rename the column at the source or drop the table"
        )));
    };
    let n = text.len();
    let bad = |i: usize| {
        Error::BadInput(format!(
            "column `{name}` is {} but {} has {} there",
            ty.name(),
            origin.at(i),
            records::short(text.value(i))
        ))
    };
    // Each value, trimmed; `None` for missing (and blank, with `blank_is_null`).
    let cell = |i: usize| -> Option<&str> {
        if text.is_null(i) {
            return None;
        }
        let t = text.value(i).trim();
        (!(blank_is_null && t.is_empty())).then_some(t)
    };
    macro_rules! parsed {
        ($builder:expr, $parse:expr) => {{
            let mut b = $builder;
            for i in 0..n {
                match cell(i) {
                    None => b.append_null(),
                    Some(t) => b.append_value($parse(t).ok_or_else(|| bad(i))?),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let built: ArrayRef = match ty {
        ColType::Int => parsed!(Int64Builder::with_capacity(n), |t: &str| t
            .parse::<i64>()
            .ok()),
        ColType::Float => parsed!(Float64Builder::with_capacity(n), |t: &str| t
            .parse::<f64>()
            .ok()),
        ColType::Decimal(p, s) => {
            let mut b = Decimal128Builder::with_capacity(n);
            for i in 0..n {
                match cell(i) {
                    None => b.append_null(),
                    Some(t) => {
                        b.append_value(records::parse_decimal(t, p, s).ok_or_else(|| bad(i))?)
                    }
                }
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| Error::internal("lakehouse: a decimal column", e))?,
            )
        }
        ColType::Date => parsed!(Date32Builder::with_capacity(n), records::parse_date),
        ColType::Bool => parsed!(BooleanBuilder::with_capacity(n), records::parse_bool_text),
        ColType::Timestamp => parsed!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            records::parse_timestamp
        ),
        ColType::Null | ColType::Text => {
            if !blank_is_null
                || !(0..n).any(|i| text.is_valid(i) && text.value(i).trim().is_empty())
            {
                Arc::new(text.clone())
            } else {
                Arc::new(
                    (0..n)
                        .map(|i| {
                            (text.is_valid(i) && !text.value(i).trim().is_empty())
                                .then(|| text.value(i))
                        })
                        .collect::<StringArray>(),
                )
            }
        }
    };
    if built.data_type() == target {
        return Ok(built);
    }
    // The table's column is narrower than ours (an `Int32` or `decimal(10,2)` column of a
    // table first written from a typed source): a value that does not fit is an error.
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&built, target, &strict).map_err(|e| {
        Error::BadInput(format!(
            "column `{name}` is {target} in the table and this run's values cannot be stored as that: {e}"
        ))
    })
}

/// Whether the staged text `t` (not missing) can be read as `ty`.
pub fn fits_text(t: &str, ty: ColType) -> bool {
    let t = t.trim();
    match ty {
        ColType::Int => t.parse::<i64>().is_ok(),
        ColType::Float => t.parse::<f64>().is_ok(),
        ColType::Decimal(p, s) => records::parse_decimal(t, p, s).is_some(),
        ColType::Date => records::parse_date(t).is_some(),
        ColType::Bool => records::parse_bool_text(t).is_some(),
        ColType::Timestamp => records::parse_timestamp(t).is_some(),
        ColType::Null | ColType::Text => true,
    }
}

/// Values of the `declared` columns of staged `files` that cannot be read as their declared
/// type: by column, the first one (as `"value" in SOURCE line N`) and how many there are.
/// Reads only those columns. Blocking work.
pub fn misfits(
    files: &[ParquetInput],
    declared: &[(String, ColType)],
    batch_rows: usize,
) -> Result<BTreeMap<String, (String, usize)>> {
    use deltalake::parquet::arrow::ProjectionMask;
    let mut found: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for file in files {
        let blank_is_null = file.staged.is_some_and(|s| s.blank_is_null);
        let builder = super::typed::open(&file.path)?;
        let wanted: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.name() == SOURCE
                    || f.name() == LINE
                    || declared.iter().any(|(n, _)| n == f.name())
            })
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::BadInput(format!("{} cannot be read: {e}", file.path.display()))
        };
        let reader = builder
            .with_batch_size(batch_rows.max(1))
            .with_projection(mask)
            .build()
            .map_err(|e| unreadable(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| unreadable(&e))?;
            let origin = Origin {
                sources: batch
                    .column_by_name(SOURCE)
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>()),
                lines: batch
                    .column_by_name(LINE)
                    .and_then(|a| a.as_any().downcast_ref::<Int64Array>()),
            };
            for (name, ty) in declared {
                let Some(text) = batch
                    .column_by_name(name)
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                else {
                    continue;
                };
                for i in 0..text.len() {
                    if text.is_null(i) {
                        continue;
                    }
                    let t = text.value(i);
                    if (blank_is_null && t.trim().is_empty()) || fits_text(t, *ty) {
                        continue;
                    }
                    let entry = found.entry(name.clone()).or_insert_with(|| {
                        (format!("{} in {}", records::short(t), origin.at(i)), 0)
                    });
                    entry.1 += 1;
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn text_is_read_with_record_rules() {
        let text = StringArray::from(vec![Some(" 42 "), Some(""), None, Some("-7")]);
        let origin = Origin {
            sources: None,
            lines: None,
        };
        let ints = text_column("n", &text, &DataType::Int64, true, &origin).unwrap();
        assert_eq!(ints.null_count(), 2);
        let err = text_column("n", &text, &DataType::Int64, false, &origin).unwrap_err();
        assert!(err.to_string().contains("column `n` is integer"), "{err}");
        let kept = text_column("n", &text, &DataType::Utf8, false, &origin).unwrap();
        assert_eq!(kept.null_count(), 1);
        let blanked = text_column("n", &text, &DataType::Utf8, true, &origin).unwrap();
        assert_eq!(blanked.null_count(), 2);
        let dec = StringArray::from(vec!["12.50", "3"]);
        let d = text_column("d", &dec, &DataType::Decimal128(10, 2), true, &origin).unwrap();
        assert_eq!(d.data_type(), &DataType::Decimal128(10, 2));
    }

    #[test]
    fn a_new_column_after_a_written_batch_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RecordStager::new(dir.path(), false, 2);
        let rec = |line: u64, v: Value| SourceRecord {
            source: "a.json".into(),
            line,
            data: v.as_object().cloned().unwrap(),
        };
        s.push(&rec(1, serde_json::json!({"id": 1, "x": "a"})))
            .unwrap();
        s.push(&rec(2, serde_json::json!({"id": 2}))).unwrap();
        s.push(&rec(3, serde_json::json!({"id": 3, "y": true})))
            .unwrap();
        let staged = s.finish().unwrap();
        assert_eq!(staged.rows, 3);
        assert_eq!(staged.files.len(), 2);
        let types: Vec<(String, ColType)> = staged
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect();
        assert_eq!(
            types,
            vec![
                ("id".into(), ColType::Int),
                ("x".into(), ColType::Text),
                ("y".into(), ColType::Bool)
            ]
        );
        let err = RecordStager::new(dir.path(), false, 2)
            .push(&rec(9, serde_json::json!({"_source": 1})))
            .unwrap_err();
        assert!(err.to_string().contains("a.json line 9"), "{err}");
    }
}
