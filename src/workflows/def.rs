//! Workflow definitions: `tools/*.toml` files with `kind = "workflow"`, read and checked with
//! every problem reported at once, each naming the file, the step and the key.
//!
//! ```toml
//! name = "weekly_digest"
//! kind = "workflow"
//! description = "Last week's revenue by plan, posted to #sales every Monday"
//! timeout = "10m"                       # the whole run (default 1h)
//! concurrency = 1                       # runs at once (default: no limit)
//! idempotency = "{{ trigger.fire_time }}"   # runs with the same key are one run
//!
//! [[triggers]]
//! schedule = "0 9 * * MON"
//!
//! [[steps]]
//! id = "revenue"
//! query = "revenue by plan last week"   # a question for the semantic model (or sql = "…")
//!
//! [[steps]]
//! id = "post"
//! publish = "slack:C0123456789"
//! text = "Revenue last week:\n{{ steps.revenue.table }}"
//! ```
//!
//! Step inputs are minijinja templates over `input` (the trigger's payload, checked against
//! `[inputs]`), `trigger`, `run` and the outputs of earlier steps (`steps.ID`); a template that
//! names a step that does not come before it is a definition error, not a failed run.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::tools::ToolPolicy;
use crate::values::HumanDuration;

/// The longest a run may take unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long an approval waits unless its `timeout` says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A checked workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its name (also its name as a tool).
    pub name: String,
    /// What it does, for people and for the model that may call it.
    pub description: String,
    /// The file it was read from.
    pub origin: String,
    /// The JSON Schema of its input.
    pub inputs: Value,
    /// What starts it.
    pub triggers: Vec<Trigger>,
    /// What it does, in order.
    pub steps: Vec<Step>,
    /// A template over the run for its output (default: the last step's output).
    pub output: Option<String>,
    /// Runs at once; `None`: no limit.
    pub concurrency: Option<u32>,
    /// The longest a run may take.
    pub timeout: Duration,
    /// A template over the trigger's payload: runs with the same key are one run.
    pub idempotency: Option<String>,
    /// A step run when the run fails (e.g. a message to a channel).
    pub on_failure: Option<Box<Step>>,
    /// Who may start it by hand or call it as a tool.
    pub policy: ToolPolicy,
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// `POST /hooks/NAME` of a `[hooks.NAME]` with `workflow = "…"`.
    Hook(String),
    /// A cron pattern (5 or 6 fields, or `@daily` …), in UTC.
    Schedule(String),
    /// `/run NAME args` in chat.
    Command(String),
    /// New or changed rows of a silver table after a sync, matching a SQL condition.
    Data {
        /// The table, `silver.NAME`.
        table: String,
        /// A condition over its columns; `None`: every new or changed row.
        filter: Option<String>,
    },
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within its workflow; what later templates call it (`steps.ID`).
    pub id: String,
    /// What it does.
    pub kind: StepKind,
    /// Tries after a failure.
    pub retry: Retry,
    /// The longest one attempt may take; `None`: the run's own deadline.
    pub timeout: Option<Duration>,
    /// A template; when it renders truthy the step is skipped.
    pub skip_if: Option<String>,
    /// A failure is recorded and the run goes on.
    pub continue_on_error: bool,
}

/// What a step does; every string is a template unless said otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A registered tool (name, not a template) with its arguments.
    Tool {
        /// The tool's name.
        tool: String,
        /// Its arguments: a JSON object whose strings are templates.
        args: Value,
    },
    /// One agent turn with this prompt.
    Agent {
        /// The prompt.
        prompt: String,
    },
    /// A question for the semantic model, or read-only SQL.
    Query {
        /// A question ("revenue by plan last week").
        question: Option<String>,
        /// Read-only SQL.
        sql: Option<String>,
    },
    /// An HTTP request through the SSRF guard.
    Http {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// A JSON body whose strings are templates.
        body: Option<Value>,
    },
    /// A message to a chat conversation (`PLATFORM:CHAT`, not a template).
    Publish {
        /// Where.
        to: String,
        /// The text.
        text: String,
    },
    /// Approve/reject buttons posted to `to`; the run waits for a permitted person.
    Approval {
        /// Where the question goes (`PLATFORM:CHAT`).
        to: String,
        /// The question.
        text: String,
        /// Who may answer (`PLATFORM:ID`); empty: anyone in the chat.
        approvers: Vec<String>,
        /// Whether the person who started the run may approve it.
        self_approval: bool,
        /// How long it waits.
        timeout: Duration,
        /// What a timeout counts as.
        approve_on_timeout: bool,
    },
    /// The first branch whose condition renders truthy runs its steps.
    Branch(Vec<Branch>),
    /// The steps once per item of a list (`item` in their templates).
    ForEach {
        /// A template rendering to a list (`{{ steps.q.rows }}`).
        items: String,
        /// Items at once.
        parallelism: u32,
        /// What runs per item.
        steps: Vec<Step>,
    },
    /// Waits this long.
    Sleep(Duration),
    /// Waits until this time (a template rendering to RFC 3339).
    WaitUntil(String),
    /// Another workflow (a name, not a template) with its input.
    Workflow {
        /// Its name.
        name: String,
        /// Its input: a JSON object whose strings are templates.
        input: Value,
    },
}

