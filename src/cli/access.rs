//! `conveyor access …`: pairing codes and grants of the chat platforms' `[access.NAME]`;
//! `conveyor keys …`: the API keys of the HTTP surface; `conveyor inbox …`: messages
//! acknowledged and not answered yet.

use std::path::Path;
use std::process::ExitCode;

use super::{AccessCommand, InboxCommand, KeysCommand};
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

/// `conveyor keys …`.
pub(super) async fn keys(config_path: &Path, what: KeysCommand) -> Result<ExitCode> {
    use crate::store::Scope;
    let config = Config::load(config_path)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let result = async {
        match what {
            KeysCommand::Create { name, scopes, json } => {
                let scopes = scopes
                    .iter()
                    .map(|s| Scope::parse(s))
                    .collect::<Result<Vec<_>>>()?;
                let (key, record) = store.api_key_create(&name, &scopes, &login_name()).await?;
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({"key": key, "record": record}))
                            .unwrap_or_default()
                    );
                } else {
                    let names: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
                    out!("{key}");
                    eprintln!(
                        "Created key cvk_{} ({}) with scope {}. It is shown only now: store it in a secret manager. Send it as `Authorization: Bearer <key>`, or paste it into the web page.",
                        record.id,
                        record.name,
                        names.join(", ")
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            KeysCommand::List { json } => {
                let keys = store.api_keys().await?;
                if json {
                    out!("{}", serde_json::to_string_pretty(&keys).unwrap_or_default());
                } else if keys.is_empty() {
                    out!("No API keys. Create one with `conveyor keys create NAME --scope chat`.");
                } else {
                    for k in &keys {
                        let names: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                        out!(
                            "cvk_{}  {:<24} {:<16} {}",
                            k.id,
                            k.name,
                            names.join(","),
                            if k.revoked_at.is_some() { "revoked" } else { "active" }
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            KeysCommand::Revoke { id } => {
                if store.api_key_revoke(&id).await? {
                    out!("Revoked {id}; requests with it are refused from now on.");
                    Ok(ExitCode::SUCCESS)
                } else {
                    Err(Error::NotFound(format!(
                        "no active key {id}; `conveyor keys list` shows them"
                    )))
                }
            }
        }
    }
    .await;
    store.close().await;
    result
}

pub(super) async fn inbox(config_path: &Path, what: InboxCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let result = async {
        match what {
            InboxCommand::List {
                failed,
                limit,
                json,
            } => {
                let entries = store.inbox_list(failed, limit).await?;
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&entries).unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                if entries.is_empty() {
                    out!(
                        "The inbox is empty: every acknowledged message was answered{}.",
                        if failed { " or is being answered" } else { "" }
                    );
                }
                for e in &entries {
                    let when = chrono::DateTime::from_timestamp_millis(e.created_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    out!(
                        "{:<8} {}  accepted {when}, {} attempt{}{}",
                        e.state,
                        e.key,
                        e.attempts,
                        if e.attempts == 1 { "" } else { "s" },
                        e.last_error
                            .as_deref()
                            .map(|why| format!(": {why}"))
                            .unwrap_or_default()
                    );
                }
                if entries.iter().any(|e| e.state == "failed") {
                    out!("Queue a failed one again with `conveyor inbox retry KEY`.");
                }
            }
            InboxCommand::Retry { key } => {
                if !store.inbox_retry(&key).await? {
                    return Err(Error::NotFound(format!(
                        "no failed message `{key}` in the inbox; `conveyor inbox list --failed` shows them"
                    )));
                }
                out!("Queued {key} again; a running `conveyor serve` answers it within a second.");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}
