//! The semantic model as written (`connectors/*.semantic.toml`) and as checked.
//!
//! [`load_dir`] reads every `*.semantic.toml` of the connectors folder, merges them and checks
//! what can be checked without data (names, references between entities, measures and metrics,
//! joins, formats, access rules); [`super::Semantic::open`] then checks every column and
//! expression against the tables by planning it. Every problem of every file is reported at
//! once, each as `FILE: KEY: what is wrong`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::when::Grain;
use crate::error::Result;

/// One `*.semantic.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    entities: BTreeMap<String, EntityDef>,
    #[serde(default)]
    metrics: BTreeMap<String, MetricDef>,
    #[serde(default)]
    access: BTreeMap<String, AccessDef>,
}

/// `[entities.NAME]`: a table (or a query) whose rows are one kind of thing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityDef {
    /// `silver.NAME`, `gold.NAME` or a plain silver table name; defaults to the entity's name.
    pub table: Option<String>,
    /// A read-only query instead of a table.
    pub sql: Option<String>,
    /// The column (or columns) that identify a row.
    pub primary_key: OneOrMany,
    /// What one row is, for people and for the LLM.
    #[serde(default)]
    pub description: String,
    /// The column that names a row in answers ("top 5 customers" lists this).
    pub label: Option<String>,
    /// Other words for the entity ("clients", "accounts").
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// The default time dimension of the entity's measures.
    pub time: Option<String>,
    /// SQL conditions every query of this entity's measures applies.
    #[serde(default)]
    pub default_filters: Vec<String>,
    #[serde(default)]
    pub dimensions: BTreeMap<String, DimensionDef>,
    #[serde(default)]
    pub measures: BTreeMap<String, MeasureDef>,
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentDef>,
    #[serde(default)]
    pub joins: Vec<JoinDef>,
}

/// One string or several: a primary key's columns, an access rule's values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(c) => vec![c.clone()],
            Self::Many(cs) => cs.clone(),
        }
    }
}

/// `[entities.E.dimensions.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDef {
    /// The column; defaults to the dimension's name.
    pub column: Option<String>,
    /// A SQL expression over the entity's columns instead of a column.
    pub expr: Option<String>,
    /// `categorical` or `time`; a date or timestamp column is `time` unless said otherwise.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For time dimensions: the grains questions may use (default all five).
    pub grains: Option<Vec<String>>,
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// Other words for some of the values: `{ DE = ["Germany", "Deutschland"] }`.
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub description: String,
    /// How answers name it; defaults to the name with `_` as spaces, capitalised.
    pub label: Option<String>,
}

/// `[entities.E.measures.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureDef {
    /// `sum`, `count`, `count_distinct`, `avg`, `min` or `max`.
    pub agg: String,
    /// What is aggregated: a column or SQL expression (`count` may leave it out).
    pub expr: Option<String>,
    /// Only rows where this SQL condition holds count.
    pub filter: Option<String>,
    /// `number` (default), `integer`, `currency` or `percent`.
    pub format: Option<String>,
    /// The currency symbol of `currency` (default `$`).
    pub symbol: Option<String>,
    /// Digits after the point (default: 2 for currency and percent, else 0 for counts, 2).
    pub decimals: Option<u8>,
    #[serde(default)]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub label: Option<String>,
    /// The time dimension this measure is dated by, instead of the entity's.
    pub time: Option<String>,
}

/// `[entities.E.segments.NAME]`: a named filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    /// A SQL condition over the entity's columns.
    pub filter: String,
    #[serde(default)]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// `[[entities.E.joins]]`: E's rows point at one row of `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinDef {
    /// The entity joined.
    pub to: String,
    /// The column of E (also `to`'s column when `to_column` is not given).
    pub on: String,
    /// The column of `to` it matches (default: `to`'s primary key when it is one column,
    /// else `on`).
    pub to_column: Option<String>,
    /// `many_to_one` (default) or `one_to_one`.
    pub relationship: Option<String>,
}

/// `[metrics.NAME]`: a metric built from measures.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    /// `ratio`, `derived` or `share`.
    #[serde(rename = "type")]
    pub kind: String,
    pub numerator: Option<String>,
    pub denominator: Option<String>,
    /// For `derived`: an expression over other metrics' names (`revenue - refunds`).
    pub expr: Option<String>,
    /// For `share`: the measure whose share of the total it is.
    pub of: Option<String>,
    pub format: Option<String>,
    pub symbol: Option<String>,
    pub decimals: Option<u8>,
    #[serde(default)]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub label: Option<String>,
}

/// `[access.ROLE]`: what callers with that role see (`default`: callers with no listed role).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessDef {
    /// Row filters by dimension value: `{ "customers.region" = ["EMEA"] }`.
    #[serde(default)]
    pub rows: BTreeMap<String, OneOrMany>,
    /// Row filters as SQL conditions over an entity's columns: `{ customers = "country = 'DE'" }`.
    #[serde(rename = "where", default)]
    pub where_sql: BTreeMap<String, String>,
    /// Columns not shown: `["customers.contact_email"]`.
    #[serde(default)]
    pub hidden: Vec<String>,
}

