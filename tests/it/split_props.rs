//! Property test of the reply path's rendering and splitting: for random Markdown answers
//! (a small deterministic PRNG, so a failure names a case that reproduces), each platform's
//! rendering split at its limit gives parts that fit, keep their markup whole (Telegram HTML
//! tags balanced and properly nested in every part, entities intact; Slack links and mentions
//! never cut across parts) and together keep all the text, modulo white space at the cuts.
//! The fuzz target `render_split` (`fuzz/`) checks the same rules on mutated inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conveyor::channels::chat::check::{self, SplitMix64 as Rng};
use conveyor::channels::chat::{Markup, split};
use conveyor::channels::{discord, slack, telegram};
use conveyor::model::{Channel, Citation, ConversationKey, Outbound};

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
        data: None,
        choices: Vec::new(),
        actions: Vec::new(),
    }
}

/// The rules every part must keep ([`check::parts_problem`], shared with the fuzz targets),
/// and Telegram HTML made only of the tags conveyor's rendering writes.
fn check(case: &str, rendered: &str, max: usize, markup: Markup) {
    let parts = split(rendered, max, markup);
    assert!(
        !parts.is_empty() || rendered.trim().is_empty(),
        "{case}: no parts"
    );
    if let Some(why) = check::parts_problem(rendered, &parts, max, markup) {
        panic!("{case}: {why}");
    }
    if markup == Markup::TelegramHtml {
        for part in &parts {
            for tag in part.split('<').skip(1) {
                let name: String = tag
                    .trim_start_matches('/')
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                assert!(
                    ["b", "code", "a", "pre"].contains(&name.as_str()),
                    "{case}: tag <{name}> in {part:?}"
                );
            }
        }
    }
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
