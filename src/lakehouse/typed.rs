//! Typed sources: Parquet files streamed into bronze and silver in record batches.
//!
//! A typed source's schema is kept: decimals stay `Decimal128(p,s)`, dates `Date32`,
//! timestamps with or without a zone, integers of each width, binary, lists and structs.
//! Only what Delta cannot store is mapped (see [`storable`]): unsigned integers to the next
//! signed width, nanosecond timestamps to microseconds, views and large variants to their
//! plain form, times of day to text.
//!
//! Nothing here holds a table in memory. The files are read in batches of
//! `lakehouse.batch_rows` rows by a blocking reader that hands them to the Delta writer
//! through a channel of two batches (back-pressure), once for bronze and once for silver;
//! the silver MERGE reads the same stream as its source. Every check that can fail on the
//! data (schemas that differ between files, types the table cannot hold, duplicate keys) runs
//! before the first write, on the files' metadata or on the key columns alone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::staged::{self, Staged};
use super::{FETCHED_AT, RUN_ID, SOURCE, is_meta};
use crate::error::{Error, Result};

/// A Parquet file a run hands to the lakehouse whole; its rows are streamed, never loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetInput {
    /// The name it is known by (stored in `_source`), e.g. `lineitem.parquet`.
    pub source: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Set for a file of staged records (see `staged`): every column is text, read with the
    /// rules of records, and `_source` and the line are columns of the file.
    pub staged: Option<Staged>,
}

/// The rows of a Parquet file, from its footer (nothing else is read).
pub fn parquet_row_count(path: &std::path::Path) -> Result<u64> {
    let builder = open(path)?;
    Ok(u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0))
}

pub(super) fn open(
    path: &std::path::Path,
) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::BadInput(format!("cannot open {}: {e}", path.display())))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        Error::BadInput(format!(
            "{} is not a readable Parquet file: {e}",
            path.display()
        ))
    })
}

/// The type a column of a typed source is stored with in a Delta table, or why it cannot be.
pub fn storable(dt: &DataType) -> std::result::Result<DataType, String> {
    use DataType as D;
    let field = |f: &Field| -> std::result::Result<Arc<Field>, String> {
        Ok(Arc::new(Field::new(
            f.name(),
            storable(f.data_type())?,
            true,
        )))
    };
    Ok(match dt {
        D::Boolean
        | D::Int8
        | D::Int16
        | D::Int32
        | D::Int64
        | D::Float32
        | D::Float64
        | D::Date32
        | D::Binary
        | D::Utf8 => dt.clone(),
        // A column that held only nulls: text, which takes anything later.
        D::Null => D::Utf8,
        D::UInt8 => D::Int16,
        D::UInt16 => D::Int32,
        D::UInt32 => D::Int64,
        D::UInt64 => D::Decimal128(20, 0),
        D::Float16 => D::Float32,
        D::Utf8View | D::LargeUtf8 => D::Utf8,
        D::BinaryView | D::LargeBinary | D::FixedSizeBinary(_) => D::Binary,
        D::Date64 => D::Date32,
        D::Timestamp(_, Some(_)) => D::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        D::Timestamp(_, None) => D::Timestamp(TimeUnit::Microsecond, None),
        // Delta has no time-of-day type.
        D::Time32(_) | D::Time64(_) => D::Utf8,
        D::Duration(_) => D::Int64,
        D::Decimal32(p, s) | D::Decimal64(p, s) => D::Decimal128(*p, *s),
        D::Decimal128(p, s) | D::Decimal256(p, s) => {
            if *p > 38 {
                return Err(format!(
                    "decimal({p},{s}) has more than 38 digits, the most a Delta decimal holds"
                ));
            }
            D::Decimal128(*p, *s)
        }
        D::Dictionary(_, v) => storable(v)?,
        D::RunEndEncoded(_, v) => storable(v.data_type())?,
        D::List(f)
        | D::LargeList(f)
        | D::ListView(f)
        | D::LargeListView(f)
        | D::FixedSizeList(f, _) => D::List(field(f)?),
        D::Struct(fields) => D::Struct(
            fields
                .iter()
                .map(|f| field(f))
                .collect::<std::result::Result<Fields, String>>()?,
        ),
        D::Map(entries, sorted) => D::Map(
            Arc::new(Field::new(
                entries.name(),
                storable(entries.data_type())?,
                false,
            )),
            *sorted,
        ),
        other => return Err(format!("{other} has no Delta type")),
    })
}

