//! Slack through the Events API: `[channels.slack]`, the event envelope, the Web API calls
//! (`chat.postMessage`, `reactions.add`, `reactions.remove`, the file upload), Markdown →
//! mrkdwn, and the interactivity requests (👍/👎 feedback buttons, clarifying-choice buttons,
//! workflow approval buttons, the `/conveyor` slash command).
//!
//! This is the only file that knows Slack's JSON: an event becomes an [`Inbound`] here, and an
//! [`Outbound`] becomes Slack messages here. Every reply is recorded in the egress ledger before
//! it is sent and confirmed after Slack accepted it, so a retried event never posts twice.
//!
//! Files ([`OutFile`]) go up the way Slack now wants them (`files.upload` is retired):
//! `files.getUploadURLExternal` (file name, length and, for an image, its alt text as
//! `alt_txt`) → the bytes POSTed to the `upload_url` it returns → `files.completeUploadExternal`
//! sharing the file into the reply's channel and thread. The recorded part holds the file itself
//! (see [`OutFile::to_payload`]), so a resend repeats all three steps. A slash command's
//! `response_url` cannot take files: its answer's files are shared into the channel the command
//! was run in with the bot token (where the answer is posted too), so the bot must be able to
//! post there. Files are at most [`MAX_FILE_BYTES`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::channels::chat::{
    self, Accepted, Button, ChatContext, ChatPlatform, Limits, Markup, OutFile, Part, PartBody,
    Platform, Reply, ReplyKind, SendPolicy, WebReply, WebRequest,
};
use crate::channels::verify::{self, VerifyError};
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::gateway::access::{Decision, Subject};
use crate::gateway::egress::Outbox;
use crate::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::store::{EgressRow, Store};
use crate::values::{Env, Secret};

/// Longest Slack message we send; longer replies are split at paragraph boundaries.
pub const MAX_MESSAGE_CHARS: usize = 3_000;

/// The largest file Slack takes (1 GB); conveyor's own cap is lower
/// ([`chat::MAX_LEDGER_FILE_BYTES`]).
pub const MAX_UPLOAD_BYTES: usize = 1024 * 1024 * 1024;

/// The largest file conveyor sends to Slack.
pub const MAX_FILE_BYTES: usize = chat::file_cap(MAX_UPLOAD_BYTES);

/// The longest `alt_txt` Slack takes (`alt_txt_too_large` beyond it).
const MAX_ALT_CHARS: usize = 1_000;

/// How often one message is tried when Slack answers 429.
const MAX_SEND_TRIES: u32 = 4;

/// Longest `Retry-After` we honour before giving up on a message (it stays pending).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Slack allows about one message per second per channel, with short bursts; we pace sends to
/// that so a long, split answer is not rate-limited half-way.
const PER_CHANNEL_BURST: u32 = 3;

/// `metadata.event_type` of every message conveyor posts with `chat.postMessage`.
const METADATA_EVENT: &str = "conveyor_reply";

/// `action_id`s of the feedback buttons under an answer.
const FEEDBACK_UP: &str = "conveyor_feedback_up";
const FEEDBACK_DOWN: &str = "conveyor_feedback_down";
/// `action_id` of a clarifying choice's button.
const CHOOSE: &str = "conveyor_choose";
/// `action_id`s of a workflow approval's Approve and Reject buttons (the approval step's
/// actions `wf_approve` and `wf_reject`, in our namespace).
const WF_APPROVE: &str = "conveyor_wf_approve";
const WF_REJECT: &str = "conveyor_wf_reject";

/// What `/conveyor` or `/conveyor help` answers.
const COMMAND_HELP: &str = "Ask me about your documents: `/conveyor what is our refund policy?` \
    (the answer is posted in this channel). You can also mention me in a channel, or write to me \
    directly.";

fn default_api_base_url() -> String {
    "https://slack.com/api".into()
}

/// `[channels.slack]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Name of the environment variable holding the app's signing secret.
    pub signing_secret_env: String,
    /// Name of the environment variable holding the bot token (`xoxb-…`).
    pub bot_token_env: String,
    /// The Web API base URL; only tests change it.
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
    /// The bot's own user id, when known; messages from it are ignored (Slack also tells us
    /// in each event's `authorizations`).
    #[serde(default)]
    pub bot_user_id: Option<String>,
    /// Put 👍/👎 buttons under each answer (needs Interactivity turned on, with the request
    /// URL `https://YOUR-HOST/slack/interactions`).
    #[serde(default = "yes")]
    pub feedback_buttons: bool,
    /// Messages per second per channel (Slack allows about one, with short bursts); raise it
    /// only for a Slack-compatible API that allows more.
    #[serde(default = "one")]
    pub sends_per_second_per_channel: u32,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// The running Slack channel: secrets, the Web API client and the clock for signatures.
pub struct Slack {
    signing_secret: Secret,
    bot_token: Secret,
    api_base_url: String,
    bot_user_id: Option<String>,
    http: reqwest::Client,
    /// Unix seconds used for the signature window; 0 means the system clock. Tests set it to
    /// the fixed timestamp of pre-signed fixtures.
    clock: AtomicI64,
    feedback_buttons: bool,
    per_channel: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("api_base_url", &self.api_base_url)
            .field("bot_user_id", &self.bot_user_id)
            .finish_non_exhaustive()
    }
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTarget {
    /// Slack's `event_id`: the idempotency key.
    pub event_id: String,
    /// The channel (or DM) id.
    pub channel: String,
    /// The user's message, for the reaction.
    pub ts: String,
    /// The thread to answer in.
    pub thread_ts: String,
    /// A reply in a channel thread that does not mention the bot: answered only when conveyor
    /// already takes part in that thread (its conversation has turns).
    pub follow_up: bool,
    /// The sender's Slack user id (`U…`), for access checks.
    pub user: String,
    /// The workspace (`T…`) the event came through, when Slack gave it.
    pub team: Option<String>,
    /// The sender's own workspace (`user_team`, else the event's `team`): for a Slack Connect
    /// user in a shared channel it is not the installing workspace. Access checks use it.
    pub sender_team: Option<String>,
    /// A direct message with the bot.
    pub direct: bool,
}

/// A verified request, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `url_verification`: answer with the challenge.
    Challenge(String),
    /// A request to acknowledge and otherwise ignore, with why.
    Ignored(&'static str),
    /// A message to answer.
    Message(Box<(Inbound, ReplyTarget)>),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    event: Option<Event>,
    #[serde(default)]
    authorizations: Vec<Authorization>,
}

#[derive(Deserialize)]
struct Authorization {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    user_team: Option<String>,
    #[serde(default)]
    channel_type: Option<String>,
}

