//! Offline understanding: a question in words → a [`MetricQuery`], with no LLM.
//!
//! Deterministic and explainable. Time words are found first ([`super::when`]); the rest of
//! the question is split into words (byte ranges of the original text, compared lowercased
//! and singularised) and matched, longest phrase first, against the model's vocabulary:
//! measure and metric names, labels and synonyms; dimension names and synonyms; dimension
//! values read from the data and their synonyms; segments; entities. Cue words around a
//! match decide its role: "by / per / for each / in each / por" group, "top 5 / bottom 3 /
//! which … most" rank, "how many / number of / quantos" count, "share / percentage / %" ask
//! for shares. A question with no metric is not a BI question (it is answered from the
//! documents); one whose words match two metrics, or that names a value or a dimension the
//! model does not have, gets one question back with the options.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use super::ValueIndex;
use super::compile::{Filter, MetricQuery, Order, Period};
use super::model::{Agg, Model, edit_distance};
use super::when;

/// What the parser made of a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A query to run.
    Query(Box<MetricQuery>),
    /// A question back, with the options (each a question that can be asked as it is).
    Clarify { text: String, options: Vec<String> },
    /// A BI question that cannot be answered, and why.
    Refused(String),
    /// Not a BI question.
    NotBi,
}

/// What a phrase of the question can mean.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Metric(String),
    Dim(String),
    Value(String, String),
    Segment(String),
    Entity(String),
}

/// One word of the question.
#[derive(Debug, Clone)]
struct Tok<'a> {
    /// As written.
    raw: &'a str,
    /// Lowercased and singularised.
    norm: String,
    /// Part of a time expression.
    time: bool,
}

/// A phrase of the question that matched the vocabulary.
#[derive(Debug, Clone)]
struct Match {
    /// First and one-past-last word.
    start: usize,
    end: usize,
    items: Vec<Item>,
}

/// Words that only hold a sentence together.
const STOP: &[&str] = &[
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "at",
    "to",
    "for",
    "from",
    "with",
    "and",
    "or",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "what",
    "which",
    "who",
    "how",
    "me",
    "my",
    "our",
    "we",
    "us",
    "i",
    "you",
    "your",
    "do",
    "did",
    "does",
    "there",
    "that",
    "this",
    "these",
    "those",
    "it",
    "its",
    "by",
    "per",
    "each",
    "every",
    "all",
    "show",
    "list",
    "give",
    "tell",
    "please",
    "can",
    "could",
    "would",
    "get",
    "see",
    "have",
    "has",
    "had",
    "much",
    "many",
    "total",
    "sum",
    "number",
    "count",
    "amount",
    "value",
    "overall",
    "whole",
    "so",
    "far",
    "than",
    "vs",
    "versus",
    "compared",
    "against",
    "did",
    "come",
    "came",
    "make",
    "made",
    "generate",
    "generated",
    "bring",
    "brought",
    "about",
    "as",
    "be",
    "top",
    "bottom",
    "best",
    "worst",
    "most",
    "least",
    "highest",
    "lowest",
    "largest",
    "smallest",
    "biggest",
    "fewest",
    "share",
    "percentage",
    "percent",
    "proportion",
    "fraction",
    "average",
    "avg",
    "mean",
    "across",
    "broken",
    "down",
    "split",
    "grouped",
    "breakdown",
    "between",
    "where",
    "when",
    "into",
    "o",
    "os",
    "as",
    "de",
    "do",
    "da",
    "dos",
    "das",
    "em",
    "no",
    "na",
    "nos",
    "nas",
    "qual",
    "quais",
    "foi",
    "foram",
    "é",
    "e",
    "um",
    "uma",
    "para",
    "com",
    "por",
    "cada",
    "quanto",
    "quantos",
    "quantas",
    "quanta",
    "mostre",
    "mostrar",
    "me",
    "nosso",
    "nossa",
    "total",
    "número",
    "numero",
    "maiores",
    "menores",
    "principais",
    "média",
    "media",
    "participação",
    "percentual",
    "veio",
    "vieram",
    "s",
    "'s",
    "?",
    "get",
    "got",
];

