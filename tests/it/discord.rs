//! Discord interactions, black-box: `POST /discord/interactions` through `router()` + `oneshot`
//! with the pre-signed requests in `../shared/fixtures/signatures` (RFC 8032 TEST 1 key), the
//! interaction bodies in `../shared/fixtures/discord`, and a fake Discord REST API
//! (`tests/support/discord.rs`) that records the follow-ups; and the gateway bot (serenity)
//! against that REST fake and a fake gateway websocket (`tests/support/discord_gateway.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::app::App;
use conveyor::channels::chat::ChatContext;
use conveyor::channels::discord::Discord;
use conveyor::channels::discord::DiscordConfig;
use conveyor::config::{Config, Env, LlmConfig, LlmProvider, Rate};
use conveyor::store::{EgressRow, NewEgress};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::discord::{BOT_ID, FakeDiscord, bot_user};
use crate::support::discord_gateway::FakeGateway;
use crate::support::llm_fake::{FakeLlm, Scripted, Wire};

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
        Self::start_in(crate::common::demo(false).await, public_key).await
    }

    async fn start_in(dir: tempfile::TempDir, public_key: &str) -> Self {
        let fake = FakeDiscord::start().await;
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        config
            .channels
            .set(&DiscordConfig {
                public_key: public_key.into(),
                application_id: APP_ID.into(),
                token_env: Some("TEST_DISCORD_TOKEN".into()),
                api_base_url: fake.url.clone(),
            })
            .unwrap();
        let env = |name: &str| match name {
            "TEST_DISCORD_TOKEN" => Some("discord-bot-token".to_string()),
            _ => None,
        };
        let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
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
    ask_this(dir, id, QUESTION)
}

