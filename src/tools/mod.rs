//! Tools the agent may call, and the one path every call takes.
//!
//! A [`Tool`] is a name, a description, a JSON Schema for its arguments, a [`ToolPolicy`] and
//! an async `call`. The [`ToolRegistry`] holds them and is the only way to run one:
//! [`ToolRegistry::invoke`] looks the tool up, checks the policy, validates the arguments
//! against the schema, runs the call under a time limit, and writes the call to the audit log
//! *before* handing the result back. A result that could not be audited is discarded.
//!
//! Built in: [`search::SearchKnowledge`]. Declarative tools are files in `tools.dir`
//! ([`load_dir`]), one per tool, dispatched on their `kind`: `http` ([`http::HttpTool`]) for
//! now; workflow files (`kind = "workflow"`) are skipped here and read by `workflows::load_dir`.
//!
//! Outbound HTTP from tools goes through [`net`], the SSRF guard.

pub mod bi;
pub mod http;
pub mod net;
pub mod search;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::store::{AuditEntry, Store};
use crate::values::{Env, HumanDuration};

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

/// A capability the agent can use.
///
/// Object-safe, so the registry holds `Arc<dyn Tool>`. `call` receives arguments that already
/// passed the schema of [`Tool::parameters`] and the [`Tool::policy`] check; it does not audit
/// (the registry does) and does not enforce its own timeout (the registry does that too).
#[async_trait]
pub trait Tool: Send + Sync {
    /// Unique name, `[A-Za-z0-9_-]{1,64}` (what LLM providers accept as a function name).
    fn name(&self) -> &str;
    /// What kind of tool this is, for listings: `builtin`, `http`, …
    fn kind(&self) -> &str {
        "builtin"
    }
    /// What the tool does, written for the model that decides whether to call it.
    fn description(&self) -> &str;
    /// A description for one turn: what `caller` may use of the tool for `question` (the BI
    /// tools describe the parts of the data model retrieved for the question, as the caller's
    /// views). `None`, the default, is [`Tool::description`].
    async fn describe_for(&self, _caller: &Caller, _question: &str) -> Option<String> {
        None
    }
    /// The JSON Schema of the arguments object (`"type": "object"` at the top).
    fn parameters(&self) -> &Value;
    /// Sensitive tools are denied unless their policy names who may call them.
    fn sensitive(&self) -> bool {
        false
    }
    /// Who may call it.
    fn policy(&self) -> &ToolPolicy;
    /// Its own time limit; `None` uses `tools.timeout`.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// Runs the tool. Errors are sentences for the model or person who asked.
    async fn call(&self, caller: &Caller, args: Value) -> Result<Value>;
    /// Runs the tool for an answer: its value for the model (and the audit log) and, for data
    /// tools, the table and chart to show people (never sent to the model). Defaults to
    /// [`Tool::call`] with no data.
    async fn call_for_answer(&self, caller: &Caller, args: Value) -> Result<ToolOutput> {
        Ok(ToolOutput {
            value: self.call(caller, args).await?,
            data: None,
        })
    }
}

/// What a tool returned for an answer.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// What the model (and the audit log) gets.
    pub value: Value,
    /// The numbers behind it, formatted for people, with a chart where one helps.
    pub data: Option<Box<crate::model::DataAnswer>>,
}

/// Who may call a tool.
///
/// All three lists empty means anyone may call it (unless the tool is sensitive, see below).
/// Otherwise the caller must match at least one entry of any list: its user id is in `users`,
/// *or* its channel name (`api`, `cli`, `slack`, …) is in `channels`, *or* one of its roles is
/// in `roles`. Entries are compared exactly.
///
/// A tool marked `sensitive = true` is denied to everyone while all three lists are empty: a
/// sensitive tool must say explicitly who may call it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPolicy {
    /// Users who may call the tool, as `PLATFORM:ID` (`slack:U0123`, `telegram:42`,
    /// `api:key:0123456789ab` for an API key, `cli:alice` for a terminal user). An entry
    /// without a platform matches that id on the chat platforms and the terminal, never on the
    /// API or webhooks, whose callers name themselves.
    pub users: Vec<String>,
    /// Channel names that may call the tool.
    pub channels: Vec<String>,
    /// Roles that may call the tool (members are listed under `[roles]` in conveyor.toml).
    pub roles: Vec<String>,
}

