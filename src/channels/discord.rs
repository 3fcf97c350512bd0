//! Discord interactions (`[channels.discord]`): the Ed25519 check of `POST
//! /discord/interactions`, reading interactions, the `/ask` answer sent as follow-ups, and
//! clicks on buttons (clarifying choices, workflow approvals).
//!
//! This is the only file that knows serenity's types (the signature [`Verifier`]) and
//! Discord's JSON. Interactions are read leniently with small serde structs of our own.
//! Follow-ups are sent with plain reqwest to `{api_base_url}/webhooks/{application_id}/
//! {interaction_token}` (tests point `api_base_url` at a fake); each part is recorded in the
//! egress ledger (dedupe key `discord:{interaction id}:{part}`) before it is sent and confirmed
//! with the returned message id after. With `token_env` set, the gateway bot
//! ([`crate::channels::discord_bot`]) is built here too; [`Discord::resend`] sends an egress
//! row of either kind that a crash left pending.
//!
//! A reply's files ([`OutFile`]) follow its text, one message each, as Discord takes uploads:
//! multipart/form-data with the message as `payload_json` (naming the file in `attachments`:
//! `[{"id": 0, "filename", "description": alt text}]`) and the bytes as `files[0]`. Follow-ups
//! build that form here with reqwest; the gateway bot hands the file to serenity's REST client,
//! which builds the same form ([`attachment`] gives both the `attachments` entry). The
//! recorded part ([`Recorded`]) holds the file itself ([`OutFile::to_payload`]), so a resend
//! needs nothing else. Files are at most [`MAX_FILE_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serenity::interactions_endpoint::Verifier;
use tokio_util::sync::CancellationToken;

use crate::channels::chat::{
    self, Button, ChatContext, ChatPlatform, Limits, Markup, OutFile, Part, PartBody, Platform,
    SendPolicy, WebReply, WebRequest,
};
use crate::channels::discord_bot::{DiscordBot, proxy_base};
use crate::error::{Error, Result};
use crate::gateway::access::Subject;
use crate::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::store::{EgressRow, Store};
use crate::values::{Env, Secret};

/// Longest Discord message content; longer answers are sent as several follow-ups.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// The largest upload Discord takes from a bot in a server without boosts (10 MiB).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// The largest file conveyor sends to Discord: its upload limit, capped by the ledger's
/// ([`chat::MAX_LEDGER_FILE_BYTES`]).
pub const MAX_FILE_BYTES: usize = chat::file_cap(MAX_UPLOAD_BYTES);

/// The longest attachment description (its alt text).
const MAX_DESCRIPTION_CHARS: usize = 1_024;

/// How often one follow-up is tried when Discord answers 429.
const MAX_SEND_TRIES: u32 = 4;

/// Longest `retry_after` we honour before giving up on a follow-up (it stays pending).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long an interaction token is valid; a follow-up recorded longer ago cannot be sent.
pub const INTERACTION_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// What an egress row of the Discord channel holds: enough to send it again after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recorded {
    /// An interaction follow-up. The interaction token is kept with it because a resend needs
    /// it; it expires 15 minutes after the interaction, which bounds what it is worth.
    FollowUp {
        /// The interaction token.
        interaction_token: String,
        /// The `POST /webhooks/{application_id}/{token}` body.
        body: Value,
        /// The file uploaded with it as `files[0]` ([`OutFile::to_payload`]), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<Value>,
    },
    /// A gateway-bot message.
    ChannelMessage {
        /// The channel (or thread) id.
        channel_id: String,
        /// The `POST /channels/{id}/messages` body (with its `nonce`).
        body: Value,
        /// The file uploaded with it as `files[0]` ([`OutFile::to_payload`]), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<Value>,
    },
}

/// Fills a message body (a follow-up's or a bot message's) with one reply part: its text and
/// buttons, or a file's `attachments` entry; returns the file's recorded form for the ledger.
pub fn fill_body(body: &mut Value, part: PartBody<'_>) -> Result<Option<Value>> {
    Ok(match part {
        PartBody::Text { text, buttons } => {
            body["content"] = json!(text);
            if !buttons.is_empty() {
                body["components"] = components(buttons)?;
            }
            None
        }
        PartBody::File(file) => {
            let (attachments, recorded) = attachment(file)?;
            body["attachments"] = attachments;
            Some(recorded)
        }
    })
}

