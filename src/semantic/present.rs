//! BI answers for people: how a question was understood, the result as a sentence or an
//! aligned table, a chart when one helps, and CSV.

use serde_json::Value;

use super::BiAnswer;
use super::chart::{ChartKind, ChartSpec, Series};
use super::compile::{ColumnKind, MetricQuery, MetricRole, OutColumn};
use super::model::{Format, Model};

/// Most rows a chat answer shows in its table (the rest: CSV, the web page, `--json`).
pub const CHAT_ROWS: usize = 25;

/// "Revenue (sum of total usd where status = 'paid') by plan, ordered in 2025", from the
/// structured query.
pub fn interpretation(model: &Model, q: &MetricQuery) -> String {
    let mut parts: Vec<String> = Vec::new();
    let metrics: Vec<String> = q
        .metrics
        .iter()
        .map(|m| {
            if let Some(x) = model.measure(m) {
                format!("{} ({})", x.label, x.describe())
            } else if let Some(x) = model.metric(m) {
                let how = match &x.kind {
                    super::model::MetricKind::Ratio {
                        numerator,
                        denominator,
                    } => format!(
                        "{} ÷ {}",
                        name_of(model, numerator),
                        name_of(model, denominator)
                    ),
                    super::model::MetricKind::Derived { expr, .. } => expr.clone(),
                    super::model::MetricKind::Share { of } => {
                        format!("share of {}", name_of(model, of).to_lowercase())
                    }
                };
                format!("{} ({how})", x.label)
            } else {
                m.clone()
            }
        })
        .collect();
    let mut head = metrics.join(" and ");
    if q.share {
        head = format!("Share of {head}");
    }
    parts.push(head);
    let dims: Vec<String> = q
        .dimensions
        .iter()
        .map(|d| {
            model
                .find_dimension(d)
                .map_or_else(|_| d.clone(), |x| x.label.to_lowercase())
        })
        .collect();
    if let Some(g) = &q.grain {
        parts.push(format!("by {g}"));
    }
    if !dims.is_empty() {
        parts.push(format!("by {}", dims.join(" and ")));
    }
    for f in q.filters.iter().chain(&q.focus) {
        let label = model
            .find_dimension(&f.dimension)
            .map_or_else(|_| f.dimension.clone(), |x| x.label.to_lowercase());
        parts.push(format!("where {label} is {}", f.values.join(" or ")));
    }
    for s in &q.segments {
        parts.push(format!(
            "{} only",
            s.rsplit('.').next().unwrap_or(s).replace('_', " ")
        ));
    }
    let time_dim = q
        .metrics
        .first()
        .and_then(|m| model.measures_of(m).into_iter().next())
        .and_then(|m| model.measure(&m).cloned())
        .and_then(|m| {
            m.time
                .clone()
                .or_else(|| model.entities.get(&m.entity).and_then(|e| e.time.clone()))
        })
        .map(|t| t.replace('_', " "));
    if let Some(t) = &q.time {
        let on = time_dim
            .as_ref()
            .map(|d| format!(" (by {d})"))
            .unwrap_or_default();
        let label = label_of(t);
        let named = label.starts_with(|c: char| c.is_ascii_digit())
            || [
                "Q", "H", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                "Nov", "Dec", "week",
            ]
            .iter()
            .any(|p| label.starts_with(p));
        parts.push(format!("{}{label}{on}", if named { "in " } else { "" }));
    }
    if let Some(c) = &q.compare {
        parts.push(format!("compared with {}", label_of(c)));
    }
    if let (Some(o), Some(n)) = (&q.order, q.limit) {
        parts.push(format!(
            "{} {n} by {}",
            if o.desc { "top" } else { "bottom" },
            name_of(model, &o.by).to_lowercase()
        ));
    }
    parts.join(", ")
}

