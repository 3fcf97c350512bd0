//! `conveyor bench`: measurements that back the figures in issue notes.
//!
//! - [`run`]: a load generator for `POST /v1/messages` of a running server. Each request has
//!   its own idempotency key, user and conversation, so neither the ledger nor the rate limits
//!   short-cut the work: every request runs the whole path (ledger claim, store writes,
//!   retrieval, planner). Latency is measured per request on the client side.
//! - [`redaction`]: redaction and restore throughput on a mixed sample.
//! - [`audit`]: audit log appends per second, hash chain included.
//! - [`sync`]: connector sync throughput (CSV or PostgreSQL → bronze → silver), the re-sync
//!   after 1% changed, and optionally the index feed (documents per second).
//! - [`tpch`]: TPC-H at a scale factor: generated as Parquet, synced, the 22 queries run and
//!   checked against the official answers, and timed against DuckDB when it is installed.
//! - [`bi`]: business questions over TPC-H through the semantic model, offline: how many are
//!   right (against reference SQL) and questions per second with p99.

pub mod bi;
pub mod tpch;
pub mod workflows;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::http::MessageRequest;
use crate::store::{AuditEntry, AuditVerdict, Store};

/// Questions sent in rotation: the demo project's topics plus one with no answer.
pub const DEMO_QUESTIONS: &[&str] = &[
    "How do I request a refund?",
    "What does the Pro plan include?",
    "How do I reset my password?",
    "Where is customer data stored?",
    "What are the support hours?",
    "Is there a discount for nonprofits?",
    "What is the capital of Mongolia?",
];

/// Results at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests that got 200.
    pub ok: usize,
    /// Requests that failed (status or transport).
    pub errors: usize,
    /// Wall time of the level.
    pub seconds: f64,
    /// Successful requests per second.
    pub requests_per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Runs `requests` requests at each concurrency level against `base` (e.g.
/// `http://127.0.0.1:8080`), after a short warm-up.
pub async fn run(
    base: &str,
    key: Option<&str>,
    levels: &[usize],
    requests: usize,
) -> Result<Vec<LevelResult>> {
    let base = base.trim_end_matches('/').to_string();
    let client = bench_client(key, 256)?;
    let url = format!("{base}/v1/messages");
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    level(&client, &url, &run_id, 4, 40.min(requests)).await?;
    let mut out = Vec::new();
    for &c in levels {
        out.push(level(&client, &url, &run_id, c.max(1), requests).await?);
    }
    Ok(out)
}

async fn level(
    client: &reqwest::Client,
    url: &str,
    run_id: &str,
    concurrency: usize,
    requests: usize,
) -> Result<LevelResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        let next = Arc::clone(&next);
        let tag = format!("{run_id}-c{concurrency}");
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let body = MessageRequest {
                    conversation_id: format!("bench-{tag}-{i}"),
                    user: format!("bench-{tag}-{i}"),
                    text: DEMO_QUESTIONS[i % DEMO_QUESTIONS.len()].to_string(),
                };
                let t = Instant::now();
                let result = client
                    .post(&url)
                    .header("Idempotency-Key", format!("bench-{tag}-{i}"))
                    .json(&body)
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status().is_success() => {
                        // Read the whole body: the answer is part of the work.
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    Ok(r) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("HTTP {}", r.status()));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = 0;
    let mut first_error = None;
    while let Some(done) = workers.join_next().await {
        let (l, e, f) = done.map_err(|e| Error::internal("bench worker", e))?;
        latencies.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let pct = percentiles(latencies, url, first_error)?;
    Ok(LevelResult {
        concurrency,
        ok: pct.count(),
        errors,
        seconds,
        requests_per_second: pct.count() as f64 / seconds.max(1e-9),
        p50_ms: pct.ms(0.5),
        p99_ms: pct.ms(0.99),
    })
}

/// Sorted latencies of the requests that succeeded.
struct Percentiles(Vec<Duration>);

impl Percentiles {
    /// How many succeeded.
    fn count(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0 to 1), in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        let last = self.0.len().saturating_sub(1);
        let i = ((last as f64) * p).round() as usize;
        self.0
            .get(i.min(last))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// The latencies sorted, or an error when no request to `url` succeeded.
fn percentiles(
    mut latencies: Vec<Duration>,
    url: &str,
    first_error: Option<String>,
) -> Result<Percentiles> {
    if latencies.is_empty() {
        return Err(Error::Upstream(format!(
            "no request to {url} succeeded ({}); is `conveyor serve` running there?",
            first_error.unwrap_or_default()
        )));
    }
    latencies.sort_unstable();
    Ok(Percentiles(latencies))
}

/// A client for the load generators: pooled connections, the API key on every request.
fn bench_client(key: Option<&str>, pool: usize) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::BadInput("the API key is not valid header text".into()))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .map_err(|e| Error::internal("building the HTTP client", e))
}

