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

use super::{
    BuildContext, Extract, OnError, PrimaryKey, Progress, RowIssue, Source, SourceConfig,
    deserialize_all,
};
use crate::error::{Error, Result};
use crate::lakehouse::{RecordStager, SourceRecord};

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
    fn resolve(&mut self, base_dir: &Path) {
        let p = Path::new(&self.path);
        if !p.is_absolute() {
            self.path = base_dir.join(p).to_string_lossy().into_owned();
        }
    }

    /// Adds every problem of these keys to `problems`.
    fn validate(&self, problems: &mut Vec<String>) {
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
}

impl SourceConfig for FilesConfig {
    fn parse(table: toml::Table, base_dir: &Path, problems: &mut Vec<String>) -> Option<Self> {
        let mut config: Self =
            deserialize_all(table, &["path", "format", "primary_key"], problems)?;
        config.resolve(base_dir);
        config.validate(problems);
        Some(config)
    }

    fn primary_key(&self) -> &[String] {
        &self.primary_key.0
    }

    fn build(&self, _cx: &BuildContext) -> Arc<dyn Source> {
        Arc::new(FilesSource {
            config: self.clone(),
        })
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

    /// Reads one file (new or changed) into `stager`, collecting malformed rows in
    /// `issues`. The file is streamed: memory does not grow with its size. An error is a
    /// failure of the run (the file could not be read to its end, or staging failed).
    fn parse_file(
        &self,
        name: &Arc<str>,
        path: &Path,
        stager: &mut RecordStager,
        issues: &mut Vec<RowIssue>,
    ) -> Result<()> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
        self.parse(
            name,
            std::io::BufReader::with_capacity(1 << 20, file),
            stager,
            issues,
        )
    }

