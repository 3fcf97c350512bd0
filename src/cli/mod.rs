//! The `conveyor` command line as a library: the arguments ([`Cli`]) and [`run`], which does
//! what they ask. `main.rs` only parses, sets up logging and calls [`run`]. One file per area:
//!
//! - [`setup`] — `init`, `doctor`.
//! - [`chat`] — `serve`, `chat`, `ask`.
//! - [`knowledge`] — `index`, `eval`.
//! - [`data`] — `sync`, `optimize`, `runs`, `sql`.
//! - [`tools`] — `tools`, `audit`.
//! - [`access`] — `access` (pairing codes and grants).
//! - [`bench`] — `bench`.
//! - [`terminal`] — the terminal surface `chat` and `ask` use (in-process or `--server`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Result;

/// `println!` that ignores a closed stdout (`conveyor ask … | head -1`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod access;
mod bench;
pub mod bi;
mod chat;
mod data;
mod knowledge;
mod setup;
pub mod terminal;
mod tools;
mod workflows;

#[derive(Parser)]
#[command(
    name = "conveyor",
    version,
    about = "A chat-first agent gateway: ask your documents from the web, the API and the terminal"
)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "CONVEYOR_CONFIG",
        default_value = "conveyor.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// API keys of the HTTP surface: create, list, revoke.
    Keys {
        #[command(subcommand)]
        what: KeysCommand,
    },
    /// Start a workflow run (tools/*.toml with kind = "workflow") and follow it until it
    /// finishes or waits for an approval or a sleep (a running `serve` resumes it then).
    Run {
        /// The workflow.
        name: String,
        /// Its input: JSON (`'{"customer": "acme"}'`) or `@file.json`.
        #[arg(long)]
        input: Option<String>,
        /// An idempotency key: a second run with the same key shows the first.
        #[arg(long)]
        key: Option<String>,
        /// Print the run and its steps as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Workflows and their runs: list, runs, show, cancel, retry.
    Workflows {
        #[command(subcommand)]
        what: WorkflowsCommand,
    },
    /// Messages acknowledged and not answered yet: list them, queue a failed one again.
    Inbox {
        #[command(subcommand)]
        what: InboxCommand,
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
        retain: crate::values::HumanDuration,
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
    /// Ask a question of the data through the semantic model (connectors/*.semantic.toml)
    /// and print how it was understood, the SQL it ran and the result, without chat.
    Bi {
        /// The question, e.g. "revenue by region in 2025".
        question: String,
        /// Print the answer (interpretation, SQL, rows) as JSON.
        #[arg(long)]
        json: bool,
        /// Print the interpretation and the SQL only.
        #[arg(long)]
        sql: bool,
        /// Ask as a member of this role (its access rules apply); repeatable.
        #[arg(long = "as-role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Ask with this attribute (what `{{ user.NAME }}` in an access rule reads), e.g.
        /// `--attr region=EMEA`; repeatable, a name given twice has several values.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// The date "last month" and "this year" count from (YYYY-MM-DD; default today).
        #[arg(long)]
        today: Option<String>,
        /// Also write the chart to this file (.png or .svg).
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,
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

/// `conveyor workflows …`.
#[derive(Subcommand)]
pub enum WorkflowsCommand {
    /// The workflows of tools.dir with their triggers, steps and runs per state.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Workflow runs, newest first.
    Runs {
        /// Only this workflow's.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this state (queued, running, waiting, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run with each step's status, input, output and error.
    Show {
        /// The run id.
        run: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run that has not finished (and its sub-workflows).
    Cancel {
        /// The run id.
        run: String,
    },
    /// Queue a failed or cancelled run again: the steps that did not succeed run again, or
    /// every step from --from on.
    Retry {
        /// The run id.
        run: String,
        /// Run again from this top-level step.
        #[arg(long)]
        from: Option<String>,
    },
}

/// `conveyor inbox …`.
#[derive(Subcommand)]
pub enum InboxCommand {
    /// Messages queued (being answered, or waiting after a crash) and failed (given up after
    /// gateway.inbox_max_attempts), oldest first.
    List {
        /// Only the failed ones.
        #[arg(long)]
        failed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed message again (after fixing what made it fail); a running `serve`
    /// answers it within a second.
    Retry {
        /// Its key, as `conveyor inbox list` shows it (`telegram:123`).
        key: String,
    },
}

/// `conveyor keys …`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once (only its hash is kept).
    Create {
        /// What the key is for (`web page`, `grafana`, `ci`).
        name: String,
        /// What it may do: chat (ask), read (chunks, sources, connectors, runs, metrics,
        /// delivery status), admin (everything). Repeat or separate with commas.
        #[arg(long = "scope", value_delimiter = ',', default_value = "chat")]
        scopes: Vec<String>,
        /// Print the key and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (never their secrets).
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (`cvk_<id>`, or the whole key).
    Revoke {
        /// The key's id.
        id: String,
    },
}

/// `conveyor sql --format`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
pub enum AccessCommand {
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
pub enum ToolsCommand {
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
pub enum AuditCommand {
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
pub enum BenchCommand {
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
        /// Open loop instead: send this many requests per second at a constant rate, whatever
        /// the answers do (latency under a fixed load, counted from when each request was due).
        #[arg(long)]
        rate: Option<u32>,
        /// How long the open loop runs, e.g. `10s`.
        #[arg(long, default_value = "10s")]
        duration: crate::values::HumanDuration,
        /// An API key (`cvk_…`) for a server that has keys; also read from CONVEYOR_API_KEY.
        #[arg(long, env = "CONVEYOR_API_KEY", hide_env_values = true)]
        key: Option<String>,
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
    /// Business questions over TPC-H through a semantic model, offline: generate and sync
    /// the tables (or reuse --dir), check 30 questions against reference SQL, then ask them
    /// over and over and report questions/s with p50/p99.
    Bi {
        /// Scale factor (0.1 = 600,572 lineitem rows).
        #[arg(long, default_value_t = 0.1)]
        sf: f64,
        /// Keep the project here, and reuse its data on the next run at the same scale factor.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Timed passes over all the questions.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Questions asked at once in the concurrent pass.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
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
    /// Workflows: signed webhook → a three-step workflow (a tool, a metric query, a post to a
    /// local chat API) → done, runs/s with p50/p99 on SQLite (or PostgreSQL with --postgres);
    /// then --resume N runs left in flight by a dead process and the time a new engine takes
    /// to resume and finish them. A temporary demo project unless --dir is given.
    Workflows {
        /// Webhook deliveries (one run each).
        #[arg(long, default_value_t = 5000)]
        runs: usize,
        /// Deliveries in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Use this PostgreSQL database for the store (also CONVEYOR_BENCH_POSTGRES_URL).
        #[arg(long, env = "CONVEYOR_BENCH_POSTGRES_URL")]
        postgres: Option<String>,
        /// Runs in flight for the resume benchmark (0: skip it).
        #[arg(long, default_value_t = 10_000)]
        resume: usize,
        /// Keep the project in this folder (it must not exist yet).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Retrieval quality (nDCG@10, Recall@100) on a BEIR-layout collection.
    Retrieval {
        /// Folder with corpus.jsonl, queries.jsonl and qrels/test.tsv.
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// BI answers: a JSONL file of questions with expected answers → accuracy, each miss
    /// printed with how it was understood and its SQL.
    Bi {
        /// The question file (one JSON object per line: {"question": …, "value": 123} or
        /// "rows": [[…]], "clarify": true, "refused": "…", "not_bi": true; optional "today",
        /// "roles").
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Whether the command runs the server (its logs default to `info`).
    pub fn serving(&self) -> bool {
        matches!(self.command, Command::Serve)
    }
}

/// Does what `cli` asks; the exit code says how it went.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config.as_path();
    match cli.command {
        Command::Tools { what } => tools::tools(config, what).await,
        Command::Audit { what } => tools::audit(config, what).await,
        Command::Access { what } => access::access(config, what).await,
        Command::Keys { what } => access::keys(config, what).await,
        Command::Inbox { what } => access::inbox(config, what).await,
        Command::Run {
            name,
            input,
            key,
            json,
        } => workflows::run(config, &name, input.as_deref(), key, json).await,
        Command::Workflows { what } => workflows::workflows(config, what).await,
        Command::Sync { name, full, json } => data::sync(config, name.as_deref(), full, json).await,
        Command::Optimize {
            name,
            retain,
            no_vacuum,
            json,
        } => {
            data::optimize(
                config,
                name.as_deref(),
                (!no_vacuum).then_some(retain.0),
                json,
            )
            .await
        }
        Command::Runs { name, n, json } => data::runs(config, name.as_deref(), n, json).await,
        Command::Sql {
            query,
            format,
            limit,
        } => data::sql(config, &query, format, limit).await,
        Command::Doctor { offline, json } => setup::doctor(config, offline, json).await,
        Command::Init { dir, force } => setup::init(&dir, force).await,
        Command::Index {
            paths,
            prune,
            force,
            json,
        } => knowledge::index(config, &paths, prune, force, json).await,
        Command::Serve => chat::serve(config).await,
        Command::Chat {
            conversation,
            server,
        } => chat::chat(config, conversation, server.as_deref()).await,
        Command::Ask {
            question,
            json,
            server,
            conversation,
        } => chat::ask(config, &question, json, server.as_deref(), conversation).await,
        Command::Bench { what } => bench::bench(config, what).await,
        Command::Eval {
            what: EvalCommand::Bi { file, json },
        } => bi::eval_bi(config, &file, json).await,
        Command::Eval { what } => knowledge::eval(config, what).await,
        Command::Bi {
            question,
            json,
            sql,
            roles,
            attributes,
            today,
            chart,
        } => {
            bi::bi(
                config,
                &question,
                json,
                sql,
                &bi::asker(roles, &attributes)?,
                today.as_deref(),
                chart.as_deref(),
            )
            .await
        }
    }
}