fn label_of(p: &super::compile::Period) -> String {
    if p.label.is_empty() {
        format!("{} to {}", p.start, p.end.pred_opt().unwrap_or(p.end))
    } else {
        p.label.clone()
    }
}

fn name_of(model: &Model, name: &str) -> String {
    model
        .label_format(name)
        .map_or_else(|| name.to_string(), |(l, _)| l)
}

/// The format of a column's values.
pub fn column_format(model: &Model, c: &OutColumn) -> Option<Format> {
    match &c.kind {
        ColumnKind::Metric { name, role } => {
            let (_, f) = model.label_format(name)?;
            Some(match role {
                MetricRole::ChangeRatio | MetricRole::Share => Format::Percent { decimals: 1 },
                _ => f,
            })
        }
        _ => None,
    }
}

/// A JSON cell as a number, when it is one (decimals may come as exact text).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// One cell for people.
pub fn cell(model: &Model, c: &OutColumn, v: &Value) -> String {
    if v.is_null() {
        return "–".into();
    }
    match (&c.kind, column_format(model, c)) {
        (ColumnKind::Period { grain }, _) => period(grain, v),
        (_, Some(f)) => match number(v) {
            Some(n) => {
                let text = f.show(n);
                if matches!(
                    c.kind,
                    ColumnKind::Metric {
                        role: MetricRole::Change | MetricRole::ChangeRatio,
                        ..
                    }
                ) && n > 0.0
                {
                    format!("+{text}")
                } else {
                    text
                }
            }
            None => plain(v),
        },
        _ => plain(v),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A period's first day as the grain names it: `2025-03`, `2025 Q1`, `2025`.
fn period(grain: &str, v: &Value) -> String {
    let text = plain(v);
    let Ok(d) = chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(&text), "%Y-%m-%d")
    else {
        return text;
    };
    use chrono::Datelike;
    match grain {
        "year" => d.format("%Y").to_string(),
        "quarter" => format!("{} Q{}", d.year(), (d.month() - 1) / 3 + 1),
        "month" => d.format("%Y-%m").to_string(),
        "week" => format!("week of {}", d.format("%Y-%m-%d")),
        _ => d.format("%Y-%m-%d").to_string(),
    }
}

/// Whether a result holds no data: no rows, or one row whose metrics are all empty.
pub fn is_empty(a: &BiAnswer) -> bool {
    a.rows.is_empty()
        || (a.rows.len() == 1
            && a.columns
                .iter()
                .zip(a.rows.first().into_iter().flatten())
                .all(|(c, v)| !matches!(c.kind, ColumnKind::Metric { .. }) || v.is_null()))
}

/// The answer in Markdown: a sentence for one value, else a heading and an aligned table in a
/// code block (at most [`CHAT_ROWS`] rows), then how the question was understood.
pub fn markdown(model: &Model, a: &BiAnswer) -> String {
    let mut out = String::new();
    if is_empty(a) {
        out.push_str(&format!(
            "There is no data for this question: nothing matched {}.\n",
            a.interpretation
                .split_once(", ")
                .map_or("the filters and period", |(_, rest)| rest)
        ));
    } else if a.rows.len() == 1
        && !a
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnKind::Period { .. }))
    {
        out.push_str(&sentence(model, a));
        out.push('\n');
    } else {
        out.push_str(&format!(
            "**{}** ({} row{}{}):\n\n```\n{}```\n",
            heading(a),
            a.rows.len(),
            if a.rows.len() == 1 { "" } else { "s" },
            if a.truncated {
                ", cut at the row limit"
            } else {
                ""
            },
            table_text(model, a, CHAT_ROWS)
        ));
    }
    if let Some(note) = &a.access_note {
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(&format!("\n_Understood as: {}._", a.interpretation));
    out
}

