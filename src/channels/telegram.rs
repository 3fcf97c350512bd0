//! Telegram through the Bot API: `[channels.telegram]`, updates (webhook or long polling), the
//! manners in groups, Markdown → Telegram HTML and the sends (`sendMessage`, `sendPhoto`,
//! `sendDocument`, `sendChatAction`), and button clicks (`callback_query`: clarifying choices
//! and workflow approvals, answered with `answerCallbackQuery`).
//!
//! This is the only file that imports teloxide (teloxide-core's types and `Bot`; not its
//! dispatcher). Updates are read as teloxide [`Update`]s: kinds teloxide cannot read arrive as
//! `UpdateKind::Error` and an update it cannot deserialize at all is read on its own, so either
//! is ignored with a log line, never refused and never a stuck polling offset. Sends go through
//! [`Bot`] with the `Requester` trait; teloxide's errors become ours here (`retry_after` →
//! [`Error::RateLimited`], the rest → [`Error::Upstream`] without the token). Every reply part
//! is recorded in the egress ledger before it is sent and confirmed with Telegram's
//! `message_id` after.
//!
//! A reply's files ([`OutFile`]) follow its text, one message each, as replies to the same
//! message and in the same forum topic: PNG, JPEG, GIF and WebP images with `sendPhoto` (the
//! alt text as the caption, cut to Telegram's 1024 characters), anything else with
//! `sendDocument`, both uploaded as multipart/form-data by teloxide. The recorded part holds the
//! file itself ([`OutFile::to_payload`]), so a resend needs nothing else. Files are at most
//! [`MAX_FILE_BYTES`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use teloxide::payloads::{
    AnswerCallbackQuerySetters, GetUpdatesSetters, SendChatActionSetters, SendDocumentSetters,
    SendMessageSetters, SendPhotoSetters,
};
use teloxide::prelude::{Request, Requester};
use teloxide::types::{
    AllowedUpdate, ChatAction, ChatId, InlineKeyboardMarkup, InputFile, MessageEntityKind,
    MessageId, ParseMode, ReplyParameters, ThreadId, Update, UpdateKind,
};
use teloxide::{Bot, RequestError};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::channels::chat::{
    self, Button, ChatContext, ChatPlatform, Limits, Markup, OutFile, Part, PartBody, Platform,
    Reply, ReplyKind, SendPolicy, WebReply, WebRequest,
};
use crate::channels::verify::{self, VerifyError};
use crate::error::{Error, Result};
use crate::gateway::access::Subject;
use crate::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::store::{EgressRow, Store};
use crate::values::{Env, Secret};

/// Longest Telegram message text; longer replies are split at paragraph boundaries.
pub const MAX_MESSAGE_CHARS: usize = 4_096;

/// The largest photo the Bot API takes (10 MB).
pub const MAX_PHOTO_BYTES: usize = 10_000_000;

/// The largest other file a bot may upload (50 MB).
pub const MAX_DOCUMENT_BYTES: usize = 50_000_000;

/// The largest file conveyor sends to Telegram: the platform's limits, capped by the ledger's
/// ([`chat::MAX_LEDGER_FILE_BYTES`]).
pub const MAX_FILE_BYTES: usize = chat::file_cap(MAX_PHOTO_BYTES);

/// The longest caption of a photo or document.
const MAX_CAPTION_CHARS: usize = 1_024;

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
    /// Messages per second over all chats. Telegram allows about 30 for a bot; raise it only
    /// with Telegram's paid broadcasts enabled for the bot.
    #[serde(default = "default_sends_per_second")]
    pub sends_per_second: u32,
}

fn default_sends_per_second() -> u32 {
    30
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A clarifying choice clicked (a `callback_query`): asked as the person's next message.
    Choice(Box<Choice>),
    /// A workflow approval's Approve or Reject button clicked (a `callback_query`): decided by
    /// the workflow engine.
    Approval(Box<Approval>),
}

/// A click on a clarifying choice ([`chat::choice`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The `callback_query` id, answered (`answerCallbackQuery`) to stop the button's spinner.
    pub callback_id: String,
    /// The button's value (`{answer id}:{index}`).
    pub value: String,
    /// Who clicked.
    pub user: UserRef,
    /// Where: the question back's chat, topic and message (the answer replies to it).
    pub to: ReplyTarget,
}

/// A click on a workflow approval's Approve or Reject button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The `callback_query` id, answered (`answerCallbackQuery`) with what came of the click.
    pub callback_id: String,
    /// The approval's id (the button's value).
    pub id: String,
    /// Approve (else reject).
    pub approve: bool,
    /// Who clicked.
    pub user: UserRef,
    /// The approval's question: its chat, topic and message (the decision replies to it).
    pub to: ReplyTarget,
}

/// The `callback_data` prefixes of a workflow approval's buttons (the approval step's actions,
/// written `{action}:{value}` like every button).
const WF_APPROVE: &str = "wf_approve:";
const WF_REJECT: &str = "wf_reject:";

/// The longest text `answerCallbackQuery` shows.
const MAX_CALLBACK_ANSWER_CHARS: usize = 200;

/// Text of the entity at `offset`/`length` (both count UTF-16 code units).
fn entity_text(text: &str, offset: usize, length: usize) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = offset.saturating_add(length).min(units.len());
    let start = offset.min(end);
    String::from_utf16_lossy(&units[start..end])
}

/// Reads an update. `bot_username` is our bot's username (without `@`).
///
/// A body that is not JSON is refused; any JSON that teloxide cannot read as an [`Update`]
/// (a future Bot API, a broken field) is acknowledged and ignored with a log line, so Telegram
/// does not retry it forever.
pub fn parse(body: &[u8], bot_username: &str) -> Result<Incoming> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadInput(format!("the Telegram update is not valid JSON ({e})")))?;
    Ok(read_json(body, &value, bot_username))
}

