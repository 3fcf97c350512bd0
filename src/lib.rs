//! conveyor: a chat-first agent gateway in one binary.
//!
//! # Layout
//!
//! - [`config`]: the loader — one TOML file plus `CONVEYOR__SECTION__KEY` overrides, every problem
//!   reported at once; each part owns its section, [`values`] holds the types they share.
//! - [`model`]: plain data shared by every part (`Inbound`, `Outbound`, `ConversationKey`).
//! - [`error`]: the one error enum, by kind; mapped to HTTP status in [`http`] only.
//! - [`store`]: sqlx on SQLite or PostgreSQL: ingress and egress ledgers, conversations, audit log.
//! - [`knowledge`]: documents → chunks → sparse BM25 vectors → the `VectorIndex` (Qdrant's engine
//!   in-process), retrieval and retrieval evaluation.
//! - [`agent`]: the `Planner` trait, the deterministic offline planner, and the LLM planner
//!   (`tool_loop`: our own tool loop over `llm`, the only module that imports rig-core).
//! - [`tools`]: the tool registry (policy, schema check, time limit, audit before use), the
//!   built-in `search_knowledge`, declarative HTTP tools and the SSRF guard.
//! - [`gateway`]: the path of one inbound message: ledger, rate limits, per-conversation order,
//!   history, planner, recorded reply.
//! - [`health`]: the outcome of one `conveyor doctor` check, shared by the platforms and
//!   [`doctor`].
//! - [`metrics`]: counters and the latency histogram behind `/metrics`.
//! - [`http`]: the axum router: `/v1` API, health, metrics, the web chat page, webhooks and
//!   every chat platform's routes (from [`channels::PLATFORMS`]).
//! - [`channels`]: the surfaces: terminal chat, the web page, signed webhooks, and the chat
//!   platforms (Slack, Telegram, Discord) behind one seam and one registry.
//! - [`lakehouse`]: Delta tables (bronze, silver, gold) under `[lakehouse] uri` and read-only
//!   SQL over them with DataFusion; the only module that imports deltalake.
//! - [`connectors`]: connector definitions (`connectors/*.toml`), the `files`, `http` and
//!   `sql` sources, sync runs (claim, extract, lakehouse write, cursor, history), gold models,
//!   the index feed, the pipeline that chains them, and the scheduler `serve` runs.
//! - [`app`]: the composition root that picks backends from config and wires them.
//! - [`server`]: `conveyor serve` as a library function: background tasks, HTTP, drain.
//! - [`init`]: the starter project written by `conveyor init`.
//! - [`bench`]: `conveyor bench`, a load generator for a running server's API.
//! - [`cli`]: the command line as a library (`cli::run`); `main.rs` only parses and calls it.
//! - [`values`]: `HumanDuration`, `Rate`, `Secret` and `Env`, the one environment lookup.

pub mod agent;
pub mod app;
pub mod bench;
pub mod channels;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod doctor;
pub mod error;
pub mod gateway;
pub mod health;
pub mod http;
pub mod init;
pub mod knowledge;
pub mod lakehouse;
pub mod metrics;
pub mod model;
pub mod semantic;
pub mod server;
pub mod store;
pub mod tools;
pub mod values;
pub mod workflows;

pub use error::{Error, Result};
