//! `POST /telegram/webhook`: updates pushed by Telegram after `setWebhook`.
//!
//! The `X-Telegram-Bot-Api-Secret-Token` header is checked before the body is read, so a forged
//! request gets 401 and nothing is processed. A verified update is acknowledged at once
//! (Telegram retries slow or failed deliveries): the answer is worked out and sent by a tracked
//! task, and the gateway's ingress ledger (key `telegram:{update_id}`) answers it only once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::app::App;
use crate::channels::telegram::{Incoming, TelegramMode};
use crate::error::Error;
use crate::model::Channel;

pub(super) async fn post_webhook(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(telegram) = app
        .telegram
        .clone()
        .filter(|t| t.mode() == TelegramMode::Webhook)
    else {
        return Err(Error::NotFound(
            "the Telegram webhook is not configured; set mode = \"webhook\" in [channels.telegram]"
                .into(),
        )
        .into());
    };
    let secret = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = telegram.verify(secret) {
        tracing::warn!(error = %e, "refused a Telegram webhook request");
        return Err(Error::Unauthorized(format!("Telegram secret token check failed: {e}")).into());
    }
    let (inbound, to) = match telegram.parse(&body).await? {
        Incoming::Ignored(reason) => {
            tracing::debug!(reason, "ignored a Telegram update");
            return Ok(Json(json!({"ok": true, "ignored": reason})).into_response());
        }
        Incoming::Message(m) => *m,
    };
    // A redelivery of an update we already have is acknowledged and dropped; the egress ledger
    // still guards the send against a redelivery that races the first.
    let ledger_key = format!("{}:{}", Channel::Telegram, inbound.idempotency_key);
    if app.store.ingress_response(&ledger_key).await?.is_some() {
        tracing::info!(
            update_id = to.update_id,
            "a repeated Telegram update; already handled"
        );
        return Ok(Json(json!({"ok": true})).into_response());
    }
    let gateway = Arc::clone(&app.gateway);
    let store = app.store.clone();
    app.tasks.spawn(async move {
        telegram.respond(&gateway, &store, inbound, to).await;
    });
    Ok(Json(json!({"ok": true})).into_response())
}