/// The `/ask` slash command fixture with another id and question.
fn ask_this(dir: &Path, id: &str, question: &str) -> String {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join("discord/interaction_type2_slash_command_docs_example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    v["id"] = json!(id);
    v["data"]["name"] = json!("ask");
    v["data"]["options"] = json!([{"type": 3, "name": "question", "value": question}]);
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

// ---------------------------------------------------------------------------------------------
// The gateway bot: serenity against the fake REST API (`support::discord`) and the fake
// gateway (`support::discord_gateway`, built from `../shared/fixtures/discord/gateway`).
// ---------------------------------------------------------------------------------------------

const BOT_TOKEN: &str = "discord-bot-token";
const GUILD: &str = "1000000000000000009";
const CHANNEL: &str = "1100000000000000001";
const DM_CHANNEL: &str = "1100000000000000002";
const USER: &str = "1000000000000000002";

/// GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT.
const INTENTS: u64 = (1 << 9) | (1 << 12) | (1 << 15);

/// The app with the gateway bot running against the fakes. Fields drop in order.
struct Bot {
    app: App,
    fake: FakeDiscord,
    gateway: FakeGateway,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    _llm: Option<FakeLlm>,
    _dir: tempfile::TempDir,
}

impl Bot {
    async fn start(fixtures: &Path, llm: Option<FakeLlm>) -> Self {
        Self::start_with(fixtures, llm, None).await
    }

    async fn start_with(
        fixtures: &Path,
        llm: Option<FakeLlm>,
        access: Option<conveyor::gateway::access::PlatformAccess>,
    ) -> Self {
        let fake = FakeDiscord::start().await;
        let gateway = FakeGateway::start(fixtures, bot_user()).await;
        fake.set_gateway_url(&gateway.url);
        let dir = tempfile::tempdir().unwrap();
        conveyor::init::init(dir.path(), false).await.unwrap();
        let path = dir.path().join("conveyor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut config =
            Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
        config.limits.per_user = Rate::Off;
        config.limits.per_conversation = Rate::Off;
        if let Some(llm) = &llm {
            config.llm = LlmConfig {
                provider: LlmProvider::OpenaiCompatible,
                model: Some("fake-model".into()),
                base_url: Some(llm.url.clone()),
                stream: false,
                ..LlmConfig::default()
            };
        }
        config
            .channels
            .set(&DiscordConfig {
                public_key: PUBLIC_KEY.into(),
                application_id: APP_ID.into(),
                token_env: Some("TEST_DISCORD_TOKEN".into()),
                api_base_url: fake.url.clone(),
            })
            .unwrap();
        if let Some(access) = access {
            config
                .access
                .set(conveyor::channels::discord::CHANNEL, access);
        }
        let env = |name: &str| match name {
            "TEST_DISCORD_TOKEN" => Some(BOT_TOKEN.to_string()),
            _ => None,
        };
        let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
        let bot = app.platforms.get::<Discord>().unwrap().bot().unwrap();
        let stop = CancellationToken::new();
        let cx = app.chat_context();
        let run = tokio::spawn(bot.run(cx, stop.clone()));
        assert!(
            gateway
                .wait_until(|g| !g.identifies().is_empty(), WAIT)
                .await,
            "the bot never identified"
        );
        Self {
            app,
            fake,
            gateway,
            stop,
            run,
            _llm: llm,
            _dir: dir,
        }
    }

    /// Waits for every answer task to finish.
    async fn settle(&self) {
        self.app.tasks.close();
        tokio::time::timeout(WAIT, self.app.tasks.wait())
            .await
            .unwrap();
        self.app.tasks.reopen();
    }

    /// Dispatches `message`, then waits until its typing indicator arrived and it is answered.
    async fn say(&self, message: Value) {
        let before = self.fake.typing().len();
        self.gateway.dispatch("MESSAGE_CREATE", message);
        self.fake.wait_for_typing(before + 1, WAIT).await;
        self.settle().await;
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.run).await.unwrap().unwrap();
    }
}

/// A `MESSAGE_CREATE` body as Discord sends it to a bot with the Message Content intent.
fn message_create(id: &str, channel: &str, guild: Option<&str>, content: &str) -> Value {
    let mut m = json!({
        "id": id,
        "channel_id": channel,
        "author": {"id": USER, "username": "ana", "discriminator": "0", "global_name": "Ana", "avatar": null},
        "content": content,
        "timestamp": "2026-11-26T10:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0
    });
    if content.contains(&format!("<@{BOT_ID}>")) {
        m["mentions"] = json!([bot_user()]);
    }
    if let Some(guild) = guild {
        m["guild_id"] = json!(guild);
        m["member"] = json!({"roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0});
    }
    m
}

fn gateway_fixtures() -> Option<PathBuf> {
    let dir = crate::support::discord_gateway::fixtures();
    if dir.is_none() {
        println!("skipped: ../shared/fixtures/discord/gateway is absent");
    }
    dir
}

#[tokio::test]
async fn a_mention_in_a_guild_channel_gets_one_reply_there() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let identify = &bot.gateway.identifies()[0];
    assert!(
        identify["token"].as_str().unwrap().ends_with(BOT_TOKEN),
        "{identify}"
    );
    assert_eq!(identify["intents"], INTENTS);
    bot.say(message_create(
        "1200000000000000001",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    ))
    .await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel_id, CHANNEL);
    assert_eq!(sent[0].authorization, format!("Bot {BOT_TOKEN}"));
    let body = &sent[0].body;
    assert_eq!(
        body["message_reference"]["message_id"],
        "1200000000000000001"
    );
    assert_eq!(body["enforce_nonce"], true);
    assert!(
        body["nonce"].as_str().is_some_and(|n| n.len() <= 25),
        "{body}"
    );
    let content = body["content"].as_str().unwrap();
    assert!(content.contains("[1]"), "no citation marker: {content}");
    assert!(content.chars().count() <= 2_000);
    assert!(bot.fake.typing().iter().all(|c| c == CHANNEL));
    // The planner saw the question without the mention.
    let turns = bot
        .app
        .store
        .recent_turns(&format!("discord:{CHANNEL}"), 10)
        .await
        .unwrap();
    assert_eq!(turns[0].text, QUESTION, "{turns:?}");
    // Recorded and confirmed with Discord's message id.
    assert!(
        bot.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_direct_message_is_answered_without_a_mention() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    bot.say(message_create(
        "1200000000000000002",
        DM_CHANNEL,
        None,
        QUESTION,
    ))
    .await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel_id, DM_CHANNEL);
    assert_eq!(bot.fake.typing(), vec![DM_CHANNEL.to_string()]);
    bot.stop().await;
}

#[tokio::test]
async fn bots_webhooks_and_unmentioned_messages_get_nothing() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let mut from_bot = message_create(
        "1200000000000000003",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    );
    from_bot["author"]["bot"] = json!(true);
    let mut from_webhook = message_create(
        "1200000000000000004",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    );
    from_webhook["webhook_id"] = json!("1300000000000000001");
    let mut own = message_create("1200000000000000005", CHANNEL, Some(GUILD), QUESTION);
    own["author"] = bot_user();
    for m in [
        from_bot,
        from_webhook,
        own,
        message_create("1200000000000000006", CHANNEL, Some(GUILD), QUESTION),
        message_create(
            "1200000000000000007",
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT_ID}>"),
        ),
    ] {
        bot.gateway.dispatch("MESSAGE_CREATE", m);
    }
    // A DM afterwards is answered: every earlier event was read and dropped.
    bot.say(message_create(
        "1200000000000000008",
        DM_CHANNEL,
        None,
        QUESTION,
    ))
    .await;
    // serenity hands each event to its own task; give a wrongly accepted one time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bot.settle().await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel_id, DM_CHANNEL);
    assert_eq!(bot.fake.typing(), vec![DM_CHANNEL.to_string()]);
    assert_eq!(bot.app.store.ingress_count().await.unwrap(), 1);
    bot.stop().await;
}

#[tokio::test]
async fn a_4500_character_answer_is_sent_as_three_replies() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let paragraph = "word ".repeat(300);
    let long = [paragraph.trim(); 3].join("\n\n");
    assert!(long.chars().count() >= 4_500);
    let llm = FakeLlm::start(Wire::OpenAi, vec![Scripted::text(&long)]).await;
    let bot = Bot::start(&fixtures, Some(llm)).await;
    bot.say(message_create(
        "1200000000000000009",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> tell me everything"),
    ))
    .await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    let mut words = 0;
    for s in &sent {
        let content = s.body["content"].as_str().unwrap();
        assert!(content.chars().count() <= 2_000);
        assert_eq!(s.channel_id, CHANNEL);
        words += content.matches("word").count();
    }
    assert_eq!(words, 900, "nothing lost");
    let nonces: std::collections::HashSet<_> =
        sent.iter().map(|s| s.body["nonce"].clone()).collect();
    assert_eq!(nonces.len(), 3);
    bot.stop().await;
}