/// The heading of a table answer: the interpretation's first part.
fn heading(a: &BiAnswer) -> String {
    let first = a
        .interpretation
        .split(" (")
        .next()
        .unwrap_or(&a.interpretation);
    let by: Vec<&str> = a
        .interpretation
        .split(", ")
        .skip(1)
        .filter(|p| {
            p.starts_with("by ")
                || p.starts_with("in ")
                || p.starts_with("top ")
                || p.starts_with("bottom ")
        })
        .collect();
    if by.is_empty() {
        first.to_string()
    } else {
        format!("{first} {}", by.join(", "))
    }
}

/// One row as a sentence: "**Revenue**: **$1,234.00**", with the groups first.
fn sentence(model: &Model, a: &BiAnswer) -> String {
    let Some(row) = a.rows.first() else {
        return String::new();
    };
    let mut groups = Vec::new();
    let mut values = Vec::new();
    for (c, v) in a.columns.iter().zip(row) {
        match &c.kind {
            ColumnKind::Dimension { .. } => {
                groups.push(format!("{} **{}**", c.label, cell(model, c, v)))
            }
            ColumnKind::Metric { .. } => {
                values.push(format!("{}: **{}**", c.label, cell(model, c, v)))
            }
            ColumnKind::Period { .. } => groups.push(cell(model, c, v)),
        }
    }
    if groups.is_empty() {
        format!("{}.", values.join(" · "))
    } else {
        format!("{} — {}.", groups.join(", "), values.join(" · "))
    }
}

