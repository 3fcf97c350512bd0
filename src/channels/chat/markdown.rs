//! The planner's Markdown, in a chat platform's markup. Answers are written in a small subset
//! of Markdown (`**bold**`, `` `code` ``, `[text](url)`, `#` headings, `[n]` citation markers);
//! each platform says how that subset looks in its markup through a [`Style`] (Slack mrkdwn,
//! Telegram HTML, Discord's own Markdown), and the walk over the text is written once here.
//!
//! The walk moves over the original text by whole characters and never slices it at an offset
//! found in a transformed copy, so any input (hostile or not) converts without a panic.

use crate::model::Outbound;

/// How one platform's markup writes the Markdown subset. Inputs named `escaped` were already
/// escaped with [`Style::escape`].
pub trait Style {
    /// Escapes plain text.
    fn escape(&self, text: &str) -> String;
    /// Bold text.
    fn bold(&self, escaped: &str) -> String;
    /// Inline code, or `None` when the platform writes code as Markdown does (the backticks
    /// stay, escaped as text).
    fn code(&self, _escaped: &str) -> Option<String> {
        None
    }
    /// A fenced code block's lines (already escaped, joined by line breaks), or `None` when
    /// the platform writes code blocks as Markdown does (the fences stay).
    fn code_block(&self, _escaped: &str) -> Option<String> {
        None
    }
    /// A link, or `None` when this one cannot be a link (it stays text).
    fn link(&self, text: &str, url: &str) -> Option<String>;
    /// A heading line (`## Title`), from its raw title.
    fn heading(&self, title: &str) -> String {
        self.bold(&self.escape(title))
    }
    /// Whether the platform renders Markdown itself (the text then passes unchanged).
    fn native(&self) -> bool {
        false
    }
}

/// Longest link written as the platform's link markup, in characters; a longer one stays
/// text. Splitting never cuts a link, so a link must fit well inside a part: at most half of
/// the smallest limit (Discord's 2000), and at most a quarter of Telegram's 4096, since an
/// open `<a href>` is written again at the start of the next part when a cut falls inside it.
pub const MAX_LINK_CHARS: usize = 500;

/// The link markup for `text` and `url`, when `url` is a web address, the style writes a
/// link and it is not too long. Anything else in `[…](…)` is text: a Slack `< [x](…|…>`
/// is no link to Slack, and the splitter, which keeps only `<` + non-space together, cut it.
fn short_link(style: &dyn Style, text: &str, url: &str) -> Option<String> {
    if !is_web_url(url) {
        return None;
    }
    style
        .link(text, url)
        .filter(|link| link.chars().count() <= MAX_LINK_CHARS)
}

/// Whether `url` is an absolute web address.
pub fn is_web_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `markdown` in the platform's markup, line by line (no markup spans a line break, so the
/// result can be split at line breaks).
pub fn convert(markdown: &str, style: &dyn Style) -> String {
    if style.native() {
        return markdown.to_string();
    }
    let mut out: Vec<String> = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        // A fenced block (an answer's table): its lines are code, escaped but not formatted,
        // up to the closing fence or the end of the text.
        if trimmed.starts_with("```") {
            let mut body: Vec<String> = Vec::new();
            let mut closing = None;
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    closing = Some(l);
                    break;
                }
                body.push(style.escape(l));
            }
            let escaped = body.join("\n");
            match style.code_block(&escaped) {
                Some(block) => out.push(block),
                None => {
                    out.push(style.escape(line));
                    out.extend(body);
                    out.push(style.escape(closing.unwrap_or("```")));
                }
            }
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        out.push(match trimmed.get(hashes..) {
            Some(title) if (1..=6).contains(&hashes) && title.starts_with(' ') => {
                style.heading(title.trim())
            }
            _ => inline(line, style),
        });
    }
    out.join("\n")
}

