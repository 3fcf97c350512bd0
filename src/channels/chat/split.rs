//! Splitting a reply into messages a platform accepts, without breaking its markup.
//!
//! Every platform has a message size limit (Slack 3000 characters per section, Telegram 4096,
//! Discord 2000). A long answer is cut at a paragraph break when it can, else at a line break,
//! else at a space, else between two characters. What must never be cut: a Telegram HTML tag
//! or entity (`<a href="…">`, `&amp;`), a Slack link or mention (`<https://…|title>`, `<@U1>`)
//! or escape. A Telegram tag open at the cut (`<b>`, `<pre>`) is closed at the end of the part
//! and opened again at the start of the next, and so is a Markdown code fence on Slack and
//! Discord, so each part renders on its own. Offsets always index the text they were computed
//! on: the parts are slices of the original text plus the closing and reopening markup.

/// The markup of a reply's text, which decides what may not be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Plain text: anything can be cut.
    Plain,
    /// Slack mrkdwn: `<…>` links and mentions, `&amp;`-style escapes, ``` fences.
    SlackMrkdwn,
    /// Telegram HTML: tags (closed and reopened across a cut) and entities.
    TelegramHtml,
    /// Discord Markdown: `<…>` links and ``` fences.
    DiscordMarkdown,
}

/// One piece of the text that is never cut.
#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    chars: usize,
    kind: UnitKind,
}

#[derive(Debug, Clone, PartialEq)]
enum UnitKind {
    Text,
    /// A line break: a place to cut.
    Newline,
    /// A space: a worse place to cut.
    Space,
    /// `<tag …>`: pushes the tag.
    Open(String),
    /// `</tag>`: pops it.
    Close(String),
    /// A ``` line: opens or closes a code block.
    Fence,
}

/// What is open at a point of the text: tags (their opening text) and a code fence.
#[derive(Debug, Clone, Default, PartialEq)]
struct Open {
    tags: Vec<(String, String)>,
    fence: Option<String>,
}

/// Deeper nesting than this is not tracked (hostile input must not make every cut costly).
const MAX_OPEN_TAGS: usize = 16;

impl Open {
    fn apply(&mut self, text: &str, unit: &Unit) {
        match &unit.kind {
            UnitKind::Open(name) if self.tags.len() < MAX_OPEN_TAGS => self
                .tags
                .push((name.clone(), text[unit.start..unit.end].to_string())),
            UnitKind::Close(name) => {
                if let Some(i) = self.tags.iter().rposition(|(n, _)| n == name) {
                    self.tags.truncate(i);
                }
            }
            UnitKind::Fence => {
                self.fence = match self.fence {
                    Some(_) => None,
                    None => Some(text[unit.start..unit.end].to_string()),
                }
            }
            _ => {}
        }
    }

    /// The length of [`Open::closing`] once `unit` is applied.
    fn closing_chars_after(&self, text: &str, unit: &Unit) -> usize {
        match &unit.kind {
            UnitKind::Open(_) | UnitKind::Close(_) | UnitKind::Fence => {
                let mut next = self.clone();
                next.apply(text, unit);
                next.closing().chars().count()
            }
            _ => self.closing().chars().count(),
        }
    }

    /// Markup that closes what is open, innermost first.
    fn closing(&self) -> String {
        let mut out = String::new();
        if self.fence.is_some() {
            out.push_str("\n```");
        }
        for (name, _) in self.tags.iter().rev() {
            out.push_str(&format!("</{name}>"));
        }
        out
    }

    /// Markup that opens it again at the start of the next part.
    fn reopening(&self) -> String {
        let mut out = String::new();
        for (_, raw) in &self.tags {
            out.push_str(raw);
        }
        if let Some(fence) = &self.fence {
            out.push_str(fence);
            out.push('\n');
        }
        out
    }
}

