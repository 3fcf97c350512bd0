//! `conveyor init` and `conveyor doctor`: a starter project, and the checks of one.

use std::path::Path;
use std::process::ExitCode;

use crate::Result;

/// `conveyor doctor`.
pub async fn doctor(config: &Path, offline: bool, json: bool) -> Result<ExitCode> {
    let report = crate::doctor::run(config, !offline).await;
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

/// `conveyor init DIR`.
pub async fn init(dir: &Path, force: bool) -> Result<ExitCode> {
    let report = crate::init::init(dir, force).await?;
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
