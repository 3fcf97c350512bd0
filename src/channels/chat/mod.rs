//! What every chat platform shares: one path from a verified platform message to a sent reply.
//!
//! A platform (Slack, Telegram, Discord) implements [`ChatPlatform`] for what differs — who
//! sent a message (for the access check), where the reply goes, its markup and limits, the
//! ledger payload of one reply part, how one recorded part is sent, its working indicator — and
//! [`Platform`] for what the rest of the program sees: the HTTP requests it receives, its
//! background task (polling, a gateway bot), and its [`Outbox`]. Everything else lives here,
//! once:
//!
//! - [`accept`]: a verified, parsed message is written to the inbox (with where its reply
//!   goes) before the platform's request is acknowledged; a redelivery finds its row and is
//!   dropped. A tracked task answers it, holding the row's lease ([`crate::gateway::inbox`]);
//!   a row a crash or a shutdown left queued is answered by the next process through
//!   [`resume`] (the platform's [`Platform::resume`]), from the row alone.
//! - [`respond`]: access check → working indicator → [`Gateway::handle`] → the reply chosen by
//!   one policy ([`choose_reply`]: answer, rate-limit notice, failure notice, pairing code or
//!   refusal, each under its own ledger key) → [`deliver`].
//! - [`deliver`]: the reply split within the platform's limit without breaking its markup
//!   ([`split`]), **every part recorded in the egress ledger in one transaction before any is
//!   sent**, then each part sent and confirmed ([`send_recorded`]: pacing, `Retry-After` on
//!   429, attempts counted). A part recorded by an earlier delivery is never sent again.
//! - [`resend`] and [`post`]: the [`Outbox`] side (a row a crash left pending; a webhook's
//!   answer forwarded into a chat).
//!
//! Buttons ([`Button`]) and files ([`OutFile`]) are part of every reply; each platform renders
//! them within its own rules. A file is one part of its own after the text, and its ledger
//! payload holds the file itself ([`OutFile::to_payload`], base64), so [`resend`] can send it
//! from the row alone; a file over the platform's limit or [`MAX_LEDGER_FILE_BYTES`] refuses
//! the reply before anything is recorded.

pub mod approval;
#[doc(hidden)]
pub mod check;
pub mod choice;
pub mod markdown;
pub mod split;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::gateway::access::{Decision, Subject};
use crate::gateway::egress::Outbox;
use crate::gateway::inbox::{self, Finish};
use crate::model::{Channel, ConversationKey, Inbound, Outbound};
use crate::store::{EgressRow, InboxRow, Lease, NewEgress, Store};

pub use split::{Markup, split};

/// What a user gets when answering failed (the claim was released, so a retry may still work).
pub const SORRY: &str = "Sorry, I could not answer that right now; please try again in a minute.";

/// What a stranger gets where an answer is owed (a slash command, an interaction).
pub use crate::gateway::access::NOT_LET_IN;

/// What the shared path needs from the running app.
#[derive(Clone)]
pub struct ChatContext {
    /// The only path to a planner.
    pub gateway: Arc<Gateway>,
    /// The ledgers and conversations.
    pub store: Store,
    /// Answers in flight; awaited on shutdown.
    pub tasks: TaskTracker,
    /// Where a click on a workflow's Approve / Reject button goes (the workflow engine).
    pub decider: Option<Arc<dyn Decider>>,
}

/// Decides workflow approvals (implemented by the workflow engine; the platforms only pass
/// clicks on `wf_approve` / `wf_reject` buttons through).
#[async_trait::async_trait]
pub trait Decider: Send + Sync {
    /// Records `who`'s (`PLATFORM:ID`) decision on approval `id` when they may decide, and
    /// says what happened in a sentence for that person.
    async fn decide(&self, id: &str, approve: bool, who: &str) -> Result<Decided>;
}

/// What a click on an approval button came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Whether the decision was recorded (the run goes on).
    pub recorded: bool,
    /// A sentence for the person who clicked.
    pub message: String,
}

/// A platform's message limits for one target.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest message, in characters.
    pub max_chars: usize,
    /// Most messages one reply may take (Slack's `response_url` takes five), if limited.
    pub max_parts: Option<usize>,
    /// The markup of the rendered text.
    pub markup: Markup,
}

/// Why a reply is sent: it decides its ledger key and, on some platforms, who sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The planner's answer.
    Answer,
    /// A rate-limit or failure notice.
    Notice,
    /// A pairing code or a refusal.
    Access,
}

/// An action button under a reply. `value` goes back to conveyor when it is clicked, through
/// the platform's signed request; values that authorise something are signed by
/// [`crate::channels::verify::sign_action`] so a modified client cannot forge them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// The text on the button.
    pub label: String,
    /// What clicking does (`feedback_up`, …); the platform prefixes its own namespace.
    pub action: String,
    /// The action's argument (an answer id, a signed approval token).
    pub value: String,
}