/// Splits `text` into parts of at most `max` characters (see the module doc for where).
/// Parts that would hold only white space are dropped; a text that fits is one part.
pub fn split(text: &str, max: usize, markup: Markup) -> Vec<String> {
    let max = max.max(16);
    if text.chars().count() <= max {
        return if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![text.to_string()]
        };
    }
    let units = tokenize(text, markup, max / 2);
    let mut parts = Vec::new();
    let mut carried = Open::default();
    let mut i = 0;
    while i < units.len() {
        // A part never starts with the white space it was cut at.
        while i < units.len() && matches!(units[i].kind, UnitKind::Newline | UnitKind::Space) {
            i += 1;
        }
        if i == units.len() {
            break;
        }
        let mut prefix = carried.reopening();
        if prefix.chars().count() > max / 4 {
            // Too much to reopen (hostile nesting): the next part starts plain.
            carried = Open::default();
            prefix.clear();
        }
        let mut used = prefix.chars().count();
        let mut open = carried.clone();
        // The length of `open.closing()`, which only markup units change.
        let mut closing = open.closing().chars().count();
        // Best cut so far: (unit index after the cut, rank, what is open there).
        let mut best: Option<(usize, u8, Open)> = None;
        let mut j = i;
        while j < units.len() {
            let unit = &units[j];
            let markup = matches!(
                unit.kind,
                UnitKind::Open(_) | UnitKind::Close(_) | UnitKind::Fence
            );
            let closing_after = if markup {
                open.closing_chars_after(text, unit)
            } else {
                closing
            };
            let fits = used + unit.chars + closing_after <= max;
            if !fits && j > i {
                break;
            }
            used += unit.chars;
            open.apply(text, unit);
            closing = closing_after;
            j += 1;
            let rank = match unit.kind {
                UnitKind::Newline if j < units.len() && units[j].kind == UnitKind::Newline => 3,
                UnitKind::Newline => 2,
                UnitKind::Space => 1,
                _ => 0,
            };
            if rank > 0 && best.as_ref().is_none_or(|(_, r, _)| rank >= *r) {
                // Cut before the white space (it changes nothing that is open).
                best = Some((j - 1, rank, open.clone()));
            }
        }
        // The unit that did not fit may itself be the best place to cut (before it).
        let here = match units.get(j).map(|u| &u.kind) {
            Some(UnitKind::Newline)
                if units.get(j + 1).map(|u| &u.kind) == Some(&UnitKind::Newline) =>
            {
                3
            }
            Some(UnitKind::Newline) => 2,
            Some(UnitKind::Space) => 1,
            _ => 0,
        };
        let (cut, open_at_cut) = if j == units.len() {
            (j, open)
        } else {
            match best {
                Some((k, rank, o)) if k > i && rank > here => (k, o),
                _ => (j, open),
            }
        };
        let body = &text[units[i].start..units[cut - 1].end];
        let mut part = prefix;
        part.push_str(body.trim_end());
        part.push_str(&open_at_cut.closing());
        if !part.trim().is_empty() {
            parts.push(part);
        }
        carried = open_at_cut;
        i = cut;
    }
    parts
}

/// The text as units. Atoms longer than `longest` are cut into characters (a pathological
/// link or tag must not make a part exceed the limit).
fn tokenize(text: &str, markup: Markup, longest: usize) -> Vec<Unit> {
    let mut units = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let at_line_start = |i: usize| i == 0 || bytes.get(i.wrapping_sub(1)) == Some(&b'\n');
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        let atom_end = match (markup, c) {
            (Markup::TelegramHtml | Markup::SlackMrkdwn | Markup::DiscordMarkdown, '<') => {
                rest.find('>').map(|e| i + e + 1).filter(|_| {
                    // A `<` that does not start a tag or link is text (Telegram and Slack
                    // text is escaped, so a bare `<` is rare).
                    rest[1..].chars().next().is_some_and(|n| !n.is_whitespace())
                })
            }
            (Markup::TelegramHtml | Markup::SlackMrkdwn, '&') => rest
                .char_indices()
                .take(12)
                .find(|(_, ch)| *ch == ';' || ch.is_whitespace())
                .filter(|(_, ch)| *ch == ';')
                .map(|(e, _)| i + e + 1),
            (Markup::SlackMrkdwn | Markup::DiscordMarkdown, '`')
                if at_line_start(i) && rest.starts_with("```") =>
            {
                // The whole fence line (```rust) is one unit, reopened as it was written in
                // the next part; a line too long for that (it would not fit a part, or its
                // reopening would crowd one out) keeps only its ``` as the fence.
                let line_end = rest.find('\n').map_or(text.len(), |e| i + e);
                let line_chars = text[i..line_end].chars().count();
                let (end, chars) = if line_chars <= longest / 4 {
                    (line_end, line_chars)
                } else {
                    (i + 3, 3)
                };
                units.push(Unit {
                    start: i,
                    end,
                    chars,
                    kind: UnitKind::Fence,
                });
                i = end;
                continue;
            }
            _ => None,
        };
        if let Some(end) = atom_end {
            let raw = &text[i..end];
            let chars = raw.chars().count();
            if chars <= longest {
                let kind = if markup == Markup::TelegramHtml && c == '<' {
                    tag_kind(raw)
                } else {
                    UnitKind::Text
                };
                units.push(Unit {
                    start: i,
                    end,
                    chars,
                    kind,
                });
                i = end;
                continue;
            }
        }
        let end = i + c.len_utf8();
        let kind = match c {
            '\n' => UnitKind::Newline,
            ' ' | '\t' => UnitKind::Space,
            _ => UnitKind::Text,
        };
        units.push(Unit {
            start: i,
            end,
            chars: 1,
            kind,
        });
        i = end;
    }
    units
}

