//! Generic signed webhooks, black-box: `[hooks.NAME]` on the demo project, the real GitHub
//! payloads and pre-signed requests in `../shared/fixtures/github`, through `router()` +
//! `oneshot`. Secrets come from an injected environment, never the process one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use base64::Engine;
use conveyor::app::App;
use conveyor::config::{Config, Env, HookConfig, HookReply, HookVerify, Rate};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const GH_SECRET_ENV: &str = "TEST_GH_HOOK_SECRET";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "bearer-t0ken";

const ISSUE_TEXT: &str = "{% if issue %}{{ sender.login }} opened: {{ issue.title }}\n{{ issue.body }}{% elif pull_request %}Pull request: {{ pull_request.title }}{% endif %}";

fn github_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github");
    if dir.join("SIGNED_requests_derived.json").exists() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

/// One pre-signed GitHub request from the fixtures.
struct Signed {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    event: String,
}

fn signed_requests(dir: &Path) -> (String, Vec<Signed>) {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("SIGNED_requests_derived.json")).unwrap(),
    )
    .unwrap();
    let secret = manifest["secret"].as_str().unwrap().to_string();
    let requests = manifest["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let headers: Vec<(String, String)> = r["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let event = headers
                .iter()
                .find(|(k, _)| k == "X-GitHub-Event")
                .map(|(_, v)| v.clone())
                .unwrap();
            Signed {
                headers,
                body: std::fs::read(dir.join(r["body_file"].as_str().unwrap())).unwrap(),
                event,
            }
        })
        .collect();
    (secret, requests)
}

fn hook(verify: HookVerify, secret_env: &str, text: &str, reply: HookReply) -> HookConfig {
    HookConfig {
        verify,
        secret_env: secret_env.into(),
        text: text.into(),
        conversation: "{{ hook }}".into(),
        user: "webhook:{{ hook }}".into(),
        reply,
        max_body_bytes: None,
        forward_to: None,
        workflow: None,
    }
}

async fn demo_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let path = dir.path().join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config =
        Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    config.limits.per_user = Rate::Off;
    config.limits.per_conversation = Rate::Off;
    (dir, config)
}

/// An app with hooks `gh` (hmac, sync), `gh-async` (hmac, async), `std` (Standard Webhooks)
/// and `token` (bearer).
async fn hooks_app(gh_secret: &str) -> (tempfile::TempDir, App) {
    let (dir, mut config) = demo_config().await;
    let gh = |reply| hook(HookVerify::HmacSha256, GH_SECRET_ENV, ISSUE_TEXT, reply);
    config.hooks.insert("gh".into(), gh(HookReply::Sync));
    config.hooks.insert("gh-async".into(), gh(HookReply::Async));
    config.hooks.insert(
        "std".into(),
        hook(
            HookVerify::StandardWebhooks,
            "TEST_SW_SECRET",
            "{{ payload.question }}",
            HookReply::Sync,
        ),
    );
    config.hooks.insert(
        "token".into(),
        hook(
            HookVerify::Bearer,
            "TEST_TOKEN",
            "{{ question }}",
            HookReply::Sync,
        ),
    );
    let gh_secret = gh_secret.to_string();
    let env = move |name: &str| match name {
        GH_SECRET_ENV => Some(gh_secret.clone()),
        "TEST_SW_SECRET" => Some(SW_SECRET.to_string()),
        "TEST_TOKEN" => Some(TOKEN.to_string()),
        _ => None,
    };
    let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
    (dir, app)
}

struct Reply {
    status: StatusCode,
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
}

async fn call(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply { status, body }
}

async fn post(router: &Router, path: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    call(router, req.body(Body::from(body.to_vec())).unwrap()).await
}