/// Group cues: the phrase after them is grouped by.
const GROUP: &[&str] = &["by", "per", "each", "every", "across", "por", "cada"];
/// Ranking cues: largest first.
const TOP: &[&str] = &[
    "top",
    "best",
    "largest",
    "biggest",
    "highest",
    "most",
    "maiores",
    "principais",
    "greatest",
];
/// Ranking cues: smallest first.
const BOTTOM: &[&str] = &[
    "bottom", "worst", "smallest", "lowest", "least", "fewest", "menores",
];
/// Share cues.
const SHARE: &[&str] = &[
    "share",
    "percentage",
    "percent",
    "%",
    "proportion",
    "fraction",
    "participação",
    "percentual",
];
/// Counting cues ("how many").
const COUNT: &[&str] = &[
    "many", "number", "count", "quantos", "quantas", "número", "numero",
];
/// Other words that make a question a numbers question.
const BI_CUES: &[&str] = &[
    "total",
    "sum",
    "average",
    "avg",
    "mean",
    "show",
    "list",
    "much",
    "quanto",
    "média",
    "media",
    "trend",
    "breakdown",
    "compare",
    "compared",
    "vs",
    "versus",
];

/// English and Portuguese number words (or digits) for "top three", 1 to 1,000.
fn small_number(word: &str) -> Option<usize> {
    let folded = if word == "três" { "tres" } else { word };
    when::count_word(folded)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= 1000)
}

/// Lowercased, with a plural `s`/`ies`/`es` taken off (so "orders" meets "order").
pub fn norm(word: &str) -> String {
    let w = word.to_lowercase();
    let n = w.chars().count();
    if n > 4 && w.ends_with("ies") {
        return format!("{}y", w.trim_end_matches("ies"));
    }
    if n > 4 && (w.ends_with("ches") || w.ends_with("shes") || w.ends_with("xes")) {
        return w.trim_end_matches("es").to_string();
    }
    if n > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        return w.trim_end_matches('s').to_string();
    }
    w
}

