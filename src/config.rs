//! Configuration: one TOML file, overridable key by key from the environment.
//!
//! Loading goes file → defaults → `CONVEYOR__SECTION__KEY` overrides → typed structs. Every
//! problem is reported at once: when a key fails to deserialise we note it (with its path and
//! where the value came from), drop that key and try again, so one typo does not hide the next.
//! Relative paths in the file resolve against the file's folder, not the working directory, so
//! `conveyor --config some/dir/conveyor.toml` behaves the same from anywhere.
//!
//! Secrets are never values here: the file names an environment variable (`url_env`,
//! `token_env`, ...), and [`Secret`] hides the value from `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "CONVEYOR__";

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// State store (ledgers, conversations, audit).
    pub store: StoreConfig,
    /// Knowledge index.
    pub index: IndexConfig,
    /// The planner that answers.
    pub llm: LlmConfig,
    /// Extractive answers of the offline planner.
    pub answer: AnswerConfig,
    /// Message handling.
    pub gateway: GatewayConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Tools the agent may call.
    pub tools: ToolsConfig,
    /// Prompt templates.
    pub prompts: PromptsConfig,
    /// Generic signed webhooks, by name: `[hooks.NAME]` serves `POST /hooks/NAME`.
    pub hooks: BTreeMap<String, HookConfig>,
    /// Chat platforms: `[channels.slack]`, ...
    pub channels: ChannelsConfig,
    /// Who may talk to the bot on each chat platform: `[access.slack]`, ...
    pub access: crate::gateway::access::AccessConfig,
    /// Delta tables of business data: `[lakehouse]`.
    pub lakehouse: crate::lakehouse::LakehouseConfig,
    /// Connector definitions: `[connectors]`.
    pub connectors: crate::connectors::ConnectorsConfig,
    /// Folder the config file lives in; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes; bigger bodies get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: HumanDuration,
    /// Upper bound for handling one request.
    pub request_timeout: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            drain_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` (relative to the config folder) or `postgres://…` without a password.
    pub url: String,
    /// Name of an environment variable holding the whole URL; wins over `url`. Use it when the
    /// URL carries credentials.
    pub url_env: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/conveyor.db".into(),
            url_env: None,
        }
    }
}

/// Which vector index backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexBackend {
    /// Qdrant's engine in-process, on a local folder.
    Embedded,
}

/// `[index]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Backend.
    pub backend: IndexBackend,
    /// Folder of the embedded index (relative to the config folder).
    pub path: PathBuf,
    /// Largest chunk, in characters.
    pub chunk_size: usize,
    /// Characters of the previous chunk repeated at the start of the next.
    pub chunk_overlap: usize,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// BM25 parameters of the sparse lexical vectors.
    pub bm25: Bm25Params,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            backend: IndexBackend::Embedded,
            path: PathBuf::from("data/index"),
            chunk_size: 1000,
            chunk_overlap: 150,
            top_k: 8,
            bm25: Bm25Params::default(),
        }
    }
}

/// `[index.bm25]`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f64,
    /// Length normalisation, 0 (none) to 1 (full).
    pub b: f64,
    /// Expected chunk length in tokens (after stop words are removed).
    pub avg_len: f64,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self {
            // k1 as in Lucene and bm25s; avg_len near the mean token count of chunks of mixed
            // length under the default chunk_size (full 1000-character chunks of English
            // prose have about 90 tokens after stop words; sections and short documents fewer).
            k1: 1.5,
            b: 0.75,
            avg_len: 60.0,
        }
    }
}

/// Which planner answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LlmProvider {
    /// The deterministic offline planner: extractive answers with citations, no LLM.
    Offline,
    /// OpenAI's chat completions API.
    Openai,
    /// Anthropic's messages API.
    Anthropic,
    /// Google Gemini's generateContent API.
    Gemini,
    /// A local Ollama daemon, through its OpenAI-compatible API.
    Ollama,
    /// Any server speaking OpenAI chat completions (vLLM, llama.cpp, LM Studio, …).
    OpenaiCompatible,
}

impl LlmProvider {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }

    /// Whether the provider cannot be used without an API key.
    pub fn needs_key(self) -> bool {
        matches!(self, Self::Openai | Self::Anthropic | Self::Gemini)
    }
}

