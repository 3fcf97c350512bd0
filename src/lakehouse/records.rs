//! Records (JSON objects) → Arrow record batches, with type inference.
//!
//! Columns are built directly from the values, one typed builder per column, never by
//! serialising rows to JSON text and parsing them again. Inference is per column over the
//! whole run: integers, floats, booleans, RFC 3339 timestamps and text. When a source delivers
//! every value as text (CSV), the text itself is classified (`"42"` is an integer, `"007"`
//! stays text so that leading zeros survive); JSON values keep the type JSON gave them, except
//! that strings holding RFC 3339 timestamps become timestamps.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One record read from a source, with the name of the source object it came from (a file).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Where it came from, e.g. `customers.csv`; stored in the `_source` column.
    pub source: Arc<str>,
    /// The line (or record number) within the source, for messages.
    pub line: u64,
    /// The fields.
    pub data: Map<String, Value>,
}

/// The column types of silver tables written from records (CSV, JSON, HTTP and SQL rows).
/// Typed sources (Parquet) keep their own Arrow types instead (see `typed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColType {
    /// No value seen yet (only nulls).
    Null,
    /// 64-bit integers.
    Int,
    /// 64-bit floats.
    Float,
    /// Exact decimals: precision (total digits, at most 38) and scale (digits after the point).
    Decimal(u8, i8),
    /// true / false.
    Bool,
    /// A calendar date without a time (`2026-01-15`), stored as days since 1970-01-01.
    Date,
    /// An instant, stored as microseconds in UTC.
    Timestamp,
    /// Text (anything else, including nested JSON as text).
    Text,
}

/// The precision of inferred decimals: the widest Decimal128, so that a later run with larger
/// values never needs the column re-typed.
pub const INFERRED_PRECISION: u8 = 38;

impl ColType {
    /// The name people know the type by.
    pub fn name(self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Int => "integer".into(),
            Self::Float => "float".into(),
            Self::Decimal(p, s) => format!("decimal({p},{s})"),
            Self::Bool => "boolean".into(),
            Self::Date => "date".into(),
            Self::Timestamp => "timestamp".into(),
            Self::Text => "text".into(),
        }
    }

    /// The type a connector's `[schema]` names: `integer`, `float`, `decimal(P,S)`, `boolean`,
    /// `date`, `timestamp` or `text` (see [`DECLARABLE`]); `None` for anything else, and
    /// for a decimal whose precision is not 1 to 38 or whose scale is above its precision.
    pub fn declared(name: &str) -> Option<Self> {
        match name.trim() {
            "integer" => Some(Self::Int),
            "float" => Some(Self::Float),
            "boolean" => Some(Self::Bool),
            "date" => Some(Self::Date),
            "timestamp" => Some(Self::Timestamp),
            "text" => Some(Self::Text),
            other => {
                let inner = other
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))?;
                let (p, s) = inner.split_once(',')?;
                let p: u8 = p.trim().parse().ok()?;
                let s: i8 = s.trim().parse().ok()?;
                ((1..=38).contains(&p) && s >= 0 && i16::from(s) <= i16::from(p))
                    .then_some(Self::Decimal(p, s))
            }
        }
    }

    /// The Arrow type a column of this type is written with.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Decimal(p, s) => DataType::Decimal128(p, s),
            Self::Bool => DataType::Boolean,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Null | Self::Text => DataType::Utf8,
        }
    }

    /// Our type for an Arrow type read from a table; `None` for types records are never
    /// written as (binary, lists, structs: columns of typed sources).
    pub fn from_arrow(t: &DataType) -> Option<Self> {
        match t {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Some(Self::Int),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(Self::Float),
            DataType::Decimal128(p, s) => Some(Self::Decimal(*p, *s)),
            DataType::Boolean => Some(Self::Bool),
            DataType::Date32 | DataType::Date64 => Some(Self::Date),
            DataType::Timestamp(_, _) => Some(Self::Timestamp),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Self::Text),
            DataType::Null => Some(Self::Null),
            _ => None,
        }
    }

    /// The type of a column holding values of both `self` and `other`.
    pub(crate) fn unify(self, other: Self) -> Self {
        match (self, other) {
            (a, b) if a == b => a,
            (Self::Null, b) => b,
            (a, Self::Null) => a,
            (Self::Int, Self::Float) | (Self::Float, Self::Int) => Self::Float,
            (Self::Decimal(p, s), Self::Int) | (Self::Int, Self::Decimal(p, s)) => {
                Self::Decimal(p, s)
            }
            // Different numbers of decimal places: not a fixed-point column.
            (Self::Decimal(..), Self::Decimal(..) | Self::Float)
            | (Self::Float, Self::Decimal(..)) => Self::Float,
            _ => Self::Text,
        }
    }

    /// The type an existing column of type `self` keeps when a run's values are `run`, or
    /// `None` when they conflict. A table is never re-typed by a plain run: integers go into
    /// float and decimal columns, decimals into float columns and a decimal column of the
    /// same scale, and anything into text.
    pub fn holds(self, run: Self) -> Option<Self> {
        match (self, run) {
            (t, Self::Null) => Some(t),
            (t, r) if t == r => Some(t),
            (Self::Float, Self::Int | Self::Decimal(..)) => Some(Self::Float),
            (Self::Decimal(p, s), Self::Int) => Some(Self::Decimal(p, s)),
            (Self::Decimal(p, s), Self::Decimal(_, rs)) if rs <= s => Some(Self::Decimal(p, s)),
            (Self::Text, _) => Some(Self::Text),
            _ => None,
        }
    }
}