/// One update (`text`, already read into `value`) → [`Incoming`]; unreadable updates are
/// ignored with a log line.
fn read_json(text: &[u8], value: &Value, bot_username: &str) -> Incoming {
    let update_id = value.get("update_id").and_then(Value::as_i64);
    // From the text, not from `value`: teloxide's `UpdateKind` reads its key as a borrowed
    // `&str` first, which a `serde_json::Value` cannot lend, and then misreads the update.
    // teloxide panics on some shapes instead of failing (a `message_reaction` with neither
    // `user` nor `actor_chat` unwraps a `None`): such an update is unreadable like any other,
    // not a reason to drop the connection and be sent it again forever.
    match std::panic::catch_unwind(|| serde_json::from_slice::<Update>(text)) {
        Ok(Ok(update)) => read_update(&update, bot_username),
        Ok(Err(e)) => {
            tracing::info!(error = %e, ?update_id, "an update teloxide cannot read; ignored");
            Incoming::Ignored("an update conveyor cannot read")
        }
        Err(_) => {
            tracing::warn!(?update_id, "teloxide panicked reading an update; ignored");
            Incoming::Ignored("an update conveyor cannot read")
        }
    }
}

fn read_update(update: &Update, bot_username: &str) -> Incoming {
    let update_id = i64::from(update.id.0);
    let message = match &update.kind {
        UpdateKind::Message(message) => message,
        UpdateKind::CallbackQuery(query) => return read_callback(update_id, query),
        // teloxide's catch-all for kinds (or shapes) it cannot read; getUpdates fills in the
        // raw value, a webhook body leaves it empty.
        UpdateKind::Error(raw) => {
            tracing::info!(update_id, %raw, "an update kind teloxide cannot read; ignored");
            return Incoming::Ignored("an update kind conveyor cannot read");
        }
        _ => return Incoming::Ignored("an update kind conveyor does not answer"),
    };
    let Some(from) = &message.from else {
        return Incoming::Ignored("a message without a sender");
    };
    if from.is_bot {
        return Incoming::Ignored("a message from a bot");
    }
    let Some(raw) = message.text() else {
        return Incoming::Ignored("a message without text");
    };
    let mention = format!("@{bot_username}");
    let text = if message.chat.is_private() {
        strip_command(raw, bot_username).unwrap_or_else(|| raw.to_string())
    } else if let Some(rest) = strip_command(raw, bot_username) {
        rest
    } else {
        let mentioned = !bot_username.is_empty()
            && (message.entities().unwrap_or_default().iter().any(|e| {
                e.kind == MessageEntityKind::Mention
                    && entity_text(raw, e.offset, e.length).eq_ignore_ascii_case(&mention)
            }) || contains_ci(raw, &mention));
        let replies_to_bot = message.reply_to_message().is_some_and(|r| {
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
    let thread_id = if message.is_topic_message {
        message.thread_id.map(|t| i64::from(t.0.0))
    } else {
        None
    };
    let chat_id = message.chat.id.0;
    let name = from
        .username
        .clone()
        .or_else(|| Some(from.first_name.clone()).filter(|n| !n.is_empty()));
    let inbound = Inbound {
        idempotency_key: update_id.to_string(),
        conversation: ConversationKey::new(
            CHANNEL,
            format!("{chat_id}:{}", thread_id.unwrap_or(0)),
        ),
        user: UserRef {
            id: from.id.0.to_string(),
            name,
        },
        text,
        attachments: Vec::new(),
    };
    Incoming::Message(Box::new((
        inbound,
        ReplyTarget {
            update_id,
            chat_id,
            thread_id,
            message_id: i64::from(message.id.0),
        },
    )))
}

/// A button click: a clarifying choice or a workflow approval under one of conveyor's
/// messages, or nothing to do.
fn read_callback(update_id: i64, query: &teloxide::types::CallbackQuery) -> Incoming {
    let data = query.data.as_deref().unwrap_or_default();
    let choice = data
        .strip_prefix(chat::choice::CHOOSE)
        .and_then(|d| d.strip_prefix(':'));
    let approval = data
        .strip_prefix(WF_APPROVE)
        .map(|id| (id, true))
        .or_else(|| data.strip_prefix(WF_REJECT).map(|id| (id, false)));
    let value = match (choice, approval) {
        (Some(value), _) => value,
        (None, Some((id, _))) if chat::approval::is_id(id) => id,
        (None, Some((id, _))) => {
            tracing::info!(
                value = id,
                "an approval button with a value conveyor did not write"
            );
            return Incoming::Ignored("an approval button with a value conveyor did not write");
        }
        (None, None) => return Incoming::Ignored("a button conveyor does not handle"),
    };
    let Some(message) = &query.message else {
        // An inline-mode message: conveyor posts none.
        return Incoming::Ignored("a button click without its message");
    };
    if query.from.is_bot {
        return Incoming::Ignored("a button clicked by a bot");
    }
    let thread_id = message
        .regular_message()
        .filter(|m| m.is_topic_message)
        .and_then(|m| m.thread_id)
        .map(|t| i64::from(t.0.0));
    let user = UserRef {
        id: query.from.id.0.to_string(),
        name: query
            .from
            .username
            .clone()
            .or_else(|| Some(query.from.first_name.clone()).filter(|n| !n.is_empty())),
    };
    let to = ReplyTarget {
        update_id,
        chat_id: message.chat().id.0,
        thread_id,
        message_id: i64::from(message.id().0),
    };
    if let (None, Some((id, approve))) = (choice, approval) {
        return Incoming::Approval(Box::new(Approval {
            callback_id: query.id.0.clone(),
            id: id.to_string(),
            approve,
            user,
            to,
        }));
    }
    Incoming::Choice(Box::new(Choice {
        callback_id: query.id.0.clone(),
        value: value.to_string(),
        user,
        to,
    }))
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    !mention_ranges(haystack, needle).is_empty()
}

/// `/ask …` or `/ask@bot …` (for this bot) → the rest; `/run …` or `/run@bot …` → `/run …`
/// (a workflow to start); anything else → `None`.
fn strip_command(text: &str, bot_username: &str) -> Option<String> {
    let trimmed = text.trim_start();
    let (command, rest) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let (name, target) = command.split_once('@').unwrap_or((command, ""));
    if !target.is_empty() && !target.eq_ignore_ascii_case(bot_username) {
        return None;
    }
    if name.eq_ignore_ascii_case("/ask") {
        Some(rest.to_string())
    } else if name.eq_ignore_ascii_case("/run") {
        Some(format!("/run {rest}"))
    } else {
        None
    }
}

/// Where `mention` (`@username`, ASCII as every Telegram username) occurs in `text` as a whole
/// username, ignoring ASCII case: byte ranges of the original text. An ASCII match starts and
/// ends on character boundaries (bytes below 0x80 are never inside a UTF-8 character), so the
/// ranges can slice `text` whatever else it holds; nothing is computed on a transformed copy.
fn mention_ranges(text: &str, mention: &str) -> Vec<std::ops::Range<usize>> {
    let needle = mention.as_bytes();
    let bytes = text.as_bytes();
    if needle.is_empty() || !mention.is_ascii() {
        return Vec::new();
    }
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        let end = i + needle.len();
        if bytes[i..end].eq_ignore_ascii_case(needle)
            && !bytes.get(end).is_some_and(|b| is_name_byte(*b))
        {
            found.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// Removes every `@bot` mention (ignoring ASCII case) and tidies whitespace.
fn strip_mention(text: &str, mention: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in mention_ranges(text, mention) {
        out.push_str(&text[at..range.start]);
        out.push(' ');
        at = range.end;
    }
    out.push_str(&text[at..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for Telegram HTML (`&`, `<`, `>`, and `"` for attributes).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Telegram HTML: everything escaped; `**bold**` → `<b>`, `` `code` `` → `<code>`,
/// `[text](url)` → `<a href>` (web addresses only), headings → bold lines.
pub struct TelegramStyle;

impl chat::markdown::Style for TelegramStyle {
    fn escape(&self, text: &str) -> String {
        escape(text)
    }

    fn bold(&self, escaped: &str) -> String {
        format!("<b>{escaped}</b>")
    }

    fn code(&self, escaped: &str) -> Option<String> {
        Some(format!("<code>{escaped}</code>"))
    }

    fn code_block(&self, escaped: &str) -> Option<String> {
        // Telegram refuses an empty entity: an empty block is nothing.
        Some(if escaped.trim().is_empty() {
            String::new()
        } else {
            format!("<pre>{escaped}</pre>")
        })
    }

    fn link(&self, text: &str, url: &str) -> Option<String> {
        chat::markdown::is_web_url(url)
            .then(|| format!("<a href=\"{}\">{}</a>", escape(url), escape(text)))
    }
}

/// Markdown → Telegram HTML (see [`TelegramStyle`]). Only `<pre>` (a fenced block) spans
/// lines; the splitter closes and reopens a tag open at a cut.
pub fn to_html(markdown: &str) -> String {
    chat::markdown::convert(markdown, &TelegramStyle)
}

/// The reply as Telegram HTML: the answer, then its numbered sources.
pub fn render(out: &Outbound) -> String {
    chat::markdown::answer(out, &TelegramStyle)
}

/// What [`Telegram::deliver`] records in the egress ledger for one reply part: everything
/// `sendMessage` needs, so [`Telegram::resend`] can send a row left pending by a crash from the
/// row alone. The shape (Bot API field names, `reply_to_message_id`) is the one recorded before
/// conveyor used teloxide, so older pending rows still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SendPayload {
    chat_id: i64,
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parse_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to_message_id: Option<i64>,
    #[serde(default)]
    allow_sending_without_reply: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<i64>,
    /// An inline keyboard (the Bot API's `reply_markup` JSON), for buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_markup: Option<Value>,
}

/// How a recorded file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum FileMethod {
    /// An image shown inline, with its alt text as the caption.
    #[serde(rename = "sendPhoto")]
    Photo,
    /// Any other file.
    #[serde(rename = "sendDocument")]
    Document,
}

/// What [`Telegram::deliver`] records for a file part: everything `sendPhoto` or
/// `sendDocument` needs, the file included ([`OutFile::to_payload`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FilePayload {
    chat_id: i64,
    method: FileMethod,
    file: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to_message_id: Option<i64>,
    #[serde(default)]
    allow_sending_without_reply: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<i64>,
}

/// One recorded part: a file (it has `file` and `method`) or a text message (every row
/// recorded before files were sent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum Recorded {
    File(FilePayload),
    Message(SendPayload),
}

/// Reads a recorded payload.
fn recorded_payload(payload: &Value) -> serde_json::Result<Recorded> {
    serde_json::from_value(payload.clone())
}

/// Where a reply goes in its chat: answering `reply_to` (still sent if that message is gone,
/// with `allow_sending_without_reply`).
fn reply_parameters(
    reply_to: Option<i64>,
    allow_sending_without_reply: bool,
) -> Result<Option<ReplyParameters>> {
    let Some(reply_to) = reply_to else {
        return Ok(None);
    };
    let mut reply = ReplyParameters::new(message_id(reply_to, "reply_to_message_id")?);
    if allow_sending_without_reply {
        reply = reply.allow_sending_without_reply();
    }
    Ok(Some(reply))
}

/// Longest `callback_data` Telegram takes, in bytes.
const MAX_CALLBACK_BYTES: usize = 64;

/// Buttons as an inline keyboard, one row; `callback_data` is `{action}:{value}`.
fn inline_keyboard(buttons: &[Button]) -> Result<Value> {
    let row: Vec<Value> = buttons
        .iter()
        .map(|b| {
            let data = format!("{}:{}", b.action, b.value);
            if data.len() > MAX_CALLBACK_BYTES {
                return Err(Error::BadInput(format!(
                    "the button `{}` carries {} bytes; Telegram's callback_data holds {MAX_CALLBACK_BYTES}",
                    b.label,
                    data.len()
                )));
            }
            Ok(serde_json::json!({"text": b.label, "callback_data": data}))
        })
        .collect::<Result<_>>()?;
    Ok(serde_json::json!({"inline_keyboard": [row]}))
}

/// A Telegram message or thread id: the Bot API's are 32-bit.
fn message_id(id: i64, what: &str) -> Result<MessageId> {
    i32::try_from(id)
        .map(MessageId)
        .map_err(|_| Error::BadInput(format!("{what} {id} is not a Telegram message id")))
}

fn parse_mode(name: &str) -> Result<ParseMode> {
    match name.to_ascii_lowercase().as_str() {
        "html" => Ok(ParseMode::Html),
        "markdownv2" => Ok(ParseMode::MarkdownV2),
        #[allow(deprecated)]
        "markdown" => Ok(ParseMode::Markdown),
        _ => Err(Error::BadInput(format!(
            "parse_mode `{name}` is not one Telegram knows (HTML, MarkdownV2, Markdown)"
        ))),
    }
}

/// The longest piece of a teloxide error message we pass on (an unreadable answer is quoted
/// whole by teloxide).
const MAX_ERROR_CHARS: usize = 300;

/// The running Telegram channel: webhook secret, the teloxide [`Bot`] and the send limits.
pub struct Telegram {
    token: Secret,
    secret_token: Option<Secret>,
    mode: TelegramMode,
    api_url: String,
    configured_username: Option<String>,
    username: OnceCell<String>,
    bot: Bot,
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
    /// Reads the secrets named by `config` through `env` and sets up the Bot API client.
    pub fn build(config: &TelegramConfig, env: &Env) -> Result<Self> {
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
        let api_url = config.api_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&api_url).map_err(|e| {
            Error::Config(format!(
                "channels.telegram.api_url: `{api_url}` is not a valid URL ({e})"
            ))
        })?;
        // teloxide's settings, with a timeout longer than the getUpdates long poll (its default
        // of 17 s would cut every idle poll short).
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(POLL_TIMEOUT_SECS + 15))
            .build()
            .map_err(|e| Error::internal("building the Telegram HTTP client", e))?;
        let bot = Bot::with_client(token.expose(), client).set_api_url(url);
        // Telegram's limits: about one message per second in a chat, 30 per second overall.
        let per_chat = RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN));
        let overall = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(config.sends_per_second).unwrap_or(NonZeroU32::MIN),
        ));
        Ok(Self {
            token,
            secret_token,
            mode: config.mode,
            api_url,
            configured_username: config
                .bot_username
                .as_deref()
                .map(|u| u.trim_start_matches('@').to_string()),
            username: OnceCell::new(),
            bot,
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
                let me = self
                    .bot
                    .get_me()
                    .send()
                    .await
                    .map_err(|e| self.api_error("getMe", e))?;
                me.user
                    .username
                    .clone()
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

    /// Sends `html` (Telegram HTML, e.g. from [`to_html`]) as the answer to `to` through the
    /// shared path ([`chat::deliver`]): dedupe keys `telegram:{update_id}:{part}`, so
    /// delivering the same answer again sends nothing.
    pub async fn deliver(
        &self,
        store: &Store,
        conversation: &str,
        to: &ReplyTarget,
        html: &str,
    ) -> Result<()> {
        let key = self.reply_key(to);
        chat::deliver(
            self,
            store,
            conversation,
            to,
            &Reply::text(ReplyKind::Answer, html),
            &key,
        )
        .await
    }

    /// Sends one egress row that was recorded (by [`Telegram::deliver`]) but never confirmed,
    /// e.g. because the process died between recording and sending: the row's payload alone
    /// says what to send. Confirmed with Telegram's `message_id` like a first send; a row that
    /// is no longer pending (confirmed since it was listed) is not sent again.
    pub async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        if row.channel == CHANNEL.as_str() {
            // Refuse a row this version cannot read before counting an attempt.
            recorded_payload(&row.payload).map_err(|e| {
                Error::BadInput(format!(
                    "egress row `{}` is not a Telegram sendMessage, sendPhoto or sendDocument payload ({e})",
                    row.id
                ))
            })?;
        }
        chat::resend(self, store, row).await
    }

    /// A clicked choice: asked as the clicker's message in the chat of the question back (into
    /// the inbox, like a message), then the click is answered so its spinner stops (a failure
    /// there is only logged: the question is already accepted).
    async fn take_choice(self: Arc<Self>, cx: &ChatContext, c: Choice) -> Result<()> {
        let conversation = ConversationKey::new(
            CHANNEL,
            format!("{}:{}", c.to.chat_id, c.to.thread_id.unwrap_or(0)),
        );
        let inbound = chat::choice::chosen(&cx.store, &[conversation], c.user, &c.value).await?;
        let note = match inbound {
            Some(inbound) => match chat::accept(Arc::clone(&self), cx, inbound, c.to).await? {
                chat::Accepted::Started => None,
                chat::Accepted::Duplicate | chat::Accepted::Ignored(_) => {
                    Some("Already asked: the answer is above.")
                }
            },
            None => Some("This choice is no longer available; ask again."),
        };
        let mut answer = self
            .bot
            .answer_callback_query(teloxide::types::CallbackQueryId(c.callback_id));
        if let Some(text) = note {
            answer = answer.text(text);
        }
        if let Err(e) = answer.send().await {
            tracing::info!(error = %e, "answering a Telegram button click failed");
        }
        Ok(())
    }

    /// A click on a workflow approval's button: the decision goes to the workflow engine
    /// ([`chat::Decider`]), the click is answered with what came of it (only the person who
    /// clicked sees that), and a recorded decision is posted in the chat as a reply to the
    /// question by a tracked task, through the egress ledger under `telegram:approval:{id}`,
    /// so it is posted once per approval. Without a workflow engine the click is only
    /// answered (its spinner stops).
    async fn take_approval(self: Arc<Self>, cx: &ChatContext, a: Approval) -> Result<()> {
        let Some(decider) = &cx.decider else {
            tracing::info!(
                approval = %a.id,
                "a click on an approval button, but no workflow engine decides here; ignored"
            );
            self.answer_click(&a.callback_id, "This approval cannot be decided here.")
                .await;
            return Ok(());
        };
        // The person as the gateway writes Telegram users (and `[roles]` and approvers name
        // them): `telegram:{user id}`.
        let who = format!("{CHANNEL}:{}", a.user.id);
        let decided = decider.decide(&a.id, a.approve, &who).await?;
        self.answer_click(&a.callback_id, &decided.message).await;
        if decided.recorded {
            let store = cx.store.clone();
            cx.tasks.spawn(async move {
                if let Err(e) = self.post_decision(&store, &a).await {
                    tracing::warn!(approval = %a.id, error = %e, "could not post an approval's decision");
                }
            });
        }
        Ok(())
    }

    /// Answers a button click with `text` (cut to what Telegram shows); a failure is only
    /// logged, the click itself is already handled.
    async fn answer_click(&self, callback_id: &str, text: &str) {
        let text = if text.chars().count() <= MAX_CALLBACK_ANSWER_CHARS {
            text.to_string()
        } else {
            let mut cut: String = text.chars().take(MAX_CALLBACK_ANSWER_CHARS - 1).collect();
            cut.push('…');
            cut
        };
        let answer = self
            .bot
            .answer_callback_query(teloxide::types::CallbackQueryId(callback_id.to_string()))
            .text(text);
        if let Err(e) = answer.send().await {
            tracing::info!(error = %e, "answering a Telegram button click failed");
        }
    }

    /// "✅ Approved by …" (or rejected), naming the person with a mention link, as a reply to
    /// the approval's question in its chat and topic.
    async fn post_decision(&self, store: &Store, a: &Approval) -> Result<()> {
        let name = a.user.name.as_deref().unwrap_or(&a.user.id);
        let text = format!(
            "{} by <a href=\"tg://user?id={}\">{}</a>",
            if a.approve {
                "✅ Approved"
            } else {
                "❌ Rejected"
            },
            escape(&a.user.id),
            escape(name)
        );
        let conversation = ConversationKey::new(
            CHANNEL,
            format!("{}:{}", a.to.chat_id, a.to.thread_id.unwrap_or(0)),
        )
        .as_storage_key();
        chat::deliver(
            self,
            store,
            &conversation,
            &a.to,
            &Reply::text(ReplyKind::Notice, text),
            &format!("telegram:approval:{}", a.id),
        )
        .await
    }

    /// One `sendMessage`; Telegram's `message_id` on success.
    async fn send_message(&self, payload: &SendPayload) -> Result<i32> {
        let mut request = self
            .bot
            .send_message(ChatId(payload.chat_id), payload.text.clone());
        if let Some(mode) = &payload.parse_mode {
            request = request.parse_mode(parse_mode(mode)?);
        }
        if let Some(thread) = payload.message_thread_id {
            request = request.message_thread_id(ThreadId(message_id(thread, "thread id")?));
        }
        if let Some(reply) = reply_parameters(
            payload.reply_to_message_id,
            payload.allow_sending_without_reply,
        )? {
            request = request.reply_parameters(reply);
        }
        if let Some(markup) = &payload.reply_markup {
            let keyboard: InlineKeyboardMarkup =
                serde_json::from_value(markup.clone()).map_err(|e| {
                    Error::BadInput(format!(
                        "a recorded Telegram inline keyboard is unreadable ({e})"
                    ))
                })?;
            request = request.reply_markup(keyboard);
        }
        let message = request
            .send()
            .await
            .map_err(|e| self.api_error("sendMessage", e))?;
        Ok(message.id.0)
    }

    /// One `sendPhoto` or `sendDocument` (multipart/form-data, the file named as recorded);
    /// Telegram's `message_id` on success.
    async fn send_file(&self, payload: &FilePayload) -> Result<i32> {
        let file = OutFile::from_payload(&payload.file)?;
        let upload = InputFile::memory(file.bytes).file_name(file.name);
        let chat = ChatId(payload.chat_id);
        let thread = payload
            .message_thread_id
            .map(|t| message_id(t, "thread id").map(ThreadId))
            .transpose()?;
        let reply = reply_parameters(
            payload.reply_to_message_id,
            payload.allow_sending_without_reply,
        )?;
        // The two requests are different types with the same setters.
        let sent = match payload.method {
            FileMethod::Photo => {
                let mut request = self.bot.send_photo(chat, upload);
                if let Some(caption) = &payload.caption {
                    request = request.caption(caption.clone());
                }
                if let Some(thread) = thread {
                    request = request.message_thread_id(thread);
                }
                if let Some(reply) = reply {
                    request = request.reply_parameters(reply);
                }
                request
                    .send()
                    .await
                    .map_err(|e| self.api_error("sendPhoto", e))?
            }
            FileMethod::Document => {
                let mut request = self.bot.send_document(chat, upload);
                if let Some(caption) = &payload.caption {
                    request = request.caption(caption.clone());
                }
                if let Some(thread) = thread {
                    request = request.message_thread_id(thread);
                }
                if let Some(reply) = reply {
                    request = request.reply_parameters(reply);
                }
                request
                    .send()
                    .await
                    .map_err(|e| self.api_error("sendDocument", e))?
            }
        };
        Ok(sent.id.0)
    }

    /// A teloxide error as ours: `retry_after` → [`Error::RateLimited`], anything else →
    /// [`Error::Upstream`] naming the method. The token is part of every request URL, so it is
    /// scrubbed from the text (reqwest's errors quote the URL).
    fn api_error(&self, method: &str, error: RequestError) -> Error {
        match error {
            RequestError::RetryAfter(wait) => Error::RateLimited {
                retry_after: wait.duration(),
                message: format!("Telegram rate-limited {method}"),
            },
            other => {
                let token = self.token.expose();
                let mut text = other.to_string();
                if !token.is_empty() {
                    text = text
                        .replace(token, "***")
                        .replace(&token.replace(':', "%3A"), "***");
                }
                if text.chars().count() > MAX_ERROR_CHARS {
                    text = text.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…";
                }
                Error::Upstream(format!("Telegram Bot API {method} failed: {text}"))
            }
        }
    }

    /// One `getUpdates` long poll from `offset`. An answer teloxide cannot read as a whole (one
    /// update it cannot deserialize at all fails the batch) is read update by update here, so
    /// one bad update is skipped with a log line and never stalls the offset.
    async fn get_updates(&self, offset: Option<i64>) -> Result<Vec<(i64, Incoming)>> {
        let username = self.username().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot learn the bot's username");
            String::new()
        });
        let mut request = self
            .bot
            .get_updates()
            .timeout(u32::try_from(POLL_TIMEOUT_SECS).unwrap_or(u32::MAX))
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        if let Some(o) = offset {
            request = request.offset(i32::try_from(o).map_err(|_| {
                Error::Upstream(format!("the getUpdates offset {o} is out of range"))
            })?);
        }
        match request.send().await {
            Ok(updates) => Ok(updates
                .iter()
                .map(|u| (i64::from(u.id.0), read_update(u, &username)))
                .collect()),
            Err(RequestError::InvalidJson { source, raw }) => {
                tracing::info!(error = %source, "teloxide could not read a getUpdates answer; reading it update by update");
                let answer: Value = serde_json::from_str(&raw).map_err(|e| {
                    Error::Upstream(format!(
                        "Telegram getUpdates answered with invalid JSON ({e})"
                    ))
                })?;
                let Some(Value::Array(updates)) = answer.get("result") else {
                    return Err(Error::Upstream(
                        "Telegram getUpdates answered without a result list".into(),
                    ));
                };
                let read: Vec<_> = updates
                    .iter()
                    .filter_map(|raw| {
                        let update_id = raw.get("update_id").and_then(Value::as_i64);
                        if update_id.is_none() {
                            tracing::info!(update = %raw, "skipped an update without an update_id");
                        }
                        update_id
                            .map(|id| (id, read_json(raw.to_string().as_bytes(), raw, &username)))
                    })
                    .collect();
                if read.is_empty() && !updates.is_empty() {
                    // Nothing to move the offset past: back off rather than spin on the batch.
                    return Err(Error::Upstream(
                        "Telegram getUpdates answered with updates that have no update_id".into(),
                    ));
                }
                Ok(read)
            }
            Err(e) => Err(self.api_error("getUpdates", e)),
        }
    }

    /// Long polling until `shutdown` fires: `getUpdates` with the next offset; each update is
    /// written to the inbox ([`chat::accept`]) before the offset moves past it, so an update is
    /// never lost to a crash, and answered by its own task. Errors back off exponentially.
    pub async fn run_polling(self: Arc<Self>, cx: ChatContext, shutdown: CancellationToken) {
        let mut offset: Option<i64> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            let updates = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.get_updates(offset) => r,
            };
            let updates = match updates {
                Ok(updates) => {
                    backoff = Duration::from_secs(1);
                    updates
                }
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
            for (update_id, incoming) in updates {
                match incoming {
                    Incoming::Ignored(reason) => {
                        tracing::debug!(update_id, reason, "ignored a Telegram update");
                    }
                    incoming @ (Incoming::Message(_)
                    | Incoming::Choice(_)
                    | Incoming::Approval(_)) => {
                        // Written to the inbox before the offset moves past it; when that
                        // fails the offset stays, and the next poll gets the update again.
                        let accepted = match incoming {
                            Incoming::Message(m) => {
                                let (inbound, to) = *m;
                                chat::accept(Arc::clone(&self), &cx, inbound, to)
                                    .await
                                    .map(drop)
                            }
                            Incoming::Choice(c) => Arc::clone(&self).take_choice(&cx, *c).await,
                            Incoming::Approval(a) => Arc::clone(&self).take_approval(&cx, *a).await,
                            Incoming::Ignored(_) => Ok(()),
                        };
                        if let Err(e) = accepted {
                            tracing::warn!(update_id, error = %e, ?backoff, "could not accept a Telegram update; polling it again");
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            break;
                        }
                    }
                }
                offset = Some(offset.map_or(update_id + 1, |o| o.max(update_id + 1)));
            }
        }
    }
}

