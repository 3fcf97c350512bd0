//! `conveyor bi` (a question → interpretation, SQL and result, without chat) and
//! `conveyor eval bi` (a question file with expected answers → accuracy).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

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

/// The asker of `conveyor bi --as-role R --attr NAME=VALUE`.
pub(super) fn asker(roles: Vec<String>, attributes: &[String]) -> Result<crate::semantic::Asker> {
    let mut who = crate::semantic::Asker {
        roles,
        attributes: crate::model::Attributes::new(),
    };
    for a in attributes {
        let Some((name, value)) = a.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
            return Err(Error::BadInput(format!(
                "--attr `{a}` is not NAME=VALUE; write e.g. --attr region=EMEA"
            )));
        };
        who.attributes
            .entry(name.trim().to_string())
            .or_default()
            .push(value.to_string());
    }
    Ok(who)
}

/// `conveyor bi QUESTION`.
pub(super) async fn bi(
    config_path: &Path,
    question: &str,
    json: bool,
    sql_only: bool,
    who: &crate::semantic::Asker,
    today_arg: Option<&str>,
    chart: Option<&Path>,
) -> Result<ExitCode> {
    let semantic = open(config_path).await?;
    let outcome = semantic.ask(question, who, today(today_arg)?).await;
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
                        if let Some(note) = &a.access_note {
                            out!("{note}");
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

/// `conveyor eval bi FILE`.
pub(super) async fn eval_bi(config_path: &Path, file: &Path, json: bool) -> Result<ExitCode> {
    let semantic = open(config_path).await?;
    let report = crate::semantic::eval::evaluate(&semantic, file).await?;
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
