//! `conveyor serve` as a library function: [`run`] starts every background task (the egress
//! resender, rate-limit housekeeping, each chat platform's own task — Telegram long polling, the
//! Discord gateway bot — and the connector scheduler), serves HTTP until `shutdown`, then drains
//! requests and tasks within `server.drain_timeout`. The binary only builds the app, binds the
//! listener and turns signals into `shutdown`; tests call [`run`] the same way.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::error::Result;

/// Serves `app` on `listener` until `shutdown` fires (or the HTTP server fails), with every
/// background task; returns once requests and tasks drained or the drain timeout passed.
pub async fn run(app: App, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let tracker = TaskTracker::new();
    let housekeeping_app = app.clone();
    let housekeeping_stop = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = housekeeping_stop.cancelled() => break,
                _ = tick.tick() => housekeeping_app.gateway.housekeeping(),
            }
        }
    });
    // Replies recorded but never confirmed (a crash, a platform outage) are sent again.
    tracker.spawn(
        app.resender()
            .run(app.config.gateway.egress_retry_every.0, shutdown.clone()),
    );
    // Each chat platform's own task: long polling, a gateway connection.
    for platform in app.platforms.all() {
        if let Some(task) =
            std::sync::Arc::clone(platform).background(app.chat_context(), shutdown.clone())
        {
            tracker.spawn(task);
        }
    }
    // Connectors with a cron schedule run here, through the same pipeline as `conveyor sync`,
    // feeding the index this process holds. A broken connector folder does not stop the chat
    // gateway; it is reported and the scheduler stays off until a restart.
    match crate::connectors::schedule::Scheduler::for_server(
        crate::connectors::schedule::SchedulerParts {
            store: &app.store,
            lake: &app.lake,
            settings: app.config.run_settings(),
            knowledge: &app.knowledge,
            metrics: &app.metrics,
            status: &app.schedule,
        },
    ) {
        Ok(Some(scheduler)) => {
            tracker.spawn(scheduler.run(shutdown.clone()));
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "scheduled connector runs are off"),
    }
    tracker.close();
    // Say once how the API is protected (see `http::auth`).
    let loopback = app.config.server.listen.ip().is_loopback();
    match app.store.api_keys_active().await {
        Ok(0) if loopback => tracing::info!(
            "the HTTP API is open to this machine only: no API key exists and the listener is loopback; `conveyor keys create NAME` turns keys on"
        ),
        Ok(0) => tracing::warn!(
            "no API key exists, so /v1, /sources, /metrics and delivery status refuse every request; create one with `conveyor keys create NAME --scope chat`"
        ),
        Ok(n) => tracing::info!(keys = n, "the HTTP API needs an API key"),
        Err(e) => tracing::warn!(error = %e, "could not count API keys"),
    }
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    tracing::info!(
        address = %address,
        planner = app.gateway.planner_name(),
        "conveyor is listening: web chat at http://{address}/"
    );
    let store = app.store.clone();
    let answers = app.tasks.clone();
    let drain = app.config.server.drain_timeout.0;
    let result = crate::http::serve(app, listener, shutdown.clone()).await;
    shutdown.cancel();
    answers.close();
    let all = async {
        tracker.wait().await;
        answers.wait().await;
    };
    if tokio::time::timeout(drain, all).await.is_err() {
        tracing::warn!("background tasks did not stop within the drain timeout");
    }
    store.close().await;
    tracing::info!("conveyor stopped");
    result
}