/// A file sent with a reply: an image (with alt text) or a document such as a CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// The file name shown to people.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// For images: what the image shows, for people who cannot see it.
    pub alt: Option<String>,
    /// The content.
    pub bytes: Vec<u8>,
}

/// The most bytes of one file a reply may carry, whatever the platform takes: the file is kept
/// in its egress-ledger row (base64 in the JSON payload, so the row is about 4/3 of this) until
/// the platform confirmed it, and a ledger row is no place for larger blobs.
pub const MAX_LEDGER_FILE_BYTES: usize = 8 * 1024 * 1024;

/// The largest file a platform whose own limit is `platform_limit` sends: the lower of that
/// and [`MAX_LEDGER_FILE_BYTES`].
pub const fn file_cap(platform_limit: usize) -> usize {
    if platform_limit < MAX_LEDGER_FILE_BYTES {
        platform_limit
    } else {
        MAX_LEDGER_FILE_BYTES
    }
}

/// The image types every platform shows inline (as a photo, an image attachment).
const INLINE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What an egress row holds of an [`OutFile`] (see [`OutFile::to_payload`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordedFile {
    name: String,
    mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alt: Option<String>,
    /// The length of the content, checked when it is read back.
    size: usize,
    /// The content, base64 (standard alphabet, padded).
    base64: String,
}

impl OutFile {
    /// Whether this is an image the platforms show inline (PNG, JPEG, GIF, WebP), by its MIME
    /// type (parameters and case ignored).
    pub fn is_image(&self) -> bool {
        let essence = self.mime.split(';').next().unwrap_or("").trim();
        INLINE_IMAGES
            .iter()
            .any(|m| m.eq_ignore_ascii_case(essence))
    }

    /// Its alt text, trimmed and cut to `max_chars` characters (an ellipsis marks a cut);
    /// `None` when there is none.
    pub fn alt_within(&self, max_chars: usize) -> Option<String> {
        let alt = self
            .alt
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())?;
        if alt.chars().count() <= max_chars {
            return Some(alt.to_string());
        }
        let mut cut: String = alt.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        Some(cut)
    }

    /// The file as it is kept in an egress-ledger payload (`{"name", "mime", "alt", "size",
    /// "base64"}`), so a part recorded before a crash can be sent again from its row alone.
    ///
    /// A file larger than `limit` bytes (the platform's upload limit) or than
    /// [`MAX_LEDGER_FILE_BYTES`] is refused with an error naming the file, its size and the
    /// limit. Platforms call this from [`ChatPlatform::payload`], which [`deliver`] calls for
    /// every part before it records any, so a refused file leaves nothing recorded or sent.
    pub fn to_payload(&self, platform: &str, limit: usize) -> Result<Value> {
        let limit = limit.min(MAX_LEDGER_FILE_BYTES);
        if self.bytes.len() > limit {
            return Err(Error::TooLarge(format!(
                "the file `{}` is {} ({} bytes); conveyor sends files of at most {} ({limit} bytes) to {platform}, so the reply was not sent; make the file smaller or link to it instead",
                self.name,
                human_bytes(self.bytes.len()),
                self.bytes.len(),
                human_bytes(limit),
            )));
        }
        if self.name.trim().is_empty() {
            return Err(Error::BadInput(format!(
                "a file of {} bytes for {platform} has no name; every file sent needs one (e.g. `chart.png`)",
                self.bytes.len()
            )));
        }
        let recorded = RecordedFile {
            name: self.name.clone(),
            mime: self.mime.clone(),
            alt: self.alt.clone(),
            size: self.bytes.len(),
            base64: BASE64.encode(&self.bytes),
        };
        serde_json::to_value(&recorded).map_err(|e| Error::internal("recording a file", e))
    }

    /// Reads a file back from its [`OutFile::to_payload`] form; a row that is not one, whose
    /// content is not base64 or whose content does not have the recorded size is refused.
    pub fn from_payload(value: &Value) -> Result<Self> {
        let recorded: RecordedFile = serde_json::from_value(value.clone())
            .map_err(|e| Error::BadInput(format!("a recorded file is unreadable ({e})")))?;
        let bytes = BASE64.decode(recorded.base64.as_bytes()).map_err(|e| {
            Error::BadInput(format!(
                "the recorded file `{}` is not valid base64 ({e})",
                recorded.name
            ))
        })?;
        if bytes.len() != recorded.size {
            return Err(Error::BadInput(format!(
                "the recorded file `{}` holds {} bytes, not the {} recorded",
                recorded.name,
                bytes.len(),
                recorded.size
            )));
        }
        Ok(Self {
            name: recorded.name,
            mime: recorded.mime,
            alt: recorded.alt,
            bytes,
        })
    }
}

/// `n` bytes for people: `512 bytes`, `9.5 KiB`, `12.0 MiB`.
fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    // Display only: what converting to f64 loses is far below what is shown.
    let f = n as f64;
    if n < KIB {
        format!("{n} bytes")
    } else if n < MIB {
        format!("{:.1} KiB", f / KIB as f64)
    } else {
        format!("{:.1} MiB", f / MIB as f64)
    }
}

