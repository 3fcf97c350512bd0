//! A fake Telegram Bot API on `127.0.0.1`: `/bot{token}/{method}` with method names matched
//! case-insensitively (teloxide sends `SendMessage`, others `sendMessage`). Records every call
//! with its body (JSON, or form fields as a JSON object) and when it arrived. Answers as the
//! real Bot API does, since teloxide reads answers strictly: `getMe` with a full bot User,
//! `getUpdates` from a scripted queue honouring `offset`, `sendMessage` with a full Message (the
//! private chat and sender of `../shared/fixtures/telegram/teloxide_tests/private_text.json`, a
//! supergroup for negative chat ids, the topic for `message_thread_id`), `sendChatAction` with
//! `true`, scripted 429s with `parameters.retry_after`, and scripted refusals (`ok: false`).
//!
//! `sendPhoto` and `sendDocument` come as multipart/form-data: the plain fields are recorded in
//! the body (as strings, the way they travel: `reply_parameters` is JSON text), the file in
//! [`Call::files`] under the field it was sent for (`photo`, `document`), also when the field
//! says `attach://<part>` and the bytes are in that part, as teloxide sends them. They are
//! answered with a Message carrying a `photo` (sizes) or a `document`, and the caption.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::support::multipart::{self, Part};

/// One recorded Bot API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The token from the path.
    pub token: String,
    /// The method as sent (`sendMessage`, `SendMessage`, ...).
    pub method: String,
    /// The body: JSON, or form fields as a JSON object.
    pub body: Value,
    /// The files of a multipart call, named by the field they were sent for.
    pub files: Vec<Part>,
    /// When the call arrived.
    pub at: Instant,
}

impl Call {
    /// Whether this call is of `method`, ignoring case.
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// When the first `sendMessage` into each chat arrived (benchmarks wait on it).
    first_send: std::collections::HashMap<i64, Instant>,
    updates: Vec<Value>,
    rate_limits: Vec<(String, u64)>,
    failures: Vec<(String, u16, String)>,
    next_message_id: i64,
}

/// Wakes benchmark waiters on every `sendMessage`.
static SENT: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// The running fake.
#[derive(Clone)]
pub struct FakeTelegram {
    /// Base URL to put in `channels.telegram.api_url`.
    pub url: String,
    /// The bot's username answered by `getMe`.
    pub username: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeTelegram {
    /// Starts the fake on an ephemeral port.
    pub async fn start(username: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            next_message_id: 1000,
            ..Inner::default()
        }));
        let state = (Arc::clone(&inner), username.to_string());
        let app = Router::new()
            .route("/{bot}/{method}", post(handle))
            // Uploads are larger than axum's default body limit (2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            username: username.to_string(),
            inner,
        }
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.inner.lock().unwrap().updates.push(update);
    }

    /// How many updates wait for `getUpdates` to be confirmed (an offset past them).
    pub fn pending_updates(&self) -> usize {
        self.inner.lock().unwrap().updates.len()
    }

    /// Makes the next call of `method` answer 429 with `retry_after` seconds.
    pub fn rate_limit(&self, method: &str, retry_after: u64) {
        self.inner
            .lock()
            .unwrap()
            .rate_limits
            .push((method.to_lowercase(), retry_after));
    }

    /// Makes the next call of `method` fail with HTTP `status` and `ok: false`, as Telegram
    /// refuses a request (e.g. 400 "Bad Request: chat not found").
    pub fn fail(&self, method: &str, status: u16, description: &str) {
        self.inner.lock().unwrap().failures.push((
            method.to_lowercase(),
            status,
            description.to_string(),
        ));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The calls of `method` (any case) so far.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.is(method)).collect()
    }

    /// Waits until a `sendMessage` into `chat` arrives and returns when it did.
    pub async fn wait_for_send_to(&self, chat: i64, timeout: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = SENT.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.inner.lock().unwrap().first_send.get(&chat).copied() {
                return Some(at);
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

fn read_body(content_type: &str, bytes: &[u8]) -> (Value, Vec<Part>) {
    if multipart::boundary(content_type).is_some() {
        let parts = multipart::parse(content_type, bytes);
        let mut fields = Map::new();
        let mut files = Vec::new();
        for part in &parts {
            if part.filename.is_some() {
                continue;
            }
            let text = part.text();
            // `attach://name`: the file is the part called `name`.
            if let Some(attached) = text.strip_prefix("attach://") {
                let file = parts
                    .iter()
                    .find(|p| p.name == attached)
                    .unwrap_or_else(|| panic!("no part for {text}"));
                files.push(Part {
                    name: part.name.clone(),
                    ..file.clone()
                });
            }
            fields.insert(part.name.clone(), Value::String(text));
        }
        // A file sent directly under its field's name.
        for part in &parts {
            if part.filename.is_some() && !fields.contains_key(&part.name) {
                let referenced = fields
                    .values()
                    .any(|v| v.as_str() == Some(&format!("attach://{}", part.name)));
                if !referenced {
                    files.push(part.clone());
                }
            }
        }
        // Ids as numbers, as the JSON bodies have them.
        for key in ["chat_id", "message_thread_id"] {
            if let Some(id) = fields
                .get(key)
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<i64>().ok())
            {
                fields.insert(key.into(), json!(id));
            }
        }
        return (Value::Object(fields), files);
    }
    (read_plain(bytes), Vec::new())
}

fn read_plain(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return json!({});
    }
    if let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    // application/x-www-form-urlencoded: good enough for the plain fields tests look at.
    let text = String::from_utf8_lossy(bytes);
    let mut map = Map::new();
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(k.to_string(), Value::String(v.replace('+', " ")));
    }
    Value::Object(map)
}

