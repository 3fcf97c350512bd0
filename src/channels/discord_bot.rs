//! The Discord gateway bot (`[channels.discord]` with `token_env`): serenity keeps the gateway
//! websocket (identify, heartbeats, resume, reconnect); this file turns a `MESSAGE_CREATE` into
//! an [`Inbound`] and sends the answer back with serenity's REST client.
//!
//! The bot answers a message that mentions it (the mention is stripped) and every direct
//! message; messages of bots, webhooks and itself, system messages and empty text are ignored.
//! The answer goes to the same channel (a thread is a channel in Discord) as a reply to the
//! message, with a typing indicator refreshed while the planner works, split at 2000 characters.
//! A reply's files follow as messages of their own (replies to the same message), each handed
//! to serenity's `send_message` as a `CreateAttachment` (serenity uploads it as `files[0]` with
//! the body as `payload_json`; the body's `attachments` carries the name and alt text, see
//! [`crate::channels::discord::attachment`]).
//!
//! Delivery is at most once per part: every message goes through `Gateway::handle` with the
//! idempotency key `msg:{message_id}`, so a `MESSAGE_CREATE` replayed after a resume gets the
//! recorded answer instead of a second planner run, and every part is recorded in the egress
//! ledger (dedupe key `discord:msg:{message_id}:{part}`) before it is sent, so a replay sends
//! nothing. Each part carries a `nonce` derived from its dedupe key with `enforce_nonce`, so
//! Discord itself drops a resend of the same part within its nonce window.
//!
//! Rate limits: a per-channel governor (about 5 messages per 5 s, Discord's channel bucket)
//! paces long split answers. Against the real API serenity's own ratelimiter also waits out
//! 429s (it retries, nothing is dropped). When `api_base_url` points elsewhere (tests, an HTTP
//! proxy), serenity 0.12 sends through its `proxy` only with its ratelimiter off
//! (`Ratelimiter::perform` ignores the proxy), so then a 429 is retried here with backoff.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use serenity::all::{
    ChannelId, ClientBuilder, Context, CreateAttachment, EventHandler, GatewayIntents, Http,
    HttpBuilder, HttpError, Message, MessageType, Ready, UserId,
};
use serenity::async_trait;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::channels::chat::{
    self, ChatContext, ChatPlatform, Limits, Markup, OutFile, Part, SendPolicy,
};
use crate::channels::discord::{MAX_MESSAGE_CHARS, Recorded, fill_body, render};
use crate::error::{Error, Result};
use crate::gateway::access::Subject;
use crate::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::values::Secret;

/// Where serenity's HTTP client goes by default; any other base URL is used as its proxy.
pub const DISCORD_API_BASE_URL: &str = "https://discord.com/api/v10";

/// How often one message is tried when Discord answers 429 (proxy mode only; serenity's
/// ratelimiter retries by itself against the real API).
const MAX_SEND_TRIES: u32 = 4;

/// Longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Longest wait for one REST answer (serenity's client sets none).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest wait for a message to be sent, including serenity's own 429 waits.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// A gateway session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(300);

/// Discord shows "typing…" for about 10 s; it is refreshed before it fades.
const TYPING_REFRESH: Duration = Duration::from_secs(8);

/// The gateway events the bot needs: guild and direct messages, with their text.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The proxy base for serenity (`https://host` without `/api/v10`), or `None` for the real API.
pub fn proxy_base(api_base_url: &str) -> std::result::Result<Option<String>, String> {
    let base = api_base_url.trim_end_matches('/');
    if base == DISCORD_API_BASE_URL {
        return Ok(None);
    }
    match base.strip_suffix("/api/v10") {
        Some(proxy) if !proxy.is_empty() => Ok(Some(proxy.to_string())),
        _ => Err(format!(
            "channels.discord.api_base_url: `{api_base_url}` must end with /api/v10 when token_env is set (the gateway bot's REST client sends every request below it); leave it out to use {DISCORD_API_BASE_URL}"
        )),
    }
}