/// The type holding values of both `a` and `b` when one widens into the other: integers to a
/// wider integer, float to double, decimals to more digits (scale kept or raised).
pub fn wider(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType as D;
    if a == b {
        return Some(a.clone());
    }
    let int_rank = |t: &DataType| match t {
        D::Int8 => Some(1),
        D::Int16 => Some(2),
        D::Int32 => Some(3),
        D::Int64 => Some(4),
        _ => None,
    };
    if let (Some(x), Some(y)) = (int_rank(a), int_rank(b)) {
        return Some(if x >= y { a.clone() } else { b.clone() });
    }
    match (a, b) {
        (D::Float32, D::Float64) | (D::Float64, D::Float32) => Some(D::Float64),
        (D::Decimal128(p1, s1), D::Decimal128(p2, s2)) => {
            let s = (*s1).max(*s2);
            let int = (i16::from(*p1) - i16::from(*s1)).max(i16::from(*p2) - i16::from(*s2));
            let p = int + i16::from(s);
            (p <= 38).then(|| D::Decimal128(u8::try_from(p).unwrap_or(38), s))
        }
        _ => None,
    }
}

/// The schema of a run's files, read from their footers: every column of every file, each
/// with the type that holds all of them (columns missing from a file are null there), and the
/// rows of all files. Fails naming the two files when a column's types cannot be reconciled,
/// and naming the file when it lacks a primary key column or has a type Delta cannot store.
pub fn files_schema(
    table: &str,
    files: &[ParquetInput],
    primary_key: &[String],
) -> Result<(Vec<Field>, u64)> {
    let mut fields: Vec<(Field, String)> = Vec::new();
    let mut problems = Vec::new();
    let mut rows = 0u64;
    for f in files {
        let builder = open(&f.path)?;
        rows += u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        for k in primary_key {
            if schema.field_with_name(k).is_err() {
                problems.push(format!(
                    "{} has no primary key column `{k}`; every file of the connector needs it (check primary_key against the files' columns)",
                    f.source
                ));
            }
        }
        for field in schema.fields() {
            let name = field.name();
            if is_meta(name) {
                problems.push(format!(
                    "{} has a column named `{name}`, which conveyor reserves for its own bookkeeping; rename it at the source",
                    f.source
                ));
                continue;
            }
            let dt = match storable(field.data_type()) {
                Ok(dt) => dt,
                Err(why) => {
                    problems.push(format!("column `{name}` of {}: {why}", f.source));
                    continue;
                }
            };
            match fields.iter_mut().find(|(x, _)| x.name() == name) {
                None => fields.push((Field::new(name, dt, true), f.source.clone())),
                Some((known, first)) => match wider(known.data_type(), &dt) {
                    Some(w) => *known = Field::new(name, w, true),
                    None => problems.push(format!(
                        "column `{name}` is {} in {first} but {dt} in {}; files of one connector must agree on each column's type (widening such as int32 to int64 is fine)",
                        known.data_type(),
                        f.source
                    )),
                },
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::BadInput(format!(
            "the run cannot be written to silver.{table}: {}",
            problems.join("; ")
        )));
    }
    Ok((fields.into_iter().map(|(f, _)| f).collect(), rows))
}

/// Reads one file in batches of `batch_rows` rows holding exactly `fields`: the file's columns
/// of those names (only they are decoded), cast to the field's type where it differs (a value
/// that does not fit is an error, never a null), and columns the file lacks as nulls. A field
/// named `_source` gets where each row came from. A staged file's text is read with the rules
/// of records (see [`staged::text_column`]); `raw` keeps it as the source sent it (bronze).
/// `f` is called with each batch and returns whether to go on.
fn read_conformed(
    file: &ParquetInput,
    fields: &[Field],
    batch_rows: usize,
    raw: bool,
    mut f: impl FnMut(RecordBatch) -> Result<bool>,
) -> Result<()> {
    let builder = open(&file.path)?;
    let wanted: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            fields.iter().any(|t| t.name() == c.name())
                || (file.staged.is_some() && c.name() == staged::LINE)
        })
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let unreadable =
        |e: &dyn std::fmt::Display| Error::BadInput(format!("{} cannot be read: {e}", file.source));
    let reader = builder
        .with_batch_size(batch_rows.max(1))
        .with_projection(mask)
        .build()
        .map_err(|e| unreadable(&e))?;
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let schema = Arc::new(Schema::new(fields.to_vec()));
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let rows = batch.num_rows();
        let origin = staged::Origin {
            sources: batch
                .column_by_name(SOURCE)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>()),
            lines: batch
                .column_by_name(staged::LINE)
                .and_then(|a| a.as_any().downcast_ref::<Int64Array>()),
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        for field in fields {
            let name = field.name();
            columns.push(match batch.column_by_name(name) {
                None if name == SOURCE => Arc::new(StringArray::from_iter_values(
                    std::iter::repeat_n(file.source.as_str(), rows),
                )),
                None => new_null_array(field.data_type(), rows),
                Some(a) if name == SOURCE => a.clone(),
                Some(a) => match (file.staged, a.as_any().downcast_ref::<StringArray>()) {
                    (Some(how), Some(text)) => staged::text_column(
                        name,
                        text,
                        field.data_type(),
                        how.blank_is_null && !raw,
                        &origin,
                    )?,
                    _ if a.data_type() == field.data_type() => a.clone(),
                    _ => cast_with_options(a, field.data_type(), &strict).map_err(|e| {
                        Error::BadInput(format!(
                            "column `{name}` of {} ({}) cannot be stored as {}: {e}",
                            file.source,
                            a.data_type(),
                            field.data_type()
                        ))
                    })?,
                },
            });
        }
        let conformed = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::internal("lakehouse: conforming a batch", e))?;
        if !f(conformed)? {
            break;
        }
    }
    Ok(())
}