/// A file as a Discord message carries it: the message body's `attachments` (the file is part
/// `files[0]`, so its `id` is 0; the alt text is its `description`) and the file's ledger form.
/// A file over [`MAX_FILE_BYTES`] is refused.
pub fn attachment(file: &OutFile) -> Result<(Value, Value)> {
    let recorded = file.to_payload("Discord", MAX_UPLOAD_BYTES)?;
    let mut entry = json!({"id": 0, "filename": file.name});
    if let Some(alt) = file.alt_within(MAX_DESCRIPTION_CHARS) {
        entry["description"] = json!(alt);
    }
    Ok((json!([entry]), recorded))
}

fn default_api_base_url() -> String {
    "https://discord.com/api/v10".into()
}

/// `[channels.discord]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The application's public key (hex), from the Developer Portal's General Information.
    pub public_key: String,
    /// The application id.
    pub application_id: String,
    /// Name of the environment variable holding the bot token; when set, follow-ups carry it
    /// and `serve` runs the gateway bot (mentions and DMs).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The REST API base URL; only tests (or an HTTP proxy for Discord) change it. With
    /// `token_env` set it must end with `/api/v10`.
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
}

fn verifier(public_key: &str) -> std::result::Result<Verifier, String> {
    let bad = |why: &str| {
        format!(
            "channels.discord.public_key: {why}; copy the application's public key (64 hex characters) from the Discord Developer Portal"
        )
    };
    let bytes = hex::decode(public_key.trim()).map_err(|_| bad("not hex"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("not 32 bytes (64 hex characters)"))?;
    Verifier::try_new(key).map_err(|_| bad("not a valid Ed25519 public key"))
}

/// What a verified interaction asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Interaction {
    /// PING: answer `{"type":1}`.
    Ping,
    /// `/ask`: answer deferred, then follow up.
    Ask(Box<(Inbound, FollowUp)>),
    /// A clarifying choice clicked (a message component): asked as the clicker's next
    /// message once the choice is looked up ([`chat::choice::chosen`]), answered like `/ask`.
    /// The inbound's conversation and text are the interaction's; the choice's value is
    /// `value`.
    Choose(Box<(String, UserRef, FollowUp)>),
    /// A workflow approval's Approve or Reject button clicked (a message component): decided
    /// by the workflow engine, answered at once.
    Approval(Box<Approval>),
    /// Anything else: answered with an ephemeral note, not processed.
    Unsupported,
}

/// A click on a workflow approval's Approve or Reject button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The approval's id (the button's value).
    pub id: String,
    /// Approve (else reject).
    pub approve: bool,
    /// Who clicked.
    pub user: UserRef,
    /// The interaction.
    pub to: FollowUp,
}

/// The `custom_id` prefixes of a workflow approval's buttons (the approval step's actions,
/// written `conveyor:{action}:{value}` like every button).
const WF_APPROVE: &str = "conveyor:wf_approve:";
const WF_REJECT: &str = "conveyor:wf_reject:";

/// Where follow-ups go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The interaction's id: the idempotency key.
    pub interaction_id: String,
    /// The interaction token (valid for 15 minutes).
    pub token: String,
    /// The invoking user's id.
    pub user_id: String,
    /// The channel it was invoked in.
    pub channel_id: String,
    /// The server, when not a DM.
    pub guild_id: Option<String>,
}

#[derive(Deserialize)]
struct RawInteraction {
    id: String,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    token: String,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default)]
    guild_id: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    channel: Option<RawChannel>,
    #[serde(default)]
    member: Option<RawMember>,
    #[serde(default)]
    user: Option<RawUser>,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(default)]
    name: String,
    #[serde(default)]
    custom_id: String,
    #[serde(default)]
    options: Vec<RawOption>,
}

#[derive(Deserialize)]
struct RawOption {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct RawChannel {
    id: String,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(default)]
    user: Option<RawUser>,
}

#[derive(Deserialize)]
struct RawUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    global_name: Option<String>,
}

