//! The egress ledger's sending side: the [`Outbox`] each chat platform implements, and the
//! [`Resender`] that sends rows a crash or an outage left pending. Recording a reply before it
//! is sent is the chat platforms' shared path (`channels::chat::deliver`).

use crate::error::Result;
use crate::model::Channel;
use crate::store::{EgressRow, Store};

/// A chat platform's sending side, as the rest of conveyor sees it: send a reply recorded in
/// the egress ledger again (its payload holds everything needed), and post an answer into a
/// chat that did not ask (a webhook's `forward_to`).
#[async_trait::async_trait]
pub trait Outbox: Send + Sync {
    /// The channel whose rows this sends.
    fn channel(&self) -> Channel;
    /// Sends one `pending` row and confirms it (`Store::egress_attempt`, then
    /// `Store::egress_confirm`). An error leaves it pending.
    async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()>;
    /// Posts `out` as a new message into `chat`, each part recorded in the egress ledger under
    /// `dedupe_key` (then `{dedupe_key}:{n}`) before it is sent.
    async fn post(
        &self,
        store: &Store,
        chat: &str,
        dedupe_key: &str,
        out: &crate::model::Outbound,
    ) -> Result<()>;
}

/// What one pass of the resender did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResendReport {
    /// Rows sent and confirmed.
    pub sent: usize,
    /// Rows whose send failed again (still pending, tried later).
    pub failed: usize,
    /// Rows given up on (too many attempts, or too old to still be useful).
    pub gave_up: usize,
}

/// Sends replies that were recorded but never confirmed: the process that recorded them
/// crashed between recording and confirming, or the platform kept failing. Runs once at
/// start-up and then every `gateway.egress_retry_every`.
///
/// What this guarantees: a confirmed reply is never sent again, and a recorded reply is sent
/// until confirmed or given up on. A reply that reached the platform but whose confirmation
/// was lost (crash after the send, before the confirm) is sent a second time, unless the
/// platform dedupes it (Discord channel messages carry a nonce with `enforce_nonce`); so
/// delivery is at-least-once for that window and exactly-once otherwise.
pub struct Resender {
    store: Store,
    outboxes: Vec<std::sync::Arc<dyn Outbox>>,
    max_attempts: i64,
    max_age: std::time::Duration,
}

impl Resender {
    /// A resender over `outboxes` (one per configured chat platform).
    pub fn new(
        store: Store,
        outboxes: Vec<std::sync::Arc<dyn Outbox>>,
        config: &crate::gateway::GatewayConfig,
    ) -> Self {
        Self {
            store,
            outboxes,
            max_attempts: i64::from(config.egress_max_attempts),
            max_age: config.egress_max_age.0,
        }
    }

    /// One pass over every channel's due rows, as of `now` (unix ms).
    pub async fn run_once(&self, now: i64) -> Result<ResendReport> {
        let mut report = ResendReport::default();
        let max_age = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        for outbox in &self.outboxes {
            let channel = outbox.channel();
            let rows = self
                .store
                .egress_claim_due(channel.as_str(), now, crate::store::EGRESS_LEASE_MS, 100)
                .await?;
            for row in rows {
                if row.attempts >= self.max_attempts {
                    let why = format!("gave up after {} attempts", row.attempts);
                    tracing::warn!(%channel, dedupe_key = %row.dedupe_key, "{why}");
                    self.store.egress_fail(&row.id, &why).await?;
                    report.gave_up += 1;
                    continue;
                }
                if now.saturating_sub(row.created_at) > max_age {
                    let why = format!(
                        "not sent: older than gateway.egress_max_age ({})",
                        crate::values::HumanDuration(self.max_age)
                    );
                    tracing::warn!(%channel, dedupe_key = %row.dedupe_key, "{why}");
                    self.store.egress_fail(&row.id, &why).await?;
                    report.gave_up += 1;
                    continue;
                }
                match outbox.resend(&self.store, &row).await {
                    Ok(()) => {
                        tracing::info!(%channel, dedupe_key = %row.dedupe_key, "sent a reply left pending");
                        report.sent += 1;
                    }
                    Err(e) => {
                        tracing::warn!(%channel, dedupe_key = %row.dedupe_key, error = %e, "sending a pending reply failed again");
                        self.store
                            .egress_note_error(&row.id, &e.to_string())
                            .await?;
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Runs a pass now and then every `every` until `shutdown`.
    pub async fn run(
        self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            match self.run_once(now).await {
                Ok(r) if r != ResendReport::default() => {
                    tracing::info!(
                        sent = r.sent,
                        failed = r.failed,
                        gave_up = r.gave_up,
                        "egress resend pass"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the egress resend pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
