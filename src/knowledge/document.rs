//! Loading files into [`Document`]s: markup removed, heading structure kept as [`Section`]s.
//!
//! Supported formats, picked by file extension (case-insensitive):
//!
//! - Markdown (`.md`, `.markdown`) through pulldown-cmark; YAML front matter is skipped but its
//!   `title:` is used.
//! - Plain text (`.txt`): one section.
//! - HTML (`.html`, `.htm`) through a small hand-written converter (see [`html_to_sections`]) that
//!   never fails: real-world pages are often malformed and a partial text beats an error.
//! - JSON (`.json`: an object or an array of objects) and JSON Lines (`.jsonl`, `.ndjson`): one
//!   document per record, text from `text`/`body`/`content`.
//!
//! Section text is plain text with paragraphs separated by a blank line (`"\n\n"`); list items
//! and table rows are one per line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;

use crate::error::{Error, Result};

/// A document ready for chunking: markup already removed, structure kept as sections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// Stable identity: the file for one-document files, `"{file}#{id}"` for JSON records.
    pub doc_id: String,
    /// Human-readable title shown in citations.
    pub title: String,
    /// File path or URL shown to users.
    pub source: String,
    /// The file it came from; used to replace or prune all documents of a file at once.
    pub file: String,
    /// The text, by heading.
    pub sections: Vec<Section>,
    /// Last modification time, unix milliseconds.
    pub updated_at: i64,
}

/// A run of text under one heading path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// Headings above this text, outermost first; empty for text before any heading.
    pub headings: Vec<String>,
    /// Plain text, paragraphs separated by `"\n\n"`; never empty, no trailing whitespace.
    /// Leading indentation is kept where it means something (code, nested list items).
    pub text: String,
}

/// The formats we read; decided by extension only, because sniffing content guesses wrong on
/// plain-text files that happen to start with `{` or `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Markdown,
    Text,
    Html,
    Json,
    JsonLines,
}

/// The supported file extensions, for messages.
pub const SUPPORTED: &str = ".md, .markdown, .txt, .html, .htm, .json, .jsonl and .ndjson";

/// The extension of a file name or URL, lowercased, ignoring any `?query` or `#fragment`.
fn format_of(file: &str) -> Option<Format> {
    let path = strip_url_suffix(file);
    let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "md" | "markdown" => Some(Format::Markdown),
        "txt" => Some(Format::Text),
        "html" | "htm" => Some(Format::Html),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::JsonLines),
        _ => None,
    }
}

fn strip_url_suffix(file: &str) -> &str {
    // Only URLs carry queries and fragments; a local file may legitimately contain '#'.
    if file.contains("://") {
        file.split(['?', '#']).next().unwrap_or(file)
    } else {
        file
    }
}

/// Whether [`load_file`] can read this file, by extension (case-insensitive).
pub fn is_supported(path: &Path) -> bool {
    format_of(&path.to_string_lossy()).is_some()
}

/// Reads one file into documents (several for JSON arrays and JSON Lines). `updated_at` is the
/// file's modification time; `source` and `file` are the path as given.
pub fn load_file(path: &Path) -> Result<Vec<Document>> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::BadInput(format!(
            "cannot read {shown}: {e}; check that the file exists and is readable"
        ))
    })?;
    let content = String::from_utf8(bytes).map_err(|e| {
        Error::BadInput(format!(
            "{shown} is not valid UTF-8 text (first bad byte at offset {}); re-save it as UTF-8 or remove it from the knowledge sources",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let updated_at = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        // A file system without mtimes still gets a sensible "last seen" time.
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    parse(&shown, &shown, &content, updated_at)
}

/// Parses content already in memory (tests, or callers that fetched it). `source` is what users
/// see, `file` what documents are grouped by; the format is picked by the extension of `file`.
pub fn parse(file: &str, source: &str, content: &str, updated_at: i64) -> Result<Vec<Document>> {
    let format = format_of(file).ok_or_else(|| {
        Error::BadInput(format!(
            "{file} has an unsupported file type; conveyor reads {SUPPORTED} files"
        ))
    })?;
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let single = |title: String, sections: Vec<Section>| {
        vec![Document {
            doc_id: file.to_string(),
            title,
            source: source.to_string(),
            file: file.to_string(),
            sections,
            updated_at,
        }]
    };
    match format {
        Format::Markdown => {
            let (title, sections) = markdown_to_sections(content);
            Ok(single(
                title.unwrap_or_else(|| readable_stem(file)),
                sections,
            ))
        }
        Format::Html => {
            let (title, sections) = html_to_sections(content);
            Ok(single(
                title.unwrap_or_else(|| readable_stem(file)),
                sections,
            ))
        }
        Format::Text => {
            let text = normalize_blocks(content);
            let title = title_from_text(&text).unwrap_or_else(|| readable_stem(file));
            Ok(single(title, plain_sections(text)))
        }
        Format::Json => parse_json(file, source, content, updated_at),
        Format::JsonLines => parse_json_lines(file, source, content, updated_at),
    }
}

/// The file stem made readable: `getting-started_guide.md` → `Getting started guide`.
fn readable_stem(file: &str) -> String {
    let path = strip_url_suffix(file).trim_end_matches('/');
    let stem = Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let words = stem.replace(['_', '-'], " ");
    let words = collapse_whitespace(&words);
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Untitled".to_string(),
    }
}

/// The first non-empty line, if short enough to read as a title.
fn title_from_text(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    (line.chars().count() < 100).then(|| line.to_string())
}

fn plain_sections(text: String) -> Vec<Section> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Section {
            headings: Vec::new(),
            text,
        }]
    }
}

