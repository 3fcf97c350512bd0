//! The composition root: the one place that picks concrete backends from the config and wires
//! them together.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::agent::Planner;
use crate::agent::offline::OfflinePlanner;
use crate::config::{Config, IndexBackend, LlmProvider};
use crate::error::Result;
use crate::gateway::Gateway;
use crate::knowledge::chunker::ChunkerConfig;
use crate::knowledge::edge::EdgeIndex;
use crate::knowledge::indexer::Indexer;
use crate::knowledge::sparse::Bm25Embedder;
use crate::knowledge::{Embedder, Retriever, VectorIndex};
use crate::metrics::Metrics;
use crate::store::Store;

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
    /// Opens the configured index.
    pub fn open(config: &Config) -> Result<Self> {
        let embedder: Arc<dyn Embedder> = Arc::new(Bm25Embedder::new(&config.index.bm25)?);
        let index: Arc<dyn VectorIndex> = match config.index.backend {
            IndexBackend::Embedded => Arc::new(EdgeIndex::open(&config.index_path())?),
        };
        Ok(Self {
            index,
            embedder,
            chunker: chunker_config(config),
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

    /// A retriever over this index.
    pub fn retriever(&self) -> Retriever {
        Retriever {
            index: Arc::clone(&self.index),
            embedder: Arc::clone(&self.embedder),
        }
    }
}

/// Chunk sizes from the config.
pub fn chunker_config(config: &Config) -> ChunkerConfig {
    ChunkerConfig {
        max_chars: config.index.chunk_size,
        overlap_chars: config.index.chunk_overlap,
    }
}

/// Everything a running conveyor holds.
#[derive(Clone)]
pub struct App {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// State store.
    pub store: Store,
    /// Knowledge index.
    pub knowledge: Knowledge,
    /// Message handling.
    pub gateway: Arc<Gateway>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Work that must finish even when the request that started it is gone (a client that
    /// disconnected, a request timeout); awaited on shutdown.
    pub tasks: TaskTracker,
}

impl App {
    /// Opens the store and the index and wires the gateway.
    pub async fn build(config: Config) -> Result<Self> {
        // The store first: when it is unreachable, nothing should be created on disk.
        let store = Store::connect(&config.store_url()?).await?;
        let knowledge = Knowledge::open(&config)?;
        let metrics = Arc::new(Metrics::default());
        metrics.set_index_chunks(knowledge.index.count().await?);
        let planner: Arc<dyn Planner> = match config.llm.provider {
            LlmProvider::Offline => Arc::new(OfflinePlanner::new(
                knowledge.retriever(),
                config.index.top_k,
                config.answer.clone(),
            )),
        };
        let gateway = Arc::new(Gateway::new(
            store.clone(),
            planner,
            Arc::clone(&metrics),
            config.gateway.clone(),
            &config.limits,
        ));
        Ok(Self {
            config: Arc::new(config),
            store,
            knowledge,
            gateway,
            metrics,
            tasks: TaskTracker::new(),
        })
    }
}
