//! Telegram, black-box: `POST /telegram/webhook` through `router()` + `oneshot`, long polling
//! against a fake `getUpdates`, the real updates in `../shared/fixtures/telegram`, and a fake
//! Bot API (`tests/support/telegram.rs`) that records what conveyor sends back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::app::App;
use conveyor::channels::telegram::{ReplyTarget, Telegram, TelegramConfig, TelegramMode, to_html};
use conveyor::config::{Config, Env, Rate};
use conveyor::store::workflows::RunState;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::telegram::FakeTelegram;

const TOKEN: &str = "123456:TEST-token";
const SECRET: &str = "Secret_Token-1";
const BOT: &str = "conveyor_test_bot";
const WAIT: Duration = Duration::from_secs(10);
const QUESTION: &str = "How do I request a refund?";

fn env(name: &str) -> Option<String> {
    match name {
        "TEST_TELEGRAM_TOKEN" => Some(TOKEN.to_string()),
        "TEST_TELEGRAM_SECRET" => Some(SECRET.to_string()),
        _ => None,
    }
}

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/telegram");
    if dir.join("teloxide_tests/private_text.json").exists() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

fn fixture(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

/// The private text fixture with another update id and text.
fn private(dir: &Path, update_id: i64, text: &str) -> Value {
    let mut u = fixture(dir, "teloxide_tests/private_text.json");
    u["update_id"] = json!(update_id);
    u["message"]["text"] = json!(text);
    u
}

/// The supergroup fixture (a reply in a group) with another update id and text.
fn group(dir: &Path, update_id: i64, text: &str) -> Value {
    let mut u = fixture(
        dir,
        "teloxide_tests/supergroup_forum_thread_bot_command_reply.json",
    );
    u["update_id"] = json!(update_id);
    u["message"]["text"] = json!(text);
    u["message"]["entities"] = json!([]);
    u
}

/// Fields drop in order: the app (and its index) before the folder it lives in.
struct Harness {
    app: App,
    router: Router,
    fake: FakeTelegram,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(mode: TelegramMode) -> Self {
        Self::start_with(mode, None).await
    }

    async fn start_with(
        mode: TelegramMode,
        access: Option<conveyor::gateway::access::PlatformAccess>,
    ) -> Self {
        Self::start_in(crate::common::demo(false).await, mode, access).await
    }

    /// The demo with its data synced (BI questions have tables to read).
    async fn start_synced(mode: TelegramMode) -> Self {
        Self::start_in(crate::common::demo(true).await, mode, None).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        mode: TelegramMode,
        access: Option<conveyor::gateway::access::PlatformAccess>,
    ) -> Self {
        let fake = FakeTelegram::start(BOT).await;
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        config
            .channels
            .set(&TelegramConfig {
                token_env: "TEST_TELEGRAM_TOKEN".into(),
                mode,
                secret_token_env: Some("TEST_TELEGRAM_SECRET".into()),
                api_url: fake.url.clone(),
                // Learned from getMe.
                bot_username: None,
                sends_per_second: std::env::var("BENCH_TELEGRAM_SENDS_PER_SECOND")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(30),
            })
            .unwrap();
        if let Some(access) = access {
            config
                .access
                .set(conveyor::channels::telegram::CHANNEL, access);
        }
        let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
        let router = conveyor::http::router(app.clone());
        Self {
            app,
            router,
            fake,
            _dir: dir,
        }
    }

    async fn post(&self, secret: Option<&str>, body: &Value) -> StatusCode {
        let mut req = Request::post("/telegram/webhook").header("content-type", "application/json");
        if let Some(s) = secret {
            req = req.header("x-telegram-bot-api-secret-token", s);
        }
        self.router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap()
            .status()
    }

    /// Waits for every reply task to finish.
    async fn settle(&self) {
        self.app.tasks.close();
        tokio::time::timeout(WAIT, self.app.tasks.wait())
            .await
            .unwrap();
        self.app.tasks.reopen();
    }

    fn sends(&self) -> Vec<Value> {
        self.fake
            .calls_of("sendMessage")
            .into_iter()
            .map(|c| c.body)
            .collect()
    }
}

#[tokio::test]
async fn a_private_message_gets_one_cited_reply_to_it() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    let status = h
        .post(Some(SECRET), &private(&dir, 306197398, QUESTION))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.fake.wait_for("sendMessage", 1, WAIT).await;
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 1, "{:?}", h.fake.calls());
    let m = &sends[0];
    assert_eq!(m["chat_id"], 408258968);
    // teloxide sends the reply as `reply_parameters` (Bot API 7.0+).
    assert_eq!(m["reply_parameters"]["message_id"], 154);
    assert_eq!(m["reply_parameters"]["allow_sending_without_reply"], true);
    assert_eq!(m["parse_mode"], "HTML");
    assert!(m.get("message_thread_id").is_none());
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("[1]"), "no citation marker: {text}");
    assert!(text.contains("refund-policy.md"), "no source: {text}");
    assert!(!text.contains("**"), "Markdown bold left in: {text}");
    let typing = h.fake.calls_of("sendChatAction");
    assert!(!typing.is_empty());
    assert_eq!(typing[0].body["action"], "typing");
    assert!(h.fake.calls().iter().all(|c| c.token == TOKEN));
    assert!(
        h.app
            .store
            .egress_pending("telegram")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn groups_are_answered_only_when_addressed() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    // The fixture as it is (`/report`) and plain chatter: not for us.
    let as_is = fixture(
        &dir,
        "teloxide_tests/supergroup_forum_thread_bot_command_reply.json",
    );
    assert_eq!(h.post(Some(SECRET), &as_is).await, StatusCode::OK);
    assert_eq!(
        h.post(Some(SECRET), &group(&dir, 1, QUESTION)).await,
        StatusCode::OK
    );
    h.settle().await;
    assert!(h.sends().is_empty(), "{:?}", h.sends());

    let mut mention = group(&dir, 2, &format!("@{BOT} {QUESTION}"));
    mention["message"]["entities"] =
        json!([{"type": "mention", "offset": 0, "length": BOT.len() + 1}]);
    let mut reply_to_bot = group(&dir, 3, "and what about refunds?");
    reply_to_bot["message"]["reply_to_message"]["from"] =
        json!({"id": 777000111, "is_bot": true, "first_name": "Conveyor", "username": BOT});
    let ask = group(&dir, 4, &format!("/ask {QUESTION}"));
    let ask_at = group(&dir, 5, &format!("/ask@{BOT} {QUESTION}"));
    let ask_other = group(&dir, 6, &format!("/ask@other_bot {QUESTION}"));
    for u in [&mention, &reply_to_bot, &ask, &ask_at, &ask_other] {
        assert_eq!(h.post(Some(SECRET), u).await, StatusCode::OK);
    }
    h.fake.wait_for("sendMessage", 4, WAIT).await;
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 4, "{sends:?}");
    for m in &sends {
        assert_eq!(m["chat_id"], -1001293752024_i64);
        assert_eq!(m["reply_parameters"]["message_id"], 134546);
        // A reply chain in a plain supergroup is not a forum topic.
        assert!(m.get("message_thread_id").is_none());
    }
}