/// `[llm]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Provider.
    pub provider: LlmProvider,
    /// Model name as the provider spells it (`gpt-4o-mini`, `claude-sonnet-4-5`, …).
    pub model: Option<String>,
    /// API root; required for `openai-compatible`, optional elsewhere (tests, proxies).
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f64>,
    /// Most tokens one model response may have.
    pub max_tokens: u64,
    /// Time limit of one provider request.
    pub timeout: HumanDuration,
    /// Most model calls in one turn that may ask for tools (each tool round is one); when
    /// they are spent, one last call without tools asks the model to answer with what it has.
    pub max_steps: usize,
    /// Time budget of a whole turn (model calls and tools).
    pub turn_timeout: HumanDuration,
    /// Tokens (prompt and completion, as the provider reports them) one turn may use.
    pub token_budget: u64,
    /// Retries of a request that failed with a timeout, a connection error, 5xx or 429.
    pub retries: u32,
    /// Ask for streamed (SSE) responses.
    pub stream: bool,
    /// Replace personal data with placeholders before text is sent to the provider.
    pub redact: bool,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: LlmProvider::Offline,
            model: None,
            base_url: None,
            api_key_env: None,
            temperature: None,
            max_tokens: 1024,
            // Below server.request_timeout (30s), so that when a provider hangs the offline
            // fallback still answers before the HTTP request itself times out.
            timeout: HumanDuration(Duration::from_secs(20)),
            max_steps: 6,
            turn_timeout: HumanDuration(Duration::from_secs(25)),
            token_budget: 50_000,
            retries: 3,
            stream: true,
            redact: true,
        }
    }
}

impl LlmConfig {
    /// The API key, read from `api_key_env`; `None` when no variable is named.
    pub fn api_key(&self) -> Result<Option<Secret>> {
        match &self.api_key_env {
            Some(name) => Secret::from_env(name, "llm.api_key_env").map(Some),
            None => Ok(None),
        }
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if self.provider == LlmProvider::Offline {
            return;
        }
        let provider = self.provider.as_str();
        if self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            problems.push(format!(
                "llm.model: provider {provider:?} needs a model name, e.g. model = \"{}\"",
                match self.provider {
                    LlmProvider::Anthropic => "claude-sonnet-4-5",
                    LlmProvider::Gemini => "gemini-2.5-flash",
                    LlmProvider::Ollama => "llama3.1",
                    _ => "gpt-4o-mini",
                }
            ));
        }
        match self.base_url.as_deref() {
            None if self.provider == LlmProvider::OpenaiCompatible => problems.push(
                "llm.base_url: provider \"openai-compatible\" needs the server's API root, e.g. base_url = \"http://127.0.0.1:8000/v1\"".into(),
            ),
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => problems
                .push(format!(
                    "llm.base_url: {url:?} is not an http:// or https:// URL"
                )),
            _ => {}
        }
        if self.provider.needs_key() && self.api_key_env.is_none() {
            problems.push(format!(
                "llm.api_key_env: provider {provider:?} needs an API key; name the environment variable that holds it, e.g. api_key_env = \"{}\"",
                match self.provider {
                    LlmProvider::Anthropic => "ANTHROPIC_API_KEY",
                    LlmProvider::Gemini => "GEMINI_API_KEY",
                    _ => "OPENAI_API_KEY",
                }
            ));
        }
        if let Err(e) = self.api_key() {
            problems.push(e.to_string());
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            problems.push("llm.temperature: must be between 0 and 2".into());
        }
        if self.max_tokens == 0 {
            problems.push("llm.max_tokens: must be at least 1".into());
        }
        if self.max_steps == 0 || self.max_steps > 50 {
            problems.push("llm.max_steps: must be between 1 and 50".into());
        }
        if self.timeout.0.is_zero() {
            problems.push("llm.timeout: must be longer than 0s".into());
        }
        if self.turn_timeout.0 < self.timeout.0 {
            problems.push(format!(
                "llm.turn_timeout: {} is shorter than llm.timeout ({}); a turn must have room for at least one request",
                self.turn_timeout, self.timeout
            ));
        }
        if self.token_budget == 0 {
            problems.push("llm.token_budget: must be at least 1".into());
        }
        if self.retries > 10 {
            problems.push("llm.retries: at most 10".into());
        }
    }
}

