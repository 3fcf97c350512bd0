//! Workflow runs across kill -9 and across processes, with real `conveyor serve` processes on
//! SQLite and PostgreSQL. Thirty runs of a chain of four slow HTTP calls and a post are in
//! flight when the process is killed, again and again at different moments (between steps
//! and during them); then every run must finish, no finished step may run again, an
//! interrupted step may run again only with its own idempotency key, and every post is
//! written once. On PostgreSQL two processes share the runs and a per-second schedule, and
//! one of them is killed mid-way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::{conveyor, with_pg_schema};
use crate::crash::Serve;

/// Requests seen, by `Idempotency-Key`.
#[derive(Clone, Default)]
struct Slow {
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// How long each call takes: a kill often lands in the middle of one.
const CALL: Duration = Duration::from_millis(300);

const RUNS: usize = 30;

async fn slow_call(State(s): State<Slow>, headers: HeaderMap) -> String {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    *s.seen.lock().unwrap().entry(key).or_default() += 1;
    tokio::time::sleep(CALL).await;
    json!({"ok": true}).to_string()
}

async fn start_slow() -> (Slow, String) {
    let slow = Slow::default();
    let app = Router::new()
        .route("/call", post(slow_call))
        .with_state(slow.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/call", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (slow, url)
}

fn chain(url: &str, schedule: bool) -> String {
    let mut text = String::from(
        "name = \"chain\"\nkind = \"workflow\"\ndescription = \"Four slow calls and a post\"\n",
    );
    if schedule {
        text.push_str("\n[[triggers]]\nschedule = \"* * * * * *\"\n");
    }
    for i in 1..=4 {
        text.push_str(&format!(
            "\n[[steps]]\nid = \"s{i}\"\nhttp = {{ method = \"POST\", url = \"{url}\", body = {{ step = {i}, run = \"{{{{ run.id }}}}\" }} }}\n"
        ));
    }
    text.push_str(
        "\n[[steps]]\nid = \"post\"\npublish = \"web:chain\"\ntext = \"done {{ run.id }}\"\n",
    );
    text
}

/// A `conveyor init` project with the chain workflow, short leases, and the store at `url`.
fn project(dir: &Path, call_url: &str, store_url: Option<&str>, schedule: bool) -> PathBuf {
    let out = conveyor().arg("init").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", crate::common::show(&out));
    std::fs::write(dir.join("tools/chain.toml"), chain(call_url, schedule)).unwrap();
    let path = dir.join("conveyor.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let mut set = |section: &str, values: Value| {
        let table: toml::Table = serde_json::from_value(values).unwrap();
        config
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap()
            .extend(table);
    };
    set(
        "workflows",
        json!({"lease": "2s", "poll": "200ms", "allow_private": ["127.0.0.1"]}),
    );
    set(
        "limits",
        json!({"per_user": "off", "per_conversation": "off", "per_address": "off"}),
    );
    set("server", json!({"drain_timeout": "500ms"}));
    if let Some(url) = store_url {
        set("store", json!({"url": url}));
    }
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

async fn start_runs(base: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..RUNS {
        let resp = client
            .post(format!("{base}/v1/workflows/chain/runs"))
            .json(&json!({"input": {}, "idempotency_key": format!("crash-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["run"]["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until every run in `ids` succeeded (or fails the test with the stragglers).
async fn wait_all(serve: &Serve, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut left = Vec::new();
        for id in ids {
            let run = get(&serve.base, &format!("/v1/workflows/runs/{id}")).await;
            let state = run["run"]["state"].as_str().unwrap_or("?").to_string();
            assert_ne!(state, "failed", "{run}");
            if state != "succeeded" {
                left.push((id.clone(), state));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs unfinished: {left:?}\n{}",
            left.len(),
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the journal and the world say about the runs: each step finished once, a step ran
/// again only after an interrupted attempt (never after it succeeded) and only with its own
/// key, and each run posted once. Returns how many attempts a kill interrupted.
async fn check_exactly_once(base: &str, ids: &[String], slow: &Slow) -> usize {
    let seen = slow.seen.lock().unwrap().clone();
    let mut interrupted = 0;
    for id in ids {
        let detail = get(base, &format!("/v1/workflows/runs/{id}")).await;
        let steps = detail["steps"].as_array().unwrap();
        for path in ["s1", "s2", "s3", "s4", "post"] {
            let rows: Vec<&Value> = steps.iter().filter(|s| s["path"] == path).collect();
            let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
            // Every attempt but the last was cut short by a kill; the last succeeded.
            assert_eq!(states.last(), Some(&"succeeded"), "{id} {path}: {states:?}");
            assert!(
                states[..states.len() - 1].iter().all(|s| *s == "running"),
                "{id} {path}: a step ran again after it finished: {states:?}"
            );
            interrupted += rows.len() - 1;
            if path != "post" {
                let key = format!("wf:{id}:{path}");
                let requests = seen.get(&key).copied().unwrap_or(0);
                assert!(requests >= 1, "{key} never called");
                assert!(
                    requests <= rows.len(),
                    "{key}: {requests} requests for {} attempts",
                    rows.len()
                );
            }
        }
    }
    let feed = get(base, "/v1/workflows/feed/chain").await;
    let posts: Vec<&str> = feed["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    for id in ids {
        let n = posts.iter().filter(|t| t.contains(id.as_str())).count();
        assert_eq!(n, 1, "run {id} posted {n} times");
    }
    interrupted
}

async fn kill_9_between_and_during_steps(dir: &Path, store_url: Option<String>) {
    let (slow, call_url) = start_slow().await;
    let proj = dir.join("proj");
    let config = project(&proj, &call_url, store_url.as_deref(), false);
    let log = dir.join("serve.log");
    let mut serve = Serve::start(&config, log.clone()).await;
    let ids = start_runs(&serve.base).await;
    // Killed at different moments of the chain: early (first calls in flight), between and
    // during later steps.
    let mut kills = 0;
    for pause in [450u64, 700, 350, 900, 600] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        serve.kill9();
        kills += 1;
        serve = Serve::start(&config, log.clone()).await;
    }
    wait_all(&serve, &ids, Duration::from_secs(120)).await;
    let interrupted = check_exactly_once(&serve.base, &ids, &slow).await;
    eprintln!("{kills} kills; {interrupted} step attempts interrupted and retried");
    assert!(
        interrupted > 0,
        "no kill caught a step mid-way; the test proves nothing"
    );
    let runs = get(&serve.base, "/v1/workflows/runs?workflow=chain&limit=100").await;
    let resumed = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["attempts"].as_i64().unwrap() > 1)
        .count();
    assert!(resumed > 0, "no run was resumed by a later process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_run_resumes_every_run_without_repeating_a_step_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_between_and_during_steps(dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_run_resumes_every_run_without_repeating_a_step_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    with_pg_schema(|url| async move {
        kill_9_between_and_during_steps(&path, Some(url)).await;
    })
    .await;
}

/// Two `serve` processes on one PostgreSQL: they share the runs; the one that started them is
/// killed mid-way and the other finishes its runs after their lease; a per-second schedule
/// fires once per second, not once per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_runs_and_fire_a_schedule_once_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    with_pg_schema(|url| async move {
        let (slow, call_url) = start_slow().await;
        let proj = path.join("proj");
        let config = project(&proj, &call_url, Some(&url), true);
        // The second process: same store and lakehouse, its own embedded index (one process
        // holds an embedded index; replicas share a Qdrant server instead).
        let config_b = proj.join("conveyor-b.toml");
        let mut table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
        table
            .get_mut("index")
            .and_then(toml::Value::as_table_mut)
            .unwrap()
            .insert("path".into(), toml::Value::String("data/index-b".into()));
        std::fs::write(&config_b, toml::to_string(&table).unwrap()).unwrap();
        let mut a = Serve::start(&config, path.join("a.log")).await;
        let b = Serve::start(&config_b, path.join("b.log")).await;
        let ids = start_runs(&a.base).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        a.kill9();
        let killed = chrono::Utc::now().timestamp_millis();
        wait_all(&b, &ids, Duration::from_secs(120)).await;
        let interrupted = check_exactly_once(&b.base, &ids, &slow).await;
        eprintln!(
            "{interrupted} step attempts interrupted by the kill and finished by the other process"
        );
        assert!(interrupted > 0, "the kill caught nothing mid-way");
        // Scheduled runs: one per fire time, from either process, all finished or finishing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let runs = get(&b.base, "/v1/workflows/runs?workflow=chain&limit=1000").await;
        let scheduled: Vec<&Value> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trigger_kind"] == "schedule")
            .collect();
        assert!(scheduled.len() >= 3, "{}", scheduled.len());
        let mut fire_times: Vec<&str> = scheduled
            .iter()
            .map(|r| r["trigger"]["fire_time"].as_str().unwrap())
            .collect();
        let n = fire_times.len();
        fire_times.sort_unstable();
        fire_times.dedup();
        assert_eq!(fire_times.len(), n, "a fire time ran twice");
        // While both processes ran, every second fired (none lost to the other process).
        let both: Vec<i64> = fire_times
            .iter()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
            .filter(|t| *t * 1000 < killed)
            .collect();
        if let (Some(first), Some(last)) = (both.first(), both.last()) {
            assert_eq!(
                both.len() as i64,
                last - first + 1,
                "a second without its run: {both:?}"
            );
        }
        drop(b);
    })
    .await;
}