impl ToolPolicy {
    /// Whether no list restricts the tool.
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.channels.is_empty() && self.roles.is_empty()
    }

    /// `Ok` when `caller` may call a tool with this policy, or why not.
    pub fn check(&self, caller: &Caller, sensitive: bool) -> std::result::Result<(), String> {
        if self.is_open() {
            return if sensitive {
                Err(
                    "it is marked sensitive and its policy does not name anyone who may \
                     call it; an operator must list users, channels or roles under [policy]"
                        .into(),
                )
            } else {
                Ok(())
            };
        }
        let qualified = format!("{}:{}", caller.channel, caller.user_id);
        let self_named = matches!(caller.channel.as_str(), "api" | "webhook");
        let allowed = self
            .users
            .iter()
            .any(|u| *u == qualified || (!self_named && *u == caller.user_id))
            || self.channels.contains(&caller.channel)
            || self.roles.iter().any(|r| caller.roles.contains(r));
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "its policy does not allow user `{}` on channel `{}`{}",
                caller.user_id,
                caller.channel,
                if caller.roles.is_empty() {
                    " (no roles)".to_owned()
                } else {
                    format!(" with roles {}", caller.roles.join(", "))
                }
            ))
        }
    }
}

/// Who is calling a tool, for policy and audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The platform user id.
    pub user_id: String,
    /// The channel name (`api`, `cli`, `slack`, …).
    pub channel: String,
    /// The conversation storage key.
    pub conversation: String,
    /// Roles granted to the user.
    pub roles: Vec<String>,
    /// The user's attributes (`[attributes]`), for the access rules of BI tools.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: crate::model::Attributes,
}

/// What an LLM is told about a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub parameters: Value,
}

/// How a call ended; the spelling is what the audit log stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The tool ran and returned a result.
    Ok,
    /// Unknown tool, the tool failed, or the call could not be audited.
    Error,
    /// The policy does not allow this caller.
    Denied,
    /// The arguments do not match the schema.
    Invalid,
    /// The tool did not finish within its time limit.
    Timeout,
}

impl OutcomeKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Denied => "denied",
            Self::Invalid => "invalid",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of [`ToolRegistry::invoke`]. Only ever built after the call was audited, except
/// when auditing itself failed, in which case it is an error without a result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolOutcome {
    /// The tool name as asked for.
    pub tool: String,
    /// How the call ended.
    pub kind: OutcomeKind,
    /// The tool's result, when `kind` is `ok`.
    pub result: Option<Value>,
    /// What went wrong, for the model or the person, when `kind` is not `ok`.
    pub message: Option<String>,
    /// How long the call took (policy, validation and the tool itself; not the audit write).
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// The id of the audit record, when it was written.
    pub audit_id: Option<i64>,
    /// The table and chart of a data tool's result, for the answer (not for the model).
    #[serde(skip)]
    pub data: Option<Box<crate::model::DataAnswer>>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ToolOutcome {
    /// Whether the tool ran and returned a result.
    pub fn is_ok(&self) -> bool {
        self.kind == OutcomeKind::Ok
    }

    /// What to hand back to a model as the tool's answer: the result, or
    /// `{"error": …, "outcome": …}`.
    pub fn for_model(&self) -> Value {
        match &self.result {
            Some(v) if self.is_ok() => v.clone(),
            _ => json!({
                "error": self.message.as_deref().unwrap_or("the tool failed"),
                "outcome": self.kind.as_str(),
            }),
        }
    }
}

/// Turns a value into what may be written to the audit log (e.g. replaces personal data).
pub type RedactHook = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A [`RedactHook`] that keeps values as they are.
pub fn no_redaction() -> RedactHook {
    Arc::new(Value::clone)
}

struct Registered {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

/// The tools, and the one path through which they run (see the module docs).
pub struct ToolRegistry {
    tools: BTreeMap<String, Registered>,
    store: Store,
    default_timeout: Duration,
    redact: RedactHook,
}

impl fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("default_timeout", &self.default_timeout)
            .finish_non_exhaustive()
    }
}

/// Most schema problems listed in one error message.
const MAX_SCHEMA_PROBLEMS: usize = 10;

