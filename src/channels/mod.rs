//! Surfaces where people meet conveyor. Each turns its own input into an [`crate::model::Inbound`]
//! and renders the [`crate::model::Outbound`]; platform types never leave their file.
//!
//! Chat platforms are registered in one list, [`PLATFORMS`]: each entry names the platform's
//! routes and builds it from the config; [`chat`] is the path every platform shares (access
//! check, answer, reply policy, egress ledger, splitting, sending). Adding a platform is one
//! module implementing [`chat::ChatPlatform`] and [`chat::Platform`] plus one line here.
//!
//! - [`chat`]: the shared message → reply path, the [`chat::Platform`] seam and the splitter.
//! - [`cli`]: `conveyor chat` and `conveyor ask`, in-process or against a running server.
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
pub mod cli;
pub mod discord;
pub mod discord_bot;
pub mod discord_doctor;
pub mod slack;
pub mod telegram;
pub mod telegram_doctor;
pub mod verify;
pub mod web;
pub mod webhook;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::config::Config;
use crate::error::Result;
use crate::health::Check;
use crate::model::Channel;

/// The environment lookup secrets are read through.
pub type EnvFn<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// Builds a platform from the config, or `None` when it has no section.
pub type BuildFn =
    fn(&Config, &dyn Fn(&str) -> Option<String>) -> Result<Option<Arc<dyn chat::Platform>>>;

/// A platform's `conveyor doctor` checks: config, environment, online.
pub type DoctorFn = for<'a> fn(&'a Config, EnvFn<'a>, bool) -> BoxFuture<'a, Vec<Check>>;

/// How the program finds one chat platform: its name, routes, how to build it from the
/// config and its `conveyor doctor` checks.
pub struct PlatformKind {
    /// `slack`, `telegram`, `discord`: the name in `[channels.NAME]` and `[access.NAME]`.
    pub name: &'static str,
    /// Its channel.
    pub channel: Channel,
    /// The HTTP routes it receives on (`POST`).
    pub routes: &'static [&'static str],
    /// What a request to one of its routes gets while it is not configured (404).
    pub not_configured: &'static str,
    /// Whether the config has its section.
    pub configured: fn(&Config) -> bool,
    /// Builds it (reading its secrets through the environment lookup), or `None` when the
    /// config has no section for it.
    pub build: BuildFn,
    /// Its own `conveyor doctor` checks (empty when it is not configured).
    pub doctor: DoctorFn,
}

/// Every chat platform conveyor has.
pub const PLATFORMS: &[PlatformKind] = &[slack::PLATFORM, telegram::PLATFORM, discord::PLATFORM];

/// Builds the configured platforms.
pub fn build_platforms(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<chat::Platforms> {
    let mut running = Vec::new();
    for kind in PLATFORMS {
        if let Some(platform) = (kind.build)(config, env)? {
            running.push(platform);
        }
    }
    Ok(chat::Platforms::new(running))
}