/// A reply, rendered in the platform's markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Why it is sent.
    pub kind: ReplyKind,
    /// The text, in the platform's markup.
    pub text: String,
    /// Buttons under the last part.
    pub buttons: Vec<Button>,
    /// Files sent after the text, one message each.
    pub files: Vec<OutFile>,
}

impl Reply {
    /// A text reply without buttons or files.
    pub fn text(kind: ReplyKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
            buttons: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// What one recorded message carries.
#[derive(Debug, Clone, Copy)]
pub enum PartBody<'a> {
    /// A piece of the text (with the reply's buttons when it is the last piece).
    Text {
        /// The text.
        text: &'a str,
        /// Buttons to show under it.
        buttons: &'a [Button],
    },
    /// A file.
    File(&'a OutFile),
}

/// One message of a reply, for [`ChatPlatform::payload`].
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// Its position in the reply, from 0.
    pub index: usize,
    /// Its key in the egress ledger (some platforms carry it in the message).
    pub dedupe_key: &'a str,
    /// Why the reply is sent.
    pub kind: ReplyKind,
    /// What it carries.
    pub body: PartBody<'a>,
}

/// How one recorded part is tried.
#[derive(Debug, Clone, Copy)]
pub struct SendPolicy {
    /// Tries while the platform answers 429.
    pub tries: u32,
    /// The longest `Retry-After` waited out; a longer one leaves the part pending.
    pub max_retry_after: Duration,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            tries: 4,
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// What differs per chat platform on the way from a message to its reply.
#[async_trait::async_trait]
pub trait ChatPlatform: Send + Sync + 'static {
    /// Where a reply goes: a thread, a chat, an interaction. It is kept in the inbox row with
    /// the message, so a message accepted before a crash is answered in the right place.
    type Target: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static;

    /// The platform.
    fn channel(&self) -> Channel;
    /// Which of the platform's ways in this is, when it has several under one channel (the
    /// Discord gateway bot beside its interactions): kept in inbox rows so
    /// [`Platform::resume`] hands a row back to the way that accepted it.
    fn route(&self) -> &'static str {
        ""
    }
    /// Its limits for `to`.
    fn limits(&self, to: &Self::Target) -> Limits;
    /// The sender and the chat, for the access check.
    fn subject<'a>(&'a self, inbound: &'a Inbound, to: &'a Self::Target) -> Subject<'a>;
    /// The ledger key of the reply to `to` (`slack:{event_id}`); notices and access replies
    /// add `:notice` and `:access`.
    fn reply_key(&self, to: &Self::Target) -> String;
    /// The ledger key of part `index` of the reply under `base`: `{base}:{index + 1}`.
    fn part_key(&self, base: &str, index: usize, _to: &Self::Target) -> String {
        format!("{base}:{}", index + 1)
    }
    /// Whether a stranger who would be ignored still gets [`NOT_LET_IN`] (where an answer is
    /// owed, e.g. an interaction only the sender sees).
    fn answers_strangers(&self, _to: &Self::Target) -> bool {
        false
    }
    /// Answered only when conveyor already takes part in the conversation (a thread reply
    /// that does not mention the bot).
    fn needs_conversation(&self, _to: &Self::Target) -> bool {
        false
    }
    /// Plain text in the platform's markup.
    fn escape(&self, text: &str) -> String;
    /// An answer in the platform's markup: the text, then its sources.
    fn render(&self, out: &Outbound, to: &Self::Target) -> String;
    /// Whether answers carry 👍/👎 buttons.
    fn feedback_buttons(&self) -> bool {
        false
    }
    /// Where a message to `chat` (a webhook's `forward_to`) goes.
    fn target_for_chat(&self, chat: &str, dedupe_key: &str) -> Result<Self::Target>;
    /// The egress payload of one part: everything needed to send it again after a crash.
    fn payload(&self, to: &Self::Target, part: &Part<'_>) -> Result<Value>;
    /// Sends one recorded payload once; the platform's id for the message. A 429 is
    /// [`Error::RateLimited`] with the platform's `Retry-After`.
    async fn send_once(&self, payload: &Value) -> Result<Option<String>>;
    /// Waits for a free slot before a send (the platform's pacing).
    async fn pace(&self, _payload: &Value) {}
    /// How a part is tried.
    fn send_policy(&self) -> SendPolicy {
        SendPolicy::default()
    }
    /// Shows that an answer is being worked out (a reaction, "typing…").
    async fn show_working(&self, _to: &Self::Target) {}
    /// How often [`ChatPlatform::show_working`] is repeated while the answer is worked out.
    fn working_refresh(&self) -> Option<Duration> {
        None
    }
    /// Takes the indicator away once the reply is sent.
    async fn hide_working(&self, _to: &Self::Target) {}
}