/// The bookkeeping values of every row of a run.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `_run_id`.
    pub run_id: String,
    /// `_fetched_at`, microseconds since the epoch (UTC).
    pub fetched_at: i64,
}

/// The bookkeeping fields, in table order.
pub fn meta_fields() -> [Field; 3] {
    [
        Field::new(SOURCE, DataType::Utf8, true),
        Field::new(RUN_ID, DataType::Utf8, true),
        Field::new(
            FETCHED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]
}

/// Rows to drop because a later row of the run has the same primary key: by file index,
/// the row numbers (0-based within the file) to drop.
pub type Dropped = HashMap<usize, std::collections::HashSet<u64>>;

/// One pass over a run's files, conformed to `target` (data columns, then the bookkeeping
/// columns when `meta` is set). A [`PartitionStream`], so DataFusion plans (a Delta write,
/// a MERGE, an aggregate) read it as a table; each execution reads the files again.
#[derive(Debug, Clone)]
pub struct RunStream {
    files: Arc<Vec<ParquetInput>>,
    target: SchemaRef,
    data_columns: usize,
    meta: Option<Arc<Meta>>,
    dropped: Arc<Dropped>,
    batch_rows: usize,
    raw: bool,
}

impl RunStream {
    /// A stream of `files` with the data columns `data` (plus the bookkeeping ones when
    /// `meta` is given), skipping the `dropped` rows. `raw` keeps staged records' text as the
    /// source sent it (for bronze).
    pub fn new(
        files: &[ParquetInput],
        data: &[Field],
        meta: Option<Meta>,
        dropped: Arc<Dropped>,
        batch_rows: usize,
        raw: bool,
    ) -> Self {
        let mut fields: Vec<Field> = data.to_vec();
        if meta.is_some() {
            fields.extend(meta_fields());
        }
        Self {
            files: Arc::new(files.to_vec()),
            target: Arc::new(Schema::new(fields)),
            data_columns: data.len(),
            meta: meta.map(Arc::new),
            dropped,
            batch_rows: batch_rows.max(1),
            raw,
        }
    }

    /// The stream as a DataFusion table.
    pub fn table(self) -> Result<Arc<StreamingTable>> {
        let schema = self.target.clone();
        StreamingTable::try_new(schema, vec![Arc::new(self)])
            .map(Arc::new)
            .map_err(|e| Error::internal("lakehouse: a run's input stream", e))
    }

    /// Reads every file in order, sending conformed batches; stops when the receiver is gone.
    fn produce(
        &self,
        tx: &tokio::sync::mpsc::Sender<std::result::Result<RecordBatch, DataFusionError>>,
    ) {
        let data = &self.target.fields()[..self.data_columns];
        let mut data: Vec<Field> = data.iter().map(|f| f.as_ref().clone()).collect();
        if self.meta.is_some() {
            data.push(Field::new(SOURCE, DataType::Utf8, true));
        }
        for (index, file) in self.files.iter().enumerate() {
            let dropped = self.dropped.get(&index).filter(|d| !d.is_empty());
            let mut row: u64 = 0;
            let mut receiver_gone = false;
            let result = read_conformed(file, &data, self.batch_rows, self.raw, |batch| {
                let n = batch.num_rows();
                let batch = match dropped {
                    Some(d) => {
                        let keep: BooleanArray = (0..n as u64)
                            .map(|i| Some(!d.contains(&(row + i))))
                            .collect();
                        filter_record_batch(&batch, &keep)
                            .map_err(|e| Error::internal("lakehouse: skipping duplicates", e))?
                    }
                    None => batch,
                };
                row += n as u64;
                let rows = batch.num_rows();
                if rows == 0 {
                    return Ok(true);
                }
                let mut columns = batch.columns().to_vec();
                if let Some(meta) = &self.meta {
                    columns.push(Arc::new(StringArray::from_iter_values(
                        std::iter::repeat_n(meta.run_id.as_str(), rows),
                    )));
                    columns.push(Arc::new(
                        TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                            meta.fetched_at,
                            rows,
                        ))
                        .with_timezone("UTC"),
                    ));
                }
                let out = RecordBatch::try_new(self.target.clone(), columns)
                    .map_err(|e| Error::internal("lakehouse: a run's batch", e))?;
                // A failed send means the plan reading the stream stopped (a failed write).
                receiver_gone = tx.blocking_send(Ok(out)).is_err();
                Ok(!receiver_gone)
            });
            if receiver_gone {
                return;
            }
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                return;
            }
        }
    }
}