/// Issue 12, finding 1: a group message whose case-changing letters (`İ`, the OHM SIGN) sit
/// next to the mention used to panic the handler (the connection dropped, Telegram retried it
/// forever). It is answered like any mention.
#[tokio::test]
async fn a_mention_between_case_changing_letters_is_answered() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    let text = format!("\u{130}@{BOT}\u{e9}\u{2126} {QUESTION}");
    let update = group(&dir, 40, &text);
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    let sent = h.fake.wait_for("sendMessage", 1, WAIT).await;
    h.settle().await;
    assert!(
        sent[0].body["text"].as_str().unwrap().contains("[1]"),
        "{:?}",
        sent[0].body
    );
}

#[tokio::test]
async fn a_forum_topic_is_answered_in_its_topic() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    let mut message = fixture(
        &dir,
        "teloxide_tests/message_objects/supergroup_forum_topic_message.json",
    );
    message["text"] = json!(format!("/ask {QUESTION}"));
    let update = json!({"update_id": 42, "message": message});
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.fake.wait_for("sendMessage", 1, WAIT).await;
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["message_thread_id"], 4);
    assert_eq!(sends[0]["reply_parameters"]["message_id"], 5);
    assert_eq!(
        h.fake.calls_of("sendChatAction")[0].body["message_thread_id"],
        4
    );
}

#[tokio::test]
async fn the_same_update_twice_gets_one_reply() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    let update = private(&dir, 77, QUESTION);
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.sends().len(), 1, "{:?}", h.sends());
}

#[tokio::test]
async fn unknown_and_unanswered_update_kinds_get_200_and_nothing_is_sent() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    for name in [
        "teloxide_tests/unknown_update_kind.json",
        "teloxide_tests/message_reaction.json",
        "teloxide_tests/message_reaction_count.json",
        "teloxide_tests/my_chat_member_kicked.json",
        "teloxide_tests/pinned_message.json",
        "teloxide_tests/dice.json",
        "teloxide_tests/supergroup_story.json",
        "docs_examples/05_edited_message.json",
        "docs_examples/07_message_audio.json",
        "docs_examples/10_inline_query.json",
        "docs_examples/11_chosen_inline_result.json",
        "docs_examples/12_callback_query.json",
    ] {
        let status = h.post(Some(SECRET), &fixture(&dir, name)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
    }
    // Updates teloxide cannot deserialize at all: acknowledged too, never a 4xx/5xx that
    // Telegram would retry.
    let message = private(&dir, 1, QUESTION)["message"].clone();
    for body in [
        json!({"update_id": -1, "message": message}),
        json!({"message": message}),
        json!({"update_id": 12}),
        json!([1, 2, 3]),
    ] {
        assert_eq!(h.post(Some(SECRET), &body).await, StatusCode::OK, "{body}");
    }
    h.settle().await;
    assert!(h.sends().is_empty(), "{:?}", h.sends());
}

#[tokio::test]
async fn a_wrong_or_missing_secret_gets_401_and_nothing_is_processed() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Webhook).await;
    let update = private(&dir, 91, QUESTION);
    assert_eq!(h.post(None, &update).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.post(Some("NotTheSecretToken"), &update).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.post(Some(""), &update).await, StatusCode::UNAUTHORIZED);
    h.settle().await;
    assert!(h.fake.calls().is_empty(), "{:?}", h.fake.calls());
    assert!(
        h.app
            .store
            .ingress_response("telegram:91")
            .await
            .unwrap()
            .is_none()
    );
}

