//! The store, through its public API, on SQLite and (when `CONVEYOR_TEST_POSTGRES_URL` is set)
//! on PostgreSQL. Each test body is written once and run by [`each_backend`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use conveyor::Error;
use conveyor::store::{
    AuditEntry, AuditVerdict, Backend, Claim, NewEgress, NewMessage, Role, Store,
};
use serde_json::json;
use sqlx::Connection;

const LONG_LEASE: Duration = Duration::from_secs(60);

/// One database to run a test body against.
#[derive(Clone)]
struct Db {
    url: String,
    backend: Backend,
}

impl Db {
    async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("connect")
    }

    /// Runs a statement on a connection of its own, behind the store's back (to tamper).
    async fn raw_execute(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

/// Runs `body` on a fresh SQLite file, then on a fresh PostgreSQL schema when
/// `CONVEYOR_TEST_POSTGRES_URL` is set. A panic in the body fails the test after cleanup.
async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conveyor.db").display());
    let outcome = tokio::spawn(body(Db {
        url,
        backend: Backend::Sqlite,
    }))
    .await;
    if let Err(e) = outcome {
        eprintln!("failed on sqlite");
        std::panic::resume_unwind(e.into_panic());
    }

    crate::common::with_pg_schema(|url| {
        body(Db {
            url,
            backend: Backend::Postgres,
        })
    })
    .await;
}

fn message(conversation: &str, role: Role, text: &str) -> NewMessage {
    NewMessage {
        conversation: conversation.into(),
        channel: "api".into(),
        role,
        user_id: "u1".into(),
        text: text.into(),
        meta: json!({"source": "test"}),
    }
}

fn egress(channel: &str, dedupe_key: &str) -> NewEgress {
    NewEgress {
        channel: channel.into(),
        conversation: "api:c1".into(),
        dedupe_key: dedupe_key.into(),
        payload: json!({"text": format!("reply {dedupe_key}"), "n": 1}),
    }
}

fn audit_entry(n: i64) -> AuditEntry {
    AuditEntry {
        user_id: format!("user{n}"),
        channel: "slack".into(),
        conversation: "slack:T1:C1".into(),
        action: "sql_query".into(),
        // Keys out of order and a float: the chain must not depend on either.
        arguments: json!({"sql": "select 1", "limit": 100, "a": {"z": 0.1, "b": [n, null]}}),
        result: json!({"rows": n, "ok": true}),
        outcome: "ok".into(),
        duration_ms: 10 + n,
    }
}

#[tokio::test]
async fn migrations_apply_twice_and_ping_works() {
    each_backend(|db| async move {
        let first = db.store().await;
        assert_eq!(first.backend(), db.backend);
        first.ping().await.unwrap();
        first
            .append_message(&message("api:a", Role::User, "hi"))
            .await
            .unwrap();
        first.close().await;

        // A second connect runs the migrator again over the existing schema and keeps data.
        let second = db.store().await;
        second.ping().await.unwrap();
        assert_eq!(second.message_count().await.unwrap(), 1);
        second.close().await;
    })
    .await;
}

