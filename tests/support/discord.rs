//! A fake Discord REST API on `127.0.0.1`, below `/api/v10` like the real one (serenity's
//! `HttpBuilder::proxy` replaces `https://discord.com` with the fake's origin):
//!
//! - `POST /webhooks/{application_id}/{token}` (an interaction follow-up) is recorded with its
//!   body and answered with a message object whose `id` is fresh;
//! - `GET /gateway` and `/gateway/bot` answer the websocket URL set with
//!   [`FakeDiscord::set_gateway_url`] (a `ws://` fake from `discord_gateway.rs`);
//! - `GET /users/@me` answers the bot user (or 401 after [`FakeDiscord::reject_token`]);
//! - `POST /channels/{id}/messages` is recorded and answered with a full message object; a
//!   repeated `nonce` with `enforce_nonce` returns the first message, as Discord does, and
//!   [`FakeDiscord::rate_limit_next`] answers 429s first;
//! - `POST /channels/{id}/typing` is recorded and answered 204.
//!
//! Both message routes also take a file upload as Discord does: multipart/form-data with the
//! message as `payload_json` and files as `files[n]`, each named by an entry of the message's
//! `attachments` with `id` n (a file without one is refused with 400, as Discord refuses it).
//! The body is recorded from `payload_json`, the files in `files`; the answer lists them as
//! the message's `attachments`. [`FakeDiscord::fail_uploads`] answers the next posts that
//! carry a file with 500.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::multipart::{self, Part};

/// The fake bot user's id.
pub const BOT_ID: &str = "1181000000000000001";
/// The fake bot user's name.
pub const BOT_NAME: &str = "conveyor";

/// The fake bot user.
pub fn bot_user() -> Value {
    json!({
        "id": BOT_ID,
        "username": BOT_NAME,
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "verified": true,
        "mfa_enabled": false,
        "flags": 0
    })
}

/// One recorded follow-up.
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// The application id from the path.
    pub application_id: String,
    /// The interaction token from the path.
    pub token: String,
    /// The JSON body (`payload_json` of a multipart one).
    pub body: Value,
    /// The uploaded files (`files[n]` parts).
    pub files: Vec<Part>,
}

/// One recorded `POST /channels/{id}/messages` that created a message.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The channel from the path.
    pub channel_id: String,
    /// The JSON body (`payload_json` of a multipart one).
    pub body: Value,
    /// The uploaded files (`files[n]` parts).
    pub files: Vec<Part>,
    /// The `Authorization` header.
    pub authorization: String,
    /// The id the fake gave the message.
    pub id: String,
}

#[derive(Default)]
struct Inner {
    calls: Vec<FollowUp>,
    sent: Vec<Sent>,
    /// Every `POST /channels/{id}/messages`, also refused and deduplicated ones.
    message_posts: usize,
    typing: Vec<String>,
    nonces: HashMap<(String, String), Value>,
    next_id: u64,
    gateway_url: String,
    rate_limit: usize,
    fail: usize,
    reject_token: bool,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeDiscord {
    /// Base URL to put in `channels.discord.api_base_url` (ends with `/api/v10`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = State<Arc<Mutex<Inner>>>;

impl FakeDiscord {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1_100_000_000_000_000_000,
            gateway_url: "ws://127.0.0.1:9".into(),
            ..Inner::default()
        }));
        let api = Router::new()
            .route("/webhooks/{app}/{token}", post(follow_up))
            .route("/gateway", get(gateway))
            .route("/gateway/bot", get(gateway_bot))
            .route("/users/@me", get(me))
            .route("/channels/{id}/messages", post(create_message))
            .route("/channels/{id}/typing", post(typing))
            // Uploads are larger than axum's default body limit (2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&inner));
        let app = Router::new().nest("/api/v10", api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/api/v10"),
            inner,
        }
    }

    /// Where `GET /gateway` sends the bot.
    pub fn set_gateway_url(&self, url: &str) {
        self.inner.lock().unwrap().gateway_url = url.to_string();
    }

    /// Answers the next `n` message posts with 429.
    pub fn rate_limit_next(&self, n: usize) {
        self.inner.lock().unwrap().rate_limit = n;
    }

    /// Answers the next `n` follow-ups or message posts that carry a file with 500.
    pub fn fail_uploads(&self, n: usize) {
        self.inner.lock().unwrap().fail = n;
    }

    /// Answers `GET /users/@me` with 401 from now on.
    pub fn reject_token(&self) {
        self.inner.lock().unwrap().reject_token = true;
    }

    /// Every follow-up so far.
    pub fn follow_ups(&self) -> Vec<FollowUp> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Every message created so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// How many `POST /channels/{id}/messages` arrived (created, refused or deduplicated).
    pub fn message_posts(&self) -> usize {
        self.inner.lock().unwrap().message_posts
    }

    /// The channels a typing indicator was sent to, in order.
    pub fn typing(&self) -> Vec<String> {
        self.inner.lock().unwrap().typing.clone()
    }

    /// Waits up to `timeout` until at least `n` follow-ups arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<FollowUp> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let calls = self.follow_ups();
            if calls.len() >= n || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` until at least `n` messages were created.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let sent = self.sent();
            if sent.len() >= n || tokio::time::Instant::now() >= deadline {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` until at least `n` typing indicators arrived.
    pub async fn wait_for_typing(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let typing = self.typing();
            if typing.len() >= n || tokio::time::Instant::now() >= deadline {
                return typing;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A message body as Discord reads it: JSON, or multipart with `payload_json` and `files[n]`;
/// `None` when a file is not named in `attachments` (Discord refuses that, see [`refused`]).
fn read_message(headers: &axum::http::HeaderMap, bytes: &[u8]) -> Option<(Value, Vec<Part>)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if multipart::boundary(content_type).is_none() {
        return Some((serde_json::from_slice(bytes).unwrap(), Vec::new()));
    }
    let parts = multipart::parse(content_type, bytes);
    let body: Value = parts
        .iter()
        .find(|p| p.name == "payload_json")
        .map(|p| serde_json::from_slice(&p.bytes).unwrap())
        .unwrap_or_else(|| json!({}));
    let files: Vec<Part> = parts
        .into_iter()
        .filter(|p| p.name.starts_with("files["))
        .collect();
    for file in &files {
        let n: u64 = file.name["files[".len()..file.name.len() - 1]
            .parse()
            .unwrap();
        let named = body["attachments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["id"].as_u64() == Some(n)));
        if !named {
            return None;
        }
    }
    Some((body, files))
}

/// Discord's answer to a file its message does not name.
fn refused() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"message": "Invalid Form Body", "code": 50035})),
    )
        .into_response()
}