/// Results of [`open_loop`].
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopResult {
    /// The arrival rate asked for, requests per second.
    pub rate: u32,
    /// How long requests were sent.
    pub seconds: f64,
    /// Requests sent.
    pub sent: usize,
    /// Requests that got 200.
    pub ok: usize,
    /// Requests that failed (status or transport).
    pub errors: usize,
    /// Requests that started more than 1 ms after they were due (the generator fell behind).
    pub late: usize,
    /// Answers per second over the whole run, until the last answer.
    pub achieved_per_second: f64,
    /// Median latency from when the request was due, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// The slowest, ms.
    pub max_ms: f64,
    /// What the first failure said.
    pub first_error: Option<String>,
}

/// Sends `POST /v1/messages` to `base` at a constant `rate` for `duration` (open loop: a slow
/// answer does not hold the next request back), each with its own key, user and conversation.
/// Latency counts from when each request was due, so a server that falls behind shows it
/// (no coordinated omission).
pub async fn open_loop(
    base: &str,
    key: Option<&str>,
    rate: u32,
    duration: Duration,
) -> Result<OpenLoopResult> {
    if rate == 0 {
        return Err(Error::BadInput(
            "--rate must be at least 1 request per second".into(),
        ));
    }
    let url = format!("{}/v1/messages", base.trim_end_matches('/'));
    let client = bench_client(key, 1024)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    // Warm-up: connections and caches, not measured.
    run(base, key, &[4], 40).await?;
    let total = usize::try_from((duration.as_secs_f64() * f64::from(rate)).round() as u64)
        .unwrap_or(usize::MAX)
        .max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut late = 0;
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        if tokio::time::Instant::now().duration_since(due) > Duration::from_millis(1) {
            late += 1;
        }
        let client = client.clone();
        let url = url.clone();
        let tag = format!("open-{run_id}-{i}");
        tasks.spawn(async move {
            let body = MessageRequest {
                conversation_id: tag.clone(),
                user: tag.clone(),
                text: DEMO_QUESTIONS[i % DEMO_QUESTIONS.len()].to_string(),
            };
            let result = client
                .post(&url)
                .header("Idempotency-Key", &tag)
                .json(&body)
                .send()
                .await;
            let outcome = match result {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    Ok(())
                }
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            (due.elapsed(), outcome)
        });
    }
    let sent_for = started.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let (latency, outcome) = done.map_err(|e| Error::internal("bench request", e))?;
        match outcome {
            Ok(()) => latencies.push(latency),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let all_done = started.elapsed().as_secs_f64();
    let shown_error = first_error.clone();
    let pct = percentiles(latencies, &url, first_error)?;
    Ok(OpenLoopResult {
        rate,
        seconds: sent_for,
        sent: total,
        ok: pct.count(),
        errors,
        late,
        achieved_per_second: pct.count() as f64 / all_done.max(1e-9),
        p50_ms: pct.ms(0.5),
        p99_ms: pct.ms(0.99),
        p999_ms: pct.ms(0.999),
        max_ms: pct.ms(1.0),
        first_error: shown_error,
    })
}

/// Redaction throughput.
#[derive(Debug, Clone, Serialize)]
pub struct RedactionResult {
    /// Sample size in bytes.
    pub bytes: usize,
    /// Placeholders made per run.
    pub placeholders: usize,
    /// Median redact throughput, MB/s (10^6 bytes).
    pub redact_mb_per_s: f64,
    /// Median restore throughput, MB/s.
    pub restore_mb_per_s: f64,
}