impl PartitionStream for RunStream {
    fn schema(&self) -> &SchemaRef {
        &self.target
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Two batches in flight: the reader decodes the next while the writer encodes one.
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let this = self.clone();
        // The blocking reader ends when the files are read or when the receiver is dropped
        // (its next send fails), so it never outlives the plan reading it by more than one
        // batch.
        tokio::task::spawn_blocking(move || this.produce(&tx));
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Box::pin(RecordBatchStreamAdapter::new(self.target.clone(), stream))
    }
}

/// The rows of `files` whose primary key appears again later in the run (the last one wins,
/// as for records): by file, the row numbers to skip. Blocking work.
///
/// Memory stays small whatever the run's size: a first pass over the key columns sets a
/// Bloom filter of 16 bits per row (a key whose bits are all set already is a suspect, kept
/// by its 64-bit hash); only when there are suspects, a second pass keeps the exact keys whose
/// hash is suspect, with where they occur. A run without duplicates (the usual case) holds
/// the filter alone: 2 bytes per row.
pub fn duplicate_rows(
    files: &[ParquetInput],
    key_fields: &[Field],
    batch_rows: usize,
    total_rows: u64,
) -> Result<Dropped> {
    use std::collections::{HashMap, HashSet};
    use std::hash::BuildHasherDefault;
    type Hasher = BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
    const PROBES: u64 = 5;
    if key_fields.is_empty() || total_rows < 2 {
        return Ok(Dropped::new());
    }
    // Sized from the footers' row counts, which a file states about itself: capped, so that
    // a footer claiming more rows than it holds cannot make the filter huge (past the cap the
    // filter is only less selective: more suspects, checked exactly).
    const MAX_SIZED_ROWS: u64 = 1 << 27;
    let bits = (total_rows.min(MAX_SIZED_ROWS) * 16)
        .max(1024)
        .next_multiple_of(64);
    let mut filter = vec![0u64; usize::try_from(bits / 64).unwrap_or(usize::MAX)];
    let mut suspects: HashSet<u64> = HashSet::new();
    let mut hashes: Vec<u64> = Vec::new();
    let hash_rows = |batch: &RecordBatch, hashes: &mut Vec<u64>| -> Result<()> {
        hashes.clear();
        hashes.resize(batch.num_rows(), 0);
        deltalake::datafusion::common::hash_utils::create_hashes_with_hasher(
            batch.columns(),
            &Hasher::default(),
            hashes,
        )
        .map(|_| ())
        .map_err(|e| Error::internal("lakehouse: hashing the primary key", e))
    };
    for file in files {
        read_conformed(file, key_fields, batch_rows, false, |batch| {
            hash_rows(&batch, &mut hashes)?;
            for &h in &hashes {
                let step = h.rotate_left(32) | 1;
                let mut seen = true;
                for i in 0..PROBES {
                    let bit = h.wrapping_add(i.wrapping_mul(step)) % bits;
                    let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
                    if filter[word] & mask == 0 {
                        seen = false;
                        filter[word] |= mask;
                    }
                }
                if seen {
                    suspects.insert(h);
                }
            }
            Ok(true)
        })?;
    }
    drop(filter);
    if suspects.is_empty() {
        return Ok(Dropped::new());
    }
    // Exact keys of the suspects, with every place they occur.
    let mut places: HashMap<Vec<ScalarValue>, Vec<(usize, u64)>> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        let mut row = 0u64;
        read_conformed(file, key_fields, batch_rows, false, |batch| {
            hash_rows(&batch, &mut hashes)?;
            for (i, h) in hashes.iter().enumerate() {
                if suspects.contains(h) {
                    let key = key_at(&batch, key_fields.len(), i)?;
                    places.entry(key).or_default().push((index, row + i as u64));
                }
            }
            row += batch.num_rows() as u64;
            Ok(true)
        })?;
    }
    let mut dropped = Dropped::new();
    for (_, at) in places {
        if let Some((_, earlier)) = at.split_last() {
            for (file, row) in earlier {
                dropped.entry(*file).or_default().insert(*row);
            }
        }
    }
    Ok(dropped)
}