#[tokio::test]
async fn sqlite_file_and_parent_folders_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a").join("b").join("conveyor.db");
    let store = Store::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.ping().await.unwrap();
    assert!(file.exists());
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_keeps_data_across_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store
        .append_message(&message("api:m", Role::User, "one"))
        .await
        .unwrap();
    store
        .append_message(&message("api:m", Role::Assistant, "two"))
        .await
        .unwrap();
    assert_eq!(store.recent_turns("api:m", 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn ingress_claim_then_complete_returns_the_recorded_response() {
    each_backend(|db| async move {
        let store = db.store().await;
        let Claim::Owned(lease) = store.ingress_claim("ev-1", "h1", LONG_LEASE).await.unwrap()
        else {
            panic!("the first claim owns the key")
        };
        // While it is being processed, a retry is told so, with the hash to compare.
        assert_eq!(
            store.ingress_claim("ev-1", "h1", LONG_LEASE).await.unwrap(),
            Claim::Busy {
                request_hash: "h1".into()
            }
        );
        let response = r#"{"reply":"hello"}"#;
        store.ingress_complete(&lease, response).await.unwrap();
        for _ in 0..2 {
            assert_eq!(
                store.ingress_claim("ev-1", "h2", LONG_LEASE).await.unwrap(),
                Claim::Done {
                    response: response.into(),
                    request_hash: "h1".into()
                }
            );
        }
        // Completing again keeps the first response.
        store
            .ingress_complete(&lease, r#"{"reply":"other"}"#)
            .await
            .unwrap();
        assert!(matches!(
            store.ingress_claim("ev-1", "h1", LONG_LEASE).await.unwrap(),
            Claim::Done { response: r, .. } if r == response
        ));
        assert_eq!(store.ingress_count().await.unwrap(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_claims_yield_exactly_one_owner() {
    each_backend(|db| async move {
        let store = db.store().await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.spawn(async move { store.ingress_claim("race", "h", LONG_LEASE).await });
        }
        let mut owned = 0;
        let mut busy = 0;
        while let Some(claim) = tasks.join_next().await {
            match claim.unwrap().unwrap() {
                Claim::Owned(_) => owned += 1,
                Claim::Busy { request_hash } => {
                    assert_eq!(request_hash, "h");
                    busy += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((owned, busy), (1, 19));
        assert_eq!(store.ingress_count().await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    each_backend(|db| async move {
        let store = db.store().await;
        let Claim::Owned(stale) = store
            .ingress_claim("ev-crash", "h1", LONG_LEASE)
            .await
            .unwrap()
        else {
            panic!("the first claim owns the key")
        };
        assert!(matches!(
            store
                .ingress_claim("ev-crash", "h1", LONG_LEASE)
                .await
                .unwrap(),
            Claim::Busy { .. }
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The first owner "crashed": with a 1 ms lease its claim is stale now.
        let Claim::Owned(lease) = store
            .ingress_claim("ev-crash", "h1", Duration::from_millis(1))
            .await
            .unwrap()
        else {
            panic!("the expired claim is taken over")
        };
        assert_ne!(lease.owner, stale.owner);
        // Issue 12, finding 4: the stale owner can neither renew, release nor complete the new
        // owner's claim.
        assert!(!store.ingress_renew(&stale).await.unwrap());
        store.ingress_release(&stale).await.unwrap();
        let err = store
            .ingress_complete(&stale, "\"stale\"")
            .await
            .unwrap_err();
        assert!(matches!(err, conveyor::Error::Conflict(_)), "{err}");
        assert!(store.ingress_renew(&lease).await.unwrap());
        // The new owner holds a fresh lease.
        assert!(matches!(
            store
                .ingress_claim("ev-crash", "h1", LONG_LEASE)
                .await
                .unwrap(),
            Claim::Busy { .. }
        ));
        store.ingress_complete(&lease, "\"ok\"").await.unwrap();
        // A done row is never taken over, however short the lease.
        assert!(matches!(
            store
                .ingress_claim("ev-crash", "h1", Duration::ZERO)
                .await
                .unwrap(),
            Claim::Done { .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn release_lets_a_retry_run_but_never_deletes_a_done_row() {
    each_backend(|db| async move {
        let store = db.store().await;
        let owned = |c: Claim| match c {
            Claim::Owned(lease) => lease,
            other => panic!("expected to own the key, got {other:?}"),
        };
        let lease = owned(store.ingress_claim("ev-2", "h", LONG_LEASE).await.unwrap());
        store.ingress_release(&lease).await.unwrap();
        assert_eq!(store.ingress_count().await.unwrap(), 0);
        let lease = owned(store.ingress_claim("ev-2", "h", LONG_LEASE).await.unwrap());
        store.ingress_complete(&lease, "\"done\"").await.unwrap();
        store.ingress_release(&lease).await.unwrap();
        assert_eq!(store.ingress_count().await.unwrap(), 1);
        assert_eq!(
            store.ingress_claim("ev-2", "h", LONG_LEASE).await.unwrap(),
            Claim::Done {
                response: "\"done\"".into(),
                request_hash: "h".into()
            }
        );
        // Releasing a key nobody claimed is a no-op.
        let never = conveyor::store::Lease {
            key: "never-seen".into(),
            owner: "nobody".into(),
        };
        store.ingress_release(&never).await.unwrap();
        // Completing a key that is not in the ledger is reported, not silently dropped.
        assert!(matches!(
            store.ingress_complete(&never, "\"x\"").await,
            Err(Error::Internal(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn recent_turns_are_the_last_n_oldest_first() {
    each_backend(|db| async move {
        let store = db.store().await;
        let mut ids = Vec::new();
        for i in 1..=5 {
            let role = if i % 2 == 1 {
                Role::User
            } else {
                Role::Assistant
            };
            ids.push(
                store
                    .append_message(&message("api:a", role, &format!("m{i}")))
                    .await
                    .unwrap(),
            );
        }
        store
            .append_message(&message("api:b", Role::User, "other"))
            .await
            .unwrap();

        let turns = store.recent_turns("api:a", 3).await.unwrap();
        let texts: Vec<_> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["m3", "m4", "m5"]);
        assert_eq!(turns[0].id, ids[2]);
        assert_eq!(turns[0].role, Role::User);
        assert_eq!(turns[1].role, Role::Assistant);
        assert_eq!(turns[0].user_id, "u1");
        assert!(turns.windows(2).all(|w| w[0].created_at <= w[1].created_at));

        assert_eq!(store.recent_turns("api:a", 100).await.unwrap().len(), 5);
        assert!(store.recent_turns("api:none", 3).await.unwrap().is_empty());
        assert_eq!(store.message_count().await.unwrap(), 6);
    })
    .await;
}

#[tokio::test]
async fn egress_is_idempotent_and_confirm_removes_from_pending() {
    each_backend(|db| async move {
        let store = db.store().await;
        let id = store
            .egress_record(&egress("slack", "reply-1"))
            .await
            .unwrap();
        assert_eq!(
            store
                .egress_record(&egress("slack", "reply-1"))
                .await
                .unwrap(),
            id
        );
        let second = store
            .egress_record(&egress("slack", "reply-2"))
            .await
            .unwrap();
        assert_ne!(second, id);
        store
            .egress_record(&egress("telegram", "reply-3"))
            .await
            .unwrap();

        let pending = store.egress_pending("slack").await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].id, id);
        assert_eq!(pending[0].dedupe_key, "reply-1");
        assert_eq!(pending[0].conversation, "api:c1");
        assert_eq!(pending[0].payload, json!({"text": "reply reply-1", "n": 1}));
        assert_eq!(pending[0].attempts, 0);
        assert_eq!(pending[1].id, second);

        assert_eq!(store.egress_attempt(&id).await.unwrap(), 1);
        assert_eq!(store.egress_attempt(&id).await.unwrap(), 2);
        assert_eq!(store.egress_pending("slack").await.unwrap()[0].attempts, 2);

        store.egress_confirm(&id, Some("ts-123")).await.unwrap();
        let pending = store.egress_pending("slack").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, second);
        // Recording a confirmed reply again does not make it pending: it is never sent twice.
        assert_eq!(
            store
                .egress_record(&egress("slack", "reply-1"))
                .await
                .unwrap(),
            id
        );
        assert_eq!(store.egress_pending("slack").await.unwrap().len(), 1);

        store.egress_confirm(&second, None).await.unwrap();
        assert!(store.egress_pending("slack").await.unwrap().is_empty());
        assert_eq!(store.egress_pending("telegram").await.unwrap().len(), 1);
        assert!(matches!(
            store.egress_confirm("no-such-id", None).await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn audit_chain_verifies_and_detects_tampering() {
    each_backend(|db| async move {
        let store = db.store().await;
        assert_eq!(
            store.audit_verify().await.unwrap(),
            AuditVerdict::Intact { records: 0 }
        );
        for n in 1..=3 {
            assert_eq!(store.audit_append(&audit_entry(n)).await.unwrap(), n);
        }
        assert_eq!(
            store.audit_verify().await.unwrap(),
            AuditVerdict::Intact { records: 3 }
        );

        let tail = store.audit_tail(2).await.unwrap();
        assert_eq!(tail.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(tail[0].arguments, audit_entry(2).arguments);
        assert_eq!(tail[0].result, audit_entry(2).result);
        assert_eq!(tail[0].user_id, "user2");
        assert_eq!(tail[0].duration_ms, 12);
        assert_eq!(tail[1].prev_hash, tail[0].hash);
        assert_eq!(tail[0].hash.len(), 64);
        let first = store.audit_tail(3).await.unwrap().remove(0);
        assert_eq!(first.prev_hash, "0".repeat(64));

        db.raw_execute("UPDATE audit SET outcome = 'denied' WHERE id = 2")
            .await;
        match store.audit_verify().await.unwrap() {
            AuditVerdict::Broken { id, reason } => {
                assert_eq!(id, 2);
                assert!(reason.contains("hash"), "{reason}");
            }
            other => panic!("tampering not detected: {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn audit_detects_a_deleted_record() {
    each_backend(|db| async move {
        let store = db.store().await;
        for n in 1..=3 {
            store.audit_append(&audit_entry(n)).await.unwrap();
        }
        db.raw_execute("DELETE FROM audit WHERE id = 2").await;
        assert!(matches!(
            store.audit_verify().await.unwrap(),
            AuditVerdict::Broken { id: 3, .. }
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_audit_appends_never_fork_the_chain() {
    each_backend(|db| async move {
        let store = db.store().await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let store = store.clone();
            tasks.spawn(async move { store.audit_append(&audit_entry(n)).await });
        }
        let mut ids = Vec::new();
        while let Some(id) = tasks.join_next().await {
            ids.push(id.unwrap().unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
        assert_eq!(
            store.audit_verify().await.unwrap(),
            AuditVerdict::Intact { records: 20 }
        );
    })
    .await;
}

#[tokio::test]
async fn unreachable_postgres_is_an_upstream_error_naming_the_host() {
    let err = Store::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Upstream(_)), "{err:?}");
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(msg.contains("store.url"), "{msg}");
}

#[tokio::test]
async fn a_password_in_the_url_never_appears_in_the_error() {
    for url in [
        "postgres://postgres:hunter2secret@127.0.0.1:1/test",
        "postgresql://postgres:hunter2secret@127.0.0.1:1/test?sslmode=disable",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::Upstream(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
    // A url we cannot use at all is a config error and does not echo the password either.
    let err = Store::connect("mysql://root:hunter2secret@127.0.0.1/db")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2secret"));
}

#[tokio::test]
async fn pairing_codes_are_reused_approved_once_and_grant_access() {
    each_backend(|db| async move {
        let store = db.store().await;
        assert!(!store.access_granted("telegram", "42").await.unwrap());
        let code = store
            .pairing_code_for("telegram", "42", Some("Ana"), "42", 3_600_000)
            .await
            .unwrap();
        let again = store
            .pairing_code_for("telegram", "42", Some("Ana"), "42", 3_600_000)
            .await
            .unwrap();
        assert_eq!(code.code, again.code, "a second message reuses the code");
        assert_eq!(store.pairing_pending().await.unwrap().len(), 1);
        let unknown = store
            .pairing_approve("ZZZZ-ZZZZ", "admin")
            .await
            .unwrap_err();
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
        let grant = store
            .pairing_approve(&code.code.to_lowercase(), "admin")
            .await
            .unwrap();
        assert_eq!(
            (grant.channel.as_str(), grant.user_id.as_str()),
            ("telegram", "42")
        );
        assert!(store.access_granted("telegram", "42").await.unwrap());
        assert!(!store.access_granted("slack", "42").await.unwrap());
        let twice = store
            .pairing_approve(&code.code, "admin")
            .await
            .unwrap_err();
        assert!(matches!(twice, Error::Conflict(_)), "{twice}");
        assert!(store.pairing_pending().await.unwrap().is_empty());
        assert_eq!(store.access_grants().await.unwrap().len(), 1);
        assert!(store.access_revoke("telegram", "42").await.unwrap());
        assert!(!store.access_revoke("telegram", "42").await.unwrap());
        assert!(!store.access_granted("telegram", "42").await.unwrap());
        // An expired code is refused with a sentence that says so.
        let old = store
            .pairing_code_for("discord", "7", None, "dm", 1)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let expired = store.pairing_approve(&old.code, "admin").await.unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
        assert!(!store.access_granted("discord", "7").await.unwrap());
        // A direct grant.
        assert!(
            store
                .access_grant("discord", "7", None, "admin")
                .await
                .unwrap()
        );
        assert!(
            !store
                .access_grant("discord", "7", None, "admin")
                .await
                .unwrap()
        );
    })
    .await;
}

#[tokio::test]
async fn feedback_is_one_vote_per_user_on_known_answers() {
    each_backend(|db| async move {
        let store = db.store().await;
        let answer = store
            .append_message(&message("api:f", Role::Assistant, "an answer"))
            .await
            .unwrap();
        let question = store
            .append_message(&message("api:f", Role::User, "a question"))
            .await
            .unwrap();
        store
            .feedback_record(&answer, "u1", "slack", 1)
            .await
            .unwrap();
        store
            .feedback_record(&answer, "u1", "slack", -5)
            .await
            .unwrap();
        store
            .feedback_record(&answer, "u2", "slack", 1)
            .await
            .unwrap();
        assert_eq!(
            store.feedback_for(&answer).await.unwrap(),
            vec![("u1".to_string(), -1), ("u2".to_string(), 1)]
        );
        assert!(matches!(
            store.feedback_record(&question, "u1", "slack", 1).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            store.feedback_record("missing", "u1", "slack", 1).await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_due_egress_row_is_claimed_by_exactly_one_resender() {
    use conveyor::store::EGRESS_LEASE_MS;
    each_backend(|db| async move {
        let store = db.store().await;
        store
            .egress_record_new(&NewEgress {
                channel: "slack".into(),
                conversation: "slack:x".into(),
                dedupe_key: "slack:claim".into(),
                payload: json!({"text": "x"}),
            })
            .await
            .unwrap()
            .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            store
                .egress_claim_due("slack", now, EGRESS_LEASE_MS, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = now + EGRESS_LEASE_MS + 1;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .egress_claim_due("slack", later, EGRESS_LEASE_MS, 10)
                    .await
                    .unwrap()
                    .len()
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 1, "one resender gets the row");
        assert!(
            store
                .egress_claim_due("telegram", later, EGRESS_LEASE_MS, 10)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

/// The inbox (issue 12, finding 5): a message is queued once; a redelivery gets no lease; a
/// crashed owner's row is claimed by exactly one other process after its lease, with the
/// attempt counted; the stale owner can no longer renew, finish or hand it back; a handed-back
/// row is claimable at once without the attempt counted; a failed row is queued again by a
/// resend; rows of channels the claimer does not run are left alone.
#[tokio::test]
async fn inbox_rows_are_queued_once_claimed_once_and_owner_checked() {
    each_backend(|db| async move {
        let store = db.store().await;
        let payload = json!({"inbound": {"text": "hi"}});
        let first = store
            .inbox_put("telegram", "telegram:1", &payload, LONG_LEASE)
            .await
            .unwrap()
            .expect("queued");
        assert!(
            store
                .inbox_put("telegram", "telegram:1", &payload, LONG_LEASE)
                .await
                .unwrap()
                .is_none(),
            "a redelivery is not queued twice"
        );
        store
            .inbox_put("slack", "slack:Ev1", &payload, LONG_LEASE)
            .await
            .unwrap()
            .expect("queued");
        // Within the lease nobody else may claim it.
        let due = store
            .inbox_claim_due(&["telegram", "slack"], LONG_LEASE, 10)
            .await
            .unwrap();
        assert!(due.is_empty(), "{due:?}");
        assert!(
            store
                .inbox_renew(&first, Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;

        // Eight claimers race for the expired row: exactly one gets it.
        let mut racers = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            racers.push(tokio::spawn(async move {
                store
                    .inbox_claim_due(&["telegram"], LONG_LEASE, 10)
                    .await
                    .unwrap()
            }));
        }
        let mut claimed = Vec::new();
        for r in racers {
            claimed.extend(r.await.unwrap());
        }
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        let row = claimed.pop().unwrap();
        assert_eq!(row.channel, "telegram");
        assert_eq!(row.payload, payload);
        assert_eq!(row.attempts, 2);
        assert_ne!(row.lease.owner, first.owner);

        // The stale owner can do nothing to the new owner's row.
        assert!(!store.inbox_renew(&first, LONG_LEASE).await.unwrap());
        assert!(!store.inbox_done(&first).await.unwrap());
        assert!(!store.inbox_hand_back(&first).await.unwrap());
        assert!(!store.inbox_fail(&first, "stale").await.unwrap());
        assert_eq!(
            store.inbox_state("telegram:1").await.unwrap(),
            Some(conveyor::store::InboxState::Queued)
        );

        // Handed back: claimable at once, the attempt not counted.
        assert!(store.inbox_hand_back(&row.lease).await.unwrap());
        let again = store
            .inbox_claim_due(&["telegram"], LONG_LEASE, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2);
        assert!(store.inbox_done(&again[0].lease).await.unwrap());
        assert_eq!(
            store.inbox_state("telegram:1").await.unwrap(),
            Some(conveyor::store::InboxState::Done)
        );
        assert!(
            store
                .inbox_put("telegram", "telegram:1", &payload, LONG_LEASE)
                .await
                .unwrap()
                .is_none(),
            "a redelivery of an answered message is not queued again"
        );

        // Failed, then resent: queued again with a fresh lease.
        let slack = store
            .inbox_claim_due(&["slack"], LONG_LEASE, 10)
            .await
            .unwrap();
        assert!(slack.is_empty(), "still within the first lease");
        let queued = store.inbox_queued().await.unwrap();
        assert_eq!(queued, vec![("slack".to_string(), 1)]);
        store
            .inbox_put("discord", "discord:9", &payload, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            store
                .inbox_claim_due(&["telegram", "slack"], LONG_LEASE, 10)
                .await
                .unwrap()
                .is_empty(),
            "a channel the claimer does not run is left alone"
        );
        let discord = store
            .inbox_claim_due(&["discord"], LONG_LEASE, 10)
            .await
            .unwrap();
        assert!(store.inbox_fail(&discord[0].lease, "boom").await.unwrap());
        assert_eq!(
            store.inbox_state("discord:9").await.unwrap(),
            Some(conveyor::store::InboxState::Failed("boom".into()))
        );
        let requeued = store
            .inbox_put("discord", "discord:9", &payload, LONG_LEASE)
            .await
            .unwrap();
        assert!(
            requeued.is_some(),
            "a resend of a failed message tries again"
        );

        // Answered rows are pruned after their time; queued ones never.
        let pruned = store
            .inbox_prune(chrono::Utc::now().timestamp_millis() + 1)
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(store.inbox_state("telegram:1").await.unwrap(), None);
        assert_eq!(
            store.inbox_state("slack:Ev1").await.unwrap(),
            Some(conveyor::store::InboxState::Queued)
        );
    })
    .await;
}

/// A turn ends in one commit (the answer and the ledger's record together), and only while
/// its claim holds: a stale owner whose lease was taken over stores no second answer.
#[tokio::test]
async fn finish_turn_records_answer_and_response_together_only_for_the_owner() {
    each_backend(|db| async move {
        let store = db.store().await;
        let Claim::Owned(stale) = store
            .ingress_claim("turn-1", "h", Duration::from_millis(1))
            .await
            .unwrap()
        else {
            panic!("owned")
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A claimer with a 1 ms lease sees the first claim as expired and takes it over.
        let Claim::Owned(lease) = store
            .ingress_claim("turn-1", "h", Duration::from_millis(1))
            .await
            .unwrap()
        else {
            panic!("taken over")
        };
        let question = message("conv-t", Role::User, "the question");
        let answer = message("conv-t", Role::Assistant, "the answer");
        let turn = || {
            vec![
                (conveyor::store::new_message_id(), question.clone()),
                (conveyor::store::new_message_id(), answer.clone()),
            ]
        };
        let err = store
            .finish_turn(&stale, turn(), "\"stale\"".into())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(store.recent_turns("conv-t", 10).await.unwrap().is_empty());
        let id = "the-response";
        store
            .finish_turn(&lease, turn(), format!("\"{id}\""))
            .await
            .unwrap();
        let turns = store.recent_turns("conv-t", 10).await.unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].text, "the question");
        assert_eq!(turns[1].text, "the answer");
        assert_eq!(
            store.ingress_response("turn-1").await.unwrap(),
            Some(conveyor::store::IngressStatus::Done(format!("\"{id}\"")))
        );
    })
    .await;
}

/// Writes that arrive together share one commit (group commit on SQLite) without sharing
/// their fate or their view: of 200 concurrent claims of 50 keys exactly one per key is
/// owned, a write that fails (a turn whose claim was taken over; a turn whose second insert
/// fails after its first statements ran) stores nothing while the writes committed with it
/// stay, and everything acknowledged is there on a fresh connection.
#[tokio::test]
async fn concurrent_writes_commit_together_and_fail_alone() {
    each_backend(|db| async move {
        let store = db.store().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("gc-{}", i % 50);
                let claim = store.ingress_claim(&key, "h", LONG_LEASE).await.unwrap();
                if let Claim::Owned(lease) = claim {
                    let conv = format!("conv-gc-{i}");
                    let m = message(&conv, Role::User, "q");
                    store
                        .finish_turn(
                            &lease,
                            vec![(conveyor::store::new_message_id(), m)],
                            "\"ok\"".into(),
                        )
                        .await
                        .unwrap();
                    1
                } else {
                    0
                }
            }));
        }
        let stale = conveyor::store::Lease {
            key: "gc-0".into(),
            owner: "not-the-owner".into(),
        };
        let failing = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .finish_turn(
                        &stale,
                        vec![(
                            conveyor::store::new_message_id(),
                            message("conv-gc-stale", Role::User, "no"),
                        )],
                        "\"stale\"".into(),
                    )
                    .await
            })
        };
        // A write that fails half-way (its second message reuses the first one's id) is
        // rolled back whole: its claim stays open, no message of it is kept.
        let half = {
            let store = store.clone();
            tokio::spawn(async move {
                let Claim::Owned(lease) = store
                    .ingress_claim("gc-half", "h", LONG_LEASE)
                    .await
                    .unwrap()
                else {
                    panic!("owned")
                };
                let id = conveyor::store::new_message_id();
                let m = message("conv-gc-half", Role::User, "q");
                let err = store
                    .finish_turn(
                        &lease,
                        vec![(id.clone(), m.clone()), (id, m)],
                        "\"x\"".into(),
                    )
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::Upstream(_)), "{err}");
            })
        };
        let mut owned = 0;
        for t in tasks {
            owned += t.await.unwrap();
        }
        assert_eq!(owned, 50, "one owner per key");
        assert!(matches!(failing.await.unwrap(), Err(Error::Conflict(_))));
        half.await.unwrap();
        assert_eq!(
            store.ingress_response("gc-half").await.unwrap(),
            Some(conveyor::store::IngressStatus::Processing)
        );
        store.close().await;

        let again = db.store().await;
        assert_eq!(again.ingress_count().await.unwrap(), 51);
        assert!(
            again
                .recent_turns("conv-gc-half", 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(again.message_count().await.unwrap(), 50);
        assert!(
            again
                .recent_turns("conv-gc-stale", 5)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

/// A chat reply's parts and its inbox row's `done` are one commit; only the row's owner marks
/// it, and a stale owner's parts are still recorded (the ledger decides what is sent).
#[tokio::test]
async fn recording_a_reply_marks_its_inbox_row_done_in_the_same_commit() {
    each_backend(|db| async move {
        let store = db.store().await;
        let payload = json!({"inbound": {"text": "hi"}});
        let lease = store
            .inbox_put("telegram", "telegram:7", &payload, LONG_LEASE)
            .await
            .unwrap()
            .expect("queued");
        let part = |key: &str| NewEgress {
            channel: "telegram".into(),
            conversation: "telegram:7".into(),
            dedupe_key: key.into(),
            payload: json!({"text": "answer"}),
        };
        let stale = conveyor::store::Lease {
            key: lease.key.clone(),
            owner: "someone-else".into(),
        };
        let (ids, answered) = store
            .egress_record_answering(&[part("r7:0")], Some(&stale))
            .await
            .unwrap();
        assert!(ids[0].is_some() && !answered, "a stale owner marks nothing");
        assert_eq!(
            store.inbox_state("telegram:7").await.unwrap(),
            Some(conveyor::store::InboxState::Queued)
        );
        let (ids, answered) = store
            .egress_record_answering(&[part("r7:0"), part("r7:1")], Some(&lease))
            .await
            .unwrap();
        assert!(answered);
        assert!(ids[0].is_none() && ids[1].is_some(), "{ids:?}");
        assert_eq!(
            store.inbox_state("telegram:7").await.unwrap(),
            Some(conveyor::store::InboxState::Done)
        );
        assert!(!store.inbox_renew(&lease, LONG_LEASE).await.unwrap());
    })
    .await;
}
