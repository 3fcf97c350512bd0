//! Property test of the reply path's rendering and splitting: for random Markdown answers
//! (a small deterministic PRNG, so a failure names a case that reproduces), each platform's
//! rendering split at its limit gives parts that fit, keep their markup whole (Telegram HTML
//! tags balanced and properly nested in every part, entities intact; Slack links and mentions
//! never cut across parts) and together keep all the text, modulo white space at the cuts.
//! The fuzz target `render_split` (`fuzz/`) checks the same rules on mutated inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use conveyor::channels::chat::{Markup, split};
use conveyor::channels::{discord, slack, telegram};
use conveyor::model::{Channel, Citation, ConversationKey, Outbound};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "refund",
    "policy",
    "the",
    "a",
    "İstanbul",
    "Ωhm",
    "café",
    "e\u{301}te\u{301}",
    "שלום",
    "مرحبا",
    "\u{202E}rtl",
    "👨‍👩‍👧‍👦",
    "👍🏽",
    "🇧🇷",
    "𝕏",
    "&",
    "<",
    ">",
    "\"",
    "a<b",
    "x&y",
    "&amp;",
    "<b>",
    "</a>",
    "<@U123>",
    "@conv_bot",
    "[1]",
    "[2]",
    "**",
    "`",
    "#",
    "(",
    ")",
];

/// An inline run: words, bold, code, links, citation markers.
fn inline(rng: &mut Rng, max_url: usize) -> String {
    let mut out = String::new();
    for _ in 0..1 + rng.below(12) {
        if !out.is_empty() {
            out.push(' ');
        }
        match rng.below(10) {
            0 => out.push_str(&format!("**{} {}**", rng.pick(WORDS), rng.pick(WORDS))),
            1 => out.push_str(&format!("`{}`", rng.pick(WORDS))),
            2 => {
                let path: String = (0..rng.below(max_url))
                    .map(|_| rng.pick(&["a", "/", "é", "&", "?x=1", "<", "\"", "%20"]))
                    .collect();
                out.push_str(&format!(
                    "[{} {}](https://docs.test/{path})",
                    rng.pick(WORDS),
                    rng.pick(WORDS)
                ));
            }
            3 => out.push_str(&format!("[{}]", 1 + rng.below(9))),
            _ => out.push_str(rng.pick(WORDS)),
        }
    }
    out
}

