//! The `conveyor` command line: parse arguments, set up logging, load the config, and call into
//! the library. Nothing else lives here.

/// mimalloc instead of the system allocator: glibc's per-thread arenas keep what a large sync
/// freed, so one `conveyor sync` of TPC-H SF10 peaked at 2.2 GB with them and 1.2 GB with two
/// arenas; mimalloc returns freed memory and keeps peak memory close to what is live.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use conveyor::app::App;
use conveyor::channels::cli::{self, Target};
use conveyor::config::Config;
use conveyor::knowledge::Knowledge;
use conveyor::knowledge::indexer::IndexOptions;
use conveyor::store::AuditVerdict;
use conveyor::tools::OutcomeKind;
use conveyor::{Error, Result};

/// `println!` that ignores a closed stdout (`conveyor ask … | head -1`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "conveyor",
    version,
    about = "A chat-first agent gateway: ask your documents from the web, the API and the terminal"
)]
struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "CONVEYOR_CONFIG",
        default_value = "conveyor.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a starter project (config, prompts, tools, demo documents, demo data and its
    /// connectors) into DIR and index it.
    Init {
        /// Folder to create the project in.
        dir: PathBuf,
        /// Overwrite the starter files if DIR already has a conveyor.toml.
        #[arg(long)]
        force: bool,
    },
    /// Ingest Markdown, text, HTML and JSON/JSONL files or folders into the knowledge index.
    Index {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also remove chunks of previously indexed files that no longer exist.
        #[arg(long)]
        prune: bool,
        /// Re-ingest files even when they did not change.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the HTTP server: API, web chat page, health and metrics.
    Serve,
    /// Chat in the terminal.
    Chat {
        /// Continue this conversation instead of starting a new one.
        #[arg(long)]
        conversation: Option<String>,
        /// Talk to a running server (e.g. http://127.0.0.1:8080) instead of in-process.
        #[arg(long)]
        server: Option<String>,
    },
    /// Ask one question and print the answer.
    Ask {
        /// The question.
        question: String,
        /// Print the answer as JSON (text, citations, ids).
        #[arg(long)]
        json: bool,
        /// Talk to a running server (e.g. http://127.0.0.1:8080) instead of in-process.
        #[arg(long)]
        server: Option<String>,
        /// Conversation id (a new one by default).
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Load-test a running server's POST /v1/messages and print throughput and latency.
    /// Measure: the HTTP API of a running server, redaction throughput, audit append rate.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Evaluate things conveyor does.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// List the tools the agent may call, or call one by hand (policy and audit apply).
    Tools {
        #[command(subcommand)]
        what: ToolsCommand,
    },
    /// Check or show the audit log of tool calls.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// Who may talk to the bot: approve pairing codes, list, grant and revoke access.
    Access {
        #[command(subcommand)]
        what: AccessCommand,
    },
    /// Sync connectors (connectors/*.toml) into the lakehouse: bronze, then silver.
    Sync {
        /// Only this connector (all of them by default).
        name: Option<String>,
        /// Ignore the saved cursors and read every source in full: rows the source no longer
        /// has are deleted from silver (use after changing a connector's query or filter).
        #[arg(long)]
        full: bool,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Maintain connectors' tables: compact bronze's and silver's small files (silver
    /// Z-ordered by the connector's cluster_by), then vacuum files older versions no longer
    /// need.
    Optimize {
        /// Only this connector (all of them by default).
        name: Option<String>,
        /// Keep the files of versions younger than this (time travel and readers of older
        /// versions need them); below Delta's default of a week only when you say so.
        #[arg(long, default_value = "7d")]
        retain: conveyor::config::HumanDuration,
        /// Compact only; delete no files.
        #[arg(long)]
        no_vacuum: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the history of sync runs, newest first.
    Runs {
        /// Only this connector's runs.
        name: Option<String>,
        /// How many runs.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        n: usize,
        /// Print the runs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a read-only SQL query over the lakehouse (bronze.NAME, silver.NAME or NAME, gold.NAME).
    Sql {
        /// The query, e.g. "SELECT country, count(*) FROM customers GROUP BY country".
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
        /// Most rows to print (at most lakehouse.sql_row_limit).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Check the configuration, the store, the index and every configured channel (secrets
    /// present and well-formed, the platforms' APIs reachable), with advice for each problem.
    Doctor {
        /// Do not contact the chat platforms; check only what is local.
        #[arg(long)]
        offline: bool,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `conveyor sql --format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SqlFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Let in the user who was given CODE (as printed to them by the bot).
    Approve {
        /// The pairing code, like ABCD-2345 (case and dashes do not matter).
        code: String,
    },
    /// Show who was let in and the codes waiting for approval.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a user in directly, by platform user id.
    Grant {
        /// slack, discord or telegram.
        channel: String,
        /// The platform's user id (Slack U…, a Discord or Telegram number).
        user: String,
    },
    /// Take a user's access away (users listed in [access.*] users stay allowed).
    Revoke {
        /// slack, discord or telegram.
        channel: String,
        /// The platform's user id.
        user: String,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// List every tool: name, kind, whether it is sensitive, description.
    List {
        /// Print the tools as JSON, with their parameter schemas and policies.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool the way the agent would: policy check, argument check, audit record.
    Call {
        /// The tool's name.
        name: String,
        /// The arguments, as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Call as this user (default: the login name).
        #[arg(long)]
        user: Option<String>,
        /// Call from this channel.
        #[arg(long, default_value = "cli")]
        channel: String,
        /// A role of the caller; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and name the first record that does not match.
    Verify,
    /// Show the most recent records, oldest first.
    Tail {
        /// How many records.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        n: usize,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Load-test a running server's POST /v1/messages: throughput and latency per concurrency.
    Api {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Requests per level.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sync throughput: generated CSV (100 files) or a PostgreSQL table → bronze → silver,
    /// then a re-sync after 1% of the rows changed; with --index also the index feed. Uses a
    /// temporary folder unless --dir is given.
    Sync {
        /// Rows to generate.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Keep the generated data, store and lakehouse in this folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where the rows come from: csv, or postgres (a table generated in the database at
        /// CONVEYOR_BENCH_POSTGRES_URL).
        #[arg(long, default_value = "csv", value_parser = ["csv", "postgres"])]
        source: String,
        /// Which 1% of a PostgreSQL table's rows change before the re-sync: scattered (every
        /// 100th id, so every silver file is rewritten) or recent (the newest 1% of ids, as
        /// when recent orders are updated).
        #[arg(long, default_value = "scattered", value_parser = ["scattered", "recent"])]
        changed: String,
        /// Also feed silver into a fresh knowledge index and measure documents per second.
        #[arg(long)]
        index: bool,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// TPC-H end to end: generate the eight tables as Parquet at a scale factor, sync them
    /// (Parquet → bronze → silver, in a child process whose peak memory is reported), run the
    /// 22 queries, check the answers (scale factors 0.01 and 1) and, when Python's `duckdb`
    /// package is installed, time DuckDB on the same files.
    Tpch {
        /// Scale factor (1 = 6,001,215 lineitem rows).
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Keep the generated data, store and lakehouse in this folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Timed runs of each query (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Python with the duckdb package (default: CONVEYOR_DUCKDB_PYTHON,
        /// ~/.cache/conveyor-duckdb/bin/python, python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Do not run DuckDB.
        #[arg(long)]
        no_duckdb: bool,
        /// Generate the data with DuckDB's dbgen (pip install duckdb duckdb-extension-tpch)
        /// instead of the built-in generator.
        #[arg(long)]
        duckdb_data: bool,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Personal-data redaction and restore throughput (MB/s) on a mixed sample text.
    Redact {
        /// Size of the sample text in MiB.
        #[arg(long, default_value_t = 8)]
        mib: usize,
        /// Timed runs (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Audit log appends per second (hash chain included) on the configured store, or on a
    /// temporary SQLite file with --temp.
    Audit {
        /// Records to append.
        #[arg(long, default_value_t = 2000)]
        records: usize,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Use a temporary SQLite store instead of the configured one.
        #[arg(long)]
        temp: bool,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Retrieval quality (nDCG@10, Recall@100) on a BEIR-layout collection.
    Retrieval {
        /// Folder with corpus.jsonl, queries.jsonl and qrels/test.tsv.
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve);
    init_tracing(serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Config(_) | Error::BadInput(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn init_tracing(serving: bool) {
    // qdrant-edge warns about an mmap capability probe on every start, and deltalake about
    // merge metrics it derives itself; both are noise for users.
    let default = if serving {
        "info,qdrant_edge=error,deltalake_core=error,buoyant_kernel=error"
    } else {
        "warn,qdrant_edge=error,deltalake_core=error,buoyant_kernel=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Tools { what } => tools(&cli.config, what).await,
        Command::Audit { what } => audit(&cli.config, what).await,
        Command::Access { what } => access(&cli.config, what).await,
        Command::Sync { name, full, json } => sync(&cli.config, name.as_deref(), full, json).await,
        Command::Optimize {
            name,
            retain,
            no_vacuum,
            json,
        } => {
            optimize(
                &cli.config,
                name.as_deref(),
                (!no_vacuum).then_some(retain.0),
                json,
            )
            .await
        }
        Command::Runs { name, n, json } => runs(&cli.config, name.as_deref(), n, json).await,
        Command::Sql {
            query,
            format,
            limit,
        } => sql(&cli.config, &query, format, limit).await,
        Command::Doctor { offline, json } => {
            let report = conveyor::doctor::run(&cli.config, !offline).await;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                for check in &report.checks {
                    out!("{}", check);
                }
                out!("\n{}", report.summary());
            }
            Ok(if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Init { dir, force } => {
            let report = conveyor::init::init(&dir, force).await?;
            out!(
                "Created a conveyor project in {} ({} files) and indexed {} documents into {} chunks.",
                report.dir.display(),
                report.written.len(),
                report.index.documents,
                report.index.chunks
            );
            let cfg = report.dir.join("conveyor.toml");
            out!("\nNext:");
            out!(
                "  conveyor --config {} serve        # web chat on http://127.0.0.1:8080",
                cfg.display()
            );
            out!(
                "  conveyor --config {} ask \"How do I request a refund?\"",
                cfg.display()
            );
            out!("  conveyor --config {} chat", cfg.display());
            out!(
                "  conveyor --config {} sync         # demo CSVs → Delta tables in data/lake",
                cfg.display()
            );
            out!(
                "  conveyor --config {} sql \"SELECT plan, count(*) AS customers FROM customers GROUP BY plan\"",
                cfg.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            paths,
            prune,
            force,
            json,
        } => {
            let config = Config::load(&cli.config)?;
            let knowledge = Knowledge::open(&config.index, &config.base_dir)?;
            let report = knowledge
                .indexer()
                .index_paths(
                    &config.index_path(),
                    &paths,
                    IndexOptions {
                        prune,
                        progress: !json,
                        force,
                    },
                )
                .await?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                let secs = report.elapsed.as_secs_f64();
                out!(
                    "Indexed {} of {} files ({} unchanged, {} pruned): {} documents, {} chunks in {:.2}s ({:.0} chunks/s).",
                    report.files_indexed,
                    report.files_seen,
                    report.files_unchanged,
                    report.files_pruned,
                    report.documents,
                    report.chunks,
                    secs,
                    report.chunks as f64 / secs.max(1e-9)
                );
                for e in &report.errors {
                    eprintln!("not indexed: {e}");
                }
            }
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve => serve(&cli.config).await.map(|()| ExitCode::SUCCESS),
        Command::Chat {
            conversation,
            server,
        } => {
            let target = target(&cli.config, server.as_deref()).await?;
            let id = conversation.unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
            cli::chat(&target, &id).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask {
            question,
            json,
            server,
            conversation,
        } => {
            let target = target(&cli.config, server.as_deref()).await?;
            let id = conversation.unwrap_or_else(|| format!("ask-{}", uuid::Uuid::new_v4()));
            let answer = target.ask(&id, &cli::local_user(), &question).await?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                );
            } else {
                out!("{}", answer.text);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                BenchCommand::Api {
                    url,
                    concurrency,
                    requests,
                    json,
                },
        } => {
            let results = conveyor::bench::run(&url, &concurrency, requests).await?;
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
        Command::Bench {
            what:
                BenchCommand::Sync {
                    rows,
                    dir,
                    source,
                    changed,
                    index,
                    json,
                },
        } => {
            use conveyor::bench::{SyncBenchOptions, SyncBenchSource};
            let r = conveyor::bench::sync(SyncBenchOptions {
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
        Command::Bench {
            what:
                BenchCommand::Tpch {
                    sf,
                    dir,
                    runs,
                    python,
                    no_duckdb,
                    duckdb_data,
                    json,
                },
        } => {
            let keep = dir.is_some();
            let opts = conveyor::bench::tpch::TpchOptions {
                sf,
                dir,
                runs,
                sync_exe: std::env::current_exe().ok(),
                python,
                no_duckdb,
                duckdb_data,
            };
            let r = conveyor::bench::tpch::tpch(opts, &|line: &str| eprintln!("{line}")).await?;
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
        Command::Bench {
            what: BenchCommand::Redact { mib, runs },
        } => {
            let r = conveyor::bench::redaction(mib, runs);
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
        Command::Bench {
            what:
                BenchCommand::Audit {
                    records,
                    concurrency,
                    temp,
                },
        } => {
            let tmp = tempfile::tempdir()
                .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
            let url = if temp {
                format!("sqlite://{}", tmp.path().join("audit.db").display())
            } else {
                Config::load(&cli.config)?.store_url()?
            };
            let store = conveyor::store::Store::connect(&url).await?;
            let r = conveyor::bench::audit(&store, records, concurrency).await?;
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
        Command::Eval {
            what: EvalCommand::Retrieval { dir, json },
        } => {
            // The configured pipeline when there is a config, the defaults otherwise.
            let config = if cli.config.exists() {
                Config::load(&cli.config)?
            } else {
                Config::from_toml("", "defaults", Path::new("."), &[])?
            };
            let embedder = std::sync::Arc::new(conveyor::knowledge::sparse::Bm25Embedder::new(
                &config.index.bm25,
            )?);
            let r = conveyor::knowledge::eval::run(&dir, embedder, config.index.chunker()).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                out!(
                    "{} documents → {} chunks indexed in {:.2}s ({:.0} chunks/s)",
                    r.documents,
                    r.chunks,
                    r.index_seconds,
                    r.chunks as f64 / r.index_seconds.max(1e-9)
                );
                out!("{} queries with judgements", r.queries);
                out!("nDCG@10     {:.4}", r.ndcg_at_10);
                out!("Recall@100  {:.4}", r.recall_at_100);
                out!(
                    "retrieval latency p50 {:.2} ms, p99 {:.2} ms",
                    r.latency_p50_ms,
                    r.latency_p99_ms
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `conveyor tools …`.
async fn tools(config_path: &Path, what: ToolsCommand) -> Result<ExitCode> {
    let app = App::build(Config::load(config_path)?).await?;
    match what {
        ToolsCommand::List { json } => {
            let tools = app.tools.list();
            if json {
                let list: Vec<serde_json::Value> = tools
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name(),
                            "kind": t.kind(),
                            "sensitive": t.sensitive(),
                            "description": t.description(),
                            "parameters": t.parameters(),
                            "policy": t.policy(),
                        })
                    })
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                let width = tools
                    .iter()
                    .map(|t| t.name().len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                out!(
                    "{:<width$}  {:<7}  {:<9}  DESCRIPTION",
                    "NAME",
                    "KIND",
                    "SENSITIVE"
                );
                for t in &tools {
                    let description = t
                        .description()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    out!(
                        "{:<width$}  {:<7}  {:<9}  {}",
                        t.name(),
                        t.kind(),
                        if t.sensitive() { "yes" } else { "no" },
                        description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::Call {
            name,
            args,
            user,
            channel,
            roles,
        } => {
            let args: serde_json::Value = serde_json::from_str(&args).map_err(|e| {
                Error::BadInput(format!(
                    "--args is not valid JSON ({e}); pass an object, e.g. --args '{{\"query\": \"refunds\"}}'"
                ))
            })?;
            let caller = conveyor::tools::Caller {
                user_id: user.unwrap_or_else(cli::local_user),
                channel,
                conversation: format!("cli:tools-{}", uuid::Uuid::new_v4()),
                roles,
            };
            let outcome = app.tools.invoke(&caller, &name, args).await;
            app.store.close().await;
            match (outcome.kind, outcome.result) {
                (OutcomeKind::Ok, Some(result)) => {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&result).unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                (kind, _) => {
                    // The message is a sentence that names the tool.
                    eprintln!(
                        "error: {}",
                        outcome.message.as_deref().unwrap_or("the tool failed")
                    );
                    Ok(if kind == OutcomeKind::Invalid {
                        ExitCode::from(2)
                    } else {
                        ExitCode::FAILURE
                    })
                }
            }
        }
    }
}

/// `conveyor audit …`. Only the store is opened, so this works while a server runs.
async fn audit(config_path: &Path, what: AuditCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = conveyor::store::Store::connect(&config.store_url()?).await?;
    let code = match what {
        AuditCommand::Verify => match store.audit_verify().await? {
            AuditVerdict::Intact { records } => {
                out!("audit log intact: {records} records");
                ExitCode::SUCCESS
            }
            AuditVerdict::Broken { id, reason } => {
                out!("audit log broken at record {id}: {reason}");
                ExitCode::FAILURE
            }
        },
        AuditCommand::Tail { n, json } => {
            let rows = store.audit_tail(n).await?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if rows.is_empty() {
                out!("the audit log is empty");
            } else {
                for r in &rows {
                    let ts = chrono::DateTime::from_timestamp_millis(r.ts)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| r.ts.to_string());
                    let mut args = r.arguments.to_string();
                    if args.chars().count() > 80 {
                        args = args.chars().take(79).collect::<String>() + "…";
                    }
                    out!(
                        "#{:<5} {ts}  {:<8} {:<12} {:<10} {:<20} {:>6} ms  {args}",
                        r.id,
                        r.outcome,
                        r.user_id,
                        r.channel,
                        r.action,
                        r.duration_ms
                    );
                }
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// `conveyor sync [NAME]`: one run per connector, in name order; a failed run does not stop
/// the others, but makes the exit code non-zero. Then the gold models, then the index feed of
/// connectors with `[index]` (`connectors::pipeline`). The index is opened only when some
/// connector has `[index]`; when another process (`serve`) holds it, the feed says so and the
/// next sync catches up.
/// Every connector of the config and those a command names (all of them without a name);
/// no connectors at all, or an unknown name, is an error that says what there is.
fn connectors_named(
    config: &Config,
    only: Option<&str>,
) -> Result<(
    Vec<conveyor::connectors::Definition>,
    Vec<conveyor::connectors::Definition>,
)> {
    let dir = config.connectors_dir();
    let all = conveyor::connectors::load_dir(&dir, &config.base_dir)?;
    if all.is_empty() {
        return Err(Error::BadInput(format!(
            "there are no connectors in {}; add one file per connector there, e.g. orders.toml with name, kind = \"files\", path, format and primary_key",
            dir.display()
        )));
    }
    let mut defs = all.clone();
    if let Some(name) = only {
        defs.retain(|d| d.name == name);
        if defs.is_empty() {
            let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
            return Err(Error::NotFound(format!(
                "no connector is named `{name}`; the connectors in {} are: {}",
                dir.display(),
                names.join(", ")
            )));
        }
    }
    Ok((all, defs))
}

async fn sync(config_path: &Path, only: Option<&str>, full: bool, json: bool) -> Result<ExitCode> {
    use conveyor::connectors::pipeline::{IndexAccess, Pipeline};
    let config = Config::load(config_path)?;
    let (all, defs) = connectors_named(&config, only)?;
    let store = conveyor::store::Store::connect(&config.store_url()?).await?;
    let lake = conveyor::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let pipeline = Pipeline {
        store: &store,
        lake: &lake,
        settings: &config.run_settings(),
        index: IndexAccess::OpenWhenNeeded,
        progress: !json,
        full,
        feed_all: false,
    };
    let report = pipeline.run(&defs, &all, &Printer { json }, &|| true).await;
    store.close().await;
    let report = report?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "runs": report.runs,
                "index": report.index,
                "gold": report.gold,
                "peak_rss_bytes": conveyor::bench::peak_rss_bytes(),
            }))
            .unwrap_or_default()
        );
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn optimize(
    config_path: &Path,
    only: Option<&str>,
    retain: Option<std::time::Duration>,
    json: bool,
) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let (_, defs) = connectors_named(&config, only)?;
    let lake = conveyor::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let mut all = Vec::new();
    let mut failed = false;
    for def in &defs {
        match lake.optimize(&def.name, &def.cluster_by, retain).await {
            Ok(tables) => {
                for t in &tables {
                    if !json {
                        out!(
                            "{}.{}: {}: {} files rewritten into {}, {} old files vacuumed, version {}",
                            t.layer.as_str(),
                            t.name,
                            t.how,
                            t.files_removed,
                            t.files_added,
                            t.files_vacuumed,
                            t.version.map(|v| v.to_string()).unwrap_or_default()
                        );
                    }
                }
                all.extend(tables);
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", def.name);
            }
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints each step of `conveyor sync` as it ends (results on stdout unless `--json`,
/// problems on stderr).
struct Printer {
    json: bool,
}

impl conveyor::connectors::pipeline::Events for Printer {
    fn run_done(&self, report: &conveyor::connectors::sync::SyncReport) {
        if !self.json {
            print_sync_report(report);
        }
    }

    fn not_run(&self, def: &conveyor::connectors::Definition, error: &Error) {
        eprintln!("{}: not run: {error}", def.name);
    }

    fn gold_done(&self, reports: &[conveyor::connectors::gold::GoldReport]) {
        use conveyor::connectors::gold::GoldStatus;
        if self.json {
            return;
        }
        for g in reports {
            match &g.status {
                GoldStatus::Built { version, rows } => out!(
                    "gold.{}: built, {rows} rows, version {version} ({:.2}s)",
                    g.model,
                    g.seconds
                ),
                GoldStatus::Unchanged { version } => {
                    out!("gold.{}: unchanged (version {version})", g.model);
                }
                GoldStatus::Waiting { table } => out!(
                    "gold.{}: waiting for {table} (its connector has not run yet)",
                    g.model
                ),
                GoldStatus::Failed { error } => out!("gold.{}: failed: {error}", g.model),
            }
        }
    }

    fn index_unavailable(&self, error: &Error) {
        eprintln!(
            "index feed: not run: {error}\n  The data was synced; the next `conveyor sync` indexes what changed."
        );
    }

    fn fed(&self, r: &conveyor::connectors::feed::FeedReport) {
        if self.json || r.up_to_date {
            return;
        }
        if r.mode == "changes" {
            out!(
                "{}: indexed {} changed rows of silver.{} ({} chunks), removed {}",
                r.connector,
                r.documents,
                r.connector,
                r.chunks,
                r.removed
            );
        } else {
            out!(
                "{}: indexed {} rows of silver.{} ({} chunks)",
                r.connector,
                r.documents,
                r.connector,
                r.chunks
            );
        }
    }

    fn feed_failed(&self, def: &conveyor::connectors::Definition, error: &Error) {
        eprintln!(
            "{}: index feed failed: {error}; the next sync retries it",
            def.name
        );
    }
}

fn print_sync_report(r: &conveyor::connectors::sync::SyncReport) {
    if let Some(e) = &r.error {
        out!("{}: failed after {:.2}s: {e}", r.connector, r.seconds);
        return;
    }
    out!(
        "{}: read {} rows from {} file{} ({} unchanged, {} removed) → silver.{}: {} inserted, {} updated, {} deleted{} ({:.2}s)",
        r.connector,
        r.rows_read,
        r.files_read,
        if r.files_read == 1 { "" } else { "s" },
        r.files_unchanged,
        r.files_removed,
        r.connector,
        r.inserted,
        r.updated,
        r.deleted,
        r.silver_version
            .map(|v| format!(", version {v}"))
            .unwrap_or_default(),
        r.seconds
    );
    if !r.new_columns.is_empty() {
        out!("  new columns: {}", r.new_columns.join(", "));
    }
    if !r.issues.is_empty() {
        out!("  skipped {} malformed record(s):", r.issues.len());
        for i in r.issues.iter().take(20) {
            out!("    {i}");
        }
        if r.issues.len() > 20 {
            out!(
                "    … and {} more (conveyor runs --json shows up to 100)",
                r.issues.len() - 20
            );
        }
    }
}

/// `conveyor runs [NAME]`.
async fn runs(config_path: &Path, only: Option<&str>, n: usize, json: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = conveyor::store::Store::connect(&config.store_url()?).await?;
    let rows = store.runs(only, n).await?;
    store.close().await;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out!("no sync runs yet; run `conveyor sync`");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<19}  {:<16} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8}  error",
        "started",
        "connector",
        "status",
        "read",
        "written",
        "deleted",
        "skipped",
        "duration"
    );
    for r in &rows {
        let started = chrono::DateTime::from_timestamp_millis(r.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let duration = r
            .finished_at
            .map(|f| format!("{:.2}s", (f - r.started_at) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        out!(
            "{started:<19}  {:<16} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8}  {}",
            r.connector,
            r.status,
            r.rows_read,
            r.rows_written,
            r.rows_deleted,
            r.rows_skipped,
            duration,
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `conveyor sql "SELECT …"`.
async fn sql(
    config_path: &Path,
    query: &str,
    format: SqlFormat,
    limit: Option<usize>,
) -> Result<ExitCode> {
    use conveyor::lakehouse::OutputFormat;
    let config = Config::load(config_path)?;
    let lake = conveyor::lakehouse::Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let result = lake.query(query, limit).await?;
    let format = match format {
        SqlFormat::Table => OutputFormat::Table,
        SqlFormat::Json => OutputFormat::Json,
        SqlFormat::Csv => OutputFormat::Csv,
    };
    let text = result.render(format)?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = stdout.write_all(b"\n");
        }
    }
    if result.truncated {
        eprintln!(
            "(showing the first {} rows; the result has more: add a LIMIT or a WHERE clause, or raise --limit up to lakehouse.sql_row_limit)",
            result.limit
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn login_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "admin".into())
}

fn platform(channel: &str) -> Result<&'static str> {
    match channel {
        "slack" => Ok("slack"),
        "discord" => Ok("discord"),
        "telegram" => Ok("telegram"),
        other => Err(Error::BadInput(format!(
            "unknown platform `{other}`; use slack, discord or telegram"
        ))),
    }
}

async fn access(config_path: &Path, what: AccessCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = conveyor::store::Store::connect(&config.store_url()?).await?;
    let result = async {
        match what {
            AccessCommand::Approve { code } => {
                let grant = store.pairing_approve(&code, &login_name()).await?;
                out!(
                    "Approved: {} user {}{} may now talk to the bot.",
                    grant.channel,
                    grant.user_id,
                    grant
                        .user_name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
            }
            AccessCommand::List { json } => {
                let grants = store.access_grants().await?;
                let pending = store.pairing_pending().await?;
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"grants": grants, "pending": pending})
                        )
                        .unwrap_or_default()
                    );
                } else {
                    out!("Let in ({}):", grants.len());
                    for g in &grants {
                        let when = chrono::DateTime::from_timestamp_millis(g.granted_at)
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default();
                        out!(
                            "  {:<9} {:<24} {:<20} {when} by {}",
                            g.channel,
                            g.user_id,
                            g.user_name.as_deref().unwrap_or("-"),
                            g.granted_by
                        );
                    }
                    out!("Waiting for approval ({}):", pending.len());
                    for p in &pending {
                        let left = (p.expires_at - chrono::Utc::now().timestamp_millis()) / 60_000;
                        out!(
                            "  {}  {:<9} {:<24} {:<20} expires in {left} min",
                            p.code,
                            p.channel,
                            p.user_id,
                            p.user_name.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            AccessCommand::Grant { channel, user } => {
                let channel = platform(&channel)?;
                if store
                    .access_grant(channel, &user, None, &login_name())
                    .await?
                {
                    out!("Granted: {channel} user {user} may now talk to the bot.");
                } else {
                    out!("{channel} user {user} was already let in.");
                }
            }
            AccessCommand::Revoke { channel, user } => {
                let channel = platform(&channel)?;
                if store.access_revoke(channel, &user).await? {
                    out!("Revoked: {channel} user {user} was let in and no longer is.");
                } else {
                    return Err(Error::NotFound(format!(
                        "{channel} user {user} had no grant (see `conveyor access list`)"
                    )));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

async fn target(config: &Path, server: Option<&str>) -> Result<Target> {
    match server {
        Some(url) => Target::server(url),
        None => Ok(Target::Local(Box::new(
            App::build(Config::load(config)?).await?,
        ))),
    }
}

async fn serve(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let listen = config.server.listen;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::Upstream(format!(
            "cannot listen on {listen}: {e}; choose another address with server.listen or CONVEYOR__SERVER__LISTEN"
        ))
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    conveyor::server::run(app, listener, shutdown).await
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn watch_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received; draining"),
        () = term => tracing::info!("SIGTERM received; draining"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