/// Collapses every whitespace run to one space and trims.
fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Normalises line endings, trims trailing space on each line, turns runs of blank lines into
/// one blank line and trims blank lines at both ends. Leading indentation is kept because it
/// carries meaning in code and nested lists.
fn normalize_blocks(s: &str) -> String {
    // CRLF and lone CR (old Mac files) are line breaks too.
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(s.len());
    let mut blank_pending = false;
    for line in s.split('\n') {
        let line = line.trim_end();
        if line.trim_start().is_empty() {
            blank_pending = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_pending { "\n\n" } else { "\n" });
        }
        blank_pending = false;
        out.push_str(line);
    }
    out
}

/// Accumulates text into sections as headings open and close. Shared by the Markdown and
/// HTML converters so both produce the same shape.
#[derive(Default)]
struct SectionBuilder {
    /// Open headings with their level, outermost first.
    stack: Vec<(u8, String)>,
    text: String,
    sections: Vec<Section>,
}

impl SectionBuilder {
    /// Opens a heading of `level`: closes the current section and every heading at this level
    /// or deeper.
    fn heading(&mut self, level: u8, title: String) {
        self.flush();
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        // An empty heading still closes its siblings, but adds nothing to the path.
        if !title.is_empty() {
            self.stack.push((level, title));
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn ends_line(&self) -> bool {
        self.text.is_empty() || self.text.ends_with('\n')
    }

    fn break_line(&mut self) {
        if !self.ends_line() {
            self.text.push('\n');
        }
    }

    fn break_paragraph(&mut self) {
        if self.text.is_empty() || self.text.ends_with("\n\n") {
            return;
        }
        self.text.push_str(if self.text.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        });
    }

    /// Closes the current section; sections without text are dropped.
    fn flush(&mut self) {
        let text = normalize_blocks(&self.text);
        self.text.clear();
        if !text.is_empty() {
            self.sections.push(Section {
                headings: self.stack.iter().map(|(_, h)| h.clone()).collect(),
                text,
            });
        }
    }

    fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// Splits off YAML front matter (`---` on the first line up to a `---` or `...` line) and
/// returns its `title:` and the rest. We do this ourselves rather than through pulldown-cmark's
/// metadata option so an unclosed `---` simply stays Markdown (a thematic break).
fn split_front_matter(content: &str) -> (Option<String>, &str) {
    let mut lines = content.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        return (None, content);
    }
    let mut offset = content.find('\n').map_or(content.len(), |p| p + 1);
    let mut title = None;
    for line in lines {
        offset += line.len();
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return (title, &content[offset..]);
        }
        if let Some(value) = trimmed.strip_prefix("title:") {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .trim();
            if !unquoted.is_empty() {
                title = Some(unquoted.to_string());
            }
        }
    }
    (None, content)
}

/// Where inline text currently goes.
enum MdTarget {
    Body,
    Heading(u8, String),
    Cell(String),
}

/// Markdown to sections; returns the title (front matter, else first H1) when there is one.
/// Deepest list nesting shown by indentation; deeper items are indented as this one.
const MAX_LIST_INDENT: usize = 8;