/// The type names a connector's `[schema]` may use, for messages.
pub const DECLARABLE: &str = "integer, float, decimal(P,S), boolean, date, timestamp or text";

/// What inference learned about one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// The column name.
    pub name: String,
    /// The type that holds every value of the run.
    pub ty: ColType,
    /// A value that made the column text (for messages about conflicts), with where it was.
    pub example: Option<String>,
}

/// Classifies one value. `text` says the source delivers every value as text.
pub fn classify(value: &Value, text: bool) -> ColType {
    match value {
        Value::Null => ColType::Null,
        Value::Bool(_) => ColType::Bool,
        Value::Number(n) => {
            if n.is_i64() {
                ColType::Int
            } else if n.is_u64() {
                // Larger than i64: keep the digits exactly, as text.
                ColType::Text
            } else {
                ColType::Float
            }
        }
        Value::String(s) if text => classify_text(s),
        Value::String(s) => {
            if parse_timestamp(s).is_some() {
                ColType::Timestamp
            } else if parse_date(s).is_some() {
                ColType::Date
            } else {
                ColType::Text
            }
        }
        Value::Array(_) | Value::Object(_) => ColType::Text,
    }
}

/// Classifies a value that arrived as text (a CSV field).
pub(crate) fn classify_text(s: &str) -> ColType {
    let t = s.trim();
    if t.is_empty() {
        return ColType::Null;
    }
    if parse_int_text(t).is_some() {
        return ColType::Int;
    }
    if let Some((_, scale)) = decimal_shape(t) {
        return ColType::Decimal(INFERRED_PRECISION, scale);
    }
    if parse_float_text(t).is_some() {
        return ColType::Float;
    }
    if parse_bool_text(t).is_some() {
        return ColType::Bool;
    }
    if parse_timestamp(t).is_some() {
        return ColType::Timestamp;
    }
    if parse_date(t).is_some() {
        return ColType::Date;
    }
    ColType::Text
}

/// The shape of a fixed-point number written with a point and no exponent (`12.50`,
/// `-0.5`): its integer digits and its scale (digits after the point). `None` for anything
/// else, for integer parts with leading zeros (`007.5` stays text) and for numbers of more
/// than 38 digits, which no Decimal128 holds.
fn decimal_shape(t: &str) -> Option<(usize, i8)> {
    let body = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = body.split_once('.')?;
    if int.is_empty()
        || frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (int.len() > 1 && int.starts_with('0'))
    {
        return None;
    }
    let digits = int.len() + frac.len();
    if digits > usize::from(INFERRED_PRECISION) {
        return None;
    }
    Some((int.len(), i8::try_from(frac.len()).ok()?))
}

/// Text holding a decimal number read at `scale`: the unscaled value, e.g. `"12.5"` at
/// scale 2 is 1250. Digits past the scale are accepted only when they are zeros (nothing is
/// rounded away), and the value must fit `precision` digits. No exponents.
pub fn parse_decimal(t: &str, precision: u8, scale: i8) -> Option<i128> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in frac.len()..scale {
        v = v.checked_mul(10)?;
    }
    let limit = 10i128.checked_pow(u32::from(precision))?;
    if v >= limit {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// A calendar date written `YYYY-MM-DD`, as days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !b[0].is_ascii_digit() {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(d.signed_duration_since(epoch).num_days()).ok()
}

/// An integer written without leading zeros (so `007` and `0123` stay text).
fn parse_int_text(t: &str) -> Option<i64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    t.parse().ok()
}

