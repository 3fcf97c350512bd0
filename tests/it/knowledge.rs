//! The knowledge index through its public API: ingestion of every supported format, change
//! detection, pruning, bad input, persistence, the folder lock, damaged files and retrieval
//! quality on a judged collection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use conveyor::config::Config;
use conveyor::knowledge::edge::EdgeIndex;
use conveyor::knowledge::indexer::{IndexOptions, IndexReport, Manifest};
use conveyor::knowledge::sparse::Bm25Embedder;
use conveyor::knowledge::{Knowledge, SearchHit};
use tempfile::TempDir;

/// A project folder with a `docs/` folder and the index at `data/index`, as `init` lays out.
struct Project {
    _tmp: TempDir,
    /// Canonical project folder (the indexer keys files by canonical path).
    root: PathBuf,
    config: Config,
}

impl Project {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        let config = Config::from_toml("", "test config", &root, &[]).unwrap();
        Self {
            _tmp: tmp,
            root,
            config,
        }
    }

    fn docs(&self) -> PathBuf {
        self.root.join("docs")
    }

    fn doc(&self, name: &str) -> PathBuf {
        self.docs().join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.doc(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn index_dir(&self) -> PathBuf {
        self.config.index_path()
    }

    fn open(&self) -> Knowledge {
        Knowledge::open(&self.config.index, &self.config.base_dir).unwrap()
    }

    fn manifest(&self) -> Manifest {
        Manifest::load(&self.index_dir()).unwrap()
    }

    /// The manifest's chunk count of one file.
    fn manifest_chunks(&self, path: &Path) -> usize {
        self.manifest().files[&key(path)].chunks
    }

    async fn index(&self, k: &Knowledge, prune: bool) -> IndexReport {
        k.indexer()
            .index_paths(
                &self.index_dir(),
                &[self.docs()],
                IndexOptions {
                    prune,
                    progress: false,
                    force: false,
                },
            )
            .await
            .unwrap()
    }
}

fn key(path: &Path) -> String {
    path.display().to_string()
}

async fn search(k: &Knowledge, question: &str) -> Vec<SearchHit> {
    k.retriever().retrieve(question, 10).await.unwrap()
}

/// Whether any of the best hits for `question` quotes `needle`.
async fn found(k: &Knowledge, question: &str, needle: &str) -> bool {
    search(k, question)
        .await
        .iter()
        .any(|h| h.payload.text.contains(needle))
}

fn mtime_ms(path: &Path) -> i64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    i64::try_from(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

const GUIDE_MD: &str = "---
title: Quokka handbook
---

# Quokka handbook

Quokkas are small marsupials that live on islands.

## Feeding

Quokkas eat leaves and grasses. Zanzibarite pellets are a special treat.

## Grooming

Brush the fur weekly with a soft brush.
";

const NOTES_TXT: &str = "Notes on lighthouses

The fresnel lens of the lighthouse was polished with vermiculite powder every spring.
";

const PAGE_HTML: &str = "<!doctype html>
<html><head><title>Telescope care</title></head>
<body>
<h1>Telescope care</h1>
<p>Collimate the mirrors with a xylophonic laser before every night of observing.</p>
<h2>Storage</h2>
<p>Keep the telescope in a dry room with the dust cap on.</p>
</body></html>
";

const FAQ_JSONL: &str = r#"{"id": "q1", "title": "Opening hours", "text": "The museum opens at nine and the planetarium show starts at noon."}
{"id": "q2", "title": "Tickets", "text": "Tickets for the quasimodal exhibition are sold at the north entrance."}

{"id": "q3", "title": "Parking", "text": "Parking is free for bicycles in the courtyard."}
"#;

/// Writes the four-format corpus: 6 documents, 9 chunks.
fn write_corpus(p: &Project) {
    p.write("guide.md", GUIDE_MD);
    p.write("notes.txt", NOTES_TXT);
    p.write("page.html", PAGE_HTML);
    p.write("faq.jsonl", FAQ_JSONL);
    // Neither of these is read: unsupported type, hidden file.
    p.write("diagram.png", "not an image");
    p.write(".draft.md", "# Draft\n\nSecret hiddenword here.\n");
}

#[tokio::test]
async fn indexes_every_format_and_finds_chunks_with_payload() {
    let p = Project::new();
    write_corpus(&p);
    let k = p.open();

    let report = p.index(&k, false).await;
    assert_eq!(report.files_seen, 4, "{report:?}");
    assert_eq!(report.files_indexed, 4, "{report:?}");
    assert_eq!(report.files_unchanged, 0, "{report:?}");
    assert_eq!(report.files_pruned, 0, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    // guide.md 1 + notes.txt 1 + page.html 1 + faq.jsonl 3.
    assert_eq!(report.documents, 6, "{report:?}");
    // guide.md 3 sections + notes.txt 1 + page.html 2 sections + faq.jsonl 3 records.
    assert_eq!(report.chunks, 9, "{report:?}");
    assert_eq!(k.index.count().await.unwrap(), 9);

    let manifest = p.manifest();
    assert_eq!(manifest.files.len(), 4, "{manifest:?}");
    assert_eq!(
        manifest.files.values().map(|e| e.chunks).sum::<usize>(),
        9,
        "{manifest:?}"
    );
    assert!(!found(&k, "hiddenword", "hiddenword").await);

    // Markdown: title from front matter, heading path, position within the document.
    let guide = p.doc("guide.md");
    let hits = search(&k, "zanzibarite").await;
    let hit = &hits[0];
    assert!(hit.payload.text.contains("Zanzibarite pellets"), "{hit:?}");
    assert_eq!(hit.payload.doc_id, key(&guide));
    assert_eq!(hit.payload.title, "Quokka handbook");
    assert_eq!(hit.payload.source, key(&guide));
    assert_eq!(hit.payload.file, key(&guide));
    assert_eq!(hit.payload.heading, "Quokka handbook > Feeding");
    assert_eq!(hit.payload.position, 1);
    assert_eq!(hit.payload.updated_at, mtime_ms(&guide));
    // The hit can be fetched again by its id.
    let again = k.index.get(&hit.id).await.unwrap().unwrap();
    assert_eq!(again.payload, hit.payload);

    // Plain text: title from the first line, no heading.
    let notes = p.doc("notes.txt");
    let hit = &search(&k, "vermiculite").await[0];
    assert!(hit.payload.text.contains("vermiculite powder"), "{hit:?}");
    assert_eq!(hit.payload.doc_id, key(&notes));
    assert_eq!(hit.payload.title, "Notes on lighthouses");
    assert_eq!(hit.payload.file, key(&notes));
    assert_eq!(hit.payload.heading, "");
    assert_eq!(hit.payload.position, 0);
    assert_eq!(hit.payload.updated_at, mtime_ms(&notes));

    // HTML: title from <title>, headings from <h1>/<h2>.
    let page = p.doc("page.html");
    let hit = &search(&k, "xylophonic").await[0];
    assert!(hit.payload.text.contains("xylophonic laser"), "{hit:?}");
    assert!(!hit.payload.text.contains('<'), "markup left in {hit:?}");
    assert_eq!(hit.payload.doc_id, key(&page));
    assert_eq!(hit.payload.title, "Telescope care");
    assert_eq!(hit.payload.source, key(&page));
    assert_eq!(hit.payload.heading, "Telescope care");
    assert_eq!(hit.payload.position, 0);
    let hit = &search(&k, "dust cap").await[0];
    assert_eq!(hit.payload.heading, "Telescope care > Storage", "{hit:?}");
    assert_eq!(hit.payload.position, 1);

    // JSON Lines: one document per record, id from the record, title from the record.
    let faq = p.doc("faq.jsonl");
    let hit = &search(&k, "quasimodal exhibition").await[0];
    assert!(hit.payload.text.contains("north entrance"), "{hit:?}");
    assert_eq!(hit.payload.doc_id, format!("{}#q2", key(&faq)));
    assert_eq!(hit.payload.title, "Tickets");
    assert_eq!(hit.payload.source, key(&faq));
    assert_eq!(hit.payload.file, key(&faq));
    assert_eq!(hit.payload.position, 0);
    assert_eq!(hit.payload.updated_at, mtime_ms(&faq));
}

#[tokio::test]
async fn reindexing_skips_unchanged_files_and_replaces_changed_ones() {
    let p = Project::new();
    write_corpus(&p);
    let k = p.open();
    let first = p.index(&k, false).await;
    assert_eq!(first.chunks, 9);

    let again = p.index(&k, false).await;
    assert_eq!(again.files_seen, 4, "{again:?}");
    assert_eq!(again.files_unchanged, 4, "{again:?}");
    assert_eq!(again.files_indexed, 0, "{again:?}");
    assert_eq!(again.documents, 0, "{again:?}");
    assert_eq!(again.chunks, 0, "{again:?}");
    assert_eq!(k.index.count().await.unwrap(), 9);

    // Forcing re-ingests everything and replaces rather than duplicates.
    let forced = k
        .indexer()
        .index_paths(
            &p.index_dir(),
            &[p.docs()],
            IndexOptions {
                force: true,
                ..IndexOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(forced.files_indexed, 4, "{forced:?}");
    assert_eq!(forced.chunks, 9, "{forced:?}");
    assert_eq!(k.index.count().await.unwrap(), 9);

    // Remove the Feeding and Grooming sections (the last chunk of the old version), add a
    // Sleeping section: 3 chunks become 2, so a leftover old chunk would show in the count.
    let guide = p.write(
        "guide.md",
        "# Quokka handbook\n\nQuokkas are small marsupials that live on islands.\n\n\
         ## Sleeping\n\nQuokkas nap in the shade of the thornbush during the day.\n",
    );
    let changed = p.index(&k, false).await;
    assert_eq!(changed.files_indexed, 1, "{changed:?}");
    assert_eq!(changed.files_unchanged, 3, "{changed:?}");
    assert_eq!(changed.documents, 1, "{changed:?}");
    assert_eq!(changed.chunks, 2, "{changed:?}");
    assert!(changed.errors.is_empty(), "{changed:?}");

    for (question, removed) in [
        ("zanzibarite pellets", "Zanzibarite"),
        ("brush fur weekly", "Brush the fur"),
    ] {
        assert!(
            !found(&k, question, removed).await,
            "the removed text {removed:?} is still found"
        );
    }
    let hits = search(&k, "thornbush").await;
    assert!(hits[0].payload.text.contains("thornbush"), "{hits:?}");
    assert_eq!(hits[0].payload.heading, "Quokka handbook > Sleeping");
    assert_eq!(hits[0].payload.position, 1);
    assert_eq!(hits[0].payload.file, key(&guide));
    // The other files were not touched.
    assert!(found(&k, "xylophonic", "xylophonic").await);

    // The file's chunks are exactly what the manifest says, and nothing else lingers.
    assert_eq!(p.manifest_chunks(&guide), 2);
    let total: usize = p.manifest().files.values().map(|e| e.chunks).sum();
    assert_eq!(total, 9 - 3 + 2);
    assert_eq!(k.index.count().await.unwrap(), total as u64);
}

#[tokio::test]
async fn pruning_removes_deleted_files_only_when_asked() {
    let p = Project::new();
    write_corpus(&p);
    let k = p.open();
    p.index(&k, false).await;
    let notes = p.doc("notes.txt");
    std::fs::remove_file(&notes).unwrap();

    // Without prune: the deleted file's chunks and manifest entry stay.
    let kept = p.index(&k, false).await;
    assert_eq!(kept.files_seen, 3, "{kept:?}");
    assert_eq!(kept.files_pruned, 0, "{kept:?}");
    assert!(found(&k, "vermiculite", "vermiculite").await);
    assert!(p.manifest().files.contains_key(&key(&notes)));
    assert_eq!(k.index.count().await.unwrap(), 9);

    // With prune: gone from the index and the manifest.
    let pruned = p.index(&k, true).await;
    assert_eq!(pruned.files_pruned, 1, "{pruned:?}");
    assert_eq!(pruned.files_unchanged, 3, "{pruned:?}");
    assert!(!found(&k, "vermiculite", "vermiculite").await);
    assert!(!p.manifest().files.contains_key(&key(&notes)));
    assert_eq!(k.index.count().await.unwrap(), 8);
    // The other files are untouched.
    assert!(found(&k, "xylophonic", "xylophonic").await);
}

#[tokio::test]
async fn malformed_jsonl_is_reported_and_keeps_its_previous_chunks() {
    // A fresh index with a bad file among good ones: the good ones go in.
    let p = Project::new();
    write_corpus(&p);
    p.write(
        "broken.jsonl",
        "{\"id\": \"a\", \"text\": \"fine first line\"}\n{\"id\": \"b\", \"text\": \"unterminated\n",
    );
    let k = p.open();
    let report = p.index(&k, false).await;
    assert_eq!(report.files_seen, 5, "{report:?}");
    assert_eq!(report.files_indexed, 4, "{report:?}");
    assert_eq!(report.chunks, 9, "{report:?}");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let broken = key(&p.doc("broken.jsonl"));
    assert!(report.errors[0].contains(&broken), "{report:?}");
    assert!(report.errors[0].contains("line 2"), "{report:?}");
    assert!(!p.manifest().files.contains_key(&broken));
    assert!(!found(&k, "fine first line", "fine first line").await);

    // A good file indexed earlier, then broken: the error names it and its line, and its
    // previous chunks stay searchable.
    let faq = p.doc("faq.jsonl");
    let good_hash = p.manifest().files[&key(&faq)].hash.clone();
    p.write(
        "faq.jsonl",
        "{\"id\": \"q1\", \"text\": \"The museum opens at ten now.\"}\n\
         {\"id\": \"q2\", \"text\": \"fine\"}\n\
         {\"id\": \"q3\" \"text\": \"missing comma\"}\n",
    );
    p.write("extra.md", "# Extra\n\nThe gondolier sings on Sundays.\n");
    let report = p.index(&k, false).await;
    assert_eq!(report.files_indexed, 1, "{report:?}");
    assert_eq!(report.errors.len(), 2, "{report:?}");
    let faq_error = report
        .errors
        .iter()
        .find(|e| e.contains(&key(&faq)))
        .unwrap_or_else(|| panic!("no error names faq.jsonl: {report:?}"));
    assert!(faq_error.contains("line 3"), "{faq_error}");
    assert!(found(&k, "gondolier", "gondolier").await);
    assert!(found(&k, "quasimodal exhibition", "north entrance").await);
    assert!(found(&k, "planetarium", "opens at nine").await);
    assert!(!found(&k, "museum opens ten", "opens at ten").await);
    assert_eq!(p.manifest().files[&key(&faq)].hash, good_hash);
    assert_eq!(p.manifest_chunks(&faq), 3);
    assert_eq!(k.index.count().await.unwrap(), 10);
}

#[cfg(unix)]
#[tokio::test]
async fn a_dangling_symlink_does_not_stop_the_other_files() {
    let p = Project::new();
    write_corpus(&p);
    let link = p.doc("moved-away.md");
    std::os::unix::fs::symlink(p.root.join("no-longer-here.md"), &link).unwrap();
    let k = p.open();
    let report = k
        .indexer()
        .index_paths(&p.index_dir(), &[p.docs()], IndexOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the whole run failed: {e}"));
    assert_eq!(report.files_indexed, 4, "{report:?}");
    assert_eq!(report.chunks, 9, "{report:?}");
    assert!(
        report.errors.iter().any(|e| e.contains("moved-away.md")),
        "{report:?}"
    );
    assert!(found(&k, "zanzibarite", "Zanzibarite").await);
}

#[tokio::test]
async fn the_index_survives_a_restart() {
    let p = Project::new();
    write_corpus(&p);
    let questions = [
        "zanzibarite",
        "vermiculite lighthouse",
        "telescope storage",
        "tickets",
    ];
    let (count, before) = {
        let k = p.open();
        p.index(&k, false).await;
        let mut results = Vec::new();
        for q in questions {
            results.push(search(&k, q).await);
        }
        (k.index.count().await.unwrap(), results)
    };
    assert_eq!(count, 9);
    assert!(before.iter().all(|hits| !hits.is_empty()), "{before:?}");

    // Everything above is dropped: a fresh EdgeIndex on the same folder.
    let index = Arc::new(EdgeIndex::open(&p.index_dir()).unwrap());
    let k = Knowledge {
        index,
        embedder: Arc::new(Bm25Embedder::new(&p.config.index.bm25).unwrap()),
        chunker: p.config.index.chunker(),
    };
    assert_eq!(k.index.count().await.unwrap(), count);
    for (q, expected) in questions.iter().zip(&before) {
        let after = search(&k, q).await;
        assert_eq!(
            &after, expected,
            "results for {q:?} changed after reopening"
        );
    }
    // And unchanged files are still recognised as unchanged.
    let report = p.index(&k, false).await;
    assert_eq!(report.files_unchanged, 4, "{report:?}");
}

#[test]
fn a_second_open_of_the_same_index_is_refused_until_the_first_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let first = EdgeIndex::open(&dir).unwrap();
    let err = EdgeIndex::open(&dir).unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("Stop that process"), "{err}");
    assert!(err.contains("--server"), "{err}");
    drop(first);
    let reopened = EdgeIndex::open(&dir);
    assert!(reopened.is_ok(), "{reopened:?}");
}

#[tokio::test]
async fn a_damaged_shard_config_gives_a_clear_error() {
    let p = Project::new();
    write_corpus(&p);
    {
        let k = p.open();
        p.index(&k, false).await;
    }
    let config = p.index_dir().join("shard").join("edge_config.json");
    assert!(config.exists());
    std::fs::write(&config, "{ this is not json \u{0} at all").unwrap();
    let err = EdgeIndex::open(&p.index_dir()).unwrap_err().to_string();
    assert!(err.contains(&p.index_dir().display().to_string()), "{err}");
    assert!(err.contains("may be damaged"), "{err}");
    assert!(err.contains("conveyor index"), "{err}");
    // A failed open releases the lock: trying again reports the damage, not "in use".
    std::fs::write(&config, "").unwrap();
    let err = EdgeIndex::open(&p.index_dir()).unwrap_err().to_string();
    assert!(err.contains("may be damaged"), "{err}");
}

#[tokio::test]
async fn a_damaged_manifest_gives_a_clear_error() {
    let p = Project::new();
    write_corpus(&p);
    let k = p.open();
    p.index(&k, false).await;
    let manifest = p.index_dir().join("manifest.json");
    std::fs::write(&manifest, "{\"files\": {\"x\": [1, 2").unwrap();

    let err = Manifest::load(&p.index_dir()).unwrap_err().to_string();
    assert!(err.contains(&manifest.display().to_string()), "{err}");
    assert!(err.contains("damaged"), "{err}");
    assert!(err.contains("conveyor index"), "{err}");

    // Indexing stops with the same message rather than starting from an empty manifest.
    let err = k
        .indexer()
        .index_paths(&p.index_dir(), &[p.docs()], IndexOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(k.index.count().await.unwrap(), 9);
}

#[tokio::test]
async fn retrieval_quality_on_cranfield_matches_the_bm25_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/retrieval/cranfield/beir_format");
    if !dir.join("corpus.jsonl").exists() {
        println!("skipped: Cranfield fixture not found");
        return;
    }
    let config = Config::from_toml("", "defaults", Path::new("."), &[]).unwrap();
    let embedder = Arc::new(Bm25Embedder::new(&config.index.bm25).unwrap());
    let r = conveyor::knowledge::eval::run(&dir, embedder, config.index.chunker())
        .await
        .unwrap();
    assert_eq!(r.documents, 1400, "{r:?}");
    assert_eq!(r.queries, 225, "{r:?}");
    assert!(
        r.ndcg_at_10 >= 0.373,
        "nDCG@10 {} below 0.373",
        r.ndcg_at_10
    );
    assert!(
        r.recall_at_100 >= 0.738,
        "Recall@100 {} below 0.738",
        r.recall_at_100
    );
}

#[tokio::test]
async fn a_deleted_shard_is_rebuilt_from_the_files_on_the_next_run() {
    let p = Project::new();
    write_corpus(&p);
    {
        let k = p.open();
        let first = p.index(&k, false).await;
        assert_eq!(first.chunks, 9, "{first:?}");
    }
    // Someone deletes the engine's data but leaves the manifest behind.
    std::fs::remove_dir_all(p.index_dir().join("shard")).unwrap();
    let k = p.open();
    assert_eq!(k.index.count().await.unwrap(), 0);
    let again = p.index(&k, false).await;
    assert_eq!(again.files_unchanged, 0, "{again:?}");
    assert_eq!(again.chunks, 9, "{again:?}");
    assert!(found(&k, "zanzibarite", "Zanzibarite").await);
}
