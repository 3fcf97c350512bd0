//! The web chat page (plain HTML and JavaScript in `web.html`, compiled into the binary; its
//! Workflows tab lists workflows, runs and the `web:NAME` feeds through the workflows API) and
//! the page that shows a cited passage.

use crate::knowledge::ChunkPayload;

/// The chat page served at `/` (with its Workflows tab at `/#workflows`).
pub const PAGE: &str = include_str!("web.html");

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page showing one cited passage and where it came from.
pub fn source_page(p: &ChunkPayload) -> String {
    let heading = if p.heading.is_empty() {
        String::new()
    } else {
        format!("<p class=\"heading\">{}</p>", escape(&p.heading))
    };
    let source = if p.source.starts_with("http://") || p.source.starts_with("https://") {
        format!("<a href=\"{0}\">{0}</a>", escape(&p.source))
    } else {
        format!("<code>{}</code>", escape(&p.source))
    };
    let updated = chrono::DateTime::from_timestamp_millis(p.updated_at)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · conveyor</title><style>\
body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.55;color:#1f2328}}\
@media (prefers-color-scheme: dark){{body{{background:#0d1117;color:#e6edf3}}a{{color:#58a6ff}}}}\
.heading{{color:#6e7781;margin-top:-.5rem}} blockquote{{white-space:pre-wrap;border-left:4px solid #8c959f;margin:1rem 0;padding:.25rem 1rem}}\
.meta{{font-size:.9rem;color:#6e7781}}</style></head><body>\
<h1>{title}</h1>{heading}<blockquote>{text}</blockquote>\
<p class=\"meta\">Source: {source}<br>Passage {pos} of document <code>{doc}</code>{updated_sep}{updated}</p>\
<p><a href=\"/\">Back to chat</a></p></body></html>",
        title = escape(&p.title),
        text = escape(&p.text),
        pos = p.position + 1,
        doc = escape(&p.doc_id),
        updated_sep = if updated.is_empty() {
            ""
        } else {
            " · updated "
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_page_escapes_everything() {
        let p = ChunkPayload {
            doc_id: "d".into(),
            title: "<script>x</script>".into(),
            source: "/tmp/a.md".into(),
            file: "/tmp/a.md".into(),
            heading: "A & B".into(),
            text: "\"quoted\" <b>".into(),
            position: 0,
            updated_at: 0,
            lineage: None,
        };
        let html = source_page(&p);
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;x"));
        assert!(html.contains("A &amp; B"));
    }

    #[test]
    fn the_workflows_view_builds_its_markup_without_inner_html_or_outside_resources() {
        let script = PAGE
            .split_once("// ---- the Workflows view")
            .map_or("", |(_, rest)| rest);
        assert!(
            script.contains("/v1/workflows"),
            "the Workflows view's script"
        );
        assert!(
            !script.contains("innerHTML"),
            "API text must go through textContent"
        );
        assert!(!script.contains("outerHTML") && !script.contains("insertAdjacentHTML"));
        assert!(PAGE.contains("href=\"#workflows\""));
        for outside in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
    }
}
