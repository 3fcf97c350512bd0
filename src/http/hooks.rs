//! `POST /hooks/{name}` and `GET /hooks/{name}/deliveries/{key}`: generic signed webhooks.
//!
//! The order matters: the signature is checked before the body is even parsed, so a forged
//! request is refused with 401 before anything is stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, MessageResponse};
use crate::app::App;
use crate::channels::verify::unix_now;
use crate::channels::webhook::HookReply;
use crate::channels::webhook::{Headers, Rendered, scoped_key};
use crate::error::Error;
use crate::gateway::inbox::{self, Finish};
use crate::model::{Channel, Inbound, Outbound};
use crate::store::{InboxRow, InboxState, IngressStatus, Lease};

/// Answer of a webhook: the `/v1/messages` answer plus the hook's name.
#[derive(Debug, Serialize)]
struct HookResponse {
    #[serde(flatten)]
    message: MessageResponse,
    hook: String,
}

impl Headers for HeaderMap {
    fn header(&self, name: &str) -> Option<std::result::Result<&str, ()>> {
        self.get(name).map(|v| v.to_str().map_err(|_| ()))
    }
}

fn unknown_hook(name: &str) -> ApiError {
    ApiError(Error::NotFound(format!(
        "no webhook named {name}; configure it as [hooks.{name}] in conveyor.toml"
    )))
}

pub(super) async fn post_hook(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hooks = std::sync::Arc::clone(&app.hooks);
    let hook = hooks.get(&name).ok_or_else(|| unknown_hook(&name))?;
    if let Some(max) = hook.max_body_bytes
        && body.len() > max
    {
        return Err(Error::TooLarge(format!(
            "the body has {} bytes; hooks.{name}.max_body_bytes allows {max}",
            body.len()
        ))
        .into());
    }
    if let Err(e) = hook.verify(&headers, &body, unix_now()) {
        // Logged without the secret or the signature; the sender learns only which check failed.
        tracing::warn!(hook = %name, error = %e, "refused a webhook request");
        return Err(Error::Unauthorized(format!("webhook signature check failed: {e}")).into());
    }
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::BadInput(format!("the webhook body is not valid JSON ({e})")))?;
    let key = hook.delivery_key(&headers, &body)?;
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok());
    if let Some(workflow) = &hook.workflow {
        return start_workflow(&app, &name, workflow, payload, &key, event).await;
    }
    let inbound = match hook.render(&payload, event, &key)? {
        Rendered::Ignored(reason) => {
            let status = match hook.reply {
                HookReply::Sync => StatusCode::OK,
                HookReply::Async => StatusCode::ACCEPTED,
            };
            return Ok(
                (status, Json(json!({"status": "ignored", "reason": reason}))).into_response(),
            );
        }
        Rendered::Message(inbound) => inbound,
    };
    // Written to the inbox before anything is answered or acknowledged: from here on a crash
    // loses nothing (the next process's redriver answers it, see `resume`). A delivery
    // already in the inbox (a resend) gets no lease and is answered through the ledger.
    let queued = serde_json::to_value(QueuedDelivery {
        inbound: &inbound,
        hook: &name,
    })
    .map_err(|e| Error::internal("queueing a webhook delivery", e))?;
    let lease = app
        .store
        .inbox_put(
            Channel::WEBHOOK.as_str(),
            &inbound.ledger_key(),
            &queued,
            app.gateway.lease(),
        )
        .await?;
    match hook.reply {
        HookReply::Sync => {
            // A tracked task, as for /v1/messages: the answer is recorded (and forwarded) even
            // when the sender gives up waiting, so its retry gets it.
            let task_app = app.clone();
            let task_hook = name.clone();
            let work = app.tasks.spawn(async move {
                answer_delivery(&task_app, &task_hook, inbound, lease, 1).await
            });
            let timeout = app.config.server.request_timeout.0;
            let out = tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| {
                    Error::Upstream(format!(
                        "answering took longer than server.request_timeout ({}); resend the delivery to get the answer once it is ready",
                        app.config.server.request_timeout
                    ))
                })?
                .map_err(|e| Error::internal("answering a webhook delivery", e))??;
            Ok(Json(response(out, key, name)).into_response())
        }
        HookReply::Async => {
            if lease.is_some() {
                let task_app = app.clone();
                let task_hook = name.clone();
                app.tasks.spawn(async move {
                    // Errors are recorded in the inbox row, where the status URL reads them.
                    let _ = answer_delivery(&task_app, &task_hook, inbound, lease, 1).await;
                });
            }
            let status_url = format!("/hooks/{name}/deliveries/{}", encode_segment(&key));
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "accepted", "status_url": status_url})),
            )
                .into_response())
        }
    }
}

