//! Surfaces where people meet conveyor. Each turns its own input into an [`crate::model::Inbound`]
//! and renders the [`crate::model::Outbound`]; platform types never leave their file.
//!
//! Chat platforms are registered in one list, [`PLATFORMS`]: each entry names the platform's
//! routes and, through its [`PlatformSection`], checks, builds and diagnoses it from its own
//! `[channels.NAME]` section; [`chat`] is the path every platform shares (access check, answer,
//! reply policy, egress ledger, splitting, sending). Adding a platform is one module
//! implementing [`PlatformSection`], [`chat::ChatPlatform`] and [`chat::Platform`], plus one
//! line in [`PLATFORMS`]: the config loader, `[access.NAME]`, `forward_to`, the HTTP routes and
//! `conveyor doctor` all read the registry.
//!
//! - [`chat`]: the shared message → reply path, the [`chat::Platform`] seam and the splitter.
//! - [`web`]: the chat page served at `/` (it talks to `POST /v1/messages`).
//! - [`verify`]: constant-time request signature checks shared by every inbound channel.
//! - [`slack`]: the Slack Events API (`[channels.slack]`, `POST /slack/events`) and replies.
//! - [`discord`]: Discord interactions (`[channels.discord]`: `POST /discord/interactions`,
//!   `/ask` answered with follow-ups).
//! - [`discord_bot`]: the Discord gateway bot (serenity): answers mentions and DMs.
//! - [`telegram`]: the Telegram Bot API (`[channels.telegram]`: long polling, or
//!   `POST /telegram/webhook`) and replies.
//! - [`telegram_doctor`], [`discord_doctor`]: their `conveyor doctor` checks.
//! - [`webhook`]: generic signed webhooks (`[hooks.NAME]`, `POST /hooks/{name}`).

pub mod chat;

pub mod discord;
pub mod discord_bot;
pub mod discord_doctor;
pub mod slack;
pub mod telegram;
pub mod telegram_doctor;
pub mod verify;
pub mod web;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gateway::access::AccessPlatform;
use crate::health::Check;
use crate::model::Channel;
use crate::values::Env;

/// A chat platform's `[channels.NAME]` section: the platform parses, checks and builds from
/// its own section, so the loader knows platforms only through [`PLATFORMS`].
#[async_trait::async_trait]
pub trait PlatformSection: DeserializeOwned + Serialize + Send + Sync + 'static {
    /// The platform's channel; its name is the `NAME` of `[channels.NAME]`.
    const CHANNEL: Channel;
    /// Adds every problem of the section (keys written `channels.NAME.key`).
    fn validate(&self, problems: &mut Vec<String>);
    /// Builds the running platform, reading its secrets through `env`.
    fn build(&self, env: &Env) -> Result<Arc<dyn chat::Platform>>;
    /// Its `conveyor doctor` checks: secrets present and well-formed, and (online) the
    /// platform's API reached with them.
    async fn doctor(&self, env: &Env, online: bool) -> Vec<Check>;
}

/// Checks one raw section.
pub type CheckFn = fn(&toml::Value, &mut Vec<String>);
/// Builds a platform from its raw section.
pub type BuildFn = fn(&toml::Value, &Env) -> Result<Arc<dyn chat::Platform>>;
/// A platform's `conveyor doctor` checks from its raw section.
pub type DoctorFn = for<'a> fn(&'a toml::Value, &'a Env, bool) -> BoxFuture<'a, Vec<Check>>;

/// How the program finds one chat platform: its name, routes, how to check and build it from
/// its section, and its `conveyor doctor` checks. Made with [`PlatformKind::of`].
pub struct PlatformKind {
    /// `slack`, `telegram`, `discord`: the name in `[channels.NAME]` and `[access.NAME]`.
    pub name: &'static str,
    /// Its channel.
    pub channel: Channel,
    /// The HTTP routes it receives on (`POST`).
    pub routes: &'static [&'static str],
    /// What a request to one of its routes gets while it is not configured (404).
    pub not_configured: &'static str,
    /// The list of `[access.NAME]` that holds its spaces (`workspaces`, `guilds`), if it has
    /// spaces.
    pub access_spaces: Option<&'static str>,
    /// Checks its section.
    pub check: CheckFn,
    /// Builds it (reading its secrets through the environment lookup).
    pub build: BuildFn,
    /// Its own `conveyor doctor` checks.
    pub doctor: DoctorFn,
}

