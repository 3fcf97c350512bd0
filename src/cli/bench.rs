//! `conveyor bench …`: load, sync, TPC-H, redaction and audit benchmarks, printed as a table or
//! JSON.

use std::path::Path;
use std::process::ExitCode;

use super::BenchCommand;
use crate::config::Config;
use crate::{Error, Result};

/// `conveyor bench …`.
pub async fn bench(config: &Path, what: BenchCommand) -> Result<ExitCode> {
    match what {
        BenchCommand::Api {
            url,
            rate: Some(rate),
            duration,
            key,
            json,
            ..
        } => {
            let r = crate::bench::open_loop(&url, key.as_deref(), rate, duration.0).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                out!(
                    "open loop at {} req/s for {:.1}s: {} sent, {} ok, {} errors ({} late starts); achieved {:.0} req/s; latency from when due p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                    r.rate,
                    r.seconds,
                    r.sent,
                    r.ok,
                    r.errors,
                    r.late,
                    r.achieved_per_second,
                    r.p50_ms,
                    r.p99_ms,
                    r.p999_ms,
                    r.max_ms
                );
                if let Some(e) = &r.first_error {
                    out!("first error: {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Api {
            url,
            concurrency,
            requests,
            key,
            json,
            ..
        } => {
            let results = crate::bench::run(&url, key.as_deref(), &concurrency, requests).await?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&results).unwrap_or_default()
                );
            } else {
                out!("concurrency   ok  errors   req/s   p50 ms   p99 ms");
                for r in &results {
                    out!(
                        "{:>11} {:>4} {:>7} {:>7.0} {:>8.2} {:>8.2}",
                        r.concurrency,
                        r.ok,
                        r.errors,
                        r.requests_per_second,
                        r.p50_ms,
                        r.p99_ms
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Sync {
            rows,
            dir,
            source,
            changed,
            index,
            json,
        } => {
            use crate::bench::{SyncBenchOptions, SyncBenchSource};
            let r = crate::bench::sync(SyncBenchOptions {
                rows,
                dir,
                source: if source == "postgres" {
                    SyncBenchSource::Postgres
                } else {
                    SyncBenchSource::Csv
                },
                recent: changed == "recent",
                index,
            })
            .await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                return Ok(ExitCode::SUCCESS);
            }
            let what = match r.source {
                SyncBenchSource::Csv => format!("{} rows in {} CSV files", r.rows, r.files),
                SyncBenchSource::Postgres => format!("{} rows of a PostgreSQL table", r.rows),
            };
            out!(
                "sync: {what} → bronze → silver in {:.2}s: {:.0} rows/s; re-sync after 1% changed ({} rows read, {} updated): {:.2}s; silver has {} rows at {}",
                r.full_seconds,
                r.full_rows_per_second,
                r.incremental_rows_read,
                r.incremental_updated,
                r.incremental_seconds,
                r.silver_rows,
                r.silver_path
            );
            if let Some(i) = &r.index {
                out!(
                    "index feed: {} documents in {:.2}s: {:.0} docs/s; after the 1% change: {} documents in {:.2}s",
                    i.documents,
                    i.seconds,
                    i.docs_per_second,
                    i.changed_documents,
                    i.changed_seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Bi {
            sf,
            dir,
            rounds,
            concurrency,
            json,
        } => {
            let opts = crate::bench::bi::BiOptions {
                sf,
                dir,
                rounds,
                concurrency,
                sync_exe: std::env::current_exe().ok(),
            };
            let r = crate::bench::bi::bi(opts, &|line: &str| eprintln!("{line}")).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                for m in &r.misses {
                    out!(
                        "MISS: {}\n  {}\n  understood as: {}\n",
                        m["question"].as_str().unwrap_or(""),
                        m["why"].as_str().unwrap_or(""),
                        m["interpretation"].as_str().unwrap_or("")
                    );
                }
                out!(
                    "TPC-H SF{} in {}: {}/{} questions answered as the reference SQL says",
                    r.sf,
                    r.dir,
                    r.correct,
                    r.questions
                );
                out!(
                    "pass        tasks  questions     q/s   p50 ms   p99 ms   max ms  cached  unanswered"
                );
                for t in &r.passes {
                    out!(
                        "{:<10} {:>6} {:>10} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>11}",
                        t.pass,
                        t.concurrency,
                        t.questions,
                        t.per_second,
                        t.p50_ms,
                        t.p99_ms,
                        t.max_ms,
                        t.cached,
                        t.unanswered
                    );
                }
                if let Some(b) = r.peak_rss_bytes {
                    out!("peak RSS {:.0} MiB", b as f64 / 1048576.0);
                }
            }
            Ok(if r.correct == r.questions {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        BenchCommand::Tpch {
            sf,
            dir,
            runs,
            python,
            no_duckdb,
            duckdb_data,
            json,
        } => {
            let keep = dir.is_some();
            let opts = crate::bench::tpch::TpchOptions {
                sf,
                dir,
                runs,
                sync_exe: std::env::current_exe().ok(),
                python,
                no_duckdb,
                duckdb_data,
            };
            let r = crate::bench::tpch::tpch(opts, &|line: &str| eprintln!("{line}")).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                out!("query  conveyor_s  duckdb_s  rows  answer");
                for q in &r.queries {
                    out!(
                        "Q{:02}    {:>9.3}  {:>8}  {:>5}  {}",
                        q.query,
                        q.seconds,
                        q.duckdb_seconds
                            .map(|d| format!("{d:.3}"))
                            .unwrap_or_else(|| "-".into()),
                        q.rows,
                        match (q.correct, &q.problem) {
                            (Some(true), _) => "correct".to_string(),
                            (_, Some(p)) => format!("WRONG: {p}"),
                            _ => "not checked".to_string(),
                        }
                    );
                }
                out!(
                    "TPC-H SF{}: {} rows generated in {:.1}s; sync {:.1}s ({:.0} rows/s, peak RSS {}); 22 queries {:.2}s{}; {}",
                    r.sf,
                    r.rows,
                    r.generate_seconds,
                    r.sync_seconds,
                    r.sync_rows_per_second,
                    r.sync_peak_rss_bytes
                        .map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
                        .unwrap_or_else(|| "unknown".into()),
                    r.total_seconds,
                    match (r.duckdb_total_seconds, r.ratio()) {
                        (Some(d), Some(x)) => format!(", DuckDB {d:.2}s, ratio {x:.2}×"),
                        _ => format!(
                            " (DuckDB: {})",
                            r.duckdb_note.as_deref().unwrap_or("not run")
                        ),
                    },
                    if r.checked {
                        format!("{}/22 answers correct", r.correct)
                    } else if r.duckdb_data {
                        "answers not checked at this scale factor (official answers are kept for 0.01 and 1)".to_string()
                    } else {
                        "answers not checked: the built-in generator's addresses and comments differ from dbgen's; --duckdb-data checks them".to_string()
                    }
                );
                if keep {
                    out!("data kept in {}", r.dir);
                }
            }
            let ok = !r.checked || r.correct == 22;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BenchCommand::Redact { mib, runs } => {
            let r = crate::bench::redaction(mib, runs);
            out!(
                "redaction of a {:.1} MiB mixed sample ({} placeholders), median of {} runs: redact {:.1} MB/s, restore {:.1} MB/s",
                r.bytes as f64 / 1048576.0,
                r.placeholders,
                runs,
                r.redact_mb_per_s,
                r.restore_mb_per_s
            );
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Audit {
            records,
            concurrency,
            temp,
        } => {
            let tmp = tempfile::tempdir()
                .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
            let url = if temp {
                format!("sqlite://{}", tmp.path().join("audit.db").display())
            } else {
                Config::load(config)?.store_url()?
            };
            let store = crate::store::Store::connect(&url).await?;
            let r = crate::bench::audit(&store, records, concurrency).await?;
            store.close().await;
            out!(
                "audit: {} appends with {} concurrent appenders in {:.2}s: {:.0} appends/s; chain verified: {}",
                r.records,
                concurrency,
                r.seconds,
                r.per_second,
                r.verified
            );
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Workflows {
            runs,
            concurrency,
            postgres,
            resume,
            dir,
            json,
        } => {
            let r = crate::bench::workflows::workflows(
                crate::bench::workflows::WorkflowBenchOptions {
                    runs,
                    concurrency,
                    store_url: postgres,
                    resume,
                    dir,
                },
                &|line: &str| eprintln!("{line}"),
            )
            .await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                out!(
                    "workflows on {}: {} runs ({} failed), {} webhooks in flight, {:.2}s: {:.0} runs/s; webhook to done p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    r.store,
                    r.runs,
                    r.failed,
                    r.concurrency,
                    r.seconds,
                    r.runs_per_second,
                    r.p50_ms,
                    r.p99_ms,
                    r.max_ms
                );
                if let Some(res) = &r.resume {
                    out!(
                        "resume: {} runs in flight; all resumed after {:.0} ms, all finished after {:.0} ms ({} failed)",
                        res.runs,
                        res.all_resumed_ms,
                        res.all_finished_ms,
                        res.failed
                    );
                }
            }
            Ok(if r.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
