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
use conveyor::channels::slack::SlackConfig;
use conveyor::config::{Config, Rate};
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
        let fake = FakeSlack::start().await;
        let dir = tempfile::tempdir().unwrap();
        conveyor::init::init(dir.path(), false).await.unwrap();
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        config.channels.slack = Some(SlackConfig {
            signing_secret_env: "TEST_SLACK_SIGNING_SECRET".into(),
            bot_token_env: "TEST_SLACK_BOT_TOKEN".into(),
            api_base_url: fake.url.clone(),
            bot_user_id: None,
        });
        let owned = secret.to_string();
        let env = move |name: &str| match name {
            "TEST_SLACK_SIGNING_SECRET" => Some(owned.clone()),
            "TEST_SLACK_BOT_TOKEN" => Some(TOKEN.to_string()),
            _ => None,
        };
        let app = App::build_with_env(config, &env).await.unwrap();
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
            .slack
            .as_ref()
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
    h.app.slack.as_ref().unwrap().set_clock(None);
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
    assert!(app.slack.is_none());
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
    let slack = h.app.slack.clone().unwrap();
    let to = conveyor::channels::slack::ReplyTarget {
        event_id: "EvLONG".into(),
        channel: "C111".into(),
        ts: "1.5".into(),
        thread_ts: "1.2".into(),
        follow_up: false,
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
    let slack = config.channels.slack.clone().unwrap();
    assert_eq!(slack.api_base_url, "https://slack.com/api");
    let env = |name: &str| (name == "MY_SLACK_SIGNING").then(|| "s3cret".to_string());
    let err = App::build_with_env(config, &env).await.err().unwrap();
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