    /// Parses one file's content into `stager`, collecting malformed rows in `issues`.
    fn parse(
        &self,
        name: &Arc<str>,
        mut reader: impl std::io::BufRead,
        stager: &mut RecordStager,
        issues: &mut Vec<RowIssue>,
    ) -> Result<()> {
        let failed = |e: std::io::Error| Error::BadInput(format!("cannot read {name}: {e}"));
        match self.config.format {
            Format::Csv => self.parse_csv(name, reader, stager, issues),
            // Parquet files are never parsed into records: `extract` hands them to the
            // lakehouse whole, which streams them with their own types.
            Format::Parquet => Ok(()),
            Format::Jsonl => {
                let mut line = Vec::new();
                let mut line_no = 0u64;
                loop {
                    line.clear();
                    let complete = read_line(&mut reader, &mut line).map_err(failed)?;
                    if line.is_empty() && complete.is_none() {
                        return Ok(());
                    }
                    line_no += 1;
                    if complete == Some(false) {
                        issues.push(issue(
                            name,
                            line_no,
                            format!(
                                "is longer than {} MiB; the line was skipped",
                                MAX_LINE >> 20
                            ),
                        ));
                        continue;
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(Value::Object(map)) => {
                            self.push(name, line_no, map, stager, issues)?;
                        }
                        Ok(other) => issues.push(issue(
                            name,
                            line_no,
                            format!("expected a JSON object, found {}", json_kind(&other)),
                        )),
                        Err(e) => issues.push(issue(name, line_no, format!("not valid JSON: {e}"))),
                    }
                }
            }
            Format::Markdown | Format::Text => {
                // A document is one record: it is read whole.
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).map_err(failed)?;
                match std::str::from_utf8(&bytes) {
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
                        self.push(name, 1, map, stager, issues)
                    }
                    Err(e) => {
                        issues.push(issue(
                            name,
                            0,
                            format!(
                                "is not valid UTF-8 (first bad byte at offset {})",
                                e.valid_up_to()
                            ),
                        ));
                        Ok(())
                    }
                }
            }
            Format::Json => self.parse_json(name, reader, stager, issues),
        }
    }

    /// A JSON file: an array of objects (read one element at a time) or one object.
    fn parse_json(
        &self,
        name: &Arc<str>,
        reader: impl std::io::BufRead,
        stager: &mut RecordStager,
        issues: &mut Vec<RowIssue>,
    ) -> Result<()> {
        let mut failure: Option<Error> = None;
        let mut each = |n: u64, item: Value| -> std::result::Result<(), ()> {
            let outcome = match item {
                Value::Object(map) => self.push(name, n, map, stager, issues),
                other => {
                    issues.push(issue(
                        name,
                        n,
                        format!(
                            "record {n} of the array is {}, not an object",
                            json_kind(&other)
                        ),
                    ));
                    Ok(())
                }
            };
            outcome.map_err(|e| failure = Some(e))
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let read = serde::de::DeserializeSeed::deserialize(JsonRecords(&mut each), &mut de)
            .and_then(|top| de.end().map(|()| top));
        if let Some(e) = failure {
            return Err(e);
        }
        match read {
            Ok(None) => {}
            Ok(Some(kind)) => issues.push(issue(
                name,
                1,
                format!("expected an array of objects, found {kind}"),
            )),
            Err(e) if e.is_io() => {
                return Err(Error::BadInput(format!("cannot read {name}: {e}")));
            }
            Err(e) => issues.push(issue(name, e.line() as u64, format!("not valid JSON: {e}"))),
        }
        Ok(())
    }

    fn parse_csv(
        &self,
        name: &Arc<str>,
        mut reader: impl std::io::BufRead,
        stager: &mut RecordStager,
        issues: &mut Vec<RowIssue>,
    ) -> Result<()> {
        let failed =
            |e: &dyn std::fmt::Display| Error::BadInput(format!("cannot read {name}: {e}"));
        // Spreadsheet exports often start with a UTF-8 byte order mark; it is not part of
        // the first column's name.
        if reader
            .fill_buf()
            .map_err(|e| failed(&e))?
            .starts_with(b"\xef\xbb\xbf")
        {
            reader.consume(3);
        }
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
            .from_reader(reader);
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
            Err(e) => {
                issues.push(issue(name, 1, format!("cannot read the header row: {e}")));
                return Ok(());
            }
        };
        if let Some(dup) = headers
            .iter()
            .enumerate()
            .find(|(i, h)| headers[..*i].contains(h))
            .map(|(_, h)| h)
        {
            issues.push(issue(
                name,
                1,
                format!("the header names the column `{dup}` twice; the file was not read"),
            ));
            return Ok(());
        }
        if headers.iter().any(String::is_empty) {
            issues.push(issue(
                name,
                1,
                "the header has an empty column name; the file was not read".into(),
            ));
            return Ok(());
        }
        let mut key = Vec::with_capacity(self.config.primary_key.0.len());
        for k in &self.config.primary_key.0 {
            match headers.iter().position(|h| h == k) {
                Some(i) => key.push((i, k)),
                None => {
                    issues.push(issue(
                        name,
                        1,
                        format!(
                            "the header has no primary key column `{k}` (it has {}); the file was not read",
                            headers.join(", ")
                        ),
                    ));
                    return Ok(());
                }
            }
        }
        let columns = stager.header(&headers, name)?;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    if let Some((_, k)) = key
                        .iter()
                        .find(|(i, _)| record.get(*i).is_none_or(|v| v.trim().is_empty()))
                    {
                        issues.push(issue(
                            name,
                            line,
                            format!("the primary key `{k}` is missing or empty"),
                        ));
                        continue;
                    }
                    stager.push_text(name, line, &columns, record.iter())?;
                }
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    let reason = match e.kind() {
                        csv::ErrorKind::Io(io) => return Err(failed(io)),
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("has {len} fields where the header has {expected_len}"),
                        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_string(),
                        _ => e.to_string(),
                    };
                    issues.push(issue(name, line, reason));
                }
            }
        }
    }

    /// Stages one record when its primary key is present, reports it otherwise.
    fn push(
        &self,
        name: &Arc<str>,
        line: u64,
        data: Map<String, Value>,
        stager: &mut RecordStager,
        issues: &mut Vec<RowIssue>,
    ) -> Result<()> {
        for k in &self.config.primary_key.0 {
            let present = match data.get(k) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(_) => true,
            };
            if !present {
                issues.push(issue(
                    name,
                    line,
                    format!("the primary key `{k}` is missing or empty"),
                ));
                return Ok(());
            }
        }
        stager.push(&SourceRecord {
            source: name.clone(),
            line,
            data,
        })
    }
}

/// The longest JSON Lines line read (longer ones are reported and skipped).
const MAX_LINE: usize = 64 << 20;