/// What [`accept`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// It was accepted before (a platform retry); nothing more is done.
    Duplicate,
    /// Not answered, with why.
    Ignored(&'static str),
    /// Written to the inbox; a tracked task answers it.
    Started,
}

/// What a chat platform's inbox row holds: the message, where its reply goes, and which of
/// the platform's ways in took it ([`ChatPlatform::route`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Queued<I, T> {
    inbound: I,
    target: T,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    route: String,
}

/// The route an inbox row of a chat platform was accepted through ([`ChatPlatform::route`]).
pub fn route_of(row: &InboxRow) -> &str {
    row.payload
        .get("route")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Hands a verified, parsed message to the shared path: it is written to the inbox (so it
/// survives a crash from here on) and a tracked task answers it, so the platform's request
/// can be acknowledged now. A message already in the inbox (a platform retry) is dropped.
pub async fn accept<P: ChatPlatform>(
    platform: Arc<P>,
    cx: &ChatContext,
    inbound: Inbound,
    to: P::Target,
) -> Result<Accepted> {
    if platform.needs_conversation(&to)
        && cx
            .store
            .recent_turns(&inbound.conversation.as_storage_key(), 1)
            .await?
            .is_empty()
    {
        return Ok(Accepted::Ignored("a thread conveyor takes no part in"));
    }
    let key = inbound.ledger_key();
    let payload = serde_json::to_value(Queued {
        inbound: &inbound,
        target: &to,
        route: platform.route().to_string(),
    })
    .map_err(|e| Error::internal("queueing a message", e))?;
    let channel = platform.channel();
    let Some(lease) = cx
        .store
        .inbox_put(channel.as_str(), &key, &payload, cx.gateway.lease())
        .await?
    else {
        tracing::info!(%channel, key, "a repeated delivery; already accepted");
        return Ok(Accepted::Duplicate);
    };
    let task_cx = cx.clone();
    cx.tasks.spawn(async move {
        answer_queued(&*platform, &task_cx, inbound, to, lease, 1).await;
    });
    Ok(Accepted::Started)
}

/// The work of answering an inbox row of this platform that a crash or a shutdown left
/// queued, claimed by the redriver (which runs it as a tracked task): read back from the row
/// and answered as [`accept`] does. A row that cannot be read is failed with why (kept for an
/// operator).
pub fn resume<P: ChatPlatform>(
    platform: Arc<P>,
    cx: &ChatContext,
    row: InboxRow,
) -> futures_util::future::BoxFuture<'static, ()> {
    let cx = cx.clone();
    Box::pin(async move {
        match serde_json::from_value::<Queued<Inbound, P::Target>>(row.payload) {
            Ok(q) => {
                answer_queued(
                    &*platform,
                    &cx,
                    q.inbound,
                    q.target,
                    row.lease,
                    row.attempts,
                )
                .await;
            }
            Err(e) => {
                let why = format!(
                    "the queued {} message cannot be read ({e})",
                    platform.channel()
                );
                let max = cx.gateway.inbox_max_attempts();
                inbox::finish(
                    &cx.store,
                    Some(&row.lease),
                    Finish::Fail(why),
                    row.attempts,
                    max,
                )
                .await;
            }
        }
    })
}

/// Answers one inbox row while holding its lease, then records what became of it.
async fn answer_queued<P: ChatPlatform>(
    platform: &P,
    cx: &ChatContext,
    inbound: Inbound,
    to: P::Target,
    lease: Lease,
    attempts: i64,
) {
    let work = respond(platform, cx, inbound, to, Some(&lease));
    if let Some(outcome) = inbox::held(&cx.store, Some(&lease), cx.gateway.lease(), work).await {
        let max = cx.gateway.inbox_max_attempts();
        inbox::finish(&cx.store, Some(&lease), outcome, attempts, max).await;
    }
}

/// Answers one message (see the module doc) and says what became of it for the inbox:
/// [`Finish::Done`] once the reply is recorded (a part that could not be sent stays pending
/// for the resender, and a failure to answer is a notice to the user) — [`Finish::Answered`]
/// when the inbox row `inbox` was marked done in the same commit — [`Finish::HandBack`]
/// when shutdown stopped the turn, [`Finish::Retry`] when the reply could not be recorded.
pub async fn respond<P: ChatPlatform>(
    platform: &P,
    cx: &ChatContext,
    inbound: Inbound,
    to: P::Target,
    inbox: Option<&Lease>,
) -> Finish {
    let span = tracing::info_span!(
        "chat_message",
        channel = %platform.channel(),
        conversation = %inbound.conversation.as_storage_key()
    );
    tracing::Instrument::instrument(respond_inner(platform, cx, inbound, to, inbox), span).await
}

async fn respond_inner<P: ChatPlatform>(
    platform: &P,
    cx: &ChatContext,
    inbound: Inbound,
    to: P::Target,
    inbox: Option<&Lease>,
) -> Finish {
    let channel = platform.channel();
    let conversation = inbound.conversation.as_storage_key();
    let base = platform.reply_key(&to);
    let access = match cx
        .gateway
        .check_access(channel, &platform.subject(&inbound, &to))
        .await
    {
        Decision::Allow => None,
        Decision::Ignore if platform.answers_strangers(&to) => Some(NOT_LET_IN.to_string()),
        Decision::Ignore => return Finish::Done,
        Decision::Reply(text) => Some(text),
    };
    if let Some(text) = access {
        let reply = Reply::text(ReplyKind::Access, platform.escape(&text));
        let key = format!("{base}:access");
        return send_reply(platform, &cx.store, &conversation, &to, &reply, &key, inbox).await;
    }
    let stop = CancellationToken::new();
    let working = working_until(platform, &to, stop.clone());
    let answer = async {
        let result = cx.gateway.handle(inbound).await;
        let finish = if matches!(result, Err(Error::ShuttingDown)) {
            Finish::HandBack
        } else {
            let (reply, key) = choose_reply(platform, &to, result, &base);
            send_reply(platform, &cx.store, &conversation, &to, &reply, &key, inbox).await
        };
        stop.cancel();
        finish
    };
    let ((), finish) = tokio::join!(working, answer);
    finish
}

/// [`deliver`] for [`respond`]: a reply that could not be recorded is retried later (the
/// message stays in the inbox); one recorded but not sent is the resender's. The inbox row
/// `inbox` is marked done in the commit that records the reply.
async fn send_reply<P: ChatPlatform>(
    platform: &P,
    store: &Store,
    conversation: &str,
    to: &P::Target,
    reply: &Reply,
    key: &str,
    inbox: Option<&Lease>,
) -> Finish {
    match record(platform, store, conversation, to, reply, key, inbox).await {
        Ok((recorded, answered)) => {
            if let Err(e) = send_all(platform, store, &recorded).await {
                tracing::warn!(channel = %platform.channel(), error = %e, "sending a reply failed; the resender tries again");
            }
            if answered {
                Finish::Answered
            } else {
                Finish::Done
            }
        }
        Err(e) => {
            tracing::warn!(channel = %platform.channel(), error = %e, "recording a reply failed");
            Finish::Retry(e.to_string())
        }
    }
}

/// Shows the working indicator until `stop`, refreshing it as the platform needs, then hides
/// it.
async fn working_until<P: ChatPlatform>(platform: &P, to: &P::Target, stop: CancellationToken) {
    loop {
        // Each show is sent whole (a quick request); only the wait between them is cut short.
        platform.show_working(to).await;
        match platform.working_refresh() {
            Some(every) => tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            },
            None => {
                stop.cancelled().await;
                break;
            }
        }
    }
    platform.hide_working(to).await;
}