#[async_trait::async_trait]
impl ChatPlatform for Telegram {
    type Target = ReplyTarget;

    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn limits(&self, _to: &ReplyTarget) -> Limits {
        Limits {
            max_chars: MAX_MESSAGE_CHARS,
            max_parts: None,
            markup: Markup::TelegramHtml,
        }
    }

    fn subject<'a>(&'a self, inbound: &'a Inbound, to: &'a ReplyTarget) -> Subject<'a> {
        Subject {
            user_id: &inbound.user.id,
            user_name: inbound.user.name.as_deref(),
            chat: to.chat_id.to_string().into(),
            space: None,
            // Private chats have positive ids (the user's); groups and channels negative ones.
            direct: to.chat_id > 0,
        }
    }

    fn reply_key(&self, to: &ReplyTarget) -> String {
        format!("telegram:{}", to.update_id)
    }

    fn escape(&self, text: &str) -> String {
        escape(text)
    }

    fn render(&self, out: &Outbound, _to: &ReplyTarget) -> String {
        render(out)
    }

    fn target_for_chat(&self, chat: &str, _dedupe_key: &str) -> Result<ReplyTarget> {
        let chat_id = chat.parse::<i64>().map_err(|_| {
            Error::BadInput(format!(
                "`{chat}` is not a Telegram chat id (a number, like -1001234567890)"
            ))
        })?;
        Ok(ReplyTarget {
            update_id: 0,
            chat_id,
            thread_id: None,
            message_id: 0,
        })
    }

    fn payload(&self, to: &ReplyTarget, part: &Part<'_>) -> Result<Value> {
        // 0: a new message (a forwarded webhook answer), not a reply.
        let reply_to_message_id = (to.message_id != 0).then_some(to.message_id);
        let (text, buttons) = match part.body {
            PartBody::Text { text, buttons } => (text, buttons),
            PartBody::File(file) => {
                let (method, limit) = if file.is_image() {
                    (FileMethod::Photo, MAX_PHOTO_BYTES)
                } else {
                    (FileMethod::Document, MAX_DOCUMENT_BYTES)
                };
                let payload = FilePayload {
                    chat_id: to.chat_id,
                    method,
                    file: file.to_payload("Telegram", limit)?,
                    caption: file.alt_within(MAX_CAPTION_CHARS),
                    reply_to_message_id,
                    allow_sending_without_reply: true,
                    message_thread_id: to.thread_id,
                };
                return serde_json::to_value(&payload)
                    .map_err(|e| Error::internal("recording a Telegram file", e));
            }
        };
        let payload = SendPayload {
            chat_id: to.chat_id,
            text: text.to_string(),
            parse_mode: Some("HTML".into()),
            reply_to_message_id,
            allow_sending_without_reply: true,
            message_thread_id: to.thread_id,
            reply_markup: if buttons.is_empty() {
                None
            } else {
                Some(inline_keyboard(buttons)?)
            },
        };
        serde_json::to_value(&payload).map_err(|e| Error::internal("recording a Telegram reply", e))
    }

    async fn send_once(&self, payload: &Value) -> Result<Option<String>> {
        let recorded = recorded_payload(payload).map_err(|e| {
            Error::BadInput(format!("a recorded Telegram reply is unreadable ({e})"))
        })?;
        let id = match recorded {
            Recorded::Message(message) => self.send_message(&message).await?,
            Recorded::File(file) => self.send_file(&file).await?,
        };
        Ok(Some(id.to_string()))
    }

    async fn pace(&self, payload: &Value) {
        if let Some(chat) = payload.get("chat_id").and_then(Value::as_i64) {
            self.per_chat.until_key_ready(&chat).await;
        }
        self.overall.until_ready().await;
    }

    fn send_policy(&self) -> SendPolicy {
        SendPolicy {
            tries: MAX_SEND_TRIES,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }

    /// `typing`, sent again every 4 s (Telegram shows it for 5 s).
    async fn show_working(&self, to: &ReplyTarget) {
        let mut action = self
            .bot
            .send_chat_action(ChatId(to.chat_id), ChatAction::Typing);
        if let Some(thread) = to.thread_id {
            match message_id(thread, "thread id") {
                Ok(thread) => action = action.message_thread_id(ThreadId(thread)),
                Err(e) => {
                    tracing::debug!(error = %e, "no typing indicator");
                    return;
                }
            }
        }
        if let Err(e) = action.send().await {
            tracing::debug!(error = %self.api_error("sendChatAction", e), "sendChatAction failed");
        }
    }

    fn working_refresh(&self) -> Option<Duration> {
        Some(Duration::from_secs(4))
    }
}

