//! A fake Discord REST API on `127.0.0.1`: `POST /webhooks/{application_id}/{token}` (an
//! interaction follow-up) is recorded with its body and answered with a message object whose
//! `id` is fresh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};

/// One recorded follow-up.
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// The application id from the path.
    pub application_id: String,
    /// The interaction token from the path.
    pub token: String,
    /// The JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<FollowUp>,
    next_id: u64,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeDiscord {
    /// Base URL to put in `channels.discord.api_base_url`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeDiscord {
    /// Starts the fake on an ephemeral port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            next_id: 1_100_000_000_000_000_000,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/webhooks/{app}/{token}", post(follow_up))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            inner,
        }
    }

    /// Every follow-up so far.
    pub fn follow_ups(&self) -> Vec<FollowUp> {
        self.inner.lock().unwrap().calls.clone()
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
}

async fn follow_up(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((application_id, token)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let mut inner = inner.lock().unwrap();
    inner.next_id += 1;
    let id = inner.next_id.to_string();
    let content = body.get("content").cloned().unwrap_or(Value::Null);
    inner.calls.push(FollowUp {
        application_id,
        token,
        body,
    });
    Json(json!({"id": id, "type": 0, "content": content, "channel_id": "645027906669510667"}))
}
