//! The HTTP API and the gateway behind it, black-box: a starter project from `conveyor init`
//! (the Lumen Labs demo documents, indexed), an [`App`] built from its config, and requests
//! through `router()` + `oneshot` or a real server on `127.0.0.1:0`. Every test has its own
//! temp folder, so tests run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use conveyor::app::App;
use conveyor::config::{Config, HumanDuration, Rate};
use conveyor::store::Role;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const REFUND: &str = "How do I request a refund?";
const PRO_PLAN: &str = "What does the Pro plan include?";
const ABSENT: &str = "What is the capital of Mongolia?";
const NO_LLM: &str = "No LLM is configured";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A starter project written and indexed by `conveyor init` in a temp folder of its own.
async fn demo_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false)
        .await
        .expect("conveyor init");
    dir
}

/// The project's config, read without the process environment's `CONVEYOR__*` overrides so
/// tests do not depend on the shell that runs them. Rate limits are off: the tests that are
/// about them turn them on.
fn demo_config(dir: &Path) -> Config {
    let path = dir.join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config = Config::from_toml(&text, &path.display().to_string(), dir, &[]).unwrap();
    config.limits.per_user = Rate::Off;
    config.limits.per_conversation = Rate::Off;
    config
}

/// An app on the demo project with the default test config.
async fn demo_app(dir: &Path) -> App {
    App::build(demo_config(dir)).await.expect("App::build")
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// The `error.kind` and `error.message` of an error body.
    fn error(&self) -> (String, String) {
        let v = self.json();
        let kind = v["error"]["kind"].as_str().unwrap_or_else(|| {
            panic!("no error.kind in {v}");
        });
        let message = v["error"]["message"].as_str().unwrap_or_default();
        (kind.to_string(), message.to_string())
    }
}