#[async_trait::async_trait]
impl crate::gateway::egress::Outbox for Telegram {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        Telegram::resend(self, store, row).await
    }

    async fn post(
        &self,
        store: &Store,
        chat: &str,
        dedupe_key: &str,
        out: &Outbound,
    ) -> Result<()> {
        chat::post(self, store, chat, dedupe_key, out).await
    }
}

#[async_trait::async_trait]
impl Platform for Telegram {
    async fn receive(
        self: Arc<Self>,
        cx: ChatContext,
        request: WebRequest<'_>,
    ) -> Result<WebReply> {
        if self.mode != TelegramMode::Webhook {
            return Err(Error::NotFound(
                "the Telegram webhook is not configured; set mode = \"webhook\" in [channels.telegram]"
                    .into(),
            ));
        }
        // The secret token is checked before the body is read, so a forged request gets 401
        // and nothing is processed.
        if let Err(e) = self.verify(request.header("x-telegram-bot-api-secret-token")) {
            tracing::warn!(error = %e, "refused a Telegram webhook request");
            return Err(Error::Unauthorized(format!(
                "Telegram secret token check failed: {e}"
            )));
        }
        let (inbound, to) = match self.parse(request.body).await? {
            Incoming::Ignored(reason) => {
                tracing::debug!(reason, "ignored a Telegram update");
                return Ok(WebReply::Json(json!({"ok": true, "ignored": reason})));
            }
            Incoming::Message(m) => *m,
            Incoming::Choice(c) => {
                self.take_choice(&cx, *c).await?;
                return Ok(WebReply::Json(json!({"ok": true})));
            }
            Incoming::Approval(a) => {
                self.take_approval(&cx, *a).await?;
                return Ok(WebReply::Json(json!({"ok": true})));
            }
        };
        // Acknowledged at once (Telegram retries slow or failed deliveries); a tracked task
        // answers, and the ingress ledger answers a redelivery only once.
        chat::accept(self, &cx, inbound, to).await?;
        Ok(WebReply::Json(json!({"ok": true})))
    }

