//! `conveyor access …`: pairing codes and grants of the chat platforms' `[access.NAME]`.

use std::path::Path;
use std::process::ExitCode;

use super::AccessCommand;
use crate::config::Config;
use crate::{Error, Result};

pub(super) fn login_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "admin".into())
}

/// The chat platform named `name`, from the registry.
pub(super) fn platform(name: &str) -> Result<&'static str> {
    crate::channels::kind(name)
        .map(|kind| kind.name)
        .ok_or_else(|| {
            Error::BadInput(format!(
                "unknown platform `{name}`; use {}",
                crate::channels::names()
            ))
        })
}

pub(super) async fn access(config_path: &Path, what: AccessCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let result = async {
        match what {
            AccessCommand::Approve { code } => {
                let grant = store.pairing_approve(&code, &login_name()).await?;
                out!(
                    "Approved: {} user {}{} may now talk to the bot.",
                    grant.channel,
                    grant.user_id,
                    grant
                        .user_name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
            }
            AccessCommand::List { json } => {
                let grants = store.access_grants().await?;
                let pending = store.pairing_pending().await?;
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"grants": grants, "pending": pending})
                        )
                        .unwrap_or_default()
                    );
                } else {
                    out!("Let in ({}):", grants.len());
                    for g in &grants {
                        let when = chrono::DateTime::from_timestamp_millis(g.granted_at)
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default();
                        out!(
                            "  {:<9} {:<24} {:<20} {when} by {}",
                            g.channel,
                            g.user_id,
                            g.user_name.as_deref().unwrap_or("-"),
                            g.granted_by
                        );
                    }
                    out!("Waiting for approval ({}):", pending.len());
                    for p in &pending {
                        let left = (p.expires_at - chrono::Utc::now().timestamp_millis()) / 60_000;
                        out!(
                            "  {}  {:<9} {:<24} {:<20} expires in {left} min",
                            p.code,
                            p.channel,
                            p.user_id,
                            p.user_name.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            AccessCommand::Grant { channel, user } => {
                let channel = platform(&channel)?;
                if store
                    .access_grant(channel, &user, None, &login_name())
                    .await?
                {
                    out!("Granted: {channel} user {user} may now talk to the bot.");
                } else {
                    out!("{channel} user {user} was already let in.");
                }
            }
            AccessCommand::Revoke { channel, user } => {
                let channel = platform(&channel)?;
                if store.access_revoke(channel, &user).await? {
                    out!("Revoked: {channel} user {user} was let in and no longer is.");
                } else {
                    return Err(Error::NotFound(format!(
                        "{channel} user {user} had no grant (see `conveyor access list`)"
                    )));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}