/// A decimal number with a point or an exponent (`1.5`, `2e3`); not `NaN`, `inf` or `.5x`.
fn parse_float_text(t: &str) -> Option<f64> {
    if !t.contains(['.', 'e', 'E']) {
        return None;
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, _) = body.split_once(['e', 'E']).unwrap_or((body, ""));
    let int_part = mantissa.split('.').next().unwrap_or("");
    if int_part.len() > 1 && int_part.starts_with('0') {
        return None;
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

pub(crate) fn parse_bool_text(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// An RFC 3339 timestamp (`2026-01-15T09:30:00Z`, `…+02:00`) as microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    // Cheap guard first: most text is not a timestamp, and parsing is the expensive part.
    let b = s.as_bytes();
    if b.len() < 20 || !b[0].is_ascii_digit() || b[4] != b'-' {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Infers the columns of `records`, in the order they are first seen.
pub fn infer(records: &[SourceRecord], text: bool) -> Vec<Inferred> {
    let mut cols: Vec<Inferred> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    for rec in records {
        for (name, value) in &rec.data {
            let ty = classify(value, text);
            let i = match pos.get(name) {
                Some(&i) => i,
                None => {
                    pos.insert(name.clone(), cols.len());
                    cols.push(Inferred {
                        name: name.clone(),
                        ty: ColType::Null,
                        example: None,
                    });
                    cols.len() - 1
                }
            };
            let col = &mut cols[i];
            let unified = col.ty.unify(ty);
            if unified == ColType::Text && col.example.is_none() && ty != ColType::Null {
                col.example = Some(format!(
                    "{} in {} line {}",
                    short(&render(value)),
                    rec.source,
                    rec.line
                ));
            }
            col.ty = unified;
        }
    }
    cols
}

pub(crate) fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{:?}…", s.chars().take(40).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

/// A value as text: strings as they are, everything else as JSON.
pub fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A column to build: its name, its type, and where its values come from.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// The column name in the table.
    pub name: String,
    /// Its type.
    pub ty: ColType,
    /// The column's Arrow type in the table when it exists and differs from `ty.arrow()`
    /// (an `Int32` column of a table first written from Parquet): the built column is cast.
    pub table: Option<DataType>,
}

/// Builds one batch holding `specs` columns for every record, followed by the bookkeeping
/// columns `extra` (built by the caller, one value per record).
///
/// Fails when a value cannot be read as its column's type (which inference rules out, unless
/// the table's existing type was kept and the value does not fit it).
pub fn build_batch(
    records: &[&SourceRecord],
    specs: &[ColumnSpec],
    text: bool,
    extra: Vec<(Field, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(specs.len() + extra.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(specs.len() + extra.len());
    for spec in specs {
        let built = build_column(records, spec, text)?;
        match &spec.table {
            Some(dt) if dt != built.data_type() => {
                let strict = deltalake::arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                let cast = deltalake::arrow::compute::cast_with_options(&built, dt, &strict)
                    .map_err(|e| {
                    Error::BadInput(format!(
                        "column `{}` is {dt} in the table and this run's values cannot be stored as that: {e}",
                        spec.name
                    ))
                })?;
                fields.push(Field::new(&spec.name, dt.clone(), true));
                arrays.push(cast);
            }
            _ => {
                fields.push(Field::new(&spec.name, spec.ty.arrow(), true));
                arrays.push(built);
            }
        }
    }
    for (field, array) in extra {
        fields.push(field);
        arrays.push(array);
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, arrays)
        .map_err(|e| Error::internal("lakehouse: assembling a record batch", e))
}

/// The value of `name` in `rec`; `None` for missing, null, and empty text from a text source.
fn cell<'a>(rec: &'a SourceRecord, name: &str, text: bool) -> Option<&'a Value> {
    match rec.data.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if text && s.trim().is_empty() => None,
        Some(v) => Some(v),
    }
}

/// `v` read as an integer: a JSON integer, or text holding one.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `v` read as a float: any JSON number (integers included), or text holding one.
fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `v` read as a decimal of `precision` and `scale`: a JSON number or text holding one,
/// unscaled (see [`parse_decimal`]).
fn as_decimal(v: &Value, precision: u8, scale: i8) -> Option<i128> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string(), precision, scale),
        Value::String(s) => parse_decimal(s.trim(), precision, scale),
        _ => None,
    }
}

/// `v` read as a date: `YYYY-MM-DD` text.
fn as_date(v: &Value) -> Option<i32> {
    match v {
        Value::String(s) => parse_date(s.trim()),
        _ => None,
    }
}

