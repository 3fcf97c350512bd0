//! Durable workflows (issue "Autonomous workflows"): definitions so far.
//!
//! `def.rs` reads and checks `tools/*.toml` files with `kind = "workflow"`: triggers, steps
//! and their templates, retries and timeouts, every problem at once with its file, step and
//! key. The engine that runs them (the run journal in the store, resume after a crash,
//! leases across processes, approvals) builds on these types.

pub mod def;
