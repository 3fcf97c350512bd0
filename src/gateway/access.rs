//! Who may talk to conveyor on each chat platform: `[access.NAME]` for the platform named
//! `NAME` (`[access.slack]`, `[access.discord]`, `[access.telegram]`, …).
//!
//! A platform without an `[access.*]` section is open: anyone who can reach the bot may use
//! it (`conveyor doctor` warns about that). With a section, a message is let in when its
//! sender is listed in `users` or was approved through a pairing code, or when it was written
//! in a listed chat (`chats`), or in a listed space of platforms that have them (Slack
//! `workspaces`, Discord `guilds`; the platform registry says which word a platform uses).
//! Anything else is refused: in a direct message the sender gets a pairing code to hand to an
//! admin (`unknown_dm = "pair"`, the default) or a short refusal (`"refuse"`); in a shared
//! chat the message is ignored, so strangers cannot make the bot talk in a group.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::Channel;
use crate::store::Store;
use crate::values::HumanDuration;

/// What a stranger is told where a refusal is owed.
pub const NOT_LET_IN: &str = "Sorry, I only answer people my administrators have let in.";

/// What to do with a direct message from someone who is not allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownDm {
    /// Reply with a pairing code an admin can approve.
    #[default]
    Pair,
    /// Reply with a short refusal.
    Refuse,
    /// Say nothing.
    Ignore,
}

/// `[access.PLATFORM]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformAccess {
    /// User ids allowed everywhere (Slack `U…`, Discord snowflakes, Telegram numeric ids).
    pub users: Vec<String>,
    /// Chats where everyone may talk to the bot (Slack channel ids, Discord channel ids,
    /// Telegram chat ids such as `-1001234567890`).
    pub chats: Vec<String>,
    /// Slack only: workspace (team) ids whose members may talk to the bot.
    pub workspaces: Vec<String>,
    /// Discord only: server (guild) ids where everyone may talk to the bot.
    pub guilds: Vec<String>,
    /// Direct messages from anyone else.
    pub unknown_dm: UnknownDm,
}

/// `[access]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// How long a pairing code can be approved.
    pub pairing_ttl: HumanDuration,
    /// `[access.NAME]`, by platform name.
    #[serde(flatten)]
    pub platforms: BTreeMap<String, PlatformAccess>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            pairing_ttl: HumanDuration(std::time::Duration::from_secs(3600)),
            platforms: BTreeMap::new(),
        }
    }
}

/// A chat platform as `[access.NAME]` knows it: its name and the word for its spaces
/// (`workspaces`, `guilds`), if it has any. The loader passes the registry's list in, so this
/// module names no platform.
#[derive(Debug, Clone, Copy)]
pub struct AccessPlatform {
    /// The name in `[access.NAME]`.
    pub name: &'static str,
    /// Which list of `[access.NAME]` holds its spaces, if it has spaces.
    pub spaces: Option<&'static str>,
}

impl AccessConfig {
    /// Sets the rules of the platform on `channel`.
    pub fn set(&mut self, channel: Channel, rules: PlatformAccess) {
        self.platforms.insert(channel.as_str().into(), rules);
    }

    /// Adds every problem to `problems`; `known` are the chat platforms there are.
    pub fn validate(&self, known: &[AccessPlatform], problems: &mut Vec<String>) {
        if self.pairing_ttl.0 < std::time::Duration::from_secs(60) {
            problems.push("access.pairing_ttl: must be at least 1 minute, e.g. \"1h\"".into());
        }
        for (name, p) in &self.platforms {
            let Some(platform) = known.iter().find(|k| k.name == name.as_str()) else {
                let names: Vec<&str> = known.iter().map(|k| k.name).collect();
                problems.push(format!(
                    "access.{name}: there is no chat platform called `{name}`; use {}",
                    crate::error::or_list(&names)
                ));
                continue;
            };
            for (list, values) in [("workspaces", &p.workspaces), ("guilds", &p.guilds)] {
                if values.is_empty() || platform.spaces == Some(list) {
                    continue;
                }
                let owner = known
                    .iter()
                    .find(|k| k.spaces == Some(list))
                    .map_or("another platform", |k| k.name);
                problems.push(format!(
                    "access.{name}.{list}: only {owner} has {list}; use `chats`{} instead",
                    match platform.spaces {
                        Some(own) => format!(" or `{own}`"),
                        None => String::new(),
                    }
                ));
            }
            let lists = [
                ("users", &p.users),
                ("chats", &p.chats),
                ("workspaces", &p.workspaces),
                ("guilds", &p.guilds),
            ];
            for (list, values) in lists {
                for v in values {
                    if v.trim().is_empty() || v.trim() != v {
                        problems.push(format!(
                            "access.{name}.{list}: `{v}` is not an id (empty or with spaces)"
                        ));
                    }
                }
            }
        }
    }

