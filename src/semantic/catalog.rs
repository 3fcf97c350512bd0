//! The semantic model in an index, for the LLM: one document per entity (its description and
//! synonyms, columns, measures, metrics, dimensions with their synonyms and the values read
//! from the data, segments, joins), indexed like the documents (BM25 sparse vectors in the
//! same engine) in an index of its own, so it never answers a documents question.
//!
//! Per question the entities the question is about are retrieved, with every entity they
//! reach through joins (a query needs them); the BI tools then describe only those, for the
//! caller's views ([`super::present::model_summary`] with the caller's grants, so hidden
//! columns are not even named). A small model is described whole: retrieval is for models
//! too large to put in every request.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::Result;
use crate::knowledge::{ChunkPayload, Embedder, IndexPoint, VectorIndex};

use super::Semantic;
use super::model::Model;

/// The `file` of every catalog document (re-indexing replaces all of them).
const FILE: &str = "semantic:model";

/// Models with at most this many entities are described whole.
pub const DESCRIBE_WHOLE: usize = 6;

/// How many entities a question retrieves (before adding what they join to).
const RETRIEVED: usize = 3;

/// Most values of one dimension put in its entity's document.
const MAX_VALUES: usize = 50;

/// The semantic model's entities in an index.
pub struct Catalog {
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    describe_whole: usize,
    /// The last question's entities: both BI tools describe themselves for the same turn.
    last: std::sync::Mutex<Option<(String, Vec<String>)>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// Indexes every entity of `semantic` into `index` (what an earlier start-up indexed is
    /// replaced, so a removed entity is not retrieved).
    pub async fn build(
        semantic: &Semantic,
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Self> {
        let values = semantic.values().await;
        let model = semantic.model();
        let now = chrono::Utc::now().timestamp_millis();
        let points: Vec<IndexPoint> = model
            .entities
            .keys()
            .map(|name| {
                let text = document(model, name, &values.values);
                let doc_id = format!("semantic:{name}");
                IndexPoint {
                    id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, doc_id.as_bytes()),
                    sparse: embedder.embed_document(&text),
                    payload: ChunkPayload {
                        doc_id,
                        title: name.clone(),
                        source: "semantic model".into(),
                        file: FILE.into(),
                        heading: String::new(),
                        text,
                        position: 0,
                        updated_at: now,
                        lineage: None,
                    },
                }
            })
            .collect();
        index.delete_file(FILE).await?;
        index.upsert(points).await?;
        index.flush().await?;
        Ok(Self {
            index,
            embedder,
            describe_whole: DESCRIBE_WHOLE,
            last: std::sync::Mutex::new(None),
        })
    }

    /// Describes models of at most `entities` entities whole ([`DESCRIBE_WHOLE`] unless set).
    pub fn describe_whole(mut self, entities: usize) -> Self {
        self.describe_whole = entities;
        self
    }

    /// The entities `question` is about, best first, then every entity they reach through
    /// joins; every entity when the model is small or nothing matches.
    pub async fn entities_for(&self, model: &Model, question: &str) -> Result<Vec<String>> {
        let all: Vec<String> = model.entities.keys().cloned().collect();
        if all.len() <= self.describe_whole {
            return Ok(all);
        }
        if let Ok(last) = self.last.lock()
            && let Some((q, entities)) = last.as_ref()
            && q == question
        {
            return Ok(entities.clone());
        }
        let query = self.embedder.embed_query(question);
        if query.indices.is_empty() {
            return Ok(all);
        }
        let hits = self.index.search(&query, RETRIEVED).await?;
        let mut out: Vec<String> = Vec::new();
        for h in hits {
            if let Some(name) = h.payload.doc_id.strip_prefix("semantic:")
                && model.entities.contains_key(name)
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
        }
        if out.is_empty() {
            return Ok(all);
        }
        // What they join to, transitively: a query over them may need it.
        let mut i = 0;
        while let Some(name) = out.get(i).cloned() {
            for j in model.joins.iter().filter(|j| j.from == name) {
                if !out.contains(&j.to) {
                    out.push(j.to.clone());
                }
            }
            i += 1;
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((question.to_string(), out.clone()));
        }
        Ok(out)
    }
}

/// The text indexed for entity `name`: every word a question about it may use.
fn document(
    model: &Model,
    name: &str,
    values: &std::collections::BTreeMap<String, Vec<String>>,
) -> String {
    let mut out = String::new();
    let Some(e) = model.entities.get(name) else {
        return out;
    };
    out.push_str(&format!("{name}: {}\n", e.description));
    if !e.synonyms.is_empty() {
        out.push_str(&format!("also called {}\n", e.synonyms.join(", ")));
    }
    out.push_str(&format!("columns: {}\n", e.columns.join(", ")));
    // One line per named thing: what it is, its name, label, description and synonyms.
    let mut line = |what: &str, name: &str, label: &str, description: &str, synonyms: &[String]| {
        out.push_str(&format!(
            "{what} {name} ({label}) {description} {}\n",
            synonyms.join(", ")
        ));
    };
    let mut measures: BTreeSet<&str> = BTreeSet::new();
    for m in model.measures.iter().filter(|m| m.entity == name) {
        measures.insert(&m.name);
        line("measure", &m.name, &m.label, &m.description, &m.synonyms);
    }
    for m in &model.metrics {
        let uses = super::present::metric_uses(m);
        if uses.iter().any(|u| measures.contains(u)) {
            line("metric", &m.name, &m.label, &m.description, &m.synonyms);
        }
    }
    for d in model.dimensions.iter().filter(|d| d.entity == name) {
        out.push_str(&format!(
            "dimension {} ({}) {} {}",
            d.name,
            d.label,
            d.description,
            d.synonyms.join(", ")
        ));
        if let Some(vs) = values.get(&d.key()) {
            let shown: Vec<&str> = vs.iter().take(MAX_VALUES).map(String::as_str).collect();
            out.push_str(&format!(": {}", shown.join(", ")));
        }
        for (v, syns) in &d.values {
            out.push_str(&format!(" {v} {}", syns.join(" ")));
        }
        out.push('\n');
    }
    for s in model.segments.iter().filter(|s| s.entity == name) {
        out.push_str(&format!(
            "segment {} {} {}\n",
            s.name,
            s.description,
            s.synonyms.join(", ")
        ));
    }
    out
}