#[tokio::test]
async fn the_same_message_create_twice_gets_one_reply() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let m = message_create(
        "1200000000000000010",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    );
    bot.say(m.clone()).await;
    bot.gateway.dispatch("MESSAGE_CREATE", m);
    // The repeat finds the message in the inbox and is dropped before anything is shown.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bot.settle().await;
    assert_eq!(
        bot.fake.typing().len(),
        1,
        "only the first delivery is answered"
    );
    assert_eq!(bot.fake.sent().len(), 1, "{:?}", bot.fake.sent());
    assert_eq!(bot.fake.message_posts(), 1);
    bot.stop().await;
}

#[tokio::test]
async fn a_message_create_replayed_after_a_resume_gets_no_second_reply() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    bot.say(message_create(
        "1200000000000000011",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    ))
    .await;
    assert_eq!(bot.fake.sent().len(), 1);
    // Discord asks for a reconnect; serenity resumes, and the fake replays the message.
    bot.gateway.reconnect();
    assert!(
        bot.gateway
            .wait_until(|g| !g.resumes().is_empty(), WAIT)
            .await,
        "serenity did not resume"
    );
    let resume = &bot.gateway.resumes()[0];
    assert_eq!(resume["session_id"], "fake-session-0001");
    // The replay finds the message in the inbox and is dropped (no second "typing…").
    tokio::time::sleep(Duration::from_millis(500)).await;
    bot.settle().await;
    assert_eq!(bot.fake.typing().len(), 1, "the replay is not answered");
    assert_eq!(bot.fake.sent().len(), 1, "{:?}", bot.fake.sent());
    assert_eq!(
        bot.gateway.identifies().len(),
        1,
        "resumed, not re-identified"
    );
    // The bot still answers new messages on the resumed session.
    bot.say(message_create(
        "1200000000000000012",
        DM_CHANNEL,
        None,
        QUESTION,
    ))
    .await;
    assert_eq!(bot.fake.sent().len(), 2);
    bot.stop().await;
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_reply_is_not_dropped() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    bot.fake.rate_limit_next(2);
    bot.say(message_create(
        "1200000000000000013",
        DM_CHANNEL,
        None,
        QUESTION,
    ))
    .await;
    assert_eq!(bot.fake.message_posts(), 3);
    assert_eq!(bot.fake.sent().len(), 1);
    assert!(
        bot.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
    bot.stop().await;
}

#[tokio::test]
async fn resend_sends_a_pending_row_once_and_never_a_confirmed_one() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let discord = bot.app.platforms.get::<Discord>().unwrap();
    let store = &bot.app.store;
    // A bot message and a follow-up recorded before a crash, and one already confirmed.
    let message = json!({
        "kind": "channel_message",
        "channel_id": CHANNEL,
        "body": {"content": "recorded before the crash", "nonce": "n-pending-1", "enforce_nonce": true,
                 "allowed_mentions": {"parse": []}}
    });
    let follow_up = json!({
        "kind": "follow_up",
        "interaction_token": "A_UNIQUE_TOKEN",
        "body": {"content": "follow-up recorded before the crash", "allowed_mentions": {"parse": []}}
    });
    let confirmed = json!({
        "kind": "channel_message",
        "channel_id": CHANNEL,
        "body": {"content": "already sent", "nonce": "n-confirmed-1", "enforce_nonce": true}
    });
    let conversation = format!("discord:{CHANNEL}");
    for (key, payload) in [
        ("discord:msg:1:1", &message),
        ("discord:2:1", &follow_up),
        ("discord:msg:3:1", &confirmed),
    ] {
        store
            .egress_record_new(&NewEgress {
                channel: "discord".into(),
                conversation: conversation.clone(),
                dedupe_key: key.into(),
                payload: payload.clone(),
            })
            .await
            .unwrap()
            .unwrap();
    }
    let done = store
        .egress_pending("discord")
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.dedupe_key == "discord:msg:3:1")
        .unwrap();
    store.egress_confirm(&done.id, Some("1")).await.unwrap();

    // What the lead's loop does: resend every pending row.
    for row in store.egress_pending("discord").await.unwrap() {
        discord.resend(store, &row).await.unwrap();
    }
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(bot.fake.message_posts(), 1);
    assert_eq!(sent[0].body["content"], "recorded before the crash");
    assert_eq!(sent[0].body["nonce"], "n-pending-1");
    let follow_ups = bot.fake.follow_ups();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    assert_eq!(follow_ups[0].token, "A_UNIQUE_TOKEN");
    assert!(store.egress_pending("discord").await.unwrap().is_empty());
    // A second pass finds nothing to send.
    for row in store.egress_pending("discord").await.unwrap() {
        discord.resend(store, &row).await.unwrap();
    }
    assert_eq!(bot.fake.message_posts(), 1);
    assert_eq!(bot.fake.follow_ups().len(), 1);
    bot.stop().await;
}