    fn for_channel(&self, channel: Channel) -> Option<&PlatformAccess> {
        self.platforms.get(channel.as_str())
    }

    /// Platforms that are open to anyone (configured channels without `[access.*]`), for
    /// `conveyor doctor`.
    pub fn is_open(&self, channel: Channel) -> bool {
        self.for_channel(channel).is_none()
    }
}

/// The sender of one message and where it was written, as the channel saw it.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The platform user id.
    pub user_id: &'a str,
    /// The user's display name, if known.
    pub user_name: Option<&'a str>,
    /// The chat (channel, DM, group) id.
    pub chat: Cow<'a, str>,
    /// The Slack workspace or Discord guild, if known.
    pub space: Option<Cow<'a, str>>,
    /// Whether this is a one-to-one conversation with the bot.
    pub direct: bool,
}

/// The outcome of [`Access::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the message through.
    Allow,
    /// Drop it silently (already logged).
    Ignore,
    /// Do not answer the message; send this text instead (pairing code or refusal).
    Reply(String),
}

/// The access rules plus the grants in the store.
#[derive(Debug, Clone)]
pub struct Access {
    config: AccessConfig,
    store: Store,
}

impl Access {
    /// Wraps the `[access]` section.
    pub fn new(config: AccessConfig, store: Store) -> Self {
        Self { config, store }
    }

    /// Decides about one message on `channel`.
    pub async fn check(&self, channel: Channel, who: &Subject<'_>) -> Result<Decision> {
        let Some(rules) = self.config.for_channel(channel) else {
            return Ok(Decision::Allow);
        };
        let listed = |list: &[String], value: &str| list.iter().any(|v| v == value);
        if listed(&rules.users, who.user_id)
            || listed(&rules.chats, &who.chat)
            || who
                .space
                .as_deref()
                .is_some_and(|s| listed(&rules.workspaces, s) || listed(&rules.guilds, s))
            || self
                .store
                .access_granted(channel.as_str(), who.user_id)
                .await?
        {
            return Ok(Decision::Allow);
        }
        if !who.direct {
            tracing::info!(
                %channel, user = who.user_id, chat = %who.chat,
                "ignored a message from a user who is not allowed in this chat (see [access])"
            );
            return Ok(Decision::Ignore);
        }
        match rules.unknown_dm {
            UnknownDm::Ignore => {
                tracing::info!(%channel, user = who.user_id, "ignored a direct message from an unknown user");
                Ok(Decision::Ignore)
            }
            UnknownDm::Refuse => {
                tracing::info!(%channel, user = who.user_id, "refused a direct message from an unknown user");
                Ok(Decision::Reply(crate::gateway::access::NOT_LET_IN.into()))
            }
            UnknownDm::Pair => {
                let ttl = i64::try_from(self.config.pairing_ttl.0.as_millis()).unwrap_or(i64::MAX);
                let code = self
                    .store
                    .pairing_code_for(channel.as_str(), who.user_id, who.user_name, &who.chat, ttl)
                    .await?;
                tracing::info!(
                    %channel, user = who.user_id, code = %code.code,
                    "handed a pairing code to an unknown user; approve with `conveyor access approve {}`",
                    code.code
                );
                Ok(Decision::Reply(format!(
                    "Hi! I don't know you yet. To get access, send this code to an administrator: \
                     {code}\nThey approve it with `conveyor access approve {code}`. The code is \
                     valid for {ttl}.",
                    code = code.code,
                    ttl = in_words(self.config.pairing_ttl.0),
                )))
            }
        }
    }
}

/// "1 hour", "30 minutes", "90 seconds": how long a code lives, in words.
fn in_words(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(in_words(std::time::Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(std::time::Duration::from_secs(7200)), "2 hours");
        assert_eq!(in_words(std::time::Duration::from_secs(1800)), "30 minutes");
        assert_eq!(in_words(std::time::Duration::from_secs(90)), "90 seconds");
    }
}