fn key_at(batch: &RecordBatch, n: usize, i: usize) -> Result<Vec<ScalarValue>> {
    (0..n)
        .map(|c| {
            ScalarValue::try_from_array(batch.column(c).as_ref(), i)
                .map_err(|e| Error::internal("lakehouse: reading a key value", e))
        })
        .collect()
}

/// A local Parquet file written batch by batch (the file is made with the first batch's
/// schema, in the lakehouse's [`super::writer_properties`]); only the row group being filled
/// is held in memory.
pub struct ParquetFile {
    path: PathBuf,
    writer: Option<deltalake::parquet::arrow::ArrowWriter<std::fs::File>>,
    rows: u64,
    properties: deltalake::parquet::file::properties::WriterProperties,
}

impl ParquetFile {
    /// A file to be written at `path` (created with the first batch).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            writer: None,
            rows: 0,
            properties: super::writer_properties(),
        }
    }

    /// The file written with `properties` instead of the lakehouse's.
    pub fn with_properties(
        mut self,
        properties: deltalake::parquet::file::properties::WriterProperties,
    ) -> Self {
        self.properties = properties;
        self
    }

    fn failed(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Upstream(format!("cannot write {}: {e}", self.path.display()))
    }

    /// Appends one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            let file = std::fs::File::create(&self.path).map_err(|e| self.failed(&e))?;
            let writer = deltalake::parquet::arrow::ArrowWriter::try_new(
                file,
                batch.schema(),
                Some(self.properties.clone()),
            )
            .map_err(|e| self.failed(&e))?;
            self.writer = Some(writer);
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(batch).map_err(|e| {
                Error::Upstream(format!("cannot write {}: {e}", self.path.display()))
            })?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the file: where it is and its rows, `None` when no batch came (no file).
    pub fn close(mut self) -> Result<Option<(PathBuf, u64)>> {
        let Some(w) = self.writer.take() else {
            return Ok(None);
        };
        w.close().map_err(|e| self.failed(&e))?;
        Ok(Some((self.path, self.rows)))
    }
}

