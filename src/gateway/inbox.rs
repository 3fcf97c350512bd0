//! Holding and finishing inbox rows ([`crate::store::Store::inbox_put`]), the same way on
//! every surface that acknowledges a message before answering it.
//!
//! A surface writes the message to the inbox, acknowledges it, and answers it in a task that
//! runs the work under [`held`] (the row's lease renewed every third of its length) and then
//! calls [`finish`] with what happened. A crash leaves the row queued until its lease runs
//! out; shutdown hands it back at once ([`Finish::HandBack`]); either way the next process's
//! redriver claims it and the surface answers it again from the row, where the ingress and
//! egress ledgers make sure the planner runs and each reply part is sent only once.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;
use crate::store::{InboxState, Lease, Store};

/// What became of an inbox row's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Answered (the reply is at least recorded for sending).
    Done,
    /// Answered, and the row already marked done in the commit that recorded the reply
    /// ([`crate::store::Store::egress_record_answering`]): nothing left to record.
    Answered,
    /// Stopped by shutdown: back to the queue for the next process, attempt not counted.
    HandBack,
    /// Failed in a way a later attempt may not (a backend down): left queued, tried again by
    /// the redriver once the lease runs out, until the attempts run out.
    Retry(String),
    /// Failed for good: kept as `failed` with the reason.
    Fail(String),
}

impl Finish {
    /// How an error from the gateway ends a row's work.
    pub fn of_error(e: &Error) -> Self {
        match e {
            Error::ShuttingDown => Self::HandBack,
            Error::Upstream(_) | Error::Internal(_) | Error::Conflict(_) => {
                Self::Retry(e.to_string())
            }
            other => Self::Fail(other.to_string()),
        }
    }
}

/// Runs `work` while renewing `lease` (when there is one: a redelivery that found its row
/// already queued runs without it) every third of `length`; `None` when the lease was lost
/// (another process took the row over after it ran out, e.g. during a long store outage): the
/// work is then dropped, the new owner answers.
pub async fn held<F: Future>(
    store: &Store,
    lease: Option<&Lease>,
    length: Duration,
    work: F,
) -> Option<F::Output> {
    let Some(lease) = lease else {
        return Some(work.await);
    };
    let every = (length / 3).max(Duration::from_millis(10));
    let renew = async {
        loop {
            tokio::time::sleep(every).await;
            match store.inbox_renew(lease, length).await {
                Ok(true) => {}
                // The work itself may have marked the row done with its reply's record
                // (`Finish::Answered`): then nothing is lost and there is nothing to renew.
                Ok(false)
                    if matches!(
                        store.inbox_state(&lease.key).await,
                        Ok(Some(InboxState::Done))
                    ) =>
                {
                    std::future::pending::<()>().await;
                }
                Ok(false) => break,
                // A store hiccup: try again at the next tick, while the lease still runs.
                Err(e) => {
                    tracing::warn!(error = %e, key = %lease.key, "could not renew an inbox lease")
                }
            }
        }
    };
    tokio::select! {
        out = work => Some(out),
        () = renew => {
            tracing::warn!(key = %lease.key, "lost the claim on an inbox message; another process answers it");
            None
        }
    }
}

/// Records what became of the row `lease` holds after its `attempts`-th claim; a retry past
/// `max_attempts` is given up. Failures to record are logged: the row then stays queued and
/// is answered again after its lease, where the ledgers keep the answer from repeating.
pub async fn finish(
    store: &Store,
    lease: Option<&Lease>,
    outcome: Finish,
    attempts: i64,
    max_attempts: u32,
) {
    let Some(lease) = lease else { return };
    let recorded = match &outcome {
        Finish::Answered => return,
        Finish::Done => store.inbox_done(lease).await,
        Finish::HandBack => store.inbox_hand_back(lease).await,
        Finish::Retry(why) if attempts >= i64::from(max_attempts) => {
            tracing::warn!(key = %lease.key, attempts, error = %why, "giving up on an inbox message");
            store
                .inbox_fail(
                    lease,
                    &format!("given up after {attempts} attempts; last error: {why}"),
                )
                .await
        }
        Finish::Retry(why) => {
            tracing::warn!(key = %lease.key, attempts, error = %why, "answering an inbox message failed; it is tried again after its lease");
            return;
        }
        Finish::Fail(why) => store.inbox_fail(lease, why).await,
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(key = %lease.key, ?outcome, "an inbox message was taken over before it was finished")
        }
        Err(e) => {
            tracing::warn!(key = %lease.key, ?outcome, error = %e, "could not record what became of an inbox message")
        }
    }
}