/// `[answer]`: how the offline planner builds extractive answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Most sentences quoted in one answer.
    pub max_sentences: usize,
    /// Share of the question's terms (0..1) that the retrieved passages must contain before
    /// we call them relevant; below it the answer says nothing relevant was found.
    pub min_coverage: f64,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            max_sentences: 3,
            min_coverage: 0.5,
        }
    }
}

/// `[gateway]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Previous turns of the conversation handed to the planner.
    pub history_turns: usize,
    /// How long a claim on an idempotency key holds before another process may take it over
    /// (covers a crash mid-processing).
    pub ingress_lease: HumanDuration,
    /// How long a duplicate request waits for the first one's answer before giving up.
    pub duplicate_wait: HumanDuration,
    /// How often replies left unconfirmed (crash, platform errors) are sent again.
    pub egress_retry_every: HumanDuration,
    /// Send attempts after which a reply is given up on (marked `failed`).
    pub egress_max_attempts: u32,
    /// A reply older than this is not sent any more (an answer hours late confuses more than
    /// it helps); it is marked `failed`.
    pub egress_max_age: HumanDuration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            history_turns: 10,
            ingress_lease: HumanDuration(Duration::from_secs(120)),
            duplicate_wait: HumanDuration(Duration::from_secs(30)),
            egress_retry_every: HumanDuration(Duration::from_secs(30)),
            egress_max_attempts: 8,
            egress_max_age: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Messages one user may send, e.g. `"20/min"`, or `"off"`.
    pub per_user: Rate,
    /// Messages one conversation may receive, e.g. `"60/min"`, or `"off"`.
    pub per_conversation: Rate,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_user: Rate::Limited {
                count: 20,
                per: Duration::from_secs(60),
            },
            per_conversation: Rate::Limited {
                count: 60,
                per: Duration::from_secs(60),
            },
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid address {s:?}: expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\""
        ))
    })
}

/// `[tools]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Folder of declarative tools (`*.toml`), relative to the config folder.
    pub dir: PathBuf,
    /// Host names that tools may reach even though they resolve to loopback, private or
    /// link-local addresses (e.g. an internal API). Matched by name, never by address.
    pub allow_hosts: Vec<String>,
    /// Default time limit of one tool call.
    pub timeout: HumanDuration,
    /// Default cap on a tool's response body, in bytes.
    pub max_response_bytes: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("tools"),
            allow_hosts: Vec::new(),
            timeout: HumanDuration(Duration::from_secs(10)),
            max_response_bytes: 256 * 1024,
        }
    }
}

/// `[prompts]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// Folder of prompt templates, relative to the config folder.
    pub dir: PathBuf,
    /// Template of the system prompt.
    pub system: String,
    /// Per-channel system prompt templates, by channel name (`slack`, `api`, …).
    pub channels: BTreeMap<String, String>,
    /// Constants available to every template by name, e.g. `company = "Lumen Labs"`.
    pub vars: BTreeMap<String, String>,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("prompts"),
            system: "system.md.j2".into(),
            channels: BTreeMap::new(),
            vars: BTreeMap::new(),
        }
    }
}