/// Redacts and restores a `mib` MiB sample `runs` times; medians.
pub fn redaction(mib: usize, runs: usize) -> RedactionResult {
    use crate::agent::redact::{Redactor, Vault, bench_sample};
    let text = bench_sample(mib.max(1) * 1024 * 1024);
    let redactor = Redactor::default();
    let mut redact_rates = Vec::new();
    let mut restore_rates = Vec::new();
    let mut placeholders = 0;
    for _ in 0..runs.max(1) {
        let mut vault = Vault::default();
        let t = Instant::now();
        let redacted = redactor.redact(&text, &mut vault);
        redact_rates.push(text.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let restored = redactor.restore(&redacted, &vault);
        restore_rates.push(redacted.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
        placeholders = vault.len();
        debug_assert_eq!(restored.len(), text.len());
    }
    RedactionResult {
        bytes: text.len(),
        placeholders,
        redact_mb_per_s: median(&mut redact_rates),
        restore_mb_per_s: median(&mut restore_rates),
    }
}

/// Audit append rate.
#[derive(Debug, Clone, Serialize)]
pub struct AuditResult {
    /// Records appended.
    pub records: usize,
    /// Wall time.
    pub seconds: f64,
    /// Appends per second.
    pub per_second: f64,
    /// Whether the chain verified afterwards.
    pub verified: bool,
}

/// Appends `records` audit records from `concurrency` tasks, then verifies the chain.
pub async fn audit(store: &Store, records: usize, concurrency: usize) -> Result<AuditResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let store = store.clone();
        let next = Arc::clone(&next);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= records {
                    return Ok::<(), Error>(());
                }
                store
                    .audit_append(&AuditEntry {
                        user_id: format!("bench-user-{}", i % 50),
                        channel: "api".into(),
                        conversation: format!("api:bench-{}", i % 200),
                        action: "search_knowledge".into(),
                        arguments: serde_json::json!({"query": "refund policy", "k": 5}),
                        result: serde_json::json!({"results": [{"n": 1, "title": "Refunds", "chunk_id": i}]}),
                        outcome: "ok".into(),
                        duration_ms: 3,
                    })
                    .await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| Error::internal("audit bench worker", e))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let verified = matches!(store.audit_verify().await?, AuditVerdict::Intact { .. });
    Ok(AuditResult {
        records,
        seconds,
        per_second: records as f64 / seconds.max(1e-9),
        verified,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Where `conveyor bench sync` reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncBenchSource {
    /// Generated CSV files (100 of them) read by a `files` connector.
    #[default]
    Csv,
    /// A generated PostgreSQL table read by a `sql` connector with an incremental column; the
    /// URL comes from [`BENCH_POSTGRES_ENV`].
    Postgres,
}

/// This process's peak resident memory (bytes, `VmHWM` in `/proc/self/status`), where the
/// system tells it (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The environment variable `conveyor bench sync --source postgres` reads its URL from.
pub const BENCH_POSTGRES_ENV: &str = "CONVEYOR_BENCH_POSTGRES_URL";

/// What `conveyor bench sync` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct SyncBenchOptions {
    /// Rows to generate.
    pub rows: u64,
    /// Keep everything in this folder instead of a temporary one.
    pub dir: Option<std::path::PathBuf>,
    /// The source.
    pub source: SyncBenchSource,
    /// PostgreSQL: the 1% changed are the newest ids instead of every 100th id.
    pub recent: bool,
    /// Also feed silver into a fresh knowledge index (every row one document) and measure it.
    pub index: bool,
}

/// What `conveyor bench sync` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SyncBench {
    /// The source read.
    pub source: SyncBenchSource,
    /// Rows generated at the source.
    pub rows: u64,
    /// Files they are split into (CSV), 1 for a table.
    pub files: usize,
    /// First sync (source → bronze → silver), seconds.
    pub full_seconds: f64,
    /// Rows per second of the first sync.
    pub full_rows_per_second: f64,
    /// The re-sync after 1% of the rows changed, seconds.
    pub incremental_seconds: f64,
    /// Rows the re-sync read.
    pub incremental_rows_read: u64,
    /// Rows it updated in silver.
    pub incremental_updated: u64,
    /// Rows in silver after both runs.
    pub silver_rows: u64,
    /// The silver table's folder.
    pub silver_path: String,
    /// The index feed, when asked for.
    pub index: Option<IndexBench>,
}

/// The index feed part of `conveyor bench sync --index`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexBench {
    /// Documents of the first (full) feed.
    pub documents: usize,
    /// Its seconds.
    pub seconds: f64,
    /// Documents per second.
    pub docs_per_second: f64,
    /// Documents of the feed after the 1% change (read from the change data feed).
    pub changed_documents: usize,
    /// Its seconds.
    pub changed_seconds: f64,
}

