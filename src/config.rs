//! Configuration: one TOML file, overridable key by key from the environment.
//!
//! Loading goes file → defaults → `CONVEYOR__SECTION__KEY` overrides → typed structs. Every
//! problem is reported at once: when a key fails to deserialise we note it (with its path and
//! where the value came from), drop that key and try again, so one typo does not hide the next.
//! Relative paths in the file resolve against the file's folder, not the working directory, so
//! `conveyor --config some/dir/conveyor.toml` behaves the same from anywhere.
//!
//! Each part owns its section (`[llm]` is [`crate::agent::llm::LlmConfig`], a chat platform's
//! `[channels.NAME]` its own type behind [`crate::channels::PLATFORMS`], …) and checks it; the
//! value types they share live in the leaf [`crate::values`]. This module is the loader, the
//! checks that span sections, and `[server]` ([`ServerConfig`]: the process's own listener and
//! limits, read by the composition — `server`, `http` — which itself depends on the loader). No
//! part imports it, and it imports no surface. The section types are re-exported here for
//! callers of the whole.
//!
//! Secrets are never values here: the file names an environment variable (`url_env`,
//! `token_env`, ...), read through [`crate::values::Env`]; [`Secret`] hides the value from
//! `Debug`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

pub use crate::agent::llm::{LlmConfig, LlmProvider};
pub use crate::agent::offline::AnswerConfig;
pub use crate::agent::prompts::PromptsConfig;
pub use crate::channels::ChannelsConfig;
pub use crate::channels::webhook::{ForwardTarget, HookConfig, HookReply, HookVerify};
pub use crate::gateway::access::AccessConfig;
pub use crate::gateway::{GatewayConfig, LimitsConfig};
pub use crate::knowledge::{Bm25Params, IndexBackend, IndexConfig};
pub use crate::store::StoreConfig;
pub use crate::tools::ToolsConfig;
pub use crate::values::{Env, HumanDuration, Rate, Secret};

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
    pub access: AccessConfig,
    /// Named groups of people for the tool policy: `[roles] finance = ["slack:U0123"]`.
    pub roles: crate::gateway::roles::RolesConfig,
    /// Facts about people that access rules read: `[attributes."slack:T0123:U0456"]
    /// region = "EMEA"`.
    pub attributes: crate::gateway::roles::AttributesConfig,
    /// Delta tables of business data: `[lakehouse]`.
    pub lakehouse: crate::lakehouse::LakehouseConfig,
    /// Connector definitions: `[connectors]`.
    pub connectors: crate::connectors::ConnectorsConfig,
    /// How workflow runs are executed: `[workflows]`.
    pub workflows: crate::workflows::WorkflowsConfig,
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
    /// Upper bound for handling one request (reading its body included).
    pub request_timeout: HumanDuration,
    /// How long a client may take to send a request's headers before its connection is
    /// closed (slow-loris clients).
    pub header_read_timeout: HumanDuration,
    /// Open connections at most; more are closed as they arrive.
    pub max_connections: usize,
    /// Requests handled at once at most; more get 503 with `Retry-After` instead of waiting
    /// in an unbounded queue.
    pub max_in_flight: usize,
    /// Reverse proxies (their IP addresses) whose `X-Forwarded-For` names the client, for the
    /// per-address rate limit; from anyone else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl ServerConfig {
    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.max_body_bytes < 256 {
            problems.push("server.max_body_bytes: must be at least 256".into());
        }
        if self.header_read_timeout.0.is_zero() {
            problems
                .push("server.header_read_timeout: must be longer than 0s, e.g. \"10s\"".into());
        }
        if self.max_connections == 0 || self.max_in_flight == 0 {
            problems
                .push("server.max_connections and server.max_in_flight: must be at least 1".into());
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            drain_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 4096,
            max_in_flight: 1024,
            trusted_proxies: Vec::new(),
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

    /// Checks that go beyond types: each section's own checks, then consistency between
    /// sections.
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.server.validate(&mut problems);
        if let Err(e) = self.store_url() {
            problems.push(e.to_string());
        }
        self.index.validate(&mut problems);
        self.answer.validate(&mut problems);
        self.llm.validate(&Env::process(), &mut problems);
        for (name, hook) in &self.hooks {
            hook.validate(name, self.server.max_body_bytes, &mut problems);
            if let Some(Ok(target)) = hook.forward_to.as_deref().map(ForwardTarget::parse)
                && !self.channels.has(target.channel.as_str())
            {
                problems.push(format!(
                    "hooks.{name}.forward_to: {} is not configured; add [channels.{}]",
                    target.channel, target.channel
                ));
            }
        }
        self.channels.validate(&mut problems);
        problems.extend(self.workflows.validate());
        self.roles.validate(&mut problems);
        self.attributes.validate(&mut problems);
        self.access
            .validate(&crate::channels::access_platforms(), &mut problems);
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

    /// The store URL (see [`StoreConfig::url_in`]), reading `store.url_env` from the process
    /// environment.
    pub fn store_url(&self) -> Result<String> {
        self.store.url_in(&self.base_dir, &Env::process())
    }

    /// What connector runs read: `[connectors]`, `[index]` and the config folder.
    pub fn run_settings(&self) -> crate::connectors::RunSettings {
        crate::connectors::RunSettings {
            connectors: self.connectors.clone(),
            index: self.index.clone(),
            base_dir: self.base_dir.clone(),
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
        self.index.path_in(&self.base_dir)
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
    fn platform_sections_are_checked_by_their_platform_and_the_registry() {
        let err = load(
            concat!(
                "[channels.teams]\nx = 1\n",
                "[channels.slack]\nsigning_secret_env = \"S\"\nbot_token_env = \"T\"\ntypo = 1\n",
                "[channels.telegram]\ntoken_env = \"\"\n",
                "[access.whatsapp]\nusers = [\"1\"]\n",
                "[access.telegram]\nguilds = [\"1\"]\n",
                "[access.slack]\nusers = [\" \"]\n",
                "[hooks.gh]\nverify = \"bearer\"\nsecret_env = \"X\"\ntext = \"t\"\nforward_to = \"discord:1\"\n",
            ),
            &[("CONVEYOR__CHANNELS__SLACK__API_BASE_URL", "ftp://x")],
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "channels.teams: there is no chat platform called `teams`; use slack, discord or telegram",
            "channels.slack.typo: unknown field",
            "channels.telegram.token_env",
            "access.whatsapp: there is no chat platform called `whatsapp`",
            "access.telegram.guilds: only discord has guilds; use `chats` instead",
            "access.slack.users: ` ` is not an id",
            "hooks.gh.forward_to: discord is not configured; add [channels.discord]",
        ] {
            assert!(err.contains(expected), "`{expected}` missing from:\n{err}");
        }
        // An override reaches a platform's section like any other key.
        let err = load(
            "[channels.slack]\nsigning_secret_env = \"S\"\nbot_token_env = \"T\"\n",
            &[("CONVEYOR__CHANNELS__SLACK__API_BASE_URL", "ftp://x")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("channels.slack.api_base_url"), "{err}");
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
}
