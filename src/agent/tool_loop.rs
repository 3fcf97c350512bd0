//! The LLM planner: our own tool loop over one provider request at a time
//! ([`LlmClient::complete`]).
//!
//! A turn: retrieve context for the question (like the offline planner), render the system
//! prompt with the context numbered `[1..]` and the tools the caller may use, send it with the
//! last turns and the question, then loop: run every tool call the model makes through
//! [`ToolRegistry::invoke`] (policy, audit, time limit), send the results back under the
//! calls' ids, until the model answers or a budget (steps, time, tokens) is spent.
//!
//! Failures never reach the user raw. Timeouts, connection errors, 5xx and 429 are retried
//! (`llm.retries`, exponential backoff with jitter, `Retry-After` honoured, all capped by the
//! turn's time budget); when they persist, or the provider rejects the request (4xx), the
//! offline planner answers and the reply says the LLM was unavailable.
//!
//! Privacy: with `llm.redact` on, every text sent to the provider (system prompt with its
//! context, history, the question, tool results) is redacted with one vault per turn; the
//! answer shown to the user is restored. Tool-call arguments the model sends are restored
//! *before* the tool runs, so a tool gets the real value the user typed (an e-mail to look
//! up, say) while the provider only ever saw its placeholder; the audit log applies its own
//! redaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::llm::{
    CallError, ChatMessage, ChatRequest, ChatResponse, Finish, LlmClient, ToolCallRequest,
    ToolResultMessage,
};
use super::prompts::{ContextItem, PromptInput, Prompts, ToolLine};
use super::redact::{Redactor, Vault};
use super::{PlanRequest, Planner, Reply};
use crate::agent::llm::{LlmConfig, LlmProvider};
use crate::error::Result;
use crate::knowledge::Retriever;
use crate::model::{Citation, DataAnswer};
use crate::store::Role;
use crate::tools::{Caller, ToolRegistry};

/// The built-in tool whose results become citable sources.
const SEARCH_TOOL: &str = "search_knowledge";

/// First retry delay; doubled on each further retry.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest wait between two attempts, `Retry-After` included.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Said when the offline planner answered because the LLM failed.
const UNAVAILABLE_NOTE: &str = "_The LLM was unavailable";

/// Said when the model declined to answer without saying anything.
const REFUSED: &str = "The model declined to answer this request.";

/// An LLM that plans tool calls, with the offline planner as its fallback.
pub struct LlmPlanner {
    client: LlmClient,
    config: LlmConfig,
    tools: Arc<ToolRegistry>,
    prompts: Arc<Prompts>,
    retriever: Retriever,
    top_k: usize,
    fallback: Arc<dyn Planner>,
    redactor: Option<Redactor>,
}

/// What the LLM planner needs besides the client.
pub struct LlmPlannerParts {
    /// The tools the model may call.
    pub tools: Arc<ToolRegistry>,
    /// Prompt templates (the system prompt must exist).
    pub prompts: Arc<Prompts>,
    /// Retrieval for the context.
    pub retriever: Retriever,
    /// Passages retrieved as context.
    pub top_k: usize,
    /// Who answers when the LLM cannot.
    pub fallback: Arc<dyn Planner>,
    /// Where the API key (`llm.api_key_env`) is read from.
    pub env: crate::values::Env,
}

/// A numbered source the answer may cite.
#[derive(Debug, Clone)]
struct Source {
    title: String,
    source: String,
    doc_id: String,
    chunk_id: String,
    text: String,
}

/// Why a turn could not use the LLM.
#[derive(Debug)]
enum Failure {
    /// Retries spent on timeouts, connection errors, 5xx or 429.
    Unavailable(CallError),
    /// The provider refused the request (4xx other than 429) or the reply was unusable.
    Rejected(CallError),
}

/// Per-turn redaction state.
struct Privacy<'a> {
    redactor: Option<&'a Redactor>,
    vault: Vault,
}

impl Privacy<'_> {
    fn redact(&mut self, text: &str) -> String {
        match self.redactor {
            Some(r) => r.redact(text, &mut self.vault),
            None => text.to_string(),
        }
    }

    fn restore(&self, text: &str) -> String {
        match self.redactor {
            Some(r) => r.restore(text, &self.vault),
            None => text.to_string(),
        }
    }

    fn restore_json(&self, value: &Value) -> Value {
        match self.redactor {
            Some(r) => r.restore_json(value, &self.vault),
            None => value.clone(),
        }
    }
}

