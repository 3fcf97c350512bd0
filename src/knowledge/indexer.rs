//! Ingestion: files → documents → chunks → vectors → the index, with change detection.
//!
//! The index folder keeps a manifest (`manifest.json`): for each ingested file its content hash
//! and chunk count. A file whose hash is unchanged is skipped; a changed file has all its chunks
//! replaced (delete by file, then upsert), so chunks of removed sections never linger. The
//! manifest is written after the index is flushed, so a crash in between only means the next
//! run redoes that work: replacing a file's chunks is idempotent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chunker::{ChunkerConfig, chunk_document};
use super::document::{self, Document};
use super::{ChunkPayload, Embedder, IndexPoint, VectorIndex};
use crate::error::{Error, Result};

/// Namespace for chunk ids (UUIDv5 of document id and position).
const CHUNK_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c0e_5a1e_c0f2_4b7e_9d1a_2f3b_4c5d_6e7f);
/// Points per write to the index.
const BATCH: usize = 256;

/// What one ingested file left in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// sha256 of the file's bytes.
    pub hash: String,
    /// Documents read from it.
    pub documents: usize,
    /// Chunks written for it.
    pub chunks: usize,
    /// When it was indexed (unix ms).
    pub indexed_at: i64,
}

/// Everything the indexer has ingested, by file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Ingested files, by absolute path.
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    /// Reads the manifest of an index folder (empty when there is none yet).
    pub fn load(index_dir: &Path) -> Result<Self> {
        let path = index_dir.join("manifest.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::Upstream(format!(
                    "the index manifest {} is damaged ({e}); delete it and run `conveyor index` again to re-ingest everything",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::Upstream(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the manifest atomically (temp file, then rename).
    pub fn save(&self, index_dir: &Path) -> Result<()> {
        let path = index_dir.join("manifest.json");
        let tmp = index_dir.join("manifest.json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::internal("encoding the index manifest", e))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::Upstream(format!("cannot write {}: {e}", path.display())))
    }
}

/// Options of one indexing run.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOptions {
    /// Remove chunks of previously ingested files that no longer exist.
    pub prune: bool,
    /// Draw a progress bar (only shown on a terminal).
    pub progress: bool,
    /// Re-ingest files even when unchanged.
    pub force: bool,
}

/// What one indexing run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IndexReport {
    /// Supported files found under the given paths.
    pub files_seen: usize,
    /// New or changed files ingested.
    pub files_indexed: usize,
    /// Files skipped because they did not change.
    pub files_unchanged: usize,
    /// Files removed from the index (gone from disk, with `prune`).
    pub files_pruned: usize,
    /// Documents read from ingested files.
    pub documents: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Files that could not be ingested, with the reason; their previous chunks are kept.
    pub errors: Vec<String>,
    /// Wall time of the run.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Turns documents into indexed chunks.
#[derive(Clone)]
pub struct Indexer {
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    chunker: ChunkerConfig,
}

impl Indexer {
    /// A new indexer writing to `index`.
    pub fn new(
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
        chunker: ChunkerConfig,
    ) -> Self {
        Self {
            index,
            embedder,
            chunker,
        }
    }

    /// Chunks and embeds documents into points (CPU only, no I/O).
    pub fn points(&self, docs: &[Document]) -> Vec<IndexPoint> {
        let mut points = Vec::new();
        for doc in docs {
            for chunk in chunk_document(doc, &self.chunker) {
                // Title and headings are part of what a chunk is about, so they are embedded
                // with it; the payload keeps the chunk text alone for quoting.
                let embed_text = format!("{}\n{}\n{}", doc.title, chunk.heading, chunk.text);
                let id = uuid::Uuid::new_v5(
                    &CHUNK_NAMESPACE,
                    format!("{}\u{0}{}", doc.doc_id, chunk.position).as_bytes(),
                );
                points.push(IndexPoint {
                    id,
                    sparse: self.embedder.embed_document(&embed_text),
                    payload: ChunkPayload {
                        doc_id: doc.doc_id.clone(),
                        title: doc.title.clone(),
                        source: doc.source.clone(),
                        file: doc.file.clone(),
                        heading: chunk.heading,
                        text: chunk.text,
                        position: chunk.position,
                        updated_at: doc.updated_at,
                        lineage: None,
                    },
                });
            }
        }
        points
    }

    /// Replaces everything indexed for `file` with `docs`. Returns the number of chunks.
    pub async fn replace_file(&self, file: &str, docs: Vec<Document>) -> Result<usize> {
        let this = self.clone();
        let points = tokio::task::spawn_blocking(move || this.points(&docs))
            .await
            .map_err(|e| Error::internal("chunking documents", e))?;
        self.replace_points(file, points).await
    }

    /// Replaces everything indexed for `file` with `points` (made by [`Indexer::points`]).
    /// Returns the number of chunks.
    pub async fn replace_points(&self, file: &str, points: Vec<IndexPoint>) -> Result<usize> {
        let n = points.len();
        self.index.delete_file(file).await?;
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            let batch: Vec<IndexPoint> = points.by_ref().take(BATCH).collect();
            self.index.upsert(batch).await?;
        }
        Ok(n)
    }

    /// Inserts or replaces `points` (made by [`Indexer::points`]) by id, in batches.
    pub async fn upsert_points(&self, points: Vec<IndexPoint>) -> Result<()> {
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            let batch: Vec<IndexPoint> = points.by_ref().take(BATCH).collect();
            self.index.upsert(batch).await?;
        }
        Ok(())
    }

    /// Ingests every supported file under `paths`, skipping unchanged files, and updates the
    /// manifest in `index_dir`.
    pub async fn index_paths(
        &self,
        index_dir: &Path,
        paths: &[PathBuf],
        opts: IndexOptions,
    ) -> Result<IndexReport> {
        let started = Instant::now();
        let mut manifest = Manifest::load(index_dir)?;
        let FileList { files, skipped } = collect_files(paths)?;
        let mut report = IndexReport {
            files_seen: files.len(),
            errors: skipped,
            ..Default::default()
        };

        let bar = if opts.progress {
            let bar = ProgressBar::new(files.len() as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} indexing [{bar:30}] {pos}/{len} files  {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        } else {
            ProgressBar::hidden()
        };

        for path in &files {
            let key = path.display().to_string();
            bar.set_message(short_name(path));
            match self.ingest_file(path, &key, &manifest, opts.force).await {
                Ok(Some(entry)) => {
                    report.files_indexed += 1;
                    report.documents += entry.documents;
                    report.chunks += entry.chunks;
                    manifest.files.insert(key, entry);
                }
                Ok(None) => report.files_unchanged += 1,
                Err(e) => {
                    // Reported once, in the report; the caller decides how to show it.
                    let e = e.to_string();
                    report.errors.push(if e.contains(&key) {
                        e
                    } else {
                        format!("{key}: {e}")
                    });
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();

        if opts.prune {
            let gone: Vec<String> = manifest
                .files
                .keys()
                .filter(|f| !Path::new(f.as_str()).exists())
                .cloned()
                .collect();
            for file in gone {
                self.index.delete_file(&file).await?;
                manifest.files.remove(&file);
                report.files_pruned += 1;
            }
        }

        self.index.flush().await?;
        manifest.save(index_dir)?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Ingests one file unless unchanged; `Ok(None)` when skipped.
    async fn ingest_file(
        &self,
        path: &Path,
        key: &str,
        manifest: &Manifest,
        force: bool,
    ) -> Result<Option<FileEntry>> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        if !force && manifest.files.get(key).is_some_and(|e| e.hash == hash) {
            return Ok(None);
        }
        let owned = path.to_path_buf();
        let docs = tokio::task::spawn_blocking(move || document::load_file(&owned))
            .await
            .map_err(|e| Error::internal("reading a document", e))??;
        // Replace and prune work by this key, so every chunk must carry exactly it.
        let docs: Vec<Document> = docs
            .into_iter()
            .map(|mut d| {
                d.file = key.to_string();
                d
            })
            .collect();
        let documents = docs.len();
        let chunks = self.replace_file(key, docs).await?;
        Ok(Some(FileEntry {
            hash,
            documents,
            chunks,
            indexed_at: chrono::Utc::now().timestamp_millis(),
        }))
    }
}

fn short_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Supported files found under some paths, and what could not be looked at.
#[derive(Debug, Default)]
pub struct FileList {
    /// Supported files, sorted, as absolute paths.
    pub files: Vec<PathBuf>,
    /// Entries that could not be walked (dangling links, loops, unreadable folders), as
    /// sentences; the rest of the walk goes on.
    pub skipped: Vec<String>,
}

/// Expands `paths` into the supported files under them. Hidden files and folders (names
/// starting with '.') are skipped when walking a folder. A path given by the user that does
/// not exist, or a file of an unsupported type, is an error; a bad entry found while walking
/// a folder is reported in [`FileList::skipped`] and does not stop the walk.
pub fn collect_files(paths: &[PathBuf]) -> Result<FileList> {
    let mut list = FileList::default();
    for p in paths {
        let abs = std::fs::canonicalize(p).map_err(|e| {
            Error::BadInput(format!(
                "cannot index {}: {e}; check that the path exists",
                p.display()
            ))
        })?;
        if abs.is_file() {
            if !document::is_supported(&abs) {
                return Err(Error::BadInput(format!(
                    "cannot index {}: unsupported file type; supported are {}",
                    p.display(),
                    document::SUPPORTED
                )));
            }
            list.files.push(abs);
            continue;
        }
        for entry in walkdir::WalkDir::new(&abs)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        {
            match entry {
                Ok(entry) => {
                    if entry.file_type().is_file() && document::is_supported(entry.path()) {
                        list.files.push(entry.into_path());
                    }
                }
                Err(e) => {
                    let at = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| abs.display().to_string());
                    let why = e
                        .io_error()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| e.to_string());
                    list.skipped.push(format!("{at}: skipped ({why})"));
                }
            }
        }
    }
    list.files.sort();
    list.files.dedup();
    Ok(list)
}