/// A rate such as `20/min`, or no limit (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// `count` events per `per`.
    Limited {
        /// Events allowed per period (also the burst).
        count: u32,
        /// The period.
        per: Duration,
    },
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let expected = "expected a rate like \"20/min\" (units: s, min, h) or \"off\"";
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid rate {s:?}: {expected}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("invalid rate {s:?}: {expected}"))?;
        if count == 0 {
            return Err(format!(
                "invalid rate {s:?}: the count must be at least 1 (use \"off\" for no limit)"
            ));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(format!("invalid rate {s:?}: {expected}")),
        };
        Ok(Self::Limited { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Limited { count, per } => {
                let unit = match per.as_secs() {
                    1 => "s",
                    3600 => "h",
                    _ => "min",
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written like `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid duration {s:?}: expected a number and a unit (ms, s, m, h, d), e.g. \"10s\""
            )
        };
        let n: u64 = n.parse().map_err(|_| bad())?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Self(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[channels]`: chat platforms; each starts only when its section is present.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// `[channels.slack]`: the Slack Events API.
    pub slack: Option<crate::channels::slack::SlackConfig>,
    /// `[channels.discord]`: Discord interactions (`POST /discord/interactions`).
    pub discord: Option<crate::channels::discord::DiscordConfig>,
    /// `[channels.telegram]`: the Telegram Bot API (long polling or webhook).
    pub telegram: Option<crate::channels::telegram::TelegramConfig>,
}

/// `[hooks.NAME]`: one generic webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// How requests prove they come from the sender.
    pub verify: HookVerify,
    /// Name of the environment variable holding the secret (HMAC key, `whsec_…` secret or
    /// bearer token).
    pub secret_env: String,
    /// minijinja template over the JSON payload that produces the message text; empty output
    /// means "ignore this delivery".
    pub text: String,
    /// Template for the conversation id.
    #[serde(default = "default_hook_conversation")]
    pub conversation: String,
    /// Template for the user id.
    #[serde(default = "default_hook_user")]
    pub user: String,
    /// Whether the answer is the HTTP response or fetched later from a status URL.
    #[serde(default)]
    pub reply: HookReply,
    /// Largest accepted body for this hook, in bytes (at most `server.max_body_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Also post the answer into a chat: `"slack:CHANNEL_ID"`, `"telegram:CHAT_ID"` or
    /// `"discord:CHANNEL_ID"` (that platform must be configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_to: Option<String>,
}

/// Where a webhook's answer is posted, parsed from `hooks.NAME.forward_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The platform.
    pub channel: crate::model::Channel,
    /// The platform's chat id.
    pub chat: String,
}

impl ForwardTarget {
    /// Parses `"slack:C0123"`, `"telegram:-100123"`, `"discord:123"`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        use crate::model::Channel;
        let (platform, chat) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not PLATFORM:CHAT_ID, e.g. \"slack:C0123456789\""))?;
        let channel = match platform {
            "slack" => Channel::Slack,
            "telegram" => Channel::Telegram,
            "discord" => Channel::Discord,
            other => {
                return Err(format!(
                    "`{other}` is not a chat platform; use slack, telegram or discord"
                ));
            }
        };
        let chat = chat.trim();
        if chat.is_empty() || chat.contains(char::is_whitespace) {
            return Err(format!("`{s}` has no chat id after the colon"));
        }
        Ok(Self {
            channel,
            chat: chat.to_string(),
        })
    }
}

fn default_hook_conversation() -> String {
    "{{ hook }}".into()
}

fn default_hook_user() -> String {
    "webhook:{{ hook }}".into()
}

/// `hooks.NAME.verify`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookVerify {
    /// GitHub-style `X-Hub-Signature-256: sha256=<hex>`.
    HmacSha256,
    /// Standard Webhooks `webhook-id` / `webhook-timestamp` / `webhook-signature`.
    StandardWebhooks,
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// `hooks.NAME.reply`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookReply {
    /// The answer is the response to the POST.
    #[default]
    Sync,
    /// 202 with a status URL to poll.
    Async,
}

impl HookConfig {
    fn validate(&self, name: &str, server_max: usize, problems: &mut Vec<String>) {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!(
                "hooks.{name}: a hook name may only hold letters, digits, '-' and '_' (it becomes the URL /hooks/NAME)"
            ));
        }
        if self.secret_env.trim().is_empty() {
            problems.push(format!(
                "hooks.{name}.secret_env: name the environment variable that holds the secret, e.g. secret_env = \"GITHUB_WEBHOOK_SECRET\""
            ));
        }
        if self.text.trim().is_empty() {
            problems.push(format!(
                "hooks.{name}.text: give a template that turns the payload into the message, e.g. text = \"{{{{ issue.title }}}}\""
            ));
        }
        if let Some(target) = &self.forward_to
            && let Err(e) = ForwardTarget::parse(target)
        {
            problems.push(format!("hooks.{name}.forward_to: {e}"));
        }
        match self.max_body_bytes {
            Some(0) => problems.push(format!("hooks.{name}.max_body_bytes: must be at least 1")),
            Some(n) if n > server_max => problems.push(format!(
                "hooks.{name}.max_body_bytes: {n} is larger than server.max_body_bytes ({server_max}); raise that too or lower this"
            )),
            _ => {}
        }
    }
}

