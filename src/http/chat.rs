//! `POST` to a chat platform's routes (`/slack/events`, `/telegram/webhook`,
//! `/discord/interactions`, … — whatever [`crate::channels::PLATFORMS`] lists): one handler for
//! every platform. It hands the raw body and headers to the platform, which verifies the
//! request before anything is parsed or stored and passes the message to the shared path
//! ([`crate::channels::chat::accept`]); the answer (200 with JSON, or empty) or the error's
//! status comes back here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::app::App;
use crate::channels::PLATFORMS;
use crate::channels::chat::{WebReply, WebRequest};
use crate::error::Error;

pub(super) async fn post_platform(
    State(app): State<App>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path();
    let kind = PLATFORMS
        .iter()
        .find(|k| k.routes.contains(&path))
        .ok_or_else(|| Error::NotFound(format!("no chat platform receives on {path}")))?;
    let platform = app
        .platforms
        .by_channel(kind.channel)
        .ok_or_else(|| Error::NotFound(kind.not_configured.into()))?;
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect();
    let request = WebRequest {
        path,
        headers: &headers,
        body: &body,
    };
    match platform.receive(app.chat_context(), request).await? {
        WebReply::Json(value) => Ok(Json(value).into_response()),
        WebReply::Empty => Ok(StatusCode::OK.into_response()),
    }
}