fn markdown_to_sections(content: &str) -> (Option<String>, Vec<Section>) {
    let (front_title, body) = split_front_matter(content);
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);

    let mut b = SectionBuilder::default();
    let mut target = MdTarget::Body;
    let mut row: Vec<String> = Vec::new();
    let mut list_depth = 0usize;
    let mut first_h1: Option<String> = None;

    // Inside a list, blocks are lines of the item rather than paragraphs of their own.
    let block_break = |b: &mut SectionBuilder, list_depth: usize| {
        if list_depth > 0 {
            b.break_line();
        } else {
            b.break_paragraph();
        }
    };

    for event in Parser::new_ext(body, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => {
                    target = MdTarget::Heading(level as u8, String::new())
                }
                // Inside a list, a paragraph continues the item's line.
                Tag::Paragraph if list_depth == 0 => b.break_paragraph(),
                Tag::BlockQuote(_) | Tag::CodeBlock(_) | Tag::Table(_) | Tag::HtmlBlock => {
                    block_break(&mut b, list_depth);
                }
                Tag::List(_) => {
                    block_break(&mut b, list_depth);
                    list_depth += 1;
                }
                Tag::Item => {
                    b.break_line();
                    // Indentation stops growing past a few levels: `- - - … x` nests one list
                    // per `- `, and indenting each by its depth made 8 KB of them 16 MB of
                    // spaces (quadratic).
                    let depth = list_depth.saturating_sub(1).min(MAX_LIST_INDENT);
                    b.push(&"  ".repeat(depth));
                    b.push("- ");
                }
                Tag::TableHead | Tag::TableRow => {
                    row.clear();
                    b.break_line();
                }
                Tag::TableCell => target = MdTarget::Cell(String::new()),
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Heading(_) => {
                    if let MdTarget::Heading(level, text) =
                        std::mem::replace(&mut target, MdTarget::Body)
                    {
                        let text = collapse_whitespace(&text);
                        if level == 1 && first_h1.is_none() && !text.is_empty() {
                            first_h1 = Some(text.clone());
                        }
                        b.heading(level, text);
                    }
                }
                TagEnd::Paragraph => {
                    if list_depth == 0 {
                        b.break_paragraph();
                    } else {
                        // Paragraphs of a loose list item stay on the item's line.
                        b.push(" ");
                    }
                }
                TagEnd::BlockQuote(_) | TagEnd::CodeBlock | TagEnd::Table | TagEnd::HtmlBlock => {
                    block_break(&mut b, list_depth);
                }
                TagEnd::List(_) => {
                    list_depth = list_depth.saturating_sub(1);
                    block_break(&mut b, list_depth);
                }
                TagEnd::Item => b.break_line(),
                TagEnd::TableCell => {
                    if let MdTarget::Cell(cell) = std::mem::replace(&mut target, MdTarget::Body) {
                        row.push(collapse_whitespace(&cell));
                    }
                }
                TagEnd::TableHead | TagEnd::TableRow => {
                    b.push(&row.join(" | "));
                    row.clear();
                    b.break_line();
                }
                _ => {}
            },
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                md_push(&mut b, &mut target, &t);
            }
            Event::SoftBreak => md_push(&mut b, &mut target, " "),
            Event::HardBreak => match target {
                MdTarget::Body => b.push("\n"),
                _ => md_push(&mut b, &mut target, " "),
            },
            Event::TaskListMarker(done) => {
                md_push(&mut b, &mut target, if done { "[x] " } else { "[ ] " });
            }
            Event::Rule => block_break(&mut b, list_depth),
            // Raw HTML in Markdown is mostly comments and layout; its text is rarely content.
            Event::Html(_) | Event::InlineHtml(_) | Event::FootnoteReference(_) => {}
        }
    }
    (front_title.or(first_h1), b.finish())
}

fn md_push(b: &mut SectionBuilder, target: &mut MdTarget, s: &str) {
    match target {
        MdTarget::Body => b.push(s),
        MdTarget::Heading(_, buf) | MdTarget::Cell(buf) => buf.push_str(s),
    }
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/// Elements whose content is never visible text; skipped up to their closing tag.
const HTML_SKIPPED: &[&str] = &["script", "style", "noscript", "template", "svg"];
/// Elements that may appear inside `<head>` without ending it.
const HTML_HEAD_ONLY: &[&str] = &[
    "meta", "link", "base", "title", "style", "script", "noscript", "template",
];
/// Elements that start and end a paragraph.
const HTML_PARAGRAPH: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "nav",
    "aside",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "figcaption",
    "form",
    "fieldset",
    "address",
    "details",
    "summary",
    "hr",
    "body",
    "caption",
];
/// Elements that start and end a line.
const HTML_LINE: &[&str] = &["br", "li", "tr", "dt", "dd", "option"];

/// One parsed tag: lowercase name and where it ends in the input.
struct HtmlTag {
    name: String,
    closing: bool,
    self_closing: bool,
    end: usize,
}

/// Parses the tag starting at `content[start] == '<'`. `None` when what follows `<` is not a
/// tag name (a stray `<` in text, as in `a < b`). A tag cut off by the end of input runs to
/// the end.
fn parse_html_tag(content: &str, start: usize) -> Option<HtmlTag> {
    let bytes = content.as_bytes();
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    while bytes
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b':')
    {
        i += 1;
    }
    let name = content[name_start..i].to_ascii_lowercase();
    // Find the closing '>' outside attribute quotes; if quotes never balance (a malformed
    // attribute), fall back to the first '>' so one bad quote does not swallow the page.
    let mut quote: Option<u8> = None;
    let mut end = None;
    for (k, &c) in bytes.iter().enumerate().skip(i) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => {
                end = Some(k);
                break;
            }
            None => {}
        }
    }
    let end = end.or_else(|| content[i..].find('>').map(|p| i + p));
    Some(match end {
        Some(gt) => HtmlTag {
            name,
            closing,
            self_closing: gt > 0 && bytes[gt - 1] == b'/',
            end: gt + 1,
        },
        None => HtmlTag {
            name,
            closing,
            self_closing: false,
            end: content.len(),
        },
    })
}

/// Position just past the closing tag `</name ...>` at or after `from`, searching the
/// lowercased copy; the end of input when it is missing.
fn skip_past_close(lower: &str, from: usize, name: &str) -> (usize, usize) {
    let needle = format!("</{name}");
    match lower[from..].find(&needle) {
        Some(p) => {
            let close_start = from + p;
            let after = lower[close_start..]
                .find('>')
                .map_or(lower.len(), |q| close_start + q + 1);
            (close_start, after)
        }
        None => (lower.len(), lower.len()),
    }
}