/// What the loop ended with.
struct Outcome {
    text: String,
    note: Option<String>,
}

impl LlmPlanner {
    /// Builds the planner for `config` (a provider other than `offline`).
    pub fn new(config: &LlmConfig, parts: LlmPlannerParts) -> Result<Self> {
        let client = LlmClient::build(config, &parts.env)?;
        Ok(Self {
            client,
            config: config.clone(),
            tools: parts.tools,
            prompts: parts.prompts,
            retriever: parts.retriever,
            top_k: parts.top_k,
            fallback: parts.fallback,
            redactor: config.redact.then(Redactor::default),
        })
    }

    async fn fallback_answer(&self, req: PlanRequest<'_>, failure: &Failure) -> Result<Reply> {
        let detail = match failure {
            Failure::Unavailable(CallError {
                status: Some(s), ..
            }) => format!("it did not answer: HTTP {s}"),
            Failure::Unavailable(CallError {
                timed_out: true, ..
            }) => "it did not answer in time".to_string(),
            Failure::Unavailable(_) => "it could not be reached".to_string(),
            Failure::Rejected(CallError {
                status: Some(s), ..
            }) => format!("it rejected the request: HTTP {s}"),
            Failure::Rejected(_) => "its reply could not be used".to_string(),
        };
        let note = format!(
            "{UNAVAILABLE_NOTE} ({detail}), so this answer comes from the offline planner and quotes your documents directly._"
        );
        let mut reply = self.fallback.answer(req).await?;
        let kept: Vec<&str> = reply
            .text
            .split("\n\n")
            .filter(|p| !p.trim_start().starts_with("_No LLM is configured"))
            .collect();
        let mut text = kept.join("\n\n");
        text.push_str("\n\n");
        text.push_str(&note);
        reply.text = text;
        Ok(reply)
    }