/// The one reply policy: the answer under `base` (with feedback buttons where the platform
/// has them); a rate-limit message or [`SORRY`] under `{base}:notice`, its own key because
/// the claim was released and a later delivery may still produce (and send) the answer.
pub fn choose_reply<P: ChatPlatform>(
    platform: &P,
    to: &P::Target,
    result: Result<Outbound>,
    base: &str,
) -> (Reply, String) {
    match result {
        Ok(out) => (answer(platform, to, &out), base.to_string()),
        Err(Error::RateLimited { message, .. }) => (
            Reply::text(ReplyKind::Notice, platform.escape(&message)),
            format!("{base}:notice"),
        ),
        Err(e) => {
            tracing::warn!(channel = %platform.channel(), error = %e, "answering a message failed");
            (
                Reply::text(ReplyKind::Notice, platform.escape(SORRY)),
                format!("{base}:notice"),
            )
        }
    }
}

/// An answer as a reply: rendered, with its clarifying choices as buttons, or else 👍/👎
/// under it where the platform has them.
fn answer<P: ChatPlatform>(platform: &P, to: &P::Target, out: &Outbound) -> Reply {
    let mut reply = Reply::text(ReplyKind::Answer, platform.render(out, to));
    if !out.actions.is_empty() {
        // A workflow's question (Approve / Reject): its buttons, nothing else.
        reply.buttons = out
            .actions
            .iter()
            .map(|a| Button {
                label: a.label.clone(),
                action: a.action.clone(),
                value: a.value.clone(),
            })
            .collect();
    } else if !out.choices.is_empty() {
        // A question back: its options are what to click, not a rating.
        reply.buttons = choice::choice_buttons(&out.message_id, &out.choices);
    } else if platform.feedback_buttons() && !out.message_id.is_empty() {
        // (A message posted by a workflow is not a stored answer: nothing to rate.)
        reply.buttons = feedback_buttons(&out.message_id);
    }
    // A BI answer's chart goes as an image after the text (recorded with it in the egress
    // ledger, so a retried delivery does not post it twice).
    if let Some(chart) = out.data.as_ref().and_then(|d| d.chart.as_ref()) {
        reply.files.push(OutFile {
            name: "chart.png".into(),
            mime: "image/png".into(),
            alt: Some(chart.alt.clone()),
            bytes: chart.png.clone(),
        });
    }
    reply
}