// ----- the checked model -----

/// How a number is shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Grouped digits with `decimals` places.
    Number { decimals: u8 },
    /// A currency symbol before the number.
    Currency { symbol: String, decimals: u8 },
    /// A ratio shown as a percentage (0.125 → 12.5%).
    Percent { decimals: u8 },
}

impl Format {
    /// `value` for people: `$1,234.50`, `12.5%`, `1,234`.
    pub fn show(&self, value: f64) -> String {
        if !value.is_finite() {
            return "n/a".into();
        }
        match self {
            Self::Number { decimals } => group(value, *decimals),
            Self::Currency { symbol, decimals } => {
                if value < 0.0 {
                    format!("-{symbol}{}", group(-value, *decimals))
                } else {
                    format!("{symbol}{}", group(value, *decimals))
                }
            }
            Self::Percent { decimals } => format!("{}%", group(value * 100.0, *decimals)),
        }
    }

    /// A short form for chart axes: `$1.2M`, `35%`, `12k`.
    pub fn short(&self, value: f64) -> String {
        if !value.is_finite() {
            return String::new();
        }
        let compact = |v: f64| -> String {
            let a = v.abs();
            let (n, suffix) = if a >= 1e9 {
                (v / 1e9, "B")
            } else if a >= 1e6 {
                (v / 1e6, "M")
            } else if a >= 1e3 {
                (v / 1e3, "k")
            } else {
                (v, "")
            };
            let text = if suffix.is_empty() && (n.fract() != 0.0) && a < 10.0 {
                format!("{n:.2}")
            } else if n.fract().abs() < 1e-9 || n.abs() >= 100.0 {
                format!("{n:.0}")
            } else {
                format!("{n:.1}")
            };
            format!("{text}{suffix}")
        };
        match self {
            Self::Number { .. } => compact(value),
            Self::Currency { symbol, .. } => {
                if value < 0.0 {
                    format!("-{symbol}{}", compact(-value))
                } else {
                    format!("{symbol}{}", compact(value))
                }
            }
            Self::Percent { .. } => format!("{}%", compact(value * 100.0)),
        }
    }
}

/// `value` with `decimals` places and thousands separators.
fn group(value: f64, decimals: u8) -> String {
    let text = format!("{:.*}", usize::from(decimals), value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text.clone(), None),
    };
    let mut out = String::new();
    let digits: Vec<char> = int.chars().collect();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(*c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    if value < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '-');
    }
    out
}

/// An aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Count,
    CountDistinct,
    Avg,
    Min,
    Max,
}

impl Agg {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sum" => Self::Sum,
            "count" => Self::Count,
            "count_distinct" => Self::CountDistinct,
            "avg" | "average" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        })
    }

    /// The SQL of the aggregate over `expr`.
    pub fn sql(self, expr: &str) -> String {
        match self {
            Self::Sum => format!("sum({expr})"),
            Self::Count => format!("count({expr})"),
            Self::CountDistinct => format!("count(DISTINCT {expr})"),
            Self::Avg => format!("avg({expr})"),
            Self::Min => format!("min({expr})"),
            Self::Max => format!("max({expr})"),
        }
    }

    /// How answers say it: "sum of", "number of", …
    pub fn words(self) -> &'static str {
        match self {
            Self::Sum => "sum of",
            Self::Count => "count of",
            Self::CountDistinct => "distinct count of",
            Self::Avg => "average of",
            Self::Min => "minimum of",
            Self::Max => "maximum of",
        }
    }
}

/// A checked entity.
#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    /// Where it was declared (file), for messages.
    pub origin: String,
    /// What its view selects from: `silver.x`, `gold.x`, or `(query)`.
    pub source: Source,
    pub primary_key: Vec<String>,
    pub description: String,
    pub label: Option<String>,
    pub synonyms: Vec<String>,
    pub time: Option<String>,
    pub default_filters: Vec<String>,
    /// Its columns as the table has them (filled by `Semantic::open`).
    pub columns: Vec<String>,
}

/// What an entity reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A table: layer (`silver`, `gold`, `bronze`) and name.
    Table { layer: String, name: String },
    /// A read-only query.
    Sql(String),
}

impl Source {
    /// The SQL of a `FROM` over it.
    pub fn from_sql(&self) -> String {
        match self {
            Self::Table { layer, name } => format!("{layer}.{}", quote_ident(name)),
            Self::Sql(q) => format!("({q}) AS _q"),
        }
    }
}

