//! The path of one inbound message, whatever surface it came from:
//!
//! 1. the ingress ledger claims the idempotency key (a repeat gets the first recorded answer,
//!    and a concurrent repeat waits for it: the planner never runs twice for one key, across
//!    processes and restarts too, because the claim lives in the store);
//! 2. rate limits per user and per conversation;
//! 3. the conversation's lock, so its messages are answered in order;
//! 4. the last turns are loaded, the planner answers, and the question, the answer and the
//!    ledger's record of it against the key are stored in one commit
//!    ([`Store::finish_turn`]), only while the claim is still this turn's, before the lock
//!    is let go.

pub mod access;
pub mod egress;
pub mod inbox;
pub mod order;
pub mod ratelimit;
pub mod roles;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::agent::{PlanRequest, Planner};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::{Inbound, Outbound};
use crate::store::{Claim, Lease, NewMessage, Role, Store};
use crate::values::HumanDuration;
use order::ConversationLocks;
use ratelimit::KeyedLimit;
pub use ratelimit::LimitsConfig;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// `[gateway]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Previous turns of the conversation handed to the planner.
    pub history_turns: usize,
    /// How long a claim on an idempotency key or on an inbox message holds before another
    /// process may take it over (covers a crash mid-processing). The holder renews it every
    /// third of this while it works, so it bounds how long a crashed process's messages wait,
    /// not how long an answer may take.
    pub ingress_lease: HumanDuration,
    /// Claims of an inbox message after which it is given up (`failed`, kept for an operator)
    /// instead of being tried again: a message that crashes or stalls every process that
    /// takes it must not block the others forever.
    pub inbox_max_attempts: u32,
    /// How long a duplicate request waits for the first one's answer before giving up.
    pub duplicate_wait: HumanDuration,
    /// How often replies left unconfirmed (crash, platform errors) are sent again.
    pub egress_retry_every: HumanDuration,
    /// Send attempts after which a reply is given up on (marked `failed`).
    pub egress_max_attempts: u32,
    /// A reply older than this is not sent any more (an answer hours late confuses more than
    /// it helps); it is marked `failed`.
    pub egress_max_age: HumanDuration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            history_turns: 10,
            ingress_lease: HumanDuration(Duration::from_secs(15)),
            inbox_max_attempts: 5,
            duplicate_wait: HumanDuration(Duration::from_secs(30)),
            egress_retry_every: HumanDuration(Duration::from_secs(30)),
            egress_max_attempts: 8,
            egress_max_age: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// Longest accepted message text, in characters.
pub const MAX_TEXT_CHARS: usize = 8_000;

/// Handles inbound messages.
pub struct Gateway {
    store: Store,
    planner: Arc<dyn Planner>,
    metrics: Arc<Metrics>,
    config: GatewayConfig,
    per_user: KeyedLimit,
    per_conversation: KeyedLimit,
    per_address: KeyedLimit,
    locks: ConversationLocks,
    access: access::Access,
    roles: roles::RolesConfig,
    attributes: roles::AttributesConfig,
    halted: CancellationToken,
}

impl Gateway {
    /// Wires a gateway.
    pub fn new(
        store: Store,
        planner: Arc<dyn Planner>,
        metrics: Arc<Metrics>,
        config: GatewayConfig,
        limits: &LimitsConfig,
    ) -> Self {
        Self {
            store: store.clone(),
            planner,
            metrics,
            config,
            per_user: KeyedLimit::new(limits.per_user),
            per_conversation: KeyedLimit::new(limits.per_conversation),
            per_address: KeyedLimit::new(limits.per_address),
            locks: ConversationLocks::default(),
            access: access::Access::new(access::AccessConfig::default(), store),
            roles: roles::RolesConfig::default(),
            attributes: roles::AttributesConfig::default(),
            halted: CancellationToken::new(),
        }
    }

    /// Applies the `[access]` rules (without it, every platform is open).
    pub fn with_access(mut self, config: access::AccessConfig) -> Self {
        self.access = access::Access::new(config, self.store.clone());
        self
    }

    /// Gives callers the roles `[roles]` names them in (the tool policy reads them).
    pub fn with_roles(mut self, roles: roles::RolesConfig) -> Self {
        self.roles = roles;
        self
    }

    /// Gives callers the attributes `[attributes]` lists for them (the semantic model's
    /// access rules read them).
    pub fn with_attributes(mut self, attributes: roles::AttributesConfig) -> Self {
        self.attributes = attributes;
        self
    }

