//! A fake Slack Web API on `127.0.0.1`: records every call (method, body as JSON — a form's
//! fields become a JSON object — and auth header) and answers `{"ok": true, "ts": "…"}`, or
//! what a test scripted (a 429 with `Retry-After`, an `ok: false`).
//!
//! The file upload works as Slack's does: `files.getUploadURLExternal` (form: `filename`,
//! `length`, optional `alt_txt`) answers `{ok, upload_url, file_id}` with the upload URL on the
//! fake itself (`/upload/{file_id}`, taking the raw bytes or a multipart `file`);
//! `files.completeUploadExternal` (`files=[{"id","title"}]`, `channel_id`, `thread_ts`) shares
//! the uploaded files and answers `{ok, files: […]}`, or `upload_not_complete` for a file whose
//! bytes did not arrive or do not have the announced length. [`FakeSlack::uploads`] says what
//! was received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, `reactions.add`, ...
    pub method: String,
    /// The JSON body.
    pub body: Value,
    /// The `Authorization` header.
    pub auth: Option<String>,
    /// When the fake received it.
    pub at: std::time::Instant,
}

/// A scripted answer for the next call of a method.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// `{"ok": false, "error": …}`.
    Error(String),
}

/// One file announced with `files.getUploadURLExternal`.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The id the fake gave it.
    pub file_id: String,
    /// `filename`.
    pub filename: String,
    /// `length`, as announced.
    pub length: usize,
    /// `alt_txt`, if given.
    pub alt_txt: Option<String>,
    /// The bytes POSTed to its upload URL, once they arrived.
    pub bytes: Option<Vec<u8>>,
    /// Where `files.completeUploadExternal` shared it, once it did.
    pub shared: Option<Share>,
}