/// Reads a (verified) Events API body. `bot_user_id` is the configured id of our bot user.
pub fn parse(body: &[u8], bot_user_id: Option<&str>) -> Result<Incoming> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| Error::BadInput(format!("the Slack event body is not valid JSON ({e})")))?;
    match envelope.kind.as_str() {
        "url_verification" => {
            let challenge = envelope.challenge.ok_or_else(|| {
                Error::BadInput("a url_verification request without a challenge".into())
            })?;
            return Ok(Incoming::Challenge(challenge));
        }
        "event_callback" => {}
        _ => return Ok(Incoming::Ignored("not an event_callback")),
    }
    let Some(event) = envelope.event else {
        return Ok(Incoming::Ignored("an event_callback without an event"));
    };
    if event.kind != "app_mention" && event.kind != "message" {
        return Ok(Incoming::Ignored("an event type conveyor does not answer"));
    }
    if event.bot_id.is_some() {
        return Ok(Incoming::Ignored("a message from a bot"));
    }
    // Plain messages and thread broadcasts are answered; edits, deletes, joins, bot messages
    // and the rest are not.
    match event.subtype.as_deref() {
        None | Some("thread_broadcast" | "file_share") => {}
        Some(_) => {
            return Ok(Incoming::Ignored(
                "a message subtype conveyor does not answer",
            ));
        }
    }
    let own = envelope
        .authorizations
        .first()
        .and_then(|a| a.user_id.as_deref());
    let Some(user) = event.user else {
        return Ok(Incoming::Ignored("a message without a user"));
    };
    if Some(user.as_str()) == own || Some(user.as_str()) == bot_user_id {
        return Ok(Incoming::Ignored("a message from this bot"));
    }
    let (Some(event_id), Some(channel), Some(ts)) = (envelope.event_id, event.channel, event.ts)
    else {
        return Ok(Incoming::Ignored(
            "an event without event_id, channel or ts",
        ));
    };
    // In channels, a mention arrives twice (`app_mention` and `message`, with different event
    // ids): only the `app_mention` is answered. Other channel messages are answered only as
    // follow-ups in a thread conveyor is part of; direct messages always.
    let raw_text = event.text.as_deref().unwrap_or("");
    let is_dm = event.channel_type.as_deref() == Some("im") || channel.starts_with('D');
    let mut follow_up = false;
    if event.kind == "message" && !is_dm {
        let known: Vec<&str> = [own, bot_user_id].into_iter().flatten().collect();
        let mentions_bot = if known.is_empty() {
            raw_text.contains("<@")
        } else {
            known.iter().any(|id| raw_text.contains(&format!("<@{id}")))
        };
        if mentions_bot {
            return Ok(Incoming::Ignored(
                "a channel message that mentions the bot (its app_mention is answered)",
            ));
        }
        if event.thread_ts.is_none() {
            return Ok(Incoming::Ignored(
                "a channel message that does not mention the bot",
            ));
        }
        follow_up = true;
    }
    let text = strip_mentions(raw_text, &[own, bot_user_id]);
    if text.is_empty() {
        return Ok(Incoming::Ignored("a message without text"));
    }
    let sender_team = event.user_team.clone().or_else(|| event.team.clone());
    let team_id = envelope.team_id.or(event.team);
    let team = team_id.clone().unwrap_or_else(|| "-".into());
    let thread_ts = event.thread_ts.unwrap_or_else(|| ts.clone());
    let inbound = Inbound {
        idempotency_key: event_id.clone(),
        conversation: ConversationKey::new(CHANNEL, format!("{team}:{channel}:{thread_ts}")),
        user: UserRef {
            id: format!("{team}:{user}"),
            name: None,
        },
        text,
        attachments: Vec::new(),
    };
    Ok(Incoming::Message(Box::new((
        inbound,
        ReplyTarget {
            event_id,
            channel,
            ts,
            thread_ts,
            follow_up,
            user,
            team: team_id,
            sender_team,
            direct: is_dm,
        },
    ))))
}