/// `conveyor serve` as the library function: `server::run` starts the platform's background
/// task (long polling here) next to HTTP, answers, and returns once the drain is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_run_starts_polling_serves_http_and_drains_on_shutdown() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Polling).await;
    h.fake.push_update(private(&dir, 700, QUESTION));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(conveyor::server::run(
        h.app.clone(),
        listener,
        shutdown.clone(),
    ));
    let sent = h.fake.wait_for("sendMessage", 1, WAIT).await;
    assert!(
        sent[0].body["text"].as_str().unwrap().contains("[1]"),
        "{:?}",
        sent[0].body
    );
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server::run returns after the drain")
        .unwrap()
        .unwrap();
    // Polling stopped with the server: nothing more is asked of Telegram.
    let polls = h.fake.calls_of("getUpdates").len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.fake.calls_of("getUpdates").len(), polls);
}

#[tokio::test]
async fn long_polling_answers_each_update_and_advances_the_offset() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start(TelegramMode::Polling).await;
    // In polling mode the webhook is not there.
    assert_eq!(
        h.post(Some(SECRET), &private(&dir, 1, QUESTION)).await,
        StatusCode::NOT_FOUND
    );
    h.fake.push_update(private(&dir, 500, QUESTION));
    // Two updates teloxide cannot read (which fails its whole getUpdates batch): skipped one
    // by one, while the others are answered and the offset still moves.
    let mut broken = private(&dir, 499, QUESTION);
    broken["message"]["chat"] = json!("not a chat");
    h.fake.push_update(broken);
    h.fake.push_update(json!("not an update"));
    h.fake
        .push_update(private(&dir, 501, "What is the refund policy?"));
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let shutdown = CancellationToken::new();
    h.app
        .tasks
        .spawn(telegram.run_polling(h.app.chat_context(), shutdown.clone()));
    h.fake.wait_for("sendMessage", 2, WAIT).await;
    // Wait until the fake saw the offset past the last update.
    let deadline = Instant::now() + WAIT;
    while !h
        .fake
        .calls_of("getUpdates")
        .iter()
        .any(|c| c.body["offset"] == 502)
    {
        assert!(
            Instant::now() < deadline,
            "offset never advanced: {:?}",
            h.fake.calls_of("getUpdates")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert_eq!(sends[0]["reply_parameters"]["message_id"], 154);
    assert!(h.fake.calls_of("getUpdates").len() >= 2);
    assert!(
        h.app
            .store
            .egress_pending("telegram")
            .await
            .unwrap()
            .is_empty()
    );
}

fn target(update_id: i64) -> ReplyTarget {
    ReplyTarget {
        update_id,
        chat_id: 408258968,
        thread_id: None,
        message_id: 154,
    }
}

#[tokio::test]
async fn html_in_answers_is_escaped() {
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let html = to_html("if a < b && **c** > d then <script>");
    telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(1), &html)
        .await
        .unwrap();
    let sends = h.sends();
    assert_eq!(
        sends[0]["text"],
        "if a &lt; b &amp;&amp; <b>c</b> &gt; d then &lt;script&gt;"
    );
}

#[tokio::test]
async fn a_429_retry_after_is_honoured_and_the_reply_sent_once() {
    let h = Harness::start(TelegramMode::Webhook).await;
    h.fake.rate_limit("sendMessage", 1);
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let started = Instant::now();
    telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(2), "hello")
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(h.sends().len(), 2, "one refused, one accepted");
    assert!(
        h.app
            .store
            .egress_pending("telegram")
            .await
            .unwrap()
            .is_empty()
    );
    // Delivering it again sends nothing.
    telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(2), "hello")
        .await
        .unwrap();
    assert_eq!(h.sends().len(), 2);
}

#[tokio::test]
async fn a_long_answer_is_split_and_each_part_sent_once() {
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let paragraph = "word ".repeat(600);
    let text = [paragraph.trim(); 4].join("\n\n");
    telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(3), &text)
        .await
        .unwrap();
    let sends = h.sends();
    assert_eq!(sends.len(), 4);
    for m in &sends {
        assert!(m["text"].as_str().unwrap().chars().count() <= 4_096);
        assert_eq!(m["reply_parameters"]["message_id"], 154);
    }
    telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(3), &text)
        .await
        .unwrap();
    assert_eq!(h.sends().len(), 4);
}

#[tokio::test]
async fn channels_telegram_is_read_from_toml_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let path = dir.path().join("conveyor.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    let text = base.clone() + "\n[channels.telegram]\ntoken_env = \"MY_TG_TOKEN\"\n";
    let config = Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    let telegram = config.channels.get::<TelegramConfig>().unwrap().unwrap();
    assert_eq!(telegram.mode, TelegramMode::Polling);
    assert_eq!(telegram.api_url, "https://api.telegram.org");
    // A missing token is a start-up error that names the variable.
    let err = App::build_with_env(config, &Env::empty())
        .await
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("channels.telegram.token_env") && message.contains("MY_TG_TOKEN"),
        "{message}"
    );
    // Webhook mode without a secret token is refused with its path.
    let webhook = base + "\n[channels.telegram]\ntoken_env = \"T\"\nmode = \"webhook\"\n";
    let err = Config::from_toml(&webhook, "webhook.toml", dir.path(), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("channels.telegram.secret_token_env"), "{err}");
}