/// A delivery of a hook with `workflow = "…"`: the payload becomes the run's input, the
/// delivery key its idempotency key (a redelivery returns the first run). The run is written
/// before the 202 is sent; a payload that fails the workflow's `[inputs]` is refused with 400
/// and the reason, and nothing is recorded.
async fn start_workflow(
    app: &App,
    hook: &str,
    workflow: &str,
    payload: serde_json::Value,
    key: &str,
    event: Option<&str>,
) -> Result<Response, ApiError> {
    let started = app
        .workflows
        .start(crate::workflows::StartRequest {
            workflow: workflow.to_string(),
            input: payload,
            kind: "hook".into(),
            trigger: json!({"hook": hook, "delivery": key, "event": event}),
            by: None,
            key: Some(format!("hook:{hook}:{key}")),
            parent: None,
        })
        .await?;
    let (status, first) = match &started {
        crate::store::workflows::Started::New { .. } => ("started", true),
        crate::store::workflows::Started::Existing { .. } => ("duplicate", false),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": status,
            "workflow": workflow,
            "run": started.id(),
            "first_delivery": first,
            "status_url": format!("/v1/workflows/runs/{}", started.id()),
        })),
    )
        .into_response())
}

/// What a webhook delivery's inbox row holds.
#[derive(Serialize, Deserialize)]
struct QueuedDelivery<I, H> {
    inbound: I,
    hook: H,
}

/// Answers a delivery and posts the answer into the hook's `forward_to` chat, holding its
/// inbox row (when `lease` is this call's) until it is done, handed back at shutdown, left for
/// a retry or failed; the error is what the sender of a sync hook sees.
async fn answer_delivery(
    app: &App,
    hook: &str,
    inbound: Inbound,
    lease: Option<Lease>,
    attempts: i64,
) -> Result<Outbound, Error> {
    let key = inbound.idempotency_key.clone();
    let work = async {
        let out = app.gateway.handle(inbound).await?;
        if let Some(target) = app.hooks.get(hook).and_then(|h| h.forward_to.as_ref()) {
            // A failed post stays pending in the egress ledger for the resender.
            forward(app, target, &format!("hook:{key}"), &out).await;
        }
        Ok(out)
    };
    let length = app.gateway.lease();
    let Some(result) = inbox::held(&app.store, lease.as_ref(), length, work).await else {
        return Err(Error::Conflict(
            "the delivery was taken over by another process; resend it to get the answer".into(),
        ));
    };
    let outcome = match &result {
        Ok(_) => Finish::Done,
        Err(e) => {
            tracing::warn!(error = %e, hook, key, "answering a webhook delivery failed");
            Finish::of_error(e)
        }
    };
    let max = app.gateway.inbox_max_attempts();
    inbox::finish(&app.store, lease.as_ref(), outcome, attempts, max).await;
    result
}

/// The work of answering a webhook delivery that a crash or a shutdown left in the inbox,
/// claimed by the redriver (the hook may have been removed since: it is answered without
/// forwarding).
pub(crate) fn resume(app: &App, row: InboxRow) -> futures_util::future::BoxFuture<'static, ()> {
    let app = app.clone();
    Box::pin(async move {
        match serde_json::from_value::<QueuedDelivery<Inbound, String>>(row.payload) {
            Ok(q) => {
                let lease = Some(row.lease);
                let _ = answer_delivery(&app, &q.hook, q.inbound, lease, row.attempts).await;
            }
            Err(e) => {
                let why = format!("the queued webhook delivery cannot be read ({e})");
                let max = app.gateway.inbox_max_attempts();
                inbox::finish(
                    &app.store,
                    Some(&row.lease),
                    Finish::Fail(why),
                    row.attempts,
                    max,
                )
                .await;
            }
        }
    })
}

pub(super) async fn get_delivery(
    State(app): State<App>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if app.hooks.get(&name).is_none() {
        return Err(unknown_hook(&name));
    }
    let scoped = scoped_key(&name, &key);
    let ledger_key = format!("{}:{scoped}", Channel::WEBHOOK);
    match app.store.ingress_response(&ledger_key).await? {
        Some(IngressStatus::Done(recorded)) => {
            let out: Outbound = serde_json::from_str(&recorded)
                .map_err(|e| Error::internal("reading a recorded webhook answer", e))?;
            return Ok(Json(response(out, key, name)).into_response());
        }
        Some(IngressStatus::Processing) => return Ok(processing()),
        None => {}
    }
    match app.store.inbox_state(&ledger_key).await? {
        Some(InboxState::Queued) => Ok(processing()),
        Some(InboxState::Failed(message)) => Err(Error::Upstream(format!(
            "the delivery failed ({message}); resend it to try again"
        ))
        .into()),
        Some(InboxState::Done) | None => Err(Error::NotFound(format!(
            "no delivery {key} for webhook {name}; it was never received, or it was ignored"
        ))
        .into()),
    }
}

/// Posts a webhook's answer into its `forward_to` chat; failures are logged (the egress
/// ledger keeps the reply pending for the resender).
async fn forward(
    app: &App,
    target: &crate::channels::webhook::ForwardTarget,
    dedupe_key: &str,
    out: &Outbound,
) {
    if let Err(e) = app.forward(target, dedupe_key, out).await {
        tracing::warn!(error = %e, to = %target.channel, chat = %target.chat, "forwarding a webhook answer failed");
    }
}

fn processing() -> Response {
    (StatusCode::ACCEPTED, Json(json!({"status": "processing"}))).into_response()
}

fn response(out: Outbound, key: String, hook: String) -> HookResponse {
    HookResponse {
        message: MessageResponse::new(out, key),
        hook,
    }
}

/// Percent-encodes everything but unreserved characters, so any delivery id fits in one path
/// segment (axum decodes it back).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