    /// Whether a chat-platform message may go through, before it is handed to
    /// [`Gateway::handle`]; see [`access`]. When the store cannot answer, the message is not
    /// let in (logged): failing closed keeps strangers out during an outage.
    pub async fn check_access(
        &self,
        channel: crate::model::Channel,
        who: &access::Subject<'_>,
    ) -> access::Decision {
        match self.access.check(channel, who).await {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "checking access failed; not answering");
                access::Decision::Ignore
            }
        }
    }

    /// Stops every turn in flight and refuses new ones with [`Error::ShuttingDown`]; each
    /// stopped turn releases its ingress claim, so the next process answers the message at
    /// once instead of waiting for the lease. Called when shutdown's drain time is up.
    pub fn halt(&self) {
        self.halted.cancel();
    }

    /// The claim lease ([`GatewayConfig::ingress_lease`]), which inbox claims use too.
    pub fn lease(&self) -> Duration {
        self.config.ingress_lease.0
    }

    /// Claims after which an inbox message is given up ([`GatewayConfig::inbox_max_attempts`]).
    pub fn inbox_max_attempts(&self) -> u32 {
        self.config.inbox_max_attempts
    }

    /// The planner's name, for surfaces that show it.
    pub fn planner_name(&self) -> &'static str {
        self.planner.name()
    }

    /// Answers one message exactly once per idempotency key.
    pub async fn handle(&self, inbound: Inbound) -> Result<Outbound> {
        let started = Instant::now();
        let channel = inbound.conversation.channel;
        let span = tracing::info_span!(
            "message",
            channel = %channel,
            conversation = %inbound.conversation.id,
        );
        let result = tracing::Instrument::instrument(self.handle_inner(inbound), span).await;
        let outcome = match &result {
            Ok((_, true)) => "duplicate",
            Ok((_, false)) => "ok",
            Err(Error::RateLimited { .. }) => "rate_limited",
            Err(Error::BadInput(_) | Error::TooLarge(_)) => "bad_input",
            Err(Error::ShuttingDown) => "handed_back",
            Err(_) => "error",
        };
        self.metrics
            .message(channel.as_str(), outcome, started.elapsed());
        result.map(|(out, _)| out)
    }

    /// Returns the answer and whether it came from the ledger.
    async fn handle_inner(&self, inbound: Inbound) -> Result<(Outbound, bool)> {
        validate(&inbound)?;
        if self.halted.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let conversation = inbound.conversation.as_storage_key();
        let key = inbound.ledger_key();
        let request_hash = request_hash(&inbound);

        let lease = match self.claim(&key, &request_hash).await? {
            Ok(lease) => lease,
            Err(recorded) => {
                self.metrics.duplicate();
                return Ok((recorded, true));
            }
        };

        // We own the key now: anything that stops us must release it so a retry can run.
        if let Err(wait) = self.per_user.check(&format!(
            "{}:{}",
            inbound.conversation.channel, inbound.user.id
        )) {
            return self
                .refuse(&lease, wait, "you are sending messages faster than allowed")
                .await;
        }
        if let Err(wait) = self.per_conversation.check(&conversation) {
            return self
                .refuse(
                    &lease,
                    wait,
                    "this conversation is receiving messages faster than allowed",
                )
                .await;
        }

        // The lease is renewed while the message waits for its conversation and while it is
        // answered, so neither a queue nor a slow turn lets a retry take the key over; if it is
        // lost anyway (the store was unreachable for a whole lease), the turn stops. The turn
        // is recorded before the conversation's lock is let go, so the next message of the
        // conversation sees this one and its answer in its history.
        let work = async {
            let order = self.locks.lock(&conversation).await;
            let answered = self.process(&inbound, &conversation).await;
            (order, answered)
        };
        let outcome = tokio::select! {
            (order, answered) = work => match answered {
                // Outside the race with the renewals (the commit ends the claim, so a renewal
                // after it would read as a lost claim), still under the conversation's lock.
                Ok(answer) => {
                    let out = self.finish(&lease, answer).await;
                    drop(order);
                    out
                }
                Err(e) => Err(e),
            },
            lost = self.hold(&lease) => Err(lost),
            () = self.halted.cancelled() => Err(Error::ShuttingDown),
        };
        match outcome {
            Ok(out) => Ok((out, false)),
            Err(e) => {
                // Owner-checked: a key this turn recorded (or another owner took) is left.
                if let Err(release) = self.store.ingress_release(&lease).await {
                    tracing::warn!(error = %release, "could not release the ingress claim");
                }
                Err(e)
            }
        }
    }

    /// Records the turn — the question, the answer and the ledger's record of it — in one
    /// commit, only while the claim is still ours; returns the answer.
    async fn finish(&self, lease: &Lease, turn: Turn) -> Result<Outbound> {
        let answer_id = crate::store::new_message_id();
        let out = turn.outbound(&answer_id);
        let response =
            serde_json::to_string(&out).map_err(|e| Error::internal("encoding the answer", e))?;
        self.store
            .finish_turn(
                lease,
                vec![
                    (out.reply_to.clone(), turn.question),
                    (answer_id, turn.answer),
                ],
                response,
            )
            .await?;
        Ok(out)
    }

    /// Renews `lease` every third of its length; returns (with the reason) only when it is no
    /// longer held.
    async fn hold(&self, lease: &Lease) -> Error {
        let every = (self.config.ingress_lease.0 / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match self.store.ingress_renew(lease).await {
                Ok(true) => {}
                Ok(false) => {
                    return Error::Conflict(format!(
                        "the claim on `{}` was lost while it was being answered; another delivery answers it",
                        lease.key
                    ));
                }
                // A store hiccup: try again at the next tick, while the lease still runs.
                Err(e) => {
                    tracing::warn!(error = %e, key = %lease.key, "could not renew an ingress lease")
                }
            }
        }
    }

    async fn refuse(&self, lease: &Lease, wait: Duration, why: &str) -> Result<(Outbound, bool)> {
        self.store.ingress_release(lease).await?;
        self.metrics.rate_limited();
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        Err(Error::RateLimited {
            retry_after: Duration::from_secs(secs),
            message: format!(
                "Sorry, {why}. Please try again in {secs} second{}.",
                if secs == 1 { "" } else { "s" }
            ),
        })
    }

    /// Claims `key`: its lease when it is ours to process, or the recorded answer of an
    /// earlier delivery. A duplicate that arrives while the first is being answered waits for
    /// it.
    async fn claim(
        &self,
        key: &str,
        request_hash: &str,
    ) -> Result<std::result::Result<Lease, Outbound>> {
        let deadline = Instant::now() + self.config.duplicate_wait.0;
        let lease = self.config.ingress_lease.0;
        let mut pause = Duration::from_millis(10);
        let mut claim = self.store.ingress_claim(key, request_hash, lease).await?;
        loop {
            match claim {
                Claim::Owned(lease) => return Ok(Ok(lease)),
                Claim::Done {
                    response,
                    request_hash: first,
                } => {
                    same_request(&first, request_hash)?;
                    return serde_json::from_str(&response)
                        .map(Err)
                        .map_err(|e| Error::internal("reading a recorded answer", e));
                }
                Claim::Busy {
                    request_hash: first,
                } => {
                    same_request(&first, request_hash)?;
                    if Instant::now() >= deadline {
                        return Err(Error::Conflict(
                            "A request with the same idempotency key is still being answered; retry in a few seconds to get its answer.".into(),
                        ));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                    // Waiting reads; only a key that is free again is claimed (a write).
                    claim = match self.store.ingress_peek(key, lease).await? {
                        Some(seen) => seen,
                        None => self.store.ingress_claim(key, request_hash, lease).await?,
                    };
                }
            }
        }
    }

    /// Runs the turn up to the answer; [`Turn`] holds what [`Store::finish_turn`] records.
    async fn process(&self, inbound: &Inbound, conversation: &str) -> Result<Turn> {
        let history = self
            .store
            .recent_turns(conversation, self.config.history_turns)
            .await?;
        // Taken now, so that it sorts before the answer's.
        let reply_to = crate::store::new_message_id();
        let roles = self
            .roles
            .of(inbound.conversation.channel, &inbound.user.id);
        let attributes = self
            .attributes
            .of(inbound.conversation.channel, &inbound.user.id);
        let reply = self
            .planner
            .answer(PlanRequest {
                inbound,
                history: &history,
                roles: &roles,
                attributes: &attributes,
            })
            .await?;
        let channel = inbound.conversation.channel.as_str().to_string();
        Ok(Turn {
            question: NewMessage {
                conversation: conversation.to_string(),
                channel: channel.clone(),
                role: Role::User,
                user_id: inbound.user.id.clone(),
                text: inbound.text.clone(),
                meta: serde_json::json!({ "idempotency_key": inbound.idempotency_key }),
            },
            answer: NewMessage {
                conversation: conversation.to_string(),
                channel,
                role: Role::Assistant,
                user_id: self.planner.name().to_string(),
                text: reply.text.clone(),
                meta: answer_meta(&reply, &reply_to, &inbound.ledger_key()),
            },
            conversation: inbound.conversation.clone(),
            reply_to,
            text: reply.text,
            citations: reply.citations,
            planner: self.planner.name().to_string(),
            data: reply.data,
            choices: reply.choices,
        })
    }

    /// Checks `[limits] per_address` for a request from `address` (the HTTP API's guard);
    /// the wait until the next request passes when it is over.
    pub fn check_address(&self, address: std::net::IpAddr) -> std::result::Result<(), Duration> {
        self.per_address.check(&address.to_string())
    }

    /// Drops limiter state of idle keys; call now and then.
    pub fn housekeeping(&self) {
        self.per_user.shrink();
        self.per_conversation.shrink();
        self.per_address.shrink();
    }
}

