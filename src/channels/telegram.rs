//! Telegram through the Bot API: `[channels.telegram]`, updates (webhook or long polling), the
//! manners in groups, Markdown → Telegram HTML and the sends (`sendMessage`, `sendChatAction`).
//!
//! This is the only file that knows Telegram's JSON. Updates are read leniently with small
//! serde structs of our own: unknown update kinds and unknown fields are ignored, so a Bot API
//! release with new fields never turns into refused updates. Every reply part is recorded in the
//! egress ledger before it is sent and confirmed with Telegram's `message_id` after.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::channels::slack::split_message;
use crate::channels::verify::{self, VerifyError};
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::gateway::egress::record_once;
use crate::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::store::Store;

/// Longest Telegram message text; longer replies are split at paragraph boundaries.
pub const MAX_MESSAGE_CHARS: usize = 4_096;

/// How often one message is tried when Telegram answers 429.
const MAX_SEND_TRIES: u32 = 4;

/// Longest `retry_after` we honour before giving up on a message (it stays pending).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `getUpdates` long-poll timeout, in seconds.
const POLL_TIMEOUT_SECS: u64 = 25;

/// Longest pause between failed `getUpdates` calls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn default_api_url() -> String {
    "https://api.telegram.org".into()
}

/// How updates reach conveyor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// conveyor calls `getUpdates` (no public URL needed).
    #[default]
    Polling,
    /// Telegram posts updates to `POST /telegram/webhook` (set with `setWebhook`).
    Webhook,
}

/// `[channels.telegram]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Name of the environment variable holding the bot token from BotFather.
    pub token_env: String,
    /// `polling` (default) or `webhook`.
    #[serde(default)]
    pub mode: TelegramMode,
    /// Name of the environment variable holding the webhook's `secret_token`; required in
    /// webhook mode.
    #[serde(default)]
    pub secret_token_env: Option<String>,
    /// The Bot API base URL; only tests change it.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The bot's username (without `@`); asked with `getMe` when absent.
    #[serde(default)]
    pub bot_username: Option<String>,
}

impl TelegramConfig {
    /// Reports every problem with its path.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.token_env.trim().is_empty() {
            problems.push("channels.telegram.token_env: name the environment variable that holds the bot token, e.g. token_env = \"TELEGRAM_BOT_TOKEN\"".into());
        }
        if self.mode == TelegramMode::Webhook
            && self
                .secret_token_env
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
        {
            problems.push("channels.telegram.secret_token_env: webhook mode needs the secret token given to setWebhook; name its environment variable, e.g. secret_token_env = \"TELEGRAM_SECRET_TOKEN\"".into());
        }
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            problems.push(format!(
                "channels.telegram.api_url: `{}` is not an http(s) URL; leave it out to use https://api.telegram.org",
                self.api_url
            ));
        }
    }
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    /// The update's id: the idempotency key.
    pub update_id: i64,
    /// The chat.
    pub chat_id: i64,
    /// The forum topic, when the message was in one.
    pub thread_id: Option<i64>,
    /// The user's message, answered with `reply_to_message_id`.
    pub message_id: i64,
}

/// A verified update, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An update to acknowledge and otherwise ignore, with why.
    Ignored(&'static str),
    /// A message to answer.
    Message(Box<(Inbound, ReplyTarget)>),
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    #[serde(default)]
    message_thread_id: Option<i64>,
    #[serde(default)]
    is_topic_message: Option<bool>,
    #[serde(default)]
    from: Option<User>,
    chat: Chat,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    entities: Vec<Entity>,
    #[serde(default)]
    reply_to_message: Option<Box<Message>>,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    offset: usize,
    length: usize,
}

/// Text of `entity` (offsets count UTF-16 code units).
fn entity_text(text: &str, e: &Entity) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = (e.offset + e.length).min(units.len());
    let start = e.offset.min(end);
    String::from_utf16_lossy(&units[start..end])
}