/// Removes `<@BOTID>` mentions of the bot (any mention when the bot id is unknown, since an
/// `app_mention` always starts with one) and trims.
fn strip_mentions(text: &str, bots: &[Option<&str>]) -> String {
    let known: Vec<&str> = bots.iter().flatten().copied().collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('>') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let id = after[2..end].split('|').next().unwrap_or("");
        let leading = out.trim().is_empty();
        // A mention of the bot, or the leading mention that addressed it, is dropped.
        if !(known.contains(&id) || leading) {
            out.push_str(&after[..=end]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Slack mrkdwn: `&`, `<`, `>` escaped; `**bold**` → `*bold*`; `[text](url)` → `<url|text>`;
/// headings → bold lines; code stays in backticks (mrkdwn has them too).
pub struct SlackStyle;

impl chat::markdown::Style for SlackStyle {
    fn escape(&self, text: &str) -> String {
        escape(text)
    }

    fn bold(&self, escaped: &str) -> String {
        format!("*{escaped}*")
    }

    fn link(&self, text: &str, url: &str) -> Option<String> {
        Some(format!("<{}|{}>", escape(url), escape(text)))
    }

    fn heading(&self, title: &str) -> String {
        format!("*{}*", chat::markdown::inline(title, self).replace('*', ""))
    }
}

/// Markdown → Slack mrkdwn (see [`SlackStyle`]); `[n]` citation markers kept.
pub fn to_mrkdwn(markdown: &str) -> String {
    chat::markdown::convert(markdown, &SlackStyle)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The reply as Slack text: the answer, then its numbered sources.
pub fn render(out: &Outbound) -> String {
    chat::markdown::answer(out, &SlackStyle)
}

/// The answer of one Web API call.
enum Sent {
    Ok(Option<String>),
    Refused(String),
}

impl Slack {
    /// Reads the secrets named by `config` through `env`.
    pub fn build(config: &SlackConfig, env: &Env) -> Result<Self> {
        let signing_secret = Secret::from_lookup(
            &config.signing_secret_env,
            "channels.slack.signing_secret_env",
            env,
        )?;
        let bot_token =
            Secret::from_lookup(&config.bot_token_env, "channels.slack.bot_token_env", env)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::internal("building the Slack HTTP client", e))?;
        let burst = NonZeroU32::new(PER_CHANNEL_BURST).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            signing_secret,
            bot_token,
            api_base_url: config.api_base_url.trim_end_matches('/').to_string(),
            bot_user_id: config.bot_user_id.clone(),
            http,
            clock: AtomicI64::new(0),
            feedback_buttons: config.feedback_buttons,
            per_channel: RateLimiter::keyed(
                Quota::per_second(
                    NonZeroU32::new(config.sends_per_second_per_channel).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(burst),
            ),
        })
    }

    /// Pins the clock used for the signature window (tests with pre-signed requests); `None`
    /// goes back to the system clock.
    pub fn set_clock(&self, now: Option<i64>) {
        self.clock.store(now.unwrap_or(0), Ordering::Relaxed);
    }

    fn now(&self) -> i64 {
        match self.clock.load(Ordering::Relaxed) {
            0 => verify::unix_now(),
            pinned => pinned,
        }
    }

    /// Checks the v0 signature of a request over its raw body.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> std::result::Result<(), VerifyError> {
        verify::slack_v0(
            self.signing_secret.expose(),
            timestamp,
            body,
            signature,
            self.now(),
        )
    }

    /// Reads a verified body.
    pub fn parse(&self, body: &[u8]) -> Result<Incoming> {
        parse(body, self.bot_user_id.as_deref())
    }

    /// Sends `text` (mrkdwn) into the thread of `to` as an answer, split into messages of at
    /// most [`MAX_MESSAGE_CHARS`], through the shared path ([`chat::deliver`]): dedupe key
    /// `slack:{event_id}`, then `slack:{event_id}:{n}`; a part recorded earlier (a retried
    /// event) is not sent again.
    pub async fn deliver(
        &self,
        store: &Store,
        conversation: &str,
        to: &ReplyTarget,
        text: &str,
    ) -> Result<()> {
        let target = Target::Thread(to.clone());
        let key = self.reply_key(&target);
        chat::deliver(
            self,
            store,
            conversation,
            &target,
            &Reply::text(ReplyKind::Answer, text),
            &key,
        )
        .await
    }

    async fn reaction(&self, method: &str, to: &ReplyTarget) {
        let body = json!({"channel": to.channel, "timestamp": to.ts, "name": "eyes"});
        match self.call(method, &body).await {
            Ok(Sent::Ok(_)) => {}
            Ok(Sent::Refused(error)) => tracing::info!(method, error, "Slack refused a reaction"),
            Err(e) => tracing::info!(method, error = %e, "a reaction failed"),
        }
    }

    /// `POST /slack/events` once verified: `ssl_check` and `url_verification` answered, other
    /// events acknowledged, a message handed to the shared path.
    async fn on_event(self: Arc<Self>, cx: &ChatContext, body: &[u8]) -> Result<WebReply> {
        // `ssl_check` comes form-encoded (`ssl_check=1&token=…`); it only wants a 200.
        if body.starts_with(b"ssl_check=") || body.windows(11).any(|w| w == b"&ssl_check=") {
            return Ok(WebReply::Json(json!({"ok": true})));
        }
        let (inbound, to) = match self.parse(body)? {
            Incoming::Challenge(challenge) => {
                return Ok(WebReply::Json(json!({"challenge": challenge})));
            }
            Incoming::Ignored(reason) => {
                tracing::debug!(reason, "ignored a Slack event");
                return Ok(WebReply::Json(json!({"ok": true, "ignored": reason})));
            }
            Incoming::Message(m) => *m,
        };
        match chat::accept(self, cx, inbound, Target::Thread(to)).await? {
            Accepted::Ignored(reason) => Ok(WebReply::Json(json!({"ok": true, "ignored": reason}))),
            Accepted::Duplicate | Accepted::Started => Ok(WebReply::Json(json!({"ok": true}))),
        }
    }

    /// `POST /slack/interactions` (and `/slack/commands`) once verified: a 👍/👎 is stored; a
    /// slash command is acknowledged at once (Slack wants an answer within 3 s) and answered
    /// through its `response_url` by the shared path; a clarifying choice is asked as the
    /// clicker's next message, answered where the question back was; an approval click is
    /// decided ([`Slack::take_approval`]).
    async fn on_interaction(self: Arc<Self>, cx: &ChatContext, body: &[u8]) -> Result<WebReply> {
        match self.parse_interaction(body)? {
            Interaction::Ignored(reason) => {
                tracing::debug!(reason, "ignored a Slack interaction");
                Ok(WebReply::Empty)
            }
            Interaction::Feedback {
                message_id,
                user,
                rating,
                response_url,
            } => {
                self.record_feedback(
                    &cx.store,
                    &message_id,
                    &user,
                    rating,
                    response_url.as_deref(),
                )
                .await?;
                Ok(WebReply::Empty)
            }
            Interaction::Command(cmd) => {
                if let Some(text) = self.command_ack(&cx.gateway, &cmd).await? {
                    return Ok(WebReply::Json(
                        json!({"response_type": "ephemeral", "text": text}),
                    ));
                }
                let inbound = command_inbound(&cmd);
                chat::accept(self, cx, inbound, Target::Command(cmd)).await?;
                // An empty 200: Slack shows nothing until the answer arrives in the channel.
                Ok(WebReply::Empty)
            }
            Interaction::Choose(c) => {
                if let Some((inbound, target)) = choice_message(&cx.store, *c).await? {
                    chat::accept(self, cx, inbound, target).await?;
                }
                Ok(WebReply::Empty)
            }
            Interaction::Approval(a) => {
                self.take_approval(cx, *a).await?;
                Ok(WebReply::Empty)
            }
        }
    }

    /// A click on a workflow approval's button: the decision goes to the workflow engine
    /// ([`chat::Decider`]) before the request is acknowledged, and a tracked task says what
    /// came of it. A recorded decision is posted where the question is (its thread, or the
    /// channel), through the egress ledger under `slack:approval:{id}`, so it is posted once
    /// per approval; anything else (not one of the approvers, already decided) is told only to
    /// the person who clicked.
    async fn take_approval(self: Arc<Self>, cx: &ChatContext, a: Approval) -> Result<()> {
        let Some(decider) = &cx.decider else {
            tracing::info!(
                approval = %a.id,
                "a click on an approval button, but no workflow engine decides here; ignored"
            );
            return Ok(());
        };
        // The person as the gateway writes Slack users (and `[roles]` and approvers name them):
        // `slack:{team}:{user}`.
        let team = a.team.clone().unwrap_or_else(|| "-".into());
        let who = format!("{CHANNEL}:{team}:{}", a.user);
        let decided = decider.decide(&a.id, a.approve, &who).await?;
        let store = cx.store.clone();
        cx.tasks.spawn(async move {
            let told = if decided.recorded {
                self.post_decision(&store, &a, &team).await
            } else {
                self.tell_clicker(&a, &decided.message).await
            };
            if let Err(e) = told {
                tracing::warn!(approval = %a.id, error = %e, "could not say what came of an approval click");
            }
        });
        Ok(())
    }

    /// "✅ Approved by <@U…>" (or rejected) where the approval's question is: in its thread
    /// when it is in one, else in the channel.
    async fn post_decision(&self, store: &Store, a: &Approval, team: &str) -> Result<()> {
        let text = format!(
            "{} by <@{}>",
            if a.approve {
                "✅ Approved"
            } else {
                "❌ Rejected"
            },
            a.user
        );
        let thread = a.thread_ts.clone().unwrap_or_else(|| a.message_ts.clone());
        let conversation = ConversationKey::new(CHANNEL, format!("{team}:{}:{thread}", a.channel))
            .as_storage_key();
        let to = Target::Thread(ReplyTarget {
            event_id: format!("approval:{}", a.id),
            channel: a.channel.clone(),
            // No reaction: there is no message of the clicker's to mark.
            ts: String::new(),
            thread_ts: a.thread_ts.clone().unwrap_or_default(),
            follow_up: false,
            user: a.user.clone(),
            team: a.team.clone(),
            sender_team: a.team.clone(),
            direct: a.channel.starts_with('D'),
        });
        let key = self.reply_key(&to);
        chat::deliver(
            self,
            store,
            &conversation,
            &to,
            &Reply::text(ReplyKind::Notice, text),
            &key,
        )
        .await
    }

    /// `message` shown only to the person who clicked: through the click's `response_url`, or
    /// with `chat.postEphemeral` when the click came without one.
    async fn tell_clicker(&self, a: &Approval, message: &str) -> Result<()> {
        let text = escape(message);
        if let Some(url) = &a.response_url {
            let body = json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": text,
            });
            return self.post_response_url(url, &body).await;
        }
        let mut body = json!({"channel": a.channel, "user": a.user, "text": text});
        if let Some(thread) = &a.thread_ts {
            body["thread_ts"] = json!(thread);
        }
        match self.call("chat.postEphemeral", &body).await? {
            Sent::Ok(_) => Ok(()),
            Sent::Refused(error) => Err(Error::Upstream(format!(
                "Slack refused chat.postEphemeral ({error})"
            ))),
        }
    }

    /// The `ts` of a message conveyor already posted for `row` (found by its metadata in the
    /// thread, or in the channel since the row was recorded), if there is one.
    async fn find_posted(&self, row: &EgressRow) -> Result<Option<String>> {
        let channel = row
            .payload
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let oldest = format!("{}.000000", row.created_at / 1000 - 1);
        let (method, query) = match row.payload.get("thread_ts").and_then(Value::as_str) {
            Some(thread) => (
                "conversations.replies",
                vec![("channel", channel), ("ts", thread), ("oldest", &oldest)],
            ),
            None => (
                "conversations.history",
                vec![("channel", channel), ("oldest", &oldest)],
            ),
        };
        let mut query = query;
        query.push(("include_all_metadata", "true"));
        query.push(("limit", "200"));
        let query = serde_urlencoded::to_string(&query)
            .map_err(|e| Error::internal("encoding a Slack query", e))?;
        let response = self
            .http
            .get(format!("{}/{method}?{query}", self.api_base_url))
            .bearer_auth(self.bot_token.expose())
            .send()
            .await
            .map_err(|e| Error::upstream("Slack Web API", e))?;
        let answer: Value = response
            .json()
            .await
            .map_err(|e| Error::upstream("Slack Web API", e))?;
        if answer.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(Error::Upstream(format!(
                "Slack refused {method} ({})",
                answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no error given")
            )));
        }
        let found = answer
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| {
                m.pointer("/metadata/event_type").and_then(Value::as_str) == Some(METADATA_EVENT)
                    && m.pointer("/metadata/event_payload/dedupe_key")
                        .and_then(Value::as_str)
                        == Some(row.dedupe_key.as_str())
            })
            .and_then(|m| m.get("ts").and_then(Value::as_str).map(str::to_string));
        Ok(found)
    }

    /// One Web API call with the bot token.
    async fn call(&self, method: &str, body: &Value) -> Result<Sent> {
        let response = self
            .http
            .post(format!("{}/{method}", self.api_base_url))
            .bearer_auth(self.bot_token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| Error::upstream("Slack Web API", e))?;
        let answer = read_answer(method, response).await?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(Sent::Ok(
                answer.get("ts").and_then(Value::as_str).map(str::to_string),
            ))
        } else {
            Ok(Sent::Refused(refusal(&answer)))
        }
    }

    /// One Web API call with the bot token and a form body (the `files.*` upload methods are
    /// documented for forms); Slack's answer, or an error when it did not say `ok`.
    async fn call_form(&self, method: &str, form: &[(&str, String)]) -> Result<Value> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Error::internal("encoding a Slack form", e))?;
        let response = self
            .http
            .post(format!("{}/{method}", self.api_base_url))
            .bearer_auth(self.bot_token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| Error::upstream("Slack Web API", e))?;
        let answer = read_answer(method, response).await?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            Err(Error::Upstream(format!(
                "Slack refused {method} ({})",
                refusal(&answer)
            )))
        }
    }

    /// Sends one recorded file part: `files.getUploadURLExternal` → the bytes to its
    /// `upload_url` → `files.completeUploadExternal` into the part's channel (and thread).
    /// Slack's file id on success. Any step failing leaves the part pending, and a resend
    /// starts again from the first step (an upload never completed is discarded by Slack).
    async fn upload(&self, payload: &Value, file: &Value) -> Result<String> {
        let file = OutFile::from_payload(file)?;
        let channel = payload
            .get("channel")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadInput("a recorded Slack file names no channel".into()))?;
        let mut form = vec![
            ("filename", file.name.clone()),
            ("length", file.bytes.len().to_string()),
        ];
        if file.is_image()
            && let Some(alt) = file.alt_within(MAX_ALT_CHARS)
        {
            form.push(("alt_txt", alt));
        }
        let reserved = self.call_form("files.getUploadURLExternal", &form).await?;
        let (Some(upload_url), Some(file_id)) = (
            reserved.get("upload_url").and_then(Value::as_str),
            reserved.get("file_id").and_then(Value::as_str),
        ) else {
            return Err(Error::Upstream(
                "Slack answered files.getUploadURLExternal without an upload_url or file_id".into(),
            ));
        };
        // The upload URL is pre-signed by Slack (it came in Slack's answer to our token), so
        // the token is not sent to it.
        let response = self
            .http
            .post(upload_url)
            .header(reqwest::header::CONTENT_TYPE, file.mime.as_str())
            .body(file.bytes.clone())
            .send()
            .await
            .map_err(|e| {
                Error::Upstream(format!(
                    "uploading `{}` to Slack: {}",
                    file.name,
                    e.without_url()
                ))
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::RateLimited {
                retry_after: retry_after(&response),
                message: format!("Slack rate-limited the upload of `{}`", file.name),
            });
        }
        if !status.is_success() {
            return Err(Error::Upstream(format!(
                "Slack answered the upload of `{}` with HTTP {status}",
                file.name
            )));
        }
        let files = json!([{"id": file_id, "title": file.name}]).to_string();
        let mut form = vec![("files", files), ("channel_id", channel.to_string())];
        if let Some(thread) = payload.get("thread_ts").and_then(Value::as_str) {
            form.push(("thread_ts", thread.to_string()));
        }
        self.call_form("files.completeUploadExternal", &form)
            .await?;
        Ok(file_id.to_string())
    }

    /// The ledger payload of a file part: the file and where it is shared.
    fn file_payload(&self, to: &Target, kind: ReplyKind, file: &OutFile) -> Result<Value> {
        let (channel, thread_ts) = match to {
            Target::Thread(t) => (t.channel.as_str(), t.thread_ts.as_str()),
            // A response_url takes messages, not files: the answer's files are shared into the
            // channel the command was run in, where the answer itself is posted ("in_channel").
            Target::Command(c) if kind == ReplyKind::Answer => (c.channel.as_str(), ""),
            Target::Command(_) => {
                return Err(Error::BadInput(format!(
                    "Slack cannot show the file `{}` only to the person who ran the slash command (a response_url takes no files); send it with an answer, which is shared in the channel",
                    file.name
                )));
            }
        };
        let mut payload = json!({
            "channel": channel,
            "file": file.to_payload("Slack", MAX_FILE_BYTES)?,
        });
        if !thread_ts.is_empty() {
            payload["thread_ts"] = json!(thread_ts);
        }
        Ok(payload)
    }
}

