//! Process metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! A handful of counters and one histogram do not justify a metrics framework; atomics and a
//! small map keep the hot path lock-free except for the per-label counter map, whose lock is
//! never held across an await.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// All metrics of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    messages: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    rate_limited: AtomicU64,
    duplicates: AtomicU64,
    index_chunks: AtomicU64,
    inbox_queued: Mutex<Vec<(String, i64)>>,
    workflows: Mutex<BTreeMap<String, WorkflowStats>>,
}

/// One workflow's counters and run-duration histogram.
#[derive(Debug, Default)]
struct WorkflowStats {
    started: u64,
    succeeded: u64,
    failed: u64,
    buckets: [u64; WORKFLOW_BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

/// Upper bounds (seconds) of the workflow run-duration buckets (runs wait for people).
const WORKFLOW_BUCKETS: [f64; 10] = [
    0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0, 600.0, 3600.0, 86400.0,
];

impl Metrics {
    /// Counts one handled message by channel and outcome (`ok`, `error`, `rate_limited`,
    /// `duplicate`), and records its latency.
    pub fn message(&self, channel: &str, outcome: &'static str, latency: Duration) {
        if let Ok(mut m) = self.messages.lock() {
            *m.entry((channel.to_string(), outcome)).or_default() += 1;
        }
        let secs = latency.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a duplicate answered from the ingress ledger.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the index size gauge.
    pub fn set_index_chunks(&self, n: u64) {
        self.index_chunks.store(n, Ordering::Relaxed);
    }

    /// Sets the inbox gauge: messages accepted and not answered yet, per channel.
    pub fn set_inbox_queued(&self, queued: Vec<(String, i64)>) {
        if let Ok(mut q) = self.inbox_queued.lock() {
            *q = queued;
        }
    }

    /// Counts a workflow run started.
    pub fn workflow_started(&self, workflow: &str) {
        if let Ok(mut m) = self.workflows.lock() {
            m.entry(workflow.to_string()).or_default().started += 1;
        }
    }

    /// Counts a workflow run that finished here, and records how long it took (from its
    /// last start or resume in this process).
    pub fn workflow_finished(&self, workflow: &str, succeeded: bool, took: Duration) {
        if let Ok(mut m) = self.workflows.lock() {
            let s = m.entry(workflow.to_string()).or_default();
            if succeeded {
                s.succeeded += 1;
            } else {
                s.failed += 1;
            }
            let secs = took.as_secs_f64();
            for (i, bound) in WORKFLOW_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    s.buckets[i] += 1;
                }
            }
            s.count += 1;
            s.sum_secs += secs;
        }
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP conveyor_messages_total Messages handled, by channel and outcome."
        );
        let _ = writeln!(out, "# TYPE conveyor_messages_total counter");
        if let Ok(m) = self.messages.lock() {
            for ((channel, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "conveyor_messages_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP conveyor_message_duration_seconds Time to answer a message."
        );
        let _ = writeln!(out, "# TYPE conveyor_message_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "conveyor_message_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "conveyor_message_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "conveyor_message_duration_seconds_sum {sum}");
        let _ = writeln!(out, "conveyor_message_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP conveyor_rate_limited_total Messages refused by a rate limit."
        );
        let _ = writeln!(out, "# TYPE conveyor_rate_limited_total counter");
        let _ = writeln!(
            out,
            "conveyor_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP conveyor_duplicates_total Repeated deliveries answered from the ingress ledger."
        );
        let _ = writeln!(out, "# TYPE conveyor_duplicates_total counter");
        let _ = writeln!(
            out,
            "conveyor_duplicates_total {}",
            self.duplicates.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP conveyor_index_chunks Chunks in the knowledge index."
        );
        let _ = writeln!(out, "# TYPE conveyor_index_chunks gauge");
        let _ = writeln!(
            out,
            "conveyor_index_chunks {}",
            self.index_chunks.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP conveyor_inbox_queued Messages acknowledged and not answered yet (being answered, or waiting after a crash), by channel."
        );
        let _ = writeln!(out, "# TYPE conveyor_inbox_queued gauge");
        if let Ok(q) = self.inbox_queued.lock() {
            for (channel, n) in q.iter() {
                let _ = writeln!(out, "conveyor_inbox_queued{{channel=\"{channel}\"}} {n}");
            }
        }
        self.render_workflows(&mut out);
        out
    }

    fn render_workflows(&self, out: &mut String) {
        let Ok(m) = self.workflows.lock() else { return };
        let _ = writeln!(
            out,
            "# HELP conveyor_workflow_runs_total Workflow runs started here, and finished here by outcome."
        );
        let _ = writeln!(out, "# TYPE conveyor_workflow_runs_total counter");
        for (name, s) in m.iter() {
            for (outcome, n) in [
                ("started", s.started),
                ("succeeded", s.succeeded),
                ("failed", s.failed),
            ] {
                let _ = writeln!(
                    out,
                    "conveyor_workflow_runs_total{{workflow=\"{name}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP conveyor_workflow_run_duration_seconds Time from a run's start (or resume) here to its end."
        );
        let _ = writeln!(
            out,
            "# TYPE conveyor_workflow_run_duration_seconds histogram"
        );
        for (name, s) in m.iter() {
            for (i, bound) in WORKFLOW_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "conveyor_workflow_run_duration_seconds_bucket{{workflow=\"{name}\",le=\"{bound}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "conveyor_workflow_run_duration_seconds_bucket{{workflow=\"{name}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "conveyor_workflow_run_duration_seconds_sum{{workflow=\"{name}\"}} {}",
                s.sum_secs
            );
            let _ = writeln!(
                out,
                "conveyor_workflow_run_duration_seconds_count{{workflow=\"{name}\"}} {}",
                s.count
            );
        }
    }
}
