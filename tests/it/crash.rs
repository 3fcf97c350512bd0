//! Crash tests with real processes: `conveyor serve` is killed with SIGKILL while many
//! acknowledged messages are still being answered (the fake LLM takes its time), then started
//! again on the same store. Every message a surface acknowledged must be answered, and every
//! reply sent, exactly once: Telegram webhook, Telegram polling, Slack events and async signed
//! webhooks, on SQLite and on PostgreSQL (1,000 messages in flight at the kill); an API client
//! cut off by the kill retries with its key and gets one answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::common::{conveyor, with_pg_schema};
use crate::support::llm_fake::{FakeLlm, Scripted, Wire};
use crate::support::slack::FakeSlack;
use crate::support::telegram::FakeTelegram;

const TG_TOKEN: &str = "123456:CRASH-token";
const TG_SECRET: &str = "Crash_Secret-1";
const SLACK_SECRET: &str = "crash-signing-secret";
const HOOK_SECRET: &str = "crash-hook-secret";
/// How long the fake LLM thinks: long enough that the kill finds the turns in flight.
const THINK: Duration = Duration::from_secs(4);

/// A running `conveyor serve`, killed on drop.
pub(crate) struct Serve {
    child: Child,
    log: PathBuf,
    pub(crate) base: String,
}