/// One value of a key column of [`KeyColumns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// A value of an integer column (`None` is null).
    Int(Option<i64>),
    /// A value of a text column (`None` is null).
    Text(Option<String>),
}

/// Integer and text key columns built row by row and written to a Parquet file every `batch`
/// rows: how the `sql` connector's key listing (PostgreSQL's `COPY`) goes straight into Arrow
/// without the connectors naming Arrow.
pub struct KeyColumns {
    schema: SchemaRef,
    columns: Vec<KeyBuilder>,
    rows: usize,
    batch: usize,
    file: ParquetFile,
}

enum KeyBuilder {
    Int(deltalake::arrow::array::Int64Builder),
    Text(deltalake::arrow::array::StringBuilder),
}

impl KeyColumns {
    /// The columns `(name, whether it holds integers)` (text otherwise), written to `path`
    /// (created with the first batch) `batch` rows at a time.
    pub fn new(columns: &[(String, bool)], path: PathBuf, batch: usize) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, int)| {
                let ty = if *int {
                    super::ColType::Int
                } else {
                    super::ColType::Text
                };
                Field::new(name, ty.arrow(), true)
            })
            .collect();
        Self {
            schema: Arc::new(Schema::new(fields)),
            columns: columns
                .iter()
                .map(|(_, int)| {
                    if *int {
                        KeyBuilder::Int(Default::default())
                    } else {
                        KeyBuilder::Text(Default::default())
                    }
                })
                .collect(),
            rows: 0,
            batch: batch.max(1),
            file: ParquetFile::new(path),
        }
    }

    /// Appends one row: one value per column, in order, each of its column's type. A row
    /// that does not fit adds nothing.
    pub fn push(&mut self, row: Vec<KeyValue>) -> Result<()> {
        let fits = row.len() == self.columns.len()
            && row.iter().zip(&self.columns).all(|(v, c)| {
                matches!(
                    (v, c),
                    (KeyValue::Int(_), KeyBuilder::Int(_))
                        | (KeyValue::Text(_), KeyBuilder::Text(_))
                )
            });
        if !fits {
            return Err(Error::Internal(
                "a key row does not match its key columns".into(),
            ));
        }
        for (value, column) in row.into_iter().zip(&mut self.columns) {
            match (value, column) {
                (KeyValue::Int(v), KeyBuilder::Int(b)) => b.append_option(v),
                (KeyValue::Text(v), KeyBuilder::Text(b)) => b.append_option(v),
                _ => {}
            }
        }
        self.rows += 1;
        if self.rows >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    KeyBuilder::Int(b) => Arc::new(b.finish()),
                    KeyBuilder::Text(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.file.write(&batch)?;
        self.rows = 0;
        Ok(())
    }

    /// Writes the rows not yet written and closes the file; returns the rows it holds (0 and
    /// no file when no row came).
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        Ok(self.file.close()?.map_or(0, |(_, rows)| rows))
    }
}

/// Spills a run's records to a local Parquet file in typed batches, for a source whose column
/// types are known before its rows are read (a SQL table's): records are converted every
/// `batch_rows` rows (the same typed builders as silver's), so a run of any size holds one
/// batch in memory, and the file is then handed to the lakehouse as a [`ParquetInput`].
pub struct Stager {
    file: ParquetFile,
    source: String,
    specs: Vec<super::records::ColumnSpec>,
    batch_rows: usize,
    pending: Vec<super::SourceRecord>,
}