/// A secret read from the environment. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Reads the variable `name`, or explains which key named it and how to fix it.
    pub fn from_env(name: &str, key: &str) -> Result<Self> {
        Self::from_lookup(name, key, &|n| std::env::var(n).ok())
    }

    /// Like [`Secret::from_env`], reading variables through `env` (tests inject their own).
    pub fn from_lookup(
        name: &str,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        match env(name).ok_or(()) {
            Ok(v) if !v.trim().is_empty() => Ok(Self(v)),
            Ok(_) => Err(Error::Config(format!(
                "{key} names the environment variable {name}, which is set but empty; export it with the secret value"
            ))),
            Err(_) => Err(Error::Config(format!(
                "{key} names the environment variable {name}, which is not set; export {name}=... before starting conveyor, or set {key} to the variable that holds the secret"
            ))),
        }
    }

    /// The secret itself. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Config {
    /// Loads `path` with the process environment's overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Config(format!(
                    "config file {} not found; run `conveyor init DIR` to create a starter project, or pass --config PATH",
                    path.display()
                ))
            } else {
                Error::Config(format!("cannot read config file {}: {e}", path.display()))
            }
        })?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Self::from_toml(&text, &path.display().to_string(), &base_dir, &env)
    }

    /// Parses `text` (named `origin` in messages), applies `env` overrides, resolves relative
    /// paths against `base_dir`, and validates. Every problem is reported in one error.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let file: toml::Table = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin} is not valid TOML: {e}")))?;
        let mut tree = toml::Value::Table(file);
        let defaults = toml::Value::try_from(Config::default())
            .map_err(|e| Error::internal("serialising default config", e))?;

        let mut problems = Vec::new();
        let mut from_env: BTreeMap<String, String> = BTreeMap::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                problems.push(format!(
                    "{name}: malformed override name; use CONVEYOR__SECTION__KEY, e.g. CONVEYOR__SERVER__LISTEN"
                ));
                continue;
            }
            let value = env_value(
                raw,
                lookup(&tree, &path).or_else(|| lookup(&defaults, &path)),
            );
            if let Err(e) = set_path(&mut tree, &path, value) {
                problems.push(format!("{name}: {e}"));
                continue;
            }
            from_env.insert(path.join("."), name.clone());
        }

        // Deserialise, and on each error record it, drop the offending key and retry, so that
        // all problems surface together. Bounded: every round removes one key.
        let mut config = None;
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
                Ok(c) => {
                    config = Some(c);
                    break;
                }
                Err(e) => {
                    let path: Vec<String> = e
                        .path()
                        .iter()
                        .filter_map(|seg| match seg {
                            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                            serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                            _ => None,
                        })
                        .collect();
                    let dotted = path.join(".");
                    let source = match from_env.get(&dotted) {
                        Some(var) => format!(" (from {var})"),
                        None => String::new(),
                    };
                    let what = if dotted.is_empty() {
                        "(top level)".to_string()
                    } else {
                        dotted
                    };
                    // toml appends "in `path`" to some messages; we already lead with it.
                    let message = e.inner().to_string();
                    let message = message.split("\nin `").next().unwrap_or("").trim();
                    problems.push(format!("{what}{source}: {message}"));
                    if path.is_empty() || !remove_path(&mut tree, &path) {
                        break;
                    }
                }
            }
        }

        let Some(mut config) = config else {
            return Err(config_error(origin, &problems));
        };
        config.base_dir = base_dir.to_path_buf();
        problems.extend(config.validate());
        if !problems.is_empty() {
            return Err(config_error(origin, &problems));
        }
        Ok(config)
    }

    /// Checks that go beyond types: consistency between keys, secrets present.
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.index.chunk_size < 100 {
            problems.push(format!(
                "index.chunk_size: {} is too small; use at least 100 characters",
                self.index.chunk_size
            ));
        }
        if self.index.chunk_overlap >= self.index.chunk_size {
            problems.push(format!(
                "index.chunk_overlap: {} must be smaller than index.chunk_size ({})",
                self.index.chunk_overlap, self.index.chunk_size
            ));
        }
        if self.index.top_k == 0 || self.index.top_k > 100 {
            problems.push("index.top_k: must be between 1 and 100".into());
        }
        let bm = &self.index.bm25;
        if !(bm.k1 > 0.0 && bm.k1.is_finite()) {
            problems.push("index.bm25.k1: must be a positive number, e.g. 1.2".into());
        }
        if !(0.0..=1.0).contains(&bm.b) {
            problems.push("index.bm25.b: must be between 0 and 1, e.g. 0.75".into());
        }
        if !(bm.avg_len > 0.0 && bm.avg_len.is_finite()) {
            problems.push("index.bm25.avg_len: must be a positive number of tokens".into());
        }
        if !(0.0..=1.0).contains(&self.answer.min_coverage) {
            problems.push("answer.min_coverage: must be between 0 and 1".into());
        }
        if self.answer.max_sentences == 0 {
            problems.push("answer.max_sentences: must be at least 1".into());
        }
        if self.server.max_body_bytes < 256 {
            problems.push("server.max_body_bytes: must be at least 256".into());
        }
        if let Err(e) = self.store_url() {
            problems.push(e.to_string());
        }
        self.llm.validate(&mut problems);
        for (name, hook) in &self.hooks {
            hook.validate(name, self.server.max_body_bytes, &mut problems);
            if let Some(Ok(target)) = hook.forward_to.as_deref().map(ForwardTarget::parse) {
                let configured = match target.channel {
                    crate::model::Channel::Slack => self.channels.slack.is_some(),
                    crate::model::Channel::Telegram => self.channels.telegram.is_some(),
                    crate::model::Channel::Discord => self.channels.discord.is_some(),
                    _ => false,
                };
                if !configured {
                    problems.push(format!(
                        "hooks.{name}.forward_to: {} is not configured; add [channels.{}]",
                        target.channel, target.channel
                    ));
                }
            }
        }
        if let Some(slack) = &self.channels.slack {
            slack.validate(&mut problems);
        }
        if let Some(discord) = &self.channels.discord {
            discord.validate(&mut problems);
        }
        if let Some(telegram) = &self.channels.telegram {
            telegram.validate(&mut problems);
        }
        self.access.validate(&mut problems);
        self.lakehouse.validate(&self.base_dir, &mut problems);
        self.connectors.validate(&mut problems);
        if self.llm.provider != LlmProvider::Offline
            && self.llm.turn_timeout.0 >= self.server.request_timeout.0
        {
            problems.push(format!(
                "llm.turn_timeout: {} must be shorter than server.request_timeout ({}), so that the offline planner can still answer when the LLM does not",
                self.llm.turn_timeout, self.server.request_timeout
            ));
        }
        problems
    }

    /// The store URL, read from `store.url_env` when set, with a relative SQLite path resolved
    /// against the config folder.
    pub fn store_url(&self) -> Result<String> {
        let raw = match &self.store.url_env {
            Some(var) => Secret::from_env(var, "store.url_env")?.expose().to_string(),
            None => self.store.url.clone(),
        };
        if let Some(rest) = raw.strip_prefix("sqlite://") {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let path = self.resolve(Path::new(path));
            let mut url = format!("sqlite://{}", path.display());
            if let Some(q) = query {
                url.push('?');
                url.push_str(q);
            }
            Ok(url)
        } else if raw.starts_with("sqlite:")
            || raw.starts_with("postgres://")
            || raw.starts_with("postgresql://")
        {
            Ok(raw)
        } else {
            Err(Error::Config(
                "store.url: expected sqlite://PATH or postgres://HOST/DB".to_string(),
            ))
        }
    }

    /// Resolves a path from the config against the config's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The embedded index folder, resolved.
    pub fn index_path(&self) -> PathBuf {
        self.resolve(&self.index.path)
    }

    /// The connectors folder, resolved.
    pub fn connectors_dir(&self) -> PathBuf {
        self.resolve(&self.connectors.dir)
    }
}

