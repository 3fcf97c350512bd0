//! The workflows API: `GET /v1/workflows` (definitions with run counts), `POST
//! /v1/workflows/{name}/runs` (start one), `GET /v1/workflows/runs` (newest first, filtered),
//! `GET /v1/workflows/runs/{id}` (a run with each step's status, input, output and error),
//! `POST /v1/workflows/runs/{id}/cancel|retry` (admin), and `POST
//! /v1/workflows/approvals/{id}` (decide an approval without a chat platform).

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::Caller as ApiCaller;
use crate::app::App;
use crate::error::Error;
use crate::store::workflows::{RunFilter, RunState, Started};
use crate::tools::Caller;
use crate::workflows::Decided;

/// Most runs one request lists.
const MAX_RUNS: i64 = 1000;

/// The longest `wait` a start request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(25);

fn who(caller: &ApiCaller) -> String {
    caller.key_id().unwrap_or_else(|| "local".into())
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        ApiError(Error::BadInput(format!(
            "the body is not what this endpoint takes: {}",
            e.body_text()
        )))
    })
}

/// `GET /v1/workflows`.
pub(super) async fn list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let counts = app.store.wf_counts().await?;
    let list: Vec<Value> = app
        .workflows
        .workflows()
        .map(|w| {
            let runs: serde_json::Map<String, Value> = counts
                .iter()
                .filter(|(name, _, _)| *name == w.name)
                .map(|(_, state, n)| (state.clone(), Value::from(*n)))
                .collect();
            json!({
                "name": w.name,
                "description": w.description,
                "inputs": w.inputs,
                "triggers": w.triggers.iter().map(|t| match t {
                    crate::workflows::Trigger::Hook(h) => json!({"hook": h}),
                    crate::workflows::Trigger::Schedule(s) => json!({"schedule": s}),
                    crate::workflows::Trigger::Command(c) => json!({"command": c}),
                    crate::workflows::Trigger::Data { table, filter } => json!({"data": table, "filter": filter}),
                }).collect::<Vec<_>>(),
                "steps": w.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                "runs": runs,
            })
        })
        .collect();
    Ok(Json(json!({"workflows": list})))
}

/// What `POST /v1/workflows/{name}/runs` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartBody {
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// Seconds to wait for the run to finish or suspend before answering (at most 25).
    #[serde(default)]
    wait: Option<f64>,
}

/// `POST /v1/workflows/{name}/runs`: 201 with the new run, 200 with the earlier run of the
/// same idempotency key; 400 with the reason when the input fails the workflow's schema
/// (nothing is recorded).
pub(super) async fn start(
    State(app): State<App>,
    Extension(caller): Extension<ApiCaller>,
    Path(name): Path<String>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let user = who(&caller);
    let started = app
        .workflows
        .start(crate::workflows::StartRequest {
            workflow: name,
            input: body.input.unwrap_or_else(|| json!({})),
            kind: "api".into(),
            trigger: json!({}),
            by: Some(Caller {
                user_id: user.clone(),
                channel: "api".into(),
                conversation: format!("api:{user}"),
                roles: Vec::new(),
                attributes: Default::default(),
            }),
            key: body.idempotency_key,
            parent: None,
        })
        .await?;
    let wait = body
        .wait
        .filter(|w| w.is_finite() && *w > 0.0)
        .map_or(Duration::ZERO, |w| Duration::from_secs_f64(w).min(MAX_WAIT));
    let run = app.workflows.wait(started.id(), wait).await?;
    let status = match started {
        Started::New { .. } => StatusCode::CREATED,
        Started::Existing { .. } => StatusCode::OK,
    };
    Ok((status, Json(json!({"run": run}))).into_response())
}