/// A checked dimension.
#[derive(Debug, Clone)]
pub struct Dimension {
    pub entity: String,
    pub name: String,
    /// Its SQL over the entity's columns.
    pub expr: String,
    /// Whether it is a time dimension.
    pub time: bool,
    pub grains: Vec<Grain>,
    pub synonyms: Vec<String>,
    /// Value synonyms: canonical value → other words.
    pub values: BTreeMap<String, Vec<String>>,
    pub description: String,
    pub label: String,
    /// The columns it reads (for hidden columns).
    pub columns: Vec<String>,
    /// Whether its values are text (filters compare text).
    pub text: bool,
    /// Whether `time` was declared (else settled from the column's type).
    pub kind_declared: bool,
    /// A time dimension whose values are timestamps (or text): read as dates.
    pub timestamp: bool,
}

impl Dimension {
    /// `entity.name`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.entity, self.name)
    }
}

/// A checked measure.
#[derive(Debug, Clone)]
pub struct Measure {
    pub entity: String,
    pub name: String,
    pub agg: Agg,
    /// What is aggregated (`*` for a plain count).
    pub expr: String,
    pub filter: Option<String>,
    pub format: Format,
    pub synonyms: Vec<String>,
    pub description: String,
    pub label: String,
    /// The time dimension that dates it (a dimension name of `entity`).
    pub time: Option<String>,
    pub columns: Vec<String>,
    /// Declared by the model (not the automatic count of an entity).
    pub declared: bool,
}

impl Measure {
    /// "sum of total usd where status = 'paid'", for interpretations.
    pub fn describe(&self) -> String {
        let what = if self.expr == "*" {
            format!("{} rows", self.entity)
        } else {
            self.expr.replace('_', " ")
        };
        let mut s = format!("{} {what}", self.agg.words());
        if let Some(f) = &self.filter {
            s.push_str(&format!(" where {f}"));
        }
        s
    }
}

/// A checked metric built from measures.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub format: Format,
    pub synonyms: Vec<String>,
    pub description: String,
    pub label: String,
}

/// What a metric computes.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricKind {
    /// numerator / denominator (measures or metrics by name).
    Ratio {
        numerator: String,
        denominator: String,
    },
    /// An expression over measures by name; `uses` are the names it reads.
    Derived { expr: String, uses: Vec<String> },
    /// A measure's share of its total over the query's groups.
    Share { of: String },
}

/// A join from one entity to another.
#[derive(Debug, Clone)]
pub struct Join {
    pub from: String,
    pub to: String,
    pub from_column: String,
    pub to_column: String,
}

/// A segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub entity: String,
    pub name: String,
    pub filter: String,
    pub synonyms: Vec<String>,
    pub description: String,
}

/// An access rule as checked.
#[derive(Debug, Clone, Default)]
pub struct AccessRule {
    /// Row filters: entity → SQL conditions over its columns (all must hold).
    pub filters: BTreeMap<String, Vec<String>>,
    /// Hidden columns: entity → columns.
    pub hidden: BTreeMap<String, BTreeSet<String>>,
}

/// The whole model, checked.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub entities: BTreeMap<String, Entity>,
    pub dimensions: Vec<Dimension>,
    pub measures: Vec<Measure>,
    pub metrics: Vec<Metric>,
    pub joins: Vec<Join>,
    pub segments: Vec<Segment>,
    /// `[access.ROLE]`, `default` included.
    pub access: BTreeMap<String, AccessRule>,
    /// The files it was read from.
    pub files: Vec<PathBuf>,
}

