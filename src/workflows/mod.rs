//! Durable workflows (issue "Autonomous workflows").
//!
//! `def.rs` reads and checks `tools/*.toml` files with `kind = "workflow"` (triggers, steps
//! and their templates, retries and timeouts; every problem at once with its file, step and
//! key). `engine.rs` runs them: every run and step attempt journaled in the store
//! (`store::workflows`), resumed after a crash at the first unfinished step by whichever
//! process claims it, suspended without cost while it waits (approval, sleep, sub-workflow),
//! cancelled and retried by operators. `steps.rs` is what each kind of step does,
//! `template.rs` renders step inputs. Each workflow is also a tool ([`WorkflowTool`]) the
//! agent may call under the workflow's `policy`.

pub mod command;
pub mod def;
pub mod engine;
pub mod feed;
pub mod steps;
pub mod template;

use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

pub use def::{Step, StepKind, Trigger, Workflow};
pub use engine::{Decided, Engine, StartRequest, WorkflowsConfig};

use crate::error::{Error, Result};
use crate::tools::{Caller, Tool, ToolPolicy};

/// Reads every `*.toml` of `dir` with `kind = "workflow"` (other kinds are tools). Every
/// problem of every file is reported at once, each with its file, step and key.
pub fn load_dir(dir: &Path) -> Result<Vec<Workflow>> {
    let files = crate::tools::toml_files(dir)?;
    let mut problems = Vec::new();
    let mut out: Vec<Workflow> = Vec::new();
    for file in &files {
        let origin = file.display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else {
            // tools::load_dir reports unreadable files.
            continue;
        };
        let Ok(table) = toml::from_str::<toml::Table>(&text) else {
            continue;
        };
        if table.get("kind").and_then(toml::Value::as_str) != Some("workflow") {
            continue;
        }
        match def::from_toml(table, &origin) {
            Ok(w) => {
                if let Some(first) = out.iter().find(|o| o.name == w.name) {
                    problems.push(format!(
                        "{origin}: the workflow name `{}` is already used by {}; rename one of them",
                        w.name, first.origin
                    ));
                } else {
                    out.push(w);
                }
            }
            Err(ps) => problems.extend(ps.into_iter().map(|p| format!("{origin}: {p}"))),
        }
    }
    // Sub-workflows must exist, and not call themselves round.
    for w in &out {
        for (key, name) in sub_workflows(&w.steps, "steps") {
            if !out.iter().any(|o| o.name == name) {
                problems.push(format!(
                    "{}: {key}.workflow: no workflow `{name}` in {}",
                    w.origin,
                    dir.display()
                ));
            } else if reaches(&out, &name, &w.name, 0) {
                problems.push(format!(
                    "{}: {key}.workflow: `{name}` leads back to `{}`; a workflow cannot call itself",
                    w.origin, w.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Config(format!(
            "{} problem{} in the workflow files of {}:\n  - {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            dir.display(),
            problems.join("\n  - ")
        )))
    }
}

/// `(key, name)` of every sub-workflow step.
fn sub_workflows(steps: &[Step], at: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in steps {
        let key = format!("{at}.{}", s.id);
        match &s.kind {
            StepKind::Workflow { name, .. } => out.push((key, name.clone())),
            StepKind::Branch(arms) => {
                for (i, arm) in arms.iter().enumerate() {
                    out.extend(sub_workflows(
                        &arm.steps,
                        &format!("{key}.branch[{i}].steps"),
                    ));
                }
            }
            StepKind::ForEach { steps, .. } => {
                out.extend(sub_workflows(steps, &format!("{key}.steps")));
            }
            _ => {}
        }
    }
    out
}

/// Whether workflow `from` calls `target`, directly or through others.
fn reaches(all: &[Workflow], from: &str, target: &str, depth: usize) -> bool {
    if from == target {
        return true;
    }
    if depth > all.len() {
        return false;
    }
    let Some(w) = all.iter().find(|w| w.name == from) else {
        return false;
    };
    sub_workflows(&w.steps, "steps")
        .iter()
        .any(|(_, n)| reaches(all, n, target, depth + 1))
}

/// What a workflow refers to outside itself, checked at start-up against what exists: tools
/// of `tool` steps, platforms of `publish` and `approval`, hooks of hook triggers. Each
/// problem names file, step and key.
pub fn check_references(
    defs: &[Workflow],
    tools: &[String],
    platforms: &[&str],
    hooks: &[(String, Option<String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for w in defs {
        let mut leaves = Vec::new();
        leaf_steps(&w.steps, "steps", &mut leaves);
        if let Some(f) = &w.on_failure {
            leaves.push(("on_failure".to_string(), f.as_ref()));
        }
        for (key, s) in leaves {
            match &s.kind {
                StepKind::Tool { tool, .. } if !tools.contains(tool) => problems.push(format!(
                    "{}: {key}.tool: no tool `{tool}`; registered tools: {}",
                    w.origin,
                    tools.join(", ")
                )),
                StepKind::Publish { to, .. } | StepKind::Approval { to, .. } => {
                    let platform = to.split_once(':').map_or(to.as_str(), |(p, _)| p);
                    if !platforms.contains(&platform) {
                        let which = if matches!(s.kind, StepKind::Publish { .. }) {
                            "publish"
                        } else {
                            "approval"
                        };
                        problems.push(format!(
                            "{}: {key}.{which}: [channels.{platform}] is not configured{}",
                            w.origin,
                            if platforms.is_empty() {
                                String::new()
                            } else {
                                format!(" (configured: {})", platforms.join(", "))
                            }
                        ));
                    }
                }
                _ => {}
            }
        }
        for (i, t) in w.triggers.iter().enumerate() {
            if let Trigger::Hook(h) = t {
                match hooks.iter().find(|(name, _)| name == h) {
                    // Not configured (it needs a secret): the trigger is off until it is;
                    // `hook_warnings` says so at start-up.
                    None => {}
                    Some((_, Some(target))) if target != &w.name => problems.push(format!(
                        "{}: triggers[{i}].hook: [hooks.{h}] starts workflow `{target}`, not `{}`",
                        w.origin, w.name
                    )),
                    Some((_, None)) => problems.push(format!(
                        "{}: triggers[{i}].hook: [hooks.{h}] has no workflow = \"{}\"; add it there",
                        w.origin, w.name
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    problems
}

/// Hook triggers whose `[hooks.NAME]` is not configured: the workflow runs by its other
/// triggers, and this says how to turn the webhook on (logged at start-up and by `doctor`).
pub fn hook_warnings(defs: &[Workflow], hooks: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for w in defs {
        for t in &w.triggers {
            if let Trigger::Hook(h) = t
                && !hooks.contains(h)
            {
                out.push(format!(
                    "{}: the webhook trigger is off: there is no [hooks.{h}] in conveyor.toml; add one with workflow = \"{}\", verify and secret_env to start runs with POST /hooks/{h}",
                    w.origin, w.name
                ));
            }
        }
    }
    out
}

fn leaf_steps<'a>(steps: &'a [Step], at: &str, out: &mut Vec<(String, &'a Step)>) {
    for s in steps {
        let key = format!("{at}.{}", s.id);
        match &s.kind {
            StepKind::Branch(arms) => {
                for (i, arm) in arms.iter().enumerate() {
                    leaf_steps(&arm.steps, &format!("{key}.branch[{i}].steps"), out);
                }
            }
            StepKind::ForEach { steps, .. } => leaf_steps(steps, &format!("{key}.steps"), out),
            _ => out.push((key, s)),
        }
    }
}

/// Where a [`WorkflowTool`] finds the engine, which is built after the tool registry it is
/// part of (a weak reference: the engine holds the registry).
#[derive(Default)]
pub struct EngineSlot(OnceLock<Weak<engine::EngineHandle>>);

impl EngineSlot {
    /// Points the slot at `engine`.
    pub fn set(&self, engine: &Engine) {
        let _ = self.0.set(engine.downgrade());
    }

    fn get(&self) -> Option<Engine> {
        self.0.get().and_then(Engine::upgrade)
    }
}

/// How long a tool call waits for its run before answering with where it stands.
const TOOL_WAIT: Duration = Duration::from_secs(20);

/// A workflow as a tool the agent may call (under the workflow's `policy`): starts a run
/// with the arguments as input and answers with its output, or with where it stands when it
/// waits (an approval) or takes longer.
pub struct WorkflowTool {
    name: String,
    description: String,
    parameters: Value,
    policy: ToolPolicy,
    slot: Arc<EngineSlot>,
}

impl WorkflowTool {
    /// The tool of workflow `w`.
    pub fn new(w: &Workflow, slot: Arc<EngineSlot>) -> Self {
        Self {
            name: w.name.clone(),
            description: format!(
                "{} (a workflow: starts a run; answers with its output, or with its run id when it waits for an approval or takes longer)",
                w.description
            ),
            parameters: w.inputs.clone(),
            policy: w.policy.clone(),
            slot,
        }
    }
}

#[async_trait]
impl Tool for WorkflowTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &str {
        "workflow"
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> &Value {
        &self.parameters
    }
    fn policy(&self) -> &ToolPolicy {
        &self.policy
    }
    fn timeout(&self) -> Option<Duration> {
        Some(TOOL_WAIT + Duration::from_secs(5))
    }
    async fn call(&self, caller: &Caller, args: Value) -> Result<Value> {
        let engine = self
            .slot
            .get()
            .ok_or_else(|| Error::Internal("the workflow engine is not running".into()))?;
        let started = engine
            .start(StartRequest {
                workflow: self.name.clone(),
                input: args,
                kind: "tool".into(),
                trigger: json!({"conversation": caller.conversation}),
                by: Some(caller.clone()),
                key: None,
                parent: None,
            })
            .await?;
        let run = engine.wait(started.id(), TOOL_WAIT).await?;
        Ok(json!({
            "run": run.id,
            "state": run.state,
            "output": run.output,
            "error": run.error,
        }))
    }
}

#[async_trait]
impl crate::channels::chat::Decider for Engine {
    async fn decide(
        &self,
        id: &str,
        approve: bool,
        who: &str,
    ) -> Result<crate::channels::chat::Decided> {
        let verb = if approve { "approved" } else { "rejected" };
        let (recorded, message) = match Engine::decide(self, id, approve, who).await? {
            Decided::Recorded => (true, format!("{verb} by {who}")),
            Decided::Already { decision, by } => (
                false,
                format!(
                    "This was already decided: {} by {by}.",
                    if decision == "approve" {
                        "approved"
                    } else {
                        "rejected"
                    }
                ),
            ),
            Decided::NotAllowed(why) => (false, format!("You cannot decide this: {why}.")),
            Decided::Unknown => (false, "This approval is no longer open.".to_string()),
        };
        Ok(crate::channels::chat::Decided { recorded, message })
    }
}
