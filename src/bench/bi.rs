//! `conveyor bench bi`: business questions over TPC-H, offline, end to end.
//!
//! The TPC-H tables are generated and synced as in `conveyor bench tpch` (or reused from an
//! earlier run in `--dir` at the same scale factor), a semantic model written as a user would
//! ([`MODEL`]) goes to `connectors/tpch.semantic.toml` and the questions ([`QUESTIONS`]) to
//! `eval/bi-questions.jsonl`. Each question's expected answer is a reference SQL query over the
//! tables written by hand, without the model; `conveyor eval bi` checks them. Then every
//! question is asked again and again through [`Semantic::ask`] — the parser, the compiler, the
//! governed views and the query — one at a time and from several tasks at once, with the
//! result cache off (every query runs) and on (unchanged data: hits), and the latencies are
//! reported. The project stays usable: `conveyor --config DIR/conveyor.toml bi
//! "revenue by region in 1995"`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lakehouse::{Lakehouse, Layer};
use crate::semantic::{Asker, Outcome, Semantic, eval};

/// The semantic model of the TPC-H tables.
pub const MODEL: &str = include_str!("tpch.semantic.toml");
/// The questions, each with its reference SQL.
pub const QUESTIONS: &str = include_str!("tpch-bi-questions.jsonl");
/// Marks a data folder synced at a scale factor (its text), so a later run reuses it.
const MARKER: &str = ".conveyor-bench-sf";

/// What `conveyor bench bi` is asked to do.
#[derive(Debug, Clone)]
pub struct BiOptions {
    /// The TPC-H scale factor.
    pub sf: f64,
    /// Keep (and reuse) the project in this folder instead of a temporary one.
    pub dir: Option<PathBuf>,
    /// Timed passes over all the questions.
    pub rounds: usize,
    /// Tasks asking at once in the concurrent pass.
    pub concurrency: usize,
    /// The `conveyor` binary to sync in (a child process); `None` syncs in this process.
    pub sync_exe: Option<PathBuf>,
}

/// Latencies of one pass.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// What the pass measured: `first`, `uncached`, `cached`.
    pub pass: &'static str,
    /// Tasks asking at once.
    pub concurrency: usize,
    /// Questions asked.
    pub questions: usize,
    /// Questions that did not get an answer (a refusal or a question back).
    pub unanswered: usize,
    /// Answers whose rows came from the result cache.
    pub cached: usize,
    /// Wall time.
    pub seconds: f64,
    /// Questions per second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// What `conveyor bench bi` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BiBench {
    /// The scale factor.
    pub sf: f64,
    /// The project folder.
    pub dir: String,
    /// Seconds spent generating and syncing the data; `None` when it was reused.
    pub prepare_seconds: Option<f64>,
    /// Questions in the file.
    pub questions: usize,
    /// Answered as the reference SQL says.
    pub correct: usize,
    /// The misses: question, why, interpretation, SQL.
    pub misses: Vec<serde_json::Value>,
    /// The passes: `first` (each question once after start-up; dimension values are read
    /// before it), then `rounds` passes with the result cache off (`uncached`: every
    /// question plans and runs its query), one at a time and `concurrency` at once, then the
    /// same with the cache on and filled (`cached`: the data did not change, so every answer
    /// is a hit after the table versions are checked).
    pub passes: Vec<Timing>,
    /// Peak resident memory of this process (bytes).
    pub peak_rss_bytes: Option<u64>,
}

/// Makes `root` a TPC-H project at `sf` with its data synced, unless it already is one. Returns
/// the seconds spent, `None` when the data was there.
pub async fn prepare(
    root: &Path,
    sf: f64,
    sync_exe: Option<&Path>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<f64>> {
    let marker = root.join("data").join(MARKER);
    let synced_at = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok());
    if synced_at.is_some_and(|s| (s - sf).abs() < 1e-12) && root.join("conveyor.toml").exists() {
        let config = crate::config::Config::load(&root.join("conveyor.toml"))?;
        let lake = Lakehouse::open(&config.lakehouse, &config.base_dir)?;
        if lake.columns(Layer::Silver, "lineitem").await?.is_some() {
            progress(&format!(
                "reusing TPC-H at scale factor {sf} in {}",
                root.display()
            ));
            return Ok(None);
        }
    }
    let started = Instant::now();
    super::tpch::write_project(root)?;
    let data = root.join("data");
    progress(&format!(
        "generating TPC-H at scale factor {sf} into {}",
        data.display()
    ));
    let d = data.clone();
    tokio::task::spawn_blocking(move || {
        crate::lakehouse::tpch::generate(&d, sf, &|g| eprintln!("  {}: {} rows", g.table, g.rows))
    })
    .await
    .map_err(|e| Error::internal("generating TPC-H", e))??;
    progress("syncing the eight tables (Parquet → bronze → silver)");
    match sync_exe {
        Some(exe) => {
            super::tpch::sync_in_child(exe, root).await?;
        }
        None => super::tpch::sync_here(root).await?,
    }
    std::fs::write(&marker, sf.to_string())
        .map_err(|e| Error::Upstream(format!("bench: writing {}: {e}", marker.display())))?;
    Ok(Some(started.elapsed().as_secs_f64()))
}

