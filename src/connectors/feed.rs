//! The index feed: rows of a connector's silver table become documents of the knowledge index.
//!
//! For a connector with `[index]`, each silver row is one document: `title` from the title
//! column, text from the `text` columns, and a [`Lineage`] payload naming the table, the row's
//! primary key and the `payload` columns. Its id is derived from table and key
//! (`silver.NAME#KEY`), so re-indexing replaces it. When silver's version moved past the one
//! last indexed (kept in the store, saved only after indexing), the table's documents are
//! replaced as a whole: changed rows get their new text and deleted rows disappear. A feed
//! that could not run (the index held by `serve`) is therefore caught up by the next one.

use serde::Serialize;

use super::{Definition, IndexSpec};
use crate::error::Result;
use crate::knowledge::document::{Document, Section};
use crate::knowledge::indexer::Indexer;
use crate::knowledge::{Lineage, VectorIndex};
use crate::lakehouse::records::render;
use crate::lakehouse::{Lakehouse, Layer};
use crate::store::Store;

/// What one feed did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedReport {
    /// The connector.
    pub connector: String,
    /// The silver version indexed.
    pub silver_version: Option<i64>,
    /// Whether the index was already at that version (nothing done).
    pub up_to_date: bool,
    /// Rows indexed as documents.
    pub documents: usize,
    /// Chunks written.
    pub chunks: usize,
}

/// Feeds `def`'s silver table into the index when it changed since the last feed. `None`
/// when the connector has no `[index]`.
pub async fn run(
    store: &Store,
    lake: &Lakehouse,
    indexer: &Indexer,
    index: &dyn VectorIndex,
    def: &Definition,
) -> Result<Option<FeedReport>> {
    let Some(spec) = &def.index else {
        return Ok(None);
    };
    let mut report = FeedReport {
        connector: def.name.clone(),
        ..Default::default()
    };
    let Some(version) = lake.version(Layer::Silver, &def.name).await? else {
        report.up_to_date = true;
        return Ok(Some(report));
    };
    report.silver_version = Some(version);
    if store.indexed_version(&def.name).await? == Some(version) {
        report.up_to_date = true;
        return Ok(Some(report));
    }
    let rows = lake.silver_rows(&def.name).await?;
    let table = format!("silver.{}", def.name);
    let now = chrono::Utc::now().timestamp_millis();
    let mut docs = Vec::with_capacity(rows.len());
    let mut lineages = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let Some((doc, lineage)) = row_document(&table, spec, def.primary_key(), row, now) else {
            continue;
        };
        lineages.insert(doc.doc_id.clone(), lineage);
        docs.push(doc);
    }
    report.documents = docs.len();
    let this = indexer.clone();
    let mut points = tokio::task::spawn_blocking(move || this.points(&docs))
        .await
        .map_err(|e| crate::error::Error::internal("chunking silver rows", e))?;
    for p in &mut points {
        p.payload.lineage = lineages.get(&p.payload.doc_id).cloned();
    }
    report.chunks = indexer.replace_points(&table, points).await?;
    index.flush().await?;
    store.set_indexed_version(&def.name, version).await?;
    tracing::info!(connector = %def.name, version, documents = report.documents, "index feed finished");
    Ok(Some(report))
}

/// One silver row as a document; `None` when its text columns are all empty.
fn row_document(
    table: &str,
    spec: &IndexSpec,
    primary_key: &[String],
    row: &serde_json::Map<String, serde_json::Value>,
    updated_at: i64,
) -> Option<(Document, Lineage)> {
    let text_of = |col: &str| match row.get(col) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(v) => render(v).trim().to_string(),
    };
    let mut key = serde_json::Map::new();
    let mut key_text = Vec::new();
    for col in primary_key {
        let v = row.get(col).cloned().unwrap_or(serde_json::Value::Null);
        key_text.push(render(&v));
        key.insert(col.clone(), v);
    }
    let key_text = key_text.join("/");
    let text: Vec<String> = spec
        .text
        .iter()
        .map(|c| text_of(c))
        .filter(|t| !t.is_empty())
        .collect();
    if text.is_empty() {
        return None;
    }
    let title = spec
        .title
        .as_deref()
        .map(text_of)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| key_text.clone());
    let fields = spec
        .payload
        .iter()
        .filter_map(|c| row.get(c).map(|v| (c.clone(), v.clone())))
        .collect();
    let id = format!("{table}#{key_text}");
    let doc = Document {
        doc_id: id.clone(),
        title,
        source: id,
        file: table.to_string(),
        sections: vec![Section {
            headings: Vec::new(),
            text: text.join("\n\n"),
        }],
        updated_at,
    };
    let lineage = Lineage {
        table: table.to_string(),
        key,
        fields,
    };
    Some((doc, lineage))
}