/// `v` read as a boolean: a JSON boolean, or the text `true`/`false` (any case).
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(x) => Some(*x),
        Value::String(s) => parse_bool_text(s.trim()),
        _ => None,
    }
}

/// `v` read as a timestamp: RFC 3339 text.
fn as_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_timestamp(s.trim()),
        _ => None,
    }
}

/// Whether `v` (not null) can be stored in a column of type `ty`. Text holds anything.
fn fits(v: &Value, ty: ColType) -> bool {
    match ty {
        ColType::Int => as_int(v).is_some(),
        ColType::Float => as_float(v).is_some(),
        ColType::Decimal(p, s) => as_decimal(v, p, s).is_some(),
        ColType::Date => as_date(v).is_some(),
        ColType::Bool => as_bool(v).is_some(),
        ColType::Timestamp => as_timestamp(v).is_some(),
        ColType::Null | ColType::Text => true,
    }
}

/// Values of column `name` that cannot be read as `ty`: the first one (as
/// `"value" in SOURCE line N`) and how many there are; `None` when every value fits.
pub fn misfits(
    records: &[SourceRecord],
    name: &str,
    ty: ColType,
    text: bool,
) -> Option<(String, usize)> {
    let mut first = None;
    let mut count = 0;
    for rec in records {
        if let Some(v) = cell(rec, name, text)
            && !fits(v, ty)
        {
            count += 1;
            if first.is_none() {
                first = Some(format!(
                    "{} in {} line {}",
                    short(&render(v)),
                    rec.source,
                    rec.line
                ));
            }
        }
    }
    first.map(|f| (f, count))
}

