//! What each kind of step does, given its rendered input: tools through the registry (policy,
//! schema, audit), questions through the semantic layer, requests through the SSRF guard,
//! messages through the egress ledger, approvals as buttons, sleeps and sub-workflows as
//! suspensions. Containers (`branch`, `for_each`) are the engine's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::def::StepKind;
use super::engine::{Engine, StartRequest, ms, now_ms};
use super::template::Templates;
use crate::agent::{PlanRequest, Planner};
use crate::error::Error;
use crate::gateway::egress::Outbox;
use crate::lakehouse::Lakehouse;
use crate::metrics::Metrics;
use crate::model::{Action, Channel, ConversationKey, Inbound, Outbound, UserRef};
use crate::semantic::Semantic;
use crate::store::Store;
use crate::store::workflows::{JournalOp, RunState, Started, WorkflowStep};
use crate::tools::net::GuardedClient;
use crate::tools::{Caller, OutcomeKind, ToolRegistry};

/// What steps reach.
pub struct Parts {
    /// The store (the egress ledger of `publish` and `approval`).
    pub store: Store,
    /// Every registered tool.
    pub tools: Arc<ToolRegistry>,
    /// The semantic model, when there is one (`query` questions).
    pub semantic: Option<Arc<Semantic>>,
    /// The lakehouse (`sql` without a semantic model).
    pub lake: Option<Lakehouse>,
    /// The planner of `agent` steps (the offline planner without an LLM).
    pub planner: Arc<dyn Planner>,
    /// The chat platforms' sending sides.
    pub outboxes: Vec<Arc<dyn Outbox>>,
    /// The HTTP client of `http` steps (SSRF guard).
    pub http: GuardedClient,
    /// Per-workflow counters.
    pub metrics: Arc<Metrics>,
}

/// Most rows a `query` step keeps in its output.
const QUERY_ROWS: usize = 1_000;

/// Most bytes of an `http` step's response kept.
const HTTP_BODY_MAX: usize = 1 << 20;

/// How one attempt of a step ended.
#[derive(Debug)]
pub enum Outcome {
    /// Finished with this output.
    Done(Value),
    /// Waits until `wake_at` (unix ms), or until something wakes the run.
    Suspend {
        /// Unix ms.
        wake_at: i64,
        /// Shown as the step's output while it waits.
        note: Option<Value>,
    },
    /// An approval to create before anything is posted; then the step is performed again
    /// as resumed (posting the question), and waits until `wake_at`.
    Signal {
        /// The approval's journal operation.
        op: JournalOp,
        /// Its timeout (unix ms).
        wake_at: i64,
    },
    /// Failed.
    Failed(Failure),
}

/// A failed attempt, with what kind of failure it was (for `retry.on`).
#[derive(Debug)]
pub struct Failure {
    /// `timeout`, `upstream`, `rate_limited` or `other`.
    pub kind: &'static str,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A step that ran out of time.
    pub fn timeout(message: String) -> Self {
        Self {
            kind: "timeout",
            message,
        }
    }

    fn other(message: impl Into<String>) -> Self {
        Self {
            kind: "other",
            message: message.into(),
        }
    }

    fn from_error(e: &Error) -> Self {
        let kind = match e {
            Error::Upstream(_) => "upstream",
            Error::RateLimited { .. } => "rate_limited",
            _ => "other",
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }

    /// Whether a step retrying on `on` tries again after this failure.
    pub fn retryable(&self, on: &[String]) -> bool {
        on.iter().any(|o| o == "any" || o == self.kind)
    }
}

/// One attempt of one step.
pub struct Call<'a> {
    pub(super) parts: &'a Parts,
    pub(super) engine: &'a Engine,
    pub(super) run: &'a str,
    pub(super) workflow: &'a str,
    pub(super) path: &'a str,
    pub(super) retries: i64,
    pub(super) deadline: i64,
    pub(super) caller: &'a Caller,
    pub(super) input: &'a Value,
    /// The step's waiting row when the run resumes a suspended attempt.
    pub(super) resuming: Option<&'a WorkflowStep>,
}