fn config_error(origin: &str, problems: &[String]) -> Error {
    let mut msg = format!(
        "{} problem{} in {origin}:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        msg.push_str("\n  - ");
        msg.push_str(p);
    }
    Error::Config(msg)
}

/// Turns an override's raw text into a TOML value of the same kind as the value it replaces,
/// so `CONVEYOR__SERVER__LISTEN=127.0.0.1:9000` stays a string and
/// `CONVEYOR__INDEX__TOP_K=5` becomes an integer.
fn env_value(raw: &str, existing: Option<&toml::Value>) -> toml::Value {
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match existing {
        Some(toml::Value::String(_)) => toml::Value::String(raw.into()),
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.into())),
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(raw.into())),
        Some(toml::Value::Boolean(_)) => match raw.trim() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => toml::Value::String(raw.into()),
        },
        _ => parsed().unwrap_or_else(|| toml::Value::String(raw.into())),
    }
}

fn lookup<'a>(v: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    let mut cur = v;
    for seg in path {
        cur = cur.as_table()?.get(seg)?;
    }
    Some(cur)
}

fn set_path(
    tree: &mut toml::Value,
    path: &[String],
    value: toml::Value,
) -> std::result::Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur = tree;
    for seg in parents {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("cannot set a key under {seg}, which is not a table"))?;
        cur = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = cur
        .as_table_mut()
        .ok_or_else(|| format!("cannot set {last}: its parent is not a table"))?;
    table.insert(last.clone(), value);
    Ok(())
}

