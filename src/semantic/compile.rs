//! A metric query → one SQL query over the entities' views.
//!
//! Each entity a query touches is read through a subquery that computes, under short aliases,
//! exactly the expressions the query needs from it (dimension and measure expressions, join
//! keys, the time column, filters as booleans), so expressions are written over the entity's
//! own columns and never clash with another entity's. Measures are grouped by their entity;
//! each group joins the entities its dimensions live in along many-to-one joins (a row meets
//! one row of each, so nothing is counted twice) and aggregates; several groups are joined on
//! the dimensions. Metrics (ratios, derived, shares) are computed on top. Comparisons count
//! each measure twice with `FILTER (WHERE …)` on the two periods, in one scan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{Model, quote_ident, quote_literal};
use super::when::{DateRange, Grain};

/// What a question asks, structured (also the `query_metrics` tool's arguments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricQuery {
    /// Measures or metrics by name.
    pub metrics: Vec<String>,
    /// Dimensions to group by (`entity.name`, or a name only one entity has).
    pub dimensions: Vec<String>,
    /// Keep only rows whose dimension has one of the values.
    pub filters: Vec<Filter>,
    /// Named segments (`entity.segment` or the segment's name).
    pub segments: Vec<String>,
    /// The period asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Period>,
    /// A second period to compare with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<Period>,
    /// A time series grain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain: Option<String>,
    /// Show each metric as its share of the total over the groups.
    pub share: bool,
    /// After shares are computed, keep only these groups ("what share came from DE").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub focus: Vec<Filter>,
    /// Order by a metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Most rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A filter on a dimension's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The dimension.
    pub dimension: String,
    /// The values kept.
    pub values: Vec<String>,
}

/// A period: `start` inclusive, `end` exclusive, as ISO dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: chrono::NaiveDate,
    pub end: chrono::NaiveDate,
    /// How it is said ("2025", "Q3 2025").
    #[serde(default)]
    pub label: String,
}

impl From<&DateRange> for Period {
    fn from(r: &DateRange) -> Self {
        Self {
            start: r.start,
            end: r.end,
            label: r.label.clone(),
        }
    }
}

/// An ordering by a metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The metric.
    pub by: String,
    /// Largest first.
    #[serde(default = "yes")]
    pub desc: bool,
}

fn yes() -> bool {
    true
}

/// What a result column is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnKind {
    /// A dimension's values.
    Dimension { key: String },
    /// The time series' periods.
    Period { grain: String },
    /// A metric's values.
    Metric { name: String, role: MetricRole },
}

/// Which value of a metric a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    /// Its value (for the period asked about).
    Value,
    /// Its value in the compared period.
    Previous,
    /// Value − previous.
    Change,
    /// (Value − previous) / previous.
    ChangeRatio,
    /// Its share of the total.
    Share,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutColumn {
    /// The SQL alias (also the header).
    pub label: String,
    /// What it holds.
    #[serde(flatten)]
    pub kind: ColumnKind,
}

/// A compiled query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compiled {
    /// The SQL, over the entities' views.
    pub sql: String,
    /// Its columns.
    pub columns: Vec<OutColumn>,
    /// The entities it reads.
    pub entities: Vec<String>,
    /// The time dimensions the periods applied to (`entity.name`).
    pub time_dimensions: Vec<String>,
}

/// Why a query cannot be compiled; said to the person who asked.
pub type CompileError = String;

/// One entity read through its subquery.
struct Part {
    entity: String,
    alias: String,
    exprs: Vec<(String, String)>,
}

impl Part {
    /// The alias under which `expr` is selected (added once).
    fn col(&mut self, expr: &str) -> String {
        if let Some((_, a)) = self.exprs.iter().find(|(e, _)| e == expr) {
            return format!("{}.{a}", self.alias);
        }
        let a = format!("c{}", self.exprs.len());
        self.exprs.push((expr.to_string(), a.clone()));
        format!("{}.{a}", self.alias)
    }