impl Call<'_> {
    /// The key of this step's side effects: the same for every attempt (a retried or resumed
    /// attempt must not send twice), new for an operator's retry of the run.
    fn effect_key(&self) -> String {
        if self.retries == 0 {
            format!("wf:{}:{}", self.run, self.path)
        } else {
            format!("wf:{}:{}:r{}", self.run, self.path, self.retries)
        }
    }

    fn str(&self, key: &str) -> &str {
        self.input.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// A step's input, rendered from its templates: what the journal records and what the
/// attempt (and every later attempt) is given.
pub fn render_input(
    t: &Templates,
    kind: &StepKind,
    ctx: &Value,
    now: i64,
) -> Result<Value, String> {
    Ok(match kind {
        StepKind::Tool { tool, args } => json!({"tool": tool, "args": t.json(args, ctx)?}),
        StepKind::Agent { prompt } => json!({"prompt": t.text(prompt, ctx)?}),
        StepKind::Query { question, sql } => match (question, sql) {
            (Some(q), _) => json!({"question": t.text(q, ctx)?}),
            (None, Some(s)) => json!({"sql": t.text(s, ctx)?}),
            (None, None) => json!({}),
        },
        StepKind::Http { method, url, body } => json!({
            "method": method,
            "url": t.text(url, ctx)?,
            "body": body.as_ref().map(|b| t.json(b, ctx)).transpose()?,
        }),
        StepKind::Publish { to, text } => json!({"to": to, "text": t.text(text, ctx)?}),
        StepKind::Approval {
            to,
            text,
            approvers,
            self_approval,
            timeout,
            approve_on_timeout,
        } => json!({
            "to": to,
            "text": t.text(text, ctx)?,
            "approvers": approvers,
            "self_approval": self_approval,
            "until": now.saturating_add(ms(*timeout)),
            "approve_on_timeout": approve_on_timeout,
        }),
        StepKind::Sleep(d) => json!({"until": now.saturating_add(ms(*d))}),
        StepKind::WaitUntil(at) => {
            let text = t.text(at, ctx)?;
            let when = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
                format!("wait_until: `{text}` is not an RFC 3339 time (2026-01-31T09:00:00Z): {e}")
            })?;
            json!({"until": when.timestamp_millis()})
        }
        StepKind::Workflow { name, input } => {
            json!({"workflow": name, "input": t.json(input, ctx)?})
        }
        StepKind::Branch(_) | StepKind::ForEach { .. } => json!({}),
    })
}

/// Performs one attempt.
pub async fn perform(call: &Call<'_>, kind: &StepKind) -> Outcome {
    match kind {
        StepKind::Tool { .. } => tool(call).await,
        StepKind::Agent { .. } => agent(call).await,
        StepKind::Query { .. } => query(call).await,
        StepKind::Http { .. } => http(call).await,
        StepKind::Publish { .. } => publish(call).await,
        StepKind::Approval { .. } => approval(call).await,
        StepKind::Sleep(_) | StepKind::WaitUntil(_) => wait(call),
        StepKind::Workflow { .. } => sub_workflow(call).await,
        StepKind::Branch(_) | StepKind::ForEach { .. } => {
            Outcome::Failed(Failure::other("a container step was performed as a leaf"))
        }
    }
}

async fn tool(call: &Call<'_>) -> Outcome {
    let name = call.str("tool");
    let args = call.input.get("args").cloned().unwrap_or_else(|| json!({}));
    let outcome = call.parts.tools.invoke(call.caller, name, args).await;
    match outcome.kind {
        OutcomeKind::Ok => Outcome::Done(outcome.result.unwrap_or(Value::Null)),
        kind => {
            let message = format!(
                "tool `{name}` {}: {}",
                match kind {
                    OutcomeKind::Denied => "refused this run's caller",
                    OutcomeKind::Invalid => "was given arguments that do not match its schema",
                    OutcomeKind::Timeout => "did not finish in time",
                    _ => "failed",
                },
                outcome.message.unwrap_or_default()
            );
            Outcome::Failed(Failure {
                kind: match kind {
                    OutcomeKind::Timeout => "timeout",
                    OutcomeKind::Error => "upstream",
                    _ => "other",
                },
                message,
            })
        }
    }
}

async fn agent(call: &Call<'_>) -> Outcome {
    let prompt = call.str("prompt").to_string();
    let inbound = Inbound {
        idempotency_key: call.effect_key(),
        conversation: ConversationKey::new(Channel::WORKFLOW, call.run),
        user: UserRef {
            id: call.caller.user_id.clone(),
            name: None,
        },
        text: prompt,
        attachments: Vec::new(),
    };
    let req = PlanRequest {
        inbound: &inbound,
        history: &[],
        roles: &call.caller.roles,
        attributes: &call.caller.attributes,
    };
    match call.parts.planner.answer(req).await {
        Ok(reply) => Outcome::Done(json!({
            "text": reply.text,
            "citations": reply.citations,
            "planner": call.parts.planner.name(),
        })),
        Err(e) => Outcome::Failed(Failure::from_error(&e)),
    }
}

