//! The `files` connector: CSV, JSON, JSONL or Parquet files from one file, a folder or a glob.
//! Parquet files are not read here: they are hashed and handed to the lakehouse whole
//! (`Extract::files`), which streams them with their own types. Markdown and plain-text files
//! are documents: each file is one record with `path` (its name under the listing root),
//! `title` (a Markdown file's first heading, else the file name without extension) and
//! `text` (the whole content), so `primary_key = "path"` and `[index] text = ["text"]` make a
//! folder of documents a table and a searchable source.
//!
//! Change detection is by content hash: the cursor is a manifest of every file's sha256 as of
//! the last committed run. New and changed files are read in full (and replace their rows in
//! silver), unchanged files are not read, and files that disappeared have their rows deleted.
//! A file that cannot be read keeps its previous manifest entry, so its rows stay and the next
//! run tries again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Extract, OnError, PrimaryKey, Progress, RowIssue, Source};
use crate::error::{Error, Result};
use crate::lakehouse::SourceRecord;

/// File formats the `files` kind reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects (or one object).
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (typed columns).
    Parquet,
    /// Markdown documents: one record per file (`path`, `title`, `text`).
    Markdown,
    /// Plain-text documents: one record per file (`path`, `title`, `text`).
    Text,
}

impl Format {
    /// Whether a file found in a folder is of this format (by extension).
    fn matches(self, path: &Path) -> bool {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        matches!(
            (self, ext.as_deref()),
            (Self::Csv, Some("csv"))
                | (Self::Json, Some("json"))
                | (Self::Jsonl, Some("jsonl" | "ndjson"))
                | (Self::Parquet, Some("parquet"))
                | (Self::Markdown, Some("md" | "markdown"))
                | (Self::Text, Some("txt" | "text"))
        )
    }
}

/// The keys of a `kind = "files"` connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// A file, a folder (every file of the format below it) or a glob such as
    /// `exports/orders-*.csv`; relative to the config folder.
    pub path: String,
    /// How the files are written.
    pub format: Format,
    /// The column (or columns) that identify a record.
    pub primary_key: PrimaryKey,
    /// Field delimiter of CSV files (one character).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
}

fn default_delimiter() -> String {
    ",".into()
}

impl FilesConfig {
    /// Resolves a relative `path` against the config folder.
    pub(super) fn resolve(&mut self, base_dir: &Path) {
        let p = Path::new(&self.path);
        if !p.is_absolute() {
            self.path = base_dir.join(p).to_string_lossy().into_owned();
        }
    }

    /// Adds every problem of these keys to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.path.trim().is_empty() {
            problems.push(
                "path: give a file, a folder or a glob, e.g. path = \"data/orders.csv\"".into(),
            );
        } else if is_glob(&self.path)
            && let Err(e) = glob::Pattern::new(&self.path)
        {
            problems.push(format!("path: `{}` is not a valid glob: {e}", self.path));
        }
        if self.delimiter.len() != 1 {
            problems.push(format!(
                "delimiter: `{}` must be exactly one ASCII character, e.g. delimiter = \";\"",
                self.delimiter
            ));
        }
    }

    /// The running source.
    pub fn build(&self) -> FilesSource {
        FilesSource {
            config: self.clone(),
        }
    }
}

/// The text of a Markdown document's first ATX heading (`# Title`, any level), outside
/// fenced code blocks.
fn first_heading(text: &str) -> Option<String> {
    let mut fenced = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.len() - t.len() > 3 {
            continue;
        }
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) {
            let rest = &t[hashes..];
            if rest.is_empty() || rest.starts_with([' ', '\t']) {
                let title = rest.trim().trim_end_matches('#').trim();
                if !title.is_empty() {
                    return Some(title.to_string());
                }
            }
        }
    }
    None
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The cursor: every file's content hash, by name relative to the listing root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// sha256 (hex) by file name.
    pub files: BTreeMap<String, String>,
}

/// Reads the files of one connector.
#[derive(Debug, Clone)]
pub struct FilesSource {
    config: FilesConfig,
}