fn build_column<'a>(
    records: &[&'a SourceRecord],
    spec: &ColumnSpec,
    text: bool,
) -> Result<ArrayRef> {
    let name = spec.name.as_str();
    let bad = |rec: &SourceRecord, v: &Value| {
        Error::BadInput(format!(
            "column `{name}` is {} but {} line {} has {} there",
            spec.ty.name(),
            rec.source,
            rec.line,
            short(&render(v))
        ))
    };
    let value = |rec: &'a SourceRecord| cell(rec, name, text);
    Ok(match spec.ty {
        ColType::Int => {
            let mut b = Int64Builder::with_capacity(records.len());
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_int(v).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColType::Float => {
            let mut b = Float64Builder::with_capacity(records.len());
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_float(v).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColType::Decimal(p, s) => {
            let mut b = Decimal128Builder::with_capacity(records.len());
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_decimal(v, p, s).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| Error::internal("lakehouse: a decimal column", e))?,
            )
        }
        ColType::Date => {
            let mut b = Date32Builder::with_capacity(records.len());
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_date(v).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColType::Bool => {
            let mut b = BooleanBuilder::with_capacity(records.len());
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_bool(v).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColType::Timestamp => {
            let mut b =
                TimestampMicrosecondBuilder::with_capacity(records.len()).with_timezone("UTC");
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(v) => {
                        b.append_value(as_timestamp(v).ok_or_else(|| bad(rec, v))?);
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColType::Null | ColType::Text => {
            let mut b = StringBuilder::with_capacity(records.len(), records.len() * 16);
            for rec in records {
                match value(rec) {
                    None => b.append_null(),
                    Some(Value::String(s)) => b.append_value(s),
                    Some(v) => b.append_value(v.to_string()),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Reads the rows of a small Parquet file as JSON objects (integers, floats, booleans and
/// exact decimals as numbers, everything else as its text), to look into a staged file. It
/// holds the whole file: sources are never read this way (see `typed`).
pub fn parquet_rows(bytes: Vec<u8>) -> Result<Vec<Map<String, Value>>> {
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let unreadable =
        |e: &dyn std::fmt::Display| Error::BadInput(format!("not a readable Parquet file: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| unreadable(&e))?
        .build()
        .map_err(|e| unreadable(&e))?;
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let schema = batch.schema();
        let start = rows.len();
        rows.extend((0..batch.num_rows()).map(|_| Map::with_capacity(schema.fields().len())));
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let cell = super::sql::Cell::new(array.as_ref())?;
            for (i, row) in rows[start..].iter_mut().enumerate() {
                row.insert(field.name().clone(), cell.json(i));
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn rec(line: u64, v: Value) -> SourceRecord {
        SourceRecord {
            source: "t.csv".into(),
            line,
            data: v.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn text_values_are_classified_with_care() {
        assert_eq!(classify_text("42"), ColType::Int);
        assert_eq!(classify_text("-7"), ColType::Int);
        assert_eq!(classify_text("007"), ColType::Text);
        assert_eq!(classify_text("12.50"), ColType::Decimal(38, 2));
        assert_eq!(classify_text("-0.5"), ColType::Decimal(38, 1));
        assert_eq!(classify_text("007.5"), ColType::Text);
        assert_eq!(classify_text("2026-01-15"), ColType::Date);
        assert_eq!(classify_text("2026-02-30"), ColType::Text);
        assert_eq!(classify_text("1e3"), ColType::Float);
        assert_eq!(classify_text("NaN"), ColType::Text);
        assert_eq!(classify_text("TRUE"), ColType::Bool);
        assert_eq!(classify_text("2026-01-15T09:30:00Z"), ColType::Timestamp);
        assert_eq!(classify_text(""), ColType::Null);
        assert_eq!(classify_text("99999999999999999999"), ColType::Text);
    }

    #[test]
    fn inference_widens_and_names_an_example() {
        let rows = vec![
            rec(2, json!({"id": "1", "price": "3", "note": ""})),
            rec(3, json!({"id": "2", "price": "3.5", "note": "x"})),
            rec(4, json!({"id": "3", "price": "n/a"})),
        ];
        let cols = infer(&rows, true);
        let by: HashMap<_, _> = cols.iter().map(|c| (c.name.as_str(), c)).collect();
        assert_eq!(by["id"].ty, ColType::Int);
        assert_eq!(by["price"].ty, ColType::Text);
        assert!(by["price"].example.as_deref().unwrap().contains("line 4"));
        assert_eq!(by["note"].ty, ColType::Text);
        let refs: Vec<&SourceRecord> = rows.iter().collect();
        let specs: Vec<ColumnSpec> = cols
            .iter()
            .map(|c| ColumnSpec {
                name: c.name.clone(),
                ty: c.ty,
                table: None,
            })
            .collect();
        let batch = build_batch(&refs, &specs, true, Vec::new()).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(batch.column(2).null_count(), 2);
    }

    #[test]
    fn declared_types_read_values_or_name_the_first_that_does_not_fit() {
        let json_rows = vec![
            rec(
                1,
                json!({"zip": 1234, "n": 1, "x": 2.5, "ok": true, "tags": [1]}),
            ),
            rec(2, json!({"zip": "01234", "n": "2", "x": 3, "ok": "FALSE"})),
            rec(3, json!({"zip": null, "n": "two", "x": "n/a", "ok": 1})),
            rec(4, json!({"n": 4.5})),
        ];
        assert_eq!(misfits(&json_rows, "zip", ColType::Text, false), None);
        assert_eq!(misfits(&json_rows, "tags", ColType::Text, false), None);
        assert_eq!(
            misfits(&json_rows, "n", ColType::Int, false),
            Some(("\"two\" in t.csv line 3".to_string(), 2))
        );
        let (first, n) = misfits(&json_rows, "x", ColType::Float, false).unwrap();
        assert!(first.contains("n/a") && first.contains("line 3"), "{first}");
        assert_eq!(n, 1);
        let (first, _) = misfits(&json_rows, "ok", ColType::Bool, false).unwrap();
        assert!(first.contains("line 3"), "{first}");
        assert_eq!(ColType::declared("boolean"), Some(ColType::Bool));
        assert_eq!(ColType::declared("null"), None);

        // Text holds JSON numbers rendered as text, and CSV text as it is.
        let refs: Vec<&SourceRecord> = json_rows[..2].iter().collect();
        let spec = ColumnSpec {
            name: "zip".into(),
            ty: ColType::Text,
            table: None,
        };
        let batch = build_batch(&refs, std::slice::from_ref(&spec), false, Vec::new()).unwrap();
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        assert_eq!((col.value(0), col.value(1)), ("1234", "01234"));
        let csv = [rec(2, json!({"zip": "00501"}))];
        let refs: Vec<&SourceRecord> = csv.iter().collect();
        let batch = build_batch(&refs, &[spec], true, Vec::new()).unwrap();
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(col.value(0), "00501");
        // Float takes integers.
        let spec = ColumnSpec {
            name: "x".into(),
            ty: ColType::Float,
            table: None,
        };
        let refs: Vec<&SourceRecord> = json_rows[..2].iter().collect();
        let batch = build_batch(&refs, &[spec], false, Vec::new()).unwrap();
        assert_eq!(batch.schema().field(0).data_type(), &DataType::Float64);
    }
}