    fn sql(&self) -> String {
        let list = if self.exprs.is_empty() {
            "1 AS c".to_string()
        } else {
            self.exprs
                .iter()
                .map(|(e, a)| format!("{e} AS {a}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "(SELECT {list} FROM {}) AS {}",
            quote_ident(&self.entity),
            self.alias
        )
    }
}

/// The SQL of a date literal.
fn date(d: chrono::NaiveDate) -> String {
    format!("DATE '{}'", d.format("%Y-%m-%d"))
}

/// Compiles `q` against `model`.
pub fn compile(model: &Model, q: &MetricQuery) -> Result<Compiled, CompileError> {
    if q.metrics.is_empty() {
        return Err("the query names no metric".into());
    }
    let grain = match q.grain.as_deref() {
        None => None,
        Some(g) => Some(Grain::parse(g).ok_or_else(|| {
            format!("`{g}` is not a grain; use day, week, month, quarter or year")
        })?),
    };
    if grain.is_some() && q.compare.is_some() {
        return Err(
            "a comparison of two periods cannot also be a time series; ask for one or the other"
                .into(),
        );
    }
    // Metrics → measures, grouped by entity.
    let mut measures: Vec<String> = Vec::new();
    for m in &q.metrics {
        if model.measure(m).is_none() && model.metric(m).is_none() {
            let names: Vec<String> = model
                .measures
                .iter()
                .map(|m| m.name.clone())
                .chain(model.metrics.iter().map(|m| m.name.clone()))
                .collect();
            return Err(format!(
                "there is no metric `{m}`{}",
                super::model::suggest(m, names.iter())
            ));
        }
        for x in model.measures_of(m) {
            if !measures.contains(&x) {
                measures.push(x);
            }
        }
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in &measures {
        if let Some(m) = model.measure(name) {
            groups
                .entry(m.entity.clone())
                .or_default()
                .push(name.clone());
        }
    }
    let dims: Vec<&super::model::Dimension> = q
        .dimensions
        .iter()
        .map(|d| model.find_dimension(d))
        .collect::<Result<_, _>>()?;
    let filters: Vec<(&super::model::Dimension, &Vec<String>)> = q
        .filters
        .iter()
        .chain(&q.focus)
        .map(|f| model.find_dimension(&f.dimension).map(|d| (d, &f.values)))
        .collect::<Result<_, _>>()?;
    let focus_keys: Vec<String> = q
        .focus
        .iter()
        .filter_map(|f| model.find_dimension(&f.dimension).ok().map(|d| d.key()))
        .collect();
    // A focus dimension is grouped by (its filter applies after the shares).
    let mut group_dims: Vec<&super::model::Dimension> = dims.clone();
    for (d, _) in &filters {
        if focus_keys.contains(&d.key()) && !group_dims.iter().any(|g| g.key() == d.key()) {
            group_dims.push(d);
        }
    }
    let mut segments = Vec::new();
    for s in &q.segments {
        let found = match s.split_once('.') {
            Some((e, n)) => model.segments.iter().find(|x| x.entity == e && x.name == n),
            None => model.segments.iter().find(|x| x.name == *s),
        };
        segments.push(found.ok_or_else(|| format!("there is no segment `{s}`"))?);
    }

    let periods: Vec<(&str, &Period)> = match (&q.time, &q.compare) {
        (Some(t), Some(c)) => vec![("cur", t), ("prev", c)],
        (Some(t), None) => vec![("cur", t)],
        (None, Some(c)) => vec![("prev", c)],
        (None, None) => Vec::new(),
    };
    let comparing = q.compare.is_some();

    let mut group_sql = Vec::new();
    let mut entities: Vec<String> = Vec::new();
    let mut time_dimensions = Vec::new();
    let dim_alias = |i: usize| format!("d{i}");
    for (gi, (entity, ms)) in groups.iter().enumerate() {
        let mut parts: Vec<Part> = vec![Part {
            entity: entity.clone(),
            alias: "t0".into(),
            exprs: Vec::new(),
        }];
        let mut joins_sql = Vec::new();
        // The part of `target`, joined along the path from `entity`.
        let part_of = |target: &str,
                       parts: &mut Vec<Part>,
                       joins_sql: &mut Vec<String>|
         -> Result<usize, CompileError> {
            let path = model.join_path(entity, target).ok_or_else(|| {
                format!(
                    "`{target}` cannot be reached from `{entity}` through many-to-one joins, so {entity} cannot be split or filtered by it; add a join under [entities.{entity}] or ask about something of {target}"
                )
            })?;
            let mut at = 0usize;
            for j in path {
                if let Some(i) = parts.iter().position(|p| p.entity == j.to) {
                    at = i;
                    continue;
                }
                let from_col = parts
                    .get_mut(at)
                    .map(|p| p.col(&quote_ident(&j.from_column)))
                    .unwrap_or_default();
                let alias = format!("t{}", parts.len());
                let mut p = Part {
                    entity: j.to.clone(),
                    alias: alias.clone(),
                    exprs: Vec::new(),
                };
                let to_col = p.col(&quote_ident(&j.to_column));
                parts.push(p);
                joins_sql.push(format!("LEFT JOIN {{{alias}}} ON {from_col} = {to_col}"));
                at = parts.len() - 1;
            }
            Ok(at)
        };
        let mut select = Vec::new();
        let mut group_by = Vec::new();
        for (i, d) in group_dims.iter().enumerate() {
            let at = part_of(&d.entity, &mut parts, &mut joins_sql)?;
            let c = parts
                .get_mut(at)
                .map(|p| p.col(&d.expr))
                .unwrap_or_default();
            select.push(format!("{c} AS {}", dim_alias(i)));
            group_by.push(dim_alias(i));
        }
        let e = model
            .entities
            .get(entity)
            .ok_or_else(|| format!("there is no entity `{entity}`"))?;
        // The time dimension: the first measure's own, else the entity's.
        let time_dim = ms
            .iter()
            .filter_map(|m| model.measure(m).and_then(|m| m.time.clone()))
            .next()
            .or_else(|| e.time.clone());
        let needs_time = grain.is_some() || !periods.is_empty();
        let time_col = if needs_time {
            let t = time_dim.as_ref().ok_or_else(|| {
                format!(
                    "{entity} has no time dimension, so it cannot be asked about a period or by {}; set `time = \"COLUMN\"` under [entities.{entity}]",
                    grain.map_or("period", Grain::as_str)
                )
            })?;
            let d = model
                .dimension(entity, t)
                .ok_or_else(|| format!("`{t}` is not a dimension of {entity}"))?;
            time_dimensions.push(d.key());
            let expr = if d.timestamp {
                format!("CAST({} AS DATE)", d.expr)
            } else {
                d.expr.clone()
            };
            Some(parts.get_mut(0).map(|p| p.col(&expr)).unwrap_or_default())
        } else {
            None
        };
        if let (Some(g), Some(t)) = (grain, &time_col) {
            select.push(format!(
                "CAST(date_trunc('{}', {t}) AS DATE) AS period",
                g.as_str()
            ));
            group_by.push("period".into());
        }
        let mut wheres: Vec<String> = Vec::new();
        for f in &e.default_filters {
            let c = parts
                .get_mut(0)
                .map(|p| p.col(&format!("({f})")))
                .unwrap_or_default();
            wheres.push(c);
        }
        for (d, values) in &filters {
            if focus_keys.contains(&d.key()) {
                continue;
            }
            let at = part_of(&d.entity, &mut parts, &mut joins_sql)?;
            let expr = if d.text {
                format!("CAST({} AS VARCHAR)", d.expr)
            } else {
                d.expr.clone()
            };
            let c = parts.get_mut(at).map(|p| p.col(&expr)).unwrap_or_default();
            let list: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
            if list.is_empty() {
                return Err(format!("the filter on `{}` lists no value", d.key()));
            }
            wheres.push(format!("{c} IN ({})", list.join(", ")));
        }
        for s in &segments {
            let at = part_of(&s.entity, &mut parts, &mut joins_sql)?;
            let c = parts
                .get_mut(at)
                .map(|p| p.col(&format!("({})", s.filter)))
                .unwrap_or_default();
            wheres.push(c);
        }
        let in_period =
            |t: &str, p: &Period| format!("({t} >= {} AND {t} < {})", date(p.start), date(p.end));
        if let Some(t) = &time_col
            && !periods.is_empty()
        {
            let any: Vec<String> = periods.iter().map(|(_, p)| in_period(t, p)).collect();
            wheres.push(format!("({})", any.join(" OR ")));
        }
        for name in ms {
            let Some(m) = model.measure(name) else {
                continue;
            };
            let arg = if m.expr == "*" {
                "*".to_string()
            } else {
                parts.get_mut(0).map(|p| p.col(&m.expr)).unwrap_or_default()
            };
            let filt = m.filter.as_ref().map(|f| {
                parts
                    .get_mut(0)
                    .map(|p| p.col(&format!("({f})")))
                    .unwrap_or_default()
            });
            let variants: Vec<(&str, Option<String>)> = if comparing {
                periods
                    .iter()
                    .map(|(tag, p)| (*tag, time_col.as_ref().map(|t| in_period(t, p))))
                    .collect()
            } else {
                vec![("cur", None)]
            };
            for (tag, period_cond) in variants {
                let conds: Vec<String> = filt.iter().cloned().chain(period_cond).collect();
                let agg = m.agg.sql(&arg);
                let agg = if conds.is_empty() {
                    agg
                } else {
                    format!("{agg} FILTER (WHERE {})", conds.join(" AND "))
                };
                select.push(format!(
                    "{agg} AS {}",
                    quote_ident(&format!("{name}__{tag}"))
                ));
            }
        }
        let mut from = parts.first().map(Part::sql).unwrap_or_default();
        for j in &joins_sql {
            let mut j = j.clone();
            for p in &parts {
                j = j.replace(&format!("{{{}}}", p.alias), &p.sql());
            }
            from.push('\n');
            from.push_str(&j);
        }
        for p in &parts {
            if !entities.contains(&p.entity) {
                entities.push(p.entity.clone());
            }
        }
        let mut sql = format!("SELECT {}\nFROM {from}", select.join(", "));
        if !wheres.is_empty() {
            sql.push_str(&format!("\nWHERE {}", wheres.join("\n  AND ")));
        }
        if !group_by.is_empty() {
            sql.push_str(&format!("\nGROUP BY {}", group_by.join(", ")));
        }
        group_sql.push((format!("g{gi}"), ms.clone(), sql));
    }

    // Join the groups on their keys.
    let mut keys: Vec<String> = (0..group_dims.len()).map(dim_alias).collect();
    if grain.is_some() {
        keys.push("period".into());
    }
    let mut ctes: Vec<String> = group_sql
        .iter()
        .map(|(name, _, sql)| format!("{name} AS (\n{sql}\n)"))
        .collect();
    let tags: Vec<&str> = if comparing {
        periods.iter().map(|(t, _)| *t).collect()
    } else {
        vec!["cur"]
    };
    let joined = if group_sql.len() == 1 {
        "g0".to_string()
    } else {
        let key_cols: Vec<String> = keys
            .iter()
            .map(|k| {
                let all: Vec<String> = group_sql
                    .iter()
                    .map(|(g, _, _)| format!("{g}.{k}"))
                    .collect();
                format!("COALESCE({}) AS {k}", all.join(", "))
            })
            .collect();
        let mut measure_cols: Vec<String> = Vec::new();
        for (g, ms, _) in &group_sql {
            for m in ms {
                for t in &tags {
                    measure_cols.push(format!("{g}.{}", quote_ident(&format!("{m}__{t}"))));
                }
            }
        }
        let mut from = "g0".to_string();
        for (g, _, _) in group_sql.iter().skip(1) {
            if keys.is_empty() {
                from.push_str(&format!(" CROSS JOIN {g}"));
            } else {
                let on: Vec<String> = keys
                    .iter()
                    .map(|k| format!("g0.{k} IS NOT DISTINCT FROM {g}.{k}"))
                    .collect();
                from.push_str(&format!(" FULL JOIN {g} ON {}", on.join(" AND ")));
            }
        }
        ctes.push(format!(
            "j AS (SELECT {} FROM {from})",
            key_cols
                .into_iter()
                .chain(measure_cols)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        "j".to_string()
    };

    // The outer select: dimensions, period, metrics.
    let mut columns = Vec::new();
    let mut outer = Vec::new();
    for (i, d) in group_dims.iter().enumerate() {
        outer.push(format!("{} AS {}", dim_alias(i), quote_ident(&d.label)));
        columns.push(OutColumn {
            label: d.label.clone(),
            kind: ColumnKind::Dimension { key: d.key() },
        });
    }
    if let Some(g) = grain {
        let label = super::model::default_label(g.as_str());
        outer.push(format!("period AS {}", quote_ident(&label)));
        columns.push(OutColumn {
            label,
            kind: ColumnKind::Period {
                grain: g.as_str().into(),
            },
        });
    }
    let mut first_metric_alias = None;
    for m in &q.metrics {
        let (label, _) = model
            .label_format(m)
            .ok_or_else(|| format!("there is no metric `{m}`"))?;
        let value = |tag: &str| metric_sql(model, m, tag, 0);
        let mut add = |label: String, expr: String, role: MetricRole| {
            outer.push(format!("{expr} AS {}", quote_ident(&label)));
            columns.push(OutColumn {
                label,
                kind: ColumnKind::Metric {
                    name: m.clone(),
                    role,
                },
            });
        };
        if comparing {
            let cur = value("cur")?;
            let prev = value("prev")?;
            let (cur_label, prev_label) = match (&q.time, &q.compare) {
                (Some(t), Some(c)) => (
                    format!("{label} ({})", t.label),
                    format!("{label} ({})", c.label),
                ),
                _ => (label.clone(), format!("{label} (previous)")),
            };
            add(cur_label.clone(), cur.clone(), MetricRole::Value);
            add(prev_label, prev.clone(), MetricRole::Previous);
            add(
                "Change".into(),
                format!("({cur}) - ({prev})"),
                MetricRole::Change,
            );
            add(
                "Change %".into(),
                format!(
                    "(CAST({cur} AS DOUBLE) - CAST({prev} AS DOUBLE)) / NULLIF(abs(CAST({prev} AS DOUBLE)), 0)"
                ),
                MetricRole::ChangeRatio,
            );
            first_metric_alias.get_or_insert(cur_label);
        } else if q.share {
            let v = value("cur")?;
            let share_label = format!("Share of {}", label.to_lowercase());
            add(label.clone(), v.clone(), MetricRole::Value);
            add(
                share_label,
                format!("CAST({v} AS DOUBLE) / NULLIF(sum(CAST({v} AS DOUBLE)) OVER (), 0)"),
                MetricRole::Share,
            );
            first_metric_alias.get_or_insert(label);
        } else {
            add(label.clone(), value("cur")?, MetricRole::Value);
            first_metric_alias.get_or_insert(label);
        }
    }

    // Groups where no measure has a value (a country with customers but no paid order) are
    // left out; a time series keeps its empty periods.
    let some_value: Vec<String> = measures
        .iter()
        .flat_map(|m| {
            tags.iter()
                .map(move |t| format!("{} IS NOT NULL", quote_ident(&format!("{m}__{t}"))))
        })
        .collect();
    let keep = if group_dims.is_empty() || grain.is_some() || some_value.is_empty() {
        String::new()
    } else {
        format!("\nWHERE {}", some_value.join(" OR "))
    };
    let mut sql = format!(
        "WITH {}\nSELECT {}\nFROM {joined}{keep}",
        ctes.join(",\n"),
        outer.join(", ")
    );
    // Focus filters apply after the shares: an outer query over the result.
    if !q.focus.is_empty() {
        let mut conds = Vec::new();
        for f in &q.focus {
            let Ok(d) = model.find_dimension(&f.dimension) else {
                continue;
            };
            let list: Vec<String> = f.values.iter().map(|v| quote_literal(v)).collect();
            conds.push(format!(
                "CAST({} AS VARCHAR) IN ({})",
                quote_ident(&d.label),
                list.join(", ")
            ));
        }
        sql = format!(
            "SELECT * FROM (\n{sql}\n) AS r WHERE {}",
            conds.join(" AND ")
        );
    }
    let order = match (&q.order, grain) {
        (Some(o), _) => {
            let (label, _) = model
                .label_format(&o.by)
                .ok_or_else(|| format!("there is no metric `{}` to order by", o.by))?;
            let alias = columns
                .iter()
                .find(|c| matches!(&c.kind, ColumnKind::Metric { name, role: MetricRole::Value } if *name == o.by))
                .map_or(label, |c| c.label.clone());
            Some(format!(
                "{} {} NULLS LAST",
                quote_ident(&alias),
                if o.desc { "DESC" } else { "ASC" }
            ))
        }
        (None, Some(g)) => Some(quote_ident(&super::model::default_label(g.as_str()))),
        (None, None) if !group_dims.is_empty() => first_metric_alias
            .as_ref()
            .map(|a| format!("{} DESC NULLS LAST", quote_ident(a))),
        _ => None,
    };
    if let Some(o) = order {
        sql.push_str(&format!("\nORDER BY {o}"));
    }
    if let Some(n) = q.limit {
        sql.push_str(&format!("\nLIMIT {n}"));
    }
    Ok(Compiled {
        sql,
        columns,
        entities,
        time_dimensions,
    })
}

/// The SQL of metric `name` over the joined measures of `tag` (`cur`/`prev`).
fn metric_sql(model: &Model, name: &str, tag: &str, depth: usize) -> Result<String, CompileError> {
    if depth > 16 {
        return Err(format!(
            "the metric `{name}` refers to itself through others"
        ));
    }
    if model.measure(name).is_some() {
        return Ok(quote_ident(&format!("{name}__{tag}")));
    }
    let m = model
        .metric(name)
        .ok_or_else(|| format!("there is no metric `{name}`"))?;
    Ok(match &m.kind {
        super::model::MetricKind::Ratio {
            numerator,
            denominator,
        } => format!(
            "CAST({} AS DOUBLE) / NULLIF(CAST({} AS DOUBLE), 0)",
            metric_sql(model, numerator, tag, depth + 1)?,
            metric_sql(model, denominator, tag, depth + 1)?
        ),
        super::model::MetricKind::Derived { expr, uses } => {
            let mut out = String::new();
            let mut word = String::new();
            let flush = |word: &mut String, out: &mut String| -> Result<(), CompileError> {
                if word.is_empty() {
                    return Ok(());
                }
                if uses.iter().any(|u| u.eq_ignore_ascii_case(word)) {
                    out.push_str(&format!(
                        "CAST({} AS DOUBLE)",
                        metric_sql(model, &word.to_lowercase(), tag, depth + 1)?
                    ));
                } else {
                    out.push_str(word);
                }
                word.clear();
                Ok(())
            };
            for c in expr.chars() {
                if c.is_alphanumeric() || c == '_' {
                    word.push(c);
                } else {
                    flush(&mut word, &mut out)?;
                    out.push(c);
                }
            }
            flush(&mut word, &mut out)?;
            format!("({out})")
        }
        super::model::MetricKind::Share { of } => {
            let v = metric_sql(model, of, tag, depth + 1)?;
            format!("CAST({v} AS DOUBLE) / NULLIF(sum(CAST({v} AS DOUBLE)) OVER (), 0)")
        }
    })
}
