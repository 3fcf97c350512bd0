//! Discord interactions, black-box: `POST /discord/interactions` through `router()` + `oneshot`
//! with the pre-signed requests in `../shared/fixtures/signatures` (RFC 8032 TEST 1 key), the
//! interaction bodies in `../shared/fixtures/discord`, and a fake Discord REST API
//! (`tests/support/discord.rs`) that records the follow-ups.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::app::App;
use conveyor::channels::discord::DiscordConfig;
use conveyor::config::{Config, Rate};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::discord::FakeDiscord;

/// RFC 8032 TEST 1.
const SECRET_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const APP_ID: &str = "771825006014889984";
const WAIT: Duration = Duration::from_secs(10);
const QUESTION: &str = "How do I request a refund?";

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if dir
        .join("signatures/discord_interaction_signed_requests.json")
        .exists()
    {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

fn signed_requests(dir: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join("signatures/discord_interaction_signed_requests.json"))
            .unwrap(),
    )
    .unwrap()
}

/// Fields drop in order: the app (and its index) before the folder it lives in.
struct Harness {
    app: App,
    router: Router,
    fake: FakeDiscord,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(public_key: &str) -> Self {
        let fake = FakeDiscord::start().await;
        let dir = tempfile::tempdir().unwrap();
        conveyor::init::init(dir.path(), false).await.unwrap();
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        config.channels.discord = Some(DiscordConfig {
            public_key: public_key.into(),
            application_id: APP_ID.into(),
            token_env: Some("TEST_DISCORD_TOKEN".into()),
            api_base_url: fake.url.clone(),
        });
        let env = |name: &str| match name {
            "TEST_DISCORD_TOKEN" => Some("discord-bot-token".to_string()),
            _ => None,
        };
        let app = App::build_with_env(config, &env).await.unwrap();
        let router = conveyor::http::router(app.clone());
        Self {
            app,
            router,
            fake,
            _dir: dir,
        }
    }

    async fn post(&self, headers: &Value, body: &str) -> (StatusCode, Value) {
        let mut req =
            Request::post("/discord/interactions").header("content-type", "application/json");
        if let Some(map) = headers.as_object() {
            for (k, v) in map {
                if !k.eq_ignore_ascii_case("content-type") {
                    req = req.header(k.as_str(), v.as_str().unwrap());
                }
            }
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post_signed(&self, body: &str) -> (StatusCode, Value) {
        let key = SigningKey::from_bytes(&hex::decode(SECRET_KEY).unwrap().try_into().unwrap());
        let timestamp = "1700000100";
        let signature = key.sign(format!("{timestamp}{body}").as_bytes());
        let headers = json!({
            "X-Signature-Ed25519": hex::encode(signature.to_bytes()),
            "X-Signature-Timestamp": timestamp,
        });
        self.post(&headers, body).await
    }

    /// Waits for every follow-up task to finish.
    async fn settle(&self) {
        self.app.tasks.close();
        tokio::time::timeout(WAIT, self.app.tasks.wait())
            .await
            .unwrap();
        self.app.tasks.reopen();
    }
}

/// The docs' slash-command example, turned into `/ask question: …` with `id`.
fn ask(dir: &Path, id: &str) -> String {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join("discord/interaction_type2_slash_command_docs_example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    v["id"] = json!(id);
    v["data"]["name"] = json!("ask");
    v["data"]["options"] = json!([{"type": 3, "name": "question", "value": QUESTION}]);
    v.to_string()
}

#[tokio::test]
async fn a_signed_ping_gets_a_pong() {
    let Some(dir) = fixtures() else { return };
    let requests = signed_requests(&dir);
    let ping = &requests["valid"][0];
    assert_eq!(ping["name"], "ping");
    let h = Harness::start(PUBLIC_KEY).await;
    let (status, body) = h
        .post(&ping["headers"], ping["body"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("discord/expected_response_pong.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(body["type"], expected["type"]);
    assert_eq!(body, json!({"type": 1}));
}

#[tokio::test]
async fn other_signed_interactions_get_an_ephemeral_note_and_are_not_processed() {
    let Some(dir) = fixtures() else { return };
    let requests = signed_requests(&dir);
    let h = Harness::start(PUBLIC_KEY).await;
    for case in requests["valid"].as_array().unwrap().iter().skip(1) {
        let (status, body) = h
            .post(&case["headers"], case["body"].as_str().unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{}", case["name"]);
        assert_eq!(body["type"], 4, "{}: {body}", case["name"]);
        assert_eq!(body["data"]["flags"], 64, "{}", case["name"]);
        assert!(
            body["data"]["content"].as_str().unwrap().contains("/ask"),
            "{body}"
        );
    }
    h.settle().await;
    assert!(h.fake.follow_ups().is_empty());
}

#[tokio::test]
async fn every_bad_signature_gets_401_and_nothing_is_processed() {
    let Some(dir) = fixtures() else { return };
    let requests = signed_requests(&dir);
    let h = Harness::start(PUBLIC_KEY).await;
    for case in requests["invalid"].as_array().unwrap() {
        // `wrong_key` is a valid signature checked against another application's key.
        let other;
        let h = if case["public_key"] == PUBLIC_KEY {
            &h
        } else {
            other = Harness::start(case["public_key"].as_str().unwrap()).await;
            &other
        };
        let (status, _) = h
            .post(&case["headers"], case["body"].as_str().unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", case["name"]);
    }
    // A forged /ask: nothing recorded, nothing answered.
    let body = ask(&dir, "786008729715212399");
    let headers = json!({
        "X-Signature-Ed25519": requests["valid"][0]["headers"]["X-Signature-Ed25519"],
        "X-Signature-Timestamp": "1700000000",
    });
    let (status, _) = h.post(&headers, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.post(&json!({}), &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.settle().await;
    assert!(
        h.app
            .store
            .ingress_response("discord:786008729715212399")
            .await
            .unwrap()
            .is_none()
    );
    assert!(h.fake.follow_ups().is_empty());
}

#[tokio::test]
async fn ask_is_deferred_then_answered_with_one_cited_follow_up() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(PUBLIC_KEY).await;
    let (status, body) = h.post_signed(&ask(&dir, "786008729715212338")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"type": 5}));
    h.fake.wait_for(1, WAIT).await;
    h.settle().await;
    let calls = h.fake.follow_ups();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].application_id, APP_ID);
    assert_eq!(calls[0].token, "A_UNIQUE_TOKEN");
    let content = calls[0].body["content"].as_str().unwrap();
    assert!(content.contains("[1]"), "no citation marker: {content}");
    assert!(content.chars().count() <= 2_000);
}

#[tokio::test]
async fn the_same_interaction_twice_gets_one_follow_up() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(PUBLIC_KEY).await;
    let body = ask(&dir, "786008729715212340");
    assert_eq!(h.post_signed(&body).await.0, StatusCode::OK);
    assert_eq!(h.post_signed(&body).await.0, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.post_signed(&body).await.0, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.fake.follow_ups().len(), 1, "{:?}", h.fake.follow_ups());
}