async fn query(call: &Call<'_>) -> Outcome {
    if let Some(question) = call.input.get("question").and_then(Value::as_str) {
        let Some(semantic) = &call.parts.semantic else {
            return Outcome::Failed(Failure::other(
                "a `query` question needs a semantic model (connectors/*.semantic.toml); use `sql` instead",
            ));
        };
        let asker = crate::semantic::Asker {
            roles: call.caller.roles.clone(),
            attributes: call.caller.attributes.clone(),
        };
        let today = chrono::Utc::now().date_naive();
        return match semantic.ask(question, &asker, today).await {
            crate::semantic::Outcome::Answer(a) => {
                let model = semantic.model();
                let data = crate::semantic::present::data_answer(model, &a);
                let columns: Vec<String> = a.columns.iter().map(|c| c.label.clone()).collect();
                let rows: Vec<Value> = a
                    .rows
                    .iter()
                    .take(QUERY_ROWS)
                    .map(|r| {
                        Value::Object(columns.iter().cloned().zip(r.iter().cloned()).collect())
                    })
                    .collect();
                Outcome::Done(json!({
                    "answer": crate::semantic::present::markdown(model, &a),
                    "table": crate::semantic::present::table_text(model, &a, crate::semantic::present::CHAT_ROWS),
                    "interpretation": a.interpretation,
                    "sql": a.sql,
                    "columns": columns,
                    "rows": rows,
                    "truncated": a.truncated,
                    "data": data,
                }))
            }
            crate::semantic::Outcome::Clarify { text, options } => {
                Outcome::Failed(Failure::other(format!(
                    "the question is ambiguous: {text} (options: {})",
                    options.join("; ")
                )))
            }
            crate::semantic::Outcome::Refused(why) => Outcome::Failed(Failure::other(why)),
            crate::semantic::Outcome::NotBi => Outcome::Failed(Failure::other(format!(
                "`{question}` is not a question the semantic model answers (no measure or metric named)"
            ))),
        };
    }
    let sql = call.str("sql");
    let output = match (&call.parts.semantic, &call.parts.lake) {
        (Some(semantic), _) => {
            let asker = crate::semantic::Asker {
                roles: call.caller.roles.clone(),
                attributes: call.caller.attributes.clone(),
            };
            semantic
                .run_sql(sql, &semantic.grants(&asker), QUERY_ROWS)
                .await
        }
        (None, Some(lake)) => lake.query(sql, Some(QUERY_ROWS)).await,
        (None, None) => Err(Error::Config("an `sql` step needs the lakehouse".into())),
    };
    match output {
        Ok(out) => {
            let rows = match out.json_rows() {
                Ok(r) => r,
                Err(e) => return Outcome::Failed(Failure::from_error(&e)),
            };
            let table = out
                .render(crate::lakehouse::OutputFormat::Table)
                .unwrap_or_default();
            Outcome::Done(json!({
                "columns": out.columns,
                "rows": rows,
                "table": table,
                "truncated": out.truncated,
            }))
        }
        Err(e) => Outcome::Failed(Failure::from_error(&e)),
    }
}

async fn http(call: &Call<'_>) -> Outcome {
    let url = call.str("url");
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => {
            return Outcome::Failed(Failure::other(format!(
                "http: `{}` is not an http(s) URL",
                u.scheme()
            )));
        }
        Err(e) => return Outcome::Failed(Failure::other(format!("http: `{url}`: {e}"))),
    };
    let method =
        reqwest::Method::from_bytes(call.str("method").as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = call
        .parts
        .http
        .request(method, parsed)
        .header("Idempotency-Key", call.effect_key());
    if let Some(body) = call.input.get("body").filter(|b| !b.is_null()) {
        req = req.json(body);
    }
    let mut resp = match call.parts.http.send(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(Failure::from_error(&e)),
    };
    let status = resp.status();
    let bytes = match crate::tools::net::read_at_most(&mut resp, HTTP_BODY_MAX).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Outcome::Failed(Failure::other(format!(
                "http: {} answered more than {} MiB",
                redacted(url),
                HTTP_BODY_MAX >> 20
            )));
        }
        Err(e) => {
            return Outcome::Failed(Failure {
                kind: "upstream",
                message: format!("http: reading the answer of {} failed: {e}", redacted(url)),
            });
        }
    };
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if status.is_success() {
        return Outcome::Done(json!({"status": status.as_u16(), "body": body}));
    }
    let text = match &body {
        Value::String(s) => s.chars().take(300).collect::<String>(),
        other => other.to_string().chars().take(300).collect(),
    };
    let message = format!("http: {} answered {status}: {text}", redacted(url));
    Outcome::Failed(Failure {
        kind: if status.as_u16() == 429 {
            "rate_limited"
        } else if status.is_server_error() || status.as_u16() == 408 {
            "upstream"
        } else {
            "other"
        },
        message,
    })
}

