//! The knowledge index: documents become chunks, chunks become sparse lexical vectors, and the
//! vectors live in a [`VectorIndex`].
//!
//! Two seams live here. [`Embedder`] turns text into vectors (built in: sparse BM25 terms;
//! later: dense vectors from a provider). [`VectorIndex`] stores and searches them (built in:
//! Qdrant's engine in-process, [`edge::EdgeIndex`]; later: a Qdrant server). Both are
//! object-safe so the composition root can hold `Arc<dyn …>`.
//!
//! [`Knowledge`] is the knowledge side opened from the config (index, embedder, chunk sizes):
//! what `conveyor index`, `eval`, the connectors' index feed and the app all hold. Its
//! [`Knowledge::open`] is where the index backend and the embedder are chosen.

pub mod chunker;
pub mod document;
pub mod edge;
pub mod eval;
pub mod indexer;
pub mod sparse;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use std::path::{Path, PathBuf};

use crate::error::Result;

use chunker::ChunkerConfig;
use edge::EdgeIndex;
use indexer::Indexer;
use sparse::Bm25Embedder;
pub use sparse::Bm25Params;

/// Which vector index backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexBackend {
    /// Qdrant's engine in-process, on a local folder.
    Embedded,
}

/// `[index]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Backend.
    pub backend: IndexBackend,
    /// Folder of the embedded index (relative to the config folder).
    pub path: PathBuf,
    /// Largest chunk, in characters.
    pub chunk_size: usize,
    /// Characters of the previous chunk repeated at the start of the next.
    pub chunk_overlap: usize,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// BM25 parameters of the sparse lexical vectors.
    pub bm25: Bm25Params,
}

impl IndexConfig {
    /// Chunk sizes.
    pub fn chunker(&self) -> ChunkerConfig {
        ChunkerConfig {
            max_chars: self.chunk_size,
            overlap_chars: self.chunk_overlap,
        }
    }

    /// The embedded index folder, resolved against `base_dir`.
    pub fn path_in(&self, base_dir: &Path) -> PathBuf {
        if self.path.is_absolute() {
            self.path.clone()
        } else {
            base_dir.join(&self.path)
        }
    }

    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.chunk_size < 100 {
            problems.push(format!(
                "index.chunk_size: {} is too small; use at least 100 characters",
                self.chunk_size
            ));
        }
        if self.chunk_overlap >= self.chunk_size {
            problems.push(format!(
                "index.chunk_overlap: {} must be smaller than index.chunk_size ({})",
                self.chunk_overlap, self.chunk_size
            ));
        }
        if self.top_k == 0 || self.top_k > 100 {
            problems.push("index.top_k: must be between 1 and 100".into());
        }
        let bm = &self.bm25;
        if !(bm.k1 > 0.0 && bm.k1.is_finite()) {
            problems.push("index.bm25.k1: must be a positive number, e.g. 1.2".into());
        }
        if !(0.0..=1.0).contains(&bm.b) {
            problems.push("index.bm25.b: must be between 0 and 1, e.g. 0.75".into());
        }
        if !(bm.avg_len > 0.0 && bm.avg_len.is_finite()) {
            problems.push("index.bm25.avg_len: must be a positive number of tokens".into());
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            backend: IndexBackend::Embedded,
            path: PathBuf::from("data/index"),
            chunk_size: 1000,
            chunk_overlap: 150,
            top_k: 8,
            bm25: Bm25Params::default(),
        }
    }
}

/// A sparse vector: term ids and their weights. Term ids are unique within one vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    /// Term ids.
    pub indices: Vec<u32>,
    /// Weights, one per id.
    pub values: Vec<f32>,
}

/// What is stored with every chunk, and returned with every hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    /// The document the chunk belongs to.
    pub doc_id: String,
    /// The document's title.
    pub title: String,
    /// Where the document came from, as shown to users: a path or a URL.
    pub source: String,
    /// The file the document was read from; re-indexing or pruning a file replaces all of it.
    pub file: String,
    /// Headings above the chunk, joined with " > ".
    pub heading: String,
    /// The chunk's text.
    pub text: String,
    /// 0-based position of the chunk within its document.
    pub position: usize,
    /// When the document last changed (unix milliseconds).
    pub updated_at: i64,
    /// For a row of a lakehouse table fed by a connector's `[index]`: where it lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// Where an indexed row lives in the lakehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The table, e.g. `silver.customers`.
    pub table: String,
    /// The row's primary key, column → value.
    pub key: serde_json::Map<String, serde_json::Value>,
    /// The `[index] payload` columns of the row.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A chunk ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPoint {
    /// Stable id: the same document and position always give the same id.
    pub id: uuid::Uuid,
    /// Lexical vector.
    pub sparse: SparseVector,
    /// The chunk and where it came from.
    pub payload: ChunkPayload,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The chunk id.
    pub id: String,
    /// Relevance score; higher is better; comparable only within one search.
    pub score: f32,
    /// The chunk.
    pub payload: ChunkPayload,
}