/// HTML to sections with a hand-written scanner: `<h1>`..`<h6>` open sections, block elements
/// break lines, everything else is text. It never fails: unclosed comments and tags run to the
/// end of input, a stray `<` is text. Returns `<title>`, else the first `<h1>`, as the title.
fn html_to_sections(content: &str) -> (Option<String>, Vec<Section>) {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `content`.
    let lower = content.to_ascii_lowercase();
    let mut b = SectionBuilder::default();
    let mut title: Option<String> = None;
    let mut first_h1: Option<String> = None;
    let mut heading: Option<(u8, String)> = None;
    let mut in_head = false;
    let mut pre_depth = 0usize;
    let mut cells_in_row = 0usize;
    let mut i = 0;

    let finish_heading = |b: &mut SectionBuilder,
                          first_h1: &mut Option<String>,
                          heading: &mut Option<(u8, String)>| {
        if let Some((level, text)) = heading.take() {
            let text = collapse_whitespace(&text);
            if level == 1 && first_h1.is_none() && !text.is_empty() {
                *first_h1 = Some(text.clone());
            }
            b.heading(level, text);
        }
    };

    while i < content.len() {
        let rest = &content[i..];
        if !rest.starts_with('<') {
            let next = rest.find('<').map_or(content.len(), |p| i + p);
            if !in_head {
                let text = decode_entities(&content[i..next]);
                html_text(&mut b, heading.as_mut(), pre_depth > 0, &text);
            }
            i = next;
            continue;
        }
        if rest.starts_with("<!--") {
            i = content[i + 4..]
                .find("-->")
                .map_or(content.len(), |p| i + 4 + p + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            i = rest.find('>').map_or(content.len(), |p| i + p + 1);
            continue;
        }
        let Some(tag) = parse_html_tag(content, i) else {
            if !in_head {
                html_text(&mut b, heading.as_mut(), pre_depth > 0, "<");
            }
            i += 1;
            continue;
        };
        i = tag.end;
        let name = tag.name.as_str();

        if !tag.closing && !tag.self_closing && HTML_SKIPPED.contains(&name) {
            i = skip_past_close(&lower, i, name).1;
            continue;
        }
        if !tag.closing && name == "title" {
            let (close, after) = skip_past_close(&lower, i, "title");
            let text = collapse_whitespace(&decode_entities(&content[i..close]));
            if title.is_none() && !text.is_empty() {
                title = Some(text);
            }
            i = after;
            continue;
        }
        match name {
            "head" => in_head = !tag.closing,
            // Pages often omit </head> and <body>; any element that cannot live in <head>
            // ends it, as in browsers.
            _ if !tag.closing && !HTML_HEAD_ONLY.contains(&name) => in_head = false,
            _ => {}
        }
        if in_head {
            continue;
        }
        if let Some(level) = heading_level(name) {
            finish_heading(&mut b, &mut first_h1, &mut heading);
            if !tag.closing {
                heading = Some((level, String::new()));
            }
            continue;
        }
        let is_paragraph = HTML_PARAGRAPH.contains(&name);
        let is_line = HTML_LINE.contains(&name);
        if let Some((_, buf)) = heading.as_mut() {
            // Block tags inside a heading only separate words.
            if is_paragraph || is_line {
                buf.push(' ');
            }
            continue;
        }
        if name == "pre" {
            pre_depth = if tag.closing {
                pre_depth.saturating_sub(1)
            } else {
                pre_depth + 1
            };
        }
        if is_paragraph {
            b.break_paragraph();
        } else if is_line {
            b.break_line();
        }
        if tag.closing {
            continue;
        }
        match name {
            "li" => b.push("- "),
            "tr" => cells_in_row = 0,
            "td" | "th" => {
                if cells_in_row > 0 {
                    b.push(" | ");
                }
                cells_in_row += 1;
            }
            _ => {}
        }
    }
    finish_heading(&mut b, &mut first_h1, &mut heading);
    (title.or(first_h1), b.finish())
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// Appends decoded text: into the open heading, verbatim inside `<pre>`, else with whitespace
/// collapsed the way a browser renders it.
fn html_text(b: &mut SectionBuilder, heading: Option<&mut (u8, String)>, pre: bool, text: &str) {
    if let Some((_, buf)) = heading {
        buf.push_str(text);
        return;
    }
    if pre {
        b.push(&text.replace("\r\n", "\n"));
        return;
    }
    for (k, word) in text.split_whitespace().enumerate() {
        let space_before = k > 0 || text.starts_with(char::is_whitespace);
        if space_before && !b.ends_line() && !b.text.ends_with(' ') {
            b.push(" ");
        }
        b.push(word);
    }
    if text.ends_with(char::is_whitespace) && !b.ends_line() && !b.text.ends_with(' ') {
        b.push(" ");
    }
}

/// Decodes character references: the common named ones and numeric `&#123;` / `&#x1F;`.
/// Anything unrecognised is left as written, as browsers do.
fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        // A reference is '&', a short run of letters, digits or '#', then ';'. Anything else
        // (a lone '&', "R&D", "&amp" without ';') is a literal ampersand.
        let semi = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|k| k + 1)
            .filter(|&k| k <= 33 && rest[k..].starts_with(';'));
        match semi.and_then(|k| decode_entity(&rest[1..k]).map(|c| (c, k))) {
            Some((c, k)) => {
                out.push(c);
                rest = &rest[k + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let (digits, radix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (num, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        // Out-of-range, surrogate and NUL references render as the replacement character.
        let c = u32::from_str_radix(digits, radix)
            .ok()
            .filter(|&n| n != 0)
            .and_then(char::from_u32)
            .unwrap_or('\u{fffd}');
        return Some(c);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        // A plain space, so whitespace collapsing treats it like any other.
        "nbsp" => ' ',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "rsquo" => '’',
        "lsquo" => '‘',
        "rdquo" => '”',
        "ldquo" => '“',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "deg" => '°',
        "times" => '×',
        "divide" => '÷',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON and JSON Lines
// ---------------------------------------------------------------------------------------------

/// Where a record sits in its file, for error messages and default ids.
#[derive(Clone, Copy)]
enum RecordAt {
    /// The file is a single object.
    Whole,
    /// 0-based index in a JSON array.
    Item(usize),
    /// 1-based line in a JSON Lines file.
    Line(usize),
}

impl std::fmt::Display for RecordAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Whole => f.write_str("(the top-level object)"),
            Self::Item(i) => write!(f, "item {i} of the array"),
            Self::Line(n) => write!(f, "line {n}"),
        }
    }
}

const TEXT_FIELDS: [&str; 3] = ["text", "body", "content"];

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// serde_json's message without its "at line 1 column 5" suffix, which would be misleading
/// for JSON Lines where we report the line ourselves.
fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(p) => msg[..p].to_string(),
        None => msg,
    }
}

fn parse_json(file: &str, source: &str, content: &str, updated_at: i64) -> Result<Vec<Document>> {
    let value: serde_json::Value = serde_json::from_str(content).map_err(|e| {
        Error::BadInput(format!(
            "{file} is not valid JSON: {} at line {}, column {}; fix the syntax, or rename the file to .jsonl if it holds one object per line",
            json_message(&e),
            e.line(),
            e.column()
        ))
    })?;
    let mut records = Records::new(file, source, updated_at);
    match value {
        serde_json::Value::Object(map) => records.add(RecordAt::Whole, 0, &map)?,
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let serde_json::Value::Object(map) = item else {
                    return Err(Error::BadInput(format!(
                        "{file} {}: expected an object but found a {}; each item must be an object with a \"text\", \"body\" or \"content\" field",
                        RecordAt::Item(index),
                        json_kind(item)
                    )));
                };
                records.add(RecordAt::Item(index), index, map)?;
            }
        }
        other => {
            return Err(Error::BadInput(format!(
                "{file} holds a JSON {} but must hold an object or an array of objects, each with a \"text\", \"body\" or \"content\" field",
                json_kind(&other)
            )));
        }
    }
    Ok(records.docs)
}