/// Reads an update. `bot_username` is our bot's username (without `@`).
pub fn parse(body: &[u8], bot_username: &str) -> Result<Incoming> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadInput(format!("the Telegram update is not valid JSON ({e})")))?;
    match serde_json::from_value::<Update>(value) {
        Ok(update) => Ok(read_update(update, bot_username)),
        // A shape we do not know (a future Bot API): acknowledged, so Telegram does not retry
        // it forever.
        Err(e) => {
            tracing::info!(error = %e, "an update conveyor cannot read; ignored");
            Ok(Incoming::Ignored("an update conveyor cannot read"))
        }
    }
}

fn read_update(update: Update, bot_username: &str) -> Incoming {
    let Some(message) = update.message else {
        return Incoming::Ignored("an update kind conveyor does not answer");
    };
    let Some(from) = &message.from else {
        return Incoming::Ignored("a message without a sender");
    };
    if from.is_bot {
        return Incoming::Ignored("a message from a bot");
    }
    let Some(raw) = message.text.as_deref() else {
        return Incoming::Ignored("a message without text");
    };
    let mention = format!("@{bot_username}");
    let private = message.chat.kind.as_deref().is_none_or(|k| k == "private");
    let text = if private {
        strip_command(raw, bot_username).unwrap_or_else(|| raw.to_string())
    } else if let Some(rest) = strip_command(raw, bot_username) {
        rest
    } else {
        let mentioned = !bot_username.is_empty()
            && (message.entities.iter().any(|e| {
                e.kind == "mention" && entity_text(raw, e).eq_ignore_ascii_case(&mention)
            }) || contains_ci(raw, &mention));
        let replies_to_bot = message.reply_to_message.as_ref().is_some_and(|r| {
            r.from.as_ref().is_some_and(|u| {
                u.is_bot
                    && u.username
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(bot_username))
            })
        });
        if !(mentioned || replies_to_bot) {
            return Incoming::Ignored("a group message not addressed to the bot");
        }
        strip_mention(raw, &mention)
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Incoming::Ignored("a message without a question");
    }
    // Only forum topics carry a thread to answer in; a plain reply chain's thread id is not one.
    let thread_id = if message.is_topic_message == Some(true) {
        message.message_thread_id
    } else {
        None
    };
    let chat_id = message.chat.id;
    let inbound = Inbound {
        idempotency_key: update.update_id.to_string(),
        conversation: ConversationKey::new(
            Channel::Telegram,
            format!("{chat_id}:{}", thread_id.unwrap_or(0)),
        ),
        user: UserRef {
            id: from.id.to_string(),
            name: from.username.clone().or_else(|| from.first_name.clone()),
        },
        text,
        attachments: Vec::new(),
    };
    Incoming::Message(Box::new((
        inbound,
        ReplyTarget {
            update_id: update.update_id,
            chat_id,
            thread_id,
            message_id: message.message_id,
        },
    )))
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// `/ask …` or `/ask@bot …` (for this bot) → the rest; anything else → `None`.
fn strip_command(text: &str, bot_username: &str) -> Option<String> {
    let trimmed = text.trim_start();
    let (command, rest) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let (name, target) = command.split_once('@').unwrap_or((command, ""));
    if !name.eq_ignore_ascii_case("/ask") {
        return None;
    }
    if !target.is_empty() && !target.eq_ignore_ascii_case(bot_username) {
        return None;
    }
    Some(rest.to_string())
}

