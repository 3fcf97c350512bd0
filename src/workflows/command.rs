//! `/run NAME args` in chat: a planner in front of the real one that starts a workflow run
//! for the person who typed it (under the workflow's `policy`), and hands every other message
//! on. On Slack the slash command is `/conveyor run NAME …`, on Discord the `/run` command.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{EngineSlot, StartRequest, Trigger};
use crate::agent::{PlanRequest, Planner, Reply};
use crate::error::Result;
use crate::store::workflows::RunState;
use crate::tools::Caller;

/// How long a `/run` waits for its run before answering with where it stands.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// The planner that answers `/run`.
pub struct CommandPlanner {
    inner: Arc<dyn Planner>,
    slot: Arc<EngineSlot>,
}

impl CommandPlanner {
    /// `/run` in front of `inner`.
    pub fn new(inner: Arc<dyn Planner>, slot: Arc<EngineSlot>) -> Self {
        Self { inner, slot }
    }
}

/// `key=value key2="two words"` or a JSON object → the run's input; other text →
/// `{"text": …}`. A value that reads as JSON (`3`, `true`, `[1,2]`) keeps its type.
pub fn parse_args(rest: &str) -> Value {
    let rest = rest.trim();
    if rest.is_empty() {
        return json!({});
    }
    if rest.starts_with('{')
        && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(rest)
    {
        return v;
    }
    let mut out = Map::new();
    let mut pairs = Vec::new();
    // Split on whitespace outside double quotes.
    let mut start = None;
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    pairs.push(&rest[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        pairs.push(&rest[s..]);
    }
    for p in &pairs {
        let Some((k, v)) = p.split_once('=') else {
            return json!({"text": rest});
        };
        if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return json!({"text": rest});
        }
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        let value = serde_json::from_str::<Value>(v)
            .ok()
            .filter(|x| !x.is_string())
            .unwrap_or_else(|| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Value::Object(out)
}

fn brief(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.get("text").is_some_and(Value::is_string) => o
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > 1500 {
        let mut cut: String = s.chars().take(1500).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

#[async_trait]
impl Planner for CommandPlanner {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn answer(&self, req: PlanRequest<'_>) -> Result<Reply> {
        let text = req.inbound.text.trim();
        let Some(rest) = text
            .strip_prefix("/run")
            .filter(|r| r.is_empty() || r.starts_with(char::is_whitespace))
        else {
            return self.inner.answer(req).await;
        };
        let Some(engine) = self.slot.get() else {
            return self.inner.answer(req).await;
        };
        let reply = |text: String| {
            Ok(Reply {
                text,
                ..Reply::default()
            })
        };
        let caller = Caller {
            user_id: req.inbound.user.id.clone(),
            channel: req.inbound.conversation.channel.as_str().to_string(),
            conversation: req.inbound.conversation.as_storage_key(),
            roles: req.roles.to_vec(),
            attributes: req.attributes.clone(),
        };
        let rest = rest.trim();
        let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        // A command trigger's word first, then the workflow's own name.
        let found = engine
            .workflows()
            .find(|w| {
                w.triggers
                    .iter()
                    .any(|t| matches!(t, Trigger::Command(c) if c.eq_ignore_ascii_case(name)))
            })
            .or_else(|| engine.workflows().find(|w| w.name == name))
            .cloned();
        let Some(w) = found else {
            let mine: Vec<String> = engine
                .workflows()
                .filter(|w| w.policy.check(&caller, false).is_ok())
                .map(|w| {
                    let word = w
                        .triggers
                        .iter()
                        .find_map(|t| match t {
                            Trigger::Command(c) => Some(c.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| w.name.clone());
                    format!("- `/run {word}` — {}", w.description)
                })
                .collect();
            return reply(if mine.is_empty() {
                "There is no workflow you may start here.".into()
            } else if name.is_empty() {
                format!("Workflows you can start:\n{}", mine.join("\n"))
            } else {
                format!(
                    "There is no workflow `{name}`. Workflows you can start:\n{}",
                    mine.join("\n")
                )
            });
        };
        if let Err(why) = w.policy.check(&caller, false) {
            return reply(format!("You may not start `{}`: {why}", w.name));
        }
        let started = engine
            .start(StartRequest {
                workflow: w.name.clone(),
                input: parse_args(args),
                kind: "command".into(),
                trigger: json!({"command": name, "text": text}),
                by: Some(caller),
                // The message's own key: a redelivered `/run` starts nothing new.
                key: Some(format!("command:{}", req.inbound.ledger_key())),
                parent: None,
            })
            .await;
        let id = match started {
            Ok(s) => s.id().to_string(),
            Err(crate::error::Error::BadInput(why)) => {
                return reply(format!("`{}` was not started: {why}", w.name));
            }
            Err(e) => return Err(e),
        };
        let run = engine.wait(&id, REPLY_WAIT).await?;
        reply(match run.state {
            RunState::Succeeded => format!(
                "`{}` finished (run `{}`).\n\n{}",
                w.name,
                run.id,
                run.output.as_ref().map(brief).unwrap_or_default()
            ),
            RunState::Failed | RunState::Cancelled => format!(
                "`{}` {} (run `{}`): {}",
                w.name,
                run.state,
                run.id,
                run.error.unwrap_or_default()
            ),
            RunState::Waiting => format!(
                "`{}` is waiting (run `{}`): for an approval, a sleep or a sub-workflow. It goes on by itself.",
                w.name, run.id
            ),
            RunState::Queued | RunState::Running => format!(
                "`{}` is running (run `{}`); `conveyor workflows show {}` follows it.",
                w.name, run.id, run.id
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_pairs_json_or_text() {
        assert_eq!(
            parse_args(r#"customer=acme amount=700 note="two words" ok=true"#),
            json!({"customer": "acme", "amount": 700, "note": "two words", "ok": true})
        );
        assert_eq!(parse_args(r#"{"a": [1]}"#), json!({"a": [1]}));
        assert_eq!(
            parse_args("summarise the week"),
            json!({"text": "summarise the week"})
        );
        assert_eq!(parse_args(""), json!({}));
        assert_eq!(parse_args("é=1 ü"), json!({"text": "é=1 ü"}));
    }
}
