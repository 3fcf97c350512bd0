//! Slack Events API, black-box: `POST /slack/events` through `router()` + `oneshot`, the real
//! payloads and pre-signed requests in `../shared/fixtures/slack`, and a fake Slack Web API
//! (`tests/support/slack.rs`) that records what conveyor sends back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::app::App;
use conveyor::channels::slack::{Slack, SlackConfig};
use conveyor::config::{Config, Env, Rate};
use conveyor::store::workflows::RunState;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::slack::{FakeSlack, Scripted};

const TOKEN: &str = "xoxb-test-token";
const WAIT: Duration = Duration::from_secs(10);

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/slack");
    if dir.join("SIGNED_requests_derived.json").exists() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

/// The pre-signed requests: (signing secret, timestamp, fixture name → (signature, body)).
struct Signed {
    secret: String,
    timestamp: String,
    requests: Vec<(String, String, String)>,
}

impl Signed {
    fn load(dir: &Path) -> Self {
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("SIGNED_requests_derived.json")).unwrap(),
        )
        .unwrap();
        let requests = m["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["fixture"].as_str().unwrap().to_string(),
                    r["headers"]["X-Slack-Signature"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    r["body"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Self {
            secret: m["signing_secret"].as_str().unwrap().into(),
            timestamp: m["timestamp"].as_str().unwrap().into(),
            requests,
        }
    }

    fn get(&self, fixture: &str) -> (String, String) {
        let (_, sig, body) = self
            .requests
            .iter()
            .find(|(f, _, _)| f == fixture)
            .unwrap_or_else(|| panic!("{fixture} is not in the signed requests"));
        (sig.clone(), body.clone())
    }
}

fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

fn now() -> String {
    conveyor::channels::verify::unix_now().to_string()
}

/// Fields drop in order: the app (and its index) before the folder it lives in.
struct Harness {
    app: App,
    router: Router,
    fake: FakeSlack,
    secret: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(secret: &str) -> Self {
        Self::start_with(secret, |_| {}).await
    }

    /// Like [`Harness::start`], letting the test change the config first.
    async fn start_with(secret: &str, change: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(crate::common::demo(false).await, secret, change).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        secret: &str,
        change: impl FnOnce(&mut Config),
    ) -> Self {
        let fake = FakeSlack::start().await;
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        config
            .channels
            .set(&SlackConfig {
                signing_secret_env: "TEST_SLACK_SIGNING_SECRET".into(),
                bot_token_env: "TEST_SLACK_BOT_TOKEN".into(),
                api_base_url: fake.url.clone(),
                bot_user_id: None,
                feedback_buttons: true,
                sends_per_second_per_channel: 1,
            })
            .unwrap();
        change(&mut config);
        let owned = secret.to_string();
        let env = move |name: &str| match name {
            "TEST_HOOK_TOKEN" => Some("hook-token".to_string()),
            "TEST_SLACK_SIGNING_SECRET" => Some(owned.clone()),
            "TEST_SLACK_BOT_TOKEN" => Some(TOKEN.to_string()),
            _ => None,
        };
        let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
        let router = conveyor::http::router(app.clone());
        Self {
            _dir: dir,
            app,
            router,
            fake,
            secret: secret.to_string(),
        }
    }

    fn pin_clock(&self, ts: &str) {
        self.app
            .platforms
            .get::<Slack>()
            .unwrap()
            .set_clock(Some(ts.parse().unwrap()));
    }

    async fn post(&self, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
        let mut req = Request::post("/slack/events").header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Signs `body` with the current time and posts it.
    async fn post_signed(&self, body: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
        let ts = now();
        let sig = sign(&self.secret, &ts, body);
        let mut headers = vec![
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", sig.as_str()),
        ];
        headers.extend_from_slice(extra);
        self.post(&headers, body).await
    }

    /// Waits for every reply task to finish.
    async fn settle(&self) {
        self.app.tasks.close();
        tokio::time::timeout(WAIT, self.app.tasks.wait())
            .await
            .unwrap();
        self.app.tasks.reopen();
    }
}

fn mention(event_id: &str, text: &str) -> String {
    json!({
        "token": "verification_token",
        "team_id": "T111",
        "api_app_id": "A111",
        "event": {
            "type": "app_mention",
            "text": format!("<@W111> {text}"),
            "user": "W222",
            "ts": "1595926230.009600",
            "team": "T111",
            "channel": "C111",
            "event_ts": "1595926230.009600"
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_595_926_230,
        "authorizations": [{"team_id": "T111", "user_id": "W111", "is_bot": true}]
    })
    .to_string()
}

#[tokio::test]
async fn url_verification_echoes_the_challenge() {
    let Some(dir) = fixtures() else { return };
    let signed = Signed::load(&dir);
    let h = Harness::start(&signed.secret).await;
    h.pin_clock(&signed.timestamp);
    for fixture in [
        "url_verification.json",
        "docs_url_verification_example.json",
    ] {
        let (sig, body) = signed.get(fixture);
        let expected: Value = serde_json::from_str::<Value>(&body).unwrap()["challenge"].clone();
        let (status, answer) = h
            .post(
                &[
                    ("x-slack-request-timestamp", &signed.timestamp),
                    ("x-slack-signature", &sig),
                ],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fixture}: {answer}");
        assert_eq!(answer["challenge"], expected);
    }
    assert!(h.fake.calls().is_empty());
}

#[tokio::test]
async fn ssl_check_is_acknowledged() {
    let h = Harness::start("s3cret").await;
    let (status, _) = h.post_signed("ssl_check=1&token=xyz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    assert!(h.fake.calls().is_empty());
}

#[tokio::test]
async fn a_mention_gets_one_cited_reply_in_its_thread_with_eyes_while_working() {
    let h = Harness::start("s3cret").await;
    let (status, _) = h
        .post_signed(&mention("EvREFUND", "How do I request a refund?"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    assert_eq!(posts.len(), 1, "{:?}", h.fake.calls());
    let post = &posts[0];
    assert_eq!(post.auth.as_deref(), Some("Bearer xoxb-test-token"));
    assert_eq!(post.body["channel"], "C111");
    assert_eq!(post.body["thread_ts"], "1595926230.009600");
    let text = post.body["text"].as_str().unwrap();
    assert!(text.contains("[1]"), "no citation marker: {text}");
    assert!(text.contains("refund-policy.md"), "no source: {text}");
    assert!(!text.contains("**"), "Markdown bold left in: {text}");
    h.fake.wait_for("reactions.remove", 1, WAIT).await;
    h.settle().await;
    let methods: Vec<String> = h.fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        ["reactions.add", "chat.postMessage", "reactions.remove"]
    );
    let add = &h.fake.calls_of("reactions.add")[0];
    assert_eq!(add.body["name"], "eyes");
    assert_eq!(add.body["timestamp"], "1595926230.009600");
    // The reply is recorded and confirmed in the egress ledger.
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn signed_fixture_mentions_and_thread_messages_are_answered_in_their_thread() {
    let Some(dir) = fixtures() else { return };
    let signed = Signed::load(&dir);
    let h = Harness::start(&signed.secret).await;
    h.pin_clock(&signed.timestamp);
    let ts = signed.timestamp.clone();
    let fixture = |name: &str| signed.get(name);
    let post_fixture = |sig: String, body: String| {
        let ts = ts.clone();
        let h = &h;
        async move {
            h.post(
                &[
                    ("x-slack-request-timestamp", &ts),
                    ("x-slack-signature", &sig),
                ],
                &body,
            )
            .await
        }
    };
    // A thread reply in a channel, in a thread conveyor is not part of: ignored.
    let (sig, thread_reply) = fixture("event_callback_message_channel_in_thread.json");
    let (status, answer) = post_fixture(sig.clone(), thread_reply.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["ignored"].is_string(), "{answer}");
    h.settle().await;
    assert!(h.fake.calls().is_empty());

    // Mentioned in that thread: answered in it.
    let mut start: Value =
        serde_json::from_str(&mention("EvSTART", "What does the Pro plan include?")).unwrap();
    start["event"]["ts"] = json!("1726133699.000001");
    start["event"]["thread_ts"] = json!("1726133698.626339");
    let start = start.to_string();
    let (status, _) = post_fixture(sign(&signed.secret, &ts, &start), start).await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["thread_ts"], "1726133698.626339");

    // Now the same thread reply is a follow-up in a conversation conveyor is part of.
    let (status, _) = post_fixture(sig, thread_reply).await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body["thread_ts"], "1726133698.626339");
    assert_eq!(posts[1].body["channel"], "C111");

    // The Slack docs' app_mention example: answered in a thread on the message.
    let (sig, body) = fixture("docs_app_mention_example.json");
    let (status, _) = post_fixture(sig, body).await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].body["channel"], "C123ABC456");
    assert_eq!(posts[2].body["thread_ts"], "1515449522.000016");
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bot_own_edited_and_deleted_messages_send_nothing() {
    let Some(dir) = fixtures() else { return };
    let signed = Signed::load(&dir);
    let h = Harness::start(&signed.secret).await;
    h.pin_clock(&signed.timestamp);
    for fixture in [
        "event_callback_message_bot_message_own_app.json",
        "event_callback_message_from_bot_user.json",
        "event_callback_message_subtype_bot_message.json",
        "event_callback_message_changed.json",
        "event_callback_message_changed_in_thread.json",
        "event_callback_message_deleted.json",
        "event_callback_reaction_added.json",
        "event_callback_message.json",
    ] {
        let (sig, body) = signed.get(fixture);
        let (status, answer) = h
            .post(
                &[
                    ("x-slack-request-timestamp", &signed.timestamp),
                    ("x-slack-signature", &sig),
                ],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fixture}: {answer}");
        assert!(answer["ignored"].is_string(), "{fixture} was not ignored");
    }
    // Our own user, named in `authorizations`, is ignored too.
    let own = json!({"type": "event_callback", "team_id": "T111", "event_id": "EvOWN",
        "authorizations": [{"user_id": "W111"}],
        "event": {"type": "message", "user": "W111", "text": "my own reply", "ts": "1.2", "channel": "C111"}})
    .to_string();
    h.app.platforms.get::<Slack>().unwrap().set_clock(None);
    let (status, answer) = h.post_signed(&own, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["ignored"].is_string());
    h.settle().await;
    assert!(h.fake.calls().is_empty(), "{:?}", h.fake.calls());
    assert_eq!(h.app.store.ingress_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_retried_event_is_answered_once() {
    let h = Harness::start("s3cret").await;
    let body = mention("EvRETRY", "What does the Pro plan include?");
    for retry in [None, Some("1"), Some("2")] {
        let extra: Vec<(&str, &str)> = retry
            .map(|n| {
                vec![
                    ("x-slack-retry-num", n),
                    ("x-slack-retry-reason", "http_timeout"),
                ]
            })
            .unwrap_or_default();
        let (status, _) = h.post_signed(&body, &extra).await;
        assert_eq!(status, StatusCode::OK);
    }
    h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    // Once more, after the first was answered.
    let (status, _) = h.post_signed(&body, &[("x-slack-retry-num", "3")]).await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 1);
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn forged_stale_or_unsigned_requests_get_401_and_nothing_is_sent() {
    let h = Harness::start("s3cret").await;
    let body = mention("EvFORGED", "How do I request a refund?");
    let ts = now();
    let wrong = sign("not-the-secret", &ts, &body);
    let stale_ts = (conveyor::channels::verify::unix_now() - 301).to_string();
    let stale = sign("s3cret", &stale_ts, &body);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &wrong),
        ],
        vec![
            ("x-slack-request-timestamp", &stale_ts),
            ("x-slack-signature", &stale),
        ],
        vec![("x-slack-request-timestamp", &ts)],
        vec![("x-slack-signature", &wrong)],
        vec![],
    ];
    for headers in cases {
        let (status, answer) = h.post(&headers, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {answer}");
    }
    // A body changed after signing.
    let sig = sign("s3cret", &ts, &body);
    let tampered = body.replace("refund", "refunds");
    let (status, _) = h
        .post(
            &[
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
            ],
            &tampered,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.settle().await;
    assert!(h.fake.calls().is_empty());
    assert_eq!(h.app.store.ingress_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_rate_limited_reply_is_retried_and_sent_once() {
    let h = Harness::start("s3cret").await;
    h.fake.script("chat.postMessage", Scripted::RateLimited(0));
    let (status, _) = h
        .post_signed(&mention("Ev429", "How do I request a refund?"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    h.fake.wait_for("reactions.remove", 1, WAIT).await;
    h.settle().await;
    // The refused try and the accepted one: one message reached the thread.
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_refused_reply_stays_pending_with_its_attempt_counted() {
    let h = Harness::start("s3cret").await;
    h.fake.script(
        "chat.postMessage",
        Scripted::Error("channel_not_found".into()),
    );
    h.fake
        .script("reactions.add", Scripted::Error("missing_scope".into()));
    let (status, _) = h
        .post_signed(&mention("EvREFUSED", "How do I request a refund?"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    h.fake.wait_for("reactions.remove", 1, WAIT).await;
    h.settle().await;
    let pending = h.app.store.egress_pending("slack").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].dedupe_key, "slack:EvREFUSED");
    assert_eq!(pending[0].payload["thread_ts"], "1595926230.009600");
}

#[tokio::test]
async fn without_channels_slack_the_endpoint_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let path = dir.path().join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    let app = App::build(config).await.unwrap();
    assert!(app.platforms.get::<Slack>().is_none());
    let res = conveyor::http::router(app)
        .oneshot(
            Request::post("/slack/events")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_long_reply_is_split_into_threaded_messages_each_recorded_once() {
    let h = Harness::start("s3cret").await;
    let slack = h.app.platforms.get::<Slack>().unwrap();
    let to = conveyor::channels::slack::ReplyTarget {
        event_id: "EvLONG".into(),
        channel: "C111".into(),
        ts: "1.5".into(),
        thread_ts: "1.2".into(),
        follow_up: false,
        user: "W222".into(),
        team: Some("T111".into()),
        sender_team: Some("T111".into()),
        direct: false,
    };
    let paragraph = "word ".repeat(300);
    let text = [paragraph.trim(); 6].join("\n\n");
    slack
        .deliver(&h.app.store, "slack:T111:C111:1.2", &to, &text)
        .await
        .unwrap();
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 3);
    for p in &posts {
        let t = p.body["text"].as_str().unwrap();
        assert!(t.chars().count() <= 3_000);
        assert_eq!(p.body["thread_ts"], "1.2");
    }
    // Delivering the same reply again (a retried event) sends nothing.
    slack
        .deliver(&h.app.store, "slack:T111:C111:1.2", &to, &text)
        .await
        .unwrap();
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 3);
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn channels_slack_is_read_from_toml_and_a_missing_secret_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let path = dir.path().join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[channels.slack]\nsigning_secret_env = \"MY_SLACK_SIGNING\"\nbot_token_env = \"MY_SLACK_TOKEN\"\n";
    let config = Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    let slack = config.channels.get::<SlackConfig>().unwrap().unwrap();
    assert_eq!(slack.api_base_url, "https://slack.com/api");
    let env = |name: &str| (name == "MY_SLACK_SIGNING").then(|| "s3cret".to_string());
    let err = App::build_with_env(config, &Env::new(env))
        .await
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("channels.slack.bot_token_env") && message.contains("MY_SLACK_TOKEN"),
        "{message}"
    );
    let typo = Config::from_toml(
        "[channels.slack]\nsigning_secret_env = \"A\"\nbot_token_env = \"B\"\nbot_token = \"x\"\n",
        "typo.toml",
        dir.path(),
        &[],
    );
    assert!(typo.is_err());
}

fn dm(event_id: &str, user: &str, text: &str) -> String {
    json!({
        "token": "verification_token",
        "team_id": "T111",
        "api_app_id": "A111",
        "event": {
            "type": "message",
            "channel_type": "im",
            "text": text,
            "user": user,
            "ts": "1595926231.000100",
            "team": "T111",
            "channel": "D111",
            "event_ts": "1595926231.000100"
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_595_926_231,
        "authorizations": [{"team_id": "T111", "user_id": "W111", "is_bot": true}]
    })
    .to_string()
}

impl Harness {
    /// Posts a signed form-encoded body to `path` (interactions, slash commands).
    async fn post_form(&self, path: &str, body: &str, secret: &str) -> (StatusCode, String) {
        let ts = now();
        let sig = sign(secret, &ts, body);
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", &sig)
            .body(Body::from(body.to_string()))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.fake.url.trim_end_matches("/api"))
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

/// A block_actions payload as Slack sends it when a button is clicked.
fn click(action_id: &str, value: &str, user: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "team_id": "T111"},
        "api_app_id": "A111",
        "token": "verification_token",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C111", "is_ephemeral": false},
        "trigger_id": "123.456.abc",
        "team": {"id": "T111", "domain": "lumen"},
        "channel": {"id": "C111", "name": "general"},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id,
            "block_id": "conveyor_feedback",
            "text": {"type": "plain_text", "text": "👍", "emoji": true},
            "value": value,
            "type": "button",
            "action_ts": "1700000001.000000"
        }]
    });
    form(&[("payload", &payload.to_string())])
}

#[tokio::test]
async fn answers_carry_feedback_buttons_and_clicks_are_stored_per_user() {
    let h = Harness::start("s3cret").await;
    h.post_signed(&mention("EvFB", "How do I request a refund?"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    let blocks = &posts[0].body["blocks"];
    assert_eq!(blocks[0]["text"]["text"], posts[0].body["text"], "{blocks}");
    let buttons = blocks[1]["elements"].as_array().unwrap();
    assert_eq!(buttons.len(), 2);
    let message_id = buttons[0]["value"].as_str().unwrap().to_string();
    assert_eq!(buttons[1]["value"], message_id.as_str());

    let url = h.response_url("fb1");
    let (status, _) = h
        .post_form(
            "/slack/interactions",
            &click("conveyor_feedback_up", &message_id, "W222", &url),
            "s3cret",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.app.store.feedback_for(&message_id).await.unwrap(),
        vec![("W222".to_string(), 1)]
    );
    let thanks = h.fake.calls_of("response_url");
    assert_eq!(thanks.len(), 1);
    assert_eq!(thanks[0].body["response_type"], "ephemeral");
    // A second vote by the same user replaces the first; another user adds one.
    h.post_form(
        "/slack/interactions",
        &click("conveyor_feedback_down", &message_id, "W222", &url),
        "s3cret",
    )
    .await;
    h.post_form(
        "/slack/interactions",
        &click("conveyor_feedback_up", &message_id, "W333", &url),
        "s3cret",
    )
    .await;
    assert_eq!(
        h.app.store.feedback_for(&message_id).await.unwrap(),
        vec![("W222".to_string(), -1), ("W333".to_string(), 1)]
    );
    // Forged: 401, nothing stored.
    let (status, _) = h
        .post_form(
            "/slack/interactions",
            &click("conveyor_feedback_up", &message_id, "W444", &url),
            "wrong",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.app.store.feedback_for(&message_id).await.unwrap().len(),
        2
    );
    // A click on an unknown answer is a clear 404, not a crash.
    let (status, body) = h
        .post_form(
            "/slack/interactions",
            &click("conveyor_feedback_up", "nope", "W222", &url),
            "s3cret",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_slash_command_answers_through_its_response_url_once() {
    let h = Harness::start("s3cret").await;
    let url = h.response_url("cmd1");
    let body = form(&[
        ("token", "verification_token"),
        ("team_id", "T111"),
        ("team_domain", "lumen"),
        ("channel_id", "C111"),
        ("channel_name", "general"),
        ("user_id", "W222"),
        ("user_name", "ana"),
        ("command", "/conveyor"),
        ("text", "How do I request a refund?"),
        ("api_app_id", "A111"),
        ("response_url", &url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ]);
    let (status, ack) = h.post_form("/slack/commands", &body, "s3cret").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ack.is_empty(), "the ack should be empty: {ack}");
    let answers = h.fake.wait_for("response_url", 1, WAIT).await;
    h.settle().await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].auth.as_deref(), Some("cmd1"));
    assert_eq!(answers[0].body["response_type"], "in_channel");
    let text = answers[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("<@W222> asked: How do I request a refund?"),
        "{text}"
    );
    assert!(text.contains("[1]"), "{text}");
    assert!(answers[0].body["blocks"].is_array());
    // The same invocation delivered again (same trigger_id) is not answered twice.
    h.post_form("/slack/interactions", &body, "s3cret").await;
    h.settle().await;
    assert_eq!(h.fake.calls_of("response_url").len(), 1);
    // `/conveyor` alone gets help at once, privately.
    let help = form(&[
        ("team_id", "T111"),
        ("channel_id", "C111"),
        ("user_id", "W222"),
        ("command", "/conveyor"),
        ("text", ""),
        ("response_url", &url),
        ("trigger_id", "t-help"),
    ]);
    let (status, ack) = h.post_form("/slack/commands", &help, "s3cret").await;
    assert_eq!(status, StatusCode::OK);
    let ack: Value = serde_json::from_str(&ack).unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(ack["text"].as_str().unwrap().contains("/conveyor"));
    // Forged: 401.
    let (status, _) = h.post_form("/slack/commands", &body, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_response_url_off_slack_is_never_called() {
    let h = Harness::start("s3cret").await;
    let body = form(&[
        ("team_id", "T111"),
        ("channel_id", "C111"),
        ("user_id", "W222"),
        ("command", "/conveyor"),
        ("text", "How do I request a refund?"),
        ("response_url", "http://169.254.169.254/latest/meta-data"),
        ("trigger_id", "t-ssrf"),
    ]);
    let (status, _) = h.post_form("/slack/commands", &body, "s3cret").await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    assert!(h.fake.calls_of("response_url").is_empty());
    let (state, error) = h
        .app
        .store
        .egress_state("slack:cmd:t-ssrf:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, "pending");
    assert!(h.app.store.egress_pending("slack").await.unwrap().len() == 1);
    let _ = error;
}

#[tokio::test]
async fn unknown_users_get_a_pairing_code_in_dms_and_are_ignored_in_channels() {
    let h = Harness::start_with("s3cret", |c| {
        c.access.set(
            conveyor::channels::slack::CHANNEL,
            conveyor::gateway::access::PlatformAccess {
                users: vec!["W999".into()],
                ..Default::default()
            },
        );
    })
    .await;
    // A DM from a stranger: a pairing code, no answer.
    h.post_signed(&dm("EvDM1", "W222", "How do I request a refund?"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    assert_eq!(posts.len(), 1);
    let text = posts[0].body["text"].as_str().unwrap().to_string();
    assert!(text.contains("conveyor access approve"), "{text}");
    assert!(!text.contains("[1]"), "a stranger got an answer: {text}");
    let pending = h.app.store.pairing_pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    let code = pending[0].code.clone();
    assert!(text.contains(&code), "{text}");
    assert_eq!(pending[0].user_id, "W222");
    // Writing again gets the same code, not a new one.
    h.post_signed(&dm("EvDM2", "W222", "hello?"), &[]).await;
    h.fake.wait_for("chat.postMessage", 2, WAIT).await;
    h.settle().await;
    assert_eq!(h.app.store.pairing_pending().await.unwrap().len(), 1);
    // A stranger's mention in a channel: nothing at all.
    h.post_signed(&mention("EvCH1", "How do I request a refund?"), &[])
        .await;
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
    assert!(h.fake.calls_of("reactions.add").is_empty());
    // Approved (lower case, no dash: as an admin might type it), the user is answered.
    let grant = h
        .app
        .store
        .pairing_approve(&code.replace('-', "").to_lowercase(), "admin")
        .await
        .unwrap();
    assert_eq!(grant.user_id, "W222");
    assert!(h.app.store.pairing_approve(&code, "admin").await.is_err());
    h.post_signed(&dm("EvDM3", "W222", "How do I request a refund?"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 3, WAIT).await;
    h.settle().await;
    assert!(posts[2].body["text"].as_str().unwrap().contains("[1]"));
}

#[tokio::test]
async fn workspace_and_refuse_policies() {
    let h = Harness::start_with("s3cret", |c| {
        c.access.set(
            conveyor::channels::slack::CHANNEL,
            conveyor::gateway::access::PlatformAccess {
                workspaces: vec!["T111".into()],
                unknown_dm: conveyor::gateway::access::UnknownDm::Refuse,
                ..Default::default()
            },
        );
    })
    .await;
    // Issue 12, finding 8: a Slack Connect user from another workspace, in a channel shared
    // with T111, arrives through T111's installation; their own workspace is `user_team`.
    let mut external: Value =
        serde_json::from_str(&mention("EvEXT", "How do I request a refund?")).unwrap();
    external["event"]["user"] = json!("W999");
    external["event"]["user_team"] = json!("T999");
    h.post_signed(&external.to_string(), &[]).await;
    h.settle().await;
    assert!(h.fake.calls_of("chat.postMessage").is_empty());
    h.post_signed(&mention("EvWS", "How do I request a refund?"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    assert_eq!(posts.len(), 1);
    assert!(posts[0].body["text"].as_str().unwrap().contains("[1]"));

    let h = Harness::start_with("s3cret", |c| {
        c.access.set(
            conveyor::channels::slack::CHANNEL,
            conveyor::gateway::access::PlatformAccess {
                workspaces: vec!["T999".into()],
                unknown_dm: conveyor::gateway::access::UnknownDm::Refuse,
                ..Default::default()
            },
        );
    })
    .await;
    h.post_signed(&dm("EvRF", "W222", "How do I request a refund?"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    let text = posts[0].body["text"].as_str().unwrap();
    assert!(text.contains("only answer people"), "{text}");
    assert!(h.app.store.pairing_pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn after_a_crash_only_unconfirmed_replies_are_sent_again_once() {
    use conveyor::store::{EGRESS_LEASE_MS, NewEgress};
    let h = Harness::start("s3cret").await;
    // A reply that was sent and confirmed.
    h.post_signed(&mention("EvOK", "How do I request a refund?"), &[])
        .await;
    h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    // A reply recorded by a process that crashed before sending it.
    let payload =
        json!({"channel": "C111", "thread_ts": "1.2", "text": "recorded before the crash"});
    h.app
        .store
        .egress_record_new(&NewEgress {
            channel: "slack".into(),
            conversation: "slack:T111:C111:1.2".into(),
            dedupe_key: "slack:EvCRASH".into(),
            payload: payload.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    let resender = h.app.resender();
    let now = chrono::Utc::now().timestamp_millis();
    // Within the recording delivery's lease, the row is left to it.
    let report = resender.run_once(now).await.unwrap();
    assert_eq!(report.sent, 0);
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 1);
    // After the lease ("restart"), it is sent exactly once; the confirmed reply is not.
    let later = now + EGRESS_LEASE_MS + 1_000;
    let report = resender.run_once(later).await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].body["text"], "recorded before the crash");
    assert_eq!(
        h.app
            .store
            .egress_state("slack:EvCRASH")
            .await
            .unwrap()
            .unwrap()
            .0,
        "confirmed"
    );
    let report = resender
        .run_once(later + 10 * EGRESS_LEASE_MS)
        .await
        .unwrap();
    assert_eq!(report, conveyor::gateway::egress::ResendReport::default());
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
}

#[tokio::test]
async fn a_reply_that_keeps_failing_is_given_up_with_its_error() {
    use conveyor::store::{EGRESS_LEASE_MS, NewEgress};
    let h = Harness::start("s3cret").await;
    h.app
        .store
        .egress_record_new(&NewEgress {
            channel: "slack".into(),
            conversation: "slack:T111:C111:1.2".into(),
            dedupe_key: "slack:EvFAIL".into(),
            payload: json!({"channel": "C404", "thread_ts": "1.2", "text": "x"}),
        })
        .await
        .unwrap();
    let resender = h.app.resender();
    let mut now = chrono::Utc::now().timestamp_millis();
    for _ in 0..8 {
        h.fake.script(
            "chat.postMessage",
            Scripted::Error("channel_not_found".into()),
        );
        now += EGRESS_LEASE_MS + 1;
        let report = resender.run_once(now).await.unwrap();
        assert_eq!(report.failed, 1, "{report:?}");
    }
    let (state, error) = h
        .app
        .store
        .egress_state("slack:EvFAIL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, "pending");
    assert!(error.unwrap().contains("channel_not_found"));
    now += EGRESS_LEASE_MS + 1;
    let report = resender.run_once(now).await.unwrap();
    assert_eq!(report.gave_up, 1);
    let (state, error) = h
        .app
        .store
        .egress_state("slack:EvFAIL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("8 attempts"));
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 8);
}

/// Signed Slack events per second through signature check → ledger → planner → reply on the
/// fake Web API, and the latency from sending an event to its `chat.postMessage` arriving.
/// Closed loop: each of 16 workers sends an event and waits for its reply before the next.
/// `cargo test --release --test it slack::bench_events -- --ignored --nocapture`
/// (`BENCH_EVENTS`, default 2000).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints events/s and p50/p99"]
async fn bench_events() {
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    const CONCURRENCY: usize = 16;
    let h = Harness::start("s3cret").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(conveyor::http::serve(
        h.app.clone(),
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/slack/events");
    let started = std::time::Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, next, fake) = (client.clone(), url.clone(), next.clone(), h.fake.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return latencies;
                }
                // One channel per event: Slack's per-channel pacing is not what is measured.
                let channel = format!("CB{i}");
                let body = mention(&format!("EvB{i}"), "How do I request a refund?")
                    .replace("\"C111\"", &format!("\"{channel}\""));
                let ts = now();
                let sig = sign("s3cret", &ts, &body);
                let t0 = std::time::Instant::now();
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-slack-request-timestamp", &ts)
                    .header("x-slack-signature", &sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let at = fake
                    .wait_for_post_in(&channel, Duration::from_secs(60))
                    .await
                    .expect("a reply");
                latencies.push((at - t0).as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), events);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "slack events: {events} at concurrency {CONCURRENCY}: {:.0} events/s, event → reply p50 {:.2} ms, p99 {:.2} ms",
        events as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    shutdown.cancel();
    // The server holds the app (and its index); let it go before the project folder does.
    let _ = server.await;
    h.settle().await;
}

#[tokio::test]
async fn a_webhook_answer_is_forwarded_into_a_slack_channel_once() {
    use conveyor::config::{HookConfig, HookReply, HookVerify};
    let h = Harness::start_with("s3cret", |c| {
        c.hooks.insert(
            "alerts".into(),
            HookConfig {
                verify: HookVerify::Bearer,
                secret_env: "TEST_HOOK_TOKEN".into(),
                text: "{{ question }}".into(),
                conversation: "{{ hook }}".into(),
                user: "webhook:{{ hook }}".into(),
                reply: HookReply::Async,
                max_body_bytes: None,
                forward_to: Some("slack:C777".into()),
                workflow: None,
            },
        );
    })
    .await;
    let post = || async {
        let req = Request::post("/hooks/alerts")
            .header("content-type", "application/json")
            .header("authorization", "Bearer hook-token")
            .header("idempotency-key", "delivery-1")
            .body(Body::from(r#"{"question":"How do I request a refund?"}"#))
            .unwrap();
        h.router.clone().oneshot(req).await.unwrap().status()
    };
    assert_eq!(post().await, StatusCode::ACCEPTED);
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "C777");
    assert!(
        posts[0].body.get("thread_ts").is_none(),
        "{}",
        posts[0].body
    );
    assert!(posts[0].body["text"].as_str().unwrap().contains("[1]"));
    // The same delivery again: no second post.
    assert_eq!(post().await, StatusCode::ACCEPTED);
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 1);
}

#[test]
fn forward_to_must_name_a_configured_platform() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[hooks.a]\nverify = \"bearer\"\nsecret_env = \"X\"\ntext = \"{{ q }}\"\nforward_to = \"telegram:123\"\n\n[hooks.b]\nverify = \"bearer\"\nsecret_env = \"X\"\ntext = \"{{ q }}\"\nforward_to = \"irc:#x\"\n";
    let err = Config::from_toml(text, "conveyor.toml", dir.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hooks.a.forward_to: telegram is not configured"),
        "{err}"
    );
    assert!(
        err.contains("hooks.b.forward_to: `irc` is not a chat platform"),
        "{err}"
    );
}

#[tokio::test]
async fn a_crash_after_slack_accepted_a_reply_does_not_post_it_twice() {
    use conveyor::store::{EGRESS_LEASE_MS, NewEgress};
    let h = Harness::start("s3cret").await;
    // The reply was recorded and sent (Slack has it, with its metadata), then the process died
    // before confirming it.
    h.post_signed(&mention("EvSENT", "How do I request a refund?"), &[])
        .await;
    h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    let sent = h.fake.calls_of("chat.postMessage")[0].body.clone();
    assert_eq!(
        sent["metadata"]["event_payload"]["dedupe_key"],
        "slack:EvSENT"
    );
    // Simulate the lost confirmation: the same message, recorded but pending.
    h.app
        .store
        .egress_record_new(&NewEgress {
            channel: "slack".into(),
            conversation: "slack:T111:C111:x".into(),
            dedupe_key: "slack:EvLOST".into(),
            payload: json!({
                "channel": "C111", "thread_ts": "1595926230.009600", "text": "lost confirm",
                "metadata": {"event_type": "conveyor_reply", "event_payload": {"dedupe_key": "slack:EvLOST"}}
            }),
        })
        .await
        .unwrap()
        .unwrap();
    // What Slack has: post it once "before the crash" (straight to the fake, as conveyor would).
    reqwest::Client::new()
        .post(format!("{}/chat.postMessage", h.fake.url))
        .json(&json!({
            "channel": "C111", "thread_ts": "1595926230.009600", "text": "lost confirm",
            "metadata": {"event_type": "conveyor_reply", "event_payload": {"dedupe_key": "slack:EvLOST"}}
        }))
        .send()
        .await
        .unwrap();
    let later = chrono::Utc::now().timestamp_millis() + EGRESS_LEASE_MS + 1_000;
    let report = h.app.resender().run_once(later).await.unwrap();
    assert_eq!(report.sent, 1);
    // Found in the thread and confirmed: still two posts in all, not three.
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
    assert_eq!(
        h.app
            .store
            .egress_state("slack:EvLOST")
            .await
            .unwrap()
            .unwrap()
            .0,
        "confirmed"
    );
}

fn files_target(event_id: &str) -> conveyor::channels::slack::Target {
    conveyor::channels::slack::Target::Thread(conveyor::channels::slack::ReplyTarget {
        event_id: event_id.into(),
        channel: "C111".into(),
        ts: "1.5".into(),
        thread_ts: "1.2".into(),
        follow_up: false,
        user: "W222".into(),
        team: Some("T111".into()),
        sender_team: Some("T111".into()),
        direct: false,
    })
}

/// The sends in the order Slack received them: message texts and shared file names.
fn sends_in_order(fake: &FakeSlack) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter_map(|c| match c.method.as_str() {
            "chat.postMessage" => Some(format!("text: {}", c.body["text"].as_str().unwrap())),
            "response_url" => Some(format!(
                "response_url: {}",
                c.body["text"].as_str().unwrap()
            )),
            "files.completeUploadExternal" => {
                let files: Value = serde_json::from_str(c.body["files"].as_str().unwrap()).unwrap();
                Some(format!("file: {}", files[0]["title"].as_str().unwrap()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_reply_s_files_follow_its_text_in_the_thread_with_their_alt_text() {
    use crate::common::{CSV, PNG, PNG_ALT, reply_with_files};
    use conveyor::channels::chat;
    let h = Harness::start("s3cret").await;
    let slack = h.app.platforms.get::<Slack>().unwrap();
    let reply = reply_with_files("Revenue rose *40%* this quarter.");
    let to = files_target("EvFILES");
    chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C111:1.2",
        &to,
        &reply,
        "slack:EvFILES",
    )
    .await
    .unwrap();
    assert_eq!(
        sends_in_order(&h.fake),
        [
            "text: Revenue rose *40%* this quarter.",
            "file: revenue.png",
            "file: revenue.csv"
        ]
    );
    // The upload flow, step by step, as Slack wants it.
    let asked = h.fake.calls_of("files.getUploadURLExternal");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].body["filename"], "revenue.png");
    assert_eq!(asked[0].body["length"], PNG.len().to_string());
    assert_eq!(asked[0].body["alt_txt"], PNG_ALT);
    assert_eq!(asked[0].auth.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    assert!(asked[1].body.get("alt_txt").is_none(), "{}", asked[1].body);
    let shared = h.fake.shared_files();
    assert_eq!(shared.len(), 2, "{shared:?}");
    assert_eq!(shared[0].filename, "revenue.png");
    assert_eq!(shared[0].bytes.as_deref(), Some(&PNG[..]));
    assert_eq!(shared[0].alt_txt.as_deref(), Some(PNG_ALT));
    assert_eq!(shared[1].filename, "revenue.csv");
    assert_eq!(shared[1].bytes.as_deref(), Some(CSV.as_bytes()));
    for file in &shared {
        let share = file.shared.clone().unwrap();
        assert_eq!(share.channel, "C111");
        assert_eq!(share.thread_ts.as_deref(), Some("1.2"));
        assert_eq!(share.title.as_deref(), Some(file.filename.as_str()));
    }
    // Every part confirmed; delivering the same reply again uploads nothing.
    for key in ["slack:EvFILES", "slack:EvFILES:2", "slack:EvFILES:3"] {
        let (state, _) = h.app.store.egress_state(key).await.unwrap().unwrap();
        assert_eq!(state, "confirmed", "{key}");
    }
    chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C111:1.2",
        &to,
        &reply,
        "slack:EvFILES",
    )
    .await
    .unwrap();
    assert_eq!(h.fake.uploads().len(), 2);
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 1);
}

#[tokio::test]
async fn a_slash_command_s_files_are_shared_in_its_channel_with_the_bot_token() {
    use conveyor::channels::chat::{self, ReplyKind};
    use conveyor::channels::slack::{SlashCommand, Target};
    let h = Harness::start("s3cret").await;
    let slack = h.app.platforms.get::<Slack>().unwrap();
    let command = Target::Command(Box::new(SlashCommand {
        text: "revenue by month".into(),
        user: "W222".into(),
        user_name: Some("ana".into()),
        team: Some("T111".into()),
        channel: "C777".into(),
        direct: false,
        response_url: h.response_url("cmdfiles"),
        trigger_id: "t-files".into(),
    }));
    let reply = crate::common::reply_with_files("Here it is.");
    chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C777:cmd:W222",
        &command,
        &reply,
        "slack:cmd:t-files",
    )
    .await
    .unwrap();
    // The text through the response_url, the files into the channel (no thread).
    assert_eq!(
        sends_in_order(&h.fake),
        [
            "response_url: Here it is.",
            "file: revenue.png",
            "file: revenue.csv"
        ]
    );
    let shared = h.fake.shared_files();
    assert_eq!(shared.len(), 2);
    for file in &shared {
        let share = file.shared.clone().unwrap();
        assert_eq!(share.channel, "C777");
        assert_eq!(share.thread_ts, None);
    }
    assert_eq!(shared[0].bytes.as_deref(), Some(&crate::common::PNG[..]));
    // A file cannot be shown to the command's user alone: such a reply is refused whole.
    let mut notice = crate::common::reply_with_files("only for you");
    notice.kind = ReplyKind::Notice;
    let err = chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C777:cmd:W222",
        &command,
        &notice,
        "slack:cmd:t-files:notice",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("revenue.png") && err.contains("slash command"),
        "{err}"
    );
    assert!(
        h.app
            .store
            .egress_state("slack:cmd:t-files:notice:1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(h.fake.calls_of("response_url").len(), 1);
}

#[tokio::test]
async fn a_file_over_the_cap_is_refused_by_name_and_nothing_is_recorded_or_sent() {
    use conveyor::channels::slack::MAX_FILE_BYTES;
    let h = Harness::start("s3cret").await;
    let slack = h.app.platforms.get::<Slack>().unwrap();
    assert_eq!(MAX_FILE_BYTES, 8 * 1024 * 1024);
    let reply = crate::common::reply_with_file_of("too big", MAX_FILE_BYTES + 1);
    let err = conveyor::channels::chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C111:1.2",
        &files_target("EvHUGE"),
        &reply,
        "slack:EvHUGE",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, conveyor::error::Error::TooLarge(_)),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("`huge.csv`")
            && err.contains("8388609 bytes")
            && err.contains("8388608 bytes"),
        "{err}"
    );
    assert!(
        h.app
            .store
            .egress_state("slack:EvHUGE")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.fake.calls().is_empty(), "{:?}", h.fake.calls());
    // At the cap it goes.
    let reply = crate::common::reply_with_file_of("just fits", MAX_FILE_BYTES);
    conveyor::channels::chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C111:1.2",
        &files_target("EvFITS"),
        &reply,
        "slack:EvFITS",
    )
    .await
    .unwrap();
    assert_eq!(
        h.fake.shared_files()[0].bytes.as_ref().unwrap().len(),
        MAX_FILE_BYTES
    );
}

#[tokio::test]
async fn a_file_left_pending_is_uploaded_again_by_the_resender_with_the_same_bytes() {
    use conveyor::store::EGRESS_LEASE_MS;
    let h = Harness::start("s3cret").await;
    let slack = h.app.platforms.get::<Slack>().unwrap();
    // Slack refuses to share the image once: it and the CSV after it stay pending.
    h.fake.script(
        "files.completeUploadExternal",
        Scripted::Error("internal_error".into()),
    );
    let err = conveyor::channels::chat::deliver(
        &*slack,
        &h.app.store,
        "slack:T111:C111:1.2",
        &files_target("EvPEND"),
        &crate::common::reply_with_files("see the chart"),
        "slack:EvPEND",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("files.completeUploadExternal") && err.contains("internal_error"),
        "{err}"
    );
    assert!(h.fake.shared_files().is_empty());
    let mut pending: Vec<String> = h
        .app
        .store
        .egress_pending("slack")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.dedupe_key)
        .collect();
    pending.sort();
    assert_eq!(pending, ["slack:EvPEND:2", "slack:EvPEND:3"]);
    // After the recording delivery's lease: both sent from their rows, once.
    let later = chrono::Utc::now().timestamp_millis() + EGRESS_LEASE_MS + 1_000;
    let report = h.app.resender().run_once(later).await.unwrap();
    assert_eq!(report.sent, 2, "{report:?}");
    let shared = h.fake.shared_files();
    assert_eq!(shared.len(), 2, "{shared:?}");
    let png = shared.iter().find(|f| f.filename == "revenue.png").unwrap();
    assert_eq!(png.bytes.as_deref(), Some(&crate::common::PNG[..]));
    assert_eq!(png.alt_txt.as_deref(), Some(crate::common::PNG_ALT));
    assert_eq!(
        png.shared.clone().unwrap().thread_ts.as_deref(),
        Some("1.2")
    );
    let csv = shared.iter().find(|f| f.filename == "revenue.csv").unwrap();
    assert_eq!(csv.bytes.as_deref(), Some(crate::common::CSV.as_bytes()));
    assert!(
        h.app
            .store
            .egress_pending("slack")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.fake.calls_of("chat.postMessage").len(),
        1,
        "the text is not sent again"
    );
    let report = h
        .app
        .resender()
        .run_once(later + 10 * EGRESS_LEASE_MS)
        .await
        .unwrap();
    assert_eq!(report.sent, 0);
    assert_eq!(h.fake.shared_files().len(), 2);
}

#[tokio::test]
async fn a_bi_question_gets_its_table_in_the_thread_and_the_chart_uploaded_once() {
    let h = Harness::start_in(crate::common::demo(true).await, "s3cret", |_| {}).await;
    let event = mention("EvBI", "revenue by plan");
    let (status, _) = h.post_signed(&event, &[]).await;
    assert_eq!(status, StatusCode::OK);
    h.fake
        .wait_for("files.completeUploadExternal", 1, WAIT)
        .await;
    h.settle().await;
    let order = sends_in_order(&h.fake);
    assert_eq!(order.len(), 2, "{order:?}");
    assert!(order[0].starts_with("text: "), "{order:?}");
    assert!(
        order[0].contains("```"),
        "the table in a code block: {}",
        order[0]
    );
    assert!(
        order[0].contains("enterprise") && order[0].contains("$47,072.00"),
        "{}",
        order[0]
    );
    assert_eq!(order[1], "file: chart.png");
    let shared = h.fake.shared_files();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert!(
        shared[0]
            .bytes
            .as_deref()
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    assert!(
        shared[0]
            .alt_txt
            .as_deref()
            .unwrap()
            .starts_with("Bar chart"),
        "{:?}",
        shared[0].alt_txt
    );
    let share = shared[0].shared.clone().unwrap();
    assert_eq!(share.channel, "C111");
    assert_eq!(share.thread_ts.as_deref(), Some("1595926230.009600"));
    // Slack retries the event: nothing is posted or uploaded twice.
    let (status, _) = h
        .post_signed(
            &event,
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    assert_eq!(sends_in_order(&h.fake).len(), 2);
    assert_eq!(h.fake.shared_files().len(), 1);
}

/// A block_actions payload for a click on a clarifying choice under a reply in a thread.
fn choose(value: &str, user: &str, thread_ts: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "team_id": "T111"},
        "api_app_id": "A111",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C111",
                      "is_ephemeral": false, "thread_ts": thread_ts},
        "trigger_id": "123.456.choose",
        "team": {"id": "T111", "domain": "lumen"},
        "channel": {"id": "C111", "name": "general"},
        "response_url": response_url,
        "actions": [{
            "action_id": "conveyor_choose",
            "block_id": "conveyor_actions",
            "text": {"type": "plain_text", "text": "revenue by region", "emoji": true},
            "value": value,
            "type": "button",
            "action_ts": "1700000001.000000"
        }]
    });
    form(&[("payload", &payload.to_string())])
}

#[tokio::test]
async fn a_clarifying_choice_is_a_button_and_a_click_asks_it_in_the_thread_once() {
    let h = Harness::start_in(crate::common::demo(true).await, "s3cret", |_| {}).await;
    h.post_signed(&mention("EvAsk", "revenue by regoin"), &[])
        .await;
    let posts = h.fake.wait_for("chat.postMessage", 1, WAIT).await;
    h.settle().await;
    let question = posts[0].body["text"].as_str().unwrap();
    assert!(question.contains("Did you mean region?"), "{question}");
    let buttons = posts[0].body["blocks"][1]["elements"].as_array().unwrap();
    assert_eq!(buttons.len(), 1, "the choice, not 👍/👎: {buttons:?}");
    assert_eq!(buttons[0]["action_id"], "conveyor_choose");
    assert_eq!(buttons[0]["text"]["text"], "revenue by region");
    let value = buttons[0]["value"].as_str().unwrap().to_string();

    let url = h.response_url("choose1");
    let click = choose(&value, "W333", "1595926230.009600", &url);
    let (status, body) = h.post_form("/slack/interactions", &click, "s3cret").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posts = h.fake.wait_for("chat.postMessage", 2, WAIT).await;
    h.settle().await;
    let answer = posts[1].body["text"].as_str().unwrap();
    assert!(answer.contains("by region"), "{answer}");
    assert!(answer.contains("```"), "answered with the table: {answer}");
    assert_eq!(posts[1].body["thread_ts"], "1595926230.009600");
    // The click is the clicker's message in the same conversation.
    let turns = h
        .app
        .store
        .recent_turns("slack:T111:C111:1595926230.009600", 10)
        .await
        .unwrap();
    assert_eq!(turns.len(), 4, "{turns:?}");
    assert_eq!(turns[2].text, "revenue by region");
    assert_eq!(turns[2].user_id, "T111:W333");
    // Clicked again (or Slack retrying): asked once.
    h.post_form("/slack/interactions", &click, "s3cret").await;
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
    // A value naming the choice in another thread, or one never offered: nothing is asked.
    for forged in [
        choose(&value, "W333", "1111111111.000001", &url),
        choose(
            &format!("{}:7", value.rsplit_once(':').unwrap().0),
            "W333",
            "1595926230.009600",
            &url,
        ),
        choose("not-an-answer", "W333", "1595926230.009600", &url),
    ] {
        let (status, _) = h.post_form("/slack/interactions", &forged, "s3cret").await;
        assert_eq!(status, StatusCode::OK);
    }
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
}

/// A workflow whose approval asks in C9 and may be decided only by T111's UA (people are
/// written as the gateway writes Slack users: `slack:{team}:{user}`).
const REFUND: &str = r#"
name = "refund"
kind = "workflow"
description = "Refund after approval"

[[steps]]
id = "ask"
approval = "slack:C9"
text = "Refund?"
approvers = ["slack:T111:UA"]
timeout = "1h"

[[steps]]
id = "done"
publish = "slack:C9"
text = "done by {{ steps.ask.by }}"
"#;

/// A block_actions payload for a click on a workflow approval's button under the question
/// conveyor posted into C9 (the first message the fake answered, outside any thread).
fn approval_click(action_id: &str, value: &str, user: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T111"},
        "api_app_id": "A111",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C9",
                      "is_ephemeral": false},
        "trigger_id": "123.456.approve",
        "team": {"id": "T111", "domain": "lumen"},
        "channel": {"id": "C9", "name": "refunds"},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id,
            "block_id": "conveyor_actions",
            "text": {"type": "plain_text", "text": "Approve", "emoji": true},
            "value": value,
            "type": "button",
            "action_ts": "1700000001.000000"
        }]
    });
    form(&[("payload", &payload.to_string())])
}

#[tokio::test]
async fn an_approval_click_decides_once_and_only_an_approver_decides() {
    let dir = crate::common::demo(false).await;
    std::fs::write(dir.path().join("tools/refund.toml"), REFUND).unwrap();
    let h = Harness::start_in(dir, "s3cret", |_| {}).await;
    let engine = &h.app.workflows;
    let started = engine
        .start(conveyor::workflows::StartRequest {
            workflow: "refund".into(),
            input: json!({}),
            kind: "api".into(),
            trigger: json!({}),
            by: None,
            key: None,
            parent: None,
        })
        .await
        .unwrap();
    let run = engine.wait(started.id(), WAIT).await.unwrap();
    assert_eq!(run.state, RunState::Waiting, "{run:?}");
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].body["channel"], "C9");
    let buttons = posts[0].body["blocks"][1]["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["action_id"], "conveyor_wf_approve");
    assert_eq!(buttons[1]["action_id"], "conveyor_wf_reject");
    let id = buttons[0]["value"].as_str().unwrap().to_string();
    assert_eq!(buttons[1]["value"], id.as_str());
    let signal = || async { h.app.store.wf_signal(&id).await.unwrap().unwrap() };

    // Someone who is not an approver: nothing recorded, and only they are told why.
    let url = h.response_url("approveB");
    let (status, body) = h
        .post_form(
            "/slack/interactions",
            &approval_click("conveyor_wf_approve", &id, "UB", &url),
            "s3cret",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.settle().await;
    assert!(signal().await.decision.is_none());
    let told = h.fake.calls_of("response_url");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].auth.as_deref(), Some("approveB"));
    assert_eq!(told[0].body["response_type"], "ephemeral");
    assert_eq!(told[0].body["replace_original"], false);
    let text = told[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("You cannot decide this: "), "{text}");
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 1);

    // The approver: recorded, and said in the channel of the question, once.
    let url = h.response_url("approveA");
    let click = approval_click("conveyor_wf_approve", &id, "UA", &url);
    let (status, _) = h.post_form("/slack/interactions", &click, "s3cret").await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    let decided = signal().await;
    assert_eq!(decided.decision.as_deref(), Some("approve"));
    assert_eq!(decided.decided_by.as_deref(), Some("slack:T111:UA"));
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].body["channel"], "C9");
    assert_eq!(posts[1].body["text"], "✅ Approved by <@UA>");
    assert!(
        posts[1].body.get("thread_ts").is_none(),
        "{}",
        posts[1].body
    );
    assert_eq!(
        h.app
            .store
            .egress_state(&format!("slack:approval:{id}"))
            .await
            .unwrap()
            .unwrap()
            .0,
        "confirmed"
    );
    assert_eq!(h.fake.calls_of("response_url").len(), 1, "nothing private");

    // Clicked again (approve or reject): already decided, said only to the clicker.
    h.post_form("/slack/interactions", &click, "s3cret").await;
    h.post_form(
        "/slack/interactions",
        &approval_click("conveyor_wf_reject", &id, "UA", &url),
        "s3cret",
    )
    .await;
    h.settle().await;
    assert_eq!(h.fake.calls_of("chat.postMessage").len(), 2);
    let told = h.fake.calls_of("response_url");
    assert_eq!(told.len(), 3, "{told:?}");
    for again in &told[1..] {
        let text = again.body["text"].as_str().unwrap();
        assert!(text.contains("already decided"), "{text}");
        assert_eq!(again.body["response_type"], "ephemeral");
    }
    assert_eq!(signal().await.decision.as_deref(), Some("approve"));

    // A value conveyor never wrote is acknowledged and ignored.
    let (status, _) = h
        .post_form(
            "/slack/interactions",
            &approval_click("conveyor_wf_approve", "NOT an id!", "UA", &url),
            "s3cret",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.fake.calls_of("response_url").len(), 3);

    // The run goes on with who approved it.
    engine.resume_due().await.unwrap();
    let run = engine.wait(&run.id, WAIT).await.unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let posts = h.fake.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(posts[2].body["text"], "done by slack:T111:UA");
}