/// One arm of a branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// A template; `None`: the default arm.
    pub when: Option<String>,
    /// What runs.
    pub steps: Vec<Step>,
}

/// How a failed step is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    /// The first pause.
    pub backoff: Duration,
    /// Each pause is this many times the one before.
    pub factor: f64,
    /// The longest pause.
    pub max_backoff: Duration,
    /// Pauses vary by up to ±20%, so retries of many runs do not arrive together.
    pub jitter: bool,
    /// Which failures are retried: `timeout`, `upstream`, `rate_limited`, `any`.
    pub on: Vec<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Duration::from_secs(1),
            factor: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: true,
            on: vec!["timeout".into(), "upstream".into(), "rate_limited".into()],
        }
    }
}

/// Failure kinds a retry may name.
const RETRY_ON: &[&str] = &["timeout", "upstream", "rate_limited", "any"];

// ----- the file as written -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    inputs: Option<toml::Table>,
    #[serde(default)]
    triggers: Vec<TriggerDef>,
    #[serde(default)]
    steps: Vec<StepDef>,
    output: Option<String>,
    concurrency: Option<u32>,
    timeout: Option<HumanDuration>,
    idempotency: Option<String>,
    on_failure: Option<StepDef>,
    #[serde(default)]
    policy: ToolPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDef {
    hook: Option<String>,
    schedule: Option<String>,
    command: Option<String>,
    data: Option<String>,
    filter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StepDef {
    #[serde(default)]
    id: String,
    // One of these says what the step is.
    tool: Option<String>,
    agent: Option<String>,
    query: Option<String>,
    sql: Option<String>,
    http: Option<HttpDef>,
    publish: Option<String>,
    approval: Option<String>,
    branch: Option<Vec<BranchDef>>,
    for_each: Option<String>,
    sleep: Option<HumanDuration>,
    wait_until: Option<String>,
    workflow: Option<String>,
    // Their arguments.
    args: Option<toml::Table>,
    input: Option<toml::Table>,
    text: Option<String>,
    approvers: Option<Vec<String>>,
    self_approval: Option<bool>,
    on_timeout: Option<String>,
    parallelism: Option<u32>,
    steps: Option<Vec<StepDef>>,
    // How it runs.
    retry: Option<RetryDef>,
    timeout: Option<HumanDuration>,
    skip_if: Option<String>,
    #[serde(default)]
    continue_on_error: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpDef {
    #[serde(default = "get")]
    method: String,
    url: String,
    body: Option<toml::Value>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchDef {
    when: Option<String>,
    #[serde(default)]
    steps: Vec<StepDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryDef {
    attempts: Option<u32>,
    backoff: Option<HumanDuration>,
    factor: Option<f64>,
    max_backoff: Option<HumanDuration>,
    jitter: Option<bool>,
    on: Option<Vec<String>>,
}

/// Reads and checks one workflow file's TOML (`kind = "workflow"`). Every problem is returned,
/// each starting with where it is (`steps.post.text: …`); the caller adds the file.
pub fn from_toml(table: toml::Table, origin: &str) -> Result<Workflow, Vec<String>> {
    let file: File =
        crate::values::from_toml_at(toml::Value::Table(table), "").map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    if file.kind != "workflow" {
        problems.push(format!("kind: `{}` is not \"workflow\"", file.kind));
    }
    if !is_name(&file.name) {
        problems.push(format!(
            "name: `{}` must be 1 to 64 letters, digits, `_` or `-` (what a model calls it)",
            file.name
        ));
    }
    if file.description.trim().is_empty() {
        problems.push(
            "description is empty; say what the workflow does, for people and for the model that may call it"
                .into(),
        );
    }
    let inputs = match file.inputs {
        Some(t) => serde_json::to_value(t).unwrap_or_else(|_| serde_json::json!({})),
        None => serde_json::json!({"type": "object"}),
    };
    if inputs.get("type").and_then(Value::as_str) != Some("object") {
        problems.push("inputs: the input's JSON Schema must have type = \"object\"".into());
    } else if let Err(e) = jsonschema::validator_for(&inputs) {
        problems.push(format!("inputs: not a valid JSON Schema: {e}"));
    }
    let triggers = triggers(&file.triggers, &mut problems);
    let required: Vec<&str> = inputs
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, t) in triggers.iter().enumerate() {
        if matches!(t, Trigger::Schedule(_)) && !required.is_empty() {
            problems.push(format!(
                "triggers[{i}].schedule: a schedule starts runs with no input, but [inputs] requires {}; give those properties defaults in the steps instead",
                required.join(", ")
            ));
        }
    }
    if file.steps.is_empty() {
        problems.push("steps: a workflow needs at least one [[steps]]".into());
    }
    let mut scope = Scope::default();
    let steps = steps(&file.steps, "steps", &mut scope, &mut problems);
    let timeout = duration(file.timeout, "timeout", DEFAULT_TIMEOUT, &mut problems);
    if file.concurrency == Some(0) {
        problems.push("concurrency: 0 would never run; leave it out for no limit".into());
    }
    let all_steps = scope.done.clone();
    let check_run_template = |t: &str, key: &str, problems: &mut Vec<String>| {
        let s = Scope {
            done: all_steps.clone(),
            ..Scope::default()
        };
        template(t, key, &s, problems);
    };
    if let Some(o) = &file.output {
        check_run_template(o, "output", &mut problems);
    }
    if let Some(k) = &file.idempotency {
        // Over the trigger only: steps have not run when the key is taken.
        template(k, "idempotency", &Scope::default(), &mut problems);
    }
    let on_failure = file.on_failure.as_ref().and_then(|f| {
        let mut s = Scope {
            done: all_steps.clone(),
            failure: true,
            ..Scope::default()
        };
        let id = if f.id.is_empty() { "on_failure" } else { &f.id };
        step(f, id, "on_failure", &mut s, &mut problems).map(Box::new)
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Workflow {
        name: file.name,
        description: file.description,
        origin: origin.to_string(),
        inputs,
        triggers,
        steps,
        output: file.output,
        concurrency: file.concurrency,
        timeout,
        idempotency: file.idempotency,
        on_failure,
        policy: file.policy,
    })
}

fn triggers(defs: &[TriggerDef], problems: &mut Vec<String>) -> Vec<Trigger> {
    let mut out = Vec::new();
    for (i, t) in defs.iter().enumerate() {
        let key = format!("triggers[{i}]");
        let set = [
            t.hook.is_some(),
            t.schedule.is_some(),
            t.command.is_some(),
            t.data.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            problems.push(format!(
                "{key}: give exactly one of hook, schedule, command or data (found {set})"
            ));
            continue;
        }
        if t.filter.is_some() && t.data.is_none() {
            problems.push(format!("{key}.filter: only a data trigger takes a filter"));
        }
        if let Some(h) = &t.hook {
            if !is_name(h) {
                problems.push(format!(
                    "{key}.hook: `{h}` is not a hook name ([hooks.NAME] in conveyor.toml)"
                ));
            }
            out.push(Trigger::Hook(h.clone()));
        } else if let Some(s) = &t.schedule {
            match crate::connectors::schedule::parse_schedule(s) {
                Ok(_) => out.push(Trigger::Schedule(s.clone())),
                Err(e) => problems.push(format!("{key}.schedule: `{s}` {e}")),
            }
        } else if let Some(c) = &t.command {
            if !is_name(c) {
                problems.push(format!(
                    "{key}.command: `{c}` must be one word (what follows /run)"
                ));
            }
            out.push(Trigger::Command(c.clone()));
        } else if let Some(d) = &t.data {
            let table = d.strip_prefix("silver.").unwrap_or(d);
            if !is_name(table) {
                problems.push(format!(
                    "{key}.data: `{d}` is not a silver table (write silver.NAME)"
                ));
            }
            out.push(Trigger::Data {
                table: format!("silver.{table}"),
                filter: t.filter.clone(),
            });
        }
    }
    out
}

/// What templates of a step may name.
#[derive(Debug, Clone, Default)]
struct Scope {
    /// Steps finished before this one (and their ids are taken).
    done: Vec<String>,
    /// Every id used so far, nested ones included (ids are unique in a workflow).
    ids: BTreeSet<String>,
    /// Inside a for_each: `item` and `index` exist.
    in_loop: bool,
    /// In on_failure: `error` exists.
    failure: bool,
}

fn steps(defs: &[StepDef], at: &str, scope: &mut Scope, problems: &mut Vec<String>) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        let key = if d.id.is_empty() {
            format!("{at}[{i}]")
        } else {
            format!("{at}.{}", d.id)
        };
        if let Some(s) = step(d, &d.id, &key, scope, problems) {
            out.push(s);
        }
    }
    out
}

/// Step `d`, called `id` (its own id, or what its place gives it).
fn step(
    d: &StepDef,
    id: &str,
    key: &str,
    scope: &mut Scope,
    problems: &mut Vec<String>,
) -> Option<Step> {
    let before = problems.len();
    if id.is_empty() {
        problems.push(format!(
            "{key}: every step needs an id (letters, digits, `_`), what later steps call it"
        ));
    } else if !is_ident(id) {
        problems.push(format!(
            "{key}.id: `{}` must be letters, digits and `_`, starting with a letter (templates read it as steps.{})",
            id, id
        ));
    } else if !scope.ids.insert(id.to_string()) {
        problems.push(format!(
            "{key}.id: `{id}` is used by another step; ids are unique in a workflow"
        ));
    }
    let kinds: Vec<&str> = [
        ("tool", d.tool.is_some()),
        ("agent", d.agent.is_some()),
        ("query", d.query.is_some()),
        ("sql", d.sql.is_some()),
        ("http", d.http.is_some()),
        ("publish", d.publish.is_some()),
        ("approval", d.approval.is_some()),
        ("branch", d.branch.is_some()),
        ("for_each", d.for_each.is_some()),
        ("sleep", d.sleep.is_some()),
        ("wait_until", d.wait_until.is_some()),
        ("workflow", d.workflow.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| *k)
    .collect();
    if kinds.len() != 1 {
        problems.push(format!(
            "{key}: give exactly one of tool, agent, query, sql, http, publish, approval, branch, for_each, sleep, wait_until or workflow (found {})",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        ));
        return None;
    }
    let kind_name = kinds.first().copied().unwrap_or("");
    // Keys that belong to other kinds.
    let allowed: &[&str] = match kind_name {
        "tool" => &["args"],
        "publish" => &["text"],
        "approval" => &["text", "approvers", "self_approval", "on_timeout"],
        "for_each" => &["parallelism", "steps"],
        "workflow" => &["input"],
        _ => &[],
    };
    for (name, set) in [
        ("args", d.args.is_some()),
        ("input", d.input.is_some()),
        ("text", d.text.is_some()),
        ("approvers", d.approvers.is_some()),
        ("self_approval", d.self_approval.is_some()),
        ("on_timeout", d.on_timeout.is_some()),
        ("parallelism", d.parallelism.is_some()),
        ("steps", d.steps.is_some()),
    ] {
        if set && !allowed.contains(&name) {
            problems.push(format!("{key}.{name}: a {kind_name} step has no `{name}`"));
        }
    }
    let t = |text: &str, sub: &str, problems: &mut Vec<String>| {
        template(text, &format!("{key}.{sub}"), scope, problems);
    };
    let kind = match kind_name {
        "tool" => {
            let tool = d.tool.clone().unwrap_or_default();
            let args = table_json(d.args.as_ref());
            json_templates(&args, &format!("{key}.args"), scope, problems);
            StepKind::Tool { tool, args }
        }
        "agent" => {
            let prompt = d.agent.clone().unwrap_or_default();
            t(&prompt, "agent", problems);
            StepKind::Agent { prompt }
        }
        "query" | "sql" => {
            if let Some(q) = &d.query {
                t(q, "query", problems);
            }
            if let Some(q) = &d.sql {
                t(q, "sql", problems);
            }
            StepKind::Query {
                question: d.query.clone(),
                sql: d.sql.clone(),
            }
        }
        "http" => {
            let h = d.http.as_ref()?;
            let method = h.method.to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                problems.push(format!(
                    "{key}.http.method: `{}` is not GET, POST, PUT, PATCH or DELETE",
                    h.method
                ));
            }
            t(&h.url, "http.url", problems);
            let body = h
                .body
                .as_ref()
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null));
            if let Some(b) = &body {
                json_templates(b, &format!("{key}.http.body"), scope, problems);
            }
            StepKind::Http {
                method,
                url: h.url.clone(),
                body,
            }
        }
        "publish" => {
            let to = d.publish.clone().unwrap_or_default();
            chat_target(&to, &format!("{key}.publish"), problems);
            let text = d.text.clone().unwrap_or_default();
            if text.trim().is_empty() {
                problems.push(format!("{key}.text: say what to post"));
            }
            t(&text, "text", problems);
            StepKind::Publish { to, text }
        }
        "approval" => {
            let to = d.approval.clone().unwrap_or_default();
            chat_target(&to, &format!("{key}.approval"), problems);
            let text = d.text.clone().unwrap_or_default();
            if text.trim().is_empty() {
                problems.push(format!("{key}.text: say what is to be approved"));
            }
            t(&text, "text", problems);
            let approvers = d.approvers.clone().unwrap_or_default();
            for a in &approvers {
                if !a
                    .split_once(':')
                    .is_some_and(|(p, id)| !p.is_empty() && !id.is_empty())
                {
                    problems.push(format!(
                        "{key}.approvers: `{a}` has no platform; write PLATFORM:ID as in [roles], e.g. `slack:T0123:U0456` or `telegram:42`"
                    ));
                }
            }
            let approve_on_timeout = match d.on_timeout.as_deref() {
                None | Some("reject") => false,
                Some("approve") => true,
                Some(other) => {
                    problems.push(format!(
                        "{key}.on_timeout: `{other}` is not \"reject\" or \"approve\""
                    ));
                    false
                }
            };
            StepKind::Approval {
                to,
                text,
                approvers,
                self_approval: d.self_approval.unwrap_or(true),
                timeout: duration(
                    d.timeout,
                    &format!("{key}.timeout"),
                    DEFAULT_APPROVAL_TIMEOUT,
                    problems,
                ),
                approve_on_timeout,
            }
        }
        "branch" => {
            let arms = d.branch.as_deref().unwrap_or_default();
            if arms.is_empty() {
                problems.push(format!("{key}.branch: list at least one arm"));
            }
            let mut out = Vec::new();
            let start = scope.done.clone();
            let mut after: Vec<String> = Vec::new();
            for (i, arm) in arms.iter().enumerate() {
                let at = format!("{key}.branch[{i}]");
                if arm.when.is_none() && i + 1 != arms.len() {
                    problems.push(format!(
                        "{at}: an arm without `when` (the default) must be the last"
                    ));
                }
                if let Some(w) = &arm.when {
                    template(w, &format!("{at}.when"), scope, problems);
                }
                // Each arm sees the steps before the branch and its own earlier steps.
                scope.done.clone_from(&start);
                let s = steps(&arm.steps, &format!("{at}.steps"), scope, problems);
                after.extend(scope.done.iter().skip(start.len()).cloned());
                out.push(Branch {
                    when: arm.when.clone(),
                    steps: s,
                });
            }
            // After the branch an arm's steps may or may not have run: later steps can
            // name them (their output is empty when skipped).
            scope.done = start;
            scope.done.extend(after);
            StepKind::Branch(out)
        }
        "for_each" => {
            let items = d.for_each.clone().unwrap_or_default();
            t(&items, "for_each", problems);
            let parallelism = d.parallelism.unwrap_or(1);
            if parallelism == 0 {
                problems.push(format!("{key}.parallelism: at least 1"));
            }
            let inner_defs = d.steps.as_deref().unwrap_or_default();
            if inner_defs.is_empty() {
                problems.push(format!("{key}.steps: say what runs for each item"));
            }
            let start = scope.done.clone();
            let was = scope.in_loop;
            scope.in_loop = true;
            let inner = steps(inner_defs, &format!("{key}.steps"), scope, problems);
            scope.in_loop = was;
            // After the loop, its output is the list of the items' last outputs.
            scope.done = start;
            StepKind::ForEach {
                items,
                parallelism,
                steps: inner,
            }
        }
        "sleep" => StepKind::Sleep(d.sleep.map_or(Duration::ZERO, |s| s.0)),
        "wait_until" => {
            let at = d.wait_until.clone().unwrap_or_default();
            t(&at, "wait_until", problems);
            StepKind::WaitUntil(at)
        }
        "workflow" => {
            let name = d.workflow.clone().unwrap_or_default();
            let input = table_json(d.input.as_ref());
            json_templates(&input, &format!("{key}.input"), scope, problems);
            StepKind::Workflow { name, input }
        }
        _ => return None,
    };
    let retry = retry(d.retry.as_ref(), &format!("{key}.retry"), problems);
    let timeout = match (kind_name, d.timeout) {
        ("approval", _) | (_, None) => None,
        (_, Some(HumanDuration(t))) if t.is_zero() => {
            problems.push(format!("{key}.timeout: must be longer than 0s"));
            None
        }
        (_, Some(HumanDuration(t))) => Some(t),
    };
    if let Some(s) = &d.skip_if {
        template(s, &format!("{key}.skip_if"), scope, problems);
    }
    if !id.is_empty() {
        scope.done.push(id.to_string());
    }
    if problems.len() > before {
        return None;
    }
    Some(Step {
        id: id.to_string(),
        kind,
        retry,
        timeout,
        skip_if: d.skip_if.clone(),
        continue_on_error: d.continue_on_error,
    })
}