/// The result as an aligned text table of at most `max_rows` rows (numbers right-aligned).
pub fn table_text(model: &Model, a: &BiAnswer, max_rows: usize) -> String {
    let mut grid: Vec<Vec<String>> = vec![a.columns.iter().map(|c| c.label.clone()).collect()];
    for row in a.rows.iter().take(max_rows) {
        grid.push(
            a.columns
                .iter()
                .zip(row)
                .map(|(c, v)| cell(model, c, v))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..a.columns.len())
        .map(|i| {
            grid.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .min(40)
        })
        .collect();
    let numeric: Vec<bool> = a
        .columns
        .iter()
        .map(|c| matches!(c.kind, ColumnKind::Metric { .. }))
        .collect();
    let mut out = String::new();
    for (r, row) in grid.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let w = widths.get(i).copied().unwrap_or(0);
                let s: String = if s.chars().count() > w {
                    s.chars().take(w.saturating_sub(1)).chain(['…']).collect()
                } else {
                    s.clone()
                };
                let pad = " ".repeat(w.saturating_sub(s.chars().count()));
                if numeric.get(i).copied().unwrap_or(false) {
                    format!("{pad}{s}")
                } else {
                    format!("{s}{pad}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if r == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    if a.rows.len() > max_rows {
        out.push_str(&format!("… {} more rows\n", a.rows.len() - max_rows));
    }
    out
}

/// The result as CSV (values as stored, not formatted).
pub fn csv(a: &BiAnswer) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(a.columns.iter().map(|c| c.label.as_str()));
    for row in &a.rows {
        let _ = w.write_record(row.iter().map(plain));
    }
    w.into_inner()
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// A chart of the result where one helps: a line over a time series, bars over groups, a pie
/// for shares (one dimension, at most 12 slices); `None` for a single value or nothing to
/// plot.
pub fn chart(model: &Model, a: &BiAnswer) -> Option<(ChartSpec, Format)> {
    if is_empty(a) || a.rows.len() < 2 {
        return None;
    }
    let cat_cols: Vec<usize> = a
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !matches!(c.kind, ColumnKind::Metric { .. }))
        .map(|(i, _)| i)
        .collect();
    let period = a
        .columns
        .iter()
        .position(|c| matches!(c.kind, ColumnKind::Period { .. }));
    // Values: shares when asked, else each metric's value.
    let share_cols: Vec<usize> = a
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| match &c.kind {
            ColumnKind::Metric {
                role: MetricRole::Share,
                ..
            } => true,
            ColumnKind::Metric {
                name,
                role: MetricRole::Value,
            } => matches!(
                model.metric(name).map(|m| &m.kind),
                Some(super::model::MetricKind::Share { .. })
            ),
            _ => false,
        })
        .map(|(i, _)| i)
        .collect();
    let value_cols: Vec<usize> = if share_cols.is_empty() {
        a.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                matches!(
                    c.kind,
                    ColumnKind::Metric {
                        role: MetricRole::Value | MetricRole::Previous,
                        ..
                    }
                )
            })
            .map(|(i, _)| i)
            .collect()
    } else {
        share_cols.clone()
    };
    let first_value = *value_cols.first()?;
    let format = column_format(model, a.columns.get(first_value)?)?;
    // Mixed formats (revenue and a count) do not share an axis: chart the first only.
    let value_cols: Vec<usize> = value_cols
        .into_iter()
        .filter(|i| {
            a.columns
                .get(*i)
                .and_then(|c| column_format(model, c))
                .as_ref()
                == Some(&format)
        })
        .collect();
    let label_of_row = |row: &Vec<Value>| -> String {
        cat_cols
            .iter()
            .filter_map(|i| Some(cell(model, a.columns.get(*i)?, row.get(*i)?)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let categories: Vec<String> = a.rows.iter().map(label_of_row).collect();
    let series: Vec<Series> = value_cols
        .iter()
        .filter_map(|i| {
            let c = a.columns.get(*i)?;
            Some(Series {
                name: c.label.clone(),
                values: a
                    .rows
                    .iter()
                    .map(|r| r.get(*i).and_then(number).unwrap_or(f64::NAN))
                    .collect(),
            })
        })
        .collect();
    let pie = !share_cols.is_empty() && cat_cols.len() == 1 && a.rows.len() <= 12;
    let kind = if pie {
        ChartKind::Pie
    } else if period.is_some() && cat_cols.len() == 1 {
        ChartKind::Line
    } else if categories.len() <= 60 {
        ChartKind::Bar
    } else {
        return None;
    };
    if matches!(kind, ChartKind::Pie)
        && series
            .first()
            .is_some_and(|s| s.values.iter().any(|v| *v < 0.0))
    {
        return None;
    }
    let title = heading(a);
    Some((
        ChartSpec {
            kind,
            title,
            categories,
            series,
            x_label: cat_cols
                .first()
                .and_then(|i| a.columns.get(*i))
                .map(|c| c.label.clone()),
            y_label: None,
        },
        format,
    ))
}

/// The model for an LLM: entities with their columns, measures, metrics, dimensions and
/// segments, as the caller may see them.
pub fn model_summary(model: &Model, grants: &super::Grants, only: Option<&[String]>) -> String {
    let mut out = String::new();
    let shown = |entity: &str| only.is_none_or(|o| o.iter().any(|n| n == entity));
    for e in model.entities.values().filter(|e| shown(&e.name)) {
        let hidden = grants.hidden.get(&e.name);
        let cols: Vec<&String> = e
            .columns
            .iter()
            .filter(|c| hidden.is_none_or(|h| !h.contains(&c.to_lowercase())))
            .collect();
        out.push_str(&format!(
            "entity {} (view `{}`){}: {}\n  columns: {}\n",
            e.name,
            e.name,
            e.time
                .as_ref()
                .map(|t| format!(", dated by {t}"))
                .unwrap_or_default(),
            e.description,
            cols.iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for j in model
            .joins
            .iter()
            .filter(|j| j.from == e.name && shown(&j.to))
        {
            out.push_str(&format!(
                "  joins {} on {}.{} = {}.{}\n",
                j.to, j.from, j.from_column, j.to, j.to_column
            ));
        }
        for d in model
            .dimensions
            .iter()
            .filter(|d| d.entity == e.name && !reads_hidden(&d.columns, hidden))
        {
            out.push_str(&format!(
                "  dimension {} = {}{}{}\n",
                d.key(),
                d.expr,
                if d.time { " (time)" } else { "" },
                if d.description.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", d.description)
                }
            ));
        }
        for m in model
            .measures
            .iter()
            .filter(|m| m.entity == e.name && !reads_hidden(&m.columns, hidden))
        {
            out.push_str(&format!("  measure {} = {}\n", m.name, m.describe()));
        }
        for s in model.segments.iter().filter(|s| s.entity == e.name) {
            out.push_str(&format!(
                "  segment {}.{} = {}\n",
                s.entity, s.name, s.filter
            ));
        }
    }
    for m in model.metrics.iter().filter(|m| {
        metric_uses(m).iter().all(|u| {
            model
                .measures
                .iter()
                .any(|x| x.name == *u && shown(&x.entity))
                || model.metrics.iter().any(|x| x.name == *u)
        })
    }) {
        out.push_str(&format!("metric {}: {:?}\n", m.name, m.kind));
    }
    out
}

/// Whether an expression over `columns` reads one of `hidden`.
pub fn reads_hidden(
    columns: &[String],
    hidden: Option<&std::collections::BTreeSet<String>>,
) -> bool {
    hidden.is_some_and(|h| columns.iter().any(|c| h.contains(&c.to_lowercase())))
}

/// The measures (and metrics) a metric is computed from, by name.
pub fn metric_uses(m: &super::model::Metric) -> Vec<&str> {
    match &m.kind {
        super::model::MetricKind::Ratio {
            numerator,
            denominator,
        } => vec![numerator, denominator],
        super::model::MetricKind::Derived { uses, .. } => uses.iter().map(String::as_str).collect(),
        super::model::MetricKind::Share { of } => vec![of],
    }
}

/// `text` with its first letter in upper case and a full stop at the end.
pub fn sentence_case(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '?', '!']) {
        out.push('.');
    }
    out
}

/// The answer for every surface: formatted table, CSV, and the chart rendered to SVG and PNG.
pub fn data_answer(model: &Model, a: &BiAnswer) -> crate::model::DataAnswer {
    let rows: Vec<Vec<String>> = a
        .rows
        .iter()
        .map(|r| {
            a.columns
                .iter()
                .zip(r)
                .map(|(c, v)| cell(model, c, v))
                .collect()
        })
        .collect();
    let chart = chart(model, a).and_then(|(spec, format)| {
        let alt = alt_text(&spec, &format);
        let title = spec.title.clone();
        match super::chart::render(&spec, &|v| format.short(v)) {
            Ok(r) => Some(crate::model::ChartImage {
                title,
                alt,
                svg: r.svg,
                png: r.png,
                png_url: None,
                svg_url: None,
            }),
            Err(e) => {
                tracing::warn!(error = ?e, "drawing a chart failed; the answer goes without it");
                None
            }
        }
    });
    crate::model::DataAnswer {
        interpretation: a.interpretation.clone(),
        sql: a.sql.clone(),
        columns: a.columns.iter().map(|c| c.label.clone()).collect(),
        numeric: a
            .columns
            .iter()
            .map(|c| matches!(c.kind, ColumnKind::Metric { .. }))
            .collect(),
        rows,
        truncated: a.truncated,
        csv: csv(a),
        csv_url: None,
        chart,
    }
}

/// What a chart shows, in words (at most the first 12 points).
fn alt_text(spec: &ChartSpec, format: &Format) -> String {
    let kind = match spec.kind {
        ChartKind::Bar => "Bar chart",
        ChartKind::Line => "Line chart",
        ChartKind::Pie => "Pie chart",
    };
    let mut parts = Vec::new();
    if let Some(s) = spec.series.first() {
        for (c, v) in spec.categories.iter().zip(&s.values).take(12) {
            parts.push(format!("{c} {}", format.show(*v)));
        }
    }
    let more = spec.categories.len().saturating_sub(12);
    format!(
        "{kind} of {}: {}{}",
        spec.title,
        parts.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}
