mod api;
mod cli;
mod common;
mod connectors_sources;
mod discord;
mod knowledge;
mod lakehouse;
mod llm;
mod schedule;
mod slack;
mod store;
#[path = "../support/mod.rs"]
mod support;
mod telegram;
mod tidy;
mod tools;
mod warehouse;
mod webhooks;