fn with_delivery(headers: &[(String, String)], id: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if k == "X-GitHub-Delivery" {
                (k.clone(), id.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

fn issues(requests: &[Signed]) -> &Signed {
    requests
        .iter()
        .find(|r| r.event == "issues")
        .expect("an issues request in the fixtures")
}

#[tokio::test]
async fn every_signed_github_request_is_accepted_and_answered_or_ignored() {
    let Some(dir) = github_dir() else { return };
    let (secret, requests) = signed_requests(&dir);
    let (_tmp, app) = hooks_app(&secret).await;
    let router = conveyor::http::router(app.clone());
    for (i, r) in requests.iter().enumerate() {
        let headers = with_delivery(&r.headers, &format!("delivery-{i}"));
        let reply = post(&router, "/hooks/gh", &headers, &r.body).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {:?}",
            r.event,
            reply.body
        );
        let json = reply.json();
        match r.event.as_str() {
            "issues" | "issue_comment" | "pull_request" => {
                assert_eq!(json["hook"], "gh", "{json}");
                assert_eq!(json["conversation_id"], "gh");
                // The signed body, not the unsigned X-GitHub-Delivery, keys the delivery.
                assert_eq!(
                    json["idempotency_key"],
                    format!("sha256-{}", hex::encode(Sha256::digest(&r.body)))
                );
                assert!(!json["text"].as_str().unwrap().is_empty(), "{json}");
            }
            // The template renders nothing for a ping (and a push): no message is processed.
            _ => {
                assert_eq!(json["status"], "ignored", "{}: {json}", r.event);
                assert!(
                    json["reason"]
                        .as_str()
                        .unwrap()
                        .contains("rendered nothing")
                );
            }
        }
    }
    // Each answered delivery stored a question and an answer; ignored ones stored nothing.
    let answered = requests
        .iter()
        .filter(|r| {
            matches!(
                r.event.as_str(),
                "issues" | "issue_comment" | "pull_request"
            )
        })
        .count();
    assert_eq!(
        app.store.message_count().await.unwrap(),
        i64::try_from(answered * 2).unwrap()
    );
}

#[tokio::test]
async fn forged_requests_are_refused_with_401_and_nothing_is_stored() {
    let Some(dir) = github_dir() else { return };
    let (secret, requests) = signed_requests(&dir);
    let r = issues(&requests);

    // The right secret, but the body or the headers are off.
    let (_tmp, app) = hooks_app(&secret).await;
    let router = conveyor::http::router(app.clone());
    let mut tampered = r.body.clone();
    let at = tampered.iter().position(|b| *b == b'S').unwrap();
    tampered[at] = b's';
    let reply = post(&router, "/hooks/gh", &r.headers, &tampered).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    let unsigned: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k != "X-Hub-Signature-256")
        .cloned()
        .collect();
    let reply = post(&router, "/hooks/gh", &unsigned, &r.body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256 header is missing")
    );
    // Even a body that is not JSON is refused for its signature first.
    let reply = post(&router, "/hooks/gh", &r.headers, b"not json").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.message_count().await.unwrap(), 0);
    assert_eq!(app.store.ingress_count().await.unwrap(), 0);

    // The untouched request against a hook configured with another secret.
    let (_tmp2, other) = hooks_app("not the secret").await;
    let router = conveyor::http::router(other.clone());
    let reply = post(&router, "/hooks/gh", &r.headers, &r.body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&reply.body).contains("not the secret"));
    assert_eq!(other.store.message_count().await.unwrap(), 0);
    assert_eq!(other.store.ingress_count().await.unwrap(), 0);
}

#[tokio::test]
async fn one_delivery_sent_three_times_is_answered_once() {
    let Some(dir) = github_dir() else { return };
    let (secret, requests) = signed_requests(&dir);
    let r = issues(&requests);
    let (_tmp, app) = hooks_app(&secret).await;
    let router = conveyor::http::router(app.clone());
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let reply = post(&router, "/hooks/gh", &r.headers, &r.body).await;
        assert_eq!(reply.status, StatusCode::OK);
        bodies.push(reply.body);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    // One question and one answer: the planner ran once.
    assert_eq!(app.store.message_count().await.unwrap(), 2);
}

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_a_400() {
    let (_tmp, app) = hooks_app("k").await;
    let router = conveyor::http::router(app.clone());
    let body = b"not json";
    let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = vec![("X-Hub-Signature-256".to_string(), sig)];
    let reply = post(&router, "/hooks/gh", &headers, body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(app.store.message_count().await.unwrap(), 0);
}

fn standard_headers(id: &str, ts: i64, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
        ("content-type".into(), "application/json".into()),
    ]
}

#[tokio::test]
async fn standard_webhooks_are_verified_fresh_and_deduplicated_on_webhook_id() {
    let (_tmp, app) = hooks_app("k").await;
    let router = conveyor::http::router(app.clone());
    let body = br#"{"question": "How do I request a refund?"}"#;
    let now = chrono::Utc::now().timestamp();
    let headers = standard_headers("msg_1", now, body, SW_SECRET);
    let first = post(&router, "/hooks/std", &headers, body).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.json()["idempotency_key"], "msg_1");
    assert_eq!(first.json()["hook"], "std");
    let again = post(&router, "/hooks/std", &headers, body).await;
    assert_eq!(again.body, first.body);
    assert_eq!(app.store.message_count().await.unwrap(), 2);

    // A replay of an old delivery, correctly signed, is stale; another secret does not match.
    let stale = standard_headers("msg_2", now - 600, body, SW_SECRET);
    let reply = post(&router, "/hooks/std", &stale, body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let forged = standard_headers("msg_3", now, body, "whsec_AAAAAAAAAAAAAAAAAAAAAAAA");
    let reply = post(&router, "/hooks/std", &forged, body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.message_count().await.unwrap(), 2);
}

