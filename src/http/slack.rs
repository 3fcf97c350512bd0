//! `POST /slack/events`: the Slack Events API; `POST /slack/interactions`: buttons and the
//! slash command.
//!
//! As for webhooks, the signature is checked over the raw body before anything is parsed, so a
//! forged request gets 401 and nothing is stored. A verified event is acknowledged at once
//! (Slack retries after 3 s): the answer is worked out and sent by a tracked task.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::app::App;
use crate::channels::slack::{Incoming, Interaction, Slack};
use crate::error::Error;
use crate::model::Channel;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The Slack channel, once the request's v0 signature checked out over the raw body: 404
/// when Slack is not configured, 401 (nothing parsed or stored) when the check fails.
fn verified(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Arc<Slack>, ApiError> {
    let Some(slack) = app.slack.clone() else {
        return Err(Error::NotFound(
            "Slack is not configured; add [channels.slack] to conveyor.toml".into(),
        )
        .into());
    };
    if let Err(e) = slack.verify(
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        body,
    ) {
        tracing::warn!(error = %e, "refused a Slack request");
        return Err(Error::Unauthorized(format!("Slack signature check failed: {e}")).into());
    }
    Ok(slack)
}

pub(super) async fn post_events(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let slack = verified(&app, &headers, &body)?;
    // `ssl_check` comes form-encoded (`ssl_check=1&token=…`); it only wants a 200.
    if body.starts_with(b"ssl_check=") || body.windows(11).any(|w| w == b"&ssl_check=") {
        return Ok(Json(json!({"ok": true})).into_response());
    }
    let (inbound, to) = match slack.parse(&body)? {
        Incoming::Challenge(challenge) => {
            return Ok(Json(json!({"challenge": challenge})).into_response());
        }
        Incoming::Ignored(reason) => {
            tracing::debug!(reason, "ignored a Slack event");
            return Ok(Json(json!({"ok": true, "ignored": reason})).into_response());
        }
        Incoming::Message(m) => *m,
    };
    // A retry of an event we already have (answered, or being answered) is acknowledged and
    // dropped; the egress ledger still guards the send against a retry that races the first.
    let ledger_key = format!("{}:{}", Channel::Slack, inbound.idempotency_key);
    if app.store.ingress_response(&ledger_key).await?.is_some() {
        tracing::info!(
            event_id = %to.event_id,
            retry = header(&headers, "x-slack-retry-num").unwrap_or("0"),
            "a repeated Slack event; already handled"
        );
        return Ok(Json(json!({"ok": true})).into_response());
    }
    if to.follow_up
        && app
            .store
            .recent_turns(&inbound.conversation.as_storage_key(), 1)
            .await?
            .is_empty()
    {
        return Ok(
            Json(json!({"ok": true, "ignored": "a thread conveyor takes no part in"}))
                .into_response(),
        );
    }
    let gateway = Arc::clone(&app.gateway);
    let store = app.store.clone();
    app.tasks.spawn(async move {
        slack.respond(&gateway, &store, inbound, to).await;
    });
    Ok(Json(json!({"ok": true})).into_response())
}

/// `POST /slack/interactions` (and `/slack/commands`): 👍/👎 clicks and the `/conveyor` slash
/// command. Same v0 signature check over the raw body first; Slack wants an answer within
/// 3 s, so a slash command is acknowledged at once and answered through its `response_url`.
pub(super) async fn post_interactions(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let slack = verified(&app, &headers, &body)?;
    match slack.parse_interaction(&body)? {
        Interaction::Ignored(reason) => {
            tracing::debug!(reason, "ignored a Slack interaction");
            Ok(axum::http::StatusCode::OK.into_response())
        }
        Interaction::Feedback {
            message_id,
            user,
            rating,
            response_url,
        } => {
            slack
                .record_feedback(
                    &app.store,
                    &message_id,
                    &user,
                    rating,
                    response_url.as_deref(),
                )
                .await?;
            Ok(axum::http::StatusCode::OK.into_response())
        }
        Interaction::Command(cmd) => {
            if let Some(text) = slack.command_ack(&app.gateway, &cmd).await? {
                return Ok(
                    Json(json!({"response_type": "ephemeral", "text": text})).into_response()
                );
            }
            let gateway = Arc::clone(&app.gateway);
            let store = app.store.clone();
            app.tasks.spawn(async move {
                slack.answer_command(&gateway, &store, *cmd).await;
            });
            // An empty 200: Slack shows nothing until the answer arrives in the channel.
            Ok(axum::http::StatusCode::OK.into_response())
        }
    }
}