fn retry(def: Option<&RetryDef>, key: &str, problems: &mut Vec<String>) -> Retry {
    let mut r = Retry::default();
    let Some(d) = def else { return r };
    if let Some(a) = d.attempts {
        if a == 0 || a > 100 {
            problems.push(format!("{key}.attempts: 1 to 100 tries in all"));
        }
        r.attempts = a.clamp(1, 100);
    }
    if let Some(b) = d.backoff {
        r.backoff = b.0;
    }
    if let Some(f) = d.factor {
        if !(1.0..=10.0).contains(&f) {
            problems.push(format!("{key}.factor: between 1 and 10"));
        }
        r.factor = f.clamp(1.0, 10.0);
    }
    if let Some(m) = d.max_backoff {
        r.max_backoff = m.0;
    }
    if r.max_backoff < r.backoff {
        problems.push(format!(
            "{key}.max_backoff: shorter than backoff; make it at least as long"
        ));
    }
    if let Some(j) = d.jitter {
        r.jitter = j;
    }
    if let Some(on) = &d.on {
        for o in on {
            if !RETRY_ON.contains(&o.as_str()) {
                problems.push(format!(
                    "{key}.on: `{o}` is not one of {}",
                    RETRY_ON.join(", ")
                ));
            }
        }
        r.on.clone_from(on);
    }
    r
}

