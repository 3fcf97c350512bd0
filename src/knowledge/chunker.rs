//! Heading-aware, overlapping chunks, and the sentence splitter shared with the planner.
//!
//! A chunk never spans two sections, so every chunk has exactly one heading path to cite.
//! Sections are not merged even when tiny: a short section is still a precise answer, and
//! merging would blur which heading a quote came from.
//!
//! Lengths are counted in `char`s (Unicode scalar values), never bytes, so limits mean the same
//! for Portuguese as for English and a cut never lands inside a UTF-8 sequence.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::document::Document;

/// How big chunks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkerConfig {
    /// Most characters of new text in one chunk (0 is treated as 1).
    pub max_chars: usize,
    /// Most characters repeated from the end of the previous chunk at the start of the next,
    /// so a sentence cut at a boundary is still found whole on one side.
    pub overlap_chars: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            max_chars: 1000,
            overlap_chars: 150,
        }
    }
}

/// One piece of a document, the unit that is indexed and quoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    /// 0-based position within the document.
    pub position: usize,
    /// The section's headings joined with `" > "`; empty for text before any heading.
    pub heading: String,
    /// The text, trimmed; at most `max_chars + overlap_chars` characters.
    pub text: String,
}

/// Splits a document into heading-aware, overlapping chunks.
///
/// - A chunk never spans two sections; a section of at most `max_chars` is one chunk.
/// - Longer sections are split at paragraph boundaries, then sentences, then lines, then
///   whitespace; a word is cut only when it alone exceeds `max_chars` (and then at `char`
///   boundaries). The pieces are packed greedily up to `max_chars`.
/// - Each chunk after the first in a section starts with up to `overlap_chars` of the
///   previous chunk's tail, beginning at a sentence start if one is in reach, else a line
///   start, else a word start; so every chunk is at most `max_chars + overlap_chars` characters.
/// - Empty or whitespace-only sections produce no chunks.
pub fn chunk_document(doc: &Document, cfg: &ChunkerConfig) -> Vec<Chunk> {
    let max = cfg.max_chars.max(1);
    let mut chunks = Vec::new();
    for section in &doc.sections {
        let text = section.text.trim();
        if text.is_empty() {
            continue;
        }
        let heading = section.headings.join(" > ");
        for piece in chunk_text(text, max, cfg.overlap_chars) {
            chunks.push(Chunk {
                position: chunks.len(),
                heading: heading.clone(),
                text: piece.to_string(),
            });
        }
    }
    chunks
}

/// Chunks one trimmed section text into slices of it.
fn chunk_text(text: &str, max: usize, overlap: usize) -> Vec<&str> {
    if char_len(text) <= max {
        return vec![text];
    }
    let mut segments = Vec::new();
    segment(text, 0..text.len(), Level::Paragraph, max, &mut segments);
    let seg_chars: Vec<usize> = segments
        .iter()
        .map(|r| char_len(&text[r.clone()]))
        .collect();
    let sentence_starts: Vec<usize> = sentence_spans(text).into_iter().map(|r| r.start).collect();

    let mut out = Vec::new();
    // Start of the previous chunk's text (overlap included) and end of its body.
    let mut previous: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < segments.len() {
        let body_start = segments[i].start;
        let mut end = segments[i].end;
        let mut len = seg_chars[i];
        let mut j = i + 1;
        while j < segments.len() {
            // Segments are contiguous apart from whitespace, which counts toward the limit.
            let gap = char_len(&text[end..segments[j].start]);
            if len + gap + seg_chars[j] > max {
                break;
            }
            len += gap + seg_chars[j];
            end = segments[j].end;
            j += 1;
        }
        let start = match previous {
            Some((prev_start, prev_end)) => overlap_start(
                text,
                prev_start,
                prev_end,
                body_start,
                overlap,
                &sentence_starts,
            ),
            None => body_start,
        };
        out.push(&text[start..end]);
        previous = Some((start, end));
        i = j;
    }
    out
}