/// Reads a verified interaction body.
pub fn parse(body: &[u8]) -> Result<Interaction> {
    let raw: RawInteraction = serde_json::from_slice(body)
        .map_err(|e| Error::BadInput(format!("the Discord interaction cannot be read ({e})")))?;
    match raw.kind {
        1 => return Ok(Interaction::Ping),
        2 | 3 => {}
        _ => return Ok(Interaction::Unsupported),
    }
    if raw.kind == 3 {
        let custom_id = raw.data.as_ref().map_or("", |d| d.custom_id.as_str());
        let approval = custom_id
            .strip_prefix(WF_APPROVE)
            .map(|id| (id.to_string(), true))
            .or_else(|| {
                custom_id
                    .strip_prefix(WF_REJECT)
                    .map(|id| (id.to_string(), false))
            });
        if let Some((id, approve)) = approval {
            let clicked_by_someone = raw
                .member
                .as_ref()
                .and_then(|m| m.user.as_ref())
                .or(raw.user.as_ref())
                .is_some();
            if !chat::approval::is_id(&id) || !clicked_by_someone {
                tracing::info!(
                    custom_id,
                    "an approval button with a value conveyor did not write, or clicked by nobody"
                );
                return Ok(Interaction::Unsupported);
            }
            let (user, to) = where_from(raw);
            return Ok(Interaction::Approval(Box::new(Approval {
                id,
                approve,
                user,
                to,
            })));
        }
        let prefix = format!("conveyor:{}:", chat::choice::CHOOSE);
        let Some(value) = raw
            .data
            .as_ref()
            .and_then(|d| d.custom_id.strip_prefix(&prefix))
            .map(str::to_string)
        else {
            return Ok(Interaction::Unsupported);
        };
        let (user, to) = where_from(raw);
        return Ok(Interaction::Choose(Box::new((value, user, to))));
    }
    let Some(data) = raw
        .data
        .as_ref()
        .filter(|d| d.name == "ask" || d.name == "run")
    else {
        return Ok(Interaction::Unsupported);
    };
    let string_of = |o: &RawOption| o.value.as_ref().and_then(Value::as_str).map(str::to_string);
    let question = if data.name == "run" {
        // `/run workflow: NAME args: …` starts a workflow (the planner in front reads `/run`).
        let named = |n: &str| {
            data.options
                .iter()
                .find(|o| o.name == n)
                .and_then(string_of)
                .unwrap_or_default()
        };
        format!("/run {} {}", named("workflow"), named("args"))
            .trim_end()
            .to_string()
    } else {
        data.options
            .iter()
            .find(|o| o.name == "question")
            .and_then(string_of)
            .or_else(|| data.options.iter().find_map(string_of))
            .unwrap_or_default()
    };
    if question.trim().is_empty() {
        return Ok(Interaction::Unsupported);
    }
    let (user, to) = where_from(raw);
    let inbound = Inbound {
        idempotency_key: to.interaction_id.clone(),
        conversation: interaction_conversation(&to),
        user,
        text: question,
        attachments: Vec::new(),
    };
    Ok(Interaction::Ask(Box::new((inbound, to))))
}

/// The conversation of an interaction: its channel, in its server (`dm` outside one).
fn interaction_conversation(to: &FollowUp) -> ConversationKey {
    let scope = to.guild_id.as_deref().unwrap_or("dm");
    ConversationKey::new(CHANNEL, format!("{scope}:{}", to.channel_id))
}

/// Who sent an interaction, and where its follow-ups go.
fn where_from(raw: RawInteraction) -> (UserRef, FollowUp) {
    let channel_id = raw
        .channel_id
        .or(raw.channel.map(|c| c.id))
        .unwrap_or_else(|| "unknown".into());
    let guild_id = raw.guild_id;
    let user = raw
        .member
        .and_then(|m| m.user)
        .or(raw.user)
        .map(|u| UserRef {
            id: u.id,
            name: u.global_name.or(u.username),
        })
        .unwrap_or_else(|| UserRef {
            id: "unknown".into(),
            name: None,
        });
    let to = FollowUp {
        interaction_id: raw.id,
        token: raw.token,
        user_id: user.id.clone(),
        channel_id,
        guild_id,
    };
    (user, to)
}