/// Slack's answer to a Web API call: a 429 is [`Error::RateLimited`] with its `Retry-After`,
/// another failure status an [`Error::Upstream`]; the JSON otherwise (`ok` not checked).
async fn read_answer(method: &str, response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Error::RateLimited {
            retry_after: retry_after(&response),
            message: format!("Slack rate-limited {method}"),
        });
    }
    if !status.is_success() {
        return Err(Error::Upstream(format!(
            "Slack answered {method} with HTTP {status}"
        )));
    }
    response
        .json()
        .await
        .map_err(|e| Error::upstream("Slack Web API", e))
}

/// A response's `Retry-After`, in seconds (1 when absent or unreadable).
fn retry_after(response: &reqwest::Response) -> Duration {
    let secs = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(secs)
}

/// The `error` of an answer that is not `ok`.
fn refusal(answer: &Value) -> String {
    answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no error given")
        .to_string()
}

/// A verified request to `/slack/interactions` (or `/slack/commands`), read.
#[derive(Debug, Clone, PartialEq)]
pub enum Interaction {
    /// A 👍 (`rating` 1) or 👎 (`-1`) on a stored answer.
    Feedback {
        /// The stored answer's id (the button's value).
        message_id: String,
        /// Who clicked.
        user: String,
        /// 1 or -1.
        rating: i64,
        /// Where to say thanks (only to the person who clicked).
        response_url: Option<String>,
    },
    /// The `/conveyor` slash command.
    Command(Box<SlashCommand>),
    /// A clarifying choice clicked: asked as the person's next message.
    Choose(Box<Choice>),
    /// A workflow approval's Approve or Reject button clicked: decided by the workflow engine.
    Approval(Box<Approval>),
    /// Acknowledge and otherwise ignore, with why.
    Ignored(&'static str),
}

/// A click on a clarifying choice ([`chat::choice`]), where it was clicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The button's value (`{answer id}:{index}`).
    pub value: String,
    /// Who clicked.
    pub user: String,
    /// Their own workspace (a Slack Connect user's is not the installing one).
    pub user_team: Option<String>,
    /// The workspace the click came through.
    pub team: Option<String>,
    /// The channel of the message clicked.
    pub channel: String,
    /// The message clicked.
    pub message_ts: String,
    /// Its thread, when it is in one.
    pub thread_ts: Option<String>,
    /// Where a slash command's conversation is answered.
    pub response_url: Option<String>,
    /// Slack's id for the click.
    pub trigger_id: Option<String>,
}

/// A click on a workflow approval's Approve or Reject button, where it was clicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approval's id (the button's value).
    pub id: String,
    /// Approve (else reject).
    pub approve: bool,
    /// Who clicked.
    pub user: String,
    /// The workspace the click came through.
    pub team: Option<String>,
    /// The channel of the message clicked.
    pub channel: String,
    /// The message clicked (the approval's question).
    pub message_ts: String,
    /// Its thread, when it is in one.
    pub thread_ts: Option<String>,
    /// Where to tell only the person who clicked.
    pub response_url: Option<String>,
}