impl FilesSource {
    /// The files to read, with the names they are known by (relative to the listing root),
    /// sorted by name.
    fn list(&self) -> Result<Vec<(String, PathBuf)>> {
        let path = &self.config.path;
        let format = self.config.format;
        let (root, files): (PathBuf, Vec<PathBuf>) = if is_glob(path) {
            let root = glob_root(path);
            let paths = glob::glob(path)
                .map_err(|e| Error::Config(format!("path: `{path}` is not a valid glob: {e}")))?
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            (root, paths)
        } else {
            let p = Path::new(path);
            if p.is_dir() {
                let files = walkdir::WalkDir::new(p)
                    .follow_links(true)
                    .into_iter()
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_file() && format.matches(e.path()))
                    .map(|e| e.into_path())
                    .collect();
                (p.to_path_buf(), files)
            } else if p.is_file() {
                (
                    p.parent().map(Path::to_path_buf).unwrap_or_default(),
                    vec![p.to_path_buf()],
                )
            } else {
                return Err(Error::BadInput(format!(
                    "{path} does not exist; check the connector's path (relative paths start at the config file's folder)"
                )));
            }
        };
        let mut named: Vec<(String, PathBuf)> = files
            .into_iter()
            .map(|f| {
                let name = f
                    .strip_prefix(&root)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('\\', "/");
                (name, f)
            })
            .collect();
        named.sort();
        Ok(named)
    }

    /// Parses one file's bytes into records, collecting malformed rows.
    fn parse(&self, name: &Arc<str>, bytes: &[u8], out: &mut Extract) {
        match self.config.format {
            Format::Csv => self.parse_csv(name, bytes, out),
            // Parquet files are never parsed into records: `extract` hands them to the
            // lakehouse whole, which streams them with their own types.
            Format::Parquet => {}
            Format::Jsonl => {
                for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    let line_no = i as u64 + 1;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(line) {
                        Ok(Value::Object(map)) => self.push(name, line_no, map, out),
                        Ok(other) => out.issues.push(issue(
                            name,
                            line_no,
                            format!("expected a JSON object, found {}", json_kind(&other)),
                        )),
                        Err(e) => {
                            out.issues
                                .push(issue(name, line_no, format!("not valid JSON: {e}")))
                        }
                    }
                }
            }
            Format::Markdown | Format::Text => match std::str::from_utf8(bytes) {
                Ok(text) => {
                    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                    let heading = if self.config.format == Format::Markdown {
                        first_heading(text)
                    } else {
                        None
                    };
                    let title = heading.unwrap_or_else(|| {
                        Path::new(name.as_ref())
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| name.to_string())
                    });
                    let mut map = Map::with_capacity(3);
                    map.insert("path".into(), Value::String(name.to_string()));
                    map.insert("title".into(), Value::String(title));
                    map.insert("text".into(), Value::String(text.trim().to_string()));
                    self.push(name, 1, map, out);
                }
                Err(e) => out.issues.push(issue(
                    name,
                    0,
                    format!(
                        "is not valid UTF-8 (first bad byte at offset {})",
                        e.valid_up_to()
                    ),
                )),
            },
            Format::Json => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Array(items)) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let n = i as u64 + 1;
                        match item {
                            Value::Object(map) => self.push(name, n, map, out),
                            other => out.issues.push(issue(
                                name,
                                n,
                                format!(
                                    "record {n} of the array is {}, not an object",
                                    json_kind(&other)
                                ),
                            )),
                        }
                    }
                }
                Ok(Value::Object(map)) => self.push(name, 1, map, out),
                Ok(other) => out.issues.push(issue(
                    name,
                    1,
                    format!("expected an array of objects, found {}", json_kind(&other)),
                )),
                Err(e) => {
                    out.issues
                        .push(issue(name, e.line() as u64, format!("not valid JSON: {e}")))
                }
            },
        }
    }

    fn parse_csv(&self, name: &Arc<str>, bytes: &[u8], out: &mut Extract) {
        // Spreadsheet exports often start with a UTF-8 byte order mark; it is not part of
        // the first column's name.
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let delimiter = self
            .config
            .delimiter
            .as_bytes()
            .first()
            .copied()
            .unwrap_or(b',');
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes);
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
            Err(e) => {
                out.issues
                    .push(issue(name, 1, format!("cannot read the header row: {e}")));
                return;
            }
        };
        if let Some(dup) = headers
            .iter()
            .enumerate()
            .find(|(i, h)| headers[..*i].contains(h))
            .map(|(_, h)| h)
        {
            out.issues.push(issue(
                name,
                1,
                format!("the header names the column `{dup}` twice; the file was not read"),
            ));
            return;
        }
        if headers.iter().any(String::is_empty) {
            out.issues.push(issue(
                name,
                1,
                "the header has an empty column name; the file was not read".into(),
            ));
            return;
        }
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    let mut map = Map::with_capacity(headers.len());
                    for (h, v) in headers.iter().zip(record.iter()) {
                        map.insert(h.clone(), Value::String(v.to_string()));
                    }
                    self.push(name, line, map, out);
                }
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("has {len} fields where the header has {expected_len}"),
                        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_string(),
                        _ => e.to_string(),
                    };
                    out.issues.push(issue(name, line, reason));
                }
            }
        }
    }

    /// Keeps a record when its primary key is present, reports it otherwise.
    fn push(&self, name: &Arc<str>, line: u64, data: Map<String, Value>, out: &mut Extract) {
        for k in &self.config.primary_key.0 {
            let present = match data.get(k) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(_) => true,
            };
            if !present {
                out.issues.push(issue(
                    name,
                    line,
                    format!("the primary key `{k}` is missing or empty"),
                ));
                return;
            }
        }
        out.records.push(SourceRecord {
            source: name.clone(),
            line,
            data,
        });
    }
}

