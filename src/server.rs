//! `conveyor serve` as a library function: [`run`] starts every background task (the egress
//! resender, rate-limit housekeeping, each chat platform's own task — Telegram long polling, the
//! Discord gateway bot — and the connector scheduler), serves HTTP until `shutdown`, then drains
//! requests and tasks within `server.drain_timeout`. The binary only builds the app, binds the
//! listener and turns signals into `shutdown`; tests call [`run`] the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::error::Result;

/// How long stopped turns get to hand their messages back after the drain timeout.
const HAND_BACK_WAIT: Duration = Duration::from_secs(5);

/// How often the inbox is looked at for messages nobody answers.
const REDRIVE_EVERY: Duration = Duration::from_secs(1);

/// How long answered inbox rows are kept (a redelivery after that is still answered once:
/// the ledgers keep the answer and the sent parts).
const INBOX_KEEP_MS: i64 = 24 * 3600 * 1000;

/// Inbox rows claimed at a time by [`redrive`].
const REDRIVE_BATCH: usize = 256;

/// How many redriven messages are answered at once, so a backlog (thousands of rows after an
/// outage) does not start thousands of turns together; the rest stay queued, unclaimed, for
/// the next pass or another process.
const REDRIVE_CONCURRENCY: usize = 256;

/// Claims inbox rows whose owner is gone (crashed: its lease ran out; shut down: it handed
/// the row back) for the surfaces this app runs, as many as `slots` has free, and answers each
/// in a tracked task through the surface that accepted it, holding a slot until it is done.
/// Returns how many it claimed. Rows of a platform this process does not run stay queued for
/// one that does.
pub async fn redrive(app: &App, slots: &Arc<Semaphore>) -> Result<usize> {
    let mut channels: Vec<&str> = app
        .platforms
        .all()
        .iter()
        .map(|p| p.channel().as_str())
        .collect();
    channels.push(crate::model::Channel::WEBHOOK.as_str());
    let cx = app.chat_context();
    let mut claimed = 0;
    loop {
        let free = slots.available_permits().min(REDRIVE_BATCH);
        if free == 0 {
            return Ok(claimed);
        }
        let rows = app
            .store
            .inbox_claim_due(
                &channels,
                app.gateway.lease(),
                i64::try_from(free).unwrap_or(1),
            )
            .await?;
        let n = rows.len();
        for row in rows {
            tracing::info!(key = %row.lease.key, channel = %row.channel, attempts = row.attempts, "answering a message left in the inbox");
            if row.attempts > i64::from(app.gateway.inbox_max_attempts()) {
                let why = format!(
                    "given up after {} attempts (each stopped before finishing)",
                    row.attempts - 1
                );
                tracing::warn!(key = %row.lease.key, "{why}");
                app.store.inbox_fail(&row.lease, &why).await?;
                continue;
            }
            let platform = app
                .platforms
                .all()
                .iter()
                .find(|p| p.channel().as_str() == row.channel);
            let work = match platform {
                Some(platform) => Arc::clone(platform).resume(&cx, row),
                None => crate::http::resume_delivery(app, row),
            };
            // Only this function takes slots, and it claimed no more rows than were free.
            let slot = Arc::clone(slots).acquire_owned().await;
            app.tasks.spawn(async move {
                work.await;
                drop(slot);
            });
        }
        claimed += n;
        if n < free {
            return Ok(claimed);
        }
    }
}

/// [`redrive`] at start and then every [`REDRIVE_EVERY`] until `shutdown`.
async fn redrive_loop(app: App, shutdown: CancellationToken) {
    match app.store.inbox_queued().await {
        Ok(waiting) if !waiting.is_empty() => {
            tracing::info!(
                ?waiting,
                "messages wait in the inbox from before this start"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not count the inbox"),
    }
    let slots = Arc::new(Semaphore::new(REDRIVE_CONCURRENCY));
    let mut tick = tokio::time::interval(REDRIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = redrive(&app, &slots).await {
            tracing::warn!(error = %e, "could not look at the inbox; trying again");
        }
    }
}

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
                _ = tick.tick() => {
                    housekeeping_app.gateway.housekeeping();
                    let before = chrono::Utc::now().timestamp_millis() - INBOX_KEEP_MS;
                    if let Err(e) = housekeeping_app.store.inbox_prune(before).await {
                        tracing::warn!(error = %e, "could not prune the inbox");
                    }
                }
            }
        }
    });
    // Messages accepted but not answered (a crash, a shutdown) are answered from the inbox.
    tracker.spawn(redrive_loop(app.clone(), shutdown.clone()));
    // Replies recorded but never confirmed (a crash, a platform outage) are sent again.
    tracker.spawn(
        app.resender()
            .run(app.config.gateway.egress_retry_every.0, shutdown.clone()),
    );
    // Workflow runs: resumed after a crash or a restart, woken after a sleep or a decision,
    // queued ones started as slots free up (here or in another process sharing the store).
    tracker.spawn(app.workflows.clone().run(shutdown.clone()));
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
    let gateway = Arc::clone(&app.gateway);
    let drain = app.config.server.drain_timeout.0;
    let result = crate::http::serve(app, listener, shutdown.clone()).await;
    shutdown.cancel();
    answers.close();
    let all = async {
        tracker.wait().await;
        answers.wait().await;
    };
    if tokio::time::timeout(drain, all).await.is_err() {
        // Turns still running are stopped: each releases its claim and hands its inbox row
        // back, so the next process answers those messages at once (nothing is lost, and
        // nothing waits for a lease to run out).
        tracing::warn!(
            "answers still running after the drain timeout; handing them back to the inbox"
        );
        gateway.halt();
        if tokio::time::timeout(HAND_BACK_WAIT, answers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some answers did not stop; their messages are answered again after the lease"
            );
        }
    }
    store.close().await;
    tracing::info!("conveyor stopped");
    result
}