/// A gateway message, read at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A message the bot does not answer, with why.
    Ignored(&'static str),
    /// A message to answer.
    Message(Box<(Inbound, ReplyTarget)>),
}

/// How inbox rows of the bot are told from the interactions' ([`ChatPlatform::route`]).
pub const ROUTE: &str = "bot";

/// Where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplyTarget {
    /// The channel (or thread) the message was posted in.
    pub channel_id: NonZeroU64,
    /// The message answered (the answer replies to it); `None` for a new message (a webhook's
    /// answer forwarded into the channel).
    pub message_id: Option<NonZeroU64>,
    /// The guild, when not a DM.
    pub guild_id: Option<NonZeroU64>,
}

/// Reads a `MESSAGE_CREATE` for the bot `bot_id`.
pub fn read_message(msg: &Message, bot_id: Option<UserId>) -> Incoming {
    let Some(bot_id) = bot_id else {
        return Incoming::Ignored("the bot's own id is not known yet");
    };
    if msg.author.id == bot_id {
        return Incoming::Ignored("the bot's own message");
    }
    if msg.author.bot || msg.author.system {
        return Incoming::Ignored("a message from a bot");
    }
    if msg.webhook_id.is_some() {
        return Incoming::Ignored("a webhook message");
    }
    if !matches!(msg.kind, MessageType::Regular | MessageType::InlineReply) {
        return Incoming::Ignored("a system message");
    }
    let dm = msg.guild_id.is_none();
    let mentioned = msg.mentions.iter().any(|u| u.id == bot_id);
    if !dm && !mentioned {
        return Incoming::Ignored("a guild message that does not mention the bot");
    }
    let text = strip_mention(&msg.content, bot_id);
    if text.is_empty() {
        return Incoming::Ignored("no text");
    }
    let channel_id = msg.channel_id.get();
    let inbound = Inbound {
        idempotency_key: format!("msg:{}", msg.id),
        conversation: ConversationKey::new(
            crate::channels::discord::CHANNEL,
            channel_id.to_string(),
        ),
        user: UserRef {
            id: msg.author.id.to_string(),
            name: msg
                .author
                .global_name
                .clone()
                .or_else(|| Some(msg.author.name.clone())),
        },
        text,
        attachments: Vec::new(),
    };
    let target = ReplyTarget {
        channel_id: NonZeroU64::from(msg.channel_id),
        message_id: Some(NonZeroU64::from(msg.id)),
        guild_id: msg.guild_id.map(NonZeroU64::from),
    };
    Incoming::Message(Box::new((inbound, target)))
}