/// The sha256 of a file (hex), read in chunks so that a large file is never held in memory.
fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

fn issue(name: &Arc<str>, line: u64, reason: String) -> RowIssue {
    RowIssue {
        source: name.to_string(),
        line,
        reason,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The folder a glob starts in: its components before the first one with a wildcard.
fn glob_root(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for c in Path::new(pattern).components() {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        root.push(c);
    }
    root
}

#[async_trait]
impl Source for FilesSource {
    async fn extract(
        &self,
        cursor: Option<&Value>,
        on_error: OnError,
        progress: &dyn Progress,
    ) -> Result<Extract> {
        let previous: FileManifest = super::decode_cursor(cursor, &self.config.path)?;
        let this = self.clone();
        // Hashing and parsing are blocking work on possibly large files.
        let files = tokio::task::spawn_blocking(move || this.list())
            .await
            .map_err(|e| Error::internal("listing files", e))??;
        progress.total(files.len() as u64);

        let mut out = Extract {
            values_are_text: self.config.format == Format::Csv,
            ..Default::default()
        };
        let mut manifest = FileManifest::default();
        for (name, path) in files {
            progress.step(&name);
            if self.config.format == Format::Parquet {
                // Parquet is typed: the lakehouse streams the file itself, in batches, with
                // its column types. Here it is only hashed (in chunks) and its footer read.
                let p = path.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let hash = hash_file(&p)?;
                    let rows = crate::lakehouse::parquet_row_count(&p)?;
                    Ok::<_, Error>((hash, rows))
                })
                .await
                .map_err(|e| Error::internal("reading a Parquet file", e))?;
                match read {
                    Ok((hash, rows)) => {
                        if previous.files.get(&name) == Some(&hash) {
                            out.unchanged += 1;
                        } else {
                            out.files.push(crate::lakehouse::ParquetInput {
                                source: name.clone(),
                                path,
                            });
                            out.file_rows += rows;
                            out.replaced.push(name.clone());
                        }
                        manifest.files.insert(name, hash);
                    }
                    Err(e) => {
                        if on_error == OnError::Fail {
                            return Err(e);
                        }
                        out.issues
                            .push(issue(&Arc::from(name.as_str()), 0, e.to_string()));
                        if let Some(h) = previous.files.get(&name) {
                            manifest.files.insert(name, h.clone());
                        }
                    }
                }
                continue;
            }
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    let problem = format!("cannot read {}: {e}", path.display());
                    if on_error == OnError::Fail {
                        return Err(Error::BadInput(problem));
                    }
                    out.issues.push(RowIssue {
                        source: name.clone(),
                        line: 0,
                        reason: problem,
                    });
                    if let Some(h) = previous.files.get(&name) {
                        manifest.files.insert(name, h.clone());
                    }
                    continue;
                }
            };
            let hash = hex::encode(Sha256::digest(&bytes));
            if previous.files.get(&name) == Some(&hash) {
                out.unchanged += 1;
                manifest.files.insert(name, hash);
                continue;
            }
            let shared: Arc<str> = Arc::from(name.as_str());
            let this = self.clone();
            let part = tokio::task::spawn_blocking(move || {
                let mut part = Extract::default();
                this.parse(&shared, &bytes, &mut part);
                part
            })
            .await
            .map_err(|e| Error::internal("parsing a file", e))?;
            out.records.extend(part.records);
            out.issues.extend(part.issues);
            out.replaced.push(name.clone());
            manifest.files.insert(name, hash);
        }
        out.removed = previous
            .files
            .keys()
            .filter(|k| !manifest.files.contains_key(*k))
            .cloned()
            .collect();
        if on_error == OnError::Fail && !out.issues.is_empty() {
            let mut msg = format!(
                "{} malformed record{} (on_error = \"fail\", nothing was written):",
                out.issues.len(),
                if out.issues.len() == 1 { "" } else { "s" }
            );
            for i in out.issues.iter().take(20) {
                msg.push_str(&format!("\n  - {i}"));
            }
            if out.issues.len() > 20 {
                msg.push_str(&format!("\n  - … and {} more", out.issues.len() - 20));
            }
            return Err(Error::BadInput(msg));
        }
        out.cursor = serde_json::to_value(&manifest)
            .map_err(|e| Error::internal("encoding the file manifest", e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn source(format: Format) -> FilesSource {
        FilesConfig {
            path: "x".into(),
            format,
            primary_key: PrimaryKey(vec!["id".into()]),
            delimiter: ",".into(),
        }
        .build()
    }

    #[test]
    fn csv_rows_and_malformed_lines() {
        let mut out = Extract::default();
        let name: Arc<str> = "t.csv".into();
        source(Format::Csv).parse(
            &name,
            b"\xef\xbb\xbfid,name\n1,Ada\n2,Bob,extra\n,NoKey\n3,\"Cy, Jr\"\n",
            &mut out,
        );
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.records[1].line, 5);
        assert_eq!(out.records[0].data["id"], Value::String("1".into()));
        let lines: Vec<u64> = out.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4], "{:?}", out.issues);
        assert!(out.issues[0].reason.contains("3 fields"));
    }

    #[test]
    fn markdown_and_text_files_are_one_document_record_each() {
        let mut src = source(Format::Markdown);
        src.config.primary_key = PrimaryKey(vec!["path".into()]);
        let mut out = Extract::default();
        let name: Arc<str> = "guides/refunds.md".into();
        src.parse(
            &name,
            b"```\n# not a heading\n```\nIntro.\n\n## Refunds within 30 days ##\nAsk support.\n",
            &mut out,
        );
        let r = &out.records[0].data;
        assert_eq!(r["path"], Value::String("guides/refunds.md".into()));
        assert_eq!(r["title"], Value::String("Refunds within 30 days".into()));
        assert!(r["text"].as_str().unwrap().ends_with("Ask support."));

        src.config.format = Format::Text;
        let name: Arc<str> = "notes/oncall.txt".into();
        src.parse(&name, b"# not markdown here\npager rota\n", &mut out);
        assert_eq!(out.records[1].data["title"], Value::String("oncall".into()));
        src.parse(&name, b"bad \xff byte", &mut out);
        assert!(out.issues[0].reason.contains("UTF-8"), "{:?}", out.issues);
        assert!(Format::Markdown.matches(Path::new("a/B.MD")));
        assert!(Format::Text.matches(Path::new("a/b.txt")));
        assert!(!Format::Text.matches(Path::new("a/b.md")));
    }

    #[test]
    fn jsonl_reports_lines() {
        let mut out = Extract::default();
        let name: Arc<str> = "t.jsonl".into();
        source(Format::Jsonl).parse(&name, b"{\"id\": 1}\n\n{oops\n[1]\n{\"id\": 2}\n", &mut out);
        assert_eq!(out.records.len(), 2);
        let lines: Vec<u64> = out.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }

    #[test]
    fn glob_root_stops_at_the_first_wildcard() {
        assert_eq!(glob_root("/a/b/*.csv"), PathBuf::from("/a/b"));
        assert_eq!(glob_root("/a/b*/c.csv"), PathBuf::from("/a"));
    }
}