/// 👍/👎 for the stored answer `message_id`.
pub fn feedback_buttons(message_id: &str) -> Vec<Button> {
    vec![
        Button {
            label: "👍".into(),
            action: "feedback_up".into(),
            value: message_id.into(),
        },
        Button {
            label: "👎".into(),
            action: "feedback_down".into(),
            value: message_id.into(),
        },
    ]
}

/// Sends `reply` to `to`: split within the platform's limits, every part recorded under
/// `key` in one transaction, then each part sent and confirmed in order. A part recorded by an
/// earlier delivery is not sent again; the first part that fails stops the rest (they stay
/// pending for the resender).
pub async fn deliver<P: ChatPlatform>(
    platform: &P,
    store: &Store,
    conversation: &str,
    to: &P::Target,
    reply: &Reply,
    key: &str,
) -> Result<()> {
    let (recorded, _) = record(platform, store, conversation, to, reply, key, None).await?;
    send_all(platform, store, &recorded).await
}

/// A reply's parts as recorded: each row, with its id when this call recorded it (`None`: an
/// earlier delivery did, and sends it).
type Recorded = Vec<(NewEgress, Option<String>)>;

/// Splits `reply` within the platform's limits and records every part under `key` in one
/// transaction, before any is sent, marking the inbox row `inbox` done in it; whether it did.
async fn record<P: ChatPlatform>(
    platform: &P,
    store: &Store,
    conversation: &str,
    to: &P::Target,
    reply: &Reply,
    key: &str,
    inbox: Option<&Lease>,
) -> Result<(Recorded, bool)> {
    let limits = platform.limits(to);
    let mut texts = split(&reply.text, limits.max_chars, limits.markup);
    let files_allowed = limits
        .max_parts
        .map_or(usize::MAX, |max| max.saturating_sub(texts.len()));
    if let Some(max) = limits.max_parts {
        texts.truncate(max);
    }
    let last = texts.len().saturating_sub(1);
    let mut bodies: Vec<PartBody<'_>> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| PartBody::Text {
            text,
            buttons: if i == last { &reply.buttons } else { &[] },
        })
        .collect();
    bodies.extend(reply.files.iter().take(files_allowed).map(PartBody::File));
    let mut rows = Vec::with_capacity(bodies.len());
    for (index, body) in bodies.into_iter().enumerate() {
        let dedupe_key = platform.part_key(key, index, to);
        let payload = platform.payload(
            to,
            &Part {
                index,
                dedupe_key: &dedupe_key,
                kind: reply.kind,
                body,
            },
        )?;
        rows.push(NewEgress {
            channel: platform.channel().as_str().into(),
            conversation: conversation.into(),
            dedupe_key,
            payload,
        });
    }
    let (ids, answered) = store.egress_record_answering(&rows, inbox).await?;
    Ok((rows.into_iter().zip(ids).collect(), answered))
}

/// Sends and confirms the parts [`record`] recorded, in order; the first failure stops the
/// rest (they stay pending for the resender). The lease on the parts still to send is renewed
/// while this runs, so waiting for pacing or a `Retry-After` never lets the resender take a
/// part this delivery is about to send.
async fn send_all<P: ChatPlatform>(platform: &P, store: &Store, recorded: &Recorded) -> Result<()> {
    let ours: Vec<&str> = recorded
        .iter()
        .filter_map(|(_, id)| id.as_deref())
        .collect();
    let send = async {
        for (row, id) in recorded {
            match id {
                Some(id) => send_recorded(platform, store, id, &row.payload).await?,
                None => tracing::info!(
                    channel = %platform.channel(),
                    dedupe_key = %row.dedupe_key,
                    "reply already recorded; not sending it again"
                ),
            }
        }
        Ok(())
    };
    holding_egress(store, &ours, send).await
}

/// Runs `work` while renewing the egress lease on `ids` every third of
/// [`crate::store::EGRESS_LEASE_MS`].
async fn holding_egress<F: std::future::Future<Output = Result<()>>>(
    store: &Store,
    ids: &[&str],
    work: F,
) -> Result<()> {
    if ids.is_empty() {
        return work.await;
    }
    let every =
        Duration::from_millis(u64::try_from(crate::store::EGRESS_LEASE_MS / 3).unwrap_or(10_000));
    let renew = async {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = store.egress_renew(ids).await {
                tracing::warn!(error = %e, "could not renew the lease on replies being sent");
            }
        }
    };
    tokio::select! {
        out = work => out,
        never = renew => never,
    }
}