/// One `/conveyor …` invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    /// The question (the text after the command).
    pub text: String,
    /// Who ran it.
    pub user: String,
    /// Their name, as Slack sent it.
    pub user_name: Option<String>,
    /// The workspace.
    pub team: Option<String>,
    /// The channel it was run in.
    pub channel: String,
    /// Run in a direct message with the bot.
    pub direct: bool,
    /// Where the answer goes (valid for 30 minutes, up to 5 times).
    pub response_url: String,
    /// Unique per invocation: the idempotency key.
    pub trigger_id: String,
}

#[derive(Deserialize)]
struct CommandForm {
    command: String,
    #[serde(default)]
    text: String,
    user_id: String,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    channel_id: String,
    #[serde(default)]
    channel_name: Option<String>,
    response_url: String,
    trigger_id: String,
}

#[derive(Deserialize)]
struct PayloadForm {
    payload: String,
}

#[derive(Deserialize)]
struct BlockActions {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<ActionUser>,
    #[serde(default)]
    team: Option<IdOnly>,
    #[serde(default)]
    channel: Option<IdOnly>,
    #[serde(default)]
    container: Option<Container>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    trigger_id: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct ActionUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

/// The message a block action was clicked in.
#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    message_ts: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// Reads a (verified) interactivity or slash-command request: both are form-encoded; an
/// interaction has one `payload` field holding JSON, a slash command has `command`.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction> {
    if let Ok(form) = serde_urlencoded::from_bytes::<CommandForm>(body) {
        if form.command.trim_start_matches('/') != "conveyor" {
            tracing::info!(command = %form.command, "a slash command conveyor does not know");
        }
        let direct = form.channel_id.starts_with('D')
            || form.channel_name.as_deref() == Some("directmessage");
        return Ok(Interaction::Command(Box::new(SlashCommand {
            text: form.text.trim().to_string(),
            user: form.user_id,
            user_name: form.user_name,
            team: form.team_id,
            channel: form.channel_id,
            direct,
            response_url: form.response_url,
            trigger_id: form.trigger_id,
        })));
    }
    let form: PayloadForm = serde_urlencoded::from_bytes(body).map_err(|e| {
        Error::BadInput(format!(
            "a Slack interactivity request must be form-encoded with a `payload` field or be a slash command ({e})"
        ))
    })?;
    let payload: BlockActions = serde_json::from_str(&form.payload).map_err(|e| {
        Error::BadInput(format!(
            "the Slack interaction payload is not valid JSON ({e})"
        ))
    })?;
    if payload.kind != "block_actions" {
        return Ok(Interaction::Ignored(
            "an interaction type conveyor does not handle",
        ));
    }
    let Some(user) = payload.user else {
        return Ok(Interaction::Ignored("an interaction without a user"));
    };
    for action in payload.actions {
        let approve = match action.action_id.as_str() {
            WF_APPROVE => Some(true),
            WF_REJECT => Some(false),
            _ => None,
        };
        if let Some(approve) = approve {
            let container = payload.container.as_ref();
            let channel = container
                .and_then(|c| c.channel_id.clone())
                .or_else(|| payload.channel.as_ref().map(|c| c.id.clone()));
            let (Some(channel), Some(message_ts), Some(id)) = (
                channel,
                container.and_then(|c| c.message_ts.clone()),
                action.value.filter(|v| !v.is_empty()),
            ) else {
                return Ok(Interaction::Ignored(
                    "an approval click without its message, channel or value",
                ));
            };
            if !chat::approval::is_id(&id) {
                tracing::info!(value = %id, "an approval button with a value conveyor did not write");
                return Ok(Interaction::Ignored(
                    "an approval button with a value conveyor did not write",
                ));
            }
            return Ok(Interaction::Approval(Box::new(Approval {
                id,
                approve,
                user: user.id,
                team: payload.team.map(|t| t.id),
                channel,
                message_ts,
                thread_ts: container.and_then(|c| c.thread_ts.clone()),
                response_url: payload.response_url,
            })));
        }
        if action.action_id == CHOOSE {
            let container = payload.container.as_ref();
            let channel = container
                .and_then(|c| c.channel_id.clone())
                .or_else(|| payload.channel.as_ref().map(|c| c.id.clone()));
            let (Some(channel), Some(message_ts), Some(value)) = (
                channel,
                container.and_then(|c| c.message_ts.clone()),
                action.value.filter(|v| !v.is_empty()),
            ) else {
                return Ok(Interaction::Ignored(
                    "a choice without its message, channel or value",
                ));
            };
            return Ok(Interaction::Choose(Box::new(Choice {
                value,
                user: user.id,
                user_team: user.team_id,
                team: payload.team.map(|t| t.id),
                channel,
                message_ts,
                thread_ts: container.and_then(|c| c.thread_ts.clone()),
                response_url: payload.response_url,
                trigger_id: payload.trigger_id,
            })));
        }
        let rating = match action.action_id.as_str() {
            FEEDBACK_UP => 1,
            FEEDBACK_DOWN => -1,
            _ => continue,
        };
        let Some(message_id) = action.value.filter(|v| !v.is_empty()) else {
            return Ok(Interaction::Ignored("a feedback button without a value"));
        };
        return Ok(Interaction::Feedback {
            message_id,
            user: user.id,
            rating,
            response_url: payload.response_url,
        });
    }
    Ok(Interaction::Ignored("no action conveyor handles"))
}

impl Slack {
    /// Reads a verified interactivity or slash-command body.
    pub fn parse_interaction(&self, body: &[u8]) -> Result<Interaction> {
        parse_interaction(body)
    }

    /// What a slash command gets right away: help, an access reply, or `None` when the
    /// answer follows through `response_url`.
    pub async fn command_ack(
        &self,
        gateway: &Gateway,
        cmd: &SlashCommand,
    ) -> Result<Option<String>> {
        let target = Target::Command(Box::new(cmd.clone()));
        let inbound = command_inbound(cmd);
        match gateway
            .check_access(CHANNEL, &self.subject(&inbound, &target))
            .await
        {
            Decision::Allow => {}
            Decision::Ignore => return Ok(Some(chat::NOT_LET_IN.into())),
            Decision::Reply(text) => return Ok(Some(escape(&text))),
        }
        if cmd.text.is_empty() || cmd.text.eq_ignore_ascii_case("help") {
            return Ok(Some(COMMAND_HELP.into()));
        }
        Ok(None)
    }

    /// Records a 👍/👎 and thanks the person who clicked (only they see it).
    pub async fn record_feedback(
        &self,
        store: &Store,
        message_id: &str,
        user: &str,
        rating: i64,
        response_url: Option<&str>,
    ) -> Result<()> {
        store
            .feedback_record(message_id, user, CHANNEL.as_str(), rating)
            .await?;
        if let Some(url) = response_url {
            let body = json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": "Thanks for the feedback.",
            });
            if let Err(e) = self.post_response_url(url, &body).await {
                tracing::info!(error = %e, "thanking for feedback failed");
            }
        }
        Ok(())
    }

    /// POSTs to a `response_url`. Only Slack's own hooks host (or, in tests, the configured
    /// Web API's origin) is accepted: the URL comes in a request, so it is not trusted blindly.
    async fn post_response_url(&self, url: &str, body: &Value) -> Result<()> {
        if !self.trusted_response_url(url) {
            return Err(Error::BadInput(format!(
                "refusing to post to response_url `{url}`: not a https://hooks.slack.com/ URL"
            )));
        }
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| Error::upstream("Slack response_url", e))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::RateLimited {
                retry_after: Duration::from_secs(1),
                message: "Slack rate-limited a response_url post".into(),
            });
        }
        if !status.is_success() {
            return Err(Error::Upstream(format!(
                "Slack answered a response_url post with HTTP {status}"
            )));
        }
        Ok(())
    }

    fn trusted_response_url(&self, url: &str) -> bool {
        let origin = |u: &str| -> Option<String> {
            let rest = u.split_once("://")?;
            let host = rest.1.split('/').next()?;
            Some(format!("{}://{host}", rest.0))
        };
        url.starts_with("https://hooks.slack.com/")
            || (origin(url).is_some() && origin(url) == origin(&self.api_base_url))
    }
}