/// Where a file was shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// `channel_id`.
    pub channel: String,
    /// `thread_ts`, if given.
    pub thread_ts: Option<String>,
    /// The file's `title`.
    pub title: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// `http://127.0.0.1:port`, for upload URLs.
    origin: String,
    uploads: Vec<Upload>,
    calls: Vec<Call>,
    /// When the first `chat.postMessage` into each channel arrived (benchmarks wait on it).
    first_post: std::collections::HashMap<String, std::time::Instant>,
    script: VecDeque<(String, Scripted)>,
    next_ts: u64,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeSlack {
    /// Base URL to put in `channels.slack.api_base_url`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

/// Wakes waiters on every recorded call.
static POSTED: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

impl FakeSlack {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/api/{method}", post(handle).get(history))
            .route("/response/{id}", post(response_url))
            .route("/upload/{id}", post(upload))
            // Uploads are larger than axum's default body limit (2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        inner.lock().unwrap().origin = format!("http://{addr}");
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/api"),
            inner,
        }
    }

    /// Makes the next call of `method` answer `answer`.
    pub fn script(&self, method: &str, answer: Scripted) {
        self.inner
            .lock()
            .unwrap()
            .script
            .push_back((method.to_string(), answer));
    }

    /// Every file announced so far, with what arrived for it.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.lock().unwrap().uploads.clone()
    }

    /// The files shared into a channel so far (announced, uploaded and completed).
    pub fn shared_files(&self) -> Vec<Upload> {
        self.uploads()
            .into_iter()
            .filter(|u| u.shared.is_some())
            .collect()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The calls of `method` so far.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Waits until a `chat.postMessage` into `channel` arrives and returns when it did.
    pub async fn wait_for_post_in(
        &self,
        channel: &str,
        timeout: Duration,
    ) -> Option<std::time::Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = POSTED.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = self.inner.lock().unwrap().first_post.get(channel).copied();
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits up to `timeout` until `method` was called at least `n` times.
    pub async fn wait_for(&self, method: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let calls = self.calls_of(method);
            if calls.len() >= n || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Slack accepts JSON, a form, or no body at all (auth.test with the bearer token only).
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body: Value = if form {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let mut inner = inner.lock().unwrap();
    if method == "chat.postMessage"
        && let Some(channel) = body["channel"].as_str()
    {
        inner
            .first_post
            .entry(channel.to_string())
            .or_insert_with(std::time::Instant::now);
    }
    inner.calls.push(Call {
        method: method.clone(),
        body: body.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: std::time::Instant::now(),
    });
    POSTED.notify_waiters();
    if let Some(i) = inner.script.iter().position(|(m, _)| *m == method) {
        let (_, answer) = inner.script.remove(i).unwrap();
        return match answer {
            Scripted::RateLimited(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response(),
            Scripted::Error(error) => Json(json!({"ok": false, "error": error})).into_response(),
        };
    }
    if method == "files.getUploadURLExternal" {
        let (Some(filename), Some(length)) = (
            body["filename"].as_str(),
            body["length"]
                .as_str()
                .and_then(|l| l.parse::<usize>().ok()),
        ) else {
            return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
        };
        let file_id = format!("F{:010}", inner.uploads.len() + 1);
        let upload_url = format!("{}/upload/{file_id}", inner.origin);
        inner.uploads.push(Upload {
            file_id: file_id.clone(),
            filename: filename.to_string(),
            length,
            alt_txt: body["alt_txt"].as_str().map(str::to_string),
            bytes: None,
            shared: None,
        });
        return Json(json!({"ok": true, "upload_url": upload_url, "file_id": file_id}))
            .into_response();
    }
    if method == "files.completeUploadExternal" {
        let Some(files) = body["files"]
            .as_str()
            .and_then(|f| serde_json::from_str::<Value>(f).ok())
            .and_then(|f| f.as_array().cloned())
        else {
            return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
        };
        let channel = body["channel_id"].as_str().map(str::to_string);
        let thread_ts = body["thread_ts"].as_str().map(str::to_string);
        let mut answered = Vec::new();
        for f in &files {
            let id = f["id"].as_str().unwrap_or_default();
            let Some(upload) = inner.uploads.iter_mut().find(|u| u.file_id == id) else {
                return Json(json!({"ok": false, "error": "file_not_found"})).into_response();
            };
            if upload.bytes.as_ref().map(Vec::len) != Some(upload.length) {
                return Json(json!({"ok": false, "error": "upload_not_complete"})).into_response();
            }
            let title = f["title"].as_str().map(str::to_string);
            if let Some(channel) = &channel {
                upload.shared = Some(Share {
                    channel: channel.clone(),
                    thread_ts: thread_ts.clone(),
                    title: title.clone(),
                });
            }
            answered.push(json!({
                "id": id, "name": upload.filename, "title": title.unwrap_or_else(|| upload.filename.clone()),
                "size": upload.length, "alt_txt": upload.alt_txt,
            }));
        }
        return Json(json!({"ok": true, "files": answered})).into_response();
    }
    if method == "auth.test" {
        return Json(json!({
            "ok": true, "url": "https://lumen.slack.com/", "team": "Lumen Labs",
            "user": "conveyor", "team_id": "T111", "user_id": "W111", "bot_id": "B111"
        }))
        .into_response();
    }
    inner.next_ts += 1;
    let ts = format!("1700000000.{:06}", inner.next_ts);
    Json(json!({"ok": true, "ts": ts})).into_response()
}

/// A slash command's or an interaction's `response_url` (Slack's `hooks.slack.com/…`), recorded
/// as method `response_url` with the id in the auth field's place.
async fn response_url(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.calls.push(Call {
        method: "response_url".into(),
        body,
        auth: Some(id),
        at: std::time::Instant::now(),
    });
    (StatusCode::OK, "ok").into_response()
}

/// `conversations.replies` / `conversations.history` (GET with a query): the messages posted
/// so far into `channel` (and thread `ts`), with their metadata, as Slack returns them.
async fn history(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let inner = inner.lock().unwrap();
    let channel = q.get("channel").cloned().unwrap_or_default();
    let thread = q.get("ts").cloned();
    let mut ts = 0;
    let messages: Vec<Value> = inner
        .calls
        .iter()
        .filter(|c| c.method == "chat.postMessage" && c.body["channel"] == channel.as_str())
        .filter(|c| {
            method != "conversations.replies" || c.body["thread_ts"].as_str() == thread.as_deref()
        })
        .map(|c| {
            ts += 1;
            json!({
                "type": "message", "user": "W111", "bot_id": "B111",
                "text": c.body["text"], "ts": format!("1700000000.{ts:06}"),
                "thread_ts": c.body["thread_ts"], "metadata": c.body["metadata"],
            })
        })
        .collect();
    Json(json!({"ok": true, "messages": messages, "has_more": false})).into_response()
}

/// An upload URL: the bytes of an announced file, raw or as a multipart `file` part.
async fn upload(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bytes = if crate::support::multipart::boundary(content_type).is_some() {
        crate::support::multipart::parse(content_type, &body)
            .into_iter()
            .find(|p| p.filename.is_some())
            .map(|p| p.bytes)
            .unwrap_or_default()
    } else {
        body.to_vec()
    };
    let mut inner = inner.lock().unwrap();
    let Some(upload) = inner.uploads.iter_mut().find(|u| u.file_id == id) else {
        return (StatusCode::NOT_FOUND, "unknown upload").into_response();
    };
    let len = bytes.len();
    upload.bytes = Some(bytes);
    POSTED.notify_waiters();
    (StatusCode::OK, format!("OK - {len}")).into_response()
}