fn duration(
    d: Option<HumanDuration>,
    key: &str,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match d {
        None => default,
        Some(HumanDuration(t)) if t.is_zero() => {
            problems.push(format!("{key}: must be longer than 0s"));
            default
        }
        Some(HumanDuration(t)) => t,
    }
}

/// `PLATFORM:CHAT` (`slack:C0123`, `telegram:-100123`, `discord:1234`).
fn chat_target(to: &str, key: &str, problems: &mut Vec<String>) {
    let ok = to
        .split_once(':')
        .is_some_and(|(p, c)| !p.is_empty() && !c.is_empty() && is_name(p));
    if !ok {
        problems.push(format!(
            "{key}: `{to}` is not PLATFORM:CHAT, e.g. `slack:C0123456789` or `telegram:-1001234567890`"
        ));
    }
}

fn table_json(t: Option<&toml::Table>) -> Value {
    t.map_or_else(
        || serde_json::json!({}),
        |t| serde_json::to_value(t).unwrap_or_else(|_| serde_json::json!({})),
    )
}

/// Checks every string of a JSON value as a template.
fn json_templates(v: &Value, key: &str, scope: &Scope, problems: &mut Vec<String>) {
    match v {
        Value::String(s) => template(s, key, scope, problems),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                json_templates(x, &format!("{key}[{i}]"), scope, problems);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                json_templates(x, &format!("{key}.{k}"), scope, problems);
            }
        }
        _ => {}
    }
}

