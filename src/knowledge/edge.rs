//! The embedded [`VectorIndex`]: Qdrant's engine (`qdrant-edge`) running in-process on a local
//! folder, persistent across restarts.
//!
//! Layout of the folder: `LOCK` (an advisory lock held while a process has the index open, with
//! that process's id inside), `shard/` (Qdrant's segments and write-ahead log) and
//! `manifest.json` (what the indexer has ingested, see [`super::indexer`]). The engine is
//! synchronous, so every call runs on tokio's blocking pool.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use qdrant_edge::external::serde_json;
use qdrant_edge::{
    Condition, EdgeConfig, EdgeShard, EdgeSparseVectorParams, FieldCondition, Filter, JsonPath,
    Match, Modifier, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, QueryEnum, QueryRequest, ScoringQuery,
    UpdateOperation, VectorInternal, Vectors, WithPayloadInterface, WithVector,
};

use super::{ChunkPayload, IndexPoint, SearchHit, SparseVector, VectorIndex};
use crate::error::{Error, Result};

/// Name of the sparse vector in the shard.
const SPARSE: &str = "bm25";
/// Payload field indexed for replace/prune by file.
const FILE_FIELD: &str = "file";
/// The payload field with the document id (connector rows: `silver.NAME#KEY`).
const DOC_FIELD: &str = "doc_id";

/// Qdrant's engine in-process.
pub struct EdgeIndex {
    shard: Arc<EdgeShard>,
    path: PathBuf,
    // Held for the lifetime of the index; the OS releases it if the process dies.
    _lock: File,
}

impl std::fmt::Debug for EdgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeIndex")
            .field("path", &self.path)
            .finish()
    }
}

impl EdgeIndex {
    /// Opens the index at `path`, creating it when the folder is new.
    ///
    /// Fails clearly when another process holds the index, or when its files cannot be read.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::Upstream(format!(
                "cannot create the index folder {}: {e}; check index.path and its permissions",
                path.display()
            ))
        })?;
        let lock = lock_folder(path)?;
        let shard_dir = path.join("shard");
        let shard = if shard_dir.join("edge_config.json").exists() {
            EdgeShard::load(&shard_dir, None).map_err(|e| corrupt(path, e))?
        } else {
            // A new shard holds nothing, so a manifest left from an earlier one (the shard
            // folder was deleted) would make the indexer skip every file as unchanged.
            let stale = path.join("manifest.json");
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| {
                    Error::Upstream(format!("cannot remove the stale {}: {e}", stale.display()))
                })?;
            }
            std::fs::create_dir_all(&shard_dir).map_err(|e| {
                Error::Upstream(format!("cannot create {}: {e}", shard_dir.display()))
            })?;
            let config = EdgeConfig {
                sparse_vectors: [(
                    SPARSE.to_string(),
                    EdgeSparseVectorParams {
                        modifier: Some(Modifier::Idf),
                        ..Default::default()
                    },
                )]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            let shard = EdgeShard::new(&shard_dir, config).map_err(|e| corrupt(path, e))?;
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                        field_name: file_path()?,
                        field_schema: Some(PayloadFieldSchema::FieldType(
                            PayloadSchemaType::Keyword,
                        )),
                    }),
                ))
                .map_err(|e| {
                    Error::upstream("creating the file index of the knowledge index", e)
                })?;
            // Connector rows are deleted one document at a time.
            let doc_path: JsonPath = DOC_FIELD
                .parse()
                .map_err(|_| Error::Internal(format!("{DOC_FIELD:?} is not a payload path")))?;
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                        field_name: doc_path,
                        field_schema: Some(PayloadFieldSchema::FieldType(
                            PayloadSchemaType::Keyword,
                        )),
                    }),
                ))
                .map_err(|e| {
                    Error::upstream("creating the document index of the knowledge index", e)
                })?;
            shard
        };
        Ok(Self {
            shard: Arc::new(shard),
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The folder the index lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T> + Send + 'static,
    {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || f(&shard))
            .await
            .map_err(|e| Error::internal(what, e))?
    }
}

fn lock_folder(path: &Path) -> Result<File> {
    let lock_path = path.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::Upstream(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another conveyor process (pid {holder})")
            };
            return Err(Error::Upstream(format!(
                "the knowledge index at {} is in use by {who}. Stop that process first, or, if it is `conveyor serve`, send your question to it instead: `conveyor ask --server http://HOST:PORT \"...\"`",
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Upstream(format!(
                "cannot lock {}: {e}",
                lock_path.display()
            )));
        }
    }
    // Best effort: the pid only makes the "in use" message friendlier.
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Upstream(format!(
        "the knowledge index at {} cannot be opened ({e}); it may be damaged. Move the folder away and rebuild it with `conveyor index PATH…`",
        path.display()
    ))
}