/// Reads one line (without its `\n`) into `line`: `Some(true)` when it was read whole,
/// `Some(false)` when it was longer than [`MAX_LINE`] (the rest is skipped), `None` at the
/// end of the input.
fn read_line(
    reader: &mut impl std::io::BufRead,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    use std::io::{BufRead, Read};
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(true));
    }
    if line.len() <= MAX_LINE {
        // The last line, without a newline.
        return Ok(Some(true));
    }
    // Too long: skip to the end of the line.
    line.clear();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                break;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
    Ok(Some(false))
}

/// Reads a JSON document, calling `.0` with each element (numbered from 1) when it is an
/// array, or with the object itself; gives the kind of anything else.
struct JsonRecords<'a, F>(&'a mut F);

impl<'de, F> serde::de::DeserializeSeed<'de> for JsonRecords<'_, F>
where
    F: FnMut(u64, Value) -> std::result::Result<(), ()>,
{
    type Value = Option<&'static str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F> serde::de::Visitor<'de> for JsonRecords<'_, F>
where
    F: FnMut(u64, Value) -> std::result::Result<(), ()>,
{
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects, or an object")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut n = 0u64;
        while let Some(item) = seq.next_element::<Value>()? {
            n += 1;
            (self.0)(n, item).map_err(|()| serde::de::Error::custom("staging failed"))?;
        }
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            object.insert(k, v);
        }
        (self.0)(1, Value::Object(object))
            .map_err(|()| serde::de::Error::custom("staging failed"))?;
        Ok(None)
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Some("null"))
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Some("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(Some("a string"))
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
        let mut stager_slot: Option<RecordStager> = None;
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
                                staged: None,
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
            // Text formats: hashed in chunks, then (when new or changed) streamed into staged
            // files, so memory does not grow with the file.
            let p = path.clone();
            let hashed = tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| Error::internal("hashing a file", e))?;
            let hash = match hashed {
                Ok(h) => h,
                Err(e) => {
                    if on_error == OnError::Fail {
                        return Err(e);
                    }
                    out.issues.push(RowIssue {
                        source: name.clone(),
                        line: 0,
                        reason: e.to_string(),
                    });
                    if let Some(h) = previous.files.get(&name) {
                        manifest.files.insert(name, h.clone());
                    }
                    continue;
                }
            };
            if previous.files.get(&name) == Some(&hash) {
                out.unchanged += 1;
                manifest.files.insert(name, hash);
                continue;
            }
            let mut stager = match stager_slot.take() {
                Some(s) => s,
                None => RecordStager::temporary(
                    self.config.format == Format::Csv,
                    crate::lakehouse::STAGE_ROWS,
                )?,
            };
            let shared: Arc<str> = Arc::from(name.as_str());
            let this = self.clone();
            let (back, issues, parsed) = tokio::task::spawn_blocking(move || {
                let mut issues = Vec::new();
                let parsed = this.parse_file(&shared, &path, &mut stager, &mut issues);
                (stager, issues, parsed)
            })
            .await
            .map_err(|e| Error::internal("parsing a file", e))?;
            parsed?;
            stager_slot = Some(back);
            out.issues.extend(issues);
            out.replaced.push(name.clone());
            manifest.files.insert(name, hash);
        }
        if let Some(stager) = stager_slot {
            let staged = tokio::task::spawn_blocking(move || stager.finish())
                .await
                .map_err(|e| Error::internal("staging records", e))??;
            out.staged = Some(staged);
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
        FilesSource {
            config: FilesConfig {
                path: "x".into(),
                format,
                primary_key: PrimaryKey(vec!["id".into()]),
                delimiter: ",".into(),
            },
        }
    }

    /// Parses `bytes` as the file `name`: the staged rows (with `_source` and the line in
    /// `_run_id`) and the issues.
    fn parsed(
        src: &FilesSource,
        name: &str,
        bytes: &[u8],
    ) -> (Vec<Map<String, Value>>, Vec<RowIssue>) {
        let dir = tempfile::tempdir().unwrap();
        let mut stager = RecordStager::new(dir.path(), src.config.format == Format::Csv, 1000);
        let mut issues = Vec::new();
        src.parse(&Arc::from(name), bytes, &mut stager, &mut issues)
            .unwrap();
        let staged = stager.finish().unwrap();
        let mut rows = Vec::new();
        for f in &staged.files {
            rows.extend(
                crate::lakehouse::records::parquet_rows(std::fs::read(&f.path).unwrap()).unwrap(),
            );
        }
        (rows, issues)
    }

    #[test]
    fn csv_rows_and_malformed_lines() {
        let (rows, issues) = parsed(
            &source(Format::Csv),
            "t.csv",
            b"\xef\xbb\xbfid,name\n1,Ada\n2,Bob,extra\n,NoKey\n3,\"Cy, Jr\"\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["_run_id"], Value::from(5));
        assert_eq!(rows[1]["name"], Value::String("Cy, Jr".into()));
        assert_eq!(rows[0]["id"], Value::String("1".into()));
        let lines: Vec<u64> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4], "{issues:?}");
        assert!(issues[0].reason.contains("3 fields"));

        let (rows, issues) = parsed(&source(Format::Csv), "t.csv", b"key,name\n1,Ada\n");
        assert!(rows.is_empty());
        assert!(
            issues[0].reason.contains("no primary key column `id`"),
            "{issues:?}"
        );
    }

    #[test]
    fn markdown_and_text_files_are_one_document_record_each() {
        let mut src = source(Format::Markdown);
        src.config.primary_key = PrimaryKey(vec!["path".into()]);
        let (rows, _) = parsed(
            &src,
            "guides/refunds.md",
            b"```\n# not a heading\n```\nIntro.\n\n## Refunds within 30 days ##\nAsk support.\n",
        );
        let r = &rows[0];
        assert_eq!(r["path"], Value::String("guides/refunds.md".into()));
        assert_eq!(r["title"], Value::String("Refunds within 30 days".into()));
        assert!(r["text"].as_str().unwrap().ends_with("Ask support."));

        src.config.format = Format::Text;
        let (rows, _) = parsed(
            &src,
            "notes/oncall.txt",
            b"# not markdown here\npager rota\n",
        );
        assert_eq!(rows[0]["title"], Value::String("oncall".into()));
        let (_, issues) = parsed(&src, "notes/oncall.txt", b"bad \xff byte");
        assert!(issues[0].reason.contains("UTF-8"), "{issues:?}");
        assert!(Format::Markdown.matches(Path::new("a/B.MD")));
        assert!(Format::Text.matches(Path::new("a/b.txt")));
        assert!(!Format::Text.matches(Path::new("a/b.md")));
    }

    #[test]
    fn jsonl_reports_lines() {
        let (rows, issues) = parsed(
            &source(Format::Jsonl),
            "t.jsonl",
            b"{\"id\": 1}\n\n{oops\n[1]\n{\"id\": 2}",
        );
        assert_eq!(rows.len(), 2);
        let lines: Vec<u64> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }

    #[test]
    fn json_arrays_are_read_one_record_at_a_time() {
        let (rows, issues) = parsed(
            &source(Format::Json),
            "t.json",
            b"[{\"id\": 1, \"tags\": [\"a\"]}, 7, {\"id\": 2, \"n\": 1.5}]",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["tags"], Value::String("[\"a\"]".into()));
        assert_eq!(rows[1]["n"], Value::String("1.5".into()));
        assert!(
            issues[0]
                .reason
                .contains("record 2 of the array is a number")
        );
        let (rows, _) = parsed(&source(Format::Json), "o.json", b"{\"id\": 3}");
        assert_eq!(rows.len(), 1);
        let (_, issues) = parsed(&source(Format::Json), "s.json", b"\"just text\"");
        assert!(issues[0].reason.contains("found a string"), "{issues:?}");
        let (_, issues) = parsed(&source(Format::Json), "b.json", b"[{\"id\": 1},\n{oops");
        assert!(issues[0].reason.contains("not valid JSON"), "{issues:?}");
        assert_eq!(issues[0].line, 2);
    }

    #[test]
    fn an_overlong_jsonl_line_is_skipped() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"id\": 1}\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\n{\"id\": 2}\n");
        let (rows, issues) = parsed(&source(Format::Jsonl), "big.jsonl", &input);
        assert_eq!(rows.len(), 2);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].line, 2);
    }

    #[test]
    fn glob_root_stops_at_the_first_wildcard() {
        assert_eq!(glob_root("/a/b/*.csv"), PathBuf::from("/a/b"));
        assert_eq!(glob_root("/a/b*/c.csv"), PathBuf::from("/a"));
    }
}