#[tokio::test]
async fn resend_refuses_a_follow_up_whose_interaction_token_expired() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let discord = bot.app.platforms.get::<Discord>().unwrap();
    let row = EgressRow {
        id: "0190aaaa-0000-7000-8000-000000000001".into(),
        channel: "discord".into(),
        conversation: "discord:dm:1".into(),
        dedupe_key: "discord:9:1".into(),
        payload: json!({"kind": "follow_up", "interaction_token": "OLD", "body": {"content": "late"}}),
        attempts: 1,
        created_at: chrono::Utc::now().timestamp_millis() - 16 * 60 * 1_000,
    };
    let err = discord.resend(&bot.app.store, &row).await.unwrap_err();
    assert!(err.to_string().contains("15 minutes"), "{err}");
    assert!(bot.fake.follow_ups().is_empty());
    bot.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_logged_and_retried_without_stopping() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let fake = FakeDiscord::start().await;
    let gateway = FakeGateway::start(&fixtures, bot_user()).await;
    fake.set_gateway_url(&gateway.url);
    fake.reject_token();
    let bot = Arc::new(
        conveyor::channels::discord_bot::DiscordBot::build(
            conveyor::config::Secret::from_lookup(
                "T",
                "channels.discord.token_env",
                &Env::new(|_| Some("bad-token".into())),
            )
            .unwrap(),
            &fake.url,
        )
        .unwrap(),
    );
    let h = Harness::start(PUBLIC_KEY).await;
    let cx: ChatContext = h.app.chat_context();
    let stop = CancellationToken::new();
    let run = tokio::spawn(bot.run(cx, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "the bot gave up instead of retrying");
    assert!(
        gateway.identifies().is_empty(),
        "no gateway without a valid token"
    );
    stop.cancel();
    tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_gateway_that_refuses_the_token_is_retried_with_backoff() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let fake = FakeDiscord::start().await;
    let gateway = FakeGateway::start(&fixtures, bot_user()).await;
    fake.set_gateway_url(&gateway.url);
    gateway.refuse_identify();
    let h = Harness::start(PUBLIC_KEY).await;
    let bot = Arc::new(
        conveyor::channels::discord_bot::DiscordBot::build(
            conveyor::config::Secret::from_lookup(
                "T",
                "channels.discord.token_env",
                &Env::new(|_| Some("revoked-token".into())),
            )
            .unwrap(),
            &fake.url,
        )
        .unwrap(),
    );
    let cx: ChatContext = h.app.chat_context();
    let stop = CancellationToken::new();
    let run = tokio::spawn(bot.run(cx, stop.clone()));
    // Closed with 4004, serenity gives up (and takes 5 s to say its shard stopped); the bot
    // logs it and tries again after 1 s.
    assert!(
        gateway
            .wait_until(|g| g.identifies().len() >= 2, 3 * WAIT)
            .await,
        "no second attempt: {:?}",
        gateway.identifies()
    );
    assert!(!run.is_finished());
    stop.cancel();
    tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_token_env_naming_an_unset_variable_fails_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let path = dir.path().join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + &format!(
            "\n[channels.discord]\npublic_key = \"{PUBLIC_KEY}\"\napplication_id = \"{APP_ID}\"\ntoken_env = \"MY_DISCORD_BOT_TOKEN\"\n"
        );
    let config = Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    let err = App::build_with_env(config, &Env::empty())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("channels.discord.token_env") && err.contains("MY_DISCORD_BOT_TOKEN"),
        "{err}"
    );
    // With token_env, a base URL the bot's REST client cannot use is a config error.
    let bad = text.replace(
        "token_env = \"MY_DISCORD_BOT_TOKEN\"",
        "token_env = \"MY_DISCORD_BOT_TOKEN\"\napi_base_url = \"http://127.0.0.1:9\"",
    );
    let err = Config::from_toml(&bad, "bad.toml", dir.path(), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("channels.discord.api_base_url"), "{err}");
}

#[tokio::test]
async fn strangers_get_a_pairing_code_in_dms_and_nothing_in_guilds_until_approved() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let access = conveyor::gateway::access::PlatformAccess {
        guilds: vec!["1000000000000000777".into()],
        ..Default::default()
    };
    let bot = Bot::start_with(&fixtures, None, Some(access)).await;
    // A mention in a guild that is not allowed: nothing.
    bot.gateway.dispatch(
        "MESSAGE_CREATE",
        message_create(
            "1200000000000000101",
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT_ID}> {QUESTION}"),
        ),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    bot.settle().await;
    assert!(bot.fake.sent().is_empty(), "{:?}", bot.fake.sent());
    // A DM: a pairing code, as a reply, and no answer.
    bot.gateway.dispatch(
        "MESSAGE_CREATE",
        message_create("1200000000000000102", DM_CHANNEL, None, QUESTION),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot.fake.sent().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bot.settle().await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let content = sent[0].body["content"].as_str().unwrap().to_string();
    assert!(content.contains("conveyor access approve"), "{content}");
    let code = bot.app.store.pairing_pending().await.unwrap()[0]
        .code
        .clone();
    assert!(content.contains(&code));
    bot.app.store.pairing_approve(&code, "admin").await.unwrap();
    // Approved: the same user is answered, in the guild too.
    bot.say(message_create(
        "1200000000000000103",
        CHANNEL,
        Some(GUILD),
        &format!("<@{BOT_ID}> {QUESTION}"),
    ))
    .await;
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].body["content"].as_str().unwrap().contains("[1]"));
    bot.stop().await;
}