/// A click on a workflow approval's button, decided by the workflow engine
/// ([`chat::Decider`]) and answered at once (deciding is one write): a recorded decision with a
/// message everyone in the channel sees ("✅ Approved by @…", without pinging anyone); anything
/// else (not one of the approvers, already decided) with a note only the clicker sees. The
/// answer is the interaction's own response, so a second click gets a response of its own and
/// nothing is posted twice.
async fn decide(cx: &ChatContext, a: &Approval) -> Result<WebReply> {
    let Some(decider) = &cx.decider else {
        tracing::info!(
            approval = %a.id,
            "a click on an approval button, but no workflow engine decides here; ignored"
        );
        return Ok(ephemeral("This approval cannot be decided here."));
    };
    // The person as the gateway writes Discord users (and `[roles]` and approvers name them):
    // `discord:{user id}`.
    let who = format!("{CHANNEL}:{}", a.user.id);
    let decided = decider.decide(&a.id, a.approve, &who).await?;
    if !decided.recorded {
        return Ok(ephemeral(&decided.message));
    }
    let verdict = if a.approve {
        "✅ Approved"
    } else {
        "❌ Rejected"
    };
    Ok(WebReply::Json(json!({
        "type": 4,
        "data": {
            "content": format!("{verdict} by <@{}>", a.user.id),
            "allowed_mentions": {"parse": []},
        }
    })))
}

/// An interaction answered at once with a note only the clicker sees.
fn ephemeral(text: &str) -> WebReply {
    WebReply::Json(json!({"type": 4, "data": {"content": text, "flags": 64}}))
}

/// Discord renders Markdown itself: answers pass unchanged; source links are written
/// `[title](<url>)` (the angle brackets keep Discord from embedding a preview).
pub struct DiscordStyle;

impl chat::markdown::Style for DiscordStyle {
    fn escape(&self, text: &str) -> String {
        text.to_string()
    }

    fn bold(&self, escaped: &str) -> String {
        format!("**{escaped}**")
    }

    fn link(&self, text: &str, url: &str) -> Option<String> {
        Some(format!("[{text}](<{url}>)"))
    }

    fn native(&self) -> bool {
        true
    }
}

/// The answer, then its sources, in Discord's Markdown.
pub fn render(out: &Outbound) -> String {
    chat::markdown::answer(out, &DiscordStyle)
}

/// Splits `text` into follow-ups of at most [`MAX_MESSAGE_CHARS`] characters, at paragraph
/// boundaries when it can.
pub fn split_content(text: &str) -> Vec<String> {
    chat::split(text, MAX_MESSAGE_CHARS, Markup::DiscordMarkdown)
}

/// The running Discord interactions channel.
pub struct Discord {
    verifier: Verifier,
    application_id: String,
    token: Option<Secret>,
    api_base_url: String,
    http: reqwest::Client,
    bot: Option<Arc<DiscordBot>>,
}

impl std::fmt::Debug for Discord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discord")
            .field("application_id", &self.application_id)
            .field("api_base_url", &self.api_base_url)
            .finish_non_exhaustive()
    }
}

impl Discord {
    /// Checks the public key and reads the bot token named by `config` through `env`.
    pub fn build(config: &DiscordConfig, env: &Env) -> Result<Self> {
        let verifier = verifier(&config.public_key).map_err(Error::Config)?;
        if config.application_id.trim().is_empty() {
            return Err(Error::Config(
                "channels.discord.application_id: set the application id".into(),
            ));
        }
        let token = match &config.token_env {
            Some(name) => Some(Secret::from_lookup(
                name,
                "channels.discord.token_env",
                env,
            )?),
            None => None,
        };
        let bot = match &token {
            Some(token) => Some(Arc::new(DiscordBot::build(
                token.clone(),
                &config.api_base_url,
            )?)),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal("building the Discord HTTP client", e))?;
        Ok(Self {
            verifier,
            application_id: config.application_id.trim().to_string(),
            token,
            api_base_url: config.api_base_url.trim_end_matches('/').to_string(),
            http,
            bot,
        })
    }

    /// The gateway bot, when `token_env` is set; `serve` runs it.
    pub fn bot(&self) -> Option<Arc<DiscordBot>> {
        self.bot.clone()
    }