/// Sends the recorded part `id` and confirms it with the platform's message id: paced,
/// each attempt counted (renewing the sender's lease), a 429 waited out up to the platform's
/// [`SendPolicy`]. An error leaves the part pending.
pub async fn send_recorded<P: ChatPlatform>(
    platform: &P,
    store: &Store,
    id: &str,
    payload: &Value,
) -> Result<()> {
    let policy = platform.send_policy();
    for _ in 0..policy.tries {
        // Wait for a free slot rather than drop the message.
        platform.pace(payload).await;
        store.egress_attempt(id).await?;
        match platform.send_once(payload).await {
            Ok(remote) => return store.egress_confirm(id, remote.as_deref()).await,
            Err(Error::RateLimited { retry_after, .. })
                if retry_after <= policy.max_retry_after =>
            {
                tracing::info!(channel = %platform.channel(), ?retry_after, "rate-limited; waiting");
                tokio::time::sleep(retry_after).await;
            }
            Err(Error::RateLimited { retry_after, .. }) => {
                return Err(Error::Upstream(format!(
                    "{} asked to wait {}s before sending; the reply stays pending",
                    platform.channel(),
                    retry_after.as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Upstream(format!(
        "{} kept rate-limiting after {} tries; the reply stays pending",
        platform.channel(),
        policy.tries
    )))
}

/// Sends one row a crash left pending ([`Outbox::resend`]): only a row of this platform, and
/// only while it is still pending (a row confirmed since it was listed is not sent again).
pub async fn resend<P: ChatPlatform>(platform: &P, store: &Store, row: &EgressRow) -> Result<()> {
    if row.channel != platform.channel().as_str() {
        return Err(Error::BadInput(format!(
            "egress row `{}` belongs to channel `{}`, not {}",
            row.id,
            row.channel,
            platform.channel()
        )));
    }
    let still_pending = store
        .egress_state(&row.dedupe_key)
        .await?
        .is_some_and(|(state, _)| state == "pending");
    if !still_pending {
        tracing::info!(id = %row.id, dedupe_key = %row.dedupe_key, "egress row already confirmed; not sending it again");
        return Ok(());
    }
    holding_egress(
        store,
        &[row.id.as_str()],
        send_recorded(platform, store, &row.id, &row.payload),
    )
    .await
}

/// Posts `out` into `chat` as a new message ([`Outbox::post`]: a webhook's `forward_to`),
/// each part recorded under `dedupe_key` before it is sent.
pub async fn post<P: ChatPlatform>(
    platform: &P,
    store: &Store,
    chat: &str,
    dedupe_key: &str,
    out: &Outbound,
) -> Result<()> {
    let to = platform.target_for_chat(chat, dedupe_key)?;
    let conversation = ConversationKey::new(platform.channel(), chat).as_storage_key();
    let reply = answer(platform, &to, out);
    deliver(platform, store, &conversation, &to, &reply, dedupe_key).await
}

/// An HTTP request to one of a platform's routes, as the platform sees it (no web framework
/// types).
#[derive(Debug, Clone, Copy)]
pub struct WebRequest<'a> {
    /// The route, e.g. `/slack/events`.
    pub path: &'a str,
    /// Header names (lowercase) and values that are valid text.
    pub headers: &'a [(String, String)],
    /// The raw body, before anything is parsed: signatures are checked over it.
    pub body: &'a [u8],
}

impl WebRequest<'_> {
    /// A header's value, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A platform's answer to an HTTP request (status codes are the HTTP layer's: an answer is
/// 200, an [`Error`] maps to its status there).
#[derive(Debug, Clone, PartialEq)]
pub enum WebReply {
    /// 200 with this JSON.
    Json(Value),
    /// 200 with an empty body.
    Empty,
}

/// A running chat platform, as the rest of conveyor sees it.
#[async_trait::async_trait]
pub trait Platform: Outbox + Any {
    /// Handles a request to one of its routes: verify → parse → [`accept`].
    async fn receive(self: Arc<Self>, cx: ChatContext, request: WebRequest<'_>)
    -> Result<WebReply>;

    /// What `serve` runs beside the HTTP server until `shutdown` (long polling, a gateway
    /// bot), if anything.
    fn background(
        self: Arc<Self>,
        _cx: ChatContext,
        _shutdown: CancellationToken,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }

    /// The work of answering an inbox row of its channel that the redriver claimed (a crash
    /// or a shutdown left it queued): [`resume`] with the way in that accepted it
    /// ([`route_of`]).
    fn resume(
        self: Arc<Self>,
        cx: &ChatContext,
        row: InboxRow,
    ) -> futures_util::future::BoxFuture<'static, ()>;

    /// Itself, for [`Platforms::get`].
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The running platforms of one app.
#[derive(Clone, Default)]
pub struct Platforms {
    running: Vec<Arc<dyn Platform>>,
}

impl Platforms {
    /// Wraps what the registry built.
    pub fn new(running: Vec<Arc<dyn Platform>>) -> Self {
        Self { running }
    }

    /// The running platform of type `T`, e.g. `platforms.get::<Slack>()`.
    pub fn get<T: Platform + Send + Sync>(&self) -> Option<Arc<T>> {
        self.running
            .iter()
            .find_map(|p| Arc::clone(p).into_any().downcast::<T>().ok())
    }

    /// The running platform of `channel`.
    pub fn by_channel(&self, channel: Channel) -> Option<Arc<dyn Platform>> {
        self.running
            .iter()
            .find(|p| p.channel() == channel)
            .map(Arc::clone)
    }

    /// Every running platform.
    pub fn all(&self) -> &[Arc<dyn Platform>] {
        &self.running
    }

    /// Their sending sides, for the resender.
    pub fn outboxes(&self) -> Vec<Arc<dyn Outbox>> {
        self.running
            .iter()
            .map(|p| Arc::clone(p) as Arc<dyn Outbox>)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn png(bytes: Vec<u8>) -> OutFile {
        OutFile {
            name: "revenue.png".into(),
            mime: "image/png".into(),
            alt: Some("Revenue by month, rising from 10k to 14k".into()),
            bytes,
        }
    }

    #[test]
    fn a_file_survives_the_ledger_payload_byte_for_byte() {
        // Every byte value, so nothing is lost to text encodings.
        let file = png((0..=255u8).cycle().take(70_001).collect());
        let payload = file.to_payload("Slack", 1 << 20).unwrap();
        // What a row holds after the store's text round trip.
        let stored: Value = serde_json::from_str(&payload.to_string()).unwrap();
        assert_eq!(OutFile::from_payload(&stored).unwrap(), file);
        assert_eq!(stored["size"], 70_001);
        assert_eq!(stored["name"], "revenue.png");
        let csv = OutFile {
            name: "orders.csv".into(),
            mime: "text/csv".into(),
            alt: None,
            bytes: b"id,total\n1,9.50\n".to_vec(),
        };
        let stored = csv.to_payload("Telegram", 1 << 20).unwrap();
        assert!(stored.get("alt").is_none(), "{stored}");
        assert_eq!(OutFile::from_payload(&stored).unwrap(), csv);
        let empty = OutFile {
            bytes: Vec::new(),
            ..csv
        };
        assert_eq!(
            OutFile::from_payload(&empty.to_payload("Discord", 10).unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_file_size_and_limit() {
        let file = png(vec![7; 2_048]);
        assert!(file.to_payload("Telegram", 2_048).is_ok());
        let e = file.to_payload("Telegram", 2_047).unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e:?}");
        let message = e.to_string();
        for needle in [
            "`revenue.png`",
            "2.0 KiB",
            "2048 bytes",
            "2047 bytes",
            "Telegram",
        ] {
            assert!(message.contains(needle), "{needle} not in: {message}");
        }
        // Whatever the platform allows, the ledger holds at most MAX_LEDGER_FILE_BYTES.
        let big = png(vec![0; MAX_LEDGER_FILE_BYTES + 1]);
        let message = big.to_payload("Slack", usize::MAX).unwrap_err().to_string();
        assert!(message.contains("8.0 MiB"), "{message}");
        assert!(
            big.to_payload("Slack", usize::MAX)
                .unwrap_err()
                .to_string()
                .contains(&format!("{MAX_LEDGER_FILE_BYTES} bytes"))
        );
    }

    #[test]
    fn a_damaged_recorded_file_is_refused() {
        let mut stored = png(b"abc".to_vec()).to_payload("Slack", 100).unwrap();
        stored["size"] = json!(4);
        let e = OutFile::from_payload(&stored).unwrap_err().to_string();
        assert!(e.contains("3 bytes, not the 4"), "{e}");
        stored["base64"] = json!("not base64!");
        assert!(OutFile::from_payload(&stored).is_err());
        assert!(OutFile::from_payload(&json!({"text": "a message"})).is_err());
    }

    #[test]
    fn images_and_alt_text() {
        let mut file = png(Vec::new());
        assert!(file.is_image());
        file.mime = "IMAGE/JPEG; q=1".into();
        assert!(file.is_image());
        file.mime = "image/svg+xml".into();
        assert!(!file.is_image());
        file.alt = Some("  ".into());
        assert_eq!(file.alt_within(10), None);
        file.alt = Some(" ünïcödé alt ".into());
        assert_eq!(file.alt_within(20).as_deref(), Some("ünïcödé alt"));
        assert_eq!(file.alt_within(5).as_deref(), Some("ünïc…"));
        assert_eq!(file.alt_within(5).unwrap().chars().count(), 5);
    }
}