/// The text without the bot's mentions (`<@id>` and the legacy nickname form `<@!id>`).
fn strip_mention(content: &str, bot_id: UserId) -> String {
    content
        .replace(&format!("<@{bot_id}>"), " ")
        .replace(&format!("<@!{bot_id}>"), " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The nonce of one part: derived from its dedupe key, so a resend carries the same one
/// (Discord allows 25 characters).
pub fn nonce_for(dedupe_key: &str) -> String {
    let digest = Sha256::digest(dedupe_key.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(25);
    hex
}

/// The gateway bot.
pub struct DiscordBot {
    token: Secret,
    proxy: Option<String>,
    http: Arc<Http>,
    bot_id: AtomicU64,
    per_channel: DefaultKeyedRateLimiter<u64>,
    overall: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for DiscordBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordBot")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl DiscordBot {
    /// The bot for `token`, talking to `api_base_url` (see [`proxy_base`]).
    pub fn build(token: Secret, api_base_url: &str) -> Result<Self> {
        let proxy = proxy_base(api_base_url).map_err(Error::Config)?;
        // Discord's channel bucket is 5 messages per 5 s; a part per second after a burst of 5.
        let per_channel = RateLimiter::keyed(
            Quota::with_period(Duration::from_secs(1))
                .ok_or_else(|| Error::Internal("a zero pacing period".into()))?
                .allow_burst(NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)),
        );
        // The global limit is 50 requests per second per bot.
        let overall = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(40).unwrap_or(NonZeroU32::MIN),
        ));
        let http = Arc::new(make_http(&token, proxy.as_deref()));
        Ok(Self {
            token,
            proxy,
            http,
            bot_id: AtomicU64::new(0),
            per_channel,
            overall,
        })
    }

    fn bot_id(&self) -> Option<UserId> {
        NonZeroU64::new(self.bot_id.load(Ordering::Relaxed)).map(UserId::from)
    }

    fn set_bot_id(&self, id: UserId) {
        self.bot_id.store(id.get(), Ordering::Relaxed);
    }

    /// Keeps the gateway connection until `shutdown` fires. A refused token or an unreachable
    /// API is logged and retried with exponential backoff; serenity resumes and reconnects a
    /// dropped websocket by itself.
    pub async fn run(self: Arc<Self>, cx: ChatContext, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.login() => r,
            };
            let failure = match attempt {
                Ok(()) => {
                    let started = tokio::time::Instant::now();
                    match self.connect(&cx, &shutdown).await {
                        Ok(()) => return,
                        Err(e) => {
                            // A session that held for a while earns a quick reconnect; one the
                            // gateway refuses at once (intents, token) keeps backing off.
                            if started.elapsed() >= STABLE_SESSION {
                                backoff = Duration::from_secs(1);
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            tracing::error!(error = %failure, retry_in = ?backoff, "the Discord gateway bot is not connected; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Checks the token with `GET /users/@me` and learns the bot's id.
    async fn login(&self) -> Result<()> {
        // serenity's HTTP client has no timeout of its own; an unreachable API must not hang.
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.http.get_current_user()).await;
        let me = match answer {
            Ok(Ok(me)) => me,
            Ok(Err(e)) if status_of(&e) == Some(401) => {
                return Err(Error::Unauthorized(
                    "Discord refused the bot token (HTTP 401); check the variable named by channels.discord.token_env".into(),
                ));
            }
            Ok(Err(e)) => {
                return Err(Error::Upstream(format!(
                    "Discord GET /users/@me failed: {}",
                    with_causes(&e)
                )));
            }
            Err(_) => {
                return Err(Error::Upstream(format!(
                    "Discord GET /users/@me did not answer within {}s; is the Discord API reachable?",
                    REQUEST_TIMEOUT.as_secs()
                )));
            }
        };
        self.set_bot_id(me.id);
        tracing::info!(bot = %me.name, id = %me.id, "Discord bot token accepted");
        Ok(())
    }

    /// One serenity client until shutdown (`Ok`) or until it gives up (`Err`: the gateway
    /// refused the token or the intents).
    async fn connect(
        self: &Arc<Self>,
        cx: &ChatContext,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let handler = Handler {
            bot: Arc::clone(self),
            cx: cx.clone(),
        };
        // The client's own HTTP (the gateway URL look-up) goes where ours goes.
        let client =
            ClientBuilder::new_with_http(make_http(&self.token, self.proxy.as_deref()), intents())
                .event_handler(handler);
        // Building asks for the gateway URL (serenity falls back to Discord's on an error).
        let mut client = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            built = tokio::time::timeout(REQUEST_TIMEOUT, client) => built
                .map_err(|_| Error::Upstream("Discord GET /gateway did not answer in time".into()))?
                .map_err(|e| Error::Upstream(format!(
                    "building the Discord gateway client: {}",
                    with_causes(&e)
                )))?,
        };
        let shards = Arc::clone(&client.shard_manager);
        tokio::select! {
            () = shutdown.cancelled() => {
                shards.shutdown_all().await;
                Ok(())
            }
            r = client.start() => {
                // The shard already stopped; serenity waits up to 5 s for it to say so, which
                // must not hold up shutdown.
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = shards.shutdown_all() => {}
                }
                match r {
                    Ok(()) => Err(Error::Upstream("the Discord gateway connection ended".into())),
                    Err(e) => Err(Error::Upstream(format!(
                        "the Discord gateway closed the connection: {}; check the token (channels.discord.token_env) and that the Message Content intent is enabled in the Developer Portal",
                        with_causes(&e)
                    ))),
                }
            }
        }
    }

    /// One `POST /channels/{id}/messages` (multipart with `file` as `files[0]`, if any);
    /// Discord's message id. Without an answer in time the message may or may not exist: the
    /// row stays pending, and a resend carries the same nonce, which Discord deduplicates.
    async fn send_message(
        &self,
        channel_id: NonZeroU64,
        body: &Value,
        file: Option<&Value>,
    ) -> Result<String> {
        let files = match file {
            Some(file) => {
                let file = OutFile::from_payload(file)?;
                vec![CreateAttachment::bytes(file.bytes, file.name)]
            }
            None => Vec::new(),
        };
        let send = self
            .http
            .send_message(ChannelId::from(channel_id), files, body);
        let Ok(sent) = tokio::time::timeout(SEND_TIMEOUT, send).await else {
            return Err(Error::Upstream(format!(
                "Discord did not answer a message to channel {channel_id} within {}s; the reply stays pending",
                SEND_TIMEOUT.as_secs()
            )));
        };
        match sent {
            Ok(message) => Ok(message.id.to_string()),
            Err(e) if status_of(&e) == Some(429) => Err(Error::RateLimited {
                // serenity does not hand over Discord's retry_after in proxy mode; a second
                // is Discord's channel bucket refill.
                retry_after: Duration::from_secs(1),
                message: format!("Discord rate-limited messages to channel {channel_id}"),
            }),
            Err(e) => Err(Error::Upstream(format!(
                "Discord refused a message to channel {channel_id}: {}",
                with_causes(&e)
            ))),
        }
    }
}

/// A recorded channel message: its channel, body and file.
struct ChannelMessage {
    channel: NonZeroU64,
    body: Value,
    file: Option<Value>,
}

/// The recorded channel message of a payload.
fn channel_message(payload: &Value) -> Result<ChannelMessage> {
    match serde_json::from_value::<Recorded>(payload.clone()) {
        Ok(Recorded::ChannelMessage {
            channel_id,
            body,
            file,
        }) => {
            let channel = channel_id.parse::<NonZeroU64>().map_err(|_| {
                Error::BadInput(format!(
                    "a recorded Discord message names the channel `{channel_id}`, which is not an id"
                ))
            })?;
            Ok(ChannelMessage {
                channel,
                body,
                file,
            })
        }
        _ => Err(Error::BadInput(
            "a recorded Discord bot message is unreadable".into(),
        )),
    }
}

#[async_trait]
impl ChatPlatform for DiscordBot {
    type Target = ReplyTarget;

    fn channel(&self) -> Channel {
        crate::channels::discord::CHANNEL
    }

    fn route(&self) -> &'static str {
        ROUTE
    }

    fn limits(&self, _to: &ReplyTarget) -> Limits {
        Limits {
            max_chars: MAX_MESSAGE_CHARS,
            max_parts: None,
            markup: Markup::DiscordMarkdown,
        }
    }

    fn subject<'a>(&'a self, inbound: &'a Inbound, to: &'a ReplyTarget) -> Subject<'a> {
        Subject {
            user_id: &inbound.user.id,
            user_name: inbound.user.name.as_deref(),
            chat: to.channel_id.to_string().into(),
            space: to.guild_id.map(|g| g.to_string().into()),
            direct: to.guild_id.is_none(),
        }
    }

    fn reply_key(&self, to: &ReplyTarget) -> String {
        // A forwarded message has no message to key on; its caller passes its own key.
        match to.message_id {
            Some(id) => format!("discord:msg:{id}"),
            None => format!("discord:channel:{}", to.channel_id),
        }
    }

    fn escape(&self, text: &str) -> String {
        text.to_string()
    }

    fn render(&self, out: &Outbound, _to: &ReplyTarget) -> String {
        render(out)
    }

    fn target_for_chat(&self, chat: &str, _dedupe_key: &str) -> Result<ReplyTarget> {
        let channel_id = chat
            .parse::<NonZeroU64>()
            .map_err(|_| Error::BadInput(format!("`{chat}` is not a Discord channel id")))?;
        Ok(ReplyTarget {
            channel_id,
            message_id: None,
            guild_id: None,
        })
    }

    fn payload(&self, to: &ReplyTarget, part: &Part<'_>) -> Result<Value> {
        let mut body = json!({
            "allowed_mentions": {"parse": [], "replied_user": true},
            "nonce": nonce_for(part.dedupe_key),
            "enforce_nonce": true,
        });
        // A reply to the message; without one (a forwarded answer) a new message.
        if let Some(message_id) = to.message_id {
            let mut reference = json!({
                "message_id": message_id.to_string(),
                "channel_id": to.channel_id.to_string(),
                "fail_if_not_exists": false,
            });
            if let Some(guild) = to.guild_id {
                reference["guild_id"] = json!(guild.to_string());
            }
            body["message_reference"] = reference;
        }
        let file = fill_body(&mut body, part.body)?;
        serde_json::to_value(Recorded::ChannelMessage {
            channel_id: to.channel_id.to_string(),
            body,
            file,
        })
        .map_err(|e| Error::internal("recording a Discord message", e))
    }

    async fn send_once(&self, payload: &Value) -> Result<Option<String>> {
        let message = channel_message(payload)?;
        self.send_message(message.channel, &message.body, message.file.as_ref())
            .await
            .map(Some)
    }

    async fn pace(&self, payload: &Value) {
        // Only the channel is needed: read it without decoding a recorded file.
        let channel = payload
            .get("channel_id")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<NonZeroU64>().ok());
        if let Some(channel) = channel {
            self.per_channel.until_key_ready(&channel.get()).await;
        }
        self.overall.until_ready().await;
    }

    fn send_policy(&self) -> SendPolicy {
        SendPolicy {
            tries: MAX_SEND_TRIES,
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// `POST /channels/{id}/typing`, refreshed before it fades.
    async fn show_working(&self, to: &ReplyTarget) {
        let typing = self.http.broadcast_typing(ChannelId::from(to.channel_id));
        match tokio::time::timeout(REQUEST_TIMEOUT, typing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "Discord typing indicator failed"),
            Err(_) => tracing::debug!("Discord typing indicator timed out"),
        }
    }

    fn working_refresh(&self) -> Option<Duration> {
        Some(TYPING_REFRESH)
    }
}