/// Removes every `@bot` mention (case-insensitively) and tidies whitespace.
fn strip_mention(text: &str, mention: &str) -> String {
    let lower = text.to_lowercase();
    let needle = mention.to_lowercase();
    // Lowercasing can change byte lengths for some scripts; only strip when it did not.
    if lower.len() != text.len() || needle.is_empty() {
        return text.replace(mention, " ");
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(pos) = lower[i..].find(&needle) {
        out.push_str(&text[i..i + pos]);
        out.push(' ');
        i += pos + needle.len();
    }
    out.push_str(&text[i..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for Telegram HTML (`&`, `<`, `>`, and `"` for attributes).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Markdown → Telegram HTML: everything escaped; `**bold**` → `<b>`, `` `code` `` → `<code>`,
/// `[text](url)` → `<a href>`, headings → bold lines. Tags never span lines, so splitting the
/// result at line breaks keeps it well-formed.
pub fn to_html(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let hashes = trimmed.chars().take_while(|c| *c == '#').count();
            if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
                format!("<b>{}</b>", escape(trimmed[hashes..].trim()))
            } else {
                inline(line)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
            && end > 0
        {
            out.push_str(&format!("<b>{}</b>", escape(&after[..end])));
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
            && end > 0
        {
            out.push_str(&format!("<code>{}</code>", escape(&after[..end])));
            rest = &after[end + 1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('[')
            && let Some(close) = after.find(']')
            && let Some(url_part) = after[close + 1..].strip_prefix('(')
            && let Some(paren) = url_part.find(')')
        {
            let text = &after[..close];
            let url = &url_part[..paren];
            if url.starts_with("http://") || url.starts_with("https://") {
                out.push_str(&format!("<a href=\"{}\">{}</a>", escape(url), escape(text)));
                rest = &url_part[paren + 1..];
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The reply as Telegram HTML: the answer, then its numbered sources.
pub fn render(out: &Outbound) -> String {
    let mut text = to_html(&out.text);
    if !out.citations.is_empty() {
        text.push_str("\n\n<b>Sources</b>");
        for c in &out.citations {
            let title = escape(&c.title);
            if c.source.starts_with("http://") || c.source.starts_with("https://") {
                text.push_str(&format!(
                    "\n[{}] <a href=\"{}\">{title}</a>",
                    c.n,
                    escape(&c.source)
                ));
            } else {
                text.push_str(&format!("\n[{}] {title} ({})", c.n, escape(&c.source)));
            }
        }
    }
    text
}

/// The running Telegram channel: token, webhook secret, the Bot API client and send limits.
pub struct Telegram {
    token: Secret,
    secret_token: Option<Secret>,
    mode: TelegramMode,
    api_url: String,
    configured_username: Option<String>,
    username: OnceCell<String>,
    http: reqwest::Client,
    per_chat: DefaultKeyedRateLimiter<i64>,
    overall: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Telegram {
    /// Reads the secrets named by `config` through `env`.
    pub fn build(config: &TelegramConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let token = Secret::from_lookup(&config.token_env, "channels.telegram.token_env", env)?;
        let secret_token = match (&config.mode, &config.secret_token_env) {
            (_, Some(name)) => Some(Secret::from_lookup(
                name,
                "channels.telegram.secret_token_env",
                env,
            )?),
            (TelegramMode::Webhook, None) => {
                return Err(Error::Config(
                    "channels.telegram.secret_token_env: webhook mode needs the secret token given to setWebhook".into(),
                ));
            }
            (TelegramMode::Polling, None) => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(POLL_TIMEOUT_SECS + 15))
            .build()
            .map_err(|e| Error::internal("building the Telegram HTTP client", e))?;
        // Telegram's limits: about one message per second in a chat, 30 per second overall.
        let per_chat = RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN));
        let overall = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN),
        ));
        Ok(Self {
            token,
            secret_token,
            mode: config.mode,
            api_url: config.api_url.trim_end_matches('/').to_string(),
            configured_username: config
                .bot_username
                .as_deref()
                .map(|u| u.trim_start_matches('@').to_string()),
            username: OnceCell::new(),
            http,
            per_chat,
            overall,
        })
    }

    /// How updates arrive.
    pub fn mode(&self) -> TelegramMode {
        self.mode
    }

    /// Checks `X-Telegram-Bot-Api-Secret-Token`.
    pub fn verify(&self, header: Option<&str>) -> std::result::Result<(), VerifyError> {
        match &self.secret_token {
            Some(secret) => verify::telegram_secret_token(secret.expose(), header),
            // Build refuses webhook mode without a secret; a polling bot has no webhook.
            None => Err(VerifyError::BadSecret(
                "no secret_token_env is configured for the webhook",
            )),
        }
    }

    /// The bot's username: configured, else asked once with `getMe`.
    pub async fn username(&self) -> Result<String> {
        if let Some(name) = &self.configured_username {
            return Ok(name.clone());
        }
        self.username
            .get_or_try_init(|| async {
                let me = self.call("getMe", &json!({})).await?;
                me.get("username")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| Error::Upstream("Telegram getMe returned no username".into()))
            })
            .await
            .cloned()
    }

    /// Reads an update body.
    pub async fn parse(&self, body: &[u8]) -> Result<Incoming> {
        let username = self.username().await?;
        parse(body, &username)
    }

    /// Answers one message: typing while working, the answer as a reply to the user's message.
    pub async fn respond(
        &self,
        gateway: &Gateway,
        store: &Store,
        inbound: Inbound,
        to: ReplyTarget,
    ) {
        let conversation = inbound.conversation.as_storage_key();
        let span = tracing::info_span!(
            "telegram_update",
            channel = "telegram",
            conversation = %conversation
        );
        tracing::Instrument::instrument(self.respond_inner(gateway, store, inbound, to), span)
            .await;
    }

    async fn respond_inner(
        &self,
        gateway: &Gateway,
        store: &Store,
        inbound: Inbound,
        to: ReplyTarget,
    ) {
        let conversation = inbound.conversation.as_storage_key();
        let stop_typing = CancellationToken::new();
        let typing = self.typing_until(&to, stop_typing.clone());
        let handled = async {
            let result = gateway.handle(inbound).await;
            stop_typing.cancel();
            result
        };
        let ((), result) = tokio::join!(typing, handled);
        let answer = format!("telegram:{}", to.update_id);
        // A failure notice has its own dedupe key: the claim was released, so a later delivery
        // of the same update may still produce (and send) the real answer.
        let notice = format!("telegram:{}:notice", to.update_id);
        let (text, key) = match result {
            Ok(out) => (render(&out), answer),
            Err(Error::RateLimited { message, .. }) => (escape(&message), notice),
            Err(e) => {
                tracing::warn!(error = %e, "answering a Telegram message failed");
                (
                    "Sorry, I could not answer that right now; please try again in a minute."
                        .to_string(),
                    notice,
                )
            }
        };
        if let Err(e) = self
            .deliver_keyed(store, &conversation, &to, &text, &key)
            .await
        {
            tracing::warn!(error = %e, "sending a Telegram reply failed");
        }
    }

    /// Sends `typing` now and every 4 s (Telegram shows it for 5 s) until `stop` fires.
    async fn typing_until(&self, to: &ReplyTarget, stop: CancellationToken) {
        let mut body = json!({"chat_id": to.chat_id, "action": "typing"});
        if let Some(thread) = to.thread_id {
            body["message_thread_id"] = json!(thread);
        }
        loop {
            if let Err(e) = self.call("sendChatAction", &body).await {
                tracing::debug!(error = %e, "sendChatAction failed");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(4)) => {}
            }
        }
    }

    /// Sends `html` (Telegram HTML, e.g. from [`to_html`]) as the answer to `to`: dedupe keys
    /// `telegram:{update_id}:{part}`, so delivering the same answer again sends nothing.
    pub async fn deliver(
        &self,
        store: &Store,
        conversation: &str,
        to: &ReplyTarget,
        html: &str,
    ) -> Result<()> {
        let key = format!("telegram:{}", to.update_id);
        self.deliver_keyed(store, conversation, to, html, &key)
            .await
    }

    /// Sends `html` as replies to the user's message, split into messages of at most
    /// [`MAX_MESSAGE_CHARS`]; each part is recorded in the egress ledger (dedupe key
    /// `{key}:{part}`) before it is sent and confirmed with its `message_id` after.
    async fn deliver_keyed(
        &self,
        store: &Store,
        conversation: &str,
        to: &ReplyTarget,
        html: &str,
        key: &str,
    ) -> Result<()> {
        for (i, part) in split_message(html, MAX_MESSAGE_CHARS).iter().enumerate() {
            let dedupe_key = format!("{key}:{}", i + 1);
            let mut payload = json!({
                "chat_id": to.chat_id,
                "text": part,
                "parse_mode": "HTML",
                "reply_to_message_id": to.message_id,
                "allow_sending_without_reply": true,
            });
            if let Some(thread) = to.thread_id {
                payload["message_thread_id"] = json!(thread);
            }
            let Some(id) = record_once(
                store,
                Channel::Telegram,
                conversation,
                &dedupe_key,
                &payload,
            )
            .await?
            else {
                continue;
            };
            self.send_recorded(store, &id, to.chat_id, &payload).await?;
        }
        Ok(())
    }

    async fn send_recorded(
        &self,
        store: &Store,
        id: &str,
        chat_id: i64,
        payload: &Value,
    ) -> Result<()> {
        for _ in 0..MAX_SEND_TRIES {
            // Wait for a free slot rather than drop the message.
            self.per_chat.until_key_ready(&chat_id).await;
            self.overall.until_ready().await;
            store.egress_attempt(id).await?;
            match self.call("sendMessage", payload).await {
                Ok(message) => {
                    let remote = message
                        .get("message_id")
                        .and_then(Value::as_i64)
                        .map(|m| m.to_string());
                    return store.egress_confirm(id, remote.as_deref()).await;
                }
                Err(Error::RateLimited { retry_after, .. }) if retry_after <= MAX_RETRY_AFTER => {
                    tokio::time::sleep(retry_after).await;
                }
                // Left pending: the attempt is counted and the row can be sent again.
                Err(e) => return Err(e),
            }
        }
        Err(Error::Upstream(format!(
            "Telegram kept rate-limiting sendMessage after {MAX_SEND_TRIES} tries; the reply stays pending"
        )))
    }

    /// One Bot API call; the `result` on success.
    async fn call(&self, method: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!(
                "{}/bot{}/{method}",
                self.api_url,
                self.token.expose()
            ))
            .json(body)
            .send()
            .await
            // The URL holds the token: keep it out of the error.
            .map_err(|e| {
                Error::Upstream(format!("Telegram Bot API {method}: {}", e.without_url()))
            })?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        let retry_after = answer
            .pointer("/parameters/retry_after")
            .and_then(Value::as_u64);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || retry_after.is_some() {
            return Err(Error::RateLimited {
                retry_after: Duration::from_secs(retry_after.unwrap_or(1)),
                message: format!("Telegram rate-limited {method}"),
            });
        }
        let description = answer
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("no description given");
        Err(Error::Upstream(format!(
            "Telegram refused {method} (HTTP {status}: {description})"
        )))
    }

    /// Long polling until `shutdown` fires: `getUpdates` with the next offset; each update is
    /// answered (claimed and recorded in the ingress ledger by the gateway) before the offset
    /// moves past it, so an update is never lost to a crash. Errors back off exponentially.
    pub async fn run_polling(
        self: Arc<Self>,
        gateway: Arc<Gateway>,
        store: Store,
        shutdown: CancellationToken,
    ) {
        let mut offset: Option<i64> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut body = json!({"timeout": POLL_TIMEOUT_SECS, "allowed_updates": ["message"]});
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            let updates = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.call("getUpdates", &body) => r,
            };
            let updates = match updates {
                Ok(Value::Array(updates)) => {
                    backoff = Duration::from_secs(1);
                    updates
                }
                Ok(_) => Vec::new(),
                Err(e) => {
                    let pause = match &e {
                        Error::RateLimited { retry_after, .. } => *retry_after,
                        _ => backoff,
                    };
                    tracing::warn!(error = %e, ?pause, "Telegram getUpdates failed; retrying");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            for raw in updates {
                let Some(update_id) = raw.get("update_id").and_then(Value::as_i64) else {
                    continue;
                };
                match serde_json::from_value::<Update>(raw) {
                    Ok(update) => self.poll_one(&gateway, &store, update).await,
                    Err(e) => tracing::info!(error = %e, update_id, "skipped an unreadable update"),
                }
                offset = Some(update_id + 1);
            }
        }
    }

    async fn poll_one(&self, gateway: &Gateway, store: &Store, update: Update) {
        let username = match self.username().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot learn the bot's username");
                String::new()
            }
        };
        match read_update(update, &username) {
            Incoming::Ignored(reason) => tracing::debug!(reason, "ignored a Telegram update"),
            Incoming::Message(m) => {
                let (inbound, to) = *m;
                self.respond(gateway, store, inbound, to).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn html_conversion_escapes() {
        assert_eq!(to_html("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(to_html("**bold** <i>"), "<b>bold</b> &lt;i&gt;");
        assert_eq!(to_html("run `a<b`"), "run <code>a&lt;b</code>");
        assert_eq!(
            to_html("see [docs & more](https://x.io/?a=1&b=\"2\") [1]"),
            "see <a href=\"https://x.io/?a=1&amp;b=&quot;2&quot;\">docs &amp; more</a> [1]"
        );
        assert_eq!(
            to_html("## Title <x>\nbody"),
            "<b>Title &lt;x&gt;</b>\nbody"
        );
        assert_eq!(to_html("[x](javascript:alert)"), "[x](javascript:alert)");
    }

    #[test]
    fn long_answers_split_at_paragraphs() {
        let para = "y".repeat(3_000);
        let text = [para.as_str(); 3].join("\n\n");
        let parts = split_message(&text, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        let small = ["a".repeat(2_000), "b".repeat(2_000), "c".repeat(2_000)].join("\n\n");
        let parts = split_message(&small, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], "c".repeat(2_000));
    }

    #[test]
    fn commands_and_mentions() {
        assert_eq!(strip_command("/ask what?", "bot").as_deref(), Some("what?"));
        assert_eq!(
            strip_command("/ask@Bot what?", "bot").as_deref(),
            Some("what?")
        );
        assert_eq!(strip_command("/ask@other what?", "bot"), None);
        assert_eq!(strip_command("/start", "bot"), None);
        assert_eq!(strip_mention("@Bot hi there", "@bot"), "hi there");
    }

    fn group(text: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"update_id":7,"message":{{"message_id":3,"date":1,"chat":{{"id":-100,"type":"supergroup"}},
            "from":{{"id":5,"is_bot":false,"first_name":"A"}},"text":{}{extra}}}}}"#,
            serde_json::to_string(text).unwrap()
        )
        .into_bytes()
    }

    #[test]
    fn group_manners() {
        assert!(matches!(
            parse(&group("chatter", ""), "conv_bot").unwrap(),
            Incoming::Ignored(_)
        ));
        let Incoming::Message(m) = parse(&group("@conv_bot what is x?", ""), "conv_bot").unwrap()
        else {
            panic!("a mention was ignored")
        };
        assert_eq!(m.0.text, "what is x?");
        assert_eq!(m.0.conversation.id, "-100:0");
        let reply = r#","reply_to_message":{"message_id":2,"date":1,"chat":{"id":-100,"type":"supergroup"},"from":{"id":9,"is_bot":true,"first_name":"B","username":"conv_bot"},"text":"earlier"}"#;
        assert!(matches!(
            parse(&group("and y?", reply), "conv_bot").unwrap(),
            Incoming::Message(_)
        ));
        assert!(matches!(
            parse(&group("/ask@conv_bot why", ""), "conv_bot").unwrap(),
            Incoming::Message(_)
        ));
    }
}