fn parse_json_lines(
    file: &str,
    source: &str,
    content: &str,
    updated_at: i64,
) -> Result<Vec<Document>> {
    let mut records = Records::new(file, source, updated_at);
    let mut index = 0;
    for (n, line) in content.lines().enumerate() {
        let at = RecordAt::Line(n + 1);
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::BadInput(format!(
                "{file} {at} is not valid JSON ({} at column {}); each line must hold one complete JSON object (blank lines are skipped)",
                json_message(&e),
                e.column()
            ))
        })?;
        let serde_json::Value::Object(map) = &value else {
            return Err(Error::BadInput(format!(
                "{file} {at}: expected a JSON object but found a {}; each line must hold one object with a \"text\", \"body\" or \"content\" field",
                json_kind(&value)
            )));
        };
        records.add(at, index, map)?;
        index += 1;
    }
    Ok(records.docs)
}

/// Turns JSON records into documents, checking that ids are unique within the file (two
/// records with one id would silently overwrite each other in the index).
struct Records<'a> {
    file: &'a str,
    source: &'a str,
    updated_at: i64,
    seen: HashMap<String, RecordAt>,
    docs: Vec<Document>,
}

impl<'a> Records<'a> {
    fn new(file: &'a str, source: &'a str, updated_at: i64) -> Self {
        Self {
            file,
            source,
            updated_at,
            seen: HashMap::new(),
            docs: Vec::new(),
        }
    }

