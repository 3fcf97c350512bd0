//! `conveyor doctor`: checks what a deployment needs, one line per check, each problem with
//! advice. Local checks (config, secrets present and well-formed, store, index) always run;
//! with `online`, each configured chat platform is asked who we are with the configured
//! token, so a wrong or revoked token shows up here and not as a silent bot.
//!
//! Platform-specific checks live with their channel (`channels::slack::doctor`, …), so the
//! platforms' JSON stays in their files; this module runs them and formats the report.

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::model::Channel;
use crate::values::Env;

pub use crate::health::{Check, Status};

/// Every check, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// "3 ok, 1 warning, 0 failed".
    pub fn summary(&self) -> String {
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        let warnings = count(Status::Warn);
        let failed = count(Status::Fail);
        format!(
            "{} ok, {} warning{}, {} failed{}",
            count(Status::Ok),
            warnings,
            if warnings == 1 { "" } else { "s" },
            failed,
            if failed == 0 {
                ""
            } else {
                " — fix the FAIL lines first"
            }
        )
    }
}

/// Reads secrets from the process environment.
pub async fn run(config_path: &Path, online: bool) -> Report {
    run_with_env(config_path, online, &Env::process()).await
}

/// Like [`run`], with secrets looked up through `env` (tests).
pub async fn run_with_env(config_path: &Path, online: bool, env: &Env) -> Report {
    let mut report = Report::default();
    let config = match Config::load(config_path) {
        Ok(c) => {
            report.checks.push(Check::ok(
                "config",
                format!("{} loads and validates", config_path.display()),
            ));
            c
        }
        Err(e) => {
            report.checks.push(Check::fail(
                "config",
                e.to_string(),
                "fix the keys named above (every problem is listed), then run `conveyor doctor` again",
            ));
            return report;
        }
    };
    report.checks.push(store_check(&config, env).await);
    report.checks.push(index_check(&config).await);
    report.checks.push(llm_check(&config, env));
    report.checks.push(connectors_check(&config));
    for (name, hook) in &config.hooks {
        report.checks.push(hook_check(name, hook, env));
    }
    let mut any_platform = false;
    for kind in crate::channels::PLATFORMS {
        let Some(section) = config.channels.0.get(kind.name) else {
            continue;
        };
        any_platform = true;
        report
            .checks
            .extend((kind.doctor)(section, env, online).await);
        report.checks.push(access_check(&config, kind.channel));
    }
    if !any_platform {
        report.checks.push(Check::skip(
            "channels",
            "no chat platform configured (web, API and terminal only); see the README to add Slack, Discord or Telegram",
        ));
    }
    report
}

async fn store_check(config: &Config, env: &Env) -> Check {
    let url = match config.store.url_in(&config.base_dir, env) {
        Ok(u) => u,
        Err(e) => return Check::fail("store", e.to_string(), "set store.url or store.url_env"),
    };
    match crate::store::Store::connect(&url).await {
        Ok(store) => {
            let ping = store.ping().await;
            let backend = store.backend();
            store.close().await;
            match ping {
                Ok(()) => Check::ok(
                    "store",
                    format!("{backend:?} store answers; migrations applied"),
                ),
                Err(e) => Check::fail(
                    "store",
                    e.to_string(),
                    "check that the database is running and reachable",
                ),
            }
        }
        Err(e) => Check::fail(
            "store",
            e.to_string(),
            "check store.url: for SQLite the folder must be writable; for PostgreSQL the server must answer",
        ),
    }
}

async fn index_check(config: &Config) -> Check {
    match crate::knowledge::Knowledge::open(&config.index, &config.base_dir) {
        Ok(knowledge) => match knowledge.index.count().await {
            Ok(0) => Check::warn(
                "index",
                format!("{} is empty", config.index_path().display()),
                "index your documents: `conveyor index PATH…`",
            ),
            Ok(n) => Check::ok(
                "index",
                format!("{n} chunks in {}", config.index_path().display()),
            ),
            Err(e) => Check::fail(
                "index",
                e.to_string(),
                "re-create it with `conveyor index --force PATH…`",
            ),
        },
        Err(e) if e.to_string().contains("LOCK") || e.to_string().contains("held") => {
            Check::skip("index", format!("in use by a running process ({e})"))
        }
        Err(e) => Check::fail(
            "index",
            e.to_string(),
            "run `conveyor index PATH…` to create it",
        ),
    }
}

/// The connector files parse and validate (every problem at once, as `sync` would see them).
fn connectors_check(config: &Config) -> Check {
    let dir = config.connectors_dir();
    match crate::connectors::load_dir(&dir, &config.base_dir) {
        Ok(defs) if defs.is_empty() => {
            Check::ok("connectors", format!("none defined in {}", dir.display()))
        }
        Ok(defs) => Check::ok(
            "connectors",
            format!(
                "{} defined in {}: {}",
                defs.len(),
                dir.display(),
                defs.iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => Check::fail(
            "connectors",
            e.to_string(),
            "fix the connector files named above; `conveyor sync` refuses to run until they load",
        ),
    }
}

fn llm_check(config: &Config, env: &Env) -> Check {
    use crate::config::LlmProvider;
    if config.llm.provider == LlmProvider::Offline {
        return Check::ok(
            "llm",
            "offline planner (extractive answers with citations; no API key needed)",
        );
    }
    match config.llm.api_key_env.as_deref() {
        Some(var) if env.get(var).is_none_or(|v| v.trim().is_empty()) => Check::fail(
            "llm",
            format!("llm.api_key_env names {var}, which is not set"),
            format!("export {var}=… (the provider's API key) before starting conveyor"),
        ),
        _ => Check::ok(
            "llm",
            format!(
                "{:?} provider, model {}",
                config.llm.provider,
                config.llm.model.as_deref().unwrap_or("(provider default)")
            ),
        ),
    }
}

fn hook_check(name: &str, hook: &crate::config::HookConfig, env: &Env) -> Check {
    let area = "hooks";
    match crate::channels::webhook::Hooks::build(
        &std::collections::BTreeMap::from([(name.to_string(), hook.clone())]),
        env,
    ) {
        Ok(_) => Check::ok(
            area,
            format!("hooks.{name}: secret present, templates compile; POST /hooks/{name}"),
        ),
        Err(e) => Check::fail(
            area,
            e.to_string(),
            "export the secret variable named by secret_env",
        ),
    }
}

fn access_check(config: &Config, channel: Channel) -> Check {
    if config.access.is_open(channel) {
        Check::warn(
            channel.as_str(),
            "open to anyone who can message the bot (no [access] section)",
            format!(
                "add [access.{channel}] with users/chats to allow; others get a pairing code (`conveyor access approve CODE`)"
            ),
        )
    } else {
        Check::ok(
            channel.as_str(),
            "access restricted by [access] (unknown users get a pairing code or a refusal)",
        )
    }
}