/// A slash command as the message it asks: its own conversation per channel and user, the
/// trigger id as idempotency key.
fn command_inbound(cmd: &SlashCommand) -> Inbound {
    let team = cmd.team.clone().unwrap_or_else(|| "-".into());
    Inbound {
        idempotency_key: format!("cmd:{}", cmd.trigger_id),
        conversation: ConversationKey::new(
            CHANNEL,
            format!("{team}:{}:cmd:{}", cmd.channel, cmd.user),
        ),
        user: UserRef {
            id: format!("{team}:{}", cmd.user),
            name: cmd.user_name.clone(),
        },
        // `/conveyor run NAME args` starts a workflow (the planner in front reads `/run`).
        text: match cmd.text.split_once(char::is_whitespace) {
            Some((word, rest)) if word.eq_ignore_ascii_case("run") => format!("/run {rest}"),
            _ if cmd.text.eq_ignore_ascii_case("run") => "/run".to_string(),
            _ => cmd.text.clone(),
        },
        attachments: Vec::new(),
    }
}

/// A clicked choice as the clicker's message, and where it is answered: in the thread of the
/// question back, or through the click's `response_url` when the question answered a slash
/// command (its conversation is the command's). `None` when the click offers nothing to ask.
async fn choice_message(store: &Store, c: Choice) -> Result<Option<(Inbound, Target)>> {
    let team = c.team.clone().unwrap_or_else(|| "-".into());
    let thread_ts = c.thread_ts.clone().unwrap_or_else(|| c.message_ts.clone());
    let in_thread = ConversationKey::new(CHANNEL, format!("{team}:{}:{thread_ts}", c.channel));
    let command = ConversationKey::new(CHANNEL, format!("{team}:{}:cmd:{}", c.channel, c.user));
    let user = UserRef {
        id: format!("{team}:{}", c.user),
        name: None,
    };
    let Some(inbound) =
        chat::choice::chosen(store, &[in_thread.clone(), command.clone()], user, &c.value).await?
    else {
        return Ok(None);
    };
    let direct = c.channel.starts_with('D');
    if inbound.conversation == command {
        let (Some(response_url), Some(trigger_id)) = (c.response_url, c.trigger_id) else {
            tracing::info!("a choice under a slash command's answer without a response_url");
            return Ok(None);
        };
        let cmd = SlashCommand {
            text: inbound.text.clone(),
            user: c.user,
            user_name: None,
            team: c.team,
            channel: c.channel,
            direct,
            response_url,
            trigger_id,
        };
        return Ok(Some((inbound, Target::Command(Box::new(cmd)))));
    }
    let target = ReplyTarget {
        event_id: inbound.idempotency_key.clone(),
        channel: c.channel,
        ts: c.message_ts,
        thread_ts,
        follow_up: false,
        user: c.user,
        sender_team: c.user_team.or_else(|| c.team.clone()),
        team: c.team,
        direct,
    };
    Ok(Some((inbound, Target::Thread(target))))
}

/// Where a Slack reply goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A thread (or, with an empty `thread_ts`, a new message in the channel).
    Thread(ReplyTarget),
    /// A slash command's `response_url`.
    Command(Box<SlashCommand>),
}

/// The text as a section with action buttons below.
fn blocks(text: &str, buttons: &[Button]) -> Value {
    let elements: Vec<Value> = buttons
        .iter()
        .map(|b| {
            json!({"type": "button", "action_id": format!("conveyor_{}", b.action), "value": b.value,
                   "text": {"type": "plain_text", "text": b.label, "emoji": true}})
        })
        .collect();
    json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": "conveyor_actions", "elements": elements}
    ])
}

#[async_trait::async_trait]
impl ChatPlatform for Slack {
    type Target = Target;

    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn limits(&self, to: &Target) -> Limits {
        Limits {
            max_chars: MAX_MESSAGE_CHARS,
            // A response_url takes up to five messages.
            max_parts: matches!(to, Target::Command(_)).then_some(5),
            markup: Markup::SlackMrkdwn,
        }
    }

    fn subject<'a>(&'a self, inbound: &'a Inbound, to: &'a Target) -> Subject<'a> {
        match to {
            Target::Thread(t) => Subject {
                user_id: &t.user,
                user_name: None,
                chat: t.channel.as_str().into(),
                // The sender's workspace, not the installing one: a Slack Connect user from
                // another workspace is not a member of a listed workspace.
                space: t.sender_team.as_deref().map(Into::into),
                direct: t.direct,
            },
            Target::Command(c) => Subject {
                user_id: &c.user,
                user_name: inbound.user.name.as_deref(),
                chat: c.channel.as_str().into(),
                space: c.team.as_deref().map(Into::into),
                // A slash command is only ever seen by the one who ran it until we answer,
                // so a stranger gets the pairing code (or refusal) privately, wherever they
                // ran it.
                direct: true,
            },
        }
    }

    fn reply_key(&self, to: &Target) -> String {
        match to {
            Target::Thread(t) => format!("slack:{}", t.event_id),
            Target::Command(c) => format!("slack:cmd:{}", c.trigger_id),
        }
    }

    fn part_key(&self, base: &str, index: usize, to: &Target) -> String {
        match to {
            Target::Thread(_) if index == 0 => base.to_string(),
            _ => format!("{base}:{}", index + 1),
        }
    }

    fn answers_strangers(&self, to: &Target) -> bool {
        matches!(to, Target::Command(_))
    }

    fn needs_conversation(&self, to: &Target) -> bool {
        matches!(to, Target::Thread(t) if t.follow_up)
    }

    fn escape(&self, text: &str) -> String {
        escape(text)
    }

    fn render(&self, out: &Outbound, to: &Target) -> String {
        match to {
            Target::Thread(_) => render(out),
            Target::Command(c) => format!(
                "<@{}> asked: {}\n\n{}",
                c.user,
                escape(&c.text),
                render(out)
            ),
        }
    }

    fn feedback_buttons(&self) -> bool {
        self.feedback_buttons
    }

    fn target_for_chat(&self, chat: &str, dedupe_key: &str) -> Result<Target> {
        Ok(Target::Thread(ReplyTarget {
            event_id: dedupe_key.to_string(),
            channel: chat.to_string(),
            ts: String::new(),
            thread_ts: String::new(),
            follow_up: false,
            user: String::new(),
            team: None,
            sender_team: None,
            direct: false,
        }))
    }

    fn payload(&self, to: &Target, part: &Part<'_>) -> Result<Value> {
        let (text, buttons) = match part.body {
            PartBody::Text { text, buttons } => (text, buttons),
            PartBody::File(file) => return self.file_payload(to, part.kind, file),
        };
        let mut payload = match to {
            Target::Thread(t) => {
                let mut payload = json!({"channel": t.channel, "text": text});
                if !t.thread_ts.is_empty() {
                    payload["thread_ts"] = json!(t.thread_ts);
                }
                // Slack has no idempotency key for chat.postMessage; the message carries its
                // ledger key as metadata instead, so a resend after a crash can first look
                // for it.
                payload["metadata"] = json!({
                    "event_type": METADATA_EVENT,
                    "event_payload": {"dedupe_key": part.dedupe_key},
                });
                payload
            }
            Target::Command(c) => json!({
                "response_url": c.response_url,
                "response_type": if part.kind == ReplyKind::Answer { "in_channel" } else { "ephemeral" },
                "replace_original": false,
                "text": text,
            }),
        };
        if !buttons.is_empty() {
            payload["blocks"] = blocks(text, buttons);
        }
        Ok(payload)
    }

    async fn send_once(&self, payload: &Value) -> Result<Option<String>> {
        if let Some(url) = payload.get("response_url").and_then(Value::as_str) {
            let mut body = payload.clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("response_url");
            }
            self.post_response_url(url, &body).await?;
            return Ok(None);
        }
        if let Some(file) = payload.get("file") {
            return self.upload(payload, file).await.map(Some);
        }
        match self.call("chat.postMessage", payload).await? {
            Sent::Ok(ts) => Ok(ts),
            // Left pending: the attempt is counted and the row can be sent again.
            Sent::Refused(error) => Err(Error::Upstream(format!(
                "Slack refused chat.postMessage ({error})"
            ))),
        }
    }

    async fn pace(&self, payload: &Value) {
        if let Some(channel) = payload.get("channel").and_then(Value::as_str) {
            self.per_channel.until_key_ready(&channel.to_string()).await;
        }
    }

    fn send_policy(&self) -> SendPolicy {
        SendPolicy {
            tries: MAX_SEND_TRIES,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }

    async fn show_working(&self, to: &Target) {
        if let Target::Thread(t) = to
            && !t.ts.is_empty()
        {
            self.reaction("reactions.add", t).await;
        }
    }

    async fn hide_working(&self, to: &Target) {
        if let Target::Thread(t) = to
            && !t.ts.is_empty()
        {
            self.reaction("reactions.remove", t).await;
        }
    }
}

