//! `conveyor bi` (a question → interpretation, SQL and result, without chat) and
//! `conveyor eval bi` (a question file with expected answers → accuracy).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::semantic::{Outcome, Semantic, present};

/// Opens the lakehouse and the semantic model of `config_path`.
pub(super) async fn open(config_path: &Path) -> Result<Arc<Semantic>> {
    let config = Config::load(config_path)?;
    let lake = crate::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let dir = config.connectors_dir();
    Semantic::open(&dir, &lake).await?.ok_or_else(|| {
        Error::Config(format!(
            "there is no semantic model in {}: write one as {}/NAME.semantic.toml (entities, measures, dimensions; see connectors/README.md), or run `conveyor init` for the demo's",
            dir.display(),
            dir.display()
        ))
    })
}

/// The date relative periods count from: `--today`, else the clock's.
fn today(given: Option<&str>) -> Result<chrono::NaiveDate> {
    match given {
        None => Ok(chrono::Utc::now().date_naive()),
        Some(t) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
            Error::BadInput(format!(
                "--today `{t}` is not a date; write it as YYYY-MM-DD"
            ))
        }),
    }
}

/// `conveyor bi QUESTION`.
pub(super) async fn bi(
    config_path: &Path,
    question: &str,
    json: bool,
    sql_only: bool,
    roles: &[String],
    today_arg: Option<&str>,
    chart: Option<&Path>,
) -> Result<ExitCode> {
    let semantic = open(config_path).await?;
    let outcome = semantic.ask(question, roles, today(today_arg)?).await;
    if json {
        let value = match &outcome {
            Outcome::Answer(a) => {
                serde_json::json!({"kind": "answer", "answer": a, "csv": present::csv(a)})
            }
            Outcome::Clarify { text, options } => {
                serde_json::json!({"kind": "clarify", "text": text, "options": options})
            }
            Outcome::Refused(why) => serde_json::json!({"kind": "refused", "text": why}),
            Outcome::NotBi => {
                serde_json::json!({"kind": "not_bi", "text": "not a question about the data: `conveyor ask` answers it from the documents"})
            }
        };
        out!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        match &outcome {
            Outcome::Answer(a) => {
                out!("Understood as: {}", a.interpretation);
                out!("\nSQL:\n{}\n", a.sql);
                if !sql_only {
                    if present::is_empty(a) {
                        out!("{}", present::markdown(semantic.model(), a));
                    } else {
                        out!("{}", present::table_text(semantic.model(), a, usize::MAX));
                        if a.truncated {
                            out!("(cut at the row limit of {} rows)", a.rows.len());
                        }
                    }
                    out!("({} rows in {:.1} ms)", a.rows.len(), a.elapsed_ms);
                }
            }
            Outcome::Clarify { text, options } => {
                out!("{text}");
                for o in options {
                    out!("  - {o}");
                }
            }
            Outcome::Refused(why) => out!("{why}"),
            Outcome::NotBi => out!(
                "This does not look like a question about the data (no metric of the semantic model matched); `conveyor ask` answers it from the documents. Metrics: {}",
                semantic
                    .model()
                    .measures
                    .iter()
                    .map(|m| m.name.as_str())
                    .chain(semantic.model().metrics.iter().map(|m| m.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if let (Some(path), Outcome::Answer(a)) = (chart, &outcome) {
        write_chart(semantic.model(), a, path)?;
    }
    Ok(match outcome {
        Outcome::Answer(_) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// Writes the answer's chart as PNG or SVG (by the file's extension).
fn write_chart(
    model: &crate::semantic::model::Model,
    a: &crate::semantic::BiAnswer,
    path: &Path,
) -> Result<()> {
    let Some((spec, format)) = present::chart(model, a) else {
        return Err(Error::BadInput(
            "this answer has no chart (one value, or nothing to plot)".into(),
        ));
    };
    let rendered = crate::semantic::chart::render(&spec, &|v| format.short(v))
        .map_err(|e| Error::BadInput(format!("the chart could not be drawn: {e}")))?;
    let svg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let bytes = if svg {
        rendered.svg.into_bytes()
    } else {
        rendered.png
    };
    std::fs::write(path, bytes)
        .map_err(|e| Error::BadInput(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("chart written to {}", path.display());
    Ok(())
}

/// One line of a question file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    question: String,
    /// The date relative periods count from (`YYYY-MM-DD`).
    #[serde(default)]
    today: Option<String>,
    /// Roles of the asker.
    #[serde(default)]
    roles: Vec<String>,
    /// One expected number (the first metric of a one-row answer).
    #[serde(default)]
    value: Option<f64>,
    /// Expected rows (values in column order; numbers compared to 0.01% and 0.005).
    #[serde(default)]
    rows: Option<Vec<Vec<Value>>>,
    /// The answer must be a question back.
    #[serde(default)]
    clarify: bool,
    /// The answer must be a refusal containing this text.
    #[serde(default)]
    refused: Option<String>,
    /// Not a BI question.
    #[serde(default)]
    not_bi: bool,
    /// Free text for people.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// The result of `eval bi`.
#[derive(Debug, serde::Serialize)]
pub struct EvalReport {
    /// Questions asked.
    pub questions: usize,
    /// Answered as expected.
    pub correct: usize,
    /// correct / questions.
    pub accuracy: f64,
    /// What went wrong, per missed question.
    pub misses: Vec<Value>,
}

/// Whether two result cells agree (numbers within 0.01% or 0.005).
fn same(got: &Value, want: &Value) -> bool {
    match (present::number(got), present::number(want)) {
        (Some(a), Some(b)) if want.is_number() => (a - b).abs() <= 0.005_f64.max(b.abs() * 1e-4),
        _ => match (got, want) {
            (Value::String(a), Value::String(b)) => a == b || a.starts_with(b.as_str()),
            _ => got == want,
        },
    }
}

/// Runs every case of `file` against `semantic`.
pub async fn evaluate(semantic: &Semantic, file: &Path) -> Result<EvalReport> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let case: Case = serde_json::from_str(line).map_err(|e| {
            Error::BadInput(format!(
                "{} line {}: not a question case ({e}); write {{\"question\": \"…\", \"value\": 123}} or \"rows\": [[…]], \"clarify\": true, \"refused\": \"…\", \"not_bi\": true",
                file.display(),
                i + 1
            ))
        })?;
        cases.push((i + 1, case));
    }
    let mut correct = 0;
    let mut misses = Vec::new();
    for (line, case) in &cases {
        let day = today(case.today.as_deref())?;
        let outcome = semantic.ask(&case.question, &case.roles, day).await;
        let (ok, why) = match &outcome {
            Outcome::Answer(a) => {
                if let Some(v) = case.value {
                    let first = a
                        .rows
                        .first()
                        .and_then(|r| {
                            a.columns
                                .iter()
                                .position(|c| {
                                    matches!(
                                        c.kind,
                                        crate::semantic::compile::ColumnKind::Metric { .. }
                                    )
                                })
                                .and_then(|i| r.get(i))
                        })
                        .cloned()
                        .unwrap_or(Value::Null);
                    let ok = a.rows.len() == 1 && same(&first, &serde_json::json!(v));
                    (
                        ok,
                        format!("expected {v}, got {first} ({} rows)", a.rows.len()),
                    )
                } else if let Some(rows) = &case.rows {
                    let ok = rows.len() == a.rows.len()
                        && rows.iter().zip(&a.rows).all(|(w, g)| {
                            w.len() <= g.len() && w.iter().zip(g).all(|(w, g)| same(g, w))
                        });
                    (
                        ok,
                        format!(
                            "expected rows {}, got {}",
                            Value::from(rows.clone()),
                            serde_json::to_string(&a.rows).unwrap_or_default()
                        ),
                    )
                } else {
                    (false, "answered, but the case expects no answer".into())
                }
            }
            Outcome::Clarify { text, .. } => (case.clarify, format!("asked back: {text}")),
            Outcome::Refused(why) => (
                case.refused
                    .as_ref()
                    .is_some_and(|r| why.contains(r.as_str())),
                format!("refused: {why}"),
            ),
            Outcome::NotBi => (case.not_bi, "not understood as a BI question".into()),
        };
        if ok {
            correct += 1;
        } else {
            let (interpretation, sql) = match &outcome {
                Outcome::Answer(a) => (a.interpretation.clone(), a.sql.clone()),
                _ => (String::new(), String::new()),
            };
            misses.push(serde_json::json!({
                "line": line,
                "question": case.question,
                "why": why,
                "interpretation": interpretation,
                "sql": sql,
            }));
        }
    }
    let questions = cases.len();
    Ok(EvalReport {
        questions,
        correct,
        accuracy: if questions == 0 {
            0.0
        } else {
            correct as f64 / questions as f64
        },
        misses,
    })
}

/// `conveyor eval bi FILE`.
pub(super) async fn eval_bi(config_path: &Path, file: &Path, json: bool) -> Result<ExitCode> {
    let semantic = open(config_path).await?;
    let report = evaluate(&semantic, file).await?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for m in &report.misses {
            out!(
                "MISS line {}: {}\n  {}\n  understood as: {}\n  sql: {}\n",
                m["line"],
                m["question"].as_str().unwrap_or(""),
                m["why"].as_str().unwrap_or(""),
                m["interpretation"].as_str().unwrap_or(""),
                m["sql"].as_str().unwrap_or("").replace('\n', "\n       ")
            );
        }
        out!(
            "{}/{} questions answered as expected ({:.1}%)",
            report.correct,
            report.questions,
            report.accuracy * 100.0
        );
    }
    Ok(if report.correct == report.questions {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