/// The `attachments` of the message Discord answers with.
fn attachments(body: &Value, files: &[Part], first_id: u64) -> Value {
    let listed: Vec<Value> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let n: u64 = f.name["files[".len()..f.name.len() - 1].parse().unwrap();
            let entry = body["attachments"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["id"].as_u64() == Some(n)))
                .cloned()
                .unwrap_or_default();
            let filename = f.filename.clone().unwrap_or_default();
            let id = first_id + i as u64;
            json!({
                "id": id.to_string(),
                "filename": filename,
                "description": entry.get("description"),
                "content_type": f.content_type,
                "size": f.bytes.len(),
                "url": format!("https://cdn.discordapp.com/attachments/1/{id}/{filename}"),
                "proxy_url": format!("https://media.discordapp.net/attachments/1/{id}/{filename}"),
            })
        })
        .collect();
    Value::Array(listed)
}

fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"message": "500: Internal Server Error", "code": 0})),
    )
        .into_response()
}

async fn follow_up(
    State(inner): Shared,
    Path((application_id, token)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let Some((body, files)) = read_message(&headers, &bytes) else {
        return refused();
    };
    let mut inner = inner.lock().unwrap();
    if inner.fail > 0 && !files.is_empty() {
        inner.fail -= 1;
        return server_error();
    }
    inner.next_id += 1;
    let id = inner.next_id.to_string();
    let content = body.get("content").cloned().unwrap_or(json!(""));
    let listed = attachments(&body, &files, inner.next_id * 10);
    inner.calls.push(FollowUp {
        application_id,
        token,
        body,
        files,
    });
    Json(json!({"id": id, "type": 0, "content": content, "channel_id": "645027906669510667", "attachments": listed}))
        .into_response()
}

async fn gateway(State(inner): Shared) -> Json<Value> {
    Json(json!({"url": inner.lock().unwrap().gateway_url}))
}

async fn gateway_bot(State(inner): Shared) -> Json<Value> {
    Json(json!({
        "url": inner.lock().unwrap().gateway_url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 999,
            "reset_after": 14_400_000,
            "max_concurrency": 1
        }
    }))
}

async fn me(State(inner): Shared) -> Response {
    if inner.lock().unwrap().reject_token {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response();
    }
    Json(bot_user()).into_response()
}

async fn create_message(
    State(inner): Shared,
    Path(channel_id): Path<String>,
    headers: axum::http::HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let Some((body, files)) = read_message(&headers, &bytes) else {
        return refused();
    };
    let mut inner = inner.lock().unwrap();
    inner.message_posts += 1;
    if inner.fail > 0 && !files.is_empty() {
        inner.fail -= 1;
        return server_error();
    }
    if inner.rate_limit > 0 {
        inner.rate_limit -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0.05"), ("x-ratelimit-scope", "user")],
            Json(json!({
                "message": "You are being rate limited.",
                "retry_after": 0.05,
                "global": false
            })),
        )
            .into_response();
    }
    let nonce = body
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_string);
    let enforce = body.get("enforce_nonce").and_then(Value::as_bool) == Some(true);
    if let (Some(nonce), true) = (&nonce, enforce)
        && let Some(existing) = inner.nonces.get(&(channel_id.clone(), nonce.clone()))
    {
        return Json(existing.clone()).into_response();
    }
    inner.next_id += 1;
    let id = inner.next_id.to_string();
    let message = json!({
        "id": id,
        "channel_id": channel_id,
        "author": bot_user(),
        "content": body.get("content").cloned().unwrap_or(json!("")),
        "timestamp": "2026-11-26T10:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments(&body, &files, inner.next_id * 10),
        "embeds": [],
        "pinned": false,
        "type": if body.get("message_reference").is_some() { 19 } else { 0 },
        "nonce": nonce,
        "flags": 0
    });
    if let (Some(nonce), true) = (nonce, enforce) {
        inner
            .nonces
            .insert((channel_id.clone(), nonce), message.clone());
    }
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    inner.sent.push(Sent {
        channel_id,
        body,
        files,
        authorization,
        id,
    });
    Json(message).into_response()
}

async fn typing(State(inner): Shared, Path(channel_id): Path<String>) -> StatusCode {
    inner.lock().unwrap().typing.push(channel_id);
    StatusCode::NO_CONTENT
}