#[tokio::test]
async fn a_pending_reply_is_resent_from_its_row_once_and_confirmed() {
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let store = &h.app.store;
    // The send fails: the row stays pending.
    h.fake
        .fail("sendMessage", 400, "Bad Request: chat not found");
    let to = ReplyTarget {
        update_id: 9,
        chat_id: -1001293752024,
        thread_id: Some(4),
        message_id: 5,
    };
    let err = telegram
        .deliver(
            store,
            "telegram:-1001293752024:4",
            &to,
            "<b>refunds</b> &amp; more",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat not found"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    let pending = store.egress_pending("telegram").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(h.sends().len(), 1);

    // After a "restart": a fresh channel sends it from the row alone.
    let config = h
        .app
        .config
        .channels
        .get::<TelegramConfig>()
        .unwrap()
        .unwrap();
    let restarted = Telegram::build(&config, &Env::new(env)).unwrap();
    restarted.resend(store, &pending[0]).await.unwrap();
    let sends = h.sends();
    assert_eq!(sends.len(), 2, "exactly one more sendMessage: {sends:?}");
    let m = &sends[1];
    assert_eq!(m, &sends[0], "the resend is the recorded message");
    assert_eq!(m["chat_id"], -1001293752024_i64);
    assert_eq!(m["message_thread_id"], 4);
    assert_eq!(m["reply_parameters"]["message_id"], 5);
    assert_eq!(m["parse_mode"], "HTML");
    assert_eq!(m["text"], "<b>refunds</b> &amp; more");
    assert!(store.egress_pending("telegram").await.unwrap().is_empty());

    // A confirmed row is never sent again: not by a stale resend, nor by delivering the same
    // answer again.
    restarted.resend(store, &pending[0]).await.unwrap();
    telegram
        .deliver(
            store,
            "telegram:-1001293752024:4",
            &to,
            "<b>refunds</b> &amp; more",
        )
        .await
        .unwrap();
    assert_eq!(h.sends().len(), 2, "{:?}", h.sends());
}

#[tokio::test]
async fn a_network_error_names_the_method_but_never_the_token() {
    let h = Harness::start(TelegramMode::Webhook).await;
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = h
        .app
        .config
        .channels
        .get::<TelegramConfig>()
        .unwrap()
        .unwrap();
    config.api_url = url;
    let telegram = Telegram::build(&config, &Env::new(env)).unwrap();
    let err = telegram
        .deliver(&h.app.store, "telegram:408258968:0", &target(11), "hi")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sendMessage"), "{err}");
    assert!(!err.contains(TOKEN) && !err.contains("TEST-token"), "{err}");
    assert_eq!(
        h.app.store.egress_pending("telegram").await.unwrap().len(),
        1
    );
}

/// Webhook throughput and latency on a real listening server, closed loop like
/// `slack::bench_events`: 16 workers each post an update (with the secret token) and wait for
/// its `sendMessage` on the fake Bot API before the next; each update comes from its own chat so
/// the 1/s-per-chat pacing does not serialise them. Latency is from the request's start until
/// the `sendMessage` arrived. The overall send limit is Telegram's 30/s unless
/// `BENCH_TELEGRAM_SENDS_PER_SECOND` raises `channels.telegram.sends_per_second` (to measure
/// the pipeline itself). `CONVEYOR_BENCH_UPDATES` sets N (default 2000).
///
/// `cargo test --profile bench-fast --test it telegram::bench_webhook -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; prints updates/s and p50/p99"]
async fn bench_webhook() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let Some(dir) = fixtures() else { return };
    let n: usize = std::env::var("CONVEYOR_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let concurrency = 16;
    let h = Harness::start(TelegramMode::Webhook).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/telegram/webhook", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(conveyor::http::serve(
        h.app.clone(),
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let template = private(&dir, 0, QUESTION);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, fake, template) = (
            client.clone(),
            url.clone(),
            Arc::clone(&next),
            h.fake.clone(),
            template.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return latencies;
                }
                let chat = 5_000_000_i64 + i as i64;
                let mut u = template.clone();
                u["update_id"] = json!(1_000_000 + i as i64);
                u["message"]["chat"]["id"] = json!(chat);
                u["message"]["from"]["id"] = json!(chat);
                let t0 = Instant::now();
                let status = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-telegram-bot-api-secret-token", SECRET)
                    .body(u.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status.as_u16(), 200);
                let at = fake
                    .wait_for_send_to(chat, Duration::from_secs(120))
                    .await
                    .expect("a reply");
                latencies.push(at.duration_since(t0));
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    h.settle().await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "telegram webhook: {n} updates at concurrency {concurrency}: {:.0} updates/s, update → sendMessage p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / secs,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::test]
async fn strangers_get_a_pairing_code_privately_and_are_ignored_in_groups() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start_with(
        TelegramMode::Webhook,
        Some(conveyor::gateway::access::PlatformAccess::default()),
    )
    .await;
    // In a group, addressed with /ask: ignored.
    assert_eq!(
        h.post(
            Some(SECRET),
            &group(&dir, 9001, &format!("/ask {QUESTION}"))
        )
        .await,
        StatusCode::OK
    );
    h.settle().await;
    assert!(h.sends().is_empty(), "{:?}", h.sends());
    // Privately: a pairing code, not an answer.
    let update = private(&dir, 9002, QUESTION);
    let user = update["message"]["from"]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let text = sends[0]["text"].as_str().unwrap();
    assert!(text.contains("conveyor access approve"), "{text}");
    let pending = h.app.store.pairing_pending().await.unwrap();
    assert_eq!(pending[0].user_id, user);
    assert!(text.contains(&pending[0].code));
    // Approved: answered.
    h.app
        .store
        .pairing_approve(&pending[0].code, "admin")
        .await
        .unwrap();
    assert_eq!(
        h.post(Some(SECRET), &private(&dir, 9003, QUESTION)).await,
        StatusCode::OK
    );
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 2);
    assert!(sends[1]["text"].as_str().unwrap().contains("[1]"));
}