/// Writes the model and the questions into the project and opens the model.
pub async fn open_model(root: &Path) -> Result<(Arc<Semantic>, PathBuf)> {
    let io = |what: &Path, e: std::io::Error| {
        Error::Upstream(format!("bench: writing {}: {e}", what.display()))
    };
    let config = crate::config::Config::load(&root.join("conveyor.toml"))?;
    let model = config.connectors_dir().join("tpch.semantic.toml");
    std::fs::write(&model, MODEL).map_err(|e| io(&model, e))?;
    let eval_dir = root.join("eval");
    std::fs::create_dir_all(&eval_dir).map_err(|e| io(&eval_dir, e))?;
    let questions = eval_dir.join("bi-questions.jsonl");
    std::fs::write(&questions, QUESTIONS).map_err(|e| io(&questions, e))?;
    let lake = Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let semantic = Semantic::open(&config.connectors_dir(), &lake)
        .await?
        .ok_or_else(|| Error::Internal("bench: the TPC-H model was not found".into()))?;
    Ok((semantic, questions))
}

/// Runs the benchmark; `progress` hears each step.
pub async fn bi(opts: BiOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<BiBench> {
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
    let root = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let prepare_seconds = prepare(&root, opts.sf, opts.sync_exe.as_deref(), progress).await?;
    let (semantic, file) = open_model(&root).await?;

    progress("checking every answer against its reference SQL");
    let report = eval::evaluate(&semantic, &file).await?;
    let cases: Vec<(String, chrono::NaiveDate)> = eval::read_cases(&file)?
        .into_iter()
        .map(|(_, c)| c.day().map(|d| (c.question, d)))
        .collect::<Result<_>>()?;
    let asks: Arc<Vec<(String, chrono::NaiveDate)>> = Arc::new(cases);

    // A fresh model: the first time each question is asked after start-up.
    let (semantic, _) = open_model(&root).await?;
    semantic.values().await;
    semantic.set_result_cache(false);
    progress("first pass (each question once after start-up)");
    let mut passes = vec![pass("first", &semantic, &asks, 1, 1).await];
    let rounds = opts.rounds.max(1);
    let c = opts.concurrency.max(1);
    for (name, cache) in [("uncached", false), ("cached", true)] {
        semantic.set_result_cache(cache);
        if cache {
            pass(name, &semantic, &asks, 1, 1).await;
        }
        progress(&format!("{name}: {rounds} passes, one question at a time"));
        passes.push(pass(name, &semantic, &asks, rounds, 1).await);
        progress(&format!("{name}: {rounds} passes, {c} questions at a time"));
        passes.push(pass(name, &semantic, &asks, rounds, c).await);
    }
    Ok(BiBench {
        sf: opts.sf,
        dir: root.display().to_string(),
        prepare_seconds,
        questions: report.questions,
        correct: report.correct,
        misses: report.misses,
        passes,
        peak_rss_bytes: super::peak_rss_bytes(),
    })
}

/// Asks every question `rounds` times from `concurrency` tasks; their latencies.
async fn pass(
    name: &'static str,
    semantic: &Arc<Semantic>,
    asks: &Arc<Vec<(String, chrono::NaiveDate)>>,
    rounds: usize,
    concurrency: usize,
) -> Timing {
    let total = asks.len() * rounds;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (semantic, asks, next) = (semantic.clone(), asks.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut unanswered = 0;
            let mut cached = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let Some((question, day)) = asks.get(i % asks.len().max(1)) else {
                    break;
                };
                let t = Instant::now();
                let outcome = semantic.ask(question, &Asker::default(), *day).await;
                times.push(t.elapsed());
                match outcome {
                    Outcome::Answer(a) if a.cached => cached += 1,
                    Outcome::Answer(_) => {}
                    _ => unanswered += 1,
                }
            }
            (times, unanswered, cached)
        }));
    }
    let mut times: Vec<Duration> = Vec::with_capacity(total);
    let mut unanswered = 0;
    let mut cached = 0;
    for t in tasks {
        if let Ok((ts, u, h)) = t.await {
            times.extend(ts);
            unanswered += u;
            cached += h;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    times.sort_unstable();
    let ms = |p: f64| {
        let last = times.len().saturating_sub(1);
        let i = ((last as f64) * p).round() as usize;
        times
            .get(i.min(last))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Timing {
        pass: name,
        concurrency,
        questions: times.len(),
        unanswered,
        cached,
        seconds,
        per_second: times.len() as f64 / seconds.max(1e-9),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
    }
}