fn file_path() -> Result<JsonPath> {
    FILE_FIELD
        .parse()
        .map_err(|_| Error::Internal(format!("{FILE_FIELD:?} is not a payload path")))
}

fn file_filter(file: &str) -> Result<Filter> {
    Ok(Filter::new_must(Condition::Field(
        FieldCondition::new_match(file_path()?, Match::from(file.to_string())),
    )))
}

fn to_hit(id: PointId, score: f32, payload: Option<qdrant_edge::Payload>) -> Result<SearchHit> {
    let map = payload.map(|p| p.0).unwrap_or_default();
    let payload: ChunkPayload = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| Error::internal("reading a chunk's payload from the index", e))?;
    Ok(SearchHit {
        id: id.to_string(),
        score,
        payload,
    })
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    async fn upsert(&self, points: Vec<IndexPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        self.blocking("upserting chunks", move |shard| {
            let mut batch = Vec::with_capacity(points.len());
            for p in points {
                let payload = serde_json::to_value(&p.payload)
                    .map_err(|e| Error::internal("encoding a chunk payload", e))?;
                let sparse = qdrant_edge::SparseVector::new(p.sparse.indices, p.sparse.values)
                    .map_err(|e| Error::internal("building a sparse vector", e))?;
                batch.push(
                    PointStruct::new(
                        PointId::Uuid(p.id),
                        Vectors::new_named([(SPARSE, sparse)]),
                        payload,
                    )
                    .into(),
                );
            }
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
                ))
                .map_err(|e| Error::upstream("writing to the knowledge index", e))
        })
        .await
    }

    async fn delete_file(&self, file: &str) -> Result<()> {
        let filter = file_filter(file)?;
        self.blocking("deleting chunks", move |shard| {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter),
                ))
                .map_err(|e| Error::upstream("deleting from the knowledge index", e))
        })
        .await
    }

    async fn delete_docs(&self, doc_ids: Vec<String>) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        let path: JsonPath = DOC_FIELD
            .parse()
            .map_err(|_| Error::Internal(format!("{DOC_FIELD:?} is not a payload path")))?;
        self.blocking("deleting documents", move |shard| {
            // Bounded filters: a few thousand ids per delete.
            for ids in doc_ids.chunks(4096) {
                let filter = Filter::new_must(Condition::Field(FieldCondition::new_match(
                    path.clone(),
                    Match::from(ids.to_vec()),
                )));
                shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::DeletePointsByFilter(filter),
                    ))
                    .map_err(|e| Error::upstream("deleting from the knowledge index", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn search(&self, query: &SparseVector, limit: usize) -> Result<Vec<SearchHit>> {
        let vector = qdrant_edge::SparseVector::new(query.indices.clone(), query.values.clone())
            .map_err(|e| Error::internal("building a sparse query", e))?;
        self.blocking("searching", move |shard| {
            let request = QueryRequest {
                prefetches: vec![],
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                    query: VectorInternal::from(vector),
                    using: Some(SPARSE.to_string()),
                }))),
                filter: None,
                score_threshold: None,
                limit,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            };
            let points = shard
                .query(request)
                .map_err(|e| Error::upstream("searching the knowledge index", e))?;
            points
                .into_iter()
                .map(|p| to_hit(p.id, p.score, p.payload))
                .collect()
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<SearchHit>> {
        let Ok(uuid) = uuid::Uuid::parse_str(id) else {
            return Ok(None);
        };
        self.blocking("reading a chunk", move |shard| {
            let records = shard
                .retrieve(&[PointId::Uuid(uuid)], None, None)
                .map_err(|e| Error::upstream("reading from the knowledge index", e))?;
            records
                .into_iter()
                .next()
                .map(|r| to_hit(r.id, 0.0, r.payload))
                .transpose()
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.blocking("counting", |shard| {
            let n = shard
                .count(qdrant_edge::CountRequest {
                    filter: None,
                    exact: true,
                })
                .map_err(|e| Error::upstream("counting the knowledge index", e))?;
            Ok(n as u64)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.blocking("flushing", |shard| {
            shard
                .optimize()
                .map_err(|e| Error::upstream("optimising the knowledge index", e))?;
            shard.flush();
            Ok(())
        })
        .await
    }
}