    fn add(
        &mut self,
        at: RecordAt,
        index: usize,
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        let file = self.file;
        let string_field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| map.get(*n).and_then(serde_json::Value::as_str))
        };
        let Some(raw_text) = string_field(&TEXT_FIELDS) else {
            return Err(Error::BadInput(format!(
                "{file} {at}: the record has no text; put the document text in a \"text\", \"body\" or \"content\" string field"
            )));
        };
        let id = ["_id", "id"].iter().find_map(|n| match map.get(*n) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Some(s.trim().to_string())
            }
            Some(serde_json::Value::Number(num)) => Some(num.to_string()),
            _ => None,
        });
        if let Some(id) = &id
            && let Some(earlier) = self.seen.insert(id.clone(), at)
        {
            return Err(Error::BadInput(format!(
                "{file} {at}: id \"{id}\" is already used by {earlier}; give each record a unique \"_id\" or \"id\""
            )));
        }
        let key = id.clone().unwrap_or_else(|| index.to_string());
        let text = normalize_blocks(raw_text);
        let title = string_field(&["title", "name"])
            .map(collapse_whitespace)
            .filter(|t| !t.is_empty())
            .or_else(|| title_from_text(&text))
            .unwrap_or_else(|| format!("{} #{key}", readable_stem(file)));
        let source = string_field(&["url"])
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(self.source);
        self.docs.push(Document {
            doc_id: format!("{file}#{key}"),
            title,
            source: source.to_string(),
            file: file.to_string(),
            sections: plain_sections(text),
            updated_at: self.updated_at,
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn one(file: &str, content: &str) -> Document {
        let mut docs = parse(file, file, content, 7).unwrap();
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    fn bad(file: &str, content: &str) -> String {
        match parse(file, file, content, 0) {
            Err(Error::BadInput(m)) => m,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    #[test]
    fn supported_extensions_are_case_insensitive() {
        assert!(is_supported(Path::new("docs/Guide.MD")));
        assert!(is_supported(Path::new("a.markdown")));
        assert!(is_supported(Path::new("x/y.HTM")));
        assert!(is_supported(Path::new("r.ndjson")));
        assert!(!is_supported(Path::new("image.png")));
        assert!(!is_supported(Path::new("README")));
        assert!(bad("notes.pdf", "x").contains(".md"));
    }

    #[test]
    fn markdown_front_matter_headings_lists_tables_and_code() {
        let md = "---\ntitle: \"Install Guide\"\ntags: [a, b]\n---\n\
Intro with *emphasis* and a [link](https://example.com).\n\n\
# Getting started\n\nFirst paragraph\ncontinues here.\n\n\
## Linux\n\n- apt install **foo**\n- configure\n  - nested item\n\n\
> Quoted `code` text.\n\n\
### Table\n\n| Name | Value |\n|------|-------|\n| a | 1 |\n| b | 2 |\n\n\
## macOS\n\n```sh\nbrew install foo\nfoo --version\n```\n";
        let doc = one("docs/install-guide.md", md);
        assert_eq!(doc.title, "Install Guide");
        assert_eq!(doc.doc_id, "docs/install-guide.md");
        assert_eq!(doc.updated_at, 7);
        let s = &doc.sections;
        assert_eq!(s.len(), 5, "{s:#?}");
        assert!(s[0].headings.is_empty());
        assert_eq!(s[0].text, "Intro with emphasis and a link.");
        assert_eq!(s[1].headings, ["Getting started"]);
        assert_eq!(s[1].text, "First paragraph continues here.");
        assert_eq!(s[2].headings, ["Getting started", "Linux"]);
        assert_eq!(
            s[2].text,
            "- apt install foo\n- configure\n  - nested item\n\nQuoted code text."
        );
        assert_eq!(s[3].headings, ["Getting started", "Linux", "Table"]);
        assert_eq!(s[3].text, "Name | Value\na | 1\nb | 2");
        assert_eq!(s[4].headings, ["Getting started", "macOS"]);
        assert_eq!(s[4].text, "brew install foo\nfoo --version");
        // Front matter is not text.
        assert!(s.iter().all(|x| !x.text.contains("tags")));
    }

    #[test]
    fn markdown_title_falls_back_to_h1_then_stem() {
        assert_eq!(
            one("a.md", "text\n\n# Real Title\n\nbody").title,
            "Real Title"
        );
        assert_eq!(
            one("dir/my_notes-2024.md", "## only h2\n\nx").title,
            "My notes 2024"
        );
        // An unclosed front matter fence is just Markdown.
        let doc = one("b.md", "---\ntitle: x\n");
        assert_eq!(doc.title, "B");
    }

    #[test]
    fn markdown_sibling_headings_replace_each_other() {
        let doc = one("a.md", "# A\n\n## B\n\nb\n\n## C\n\nc\n\n# D\n\nd");
        let paths: Vec<_> = doc.sections.iter().map(|s| s.headings.join("/")).collect();
        assert_eq!(paths, ["A/B", "A/C", "D"]);
    }

    #[test]
    fn plain_text_title_and_paragraphs() {
        let doc = one(
            "notes/read_me.txt",
            "\u{feff}Release notes\r\n\r\n\r\nLine one\r\nline two\n\n\nEnd.  \n",
        );
        assert_eq!(doc.title, "Release notes");
        assert_eq!(doc.sections.len(), 1);
        assert_eq!(
            doc.sections[0].text,
            "Release notes\n\nLine one\nline two\n\nEnd."
        );
        let long = "x".repeat(150);
        assert_eq!(one("notes/read_me.txt", &long).title, "Read me");
        assert!(one("empty.txt", "  \n\n ").sections.is_empty());
    }

    #[test]
    fn html_skips_scripts_and_decodes_entities() {
        let html = r#"<!DOCTYPE html><html><head><title>Caf&eacute; &amp; Co</title>
<meta charset="utf-8"><style>p { color: red }</style><script>var x = "<h1>no</h1>";</script>
</head><body><!-- a comment <h2>hidden</h2> -->
<p>Intro &mdash; text&nbsp;here &#65;&#x42; &copy; &unknown; R&D</p>
<h1>Main <em>title</em></h1><div>First   block<br>second line</div>
<noscript>enable js</noscript>
<h2>Details</h2><ul><li>one</li><li>two &lt;b&gt;</li></ul>
<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
<pre>  keep
    indent</pre></body></html>"#;
        let doc = one("site/page.html", html);
        // &eacute; is not in our table, so it stays as written.
        assert_eq!(doc.title, "Caf&eacute; & Co");
        let s = &doc.sections;
        assert_eq!(s.len(), 3, "{s:#?}");
        assert!(s[0].headings.is_empty());
        assert_eq!(s[0].text, "Intro — text here AB © &unknown; R&D");
        assert_eq!(s[1].headings, ["Main title"]);
        assert_eq!(s[1].text, "First block\nsecond line");
        assert_eq!(s[2].headings, ["Main title", "Details"]);
        assert_eq!(
            s[2].text,
            "- one\n- two <b>\n\nk | v\na | 1\n\n  keep\n    indent"
        );
        let all: String = s.iter().map(|x| x.text.as_str()).collect();
        for hidden in ["color", "var x", "hidden", "enable js", "comment"] {
            assert!(!all.contains(hidden), "{hidden} leaked: {all}");
        }
    }

    #[test]
    fn html_title_falls_back_to_h1_then_stem() {
        assert_eq!(one("a.htm", "<h1>Hello</h1><p>x</p>").title, "Hello");
        assert_eq!(one("my-page.html", "<p>x</p>").title, "My page");
    }

    #[test]
    fn malformed_html_never_panics() {
        let inputs = [
            "<",
            "<p",
            "<p class=\"x",
            "a < b and c<3 <",
            "<!-- unclosed comment <p>lost",
            "<script>never closed",
            "<title>no end",
            "<h2>open heading then end",
            "</p></div></h1>stray closers",
            "<p class='x>quote never closes</p><p>after</p>",
            "&#xFFFFFFFF; &#99999999999; &#; &#x; & &amp",
            "<pre>é</pre></pre></pre>",
            "<h1>ação 🎉</h1><p>coração 👩‍💻 ünïcödé",
            "<<<>>><</>",
        ];
        for input in inputs {
            let doc = one("m.html", input);
            for s in &doc.sections {
                assert!(!s.text.is_empty());
            }
        }
        let doc = one("m.html", "a < b and c<3 <");
        assert_eq!(doc.sections[0].text, "a < b and c<3 <");
        let doc = one("m.html", "<!-- unclosed comment <p>lost");
        assert!(doc.sections.is_empty());
        let doc = one("m.html", "<h2>open heading then end");
        assert!(doc.sections.is_empty());
        let doc = one("m.html", "<h1>ação 🎉</h1><p>coração 👩‍💻 ünïcödé");
        assert_eq!(doc.title, "ação 🎉");
        assert_eq!(doc.sections[0].text, "coração 👩‍💻 ünïcödé");
        let doc = one("m.html", "&#xFFFFFFFF; &#65 &#; &amp");
        assert_eq!(doc.sections[0].text, "\u{fffd} &#65 &#; &amp");
    }

    #[test]
    fn random_markup_never_panics() {
        // A deterministic mix of tricky fragments, so any failure reproduces.
        let pieces = [
            "<",
            ">",
            "</",
            "<!--",
            "-->",
            "<!",
            "<?",
            "&",
            "&#",
            "&#x",
            ";",
            "&amp;",
            "<p>",
            "<h1>",
            "</h1>",
            "<h3 class='",
            "\"",
            "<script>",
            "</script",
            "<title>",
            "<pre>",
            "</pre>",
            "<td>",
            "<tr>",
            "<li>",
            "<head>",
            "ção",
            "🎉",
            "👩‍💻",
            " ",
            "\n",
            "\r\n",
            "# ",
            "## ",
            "- ",
            "|",
            "---",
            "```",
            "> ",
            "*",
            "[a](b)",
            "text",
            ". ",
            "A",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let mut input = String::new();
            for _ in 0..40 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                input.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            for file in ["f.html", "f.md", "f.txt"] {
                for doc in parse(file, file, &input, 0).unwrap() {
                    assert!(!doc.title.is_empty());
                    for s in &doc.sections {
                        assert_eq!(s.text, s.text.trim_end(), "{file}: {input:?}");
                        assert!(!s.text.trim().is_empty() && !s.text.starts_with('\n'));
                    }
                }
            }
        }
    }

    #[test]
    fn json_array_with_ids_titles_and_urls() {
        let json = r#"[
            {"_id": "a1", "title": "First", "text": "Hello world.", "url": "https://x.test/a"},
            {"id": 42, "name": "Second", "body": "Body text"},
            {"content": "Short first line\n\nmore", "id": null},
            {"text": ""}
        ]"#;
        let docs = parse("data/faq.json", "data/faq.json", json, 5).unwrap();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].doc_id, "data/faq.json#a1");
        assert_eq!(docs[0].title, "First");
        assert_eq!(docs[0].source, "https://x.test/a");
        assert_eq!(docs[0].file, "data/faq.json");
        assert_eq!(docs[0].sections[0].text, "Hello world.");
        assert_eq!(docs[1].doc_id, "data/faq.json#42");
        assert_eq!(docs[1].title, "Second");
        assert_eq!(docs[1].source, "data/faq.json");
        assert_eq!(docs[2].doc_id, "data/faq.json#2");
        assert_eq!(docs[2].title, "Short first line");
        assert_eq!(docs[3].doc_id, "data/faq.json#3");
        assert_eq!(docs[3].title, "Faq #3");
        assert!(docs[3].sections.is_empty());

        let single = parse("one.json", "one.json", r#"{"text": "t"}"#, 0).unwrap();
        assert_eq!(single[0].doc_id, "one.json#0");
    }

    #[test]
    fn json_errors_name_the_record() {
        let m = bad("f.json", r#"[{"text": "ok"}, {"title": "no text"}]"#);
        assert!(m.contains("f.json") && m.contains("item 1"), "{m}");
        assert!(m.contains("\"text\", \"body\" or \"content\""), "{m}");
        let m = bad("f.json", r#"[{"text": 1}]"#);
        assert!(m.contains("item 0"), "{m}");
        let m = bad("f.json", "[1, 2]");
        assert!(m.contains("item 0") && m.contains("number"), "{m}");
        let m = bad("f.json", "\"just a string\"");
        assert!(m.contains("string"), "{m}");
        let m = bad("f.json", "{\n\"text\": \"a\",,\n}");
        assert!(m.contains("not valid JSON") && m.contains("line 2"), "{m}");
        let m = bad(
            "f.json",
            r#"[{"id": 1, "text": "a"}, {"id": "1", "text": "b"}]"#,
        );
        assert!(
            m.contains("item 1") && m.contains("item 0") && m.contains("\"1\""),
            "{m}"
        );
    }

    #[test]
    fn jsonl_records_skip_blank_lines() {
        let jsonl = "{\"id\": \"x\", \"text\": \"one\"}\n\n   \n{\"text\": \"two\"}\r\n{\"_id\": 7, \"id\": \"ignored\", \"body\": \"three\"}\n";
        let docs = parse("k/log.jsonl", "k/log.jsonl", jsonl, 0).unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.doc_id.as_str()).collect();
        assert_eq!(ids, ["k/log.jsonl#x", "k/log.jsonl#1", "k/log.jsonl#7"]);
        assert_eq!(docs[1].sections[0].text, "two");
    }

    /// Found by the fuzz target `document` (`fuzz/`): `- - - …` nests a list per `- `, and
    /// indenting every item by its depth turned 8 KB of Markdown into 16 MB of text.
    #[test]
    fn deeply_nested_lists_do_not_blow_up_the_text() {
        let content = format!("# Lists\n\n{}deep\n", "- ".repeat(4000));
        let doc = one("deep.md", &content);
        let text: usize = doc.sections.iter().map(|s| s.text.len()).sum();
        assert!(text < 20 * content.len(), "{text} bytes of text");
        assert!(doc.sections.iter().any(|s| s.text.contains("deep")));
        // Shallow nesting keeps its indentation.
        let doc = one("l.md", "- a\n  - b\n    - c\n");
        assert_eq!(doc.sections[0].text, "- a\n  - b\n    - c");
    }

    #[test]
    fn jsonl_errors_give_line_numbers() {
        let m = bad(
            "k/log.ndjson",
            "{\"text\": \"a\"}\n\n{\"title\": \"no text here\"}\n",
        );
        assert!(m.contains("k/log.ndjson line 3"), "{m}");
        assert!(m.contains("\"text\", \"body\" or \"content\""), "{m}");
        let m = bad("k/log.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n");
        assert!(m.contains("k/log.jsonl line 2 is not valid JSON"), "{m}");
        assert!(!m.contains("at line 1"), "{m}");
        let m = bad("k/log.jsonl", "[1]\n");
        assert!(m.contains("line 1") && m.contains("array"), "{m}");
    }

    #[test]
    fn load_file_reads_mtime_and_rejects_non_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("Hello World.md");
        std::fs::write(&good, "para").unwrap();
        let docs = load_file(&good).unwrap();
        assert_eq!(docs[0].title, "Hello World");
        assert_eq!(docs[0].file, good.display().to_string());
        assert!(docs[0].updated_at > 1_600_000_000_000);

        let latin1 = dir.path().join("old.txt");
        std::fs::write(&latin1, b"caf\xe9").unwrap();
        match load_file(&latin1) {
            Err(Error::BadInput(m)) => assert!(m.contains("old.txt") && m.contains("UTF-8")),
            other => panic!("expected BadInput, got {other:?}"),
        }
        match load_file(&dir.path().join("missing.md")) {
            Err(Error::BadInput(m)) => assert!(m.contains("missing.md")),
            other => panic!("expected BadInput, got {other:?}"),
        }
    }
}
