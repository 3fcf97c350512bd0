//! A fake LLM provider: a real HTTP server on `127.0.0.1:0` that answers every POST with the
//! next reply of its script (the last one repeats) and records each request body, so tests
//! assert what conveyor sent as well as what it answered. The wire format of a reply is
//! chosen by the `Wire` the server was started with, and streaming by the request's own
//! `"stream": true`, so one script serves streamed and unary clients alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use serde_json::Value;

/// Which provider the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions (`POST …/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST /v1/messages`).
    Anthropic,
    /// Gemini generateContent (`POST …:generateContent`, `…:streamGenerateContent?alt=sse`).
    Gemini,
}

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// An answer, rendered in the fake's wire format (JSON or SSE as the request asks).
    Answer(Answer),
    /// Bytes sent as they are, with this content type and status 200.
    Raw {
        content_type: &'static str,
        body: String,
    },
    /// An answer repeating the text of the last user message ("You wrote: …"), in the
    /// fake's wire format: shows what the provider saw, and that the reply is restored.
    EchoUser,
    /// The reply after a pause (to trip time limits).
    Delayed(std::time::Duration, Box<Scripted>),
    /// A failure status with headers and body.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
}

/// What the model "says".
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Answer text.
    pub text: String,
    /// Tool calls: id, name, raw argument text (may be invalid JSON on purpose).
    pub calls: Vec<(String, String, String)>,
}

impl Scripted {
    /// A final answer.
    pub fn text(text: &str) -> Self {
        Self::Answer(Answer {
            text: text.into(),
            calls: Vec::new(),
        })
    }

    /// One tool call.
    pub fn call(id: &str, name: &str, args: &str) -> Self {
        Self::Answer(Answer {
            text: String::new(),
            calls: vec![(id.into(), name.into(), args.into())],
        })
    }

    /// A status with a body.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            body: r#"{"error":{"message":"scripted failure","type":"server_error"}}"#.into(),
        }
    }

    /// An SSE body replayed as is.
    pub fn sse(body: String) -> Self {
        Self::Raw {
            content_type: "text/event-stream",
            body,
        }
    }

    /// A JSON body replayed as is.
    pub fn json(body: String) -> Self {
        Self::Raw {
            content_type: "application/json",
            body,
        }
    }
}

struct State {
    wire: Wire,
    script: Mutex<VecDeque<Scripted>>,
    last: Mutex<Option<Scripted>>,
    requests: Mutex<Vec<Value>>,
    hits: AtomicUsize,
}

/// A running fake.
pub struct FakeLlm {
    /// The API root to configure as `llm.base_url`.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// Starts a fake answering with `script`.
    pub async fn start(wire: Wire, script: Vec<Scripted>) -> Self {
        let state = Arc::new(State {
            wire,
            script: Mutex::new(script.into()),
            last: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&state);
        let app = Router::new().fallback(move |uri: axum::http::Uri, body: Bytes| {
            let state = Arc::clone(&shared);
            async move {
                let (response, delay) = respond(&state, &uri, &body);
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = match wire {
            Wire::OpenAi => format!("http://{addr}/v1"),
            Wire::Anthropic | Wire::Gemini => format!("http://{addr}"),
        };
        Self { url, state, task }
    }

    /// The request bodies received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

/// An API root where nothing listens (connection refused).
pub async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}

/// The recorded fixtures, or `None` (after printing `skipped: …`) when they are absent.
pub fn fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/llm");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no LLM fixtures at {}", dir.display());
        None
    }
}

fn respond(
    state: &State,
    uri: &axum::http::Uri,
    body: &Bytes,
) -> (Response<Body>, Option<std::time::Duration>) {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // OpenAI and Anthropic ask for a stream in the body, Gemini in the path.
    let stream = request["stream"].as_bool().unwrap_or(false)
        || uri.path().contains("streamGenerateContent");
    let echo = format!("You wrote: {}", last_user_text(&request));
    state.requests.lock().unwrap().push(request);
    let next = {
        let mut script = state.script.lock().unwrap();
        let mut last = state.last.lock().unwrap();
        match script.pop_front() {
            Some(s) => {
                *last = Some(s.clone());
                s
            }
            None => last.clone().unwrap_or_else(|| Scripted::status(500)),
        }
    };
    let (next, delay) = match next {
        Scripted::Delayed(d, inner) => (*inner, Some(d)),
        other => (other, None),
    };
    let next = match next {
        Scripted::EchoUser => Scripted::text(&echo),
        other => other,
    };
    let response = match next {
        Scripted::EchoUser | Scripted::Delayed(..) => reply(
            500,
            "application/json",
            &[],
            r#"{"error":{"message":"nested scripted reply"}}"#.into(),
        ),
        Scripted::Raw { content_type, body } => reply(200, content_type, &[], body),
        Scripted::Status {
            status,
            headers,
            body,
        } => reply(status, "application/json", &headers, body),
        Scripted::Answer(a) => match (state.wire, stream) {
            (Wire::OpenAi, false) => reply(
                200,
                "application/json",
                &[],
                super::openai::completion(&a).to_string(),
            ),
            (Wire::OpenAi, true) => reply(200, "text/event-stream", &[], super::openai::sse(&a)),
            (Wire::Anthropic, false) => reply(
                200,
                "application/json",
                &[],
                super::anthropic::message(&a).to_string(),
            ),
            (Wire::Anthropic, true) => {
                reply(200, "text/event-stream", &[], super::anthropic::sse(&a))
            }
            (Wire::Gemini, false) => reply(
                200,
                "application/json",
                &[],
                super::gemini::generate(&a).to_string(),
            ),
            (Wire::Gemini, true) => reply(200, "text/event-stream", &[], super::gemini::sse(&a)),
        },
    };
    (response, delay)
}

/// The text of the last user message of an OpenAI, Anthropic or Gemini request.
fn last_user_text(request: &Value) -> String {
    let Some(messages) = request["messages"]
        .as_array()
        .or_else(|| request["contents"].as_array())
    else {
        return String::new();
    };
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        _ if last["parts"].is_array() => last["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn reply(
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::from(body)).unwrap()
}