impl ToolRegistry {
    /// An empty registry auditing into `store`, with `tools.timeout` as the default time
    /// limit and `redact` applied to arguments and results before they are audited.
    pub fn new(store: Store, config: &ToolsConfig, redact: RedactHook) -> Self {
        Self {
            tools: BTreeMap::new(),
            store,
            default_timeout: config.timeout.0,
            redact,
        }
    }

    /// Adds a tool. Its name must be new and well-formed and its parameters a valid JSON
    /// Schema of an object.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<()> {
        let name = tool.name().to_owned();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::Config(format!(
                "tool name {name:?} is not allowed; use 1 to 64 letters, digits, `_` or `-`"
            )));
        }
        if self.tools.contains_key(&name) {
            return Err(Error::Config(format!(
                "a tool named `{name}` is already registered; tool names must be unique"
            )));
        }
        let schema = tool.parameters();
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(Error::Config(format!(
                "tool `{name}`: parameters must be a JSON Schema with type = \"object\" at the top"
            )));
        }
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            Error::Config(format!(
                "tool `{name}`: parameters is not a valid JSON Schema: {e}"
            ))
        })?;
        self.tools.insert(name, Registered { tool, validator });
        Ok(())
    }

    /// Every tool, by name.
    pub fn list(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.values().map(|r| Arc::clone(&r.tool)).collect()
    }

    /// One tool by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).map(|r| Arc::clone(&r.tool))
    }

    /// What an LLM is told about every tool.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|r| spec(r.tool.as_ref())).collect()
    }

    /// What an LLM is told about the tools `caller` may call; offering a model a tool the
    /// policy will deny only wastes a step.
    pub fn specs_for(&self, caller: &Caller) -> Vec<ToolSpec> {
        self.tools
            .values()
            .filter(|r| r.tool.policy().check(caller, r.tool.sensitive()).is_ok())
            .map(|r| spec(r.tool.as_ref()))
            .collect()
    }

    /// The tools `caller` may call, described for `question` ([`Tool::describe_for`]).
    pub async fn specs_for_turn(&self, caller: &Caller, question: &str) -> Vec<ToolSpec> {
        let mut specs = self.specs_for(caller);
        for s in &mut specs {
            if let Some(tool) = self.get(&s.name)
                && let Some(d) = tool.describe_for(caller, question).await
            {
                s.description = d;
            }
        }
        specs
    }

    /// Runs one call: lookup, policy, argument validation, the call under its time limit,
    /// then the audit record. The outcome is returned only after the record is written; if it
    /// cannot be written, the outcome is an error and the result is dropped.
    ///
    /// Policy is checked before the arguments so that a caller who may not use a tool learns
    /// nothing about what it expects. `null` arguments count as `{}`.
    ///
    /// Dropping the returned future cancels the call, and then nothing is recorded: callers
    /// that must account for side effects (an HTTP POST that may have reached the API) should
    /// let it finish; the tool's own time limit bounds how long that takes.
    pub async fn invoke(&self, caller: &Caller, name: &str, args: Value) -> ToolOutcome {
        let span = tracing::info_span!(
            "tool",
            tool = name,
            channel = %caller.channel,
            conversation = %caller.conversation,
        );
        self.invoke_inner(caller, name, args).instrument(span).await
    }

    async fn invoke_inner(&self, caller: &Caller, name: &str, args: Value) -> ToolOutcome {
        let started = Instant::now();
        let args = if args.is_null() { json!({}) } else { args };
        let (kind, output) = self.run(caller, name, &args).await;
        let duration = started.elapsed();
        let (output, data) = match output {
            Ok(out) => (Ok(out.value), out.data),
            Err(m) => (Err(m), None),
        };

        let audited_result = match &output {
            Ok(v) => (self.redact)(v),
            Err(message) => (self.redact)(&json!({ "error": message })),
        };
        let entry = AuditEntry {
            user_id: caller.user_id.clone(),
            channel: caller.channel.clone(),
            conversation: caller.conversation.clone(),
            action: name.to_owned(),
            arguments: (self.redact)(&args),
            result: audited_result,
            outcome: kind.as_str().to_owned(),
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
        };
        match self.store.audit_append(&entry).await {
            Ok(id) => {
                tracing::info!(
                    outcome = kind.as_str(),
                    duration_ms = entry.duration_ms,
                    audit_id = id,
                    "tool call"
                );
                let (result, message) = match output {
                    Ok(v) => (Some(v), None),
                    Err(m) => (None, Some(m)),
                };
                ToolOutcome {
                    tool: name.to_owned(),
                    kind,
                    result,
                    message,
                    duration,
                    audit_id: Some(id),
                    data,
                }
            }
            Err(error) => {
                tracing::error!(%error, outcome = kind.as_str(), "tool call not audited; its result is discarded");
                ToolOutcome {
                    tool: name.to_owned(),
                    kind: OutcomeKind::Error,
                    result: None,
                    message: Some(
                        "the call could not be written to the audit log, so its result was \
                         discarded; try again later"
                            .into(),
                    ),
                    duration,
                    audit_id: None,
                    data: None,
                }
            }
        }
    }

    /// Everything before the audit: how the call ended and its result or message.
    async fn run(
        &self,
        caller: &Caller,
        name: &str,
        args: &Value,
    ) -> (OutcomeKind, std::result::Result<ToolOutput, String>) {
        let Some(entry) = self.tools.get(name) else {
            let known: Vec<&str> = self.tools.keys().map(String::as_str).collect();
            return (
                OutcomeKind::Error,
                Err(format!(
                    "there is no tool named `{name}`; available tools: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )),
            );
        };
        let tool = &entry.tool;
        if let Err(reason) = tool.policy().check(caller, tool.sensitive()) {
            return (
                OutcomeKind::Denied,
                Err(format!("you may not use the tool `{name}`: {reason}")),
            );
        }
        let problems: Vec<String> = entry
            .validator
            .iter_errors(args)
            .take(MAX_SCHEMA_PROBLEMS)
            .map(|e| {
                let at = pointer_to_path(e.instance_path().as_str());
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return (
                OutcomeKind::Invalid,
                Err(format!(
                    "invalid arguments for `{name}`: {}",
                    problems.join("; ")
                )),
            );
        }
        let limit = tool.timeout().unwrap_or(self.default_timeout);
        match tokio::time::timeout(limit, tool.call_for_answer(caller, args.clone())).await {
            Ok(Ok(v)) => (OutcomeKind::Ok, Ok(v)),
            Ok(Err(e)) => (OutcomeKind::Error, Err(format!("`{name}` failed: {e}"))),
            Err(_) => (
                OutcomeKind::Timeout,
                Err(format!(
                    "`{name}` did not finish within {}",
                    crate::values::HumanDuration(limit)
                )),
            ),
        }
    }
}

fn spec(tool: &dyn Tool) -> ToolSpec {
    ToolSpec {
        name: tool.name().to_owned(),
        description: tool.description().to_owned(),
        parameters: tool.parameters().clone(),
    }
}

/// `/filters/source` → `filters.source`, the way a person names a field.
fn pointer_to_path(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// What loading declarative tools needs besides the files.
pub struct LoadContext<'a> {
    /// `[tools]`: allow list, default size cap.
    pub tools: &'a ToolsConfig,
    /// Where secrets are read from; the process environment outside tests.
    pub env: Env,
}

impl<'a> LoadContext<'a> {
    /// Reads secrets from the process environment.
    pub fn new(tools: &'a ToolsConfig) -> Self {
        Self {
            tools,
            env: Env::process(),
        }
    }
}

/// Loads every `*.toml` in `dir` as a tool and registers it. Other files (`README.md`,
/// `*.toml.example`, hidden files) are ignored; a missing folder means no declarative tools.
///
/// Problems are collected across all files and reported in one [`Error::Config`], each with
/// its file, what is wrong and how to fix it. Returns how many tools were registered.
pub fn load_dir(dir: &Path, cx: &LoadContext<'_>, registry: &mut ToolRegistry) -> Result<usize> {
    let files = toml_files(dir)?;

    let mut problems = Vec::new();
    let mut defined_in: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        let origin = file.display().to_string();
        let tool: Arc<dyn Tool> = match load_file(file, &origin, cx) {
            Ok(Some(t)) => t,
            // A workflow: read by `workflows::load_dir`, registered as a tool by the app.
            Ok(None) => continue,
            Err(mut ps) => {
                problems.append(&mut ps);
                continue;
            }
        };
        let name = tool.name().to_owned();
        if let Some(first) = defined_in.get(&name) {
            problems.push(format!(
                "{origin}: the tool name `{name}` is already used by {}; rename one of them",
                first.display()
            ));
            continue;
        }
        if registry.get(&name).is_some() {
            problems.push(format!(
                "{origin}: `{name}` is the name of a built-in tool; choose another name"
            ));
            continue;
        }
        match registry.register(tool) {
            Ok(()) => {
                defined_in.insert(name, file.clone());
            }
            Err(e) => problems.push(format!("{origin}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(defined_in.len())
    } else {
        let mut msg = format!(
            "{} problem{} in the tool files of {}:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            dir.display()
        );
        for p in &problems {
            msg.push_str("\n  - ");
            msg.push_str(p);
        }
        Err(Error::Config(msg))
    }
}

/// The `*.toml` files of the tools folder `dir`, sorted (hidden files and other names left
/// out); none when the folder does not exist.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read the tools folder {} (tools.dir): {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".toml") && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one tool file and builds the tool its `kind` names; problems are prefixed with the
/// file.
fn load_file(
    file: &Path,
    origin: &str,
    cx: &LoadContext<'_>,
) -> std::result::Result<Option<Arc<dyn Tool>>, Vec<String>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![format!("{origin}: cannot read the file: {e}")])?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        vec![format!(
            "{origin}: not valid TOML: {}",
            e.to_string().trim_end()
        )]
    })?;
    match table.get("kind").and_then(toml::Value::as_str) {
        Some("http") => http::HttpTool::from_toml(table, origin, cx)
            .map(|t| Some(Arc::new(t) as Arc<dyn Tool>))
            .map_err(|ps| ps.into_iter().map(|p| format!("{origin}: {p}")).collect()),
        Some("workflow") => Ok(None),
        Some(other) => Err(vec![format!(
            "{origin}: kind = \"{other}\" is not a tool kind conveyor knows; use kind = \"http\" or \"workflow\""
        )]),
        None => Err(vec![format!(
            "{origin}: kind is missing; add kind = \"http\" (or \"workflow\") at the top of the file"
        )]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn caller(user: &str, channel: &str, roles: &[&str]) -> Caller {
        Caller {
            user_id: user.into(),
            channel: channel.into(),
            conversation: "cli:t".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn policy_lists_are_alternatives_and_sensitive_needs_a_list() {
        let open = ToolPolicy::default();
        assert!(open.check(&caller("a", "api", &[]), false).is_ok());
        assert!(open.check(&caller("a", "api", &[]), true).is_err());

        let p = ToolPolicy {
            users: vec!["alice".into()],
            channels: vec!["cli".into()],
            roles: vec!["finance".into()],
        };
        assert!(p.check(&caller("alice", "slack", &[]), true).is_ok());
        assert!(p.check(&caller("bob", "cli", &[]), true).is_ok());
        assert!(p.check(&caller("bob", "api", &["finance"]), true).is_ok());
        let err = p
            .check(&caller("bob", "api", &["sales"]), false)
            .unwrap_err();
        assert!(err.contains("bob") && err.contains("sales"), "{err}");
    }

    /// Issue 12, finding 3: an API caller typed a Slack user's id and unlocked a sensitive
    /// tool. Ids are compared with their platform.
    #[test]
    fn users_are_matched_with_their_platform() {
        let p = ToolPolicy {
            users: vec!["slack:U123".into(), "U777".into()],
            ..ToolPolicy::default()
        };
        assert!(p.check(&caller("U123", "slack", &[]), true).is_ok());
        assert!(p.check(&caller("U123", "api", &[]), true).is_err());
        assert!(p.check(&caller("U123", "telegram", &[]), true).is_err());
        // An entry without a platform never matches a caller who names themselves.
        assert!(p.check(&caller("U777", "discord", &[]), true).is_ok());
        assert!(p.check(&caller("U777", "api", &[]), true).is_err());
        assert!(p.check(&caller("U777", "webhook", &[]), true).is_err());
        let keyed = ToolPolicy {
            users: vec!["api:key:0123456789ab".into()],
            ..ToolPolicy::default()
        };
        assert!(
            keyed
                .check(&caller("key:0123456789ab", "api", &[]), true)
                .is_ok()
        );
    }

    #[test]
    fn json_pointers_become_dotted_paths() {
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/filters/source"), "filters.source");
        assert_eq!(pointer_to_path("/a~1b/0"), "a/b.0");
    }
}