/// The words of `text`: runs of letters and digits (with `-`, `_`, `.`, `'` inside a word),
/// and `%`; each with its byte range in `text`.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let inner = matches!(c, '-' | '_' | '.' | '\'' | '/')
            && start.is_some()
            && chars.get(k + 1).is_some_and(|(_, n)| n.is_alphanumeric());
        if c.is_alphanumeric() || inner {
            if start.is_none() {
                start = Some(i);
            }
        } else {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
            if c == '%' {
                out.push((i, i + c.len_utf8()));
            }
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// The vocabulary of a model and its values, built once per [`ValueIndex`] (every question
/// reads it; values are read again when a table of the model changes, into a new index).
#[derive(Debug)]
pub struct Vocabulary(HashMap<String, Vec<Item>>);

/// Longest question the parser reads; a longer message is not a question about the data
/// (its words would only multiply the phrase lookups).
pub const MAX_QUESTION_BYTES: usize = 1_000;

/// The vocabulary: a phrase (normalised words joined by spaces) → what it can mean.
fn vocabulary(model: &Model, values: &ValueIndex) -> HashMap<String, Vec<Item>> {
    let mut v: HashMap<String, Vec<Item>> = HashMap::new();
    let mut add = |phrase: &str, item: Item| {
        let key: Vec<String> = words(phrase)
            .into_iter()
            .filter_map(|(s, e)| phrase.get(s..e))
            .map(norm)
            .collect();
        if key.is_empty() {
            return;
        }
        let entry = v.entry(key.join(" ")).or_default();
        if !entry.contains(&item) {
            entry.push(item);
        }
    };
    for m in &model.measures {
        let item = Item::Metric(m.name.clone());
        add(&m.name.replace('_', " "), item.clone());
        add(&m.label, item.clone());
        for s in &m.synonyms {
            add(s, item.clone());
        }
    }
    for m in &model.metrics {
        let item = Item::Metric(m.name.clone());
        add(&m.name.replace('_', " "), item.clone());
        add(&m.label, item.clone());
        for s in &m.synonyms {
            add(s, item.clone());
        }
    }
    for d in &model.dimensions {
        if d.time {
            continue;
        }
        let item = Item::Dim(d.key());
        add(&d.name.replace('_', " "), item.clone());
        add(&d.label, item.clone());
        for s in &d.synonyms {
            add(s, item.clone());
        }
        for (value, syns) in &d.values {
            for s in syns {
                add(s, Item::Value(d.key(), value.clone()));
            }
        }
        for value in values.values.get(&d.key()).into_iter().flatten() {
            // Numbers and one-letter codes would match too much as free words.
            if value.chars().count() < 2 || value.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            add(value, Item::Value(d.key(), value.clone()));
        }
    }
    for s in &model.segments {
        let item = Item::Segment(format!("{}.{}", s.entity, s.name));
        add(&s.name.replace('_', " "), item.clone());
        for syn in &s.synonyms {
            add(syn, item.clone());
        }
    }
    for e in model.entities.values() {
        let item = Item::Entity(e.name.clone());
        add(&e.name.replace('_', " "), item.clone());
        for s in &e.synonyms {
            add(s, item.clone());
        }
    }
    v
}

/// The longest phrase a question may name.
const MAX_PHRASE: usize = 6;

/// Parses `question` against `model` (`values`: the dimension values in the data), with
/// `today` for relative periods.
pub fn parse(model: &Model, values: &ValueIndex, question: &str, today: NaiveDate) -> Parsed {
    if question.len() > MAX_QUESTION_BYTES {
        return Parsed::NotBi;
    }
    let found = when::find(question, today);
    let in_time = |s: usize, e: usize| found.spans.iter().any(|r| s < r.end && r.start < e);
    let toks: Vec<Tok<'_>> = words(question)
        .into_iter()
        .filter_map(|(s, e)| {
            question.get(s..e).map(|raw| Tok {
                raw,
                norm: norm(raw),
                time: in_time(s, e),
            })
        })
        .collect();
    let vocab = &values
        .vocabulary
        .get_or_init(|| Vocabulary(vocabulary(model, values)))
        .0;

    // Longest match first, left to right, over words outside time expressions.
    let mut matches: Vec<Match> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks.get(i).is_some_and(|t| t.time) {
            i += 1;
            continue;
        }
        let mut hit = None;
        for len in (1..=MAX_PHRASE).rev() {
            let Some(slice) = toks.get(i..i + len) else {
                continue;
            };
            if slice.iter().any(|t| t.time) {
                continue;
            }
            if len == 1
                && slice
                    .first()
                    .is_some_and(|t| STOP.contains(&t.norm.as_str()))
            {
                continue;
            }
            let key: Vec<&str> = slice.iter().map(|t| t.norm.as_str()).collect();
            if let Some(items) = vocab.get(&key.join(" ")) {
                hit = Some(Match {
                    start: i,
                    end: i + len,
                    items: items.clone(),
                });
                break;
            }
        }
        match hit {
            Some(m) => {
                i = m.end;
                matches.push(m);
            }
            None => i += 1,
        }
    }

    let word = |k: usize| toks.get(k).map(|t| t.norm.as_str()).unwrap_or("");
    let words_before = |start: usize, n: usize| -> Vec<&str> {
        (start.saturating_sub(n)..start).map(word).collect()
    };
    let has = |list: &[&str]| toks.iter().any(|t| list.contains(&t.norm.as_str()));
    let counting = has(COUNT)
        || toks.windows(2).any(
            |w| matches!(w, [a, b] if a.norm == "how" && (b.norm == "many" || b.norm == "much")),
        );
    let sharing = has(SHARE);

    let mut q = MetricQuery::default();
    let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ambiguous: Option<(String, Vec<String>)> = None;
    let mut bi_cue =
        found.range.is_some() || found.grain.is_some() || counting || sharing || has(BI_CUES);
    let mut rank: Option<(bool, usize)> = None;

    // "by supplier nation": the second names what the first has; the first only says whose.
    let mut whose: BTreeSet<usize> = BTreeSet::new();
    for (i, pair) in matches.windows(2).enumerate() {
        let [m1, m2] = pair else { continue };
        let by = words_before(m1.start, 1).last().copied().unwrap_or("");
        if m2.start != m1.end || !GROUP.contains(&by) {
            continue;
        }
        let owner = |m: &Match| {
            // A metric other than an entity's own count ("revenue") is not an owner.
            if m.items
                .iter()
                .any(|x| matches!(x, Item::Metric(n) if !model.entities.contains_key(n.as_str())))
            {
                return None;
            }
            m.items.iter().find_map(|x| match x {
                Item::Entity(e) => Some(e.clone()),
                Item::Dim(d) => model.find_dimension(d).ok().map(|d| d.entity.clone()),
                _ => None,
            })
        };
        let (Some(a), Some(b)) = (owner(m1), owner(m2)) else {
            continue;
        };
        if a != b && model.join_path(&a, &b).is_none() {
            let phrase = |m: &Match| {
                (m.start..m.end)
                    .filter_map(|k| toks.get(k).map(|t| t.raw))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            return Parsed::Refused(format!(
                "I cannot split by “{} {}”: the semantic model has no join from {a} to {b}, so it cannot tell a {}'s {}. Ask by {} or by {} alone, or add the join under [entities.{a}] in the model.",
                phrase(m1),
                phrase(m2),
                phrase(m1),
                phrase(m2),
                phrase(m1),
                phrase(m2),
            ));
        }
        whose.insert(i);
    }

    for (mi, m) in matches.iter().enumerate() {
        if whose.contains(&mi) {
            continue;
        }
        let before = words_before(m.start, 3);
        let prev = before.last().copied().unwrap_or("");
        let grouped = (mi > 0 && whose.contains(&(mi - 1)))
            || GROUP.contains(&prev)
            || before.windows(2).any(|w| {
                matches!(
                    w,
                    ["for" | "in", "each"] | ["broken" | "split" | "grouped", "by"]
                )
            });
        // "top 5 customers", "5 largest plans", "which plan … most".
        let ranked = before.iter().enumerate().find_map(|(k, w)| {
            let desc = if TOP.contains(w) {
                true
            } else if BOTTOM.contains(w) {
                false
            } else {
                return None;
            };
            let n = before
                .get(k + 1)
                .and_then(|n| small_number(n))
                .or_else(|| {
                    k.checked_sub(1)
                        .and_then(|p| before.get(p))
                        .and_then(|n| small_number(n))
                })
                .unwrap_or(5);
            Some((desc, n))
        });
        let metrics: Vec<&String> = m
            .items
            .iter()
            .filter_map(|x| match x {
                Item::Metric(n) => Some(n),
                _ => None,
            })
            .collect();
        let entity = m.items.iter().find_map(|x| match x {
            Item::Entity(e) => Some(e.clone()),
            _ => None,
        });
        let dim = m.items.iter().find_map(|x| match x {
            Item::Dim(d) => Some(d.clone()),
            _ => None,
        });
        let value = m.items.iter().find_map(|x| match x {
            Item::Value(d, v) => Some((d.clone(), v.clone())),
            _ => None,
        });
        let segment = m.items.iter().find_map(|x| match x {
            Item::Segment(s) => Some(s.clone()),
            _ => None,
        });
        // An entity's own count ("orders") is a metric when counted, a group when grouped
        // or ranked, and context otherwise ("revenue from enterprise customers").
        let entity_count = entity
            .as_ref()
            .filter(|e| metrics.contains(e) && metrics.len() == 1);
        if (grouped || ranked.is_some())
            && (dim.is_some() || entity.is_some())
            && !(grouped
                && entity_count.is_some()
                && dim.is_none()
                && label_dim(model, entity_count.map_or("", |e| e.as_str())).is_none())
        {
            if let Some(d) = dim {
                if !q.dimensions.contains(&d) {
                    q.dimensions.push(d);
                }
            } else if let Some(e) = &entity {
                match label_dim(model, e) {
                    Some(d) => {
                        if !q.dimensions.contains(&d) {
                            q.dimensions.push(d);
                        }
                    }
                    None => {
                        return Parsed::Refused(format!(
                            "{e} has no label column to list them by; set `label = \"COLUMN\"` under [entities.{e}] in the semantic model"
                        ));
                    }
                }
            }
            if let Some(r) = ranked {
                rank = Some(r);
            }
            bi_cue = true;
            continue;
        }
        if let Some(e) = entity_count {
            let counted = counting || q.metrics.is_empty();
            if counted {
                if !q.metrics.contains(e) {
                    q.metrics.push(e.clone());
                }
                if grouped && let Some(r) = ranked {
                    rank = Some(r);
                }
            }
            continue;
        }
        if !metrics.is_empty() {
            if metrics.len() > 1 {
                let phrase: Vec<&str> = (m.start..m.end)
                    .filter_map(|k| toks.get(k).map(|t| t.raw))
                    .collect();
                ambiguous.get_or_insert((
                    phrase.join(" "),
                    metrics.iter().map(|s| (*s).clone()).collect(),
                ));
                continue;
            }
            if let Some(name) = metrics.first() {
                if !q.metrics.contains(name) {
                    q.metrics.push((*name).clone());
                }
                if prev == "by" && (rank.is_some() || !q.dimensions.is_empty()) {
                    q.order = Some(Order {
                        by: (*name).clone(),
                        desc: rank.is_none_or(|(d, _)| d),
                    });
                }
            }
            continue;
        }
        if let Some(d) = &dim
            && (prev == "which" || prev == "what" || prev == "qual")
        {
            if !q.dimensions.contains(d) {
                q.dimensions.push(d.clone());
            }
            rank = Some((!has(BOTTOM), 1));
            bi_cue = true;
            continue;
        }
        if let Some((d, v)) = value {
            let list = filters.entry(d).or_default();
            if !list.contains(&v) {
                list.push(v);
            }
            bi_cue = true;
            continue;
        }
        if let Some(s) = segment {
            if !q.segments.contains(&s) {
                q.segments.push(s);
            }
            continue;
        }
    }

    if q.metrics.is_empty() {
        if let Some((phrase, options)) = ambiguous {
            return clarify_metric(model, question, &phrase, &options);
        }
        return Parsed::NotBi;
    }
    if let Some((phrase, options)) = ambiguous {
        return clarify_metric(model, question, &phrase, &options);
    }

    // Words the model does not know.
    let known = |k: usize| matches.iter().any(|m| k >= m.start && k < m.end);
    let mut unknown: Vec<usize> = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        if t.time || known(k) || STOP.contains(&t.norm.as_str()) || small_number(&t.norm).is_some()
        {
            continue;
        }
        if GROUP.contains(&t.norm.as_str())
            || TOP.contains(&t.norm.as_str())
            || BOTTOM.contains(&t.norm.as_str())
        {
            continue;
        }
        unknown.push(k);
    }
    // "by color": a grouping the model does not have.
    for &k in &unknown {
        let prev = k.checked_sub(1).map(word).unwrap_or("");
        if GROUP.contains(&prev) {
            let raw = toks.get(k).map_or("", |t| t.raw);
            let dims: Vec<String> = model
                .dimensions
                .iter()
                .filter(|d| !d.time)
                .map(|d| d.name.clone())
                .collect();
            let near = super::model::nearest(raw, dims.iter());
            let mut options: Vec<String> = Vec::new();
            if let Some(n) = near {
                options.push(question.replacen(raw, n, 1));
            }
            return Parsed::Clarify {
                text: format!(
                    "I cannot split by “{raw}”: the model has no such dimension.{} Dimensions: {}.",
                    near.map(|n| format!(" Did you mean {n}?"))
                        .unwrap_or_default(),
                    dims.join(", ")
                ),
                options,
            };
        }
        // "in Narnia": a value the data does not have; "enterprize": a misspelled one.
        let raw = toks.get(k).map_or("", |t| t.raw);
        let named = matches!(prev, "in" | "from" | "for" | "em" | "de" | "do" | "da")
            && raw.chars().next().is_some_and(char::is_uppercase)
            && k > 1;
        let lower = raw.to_lowercase();
        let len = lower.chars().count();
        if !named && (unknown.len() > 3 || len < 5) {
            // Too many unknown words to be a question about the data (see below), or too
            // short to tell a typo from another word.
            continue;
        }
        let near = near_values(model, values, &lower, |dist, v| {
            if named {
                dist <= (v.chars().count() / 2).max(1)
            } else {
                // Any other unknown word only when it is nearly a value: a typo, not a word
                // the model simply does not need ("show", "please").
                dist <= if len >= 8 { 2 } else { 1 }
            }
        });
        if !named && near.is_empty() {
            continue;
        }
        let options: Vec<String> = near
            .iter()
            .take(3)
            .map(|v| question.replacen(raw, v, 1))
            .collect();
        return Parsed::Clarify {
            text: if near.is_empty() {
                format!(
                    "I found no “{raw}” in the data, so I cannot filter by it. Check the spelling, or ask without it."
                )
            } else {
                format!(
                    "I found no “{raw}” in the data. Did you mean {}?",
                    near.iter()
                        .take(3)
                        .map(|v| format!("“{v}”"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            },
            options,
        };
    }
    if !bi_cue && !unknown.is_empty() {
        return Parsed::NotBi;
    }
    if unknown.len() > 3 {
        return Parsed::NotBi;
    }

    for (d, vs) in filters {
        let several = vs.len() > 1;
        let f = Filter {
            dimension: d.clone(),
            values: vs,
        };
        if sharing {
            q.focus.push(f);
        } else {
            if several && !q.dimensions.contains(&d) {
                q.dimensions.push(d);
            }
            q.filters.push(f);
        }
    }
    q.share = sharing
        && !q.metrics.iter().any(|m| {
            matches!(
                model.metric(m).map(|x| &x.kind),
                Some(super::model::MetricKind::Share { .. })
            )
        });
    if q.share && q.dimensions.is_empty() && q.focus.is_empty() {
        return Parsed::Refused(format!(
            "a share needs something to split the total by: ask e.g. “share of {} by {}”",
            q.metrics
                .first()
                .cloned()
                .unwrap_or_default()
                .replace('_', " "),
            model
                .dimensions
                .iter()
                .find(|d| !d.time)
                .map_or("region".to_string(), |d| d.name.clone())
        ));
    }
    q.time = found.range.as_ref().map(Period::from);
    q.compare = found.compare.as_ref().map(Period::from);
    q.grain = found.grain.map(|g| g.as_str().to_string());
    if q.grain.is_some() && q.compare.is_some() {
        q.compare = None;
    }
    if let Some((desc, n)) = rank
        && !q.dimensions.is_empty()
    {
        let by = q
            .order
            .as_ref()
            .map(|o| o.by.clone())
            .or_else(|| q.metrics.first().cloned())
            .unwrap_or_default();
        q.order = Some(Order { by, desc });
        q.limit = Some(n);
    }
    // Averages asked of a sum: "average revenue" is answered only where the model has one.
    if has(&["average", "avg", "mean", "média", "media"]) {
        for m in &q.metrics {
            if model
                .measure(m)
                .is_some_and(|x| matches!(x.agg, Agg::Sum | Agg::Count | Agg::CountDistinct))
            {
                let avgs: Vec<String> = model
                    .measures
                    .iter()
                    .filter(|x| x.agg == Agg::Avg)
                    .map(|x| x.name.replace('_', " "))
                    .chain(
                        model
                            .metrics
                            .iter()
                            .filter(|x| matches!(x.kind, super::model::MetricKind::Ratio { .. }))
                            .map(|x| x.name.replace('_', " ")),
                    )
                    .collect();
                return Parsed::Refused(format!(
                    "the model has no average of {}; averages it has: {}",
                    model
                        .label_format(m)
                        .map(|(l, _)| l)
                        .unwrap_or_default()
                        .to_lowercase(),
                    if avgs.is_empty() {
                        "none".to_string()
                    } else {
                        avgs.join(", ")
                    }
                ));
            }
        }
    }
    Parsed::Query(Box::new(q))
}

/// The values (and value synonyms) of categorical dimensions within `close(distance, value)`
/// of `lower`, nearest first, each once.
fn near_values(
    model: &Model,
    values: &super::ValueIndex,
    lower: &str,
    close: impl Fn(usize, &str) -> bool,
) -> Vec<String> {
    let mut all: Vec<&str> = Vec::new();
    for vs in values.values.values() {
        all.extend(vs.iter().map(String::as_str));
    }
    for d in &model.dimensions {
        for (v, syns) in &d.values {
            all.extend(syns.iter().map(String::as_str));
            all.push(v);
        }
    }
    let mut near: Vec<(usize, String)> = all
        .into_iter()
        .map(|v| (edit_distance(lower, &v.to_lowercase()), v.to_string()))
        .filter(|(dist, v)| close(*dist, v))
        .collect();
    near.sort();
    near.dedup_by(|a, b| a.1 == b.1);
    near.into_iter().map(|(_, v)| v).collect()
}

/// The dimension that names an entity's rows (its `label`).
fn label_dim(model: &Model, entity: &str) -> Option<String> {
    let e = model.entities.get(entity)?;
    let l = e.label.as_ref()?;
    model
        .dimensions
        .iter()
        .find(|d| d.entity == entity && (d.name == *l || d.expr.trim_matches('"') == l))
        .map(|d| d.key())
}

fn clarify_metric(model: &Model, question: &str, phrase: &str, options: &[String]) -> Parsed {
    let labels: Vec<String> = options
        .iter()
        .map(|o| model.label_format(o).map_or_else(|| o.clone(), |(l, _)| l))
        .collect();
    Parsed::Clarify {
        text: format!(
            "“{phrase}” can mean {}. Which one?",
            labels
                .iter()
                .map(|l| format!("“{l}”"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        options: labels
            .iter()
            .map(|l| question.replacen(phrase, &l.to_lowercase(), 1))
            .collect(),
    }
}