/// Where the next chunk starts so that it repeats the previous chunk's tail: the earliest
/// sentence start, else line start, else word start, in the last `overlap` characters before `body_start` that
/// still lies inside the previous chunk. `body_start` (no overlap) when there is none.
fn overlap_start(
    text: &str,
    prev_start: usize,
    prev_end: usize,
    body_start: usize,
    overlap: usize,
    sentence_starts: &[usize],
) -> usize {
    if overlap == 0 {
        return body_start;
    }
    // Byte offset `overlap` characters before `body_start` (or the text start).
    let window = text[..body_start]
        .char_indices()
        .rev()
        .take(overlap)
        .last()
        .map_or(body_start, |(k, _)| k)
        .max(prev_start);
    if window >= prev_end {
        // The overlap budget is used up by the whitespace between the chunks.
        return body_start;
    }
    let in_reach = |k: usize| k >= window && k < prev_end;
    if let Some(&s) = sentence_starts.iter().find(|&&s| in_reach(s)) {
        return s;
    }
    // Then a line start (table rows, code), so the overlap does not open mid-row.
    let line_start = text[window..prev_end]
        .char_indices()
        .find(|&(k, c)| !c.is_whitespace() && text[..window + k].ends_with('\n'))
        .map(|(k, _)| window + k);
    if let Some(k) = line_start {
        return k;
    }
    let mut before_is_space = text[..window]
        .chars()
        .next_back()
        .is_none_or(char::is_whitespace);
    for (k, c) in text[window..prev_end].char_indices() {
        if before_is_space && !c.is_whitespace() {
            return window + k;
        }
        before_is_space = c.is_whitespace();
    }
    body_start
}

/// Split levels, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Paragraph,
    Sentence,
    Line,
    Word,
    Char,
}

/// Appends trimmed ranges of `text` covering `range`, each at most `max` characters, splitting
/// only as finely as needed.
fn segment(text: &str, range: Range<usize>, level: Level, max: usize, out: &mut Vec<Range<usize>>) {
    let piece = &text[range.clone()];
    if char_len(piece) <= max {
        out.push(range);
        return;
    }
    let offset = range.start;
    let shift = |r: Range<usize>| r.start + offset..r.end + offset;
    let (parts, next): (Vec<Range<usize>>, Level) = match level {
        Level::Paragraph => (paragraph_spans(piece), Level::Sentence),
        Level::Sentence => (sentence_spans(piece), Level::Line),
        Level::Line => (line_spans(piece), Level::Word),
        Level::Word => (word_spans(piece), Level::Char),
        Level::Char => {
            // A single word longer than max: cut every `max` chars, at char boundaries.
            let mut start = 0;
            for (n, (k, _)) in piece.char_indices().enumerate() {
                if n > 0 && n % max == 0 {
                    out.push(shift(start..k));
                    start = k;
                }
            }
            out.push(shift(start..piece.len()));
            return;
        }
    };
    for part in parts {
        segment(text, shift(part), next, max, out);
    }
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// `range` narrowed to exclude surrounding whitespace; `None` when nothing is left.
fn trimmed(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let s = &text[range.clone()];
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let start = range.start + (s.len() - s.trim_start().len());
    Some(start..start + t.len())
}

/// Runs of non-blank lines.
fn paragraph_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                spans.extend(trimmed(text, s..offset));
            }
        } else if start.is_none() {
            start = Some(offset);
        }
        offset += line.len();
    }
    if let Some(s) = start {
        spans.extend(trimmed(text, s..text.len()));
    }
    spans
}

fn line_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        spans.extend(trimmed(text, offset..offset + line.len()));
        offset += line.len();
    }
    spans
}

fn word_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    for (k, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push(s..k);
                start = None;
            }
            (false, None) => start = Some(k),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push(s..text.len());
    }
    spans
}

/// Splits text into sentences, trimmed, in order.
///
/// A sentence ends at `.`, `!`, `?` or `…` (with any closing quotes or brackets) followed by
/// whitespace and then an uppercase letter, a digit, a quote or the end of the text; also at
/// a blank line and at a line break before a list item (`- `, `* `, `+ `, `• `, `1. `, `1) `).
/// Common abbreviations (e.g., i.e., Mr., Dr., etc., vs., …), initials (J. Smith) and decimals
/// (3.5) do not end a sentence.
pub fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|r| &text[r]).collect()
}

/// Words that end in '.' without ending a sentence, lowercase, without the dot.
const ABBREVIATIONS: &[&str] = &[
    // Kept to forms that are rarely ordinary words, so "the answer is no. Then…" still splits.
    "mr", "mrs", "ms", "dr", "dra", "prof", "sr", "sra", "jr", "st", "vs", "etc", "cf", "al",
    "approx", "fig", "figs", "vol", "vols", "pp", "inc", "ltd", "co", "corp", "dept", "jan", "feb",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
];

