//! `conveyor bench workflows`: signed webhook → a three-step workflow (a tool, a metric query,
//! a post to a chat API) → done, measured end to end over HTTP against an in-process server,
//! on SQLite or PostgreSQL; then the resume benchmark: runs in flight left by a dead process,
//! and the time a new engine takes to resume and finish them all.
//!
//! The chat API is a local stand-in for Slack's `chat.postMessage` (what a real workspace
//! would answer), so the post goes through the egress ledger and a real HTTP call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};

/// What to measure.
#[derive(Debug, Clone)]
pub struct WorkflowBenchOptions {
    /// Webhook deliveries (one run each).
    pub runs: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// A PostgreSQL URL for the store (SQLite in the folder otherwise).
    pub store_url: Option<String>,
    /// Runs in flight for the resume benchmark (0: skip it).
    pub resume: usize,
    /// Keep the project here (a temporary folder otherwise).
    pub dir: Option<PathBuf>,
}

/// One pass of deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowBench {
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Runs that finished (`succeeded`).
    pub runs: usize,
    /// Runs that did not.
    pub failed: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Wall time of the pass.
    pub seconds: f64,
    /// Finished runs per second.
    pub runs_per_second: f64,
    /// From the webhook request to the run's end: median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// The resume benchmark, when asked for.
    pub resume: Option<ResumeBench>,
    /// Peak resident memory of this process.
    pub peak_rss_bytes: Option<u64>,
}

/// Runs left in flight by a process that died, resumed by a new engine.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeBench {
    /// Runs in flight (their first step done, the second started, the owner gone).
    pub runs: usize,
    /// From the engine's start to every run claimed by it.
    pub all_resumed_ms: f64,
    /// From the engine's start to every run finished.
    pub all_finished_ms: f64,
    /// Runs that did not finish well.
    pub failed: usize,
}

const WORKFLOW: &str = r#"
name = "bench"
kind = "workflow"
description = "A tool, a metric query and a post"

[[triggers]]
hook = "bench"

[[steps]]
id = "search"
tool = "search_knowledge"
args = { query = "{{ input.title }}", k = 3 }

[[steps]]
id = "revenue"
query = "revenue by plan in 2025"

[[steps]]
id = "post"
publish = "slack:CBENCH"
text = "{{ input.title }}: {{ steps.search.results | length }} passages; {{ steps.revenue.rows | length }} plans"
"#;

const TOKEN: &str = "bench-hook-token";