#[tokio::test]
async fn a_forwarded_webhook_answer_is_posted_once_as_a_new_message() {
    let Some(fixtures) = gateway_fixtures() else {
        return;
    };
    let bot = Bot::start(&fixtures, None).await;
    let out = conveyor::model::Outbound {
        conversation: conveyor::model::ConversationKey::new(
            conveyor::model::Channel::WEBHOOK,
            "alerts",
        ),
        reply_to: "q".into(),
        message_id: "m".into(),
        text: "Deploy finished [1].".into(),
        citations: Vec::new(),
        planner: "offline".into(),
        data: None,
        choices: Vec::new(),
        actions: Vec::new(),
    };
    let target = conveyor::config::ForwardTarget::parse(&format!("discord:{CHANNEL}")).unwrap();
    bot.app
        .forward(&target, "hook:alerts:d1", &out)
        .await
        .unwrap();
    bot.app
        .forward(&target, "hook:alerts:d1", &out)
        .await
        .unwrap();
    let sent = bot.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel_id, CHANNEL);
    assert!(sent[0].body.get("message_reference").is_none());
    assert_eq!(sent[0].body["content"], "Deploy finished [1].");
    bot.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Files: follow-ups and the bot's channel messages carry them as multipart uploads.
// ---------------------------------------------------------------------------------------------

fn follow_up_target(interaction_id: &str) -> conveyor::channels::discord::FollowUp {
    conveyor::channels::discord::FollowUp {
        interaction_id: interaction_id.into(),
        token: "FILES_TOKEN".into(),
        user_id: USER.into(),
        channel_id: CHANNEL.into(),
        guild_id: Some(GUILD.into()),
    }
}

fn bot_target() -> conveyor::channels::discord_bot::ReplyTarget {
    conveyor::channels::discord_bot::ReplyTarget {
        channel_id: CHANNEL.parse().unwrap(),
        message_id: Some("1200000000000000077".parse().unwrap()),
        guild_id: Some(GUILD.parse().unwrap()),
    }
}

/// What one Discord message carried: its text, or its one file (name, bytes, description).
fn carried(body: &Value, files: &[crate::support::multipart::Part]) -> String {
    match files {
        [] => format!("text: {}", body["content"].as_str().unwrap()),
        [file] => {
            assert_eq!(file.name, "files[0]");
            let entry = &body["attachments"][0];
            assert_eq!(entry["id"], 0, "{body}");
            assert_eq!(
                entry["filename"].as_str(),
                file.filename.as_deref(),
                "{body}"
            );
            format!(
                "file: {} ({} bytes, {})",
                file.filename.as_deref().unwrap(),
                file.bytes.len(),
                entry["description"].as_str().unwrap_or("no description")
            )
        }
        more => panic!("one file per message, not {}", more.len()),
    }
}

fn expected_carried() -> Vec<String> {
    vec![
        "text: Revenue rose **40%**.".to_string(),
        format!(
            "file: revenue.png ({} bytes, {})",
            crate::common::PNG.len(),
            crate::common::PNG_ALT
        ),
        format!(
            "file: revenue.csv ({} bytes, no description)",
            crate::common::CSV.len()
        ),
    ]
}

