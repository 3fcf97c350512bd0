//! `conveyor tools …` and `conveyor audit …`: the tool registry and the audit log.

use std::path::Path;
use std::process::ExitCode;

use crate::app::App;
use crate::config::Config;
use crate::store::AuditVerdict;
use crate::tools::OutcomeKind;
use crate::{Error, Result};

use super::{AuditCommand, ToolsCommand};

/// `conveyor tools …`.
pub(super) async fn tools(config_path: &Path, what: ToolsCommand) -> Result<ExitCode> {
    let app = App::build(Config::load(config_path)?).await?;
    match what {
        ToolsCommand::List { json } => {
            let tools = app.tools.list();
            if json {
                let list: Vec<serde_json::Value> = tools
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name(),
                            "kind": t.kind(),
                            "sensitive": t.sensitive(),
                            "description": t.description(),
                            "parameters": t.parameters(),
                            "policy": t.policy(),
                        })
                    })
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                let width = tools
                    .iter()
                    .map(|t| t.name().len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                out!(
                    "{:<width$}  {:<7}  {:<9}  DESCRIPTION",
                    "NAME",
                    "KIND",
                    "SENSITIVE"
                );
                for t in &tools {
                    let description = t
                        .description()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    out!(
                        "{:<width$}  {:<7}  {:<9}  {}",
                        t.name(),
                        t.kind(),
                        if t.sensitive() { "yes" } else { "no" },
                        description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::Call {
            name,
            args,
            user,
            channel,
            roles,
        } => {
            let args: serde_json::Value = serde_json::from_str(&args).map_err(|e| {
                Error::BadInput(format!(
                    "--args is not valid JSON ({e}); pass an object, e.g. --args '{{\"query\": \"refunds\"}}'"
                ))
            })?;
            let caller = crate::tools::Caller {
                user_id: user.unwrap_or_else(super::terminal::local_user),
                channel,
                conversation: format!("cli:tools-{}", uuid::Uuid::new_v4()),
                roles,
                attributes: Default::default(),
            };
            let outcome = app.tools.invoke(&caller, &name, args).await;
            app.store.close().await;
            match (outcome.kind, outcome.result) {
                (OutcomeKind::Ok, Some(result)) => {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&result).unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                (kind, _) => {
                    // The message is a sentence that names the tool.
                    eprintln!(
                        "error: {}",
                        outcome.message.as_deref().unwrap_or("the tool failed")
                    );
                    Ok(if kind == OutcomeKind::Invalid {
                        ExitCode::from(2)
                    } else {
                        ExitCode::FAILURE
                    })
                }
            }
        }
    }
}

/// `conveyor audit …`. Only the store is opened, so this works while a server runs.
pub(super) async fn audit(config_path: &Path, what: AuditCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let code = match what {
        AuditCommand::Verify => match store.audit_verify().await? {
            AuditVerdict::Intact { records } => {
                out!("audit log intact: {records} records");
                ExitCode::SUCCESS
            }
            AuditVerdict::Broken { id, reason } => {
                out!("audit log broken at record {id}: {reason}");
                ExitCode::FAILURE
            }
        },
        AuditCommand::Tail { n, json } => {
            let rows = store.audit_tail(n).await?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if rows.is_empty() {
                out!("the audit log is empty");
            } else {
                for r in &rows {
                    let ts = chrono::DateTime::from_timestamp_millis(r.ts)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| r.ts.to_string());
                    let mut args = r.arguments.to_string();
                    if args.chars().count() > 80 {
                        args = args.chars().take(79).collect::<String>() + "…";
                    }
                    out!(
                        "#{:<5} {ts}  {:<8} {:<12} {:<10} {:<20} {:>6} ms  {args}",
                        r.id,
                        r.outcome,
                        r.user_id,
                        r.channel,
                        r.action,
                        r.duration_ms
                    );
                }
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