/// A store of chunk vectors that can be searched.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Inserts or replaces points by id.
    async fn upsert(&self, points: Vec<IndexPoint>) -> Result<()>;
    /// Removes every chunk whose payload `file` equals `file`.
    async fn delete_file(&self, file: &str) -> Result<()>;
    /// Removes every chunk of the documents `doc_ids` (payload `doc_id`).
    async fn delete_docs(&self, doc_ids: Vec<String>) -> Result<()>;
    /// The `limit` best chunks for a sparse query vector.
    async fn search(&self, query: &SparseVector, limit: usize) -> Result<Vec<SearchHit>>;
    /// One chunk by id.
    async fn get(&self, id: &str) -> Result<Option<SearchHit>>;
    /// How many chunks are stored.
    async fn count(&self) -> Result<u64>;
    /// Makes everything written so far durable and compacts for fast search.
    async fn flush(&self) -> Result<()>;
}

/// Turns text into sparse lexical vectors.
pub trait Embedder: Send + Sync {
    /// Vector of a document chunk (term frequencies, BM25-saturated).
    fn embed_document(&self, text: &str) -> SparseVector;
    /// Vector of a query (each distinct term once).
    fn embed_query(&self, text: &str) -> SparseVector;
}

/// Retrieval: embeds a question and searches the index.
#[derive(Clone)]
pub struct Retriever {
    /// The index searched.
    pub index: Arc<dyn VectorIndex>,
    /// The embedder used for queries (the same one used when indexing).
    pub embedder: Arc<dyn Embedder>,
}

impl Retriever {
    /// The `k` best chunks for `question`; empty when the question has no indexable terms.
    pub async fn retrieve(&self, question: &str, k: usize) -> Result<Vec<SearchHit>> {
        let q = self.embedder.embed_query(question);
        if q.indices.is_empty() {
            return Ok(Vec::new());
        }
        self.index.search(&q, k).await
    }
}

/// The knowledge side alone: what `conveyor index` and `eval` need.
#[derive(Clone)]
pub struct Knowledge {
    /// The vector index.
    pub index: Arc<dyn VectorIndex>,
    /// The embedder used for documents and queries.
    pub embedder: Arc<dyn Embedder>,
    /// Chunk sizes.
    pub chunker: ChunkerConfig,
}

impl Knowledge {
    /// Opens the index `[index]` describes; a relative path resolves against `base_dir` (the
    /// config file's folder).
    pub fn open(config: &IndexConfig, base_dir: &Path) -> Result<Self> {
        let embedder: Arc<dyn Embedder> = Arc::new(Bm25Embedder::new(&config.bm25)?);
        let index: Arc<dyn VectorIndex> = match config.backend {
            IndexBackend::Embedded => Arc::new(EdgeIndex::open(&config.path_in(base_dir))?),
        };
        Ok(Self {
            index,
            embedder,
            chunker: config.chunker(),
        })
    }

    /// An indexer writing into this index.
    pub fn indexer(&self) -> Indexer {
        Indexer::new(
            Arc::clone(&self.index),
            Arc::clone(&self.embedder),
            self.chunker,
        )
    }

    /// The index of the semantic model's entities ([`crate::semantic::catalog`]): an index of
    /// its own next to the documents' (`INDEX_PATH/semantic-model`), so it never answers a
    /// documents question.
    pub fn open_catalog(
        &self,
        config: &IndexConfig,
        base_dir: &Path,
    ) -> Result<Arc<dyn VectorIndex>> {
        Ok(match config.backend {
            IndexBackend::Embedded => Arc::new(EdgeIndex::open(
                &config.path_in(base_dir).join("semantic-model"),
            )?),
        })
    }

    /// A retriever over this index.
    pub fn retriever(&self) -> Retriever {
        Retriever {
            index: Arc::clone(&self.index),
            embedder: Arc::clone(&self.embedder),
        }
    }
}