fn redacted(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_string(), |u| crate::tools::net::redact_url(&u))
}

fn outbox<'a>(parts: &'a Parts, to: &str) -> Result<(&'a Arc<dyn Outbox>, String), String> {
    let (platform, chat) = to.split_once(':').unwrap_or((to, ""));
    let found = parts
        .outboxes
        .iter()
        .find(|o| o.channel().as_str() == platform)
        .ok_or_else(|| format!("cannot post to `{to}`: [channels.{platform}] is not configured"))?;
    Ok((found, chat.to_string()))
}

fn outbound(platform: Channel, chat: &str, text: String, actions: Vec<Action>) -> Outbound {
    Outbound {
        conversation: ConversationKey::new(platform, chat),
        reply_to: String::new(),
        message_id: String::new(),
        text,
        citations: Vec::new(),
        planner: "workflow".into(),
        data: None,
        choices: Vec::new(),
        actions,
    }
}

async fn publish(call: &Call<'_>) -> Outcome {
    let to = call.str("to");
    let (outbox, chat) = match outbox(call.parts, to) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(Failure::other(e)),
    };
    let text = call.str("text").to_string();
    let out = outbound(outbox.channel(), &chat, text, Vec::new());
    // Recorded in the egress ledger under the step's key before it is sent: a resumed or
    // retried attempt finds the row and never posts twice.
    match outbox
        .post(&call.parts.store, &chat, &call.effect_key(), &out)
        .await
    {
        Ok(()) => Outcome::Done(json!({"to": to, "text": out.text, "key": call.effect_key()})),
        Err(e) => Outcome::Failed(Failure::from_error(&e)),
    }
}

use crate::channels::chat::approval::{APPROVE, REJECT};

async fn approval(call: &Call<'_>) -> Outcome {
    let until = call.input.get("until").and_then(Value::as_i64).unwrap_or(0);
    let Some(row) = call.resuming else {
        // First: the approval row, written with the waiting step before anything is posted.
        let id = signal_id();
        let rules = json!({
            "to": call.str("to"),
            "approvers": call.input.get("approvers").cloned().unwrap_or_else(|| json!([])),
            "self_approval": call.input.get("self_approval").and_then(Value::as_bool).unwrap_or(true),
            "requester": requester(call.caller),
            "until": until,
        });
        return Outcome::Signal {
            op: JournalOp::Signal {
                id,
                path: call.path.to_string(),
                rules,
            },
            wake_at: until,
        };
    };
    let signal = match call.parts.store.wf_signal_of(call.run, &row.path).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Outcome::Failed(Failure::other(
                "the approval's record is missing (the run was retried while it waited); retry the run",
            ));
        }
        Err(e) => return Outcome::Failed(Failure::from_error(&e)),
    };
    if let Some(decision) = &signal.decision {
        let approved = decision == "approve";
        let by = signal.decided_by.clone().unwrap_or_default();
        if !approved {
            return Outcome::Failed(Failure::other(format!("rejected by {by}")));
        }
        return Outcome::Done(json!({"approved": true, "by": by, "at": signal.decided_at}));
    }
    if now_ms() >= until {
        let approve = call
            .input
            .get("approve_on_timeout")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !approve {
            return Outcome::Failed(Failure::other(
                "nobody decided before the approval's timeout (counted as rejected)",
            ));
        }
        return Outcome::Done(json!({"approved": true, "by": null, "timed_out": true}));
    }
    // Post the question (again after a crash: the ledger sends it once).
    let to = call.str("to");
    let (outbox, chat) = match outbox(call.parts, to) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(Failure::other(e)),
    };
    let actions = vec![
        Action {
            label: "Approve".into(),
            action: APPROVE.into(),
            value: signal.id.clone(),
        },
        Action {
            label: "Reject".into(),
            action: REJECT.into(),
            value: signal.id.clone(),
        },
    ];
    let text = format!(
        "{}\n\n_Approval for workflow `{}` (run {}); waits until {}._",
        call.str("text"),
        call.workflow,
        call.run,
        chrono::DateTime::from_timestamp_millis(until)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    );
    let out = outbound(outbox.channel(), &chat, text, actions);
    if let Err(e) = outbox
        .post(&call.parts.store, &chat, &call.effect_key(), &out)
        .await
    {
        return Outcome::Failed(Failure::from_error(&e));
    }
    Outcome::Suspend {
        wake_at: until,
        note: Some(json!({"approval": signal.id, "waiting_until": until})),
    }
}