impl Serve {
    pub(crate) async fn start(config: &Path, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = conveyor()
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("CONVEYOR__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("CRASH_TG_TOKEN", TG_TOKEN)
            .env("CRASH_TG_SECRET", TG_SECRET)
            .env("CRASH_SLACK_SECRET", SLACK_SECRET)
            .env("CRASH_SLACK_TOKEN", "xoxb-crash")
            .env("CRASH_HOOK_SECRET", HOOK_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut serve = Self {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", serve.base)).send().await
                && r.status() == 200
            {
                return serve;
            }
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("serve exited early with {status}:\n{}", serve.log());
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz within 30 s:\n{}",
                serve.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no hand-back, nothing flushed.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let ok = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve still running 30 s after SIGTERM:\n{}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Fakes {
    telegram: FakeTelegram,
    slack: FakeSlack,
    llm: FakeLlm,
}

impl Fakes {
    async fn start() -> Self {
        Self {
            telegram: FakeTelegram::start("crash_bot").await,
            slack: FakeSlack::start().await,
            llm: FakeLlm::start(
                Wire::OpenAi,
                vec![Scripted::Delayed(THINK, Box::new(Scripted::EchoUser))],
            )
            .await,
        }
    }
}

/// A `conveyor init` project wired to the fakes: an LLM that takes [`THINK`] per turn,
/// Telegram in `telegram_mode`, Slack, and an async signed webhook `crash`; short leases so a
/// crashed process's messages are taken over within seconds.
async fn project(
    dir: &Path,
    fakes: &Fakes,
    store_url: Option<&str>,
    telegram_mode: &str,
) -> PathBuf {
    let out = conveyor().arg("init").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", crate::common::show(&out));
    let path = dir.join("conveyor.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let set = |config: &mut toml::Table, section: &str, values: Value| {
        let table: toml::Table = serde_json::from_value(values).unwrap();
        let entry = config
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        entry.as_table_mut().unwrap().extend(table);
    };
    set(
        &mut config,
        "llm",
        json!({"provider": "openai-compatible", "model": "fake", "base_url": fakes.llm.url,
               "retries": 0, "stream": false}),
    );
    set(
        &mut config,
        "limits",
        json!({"per_user": "off", "per_conversation": "off", "per_address": "off"}),
    );
    set(
        &mut config,
        "gateway",
        json!({"ingress_lease": "3s", "egress_retry_every": "1s"}),
    );
    set(&mut config, "server", json!({"drain_timeout": "500ms"}));
    if let Some(url) = store_url {
        set(&mut config, "store", json!({"url": url}));
    }
    let channels = json!({
        "telegram": {"token_env": "CRASH_TG_TOKEN", "mode": telegram_mode,
                     "secret_token_env": "CRASH_TG_SECRET", "api_url": fakes.telegram.url,
                     "bot_username": "crash_bot", "sends_per_second": 10000},
        "slack": {"signing_secret_env": "CRASH_SLACK_SECRET", "bot_token_env": "CRASH_SLACK_TOKEN",
                  "bot_user_id": "W111", "api_base_url": fakes.slack.url}
    });
    config.insert(
        "channels".into(),
        toml::Value::Table(serde_json::from_value(channels).unwrap()),
    );
    let hooks = json!({"crash": {"verify": "hmac-sha256", "secret_env": "CRASH_HOOK_SECRET",
                                 "text": "{{ payload.question }}", "reply": "async",
                                 "conversation": "{{ payload.question }}"}});
    config.insert(
        "hooks".into(),
        toml::Value::Table(serde_json::from_value(hooks).unwrap()),
    );
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

fn telegram_update(id: i64, text: &str) -> Value {
    json!({
        "update_id": id,
        "message": {
            "message_id": 10,
            "date": 1_764_000_000,
            "chat": {"id": id, "type": "private", "first_name": "Crash"},
            "from": {"id": id, "is_bot": false, "first_name": "Crash"},
            "text": text
        }
    })
}

fn slack_event(i: usize, text: &str) -> String {
    json!({
        "token": "t", "team_id": "T111", "api_app_id": "A111", "type": "event_callback",
        "event_id": format!("EvCRASH{i}"), "event_time": 1_764_000_000,
        "authorizations": [{"team_id": "T111", "user_id": "W111", "is_bot": true}],
        "event": {"type": "app_mention", "text": format!("<@W111> {text}"), "user": "W222",
                  "ts": format!("1764000000.{i:06}"), "team": "T111",
                  "channel": format!("CCRASH{i}"), "event_ts": format!("1764000000.{i:06}")}
    })
    .to_string()
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(data);
    hex::encode(m.finalize().into_bytes())
}

fn question(surface: &str, i: usize) -> String {
    format!("How do I request a refund? [{surface}-{i}]")
}

/// Sends `n` messages on every webhook surface, 64 at a time, and returns the async hook's
/// status URLs; panics unless each was acknowledged.
async fn send_all(base: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut requests = Vec::new();
    for i in 0..n {
        let id = 500_000 + i64::try_from(i).unwrap();
        requests.push(
            client
                .post(format!("{base}/telegram/webhook"))
                .header("x-telegram-bot-api-secret-token", TG_SECRET)
                .json(&telegram_update(id, &question("tg", i))),
        );
        let body = slack_event(i, &question("slack", i));
        let ts = conveyor::channels::verify::unix_now().to_string();
        let sig = format!(
            "v0={}",
            hmac_hex(SLACK_SECRET, format!("v0:{ts}:{body}").as_bytes())
        );
        requests.push(
            client
                .post(format!("{base}/slack/events"))
                .header("content-type", "application/json")
                .header("x-slack-request-timestamp", ts)
                .header("x-slack-signature", sig)
                .body(body),
        );
        let body = json!({"question": question("hook", i)}).to_string();
        let sig = format!("sha256={}", hmac_hex(HOOK_SECRET, body.as_bytes()));
        requests.push(
            client
                .post(format!("{base}/hooks/crash"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body),
        );
    }
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(requests)
        .map(|r| async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut status_urls = Vec::new();
    for (status, body) in answers {
        assert!(
            status == 200 || status == 202,
            "not acknowledged: {status} {body}"
        );
        if let Some(url) = body["status_url"].as_str() {
            status_urls.push(url.to_string());
        }
    }
    assert_eq!(
        status_urls.len(),
        n,
        "every hook delivery gets a status URL"
    );
    status_urls
}

/// When each marker (`[tg-3]`) was sent, from the fakes' recorded sends.
type Sends = BTreeMap<String, Vec<Instant>>;

fn sends_per_marker(texts: impl Iterator<Item = (String, Instant)>, surface: &str) -> Sends {
    let mut seen = Sends::new();
    let prefix = format!("[{surface}-");
    for (text, at) in texts {
        let Some(start) = text.find(&prefix) else {
            continue;
        };
        let rest = &text[start..];
        let Some(end) = rest.find(']') else { continue };
        seen.entry(rest[..=end].to_string()).or_default().push(at);
    }
    seen
}

fn telegram_sends(fake: &FakeTelegram) -> Sends {
    let calls = fake.calls_of("sendMessage");
    let texts = calls
        .into_iter()
        .map(|c| (c.body["text"].as_str().unwrap_or("").to_string(), c.at));
    sends_per_marker(texts, "tg")
}

fn slack_sends(fake: &FakeSlack) -> Sends {
    let calls = fake.calls_of("chat.postMessage");
    let texts = calls
        .into_iter()
        .map(|c| (c.body["text"].as_str().unwrap_or("").to_string(), c.at));
    sends_per_marker(texts, "slack")
}

/// Waits until `n` distinct markers were answered or `limit` passed.
async fn wait_answered<F: Fn() -> Sends>(sends: F, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sends().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every one of the `n` messages answered, each reply sent once. The one exception the
/// platform forces: Telegram has no way to find a message already sent, so a reply the
/// platform received just before a kill -9 whose confirmation the kill lost is sent again
/// after the restart (`kills`: when each kill happened). Any other repeat fails.
/// Returns how many replies were sent twice in that window.
fn assert_once(sends: &Sends, surface: &str, n: usize, kills: &[Instant], log: &str) -> usize {
    let mut in_window = 0;
    for (marker, at) in sends {
        if at.len() == 1 {
            continue;
        }
        let forgiven = surface == "telegram"
            && at.len() == 2
            && kills.iter().any(|k| at[0] < *k && at[1] > *k);
        assert!(
            forgiven,
            "{surface}: {marker} answered {} times; server log:\n{}",
            at.len(),
            tail(log)
        );
        in_window += 1;
    }
    assert_eq!(
        sends.len(),
        n,
        "{surface}: {} of {n} acknowledged messages answered; server log:\n{}",
        sends.len(),
        tail(log)
    );
    in_window
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// How many inbox rows a store holds queued.
async fn queued(store_url: &str) -> i64 {
    let store = conveyor::store::Store::connect(store_url).await.unwrap();
    let n = store
        .inbox_queued()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    store.close().await;
    n
}

/// `n` questions to `POST /v1/messages`, each with its own conversation and
/// `Idempotency-Key`, 64 at a time: the answers that came back (key → message id); requests
/// a kill cut off are missing.
async fn ask_api(base: String, n: usize) -> BTreeMap<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answers: Vec<Option<(String, String)>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let key = format!("crash-api-{i}");
                let resp = client
                    .post(format!("{base}/v1/messages"))
                    .header("idempotency-key", &key)
                    .json(
                        &json!({"conversation_id": format!("api-{i}"), "user": "crash",
                                  "text": question("api", i)}),
                    )
                    .send()
                    .await
                    .ok()?;
                if resp.status() != 200 {
                    return None;
                }
                let body: Value = resp.json().await.ok()?;
                assert!(
                    body["text"].as_str()?.contains(&format!("[api-{i}]")),
                    "{body}"
                );
                Some((key, body["message_id"].as_str()?.to_string()))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    answers.into_iter().flatten().collect()
}

/// `conveyor_inbox_queued` per channel, from `/metrics`.
async fn inbox_gauge(base: &str) -> BTreeMap<String, i64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE conveyor_inbox_queued gauge"),
        "{text}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("conveyor_inbox_queued{channel=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(channel, n)| (channel.to_string(), n.trim().parse().unwrap()))
        .collect()
}

/// Messages per surface: 250 (1,000 in flight at the kill) unless `CONVEYOR_CRASH_N` says
/// otherwise (the full run: 1000 per surface).
fn per_surface() -> usize {
    std::env::var("CONVEYOR_CRASH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(250)
}

async fn webhook_surfaces_survive_kill_9(dir: &Path, store_url: Option<String>) {
    let n = per_surface();
    let fakes = Fakes::start().await;
    let project_dir = dir.join("proj");
    let config = project(&project_dir, &fakes, store_url.as_deref(), "webhook").await;
    let url = store_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            project_dir.join("data/conveyor.db").display()
        )
    });
    let log = dir.join("serve.log");

    let mut first = Serve::start(&config, log.clone()).await;
    // API clients wait for their answers; the kill cuts most of them off.
    let api = tokio::spawn(ask_api(first.base.clone(), n));
    let status_urls = send_all(&first.base, n).await;
    // Killed once the first replies go out, so the kill finds turns still thinking, replies
    // recorded but not sent, and sends whose confirmation it cuts off.
    let deadline = Instant::now() + Duration::from_secs(20);
    while telegram_sends(&fakes.telegram).len() + slack_sends(&fakes.slack).len() < 20
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill9();
    let api_before = api.await.unwrap();
    let killed = Instant::now();
    let left = queued(&url).await;
    let answered_before = telegram_sends(&fakes.telegram).len() + slack_sends(&fakes.slack).len();
    eprintln!("killed with {left} inbox rows queued; {answered_before} chat replies sent before");
    assert!(
        left > 0,
        "the kill found nothing in flight; the test proves nothing"
    );

    let second = Serve::start(&config, log.clone()).await;
    // What waits shows on /metrics.
    let waiting = inbox_gauge(&second.base).await;
    assert!(waiting.values().sum::<i64>() > 0, "{waiting:?}");
    let limit = Duration::from_secs(90 + u64::try_from(n / 10).unwrap());
    wait_answered(|| telegram_sends(&fakes.telegram), n, limit).await;
    wait_answered(|| slack_sends(&fakes.slack), n, limit).await;
    // Anything still to come (a repeat) has time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log_text = second.log();
    let kills = [killed];
    let twice = assert_once(
        &telegram_sends(&fakes.telegram),
        "telegram",
        n,
        &kills,
        &log_text,
    );
    assert_once(&slack_sends(&fakes.slack), "slack", n, &kills, &log_text);
    eprintln!(
        "telegram replies the kill caught between send and confirmation, sent again: {twice}"
    );

    // Every async delivery ends answered.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    for status_url in &status_urls {
        loop {
            let resp = client
                .get(format!("{}{status_url}", second.base))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            if status == 200 {
                let body: Value = resp.json().await.unwrap();
                assert!(body["text"].as_str().unwrap().contains("[hook-"), "{body}");
                break;
            }
            assert_eq!(status, 202, "{status_url}: {}", resp.text().await.unwrap());
            assert!(
                Instant::now() < deadline,
                "{status_url} never answered:\n{}",
                tail(&second.log())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        queued(&url).await,
        0,
        "the inbox is empty once all is answered"
    );

    assert!(inbox_gauge(&second.base).await.is_empty());

    // API clients retry with their keys: every one gets an answer, and one that was answered
    // before the kill gets the same answer again (the planner's turn is recorded once).
    let api_after = ask_api(second.base.clone(), n).await;
    assert_eq!(api_after.len(), n, "every API retry is answered");
    for (key, id) in &api_before {
        assert_eq!(
            api_after.get(key),
            Some(id),
            "{key}: a second answer after the restart"
        );
    }
    eprintln!(
        "API: {} of {n} answered before the kill, all after",
        api_before.len()
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_and_repeats_nothing_on_webhook_surfaces_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    webhook_surfaces_survive_kill_9(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_and_repeats_nothing_on_webhook_surfaces_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    with_pg_schema(|url| async move {
        webhook_surfaces_survive_kill_9(&path, Some(url)).await;
    })
    .await;
}

/// Telegram long polling: updates fetched (the offset moved past them) and then lost to a
/// kill are answered after the restart, once each; and a graceful stop (SIGTERM with a short
/// drain) hands unfinished turns back so the next start answers them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_and_sigterm_lose_nothing_with_telegram_polling() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let fakes = Fakes::start().await;
    let project_dir = dir.path().join("proj");
    let config = project(&project_dir, &fakes, None, "polling").await;
    let url = format!(
        "sqlite://{}",
        project_dir.join("data/conveyor.db").display()
    );
    let log = dir.path().join("serve.log");
    for i in 0..N {
        let id = 700_000 + i64::try_from(i).unwrap();
        fakes
            .telegram
            .push_update(telegram_update(id, &question("tg", i)));
    }

    // Kill as soon as the poller confirmed the first batch past the last update.
    let mut first = Serve::start(&config, log.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fakes.telegram.pending_updates() > 0 {
        assert!(
            Instant::now() < deadline,
            "updates never fetched:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill9();
    let killed = Instant::now();
    let left = queued(&url).await;
    eprintln!("killed with {left} inbox rows queued");
    assert!(
        left > 0,
        "the kill found nothing in flight; the test proves nothing"
    );

    // A second run, stopped gracefully mid-way: turns beyond the drain are handed back.
    // The dead process's leases run out after about 3 s; then this one takes its rows over.
    let mut second = Serve::start(&config, log.clone()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let code = second.terminate();
    assert_eq!(code, Some(0), "{}", tail(&second.log()));
    let after_term = queued(&url).await;
    eprintln!("stopped with {after_term} inbox rows queued");
    assert!(
        after_term > 0,
        "the stop found nothing in flight; the test proves nothing"
    );
    assert!(
        second.log().contains("handing them back"),
        "{}",
        tail(&second.log())
    );

    let third = Serve::start(&config, log.clone()).await;
    let started = Instant::now();
    wait_answered(
        || telegram_sends(&fakes.telegram),
        N,
        Duration::from_secs(90),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let twice = assert_once(
        &telegram_sends(&fakes.telegram),
        "telegram",
        N,
        &[killed],
        &third.log(),
    );
    eprintln!("replies the kill caught between send and confirmation, sent again: {twice}");
    eprintln!(
        "answered the rest {:?} after the last start",
        started.elapsed()
    );
    assert_eq!(queued(&url).await, 0);
}
