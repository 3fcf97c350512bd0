//! The terminal surface: `conveyor ask` (one question) and `conveyor chat` (a conversation).
//!
//! Both run in-process through the gateway by default. With `--server URL` they talk to a
//! running `conveyor serve` over its HTTP API instead, which is what to do while a server holds
//! the index.

use std::io::Write;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{MessageRequest, MessageResponse};
use crate::model::{Channel, Citation, ConversationKey, Inbound, UserRef};

/// Where questions go.
pub enum Target {
    /// In-process, through the gateway.
    Local(Box<App>),
    /// A running server's `POST /v1/messages`.
    Server {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        base: String,
        /// HTTP client.
        client: reqwest::Client,
    },
}

/// One answer, as printed by `ask --json`.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// The conversation.
    pub conversation_id: String,
    /// The answer text.
    pub text: String,
    /// Its sources.
    pub citations: Vec<Citation>,
    /// Which planner answered.
    pub planner: String,
    /// Id of the stored answer.
    pub message_id: String,
}

impl Target {
    /// A target for a running server at `base`.
    pub fn server(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(Error::BadInput(format!(
                "--server {base}: expected a URL like http://127.0.0.1:8080"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::internal("building the HTTP client", e))?;
        Ok(Self::Server { base, client })
    }

    /// Sends one question and waits for the answer.
    pub async fn ask(&self, conversation_id: &str, user: &str, text: &str) -> Result<Answer> {
        let key = uuid::Uuid::new_v4().to_string();
        match self {
            Self::Local(app) => {
                let out = app
                    .gateway
                    .handle(Inbound {
                        idempotency_key: key,
                        conversation: ConversationKey::new(Channel::CLI, conversation_id),
                        user: UserRef {
                            id: user.to_string(),
                            name: None,
                        },
                        text: text.to_string(),
                        attachments: Vec::new(),
                    })
                    .await?;
                Ok(Answer {
                    conversation_id: out.conversation.id,
                    text: out.text,
                    citations: out.citations,
                    planner: out.planner,
                    message_id: out.message_id,
                })
            }
            Self::Server { base, client } => {
                let url = format!("{base}/v1/messages");
                let resp = client
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&MessageRequest {
                        conversation_id: conversation_id.to_string(),
                        user: user.to_string(),
                        text: text.to_string(),
                    })
                    .send()
                    .await
                    .map_err(|e| {
                        Error::Upstream(format!(
                            "cannot reach conveyor at {base} ({e}); is `conveyor serve` running there?"
                        ))
                    })?;
                let status = resp.status();
                let body = resp
                    .text()
                    .await
                    .map_err(|e| Error::upstream(format!("reading the answer from {url}"), e))?;
                if !status.is_success() {
                    let message = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                        .unwrap_or(body);
                    return Err(if status.as_u16() == 429 {
                        Error::RateLimited {
                            retry_after: std::time::Duration::from_secs(1),
                            message,
                        }
                    } else if status.is_client_error() {
                        Error::BadInput(message)
                    } else {
                        Error::Upstream(format!("{url} answered {status}: {message}"))
                    });
                }
                let r: MessageResponse = serde_json::from_str(&body)
                    .map_err(|e| Error::upstream(format!("unexpected answer from {url}"), e))?;
                Ok(Answer {
                    conversation_id: r.conversation_id,
                    text: r.text,
                    citations: r.citations,
                    planner: r.planner,
                    message_id: r.message_id,
                })
            }
        }
    }
}

/// The local user's name, for the `user` of terminal messages.
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "terminal".into())
}

/// Interactive chat on stdin/stdout until `/quit`, end of input or Ctrl-C.
pub async fn chat(target: &Target, conversation_id: &str) -> Result<()> {
    let user = local_user();
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "conveyor chat — conversation {conversation_id}");
    let _ = writeln!(
        stdout,
        "Ask a question about your documents. /help for help, /quit to leave.\n"
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let _ = write!(stdout, "you> ");
        let _ = stdout.flush();
        let line = tokio::select! {
            line = lines.next_line() => line.map_err(|e| Error::internal("reading the terminal", e))?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else {
            let _ = writeln!(stdout);
            break;
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(text, "/quit" | "/exit" | "/q") {
            break;
        }
        match target.ask(conversation_id, &user, text).await {
            Ok(answer) => {
                let text = answer.text.replace('\n', "\n          ");
                let _ = writeln!(stdout, "\nconveyor> {text}\n");
            }
            Err(Error::RateLimited { message, .. }) => {
                let _ = writeln!(stdout, "\nconveyor> {message}\n");
            }
            Err(e @ (Error::BadInput(_) | Error::TooLarge(_))) => {
                let _ = writeln!(stdout, "\nconveyor> {e}\n");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
