//! `conveyor index` and `conveyor eval`: the knowledge index and its retrieval quality.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::Result;
use crate::config::Config;
use crate::knowledge::Knowledge;
use crate::knowledge::indexer::IndexOptions;

use super::EvalCommand;

/// `conveyor index`.
pub async fn index(
    config: &Path,
    paths: &[PathBuf],
    prune: bool,
    force: bool,
    json: bool,
) -> Result<ExitCode> {
    let config = Config::load(config)?;
    let knowledge = Knowledge::open(&config.index, &config.base_dir)?;
    let report = knowledge
        .indexer()
        .index_paths(
            &config.index_path(),
            paths,
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

/// `conveyor eval …`.
pub async fn eval(config: &Path, what: EvalCommand) -> Result<ExitCode> {
    let EvalCommand::Retrieval { dir, json } = what else {
        return Err(crate::error::Error::Internal(
            "eval: only retrieval is evaluated here".into(),
        ));
    };
    // The configured pipeline when there is a config, the defaults otherwise.
    let config = if config.exists() {
        Config::load(config)?
    } else {
        Config::from_toml("", "defaults", Path::new("."), &[])?
    };
    let embedder = std::sync::Arc::new(crate::knowledge::sparse::Bm25Embedder::new(
        &config.index.bm25,
    )?);
    let r = crate::knowledge::eval::run(&dir, embedder, config.index.chunker()).await?;
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