async fn handle(
    State((inner, username)): State<(Arc<Mutex<Inner>>, String)>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (response, empty_poll) = answer(&inner, &username, &bot, &method, content_type, &body);
    if empty_poll {
        // A short "long poll" keeps tests quick without spinning.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    response
}

fn answer(
    inner: &Mutex<Inner>,
    username: &str,
    bot: &str,
    method: &str,
    content_type: &str,
    body: &[u8],
) -> (Response, bool) {
    let Some(token) = bot.strip_prefix("bot") else {
        return (
            (
                StatusCode::NOT_FOUND,
                Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})),
            )
                .into_response(),
            false,
        );
    };
    let (body, files) = read_body(content_type, body);
    let mut inner = inner.lock().unwrap();
    inner.calls.push(Call {
        token: token.to_string(),
        method: method.to_string(),
        body: body.clone(),
        files: files.clone(),
        at: Instant::now(),
    });
    if method.eq_ignore_ascii_case("sendMessage")
        && let Some(chat) = body["chat_id"].as_i64()
    {
        inner.first_send.entry(chat).or_insert_with(Instant::now);
        SENT.notify_waiters();
    }
    let lower = method.to_lowercase();
    if let Some(i) = inner.rate_limits.iter().position(|(m, _)| *m == lower) {
        let (_, secs) = inner.rate_limits.remove(i);
        let r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {secs}"),
                "parameters": {"retry_after": secs}
            })),
        )
            .into_response();
        return (r, false);
    }
    if let Some(i) = inner.failures.iter().position(|(m, _, _)| *m == lower) {
        let (_, status, description) = inner.failures.remove(i);
        let r = (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"ok": false, "error_code": status, "description": description})),
        )
            .into_response();
        return (r, false);
    }
    let result = match lower.as_str() {
        "getme" => json!({
            "id": 777_000_111, "is_bot": true, "first_name": "Conveyor", "username": username,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false
        }),
        "getupdates" => {
            let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
            // Confirmed updates are forgotten, as Telegram does.
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let pending = inner.updates.clone();
            Value::Array(pending)
        }
        "sendmessage" => {
            inner.next_message_id += 1;
            sent_message(inner.next_message_id, username, &body)
        }
        "sendphoto" | "senddocument" => {
            let field = if lower == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            let Some(file) = files.iter().find(|f| f.name == field) else {
                let r = (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"ok": false, "error_code": 400, "description": format!("Bad Request: there is no {field} in the request")})),
                )
                    .into_response();
                return (r, false);
            };
            inner.next_message_id += 1;
            sent_file(inner.next_message_id, username, &body, field, file)
        }
        "sendchataction" | "setwebhook" | "deletewebhook" | "answercallbackquery" => json!(true),
        _ => {
            let r = (
                StatusCode::NOT_FOUND,
                Json(json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"})),
            )
                .into_response();
            return (r, false);
        }
    };
    let empty_poll = result.as_array().is_some_and(Vec::is_empty);
    (
        Json(json!({"ok": true, "result": result})).into_response(),
        empty_poll,
    )
}

/// The Message Telegram answers `sendMessage` with: sent by the bot, in the chat of `body`.
fn sent_message(message_id: i64, username: &str, body: &Value) -> Value {
    let chat_id = body["chat_id"].as_i64().unwrap_or(0);
    let chat = if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": "Conveyor test group", "is_forum": body.get("message_thread_id").is_some()})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": "Hirrolot", "username": "hirrolot"})
    };
    let mut message = json!({
        "message_id": message_id,
        "date": 1_700_000_000,
        "chat": chat,
        "from": {"id": 777_000_111, "is_bot": true, "first_name": "Conveyor", "username": username},
        "text": body["text"],
    });
    if let Some(thread) = body.get("message_thread_id") {
        message["message_thread_id"] = thread.clone();
        message["is_topic_message"] = json!(true);
    }
    message
}

/// The Message Telegram answers `sendPhoto` / `sendDocument` with.
fn sent_file(message_id: i64, username: &str, body: &Value, field: &str, file: &Part) -> Value {
    let mut message = sent_message(message_id, username, body);
    let o = message.as_object_mut().unwrap();
    o.remove("text");
    let size = file.bytes.len();
    let unique = format!("u{message_id}");
    if field == "photo" {
        o.insert(
            "photo".into(),
            json!([
                {"file_id": format!("p{message_id}s"), "file_unique_id": format!("{unique}s"), "width": 90, "height": 60, "file_size": size / 4},
                {"file_id": format!("p{message_id}"), "file_unique_id": unique, "width": 900, "height": 600, "file_size": size}
            ]),
        );
    } else {
        o.insert(
            "document".into(),
            json!({
                "file_id": format!("d{message_id}"), "file_unique_id": unique,
                "file_name": file.filename, "mime_type": file.content_type, "file_size": size
            }),
        );
    }
    if let Some(caption) = body.get("caption") {
        o.insert("caption".into(), caption.clone());
    }
    message
}