/// Issue 12, finding 7: `X-GitHub-Delivery` is not signed, so one captured GitHub-signed
/// delivery posted again with a fresh header is the same delivery: answered once.
#[tokio::test]
async fn a_signed_body_replayed_with_new_delivery_headers_is_answered_once() {
    let Some(dir) = github_dir() else { return };
    let (secret, requests) = signed_requests(&dir);
    let r = issues(&requests);
    let (_tmp, app) = hooks_app(&secret).await;
    let router = conveyor::http::router(app.clone());
    let mut ids = Vec::new();
    for delivery in ["d-1", "d-2", "d-3"] {
        let reply = post(
            &router,
            "/hooks/gh",
            &with_delivery(&r.headers, delivery),
            &r.body,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        ids.push(reply.json()["message_id"].clone());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    // One question and one answer stored, one planner run.
    assert_eq!(app.store.message_count().await.unwrap(), 2);
}

#[tokio::test]
async fn bearer_hooks_check_the_token_and_use_idempotency_key() {
    let (_tmp, app) = hooks_app("k").await;
    let router = conveyor::http::router(app.clone());
    let body = br#"{"question": "What does the Pro plan include?"}"#;
    let headers = |token: &str| {
        vec![
            ("authorization".to_string(), format!("Bearer {token}")),
            ("idempotency-key".to_string(), "job-7".to_string()),
        ]
    };
    let reply = post(&router, "/hooks/token", &headers("wrong"), body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.message_count().await.unwrap(), 0);
    let reply = post(&router, "/hooks/token", &[], body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let first = post(&router, "/hooks/token", &headers(TOKEN), body).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.json()["idempotency_key"], "job-7");
    let again = post(&router, "/hooks/token", &headers(TOKEN), body).await;
    assert_eq!(again.body, first.body);
    assert_eq!(app.store.message_count().await.unwrap(), 2);
}

#[tokio::test]
async fn an_async_hook_answers_202_and_its_status_url_gets_the_answer() {
    let Some(dir) = github_dir() else { return };
    let (secret, requests) = signed_requests(&dir);
    let r = issues(&requests);
    let (_tmp, app) = hooks_app(&secret).await;
    let router = conveyor::http::router(app.clone());
    let headers = with_delivery(&r.headers, "async/1");
    let reply = post(&router, "/hooks/gh-async", &headers, &r.body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let json = reply.json();
    assert_eq!(json["status"], "accepted");
    let url = json["status_url"].as_str().unwrap().to_string();
    // HMAC signs only the body, so the body's hash is the delivery key (issue 12, finding 7).
    let key = format!("sha256-{}", hex::encode(Sha256::digest(&r.body)));
    assert_eq!(url, format!("/hooks/gh-async/deliveries/{key}"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let reply = call(&router, Request::get(&url).body(Body::empty()).unwrap()).await;
        match reply.status {
            StatusCode::OK => break reply.json(),
            StatusCode::ACCEPTED => assert_eq!(reply.json()["status"], "processing"),
            other => panic!("{other}: {:?}", reply.body),
        }
        assert!(tokio::time::Instant::now() < deadline, "never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(answer["hook"], "gh-async");
    assert_eq!(answer["idempotency_key"], key.as_str());
    assert!(!answer["text"].as_str().unwrap().is_empty());
    assert_eq!(app.store.message_count().await.unwrap(), 2);

    let unknown = call(
        &router,
        Request::get("/hooks/gh-async/deliveries/nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_hook_is_a_404() {
    let (_tmp, app) = hooks_app("k").await;
    let router = conveyor::http::router(app);
    let reply = post(&router, "/hooks/nope", &[], b"{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[hooks.nope]")
    );
}

#[tokio::test]
async fn a_bad_template_or_a_missing_secret_stops_start_up_naming_the_hook() {
    let (_tmp, mut config) = demo_config().await;
    config.hooks.insert(
        "broken".into(),
        hook(
            HookVerify::HmacSha256,
            "SET",
            "{% if issue %}unclosed",
            HookReply::Sync,
        ),
    );
    config.hooks.insert(
        "secretless".into(),
        hook(HookVerify::Bearer, "UNSET_VAR", "{{ x }}", HookReply::Sync),
    );
    let env = |name: &str| (name == "SET").then(|| "v".to_string());
    let err = App::build_with_env(config, &Env::new(env))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hooks.broken.text"), "{err}");
    assert!(err.contains("hooks.secretless.secret_env"), "{err}");
    assert!(err.contains("UNSET_VAR"), "{err}");
}

#[tokio::test]
async fn hook_config_is_checked_when_loading() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[hooks."bad name"]
verify = "hmac-sha256"
secret_env = ""
text = "x"

[hooks.typo]
verify = "hmac"
secret_env = "S"
text = "x"
"#;
    let err = Config::from_toml(text, "conveyor.toml", dir.path(), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hooks.typo"), "{err}");
    assert!(err.contains("hooks.bad name"), "{err}");
}