/// Checks that `text` is a template whose variables exist where it runs.
fn template(text: &str, key: &str, scope: &Scope, problems: &mut Vec<String>) {
    if !text.contains("{{") && !text.contains("{%") {
        return;
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let tmpl = match env.template_from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{key}: not a valid template: {e}"));
            return;
        }
    };
    let mut names: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    names.sort();
    for name in names {
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or("");
        match root {
            "input" | "trigger" | "run" => {}
            "item" | "index" if scope.in_loop => {}
            "error" if scope.failure => {}
            "steps" => match parts.next() {
                Some(id) if scope.done.iter().any(|d| d == id) => {}
                Some(id) => problems.push(format!(
                    "{key}: `steps.{id}` is not a step that runs before this one{}",
                    if scope.done.is_empty() {
                        String::new()
                    } else {
                        format!(" (earlier steps: {})", scope.done.join(", "))
                    }
                )),
                None => problems.push(format!(
                    "{key}: name a step, as steps.ID (e.g. steps.{})",
                    scope.done.last().map_or("fetch", String::as_str)
                )),
            },
            other => problems.push(format!(
                "{key}: `{other}` is not something a template can read; use input, trigger, run or steps.ID{}",
                if scope.in_loop { ", item, index" } else { "" }
            )),
        }
    }
}

