//! Plain data shared by every part: what comes in (`Inbound`), what goes out (`Outbound`), and
//! the keys that name conversations and users. No I/O lives here, and no platform types.

use serde::{Deserialize, Serialize};

/// The surface a message arrived on, by its stable lowercase name (used in keys, logs and
/// metrics labels). The core names only its own surfaces ([`Channel::API`], [`Channel::CLI`],
/// [`Channel::WEBHOOK`]); each chat platform defines its channel in its own module
/// (`channels::slack::CHANNEL`), so adding a platform does not touch this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(&'static str);

impl Channel {
    /// The HTTP API (`POST /v1/messages`) and the web chat page that uses it.
    pub const API: Self = Self("api");
    /// The terminal (`conveyor chat`, `conveyor ask`).
    pub const CLI: Self = Self("cli");
    /// Generic signed webhooks.
    pub const WEBHOOK: Self = Self("webhook");
    /// Workflow runs (their agent steps' conversations, their default caller).
    pub const WORKFLOW: Self = Self("workflow");

    /// A channel named `name`: lowercase ASCII letters, digits and `-`, as in `[channels.NAME]`.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// Stable lowercase name, used in keys, logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// Most distinct channel names a process reads back (recorded answers name their channel);
/// more means the data is not ours.
const MAX_CHANNEL_NAMES: usize = 64;

impl<'de> Deserialize<'de> for Channel {
    /// Reads a channel name back (a recorded answer). Each distinct name is kept once for the
    /// life of the process, so names must look like channel names and there can be only a few.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use std::collections::BTreeSet;
        use std::sync::{Mutex, OnceLock};
        static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
        let name = String::deserialize(d)?;
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "`{}` is not a channel name (lowercase letters, digits, '-' and '_', at most 32)",
                name.chars().take(40).collect::<String>()
            )));
        }
        for known in [Self::API, Self::CLI, Self::WEBHOOK] {
            if known.0 == name {
                return Ok(known);
            }
        }
        let mut names = NAMES
            .get_or_init(|| Mutex::new(BTreeSet::new()))
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = names.get(name.as_str()) {
            return Ok(Self(known));
        }
        if names.len() >= MAX_CHANNEL_NAMES {
            return Err(serde::de::Error::custom(format!(
                "more than {MAX_CHANNEL_NAMES} distinct channel names; `{name}` is not one of ours"
            )));
        }
        let kept: &'static str = Box::leak(name.into_boxed_str());
        names.insert(kept);
        Ok(Self(kept))
    }
}

/// Names one conversation: the channel plus the channel's own id for it (a thread, a chat, a
/// client-chosen id on the API).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationKey {
    /// The surface the conversation lives on.
    pub channel: Channel,
    /// The surface's id for the conversation.
    pub id: String,
}

impl ConversationKey {
    /// Builds a key.
    pub fn new(channel: Channel, id: impl Into<String>) -> Self {
        Self {
            channel,
            id: id.into(),
        }
    }

    /// One string for storage and logs: `channel:id`.
    pub fn as_storage_key(&self) -> String {
        format!("{}:{}", self.channel, self.id)
    }
}

/// What is known about a person for access rules (`[attributes."PLATFORM:ID"]` in
/// conveyor.toml): attribute name → its values (`region = "EMEA"`, or several).
pub type Attributes = std::collections::BTreeMap<String, Vec<String>>;

/// One attribute value or several (`region = "EMEA"`, `regions = ["EMEA", "APAC"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl AttributeValue {
    /// The values.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(v) => vec![v.clone()],
            Self::Many(vs) => vs.clone(),
        }
    }
}

/// Who sent a message, as the channel knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserRef {
    /// The channel's stable id for the user.
    pub id: String,
    /// A display name, when the channel gives one.
    pub name: Option<String>,
}

/// A file that came with a message. Surfaces that do not support attachments never set any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as the user gave it.
    pub name: String,
    /// MIME type, when known.
    pub mime: Option<String>,
    /// Where to fetch it, when it is not inline.
    pub url: Option<String>,
}