#[tokio::test]
async fn a_forwarded_webhook_answer_is_posted_into_the_chat_once() {
    let h = Harness::start(TelegramMode::Webhook).await;
    let out = conveyor::model::Outbound {
        conversation: conveyor::model::ConversationKey::new(
            conveyor::model::Channel::WEBHOOK,
            "alerts",
        ),
        reply_to: "q".into(),
        message_id: "m".into(),
        text: "Deploy **finished**.".into(),
        citations: Vec::new(),
        planner: "offline".into(),
        data: None,
        choices: Vec::new(),
        actions: Vec::new(),
    };
    let target = conveyor::config::ForwardTarget::parse("telegram:-1001234567890").unwrap();
    h.app
        .forward(&target, "hook:alerts:d1", &out)
        .await
        .unwrap();
    h.app
        .forward(&target, "hook:alerts:d1", &out)
        .await
        .unwrap();
    let sends = h.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["chat_id"], -1_001_234_567_890_i64);
    assert!(
        sends[0].get("reply_to_message_id").is_none() && sends[0].get("reply_parameters").is_none(),
        "{}",
        sends[0]
    );
    assert_eq!(sends[0]["text"], "Deploy <b>finished</b>.");
}

fn topic_target(update_id: i64) -> ReplyTarget {
    ReplyTarget {
        update_id,
        chat_id: -1001293752024,
        thread_id: Some(4),
        message_id: 5,
    }
}

/// The sends in the order Telegram received them: (method, text or file name).
fn sends_in_order(fake: &FakeTelegram) -> Vec<(String, String)> {
    fake.calls()
        .into_iter()
        .filter(|c| c.is("sendMessage") || c.is("sendPhoto") || c.is("sendDocument"))
        .map(|c| {
            let what = match c.files.first() {
                Some(f) => f.filename.clone().unwrap(),
                None => c.body["text"].as_str().unwrap().to_string(),
            };
            (c.method.to_lowercase(), what)
        })
        .collect()
}