    /// One provider request with retries, within `deadline`.
    async fn call(
        &self,
        req: &ChatRequest,
        deadline: Instant,
    ) -> std::result::Result<ChatResponse, Failure> {
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Failure::Unavailable(CallError::timeout(
                    self.config.turn_timeout.0,
                )));
            }
            let limit = self.config.timeout.0.min(remaining);
            let result = match tokio::time::timeout(limit, self.client.complete(req)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::timeout(limit)),
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            if !error.retryable {
                tracing::warn!(%error, "LLM request rejected");
                return Err(Failure::Rejected(error));
            }
            if attempt >= self.config.retries {
                tracing::warn!(%error, attempts = attempt + 1, "LLM unavailable");
                return Err(Failure::Unavailable(error));
            }
            let wait = backoff(attempt, error.retry_after);
            if Instant::now() + wait >= deadline {
                tracing::warn!(%error, "LLM unavailable within the turn's time budget");
                return Err(Failure::Unavailable(error));
            }
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(%error, attempt = attempt + 1, wait_ms, "retrying LLM request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The loop proper.
    async fn run(
        &self,
        req: PlanRequest<'_>,
        privacy: &mut Privacy<'_>,
        sources: &mut Vec<Source>,
        data: &mut Option<(usize, Box<DataAnswer>)>,
    ) -> std::result::Result<Outcome, Failure> {
        let started = Instant::now();
        let deadline = started + self.config.turn_timeout.0;
        let inbound = req.inbound;
        let caller = Caller {
            user_id: inbound.user.id.clone(),
            channel: inbound.conversation.channel.as_str().to_string(),
            conversation: inbound.conversation.as_storage_key(),
            roles: req.roles.to_vec(),
            attributes: req.attributes.clone(),
        };
        let specs = self
            .tools
            .specs_for_turn(&caller, inbound.text.trim())
            .await;
        let input = PromptInput {
            channel: caller.channel.clone(),
            user: inbound
                .user
                .name
                .clone()
                .unwrap_or_else(|| inbound.user.id.clone()),
            now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            tools: specs
                .iter()
                .map(|s| ToolLine {
                    name: s.name.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            context: sources
                .iter()
                .enumerate()
                .map(|(i, s)| ContextItem {
                    n: i + 1,
                    title: s.title.clone(),
                    source: s.source.clone(),
                    text: s.text.clone(),
                })
                .collect(),
        };
        let system = self.prompts.system_prompt(&input).map_err(|e| {
            Failure::Rejected(CallError {
                message: e.to_string(),
                status: None,
                retryable: false,
                retry_after: None,
                timed_out: false,
            })
        })?;
        let mut messages = Vec::new();
        for turn in req.history {
            let text = privacy.redact(&turn.text);
            messages.push(match turn.role {
                Role::User => ChatMessage::User(text),
                _ => ChatMessage::Assistant {
                    text,
                    calls: Vec::new(),
                },
            });
        }
        messages.push(ChatMessage::User(privacy.redact(&inbound.text)));
        let mut request = ChatRequest {
            system: privacy.redact(&system),
            messages,
            tools: specs,
        };

        let mut tokens: u64 = 0;
        let mut repaired = false;
        let mut last_text = String::new();
        let mut stop_reason = None;
        let from_context = sources.len();
        for step in 0..self.config.max_steps {
            let response = match self.call(&request, deadline).await {
                Ok(r) => r,
                // Tools already ran and the turn's time is up: answer with what they found
                // rather than starting over offline.
                Err(_) if step > 0 && Instant::now() >= deadline => {
                    stop_reason = Some(format!("the time budget ({})", self.config.turn_timeout));
                    break;
                }
                Err(e) => return Err(e),
            };
            tokens += response.tokens;
            if response.calls.is_empty() {
                let note = match response.finish {
                    Finish::Length => Some(
                        "_The answer was cut off at the response length limit (llm.max_tokens)._"
                            .to_string(),
                    ),
                    Finish::Filtered => {
                        Some("_The provider filtered part of this answer._".to_string())
                    }
                    _ => None,
                };
                if response.text.trim().is_empty() && response.finish == Finish::Filtered {
                    // A refusal: the model (or the provider's filter) declined to answer. That
                    // is an answer, not an outage, so the user hears it plainly.
                    return Ok(Outcome {
                        text: REFUSED.to_string(),
                        note: None,
                    });
                }
                if response.text.trim().is_empty() {
                    return Err(Failure::Rejected(CallError {
                        message: format!("the model gave an empty answer ({:?})", response.finish),
                        status: None,
                        retryable: false,
                        retry_after: None,
                        timed_out: false,
                    }));
                }
                return Ok(Outcome {
                    text: response.text,
                    note,
                });
            }
            if !response.text.trim().is_empty() {
                last_text.clone_from(&response.text);
            }
            let calls = response.calls.clone();
            request.messages.push(ChatMessage::Assistant {
                text: response.text,
                calls: calls.clone(),
            });
            let mut results = Vec::with_capacity(calls.len());
            for call in &calls {
                results.push(
                    self.run_tool(&caller, call, &mut repaired, privacy, sources, data)
                        .await,
                );
            }
            request.messages.push(ChatMessage::ToolResults(results));
            if tokens >= self.config.token_budget {
                stop_reason = Some(format!("the token budget ({})", self.config.token_budget));
                break;
            }
            if Instant::now() >= deadline {
                stop_reason = Some(format!("the time budget ({})", self.config.turn_timeout));
                break;
            }
            if step + 1 == self.config.max_steps {
                stop_reason = Some(format!("the step budget ({})", self.config.max_steps));
            }
        }
        let reason = stop_reason.unwrap_or_else(|| "a budget".to_string());
        let note = format!("_I stopped at {reason}; this answer uses what I found so far._");
        // One last request without tools asks the model to answer with what it has, when the
        // time and tokens allow; otherwise what it said along the way is the answer.
        if Instant::now() < deadline && tokens < self.config.token_budget {
            request.tools.clear();
            request.messages.push(ChatMessage::User(
                "You have used up your tool budget. Answer the question now, from the context and the tool results above only, and say what is still unknown.".into(),
            ));
            if let Ok(response) = self.call(&request, deadline).await
                && !response.text.trim().is_empty()
            {
                return Ok(Outcome {
                    text: response.text,
                    note: Some(note),
                });
            }
        }
        let text = if last_text.trim().is_empty() {
            partial_answer(sources, from_context)
        } else {
            last_text
        };
        Ok(Outcome {
            text,
            note: Some(note),
        })
    }

    /// Runs one tool call and says what to send back.
    async fn run_tool(
        &self,
        caller: &Caller,
        call: &ToolCallRequest,
        repaired: &mut bool,
        privacy: &mut Privacy<'_>,
        sources: &mut Vec<Source>,
        data: &mut Option<(usize, Box<DataAnswer>)>,
    ) -> ToolResultMessage {
        let answer = |content: String, is_error: bool| ToolResultMessage {
            id: call.id.clone(),
            name: call.name.clone(),
            content,
            is_error,
        };
        if let Some(raw) = &call.invalid_arguments {
            let snippet: String = raw.chars().take(200).collect();
            return if *repaired {
                answer(
                    format!(
                        "Error: the arguments of this `{}` call are not valid JSON again ({snippet}); the tool was not run. Answer without it.",
                        call.name
                    ),
                    true,
                )
            } else {
                *repaired = true;
                answer(
                    format!(
                        "Error: the arguments of this `{}` call are not a valid JSON object ({snippet}); the tool was not run. Call it again with arguments that are one valid JSON object matching its schema.",
                        call.name
                    ),
                    true,
                )
            };
        }
        let args = privacy.restore_json(&call.arguments);
        let mut outcome = self.tools.invoke(caller, &call.name, args).await;
        let mut value = outcome.for_model();
        if call.name == SEARCH_TOOL && outcome.is_ok() {
            number_results(&mut value, sources);
        }
        // A data tool's result is a source like a document: the answer cites the query (its
        // audit record holds the arguments and the SQL) and shows its table and chart.
        if let Some(d) = outcome.data.take() {
            sources.push(Source {
                title: d.interpretation.clone(),
                source: call.name.clone(),
                doc_id: outcome
                    .audit_id
                    .map(|id| format!("audit:{id}"))
                    .unwrap_or_default(),
                chunk_id: format!("query:{}", call.id),
                text: d.sql.clone(),
            });
            let n = sources.len();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("cite_as".into(), Value::from(format!("[{n}]")));
            }
            *data = Some((n, d));
        }
        let text = serde_json::to_string(&value).unwrap_or_else(|_| value.to_string());
        answer(privacy.redact(&text), !outcome.is_ok())
    }
}

/// What is known when the model never wrote an answer: the sources its searches found (or
/// else the retrieved context), cited, so the user can read on.
fn partial_answer(sources: &[Source], from_context: usize) -> String {
    let found: Vec<(usize, &Source)> = sources.iter().enumerate().skip(from_context).collect();
    let list = if found.is_empty() {
        sources.iter().enumerate().collect()
    } else {
        found
    };
    if list.is_empty() {
        return "I could not finish looking this up, and found no sources on it.".into();
    }
    let mut text =
        String::from("I could not finish looking this up. These sources looked relevant:");
    for (i, s) in list.into_iter().take(5) {
        text.push_str(&format!("\n- [{}] {} — {}", i + 1, s.title, s.source));
    }
    text
}

/// Gives every search result a citation number after the existing sources, and records it.
fn number_results(value: &mut Value, sources: &mut Vec<Source>) {
    let Some(results) = value.get_mut("results").and_then(Value::as_array_mut) else {
        return;
    };
    for r in results {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let chunk_id = field("chunk_id");
        let existing = sources
            .iter()
            .position(|s| !chunk_id.is_empty() && s.chunk_id == chunk_id);
        let n = match existing {
            Some(i) => i + 1,
            None => {
                sources.push(Source {
                    title: field("title"),
                    source: field("source"),
                    doc_id: field("doc_id"),
                    chunk_id,
                    text: field("text"),
                });
                sources.len()
            }
        };
        if let Some(obj) = r.as_object_mut() {
            obj.insert("n".into(), Value::from(n));
        }
    }
}

/// The wait before retry number `attempt + 1`: the provider's `Retry-After` when it sent one,
/// else exponential backoff with up to 50% jitter; capped either way.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(BACKOFF_CAP);
    }
    let base = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    // Jitter from a random uuid: no extra dependency for one number.
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    base.mul_f64(1.0 + 0.5 * r).min(BACKOFF_CAP)
}