    fn background(
        self: Arc<Self>,
        cx: ChatContext,
        shutdown: CancellationToken,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        (self.mode == TelegramMode::Polling).then(|| {
            Box::pin(self.run_polling(cx, shutdown)) as futures_util::future::BoxFuture<'static, ()>
        })
    }

    fn resume(
        self: Arc<Self>,
        cx: &ChatContext,
        row: crate::store::InboxRow,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        chat::resume(self, cx, row)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Telegram's channel.
pub const CHANNEL: Channel = Channel::new("telegram");

/// The registry entry of Telegram.
pub const PLATFORM: crate::channels::PlatformKind =
    crate::channels::PlatformKind::of::<TelegramConfig>(
        &["/telegram/webhook"],
        "the Telegram webhook is not configured; add [channels.telegram] with mode = \"webhook\"",
        None,
    );

#[async_trait::async_trait]
impl crate::channels::PlatformSection for TelegramConfig {
    const CHANNEL: Channel = CHANNEL;

    /// Reports every problem with its path.
    fn validate(&self, problems: &mut Vec<String>) {
        if self.sends_per_second == 0 {
            problems.push(
                "channels.telegram.sends_per_second: must be at least 1 (Telegram allows about 30)"
                    .into(),
            );
        }
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

    fn build(&self, env: &Env) -> Result<Arc<dyn crate::channels::chat::Platform>> {
        Ok(Arc::new(Telegram::build(self, env)?))
    }

    async fn doctor(&self, env: &Env, online: bool) -> Vec<crate::health::Check> {
        crate::channels::telegram_doctor::doctor(self, env, online).await
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
        let parts = chat::split(&text, MAX_MESSAGE_CHARS, Markup::TelegramHtml);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        let small = ["a".repeat(2_000), "b".repeat(2_000), "c".repeat(2_000)].join("\n\n");
        let parts = chat::split(&small, MAX_MESSAGE_CHARS, Markup::TelegramHtml);
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
        assert_eq!(
            strip_command("/run@bot digest week=1", "bot").as_deref(),
            Some("/run digest week=1")
        );
        assert_eq!(strip_command("/run@other digest", "bot"), None);
        assert_eq!(strip_mention("@Bot hi there", "@bot"), "hi there");
    }

    /// Issue 12, finding 1: lowercasing `İ` (2 → 3 bytes) and `Ω` OHM SIGN (3 → 2 bytes) kept
    /// the total length, and slicing the original at offsets of the lowercased copy panicked
    /// inside `é`.
    #[test]
    fn mentions_next_to_case_changing_letters_do_not_panic() {
        // `\u{130}` is İ, `\u{2126}` the OHM SIGN.
        assert_eq!(
            strip_mention("\u{130}@conv_bot\u{e9}\u{2126}", "@conv_bot"),
            "\u{130} \u{e9}\u{2126}"
        );
        assert_eq!(
            strip_mention("İ@CONV_BOT what is Ω?", "@conv_bot"),
            "İ what is Ω?"
        );
        assert!(contains_ci("İ@Conv_Bot", "@conv_bot"));
        // Only the whole username: `@conv_bot2` is someone else.
        assert!(!contains_ci("ask @conv_bot2 instead", "@conv_bot"));
        assert_eq!(
            strip_mention("@conv_bot2 and @conv_bot, hi", "@conv_bot"),
            "@conv_bot2 and , hi"
        );
        // Every prefix of hostile text, so no cut lands inside a character.
        let hostile = "İ@conv_botéΩ \u{130}\u{2126}@Conv_Bot\u{10FFFF}ß";
        for (i, _) in hostile.char_indices() {
            let _ = strip_mention(&hostile[i..], "@conv_bot");
            let _ = contains_ci(&hostile[..i], "@conv_bot");
        }
    }

    fn telegram() -> Telegram {
        let config = TelegramConfig {
            token_env: "T".into(),
            mode: TelegramMode::Polling,
            secret_token_env: None,
            api_url: "http://127.0.0.1:9".into(),
            bot_username: Some("conv_bot".into()),
            sends_per_second: 30,
        };
        Telegram::build(&config, &Env::new(|_| Some("123:secret-token".into()))).unwrap()
    }

    #[test]
    fn teloxide_errors_become_ours() {
        let t = telegram();
        let limited = t.api_error(
            "sendMessage",
            RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(3)),
        );
        assert!(matches!(
            limited,
            Error::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(3)
        ));
        let raw = r#"{"ok":true,"result":{"token":"123:secret-token"}}"#;
        let invalid = RequestError::InvalidJson {
            source: Arc::new(serde_json::from_str::<u8>("x").unwrap_err()),
            raw: raw.into(),
        };
        let message = t.api_error("getMe", invalid).to_string();
        assert!(message.contains("getMe"), "{message}");
        assert!(!message.contains("secret-token"), "{message}");
    }

    #[test]
    fn pending_rows_recorded_before_teloxide_still_read() {
        let old = serde_json::json!({
            "chat_id": -100, "text": "hi", "parse_mode": "HTML", "reply_to_message_id": 5,
            "allow_sending_without_reply": true, "message_thread_id": 4
        });
        let payload: SendPayload = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(payload.message_thread_id, Some(4));
        assert_eq!(payload.reply_to_message_id, Some(5));
        assert_eq!(serde_json::to_value(&payload).unwrap(), old);
        assert!(matches!(recorded_payload(&old), Ok(Recorded::Message(_))));
        assert!(matches!(parse_mode("html"), Ok(ParseMode::Html)));
        assert!(parse_mode("bbcode").is_err());
    }

    #[test]
    fn file_parts_record_the_file_and_pick_photo_or_document() {
        let t = telegram();
        let to = ReplyTarget {
            update_id: 1,
            chat_id: -100,
            thread_id: Some(4),
            message_id: 5,
        };
        let png = OutFile {
            name: "chart.png".into(),
            mime: "image/png".into(),
            alt: Some("a chart".into()),
            bytes: vec![0x89, b'P', b'N', b'G', 0, b'\r', b'\n'],
        };
        let csv = OutFile {
            name: "rows.csv".into(),
            mime: "text/csv".into(),
            alt: None,
            bytes: b"a,b\n1,2\n".to_vec(),
        };
        for (file, method) in [(&png, FileMethod::Photo), (&csv, FileMethod::Document)] {
            let part = Part {
                index: 1,
                dedupe_key: "telegram:1:2",
                kind: ReplyKind::Answer,
                body: PartBody::File(file),
            };
            let payload = t.payload(&to, &part).unwrap();
            let Ok(Recorded::File(recorded)) = recorded_payload(&payload) else {
                panic!("not a file payload: {payload}")
            };
            assert_eq!(recorded.method, method);
            assert_eq!(recorded.caption, file.alt);
            assert_eq!(recorded.message_thread_id, Some(4));
            assert_eq!(recorded.reply_to_message_id, Some(5));
            assert_eq!(&OutFile::from_payload(&recorded.file).unwrap(), file);
        }
        let huge = OutFile {
            bytes: vec![0; MAX_FILE_BYTES + 1],
            ..csv
        };
        let part = Part {
            index: 1,
            dedupe_key: "telegram:1:2",
            kind: ReplyKind::Answer,
            body: PartBody::File(&huge),
        };
        assert!(matches!(t.payload(&to, &part), Err(Error::TooLarge(_))));
    }

    #[test]
    fn approval_clicks_are_read_with_their_message_and_odd_values_ignored() {
        let click = |data: &str| {
            json!({"update_id": 7, "callback_query": {
                "id": "cb7", "chat_instance": "-1",
                "from": {"id": 42, "is_bot": false, "first_name": "Ana", "username": "ana"},
                "data": data,
                "message": {"message_id": 1001, "date": 1581448900,
                    "chat": {"id": -100123, "type": "supergroup", "title": "Refunds"},
                    "from": {"id": 777, "is_bot": true, "first_name": "Conveyor", "username": "conv_bot"},
                    "text": "Refund?"}
            }})
            .to_string()
        };
        let id = "abcdefghijk23456789m";
        let Incoming::Approval(a) =
            parse(click(&format!("wf_approve:{id}")).as_bytes(), "conv_bot").unwrap()
        else {
            panic!("not an approval")
        };
        assert_eq!((a.id.as_str(), a.approve), (id, true));
        assert_eq!(a.callback_id, "cb7");
        assert_eq!(a.user.id, "42");
        assert_eq!(a.user.name.as_deref(), Some("ana"));
        assert_eq!((a.to.chat_id, a.to.message_id), (-100123, 1001));
        assert!(matches!(
            parse(click(&format!("wf_reject:{id}")).as_bytes(), "conv_bot").unwrap(),
            Incoming::Approval(a) if !a.approve
        ));
        for odd in [
            "wf_approve:",
            "wf_approve:ABC",
            "wf_reject:a b",
            "wf_approvex:abc",
        ] {
            assert!(
                matches!(
                    parse(click(odd).as_bytes(), "conv_bot").unwrap(),
                    Incoming::Ignored(_)
                ),
                "{odd}"
            );
        }
    }

    #[test]
    fn unreadable_updates_are_ignored() {
        for body in [
            r#"{"update_id":-1,"message":{}}"#,
            r#"{"update_id":3}"#,
            r#"{"update_id":4,"brand_new_kind":{"x":1}}"#,
            r#"[1,2]"#,
            // Found by the fuzz target `telegram_update` (`fuzz/`): a reaction without `user`
            // and `actor_chat` made teloxide unwrap a `None`.
            r#"{"update_id":5,"message_reaction":{"chat":{"id":-100,"type":"supergroup","title":"T"},
                "message_id":35,"date":1721306082,"old_reaction":[],"new_reaction":[]}}"#,
        ] {
            assert!(
                matches!(
                    parse(body.as_bytes(), "conv_bot").unwrap(),
                    Incoming::Ignored(_)
                ),
                "{body}"
            );
        }
        assert!(parse(b"not json", "conv_bot").is_err());
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
