//! A fake Discord gateway (websocket, `ws://127.0.0.1:PORT`) built from the payloads recorded
//! from Discord's docs in `../shared/fixtures/discord/gateway`:
//!
//! - on connect it sends HELLO (op 10);
//! - IDENTIFY (op 2) is recorded (token, intents) and answered with a READY dispatch (session id,
//!   `resume_gateway_url`, the bot user), or, after [`FakeGateway::refuse_identify`], with a
//!   4004 close (authentication failed);
//! - HEARTBEAT (op 1) is answered with HEARTBEAT ACK (op 11);
//! - RESUME (op 6) is recorded and answered by replaying every `MESSAGE_CREATE` dispatched so far
//!   (as if the client had not seen them), then RESUMED;
//! - tests push dispatches with [`FakeGateway::dispatch`] and ask for a RECONNECT (op 7) with
//!   [`FakeGateway::reconnect`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The fixtures folder, when it is there.
pub fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/discord/gateway");
    dir.join("gateway__example_hello_event.json")
        .exists()
        .then_some(dir)
}

fn load(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

struct Payloads {
    hello: Value,
    event: Value,
    heartbeat_ack: Value,
    reconnect: Value,
}

#[derive(Default)]
struct Inner {
    identifies: Vec<Value>,
    resumes: Vec<Value>,
    connections: usize,
    refuse_identify: bool,
    current: Option<UnboundedSender<Command>>,
    seq: u64,
    messages: Vec<Value>,
}

enum Command {
    Send(Value),
    Reconnect,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeGateway {
    /// The `ws://` URL to hand out from `GET /gateway`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    payloads: Arc<Payloads>,
}

const SESSION_ID: &str = "fake-session-0001";

impl FakeGateway {
    /// Starts the fake for the bot `user`, reading the payloads in `fixtures`.
    pub async fn start(fixtures: &Path, user: Value) -> Self {
        let payloads = Arc::new(Payloads {
            hello: load(fixtures, "gateway__example_hello_event.json"),
            event: load(fixtures, "gateway__example_gateway_event.json"),
            heartbeat_ack: load(fixtures, "gateway__example_heartbeat_ack.json"),
            reconnect: load(fixtures, "gateway-events__example_gateway_reconnect.json"),
        });
        assert_eq!(payloads.hello["op"], 10);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let fake = Self {
            url: url.clone(),
            inner: Arc::new(Mutex::new(Inner::default())),
            payloads,
        };
        let accepting = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = accepting.clone();
                let user = user.clone();
                tokio::spawn(async move { conn.serve(stream, user).await });
            }
        });
        fake
    }

    /// An op-0 dispatch in the recorded envelope, with the next sequence number.
    fn envelope(&self, t: &str, d: Value) -> Value {
        let mut inner = self.inner.lock().unwrap();
        inner.seq += 1;
        let mut event = self.payloads.event.clone();
        event["t"] = json!(t);
        event["s"] = json!(inner.seq);
        event["d"] = d;
        event
    }

    /// Sends a dispatch to the connected client; `MESSAGE_CREATE`s are kept for a resume.
    pub fn dispatch(&self, t: &str, d: Value) {
        let event = self.envelope(t, d.clone());
        let mut inner = self.inner.lock().unwrap();
        if t == "MESSAGE_CREATE" {
            inner.messages.push(d);
        }
        let current = inner.current.as_ref().expect("no identified connection");
        current.send(Command::Send(event)).unwrap();
    }

    /// Asks the client to reconnect (op 7) and closes the connection.
    pub fn reconnect(&self) {
        let inner = self.inner.lock().unwrap();
        let current = inner.current.as_ref().expect("no identified connection");
        current.send(Command::Reconnect).unwrap();
    }

    /// Closes the connection with 4004 (authentication failed) after each IDENTIFY from now on.
    pub fn refuse_identify(&self) {
        self.inner.lock().unwrap().refuse_identify = true;
    }

    /// The IDENTIFY payloads received.
    pub fn identifies(&self) -> Vec<Value> {
        self.inner.lock().unwrap().identifies.clone()
    }

    /// The RESUME payloads received.
    pub fn resumes(&self) -> Vec<Value> {
        self.inner.lock().unwrap().resumes.clone()
    }

    /// Waits up to `timeout` until the client identified (`n` = 1) or resumed.
    pub async fn wait_until(&self, what: impl Fn(&Self) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if what(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn serve(&self, stream: tokio::net::TcpStream, user: Value) {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        self.inner.lock().unwrap().connections += 1;
        let (tx, mut rx) = unbounded_channel::<Command>();
        let send = |v: &Value| Message::Text(v.to_string());
        if ws.send(send(&self.payloads.hello)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        _ => return,
                    };
                    let Ok(payload) = serde_json::from_str::<Value>(&text) else { return };
                    let op = payload["op"].as_u64();
                    let replies = match op {
                        Some(1) => vec![self.payloads.heartbeat_ack.clone()],
                        Some(2) => {
                            let refuse = {
                                let mut inner = self.inner.lock().unwrap();
                                inner.identifies.push(payload["d"].clone());
                                inner.refuse_identify
                            };
                            if refuse {
                                let frame = CloseFrame {
                                    code: CloseCode::from(4004),
                                    reason: "Authentication failed.".into(),
                                };
                                let _ = ws.close(Some(frame)).await;
                                return;
                            }
                            vec![self.envelope("READY", json!({
                                "v": 10,
                                "user": user,
                                "guilds": [],
                                "session_id": SESSION_ID,
                                "resume_gateway_url": self.url,
                                "shard": [0, 1],
                                "application": {"id": user["id"], "flags": 0}
                            }))]
                        }
                        Some(6) => {
                            let replay = {
                                let mut inner = self.inner.lock().unwrap();
                                inner.resumes.push(payload["d"].clone());
                                inner.messages.clone()
                            };
                            let mut events: Vec<Value> = replay
                                .into_iter()
                                .map(|m| self.envelope("MESSAGE_CREATE", m))
                                .collect();
                            events.push(self.envelope("RESUMED", json!({})));
                            events
                        }
                        _ => Vec::new(),
                    };
                    for reply in &replies {
                        if ws.send(send(reply)).await.is_err() {
                            return;
                        }
                    }
                    if matches!(op, Some(2 | 6)) {
                        self.inner.lock().unwrap().current = Some(tx.clone());
                    }
                }
                command = rx.recv() => match command {
                    Some(Command::Send(event)) => {
                        if ws.send(send(&event)).await.is_err() {
                            return;
                        }
                    }
                    Some(Command::Reconnect) => {
                        let _ = ws.send(send(&self.payloads.reconnect)).await;
                        let _ = ws.close(None).await;
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}