#[async_trait::async_trait]
impl Outbox for Slack {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        // The crash may have come after Slack accepted the message and before it was
        // confirmed: look for it first, so it is not posted twice. A shared file carries no
        // metadata to find it by, so a file part is uploaded again.
        if row.payload.get("response_url").is_none() && row.payload.get("file").is_none() {
            match self.find_posted(row).await {
                Ok(Some(ts)) => {
                    tracing::info!(dedupe_key = %row.dedupe_key, ts, "the pending reply had reached Slack; confirming it without sending again");
                    return store.egress_confirm(&row.id, Some(&ts)).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(error = %e, "could not look for a pending reply in Slack (needs the *:history scopes); sending it again");
                }
            }
        }
        chat::send_recorded(self, store, &row.id, &row.payload).await
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
impl Platform for Slack {
    async fn receive(
        self: Arc<Self>,
        cx: ChatContext,
        request: WebRequest<'_>,
    ) -> Result<WebReply> {
        // The v0 signature is checked over the raw body before anything is parsed, so a forged
        // request gets 401 and nothing is stored.
        if let Err(e) = self.verify(
            request.header("x-slack-request-timestamp"),
            request.header("x-slack-signature"),
            request.body,
        ) {
            tracing::warn!(error = %e, "refused a Slack request");
            return Err(Error::Unauthorized(format!(
                "Slack signature check failed: {e}"
            )));
        }
        match request.path {
            "/slack/events" => self.on_event(&cx, request.body).await,
            _ => self.on_interaction(&cx, request.body).await,
        }
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

/// Slack's channel.
pub const CHANNEL: Channel = Channel::new("slack");

/// The registry entry of Slack.
pub const PLATFORM: crate::channels::PlatformKind = crate::channels::PlatformKind::of::<SlackConfig>(
    &["/slack/events", "/slack/interactions", "/slack/commands"],
    "Slack is not configured; add [channels.slack] to conveyor.toml",
    Some("workspaces"),
);

#[async_trait::async_trait]
impl crate::channels::PlatformSection for SlackConfig {
    const CHANNEL: Channel = CHANNEL;

    /// Reports every problem with its path.
    fn validate(&self, problems: &mut Vec<String>) {
        if self.signing_secret_env.trim().is_empty() {
            problems.push("channels.slack.signing_secret_env: name the environment variable that holds the signing secret, e.g. signing_secret_env = \"SLACK_SIGNING_SECRET\"".into());
        }
        if self.bot_token_env.trim().is_empty() {
            problems.push("channels.slack.bot_token_env: name the environment variable that holds the bot token, e.g. bot_token_env = \"SLACK_BOT_TOKEN\"".into());
        }
        if !(self.api_base_url.starts_with("https://") || self.api_base_url.starts_with("http://"))
        {
            problems.push(format!(
                "channels.slack.api_base_url: `{}` is not an http(s) URL; leave it out to use https://slack.com/api",
                self.api_base_url
            ));
        }
    }

    fn build(&self, env: &Env) -> Result<Arc<dyn crate::channels::chat::Platform>> {
        Ok(Arc::new(Slack::build(self, env)?))
    }

    async fn doctor(&self, env: &Env, online: bool) -> Vec<crate::health::Check> {
        doctor(self, env, online).await
    }
}

/// `conveyor doctor` for `[channels.slack]`: both secrets present and shaped like Slack's,
/// and (online) `auth.test` with the bot token.
pub async fn doctor(config: &SlackConfig, env: &Env, online: bool) -> Vec<crate::health::Check> {
    use crate::health::Check;
    const AREA: &str = "slack";
    let mut checks = Vec::new();
    let lookup = |var: &str| env.get(var).filter(|v| !v.trim().is_empty());
    match lookup(&config.signing_secret_env) {
        None => checks.push(Check::fail(
            AREA,
            format!("{} (signing secret) is not set", config.signing_secret_env),
            format!(
                "copy the Signing Secret from api.slack.com/apps → your app → Basic Information → App Credentials, then export {}=…",
                config.signing_secret_env
            ),
        )),
        Some(v) if v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()) => {
            checks.push(Check::ok(AREA, format!("{} holds a signing secret", config.signing_secret_env)));
        }
        Some(_) => checks.push(Check::warn(
            AREA,
            format!("{} does not look like a Slack signing secret (32 hex characters)", config.signing_secret_env),
            "use the Signing Secret (not the Client Secret or the Verification Token) from Basic Information → App Credentials",
        )),
    }
    let token = lookup(&config.bot_token_env);
    match token.as_deref() {
        None => checks.push(Check::fail(
            AREA,
            format!("{} (bot token) is not set", config.bot_token_env),
            format!(
                "install the app to your workspace (OAuth & Permissions → Install), copy the Bot User OAuth Token (xoxb-…), then export {}=…",
                config.bot_token_env
            ),
        )),
        Some(t) if t.starts_with("xoxb-") => {
            checks.push(Check::ok(AREA, format!("{} holds a bot token (xoxb-…)", config.bot_token_env)));
        }
        Some(t) if t.starts_with("xoxp-") => checks.push(Check::fail(
            AREA,
            format!("{} holds a user token (xoxp-…), not a bot token", config.bot_token_env),
            "use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions",
        )),
        Some(_) => checks.push(Check::warn(
            AREA,
            format!("{} does not start with xoxb-", config.bot_token_env),
            "use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions",
        )),
    }
    let Some(token) = token else { return checks };
    if !online {
        checks.push(Check::skip(AREA, "auth.test not called (--offline)"));
        return checks;
    }
    let url = format!("{}/auth.test", config.api_base_url.trim_end_matches('/'));
    let answer = async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?
            .post(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json::<Value>()
            .await
    }
    .await;
    match answer {
        Err(e) if e.is_decode() => checks.push(Check::fail(
            AREA,
            format!("{url} did not answer with Slack Web API JSON"),
            "check channels.slack.api_base_url (leave it out for https://slack.com/api)",
        )),
        Err(e) => checks.push(Check::fail(
            AREA,
            format!("cannot reach the Slack Web API at {url}: {e}"),
            "check the network (and a proxy, if any); conveyor needs outbound HTTPS to slack.com",
        )),
        Ok(v) if v.get("ok").and_then(Value::as_bool) == Some(true) => {
            let user = v.get("user").and_then(Value::as_str).unwrap_or("?");
            let user_id = v.get("user_id").and_then(Value::as_str).unwrap_or("?");
            let team = v.get("team").and_then(Value::as_str).unwrap_or("?");
            checks.push(Check::ok(
                AREA,
                format!("auth.test: signed in as @{user} ({user_id}) in workspace {team}"),
            ));
            if let Some(configured) = &config.bot_user_id
                && configured != user_id
            {
                checks.push(Check::warn(
                    AREA,
                    format!("channels.slack.bot_user_id is {configured}, but the token belongs to {user_id}"),
                    format!("set bot_user_id = \"{user_id}\" or remove it (Slack tells us in each event)"),
                ));
            }
        }
        Ok(v) => {
            let error = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error given");
            let advice = match error {
                "invalid_auth" | "not_authed" => {
                    "the token is wrong: copy the Bot User OAuth Token again"
                }
                "token_revoked" | "account_inactive" => {
                    "the app was uninstalled or the token revoked: reinstall the app and copy the new token"
                }
                _ => "see https://api.slack.com/methods/auth.test for this error",
            };
            checks.push(Check::fail(
                AREA,
                format!("auth.test failed: {error}"),
                advice,
            ));
        }
    }
    checks
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn conveyor_run_is_the_run_command() {
        let cmd = |text: &str| SlashCommand {
            text: text.into(),
            user: "U1".into(),
            user_name: None,
            team: Some("T1".into()),
            channel: "C1".into(),
            direct: false,
            response_url: "https://hooks.slack.com/x".into(),
            trigger_id: "1.2".into(),
        };
        assert_eq!(
            command_inbound(&cmd("run digest week=1")).text,
            "/run digest week=1"
        );
        assert_eq!(command_inbound(&cmd("RUN")).text, "/run");
        assert_eq!(
            command_inbound(&cmd("runway pricing?")).text,
            "runway pricing?"
        );
    }

    #[test]
    fn mrkdwn_conversion() {
        assert_eq!(to_mrkdwn("**bold** text"), "*bold* text");
        assert_eq!(
            to_mrkdwn("see [the docs](https://x.io/a?b=1&c=2) [1]"),
            "see <https://x.io/a?b=1&amp;c=2|the docs> [1]"
        );
        assert_eq!(to_mrkdwn("## Heading\nbody"), "*Heading*\nbody");
        assert_eq!(to_mrkdwn("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(to_mrkdwn("cited [2] and [3]."), "cited [2] and [3].");
    }

    #[test]
    fn split_at_paragraphs() {
        let para = "x".repeat(1_200);
        let text = [para.as_str(); 5].join("\n\n");
        let parts = chat::split(&text, MAX_MESSAGE_CHARS, Markup::SlackMrkdwn);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        assert_eq!(parts.join("\n\n"), text);
        let huge = "é".repeat(7_000);
        let parts = chat::split(&huge, MAX_MESSAGE_CHARS, Markup::SlackMrkdwn);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        assert_eq!(
            chat::split("short", MAX_MESSAGE_CHARS, Markup::SlackMrkdwn),
            vec!["short"]
        );
    }

    #[test]
    fn approval_clicks_are_read_with_their_place_and_odd_values_ignored() {
        let body = |action: &str, value: &str| {
            let payload = json!({
                "type": "block_actions", "user": {"id": "U1", "team_id": "T1"}, "team": {"id": "T1"},
                "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1", "thread_ts": "1.0"},
                "response_url": "https://hooks.slack.com/actions/x",
                "actions": [{"action_id": action, "value": value, "type": "button"}]
            });
            serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
        };
        let id = "abcdefghijk23456789m";
        let Interaction::Approval(a) = parse_interaction(body(WF_REJECT, id).as_bytes()).unwrap()
        else {
            panic!("not an approval")
        };
        assert_eq!(a.id, id);
        assert!(!a.approve);
        assert_eq!(
            (a.user.as_str(), a.team.as_deref(), a.channel.as_str()),
            ("U1", Some("T1"), "C1")
        );
        assert_eq!(
            (a.message_ts.as_str(), a.thread_ts.as_deref()),
            ("1.2", Some("1.0"))
        );
        assert!(matches!(
            parse_interaction(body(WF_APPROVE, id).as_bytes()).unwrap(),
            Interaction::Approval(a) if a.approve
        ));
        for odd in ["", "ABC", "a:b", &"a".repeat(65)] {
            assert!(
                matches!(
                    parse_interaction(body(WF_APPROVE, odd).as_bytes()).unwrap(),
                    Interaction::Ignored(_)
                ),
                "{odd}"
            );
        }
    }

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(strip_mentions("<@W111> Hi there!", &[None]), "Hi there!");
        assert_eq!(
            strip_mentions("ask <@U1> about <@U2>", &[Some("U1")]),
            "ask about <@U2>"
        );
    }

    #[test]
    fn events_become_inbound_or_are_ignored() {
        let mention = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","authorizations":[{"user_id":"UB"}],
            "event":{"type":"app_mention","user":"U1","text":"<@UB> hi","ts":"1.2","channel":"C1"}}"#;
        let Incoming::Message(m) = parse(mention, None).unwrap() else {
            panic!("not a message")
        };
        let (inbound, to) = *m;
        assert_eq!(inbound.text, "hi");
        assert_eq!(inbound.conversation.id, "T1:C1:1.2");
        assert_eq!(to.thread_ts, "1.2");
        let own = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","authorizations":[{"user_id":"UB"}],
            "event":{"type":"message","user":"UB","text":"hi","ts":"1.2","channel":"C1"}}"#;
        assert!(matches!(parse(own, None).unwrap(), Incoming::Ignored(_)));
        let configured = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev1",
            "event":{"type":"message","user":"UB","text":"hi","ts":"1.2","channel":"C1"}}"#;
        assert!(matches!(
            parse(configured, Some("UB")).unwrap(),
            Incoming::Ignored(_)
        ));
        let threaded = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev2",
            "event":{"type":"message","user":"U1","text":"more","ts":"1.5","thread_ts":"1.2","channel":"C1"}}"#;
        let Incoming::Message(m) = parse(threaded, None).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(m.0.conversation.id, "T1:C1:1.2");
        assert_eq!(m.1.ts, "1.5");
        assert!(m.1.follow_up);
        let plain = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev3","authorizations":[{"user_id":"UB"}],
            "event":{"type":"message","channel_type":"channel","user":"U1","text":"chatter","ts":"1.5","channel":"C1"}}"#;
        assert!(matches!(parse(plain, None).unwrap(), Incoming::Ignored(_)));
        let mention_twin = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev4","authorizations":[{"user_id":"UB"}],
            "event":{"type":"message","channel_type":"channel","user":"U1","text":"<@UB> hi","ts":"1.5","thread_ts":"1.2","channel":"C1"}}"#;
        assert!(matches!(
            parse(mention_twin, None).unwrap(),
            Incoming::Ignored(_)
        ));
        let dm = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev5","authorizations":[{"user_id":"UB"}],
            "event":{"type":"message","channel_type":"im","user":"U1","text":"hello","ts":"1.5","channel":"D1"}}"#;
        let Incoming::Message(m) = parse(dm, None).unwrap() else {
            panic!("a DM was ignored")
        };
        assert!(!m.1.follow_up);
        assert_eq!(m.0.conversation.id, "T1:D1:1.5");
    }
}