/// A turn answered and not yet recorded: the question and the answer as stored messages, and
/// the parts of the [`Outbound`] it becomes once the answer has an id.
struct Turn {
    question: NewMessage,
    answer: NewMessage,
    conversation: crate::model::ConversationKey,
    reply_to: String,
    text: String,
    citations: Vec<crate::model::Citation>,
    planner: String,
    data: Option<crate::model::DataAnswer>,
    choices: Vec<String>,
}

impl Turn {
    fn outbound(&self, message_id: &str) -> Outbound {
        Outbound {
            conversation: self.conversation.clone(),
            reply_to: self.reply_to.clone(),
            message_id: message_id.to_string(),
            text: self.text.clone(),
            citations: self.citations.clone(),
            planner: self.planner.clone(),
            data: self.data.clone(),
            choices: self.choices.clone(),
            actions: Vec::new(),
        }
    }
}

/// What is stored with an answer besides its text: its citations, the message it answers,
/// and for a BI answer the query it ran (interpretation and SQL, for the audit trail) and the
/// ingress key whose recorded answer holds the rows, the CSV and the chart (what
/// `GET /v1/messages/{id}/chart.png` serves); for a question back, its options.
fn answer_meta(reply: &crate::agent::Reply, reply_to: &str, ingress: &str) -> serde_json::Value {
    let mut meta = serde_json::json!({ "citations": reply.citations, "reply_to": reply_to });
    if !reply.choices.is_empty()
        && let Some(obj) = meta.as_object_mut()
    {
        // What a click on a choice button asks (`channels::chat::choice`).
        obj.insert("choices".into(), serde_json::json!(reply.choices));
    }
    if let (Some(d), Some(obj)) = (&reply.data, meta.as_object_mut()) {
        obj.insert(
            "query".into(),
            serde_json::json!({ "interpretation": d.interpretation, "sql": d.sql, "rows": d.rows.len() }),
        );
        obj.insert("ingress".into(), serde_json::Value::from(ingress));
    }
    meta
}

fn validate(inbound: &Inbound) -> Result<()> {
    if inbound.text.trim().is_empty() {
        return Err(Error::BadInput(
            "the message text is empty; send some text to get an answer".into(),
        ));
    }
    let chars = inbound.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Error::TooLarge(format!(
            "the message has {chars} characters; the limit is {MAX_TEXT_CHARS}: shorten it"
        )));
    }
    if inbound.idempotency_key.is_empty() || inbound.idempotency_key.len() > 255 {
        return Err(Error::BadInput(
            "the idempotency key must have 1 to 255 characters".into(),
        ));
    }
    Ok(())
}

fn request_hash(inbound: &Inbound) -> String {
    let mut h = Sha256::new();
    for part in [
        inbound.conversation.as_storage_key().as_str(),
        inbound.user.id.as_str(),
        inbound.text.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

fn same_request(first: &str, this: &str) -> Result<()> {
    if first == this {
        Ok(())
    } else {
        Err(Error::BadInput(
            "this idempotency key was already used for a different message; use a new key for a new message".into(),
        ))
    }
}
