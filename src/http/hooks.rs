//! `POST /hooks/{name}` and `GET /hooks/{name}/deliveries/{key}`: generic signed webhooks.
//!
//! The order matters: the signature is checked before the body is even parsed, so a forged
//! request is refused with 401 before anything is stored.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::{ApiError, MessageResponse};
use crate::app::App;
use crate::channels::verify::unix_now;
use crate::channels::webhook::HookReply;
use crate::channels::webhook::{Delivery, Headers, Rendered, scoped_key};
use crate::error::Error;
use crate::model::{Channel, Outbound};
use crate::store::IngressStatus;

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
    let hooks = Arc::clone(&app.hooks);
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
    let scoped = scoped_key(&name, &key);
    let gateway = Arc::clone(&app.gateway);
    match hook.reply {
        HookReply::Sync => {
            // A tracked task, as for /v1/messages: the answer is recorded even when the sender
            // gives up waiting, so its retry gets it.
            let out = super::answer_tracked(
                &app,
                inbound,
                "resend the delivery to get the answer once it is ready",
            )
            .await?;
            if let Some(target) = hook.forward_to.clone() {
                let app = app.clone();
                let out = out.clone();
                let dedupe = format!("hook:{scoped}");
                app.tasks.clone().spawn(async move {
                    forward(&app, &target, &dedupe, &out).await;
                });
            }
            Ok(Json(response(out, key, name)).into_response())
        }
        HookReply::Async => {
            hooks.set_delivery(&scoped, Some(Delivery::Running));
            let tracked = Arc::clone(&hooks);
            let task_key = scoped.clone();
            let forward_to = hook.forward_to.clone();
            let task_app = app.clone();
            app.tasks.spawn(async move {
                let state = match gateway.handle(inbound).await {
                    Ok(out) => {
                        if let Some(target) = forward_to {
                            forward(&task_app, &target, &format!("hook:{task_key}"), &out).await;
                        }
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, key = %task_key, "an async webhook delivery failed");
                        Some(Delivery::Failed(e.to_string()))
                    }
                };
                tracked.set_delivery(&task_key, state);
            });
            let status_url = format!("/hooks/{name}/deliveries/{}", encode_segment(&key));
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "accepted", "status_url": status_url})),
            )
                .into_response())
        }
    }
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
    match app.hooks.delivery(&scoped) {
        Some(Delivery::Running) => Ok(processing()),
        Some(Delivery::Failed(message)) => Err(Error::Upstream(format!(
            "the delivery failed ({message}); resend it to try again"
        ))
        .into()),
        None => Err(Error::NotFound(format!(
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
