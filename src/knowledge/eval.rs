//! Retrieval evaluation on a collection in BEIR layout: `corpus.jsonl`, `queries.jsonl`,
//! `qrels/test.tsv`. The corpus goes through the same pipeline as real documents (chunking,
//! BM25 vectors, the embedded index) in a temporary folder; each query is run and its ranking
//! of documents (a document scores as its best chunk) is scored with nDCG@10 (linear gain, as
//! pytrec_eval computes it) and Recall@100.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::chunker::ChunkerConfig;
use super::document::{Document, Section};
use super::edge::EdgeIndex;
use super::indexer::Indexer;
use super::{Embedder, VectorIndex};
use crate::error::{Error, Result};

/// The outcome of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Documents in the corpus.
    pub documents: usize,
    /// Chunks indexed.
    pub chunks: usize,
    /// Seconds spent indexing.
    pub index_seconds: f64,
    /// Queries that have judgements (the ones scored).
    pub queries: usize,
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean Recall@100.
    pub recall_at_100: f64,
    /// Median retrieval latency per query, milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile retrieval latency per query, milliseconds.
    pub latency_p99_ms: f64,
}

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    text: String,
}

fn id_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::BadInput(format!(
            "cannot read {}: {e}; a BEIR folder has corpus.jsonl, queries.jsonl and qrels/test.tsv",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| Error::BadInput(format!("{} line {}: {e}", path.display(), i + 1)))?,
        );
    }
    Ok(out)
}

/// Judgements: query id → (doc id → grade). Only grades above zero count as relevant.
pub fn read_qrels(path: &Path) -> Result<HashMap<String, HashMap<String, i64>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
    let mut qrels: HashMap<String, HashMap<String, i64>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 || (i == 0 && cols[2].trim().parse::<i64>().is_err()) {
            continue; // header or blank
        }
        let grade: i64 = cols[2].trim().parse().map_err(|_| {
            Error::BadInput(format!(
                "{} line {}: the score {:?} is not an integer",
                path.display(),
                i + 1,
                cols[2]
            ))
        })?;
        qrels
            .entry(cols[0].trim().to_string())
            .or_default()
            .insert(cols[1].trim().to_string(), grade);
    }
    Ok(qrels)
}

/// nDCG@k with linear gain: DCG = Σ rel_i / log2(i + 1) over the first k results, divided by
/// the DCG of the ideal ordering of all judged documents.
pub fn ndcg_at(ranking: &[String], judged: &HashMap<String, i64>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| judged.get(d).copied().unwrap_or(0).max(0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// Recall@k: share of relevant documents found in the first k results.
pub fn recall_at(ranking: &[String], judged: &HashMap<String, i64>, k: usize) -> f64 {
    let relevant: HashSet<&String> = judged
        .iter()
        .filter(|(_, g)| **g > 0)
        .map(|(d, _)| d)
        .collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranking
        .iter()
        .take(k)
        .filter(|d| relevant.contains(d))
        .count();
    found as f64 / relevant.len() as f64
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs the evaluation of the collection in `dir`.
pub async fn run(
    dir: &Path,
    embedder: Arc<dyn Embedder>,
    chunker: ChunkerConfig,
) -> Result<EvalReport> {
    let corpus: Vec<CorpusLine> = read_jsonl(&dir.join("corpus.jsonl"))?;
    let queries: Vec<QueryLine> = read_jsonl(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join("test.tsv"))?;

    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
    let index: Arc<dyn VectorIndex> = Arc::new(EdgeIndex::open(tmp.path())?);
    let indexer = Indexer::new(Arc::clone(&index), Arc::clone(&embedder), chunker);

    let file = dir.join("corpus.jsonl").display().to_string();
    let docs: Vec<Document> = corpus
        .into_iter()
        .map(|c| Document {
            doc_id: id_string(&c.id),
            title: c.title,
            source: file.clone(),
            file: file.clone(),
            sections: vec![Section {
                headings: Vec::new(),
                text: c.text,
            }],
            updated_at: 0,
        })
        .collect();
    let documents = docs.len();
    let started = Instant::now();
    let chunks = indexer.replace_file(&file, docs).await?;
    index.flush().await?;
    let index_seconds = started.elapsed().as_secs_f64();

    let mut ndcg = 0.0;
    let mut recall = 0.0;
    let mut scored = 0usize;
    let mut latencies = Vec::new();
    for q in &queries {
        let qid = id_string(&q.id);
        let Some(judged) = qrels.get(&qid) else {
            continue;
        };
        let t = Instant::now();
        let query = embedder.embed_query(&q.text);
        let hits = if query.indices.is_empty() {
            Vec::new()
        } else {
            index.search(&query, 300).await?
        };
        latencies.push(t.elapsed());
        // A document ranks by its best chunk.
        let mut seen = HashSet::new();
        let ranking: Vec<String> = hits
            .into_iter()
            .filter_map(|h| {
                seen.insert(h.payload.doc_id.clone())
                    .then_some(h.payload.doc_id)
            })
            .take(100)
            .collect();
        ndcg += ndcg_at(&ranking, judged, 10);
        recall += recall_at(&ranking, judged, 100);
        scored += 1;
    }
    latencies.sort_unstable();
    let n = scored.max(1) as f64;
    Ok(EvalReport {
        documents,
        chunks,
        index_seconds,
        queries: scored,
        ndcg_at_10: ndcg / n,
        recall_at_100: recall / n,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_matches_hand_computation() {
        let j = judged(&[("a", 3), ("b", 1), ("c", 2)]);
        assert!((ndcg_at(&ranking(&["a", "c", "b"]), &j, 10) - 1.0).abs() < 1e-12);
        // b first, then a: DCG = 1/1 + 3/log2(3); IDCG = 3 + 2/log2(3) + 1/2.
        let dcg = 1.0 + 3.0 / 3f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 0.5;
        assert!((ndcg_at(&ranking(&["b", "a"]), &j, 10) - dcg / idcg).abs() < 1e-12);
        assert_eq!(ndcg_at(&ranking(&["x"]), &j, 10), 0.0);
    }

    #[test]
    fn recall_counts_relevant_only() {
        let j = judged(&[("a", 1), ("b", 2), ("z", 0)]);
        assert!((recall_at(&ranking(&["a", "z", "q"]), &j, 100) - 0.5).abs() < 1e-12);
    }
}