    /// Sends one egress row of this channel that was left `pending` (a crash between record
    /// and confirm) and confirms it. The row's payload is a [`Recorded`]. A follow-up whose
    /// interaction token has expired (15 minutes) cannot be sent and is an error. A bot
    /// message carries its nonce with `enforce_nonce`, so if the first try did reach Discord
    /// within its nonce window, Discord returns that message instead of posting a second one.
    pub async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        let recorded: Recorded = serde_json::from_value(row.payload.clone()).map_err(|e| {
            Error::BadInput(format!(
                "egress row {} is not a Discord message this version can send ({e})",
                row.id
            ))
        })?;
        match recorded {
            Recorded::FollowUp { .. } => {
                let age_ms = chrono::Utc::now().timestamp_millis() - row.created_at;
                let ttl_ms = i64::try_from(INTERACTION_TOKEN_TTL.as_millis()).unwrap_or(i64::MAX);
                if age_ms >= ttl_ms {
                    return Err(Error::Conflict(format!(
                        "Discord follow-up {} ({}) was recorded {} minutes ago; its interaction token expires after 15 minutes, so it cannot be sent any more",
                        row.id,
                        row.dedupe_key,
                        age_ms / 60_000
                    )));
                }
                chat::send_recorded(self, store, &row.id, &row.payload).await
            }
            Recorded::ChannelMessage { .. } => {
                let Some(bot) = &self.bot else {
                    return Err(Error::Config(format!(
                        "egress row {} is a Discord bot message, but channels.discord.token_env is not set, so there is no bot token to send it with",
                        row.id
                    )));
                };
                chat::send_recorded(&**bot, store, &row.id, &row.payload).await
            }
        }
    }

    /// Checks `X-Signature-Ed25519` over `X-Signature-Timestamp || body`.
    pub fn verify(&self, signature: Option<&str>, timestamp: Option<&str>, body: &[u8]) -> bool {
        match (signature, timestamp) {
            (Some(sig), Some(ts)) => self.verifier.verify(sig, ts, body).is_ok(),
            _ => false,
        }
    }

    /// One follow-up `POST {api_base_url}/webhooks/{application_id}/{token}`, with `file` as a
    /// multipart upload; the message id.
    async fn follow_up(
        &self,
        interaction_token: &str,
        body: &Value,
        file: Option<&Value>,
    ) -> Result<Option<String>> {
        let url = format!(
            "{}/webhooks/{}/{interaction_token}",
            self.api_base_url, self.application_id
        );
        let mut request = match file {
            None => self.http.post(&url).json(body),
            Some(file) => self.http.post(&url).multipart(upload_form(body, file)?),
        };
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bot {}", token.expose()));
        }
        // The URL holds the interaction token: keep it out of the error.
        let response = request
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("Discord follow-up: {}", e.without_url())))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer.get("id").and_then(Value::as_str).map(str::to_string));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = Duration::from_secs_f64(
                answer
                    .get("retry_after")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0)
                    .clamp(0.0, 3_600.0),
            );
            return Err(Error::RateLimited {
                retry_after: wait,
                message: "Discord rate-limited a follow-up".into(),
            });
        }
        Err(Error::Upstream(format!(
            "Discord refused a follow-up (HTTP {status})"
        )))
    }
}

/// A message with one file as Discord takes it: `payload_json` (the message, naming the file in
/// its `attachments`) and the bytes as `files[0]`, with the file's name and type.
fn upload_form(body: &Value, file: &Value) -> Result<reqwest::multipart::Form> {
    let file = OutFile::from_payload(file)?;
    let part = reqwest::multipart::Part::bytes(file.bytes)
        .file_name(file.name.clone())
        .mime_str(&file.mime)
        .map_err(|e| {
            Error::BadInput(format!(
                "the file `{}` has a MIME type that cannot be sent to Discord (`{}`: {e})",
                file.name, file.mime
            ))
        })?;
    Ok(reqwest::multipart::Form::new()
        .text("payload_json", body.to_string())
        .part("files[0]", part))
}

/// Buttons as a Discord action row; `custom_id` is `conveyor:{action}:{value}` (at most 100
/// characters).
pub fn components(buttons: &[Button]) -> Result<Value> {
    let row: Vec<Value> = buttons
        .iter()
        .map(|b| {
            let id = format!("conveyor:{}:{}", b.action, b.value);
            if id.chars().count() > 100 {
                return Err(Error::BadInput(format!(
                    "the button `{}` carries {} characters; Discord's custom_id holds 100",
                    b.label,
                    id.chars().count()
                )));
            }
            Ok(json!({"type": 2, "style": 2, "label": b.label, "custom_id": id}))
        })
        .collect::<Result<_>>()?;
    Ok(json!([{"type": 1, "components": row}]))
}