/// `PLATFORM:ID` of the person behind `caller`, as approvers are written.
fn requester(caller: &Caller) -> String {
    format!("{}:{}", caller.channel, caller.user_id)
}

/// Whether `who` (`PLATFORM:ID`) may decide an approval with these rules; why not.
pub fn may_decide(rules: &Value, who: &str) -> Result<(), String> {
    let approvers: Vec<&str> = rules
        .get("approvers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let self_ok = rules
        .get("self_approval")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let requester = rules.get("requester").and_then(Value::as_str).unwrap_or("");
    if !self_ok && who == requester {
        return Err("you started this run; someone else must approve it".into());
    }
    if !approvers.is_empty() && !approvers.contains(&who) {
        return Err("you are not one of this approval's approvers".into());
    }
    if approvers.is_empty() {
        // Anyone in the chat it was posted to (the platform must match).
        let to_platform = rules
            .get("to")
            .and_then(Value::as_str)
            .and_then(|t| t.split_once(':'))
            .map_or("", |(p, _)| p);
        let who_platform = who.split_once(':').map_or("", |(p, _)| p);
        if !to_platform.is_empty() && who_platform != to_platform && who_platform != "api" {
            return Err(format!(
                "this approval is decided in {to_platform}, not {who_platform}"
            ));
        }
    }
    Ok(())
}

/// A short random id: what an approval button carries (Telegram allows 64 bytes).
fn signal_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    let alphabet = b"abcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(20);
    let mut x = n;
    for _ in 0..20 {
        out.push(char::from(alphabet[(x % 33) as usize]));
        x /= 33;
    }
    out
}

fn wait(call: &Call<'_>) -> Outcome {
    let until = call.input.get("until").and_then(Value::as_i64).unwrap_or(0);
    if now_ms() >= until {
        return Outcome::Done(json!({"until": until}));
    }
    Outcome::Suspend {
        wake_at: until,
        note: Some(json!({"waiting_until": until})),
    }
}

async fn sub_workflow(call: &Call<'_>) -> Outcome {
    let name = call.str("workflow").to_string();
    let input = call
        .input
        .get("input")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // The child's key is the parent's step: a resumed parent finds the same child.
    let started = call
        .engine
        .start(StartRequest {
            workflow: name.clone(),
            input,
            kind: "workflow".into(),
            trigger: json!({"parent_run": call.run, "parent_step": call.path}),
            by: Some(call.caller.clone()),
            key: Some(call.effect_key()),
            parent: Some((call.run.to_string(), call.path.to_string())),
        })
        .await;
    let id = match started {
        Ok(Started::New { id, .. } | Started::Existing { id, .. }) => id,
        Err(e) => return Outcome::Failed(Failure::from_error(&e)),
    };
    // Wait a little for a child that runs here; a longer one wakes the parent when it ends.
    let run = match call
        .engine
        .wait(
            &id,
            Duration::from_millis(
                u64::try_from((call.deadline - now_ms()).clamp(0, 60_000)).unwrap_or(0),
            ),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(Failure::from_error(&e)),
    };
    match run.state {
        RunState::Succeeded => Outcome::Done(json!({
            "run": run.id,
            "output": run.output.unwrap_or(Value::Null),
        })),
        RunState::Failed | RunState::Cancelled => Outcome::Failed(Failure::other(format!(
            "sub-workflow `{name}` (run {}) {}: {}",
            run.id,
            run.state,
            run.error.unwrap_or_default()
        ))),
        _ => Outcome::Suspend {
            wake_at: call.deadline,
            note: Some(json!({"waiting_for": run.id})),
        },
    }
}