/// A message that arrived from any surface, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The key that makes processing idempotent: the platform's event id, or the API's
    /// `Idempotency-Key`, or a fresh id when the surface gives none. Scoped by channel.
    pub idempotency_key: String,
    /// The conversation the message belongs to.
    pub conversation: ConversationKey,
    /// Who sent it.
    pub user: UserRef,
    /// The text, as typed.
    pub text: String,
    /// Files that came with it.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

impl Inbound {
    /// The message's key in the ingress ledger: `{channel}:{idempotency_key}`. The one place
    /// this format is written; the gateway claims it and surfaces look a repeat up by it.
    pub fn ledger_key(&self) -> String {
        format!("{}:{}", self.conversation.channel, self.idempotency_key)
    }
}

/// A numbered source behind an answer: `[n]` in the text points at `n` here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The number used in the answer text, starting at 1.
    pub n: usize,
    /// The document's title.
    pub title: String,
    /// Where the document came from: a file path or a URL.
    pub source: String,
    /// The id of the document in the index.
    pub doc_id: String,
    /// The id of the cited chunk in the index.
    pub chunk_id: String,
    /// The passage that was cited.
    pub snippet: String,
}

/// A reply to send back, normalised. Surfaces turn it into their own format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    /// The conversation it belongs to.
    pub conversation: ConversationKey,
    /// The stored id of the inbound message this answers.
    pub reply_to: String,
    /// The stored id of this reply.
    pub message_id: String,
    /// The answer, in Markdown, with `[n]` citation markers.
    pub text: String,
    /// The sources the markers point at.
    pub citations: Vec<Citation>,
    /// Which planner produced the answer (`offline`, or an LLM provider name).
    pub planner: String,
    /// The numbers behind a BI answer: the query, the result as a table, a chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataAnswer>,
    /// Choices offered with a question back ("which one did you mean?"), each a message the
    /// person can send as it is; platforms with buttons show them as buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Buttons that do something (a workflow's Approve / Reject), shown instead of the
    /// rating buttons on platforms that have buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// A button under a message that does something when clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The text on the button.
    pub label: String,
    /// What clicking does (`wf_approve`, `wf_reject`).
    pub action: String,
    /// Its argument (an approval id).
    pub value: String,
}

/// The numbers behind an answer from the data (a BI answer), for every surface: how the
/// question was understood, the SQL that ran, the result as a formatted table and as CSV, and
/// a chart where one helps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataAnswer {
    /// How the question was understood, in words.
    pub interpretation: String,
    /// The SQL that ran (over the caller's views).
    pub sql: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Which columns hold numbers (right-aligned in tables).
    pub numeric: Vec<bool>,
    /// The rows, each cell formatted for people (`$1,234.00`, `12.5%`, `2025-03`).
    pub rows: Vec<Vec<String>>,
    /// Whether the rows were cut at the row limit.
    pub truncated: bool,
    /// The result as CSV (values as stored, not formatted).
    pub csv: String,
    /// Where the API serves the CSV (set in `POST /v1/messages` answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_url: Option<String>,
    /// The chart, when one helps (a time series, a group-by, shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartImage>,
}

impl DataAnswer {
    /// The answer as the API returns it for stored message `message_id`: the PNG left out
    /// (served at `chart.png_url`), the files' URLs set.
    pub fn for_api(mut self, message_id: &str) -> Self {
        let base = format!("/v1/messages/{message_id}");
        self.csv_url = Some(format!("{base}/data.csv"));
        if let Some(c) = &mut self.chart {
            c.png = Vec::new();
            c.png_url = Some(format!("{base}/chart.png"));
            c.svg_url = Some(format!("{base}/chart.svg"));
        }
        self
    }
}

/// A chart rendered on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartImage {
    /// Its title.
    pub title: String,
    /// What it shows, for people who cannot see it.
    pub alt: String,
    /// The chart as SVG.
    pub svg: String,
    /// The chart as PNG (base64 in JSON; left out where `png_url` serves it).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "base64_bytes")]
    pub png: Vec<u8>,
    /// Where the API serves the PNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png_url: Option<String>,
    /// Where the API serves the SVG as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg_url: Option<String>,
}

/// Bytes as standard base64 text in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}