impl Stager {
    /// A stager writing the file `path` for the source object `source`, with `columns`
    /// (name and type, in order; columns of unknown type are text).
    pub fn new(
        path: PathBuf,
        source: &str,
        columns: &[(String, Option<super::ColType>)],
        batch_rows: usize,
    ) -> Self {
        Self {
            file: ParquetFile::new(path),
            source: source.to_string(),
            specs: columns
                .iter()
                .map(|(name, ty)| super::records::ColumnSpec {
                    name: name.clone(),
                    ty: match ty {
                        Some(super::ColType::Null) | None => super::ColType::Text,
                        Some(t) => *t,
                    },
                    table: None,
                })
                .collect(),
            batch_rows: batch_rows.max(1),
            pending: Vec::new(),
        }
    }

    /// Adds one record; a full batch is converted and written.
    pub fn push(&mut self, record: super::SourceRecord) -> Result<()> {
        self.pending.push(record);
        if self.pending.len() >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&super::SourceRecord> = self.pending.iter().collect();
        let batch = super::records::build_batch(&refs, &self.specs, false, Vec::new())?;
        self.file.write(&batch)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is left and closes the file: the input and its rows, `None` when no
    /// record came.
    pub fn finish(mut self) -> Result<Option<(ParquetInput, u64)>> {
        self.flush()?;
        Ok(self.file.close()?.map(|(path, rows)| {
            (
                ParquetInput {
                    source: self.source,
                    path,
                    staged: None,
                },
                rows,
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn key_columns_take_rows_of_their_types_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.parquet");
        let mut keys = KeyColumns::new(
            &[("id".into(), true), ("code".into(), false)],
            path.clone(),
            2,
        );
        keys.push(vec![
            KeyValue::Int(Some(1)),
            KeyValue::Text(Some("a".into())),
        ])
        .unwrap();
        assert!(
            keys.push(vec![KeyValue::Text(None), KeyValue::Text(None)])
                .is_err()
        );
        assert!(keys.push(vec![KeyValue::Int(Some(2))]).is_err());
        keys.push(vec![KeyValue::Int(None), KeyValue::Text(None)])
            .unwrap();
        keys.push(vec![
            KeyValue::Int(Some(3)),
            KeyValue::Text(Some("c".into())),
        ])
        .unwrap();
        assert_eq!(keys.finish().unwrap(), 3);
        assert_eq!(parquet_row_count(&path).unwrap(), 3);

        let empty = dir.path().join("none.parquet");
        assert_eq!(
            KeyColumns::new(&[("id".into(), true)], empty.clone(), 2)
                .finish()
                .unwrap(),
            0
        );
        assert!(!empty.exists());
    }

    #[test]
    fn delta_types_for_typed_columns() {
        assert_eq!(
            storable(&DataType::Decimal128(15, 2)).unwrap(),
            DataType::Decimal128(15, 2)
        );
        assert_eq!(storable(&DataType::Date32).unwrap(), DataType::Date32);
        assert_eq!(storable(&DataType::Utf8View).unwrap(), DataType::Utf8);
        assert_eq!(
            storable(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("+02:00".into())
            ))
            .unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            storable(&DataType::UInt64).unwrap(),
            DataType::Decimal128(20, 0)
        );
        assert!(
            storable(&DataType::Decimal256(50, 2))
                .unwrap_err()
                .contains("38 digits")
        );
    }

    #[test]
    fn widening_rules() {
        assert_eq!(
            wider(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
        assert_eq!(
            wider(&DataType::Decimal128(15, 2), &DataType::Decimal128(20, 4)),
            Some(DataType::Decimal128(20, 4))
        );
        assert_eq!(
            wider(&DataType::Decimal128(10, 0), &DataType::Decimal128(5, 3)),
            Some(DataType::Decimal128(13, 3))
        );
        assert_eq!(wider(&DataType::Int64, &DataType::Utf8), None);
        assert_eq!(wider(&DataType::Date32, &DataType::Int32), None);
    }
}