fn sentence_spans(text: &str) -> Vec<Range<usize>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |k: usize| chars.get(k).map_or(text.len(), |&(b, _)| b);
    let mut spans = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            '\n' => {
                let mut j = i + 1;
                let mut blank = false;
                while j < chars.len() && chars[j].1.is_whitespace() {
                    blank |= chars[j].1 == '\n';
                    j += 1;
                }
                if blank || starts_list_item(&text[byte_at(j)..]) {
                    spans.extend(trimmed(text, start..pos));
                    start = byte_at(j);
                }
                i = j;
            }
            '.' | '!' | '?' | '…' => {
                let mut j = i + 1;
                while j < chars.len()
                    && matches!(
                        chars[j].1,
                        '.' | '!' | '?' | '…' | '"' | '\'' | ')' | ']' | '”' | '’' | '»'
                    )
                {
                    j += 1;
                }
                if j < chars.len() && !chars[j].1.is_whitespace() {
                    // "3.5", "example.com", "a.m.": no whitespace, no boundary.
                    i = j;
                    continue;
                }
                // Look past line breaks too: a wrapped line starting in lowercase continues
                // the sentence.
                let mut k = j;
                while k < chars.len() && chars[k].1.is_whitespace() {
                    k += 1;
                }
                let next_starts = k == chars.len() || starts_sentence(chars[k].1);
                let abbreviation = c == '.' && j == i + 1 && is_abbreviation(&text[start..pos]);
                if next_starts && !abbreviation {
                    let end = byte_at(j);
                    spans.extend(trimmed(text, start..end));
                    start = end;
                }
                // The whitespace after it, line breaks included, goes through the loop.
                i = j;
            }
            _ => i += 1,
        }
    }
    spans.extend(trimmed(text, start..text.len()));
    spans
}

fn starts_sentence(c: char) -> bool {
    c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\'' | '“' | '‘' | '«' | '¿' | '¡')
}