/// Keeps only citation markers that point at a source; returns the cleaned text and the
/// cited sources in order of their numbers.
fn cite(text: &str, sources: &[Source]) -> (String, Vec<Citation>) {
    let mut out = String::with_capacity(text.len());
    let mut cited: BTreeMap<usize, Citation> = BTreeMap::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let closes = digits > 0 && digits <= 4 && after[digits..].starts_with(']');
        if !closes {
            out.push('[');
            rest = after;
            continue;
        }
        let n: usize = after[..digits].parse().unwrap_or(0);
        rest = &after[digits + 1..];
        match n.checked_sub(1).and_then(|i| sources.get(i)) {
            Some(s) => {
                out.push_str(&format!("[{n}]"));
                cited.entry(n).or_insert_with(|| citation(n, s));
            }
            None => {
                // A marker that points nowhere goes, with the space before it.
                while out.ends_with(' ') {
                    out.pop();
                }
            }
        }
    }
    out.push_str(rest);
    (out, cited.into_values().collect())
}

fn citation(n: usize, s: &Source) -> Citation {
    Citation {
        n,
        title: s.title.clone(),
        source: s.source.clone(),
        doc_id: s.doc_id.clone(),
        chunk_id: s.chunk_id.clone(),
        snippet: s.text.clone(),
    }
}