impl PlatformKind {
    /// The registry entry of the platform whose section is `S`.
    pub const fn of<S: PlatformSection>(
        routes: &'static [&'static str],
        not_configured: &'static str,
        access_spaces: Option<&'static str>,
    ) -> Self {
        Self {
            name: S::CHANNEL.as_str(),
            channel: S::CHANNEL,
            routes,
            not_configured,
            access_spaces,
            check: check_section::<S>,
            build: build_section::<S>,
            doctor: doctor_section::<S>,
        }
    }
}

/// Every chat platform conveyor has. Adding one is its module and one line here.
pub const PLATFORMS: &[PlatformKind] = &[slack::PLATFORM, discord::PLATFORM, telegram::PLATFORM];

/// The platform named `name` (`[channels.NAME]`, `forward_to = "NAME:…"`).
pub fn kind(name: &str) -> Option<&'static PlatformKind> {
    PLATFORMS.iter().find(|k| k.name == name)
}

/// The names of every platform, for error messages: `slack, discord or telegram`.
pub fn names() -> String {
    crate::error::or_list(&PLATFORMS.iter().map(|k| k.name).collect::<Vec<_>>())
}

/// Every platform as `[access.NAME]` knows it.
pub fn access_platforms() -> Vec<AccessPlatform> {
    PLATFORMS
        .iter()
        .map(|k| AccessPlatform {
            name: k.name,
            spaces: k.access_spaces,
        })
        .collect()
}

/// `[channels]`: each chat platform's section by platform name, as written. A platform starts
/// only when its section is present; the platform itself parses and checks it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelsConfig(pub BTreeMap<String, toml::Value>);

impl ChannelsConfig {
    /// Whether `[channels.NAME]` is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets the platform's `[channels.NAME]` from its typed section (tests, tools).
    pub fn set<S: PlatformSection>(&mut self, section: &S) -> Result<()> {
        let name = S::CHANNEL.as_str();
        let value = toml::Value::try_from(section)
            .map_err(|e| Error::Config(format!("channels.{name}: {e}")))?;
        self.0.insert(name.into(), value);
        Ok(())
    }

    /// The platform's section, typed; `None` when it has none.
    pub fn get<S: PlatformSection>(&self) -> Result<Option<S>> {
        let name = S::CHANNEL.as_str();
        self.0
            .get(name)
            .map(|raw| parse_section::<S>(name, raw).map_err(Error::Config))
            .transpose()
    }

    /// Adds every problem of every section: unknown platforms, and each platform's own.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (name, raw) in &self.0 {
            match kind(name) {
                Some(k) => (k.check)(raw, problems),
                None => problems.push(format!(
                    "channels.{name}: there is no chat platform called `{name}`; use {}",
                    names()
                )),
            }
        }
    }
}

/// Parses `[channels.NAME]` into its section type; an error names the key.
fn parse_section<S: DeserializeOwned>(
    name: &str,
    raw: &toml::Value,
) -> std::result::Result<S, String> {
    crate::values::from_toml_at::<S>(raw.clone(), &format!("channels.{name}"))
}

fn check_section<S: PlatformSection>(raw: &toml::Value, problems: &mut Vec<String>) {
    match parse_section::<S>(S::CHANNEL.as_str(), raw) {
        Ok(section) => section.validate(problems),
        Err(e) => problems.push(e),
    }
}

fn build_section<S: PlatformSection>(
    raw: &toml::Value,
    env: &Env,
) -> Result<Arc<dyn chat::Platform>> {
    parse_section::<S>(S::CHANNEL.as_str(), raw)
        .map_err(Error::Config)?
        .build(env)
}

fn doctor_section<'a, S: PlatformSection>(
    raw: &'a toml::Value,
    env: &'a Env,
    online: bool,
) -> BoxFuture<'a, Vec<Check>> {
    Box::pin(async move {
        match parse_section::<S>(S::CHANNEL.as_str(), raw) {
            Ok(section) => section.doctor(env, online).await,
            Err(e) => vec![Check::fail(S::CHANNEL.as_str(), e, "fix conveyor.toml")],
        }
    })
}

/// Builds the platforms that have a section.
pub fn build_platforms(channels: &ChannelsConfig, env: &Env) -> Result<chat::Platforms> {
    let mut running = Vec::new();
    for kind in PLATFORMS {
        if let Some(raw) = channels.0.get(kind.name) {
            running.push((kind.build)(raw, env)?);
        }
    }
    Ok(chat::Platforms::new(running))
}