/// `<b>` → Open("b"), `</b>` → Close("b"), anything else (`<br/>`) → Text.
fn tag_kind(raw: &str) -> UnitKind {
    let inner = raw.trim_start_matches('<').trim_end_matches('>');
    if inner.ends_with('/') {
        return UnitKind::Text;
    }
    if let Some(name) = inner.strip_prefix('/') {
        return UnitKind::Close(name.trim().to_ascii_lowercase());
    }
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if name.is_empty() {
        UnitKind::Text
    } else {
        UnitKind::Open(name.to_ascii_lowercase())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fits(parts: &[String], max: usize) {
        for p in parts {
            assert!(
                p.chars().count() <= max,
                "{} > {max}: {p:?}",
                p.chars().count()
            );
        }
    }

    #[test]
    fn short_text_is_one_part_and_blank_text_none() {
        assert_eq!(split("short", 3000, Markup::Plain), vec!["short"]);
        assert!(split("  \n ", 3000, Markup::Plain).is_empty());
    }

    #[test]
    fn cuts_at_paragraphs_first() {
        let text = format!(
            "{}\n\n{}\n\n{}",
            "a".repeat(900),
            "b".repeat(900),
            "c".repeat(900)
        );
        let parts = split(&text, 2000, Markup::Plain);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            format!("{}\n\n{}", "a".repeat(900), "b".repeat(900))
        );
        assert_eq!(parts[1], "c".repeat(900));
        // One huge line is cut anywhere, on character boundaries.
        let huge = "é".repeat(5000);
        let parts = split(&huge, 2000, Markup::Plain);
        fits(&parts, 2000);
        assert_eq!(parts.concat(), huge);
    }

    #[test]
    fn telegram_tags_and_entities_survive_a_cut() {
        let body = "word &amp; more ".repeat(200);
        let text = format!("<b>{body}</b> and <a href=\"https://x.test/a?b=1&amp;c=2\">link</a>");
        let parts = split(&text, 500, Markup::TelegramHtml);
        assert!(parts.len() > 5);
        fits(&parts, 500);
        for p in &parts {
            // Balanced tags and whole entities in every part.
            assert_eq!(p.matches("<b>").count(), p.matches("</b>").count(), "{p}");
            assert_eq!(p.matches("<a ").count(), p.matches("</a>").count(), "{p}");
            for (i, _) in p.match_indices('&') {
                assert!(p[i..].starts_with("&amp;"), "{p}");
            }
        }
        assert!(parts[1].starts_with("<b>"));
    }

    #[test]
    fn slack_links_are_never_cut_and_fences_reopen() {
        let link = "<https://example.com/a/very/long/path|the title> ";
        let text = link.repeat(80);
        let parts = split(&text, 300, Markup::SlackMrkdwn);
        fits(&parts, 300);
        for p in &parts {
            assert_eq!(p.matches('<').count(), p.matches('>').count(), "{p}");
        }
        let code = format!("```\n{}```", "let x = 1;\n".repeat(100));
        let parts = split(&code, 400, Markup::DiscordMarkdown);
        fits(&parts, 400);
        for p in &parts {
            assert_eq!(p.matches("```").count() % 2, 0, "{p}");
        }
    }

    /// Found by the fuzz target `split` (`fuzz/`): a ``` line longer than the limit was one
    /// unit that no cut could enter, so its part went over Discord's limit.
    #[test]
    fn a_fence_line_longer_than_the_limit_is_still_cut() {
        let text = format!("```{}\ncode\n```\n{}", "x".repeat(3000), "y ".repeat(500));
        for markup in [Markup::DiscordMarkdown, Markup::SlackMrkdwn] {
            let parts = split(&text, 2000, markup);
            fits(&parts, 2000);
            let squeezed = |s: &str| s.replace(['`', '\n', ' '], "");
            assert_eq!(squeezed(&parts.concat()), squeezed(&text));
        }
    }

    #[test]
    fn hostile_text_never_panics() {
        let samples = [
            "<".repeat(5000),
            "&".repeat(5000),
            "<b>".repeat(3000),
            "</b>".repeat(3000),
            "```\n".repeat(3000),
            format!("İ@conv_botéΩ {}", "<a href=\"x\">".repeat(400)),
        ];
        for s in samples {
            for markup in [
                Markup::Plain,
                Markup::SlackMrkdwn,
                Markup::TelegramHtml,
                Markup::DiscordMarkdown,
            ] {
                let parts = split(&s, 1000, markup);
                assert!(!parts.is_empty());
            }
        }
    }
}