/// The local `chat.postMessage`: every request gets Slack's success answer (hyper directly:
/// axum is the HTTP surface's).
async fn fake_slack() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::internal("starting the bench's chat API", e))?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| Error::internal("starting the bench's chat API", e))?
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(String::from(r#"{"ok":true,"ts":"1700000000.000100"}"#))
                            .unwrap_or_default(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

/// The demo project with the bench workflow, synced, wired to the local chat API.
async fn project(
    root: &Path,
    slack: &str,
    store_url: Option<&str>,
) -> Result<crate::config::Config> {
    crate::init::init(root, true).await?;
    std::fs::write(root.join("tools/bench.toml"), WORKFLOW)
        .map_err(|e| Error::internal("writing the bench workflow", e))?;
    let path = root.join("conveyor.toml");
    let mut text = std::fs::read_to_string(&path)
        .map_err(|e| Error::internal("reading the bench config", e))?;
    text.push_str(&format!(
        "\n[channels.slack]\nsigning_secret_env = \"BENCH_SLACK_SECRET\"\nbot_token_env = \"BENCH_SLACK_TOKEN\"\napi_base_url = \"{slack}\"\nsends_per_second_per_channel = 100000\n\n[hooks.bench]\nworkflow = \"bench\"\nverify = \"bearer\"\nsecret_env = \"BENCH_HOOK_TOKEN\"\nreply = \"async\"\n"
    ));
    let mut config =
        crate::config::Config::from_toml(&text, &path.display().to_string(), root, &[])?;
    if let Some(url) = store_url {
        config.store.url = url.to_string();
    }
    config.limits.per_user = crate::values::Rate::Off;
    config.limits.per_conversation = crate::values::Rate::Off;
    config.limits.per_address = crate::values::Rate::Off;
    // The demo data, synced for the metric query.
    let (store, lake) = (
        crate::store::Store::connect(&config.store_url()?).await?,
        crate::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?,
    );
    let defs = crate::connectors::load_dir(&config.connectors_dir(), &config.base_dir)?;
    let pipeline = crate::connectors::pipeline::Pipeline {
        store: &store,
        lake: &lake,
        settings: &config.run_settings(),
        index: crate::connectors::pipeline::IndexAccess::OpenWhenNeeded,
        progress: false,
        full: false,
        feed_all: false,
    };
    let report = pipeline
        .run(&defs, &defs, &crate::connectors::pipeline::Quiet, &|| true)
        .await?;
    store.close().await;
    if report.failed() {
        return Err(Error::Internal(
            "syncing the demo data for the bench failed".into(),
        ));
    }
    Ok(config)
}

fn env() -> crate::values::Env {
    crate::values::Env::new(|name: &str| match name {
        "BENCH_SLACK_SECRET" => Some("bench-secret".into()),
        "BENCH_SLACK_TOKEN" => Some("xoxb-bench".into()),
        "BENCH_HOOK_TOKEN" => Some(TOKEN.into()),
        _ => None,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark; `progress` hears what it is doing.
pub async fn workflows(
    opts: WorkflowBenchOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<WorkflowBench> {
    let temp;
    let root = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| Error::internal("a temporary folder", e))?;
            temp.path().join("bench")
        }
    };
    let slack = fake_slack().await?;
    progress("writing and syncing the demo project");
    let config = project(&root, &slack, opts.store_url.as_deref()).await?;
    let store_kind = if opts.store_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let app = crate::app::App::build_with_env(config.clone(), &env()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::internal("binding the bench server", e))?;
    let base = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| Error::internal("binding the bench server", e))?
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(crate::server::run(app.clone(), listener, shutdown.clone()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency.max(1))
        .build()
        .map_err(|e| Error::internal("the bench's HTTP client", e))?;

    // Keys of their own, so a store used before (PostgreSQL) does not answer from old runs.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // Warm-up: the first question plans the query, the first search opens the index.
    for i in 0..20 {
        deliver(&client, &base, &app, &format!("warm-{tag}-{i}")).await?;
    }
    progress(&format!(
        "{} webhook deliveries, {} at once, on {store_kind}",
        opts.runs, opts.concurrency
    ));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (client, base, app, next) =
            (client.clone(), base.clone(), app.clone(), Arc::clone(&next));
        let tag = tag.clone();
        let total = opts.runs;
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                match deliver(&client, &base, &app, &format!("run-{tag}-{i}")).await {
                    Ok((ms, true)) => times.push(ms),
                    Ok((_, false)) | Err(_) => failed += 1,
                }
            }
            (times, failed)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (ts, f) = t.await.map_err(|e| Error::internal("a bench task", e))?;
        times.extend(ts);
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);

    shutdown.cancel();
    let _ = server.await;
    app.workflows.halt().await;
    // The next engine opens the same project (its embedded index has one owner at a time).
    drop(app);
    let resume = if opts.resume > 0 {
        progress(&format!(
            "resume: {} runs left in flight by a dead process",
            opts.resume
        ));
        Some(resume(&config, opts.resume, progress).await?)
    } else {
        None
    };
    Ok(WorkflowBench {
        store: store_kind.into(),
        runs: times.len(),
        failed,
        concurrency: opts.concurrency,
        seconds,
        runs_per_second: times.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: times.last().copied().unwrap_or(0.0),
        resume,
        peak_rss_bytes: super::peak_rss_bytes(),
    })
}

/// One delivery: POST the webhook, wait for its run; milliseconds and whether it succeeded.
async fn deliver(
    client: &reqwest::Client,
    base: &str,
    app: &crate::app::App,
    key: &str,
) -> Result<(f64, bool)> {
    let t0 = Instant::now();
    let resp = client
        .post(format!("{base}/hooks/bench"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .json(&json!({"title": format!("refund policy {key}")}))
        .send()
        .await
        .map_err(|e| Error::Upstream(format!("bench webhook: {e}")))?;
    if resp.status().as_u16() != 202 {
        return Ok((0.0, false));
    }
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| Error::Upstream(format!("bench webhook answer: {e}")))?;
    let id = body["run"].as_str().unwrap_or_default().to_string();
    let run = app.workflows.wait(&id, Duration::from_secs(60)).await?;
    Ok((
        t0.elapsed().as_secs_f64() * 1000.0,
        run.state == crate::store::workflows::RunState::Succeeded,
    ))
}

/// `n` runs whose first step finished and second started under an owner that is gone, then a
/// fresh engine (a new `App`) resumes them: how long until all are claimed and all finished.
async fn resume(
    config: &crate::config::Config,
    n: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ResumeBench> {
    use crate::store::workflows::{JournalOp, NewRun, Started, StepState};
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut batch = Vec::new();
    for i in 0..n {
        let s = store.clone();
        let tag = tag.clone();
        batch.push(tokio::spawn(async move {
            let started = s
                .wf_start(
                    &NewRun {
                        workflow: "bench".into(),
                        idem_key: Some(format!("resume-{tag}-{i}")),
                        input: json!({"title": format!("refund {i}")}),
                        trigger_kind: "hook".into(),
                        trigger: json!({}),
                        timeout: Duration::from_secs(3600),
                        parent: None,
                        concurrency: None,
                    },
                    Some(Duration::from_millis(1)),
                )
                .await?;
            if let Started::New {
                lease: Some(lease), ..
            } = started
            {
                s.wf_journal(
                    &lease,
                    vec![
                        JournalOp::Begin {
                            path: "search".into(),
                            attempt: 1,
                            input: json!({}),
                        },
                        JournalOp::End {
                            path: "search".into(),
                            attempt: 1,
                            state: StepState::Succeeded,
                            output: Some(json!({"results": [{"text": "x"}]})),
                            error: None,
                        },
                        JournalOp::Begin {
                            path: "revenue".into(),
                            attempt: 1,
                            input: json!({}),
                        },
                    ],
                    Duration::from_millis(1),
                )
                .await?;
            }
            Ok::<_, Error>(())
        }));
        if batch.len() >= 256 {
            for t in batch.drain(..) {
                t.await
                    .map_err(|e| Error::internal("preparing runs", e))??;
            }
        }
    }
    for t in batch {
        t.await
            .map_err(|e| Error::internal("preparing runs", e))??;
    }
    store.close().await;
    // Their leases (1 ms) have run out: the owner is gone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    progress("starting a new engine over them");
    let t0 = Instant::now();
    let app = crate::app::App::build_with_env(config.clone(), &env()).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let engine = app.workflows.clone();
    let runner = tokio::spawn(engine.clone().run(shutdown.clone()));
    let mut all_resumed = None;
    loop {
        let waiting = app.store.wf_counts().await?;
        let count = |s: &str| {
            waiting
                .iter()
                .filter(|(w, st, _)| w == "bench" && st == s)
                .map(|(_, _, c)| *c)
                .sum::<i64>()
        };
        let (queued, running, succeeded, failed) = (
            count("queued"),
            count("running"),
            count("succeeded"),
            count("failed"),
        );
        if all_resumed.is_none() && app.store.wf_orphans().await? == 0 {
            all_resumed = Some(t0.elapsed());
        }
        // Orphans are `running` with a dead lease until claimed; done when none is left.
        if running == 0 && queued == 0 {
            let total_done = succeeded + failed;
            progress(&format!("{total_done} finished"));
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(Error::Upstream(format!(
                "resume: {running} runs still running after 10 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished = t0.elapsed();
    shutdown.cancel();
    let _ = runner.await;
    let failed = app
        .store
        .wf_counts()
        .await?
        .iter()
        .filter(|(w, st, _)| w == "bench" && st == "failed")
        .map(|(_, _, c)| *c)
        .sum::<i64>();
    Ok(ResumeBench {
        runs: n,
        all_resumed_ms: all_resumed.unwrap_or(finished).as_secs_f64() * 1000.0,
        all_finished_ms: finished.as_secs_f64() * 1000.0,
        failed: usize::try_from(failed).unwrap_or(0),
    })
}