impl Model {
    /// The measure `name`.
    pub fn measure(&self, name: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.name == name)
    }

    /// The metric `name`.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The dimension `entity.name`.
    pub fn dimension(&self, entity: &str, name: &str) -> Option<&Dimension> {
        self.dimensions
            .iter()
            .find(|d| d.entity == entity && d.name == name)
    }

    /// A dimension by `entity.name` or by a name only one entity has.
    pub fn find_dimension(&self, key: &str) -> std::result::Result<&Dimension, String> {
        if let Some((e, n)) = key.split_once('.') {
            return self
                .dimension(e, n)
                .ok_or_else(|| format!("there is no dimension `{key}`"));
        }
        let found: Vec<&Dimension> = self.dimensions.iter().filter(|d| d.name == key).collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("there is no dimension `{key}`")),
            many => Err(format!(
                "`{key}` is a dimension of several entities; say which: {}",
                many.iter().map(|d| d.key()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The measures a metric (or measure) `name` reads, by name.
    pub fn measures_of(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_measures(name, &mut out, 0);
        out
    }

    fn collect_measures(&self, name: &str, out: &mut Vec<String>, depth: usize) {
        if depth > 16 {
            return;
        }
        if self.measure(name).is_some() {
            if !out.iter().any(|m| m == name) {
                out.push(name.to_string());
            }
            return;
        }
        if let Some(m) = self.metric(name) {
            match &m.kind {
                MetricKind::Ratio {
                    numerator,
                    denominator,
                } => {
                    self.collect_measures(numerator, out, depth + 1);
                    self.collect_measures(denominator, out, depth + 1);
                }
                MetricKind::Derived { uses, .. } => {
                    for u in uses {
                        self.collect_measures(u, out, depth + 1);
                    }
                }
                MetricKind::Share { of } => self.collect_measures(of, out, depth + 1),
            }
        }
    }

    /// A measure or metric's label and format.
    pub fn label_format(&self, name: &str) -> Option<(String, Format)> {
        if let Some(m) = self.measure(name) {
            return Some((m.label.clone(), m.format.clone()));
        }
        self.metric(name)
            .map(|m| (m.label.clone(), m.format.clone()))
    }

    /// The path of joins from `from` to `to` (empty when they are the same), breadth first
    /// along many-to-one and one-to-one joins only (so a row of `from` meets at most one row
    /// of each entity on the way and no measure is counted twice).
    pub fn join_path(&self, from: &str, to: &str) -> Option<Vec<&Join>> {
        if from == to {
            return Some(Vec::new());
        }
        let mut seen: BTreeSet<&str> = BTreeSet::from([from]);
        let mut queue: std::collections::VecDeque<(&str, Vec<&Join>)> =
            std::collections::VecDeque::from([(from, Vec::new())]);
        while let Some((at, path)) = queue.pop_front() {
            for j in self.joins.iter().filter(|j| j.from == at) {
                if !seen.insert(j.to.as_str()) {
                    continue;
                }
                let mut next = path.clone();
                next.push(j);
                if j.to == to {
                    return Some(next);
                }
                queue.push_back((j.to.as_str(), next));
            }
        }
        None
    }
}

/// `revenue_usd` → `Revenue usd`.
pub fn default_label(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Marks a caller's attribute in a checked access condition; [`fill_user`] puts the value in.
const ATTRIBUTE_MARK: char = '\u{1}';

/// `text` with every `{{ user.NAME }}` replaced by a mark that [`fill_user`] fills in per
/// caller; `None` (with the problem added) when a `{{ … }}` is not a `user.NAME`.
fn user_template(text: &str, key: &str, problems: &mut Vec<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            problems.push(format!("{key}: `{{{{` without its `}}}}`"));
            return None;
        };
        let inner = after[..end].trim();
        match inner.strip_prefix("user.") {
            Some(name) if is_ident(name) => {
                out.push(ATTRIBUTE_MARK);
                out.push_str(name);
                out.push(ATTRIBUTE_MARK);
            }
            _ => {
                problems.push(format!(
                    "{key}: `{{{{ {inner} }}}}` is not a caller's attribute; write `{{{{ user.NAME }}}}` with NAME from [attributes] in conveyor.toml (e.g. `{{{{ user.region }}}}`)"
                ));
                return None;
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// A checked access condition for a caller with `attributes`: each `{{ user.NAME }}` becomes
/// the caller's values of NAME as SQL literals (`'EMEA'`, or `'EMEA', 'APAC'` for several);
/// a condition naming an attribute the caller does not have is `FALSE` (no rows), never
/// dropped.
pub fn fill_user(condition: &str, attributes: &BTreeMap<String, Vec<String>>) -> String {
    fill_with(condition, |name| {
        let values = attributes.get(name).filter(|v| !v.is_empty())?;
        let list: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
        Some(list.join(", "))
    })
}

/// The caller's attributes a checked access condition reads, by name.
pub fn attributes_read(condition: &str) -> Vec<&str> {
    condition
        .split(ATTRIBUTE_MARK)
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name)
        .collect()
}

/// A checked access condition with every caller's attribute as the empty string: what is
/// planned to check the condition when the model is opened.
pub fn fill_sample(condition: &str) -> String {
    fill_with(condition, |_| Some("''".into()))
}

fn fill_with(condition: &str, value: impl Fn(&str) -> Option<String>) -> String {
    if !condition.contains(ATTRIBUTE_MARK) {
        return condition.to_string();
    }
    let mut out = String::with_capacity(condition.len());
    for (i, piece) in condition.split(ATTRIBUTE_MARK).enumerate() {
        if i % 2 == 0 {
            out.push_str(piece);
            continue;
        }
        match value(piece) {
            Some(v) => out.push_str(&v),
            None => return "FALSE".into(),
        }
    }
    out
}

/// Whether `name` is a plain identifier: letters, digits, `_`, not starting with a digit.
fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The identifiers an SQL expression mentions, outside string literals (lowercased); used to
/// find the columns an expression reads.
pub fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            for (_, d) in chars.by_ref() {
                if d == '\'' {
                    break;
                }
            }
        } else if c == '"' {
            let mut word = String::new();
            for (_, d) in chars.by_ref() {
                if d == '"' {
                    break;
                }
                word.push(d);
            }
            out.push(word.to_lowercase());
        } else if c.is_alphabetic() || c == '_' {
            let mut word = String::from(c);
            while let Some(&(_, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(word.to_lowercase());
        }
    }
    out
}

/// Whether the file name is a semantic model's.
pub fn is_model_file(name: &str) -> bool {
    name.ends_with(".semantic.toml") && !name.starts_with('.')
}

/// Reads and checks every `*.semantic.toml` in `dir` (`None` when there is none), with the
/// problems found (columns are checked by `Semantic::open`, which reports both together).
pub fn load_dir(dir: &Path) -> Result<Option<(Model, Vec<String>)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_model_file)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Ok(None);
    }
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => sources.push((file.display().to_string(), text)),
            Err(e) => problems.push(format!("{}: cannot be read: {e}", file.display())),
        }
    }
    let model = from_sources(&sources, &mut problems);
    Ok(Some((Model { files, ..model }, problems)))
}