#[tokio::test]
async fn a_reply_s_image_is_a_captioned_photo_and_its_csv_a_document_in_the_topic() {
    use crate::common::{CSV, PNG, PNG_ALT, reply_with_files};
    use conveyor::channels::chat;
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let to = topic_target(21);
    let reply = reply_with_files("Revenue rose <b>40%</b>.");
    chat::deliver(
        &*telegram,
        &h.app.store,
        "telegram:-1001293752024:4",
        &to,
        &reply,
        "telegram:21",
    )
    .await
    .unwrap();
    assert_eq!(
        sends_in_order(&h.fake),
        [
            (
                "sendmessage".to_string(),
                "Revenue rose <b>40%</b>.".to_string()
            ),
            ("sendphoto".to_string(), "revenue.png".to_string()),
            ("senddocument".to_string(), "revenue.csv".to_string()),
        ]
    );
    let photo = &h.fake.calls_of("sendPhoto")[0];
    assert_eq!(photo.files.len(), 1);
    assert_eq!(photo.files[0].name, "photo");
    assert_eq!(photo.files[0].bytes, PNG);
    assert_eq!(photo.body["caption"], PNG_ALT);
    assert!(
        photo.body.get("parse_mode").is_none(),
        "alt text is plain text"
    );
    let document = &h.fake.calls_of("sendDocument")[0];
    assert_eq!(document.files[0].name, "document");
    assert_eq!(document.files[0].bytes, CSV.as_bytes());
    assert!(document.body.get("caption").is_none());
    // Both in the topic, as replies to the question, like the text.
    for call in [photo, document] {
        assert_eq!(call.body["chat_id"], -1001293752024_i64);
        assert_eq!(call.body["message_thread_id"], 4);
        let reply_to: Value =
            serde_json::from_str(call.body["reply_parameters"].as_str().unwrap()).unwrap();
        assert_eq!(reply_to["message_id"], 5);
    }
    assert_eq!(h.sends()[0]["message_thread_id"], 4);
    assert!(
        h.app
            .store
            .egress_pending("telegram")
            .await
            .unwrap()
            .is_empty()
    );
    // Delivered again: nothing more.
    chat::deliver(
        &*telegram,
        &h.app.store,
        "telegram:-1001293752024:4",
        &to,
        &reply,
        "telegram:21",
    )
    .await
    .unwrap();
    assert_eq!(sends_in_order(&h.fake).len(), 3);

    // A long alt text is cut to Telegram's 1024-character caption.
    let mut long = crate::common::reply_with_files("again");
    long.files[0].alt = Some("é".repeat(1_500));
    long.files.truncate(1);
    chat::deliver(
        &*telegram,
        &h.app.store,
        "telegram:408258968:0",
        &target(22),
        &long,
        "telegram:22",
    )
    .await
    .unwrap();
    let caption = h.fake.calls_of("sendPhoto")[1].body["caption"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(caption.chars().count(), 1_024);
    assert!(caption.ends_with('…'));
}

#[tokio::test]
async fn a_file_over_the_telegram_cap_is_refused_and_nothing_is_recorded_or_sent() {
    use conveyor::channels::telegram::MAX_FILE_BYTES;
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let reply = crate::common::reply_with_file_of("too big", MAX_FILE_BYTES + 1);
    let err = conveyor::channels::chat::deliver(
        &*telegram,
        &h.app.store,
        "telegram:408258968:0",
        &target(23),
        &reply,
        "telegram:23",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`huge.csv`")
            && err.contains(&format!("{} bytes", MAX_FILE_BYTES + 1))
            && err.contains(&format!("{MAX_FILE_BYTES} bytes"))
            && err.contains("Telegram"),
        "{err}"
    );
    assert!(
        h.app
            .store
            .egress_state("telegram:23:1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.app
            .store
            .egress_pending("telegram")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(sends_in_order(&h.fake).is_empty());
}

#[tokio::test]
async fn a_pending_photo_is_resent_from_its_row_with_the_same_bytes() {
    let h = Harness::start(TelegramMode::Webhook).await;
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let store = &h.app.store;
    h.fake.fail("sendPhoto", 500, "Internal Server Error");
    let err = conveyor::channels::chat::deliver(
        &*telegram,
        store,
        "telegram:-1001293752024:4",
        &topic_target(24),
        &crate::common::reply_with_files("the chart"),
        "telegram:24",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("sendPhoto"), "{err}");
    let mut pending = store.egress_pending("telegram").await.unwrap();
    pending.sort_by(|a, b| a.dedupe_key.cmp(&b.dedupe_key));
    let keys: Vec<&str> = pending.iter().map(|r| r.dedupe_key.as_str()).collect();
    assert_eq!(keys, ["telegram:24:2", "telegram:24:3"]);

    // After a "restart": a fresh channel sends both from their rows alone.
    let config = h
        .app
        .config
        .channels
        .get::<TelegramConfig>()
        .unwrap()
        .unwrap();
    let restarted = Telegram::build(&config, &Env::new(env)).unwrap();
    for row in &pending {
        restarted.resend(store, row).await.unwrap();
    }
    let photos = h.fake.calls_of("sendPhoto");
    assert_eq!(photos.len(), 2, "one refused, one resent");
    assert_eq!(photos[1].files[0].bytes, crate::common::PNG);
    assert_eq!(photos[1].files[0].filename.as_deref(), Some("revenue.png"));
    assert_eq!(photos[1].body["caption"], crate::common::PNG_ALT);
    assert_eq!(photos[1].body["message_thread_id"], 4);
    let documents = h.fake.calls_of("sendDocument");
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].files[0].bytes, crate::common::CSV.as_bytes());
    assert!(store.egress_pending("telegram").await.unwrap().is_empty());
    // Confirmed rows are not sent again.
    for row in &pending {
        restarted.resend(store, row).await.unwrap();
    }
    assert_eq!(h.fake.calls_of("sendPhoto").len(), 2);
}

#[tokio::test]
async fn a_bi_question_gets_its_table_and_the_chart_as_a_photo_once() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start_synced(TelegramMode::Webhook).await;
    let update = private(&dir, 306197500, "revenue by plan");
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.fake.wait_for("sendPhoto", 1, WAIT).await;
    h.settle().await;
    let sends = h.sends();
    assert_eq!(sends.len(), 1, "{:?}", h.fake.calls());
    let text = sends[0]["text"].as_str().unwrap();
    assert!(text.contains("<pre>"), "the table in monospace: {text}");
    assert!(
        text.contains("enterprise") && text.contains("$47,072.00"),
        "{text}"
    );
    let photo = &h.fake.calls_of("sendPhoto")[0];
    assert!(photo.files[0].bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        photo.body["caption"]
            .as_str()
            .unwrap()
            .starts_with("Bar chart"),
        "{}",
        photo.body
    );
    assert_eq!(photo.body["chat_id"], 408258968);
    // Telegram delivers the same update again: no second answer, no second photo.
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.fake.calls_of("sendPhoto").len(), 1);
    assert_eq!(h.sends().len(), 1);
}

/// The documentation's `callback_query` update, brought up to the current Bot API (a sender
/// with `is_bot`, a `chat_instance`), as a click under the bot's message `message` (the
/// Message `sendMessage` answered with).
fn callback(dir: &Path, update_id: i64, data: &str, message: &Value) -> Value {
    let mut u = fixture(dir, "docs_examples/12_callback_query.json");
    u["update_id"] = json!(update_id);
    let q = &mut u["callback_query"];
    q["from"]["is_bot"] = json!(false);
    q["from"]["id"] = json!(408258968);
    q["chat_instance"] = json!("-5318008");
    q["data"] = json!(data);
    q.as_object_mut().unwrap().remove("inline_message_id");
    q["message"] = message.clone();
    u
}

