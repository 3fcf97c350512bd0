//! The gateway's ingress claims under real timing: leases are held while a turn waits and runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conveyor::agent::{PlanRequest, Planner, Reply};
use conveyor::config::{GatewayConfig, HumanDuration, LimitsConfig, Rate};
use conveyor::gateway::Gateway;
use conveyor::metrics::Metrics;
use conveyor::model::{Channel, ConversationKey, Inbound, UserRef};
use conveyor::store::Store;

/// Answers after `delay`, counting its turns.
struct Slow {
    delay: Duration,
    turns: AtomicUsize,
}

#[async_trait::async_trait]
impl Planner for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    async fn answer(&self, req: PlanRequest<'_>) -> conveyor::Result<Reply> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(Reply {
            text: format!("answer to {}", req.inbound.text),
            citations: Vec::new(),
            ..Reply::default()
        })
    }
}

/// A gateway over `store` without rate limits.
fn gateway(store: &Store, planner: Arc<dyn Planner>, config: GatewayConfig) -> Gateway {
    Gateway::new(
        store.clone(),
        planner,
        Arc::new(Metrics::default()),
        config,
        &LimitsConfig {
            per_user: Rate::Off,
            per_conversation: Rate::Off,
            per_address: Rate::Off,
        },
    )
}

fn message(key: &str, conversation: &str) -> Inbound {
    Inbound {
        idempotency_key: key.into(),
        conversation: ConversationKey::new(Channel::API, conversation),
        user: UserRef {
            id: "u1".into(),
            name: None,
        },
        text: format!("question {key}"),
        attachments: Vec::new(),
    }
}

/// Issue 12, finding 4: the 120 s lease was never renewed, so a retry after the lease took
/// the key over and the planner ran twice. With a 200 ms lease and a 1 s turn, a retry 500 ms
/// in waits for the first answer instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_longer_than_the_lease_keeps_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let planner = Arc::new(Slow {
        delay: Duration::from_millis(1000),
        turns: AtomicUsize::new(0),
    });
    let gateway = Arc::new(gateway(
        &store,
        Arc::clone(&planner) as Arc<dyn Planner>,
        GatewayConfig {
            ingress_lease: HumanDuration(Duration::from_millis(200)),
            duplicate_wait: HumanDuration(Duration::from_secs(10)),
            ..GatewayConfig::default()
        },
    ));
    // A message queued behind another of its conversation for longer than the lease keeps
    // its claim too.
    let ahead = tokio::spawn({
        let g = Arc::clone(&gateway);
        async move { g.handle(message("ahead", "c1")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = tokio::spawn({
        let g = Arc::clone(&gateway);
        async move { g.handle(message("k1", "c1")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retry = tokio::spawn({
        let g = Arc::clone(&gateway);
        async move { g.handle(message("k1", "c1")).await }
    });
    let ahead = ahead.await.unwrap().unwrap();
    let first = first.await.unwrap().unwrap();
    let retry = retry.await.unwrap().unwrap();
    assert_eq!(first.message_id, retry.message_id);
    assert_ne!(first.message_id, ahead.message_id);
    assert_eq!(planner.turns.load(Ordering::SeqCst), 2);
    store.close().await;
}

/// Shutdown (issue 12, finding 5): a halted gateway stops the turn in flight with
/// `ShuttingDown` and releases its claim, so the next process answers the message at once
/// instead of waiting for the lease; new messages are refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halting_stops_turns_and_releases_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let planner = Arc::new(Slow {
        delay: Duration::from_secs(30),
        turns: AtomicUsize::new(0),
    });
    let gateway = Arc::new(gateway(
        &store,
        Arc::clone(&planner) as Arc<dyn Planner>,
        GatewayConfig::default(),
    ));
    let turn = tokio::spawn({
        let g = Arc::clone(&gateway);
        async move { g.handle(message("halt-1", "c1")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(planner.turns.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.ingress_response("api:halt-1").await.unwrap(),
        Some(conveyor::store::IngressStatus::Processing)
    );
    gateway.halt();
    let stopped = tokio::time::timeout(Duration::from_secs(5), turn)
        .await
        .expect("the turn stops at once")
        .unwrap();
    assert!(
        matches!(stopped, Err(conveyor::Error::ShuttingDown)),
        "{stopped:?}"
    );
    assert_eq!(
        store.ingress_response("api:halt-1").await.unwrap(),
        None,
        "the claim is released for the next process"
    );
    let refused = gateway.handle(message("halt-2", "c2")).await;
    assert!(matches!(refused, Err(conveyor::Error::ShuttingDown)));
    assert_eq!(planner.turns.load(Ordering::SeqCst), 1);
    store.close().await;
}

/// Records the roles each turn was given.
struct SeesRoles(std::sync::Mutex<Vec<Vec<String>>>);

#[async_trait::async_trait]
impl Planner for SeesRoles {
    fn name(&self) -> &'static str {
        "sees-roles"
    }

    async fn answer(&self, req: PlanRequest<'_>) -> conveyor::Result<Reply> {
        self.0.lock().unwrap().push(req.roles.to_vec());
        Ok(Reply {
            text: "ok".into(),
            citations: Vec::new(),
            ..Reply::default()
        })
    }
}

/// Issue 12, finding 3: roles were never filled in. `[roles]` names members with their
/// platform, and the planner (so the tool policy) gets the sender's roles; the same id typed
/// into the API gets none, an API key listed as `api:key:ID` gets its own.
#[tokio::test]
async fn roles_from_config_reach_the_planner_only_for_the_named_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let planner = Arc::new(SeesRoles(std::sync::Mutex::new(Vec::new())));
    let roles = conveyor::gateway::roles::RolesConfig(
        [
            (
                "finance".to_string(),
                vec!["slack:U1".to_string(), "api:key:k1".to_string()],
            ),
            ("ops".to_string(), vec!["slack:U1".to_string()]),
        ]
        .into_iter()
        .collect(),
    );
    let gateway = gateway(
        &store,
        Arc::clone(&planner) as Arc<dyn Planner>,
        GatewayConfig::default(),
    )
    .with_roles(roles);
    let from = |channel: Channel, user: &str, key: &str| Inbound {
        idempotency_key: key.into(),
        conversation: ConversationKey::new(channel, format!("c-{key}")),
        user: UserRef {
            id: user.into(),
            name: None,
        },
        text: "hello".into(),
        attachments: Vec::new(),
    };
    gateway
        .handle(from(Channel::new("slack"), "U1", "r1"))
        .await
        .unwrap();
    gateway
        .handle(from(Channel::API, "U1", "r2"))
        .await
        .unwrap();
    gateway
        .handle(from(Channel::API, "key:k1", "r3"))
        .await
        .unwrap();
    gateway
        .handle(from(Channel::new("telegram"), "U1", "r4"))
        .await
        .unwrap();
    let seen = planner.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            vec!["finance".to_string(), "ops".to_string()],
            vec![],
            vec!["finance".to_string()],
            vec![],
        ]
    );
    store.close().await;
}