/// Builds the model from `(origin, toml text)` pairs, adding every problem to `problems`.
pub fn from_sources(sources: &[(String, String)], problems: &mut Vec<String>) -> Model {
    let mut model = Model::default();
    let mut metric_defs: Vec<(String, String, MetricDef)> = Vec::new();
    let mut access_defs: Vec<(String, String, AccessDef)> = Vec::new();
    let mut entity_defs: Vec<(String, String, EntityDef)> = Vec::new();
    for (origin, text) in sources {
        let parsed: FileModel = match toml::from_str::<toml::Value>(text) {
            Err(e) => {
                problems.push(format!(
                    "{origin}: not valid TOML: {}",
                    one_line(&e.to_string())
                ));
                continue;
            }
            Ok(value) => match serde_path_to_error::deserialize(value) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!(
                        "{origin}: {}: {}",
                        e.path(),
                        one_line(&e.inner().to_string())
                    ));
                    continue;
                }
            },
        };
        for (name, def) in parsed.entities {
            entity_defs.push((origin.clone(), name, def));
        }
        for (name, def) in parsed.metrics {
            metric_defs.push((origin.clone(), name, def));
        }
        for (name, def) in parsed.access {
            access_defs.push((origin.clone(), name, def));
        }
    }

    // Names: entities, then measures and metrics share one namespace (questions name them).
    let mut metric_names: BTreeMap<String, String> = BTreeMap::new();
    for (origin, name, def) in &entity_defs {
        if !is_ident(name) {
            problems.push(format!(
                "{origin}: entities.{name}: an entity name is letters, digits and `_`"
            ));
            continue;
        }
        if let Some(first) = model.entities.get(name) {
            problems.push(format!(
                "{origin}: entities.{name}: already defined in {}",
                first.origin
            ));
            continue;
        }
        let source = match (&def.table, &def.sql) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{origin}: entities.{name}: give `table` or `sql`, not both"
                ));
                continue;
            }
            (_, Some(q)) => {
                if let Err(e) = crate::lakehouse::check_read_only(q) {
                    problems.push(format!("{origin}: entities.{name}.sql: {e}"));
                    continue;
                }
                Source::Sql(q.clone())
            }
            (t, None) => {
                let t = t.clone().unwrap_or_else(|| name.clone());
                let (layer, table) = match t.split_once('.') {
                    Some((l, n)) => (l.to_string(), n.to_string()),
                    None => ("silver".to_string(), t.clone()),
                };
                if !matches!(layer.as_str(), "silver" | "gold" | "bronze") || table.is_empty() {
                    problems.push(format!(
                        "{origin}: entities.{name}.table: `{t}` is not a table; write `silver.NAME`, `gold.NAME` or a silver table's name"
                    ));
                    continue;
                }
                Source::Table { layer, name: table }
            }
        };
        let primary_key = def.primary_key.to_vec();
        if primary_key.is_empty() {
            problems.push(format!(
                "{origin}: entities.{name}.primary_key: name at least one column"
            ));
        }
        model.entities.insert(
            name.clone(),
            Entity {
                name: name.clone(),
                origin: origin.clone(),
                source,
                primary_key,
                description: def.description.clone(),
                label: def.label.clone(),
                synonyms: def.synonyms.clone(),
                time: def.time.clone(),
                default_filters: def.default_filters.clone(),
                columns: Vec::new(),
            },
        );
    }

    for (origin, ename, def) in &entity_defs {
        if !model.entities.contains_key(ename) {
            continue;
        }
        let at = |key: &str| format!("{origin}: entities.{ename}.{key}");
        for (dname, d) in &def.dimensions {
            if !is_ident(dname) {
                problems.push(format!(
                    "{}: a dimension name is letters, digits and `_`",
                    at(&format!("dimensions.{dname}"))
                ));
                continue;
            }
            if d.column.is_some() && d.expr.is_some() {
                problems.push(format!(
                    "{}: give `column` or `expr`, not both",
                    at(&format!("dimensions.{dname}"))
                ));
                continue;
            }
            let time = match d.kind.as_deref() {
                None => None,
                Some("time") => Some(true),
                Some("categorical") => Some(false),
                Some(other) => {
                    problems.push(format!(
                        "{}: `{other}` is not a dimension type; use `categorical` or `time`",
                        at(&format!("dimensions.{dname}.type"))
                    ));
                    continue;
                }
            };
            let mut grains = Vec::new();
            for g in d.grains.iter().flatten() {
                match Grain::parse(g) {
                    Some(g) => grains.push(g),
                    None => problems.push(format!(
                        "{}: `{g}` is not a grain; use day, week, month, quarter or year",
                        at(&format!("dimensions.{dname}.grains"))
                    )),
                }
            }
            let (expr, columns) = match (&d.column, &d.expr) {
                (_, Some(e)) => (e.clone(), identifiers(e)),
                (c, None) => {
                    let c = c.clone().unwrap_or_else(|| dname.clone());
                    (quote_ident(&c), vec![c.to_lowercase()])
                }
            };
            model.dimensions.push(Dimension {
                entity: ename.clone(),
                name: dname.clone(),
                expr,
                // Settled against the column types in `Semantic::open` when not declared.
                time: time.unwrap_or(false),
                grains,
                synonyms: d.synonyms.clone(),
                values: d.values.clone(),
                description: d.description.clone(),
                label: d.label.clone().unwrap_or_else(|| default_label(dname)),
                columns,
                text: time.is_none_or(|t| !t),
                kind_declared: time.is_some(),
                timestamp: false,
            });
        }
        for (mname, m) in &def.measures {
            let key = at(&format!("measures.{mname}"));
            if !is_ident(mname) {
                problems.push(format!("{key}: a measure name is letters, digits and `_`"));
                continue;
            }
            let Some(agg) = Agg::parse(&m.agg) else {
                problems.push(format!(
                    "{key}.agg: `{}` is not an aggregation; use sum, count, count_distinct, avg, min or max",
                    m.agg
                ));
                continue;
            };
            let expr = match (&m.expr, agg) {
                (Some(e), _) => e.clone(),
                (None, Agg::Count) => "*".to_string(),
                (None, _) => {
                    problems.push(format!(
                        "{key}.expr: `{}` needs an expression to aggregate (a column, e.g. expr = \"total_usd\")",
                        m.agg
                    ));
                    continue;
                }
            };
            let format =
                match parse_format(m.format.as_deref(), m.symbol.as_deref(), m.decimals, agg) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(format!("{key}.format: {e}"));
                        continue;
                    }
                };
            if let Some(first) = metric_names.get(mname) {
                problems.push(format!(
                    "{key}: the name `{mname}` is already used by {first}; measure and metric names must be unique"
                ));
                continue;
            }
            metric_names.insert(mname.clone(), format!("entities.{ename}.measures.{mname}"));
            let mut columns = identifiers(&expr);
            if let Some(f) = &m.filter {
                columns.extend(identifiers(f));
            }
            model.measures.push(Measure {
                entity: ename.clone(),
                name: mname.clone(),
                agg,
                expr,
                filter: m.filter.clone(),
                format,
                synonyms: m.synonyms.clone(),
                description: m.description.clone(),
                label: m.label.clone().unwrap_or_else(|| default_label(mname)),
                time: m.time.clone(),
                columns,
                declared: true,
            });
        }
        for (sname, s) in &def.segments {
            model.segments.push(Segment {
                entity: ename.clone(),
                name: sname.clone(),
                filter: s.filter.clone(),
                synonyms: s.synonyms.clone(),
                description: s.description.clone(),
            });
        }
        for (i, j) in def.joins.iter().enumerate() {
            let key = at(&format!("joins[{i}]"));
            let Some(target) = model.entities.get(&j.to) else {
                problems.push(format!(
                    "{key}.to: there is no entity `{}`{}",
                    j.to,
                    suggest(&j.to, model.entities.keys())
                ));
                continue;
            };
            match j.relationship.as_deref() {
                None | Some("many_to_one" | "one_to_one") => {}
                Some(other) => {
                    problems.push(format!(
                        "{key}.relationship: `{other}` is not supported; a join goes from many rows (or one) to one: many_to_one or one_to_one (declare the join on the entity whose rows point at the other)"
                    ));
                    continue;
                }
            }
            let to_column =
                j.to_column
                    .clone()
                    .unwrap_or_else(|| match target.primary_key.as_slice() {
                        [one] => one.clone(),
                        _ => j.on.clone(),
                    });
            model.joins.push(Join {
                from: ename.clone(),
                to: j.to.clone(),
                from_column: j.on.clone(),
                to_column,
            });
        }
    }

    // Every entity counts its rows: "how many orders".
    let names: Vec<String> = model.entities.keys().cloned().collect();
    for ename in names {
        if metric_names.contains_key(&ename) {
            continue;
        }
        let Some(e) = model.entities.get(&ename) else {
            continue;
        };
        let mut synonyms = e.synonyms.clone();
        synonyms.push(format!("number of {ename}"));
        metric_names.insert(ename.clone(), format!("entities.{ename}"));
        model.measures.push(Measure {
            entity: ename.clone(),
            name: ename.clone(),
            agg: Agg::Count,
            expr: "*".into(),
            filter: None,
            format: Format::Number { decimals: 0 },
            synonyms,
            description: format!("the number of {ename}"),
            label: default_label(&format!("number of {ename}")),
            time: None,
            columns: Vec::new(),
            declared: false,
        });
    }

    for (origin, name, def) in &metric_defs {
        let key = format!("{origin}: metrics.{name}");
        if !is_ident(name) {
            problems.push(format!("{key}: a metric name is letters, digits and `_`"));
            continue;
        }
        if let Some(first) = metric_names.get(name) {
            problems.push(format!(
                "{key}: the name `{name}` is already used by {first}; measure and metric names must be unique"
            ));
            continue;
        }
        let need =
            |field: &Option<String>, what: &str, problems: &mut Vec<String>| -> Option<String> {
                match field {
                    Some(v) => Some(v.clone()),
                    None => {
                        problems.push(format!(
                            "{key}.{what}: a `{}` metric needs `{what}`",
                            def.kind
                        ));
                        None
                    }
                }
            };
        let kind = match def.kind.as_str() {
            "ratio" => {
                let (Some(n), Some(d)) = (
                    need(&def.numerator, "numerator", problems),
                    need(&def.denominator, "denominator", problems),
                ) else {
                    continue;
                };
                MetricKind::Ratio {
                    numerator: n,
                    denominator: d,
                }
            }
            "derived" => {
                let Some(e) = need(&def.expr, "expr", problems) else {
                    continue;
                };
                let uses: Vec<String> = identifiers(&e)
                    .into_iter()
                    .filter(|w| !matches!(w.as_str(), "nullif" | "coalesce" | "abs" | "round"))
                    .collect();
                MetricKind::Derived { expr: e, uses }
            }
            "share" => {
                let Some(of) = need(&def.of, "of", problems) else {
                    continue;
                };
                MetricKind::Share { of }
            }
            other => {
                problems.push(format!(
                    "{key}.type: `{other}` is not a metric type; use ratio, derived or share (a simple sum or count is a measure of an entity)"
                ));
                continue;
            }
        };
        let default_fmt = if matches!(kind, MetricKind::Share { .. }) {
            Some("percent")
        } else {
            None
        };
        let format = match parse_format(
            def.format.as_deref().or(default_fmt),
            def.symbol.as_deref(),
            def.decimals,
            Agg::Sum,
        ) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{key}.format: {e}"));
                continue;
            }
        };
        metric_names.insert(name.clone(), format!("metrics.{name}"));
        model.metrics.push(Metric {
            name: name.clone(),
            kind,
            format,
            synonyms: def.synonyms.clone(),
            description: def.description.clone(),
            label: def.label.clone().unwrap_or_else(|| default_label(name)),
        });
    }
    // References between metrics, once every name is known.
    let known: BTreeSet<String> = metric_names.keys().cloned().collect();
    for (origin, name, _) in &metric_defs {
        let Some(m) = model.metric(name) else {
            continue;
        };
        let refs: Vec<(&str, String)> = match &m.kind {
            MetricKind::Ratio {
                numerator,
                denominator,
            } => vec![
                ("numerator", numerator.clone()),
                ("denominator", denominator.clone()),
            ],
            MetricKind::Derived { uses, .. } => uses.iter().map(|u| ("expr", u.clone())).collect(),
            MetricKind::Share { of } => vec![("of", of.clone())],
        };
        for (field, r) in refs {
            if !known.contains(&r) {
                problems.push(format!(
                    "{origin}: metrics.{name}.{field}: there is no measure or metric `{r}`{}",
                    suggest(&r, known.iter())
                ));
            } else if r == *name {
                problems.push(format!(
                    "{origin}: metrics.{name}.{field}: a metric cannot use itself"
                ));
            }
        }
        if let MetricKind::Share { of } = &m.kind
            && model.measure(of).is_none()
            && known.contains(of)
        {
            problems.push(format!(
                "{origin}: metrics.{name}.of: a share is of a measure; `{of}` is a metric"
            ));
        }
    }

    // Entity-level references: time dimensions, labels, join columns.
    for (origin, ename, def) in &entity_defs {
        let Some(_) = model.entities.get(ename) else {
            continue;
        };
        // The label column is a dimension ("top 5 customers" groups by it).
        if let Some(l) = &def.label
            && !model
                .dimensions
                .iter()
                .any(|d| d.entity == *ename && (d.name == *l || d.expr == quote_ident(l)))
        {
            model.dimensions.push(Dimension {
                entity: ename.clone(),
                name: l.clone(),
                expr: quote_ident(l),
                time: false,
                grains: Vec::new(),
                synonyms: Vec::new(),
                values: BTreeMap::new(),
                description: format!("the name of one of {ename}"),
                label: default_label(l),
                columns: vec![l.to_lowercase()],
                text: true,
                kind_declared: true,
                timestamp: false,
            });
        }
        if let Some(t) = &def.time
            && model.dimension(ename, t).is_none()
        {
            // A time column without a declared dimension gets one.
            model.dimensions.push(Dimension {
                entity: ename.clone(),
                name: t.clone(),
                expr: quote_ident(t),
                time: true,
                grains: Vec::new(),
                synonyms: Vec::new(),
                values: BTreeMap::new(),
                description: String::new(),
                label: default_label(t),
                columns: vec![t.to_lowercase()],
                text: false,
                kind_declared: true,
                timestamp: false,
            });
        }
        for (mname, m) in &def.measures {
            if let Some(t) = &m.time
                && model.dimension(ename, t).is_none()
            {
                problems.push(format!(
                    "{origin}: entities.{ename}.measures.{mname}.time: `{t}` is not a dimension of {ename}; declare it under [entities.{ename}.dimensions] with type = \"time\""
                ));
            }
        }
    }

    for (origin, role, def) in &access_defs {
        let key = format!("{origin}: access.{role}");
        let mut rule = AccessRule::default();
        for (dim, values) in &def.rows {
            match model.find_dimension(dim) {
                Ok(d) => {
                    let mut list: Vec<String> = Vec::new();
                    for v in values.to_vec() {
                        let at = format!("{key}.rows.\"{dim}\"");
                        match user_template(&v, &at, problems) {
                            Some(t) if t != v => {
                                let t = t.trim();
                                if t.starts_with(ATTRIBUTE_MARK)
                                    && t.ends_with(ATTRIBUTE_MARK)
                                    && t.matches(ATTRIBUTE_MARK).count() == 2
                                {
                                    list.push(t.to_string());
                                } else {
                                    problems.push(format!(
                                        "{at}: `{v}` mixes text with a caller's attribute; a value is either text or `{{{{ user.NAME }}}}` alone"
                                    ));
                                }
                            }
                            Some(_) => list.push(quote_literal(&v)),
                            None => {}
                        }
                    }
                    if list.is_empty() {
                        problems.push(format!("{key}.rows.\"{dim}\": list at least one value"));
                        continue;
                    }
                    rule.filters
                        .entry(d.entity.clone())
                        .or_default()
                        .push(format!("({}) IN ({})", d.expr, list.join(", ")));
                }
                Err(e) => problems.push(format!("{key}.rows.\"{dim}\": {e}")),
            }
        }
        for (entity, cond) in &def.where_sql {
            if !model.entities.contains_key(entity) {
                problems.push(format!(
                    "{key}.where.{entity}: there is no entity `{entity}`{}",
                    suggest(entity, model.entities.keys())
                ));
                continue;
            }
            if let Some(cond) = user_template(cond, &format!("{key}.where.{entity}"), problems) {
                rule.filters
                    .entry(entity.clone())
                    .or_default()
                    .push(format!("({cond})"));
            }
        }
        for h in &def.hidden {
            match h.split_once('.') {
                Some((e, c)) if model.entities.contains_key(e) => {
                    rule.hidden
                        .entry(e.to_string())
                        .or_default()
                        .insert(c.to_lowercase());
                }
                _ => problems.push(format!(
                    "{key}.hidden: `{h}` is not ENTITY.COLUMN of a declared entity"
                )),
            }
        }
        model.access.insert(role.clone(), rule);
    }
    model
}

