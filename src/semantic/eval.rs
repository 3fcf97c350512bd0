//! `conveyor eval bi FILE`: a JSONL of questions with expected answers (numbers, rows, or a
//! reference SQL query over the tables) → accuracy, each miss with the interpretation and SQL.
//! `conveyor bench bi` runs the same cases over TPC-H.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Outcome, Semantic, present};
use crate::error::{Error, Result};

/// One line of a question file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The question as a person would ask it.
    pub question: String,
    /// The date relative periods count from (`YYYY-MM-DD`).
    #[serde(default)]
    pub today: Option<String>,
    /// Roles of the asker.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Attributes of the asker (`{"region": "EMEA"}`), for rules with `{{ user.NAME }}`.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, crate::model::AttributeValue>,
    /// One expected number (the first metric of a one-row answer).
    #[serde(default)]
    value: Option<f64>,
    /// Expected rows (values in column order; numbers compared to 0.01% and 0.005).
    #[serde(default)]
    rows: Option<Vec<Vec<Value>>>,
    /// A reference query over the tables whose rows are the expected rows (written without
    /// the model, so the model's answer is checked against something independent).
    #[serde(default)]
    sql: Option<String>,
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
        // Decimals come as exact text from either side.
        (Some(a), Some(b))
            if want.is_number() || got.is_number() || (got.is_string() && want.is_string()) =>
        {
            (a - b).abs() <= 0.005_f64.max(b.abs() * 1e-4)
        }
        _ => match (got, want) {
            (Value::String(a), Value::String(b)) => a == b || a.starts_with(b.as_str()),
            _ => got == want,
        },
    }
}

/// Runs every case of `file` against `semantic`.
pub async fn evaluate(semantic: &Semantic, file: &Path) -> Result<EvalReport> {
    let cases = read_cases(file)?;
    let mut correct = 0;
    let mut misses = Vec::new();
    for (line, case) in &cases {
        let day = case.day()?;
        let expected_rows = match &case.sql {
            Some(sql) => Some(semantic.reference_rows(sql).await.map_err(|e| {
                Error::BadInput(format!(
                    "{} line {line}: the reference SQL failed: {e}",
                    file.display()
                ))
            })?),
            None => case.rows.clone(),
        };
        let who = super::Asker {
            roles: case.roles.clone(),
            attributes: case
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_vec()))
                .collect(),
        };
        let outcome = semantic.ask(&case.question, &who, day).await;
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
                } else if let Some(rows) = &expected_rows {
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

/// The cases of a question file (blank lines and `//` comments skipped), with line numbers.
pub fn read_cases(file: &Path) -> Result<Vec<(usize, Case)>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", file.display())))?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let case: Case = serde_json::from_str(line).map_err(|e| {
            Error::BadInput(format!(
                "{} line {}: not a question case ({e}); write {{\"question\": \"…\", \"value\": 123}} or \"rows\": [[…]], \"sql\": \"SELECT …\", \"clarify\": true, \"refused\": \"…\", \"not_bi\": true",
                file.display(),
                i + 1
            ))
        })?;
        cases.push((i + 1, case));
    }
    Ok(cases)
}

impl Case {
    /// The date relative periods count from: `today` when given, else the clock's.
    pub fn day(&self) -> Result<chrono::NaiveDate> {
        match &self.today {
            None => Ok(chrono::Utc::now().date_naive()),
            Some(t) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
                Error::BadInput(format!(
                    "`today` `{t}` is not a date; write it as YYYY-MM-DD"
                ))
            }),
        }
    }
}