#[async_trait::async_trait]
impl ChatPlatform for Discord {
    type Target = FollowUp;

    fn channel(&self) -> Channel {
        CHANNEL
    }

    fn limits(&self, _to: &FollowUp) -> Limits {
        Limits {
            max_chars: MAX_MESSAGE_CHARS,
            max_parts: None,
            markup: Markup::DiscordMarkdown,
        }
    }

    fn subject<'a>(&'a self, inbound: &'a Inbound, to: &'a FollowUp) -> Subject<'a> {
        Subject {
            user_id: &to.user_id,
            user_name: inbound.user.name.as_deref(),
            chat: to.channel_id.as_str().into(),
            space: to.guild_id.as_deref().map(Into::into),
            // The deferred answer goes to the invoking user's interaction, so a stranger gets
            // the pairing code there wherever they ran the command.
            direct: true,
        }
    }

    fn reply_key(&self, to: &FollowUp) -> String {
        format!("discord:{}", to.interaction_id)
    }

    fn answers_strangers(&self, _to: &FollowUp) -> bool {
        // The deferred interaction waits for a follow-up.
        true
    }

    fn escape(&self, text: &str) -> String {
        text.to_string()
    }

    fn render(&self, out: &Outbound, _to: &FollowUp) -> String {
        render(out)
    }

    fn target_for_chat(&self, _chat: &str, _dedupe_key: &str) -> Result<FollowUp> {
        Err(Error::Config(
            "posting into a Discord channel needs the bot token: set channels.discord.token_env"
                .into(),
        ))
    }

    fn payload(&self, to: &FollowUp, part: &Part<'_>) -> Result<Value> {
        let mut body = json!({"allowed_mentions": {"parse": []}});
        let file = fill_body(&mut body, part.body)?;
        serde_json::to_value(Recorded::FollowUp {
            interaction_token: to.token.clone(),
            body,
            file,
        })
        .map_err(|e| Error::internal("recording a Discord follow-up", e))
    }

    async fn send_once(&self, payload: &Value) -> Result<Option<String>> {
        match serde_json::from_value::<Recorded>(payload.clone()) {
            Ok(Recorded::FollowUp {
                interaction_token,
                body,
                file,
            }) => {
                self.follow_up(&interaction_token, &body, file.as_ref())
                    .await
            }
            _ => Err(Error::BadInput(
                "a recorded Discord follow-up is unreadable".into(),
            )),
        }
    }

    fn send_policy(&self) -> SendPolicy {
        SendPolicy {
            tries: MAX_SEND_TRIES,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

#[async_trait::async_trait]
impl crate::gateway::egress::Outbox for Discord {
    fn channel(&self) -> Channel {
        CHANNEL
    }

    async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        Discord::resend(self, store, row).await
    }

    async fn post(
        &self,
        store: &Store,
        chat: &str,
        dedupe_key: &str,
        out: &Outbound,
    ) -> Result<()> {
        match &self.bot {
            Some(bot) => chat::post(&**bot, store, chat, dedupe_key, out).await,
            None => chat::post(self, store, chat, dedupe_key, out).await,
        }
    }
}

#[async_trait::async_trait]
impl Platform for Discord {
    async fn receive(
        self: Arc<Self>,
        cx: ChatContext,
        request: WebRequest<'_>,
    ) -> Result<WebReply> {
        // Checked before the body is read: a missing or invalid signature gets 401 and nothing
        // is processed or stored (Discord sends such probes on purpose).
        if !self.verify(
            request.header("x-signature-ed25519"),
            request.header("x-signature-timestamp"),
            request.body,
        ) {
            tracing::warn!("refused a Discord interaction with a missing or invalid signature");
            return Err(Error::Unauthorized("invalid request signature".into()));
        }
        let (inbound, to) = match parse(request.body)? {
            Interaction::Ping => return Ok(WebReply::Json(json!({"type": 1}))),
            Interaction::Unsupported => {
                return Ok(WebReply::Json(json!({
                    "type": 4,
                    "data": {
                        "content": "Only the /ask command is supported, e.g. `/ask question: How do I request a refund?`",
                        "flags": 64
                    }
                })));
            }
            Interaction::Ask(ask) => *ask,
            Interaction::Choose(choice) => {
                let (value, user, to) = *choice;
                // The question back was answered either to an interaction (its conversation
                // is the channel in its server) or by the bot (the channel alone).
                let conversations = [
                    interaction_conversation(&to),
                    ConversationKey::new(CHANNEL, to.channel_id.clone()),
                ];
                let Some(inbound) =
                    chat::choice::chosen(&cx.store, &conversations, user, &value).await?
                else {
                    return Ok(ephemeral("This choice is no longer available; ask again."));
                };
                return match chat::accept(self, &cx, inbound, to).await? {
                    chat::Accepted::Started => Ok(WebReply::Json(json!({"type": 5}))),
                    // Clicked before: no second "thinking…" that nothing would ever answer.
                    chat::Accepted::Duplicate | chat::Accepted::Ignored(_) => {
                        Ok(ephemeral("Already asked: the answer is above."))
                    }
                };
            }
            Interaction::Approval(a) => return decide(&cx, &a).await,
        };
        // Deferred at once ({"type":5}); the answer follows from a tracked task.
        chat::accept(self, &cx, inbound, to).await?;
        Ok(WebReply::Json(json!({"type": 5})))
    }

    fn background(
        self: Arc<Self>,
        cx: ChatContext,
        shutdown: CancellationToken,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        let bot = self.bot.clone()?;
        Some(Box::pin(bot.run(cx, shutdown)))
    }

    fn resume(
        self: Arc<Self>,
        cx: &ChatContext,
        row: crate::store::InboxRow,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        if chat::route_of(&row) != crate::channels::discord_bot::ROUTE {
            return chat::resume(self, cx, row);
        }
        match &self.bot {
            Some(bot) => chat::resume(Arc::clone(bot), cx, row),
            // The bot was turned off since the message came in: it stays queued (and is
            // answered once the bot runs again) rather than being answered nowhere.
            None => {
                tracing::warn!(
                    key = %row.lease.key,
                    "a Discord bot message waits in the inbox, but the bot is not configured (channels.discord.token_env)"
                );
                Box::pin(async {})
            }
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Discord's channel (interactions and the gateway bot).
pub const CHANNEL: Channel = Channel::new("discord");

/// The registry entry of Discord (interactions, and the gateway bot with `token_env`).
pub const PLATFORM: crate::channels::PlatformKind =
    crate::channels::PlatformKind::of::<DiscordConfig>(
        &["/discord/interactions"],
        "Discord interactions are not configured; add [channels.discord]",
        Some("guilds"),
    );

#[async_trait::async_trait]
impl crate::channels::PlatformSection for DiscordConfig {
    const CHANNEL: Channel = CHANNEL;

    /// Reports every problem with its path.
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = verifier(&self.public_key) {
            problems.push(e);
        }
        if self.application_id.trim().is_empty() {
            problems.push("channels.discord.application_id: set the application id from the Discord Developer Portal".into());
        }
        if !(self.api_base_url.starts_with("https://") || self.api_base_url.starts_with("http://"))
        {
            problems.push(format!(
                "channels.discord.api_base_url: `{}` is not an http(s) URL; leave it out to use https://discord.com/api/v10",
                self.api_base_url
            ));
        } else if self.token_env.is_some()
            && let Err(e) = proxy_base(&self.api_base_url)
        {
            problems.push(e);
        }
    }

    fn build(&self, env: &Env) -> Result<Arc<dyn crate::channels::chat::Platform>> {
        Ok(Arc::new(Discord::build(self, env)?))
    }

    async fn doctor(&self, env: &Env, online: bool) -> Vec<crate::health::Check> {
        crate::channels::discord_doctor::doctor(self, env, online).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn long_answers_split_into_parts_of_at_most_2000_chars() {
        let paragraph = "é".repeat(900);
        let text = vec![paragraph.clone(); 5].join("\n\n");
        let parts = split_content(&text);
        assert!(parts.len() >= 3, "{}", parts.len());
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        let joined: String = parts.concat();
        assert_eq!(
            joined.chars().filter(|c| *c == 'é').count(),
            4_500,
            "nothing lost"
        );
        let one = "x".repeat(4_500);
        let parts = split_content(&one);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        assert_eq!(split_content("short"), vec!["short".to_string()]);
    }

    #[test]
    fn a_bad_public_key_is_a_config_error_naming_the_key() {
        let e = verifier("zz").err().unwrap();
        assert!(e.contains("channels.discord.public_key"), "{e}");
        assert!(
            verifier("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").is_ok()
        );
    }

    #[test]
    fn rows_recorded_before_files_still_read_and_files_come_back_whole() {
        let old = json!({"kind": "follow_up", "interaction_token": "t", "body": {"content": "hi"}});
        let Ok(Recorded::FollowUp { file: None, .. }) = serde_json::from_value(old) else {
            unreachable!()
        };
        let file = OutFile {
            name: "chart.png".into(),
            mime: "image/png".into(),
            alt: Some("d".repeat(1_100)),
            bytes: vec![1, 2, 3],
        };
        let (attachments, recorded) = attachment(&file).unwrap();
        assert_eq!(attachments[0]["id"], 0);
        assert_eq!(attachments[0]["filename"], "chart.png");
        let description = attachments[0]["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), MAX_DESCRIPTION_CHARS);
        assert_eq!(OutFile::from_payload(&recorded).unwrap(), file);
    }

    #[test]
    fn approval_clicks_are_read_and_odd_ones_unsupported() {
        let click = |custom_id: &str, who: &str| {
            format!(
                r#"{{"id":"9","type":3,"token":"t","guild_id":"g","channel_id":"c",{who}"data":{{"custom_id":"{custom_id}","component_type":2}}}}"#
            )
        };
        let member = r#""member":{"user":{"id":"u"}},"#;
        let id = "abcdefghijk23456789m";
        let Interaction::Approval(a) =
            parse(click(&format!("conveyor:wf_reject:{id}"), member).as_bytes()).unwrap()
        else {
            unreachable!()
        };
        assert_eq!((a.id.as_str(), a.approve), (id, false));
        assert_eq!(a.user.id, "u");
        assert_eq!(a.to.interaction_id, "9");
        let dm = r#""user":{"id":"v"},"#;
        assert!(matches!(
            parse(click(&format!("conveyor:wf_approve:{id}"), dm).as_bytes()).unwrap(),
            Interaction::Approval(a) if a.approve && a.user.id == "v"
        ));
        // A value conveyor did not write, or a click nobody made.
        for (custom_id, who) in [
            ("conveyor:wf_approve:ABC".to_string(), member),
            ("conveyor:wf_approve:".to_string(), member),
            (format!("conveyor:wf_approve:{id}"), ""),
        ] {
            assert_eq!(
                parse(click(&custom_id, who).as_bytes()).unwrap(),
                Interaction::Unsupported,
                "{custom_id}"
            );
        }
    }

    #[test]
    fn ask_reads_the_question_and_the_conversation() {
        let body = br#"{"id":"9","type":2,"token":"t","guild_id":"g","channel_id":"c","member":{"user":{"id":"u"}},"data":{"name":"ask","options":[{"name":"question","type":3,"value":"hi?"}]}}"#;
        let Interaction::Ask(ask) = parse(body).unwrap() else {
            unreachable!()
        };
        assert_eq!(ask.0.text, "hi?");
        assert_eq!(ask.0.conversation.id, "g:c");
        assert_eq!(ask.0.user.id, "u");
        assert_eq!(ask.1.interaction_id, "9");
    }

    #[test]
    fn run_becomes_a_run_command_with_its_arguments() {
        let body = br#"{"id":"10","type":2,"token":"t","channel_id":"c","user":{"id":"u"},"data":{"name":"run","options":[{"name":"workflow","type":3,"value":"digest"},{"name":"args","type":3,"value":"week=3"}]}}"#;
        let Interaction::Ask(ask) = parse(body).unwrap() else {
            unreachable!()
        };
        assert_eq!(ask.0.text, "/run digest week=3");
        assert_eq!(ask.0.conversation.id, "dm:c");
    }
}