/// 1 to 64 of letters, digits, `_` and `-`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Letters, digits and `_`, starting with a letter.
fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn read(text: &str) -> Result<Workflow, Vec<String>> {
        from_toml(toml::from_str(text).unwrap(), "tools/w.toml")
    }

    const DIGEST: &str = r#"
        name = "weekly_digest"
        kind = "workflow"
        description = "Last week's revenue by plan, posted every Monday"
        timeout = "10m"
        concurrency = 1
        idempotency = "{{ trigger.fire_time }}"
        output = "{{ steps.post }}"

        [[triggers]]
        schedule = "0 9 * * MON"

        [[triggers]]
        command = "digest"

        [[steps]]
        id = "revenue"
        query = "revenue by plan last week"
        retry = { attempts = 3, backoff = "2s" }

        [[steps]]
        id = "post"
        publish = "slack:C0123456789"
        text = "Revenue last week:\n{{ steps.revenue.table }}"
        skip_if = "{{ not steps.revenue.rows }}"

        [on_failure]
        publish = "slack:C0123456789"
        text = "The digest failed: {{ error }}"
    "#;

    #[test]
    fn a_workflow_reads_with_its_triggers_steps_and_defaults() {
        let w = read(DIGEST).unwrap();
        assert_eq!(w.name, "weekly_digest");
        assert_eq!(w.timeout, Duration::from_secs(600));
        assert_eq!(w.concurrency, Some(1));
        assert_eq!(
            w.triggers,
            vec![
                Trigger::Schedule("0 9 * * MON".into()),
                Trigger::Command("digest".into())
            ]
        );
        assert_eq!(w.steps.len(), 2);
        assert_eq!(w.steps[0].retry.attempts, 3);
        assert_eq!(w.steps[0].retry.backoff, Duration::from_secs(2));
        assert!(matches!(
            &w.steps[1].kind,
            StepKind::Publish { to, .. } if to == "slack:C0123456789"
        ));
        let f = w.on_failure.unwrap();
        assert_eq!(f.id, "on_failure");
    }

    #[test]
    fn every_problem_is_named_with_its_step_and_key() {
        let problems = read(
            r#"
            name = "bad name!"
            kind = "workflow"
            description = ""
            concurrency = 0
            idempotency = "{{ steps.a.x }}"

            [[triggers]]
            schedule = "every tuesday"
            [[triggers]]
            hook = "gh"
            command = "x"

            [[steps]]
            id = "a"
            publish = "C0123"
            text = "{{ steps.b.table }}"

            [[steps]]
            id = "a"
            sql = "SELECT 1"
            args = { x = 1 }

            [[steps]]
            id = "c"
            tool = "search_knowledge"
            query = "x"

            [[steps]]
            id = "d"
            approval = "telegram:-100"
            text = "ok? {{ item }}"
            approvers = ["42"]
            on_timeout = "maybe"
            retry = { attempts = 0, on = ["gremlins"] }

            [[steps]]
            id = "e"
            for_each = "{{ steps.a.rows }}"
            steps = [{ id = "inner", publish = "slack:C1", text = "{{ item.name }} {{ steps.e.x }}" }]
            "#,
        )
        .unwrap_err();
        let has = |needle: &str| {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "no problem mentions {needle:?}: {problems:#?}"
            );
        };
        has("name: `bad name!`");
        has("description is empty");
        has("concurrency: 0");
        has("idempotency: `steps.a` is not a step that runs before this one");
        has("triggers[0].schedule: `every tuesday`");
        has("triggers[1]: give exactly one of hook, schedule, command or data (found 2)");
        has("steps.a.publish: `C0123` is not PLATFORM:CHAT");
        has("steps.a.text: `steps.b` is not a step that runs before this one");
        has("steps.a.id: `a` is used by another step");
        has("steps.a.args: a sql step has no `args`");
        has("steps.c: give exactly one of");
        has("steps.d.text: `item` is not something a template can read");
        has("steps.d.approvers: `42` has no platform");
        has("steps.d.on_timeout: `maybe`");
        has("steps.d.retry.attempts: 1 to 100");
        has("steps.d.retry.on: `gremlins`");
        has("steps.e.steps.inner.text: `steps.e` is not a step that runs before this one");
    }

    #[test]
    fn branches_and_loops_scope_their_steps() {
        let w = read(
            r#"
            name = "refunds"
            kind = "workflow"
            description = "Big refunds need a manager"
            [inputs]
            type = "object"
            required = ["order_id", "amount"]
            [inputs.properties.order_id]
            type = "string"
            [inputs.properties.amount]
            type = "number"

            [[triggers]]
            data = "orders"
            filter = "status = 'refund_requested' AND total_usd > 500"

            [[steps]]
            id = "route"
            branch = [
              { when = "{{ input.amount > 500 }}", steps = [
                { id = "ask", approval = "telegram:-100123", text = "Refund {{ input.order_id }}?", approvers = ["telegram:42"], self_approval = false, timeout = "2h" },
              ] },
              { steps = [{ id = "auto", sleep = "1s" }] },
            ]

            [[steps]]
            id = "each"
            for_each = "{{ [1, 2, 3] }}"
            parallelism = 2
            steps = [{ id = "call", http = { method = "post", url = "https://api.example.com/refunds/{{ item }}", body = { approved = "{{ steps.ask.approved }}" } } }]

            [[steps]]
            id = "done"
            publish = "telegram:-100123"
            text = "{{ steps.ask.approved }} {{ steps.each }}"
            "#,
        )
        .unwrap();
        assert_eq!(
            w.triggers,
            vec![Trigger::Data {
                table: "silver.orders".into(),
                filter: Some("status = 'refund_requested' AND total_usd > 500".into())
            }]
        );
        let StepKind::Branch(arms) = &w.steps[0].kind else {
            panic!()
        };
        assert_eq!(arms.len(), 2);
        assert!(matches!(
            &arms[0].steps[0].kind,
            StepKind::Approval { self_approval: false, timeout, approve_on_timeout: false, .. }
                if *timeout == Duration::from_secs(7200)
        ));
        let StepKind::ForEach {
            parallelism, steps, ..
        } = &w.steps[1].kind
        else {
            panic!()
        };
        assert_eq!(*parallelism, 2);
        assert!(matches!(&steps[0].kind, StepKind::Http { method, .. } if method == "POST"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_their_path() {
        let p = read(
            r#"
            name = "x"
            kind = "workflow"
            description = "d"
            [[steps]]
            id = "a"
            publish = "slack:C1"
            txt = "typo"
            "#,
        )
        .unwrap_err();
        assert!(p[0].contains("steps[0]") && p[0].contains("txt"), "{p:?}");
    }
}
