//! The provider layer: one request to a remote LLM, through rig-core.
//!
//! This is the only module that imports rig. Everything else talks in the plain types below
//! ([`ChatRequest`], [`ChatMessage`], [`ChatResponse`], [`CallError`]): rig's messages and
//! errors are converted at this boundary, so a rig upgrade touches one file.
//!
//! rig 0.44 separates *wires* (what to send and how to read the reply: OpenAI chat
//! completions, Anthropic messages, Gemini generateContent) from *transports* (reqwest). A
//! `Model::call` or `Model::stream` makes exactly one provider request and does not loop over
//! tools, which is what our own tool loop (`agent::tool_loop`) needs. Streamed replies (SSE)
//! are folded by rig into the same response a unary call returns, tool-call arguments that
//! arrive in fragments included; tool-call arguments that are not valid JSON are kept as text
//! ([`ToolCallRequest::invalid_arguments`]) instead of failing the reply.
//!
//! Retries are ours, not rig's (`agent::tool_loop` decides from [`CallError::retryable`] and
//! [`CallError::retry_after`]), because after the last one the offline planner answers.

use std::time::Duration;

use rig_core::DynModel;
use rig_core::completion::request::{CompletionRequest, FinishReason, ToolDefinition};
use rig_core::error::ProviderError;
use rig_core::message::{
    AssistantContent, AssistantMessage, CallId, Message, ToolCall, ToolFunction, ToolName,
    ToolResult, ToolResultContent, UserContent,
};
use rig_core::operation::Completion;
use rig_core::providers::anthropic::wire::AnthropicConfig;
use rig_core::providers::gemini::GeminiConfig;
use rig_core::providers::openai::OpenAIConfig;
use serde_json::Value;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tools::ToolSpec;
use crate::values::{Env, HumanDuration, Secret};

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
    pub fn api_key(&self, env: &Env) -> Result<Option<Secret>> {
        match &self.api_key_env {
            Some(name) => Secret::from_lookup(name, "llm.api_key_env", env).map(Some),
            None => Ok(None),
        }
    }

    /// Adds every problem to `problems`, reading the key's variable through `env`.
    pub fn validate(&self, env: &Env, problems: &mut Vec<String>) {
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
        if let Err(e) = self.api_key(env) {
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

/// Where Ollama's OpenAI-compatible API listens by default.
const OLLAMA_BASE_URL: &str = "http://localhost:11434/v1";

/// One message of the conversation sent to the model (the system prompt travels apart).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    /// Something the user said.
    User(String),
    /// What the model answered: text, tool calls, or both.
    Assistant {
        /// Answer text (may be empty when the model only called tools).
        text: String,
        /// The tool calls it asked for.
        calls: Vec<ToolCallRequest>,
    },
    /// Results of the tool calls of the previous assistant message.
    ToolResults(Vec<ToolResultMessage>),
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRequest {
    /// The provider's id of the call; the result must carry it back.
    pub id: String,
    /// The tool name.
    pub name: String,
    /// The arguments, always an object (`{}` when the model sent nothing readable).
    pub arguments: Value,
    /// The arguments as the model sent them, when they were not a valid JSON object.
    pub invalid_arguments: Option<String>,
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResultMessage {
    /// The id of the call it answers.
    pub id: String,
    /// The tool name.
    pub name: String,
    /// The result as text (JSON for structured results).
    pub content: String,
    /// Whether the call failed; `content` says why.
    pub is_error: bool,
}

/// One request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation, oldest first; the last message is what the model answers.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A complete answer.
    Stop,
    /// The model wants tool results.
    ToolCalls,
    /// The output-token limit cut the answer off.
    Length,
    /// The provider filtered the answer.
    Filtered,
    /// Anything else the provider reported.
    Other,
}

/// One response.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The answer text (empty when the model only called tools).
    pub text: String,
    /// Tool calls, in the order the model made them.
    pub calls: Vec<ToolCallRequest>,
    /// Why it stopped.
    pub finish: Finish,
    /// Tokens the request used (prompt and completion), when the provider says.
    pub tokens: u64,
}

/// A request that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// What went wrong, for logs (never shown raw to users).
    pub message: String,
    /// The HTTP status, when the provider answered.
    pub status: Option<u16>,
    /// Whether another attempt may succeed: timeouts, connection errors, 5xx, 429.
    pub retryable: bool,
    /// The provider's `Retry-After`, when it sent one (seconds form).
    pub retry_after: Option<Duration>,
    /// The request ran out of time (as opposed to failing to connect or erroring).
    pub timed_out: bool,
}

