//! `POST /discord/interactions`: the Interactions Endpoint URL of a Discord application.
//!
//! The Ed25519 signature (`X-Signature-Ed25519` over `X-Signature-Timestamp || body`) is checked
//! before the body is read: a missing or invalid one gets 401 and nothing is processed or stored
//! (Discord sends such probes on purpose). PING → `{"type":1}`; `/ask` → `{"type":5}` (deferred)
//! at once, the answer worked out by a tracked task and sent as follow-ups; anything else → an
//! ephemeral note that only `/ask` is supported.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::app::App;
use crate::channels::discord::Interaction;
use crate::error::Error;
use crate::model::Channel;

pub(super) async fn post_interactions(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(discord) = app.discord.clone() else {
        return Err(Error::NotFound(
            "Discord interactions are not configured; add [channels.discord]".into(),
        )
        .into());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !discord.verify(
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
        &body,
    ) {
        tracing::warn!("refused a Discord interaction with a missing or invalid signature");
        return Err(Error::Unauthorized("invalid request signature".into()).into());
    }
    let (inbound, to) = match crate::channels::discord::parse(&body)? {
        Interaction::Ping => return Ok(Json(json!({"type": 1})).into_response()),
        Interaction::Unsupported => {
            return Ok(Json(json!({
                "type": 4,
                "data": {
                    "content": "Only the /ask command is supported, e.g. `/ask question: How do I request a refund?`",
                    "flags": 64
                }
            }))
            .into_response());
        }
        Interaction::Ask(ask) => *ask,
    };
    let ledger_key = format!("{}:{}", Channel::Discord, inbound.idempotency_key);
    if app.store.ingress_response(&ledger_key).await?.is_some() {
        tracing::info!(
            interaction_id = to.interaction_id,
            "a repeated Discord interaction; already handled"
        );
        return Ok(Json(json!({"type": 5})).into_response());
    }
    let gateway = Arc::clone(&app.gateway);
    let store = app.store.clone();
    app.tasks.spawn(async move {
        discord.respond(&gateway, &store, inbound, to).await;
    });
    Ok(Json(json!({"type": 5})).into_response())
}
