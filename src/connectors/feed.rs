//! The index feed: rows of a connector's silver table become documents of the knowledge index.
//!
//! For a connector with `[index]`, each silver row is one document: `title` from the title
//! column, text from the `text` columns, and a [`Lineage`] payload naming the table, the row's
//! primary key and the `payload` columns. Its id is derived from table and key
//! (`silver.NAME#KEY`), so re-indexing replaces it. The silver version last indexed is kept in
//! the store and saved only after indexing, so a feed that could not run (the index held by
//! `serve`) is caught up by the next one (`serve`'s next scheduled pass, or the next sync).
//!
//! When silver moved past that version, the feed reads the table's change data feed from it
//! (row level): inserted and updated rows are indexed again, deleted rows (and rows whose text
//! became empty) are removed, and nothing else is touched. The first feed, and any feed the
//! change data feed cannot answer (a table written before conveyor turned it on, history
//! vacuumed), replaces the table's documents as a whole.

use serde::Serialize;

use super::{Definition, IndexSpec};
use crate::error::Result;
use crate::knowledge::document::{Document, Section};
use crate::knowledge::indexer::Indexer;
use crate::knowledge::{Lineage, VectorIndex};
use crate::lakehouse::records::render;
use crate::lakehouse::{Lakehouse, Layer, RowChange};
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
    /// `"changes"` when only changed rows were read (the change data feed), `"full"` when the
    /// whole table was indexed again.
    pub mode: &'static str,
    /// Rows indexed as documents.
    pub documents: usize,
    /// Documents removed (rows deleted, or whose text became empty).
    pub removed: usize,
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
    let last = store.indexed_version(&def.name).await?;
    if last == Some(version) {
        report.up_to_date = true;
        return Ok(Some(report));
    }
    let table = format!("silver.{}", def.name);
    if let Some(since) = last
        && let Some((current, changes)) = lake
            .silver_changes(&def.name, def.primary_key(), since)
            .await?
    {
        report.mode = "changes";
        report.silver_version = Some(current);
        let now = chrono::Utc::now().timestamp_millis();
        let mut gone = Vec::new();
        let mut docs = Vec::new();
        let mut lineages = std::collections::HashMap::new();
        for change in &changes {
            match change {
                RowChange::Upsert(row) => {
                    match row_document(&table, spec, def.primary_key(), row, now) {
                        Some((doc, lineage)) => {
                            // Its old chunks go first: the new text may have fewer.
                            gone.push(doc.doc_id.clone());
                            lineages.insert(doc.doc_id.clone(), lineage);
                            docs.push(doc);
                        }
                        None => {
                            report.removed += 1;
                            gone.push(doc_id(&table, def.primary_key(), row));
                        }
                    }
                }
                RowChange::Delete(key) => {
                    report.removed += 1;
                    gone.push(doc_id(&table, def.primary_key(), key));
                }
            }
        }
        report.documents = docs.len();
        index.delete_docs(gone).await?;
        let points = chunk_with_lineage(indexer, docs, lineages).await?;
        report.chunks = points.len();
        indexer.upsert_points(points).await?;
        index.flush().await?;
        store.set_indexed_version(&def.name, current).await?;
        tracing::info!(connector = %def.name, version = current, documents = report.documents, removed = report.removed, "index feed finished (changed rows)");
        return Ok(Some(report));
    }
    report.mode = "full";
    let rows = lake.silver_rows(&def.name).await?;
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
    let points = chunk_with_lineage(indexer, docs, lineages).await?;
    report.chunks = indexer.replace_points(&table, points).await?;
    index.flush().await?;
    store.set_indexed_version(&def.name, version).await?;
    tracing::info!(connector = %def.name, version, documents = report.documents, "index feed finished");
    Ok(Some(report))
}

/// Chunks `docs` off the async threads and gives every chunk its row's lineage.
async fn chunk_with_lineage(
    indexer: &Indexer,
    docs: Vec<Document>,
    lineages: std::collections::HashMap<String, Lineage>,
) -> Result<Vec<crate::knowledge::IndexPoint>> {
    let this = indexer.clone();
    let mut points = tokio::task::spawn_blocking(move || this.points(&docs))
        .await
        .map_err(|e| crate::error::Error::internal("chunking silver rows", e))?;
    for p in &mut points {
        p.payload.lineage = lineages.get(&p.payload.doc_id).cloned();
    }
    Ok(points)
}

/// The document id of the row with `row`'s primary key values: `silver.NAME#KEY`.
fn doc_id(
    table: &str,
    primary_key: &[String],
    row: &serde_json::Map<String, serde_json::Value>,
) -> String {
    format!("{table}#{}", key_text(primary_key, row))
}

/// The primary key values of `row` as text, joined by `/`.
fn key_text(primary_key: &[String], row: &serde_json::Map<String, serde_json::Value>) -> String {
    primary_key
        .iter()
        .map(|col| render(row.get(col).unwrap_or(&serde_json::Value::Null)))
        .collect::<Vec<_>>()
        .join("/")
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
    for col in primary_key {
        let v = row.get(col).cloned().unwrap_or(serde_json::Value::Null);
        key.insert(col.clone(), v);
    }
    let key_text = key_text(primary_key, row);
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
    let id = doc_id(table, primary_key, row);
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
