//! A fake Slack Web API on `127.0.0.1`: records every call (method, JSON body, auth header)
//! and answers `{"ok": true, "ts": "…"}`, or what a test scripted (a 429 with `Retry-After`,
//! an `ok: false`).
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

#[derive(Default)]
struct Inner {
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
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
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
        body,
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
