//! `GET /v1/connectors` (each connector with its schedule, next run and last run) and
//! `GET /v1/runs` (the run history, newest first).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::app::App;
use crate::error::Error;
use crate::store::RunRow;

/// Most runs one request returns.
const MAX_RUNS: usize = 1000;

/// One run with its duration.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// The run as recorded.
    #[serde(flatten)]
    pub run: RunRow,
    /// Wall time in milliseconds, when finished.
    pub duration_ms: Option<i64>,
}

impl From<RunRow> for RunView {
    fn from(run: RunRow) -> Self {
        let duration_ms = run.finished_at.map(|f| f.saturating_sub(run.started_at));
        Self { run, duration_ms }
    }
}

/// One connector.
#[derive(Debug, Serialize)]
pub struct ConnectorView {
    /// Its name.
    pub name: String,
    /// Its kind (`files`, `http`, `sql`).
    pub kind: &'static str,
    /// Its cron schedule, if any.
    pub schedule: Option<String>,
    /// When the schedule fires next (RFC 3339), if there is one.
    pub next_run: Option<String>,
    /// Whether the scheduler of this server runs it on its schedule (false for a schedule
    /// added after the server started: schedules are read at start).
    pub scheduled: bool,
    /// Whether it feeds the index (`[index]`).
    pub indexed: bool,
    /// Its latest run.
    pub last_run: Option<RunView>,
}

/// `GET /v1/connectors`.
pub async fn get_connectors(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = app.config.connectors_dir();
    let defs = if dir.is_dir() {
        crate::connectors::load_dir(&dir, &app.config.base_dir)?
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let mut out = Vec::with_capacity(defs.len());
    for def in defs {
        let last_run = app
            .store
            .runs(Some(&def.name), 1)
            .await?
            .into_iter()
            .next()
            .map(RunView::from);
        out.push(ConnectorView {
            next_run: def.next_run(now).map(|t| t.to_rfc3339()),
            scheduled: app.schedule.runs(&def.name),
            kind: def.kind.name(),
            schedule: def.schedule.clone(),
            indexed: def.index.is_some(),
            name: def.name,
            last_run,
        });
    }
    Ok(Json(serde_json::json!({ "connectors": out })))
}

/// The query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    /// Only this connector's runs.
    connector: Option<String>,
    /// How many runs (default 20, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/runs?connector=NAME&limit=N`.
pub async fn get_runs(
    State(app): State<App>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        Error::BadInput(format!(
            "bad query: {}; use ?connector=NAME&limit=N (N a positive number)",
            e.body_text()
        ))
    })?;
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_RUNS {
        return Err(Error::BadInput(format!("limit must be between 1 and {MAX_RUNS}")).into());
    }
    let runs: Vec<RunView> = app
        .store
        .runs(q.connector.as_deref(), limit)
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    Ok(Json(serde_json::json!({ "runs": runs })))
}