fn remove_path(tree: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = tree;
    for seg in parents {
        match cur.as_table_mut().and_then(|t| t.get_mut(seg)) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_table_mut().and_then(|t| t.remove(last)).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml(text, "conveyor.toml", Path::new("/srv/app"), &env)
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store_url().unwrap(), "sqlite:///srv/app/data/conveyor.db");
        assert_eq!(c.index_path(), PathBuf::from("/srv/app/data/index"));
        assert_eq!(
            c.lakehouse.location(&c.base_dir).unwrap(),
            crate::lakehouse::Location::Local(PathBuf::from("/srv/app/data/lake"))
        );
        assert_eq!(c.connectors_dir(), PathBuf::from("/srv/app/connectors"));
        let c = load(
            "[lakehouse]\nuri = \"s3://bucket/lake\"\nstorage = { AWS_REGION = \"eu-west-1\" }\n",
            &[],
        )
        .unwrap();
        let loc = c.lakehouse.location(&c.base_dir).unwrap();
        let crate::lakehouse::Location::Remote { url, options } = &loc else {
            unreachable!("{loc:?}")
        };
        assert_eq!(url.as_str(), "s3://bucket/lake/");
        assert_eq!(options["AWS_REGION"], "eu-west-1");
        for (uri, storage, want) in [
            (
                "gs://bucket/lake",
                "{ GOOGLE_BASE_URL = \"http://127.0.0.1:9023\" }",
                "gs://bucket/lake/",
            ),
            (
                "az://container/lake/",
                "{ AZURE_STORAGE_ACCOUNT_NAME = \"acct\" }",
                "az://container/lake/",
            ),
            (
                "abfss://fs@acct.dfs.core.windows.net/lake",
                "{}",
                "abfss://fs@acct.dfs.core.windows.net/lake/",
            ),
        ] {
            let c = load(
                &format!("[lakehouse]\nuri = \"{uri}\"\nstorage = {storage}\n"),
                &[],
            )
            .unwrap();
            let loc = c.lakehouse.location(&c.base_dir).unwrap();
            let crate::lakehouse::Location::Remote { url, .. } = &loc else {
                unreachable!("{loc:?}")
            };
            assert_eq!(url.as_str(), want);
        }
        for (toml, want) in [
            ("uri = \"hdfs://nn/lake\"", "`hdfs://` is not supported"),
            ("uri = \"s3://\"", "names no bucket"),
            ("uri = \"az://\"", "names no container"),
            (
                "uri = \"s3://b/l\"\nstorage = { AWS_SECRET_ACCESS_KEY = \"x\" }",
                "credentials do not belong",
            ),
            (
                "uri = \"gs://b/l\"\nstorage = { service_account_key = \"{}\" }",
                "set the environment variable GOOGLE_SERVICE_ACCOUNT_KEY",
            ),
            (
                "uri = \"az://c/l\"\nstorage = { azure_storage_account_key = \"x\" }",
                "set the environment variable AZURE_STORAGE_ACCOUNT_KEY",
            ),
            (
                "uri = \"az://c/l\"\nstorage = { SAS_TOKEN = \"x\" }",
                "set the environment variable AZURE_STORAGE_SAS_KEY",
            ),
            (
                "uri = \"abfs://c/l\"\nstorage = { AZURE_CLIENT_SECRET = \"x\" }",
                "set the environment variable AZURE_CLIENT_SECRET",
            ),
            (
                "storage = { AWS_REGION = \"x\" }",
                "only used with an object store",
            ),
        ] {
            let err = load(&format!("[lakehouse]\n{toml}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("lakehouse.") && err.contains(want),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    fn env_overrides_keep_types() {
        let c = load(
            "[index]\ntop_k = 3\n",
            &[
                ("CONVEYOR__SERVER__LISTEN", "127.0.0.1:9000"),
                ("CONVEYOR__INDEX__TOP_K", "5"),
                ("CONVEYOR__LIMITS__PER_USER", "off"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.index.top_k, 5);
        assert_eq!(c.limits.per_user, Rate::Off);
    }

    #[test]
    fn all_problems_reported_at_once() {
        let err = load(
            "[server]\nlisten = \"nope\"\nlisen = 1\n[limits]\nper_user = \"20/fortnight\"\n[index]\nchunk_overlap = 5000\n",
            &[("CONVEYOR__INDEX__TOP_K", "many")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("server.lisen"), "{err}");
        assert!(err.contains("limits.per_user"), "{err}");
        assert!(err.contains("CONVEYOR__INDEX__TOP_K"), "{err}");
        assert!(err.contains("index.chunk_overlap"), "{err}");
        assert!(err.starts_with("5 problems"), "{err}");
    }

    #[test]
    fn missing_secret_env_is_named() {
        let err = load(
            "[store]\nurl_env = \"CONVEYOR_TEST_SURELY_UNSET_DB_URL\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CONVEYOR_TEST_SURELY_UNSET_DB_URL"), "{err}");
        assert!(err.contains("not set"), "{err}");
    }

    #[test]
    fn llm_keys_are_validated_together() {
        let err = load(
            "[llm]\nprovider = \"openai-compatible\"\ntemperature = 3.0\nmax_steps = 0\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("llm.model"), "{err}");
        assert!(err.contains("llm.base_url"), "{err}");
        assert!(err.contains("llm.temperature"), "{err}");
        assert!(err.contains("llm.max_steps"), "{err}");
        let err = load(
            "[llm]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\napi_key_env = \"CONVEYOR_TEST_SURELY_UNSET_KEY\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CONVEYOR_TEST_SURELY_UNSET_KEY"), "{err}");
        let err = load("[llm]\nprovider = \"anthropic\"\nmodel = \"m\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ANTHROPIC_API_KEY"), "{err}");
        let err = load("[llm]\nprovider = \"gpt\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("llm.provider"), "{err}");
        let err = load(
            "[llm]\nprovider = \"ollama\"\nmodel = \"llama3.1\"\nturn_timeout = \"2m\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.request_timeout"), "{err}");
        let ok = load(
            "[llm]\nprovider = \"ollama\"\nmodel = \"llama3.1\"\nredact = false\nturn_timeout = \"22s\"\n",
            &[],
        )
        .unwrap();
        assert!(!ok.llm.redact);
        assert_eq!(ok.llm.max_steps, 6);
        assert_eq!(ok.llm.retries, 3);
    }

    #[test]
    fn secret_debug_is_hidden() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!(
            "20/min".parse::<Rate>().unwrap(),
            Rate::Limited {
                count: 20,
                per: Duration::from_secs(60)
            }
        );
        assert!("0/min".parse::<Rate>().is_err());
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(250)
        );
        assert!("ten".parse::<HumanDuration>().is_err());
    }
}