async fn call(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(router: &Router, path: &str) -> Reply {
    call(router, Request::get(path).body(Body::empty()).unwrap()).await
}

/// `POST /v1/messages` with a JSON body and, optionally, an `Idempotency-Key`.
fn message_request(key: Option<&str>, body: &Value) -> Request<Body> {
    let mut req = Request::post("/v1/messages").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

fn message_body(conversation: &str, user: &str, text: &str) -> Value {
    json!({"conversation_id": conversation, "user": user, "text": text})
}

/// Asks a question and insists on a 200.
async fn ask(router: &Router, conversation: &str, user: &str, text: &str) -> Value {
    let reply = call(
        router,
        message_request(None, &message_body(conversation, user, text)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{text}: {}", reply.text());
    reply.json()
}

/// The value of one series in the Prometheus text, e.g. `conveyor_duplicates_total`.
fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn metrics_text(router: &Router) -> String {
    let reply = get(router, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.text()
}

/// Whether any citation of an answer points at the demo file `file`.
fn cites(answer: &Value, file: &str) -> bool {
    answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["source"].as_str().unwrap_or_default().ends_with(file))
}

/// Checks the shape of an extractive answer: a quoted sentence with `[1]`, citations that all
/// carry a title and source, the first of them on `file`, and the no-LLM note.
fn assert_cited_answer(answer: &Value, file: &str) {
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("[1]"), "no [1] marker: {text}");
    assert!(text.contains(NO_LLM), "no offline note: {text}");
    assert!(!text.contains("couldn't find"), "{text}");
    assert_eq!(answer["planner"], "offline");
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "no citations: {answer}");
    for c in citations {
        assert!(!c["title"].as_str().unwrap().is_empty(), "{c}");
        assert!(!c["source"].as_str().unwrap().is_empty(), "{c}");
        assert!(!c["chunk_id"].as_str().unwrap().is_empty(), "{c}");
    }
    assert_eq!(citations[0]["n"], 1);
    assert!(
        citations[0]["source"].as_str().unwrap().ends_with(file),
        "[1] should be {file}: {answer}"
    );
    // The quoted sentence before the marker comes from the cited passage.
    let quoted = text.split(" [1]").next().unwrap();
    let last_sentence = quoted
        .rsplit(['.', '!', '?'])
        .nth(1)
        .unwrap_or(quoted)
        .trim();
    assert!(
        citations[0]["snippet"]
            .as_str()
            .unwrap()
            .contains(last_sentence),
        "quoted {last_sentence:?} is not in the cited passage: {answer}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn questions_covered_by_the_demo_docs_get_cited_answers() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let refund = ask(&router, "answers", "u1", REFUND).await;
    assert_cited_answer(&refund, "refund-policy.md");
    assert_eq!(
        refund["citations"][0]["title"],
        "Refund and cancellation policy"
    );
    let text = refund["text"].as_str().unwrap();
    assert!(
        text.contains("Request refund") || text.contains("billing@lumenlabs.example"),
        "the answer should say how to request a refund: {text}"
    );
    assert_eq!(refund["conversation_id"], "answers");
    assert!(!refund["idempotency_key"].as_str().unwrap().is_empty());

    let pro = ask(&router, "answers-2", "u1", PRO_PLAN).await;
    assert_cited_answer(&pro, "plans-and-pricing.md");
    assert_eq!(pro["citations"][0]["title"], "Lumen Desk plans and pricing");
    let text = pro["text"].as_str().unwrap();
    assert!(text.contains("Pro plan"), "{text}");
    assert!(text.contains("Sources:"), "{text}");
}

#[tokio::test]
async fn a_question_the_docs_do_not_cover_gets_an_honest_not_found() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let answer = ask(&router, "absent", "u1", ABSENT).await;
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("couldn't find"), "{text}");
    assert!(!text.contains("[1]"), "{text}");
    assert_eq!(answer["citations"], json!([]));
    assert_eq!(answer["planner"], "offline");
}

#[tokio::test]
async fn slash_help_shows_the_help_text() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let answer = ask(&router, "help", "u1", "/help").await;
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("I answer questions from the documents"),
        "{text}"
    );
    assert!(text.contains("/help"), "{text}");
    assert_eq!(answer["citations"], json!([]));

    let unknown = ask(&router, "help", "u1", "/frobnicate").await;
    let text = unknown["text"].as_str().unwrap();
    assert!(
        text.contains("/frobnicate") && text.contains("/help"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Idempotency: concurrent duplicates, restart, reuse; on SQLite and PostgreSQL
// ---------------------------------------------------------------------------------------------

/// 20 concurrent deliveries of one key are answered once; after a restart the key still gives
/// the same answer without a second run; reusing it for another text is refused.
async fn idempotency_survives_concurrency_and_restart(dir: &Path, store_url: Option<String>) {
    let config = || {
        let mut c = demo_config(dir);
        if let Some(url) = &store_url {
            c.store.url = url.clone();
        }
        c
    };
    let key = "idem-key-1";
    let body = message_body("idem", "u1", REFUND);

    let first = {
        let app = App::build(config()).await.unwrap();
        let router = conveyor::http::router(app.clone());
        let mut requests = JoinSet::new();
        for _ in 0..20 {
            let router = router.clone();
            let req = message_request(Some(key), &body);
            requests.spawn(async move { call(&router, req).await });
        }
        let replies = requests.join_all().await;
        for r in &replies {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            assert_eq!(r.body, replies[0].body, "every delivery sees one answer");
        }
        let answer = replies[0].json();
        assert_eq!(answer["idempotency_key"], key);
        assert_cited_answer(&answer, "refund-policy.md");

        let turns = app.store.recent_turns("api:idem", 100).await.unwrap();
        let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant], "{turns:?}");
        assert_eq!(turns[0].text, REFUND);
        assert_eq!(turns[0].id, answer["reply_to"].as_str().unwrap());
        assert_eq!(turns[1].id, answer["message_id"].as_str().unwrap());

        let metrics = metrics_text(&router).await;
        assert_eq!(
            metric(&metrics, "conveyor_duplicates_total"),
            Some(19.0),
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                "conveyor_messages_total{channel=\"api\",outcome=\"ok\"}"
            ),
            Some(1.0),
            "{metrics}"
        );
        app.store.close().await;
        replies.into_iter().next().unwrap().body
        // `app` and `router` drop here, releasing the index folder for the next App.
    };

    // "Restart": a new App on the same index folder and the same store.
    let app = App::build(config()).await.unwrap();
    let router = conveyor::http::router(app.clone());
    let again = call(&router, message_request(Some(key), &body)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.body, first, "the recorded answer survives a restart");
    assert_eq!(
        app.store.recent_turns("api:idem", 100).await.unwrap().len(),
        2,
        "a repeat after a restart must not run the planner again"
    );

    let reused = call(
        &router,
        message_request(Some(key), &message_body("idem", "u1", PRO_PLAN)),
    )
    .await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST, "{}", reused.text());
    let (kind, message) = reused.error();
    assert_eq!(kind, "bad_input");
    assert!(
        message.contains("idempotency key") && message.contains("different message"),
        "{message}"
    );
    assert_eq!(
        app.store.recent_turns("api:idem", 100).await.unwrap().len(),
        2
    );
    let metrics = metrics_text(&router).await;
    assert_eq!(metric(&metrics, "conveyor_duplicates_total"), Some(1.0));
    app.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_is_answered_once_across_concurrency_and_restart() {
    let dir = demo_project().await;
    idempotency_survives_concurrency_and_restart(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_is_answered_once_on_postgres() {
    let dir = demo_project().await;
    let path = dir.path().to_path_buf();
    crate::common::with_pg_schema(|url| async move {
        idempotency_survives_concurrency_and_restart(&path, Some(url)).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_and_the_key_stays_usable() {
    let dir = demo_project().await;
    let refused_key = "rl-3";
    let refused_body = message_body("rl-c3", "alice", REFUND);
    {
        let mut config = demo_config(dir.path());
        config.limits.per_user = "2/min".parse().unwrap();
        let app = App::build(config).await.unwrap();
        let router = conveyor::http::router(app.clone());

        for (key, conversation) in [("rl-1", "rl-c1"), ("rl-2", "rl-c2")] {
            let r = call(
                &router,
                message_request(Some(key), &message_body(conversation, "alice", REFUND)),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }

        let refused = call(&router, message_request(Some(refused_key), &refused_body)).await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.text()
        );
        let retry_after: u64 = refused.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        let (kind, message) = refused.error();
        assert_eq!(kind, "rate_limited");
        assert!(
            message.contains(&format!("try again in {retry_after} second")),
            "the message should say when to retry, as Retry-After does: {message}"
        );
        assert!(
            app.store
                .recent_turns("api:rl-c3", 100)
                .await
                .unwrap()
                .is_empty(),
            "a refused message is not stored"
        );

        let bob = call(
            &router,
            message_request(Some("rl-bob"), &message_body("rl-c4", "bob", REFUND)),
        )
        .await;
        assert_eq!(bob.status, StatusCode::OK, "other users are not limited");

        let metrics = metrics_text(&router).await;
        assert_eq!(
            metric(&metrics, "conveyor_rate_limited_total"),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                "conveyor_messages_total{channel=\"api\",outcome=\"rate_limited\"}"
            ),
            Some(1.0),
            "{metrics}"
        );
        app.store.close().await;
    }

    // The refusal released the key in the ledger: once the limit allows it (here: a restart
    // with the limit off), the same key is answered, freshly rather than as a duplicate.
    let app = demo_app(dir.path()).await;
    let router = conveyor::http::router(app.clone());
    let retried = call(&router, message_request(Some(refused_key), &refused_body)).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text());
    assert_cited_answer(&retried.json(), "refund-policy.md");
    assert_eq!(
        app.store
            .recent_turns("api:rl-c3", 100)
            .await
            .unwrap()
            .len(),
        2
    );
    let metrics = metrics_text(&router).await;
    assert_eq!(metric(&metrics, "conveyor_duplicates_total"), Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------------------------

/// Posts a raw body with a content type to `/v1/messages`.
async fn post_raw(router: &Router, content_type: &str, body: impl Into<Body>) -> Reply {
    let req = Request::post("/v1/messages")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap();
    call(router, req).await
}

/// Asserts a 400 `bad_input` whose message contains every one of `needles`; returns it.
fn assert_bad_input(reply: &Reply, needles: &[&str]) -> String {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let (kind, message) = reply.error();
    assert_eq!(kind, "bad_input", "{message}");
    for n in needles {
        assert!(message.contains(n), "expected {n:?} in {message:?}");
    }
    message
}

#[tokio::test]
async fn bad_requests_get_a_status_and_a_sentence_saying_what_to_fix() {
    let dir = demo_project().await;
    let mut config = demo_config(dir.path());
    config.server.max_body_bytes = 1024;
    let app = App::build(config).await.unwrap();
    let router = conveyor::http::router(app.clone());
    const JSON: &str = "application/json";

    let malformed = post_raw(&router, JSON, r#"{"conversation_id": "c", "user": "#).await;
    assert_bad_input(&malformed, &["not valid JSON", "expected"]);

    let missing = post_raw(&router, JSON, r#"{"conversation_id": "c", "user": "u"}"#).await;
    assert_bad_input(&missing, &["`text`"]);

    let wrong_type = post_raw(
        &router,
        JSON,
        r#"{"conversation_id": "c", "user": "u", "text": 42}"#,
    )
    .await;
    assert_bad_input(&wrong_type, &["text"]);

    let unknown = post_raw(
        &router,
        JSON,
        r#"{"conversation_id": "c", "user": "u", "text": "hi", "colour": "red"}"#,
    )
    .await;
    assert_bad_input(&unknown, &["colour"]);

    let empty = call(
        &router,
        message_request(None, &message_body("c", "u", "   ")),
    )
    .await;
    assert_bad_input(&empty, &["empty"]);

    let no_conversation = call(
        &router,
        message_request(None, &message_body(" ", "u", "hi")),
    )
    .await;
    assert_bad_input(&no_conversation, &["conversation_id"]);

    let no_user = call(&router, message_request(None, &message_body("c", "", "hi"))).await;
    assert_bad_input(&no_user, &["user"]);

    let non_ascii_key = Request::post("/v1/messages")
        .header(header::CONTENT_TYPE, JSON)
        .header("idempotency-key", "clé-é".as_bytes())
        .body(Body::from(message_body("c", "u", "hi").to_string()))
        .unwrap();
    assert_bad_input(&call(&router, non_ascii_key).await, &["Idempotency-Key"]);

    let long_key = "k".repeat(256);
    let long_key = call(
        &router,
        message_request(Some(&long_key), &message_body("c", "u", "hi")),
    )
    .await;
    assert_bad_input(&long_key, &["idempotency key", "255"]);

    let not_json = post_raw(&router, "text/plain", "How do I request a refund?").await;
    assert_bad_input(&not_json, &["Content-Type: application/json"]);

    let big = message_body("c", "u", &"refund ".repeat(5 * 1024 / 7));
    assert!(big.to_string().len() > 5000);
    let too_large = call(&router, message_request(None, &big)).await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.text()
    );
    let (kind, message) = too_large.error();
    assert_eq!(kind, "too_large");
    assert!(message.contains("server.max_body_bytes"), "{message}");

    // None of that reached the conversation store.
    assert_eq!(app.store.message_count().await.unwrap(), 0);
    let metrics = metrics_text(&router).await;
    assert_eq!(
        metric(
            &metrics,
            "conveyor_messages_total{channel=\"api\",outcome=\"ok\"}"
        ),
        None,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_message_longer_than_the_text_limit_is_too_large() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);
    let long = "a".repeat(conveyor::gateway::MAX_TEXT_CHARS + 1);
    let reply = call(
        &router,
        message_request(None, &message_body("c", "u", &long)),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    let (kind, message) = reply.error();
    assert_eq!(kind, "too_large");
    assert!(message.contains("shorten"), "{message}");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);
    let reply = get(&router, "/v2/nothing-here").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let (kind, message) = reply.error();
    assert_eq!(kind, "not_found");
    assert!(message.contains("POST /v1/messages"), "{message}");

    let wrong_method = get(&router, "/v1/messages").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_wrong_method_gets_a_json_error_naming_the_right_one() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);
    let reply = get(&router, "/v1/messages").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers[header::ALLOW], "POST");
    let (_, message) = reply.error();
    assert!(message.contains("POST"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// 6, 7. Conversations: order and history
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_of_one_conversation_are_not_interleaved() {
    let dir = demo_project().await;
    let app = demo_app(dir.path()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(conveyor::http::serve(
        app.clone(),
        listener,
        shutdown.clone(),
    ));

    let questions = [
        REFUND,
        PRO_PLAN,
        "How long do refunds take?",
        "When is support available?",
        "Where are the offices?",
    ];
    let client = reqwest::Client::new();
    let mut requests = JoinSet::new();
    for (i, q) in questions.into_iter().enumerate() {
        let client = client.clone();
        let url = format!("http://{addr}/v1/messages");
        requests.spawn(async move {
            let res = client
                .post(url)
                .header("idempotency-key", format!("order-{i}"))
                .json(&message_body("ordered", "u1", q))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::OK);
            res.json::<Value>().await.unwrap()
        });
    }
    let answers = requests.join_all().await;

    let turns = app.store.recent_turns("api:ordered", 100).await.unwrap();
    assert_eq!(turns.len(), 10, "{turns:#?}");
    for pair in turns.chunks(2) {
        assert_eq!(pair[0].role, Role::User, "{turns:#?}");
        assert_eq!(pair[1].role, Role::Assistant, "{turns:#?}");
        // The assistant turn right after each question is the answer to that question.
        let answer = answers
            .iter()
            .find(|a| a["reply_to"] == pair[0].id.as_str())
            .unwrap_or_else(|| panic!("no answer replies to {:?}", pair[0]));
        assert_eq!(answer["message_id"], pair[1].id.as_str(), "{turns:#?}");
        assert_eq!(answer["text"], pair[1].text.as_str());
    }
    let mut asked: Vec<&str> = turns
        .iter()
        .filter(|t| t.role == Role::User)
        .map(|t| t.text.as_str())
        .collect();
    asked.sort_unstable();
    let mut expected = questions.to_vec();
    expected.sort_unstable();
    assert_eq!(asked, expected);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// The pair from the product brief. On the demo docs "How much does it cost?" is answered
/// from plans-and-pricing.md even on its own, so this pins the user-visible result; the next
/// test is the one that needs the history.
#[tokio::test]
async fn a_follow_up_question_uses_the_previous_question() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let first = ask(&router, "history", "u1", PRO_PLAN).await;
    assert_cited_answer(&first, "plans-and-pricing.md");
    let follow_up = ask(&router, "history", "u1", "How much does it cost?").await;
    let text = follow_up["text"].as_str().unwrap();
    assert!(!text.contains("couldn't find"), "{text}");
    assert!(
        cites(&follow_up, "plans-and-pricing.md"),
        "the follow-up should cite plans-and-pricing.md: {follow_up}"
    );
    assert!(
        text.contains("12 USD"),
        "the answer should give the Pro price: {text}"
    );
}

#[tokio::test]
async fn a_follow_up_is_answered_only_with_its_own_conversations_history() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);
    const FOLLOW_UP: &str = "What's the monthly fee in dollars?";

    ask(&router, "with-history", "u1", PRO_PLAN).await;
    // Another conversation, even of the same user, does not see that history, and the
    // follow-up alone does not cover enough of its terms to be answered.
    let alone = ask(&router, "without-history", "u1", FOLLOW_UP).await;
    let text = alone["text"].as_str().unwrap();
    assert!(text.contains("couldn't find"), "{text}");
    assert_eq!(alone["citations"], json!([]));

    let follow_up = ask(&router, "with-history", "u1", FOLLOW_UP).await;
    assert_cited_answer(&follow_up, "plans-and-pricing.md");
    let text = follow_up["text"].as_str().unwrap();
    assert!(text.contains("12 USD per user per month"), "{text}");
}

#[tokio::test]
async fn a_follow_up_keeps_the_subject_across_an_unanswered_question() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    ask(&router, "subject", "u1", PRO_PLAN).await;
    // Nothing in the documents says how to pay less; that question sets no new subject.
    let unanswered = ask(&router, "subject", "u1", "Can I get it cheaper?").await;
    let text = unanswered["text"].as_str().unwrap();
    assert!(text.contains("couldn't find"), "{text}");

    // "it" still means the Pro plan, and "a year" picks the yearly price.
    let yearly = ask(&router, "subject", "u1", "How much is it for a year?").await;
    assert_cited_answer(&yearly, "plans-and-pricing.md");
    let text = yearly["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "The Pro plan costs 12 USD per user per month, or 120 USD per user per year"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Health, metrics, pages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_readiness_and_metrics_report_the_running_app() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let health = get(&router, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "ok");

    let ready = get(&router, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let ready = ready.json();
    assert_eq!(ready["status"], "ready");
    assert!(ready["index_chunks"].as_u64().unwrap() > 0, "{ready}");

    ask(&router, "metrics", "u1", REFUND).await;
    let metrics = metrics_text(&router).await;
    assert_eq!(
        metric(
            &metrics,
            "conveyor_messages_total{channel=\"api\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "conveyor_message_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "conveyor_message_duration_seconds_count"),
        Some(1.0)
    );
    let chunks = metric(&metrics, "conveyor_index_chunks").unwrap();
    assert!(chunks > 0.0, "{metrics}");
    assert_eq!(chunks, ready["index_chunks"].as_u64().unwrap() as f64);
}

#[tokio::test]
async fn a_store_that_is_down_makes_the_app_not_ready_and_answers_503() {
    let dir = demo_project().await;
    let app = demo_app(dir.path()).await;
    let router = conveyor::http::router(app.clone());
    app.store.close().await;

    let health = get(&router, "/healthz").await;
    assert_eq!(
        health.status,
        StatusCode::OK,
        "liveness does not depend on the store"
    );

    let ready = get(&router, "/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    let ready = ready.json();
    assert_eq!(ready["status"], "not ready");
    let problems = ready["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{ready}");
    assert!(
        problems[0].as_str().unwrap().starts_with("store: "),
        "{ready}"
    );

    let reply = call(
        &router,
        message_request(None, &message_body("c", "u", REFUND)),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let (kind, message) = reply.error();
    assert_eq!(kind, "upstream");
    assert!(message.starts_with("store: "), "{message}");
}

#[tokio::test]
async fn readiness_names_a_store_problem_once() {
    let dir = demo_project().await;
    let app = demo_app(dir.path()).await;
    let router = conveyor::http::router(app.clone());
    app.store.close().await;
    let ready = get(&router, "/readyz").await.json();
    let problem = ready["problems"][0].as_str().unwrap();
    assert!(!problem.contains("store: store:"), "{problem}");
}

#[tokio::test]
async fn the_chat_page_and_source_pages_are_served() {
    let dir = demo_project().await;
    let router = conveyor::http::router(demo_app(dir.path()).await);

    let page = get(&router, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("conveyor"));

    let answer = ask(&router, "sources", "u1", REFUND).await;
    let citation = &answer["citations"][0];
    let chunk_id = citation["chunk_id"].as_str().unwrap();
    let source = get(&router, &format!("/sources/{chunk_id}")).await;
    assert_eq!(source.status, StatusCode::OK, "{}", source.text());
    assert!(
        source.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = source.text();
    assert!(html.contains("Refund and cancellation policy"), "{html}");
    assert!(html.contains("refund-policy.md"), "{html}");
    // The passage itself, HTML-escaped ("Settings > Billing" becomes "Settings &gt; Billing").
    let passage = conveyor::channels::web::escape(citation["snippet"].as_str().unwrap());
    assert!(html.contains(&passage), "{html}");

    let chunk = get(&router, &format!("/v1/chunks/{chunk_id}")).await;
    assert_eq!(chunk.status, StatusCode::OK, "{}", chunk.text());
    assert_eq!(chunk.json()["payload"]["text"], citation["snippet"]);

    let missing = get(&router, "/sources/not-a-chunk").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    let (kind, _) = missing.error();
    assert_eq!(kind, "not_found");
    let missing = get(&router, "/v1/chunks/not-a-chunk").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
}

// ---------------------------------------------------------------------------------------------
// 9. Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish() {
    let dir = demo_project().await;
    let mut config = demo_config(dir.path());
    config.server.drain_timeout = HumanDuration(Duration::from_secs(20));
    let app = App::build(config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(conveyor::http::serve(
        app.clone(),
        listener,
        shutdown.clone(),
    ));

    // A request whose body arrives in two parts: between them the server has read the
    // headers and is inside the handler, so the request is in flight when shutdown starts.
    let body = message_body("shutdown", "u1", REFUND).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: shutdown-1\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    // There is no hook that says "the server has parsed the headers"; a short pause is the
    // simplest stand-in for it. A loopback write is read well within it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cancelled_at = Instant::now();
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.is_finished(), "serve returned with a request open");
    // New connections are refused once shutdown began.
    let late = tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
    .await;
    if let Ok(Ok(buf)) = &late {
        assert!(
            !String::from_utf8_lossy(buf).starts_with("HTTP/1.1 200"),
            "a new request was served after shutdown began"
        );
    }

    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the in-flight request got no response")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, json_body) = response.split_once("\r\n\r\n").unwrap();
    let answer: Value = serde_json::from_str(json_body).unwrap();
    assert_cited_answer(&answer, "refund-policy.md");

    let served = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve did not return after the last request finished")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(10),
        "serve waited for the drain deadline instead of the request"
    );
    assert_eq!(
        app.store
            .recent_turns("api:shutdown", 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Request timeout
// ---------------------------------------------------------------------------------------------

/// A 503 for a slow answer tells the client to "retry with the same Idempotency-Key to get
/// the answer once it is ready". Two apps share one SQLite store, as two gateway processes
/// share a database: A has a 1 ms `request_timeout`, so its answers time out part-way; the
/// retry goes to B, which has normal timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_can_be_retried_for_its_answer() {
    let dir_a = demo_project().await;
    let dir_b = demo_project().await;
    let mut config = demo_config(dir_a.path());
    config.server.request_timeout = HumanDuration(Duration::from_millis(1));
    let shared_store = config.store_url().unwrap();
    let a = App::build(config).await.unwrap();
    let router_a = conveyor::http::router(a.clone());
    let mut config = demo_config(dir_b.path());
    config.store.url = shared_store;
    config.gateway.duplicate_wait = HumanDuration(Duration::from_secs(3));
    let b = App::build(config).await.unwrap();
    let router_b = conveyor::http::router(b.clone());

    // Find a delivery that timed out after claiming its key: the claim is the gateway's first
    // step, so nearly every timeout does, but one that fires before it proves nothing.
    let mut timed_out = None;
    for attempt in 0..20 {
        let key = format!("timeout-{attempt}");
        let body = message_body(&format!("timeout-{attempt}"), "u1", REFUND);
        let claimed_before = a.store.ingress_count().await.unwrap();
        let reply = call(&router_a, message_request(Some(&key), &body)).await;
        if reply.status == StatusCode::OK {
            continue;
        }
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        let (kind, message) = reply.error();
        assert_eq!(kind, "upstream");
        assert!(
            message.contains("retry with the same Idempotency-Key"),
            "{message}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if a.store.ingress_count().await.unwrap() > claimed_before {
            timed_out = Some((key, body, attempt));
            break;
        }
    }
    let (key, body, attempt) = timed_out.expect("no request timed out after claiming its key");

    let retry = call(&router_b, message_request(Some(&key), &body)).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    assert_cited_answer(&retry.json(), "refund-policy.md");
    let turns = b
        .store
        .recent_turns(&format!("api:timeout-{attempt}"), 100)
        .await
        .unwrap();
    let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant], "{turns:#?}");
}

// ---------------------------------------------------------------------------------------------
// Connectors and runs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connectors_and_runs_are_listed_newest_first() {
    use conveyor::connectors::sync::{self, SyncContext, SyncOptions};

    let dir = demo_project().await;
    let app = demo_app(dir.path()).await;
    let lake =
        conveyor::lakehouse::Lakehouse::open(&app.config.lakehouse, &app.config.base_dir).unwrap();
    let defs =
        conveyor::connectors::load_dir(&app.config.connectors_dir(), &app.config.base_dir).unwrap();
    let cx = SyncContext {
        store: &app.store,
        lake: &lake,
        lease: Duration::from_secs(60),
    };
    let customers = defs.iter().find(|d| d.name == "customers").unwrap();
    for _ in 0..2 {
        let r = sync::run(cx, customers, SyncOptions::default())
            .await
            .unwrap();
        assert!(r.error.is_none(), "{r:?}");
    }
    let router = conveyor::http::router(app.clone());

    let reply = get(&router, "/v1/connectors").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let list = body["connectors"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["customers", "orders", "products"], "{body}");
    let c = &list[0];
    assert_eq!(c["kind"], "files");
    assert_eq!(c["last_run"]["status"], "ok");
    assert_eq!(
        c["last_run"]["rows_read"], 0,
        "the second run read nothing new: {c}"
    );
    assert!(c["last_run"]["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(list[2]["indexed"], true);
    assert!(list[1]["last_run"].is_null());

    let reply = get(&router, "/v1/runs?connector=customers&limit=5").await;
    assert_eq!(reply.status, StatusCode::OK);
    let runs = reply.json()["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["rows_read"], 0, "newest first: {runs:?}");
    assert_eq!(runs[1]["rows_read"], 36);
    assert_eq!(runs[1]["rows_written"], 36);
    assert!(runs[1]["error"].is_null());

    let reply = get(&router, "/v1/runs?limit=1").await;
    assert_eq!(reply.json()["runs"].as_array().unwrap().len(), 1);
    for bad in ["/v1/runs?limit=0", "/v1/runs?limit=abc"] {
        let reply = get(&router, bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.json()["error"].is_object() || reply.json()["error"].is_string());
    }
}