/// One line's inline Markdown in the platform's markup.
pub fn inline(line: &str, style: &dyn Style) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
            && end > 0
        {
            out.push_str(&style.bold(&style.escape(&after[..end])));
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
            && end > 0
            && let Some(code) = style.code(&style.escape(&after[..end]))
        {
            out.push_str(&code);
            rest = &after[end + 1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('[')
            && let Some(close) = after.find(']')
            && let Some(url_part) = after[close + 1..].strip_prefix('(')
            && let Some(paren) = url_part.find(')')
            && let Some(link) = short_link(style, &after[..close], &url_part[..paren])
        {
            out.push_str(&link);
            rest = &url_part[paren + 1..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push_str(&style.escape(c.encode_utf8(&mut [0; 4])));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// An answer in the platform's markup: the text, then its numbered sources (a link where the
/// source is a web address).
pub fn answer(out: &Outbound, style: &dyn Style) -> String {
    let mut text = convert(&out.text, style);
    if !out.citations.is_empty() {
        text.push_str("\n\n");
        text.push_str(&style.bold("Sources"));
        for c in &out.citations {
            let link = is_web_url(&c.source)
                .then(|| short_link(style, &c.title, &c.source))
                .flatten();
            match link {
                Some(link) => text.push_str(&format!("\n[{}] {link}", c.n)),
                None => text.push_str(&format!(
                    "\n[{}] {} ({})",
                    c.n,
                    style.escape(&c.title),
                    style.escape(&c.source)
                )),
            }
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Html;

    impl Style for Html {
        fn escape(&self, text: &str) -> String {
            text.replace('&', "&amp;").replace('<', "&lt;")
        }
        fn bold(&self, escaped: &str) -> String {
            format!("<b>{escaped}</b>")
        }
        fn code(&self, escaped: &str) -> Option<String> {
            Some(format!("<code>{escaped}</code>"))
        }
        fn code_block(&self, escaped: &str) -> Option<String> {
            Some(format!("<pre>{escaped}</pre>"))
        }
        fn link(&self, text: &str, url: &str) -> Option<String> {
            is_web_url(url).then(|| format!("<a href=\"{url}\">{}</a>", self.escape(text)))
        }
    }

    /// A style that keeps Markdown's fences.
    struct Fenced;

    impl Style for Fenced {
        fn escape(&self, text: &str) -> String {
            text.replace('<', "&lt;")
        }
        fn bold(&self, escaped: &str) -> String {
            format!("*{escaped}*")
        }
        fn link(&self, _text: &str, _url: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn fenced_blocks_are_code_escaped_but_not_formatted() {
        let table = "**Revenue**\n```\nPlan  **x** <y>\npro   $1\n```\nafter `c`";
        assert_eq!(
            convert(table, &Html),
            "<b>Revenue</b>\n<pre>Plan  **x** &lt;y>\npro   $1</pre>\nafter <code>c</code>"
        );
        assert_eq!(
            convert(table, &Fenced),
            "*Revenue*\n```\nPlan  **x** &lt;y>\npro   $1\n```\nafter `c`"
        );
        // An unclosed fence runs to the end of the text.
        assert_eq!(convert("```\na <b", &Html), "<pre>a &lt;b</pre>");
        assert_eq!(convert("```\na <b", &Fenced), "```\na &lt;b\n```");
    }

    #[test]
    fn the_subset_converts_and_the_rest_is_escaped() {
        assert_eq!(
            convert("# T <1>\n**b** `c<d` [x](https://a) [y](rel) [1]", &Html),
            "<b>T &lt;1></b>\n<b>b</b> <code>c&lt;d</code> <a href=\"https://a\">x</a> [y](rel) [1]"
        );
        // Unclosed markers are text.
        assert_eq!(convert("a ** b ` c [d](e", &Html), "a ** b ` c [d](e");
        // A `#` run without a space, or longer than six, is not a heading.
        assert_eq!(convert("#tag\n####### x", &Html), "#tag\n####### x");
    }

    /// Found by the fuzz target `render_split` (`fuzz/`): a link longer than half a part
    /// was cut between two parts by the splitter (a Slack `<url|text>` in two, a Telegram
    /// `<a href>` cut or its reopening crowding out the part). Such a link stays text.
    #[test]
    fn links_too_long_to_keep_whole_stay_text() {
        let url = format!("https://x.test/{}", "a".repeat(MAX_LINK_CHARS));
        let line = format!("[doc]({url}) and [ok](https://x.test/b)");
        assert_eq!(
            convert(&line, &Html),
            format!("[doc]({url}) and <a href=\"https://x.test/b\">ok</a>")
        );
    }

    /// Found by the fuzz target `render_split`: `[l [link]( … ](https://…)` made Slack's
    /// style (which links any target) write `< [link]( …|link>`, which the splitter may cut.
    #[test]
    fn only_web_addresses_become_links() {
        struct AnyTarget;
        impl Style for AnyTarget {
            fn escape(&self, text: &str) -> String {
                text.to_string()
            }
            fn bold(&self, escaped: &str) -> String {
                escaped.to_string()
            }
            fn link(&self, text: &str, url: &str) -> Option<String> {
                Some(format!("<{url}|{text}>"))
            }
        }
        assert_eq!(
            convert("[a]( [b](https://x.test) [c](rel)", &AnyTarget),
            "[a]( <https://x.test|b> [c](rel)"
        );
    }

    #[test]
    fn hostile_text_converts_without_panicking() {
        for s in [
            "İ@bot éΩ **é** `Ω` [é](https://é) #",
            "**\u{10FFFF}**[",
            "## \u{200D}",
            "`é",
            "[é](https://x)(",
        ] {
            let _ = convert(s, &Html);
        }
    }
}