impl CallError {
    /// A request that did not finish within its time limit.
    pub fn timeout(limit: Duration) -> Self {
        Self {
            message: format!("no response within {}s", limit.as_secs_f32()),
            status: None,
            retryable: true,
            retry_after: None,
            timed_out: true,
        }
    }

    fn from_provider(e: &ProviderError) -> Self {
        let status = e.provider_response_status().map(|s| s.as_u16());
        let retry_after = e
            .provider_response_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let retryable = match status {
            Some(s) => s == 429 || s == 408 || s >= 500,
            None => e.is_retryable() || matches!(e, ProviderError::Http(_)),
        };
        // Never the URL's query or path: Gemini's API key travels in the query.
        let mut message = crate::error::scrub_urls(&e.to_string());
        if let Some(body) = e.provider_response_body() {
            let body: String = body.chars().take(300).collect();
            if !message.contains(&body) {
                message.push_str(": ");
                message.push_str(&body);
            }
        }
        Self {
            message,
            status,
            retryable,
            retry_after,
            timed_out: false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A configured model: one provider, one model name, its request settings.
#[derive(Clone)]
pub struct LlmClient {
    model: DynModel<Completion>,
    provider: LlmProvider,
    stream: bool,
    temperature: Option<f64>,
    max_tokens: u64,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("provider", &self.provider)
            .field("model", &self.model.id())
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Builds the client for `config` with the key read from `api_key_env`.
    pub fn build(config: &LlmConfig, env: &Env) -> Result<Self> {
        let model_name = config
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| Error::Config("llm.model: a model name is required".into()))?;
        let key = config.api_key(env)?;
        let key_or = |fallback: &str| {
            key.as_ref()
                .map(Secret::expose)
                .unwrap_or(fallback)
                .to_string()
        };
        let required_key = || {
            key.as_ref().map(|k| k.expose().to_string()).ok_or_else(|| {
                Error::Config(format!(
                    "llm.api_key_env: provider {:?} needs an API key",
                    config.provider.as_str()
                ))
            })
        };
        let model: DynModel<Completion> = match config.provider {
            LlmProvider::Offline => {
                return Err(Error::Config(
                    "llm.provider: \"offline\" does not use an LLM client".into(),
                ));
            }
            LlmProvider::Openai | LlmProvider::OpenaiCompatible | LlmProvider::Ollama => {
                // OpenAI's own client defaults to the Responses API; we speak chat completions
                // with every OpenAI-shaped server so that one wire (and one fake in the tests)
                // covers OpenAI, vLLM, llama.cpp, LM Studio and Ollama.
                let mut cfg = OpenAIConfig::new(match config.provider {
                    LlmProvider::Openai => required_key()?,
                    // Local servers usually accept any key; some refuse an empty one.
                    _ => key_or("none"),
                });
                match (&config.base_url, config.provider) {
                    (Some(url), _) => cfg = cfg.with_base_url(url.trim_end_matches('/')),
                    (None, LlmProvider::Ollama) => cfg = cfg.with_base_url(OLLAMA_BASE_URL),
                    (None, LlmProvider::OpenaiCompatible) => {
                        return Err(Error::Config(
                            "llm.base_url: provider \"openai-compatible\" needs the server's API root".into(),
                        ));
                    }
                    (None, _) => {}
                }
                cfg.client().chat(model_name).erase()
            }
            LlmProvider::Anthropic => {
                let mut cfg = AnthropicConfig::new(required_key()?);
                if let Some(url) = &config.base_url {
                    cfg = cfg.with_base_url(url);
                }
                cfg.client().completion(model_name).erase()
            }
            LlmProvider::Gemini => {
                let mut cfg = GeminiConfig::new(required_key()?);
                if let Some(url) = &config.base_url {
                    cfg = cfg.with_base_url(url.trim_end_matches('/'));
                }
                cfg.client().completion(model_name).erase()
            }
        };
        Ok(Self {
            model,
            provider: config.provider,
            stream: config.stream,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
        })
    }

    /// The provider this client talks to.
    pub fn provider(&self) -> LlmProvider {
        self.provider
    }

    /// Sends one request (streamed when configured) and returns the whole response. No
    /// retries and no time limit here; the caller owns both.
    pub async fn complete(
        &self,
        req: &ChatRequest,
    ) -> std::result::Result<ChatResponse, CallError> {
        let request = to_rig(req, self.temperature, self.max_tokens)?;
        let response = if self.stream {
            let streamed = self
                .model
                .stream(request)
                .map_err(|e| CallError::from_provider(&e))?;
            streamed.finish().await
        } else {
            self.model.call(request).await
        };
        let response = response.map_err(|e| CallError::from_provider(&e))?;
        let mut text = String::new();
        let mut calls = Vec::new();
        for item in &response.choice {
            match item {
                AssistantContent::Text(t) => text.push_str(t.text()),
                AssistantContent::ToolCall(call) => calls.push(ToolCallRequest {
                    id: call.id.wire().into_owned(),
                    name: call.function.name.as_str().to_string(),
                    arguments: call.function.arguments_value(),
                    invalid_arguments: call.function.invalid_arguments.clone(),
                }),
                _ => {}
            }
        }
        let finish = match response.finish_reason() {
            Some(FinishReason::Length) => Finish::Length,
            Some(FinishReason::ContentFilter) => Finish::Filtered,
            Some(FinishReason::ToolCalls) => Finish::ToolCalls,
            Some(FinishReason::Stop) | None if !calls.is_empty() => Finish::ToolCalls,
            Some(FinishReason::Stop) | None => Finish::Stop,
            Some(_) => Finish::Other,
        };
        let usage = &response.usage;
        let tokens = usage
            .total_tokens
            .unwrap_or_else(|| usage.input_tokens.unwrap_or(0) + usage.output_tokens.unwrap_or(0));
        Ok(ChatResponse {
            text,
            calls,
            finish,
            tokens,
        })
    }
}

fn bad_request(message: String) -> CallError {
    CallError {
        message,
        status: None,
        retryable: false,
        retry_after: None,
        timed_out: false,
    }
}

fn tool_name(name: &str) -> std::result::Result<ToolName, CallError> {
    ToolName::new(name).map_err(|_| bad_request("a tool call has an empty name".into()))
}

/// Our request as rig's.
fn to_rig(
    req: &ChatRequest,
    temperature: Option<f64>,
    max_tokens: u64,
) -> std::result::Result<CompletionRequest, CallError> {
    let mut history = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        history.push(match m {
            ChatMessage::User(text) => Message::user(text.clone()),
            ChatMessage::Assistant { text, calls } => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(AssistantContent::text(text.clone()));
                }
                for c in calls {
                    let mut function = ToolFunction::new(tool_name(&c.name)?, c.arguments.clone());
                    function.invalid_arguments = c.invalid_arguments.clone();
                    content.push(AssistantContent::ToolCall(ToolCall::new(
                        CallId::from_wire(c.id.clone()),
                        function,
                    )));
                }
                if content.is_empty() {
                    content.push(AssistantContent::text("…"));
                }
                Message::Assistant(AssistantMessage::new(content))
            }
            ChatMessage::ToolResults(results) => {
                let mut content = Vec::with_capacity(results.len());
                for r in results {
                    content.push(UserContent::ToolResult(ToolResult {
                        call: CallId::from_wire(r.id.clone()),
                        name: tool_name(&r.name)?,
                        content: vec![ToolResultContent::text(r.content.clone())],
                        is_error: r.is_error,
                    }));
                }
                Message::User { content }
            }
        });
    }
    let mut tools = Vec::with_capacity(req.tools.len());
    for t in &req.tools {
        tools.push(ToolDefinition::new(
            tool_name(&t.name)?,
            t.description.clone(),
            t.parameters.clone(),
        ));
    }
    let mut request = CompletionRequest::from(history)
        .preamble(req.system.clone())
        .max_tokens(max_tokens)
        .temperature(temperature);
    if !tools.is_empty() {
        request = request.tools(tools);
    }
    Ok(request)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn conversation_converts_with_ids_kept() {
        let req = ChatRequest {
            system: "sys".into(),
            messages: vec![
                ChatMessage::User("q".into()),
                ChatMessage::Assistant {
                    text: String::new(),
                    calls: vec![ToolCallRequest {
                        id: "call_1".into(),
                        name: "search_knowledge".into(),
                        arguments: serde_json::json!({"query": "x"}),
                        invalid_arguments: None,
                    }],
                },
                ChatMessage::ToolResults(vec![ToolResultMessage {
                    id: "call_1".into(),
                    name: "search_knowledge".into(),
                    content: "{}".into(),
                    is_error: false,
                }]),
            ],
            tools: vec![],
        };
        let r = to_rig(&req, Some(0.1), 100).unwrap();
        assert_eq!(r.chat_history.len(), 4);
        assert_eq!(r.system_instructions(), Some("sys"));
        assert_eq!(r.max_tokens, Some(100));
    }
}