#[tokio::test]
async fn a_clarifying_choice_is_an_inline_button_and_a_click_asks_it_once() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start_synced(TelegramMode::Webhook).await;
    let update = private(&dir, 306197600, "revenue by regoin");
    assert_eq!(h.post(Some(SECRET), &update).await, StatusCode::OK);
    h.fake.wait_for("sendMessage", 1, WAIT).await;
    h.settle().await;
    let sent = h.sends();
    assert!(
        sent[0]["text"]
            .as_str()
            .unwrap()
            .contains("Did you mean region?"),
        "{sent:?}"
    );
    let keyboard = &sent[0]["reply_markup"]["inline_keyboard"][0];
    assert_eq!(keyboard.as_array().unwrap().len(), 1, "{keyboard}");
    assert_eq!(keyboard[0]["text"], "revenue by region");
    let data = keyboard[0]["callback_data"].as_str().unwrap().to_string();
    assert!(data.starts_with("choose:") && data.len() <= 64, "{data}");
    // The Message the bot's sendMessage returned, as Telegram puts it in the click.
    let message = json!({
        "message_id": 9001, "date": 1581448900,
        "chat": {"id": 408258968, "type": "private", "first_name": "Hirrolot", "username": "hirrolot"},
        "from": {"id": 777000111, "is_bot": true, "first_name": "Conveyor", "username": BOT},
        "text": sent[0]["text"]
    });
    let click = callback(&dir, 306197601, &data, &message);
    assert_eq!(h.post(Some(SECRET), &click).await, StatusCode::OK);
    h.fake.wait_for("sendMessage", 2, WAIT).await;
    h.settle().await;
    let sent = h.sends();
    let answer = sent[1]["text"].as_str().unwrap();
    assert!(
        answer.contains("<pre>") && answer.contains("region"),
        "{answer}"
    );
    assert_eq!(sent[1]["reply_parameters"]["message_id"], 9001);
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].body["callback_query_id"], "4382bfdwdsb323b2d9");
    assert!(acks[0].body.get("text").is_none(), "{:?}", acks[0].body);
    // A second click (another update): asked once.
    let again = callback(&dir, 306197602, &data, &message);
    assert_eq!(h.post(Some(SECRET), &again).await, StatusCode::OK);
    // A choice under a message in another chat, or one never offered: nothing is asked, and
    // the person is told.
    let mut elsewhere = message.clone();
    elsewhere["chat"]["id"] = json!(-100123);
    elsewhere["chat"]["type"] = json!("group");
    elsewhere["chat"]["title"] = json!("Sales");
    let forged = callback(&dir, 306197603, &data, &elsewhere);
    assert_eq!(h.post(Some(SECRET), &forged).await, StatusCode::OK);
    let unknown = callback(&dir, 306197604, "choose:nope:0", &message);
    assert_eq!(h.post(Some(SECRET), &unknown).await, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.sends().len(), 2, "{:?}", h.sends());
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 4);
    assert!(
        acks[1].body["text"]
            .as_str()
            .unwrap()
            .contains("Already asked")
    );
    assert!(
        acks[2].body["text"]
            .as_str()
            .unwrap()
            .contains("no longer available")
    );
}

/// A workflow whose approval asks in a group and may be decided only by user 408258968 (the
/// sender of the callback fixture, as [`callback`] sets it).
const REFUND: &str = r#"
name = "refund"
kind = "workflow"
description = "Refund after approval"

[[steps]]
id = "ask"
approval = "telegram:-1001234567890"
text = "Refund?"
approvers = ["telegram:408258968"]
timeout = "1h"

[[steps]]
id = "done"
publish = "telegram:-1001234567890"
text = "done by {{ steps.ask.by }}"
"#;

/// The demo with [`REFUND`] in its tools folder, and a run of it waiting for its approval;
/// the run's id and the approval's id (from the question's Approve button).
async fn refund_waiting(mode: TelegramMode) -> (Harness, String, String) {
    let dir = crate::common::demo(false).await;
    std::fs::write(dir.path().join("tools/refund.toml"), REFUND).unwrap();
    let h = Harness::start_in(dir, mode, None).await;
    let started = h
        .app
        .workflows
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
    let run = h.app.workflows.wait(started.id(), WAIT).await.unwrap();
    assert_eq!(run.state, RunState::Waiting, "{run:?}");
    let sent = h.sends();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["chat_id"], -1_001_234_567_890_i64);
    let keyboard = &sent[0]["reply_markup"]["inline_keyboard"][0];
    assert_eq!(keyboard[0]["text"], "Approve");
    assert_eq!(keyboard[1]["text"], "Reject");
    let data = keyboard[0]["callback_data"].as_str().unwrap();
    let id = data.strip_prefix("wf_approve:").unwrap().to_string();
    assert_eq!(keyboard[1]["callback_data"], format!("wf_reject:{id}"));
    (h, run.id, id)
}

