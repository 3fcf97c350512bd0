//! `conveyor serve`, `conveyor chat` and `conveyor ask`: the server, and questions from the
//! terminal (in-process, or to a running server with `--server`).

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::{Error, Result};
use tokio_util::sync::CancellationToken;

use super::terminal::{self, Target};
use crate::app::App;

/// `conveyor chat`.
pub async fn chat(
    config: &Path,
    conversation: Option<String>,
    server: Option<&str>,
) -> Result<ExitCode> {
    let target = target(config, server).await?;
    let id = conversation.unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
    terminal::chat(&target, &id).await?;
    Ok(ExitCode::SUCCESS)
}

/// `conveyor ask`.
pub async fn ask(
    config: &Path,
    question: &str,
    json: bool,
    server: Option<&str>,
    conversation: Option<String>,
) -> Result<ExitCode> {
    let target = target(config, server).await?;
    let id = conversation.unwrap_or_else(|| format!("ask-{}", uuid::Uuid::new_v4()));
    let answer = target.ask(&id, &terminal::local_user(), question).await?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        out!("{}", answer.text);
    }
    Ok(ExitCode::SUCCESS)
}

/// `conveyor serve`: the server on `server.listen` until SIGINT or SIGTERM, then a drain.
pub async fn serve(config_path: &Path) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let listen = config.server.listen;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::Upstream(format!(
            "cannot listen on {listen}: {e}; choose another address with server.listen or CONVEYOR__SERVER__LISTEN"
        ))
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    crate::server::run(app, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub(super) async fn watch_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; draining"),
        () = term => tracing::info!("SIGTERM received; draining"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// Where `chat` and `ask` send questions: a running server, or an app built in-process.
pub(super) async fn target(config: &Path, server: Option<&str>) -> Result<Target> {
    match server {
        Some(url) => Target::server(url),
        None => Ok(Target::Local(Box::new(
            App::build(Config::load(config)?).await?,
        ))),
    }
}
