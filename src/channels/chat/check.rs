//! Invariants of split replies: a part a platform would refuse or render wrongly. Checked by
//! the property test `tests/it/split_props.rs` and by the fuzz targets `render_split` and
//! `split` (`fuzz/`), which is why this test-only code lives in the crate: both use this one
//! copy.

use super::Markup;

/// Why a set of parts breaks the rules, or `None`.
pub fn parts_problem(input: &str, parts: &[String], max: usize, markup: Markup) -> Option<String> {
    for (i, part) in parts.iter().enumerate() {
        let n = part.chars().count();
        if n > max {
            return Some(format!("part {i} has {n} characters, over the limit {max}"));
        }
        let broken = match markup {
            Markup::TelegramHtml => telegram_html_problem(part),
            Markup::SlackMrkdwn => slack_problem(part),
            Markup::DiscordMarkdown | Markup::Plain => None,
        };
        if let Some(why) = broken {
            return Some(format!("part {i}: {why}: {part:?}"));
        }
    }
    let (whole, pieces) = match markup {
        Markup::TelegramHtml => (
            squeeze(&html_visible(input)),
            squeeze(&parts.iter().map(|p| html_visible(p)).collect::<String>()),
        ),
        Markup::SlackMrkdwn | Markup::DiscordMarkdown => {
            return fenced_text_problem(input, parts);
        }
        Markup::Plain => (squeeze(input), squeeze(&parts.concat())),
    };
    (whole != pieces).then(|| {
        let at = whole
            .chars()
            .zip(pieces.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let around = |s: &str| -> String { s.chars().skip(at.saturating_sub(30)).take(60).collect() };
        format!(
            "the parts' text differs from the input's at character {at} (of {} / {}): input {:?}, parts {:?}",
            whole.chars().count(),
            pieces.chars().count(),
            around(&whole),
            around(&pieces)
        )
    })
}

/// The text without white space (cuts may drop or add white space, nothing else).
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Slack and Discord: the parts must hold the input's text in order. A cut inside a code
/// block closes it (a ``` line at the end of the part) and reopens it with its fence line
/// (```rust) at the start of the next, so backticks are ignored, and a next part's first line
/// may repeat the open fence line's info string.
fn fenced_text_problem(input: &str, parts: &[String]) -> Option<String> {
    let plain = |s: &str| -> String { squeeze(s).replace('`', "") };
    let whole = plain(input);
    // Where the input's text may be matched up to: a part that starts with a fence line right
    // after a part that ended with one either reopened it (its info string repeats) or
    // opened a new block (its text is new), and only later parts may tell which.
    let mut ats: std::collections::BTreeSet<usize> = [0].into_iter().collect();
    for (i, part) in parts.iter().enumerate() {
        let text = plain(part);
        let reopened = i > 0 && part.starts_with("```") && parts[i - 1].ends_with("```");
        let info = plain(part.split('\n').next().unwrap_or(""));
        let mut next = std::collections::BTreeSet::new();
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
        if next.is_empty() {
            let at = ats.iter().next().copied().unwrap_or(0);
            let shown: String = whole[at..].chars().take(60).collect();
            let got: String = text.chars().take(60).collect();
            return Some(format!(
                "part {i} does not continue the input's text: input {shown:?}, part {got:?}"
            ));
        }
        ats = next.into_iter().take(64).collect();
    }
    (!ats.contains(&whole.len())).then(|| {
        let at = ats.iter().next_back().copied().unwrap_or(0);
        let shown: String = whole[at..].chars().take(60).collect();
        format!("the parts lost the input's end: {shown:?}")
    })
}

/// What a reader sees of Telegram HTML: tags removed, entities decoded.
pub fn html_visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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

/// The entity `rest` starts with (`&amp;`, `&#233;`, `&#xE9;`): its character and length.
fn entity_at(rest: &str) -> Option<(char, usize)> {
    let end = rest.char_indices().take(12).find(|(_, c)| *c == ';')?.0;
    let name = &rest[1..end];
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, end + 1))
}

/// Telegram HTML that Telegram would refuse: an unbalanced or crossed tag, a cut tag, a `&`
/// that starts no entity.
pub fn telegram_html_problem(part: &str) -> Option<String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = part;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let Some(end) = rest.find('>') else {
                    return Some("a `<` with no `>` (a tag cut in two)".into());
                };
                let inner = &rest[1..end];
                if inner.contains('<') {
                    return Some("a `<` inside a tag".into());
                }
                if let Some(name) = inner.strip_prefix('/') {
                    match open.pop() {
                        Some(top) if top == name.trim() => {}
                        other => {
                            return Some(format!("`</{name}>` closes {other:?}"));
                        }
                    }
                } else {
                    let name: String = inner
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '>' => return Some("a `>` outside a tag".into()),
            '&' => {
                let Some((_, len)) = entity_at(rest) else {
                    return Some("a `&` that starts no entity".into());
                };
                rest = &rest[len..];
            }
            _ => rest = &rest[c.len_utf8()..],
        }
    }
    (!open.is_empty()).then(|| format!("tags left open: {open:?}"))
}

/// Slack mrkdwn with a link or mention cut in two, or an escape cut.
pub fn slack_problem(part: &str) -> Option<String> {
    let mut rest = part;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let Some(end) = rest.find('>') else {
                    return Some("a `<` with no `>` (a link cut in two)".into());
                };
                if rest[1..end].contains('<') {
                    return Some("a `<` inside a link".into());
                }
                rest = &rest[end + 1..];
            }
            '>' => return Some("a `>` outside a link".into()),
            '&' => {
                let Some((_, len)) = entity_at(rest) else {
                    return Some("a `&` that starts no escape".into());
                };
                rest = &rest[len..];
            }
            _ => rest = &rest[c.len_utf8()..],
        }
    }
    None
}

/// splitmix64: a small deterministic PRNG, the same sequence for the same state everywhere,
/// for the property test and the fuzz driver (no dependency, and a failing case names a seed
/// that reproduces it).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True once in `one_in` times, about.
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