/// Generates `rows` rows at the source (CSV split into 100 files under the folder, or a
/// PostgreSQL table), syncs them into a fresh lakehouse, changes 1% of the rows (one file, or
/// `UPDATE … WHERE id % 100 = 50`, or the newest 1% of ids with `recent`, with the incremental
/// column moved) and syncs again. With
/// `index`, silver is also fed into a fresh knowledge index after each sync.
pub async fn sync(opts: SyncBenchOptions) -> Result<SyncBench> {
    use crate::connectors::sync::{SyncContext, SyncOptions};
    use crate::lakehouse::{Lakehouse, LakehouseConfig};
    const FILES: usize = 100;
    let rows = opts.rows.max(1);
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
    let root = opts.dir.clone().unwrap_or(tmp.path().to_path_buf());
    let io = |what: &str, e: std::io::Error| Error::Upstream(format!("bench: {what}: {e}"));
    std::fs::create_dir_all(root.join("data")).map_err(|e| io("creating data/", e))?;
    std::fs::create_dir_all(root.join("connectors")).map_err(|e| io("creating connectors/", e))?;
    let per_file = rows.div_ceil(FILES as u64).max(1);
    let write_part = |part: usize, bump: f64| -> Result<()> {
        let start = part as u64 * per_file;
        let end = (start + per_file).min(rows);
        let mut text = String::with_capacity((end.saturating_sub(start) as usize) * 64);
        text.push_str("id,customer_id,amount,status,created_at,due_on\n");
        for i in start..end {
            let status = ["paid", "pending", "refunded"][(i % 3) as usize];
            let amount = (i % 10_000) as f64 / 100.0 + bump;
            text.push_str(&format!(
                "{i},{},{amount:.2},{status},2026-01-{:02}T{:02}:00:00Z,2026-02-{:02}\n",
                i % 5_000,
                i % 28 + 1,
                i % 24,
                i % 28 + 1
            ));
        }
        std::fs::write(root.join(format!("data/part-{part:03}.csv")), text)
            .map_err(|e| io("writing the CSV", e))
    };
    let index_spec = if opts.index {
        "[index]\ntitle = \"status\"\ntext = [\"status\", \"customer_id\", \"amount\"]\n"
    } else {
        ""
    };
    let pg_table = "conveyor_bench_events";
    let pg_url = || {
        std::env::var(BENCH_POSTGRES_ENV).map_err(|_| {
            Error::BadInput(format!(
                "bench sync --source postgres reads the database URL from {BENCH_POSTGRES_ENV}, which is not set; e.g. {BENCH_POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test"
            ))
        })
    };
    let (files, connector) = match opts.source {
        SyncBenchSource::Csv => {
            for part in 0..FILES {
                write_part(part, 0.0)?;
            }
            (
                FILES,
                format!(
                    "name = \"events\"\nkind = \"files\"\npath = \"data/*.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n{index_spec}"
                ),
            )
        }
        SyncBenchSource::Postgres => {
            let url = pg_url()?;
            crate::connectors::sql::execute(
                &url,
                &[
                    format!("DROP TABLE IF EXISTS {pg_table}"),
                    format!(
                        "CREATE TABLE {pg_table} AS SELECT i AS id, i % 5000 AS customer_id, \
                         round((i % 10000) / 100.0, 2)::numeric(12,2) AS amount, \
                         (ARRAY['paid','pending','refunded'])[i % 3 + 1] AS status, \
                         timestamptz '2026-01-01' + (i % 28) * interval '1 day' + (i % 24) * interval '1 hour' AS created_at, \
                         date '2026-02-01' + (i % 28) AS due_on, \
                         1 AS version FROM generate_series(0, {}) AS i",
                        rows - 1
                    ),
                    format!("ALTER TABLE {pg_table} ADD PRIMARY KEY (id)"),
                    format!("CREATE INDEX ON {pg_table} (version, id)"),
                    format!("ANALYZE {pg_table}"),
                ],
            )
            .await?;
            (
                1,
                format!(
                    "name = \"events\"\nkind = \"sql\"\nurl_env = \"{BENCH_POSTGRES_ENV}\"\ntable = \"{pg_table}\"\nprimary_key = \"id\"\nincremental_column = \"version\"\nbatch_size = 50000\n{index_spec}"
                ),
            )
        }
    };
    std::fs::write(root.join("connectors/events.toml"), connector)
        .map_err(|e| io("writing the connector", e))?;
    let defs = crate::connectors::load_dir(&root.join("connectors"), &root)?;
    let def = defs
        .first()
        .ok_or_else(|| Error::Internal("bench: the connector did not load".into()))?;
    let store = Store::connect(&format!("sqlite://{}", root.join("bench.db").display())).await?;
    let lake = Lakehouse::open(&LakehouseConfig::default(), &root)?;
    let cx = SyncContext {
        store: &store,
        lake: &lake,
        lease: Duration::from_secs(3600),
    };
    let knowledge = if opts.index {
        let config = crate::config::Config::from_toml("", "bench", &root, &[])?;
        Some(crate::knowledge::Knowledge::open(
            &config.index,
            &config.base_dir,
        )?)
    } else {
        None
    };
    let feed = |knowledge: &crate::knowledge::Knowledge| {
        let indexer = knowledge.indexer();
        let index = Arc::clone(&knowledge.index);
        let (store, lake, def) = (&store, &lake, def);
        async move {
            let started = Instant::now();
            let r = crate::connectors::feed::run(store, lake, &indexer, index.as_ref(), def)
                .await?
                .ok_or_else(|| Error::Internal("bench: the connector has no [index]".into()))?;
            Ok::<_, Error>((r.documents, started.elapsed().as_secs_f64()))
        }
    };

    let started = Instant::now();
    let first = crate::connectors::sync::run(cx, def, SyncOptions::default()).await?;
    let full_seconds = started.elapsed().as_secs_f64();
    if let Some(e) = first.error {
        return Err(Error::Internal(format!(
            "bench: the first sync failed: {e}"
        )));
    }
    let first_feed = match &knowledge {
        Some(k) => Some(feed(k).await?),
        None => None,
    };
    match opts.source {
        SyncBenchSource::Csv => write_part(FILES / 2, 1.0)?,
        SyncBenchSource::Postgres => {
            let which = if opts.recent {
                format!("id >= {}", rows - rows / 100)
            } else {
                "id % 100 = 50".to_string()
            };
            crate::connectors::sql::execute(
                &pg_url()?,
                &[format!(
                    "UPDATE {pg_table} SET amount = amount + 1, version = 2 WHERE {which}"
                )],
            )
            .await?;
        }
    }
    let started = Instant::now();
    let second = crate::connectors::sync::run(cx, def, SyncOptions::default()).await?;
    let incremental_seconds = started.elapsed().as_secs_f64();
    if let Some(e) = second.error {
        return Err(Error::Internal(format!("bench: the re-sync failed: {e}")));
    }
    let second_feed = match &knowledge {
        Some(k) => Some(feed(k).await?),
        None => None,
    };
    let out = lake
        .query("SELECT count(*) AS n FROM silver.events", None)
        .await?
        .render(crate::lakehouse::OutputFormat::Csv)?;
    let silver_rows = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    store.close().await;
    let index = match (first_feed, second_feed) {
        (Some((documents, seconds)), Some((changed_documents, changed_seconds))) => {
            Some(IndexBench {
                documents,
                seconds,
                docs_per_second: documents as f64 / seconds.max(1e-9),
                changed_documents,
                changed_seconds,
            })
        }
        _ => None,
    };
    Ok(SyncBench {
        source: opts.source,
        rows,
        files,
        full_seconds,
        full_rows_per_second: rows as f64 / full_seconds.max(1e-9),
        incremental_seconds,
        incremental_rows_read: second.rows_read,
        incremental_updated: second.updated,
        silver_rows,
        silver_path: lake.table_location(crate::lakehouse::Layer::Silver, "events"),
        index,
    })
}
