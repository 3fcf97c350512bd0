//! `conveyor init DIR`: a working starter project — config with embedded defaults, prompt and
//! tool folders, a small demo knowledge base about a fictional company, already indexed, and
//! a small business dataset (customers, products, orders as CSV) with its `files` connectors,
//! ready for `conveyor sync` and `conveyor sql`.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::knowledge::Knowledge;
use crate::knowledge::indexer::{IndexOptions, IndexReport};

/// The files written, relative to the project folder, and their contents. Prompts and tools
/// come from the repository's own `prompts/` and `tools/`, so the starter and the repository
/// never drift apart.
const FILES: &[(&str, &str)] = &[
    ("conveyor.toml", include_str!("conveyor.toml")),
    ("prompts/README.md", include_str!("../../prompts/README.md")),
    (
        "prompts/system.md.j2",
        include_str!("../../prompts/system.md.j2"),
    ),
    ("tools/README.md", include_str!("../../tools/README.md")),
    (
        "tools/weather.toml.example",
        include_str!("../../tools/weather.toml.example"),
    ),
    (
        "tools/weekly_digest.toml",
        include_str!("../../tools/weekly_digest.toml"),
    ),
    (
        "tools/ticket_triage.toml",
        include_str!("../../tools/ticket_triage.toml"),
    ),
    (
        "docs/plans-and-pricing.md",
        include_str!("demo/plans-and-pricing.md"),
    ),
    (
        "docs/refund-policy.md",
        include_str!("demo/refund-policy.md"),
    ),
    ("docs/account-help.md", include_str!("demo/account-help.md")),
    (
        "docs/security-and-privacy.md",
        include_str!("demo/security-and-privacy.md"),
    ),
    ("docs/support.md", include_str!("demo/support.md")),
    (
        "data/customers.csv",
        include_str!("demo/data/customers.csv"),
    ),
    ("data/products.csv", include_str!("demo/data/products.csv")),
    ("data/orders.csv", include_str!("demo/data/orders.csv")),
    (
        "connectors/customers.toml",
        include_str!("demo/connectors/customers.toml"),
    ),
    (
        "connectors/products.toml",
        include_str!("demo/connectors/products.toml"),
    ),
    (
        "connectors/orders.toml",
        include_str!("demo/connectors/orders.toml"),
    ),
    (
        "connectors/shop.semantic.toml",
        include_str!("demo/connectors/shop.semantic.toml"),
    ),
    (
        "eval/bi-questions.jsonl",
        include_str!("demo/bi-questions.jsonl"),
    ),
    (
        "connectors/revenue_by_plan.sql",
        include_str!("demo/connectors/revenue_by_plan.sql"),
    ),
];

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    /// The project folder.
    pub dir: PathBuf,
    /// Files written.
    pub written: Vec<PathBuf>,
    /// The indexing of the demo documents.
    pub index: IndexReport,
}

/// Writes the starter project into `dir` and indexes its documents. Refuses to overwrite an
/// existing `conveyor.toml` unless `force`.
pub async fn init(dir: &Path, force: bool) -> Result<InitReport> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::BadInput(format!(
            "{} exists and is not a folder; choose a new folder name for the project",
            dir.display()
        )));
    }
    let config_path = dir.join("conveyor.toml");
    if config_path.exists() && !force {
        return Err(Error::BadInput(format!(
            "{} already exists; choose another folder, or pass --force to overwrite the starter files",
            config_path.display()
        )));
    }
    let mut written = Vec::new();
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::BadInput(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, content)
            .map_err(|e| Error::BadInput(format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    let config = Config::load(&config_path)?;
    let knowledge = Knowledge::open(&config.index, &config.base_dir)?;
    let index_dir = config.index_path();
    let report = knowledge
        .indexer()
        .index_paths(
            &index_dir,
            &[config.resolve(Path::new("docs"))],
            IndexOptions {
                prune: true,
                progress: false,
                force: false,
            },
        )
        .await?;
    Ok(InitReport {
        dir: dir.to_path_buf(),
        written,
        index: report,
    })
}