fn starts_list_item(line: &str) -> bool {
    let line = line.trim_start_matches([' ', '\t']);
    if ["- ", "* ", "+ ", "• "].iter().any(|m| line.starts_with(m)) {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    (1..=3).contains(&digits)
        && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

/// Whether the word right before a '.' (the end of `before`) is an abbreviation or initial.
fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(['(', '[', '"', '\'', '“', '‘']);
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    let mut chars = word.chars();
    // An initial, as in "J. Smith"; "I." is more often the pronoun ending a sentence.
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return c.is_uppercase() && c != 'I';
    }
    // Dotted short forms: "e.g", "i.e", "U.S", "a.m", "Ph.D".
    word.contains('.')
        && word
            .split('.')
            .all(|p| (1..=2).contains(&p.chars().count()) && p.chars().all(char::is_alphabetic))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::knowledge::document::Section;

    fn doc(sections: &[(&[&str], &str)]) -> Document {
        Document {
            doc_id: "d".into(),
            title: "T".into(),
            source: "s".into(),
            file: "f".into(),
            sections: sections
                .iter()
                .map(|(h, t)| Section {
                    headings: h.iter().map(|s| s.to_string()).collect(),
                    text: t.to_string(),
                })
                .collect(),
            updated_at: 0,
        }
    }

    fn cfg(max_chars: usize, overlap_chars: usize) -> ChunkerConfig {
        ChunkerConfig {
            max_chars,
            overlap_chars,
        }
    }

    fn prose(sentences: usize) -> String {
        (0..sentences)
            .map(|i| format!("Sentence number {i} talks about topic {} at length.", i % 7))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn default_config() {
        assert_eq!(ChunkerConfig::default(), cfg(1000, 150));
        let partial: ChunkerConfig = serde_json::from_str(r#"{"max_chars": 500}"#).unwrap();
        assert_eq!(partial, cfg(500, 150));
        assert!(serde_json::from_str::<ChunkerConfig>(r#"{"max": 5}"#).is_err());
    }

    #[test]
    fn short_sections_are_one_chunk_each_and_empty_ones_vanish() {
        let d = doc(&[
            (&[], "Preface."),
            (&["A"], "   \n\n "),
            (&["A", "B"], "Body of B."),
            (&["C"], "Body of C."),
        ]);
        let chunks = chunk_document(&d, &ChunkerConfig::default());
        let got: Vec<_> = chunks
            .iter()
            .map(|c| (c.position, c.heading.as_str(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "", "Preface."),
                (1, "A > B", "Body of B."),
                (2, "C", "Body of C.")
            ]
        );
    }

    #[test]
    fn long_sections_respect_limits_overlap_and_boundaries() {
        let first = prose(40);
        let second = format!("{}\n\n{}", prose(5), prose(30));
        let d = doc(&[(&["One"], &first), (&["Two"], &second)]);
        let c = cfg(300, 80);
        let chunks = chunk_document(&d, &c);
        assert!(chunks.len() > 8);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.position, i);
            let n = chunk.text.chars().count();
            assert!(n <= 380, "chunk {i} has {n} chars");
            assert_eq!(chunk.text, chunk.text.trim());
            // Never crosses sections: every chunk is a slice of its own section's text.
            let own = if chunk.heading == "One" {
                &first
            } else {
                &second
            };
            assert!(
                own.contains(&chunk.text),
                "chunk {i} not inside its section"
            );
            // Never mid-word: starts and ends at word boundaries of the source.
            let at = own.find(&chunk.text).unwrap();
            let end = at + chunk.text.len();
            assert!(
                at == 0 || own[..at].ends_with(char::is_whitespace),
                "chunk {i} start"
            );
            assert!(
                end == own.len() || own[end..].starts_with(char::is_whitespace),
                "chunk {i} end"
            );
        }
        // Each chunk after the first of a section repeats the tail of the one before, starting
        // at a sentence, so the overlap reads naturally.
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.heading != b.heading {
                assert!(b.text.starts_with("Sentence number 0 "));
                continue;
            }
            let shared = (1..=b.text.len().min(a.text.len()))
                .rev()
                .filter(|&k| b.text.is_char_boundary(k))
                .find(|&k| a.text.ends_with(&b.text[..k]))
                .unwrap_or(0);
            assert!(
                shared > 20,
                "no overlap between {:?} and {:?}",
                a.text,
                b.text
            );
            assert!(shared <= 80);
            assert!(b.text.starts_with("Sentence number"), "{:?}", b.text);
        }
        // All the text is covered.
        let joined: String = chunks
            .iter()
            .filter(|c| c.heading == "One")
            .map(|c| c.text.as_str())
            .collect();
        for i in 0..40 {
            assert!(joined.contains(&format!("Sentence number {i} ")));
        }
    }

    #[test]
    fn paragraph_boundaries_are_preferred() {
        let p1 = "Alpha one. Alpha two. Alpha three.";
        let p2 = "Beta one. Beta two. Beta three.";
        let text = format!("{p1}\n\n{p2}");
        let chunks = chunk_text(&text, 40, 0);
        assert_eq!(chunks, [p1, p2]);
    }

    #[test]
    fn no_overlap_when_disabled() {
        let text = prose(20);
        let chunks = chunk_text(&text, 200, 0);
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        // Without overlap the chunks partition the text (minus the spaces between them).
        assert_eq!(total + chunks.len() - 1, text.len());
    }

    #[test]
    fn long_words_and_multibyte_text_never_panic() {
        let portuguese = "A criação de soluções é uma ação coletiva. Não há exceção à regra: \
            informação, atenção e coração! Será que você já viu isso? Ótimo. "
            .repeat(20);
        let emoji = "🎉👩‍💻🚀ção".repeat(200);
        let mixed = format!("{portuguese}\n\n{emoji} fim 😀😀😀.");
        for max in [1, 2, 3, 7, 50, 333] {
            for overlap in [0, 1, 5, 40, 400] {
                let d = doc(&[(&["Título"], &mixed)]);
                let chunks = chunk_document(&d, &cfg(max, overlap));
                assert!(!chunks.is_empty());
                for chunk in &chunks {
                    let n = chunk.text.chars().count();
                    assert!(n <= max + overlap, "{n} > {max} + {overlap}");
                    assert!(!chunk.text.is_empty());
                }
            }
        }
        // A single word longer than max is cut, and only then.
        let chunks = chunk_text("abcdefghij", 4, 0);
        assert_eq!(chunks, ["abcd", "efgh", "ij"]);
        let chunks = chunk_text("ããããã ééééé", 5, 0);
        assert_eq!(chunks, ["ããããã", "ééééé"]);
        // Zero max is treated as one.
        let d = doc(&[(&[], "ab")]);
        assert_eq!(chunk_document(&d, &cfg(0, 0)).len(), 2);
    }

    #[test]
    fn random_text_respects_limits() {
        let pieces = [
            "word ",
            "Sentence. ",
            "e.g. ",
            "3.5 ",
            "\n",
            "\n\n",
            "- item\n",
            "ção ",
            "🎉",
            "👩‍💻 ",
            "supercalifragilisticexpialidocious",
            "  ",
            "? ",
            "\"Q.\" ",
            "x",
        ];
        let mut seed: u64 = 42;
        for round in 0..300 {
            let mut text = String::new();
            for _ in 0..(round % 60) * 5 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let max = 1 + round % 97;
            let overlap = round % 23;
            let d = doc(&[(&["H"], &text), (&[], "tail")]);
            let chunks = chunk_document(&d, &cfg(max, overlap));
            for chunk in &chunks {
                assert!(chunk.text.chars().count() <= max + overlap, "{text:?}");
                assert!(!chunk.text.is_empty() && chunk.text == chunk.text.trim());
                let own = if chunk.heading == "H" {
                    text.as_str()
                } else {
                    "tail"
                };
                assert!(own.contains(&chunk.text), "{chunk:?} {text:?}");
            }
            // Every word of the text is in some chunk.
            for word in text.split_whitespace().filter(|w| w.chars().count() <= max) {
                assert!(
                    chunks.iter().any(|c| c.text.contains(word)),
                    "{word:?} lost"
                );
            }
            let _ = sentences(&text);
        }
    }

    #[test]
    fn tables_and_code_split_at_lines() {
        let rows: Vec<String> = (0..30).map(|i| format!("row{i} | value {i}")).collect();
        let table = rows.join("\n");
        for chunk in chunk_text(&table, 60, 0) {
            assert!(chunk.starts_with("row"), "{chunk:?}");
            assert!(chunk.chars().last().unwrap().is_ascii_digit(), "{chunk:?}");
        }
    }

    #[test]
    fn sentences_split_on_terminators() {
        assert_eq!(
            sentences("Hello world. How are you? I am fine! \"Quoted.\" 42 is next. end"),
            [
                "Hello world.",
                "How are you?",
                "I am fine!",
                "\"Quoted.\"",
                "42 is next. end"
            ]
        );
        assert_eq!(sentences("  One.  "), ["One."]);
        assert!(sentences(" \n\n ").is_empty());
        assert_eq!(
            sentences("Wait... What?! Yes."),
            ["Wait...", "What?!", "Yes."]
        );
    }

    #[test]
    fn sentences_keep_abbreviations_and_decimals() {
        assert_eq!(
            sentences(
                "Use tools, e.g. Python, i.e. The Best. Mr. Smith met Dr. Who at 3.5 p.m. Today. \
                 Apples, pears, etc. Are fruit. Cats vs. Dogs is a film. J. R. R. Tolkien wrote it."
            ),
            [
                "Use tools, e.g. Python, i.e. The Best.",
                "Mr. Smith met Dr. Who at 3.5 p.m. Today.",
                "Apples, pears, etc. Are fruit.",
                "Cats vs. Dogs is a film.",
                "J. R. R. Tolkien wrote it."
            ]
        );
        assert_eq!(
            sentences("Version 2.0 costs $3.50. Pi is 3.14159. Visit example.com. Done."),
            [
                "Version 2.0 costs $3.50.",
                "Pi is 3.14159.",
                "Visit example.com.",
                "Done."
            ]
        );
    }

    #[test]
    fn sentences_split_on_paragraphs_and_list_items() {
        assert_eq!(
            sentences(
                "intro line\nwrapped line\n\nsecond para\n- item one\n- item two\n1. first\n2) second"
            ),
            [
                "intro line\nwrapped line",
                "second para",
                "- item one",
                "- item two",
                "1. first",
                "2) second"
            ]
        );
        assert_eq!(
            sentences("Olá, você está bem? Ótimo! À noite saímos. 🎉 Fim."),
            ["Olá, você está bem?", "Ótimo!", "À noite saímos. 🎉 Fim."]
        );
    }
}