/// Filters of `GET /v1/workflows/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsQuery {
    workflow: Option<String>,
    state: Option<String>,
    parent: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/workflows/runs?workflow=&state=&parent=&limit=`.
pub(super) async fn runs(
    State(app): State<App>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| Error::BadInput(e.body_text()))?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunState::parse(s).ok_or_else(|| {
            Error::BadInput(format!(
                "state `{s}` is not one of queued, running, waiting, succeeded, failed, cancelled"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_RUNS).contains(&limit) {
        return Err(Error::BadInput(format!("limit must be between 1 and {MAX_RUNS}")).into());
    }
    let runs = app
        .store
        .wf_runs(&RunFilter {
            workflow: q.workflow.filter(|w| !w.is_empty()),
            state,
            parent: q.parent.filter(|p| !p.is_empty()),
            limit,
        })
        .await?;
    Ok(Json(json!({"runs": runs})))
}

/// `GET /v1/workflows/runs/{id}`: the run and every step attempt.
pub(super) async fn run(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = app
        .store
        .wf_run(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no workflow run `{id}`")))?;
    let steps = app.store.wf_steps(&id).await?;
    let children = app
        .store
        .wf_runs(&RunFilter {
            parent: Some(id.clone()),
            limit: MAX_RUNS,
            ..RunFilter::default()
        })
        .await?;
    Ok(Json(json!({
        "run": run,
        "steps": steps,
        "children": children.iter().map(|c| json!({"id": c.id, "workflow": c.workflow, "state": c.state, "step": c.parent_step})).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/workflows/runs/{id}/cancel`.
pub(super) async fn cancel(
    State(app): State<App>,
    Extension(caller): Extension<ApiCaller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let before = app
        .workflows
        .cancel(&id, &format!("api:{}", who(&caller)))
        .await?
        .ok_or_else(|| Error::NotFound(format!("no workflow run `{id}`")))?;
    if before.is_finished() {
        return Err(
            Error::Conflict(format!("run {id} had already {before}; nothing to cancel")).into(),
        );
    }
    Ok(Json(
        json!({"run": id, "state": "cancelled", "was": before}),
    ))
}

/// What `POST /v1/workflows/runs/{id}/retry` takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryBody {
    #[serde(default)]
    from: Option<String>,
}

/// `POST /v1/workflows/runs/{id}/retry` (`{"from": "STEP"}` optional).
pub(super) async fn retry(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Option<Json<RetryBody>>,
) -> Result<Json<Value>, ApiError> {
    let from = body.and_then(|Json(b)| b.from);
    if !app.workflows.retry(&id, from.as_deref()).await? {
        return Err(Error::Conflict(format!(
            "run {id} is not failed or cancelled; only those are retried"
        ))
        .into());
    }
    Ok(Json(json!({"run": id, "state": "queued"})))
}

/// What `POST /v1/workflows/approvals/{id}` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    decision: String,
}

/// `POST /v1/workflows/approvals/{id}` with `{"decision": "approve" | "reject"}`: decides as
/// `api:{key}` (list it in the step's `approvers`, or leave them empty).
pub(super) async fn decide(
    State(app): State<App>,
    Extension(caller): Extension<ApiCaller>,
    Path(id): Path<String>,
    body: Result<Json<DecideBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let approve = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(Error::BadInput(format!(
                "decision `{other}` is not \"approve\" or \"reject\""
            ))
            .into());
        }
    };
    let user = format!("api:{}", who(&caller));
    match app.workflows.decide(&id, approve, &user).await? {
        Decided::Recorded => Ok(Json(
            json!({"approval": id, "decision": body.decision, "by": user}),
        )),
        Decided::Already { decision, by } => Err(Error::Conflict(format!(
            "approval {id} was already decided: {decision} by {by}"
        ))
        .into()),
        Decided::NotAllowed(why) => Err(Error::Unauthorized(why).into()),
        Decided::Unknown => Err(Error::NotFound(format!("no approval `{id}`")).into()),
    }
}

/// `GET /v1/workflows/feed/{name}`: what workflows posted to `web:NAME`, newest first.
pub(super) async fn feed(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rows = app
        .store
        .egress_of(&format!("{}:{name}", crate::workflows::feed::WEB), 100)
        .await?;
    let posts: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "at": r.created_at,
                "key": r.dedupe_key,
                "text": r.payload.get("text").cloned().unwrap_or(Value::Null),
                "actions": r.payload.get("actions").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    Ok(Json(json!({"feed": name, "posts": posts})))
}