#[async_trait]
impl Planner for LlmPlanner {
    fn name(&self) -> &'static str {
        match self.client.provider() {
            LlmProvider::Openai => "openai",
            LlmProvider::Anthropic => "anthropic",
            LlmProvider::Gemini => "gemini",
            LlmProvider::Ollama => "ollama",
            LlmProvider::OpenaiCompatible => "openai-compatible",
            LlmProvider::Offline => "offline",
        }
    }

    async fn answer(&self, req: PlanRequest<'_>) -> Result<Reply> {
        let hits = self
            .retriever
            .retrieve(req.inbound.text.trim(), self.top_k)
            .await?;
        let mut sources: Vec<Source> = hits
            .into_iter()
            .map(|h| Source {
                title: h.payload.title,
                source: h.payload.source,
                doc_id: h.payload.doc_id,
                chunk_id: h.id,
                text: h.payload.text,
            })
            .collect();
        let mut privacy = Privacy {
            redactor: self.redactor.as_ref(),
            vault: Vault::default(),
        };
        let mut data = None;
        match self.run(req, &mut privacy, &mut sources, &mut data).await {
            Ok(outcome) => {
                let restored = privacy.restore(&outcome.text);
                let (mut text, mut citations) = cite(&restored, &sources);
                if let Some(note) = outcome.note {
                    text.push_str("\n\n");
                    text.push_str(&note);
                }
                // The table shown with the answer is always cited, marker or not.
                if let Some((n, _)) = &data
                    && !citations.iter().any(|c| c.n == *n)
                    && let Some(s) = n.checked_sub(1).and_then(|i| sources.get(i))
                {
                    citations.push(citation(*n, s));
                    citations.sort_by_key(|c| c.n);
                }
                Ok(Reply {
                    text,
                    citations,
                    data: data.map(|(_, d)| *d),
                    ..Reply::default()
                })
            }
            Err(failure) => self.fallback_answer(req, &failure).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn src(n: usize) -> Source {
        Source {
            title: format!("T{n}"),
            source: format!("s{n}.md"),
            doc_id: format!("d{n}"),
            chunk_id: format!("c{n}"),
            text: "x".into(),
        }
    }

    #[test]
    fn only_real_citations_survive() {
        let (text, cites) = cite("A [1]. B [7]. C [2][1]. [x] [12345]", &[src(1), src(2)]);
        assert_eq!(text, "A [1]. B. C [2][1]. [x] [12345]");
        assert_eq!(cites.iter().map(|c| c.n).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(backoff(0, Some(Duration::from_secs(999))), BACKOFF_CAP);
        let first = backoff(0, None);
        assert!(first >= BACKOFF_BASE && first <= BACKOFF_BASE.mul_f64(1.5));
        assert!(backoff(1, None) >= BACKOFF_BASE * 2);
        assert_eq!(backoff(30, None), BACKOFF_CAP);
    }

    #[test]
    fn search_results_continue_the_numbering() {
        let mut sources = vec![src(1)];
        let mut v = serde_json::json!({"results": [
            {"n": 1, "chunk_id": "c1", "title": "T1"},
            {"n": 2, "chunk_id": "c9", "title": "T9", "source": "s9.md", "doc_id": "d9", "text": "t"}
        ]});
        number_results(&mut v, &mut sources);
        assert_eq!(v["results"][0]["n"], 1);
        assert_eq!(v["results"][1]["n"], 2);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].chunk_id, "c9");
    }
}
