//! `conveyor run NAME` and `conveyor workflows …`: start a run and watch it, list the
//! workflows and their runs, show a run's steps, cancel and retry.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::WorkflowsCommand;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::workflows::{RunFilter, RunState, Started, WorkflowRun, WorkflowStep};

/// Reads `--input`: JSON text, `@file.json`, or nothing (`{}`).
fn read_input(input: Option<&str>) -> Result<Value> {
    let Some(text) = input else {
        return Ok(serde_json::json!({}));
    };
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::BadInput(format!("--input @{path}: cannot read the file: {e}")))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::BadInput(format!(
            "--input is not JSON ({e}); give an object, e.g. --input '{{\"customer\": \"acme\"}}'"
        ))
    })
}

/// `conveyor run NAME --input JSON`: starts the run in this process and follows it until it
/// finishes or waits (an approval, a sleep: a running `serve` resumes it).
pub(super) async fn run(
    config_path: &Path,
    name: &str,
    input: Option<&str>,
    key: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let input = read_input(input)?;
    let config = Config::load(config_path)?;
    let app = crate::app::App::build(config).await?;
    let engine = app.workflows.clone();
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let started = engine
        .start(crate::workflows::StartRequest {
            workflow: name.to_string(),
            input,
            kind: "cli".into(),
            trigger: serde_json::json!({}),
            by: Some(crate::tools::Caller {
                user_id: user,
                channel: "cli".into(),
                conversation: "cli:workflows".into(),
                roles: Vec::new(),
                attributes: Default::default(),
            }),
            key,
            parent: None,
        })
        .await?;
    if let Started::Existing { id, state } = &started
        && !json
    {
        out!("That key already started run {id} ({state}); showing it.");
    }
    let run = engine
        .wait(started.id(), Duration::from_secs(86_400))
        .await?;
    engine.halt().await;
    let steps = app.store.wf_steps(&run.id).await?;
    app.store.close().await;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": run, "steps": steps}))
                .unwrap_or_default()
        );
    } else {
        print_run(&run, &steps);
    }
    Ok(match run.state {
        RunState::Failed | RunState::Cancelled => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn took(from: i64, to: Option<i64>) -> String {
    to.map(|t| format!("{:.3}s", (t - from) as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// A value on one line, cut to `max` characters.
fn brief(v: &Value, max: usize) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s = s.replace('\n', " ⏎ ");
    if s.chars().count() > max {
        let mut cut: String = s.chars().take(max).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn print_run(run: &WorkflowRun, steps: &[WorkflowStep]) {
    out!(
        "run {}  workflow {}  {}  (started by {}{}, attempt {})",
        run.id,
        run.workflow,
        run.state,
        run.trigger_kind,
        run.idem_key
            .as_deref()
            .map(|k| format!(", key {k}"))
            .unwrap_or_default(),
        run.attempts
    );
    out!(
        "  created {}  took {}  deadline {}",
        when(run.created_at),
        took(run.created_at, run.finished_at),
        when(run.deadline)
    );
    for s in steps {
        out!(
            "  {:<10} {}{}  {}",
            s.state.as_str(),
            s.path,
            if s.attempt > 1 {
                format!(" (attempt {})", s.attempt)
            } else {
                String::new()
            },
            took(s.started_at, s.finished_at)
        );
        if let Some(e) = &s.error {
            out!("             error: {e}");
        } else if let Some(o) = &s.output {
            out!("             output: {}", brief(o, 160));
        }
    }
    match run.state {
        RunState::Succeeded => {
            if let Some(o) = &run.output {
                out!("output: {}", brief(o, 400));
            }
        }
        RunState::Failed | RunState::Cancelled => {
            out!(
                "{}: {}",
                run.state,
                run.error.as_deref().unwrap_or("(no reason recorded)")
            );
            out!(
                "Run it again from where it failed with `conveyor workflows retry {}`.",
                run.id
            );
        }
        RunState::Waiting => out!(
            "waiting{}; a running `conveyor serve` resumes it{}.",
            run.wake_at
                .map(|w| format!(" until {} UTC", when(w)))
                .unwrap_or_default(),
            if steps
                .iter()
                .any(|s| s.output.as_ref().and_then(|o| o.get("approval")).is_some())
            {
                " when someone decides the approval"
            } else {
                ""
            }
        ),
        RunState::Queued | RunState::Running => out!(
            "{}: another process runs it (or will, when a slot is free).",
            run.state
        ),
    }
}

/// `conveyor workflows …`.
pub(super) async fn workflows(config_path: &Path, what: WorkflowsCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let defs = crate::workflows::load_dir(&config.resolve(&config.tools.dir))?;
    let store = Store::connect(&config.store_url()?).await?;
    let result = async {
        match what {
            WorkflowsCommand::List { json } => {
                let counts = store.wf_counts().await?;
                if json {
                    let list: Vec<Value> = defs
                        .iter()
                        .map(|w| {
                            let runs: serde_json::Map<String, Value> = counts
                                .iter()
                                .filter(|(name, _, _)| *name == w.name)
                                .map(|(_, state, n)| (state.clone(), Value::from(*n)))
                                .collect();
                            serde_json::json!({
                                "name": w.name,
                                "description": w.description,
                                "file": w.origin,
                                "triggers": triggers(w),
                                "steps": w.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                                "runs": runs,
                            })
                        })
                        .collect();
                    out!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
                    return Ok(ExitCode::SUCCESS);
                }
                if defs.is_empty() {
                    out!(
                        "No workflows in {}; add a file with kind = \"workflow\".",
                        config.resolve(&config.tools.dir).display()
                    );
                }
                for w in &defs {
                    let runs: Vec<String> = counts
                        .iter()
                        .filter(|(name, _, _)| *name == w.name)
                        .map(|(_, state, n)| format!("{n} {state}"))
                        .collect();
                    out!("{}  — {}", w.name, w.description);
                    out!(
                        "    steps: {}",
                        w.steps
                            .iter()
                            .map(|s| s.id.as_str())
                            .collect::<Vec<_>>()
                            .join(" → ")
                    );
                    let t = triggers(w);
                    out!(
                        "    triggers: {}",
                        if t.is_empty() {
                            "none (conveyor run, the API, the agent)".into()
                        } else {
                            t.join(", ")
                        }
                    );
                    out!(
                        "    runs: {}",
                        if runs.is_empty() {
                            "none yet".into()
                        } else {
                            runs.join(", ")
                        }
                    );
                }
            }
            WorkflowsCommand::Runs {
                workflow,
                state,
                limit,
                json,
            } => {
                let state = match state.as_deref() {
                    None => None,
                    Some(s) => Some(RunState::parse(s).ok_or_else(|| {
                        Error::BadInput(format!(
                            "--state `{s}` is not one of queued, running, waiting, succeeded, failed, cancelled"
                        ))
                    })?),
                };
                let runs = store
                    .wf_runs(&RunFilter {
                        workflow,
                        state,
                        parent: None,
                        limit,
                    })
                    .await?;
                if json {
                    out!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
                    return Ok(ExitCode::SUCCESS);
                }
                if runs.is_empty() {
                    out!("No workflow runs yet; start one with `conveyor run NAME`.");
                }
                for r in &runs {
                    out!(
                        "{}  {:<20} {:<9} {:<8} {:>8}  {}{}",
                        when(r.created_at),
                        r.workflow,
                        r.state.as_str(),
                        r.trigger_kind,
                        took(r.created_at, r.finished_at),
                        r.id,
                        r.error
                            .as_deref()
                            .map(|e| format!("  {}", brief(&Value::String(e.into()), 100)))
                            .unwrap_or_default()
                    );
                }
            }
            WorkflowsCommand::Show { run, json } => {
                let r = store
                    .wf_run(&run)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no workflow run `{run}`; `conveyor workflows runs` lists them")))?;
                let steps = store.wf_steps(&run).await?;
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({"run": r, "steps": steps}))
                            .unwrap_or_default()
                    );
                } else {
                    print_run(&r, &steps);
                }
            }
            WorkflowsCommand::Cancel { run } => {
                let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
                match store.wf_cancel(&run, &format!("cancelled by cli:{user}")).await? {
                    None => {
                        return Err(Error::NotFound(format!(
                            "no workflow run `{run}`; `conveyor workflows runs` lists them"
                        )));
                    }
                    Some(s) if s.is_finished() => {
                        out!("Run {run} had already {s}; nothing to cancel.");
                    }
                    Some(_) => out!(
                        "Cancelled run {run} (and its sub-workflows); a process running it stops at its next step or lease renewal."
                    ),
                }
            }
            WorkflowsCommand::Retry { run, from } => {
                let r = store
                    .wf_run(&run)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no workflow run `{run}`")))?;
                let w = defs.iter().find(|w| w.name == r.workflow).ok_or_else(|| {
                    Error::Config(format!(
                        "run {run} is of workflow `{}`, which is no longer in the tools folder",
                        r.workflow
                    ))
                })?;
                let paths = match from.as_deref() {
                    None => Vec::new(),
                    Some(step) => crate::workflows::engine::paths_from(&w.steps, step).ok_or_else(|| {
                        Error::BadInput(format!(
                            "workflow `{}` has no top-level step `{step}`; its steps: {}",
                            w.name,
                            w.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })?,
                };
                if !store.wf_retry(&run, &paths, w.timeout).await? {
                    return Err(Error::Conflict(format!(
                        "run {run} is {}; only failed or cancelled runs are retried",
                        r.state
                    )));
                }
                out!(
                    "Queued run {run} again{}; a running `conveyor serve` resumes it within a second (finished steps are not run again).",
                    from.map(|f| format!(" from step {f}")).unwrap_or_default()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

fn triggers(w: &crate::workflows::Workflow) -> Vec<String> {
    w.triggers
        .iter()
        .map(|t| match t {
            crate::workflows::Trigger::Hook(h) => format!("POST /hooks/{h}"),
            crate::workflows::Trigger::Schedule(s) => format!("schedule `{s}` (UTC)"),
            crate::workflows::Trigger::Command(c) => format!("/run {c}"),
            crate::workflows::Trigger::Data { table, filter } => format!(
                "changes to {table}{}",
                filter
                    .as_deref()
                    .map(|f| format!(" where {f}"))
                    .unwrap_or_default()
            ),
        })
        .collect()
}