/// A random Markdown answer of up to a few platform messages.
fn answer(rng: &mut Rng, max_url: usize) -> String {
    let mut blocks = Vec::new();
    for _ in 0..1 + rng.below(40) {
        let block = match rng.below(8) {
            0 => format!("{} {}", "#".repeat(1 + rng.below(3)), inline(rng, max_url)),
            1 => (0..1 + rng.below(6))
                .map(|_| format!("- {}", inline(rng, max_url)))
                .collect::<Vec<_>>()
                .join("\n"),
            2 => format!(
                "```{}\n{}\n```",
                rng.pick(&["", "rust", "sql"]),
                (0..1 + rng.below(30))
                    .map(|_| inline(rng, max_url))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            // One long word: cut between characters when nothing better is near.
            3 => rng.pick(WORDS).repeat(1 + rng.below(600)),
            _ => (0..1 + rng.below(20))
                .map(|_| inline(rng, max_url))
                .collect::<Vec<_>>()
                .join(" "),
        };
        blocks.push(block);
    }
    let mut text = String::new();
    for block in blocks {
        if !text.is_empty() {
            text.push_str(rng.pick(&["\n\n", "\n", "\n\n\n", " "]));
        }
        text.push_str(&block);
    }
    text
}

fn outbound(rng: &mut Rng, text: String) -> Outbound {
    let citations = (1..=rng.below(4))
        .map(|n| Citation {
            n,
            title: inline(rng, 8),
            source: rng
                .pick(&[
                    "docs/refunds.md",
                    "https://lumen.test/a?b=1&c=<2>",
                    "https://é.test/Ω",
                ])
                .to_string(),
            doc_id: "d".into(),
            chunk_id: "c".into(),
            snippet: String::new(),
        })
        .collect();
    Outbound {
        conversation: ConversationKey::new(Channel::API, "props"),
        reply_to: "m1".into(),
        message_id: "m2".into(),
        text,
        citations,
        planner: "offline".into(),
    }
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Slack and Discord: whether the parts hold the input's text in order. A cut inside a code
/// block closes it (a ``` line at the end of the part) and reopens it with its fence line
/// (```rust) at the start of the next, so backticks are ignored and a part's first line may
/// repeat the open fence's info string; which it does, only later parts may tell, so every
/// reading is followed.
fn fenced_text_kept(input: &str, parts: &[String]) -> bool {
    let plain = |s: &str| -> String { squeeze(s).replace('`', "") };
    let whole = plain(input);
    let mut ats: BTreeSet<usize> = [0].into_iter().collect();
    for (i, part) in parts.iter().enumerate() {
        let text = plain(part);
        let reopened = i > 0 && part.starts_with("```") && parts[i - 1].ends_with("```");
        let info = plain(part.split('\n').next().unwrap_or(""));
        let mut next = BTreeSet::new();
        for &at in &ats {
            let rest = &whole[at..];
            if rest.starts_with(&text) {
                next.insert(at + text.len());
            }
            if reopened
                && let Some(body) = text.strip_prefix(&info)
                && rest.starts_with(body)
            {
                next.insert(at + body.len());
            }
        }
        ats = next.into_iter().take(64).collect();
    }
    ats.contains(&whole.len())
}

/// The entity `rest` starts with: its character and length.
fn entity_at(rest: &str) -> Option<(char, usize)> {
    let end = rest.char_indices().take(12).find(|(_, c)| *c == ';')?.0;
    let c = match &rest[1..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        _ => return None,
    };
    Some((c, end + 1))
}

/// What a reader sees of Telegram HTML: tags removed, entities decoded.
fn html_visible(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            rest = &rest[end + 1..];
            continue;
        }
        if c == '&'
            && let Some((decoded, len)) = entity_at(rest)
        {
            out.push(decoded);
            rest = &rest[len..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Panics unless `part` is Telegram HTML that Telegram parses: tags balanced and nested,
/// none cut, every `&` an entity.
fn assert_telegram_html(part: &str, case: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = part;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .unwrap_or_else(|| panic!("{case}: a tag cut in two in {part:?}"));
                let inner = &rest[1..end];
                assert!(!inner.contains('<'), "{case}: `<` inside a tag in {part:?}");
                if let Some(name) = inner.strip_prefix('/') {
                    let top = open.pop();
                    assert_eq!(
                        top.as_deref(),
                        Some(name),
                        "{case}: </{name}> closes {top:?} in {part:?}"
                    );
                } else {
                    let name: String = inner
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    assert!(
                        ["b", "code", "a"].contains(&name.as_str()),
                        "{case}: tag {inner:?}"
                    );
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '>' => panic!("{case}: a `>` outside a tag in {part:?}"),
            '&' => {
                let (_, len) = entity_at(rest)
                    .unwrap_or_else(|| panic!("{case}: a `&` that starts no entity in {part:?}"));
                rest = &rest[len..];
            }
            _ => rest = &rest[c.len_utf8()..],
        }
    }
    assert!(
        open.is_empty(),
        "{case}: tags left open {open:?} in {part:?}"
    );
}

/// Panics when a Slack link or mention (`<…>`) or an escape is cut in `part`.
fn assert_slack_mrkdwn(part: &str, case: &str) {
    let mut rest = part;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .unwrap_or_else(|| panic!("{case}: a link cut in two in {part:?}"));
                assert!(
                    !rest[1..end].contains('<'),
                    "{case}: `<` inside a link in {part:?}"
                );
                rest = &rest[end + 1..];
            }
            '>' => panic!("{case}: a `>` outside a link in {part:?}"),
            '&' => {
                let (_, len) = entity_at(rest)
                    .unwrap_or_else(|| panic!("{case}: a `&` that starts no escape in {part:?}"));
                rest = &rest[len..];
            }
            _ => rest = &rest[c.len_utf8()..],
        }
    }
}

fn check(case: &str, rendered: &str, max: usize, markup: Markup) {
    let parts = split(rendered, max, markup);
    assert!(
        !parts.is_empty() || rendered.trim().is_empty(),
        "{case}: no parts"
    );
    for part in &parts {
        let n = part.chars().count();
        assert!(n <= max, "{case}: a part of {n} > {max} characters");
        match markup {
            Markup::TelegramHtml => assert_telegram_html(part, case),
            Markup::SlackMrkdwn => assert_slack_mrkdwn(part, case),
            _ => {}
        }
    }
    let kept = match markup {
        Markup::TelegramHtml => {
            squeeze(&html_visible(rendered))
                == squeeze(&parts.iter().map(|p| html_visible(p)).collect::<String>())
        }
        _ => fenced_text_kept(rendered, &parts),
    };
    assert!(kept, "{case}: text lost or changed by the cut");
}

fn run(cases: u64, max_url: usize, limits: impl Fn(&mut Rng, usize) -> usize) {
    for case in 0..cases {
        let mut rng = Rng(case.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ max_url as u64);
        let text = answer(&mut rng, max_url);
        let out = outbound(&mut rng, text);
        for (name, rendered, markup, real) in [
            (
                "slack",
                slack::render(&out),
                Markup::SlackMrkdwn,
                slack::MAX_MESSAGE_CHARS,
            ),
            (
                "telegram",
                telegram::render(&out),
                Markup::TelegramHtml,
                telegram::MAX_MESSAGE_CHARS,
            ),
            (
                "discord",
                discord::render(&out),
                Markup::DiscordMarkdown,
                discord::MAX_MESSAGE_CHARS,
            ),
        ] {
            let max = limits(&mut rng, real);
            check(
                &format!("case {case} ({name}, max {max}, max_url {max_url})"),
                &rendered,
                max,
                markup,
            );
        }
    }
}

#[test]
fn rendered_answers_split_at_the_platform_limits_keep_markup_and_text() {
    run(150, 12, |_, real| real);
    // Long links: as long as a chat platform takes, and far longer.
    run(30, 3_000, |_, real| real);
}

#[test]
fn small_limits_cut_everywhere_and_still_keep_markup_and_text() {
    run(150, 6, |rng, _| 300 + rng.below(900));
}