fn parse_format(
    format: Option<&str>,
    symbol: Option<&str>,
    decimals: Option<u8>,
    agg: Agg,
) -> std::result::Result<Format, String> {
    if decimals.is_some_and(|d| d > 12) {
        return Err("decimals: at most 12".into());
    }
    let counting = matches!(agg, Agg::Count | Agg::CountDistinct);
    Ok(
        match format.unwrap_or(if counting { "integer" } else { "number" }) {
            "number" => Format::Number {
                decimals: decimals.unwrap_or(2),
            },
            "integer" => Format::Number {
                decimals: decimals.unwrap_or(0),
            },
            "currency" => Format::Currency {
                symbol: symbol.unwrap_or("$").to_string(),
                decimals: decimals.unwrap_or(2),
            },
            "percent" => Format::Percent {
                decimals: decimals.unwrap_or(1),
            },
            other => {
                return Err(format!(
                    "`{other}` is not a format; use number, integer, currency or percent"
                ));
            }
        },
    )
}

/// ` (did you mean `x`?)` for the nearest of `names`, or nothing.
pub fn suggest<'a>(word: &str, names: impl Iterator<Item = &'a String>) -> String {
    match nearest(word, names) {
        Some(n) => format!(" (did you mean `{n}`?)"),
        None => String::new(),
    }
}

/// The name nearest to `word` by edit distance, when it is close.
pub fn nearest<'a>(word: &str, names: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    let w = word.to_lowercase();
    names
        .map(|n| (edit_distance(&w, &n.to_lowercase()), n))
        .filter(|(d, n)| *d <= (n.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let best = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur[j + 1] = best;
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