fn make_http(token: &Secret, proxy: Option<&str>) -> Http {
    let builder = HttpBuilder::new(token.expose());
    match proxy {
        // serenity 0.12 sends through the proxy only with its ratelimiter off.
        Some(proxy) => builder.proxy(proxy).ratelimiter_disabled(true).build(),
        None => builder.build(),
    }
}

/// The error and its sources ("Error while sending HTTP request." alone does not say why).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = e.source();
    while let Some(cause) = source {
        // serenity's wrappers repeat their inner error's text; say it once.
        let said = cause.to_string();
        if said != last {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        source = cause.source();
    }
    text
}

fn status_of(e: &serenity::Error) -> Option<u16> {
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => Some(r.status_code.as_u16()),
        _ => None,
    }
}

struct Handler {
    bot: Arc<DiscordBot>,
    cx: ChatContext,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.bot.set_bot_id(ready.user.id);
        tracing::info!(bot = %ready.user.name, guilds = ready.guilds.len(), "Discord gateway ready");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        match read_message(&msg, self.bot.bot_id()) {
            Incoming::Ignored(reason) => {
                tracing::debug!(reason, message = %msg.id, "ignored a Discord message");
            }
            Incoming::Message(m) => {
                let (inbound, to) = *m;
                // Written to the inbox first: Discord does not deliver a gateway event twice,
                // so from here on only the inbox keeps the message through a crash.
                if let Err(e) = chat::accept(Arc::clone(&self.bot), &self.cx, inbound, to).await {
                    tracing::warn!(error = %e, message = %msg.id, "could not accept a Discord message");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOT: u64 = 1_000_000_000_000_001;

    fn message(extra: Value) -> Message {
        let mut v = json!({
            "id": "1200000000000000001",
            "channel_id": "1100000000000000001",
            "guild_id": "1000000000000000009",
            "author": {"id": "1000000000000000002", "username": "ana", "global_name": "Ana"},
            "content": format!("<@{BOT}> How do I request a refund?"),
            "timestamp": "2026-11-26T10:00:00.000000+00:00",
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [{"id": BOT.to_string(), "username": "conveyor", "bot": true}],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": false,
            "type": 0
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn bot() -> Option<UserId> {
        Some(UserId::new(BOT))
    }

    #[test]
    fn a_mention_is_answered_without_the_mention() {
        let Incoming::Message(m) = read_message(&message(json!({})), bot()) else {
            unreachable!()
        };
        assert_eq!(m.0.text, "How do I request a refund?");
        assert_eq!(m.0.idempotency_key, "msg:1200000000000000001");
        assert_eq!(m.0.conversation.id, "1100000000000000001");
        assert_eq!(m.0.user.name.as_deref(), Some("Ana"));
        assert_eq!(
            m.1.message_id.map(|m| m.get()),
            Some(1_200_000_000_000_000_001)
        );
        let nick = message(json!({"content": format!("hey <@!{BOT}>   there")}));
        let Incoming::Message(m) = read_message(&nick, bot()) else {
            unreachable!()
        };
        assert_eq!(m.0.text, "hey there");
    }

    #[test]
    fn dms_are_answered_without_a_mention() {
        let dm = message(json!({"guild_id": null, "content": "hi", "mentions": []}));
        assert!(matches!(read_message(&dm, bot()), Incoming::Message(_)));
    }

    #[test]
    fn bots_webhooks_itself_unmentioned_and_empty_messages_are_ignored() {
        let cases = [
            json!({"author": {"id": "5", "username": "other", "bot": true}}),
            json!({"webhook_id": "77"}),
            json!({"author": {"id": BOT.to_string(), "username": "conveyor", "bot": true}}),
            json!({"content": "hello all", "mentions": []}),
            json!({"content": format!("<@{BOT}>  ")}),
            json!({"type": 7}),
        ];
        for case in cases {
            assert!(
                matches!(
                    read_message(&message(case.clone()), bot()),
                    Incoming::Ignored(_)
                ),
                "{case}"
            );
        }
        assert!(matches!(
            read_message(&message(json!({})), None),
            Incoming::Ignored(_)
        ));
    }

    #[test]
    fn the_proxy_base_drops_the_api_path_and_the_real_api_has_none() {
        assert_eq!(proxy_base("https://discord.com/api/v10").unwrap(), None);
        assert_eq!(proxy_base("https://discord.com/api/v10/").unwrap(), None);
        assert_eq!(
            proxy_base("http://127.0.0.1:9/api/v10").unwrap().as_deref(),
            Some("http://127.0.0.1:9")
        );
        let e = proxy_base("http://127.0.0.1:9").unwrap_err();
        assert!(e.contains("channels.discord.api_base_url"), "{e}");
    }

    #[test]
    fn nonces_are_stable_and_fit_discord() {
        let a = nonce_for("discord:msg:1:1");
        assert_eq!(a, nonce_for("discord:msg:1:1"));
        assert_ne!(a, nonce_for("discord:msg:1:2"));
        assert_eq!(a.len(), 25);
    }
}
