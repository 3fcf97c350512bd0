//! Generic signed webhooks: `[hooks.NAME]` in the config, `POST /hooks/NAME` on the server.
//!
//! A [`Hook`] checks a request's signature ([`super::verify`]), renders the configured
//! templates over its JSON payload into an [`Inbound`], and picks the delivery's idempotency
//! key. The HTTP side (status codes, sync or async replies) lives in `http::hooks`.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::verify::{self, VerifyError};
use crate::error::{Error, Result};
use crate::model::{Channel, ConversationKey, Inbound, UserRef};
use crate::values::{Env, Secret};

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
    /// means "ignore this delivery". Not used with `workflow`.
    #[serde(default)]
    pub text: String,
    /// Start this workflow with the payload as its input, instead of answering a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
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
        let (platform, chat) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not PLATFORM:CHAT_ID, e.g. \"slack:C0123456789\""))?;
        let channel = match crate::channels::kind(platform) {
            Some(kind) => kind.channel,
            None => {
                return Err(format!(
                    "`{platform}` is not a chat platform; use {}",
                    crate::channels::names()
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
    /// Adds every problem of `[hooks.NAME]` to `problems`.
    pub fn validate(&self, name: &str, server_max: usize, problems: &mut Vec<String>) {
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
        if self.workflow.is_some() {
            if !self.text.trim().is_empty() {
                problems.push(format!(
                    "hooks.{name}.text: a hook that starts a workflow passes the payload as the workflow's input; remove text"
                ));
            }
            if self.forward_to.is_some() {
                problems.push(format!(
                    "hooks.{name}.forward_to: a hook that starts a workflow answers nothing to forward; post from the workflow with a publish step"
                ));
            }
        } else if self.text.trim().is_empty() {
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

/// The request headers a hook reads. The HTTP layer implements it, so no HTTP types come here.
pub trait Headers {
    /// The value of header `name` (lower-case): `Some(Err(()))` when it is present but not
    /// visible ASCII.
    fn header(&self, name: &str) -> Option<std::result::Result<&str, ()>>;
}

/// Longest delivery id taken from a header; longer ones are refused.
const MAX_KEY_LEN: usize = 200;

/// Every configured hook, compiled and with its secret read.
#[derive(Default)]
pub struct Hooks {
    hooks: BTreeMap<String, Hook>,
}

/// One configured webhook.
pub struct Hook {
    name: String,
    verify: HookVerify,
    secret: Secret,
    env: Environment<'static>,
    /// How answers are returned.
    pub reply: HookReply,
    /// Largest accepted body, when the hook sets one.
    pub max_body_bytes: Option<usize>,
    /// The chat the answer is also posted into.
    pub forward_to: Option<crate::channels::webhook::ForwardTarget>,
    /// The workflow a delivery starts (with the payload as input) instead of a message.
    pub workflow: Option<String>,
}

/// A verified delivery turned into a message, or the reason it is ignored.
#[derive(Debug)]
pub enum Rendered {
    /// Answer this.
    Message(Inbound),
    /// The text template rendered to nothing (e.g. GitHub's `ping`).
    Ignored(String),
}

impl Hooks {
    /// Compiles every hook's templates and reads its secret through `env`. Every problem is
    /// reported at once, each naming its hook.
    pub fn build(configs: &BTreeMap<String, HookConfig>, env: &Env) -> Result<Self> {
        let mut problems = Vec::new();
        let mut hooks = BTreeMap::new();
        for (name, config) in configs {
            match Hook::build(name, config, env) {
                Ok(hook) => {
                    hooks.insert(name.clone(), hook);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(format!(
                "webhooks are misconfigured:\n  - {}",
                problems.join("\n  - ")
            )));
        }
        Ok(Self { hooks })
    }

    /// The hook named `name`.
    pub fn get(&self, name: &str) -> Option<&Hook> {
        self.hooks.get(name)
    }
}

impl Hook {
    fn build(name: &str, config: &HookConfig, env: &Env) -> std::result::Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let secret =
            Secret::from_lookup(&config.secret_env, &format!("hooks.{name}.secret_env"), env)
                .map_err(|e| problems.push(e.to_string()))
                .ok();
        let mut jinja = Environment::new();
        // Payloads differ by event: `{{ issue.title }}` on a push must render empty, not fail.
        jinja.set_undefined_behavior(UndefinedBehavior::Chainable);
        for (key, source) in [
            ("text", &config.text),
            ("conversation", &config.conversation),
            ("user", &config.user),
        ] {
            if let Err(e) = jinja.add_template_owned(key, source.clone()) {
                problems.push(format!(
                    "hooks.{name}.{key}: the template does not compile: {e}"
                ));
            }
        }
        if let (Some(secret), true) = (secret, problems.is_empty()) {
            if config.verify == HookVerify::StandardWebhooks && !standard_secret_ok(&secret) {
                return Err(vec![format!(
                    "hooks.{name}.secret_env: {} must hold a Standard Webhooks secret, whsec_<base64>",
                    config.secret_env
                )]);
            }
            return Ok(Self {
                name: name.to_string(),
                verify: config.verify,
                secret,
                env: jinja,
                reply: config.reply,
                max_body_bytes: config.max_body_bytes,
                forward_to: config
                    .forward_to
                    .as_deref()
                    .and_then(|t| crate::channels::webhook::ForwardTarget::parse(t).ok()),
                workflow: config.workflow.clone(),
            });
        }
        Err(problems)
    }

    /// The hook's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the request's signature; `now` is Unix seconds.
    pub fn verify(
        &self,
        headers: &dyn Headers,
        body: &[u8],
        now: i64,
    ) -> std::result::Result<(), VerifyError> {
        let secret = self.secret.expose();
        match self.verify {
            HookVerify::HmacSha256 => {
                verify::github_sha256(secret, body, header(headers, "x-hub-signature-256"))
            }
            HookVerify::StandardWebhooks => verify::standard_webhooks(
                secret,
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                body,
                header(headers, "webhook-signature"),
                now,
            ),
            HookVerify::Bearer => verify::bearer(secret, header(headers, "authorization")),
        }
    }

    /// The delivery's idempotency key (not yet scoped by hook), taken only from what the
    /// hook's scheme vouches for, so a captured delivery cannot be replayed as a new one by
    /// changing an unsigned header:
    /// - Standard Webhooks: `webhook-id`, which the signature covers;
    /// - HMAC (`X-Hub-Signature-256`) signs only the body: a hash of the body
    ///   (`X-GitHub-Delivery` is not signed, and a redelivery carries the same body);
    /// - bearer: the sender holds the token, so its `Idempotency-Key`, else a hash of the body.
    pub fn delivery_key(&self, headers: &dyn Headers, body: &[u8]) -> Result<String> {
        let header = match self.verify {
            HookVerify::StandardWebhooks => Some("webhook-id"),
            HookVerify::HmacSha256 => None,
            HookVerify::Bearer => Some("idempotency-key"),
        };
        if let Some(name) = header
            && let Some(value) = headers.header(name)
        {
            let value = value
                .map_err(|_| {
                    Error::BadInput(format!("the {name} header must be plain ASCII text"))
                })?
                .trim();
            if value.is_empty() || value.len() > MAX_KEY_LEN {
                return Err(Error::BadInput(format!(
                    "the {name} header must have 1 to {MAX_KEY_LEN} characters"
                )));
            }
            return Ok(value.to_string());
        }
        Ok(format!("sha256-{}", hex::encode(Sha256::digest(body))))
    }

    /// Renders the templates over `payload` into a message keyed by `key`.
    pub fn render(
        &self,
        payload: &serde_json::Value,
        event: Option<&str>,
        key: &str,
    ) -> Result<Rendered> {
        let mut context = match payload {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        context.insert("payload".into(), payload.clone());
        context.insert("hook".into(), self.name.clone().into());
        context.insert(
            "event".into(),
            event.map_or(serde_json::Value::Null, |e| e.into()),
        );
        let context = serde_json::Value::Object(context);
        let text = self.render_one("text", &context)?;
        if text.trim().is_empty() {
            return Ok(Rendered::Ignored(format!(
                "the text template of hook {} rendered nothing for this payload{}",
                self.name,
                event.map(|e| format!(" (event {e})")).unwrap_or_default()
            )));
        }
        let conversation = self.render_one("conversation", &context)?;
        let user = self.render_one("user", &context)?;
        for (what, value) in [("conversation", &conversation), ("user", &user)] {
            if value.trim().is_empty() {
                return Err(Error::BadInput(format!(
                    "the {what} template of hook {} rendered nothing for this payload",
                    self.name
                )));
            }
        }
        Ok(Rendered::Message(Inbound {
            idempotency_key: scoped_key(&self.name, key),
            conversation: ConversationKey::new(Channel::WEBHOOK, conversation.trim()),
            user: UserRef {
                id: user.trim().to_string(),
                name: None,
            },
            text: text.trim().to_string(),
            attachments: Vec::new(),
        }))
    }

    fn render_one(&self, template: &str, context: &serde_json::Value) -> Result<String> {
        self.env
            .get_template(template)
            .and_then(|t| t.render(context))
            .map_err(|e| {
                Error::BadInput(format!(
                    "the {template} template of hook {} failed on this payload: {e}",
                    self.name
                ))
            })
    }
}

/// The delivery key as the gateway sees it: scoped by hook, so two hooks never share keys.
pub fn scoped_key(hook: &str, key: &str) -> String {
    format!("{hook}:{key}")
}

fn standard_secret_ok(secret: &Secret) -> bool {
    use base64::Engine;
    let raw = secret.expose().trim();
    let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .is_ok_and(|k| !k.is_empty())
}

fn header<'a>(headers: &'a dyn Headers, name: &str) -> Option<&'a str> {
    headers.header(name).and_then(|v| v.ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config(text: &str) -> HookConfig {
        HookConfig {
            verify: HookVerify::HmacSha256,
            secret_env: "HOOK_SECRET".into(),
            text: text.into(),
            conversation: "{{ hook }}".into(),
            user: "webhook:{{ hook }}".into(),
            reply: HookReply::Sync,
            max_body_bytes: None,
            forward_to: None,
            workflow: None,
        }
    }

    fn env(name: &str) -> Option<String> {
        (name == "HOOK_SECRET").then(|| "s3cret".to_string())
    }

    #[test]
    fn renders_payload_fields_and_ignores_empty_text() {
        let mut configs = BTreeMap::new();
        configs.insert(
            "gh".to_string(),
            config("{% if issue %}{{ sender.login }}: {{ issue.title }}{% endif %}"),
        );
        let hooks = Hooks::build(&configs, &Env::new(env)).unwrap();
        let hook = hooks.get("gh").unwrap();
        let payload = serde_json::json!({"issue": {"title": "Broken"}, "sender": {"login": "ann"}});
        match hook.render(&payload, Some("issues"), "d1").unwrap() {
            Rendered::Message(m) => {
                assert_eq!(m.text, "ann: Broken");
                assert_eq!(m.conversation.id, "gh");
                assert_eq!(m.user.id, "webhook:gh");
                assert_eq!(m.idempotency_key, "gh:d1");
            }
            Rendered::Ignored(r) => panic!("ignored: {r}"),
        }
        let ping = serde_json::json!({"zen": "Keep it simple", "hook_id": 1});
        assert!(matches!(
            hook.render(&ping, Some("ping"), "d2").unwrap(),
            Rendered::Ignored(_)
        ));
    }

    #[test]
    fn start_up_errors_name_the_hook() {
        let mut configs = BTreeMap::new();
        configs.insert("broken".to_string(), config("{% if %}"));
        let err = Hooks::build(&configs, &Env::new(env))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hooks.broken.text"), "{err}");
        let mut configs = BTreeMap::new();
        configs.insert("nosecret".to_string(), config("x"));
        let err = Hooks::build(&configs, &Env::empty())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("HOOK_SECRET"), "{err}");
        assert!(err.contains("hooks.nosecret.secret_env"), "{err}");
    }
}