/// A click on the approval's `data` button by `user`, under the question (the fake's first
/// sendMessage answer: message 1001 in the group).
fn approval_click(dir: &Path, update_id: i64, data: &str, user: i64) -> Value {
    let question = json!({
        "message_id": 1001, "date": 1581448900,
        "chat": {"id": -1_001_234_567_890_i64, "type": "supergroup", "title": "Refunds"},
        "from": {"id": 777000111, "is_bot": true, "first_name": "Conveyor", "username": BOT},
        "text": "Refund?"
    });
    let mut u = callback(dir, update_id, data, &question);
    u["callback_query"]["id"] = json!(format!("cb{update_id}"));
    u["callback_query"]["from"]["id"] = json!(user);
    u
}

#[tokio::test]
async fn an_approval_click_decides_once_and_only_an_approver_decides() {
    let Some(dir) = fixtures() else { return };
    let (h, run, id) = refund_waiting(TelegramMode::Webhook).await;
    let signal = || async { h.app.store.wf_signal(&id).await.unwrap().unwrap() };
    let approve = format!("wf_approve:{id}");

    // Someone who is not an approver: nothing recorded, nothing posted, and the click is
    // answered with why (only the clicker sees that).
    let click = approval_click(&dir, 306197700, &approve, 5555);
    assert_eq!(h.post(Some(SECRET), &click).await, StatusCode::OK);
    h.settle().await;
    assert!(signal().await.decision.is_none());
    assert_eq!(h.sends().len(), 1);
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].body["callback_query_id"], "cb306197700");
    let text = acks[0].body["text"].as_str().unwrap();
    assert!(text.starts_with("You cannot decide this: "), "{text}");

    // The approver: recorded, answered, and said in the group as a reply to the question.
    let click = approval_click(&dir, 306197701, &approve, 408258968);
    assert_eq!(h.post(Some(SECRET), &click).await, StatusCode::OK);
    h.settle().await;
    let decided = signal().await;
    assert_eq!(decided.decision.as_deref(), Some("approve"));
    assert_eq!(decided.decided_by.as_deref(), Some("telegram:408258968"));
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 2);
    let text = acks[1].body["text"].as_str().unwrap();
    assert!(text.contains("approved by telegram:408258968"), "{text}");
    let sent = h.sends();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["chat_id"], -1_001_234_567_890_i64);
    assert_eq!(sent[1]["reply_parameters"]["message_id"], 1001);
    assert_eq!(
        sent[1]["text"],
        "✅ Approved by <a href=\"tg://user?id=408258968\">Testusername</a>"
    );
    assert!(sent[1].get("reply_markup").is_none(), "{}", sent[1]);

    // Clicked again (approve, or reject): already decided, only the click is answered.
    let again = approval_click(&dir, 306197702, &approve, 408258968);
    assert_eq!(h.post(Some(SECRET), &again).await, StatusCode::OK);
    let reject = approval_click(&dir, 306197703, &format!("wf_reject:{id}"), 408258968);
    assert_eq!(h.post(Some(SECRET), &reject).await, StatusCode::OK);
    // A value conveyor never wrote: acknowledged and ignored.
    let forged = approval_click(&dir, 306197704, "wf_approve:NOT-an-id", 408258968);
    assert_eq!(h.post(Some(SECRET), &forged).await, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.sends().len(), 2);
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 4, "{acks:?}");
    for ack in &acks[2..] {
        let text = ack.body["text"].as_str().unwrap();
        assert!(text.contains("already decided"), "{text}");
        assert!(text.chars().count() <= 200);
    }
    assert_eq!(signal().await.decision.as_deref(), Some("approve"));

    // The run goes on with who approved it.
    h.app.workflows.resume_due().await.unwrap();
    let run = h.app.workflows.wait(&run, WAIT).await.unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let sent = h.sends();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[2]["text"], "done by telegram:408258968");
}

#[tokio::test]
async fn an_approval_click_is_decided_in_polling_mode_too() {
    let Some(dir) = fixtures() else { return };
    let (h, run, id) = refund_waiting(TelegramMode::Polling).await;
    let reject = format!("wf_reject:{id}");
    h.fake.push_update(approval_click(&dir, 800, &reject, 5555));
    h.fake
        .push_update(approval_click(&dir, 801, &reject, 408258968));
    let telegram = h.app.platforms.get::<Telegram>().unwrap();
    let shutdown = CancellationToken::new();
    h.app
        .tasks
        .spawn(telegram.run_polling(h.app.chat_context(), shutdown.clone()));
    h.fake.wait_for("answerCallbackQuery", 2, WAIT).await;
    h.fake.wait_for("sendMessage", 2, WAIT).await;
    shutdown.cancel();
    h.settle().await;
    let acks = h.fake.calls_of("answerCallbackQuery");
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(
        acks[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("You cannot decide this: ")
    );
    let sent = h.sends();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("❌ Rejected by "),
        "{}",
        sent[1]
    );
    let decided = h.app.store.wf_signal(&id).await.unwrap().unwrap();
    assert_eq!(decided.decision.as_deref(), Some("reject"));
    assert_eq!(decided.decided_by.as_deref(), Some("telegram:408258968"));
    // A rejection fails the run with who rejected it.
    h.app.workflows.resume_due().await.unwrap();
    let run = h.app.workflows.wait(&run, WAIT).await.unwrap();
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(
        run.error
            .unwrap()
            .contains("rejected by telegram:408258968")
    );
}