#[tokio::test]
async fn a_follow_up_s_files_are_uploaded_after_its_text() {
    use conveyor::channels::chat;
    let h = Harness::start(PUBLIC_KEY).await;
    let discord = h.app.platforms.get::<Discord>().unwrap();
    let reply = crate::common::reply_with_files("Revenue rose **40%**.");
    let to = follow_up_target("9001");
    chat::deliver(
        &*discord,
        &h.app.store,
        "discord:g:c",
        &to,
        &reply,
        "discord:9001",
    )
    .await
    .unwrap();
    let calls = h.fake.follow_ups();
    let got: Vec<String> = calls.iter().map(|c| carried(&c.body, &c.files)).collect();
    assert_eq!(got, expected_carried());
    for call in &calls {
        assert_eq!(call.token, "FILES_TOKEN");
        assert_eq!(call.application_id, APP_ID);
    }
    assert_eq!(calls[1].files[0].bytes, crate::common::PNG);
    assert_eq!(calls[1].files[0].content_type.as_deref(), Some("image/png"));
    assert_eq!(calls[2].files[0].bytes, crate::common::CSV.as_bytes());
    assert_eq!(calls[2].body["allowed_mentions"], json!({"parse": []}));
    assert!(
        h.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
    chat::deliver(
        &*discord,
        &h.app.store,
        "discord:g:c",
        &to,
        &reply,
        "discord:9001",
    )
    .await
    .unwrap();
    assert_eq!(h.fake.follow_ups().len(), 3);
}

#[tokio::test]
async fn the_bot_s_files_are_uploaded_as_replies_in_the_channel() {
    use conveyor::channels::chat;
    let h = Harness::start(PUBLIC_KEY).await;
    let bot = h.app.platforms.get::<Discord>().unwrap().bot().unwrap();
    let reply = crate::common::reply_with_files("Revenue rose **40%**.");
    chat::deliver(
        &*bot,
        &h.app.store,
        &format!("discord:{CHANNEL}"),
        &bot_target(),
        &reply,
        "discord:msg:1200000000000000077",
    )
    .await
    .unwrap();
    let sent = h.fake.sent();
    let got: Vec<String> = sent.iter().map(|s| carried(&s.body, &s.files)).collect();
    assert_eq!(got, expected_carried());
    let mut nonces = std::collections::HashSet::new();
    for s in &sent {
        assert_eq!(s.channel_id, CHANNEL);
        assert_eq!(s.authorization, format!("Bot {BOT_TOKEN}"));
        assert_eq!(
            s.body["message_reference"]["message_id"],
            "1200000000000000077"
        );
        assert_eq!(s.body["enforce_nonce"], true);
        assert!(nonces.insert(s.body["nonce"].as_str().unwrap().to_string()));
    }
    assert_eq!(sent[1].files[0].bytes, crate::common::PNG);
    assert_eq!(sent[2].files[0].bytes, crate::common::CSV.as_bytes());
    assert!(
        h.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_file_over_the_discord_cap_is_refused_and_nothing_is_recorded_or_sent() {
    use conveyor::channels::discord::MAX_FILE_BYTES;
    let h = Harness::start(PUBLIC_KEY).await;
    let discord = h.app.platforms.get::<Discord>().unwrap();
    let bot = discord.bot().unwrap();
    let reply = crate::common::reply_with_file_of("too big", MAX_FILE_BYTES + 1);
    let refused = [
        conveyor::channels::chat::deliver(
            &*discord,
            &h.app.store,
            "discord:g:c",
            &follow_up_target("9002"),
            &reply,
            "discord:9002",
        )
        .await
        .unwrap_err(),
        conveyor::channels::chat::deliver(
            &*bot,
            &h.app.store,
            "discord:c",
            &bot_target(),
            &reply,
            "discord:msg:9002",
        )
        .await
        .unwrap_err(),
    ];
    for err in refused {
        let err = err.to_string();
        assert!(
            err.contains("`huge.csv`")
                && err.contains(&format!("{} bytes", MAX_FILE_BYTES + 1))
                && err.contains(&format!("{MAX_FILE_BYTES} bytes"))
                && err.contains("Discord"),
            "{err}"
        );
    }
    assert!(
        h.app
            .store
            .egress_state("discord:9002:1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.fake.follow_ups().is_empty());
    assert_eq!(h.fake.message_posts(), 0);
}

#[tokio::test]
async fn pending_file_parts_are_resent_with_the_same_bytes() {
    use conveyor::channels::chat;
    use conveyor::gateway::egress::Outbox;
    let h = Harness::start(PUBLIC_KEY).await;
    let discord = h.app.platforms.get::<Discord>().unwrap();
    let bot = discord.bot().unwrap();
    let reply = crate::common::reply_with_files("Revenue rose **40%**.");
    // The text goes; Discord fails the image, so it and the CSV stay pending — for a follow-up
    // and for a bot message alike.
    h.fake.fail_uploads(2);
    let failed = [
        chat::deliver(
            &*discord,
            &h.app.store,
            "discord:g:c",
            &follow_up_target("9003"),
            &reply,
            "discord:9003",
        )
        .await
        .unwrap_err()
        .to_string(),
        chat::deliver(
            &*bot,
            &h.app.store,
            "discord:c",
            &bot_target(),
            &reply,
            "discord:msg:9003",
        )
        .await
        .unwrap_err()
        .to_string(),
    ];
    assert!(failed.iter().all(|e| e.contains("500")), "{failed:?}");
    let mut pending = h.app.store.egress_pending("discord").await.unwrap();
    pending.sort_by(|a, b| a.dedupe_key.cmp(&b.dedupe_key));
    let keys: Vec<&str> = pending.iter().map(|r| r.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "discord:9003:2",
            "discord:9003:3",
            "discord:msg:9003:2",
            "discord:msg:9003:3"
        ]
    );
    for row in &pending {
        Outbox::resend(&*discord, &h.app.store, row).await.unwrap();
    }
    let follow_ups = h.fake.follow_ups();
    let got: Vec<String> = follow_ups
        .iter()
        .map(|c| carried(&c.body, &c.files))
        .collect();
    assert_eq!(got, expected_carried());
    let sent = h.fake.sent();
    let got: Vec<String> = sent.iter().map(|s| carried(&s.body, &s.files)).collect();
    assert_eq!(got, expected_carried());
    assert_eq!(follow_ups[1].files[0].bytes, crate::common::PNG);
    assert_eq!(sent[1].files[0].bytes, crate::common::PNG);
    assert!(
        h.app
            .store
            .egress_pending("discord")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_bi_question_gets_its_table_and_the_chart_attached_once() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start_in(crate::common::demo(true).await, PUBLIC_KEY).await;
    let body = ask_this(&dir, "786008729715219001", "revenue by plan");
    let (status, deferred) = h.post_signed(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deferred, json!({"type": 5}));
    h.fake.wait_for(2, WAIT).await;
    h.settle().await;
    let calls = h.fake.follow_ups();
    assert_eq!(calls.len(), 2, "the table, then the chart: {calls:?}");
    let content = calls[0].body["content"].as_str().unwrap();
    assert!(
        content.contains("```"),
        "the table in a code block: {content}"
    );
    assert!(
        content.contains("enterprise") && content.contains("$47,072.00"),
        "{content}"
    );
    assert!(content.chars().count() <= 2_000);
    let chart = &calls[1];
    assert!(chart.files[0].bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(chart.files[0].content_type.as_deref(), Some("image/png"));
    let entry = &chart.body["attachments"][0];
    assert_eq!(entry["filename"], "chart.png");
    assert!(
        entry["description"]
            .as_str()
            .unwrap()
            .starts_with("Bar chart"),
        "{entry}"
    );
    // The same interaction again: no second answer, no second chart.
    assert_eq!(h.post_signed(&body).await.0, StatusCode::OK);
    h.settle().await;
    assert_eq!(h.fake.follow_ups().len(), 2);
}

/// A click on a button (a message component interaction, like the fixture's) by the user of
/// the `/ask` fixture, in its channel.
fn click(dir: &Path, id: &str, custom_id: &str) -> String {
    let ask: Value = serde_json::from_str(&ask_this(dir, "0", "x")).unwrap();
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("discord/interaction_type3_message_component_min.json"))
            .unwrap(),
    )
    .unwrap();
    v["id"] = json!(id);
    v["data"]["custom_id"] = json!(custom_id);
    for key in ["channel_id", "guild_id", "member", "application_id"] {
        v[key] = ask[key].clone();
    }
    v.to_string()
}

#[tokio::test]
async fn a_clarifying_choice_is_a_button_and_a_click_asks_it_once() {
    let Some(dir) = fixtures() else { return };
    let h = Harness::start_in(crate::common::demo(true).await, PUBLIC_KEY).await;
    let (status, _) = h
        .post_signed(&ask_this(&dir, "786008729715219101", "revenue by regoin"))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.fake.wait_for(1, WAIT).await;
    h.settle().await;
    let calls = h.fake.follow_ups();
    let content = calls[0].body["content"].as_str().unwrap();
    assert!(content.contains("Did you mean region?"), "{content}");
    let buttons = calls[0].body["components"][0]["components"]
        .as_array()
        .unwrap();
    assert_eq!(buttons.len(), 1, "{buttons:?}");
    assert_eq!(buttons[0]["label"], "revenue by region");
    let custom_id = buttons[0]["custom_id"].as_str().unwrap().to_string();
    assert!(custom_id.starts_with("conveyor:choose:"), "{custom_id}");

    let (status, deferred) = h
        .post_signed(&click(&dir, "786008729715219102", &custom_id))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deferred, json!({"type": 5}));
    h.fake.wait_for(2, WAIT).await;
    h.settle().await;
    let calls = h.fake.follow_ups();
    let answer = calls[1].body["content"].as_str().unwrap();
    assert!(
        answer.contains("region") && answer.contains("```"),
        "{answer}"
    );
    let answered = calls.len();
    // Clicked again: asked once. A choice never offered: told so, privately, nothing asked.
    let (_, again) = h
        .post_signed(&click(&dir, "786008729715219103", &custom_id))
        .await;
    assert_eq!(again["type"], 4, "{again}");
    let (_, note) = h
        .post_signed(&click(&dir, "786008729715219104", "conveyor:choose:nope:0"))
        .await;
    assert_eq!(note["type"], 4, "{note}");
    assert_eq!(note["data"]["flags"], 64);
    h.settle().await;
    assert_eq!(h.fake.follow_ups().len(), answered);
}

/// The channel and the clicker of [`click`] (the `/ask` fixture's).
const ASK_CHANNEL: &str = "645027906669510667";
const ASK_USER: &str = "53908232506183680";

/// A workflow whose approval asks in the `/ask` fixture's channel and may be decided only by
/// that fixture's user.
const REFUND: &str = r#"
name = "refund"
kind = "workflow"
description = "Refund after approval"

[[steps]]
id = "ask"
approval = "discord:645027906669510667"
text = "Refund?"
approvers = ["discord:53908232506183680"]
timeout = "1h"

[[steps]]
id = "done"
publish = "discord:645027906669510667"
text = "done by {{ steps.ask.by }}"
"#;

/// [`click`] by another member of the server.
fn click_by(dir: &Path, id: &str, custom_id: &str, user: &str) -> String {
    let mut v: Value = serde_json::from_str(&click(dir, id, custom_id)).unwrap();
    v["member"]["user"]["id"] = json!(user);
    v["member"]["user"]["username"] = json!("someone");
    v.to_string()
}

#[tokio::test]
async fn an_approval_click_decides_once_and_only_an_approver_decides() {
    let Some(dir) = fixtures() else { return };
    let demo = crate::common::demo(false).await;
    std::fs::write(demo.path().join("tools/refund.toml"), REFUND).unwrap();
    let h = Harness::start_in(demo, PUBLIC_KEY).await;
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
    assert_eq!(
        run.state,
        conveyor::store::workflows::RunState::Waiting,
        "{run:?}"
    );
    // The question is the bot's message in the channel, with the two buttons.
    let sent = h.fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].channel_id, ASK_CHANNEL);
    let buttons = sent[0].body["components"][0]["components"]
        .as_array()
        .unwrap();
    assert_eq!(buttons[0]["label"], "Approve");
    let approve = buttons[0]["custom_id"].as_str().unwrap().to_string();
    let id = approve
        .strip_prefix("conveyor:wf_approve:")
        .unwrap()
        .to_string();
    assert_eq!(buttons[1]["custom_id"], format!("conveyor:wf_reject:{id}"));
    let signal = || async { h.app.store.wf_signal(&id).await.unwrap().unwrap() };

    // Someone who is not an approver: nothing recorded, and a note only they see.
    let (status, note) = h
        .post_signed(&click_by(&dir, "786008729715219201", &approve, "1234"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(note["type"], 4, "{note}");
    assert_eq!(note["data"]["flags"], 64);
    let text = note["data"]["content"].as_str().unwrap();
    assert!(text.starts_with("You cannot decide this: "), "{text}");
    assert!(signal().await.decision.is_none());

    // The approver: recorded, and answered with a message the channel sees (no one pinged).
    let (status, answer) = h
        .post_signed(&click(&dir, "786008729715219202", &approve))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"type": 4, "data": {
            "content": format!("✅ Approved by <@{ASK_USER}>"),
            "allowed_mentions": {"parse": []},
        }})
    );
    let decided = signal().await;
    assert_eq!(decided.decision.as_deref(), Some("approve"));
    assert_eq!(
        decided.decided_by.as_deref(),
        Some(format!("discord:{ASK_USER}").as_str())
    );

    // Clicked again (approve, or reject): already decided, privately.
    for (interaction, custom_id) in [
        ("786008729715219203", approve.clone()),
        ("786008729715219204", format!("conveyor:wf_reject:{id}")),
    ] {
        let (_, again) = h.post_signed(&click(&dir, interaction, &custom_id)).await;
        assert_eq!(again["data"]["flags"], 64, "{again}");
        let text = again["data"]["content"].as_str().unwrap();
        assert!(text.contains("already decided"), "{text}");
    }
    // A value conveyor never wrote: a private note, nothing decided.
    let (_, forged) = h
        .post_signed(&click(
            &dir,
            "786008729715219205",
            "conveyor:wf_approve:NOT-an-id",
        ))
        .await;
    assert_eq!(forged["data"]["flags"], 64, "{forged}");
    assert_eq!(signal().await.decision.as_deref(), Some("approve"));
    h.settle().await;
    assert!(h.fake.follow_ups().is_empty());
    assert_eq!(h.fake.sent().len(), 1);

    // The run goes on with who approved it.
    engine.resume_due().await.unwrap();
    let run = engine.wait(&run.id, WAIT).await.unwrap();
    assert_eq!(
        run.state,
        conveyor::store::workflows::RunState::Succeeded,
        "{run:?}"
    );
    let sent = h.fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[1].body["content"],
        format!("done by discord:{ASK_USER}")
    );

    // Where no workflow engine decides, a click is only answered, privately.
    let run = engine
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
    engine.wait(run.id(), WAIT).await.unwrap();
    let sent = h.fake.sent();
    let custom_id = sent[2].body["components"][0]["components"][0]["custom_id"]
        .as_str()
        .unwrap();
    let id = custom_id.strip_prefix("conveyor:wf_approve:").unwrap();
    let body = click(&dir, "786008729715219206", custom_id);
    let key = SigningKey::from_bytes(&hex::decode(SECRET_KEY).unwrap().try_into().unwrap());
    let signature = hex::encode(key.sign(format!("1700000100{body}").as_bytes()).to_bytes());
    let headers = vec![
        ("x-signature-ed25519".to_string(), signature),
        (
            "x-signature-timestamp".to_string(),
            "1700000100".to_string(),
        ),
    ];
    let without = ChatContext {
        decider: None,
        ..h.app.chat_context()
    };
    let discord = h.app.platforms.get::<Discord>().unwrap();
    let reply = conveyor::channels::chat::Platform::receive(
        discord,
        without,
        conveyor::channels::chat::WebRequest {
            path: "/discord/interactions",
            headers: &headers,
            body: body.as_bytes(),
        },
    )
    .await
    .unwrap();
    let conveyor::channels::chat::WebReply::Json(note) = reply else {
        panic!("not JSON: {reply:?}")
    };
    assert_eq!(note["data"]["flags"], 64, "{note}");
    assert!(
        h.app
            .store
            .wf_signal(id)
            .await
            .unwrap()
            .unwrap()
            .decision
            .is_none()
    );
}
