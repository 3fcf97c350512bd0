//! Time words in a business question → date ranges and a grain, with no LLM.
//!
//! [`find`] reads a question such as "revenue by plan last quarter", "monthly revenue in 2025",
//! "refunds in March vs February" or "receita por mês em 2025" and returns what it says about
//! time ([`TimeFound`]): the main period (`range`), the period it is compared with (`compare`),
//! a time-series grain (`grain`) and the byte ranges of the words it used (`spans`), so that
//! the caller can match the rest of the question against metrics and dimensions. It is
//! deterministic: the same text and `today` always give the same answer. Words that say
//! nothing it understands are simply left alone; it never fails and never panics.
//!
//! # How it reads
//!
//! The original text is split into tokens: runs of letters and digits (with `-`, `/`, `.` and
//! apostrophes inside a run, so `2025-03-31` and `year-to-date` are one token), each kept as
//! its byte range in the original text and a comparison form (lowercased, accents folded,
//! a trailing `'s` dropped). Punctuation such as `,` `?` `(` is skipped; other symbols (emoji,
//! `$`, `%`) are tokens of their own so that a time phrase never runs across them. Byte
//! offsets are never computed on a transformed copy, so spans always fall on the original's
//! character boundaries. The scan goes left to right taking the longest expression that
//! starts at each token; an expression may bring its connecting word ("in", "during", "for",
//! "of", "over", "within", "on", "em", "no", "na", "de", "do", "da", "durante", …, and "the"
//! before a relative phrase) and a comparison brings its connective ("vs", "versus",
//! "compared with/to", "against", "than", "comparado com", "em comparação com", "contra", …).
//!
//! # What it understands (English and Portuguese)
//!
//! - Years: "2025", "in 2025", "for 2024", "during 2023", "the year 2025", "em 2025",
//!   "ano de 2025". A number is a year only when it has four digits in 1900..=2100 and is not a
//!   count or an amount: not after top/bottom/first/last/past/next/over/under/above/below/
//!   "more than"/"fy"/"order"/"id"/`$`/`#`, not before `%` or a time unit ("2000 days"), not the
//!   second number of "between 1000 and 2000". Fiscal years ("FY2025", "FY 2025") are not read.
//! - Quarters: "Q3 2025", "q3 of 2025", "2025 Q3", "Q3-2025", "Q3" alone (this year's if it has
//!   started, else last year's), "3rd quarter of 2025", "third quarter 2025", "3º trimestre de
//!   2025", "terceiro trimestre de 2025", "T3 2025".
//! - Months: "March 2025", "march of 2025", "mar 2025", "2025-03", "03/2025", "março de 2025",
//!   "in March"/"em março" alone (the most recent March that has started: this March when
//!   today is in March), "last March" (the most recent March before this month), "this March",
//!   "March this year", "March last year", "março do ano passado". "may", "set", "out", "ago"
//!   and "dez" are months only next to a year or day, or after a time word ("in May").
//! - Halves and ISO weeks: "H1 2025", "first half of 2025", "primeiro semestre de 2025", "1º
//!   semestre"; "week 12", "week 12 of 2025", "semana 12 de 2025", `2025-W12`. The first or
//!   last part of a given year: "the last quarter of 2024" (Q4 2024), "the first month of
//!   2025", "último trimestre de 2024", "the last week of 2020".
//! - Days: ISO `2025-03-05` (also `2025/03/05`), "March 5, 2025", "March 5th", "5 March 2025",
//!   "5th of March", "5 de março de 2025"; a day with no year is the most recent one.
//!   Other numeric forms (`05/03/2025`) are ambiguous and are not read.
//! - Relative: "today", "yesterday", "this/current week|month|quarter|year" (the whole
//!   calendar period), "last/previous/prior week|month|quarter|year" (the calendar period
//!   before the current one), "previous day", "year to date"/"ytd"/"so far this year"/"this
//!   year so far", "month to date"/"mtd", "quarter to date"/"qtd", "week to date"/"wtd",
//!   "last/past/previous/trailing N days|weeks|months|quarters|years" (N digits or one..twelve),
//!   "past week|month|year" (N = 1), "ttm"/"ltm" (12 months), "today so far"; Portuguese
//!   "hoje", "ontem", "esta semana", "neste mês", "mês atual", "semana passada", "mês passado",
//!   "mês anterior", "último trimestre", "ano passado", "últimos 7 dias", "últimas 2 semanas",
//!   "últimos três meses", "acumulado do ano" (also "do mês", "do trimestre"). Weeks are ISO
//!   weeks (Monday to Sunday), quarters start in January, April, July and October.
//! - Since, until, between: "since March", "since 2024-06-01", "since Q2 2025", "starting
//!   from", "from March 2025" alone, "after June 2025", "desde março", "a partir de abril",
//!   "since the beginning of the year"/"desde o início do ano" (= year to date), "since the end
//!   of Q1" (= after), "until/till/before/up to/prior to June 2025", "até junho de 2025",
//!   "antes de", "through June 2025", "until the end of March"/"até o fim de março" (= through);
//!   "between 2025-01-01 and 2025-03-31", "from Jan 2025 to Mar 2025", "from Jan to
//!   Mar 2025", "from 2023 to 2025", "Jan 2025 - Mar 2025", "2025-01-01..2025-03-31",
//!   "2023-2025", "jan-mar 2025", "from March to date", "entre 2025-01-01 e 2025-03-31", "de
//!   janeiro a março de 2025", "desde março até hoje".
//! - Comparisons: "X vs Y", "X versus Y", "X compared with/to Y", "X against Y", "X than Y",
//!   "X relative to Y", "comparado com", "em comparação com", "em relação ao", "contra",
//!   "frente a", "do que"; after "compare"/"comparar" also "X and Y", "X with Y", "X to Y",
//!   "X e Y", "X com Y". The compared period may be any expression above, or "previous/prior/
//!   last period", "the same period last year" (also "same month/quarter/week last year", "a
//!   year ago", "mesmo período do ano passado", "período anterior"), or "the previous N days"/
//!   "the N days before"/"os N dias anteriores" (the N units just before the main period).
//!   After a change word ("change", "grew", "growth", "increase", "drop", "cresceu", "variação",
//!   …), "from 2024 to 2025"/"between Q1 and Q2" of two periods of the same kind is a
//!   comparison: the later one compared with the earlier one (unless a grain asks for a series).
//! - Grains: "monthly", "by/per/each/every month", "month by month", "month over month",
//!   "weekly", "daily", "by date", "quarterly", "yearly", "annual(ly)", "over time" (month);
//!   "por mês", "mensal", "mês a mês", "por dia", "diário", "por semana", "semanal", "por
//!   trimestre", "trimestral", "por ano", "anual", "ao longo do tempo". An adjective that names
//!   a kind of thing rather than a series ("monthly plan", "annual subscription", "monthly
//!   recurring revenue", "daily active users", "plano mensal") is not a grain.
//!
//! # Choices where a question is open
//!
//! - Ranges are `[start, end)`. "The last N days" ends today inclusive (start = today − (N−1)
//!   days, end = today + 1); weeks count 7N days the same way; "the last N months/quarters/
//!   years" are rolling too: from the day after today − N months, through today. "This month"
//!   is the whole calendar month; "month to date" ends today. "Since X" runs from X's start
//!   through today (an X in the future gives an empty range); "from X" alone is "since X" for a
//!   named period ("from March 2025"), but the period itself for a relative one ("orders from
//!   last month" are last month's). "Until/before X" ends where X starts and begins at
//!   1900-01-01 (label "before X"); "until today/now", "until the end of X" and "through X"
//!   include X. "Between X and Y" covers both X and Y whole; when only one end has a year the
//!   other takes it (the earlier end moves to the year before when needed: "from Nov to Feb
//!   2025" starts in November 2024); ends given backwards are swapped.
//! - The compared period with no year takes the main period's year ("March vs February" →
//!   February of March's year), falling back a year when that would start after today. A main
//!   period with no year takes the compared period's year when that one has one ("Q3 vs Q2
//!   2024").
//! - "vs previous/prior/last UNIT" is relative to the main period, not to today: the main
//!   period moved back by one unit (a month vs "last year" is the same month a year before; a
//!   quarter vs "previous quarter" the quarter before; year to date vs "last year" the same
//!   days of last year), or, when that would overlap the main period (2025 vs "the previous
//!   month"), the one-unit period just before it (December 2024). "vs the previous period" is
//!   the period of the same calendar length just before: the previous day/week/month/quarter/
//!   year for one calendar period, the same part of the previous period for "to date"
//!   periods, the same number of months for month-aligned spans and the same number of days
//!   otherwise; open-ended ("before June") periods have no previous period.
//! - A comparison with no main period: "vs last month"/"vs previous quarter" compares the
//!   current calendar period of that unit with the one before; "vs February"/"vs 2024" (one
//!   calendar period) compares the current period of the same unit with it; any other compared
//!   expression ("vs the last 7 days") becomes the main period with nothing to compare; "vs the
//!   previous period" with nothing to compare with is dropped. So `compare` is only ever set
//!   together with `range`.
//! - Only the first main expression, the first comparison and the first grain are used, and
//!   `spans` cover exactly those (with their connecting words); anything else is left in the
//!   question ("revenue in 2025 and 2024" reads 2025 and leaves "and 2024"). Spans separated
//!   only by whitespace are merged.
//! - "past week/month/year" is the rolling period ("the past week" = the last 7 days); "last
//!   week" is the previous calendar week. "last day" is not read (ambiguous); "previous day" is.
//! - Labels are in English whatever the question's language: "2025", "Q3 2025", "March 2025",
//!   "2025-03-05", "this month (December 2025)", "last week (2025-11-24 to 2025-11-30)", "the
//!   last 7 days (2025-11-28 to 2025-12-04)", "year to date 2025", "since March 2025", "before
//!   June 2025", "2025-01-01 to 2025-03-31"; compared periods derived from the main one are
//!   labelled by what they are ("November 2025", "Q2 2025", "2024-01-01 to 2024-12-04").

use std::ops::Range;

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};

/// A time-series grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    Month,
    /// Calendar quarters: January, April, July, October.
    Quarter,
    Year,
}

impl Grain {
    /// "day", "week", "month", "quarter" or "year".
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// The grain a word names: its [`as_str`](Self::as_str) form in any case, a plural
    /// ("months") or an adjective ("monthly", "annual").
    pub fn parse(s: &str) -> Option<Grain> {
        match s.trim().to_lowercase().as_str() {
            "day" | "days" | "daily" => Some(Grain::Day),
            "week" | "weeks" | "weekly" => Some(Grain::Week),
            "month" | "months" | "monthly" => Some(Grain::Month),
            "quarter" | "quarters" | "quarterly" => Some(Grain::Quarter),
            "year" | "years" | "yearly" | "annual" => Some(Grain::Year),
            _ => None,
        }
    }
}

/// A period of whole days, `start` included and `end` excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    /// The first day.
    pub start: NaiveDate,
    /// The day after the last day.
    pub end: NaiveDate,
    /// How to say it ("2025", "Q3 2025", "March 2025", "the last 7 days (2025-11-28 to
    /// 2025-12-04)", "2025-01-01 to 2025-03-31", "year to date 2025").
    pub label: String,
}

/// What a question says about time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimeFound {
    /// The main period asked about.
    pub range: Option<DateRange>,
    /// The period it is compared with (only ever set with `range`).
    pub compare: Option<DateRange>,
    /// A time-series grain ("monthly", "by quarter", "por mês").
    pub grain: Option<Grain>,
    /// Byte ranges of the original text taken by the words used (with their connecting words):
    /// sorted, disjoint, non-empty and on character boundaries.
    pub spans: Vec<Range<usize>>,
}

/// Finds the time expressions in `text`, resolving relative ones against `today`.
pub fn find(text: &str, today: NaiveDate) -> TimeFound {
    let toks = tokenize(text);
    let parser = Parser::new(&toks, today);
    let hits = parser.scan();
    assemble(text, &toks, today, &hits)
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// One token: its byte range in the original text and its comparison form.
#[derive(Debug, Clone)]
struct Tok {
    start: usize,
    end: usize,
    low: String,
}

fn is_combining(c: char) -> bool {
    matches!(
        c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
    )
}

/// Letters, digits, ordinal marks and combining accents.
fn is_wordish(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, 'º' | 'ª' | '°') || is_combining(c)
}

/// Punctuation kept inside a token ("2025-03-31", "year-to-date", "q3/2025", "year's").
fn is_joiner(c: char) -> bool {
    matches!(c, '-' | '/' | '.' | '\'' | '’' | '–' | '—')
}

/// Characters that only separate tokens.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            ',' | ';'
                | ':'
                | '!'
                | '?'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '"'
                | '`'
                | '*'
                | '_'
                | '¿'
                | '¡'
                | '«'
                | '»'
                | '“'
                | '”'
                | '‘'
                | '…'
        )
}

fn fold(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        'ñ' => 'n',
        '–' | '—' => '-',
        '’' => '\'',
        other => other,
    }
}

/// Lowercased, accents folded, a trailing `'s` dropped.
fn normalize(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !is_combining(*c))
        .map(fold)
        .collect();
    if let Some(stem) = s.strip_suffix("'s")
        && !stem.is_empty()
    {
        s = stem.to_string();
    }
    s
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_wordish(c) || is_joiner(c) {
            if run.is_none() {
                run = Some(i);
            }
            continue;
        }
        if let Some(s) = run.take() {
            push_run(text, s, i, &mut out);
        }
        if !is_separator(c) {
            out.push(Tok {
                start: i,
                end: i + c.len_utf8(),
                low: c.to_lowercase().collect(),
            });
        }
    }
    if let Some(s) = run {
        push_run(text, s, text.len(), &mut out);
    }
    out
}

/// A run of word characters and joiners: the joiners at its edges are dropped; a run of
/// joiners alone ("-", "..") is a token as it is.
fn push_run(text: &str, s: usize, e: usize, out: &mut Vec<Tok>) {
    let Some(run) = text.get(s..e) else { return };
    let mut core: Option<(usize, usize)> = None;
    for (i, c) in run.char_indices() {
        if is_wordish(c) {
            let a = s + i;
            let b = a + c.len_utf8();
            core = Some(core.map_or((a, b), |(first, _)| (first, b)));
        }
    }
    match core {
        Some((a, b)) => {
            let raw = text.get(a..b).unwrap_or("");
            out.push(Tok {
                start: a,
                end: b,
                low: normalize(raw),
            });
        }
        None => out.push(Tok {
            start: s,
            end: e,
            low: run.chars().map(fold).collect(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Words

/// Connecting words taken with an expression ("in 2025", "no mês passado").
const PREPS: &[&str] = &[
    "in",
    "during",
    "for",
    "of",
    "over",
    "within",
    "on",
    "throughout",
    "em",
    "no",
    "na",
    "nos",
    "nas",
    "de",
    "do",
    "da",
    "dos",
    "das",
    "durante",
    "para",
];
/// Articles taken after a connecting word or a comparison ("in the last 7 days", "com o mês
/// anterior").
const ARTICLES: &[&str] = &["the", "o", "a", "os", "as"];
/// Words that introduce the compared period.
const CONNECTIVES: &[&[&str]] = &[
    &["vs"],
    &["v"],
    &["v/s"],
    &["versus"],
    &["compared", "with"],
    &["compared", "to"],
    &["compared", "against"],
    &["in", "comparison", "with"],
    &["in", "comparison", "to"],
    &["relative", "to"],
    &["against"],
    &["than"],
    &["contra"],
    &["comparado", "com"],
    &["comparado", "a"],
    &["comparado", "ao"],
    &["comparada", "com"],
    &["comparada", "a"],
    &["comparada", "ao"],
    &["comparados", "com"],
    &["comparadas", "com"],
    &["em", "comparacao", "com"],
    &["em", "comparacao", "a"],
    &["em", "comparacao", "ao"],
    &["em", "relacao", "a"],
    &["em", "relacao", "ao"],
    &["frente", "a"],
    &["frente", "ao"],
    &["do", "que"],
];
/// Connectives of the compared period after a comparison verb ("compare March and February").
const VERB_CONNECTIVES: &[&[&str]] = &[&["and"], &["with"], &["to"], &["e"], &["com"]];
/// Verbs that make "and"/"with"/"to" introduce a compared period.
const COMPARE_VERBS: &[&str] = &[
    "compare",
    "comparing",
    "comparison",
    "comparar",
    "compara",
    "comparem",
    "comparando",
    "comparacao",
];
/// Words that make "from X to Y" a comparison of Y with X ("how did revenue change from 2024
/// to 2025").
const CHANGE_WORDS: &[&str] = &[
    "change",
    "changed",
    "changes",
    "grow",
    "grew",
    "grown",
    "growth",
    "increase",
    "increased",
    "decrease",
    "decreased",
    "drop",
    "dropped",
    "fall",
    "fell",
    "rise",
    "rose",
    "evolve",
    "evolved",
    "evolution",
    "variacao",
    "variou",
    "mudou",
    "mudanca",
    "cresceu",
    "crescimento",
    "caiu",
    "queda",
    "aumentou",
    "aumento",
    "diminuiu",
    "evoluiu",
    "evolucao",
];
/// Words before a number that make it a count or an amount rather than a year.
const NOT_YEAR_BEFORE: &[&str] = &[
    "top",
    "bottom",
    "first",
    "last",
    "past",
    "next",
    "previous",
    "prior",
    "trailing",
    "over",
    "under",
    "above",
    "below",
    "exceeding",
    "least",
    "most",
    "fy",
    "order",
    "orders",
    "id",
    "number",
    "invoice",
    "ticket",
    "#",
    "$",
    "€",
    "£",
    "¥",
    "=",
    "<",
    ">",
    "primeiros",
    "primeiras",
    "ultimos",
    "ultimas",
    "acima",
    "abaixo",
    "pedido",
    "n°",
    "nº",
];
/// Words after an adjective grain that make it name a kind of thing ("monthly plan").
const NOT_GRAIN_AFTER: &[&str] = &[
    "plan",
    "plans",
    "subscription",
    "subscriptions",
    "subscriber",
    "subscribers",
    "billing",
    "contract",
    "contracts",
    "active",
    "recurring",
    "price",
    "prices",
    "pricing",
    "fee",
    "fees",
    "tier",
    "tiers",
    "membership",
    "memberships",
    "package",
    "packages",
    "license",
    "licenses",
    "licence",
    "licences",
    "budget",
    "budgets",
    "target",
    "targets",
    "quota",
    "quotas",
    "limit",
    "limits",
    "cap",
    "report",
    "reports",
];
/// Words before a Portuguese adjective grain that make it name a kind of thing ("plano mensal").
const NOT_GRAIN_BEFORE: &[&str] = &[
    "plano",
    "planos",
    "assinatura",
    "assinaturas",
    "recorrente",
    "recorrentes",
    "cobranca",
    "contrato",
    "contratos",
    "pacote",
    "pacotes",
    "meta",
    "metas",
    "relatorio",
    "relatorios",
];
/// Words before an ambiguous month word ("may", "set") that make it a month.
const AMBIGUOUS_MONTH_OK_AFTER: &[&str] = &[
    "in", "for", "on", "during", "since", "from", "until", "till", "before", "after", "between",
    "vs", "versus", "to", "through", "of", "em", "de", "desde", "ate", "entre", "apos", "last",
    "this",
];
/// What may follow "March 5" for it to be a day ("March 5 to March 10").
const DAY_END_OK: &[&str] = &[
    "to", "and", "through", "thru", "until", "till", "-", "..", "a", "e", "ate", "vs", "versus",
    "v", "compared", "against", "than", "&", "in", "em",
];

fn month_word(w: &str) -> Option<(u32, bool)> {
    Some(match w {
        "january" | "jan" | "janeiro" => (1, false),
        "february" | "feb" | "fevereiro" | "fev" => (2, false),
        "march" | "mar" | "marco" => (3, false),
        "april" | "apr" | "abril" | "abr" => (4, false),
        "maio" | "mai" => (5, false),
        "may" => (5, true),
        "june" | "jun" | "junho" => (6, false),
        "july" | "jul" | "julho" => (7, false),
        "august" | "aug" | "agosto" => (8, false),
        "ago" => (8, true),
        "september" | "sep" | "sept" | "setembro" => (9, false),
        "set" => (9, true),
        "october" | "oct" | "outubro" => (10, false),
        "out" => (10, true),
        "november" | "nov" | "novembro" => (11, false),
        "december" | "dec" | "dezembro" => (12, false),
        "dez" => (12, true),
        _ => return None,
    })
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A unit word, singular or plural, English or Portuguese.
fn unit_word(w: &str) -> Option<(Grain, bool)> {
    Some(match w {
        "day" | "dia" => (Grain::Day, false),
        "days" | "dias" => (Grain::Day, true),
        "week" | "semana" => (Grain::Week, false),
        "weeks" | "semanas" => (Grain::Week, true),
        "month" | "mes" => (Grain::Month, false),
        "months" | "meses" => (Grain::Month, true),
        "quarter" | "trimestre" => (Grain::Quarter, false),
        "quarters" | "trimestres" => (Grain::Quarter, true),
        "year" | "ano" => (Grain::Year, false),
        "years" | "anos" => (Grain::Year, true),
        _ => return None,
    })
}

/// A count: digits (1..=100000) or a number word (accents folded: `tres`).
pub(super) fn count_word(w: &str) -> Option<u32> {
    let n = match w {
        "one" | "um" | "uma" => 1,
        "two" | "dois" | "duas" => 2,
        "three" | "tres" => 3,
        "four" | "quatro" => 4,
        "five" | "cinco" => 5,
        "six" | "seis" => 6,
        "seven" | "sete" => 7,
        "eight" | "oito" => 8,
        "nine" | "nove" => 9,
        "ten" | "dez" => 10,
        "eleven" | "onze" => 11,
        "twelve" | "doze" => 12,
        "twenty" | "vinte" => 20,
        _ => {
            if w.is_empty() || w.len() > 6 || !w.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            w.parse().ok()?
        }
    };
    (1..=100_000).contains(&n).then_some(n)
}

/// Leading ASCII digits and the rest.
fn split_digits(w: &str) -> (&str, &str) {
    let n = w.bytes().take_while(u8::is_ascii_digit).count();
    (w.get(..n).unwrap_or(""), w.get(n..).unwrap_or(""))
}

/// "3rd", "third", "3º", "terceiro" → 3.
fn ordinal_word(w: &str) -> Option<u32> {
    Some(match w {
        "first" | "primeiro" | "primeira" => 1,
        "second" | "segundo" | "segunda" => 2,
        "third" | "terceiro" | "terceira" => 3,
        "fourth" | "quarto" | "quarta" => 4,
        _ => {
            let (digits, suffix) = split_digits(w);
            if digits.is_empty() || digits.len() > 2 {
                return None;
            }
            if !matches!(
                suffix,
                "st" | "nd" | "rd" | "th" | "º" | "ª" | "°" | "o" | "a"
            ) {
                return None;
            }
            digits.parse().ok()?
        }
    })
}

/// A day of the month: "5", "05", "5th", "5º"; with whether it had a suffix.
fn day_word(w: &str) -> Option<(u32, bool)> {
    let (digits, suffix) = split_digits(w);
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    if !matches!(suffix, "" | "st" | "nd" | "rd" | "th" | "º" | "°") {
        return None;
    }
    let d: u32 = digits.parse().ok()?;
    (1..=31).contains(&d).then_some((d, !suffix.is_empty()))
}

/// A four-digit year in 1900..=2100.
fn year_word(w: &str) -> Option<i32> {
    if w.len() != 4 || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i32 = w.parse().ok()?;
    (1900..=2100).contains(&y).then_some(y)
}

fn month_number(w: &str) -> Option<u32> {
    if w.is_empty() || w.len() > 2 || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let m: u32 = w.parse().ok()?;
    (1..=12).contains(&m).then_some(m)
}

fn days_in_month_max(m: u32) -> u32 {
    match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// "h1", "h2" → 1, 2.
fn half_word(w: &str) -> Option<u32> {
    match w {
        "h1" => Some(1),
        "h2" => Some(2),
        _ => None,
    }
}

/// "w12" → 12 (ISO week numbers 1..=53).
fn week_word(w: &str) -> Option<u32> {
    let rest = w.strip_prefix('w')?;
    if rest.is_empty() || rest.len() > 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = rest.parse().ok()?;
    (1..=53).contains(&n).then_some(n)
}

/// "q3", "t3" → 3.
fn quarter_word(w: &str) -> Option<u32> {
    let rest = w.strip_prefix('q').or_else(|| w.strip_prefix('t'))?;
    let q: u32 = match rest {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        "4" => 4,
        _ => return None,
    };
    Some(q)
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// A calendar period named in the text, its year possibly left to context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Year(i32),
    /// H1 or H2.
    Half(u32, Option<i32>),
    Quarter(u32, Option<i32>),
    Month(u32, Option<i32>),
    /// An ISO week number.
    Week(u32, Option<i32>),
    Day(u32, u32, Option<i32>),
}

impl Point {
    fn year(self) -> Option<i32> {
        match self {
            Point::Year(y) => Some(y),
            Point::Half(_, y)
            | Point::Quarter(_, y)
            | Point::Month(_, y)
            | Point::Week(_, y)
            | Point::Day(_, _, y) => y,
        }
    }

    fn with_year(self, y: i32) -> Point {
        match self {
            Point::Year(_) => Point::Year(y),
            Point::Half(h, _) => Point::Half(h, Some(y)),
            Point::Quarter(q, _) => Point::Quarter(q, Some(y)),
            Point::Week(w, _) => Point::Week(w, Some(y)),
            Point::Month(m, _) => Point::Month(m, Some(y)),
            Point::Day(m, d, _) => Point::Day(m, d, Some(y)),
        }
    }

    /// Where in its year it starts (month, day).
    fn key(self) -> (u32, u32) {
        match self {
            Point::Year(_) => (1, 1),
            Point::Half(h, _) => (half_first_month(h), 1),
            Point::Quarter(q, _) => (quarter_first_month(q), 1),
            Point::Month(m, _) => (m, 1),
            Point::Week(w, _) => NaiveDate::from_isoywd_opt(2025, w, Weekday::Mon)
                .map_or((1, 1), |d| (d.month(), d.day())),
            Point::Day(m, d, _) => (m, d),
        }
    }
}

fn quarter_first_month(q: u32) -> u32 {
    q.saturating_mul(3).saturating_sub(2)
}

fn half_first_month(h: u32) -> u32 {
    h.saturating_mul(6).saturating_sub(5)
}

/// A time expression, before it is resolved to dates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Point(Point),
    Today,
    Yesterday,
    /// The calendar period containing today.
    Current(Grain),
    /// The calendar period before the current one (in a comparison: before the main period).
    Prev(Grain),
    ToDate(Grain),
    /// The last N units, ending today.
    Rolling(Grain, u32),
    /// "the previous N units": like `Rolling`, but in a comparison the N units before the main
    /// period.
    Preceding(Grain, u32),
    /// Only as a compared period.
    PrevPeriod,
    /// Only as a compared period.
    SameLastYear,
    Since(Box<Expr>),
    Until(Box<Expr>),
    Through(Box<Expr>),
    After(Box<Expr>),
    Between(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Compare,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HitKind {
    Time(Expr),
    Grain(Grain),
}

/// One expression found: tokens `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    kind: HitKind,
    role: Role,
    start: usize,
    end: usize,
}

/// Keeps the candidate that reaches furthest (the first one on a tie).
fn longest<T>(best: &mut Option<(T, usize)>, cand: Option<(T, usize)>) {
    if let Some((v, e)) = cand
        && best.as_ref().is_none_or(|(_, be)| e > *be)
    {
        *best = Some((v, e));
    }
}

struct Parser<'a> {
    toks: &'a [Tok],
    today: NaiveDate,
    /// The first comparison verb.
    verb: Option<usize>,
}

impl<'a> Parser<'a> {
    fn new(toks: &'a [Tok], today: NaiveDate) -> Self {
        let verb = toks
            .iter()
            .position(|t| COMPARE_VERBS.contains(&t.low.as_str()));
        Self { toks, today, verb }
    }

    fn w(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| t.low.as_str())
    }

    fn prev(&self, i: usize) -> &str {
        i.checked_sub(1).map_or("", |k| self.w(k))
    }

    fn is(&self, i: usize, set: &[&str]) -> bool {
        let w = self.w(i);
        !w.is_empty() && set.contains(&w)
    }

    fn seq(&self, i: usize, words: &[&str]) -> Option<usize> {
        for (k, word) in words.iter().enumerate() {
            if self.w(i + k) != *word {
                return None;
            }
        }
        Some(i + words.len())
    }

    fn seqs(&self, i: usize, list: &[&[&str]]) -> Option<usize> {
        list.iter().filter_map(|s| self.seq(i, s)).max()
    }

    fn year(&self) -> i32 {
        self.today.year()
    }

    /// After a comparison verb.
    fn compare_mode(&self, i: usize) -> bool {
        self.verb.is_some_and(|v| v < i)
    }

    fn scan(&self) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut i = 0;
        while i < self.toks.len() {
            match self.hit_at(i) {
                Some(h) if h.end > i => {
                    i = h.end;
                    hits.push(h);
                }
                _ => i += 1,
            }
        }
        hits
    }

    /// The longest expression starting at token `i`.
    fn hit_at(&self, i: usize) -> Option<Hit> {
        let mut best: Option<((HitKind, Role), usize)> = None;
        longest(
            &mut best,
            self.grain(i)
                .map(|(g, e)| ((HitKind::Grain(g), Role::Main), e)),
        );
        let mut conn = self.seqs(i, CONNECTIVES);
        if self.compare_mode(i) {
            conn = conn.max(self.seqs(i, VERB_CONNECTIVES));
        }
        if let Some(after) = conn {
            longest(
                &mut best,
                self.prefixed(after, true, Role::Compare)
                    .map(|(x, e)| ((HitKind::Time(x), Role::Compare), e)),
            );
        }
        longest(
            &mut best,
            self.prefixed(i, false, Role::Main)
                .map(|(x, e)| ((HitKind::Time(x), Role::Main), e)),
        );
        best.map(|((kind, role), end)| Hit {
            kind,
            role,
            start: i,
            end,
        })
    }

    /// An expression at `i`, possibly after a connecting word and an article.
    fn prefixed(&self, i: usize, after_connective: bool, role: Role) -> Option<(Expr, usize)> {
        let mut best = self.core(i, role);
        let prep = self.is(i, PREPS)
            || (self.compare_mode(i) && self.is(i, &["between", "entre"]) && !after_connective);
        if prep {
            longest(&mut best, self.core(i + 1, role));
            if self.is(i + 1, ARTICLES) {
                longest(&mut best, self.core(i + 2, role));
            }
        }
        let article = if after_connective {
            self.is(i, ARTICLES)
        } else {
            self.w(i) == "the"
        };
        if article {
            let digit = self
                .w(i + 1)
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_digit);
            if after_connective || !digit {
                longest(&mut best, self.core(i + 1, role));
            }
        }
        best
    }

    /// An expression starting exactly at `i`.
    fn core(&self, i: usize, role: Role) -> Option<(Expr, usize)> {
        if i >= self.toks.len() {
            return None;
        }
        let mut best = self.between(i);
        longest(&mut best, self.bounded(i));
        longest(&mut best, self.relative(i));
        longest(&mut best, self.point(i).map(|(p, e)| (Expr::Point(p), e)));
        if role == Role::Compare {
            longest(&mut best, self.compare_only(i));
        }
        best
    }

    // --- grains ---

    fn grain(&self, i: usize) -> Option<(Grain, usize)> {
        let w = self.w(i);
        let adjective = match w {
            "monthly" | "mensal" | "mensais" | "mensalmente" => Some(Grain::Month),
            "weekly" | "semanal" | "semanais" | "semanalmente" => Some(Grain::Week),
            "daily" | "diario" | "diaria" | "diarios" | "diarias" | "diariamente" => {
                Some(Grain::Day)
            }
            "quarterly" | "trimestral" | "trimestrais" | "trimestralmente" => Some(Grain::Quarter),
            "yearly" | "annual" | "annually" | "anual" | "anuais" | "anualmente" => {
                Some(Grain::Year)
            }
            _ => None,
        };
        if let Some(g) = adjective {
            if self.is(i + 1, NOT_GRAIN_AFTER) || self.is_prev(i, NOT_GRAIN_BEFORE) {
                return None;
            }
            return Some((g, i + 1));
        }
        let mut best = None;
        if self.is(
            i,
            &["by", "per", "each", "every", "por", "cada", "todo", "toda"],
        ) {
            let next = self.w(i + 1);
            if matches!(next, "date" | "data") {
                longest(&mut best, Some((Grain::Day, i + 2)));
            } else if let Some((g, _)) = unit_word(next)
                && !(self.is(i + 2, &["of", "da", "do", "de"])
                    && unit_word(self.w(i + 3)).is_some())
            {
                // Not "by day of week", "por dia da semana": those are not series.
                longest(&mut best, Some((g, i + 2)));
            }
        }
        if self.seq(i, &["a", "cada"]).is_some()
            && let Some((g, _)) = unit_word(self.w(i + 2))
        {
            longest(&mut best, Some((g, i + 3)));
        }
        if let Some((g, false)) = unit_word(w)
            && self.is(i + 1, &["by", "over", "a"])
            && unit_word(self.w(i + 2)) == Some((g, false))
        {
            longest(&mut best, Some((g, i + 3)));
        }
        longest(
            &mut best,
            self.seqs(
                i,
                &[
                    &["over", "time"],
                    &["ao", "longo", "do", "tempo"],
                    &["through", "time"],
                ],
            )
            .map(|e| (Grain::Month, e)),
        );
        best
    }

    fn is_prev(&self, i: usize, set: &[&str]) -> bool {
        i.checked_sub(1).is_some_and(|k| self.is(k, set))
    }

    // --- points ---

    /// Whether the four-digit number at `i` is a count or an amount rather than a year.
    fn year_excluded(&self, i: usize) -> bool {
        let prev = self.prev(i);
        if NOT_YEAR_BEFORE.contains(&prev) {
            return true;
        }
        let prev2 = i.checked_sub(2).map_or("", |k| self.w(k));
        if matches!(prev, "than" | "de" | "que" | "of")
            && matches!(
                prev2,
                "more"
                    | "less"
                    | "fewer"
                    | "greater"
                    | "above"
                    | "below"
                    | "over"
                    | "under"
                    | "mais"
                    | "menos"
                    | "acima"
                    | "abaixo"
            )
        {
            return true;
        }
        // "between 1000 and 2000".
        if matches!(prev, "and" | "e" | "to" | "a" | "-" | ".." | "&" | "ate")
            && !prev2.is_empty()
            && prev2.bytes().all(|b| b.is_ascii_digit())
            && year_word(prev2).is_none()
        {
            return true;
        }
        let next = self.w(i + 1);
        next == "%" || unit_word(next).is_some()
    }

    /// A year at `i` that is not a count.
    fn bare_year(&self, i: usize) -> Option<i32> {
        year_word(self.w(i)).filter(|_| !self.year_excluded(i))
    }

    /// The year said after a month or a quarter: "2025", "of 2025", "de 2025", "this year",
    /// "last year", "do ano passado".
    fn year_qualifier(&self, i: usize) -> Option<(i32, usize)> {
        let y = self.year();
        let mut best = None;
        let mut starts = vec![i];
        if self.is(i, &["of", "in", "de", "do", "da", "no", "na"]) {
            starts.push(i + 1);
        }
        for j in starts {
            if let Some(year) = year_word(self.w(j))
                && unit_word(self.w(j + 1)).is_none()
                && self.w(j + 1) != "%"
            {
                longest(&mut best, Some((year, j + 1)));
            }
            let this = self.seqs(
                j,
                &[
                    &["this", "year"],
                    &["current", "year"],
                    &["the", "current", "year"],
                    &["este", "ano"],
                    &["esse", "ano"],
                    &["deste", "ano"],
                    &["desse", "ano"],
                    &["neste", "ano"],
                    &["nesse", "ano"],
                    &["ano", "atual"],
                    &["ano", "corrente"],
                    &["ano", "vigente"],
                ],
            );
            longest(&mut best, this.map(|e| (y, e)));
            let last = self.seqs(
                j,
                &[
                    &["last", "year"],
                    &["previous", "year"],
                    &["prior", "year"],
                    &["the", "previous", "year"],
                    &["ano", "passado"],
                    &["ano", "anterior"],
                ],
            );
            longest(&mut best, last.map(|e| (y.saturating_sub(1), e)));
        }
        best
    }

    /// A point written as one token: "2025-03-05", "2025-03", "03/2025", "q3", "q3-2025",
    /// "2025q3", "mar/2025", "march", "2025"; with whether it is an ambiguous month word.
    fn token_point(w: &str) -> Option<(Point, bool)> {
        if let Some((m, amb)) = month_word(w) {
            return Some((Point::Month(m, None), amb));
        }
        if let Some(y) = year_word(w) {
            return Some((Point::Year(y), false));
        }
        if let Some(q) = quarter_word(w) {
            return Some((Point::Quarter(q, None), false));
        }
        if let Some(h) = half_word(w) {
            return Some((Point::Half(h, None), false));
        }
        // A part of a year written next to the year: "q3", "h1", "w12", "03", "mar".
        let part = |x: &str, y: i32, year_first: bool| -> Option<Point> {
            if let Some(m) = month_number(x) {
                return Some(Point::Month(m, Some(y)));
            }
            if let Some(q) = quarter_word(x) {
                return Some(Point::Quarter(q, Some(y)));
            }
            if let Some(h) = half_word(x) {
                return Some(Point::Half(h, Some(y)));
            }
            if let Some(n) = week_word(x).filter(|_| year_first) {
                return Some(Point::Week(n, Some(y)));
            }
            month_word(x).map(|(m, _)| Point::Month(m, Some(y)))
        };
        let parts: Vec<&str> = w.split(['-', '/']).collect();
        match parts.as_slice() {
            [y, m, d] => {
                let y = year_word(y)?;
                let m = month_number(m)?;
                let (d, suffix) = day_word(d)?;
                if suffix {
                    return None;
                }
                NaiveDate::from_ymd_opt(y, m, d)?;
                Some((Point::Day(m, d, Some(y)), false))
            }
            [a, b] => {
                let p = match (year_word(a), year_word(b)) {
                    (Some(y), None) => part(b, y, true)?,
                    (None, Some(y)) => part(a, y, false)?,
                    _ => return None,
                };
                Some((p, false))
            }
            [one] => {
                // "2025q3", "q32025", "2025h1".
                if one.len() == 6 {
                    let (a, b) = (one.get(..4)?, one.get(4..)?);
                    if let Some(y) = year_word(a)
                        && !b.bytes().all(|c| c.is_ascii_digit())
                    {
                        return part(b, y, true).map(|p| (p, false));
                    }
                    let (a, b) = (one.get(..2)?, one.get(2..)?);
                    if let Some(y) = year_word(b)
                        && !a.bytes().all(|c| c.is_ascii_digit())
                    {
                        return part(a, y, false).map(|p| (p, false));
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn day_end_ok(&self, j: usize) -> bool {
        j >= self.toks.len() || self.is(j, DAY_END_OK)
    }

    fn point(&self, i: usize) -> Option<(Point, usize)> {
        let w = self.w(i);
        let mut best: Option<(Point, usize)> = None;

        // "year 2025", "ano de 2025".
        if self.is(i, &["year", "ano"]) {
            let j = if self.is(i + 1, &["of", "de"]) {
                i + 2
            } else {
                i + 1
            };
            if let Some(y) = self.bare_year(j) {
                longest(&mut best, Some((Point::Year(y), j + 1)));
            }
        }
        // "3rd quarter of 2025", "terceiro trimestre".
        if let Some(q) = ordinal_word(w)
            && (1..=4).contains(&q)
            && self.is(i + 1, &["quarter", "trimestre"])
        {
            let cand = match self.year_qualifier(i + 2) {
                Some((y, e)) => (Point::Quarter(q, Some(y)), e),
                None => (Point::Quarter(q, None), i + 2),
            };
            longest(&mut best, Some(cand));
        }
        // "first half of 2025", "primeiro semestre de 2025".
        if let Some(h) = ordinal_word(w)
            && (1..=2).contains(&h)
            && self.is(i + 1, &["half", "semestre"])
        {
            let cand = match self.year_qualifier(i + 2) {
                Some((y, e)) => (Point::Half(h, Some(y)), e),
                None => (Point::Half(h, None), i + 2),
            };
            longest(&mut best, Some(cand));
        }
        // "week 12", "week 12 of 2025", "semana 12 de 2025".
        if self.is(i, &["week", "semana"])
            && let Some(n) = week_word(&format!("w{}", self.w(i + 1)))
            && !self.is(i + 2, &["days", "weeks", "dias", "semanas"])
        {
            let cand = match self.year_qualifier(i + 2) {
                Some((y, e)) => NaiveDate::from_isoywd_opt(y, n, Weekday::Mon)
                    .map(|_| (Point::Week(n, Some(y)), e)),
                None => Some((Point::Week(n, None), i + 2)),
            };
            longest(&mut best, cand);
        }
        // "the last quarter of 2024", "the first month of 2025", "último trimestre de 2024".
        if self.is(
            i,
            &["first", "last", "primeiro", "primeira", "ultimo", "ultima"],
        ) && self.is(i + 2, &["of", "de", "do", "da", "in"])
            && let Some((y, e)) = self.year_qualifier(i + 2)
        {
            let last = matches!(w, "last" | "ultimo" | "ultima");
            let p = match self.w(i + 1) {
                "quarter" | "trimestre" => Some(Point::Quarter(if last { 4 } else { 1 }, Some(y))),
                "half" | "semestre" => Some(Point::Half(if last { 2 } else { 1 }, Some(y))),
                "month" | "mes" => Some(Point::Month(if last { 12 } else { 1 }, Some(y))),
                "week" | "semana" => {
                    let weeks = NaiveDate::from_ymd_opt(y, 12, 28).map(|d| d.iso_week().week());
                    weeks.map(|n| Point::Week(if last { n } else { 1 }, Some(y)))
                }
                _ => None,
            };
            longest(&mut best, p.map(|p| (p, e)));
        }
        // "last March", "this March".
        if self.is(i, &["last", "this"])
            && let Some((m, _)) = month_word(self.w(i + 1))
        {
            let y = self.year();
            let y = if w == "last" && m >= self.today.month() {
                y.saturating_sub(1)
            } else {
                y
            };
            longest(&mut best, Some((Point::Month(m, Some(y)), i + 2)));
        }
        // "5 March 2025", "5th of March", "5 de março de 2025".
        if let Some((d, _)) = day_word(w) {
            let j = if self.is(i + 1, &["of", "de"]) {
                i + 2
            } else {
                i + 1
            };
            if let Some((m, _)) = month_word(self.w(j))
                && d <= days_in_month_max(m)
            {
                let cand = match self.year_qualifier(j + 1) {
                    Some((y, e)) => {
                        NaiveDate::from_ymd_opt(y, m, d).map(|_| (Point::Day(m, d, Some(y)), e))
                    }
                    None => Some((Point::Day(m, d, None), j + 1)),
                };
                longest(&mut best, cand);
            }
        }
        if let Some((p, ambiguous)) = Self::token_point(w) {
            match p {
                Point::Year(y) => {
                    if !self.year_excluded(i) {
                        longest(&mut best, Some((p, i + 1)));
                        // "2025 Q3", "2025 H1".
                        if let Some((next @ (Point::Quarter(_, None) | Point::Half(_, None)), _)) =
                            Self::token_point(self.w(i + 1))
                        {
                            longest(&mut best, Some((next.with_year(y), i + 2)));
                        }
                    }
                }
                Point::Month(m, None) => {
                    // "March 5, 2025", "March 5th", "March 5 to March 10".
                    if let Some((d, suffix)) = day_word(self.w(i + 1))
                        && d <= days_in_month_max(m)
                    {
                        let cand = match self.year_qualifier(i + 2) {
                            Some((y, e)) => NaiveDate::from_ymd_opt(y, m, d)
                                .map(|_| (Point::Day(m, d, Some(y)), e)),
                            None if suffix || self.day_end_ok(i + 2) => {
                                Some((Point::Day(m, d, None), i + 2))
                            }
                            None => None,
                        };
                        longest(&mut best, cand);
                    }
                    if let Some((y, e)) = self.year_qualifier(i + 1) {
                        longest(&mut best, Some((Point::Month(m, Some(y)), e)));
                    } else if !ambiguous || self.is_prev(i, AMBIGUOUS_MONTH_OK_AFTER) {
                        longest(&mut best, Some((p, i + 1)));
                    }
                }
                Point::Quarter(_, None) | Point::Half(_, None) => {
                    let cand = match self.year_qualifier(i + 1) {
                        Some((y, e)) => (p.with_year(y), e),
                        None => (p, i + 1),
                    };
                    longest(&mut best, Some(cand));
                }
                _ => longest(&mut best, Some((p, i + 1))),
            }
        }
        best
    }

    // --- relative expressions ---

    fn relative(&self, i: usize) -> Option<(Expr, usize)> {
        let w = self.w(i);
        let mut best: Option<(Expr, usize)> = None;
        let single = match w {
            "today" | "hoje" => Some(Expr::Today),
            "yesterday" | "ontem" => Some(Expr::Yesterday),
            "ytd" | "year-to-date" => Some(Expr::ToDate(Grain::Year)),
            "mtd" | "month-to-date" => Some(Expr::ToDate(Grain::Month)),
            "qtd" | "quarter-to-date" => Some(Expr::ToDate(Grain::Quarter)),
            "wtd" | "week-to-date" => Some(Expr::ToDate(Grain::Week)),
            "ttm" | "ltm" => Some(Expr::Rolling(Grain::Month, 12)),
            _ => None,
        };
        longest(&mut best, single.map(|x| (x, i + 1)));

        // "year to date".
        if let Some((g, false)) = unit_word(w)
            && g != Grain::Day
            && self.seq(i + 1, &["to", "date"]).is_some()
        {
            longest(&mut best, Some((Expr::ToDate(g), i + 3)));
        }
        // "so far this year".
        if let Some(j) = self.seqs(i, &[&["so", "far", "this"], &["so", "far", "in", "the"]])
            && let Some((g, false)) = unit_word(self.w(j))
            && g != Grain::Day
        {
            longest(&mut best, Some((Expr::ToDate(g), j + 1)));
        }
        // "acumulado do ano".
        if w == "acumulado"
            && self.is(
                i + 1,
                &["do", "no", "deste", "neste", "da", "na", "desta", "nesta"],
            )
            && let Some((g, false)) = unit_word(self.w(i + 2))
            && g != Grain::Day
        {
            longest(&mut best, Some((Expr::ToDate(g), i + 3)));
        }
        // "this month", "current quarter", "este mês", "neste ano"; "this year so far".
        if self.is(
            i,
            &[
                "this", "current", "este", "esta", "neste", "nesta", "esse", "essa", "nesse",
                "nessa",
            ],
        ) && let Some((g, false)) = unit_word(self.w(i + 1))
            && g != Grain::Day
        {
            longest(&mut best, Some((Expr::Current(g), i + 2)));
            if let Some(e) = self.seqs(i + 2, &[&["so", "far"], &["to", "date"], &["ate", "agora"]])
            {
                longest(&mut best, Some((Expr::ToDate(g), e)));
            }
        }
        // "mês atual", "mês passado", "semana passada", "dia anterior".
        if let Some((g, false)) = unit_word(w) {
            let next = self.w(i + 1);
            if matches!(next, "atual" | "corrente" | "vigente") && g != Grain::Day {
                longest(&mut best, Some((Expr::Current(g), i + 2)));
            }
            if next == "anterior" || (matches!(next, "passado" | "passada") && g != Grain::Day) {
                longest(&mut best, Some((Expr::Prev(g), i + 2)));
            }
        }
        // "last month", "previous day", "último trimestre".
        if self.is(
            i,
            &["last", "previous", "prior", "preceding", "ultimo", "ultima"],
        ) && let Some((g, false)) = unit_word(self.w(i + 1))
            && (g != Grain::Day || matches!(w, "previous" | "prior" | "preceding"))
        {
            longest(&mut best, Some((Expr::Prev(g), i + 2)));
        }
        // "past week" → the last 7 days.
        if w == "past"
            && let Some((g, false)) = unit_word(self.w(i + 1))
        {
            longest(&mut best, Some((Expr::Rolling(g, 1), i + 2)));
        }
        // "last 7 days", "past 3 months", "últimos 30 dias"; "previous 7 days".
        if self.is(
            i,
            &[
                "last",
                "past",
                "previous",
                "prior",
                "preceding",
                "trailing",
                "rolling",
                "ultimos",
                "ultimas",
                "ultimo",
                "ultima",
            ],
        ) && let Some(n) = count_word(self.w(i + 1))
            && let Some((g, _)) = unit_word(self.w(i + 2))
        {
            let x = if matches!(w, "previous" | "prior" | "preceding") {
                Expr::Preceding(g, n)
            } else {
                Expr::Rolling(g, n)
            };
            longest(&mut best, Some((x, i + 3)));
        }
        // "os 7 dias anteriores", "the 7 days before".
        if let Some(n) = count_word(w)
            && let Some((g, _)) = unit_word(self.w(i + 1))
            && self.is(i + 2, &["anteriores", "before", "prior", "earlier"])
        {
            longest(&mut best, Some((Expr::Preceding(g, n), i + 3)));
        }
        // "today so far".
        if w == "today" && self.seq(i + 1, &["so", "far"]).is_some() {
            longest(&mut best, Some((Expr::Today, i + 3)));
        }
        best
    }

    /// Only meaningful as a compared period: "previous period", "same period last year".
    fn compare_only(&self, i: usize) -> Option<(Expr, usize)> {
        let mut best = None;
        let prev = self.seqs(
            i,
            &[
                &["previous", "period"],
                &["prior", "period"],
                &["preceding", "period"],
                &["last", "period"],
                &["periodo", "anterior"],
                &["periodo", "passado"],
            ],
        );
        longest(&mut best, prev.map(|e| (Expr::PrevPeriod, e)));
        let same = self
            .seqs(
                i,
                &[
                    &["same", "period"],
                    &["same", "time"],
                    &["same", "day"],
                    &["same", "days"],
                    &["same", "dates"],
                    &["same", "week"],
                    &["same", "month"],
                    &["same", "quarter"],
                    &["mesmo", "periodo"],
                    &["mesmo", "dia"],
                    &["mesmo", "mes"],
                    &["mesmo", "trimestre"],
                    &["mesma", "semana"],
                    &["mesma", "data"],
                ],
            )
            .and_then(|j| {
                self.seqs(
                    j,
                    &[
                        &["last", "year"],
                        &["a", "year", "ago"],
                        &["one", "year", "ago"],
                        &["of", "last", "year"],
                        &["in", "last", "year"],
                        &["from", "last", "year"],
                        &["the", "previous", "year"],
                        &["the", "prior", "year"],
                        &["the", "year", "before"],
                        &["of", "the", "previous", "year"],
                        &["of", "the", "prior", "year"],
                        &["in", "the", "previous", "year"],
                        &["in", "the", "prior", "year"],
                        &["do", "ano", "passado"],
                        &["do", "ano", "anterior"],
                        &["no", "ano", "passado"],
                        &["no", "ano", "anterior"],
                    ],
                )
            });
        longest(&mut best, same.map(|e| (Expr::SameLastYear, e)));
        let ago = self.seqs(
            i,
            &[
                &["a", "year", "ago"],
                &["one", "year", "ago"],
                &["um", "ano", "atras"],
            ],
        );
        longest(&mut best, ago.map(|e| (Expr::SameLastYear, e)));
        best
    }

    // --- since, until, between ---

    /// What "since", "until" or "from … to" may point at: a point, or today, yesterday, this
    /// or last week/month/quarter/year; with `now`, also "now", "date", "agora" (today).
    fn anchor(&self, i: usize, now: bool) -> Option<(Expr, usize)> {
        let mut best = self.point(i).map(|(p, e)| (Expr::Point(p), e));
        if let Some((x, e)) = self.relative(i)
            && matches!(
                x,
                Expr::Today | Expr::Yesterday | Expr::Current(_) | Expr::Prev(_)
            )
        {
            longest(&mut best, Some((x, e)));
        }
        if now && self.is(i, &["now", "date", "agora", "present"]) {
            longest(&mut best, Some((Expr::Today, i + 1)));
        }
        best
    }

    /// An anchor, possibly after "the"/"o"/"a" and "the start/end of" ("o início/fim do");
    /// with whether it was "the end of".
    fn anchor_edge(&self, i: usize, now: bool) -> Option<(Expr, usize, bool)> {
        let mut best: Option<((Expr, bool), usize)> = None;
        let plain = |k: usize| {
            let mut b = self.anchor(k, now);
            if self.is(k, &["the", "o", "a"]) {
                longest(&mut b, self.anchor(k + 1, now));
            }
            b
        };
        longest(&mut best, plain(i).map(|(x, e)| ((x, false), e)));
        let start = self.seqs(
            i,
            &[
                &["beginning", "of"],
                &["start", "of"],
                &["the", "beginning", "of"],
                &["the", "start", "of"],
                &["inicio", "de"],
                &["inicio", "do"],
                &["inicio", "da"],
                &["o", "inicio", "de"],
                &["o", "inicio", "do"],
                &["o", "inicio", "da"],
                &["comeco", "do"],
                &["comeco", "da"],
                &["o", "comeco", "do"],
                &["o", "comeco", "da"],
            ],
        );
        let end = self.seqs(
            i,
            &[
                &["end", "of"],
                &["the", "end", "of"],
                &["fim", "de"],
                &["fim", "do"],
                &["fim", "da"],
                &["o", "fim", "de"],
                &["o", "fim", "do"],
                &["o", "fim", "da"],
                &["final", "de"],
                &["final", "do"],
                &["final", "da"],
                &["o", "final", "de"],
                &["o", "final", "do"],
                &["o", "final", "da"],
            ],
        );
        for (j, is_end) in [(start, false), (end, true)] {
            let Some(j) = j else { continue };
            longest(&mut best, plain(j).map(|(x, e)| ((x, is_end), e)));
            // "the start of the year", "o início do ano": the current one.
            let k = if self.is(j, &["the", "this"]) {
                j + 1
            } else {
                j
            };
            if let Some((g, false)) = unit_word(self.w(k))
                && g != Grain::Day
            {
                longest(&mut best, Some(((Expr::Current(g), is_end), k + 1)));
            }
        }
        best.map(|((x, is_end), e)| (x, e, is_end))
    }

    /// An anchor, possibly after "the" or "the start/end of".
    fn anchor_the(&self, i: usize, now: bool) -> Option<(Expr, usize)> {
        self.anchor_edge(i, now).map(|(x, e, _)| (x, e))
    }

    /// "since X", "from X", "until X", "before X", "through X", "after X".
    fn bounded(&self, i: usize) -> Option<(Expr, usize)> {
        let mut best = None;
        let since = self.seqs(
            i,
            &[
                &["since"],
                &["from"],
                &["starting"],
                &["starting", "from"],
                &["starting", "in"],
                &["starting", "on"],
                &["starting", "with"],
                &["beginning"],
                &["beginning", "in"],
                &["beginning", "on"],
                &["desde"],
                &["a", "partir", "de"],
                &["a", "partir", "do"],
                &["a", "partir", "da"],
            ],
        );
        if let Some(j) = since
            && let Some((x, e, is_end)) = self.anchor_edge(j, false)
        {
            let x = match x {
                // "orders from last month" is last month's orders.
                Expr::Today | Expr::Yesterday | Expr::Current(_) | Expr::Prev(_)
                    if self.w(i) == "from" && !is_end =>
                {
                    x
                }
                // "since the beginning of the year", "since this month": to date.
                Expr::Current(g) if !is_end => Expr::ToDate(g),
                x if is_end => Expr::After(Box::new(x)),
                x => Expr::Since(Box::new(x)),
            };
            longest(&mut best, Some((x, e)));
        }
        let until = self.seqs(
            i,
            &[
                &["until"],
                &["till"],
                &["til"],
                &["before"],
                &["up", "to"],
                &["prior", "to"],
                &["ate"],
                &["antes", "de"],
                &["antes", "do"],
                &["antes", "da"],
            ],
        );
        if let Some(j) = until
            && let Some((x, e, is_end)) = self.anchor_edge(j, true)
        {
            // "until today" and "until the end of June" include them.
            let x = if x == Expr::Today || is_end {
                Expr::Through(Box::new(x))
            } else {
                Expr::Until(Box::new(x))
            };
            longest(&mut best, Some((x, e)));
        }
        let through = self.seqs(
            i,
            &[&["through"], &["thru"], &["up", "to", "and", "including"]],
        );
        if let Some(j) = through
            && let Some((x, e)) = self.anchor_the(j, true)
        {
            longest(&mut best, Some((Expr::Through(Box::new(x)), e)));
        }
        let after = self.seqs(
            i,
            &[
                &["after"],
                &["apos"],
                &["depois", "de"],
                &["depois", "do"],
                &["depois", "da"],
            ],
        );
        if let Some(j) = after
            && let Some((x, e)) = self.anchor_the(j, false)
        {
            longest(&mut best, Some((Expr::After(Box::new(x)), e)));
        }
        best
    }

    /// "between X and Y", "from X to Y", "de X a Y", "X - Y", "X..Y", "2023-2025", "jan-mar".
    fn between(&self, i: usize) -> Option<(Expr, usize)> {
        let cm = self.compare_mode(i);
        let mut best = None;
        let pair = |a: Expr, b: Expr| Expr::Between(Box::new(a), Box::new(b));

        // One token: "2025-01-01..2025-03-31", "2023-2025", "jan-mar" (+ a year).
        if let Some((a, b)) = split_range(self.w(i)) {
            let cand = match (b.year(), self.year_qualifier(i + 1)) {
                (None, Some((y, e))) => (pair(Expr::Point(a), Expr::Point(b.with_year(y))), e),
                _ => (pair(Expr::Point(a), Expr::Point(b)), i + 1),
            };
            longest(&mut best, Some(cand));
        }

        let to_words: &[&str] = &[
            "to", "through", "thru", "until", "till", "-", "..", "a", "ate",
        ];
        // "between X and Y", "entre X e Y".
        if !cm
            && self.is(i, &["between", "entre"])
            && let Some((a, ae)) = self.anchor_the(i + 1, false)
            && self.is(ae, &["and", "e", "&", "-", "..", "to", "a", "ate"])
            && let Some((b, be)) = self.anchor_the(ae + 1, true)
        {
            longest(&mut best, Some((pair(a, b), be)));
        }
        // "from X to Y", "since X until Y", "de X a Y", "desde X até Y".
        let head = self.seqs(
            i,
            &[
                &["from"],
                &["since"],
                &["desde"],
                &["de"],
                &["starting", "from"],
                &["a", "partir", "de"],
            ],
        );
        if let Some(j) = head {
            let pt_de = self.w(i) == "de";
            let a = if pt_de {
                self.point(j).map(|(p, e)| (Expr::Point(p), e))
            } else {
                self.anchor_the(j, false)
            };
            if let Some((a, ae)) = a {
                let mut conn = None;
                if self.is(ae, to_words) {
                    conn = Some(ae + 1);
                }
                if let Some(e) = self.seq(ae, &["up", "to"]) {
                    conn = Some(e);
                }
                if let Some(c) = conn
                    && let Some((b, be)) = self.anchor_the(c, true)
                {
                    longest(&mut best, Some((pair(a, b), be)));
                }
            }
        }
        // "Jan 2025 to Mar 2025", "março a junho".
        if !cm
            && let Some((a, ae)) = self.point(i)
            && self.is(ae, to_words)
        {
            let b = self.point(ae + 1).map(|(p, e)| (Expr::Point(p), e));
            let b = b.or_else(|| {
                self.is(ae + 1, &["date", "now", "today", "hoje", "agora"])
                    .then_some((Expr::Today, ae + 2))
            });
            if let Some((b, be)) = b {
                longest(&mut best, Some((pair(Expr::Point(a), b), be)));
            }
        }
        best
    }
}

/// A range written as one token: "2025-01-01..2025-03-31", "2023-2025", "jan-mar", "q1-q3".
fn split_range(w: &str) -> Option<(Point, Point)> {
    if Parser::token_point(w).is_some() {
        return None;
    }
    if let Some((a, b)) = w.split_once("..") {
        let (pa, _) = Parser::token_point(a)?;
        let (pb, _) = Parser::token_point(b)?;
        return Some((pa, pb));
    }
    for (k, c) in w.char_indices() {
        if c != '-' {
            continue;
        }
        let (Some(a), Some(b)) = (w.get(..k), w.get(k + 1..)) else {
            continue;
        };
        if let (Some((pa, _)), Some((pb, _))) = (Parser::token_point(a), Parser::token_point(b)) {
            return Some((pa, pb));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// How a period may be moved back for "vs the previous period".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One calendar period.
    Unit(Grain),
    /// The start of a calendar period through today.
    ToDate(Grain),
    /// Whole months.
    Months(u32),
    /// Any run of days.
    Days,
    /// No start.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Period {
    start: NaiveDate,
    end: NaiveDate,
    label: String,
    kind: Kind,
}

impl Period {
    fn range(self) -> DateRange {
        DateRange {
            start: self.start,
            end: self.end,
            label: self.label,
        }
    }
}

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

/// The earliest start of an open-ended period.
fn floor() -> Option<NaiveDate> {
    ymd(1900, 1, 1)
}

fn grain_months(g: Grain) -> Option<u32> {
    match g {
        Grain::Month => Some(1),
        Grain::Quarter => Some(3),
        Grain::Year => Some(12),
        Grain::Day | Grain::Week => None,
    }
}

/// `d` moved back by `n` units (months clamp to the month's last day).
fn back(d: NaiveDate, g: Grain, n: u32) -> Option<NaiveDate> {
    match grain_months(g) {
        Some(k) => d.checked_sub_months(Months::new(k.checked_mul(n)?)),
        None => {
            let days = if g == Grain::Week {
                u64::from(n).checked_mul(7)?
            } else {
                u64::from(n)
            };
            d.checked_sub_days(Days::new(days))
        }
    }
}

/// The calendar period of grain `g` containing `d`.
fn unit_span(d: NaiveDate, g: Grain) -> Option<(NaiveDate, NaiveDate)> {
    let start = match g {
        Grain::Day => d,
        Grain::Week => {
            d.checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday())))?
        }
        Grain::Month => ymd(d.year(), d.month(), 1)?,
        Grain::Quarter => ymd(d.year(), quarter_first_month(d.month().div_ceil(3)), 1)?,
        Grain::Year => ymd(d.year(), 1, 1)?,
    };
    let end = match grain_months(g) {
        Some(k) => start.checked_add_months(Months::new(k))?,
        None => start.checked_add_days(Days::new(if g == Grain::Week { 7 } else { 1 }))?,
    };
    Some((start, end))
}

fn month_label(d: NaiveDate) -> String {
    let name = d
        .month0()
        .try_into()
        .ok()
        .and_then(|k: usize| MONTH_NAMES.get(k))
        .copied()
        .unwrap_or("?");
    format!("{name} {}", d.year())
}

/// "2025-03-05 to 2025-03-31" for `[start, end)`.
fn days_label(start: NaiveDate, end: NaiveDate) -> String {
    let last = end.pred_opt().unwrap_or(end);
    if last <= start {
        start.to_string()
    } else {
        format!("{start} to {last}")
    }
}

/// The name of one calendar period starting at `start`.
fn unit_label(start: NaiveDate, g: Grain) -> String {
    match g {
        Grain::Day => start.to_string(),
        Grain::Week => format!("week of {start}"),
        Grain::Month => month_label(start),
        Grain::Quarter => format!("Q{} {}", start.month().div_ceil(3), start.year()),
        Grain::Year => start.year().to_string(),
    }
}

/// The best name of `[start, end)`: a calendar period's, whole months', or the days'.
fn auto_label(start: NaiveDate, end: NaiveDate) -> String {
    for g in [
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Quarter,
        Grain::Year,
    ] {
        if unit_span(start, g) == Some((start, end)) {
            return unit_label(start, g);
        }
    }
    if start.day() == 1 && end.day() == 1 && start < end {
        let last = end.pred_opt().unwrap_or(end);
        if start.month() == 1 && end.month() == 1 {
            return format!("{} to {}", start.year(), last.year());
        }
        return format!("{} to {}", month_label(start), month_label(last));
    }
    days_label(start, end)
}

/// Whole months when `[start, end)` is month-aligned, else days.
fn kind_of(start: NaiveDate, end: NaiveDate) -> Kind {
    if start.day() == 1 && end.day() == 1 && start < end {
        let months = (i64::from(end.year()) * 12 + i64::from(end.month()))
            - (i64::from(start.year()) * 12 + i64::from(start.month()));
        if let Ok(n) = u32::try_from(months)
            && n > 0
        {
            return Kind::Months(n);
        }
    }
    Kind::Days
}

/// The year for a point with none: from `hint` (or today's), going back while it would start
/// after today.
fn pick_year(
    today: NaiveDate,
    hint: Option<i32>,
    start: impl Fn(i32) -> Option<NaiveDate>,
) -> Option<i32> {
    let y0 = hint.unwrap_or_else(|| today.year());
    (0..9).find_map(|k| {
        let y = y0.checked_sub(k)?;
        start(y).filter(|s| *s <= today).map(|_| y)
    })
}

fn resolve_point(p: Point, today: NaiveDate, hint: Option<i32>) -> Option<Period> {
    match p {
        Point::Year(y) => {
            let start = ymd(y, 1, 1)?;
            Some(Period {
                start,
                end: start.checked_add_months(Months::new(12))?,
                label: y.to_string(),
                kind: Kind::Unit(Grain::Year),
            })
        }
        Point::Quarter(q, y) => {
            let m = quarter_first_month(q);
            let y = match y {
                Some(y) => y,
                None => pick_year(today, hint, |y| ymd(y, m, 1))?,
            };
            let start = ymd(y, m, 1)?;
            Some(Period {
                start,
                end: start.checked_add_months(Months::new(3))?,
                label: format!("Q{q} {y}"),
                kind: Kind::Unit(Grain::Quarter),
            })
        }
        Point::Month(m, y) => {
            let y = match y {
                Some(y) => y,
                None => pick_year(today, hint, |y| ymd(y, m, 1))?,
            };
            let start = ymd(y, m, 1)?;
            Some(Period {
                start,
                end: start.checked_add_months(Months::new(1))?,
                label: month_label(start),
                kind: Kind::Unit(Grain::Month),
            })
        }
        Point::Half(h, y) => {
            let m = half_first_month(h);
            let y = match y {
                Some(y) => y,
                None => pick_year(today, hint, |y| ymd(y, m, 1))?,
            };
            let start = ymd(y, m, 1)?;
            Some(Period {
                start,
                end: start.checked_add_months(Months::new(6))?,
                label: format!("H{h} {y}"),
                kind: Kind::Months(6),
            })
        }
        Point::Week(w, y) => {
            let start_of = |y: i32| NaiveDate::from_isoywd_opt(y, w, Weekday::Mon);
            let y = match y {
                Some(y) => y,
                None => pick_year(today, hint, start_of)?,
            };
            let start = start_of(y)?;
            Some(Period {
                start,
                end: start.checked_add_days(Days::new(7))?,
                label: format!("{y}-W{w:02}"),
                kind: Kind::Unit(Grain::Week),
            })
        }
        Point::Day(m, d, y) => {
            let y = match y {
                Some(y) => y,
                None => pick_year(today, hint, |y| ymd(y, m, d))?,
            };
            let start = ymd(y, m, d)?;
            Some(Period {
                start,
                end: start.succ_opt()?,
                label: start.to_string(),
                kind: Kind::Unit(Grain::Day),
            })
        }
    }
}

/// Gives the end of a range with no year the other end's.
fn infer_years(a: Point, b: Point, today: NaiveDate) -> Option<(Point, Point)> {
    Some(match (a.year(), b.year()) {
        (Some(_), Some(_)) => (a, b),
        (None, Some(yb)) => {
            let ya = if a.key() <= b.key() {
                yb
            } else {
                yb.checked_sub(1)?
            };
            (a.with_year(ya), b)
        }
        (Some(ya), None) => {
            let yb = if b.key() >= a.key() {
                ya
            } else {
                ya.checked_add(1)?
            };
            (a, b.with_year(yb))
        }
        (None, None) => {
            let yb = resolve_point(b, today, None)?.start.year();
            let b = b.with_year(yb);
            let ya = if a.key() <= b.key() {
                yb
            } else {
                yb.checked_sub(1)?
            };
            (a.with_year(ya), b)
        }
    })
}

/// Wording for the current or previous calendar period.
fn relative_label(word: &str, g: Grain, start: NaiveDate, end: NaiveDate) -> String {
    match g {
        Grain::Day => format!(
            "{} ({start})",
            if word == "this" { "today" } else { "yesterday" }
        ),
        Grain::Week => format!("{word} week ({})", days_label(start, end)),
        _ => format!("{word} {} ({})", g.as_str(), unit_label(start, g)),
    }
}

fn resolve(e: &Expr, today: NaiveDate, hint: Option<i32>) -> Option<Period> {
    let tomorrow = today.succ_opt();
    match e {
        Expr::Point(p) => resolve_point(*p, today, hint),
        Expr::Today => Some(Period {
            start: today,
            end: tomorrow?,
            label: format!("today ({today})"),
            kind: Kind::Unit(Grain::Day),
        }),
        Expr::Yesterday => {
            let y = today.pred_opt()?;
            Some(Period {
                start: y,
                end: today,
                label: format!("yesterday ({y})"),
                kind: Kind::Unit(Grain::Day),
            })
        }
        Expr::Current(g) => {
            let (start, end) = unit_span(today, *g)?;
            Some(Period {
                start,
                end,
                label: relative_label("this", *g, start, end),
                kind: Kind::Unit(*g),
            })
        }
        Expr::Prev(g) => {
            let (cur, _) = unit_span(today, *g)?;
            let (start, end) = unit_span(cur.pred_opt()?, *g)?;
            Some(Period {
                start,
                end,
                label: relative_label("last", *g, start, end),
                kind: Kind::Unit(*g),
            })
        }
        Expr::ToDate(g) => {
            let (start, _) = unit_span(today, *g)?;
            let end = tomorrow?;
            let label = match g {
                Grain::Day => format!("today ({today})"),
                Grain::Week => format!("week to date ({})", days_label(start, end)),
                Grain::Month => format!("month to date {}", month_label(start)),
                Grain::Quarter => format!("quarter to date {}", unit_label(start, *g)),
                Grain::Year => format!("year to date {}", start.year()),
            };
            Some(Period {
                start,
                end,
                label,
                kind: Kind::ToDate(*g),
            })
        }
        Expr::Rolling(g, n) | Expr::Preceding(g, n) => {
            let end = tomorrow?;
            let (start, kind) = match grain_months(*g) {
                Some(k) => {
                    let months = k.checked_mul(*n)?;
                    let s = today.checked_sub_months(Months::new(months))?.succ_opt()?;
                    (s, Kind::Months(months))
                }
                None => {
                    let days = if *g == Grain::Week {
                        u64::from(*n).checked_mul(7)?
                    } else {
                        u64::from(*n)
                    };
                    (
                        today.checked_sub_days(Days::new(days.checked_sub(1)?))?,
                        Kind::Days,
                    )
                }
            };
            let what = if *n == 1 {
                format!("the past {}", g.as_str())
            } else {
                format!("the last {n} {}s", g.as_str())
            };
            Some(Period {
                start,
                end,
                label: format!("{what} ({})", days_label(start, end)),
                kind,
            })
        }
        Expr::PrevPeriod | Expr::SameLastYear => None,
        Expr::Since(x) => {
            let p = resolve(x, today, None)?;
            Some(Period {
                start: p.start,
                end: tomorrow?.max(p.start),
                label: format!("since {}", p.label),
                kind: Kind::Days,
            })
        }
        Expr::After(x) => {
            let p = resolve(x, today, None)?;
            Some(Period {
                start: p.end,
                end: tomorrow?.max(p.end),
                label: format!("after {}", p.label),
                kind: Kind::Days,
            })
        }
        Expr::Until(x) => {
            let p = resolve(x, today, None)?;
            Some(Period {
                start: floor()?.min(p.start),
                end: p.start,
                label: format!("before {}", p.label),
                kind: Kind::Open,
            })
        }
        Expr::Through(x) => {
            let p = resolve(x, today, None)?;
            Some(Period {
                start: floor()?.min(p.start),
                end: p.end,
                label: format!("through {}", p.label),
                kind: Kind::Open,
            })
        }
        Expr::Between(a, b) => {
            let (pa, pb) = match (a.as_ref(), b.as_ref()) {
                (Expr::Point(a), Expr::Point(b)) => {
                    let (a, b) = infer_years(*a, *b, today)?;
                    (
                        resolve_point(a, today, None)?,
                        resolve_point(b, today, None)?,
                    )
                }
                (a, b) => (resolve(a, today, None)?, resolve(b, today, None)?),
            };
            let start = pa.start.min(pb.start);
            let end = pa.end.max(pb.end);
            let label = if pa.label == pb.label {
                pa.label
            } else {
                format!("{} to {}", pa.label, pb.label)
            };
            Some(Period {
                start,
                end,
                label,
                kind: kind_of(start, end),
            })
        }
    }
}

fn derived(start: NaiveDate, end: NaiveDate) -> DateRange {
    DateRange {
        start,
        end,
        label: auto_label(start, end),
    }
}

/// "vs previous/last UNIT": `m` moved back one unit, or, when that would overlap `m`, the
/// one-unit period just before it.
fn prev_by_unit(m: &Period, g: Grain) -> Option<DateRange> {
    if m.kind == Kind::Open {
        return None;
    }
    let start = back(m.start, g, 1)?;
    let end = back(m.end, g, 1)?;
    if end <= m.start {
        Some(derived(start, end))
    } else {
        Some(derived(start, m.start))
    }
}

/// "vs the previous period": the period of the same calendar length just before `m`.
fn prev_period(m: &Period) -> Option<DateRange> {
    match m.kind {
        Kind::Unit(g) | Kind::ToDate(g) => Some(derived(back(m.start, g, 1)?, back(m.end, g, 1)?)),
        Kind::Months(n) => Some(derived(back(m.start, Grain::Month, n)?, m.start)),
        Kind::Days => {
            let len = u64::try_from(m.end.signed_duration_since(m.start).num_days()).ok()?;
            if len == 0 {
                return None;
            }
            Some(derived(m.start.checked_sub_days(Days::new(len))?, m.start))
        }
        Kind::Open => None,
    }
}

/// The compared period of `e` against the main period `m`.
fn resolve_compare(e: &Expr, m: &Period, today: NaiveDate) -> Option<DateRange> {
    match e {
        Expr::Prev(g) => prev_by_unit(m, *g),
        Expr::PrevPeriod => prev_period(m),
        Expr::Preceding(g, n) => {
            if m.kind == Kind::Open {
                return None;
            }
            let start = back(m.start, *g, *n)?;
            let unit = if *n == 1 {
                g.as_str().to_string()
            } else {
                format!("{n} {}s", g.as_str())
            };
            Some(DateRange {
                start,
                end: m.start,
                label: format!("the previous {unit} ({})", days_label(start, m.start)),
            })
        }
        Expr::SameLastYear => {
            if m.kind == Kind::Open {
                return None;
            }
            Some(derived(
                back(m.start, Grain::Year, 1)?,
                back(m.end, Grain::Year, 1)?,
            ))
        }
        Expr::Point(p) if p.year().is_none() => {
            resolve_point(*p, today, Some(m.start.year())).map(Period::range)
        }
        other => resolve(other, today, None).map(Period::range),
    }
}

/// "from X to Y" of two calendar periods of the same kind, after a change word: Y, then X.
fn change_pair(e: &Expr, today: NaiveDate) -> Option<(Period, Period)> {
    let Expr::Between(a, b) = e else { return None };
    let (Expr::Point(a), Expr::Point(b)) = (a.as_ref(), b.as_ref()) else {
        return None;
    };
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return None;
    }
    let (a, b) = infer_years(*a, *b, today)?;
    let (pa, pb) = (
        resolve_point(a, today, None)?,
        resolve_point(b, today, None)?,
    );
    (pa.start != pb.start).then_some((pb, pa))
}

fn time_expr(h: &Hit) -> Option<&Expr> {
    match &h.kind {
        HitKind::Time(e) => Some(e),
        HitKind::Grain(_) => None,
    }
}

fn assemble(text: &str, toks: &[Tok], today: NaiveDate, hits: &[Hit]) -> TimeFound {
    let mut found = TimeFound::default();
    let mut used: Vec<&Hit> = Vec::new();

    if let Some((g, h)) = hits.iter().find_map(|h| match h.kind {
        HitKind::Grain(g) => Some((g, h)),
        HitKind::Time(_) => None,
    }) {
        found.grain = Some(g);
        used.push(h);
    }

    let cmp = hits
        .iter()
        .find(|h| h.role == Role::Compare)
        .and_then(|h| time_expr(h).map(|e| (e, h)));
    let cmp_year = match cmp {
        Some((Expr::Point(p), _)) => p.year(),
        _ => None,
    };

    let change_at = toks
        .iter()
        .position(|t| CHANGE_WORDS.contains(&t.low.as_str()));
    let mut main: Option<Period> = None;
    let mut compare: Option<DateRange> = None;
    for h in hits.iter().filter(|h| h.role == Role::Main) {
        let Some(e) = time_expr(h) else { continue };
        // "how did revenue change from 2024 to 2025": 2025 compared with 2024.
        if found.grain.is_none()
            && cmp.is_none()
            && change_at.is_some_and(|c| c < h.start)
            && let Some((m, c)) = change_pair(e, today)
        {
            main = Some(m);
            compare = Some(c.range());
            used.push(h);
            break;
        }
        let hint = match e {
            Expr::Point(p) if p.year().is_none() => cmp_year,
            _ => None,
        };
        if let Some(p) = resolve(e, today, hint) {
            main = Some(p);
            used.push(h);
            break;
        }
    }

    if let Some((e, h)) = cmp {
        match &main {
            Some(m) => {
                compare = resolve_compare(e, m, today);
                if compare.is_some() {
                    used.push(h);
                }
            }
            None => match e {
                Expr::Prev(g) => {
                    if let Some(cur) = resolve(&Expr::Current(*g), today, None) {
                        compare = prev_by_unit(&cur, *g);
                        if compare.is_some() {
                            main = Some(cur);
                            used.push(h);
                        }
                    }
                }
                Expr::PrevPeriod | Expr::SameLastYear => {}
                other => {
                    if let Some(c) = resolve(other, today, None) {
                        match c.kind {
                            Kind::Unit(g) => {
                                if let Some(cur) = resolve(&Expr::Current(g), today, None) {
                                    compare = resolve_compare(other, &cur, today);
                                    if compare.is_some() {
                                        main = Some(cur);
                                        used.push(h);
                                    }
                                }
                            }
                            _ => {
                                main = Some(c);
                                used.push(h);
                            }
                        }
                    }
                }
            },
        }
    }
    found.range = main.map(Period::range);
    found.compare = compare;
    found.spans = spans(text, toks, &used);
    found
}

/// The byte ranges of the hits' tokens, sorted, with whitespace-only gaps merged.
fn spans(text: &str, toks: &[Tok], used: &[&Hit]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = used
        .iter()
        .filter_map(|h| {
            let first = toks.get(h.start)?;
            let last = toks.get(h.end.checked_sub(1)?)?;
            (first.start < last.end).then_some(first.start..last.end)
        })
        .collect();
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        if let Some(prev) = out.last_mut() {
            let gap_blank = text
                .get(prev.end.min(r.start)..r.start)
                .is_some_and(|g| g.chars().all(char::is_whitespace));
            if r.start <= prev.end || gap_blank {
                prev.end = prev.end.max(r.end);
                continue;
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn today() -> NaiveDate {
        d(2025, 12, 4)
    }

    /// The question with the spans taken out, whitespace collapsed.
    fn rest(text: &str, f: &TimeFound) -> String {
        let mut out = String::new();
        let mut at = 0;
        for r in &f.spans {
            out.push_str(&text[at..r.start]);
            out.push(' ');
            at = r.end;
        }
        out.push_str(&text[at..]);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn range_of(text: &str, t: NaiveDate) -> (NaiveDate, NaiveDate, String) {
        let f = find(text, t);
        let r = f
            .range
            .clone()
            .unwrap_or_else(|| panic!("no range in {text:?}: {f:?}"));
        (r.start, r.end, r.label)
    }

    fn check(text: &str, t: NaiveDate, start: NaiveDate, end: NaiveDate) -> TimeFound {
        let f = find(text, t);
        let r = f
            .range
            .clone()
            .unwrap_or_else(|| panic!("no range in {text:?}: {f:?}"));
        assert_eq!((r.start, r.end), (start, end), "{text:?}: {f:?}");
        f
    }

    fn check_cmp(
        text: &str,
        t: NaiveDate,
        main: (NaiveDate, NaiveDate),
        cmp: (NaiveDate, NaiveDate),
    ) -> TimeFound {
        let f = check(text, t, main.0, main.1);
        let c = f
            .compare
            .clone()
            .unwrap_or_else(|| panic!("no compare in {text:?}: {f:?}"));
        assert_eq!((c.start, c.end), cmp, "{text:?}: {f:?}");
        f
    }

    fn nothing(text: &str) {
        let f = find(text, today());
        assert_eq!(f, TimeFound::default(), "{text:?}");
    }

    // --- grain ---

    #[test]
    fn grain_names() {
        for g in [
            Grain::Day,
            Grain::Week,
            Grain::Month,
            Grain::Quarter,
            Grain::Year,
        ] {
            assert_eq!(Grain::parse(g.as_str()), Some(g));
            assert_eq!(Grain::parse(&g.as_str().to_uppercase()), Some(g));
        }
        assert_eq!(Grain::parse(" Monthly "), Some(Grain::Month));
        assert_eq!(Grain::parse("annual"), Some(Grain::Year));
        assert_eq!(Grain::parse("fortnight"), None);
        assert_eq!(Grain::parse(""), None);
    }

    #[test]
    fn grains_english() {
        let cases = [
            ("monthly revenue", Grain::Month, "revenue"),
            ("revenue by month", Grain::Month, "revenue"),
            ("revenue per month", Grain::Month, "revenue"),
            ("revenue each month", Grain::Month, "revenue"),
            ("revenue every month", Grain::Month, "revenue"),
            ("revenue month by month", Grain::Month, "revenue"),
            ("revenue month over month", Grain::Month, "revenue"),
            ("weekly orders", Grain::Week, "orders"),
            ("orders by week", Grain::Week, "orders"),
            ("daily signups", Grain::Day, "signups"),
            ("signups per day", Grain::Day, "signups"),
            ("signups by date", Grain::Day, "signups"),
            ("quarterly revenue", Grain::Quarter, "revenue"),
            ("revenue by quarter", Grain::Quarter, "revenue"),
            ("yearly revenue", Grain::Year, "revenue"),
            ("annual revenue", Grain::Year, "revenue"),
            ("revenue by year", Grain::Year, "revenue"),
            ("revenue per year", Grain::Year, "revenue"),
            ("revenue year over year", Grain::Year, "revenue"),
            ("revenue over time", Grain::Month, "revenue"),
            ("Revenue By Quarter?", Grain::Quarter, "Revenue ?"),
        ];
        for (text, g, left) in cases {
            let f = find(text, today());
            assert_eq!(f.grain, Some(g), "{text}");
            assert_eq!(f.range, None, "{text}");
            assert_eq!(rest(text, &f), left, "{text}");
        }
    }

    #[test]
    fn grains_portuguese() {
        let cases = [
            ("receita por mês", Grain::Month),
            ("receita por mes", Grain::Month),
            ("receita mensal", Grain::Month),
            ("receita mês a mês", Grain::Month),
            ("pedidos por dia", Grain::Day),
            ("pedidos diários", Grain::Day),
            ("pedidos por semana", Grain::Week),
            ("pedidos semanais", Grain::Week),
            ("receita por trimestre", Grain::Quarter),
            ("receita trimestral", Grain::Quarter),
            ("receita por ano", Grain::Year),
            ("receita anual", Grain::Year),
            ("receita ao longo do tempo", Grain::Month),
        ];
        for (text, g) in cases {
            let f = find(text, today());
            assert_eq!(f.grain, Some(g), "{text}");
            let left = rest(text, &f);
            assert!(left == "receita" || left == "pedidos", "{text}: {left}");
        }
    }

    #[test]
    fn adjectives_that_name_things_are_not_grains() {
        for text in [
            "revenue from monthly plans",
            "count of annual subscriptions",
            "monthly recurring revenue",
            "daily active users",
            "receita do plano mensal",
            "receita recorrente mensal",
        ] {
            assert_eq!(find(text, today()).grain, None, "{text}");
        }
    }

    // --- years ---

    #[test]
    fn years() {
        for text in [
            "total revenue in 2025",
            "2025 orders",
            "revenue for 2025",
            "revenue during 2025",
            "receita em 2025",
            "revenue in the year 2025",
            "receita no ano de 2025",
            "revenue (2025)",
        ] {
            let f = check(text, today(), d(2025, 1, 1), d(2026, 1, 1));
            assert_eq!(f.range.as_ref().unwrap().label, "2025", "{text}");
        }
        let f = find("total revenue in 2025", today());
        assert_eq!(rest("total revenue in 2025", &f), "total revenue");
        let f = find("2025 orders", today());
        assert_eq!(rest("2025 orders", &f), "orders");
        let f = find("revenue in the year 2025", today());
        assert_eq!(rest("revenue in the year 2025", &f), "revenue");
    }

    #[test]
    fn numbers_that_are_not_years() {
        for text in [
            "top 2000 customers",
            "bottom 1999 products",
            "first 2000 orders",
            "order 12345",
            "order 2024",
            "orders over 2000",
            "customers with more than 2000 orders",
            "deals above $2000",
            "deals of $ 2000",
            "growth of 2000%",
            "fy2025 revenue",
            "FY 2025 revenue",
            "orders between 1000 and 2000",
            "revenue 1899",
            "revenue 2101",
            "pedidos acima de 2000",
            "mais de 2000 pedidos",
            "in the wild",
            "what is our revenue",
        ] {
            let f = find(text, today());
            assert_eq!(f.range, None, "{text}: {f:?}");
            assert!(f.spans.is_empty(), "{text}: {f:?}");
        }
    }

    #[test]
    fn last_2000_days_is_a_count() {
        let f = check(
            "orders in the last 2000 days",
            today(),
            d(2020, 6, 14),
            d(2025, 12, 5),
        );
        assert_eq!(rest("orders in the last 2000 days", &f), "orders");
    }

    // --- quarters ---

    #[test]
    fn quarters() {
        for text in [
            "revenue in Q3 2025",
            "revenue q3 of 2025",
            "revenue Q3",
            "revenue in the 3rd quarter of 2025",
            "revenue third quarter 2025",
            "revenue 2025 Q3",
            "revenue Q3-2025",
            "revenue q3/2025",
            "revenue 2025q3",
            "revenue Q3 in 2025",
            "revenue Q3 this year",
            "receita no 3º trimestre de 2025",
            "receita no 3o trimestre de 2025",
            "receita no terceiro trimestre de 2025",
            "receita T3 2025",
        ] {
            let f = check(text, today(), d(2025, 7, 1), d(2025, 10, 1));
            assert_eq!(f.range.as_ref().unwrap().label, "Q3 2025", "{text}");
            let left = rest(text, &f);
            assert!(left == "revenue" || left == "receita", "{text}: {left:?}");
        }
        check(
            "revenue Q3 last year",
            today(),
            d(2024, 7, 1),
            d(2024, 10, 1),
        );
        check("revenue Q4", today(), d(2025, 10, 1), d(2026, 1, 1));
        // Not started yet this year → last year's.
        check("revenue Q2", d(2025, 3, 31), d(2024, 4, 1), d(2024, 7, 1));
        check("revenue Q2", d(2025, 4, 1), d(2025, 4, 1), d(2025, 7, 1));
        check("revenue Q1", d(2025, 1, 1), d(2025, 1, 1), d(2025, 4, 1));
        check("revenue Q4", d(2025, 1, 1), d(2024, 10, 1), d(2025, 1, 1));
        check("first quarter", today(), d(2025, 1, 1), d(2025, 4, 1));
        check(
            "the fourth quarter of 2024",
            today(),
            d(2024, 10, 1),
            d(2025, 1, 1),
        );
    }

    // --- months ---

    #[test]
    fn months() {
        for text in [
            "revenue in March 2025",
            "revenue march of 2025",
            "revenue mar 2025",
            "revenue Mar. 2025",
            "revenue 2025-03",
            "revenue 03/2025",
            "revenue in March",
            "revenue in March this year",
            "receita em março de 2025",
            "receita em março",
            "receita em marco",
            "receita em março deste ano",
            "receita mar/2025",
        ] {
            let f = check(text, today(), d(2025, 3, 1), d(2025, 4, 1));
            assert_eq!(f.range.as_ref().unwrap().label, "March 2025", "{text}");
            let left = rest(text, &f);
            assert!(left == "revenue" || left == "receita", "{text}: {left:?}");
        }
        check(
            "revenue in March last year",
            today(),
            d(2024, 3, 1),
            d(2024, 4, 1),
        );
        check(
            "receita em março do ano passado",
            today(),
            d(2024, 3, 1),
            d(2024, 4, 1),
        );
        check("december", today(), d(2025, 12, 1), d(2026, 1, 1));
    }

    #[test]
    fn month_without_year_is_the_most_recent_started() {
        check("in March", d(2025, 3, 15), d(2025, 3, 1), d(2025, 4, 1));
        check("in March", d(2025, 3, 1), d(2025, 3, 1), d(2025, 4, 1));
        check("in March", d(2025, 2, 28), d(2024, 3, 1), d(2024, 4, 1));
        check("in March", d(2025, 1, 1), d(2024, 3, 1), d(2024, 4, 1));
        check(
            "in December",
            d(2025, 12, 31),
            d(2025, 12, 1),
            d(2026, 1, 1),
        );
        check("in January", d(2025, 1, 1), d(2025, 1, 1), d(2025, 2, 1));
    }

    #[test]
    fn last_and_this_month_names() {
        check(
            "revenue last March",
            d(2025, 3, 15),
            d(2024, 3, 1),
            d(2024, 4, 1),
        );
        check(
            "revenue last March",
            d(2025, 4, 15),
            d(2025, 3, 1),
            d(2025, 4, 1),
        );
        check(
            "revenue this March",
            d(2025, 1, 15),
            d(2025, 3, 1),
            d(2025, 4, 1),
        );
    }

    #[test]
    fn ambiguous_month_words() {
        // "may" is a month only near a year/day or after a time word.
        assert_eq!(find("we may want revenue", today()).range, None);
        check("orders in May", today(), d(2025, 5, 1), d(2025, 6, 1));
        check("orders May 2024", today(), d(2024, 5, 1), d(2024, 6, 1));
        assert_eq!(find("sign out", today()).range, None);
        assert_eq!(find("set a goal", today()).range, None);
        assert_eq!(find("3 days ago", today()).range, None);
        check("pedidos em out", today(), d(2025, 10, 1), d(2025, 11, 1));
        check(
            "pedidos em dez de 2024",
            today(),
            d(2024, 12, 1),
            d(2025, 1, 1),
        );
    }

    // --- days ---

    #[test]
    fn days() {
        for text in [
            "orders on 2025-03-05",
            "orders on 2025/03/05",
            "orders on March 5, 2025",
            "orders on March 5th 2025",
            "orders on 5 March 2025",
            "orders on the 5th of March 2025",
            "pedidos em 5 de março de 2025",
        ] {
            let f = check(text, today(), d(2025, 3, 5), d(2025, 3, 6));
            assert_eq!(f.range.as_ref().unwrap().label, "2025-03-05", "{text}");
            let left = rest(text, &f);
            assert!(left == "orders" || left == "pedidos", "{text}: {left:?}");
        }
        check("orders on March 5th", today(), d(2025, 3, 5), d(2025, 3, 6));
        check(
            "orders on March 5th",
            d(2025, 3, 4),
            d(2024, 3, 5),
            d(2024, 3, 6),
        );
        check(
            "orders on Feb 29",
            d(2025, 6, 1),
            d(2024, 2, 29),
            d(2024, 3, 1),
        );
        // An invalid date is not read as a date.
        assert_eq!(find("orders on 2025-02-30", today()).range, None);
        assert_eq!(find("orders on 2025-13-01", today()).range, None);
        // "March 2 plans" is not a day: the month alone.
        check("March 2 plans", today(), d(2025, 3, 1), d(2025, 4, 1));
        // Ambiguous numeric dates are not read as days.
        let f = find("orders on 05/03/2025", today());
        assert_eq!(f.range, None);
    }

    // --- relative ---

    #[test]
    fn relative_english() {
        let t = today(); // Thursday 2025-12-04
        let cases = [
            (
                "today",
                d(2025, 12, 4),
                d(2025, 12, 5),
                "today (2025-12-04)",
            ),
            (
                "yesterday",
                d(2025, 12, 3),
                d(2025, 12, 4),
                "yesterday (2025-12-03)",
            ),
            (
                "this week",
                d(2025, 12, 1),
                d(2025, 12, 8),
                "this week (2025-12-01 to 2025-12-07)",
            ),
            (
                "last week",
                d(2025, 11, 24),
                d(2025, 12, 1),
                "last week (2025-11-24 to 2025-11-30)",
            ),
            (
                "this month",
                d(2025, 12, 1),
                d(2026, 1, 1),
                "this month (December 2025)",
            ),
            (
                "current month",
                d(2025, 12, 1),
                d(2026, 1, 1),
                "this month (December 2025)",
            ),
            (
                "last month",
                d(2025, 11, 1),
                d(2025, 12, 1),
                "last month (November 2025)",
            ),
            (
                "previous month",
                d(2025, 11, 1),
                d(2025, 12, 1),
                "last month (November 2025)",
            ),
            (
                "this quarter",
                d(2025, 10, 1),
                d(2026, 1, 1),
                "this quarter (Q4 2025)",
            ),
            (
                "last quarter",
                d(2025, 7, 1),
                d(2025, 10, 1),
                "last quarter (Q3 2025)",
            ),
            (
                "this year",
                d(2025, 1, 1),
                d(2026, 1, 1),
                "this year (2025)",
            ),
            (
                "last year",
                d(2024, 1, 1),
                d(2025, 1, 1),
                "last year (2024)",
            ),
            (
                "previous day",
                d(2025, 12, 3),
                d(2025, 12, 4),
                "yesterday (2025-12-03)",
            ),
            (
                "year to date",
                d(2025, 1, 1),
                d(2025, 12, 5),
                "year to date 2025",
            ),
            ("ytd", d(2025, 1, 1), d(2025, 12, 5), "year to date 2025"),
            ("YTD", d(2025, 1, 1), d(2025, 12, 5), "year to date 2025"),
            (
                "year-to-date",
                d(2025, 1, 1),
                d(2025, 12, 5),
                "year to date 2025",
            ),
            (
                "so far this year",
                d(2025, 1, 1),
                d(2025, 12, 5),
                "year to date 2025",
            ),
            (
                "this year so far",
                d(2025, 1, 1),
                d(2025, 12, 5),
                "year to date 2025",
            ),
            (
                "month to date",
                d(2025, 12, 1),
                d(2025, 12, 5),
                "month to date December 2025",
            ),
            (
                "mtd",
                d(2025, 12, 1),
                d(2025, 12, 5),
                "month to date December 2025",
            ),
            (
                "quarter to date",
                d(2025, 10, 1),
                d(2025, 12, 5),
                "quarter to date Q4 2025",
            ),
            (
                "qtd",
                d(2025, 10, 1),
                d(2025, 12, 5),
                "quarter to date Q4 2025",
            ),
            (
                "wtd",
                d(2025, 12, 1),
                d(2025, 12, 5),
                "week to date (2025-12-01 to 2025-12-04)",
            ),
            (
                "the last 7 days",
                d(2025, 11, 28),
                d(2025, 12, 5),
                "the last 7 days (2025-11-28 to 2025-12-04)",
            ),
            (
                "last 7 days",
                d(2025, 11, 28),
                d(2025, 12, 5),
                "the last 7 days (2025-11-28 to 2025-12-04)",
            ),
            (
                "past 30 days",
                d(2025, 11, 5),
                d(2025, 12, 5),
                "the last 30 days (2025-11-05 to 2025-12-04)",
            ),
            (
                "last 2 weeks",
                d(2025, 11, 21),
                d(2025, 12, 5),
                "the last 2 weeks (2025-11-21 to 2025-12-04)",
            ),
            (
                "last 3 months",
                d(2025, 9, 5),
                d(2025, 12, 5),
                "the last 3 months (2025-09-05 to 2025-12-04)",
            ),
            (
                "last three months",
                d(2025, 9, 5),
                d(2025, 12, 5),
                "the last 3 months (2025-09-05 to 2025-12-04)",
            ),
            (
                "trailing 12 months",
                d(2024, 12, 5),
                d(2025, 12, 5),
                "the last 12 months (2024-12-05 to 2025-12-04)",
            ),
            (
                "ttm",
                d(2024, 12, 5),
                d(2025, 12, 5),
                "the last 12 months (2024-12-05 to 2025-12-04)",
            ),
            (
                "last 2 quarters",
                d(2025, 6, 5),
                d(2025, 12, 5),
                "the last 2 quarters (2025-06-05 to 2025-12-04)",
            ),
            (
                "last 2 years",
                d(2023, 12, 5),
                d(2025, 12, 5),
                "the last 2 years (2023-12-05 to 2025-12-04)",
            ),
            (
                "the past week",
                d(2025, 11, 28),
                d(2025, 12, 5),
                "the past week (2025-11-28 to 2025-12-04)",
            ),
            (
                "last 1 day",
                d(2025, 12, 4),
                d(2025, 12, 5),
                "the past day (2025-12-04 to 2025-12-04)",
            ),
        ];
        for (text, s, e, label) in cases {
            let (rs, re, rl) = range_of(text, t);
            assert_eq!((rs, re), (s, e), "{text}");
            assert_eq!(
                rl,
                label.replace("(2025-12-04 to 2025-12-04)", "(2025-12-04)"),
                "{text}"
            );
            let f = find(text, t);
            assert_eq!(f.spans, vec![0..text.len()], "{text}");
        }
    }

    #[test]
    fn relative_portuguese() {
        let t = today();
        let cases = [
            ("hoje", d(2025, 12, 4), d(2025, 12, 5)),
            ("ontem", d(2025, 12, 3), d(2025, 12, 4)),
            ("esta semana", d(2025, 12, 1), d(2025, 12, 8)),
            ("nesta semana", d(2025, 12, 1), d(2025, 12, 8)),
            ("semana passada", d(2025, 11, 24), d(2025, 12, 1)),
            ("este mês", d(2025, 12, 1), d(2026, 1, 1)),
            ("neste mês", d(2025, 12, 1), d(2026, 1, 1)),
            ("mês atual", d(2025, 12, 1), d(2026, 1, 1)),
            ("mês passado", d(2025, 11, 1), d(2025, 12, 1)),
            ("no mês passado", d(2025, 11, 1), d(2025, 12, 1)),
            ("mes passado", d(2025, 11, 1), d(2025, 12, 1)),
            ("mês anterior", d(2025, 11, 1), d(2025, 12, 1)),
            ("último mês", d(2025, 11, 1), d(2025, 12, 1)),
            ("este trimestre", d(2025, 10, 1), d(2026, 1, 1)),
            ("trimestre passado", d(2025, 7, 1), d(2025, 10, 1)),
            ("último trimestre", d(2025, 7, 1), d(2025, 10, 1)),
            ("este ano", d(2025, 1, 1), d(2026, 1, 1)),
            ("ano passado", d(2024, 1, 1), d(2025, 1, 1)),
            ("no ano passado", d(2024, 1, 1), d(2025, 1, 1)),
            ("últimos 7 dias", d(2025, 11, 28), d(2025, 12, 5)),
            ("nos últimos 7 dias", d(2025, 11, 28), d(2025, 12, 5)),
            ("ultimos 7 dias", d(2025, 11, 28), d(2025, 12, 5)),
            ("últimas 2 semanas", d(2025, 11, 21), d(2025, 12, 5)),
            ("últimos 3 meses", d(2025, 9, 5), d(2025, 12, 5)),
            ("últimos três meses", d(2025, 9, 5), d(2025, 12, 5)),
            ("no acumulado do ano", d(2025, 1, 1), d(2025, 12, 5)),
            ("acumulado do mês", d(2025, 12, 1), d(2025, 12, 5)),
        ];
        for (text, s, e) in cases {
            let f = check(text, t, s, e);
            assert_eq!(f.spans, vec![0..text.len()], "{text}");
        }
        let text = "pedidos no mês passado";
        let f = find(text, t);
        assert_eq!(rest(text, &f), "pedidos");
    }

    #[test]
    fn weeks_are_iso_weeks() {
        // Sunday 2025-12-07 belongs to the week starting Monday 2025-12-01.
        check("this week", d(2025, 12, 7), d(2025, 12, 1), d(2025, 12, 8));
        check("this week", d(2025, 12, 1), d(2025, 12, 1), d(2025, 12, 8));
        // Across a year boundary: Thursday 2026-01-01.
        check("last week", d(2026, 1, 1), d(2025, 12, 22), d(2025, 12, 29));
        check("this week", d(2026, 1, 1), d(2025, 12, 29), d(2026, 1, 5));
    }

    #[test]
    fn relative_on_edge_days() {
        let jan1 = d(2025, 1, 1);
        check("last month", jan1, d(2024, 12, 1), d(2025, 1, 1));
        check("last quarter", jan1, d(2024, 10, 1), d(2025, 1, 1));
        check("ytd", jan1, d(2025, 1, 1), d(2025, 1, 2));
        check("yesterday", jan1, d(2024, 12, 31), d(2025, 1, 1));
        check("last 7 days", jan1, d(2024, 12, 26), d(2025, 1, 2));
        let dec31 = d(2025, 12, 31);
        check("this month", dec31, d(2025, 12, 1), d(2026, 1, 1));
        check("ytd", dec31, d(2025, 1, 1), d(2026, 1, 1));
        check("last 3 months", dec31, d(2025, 10, 1), d(2026, 1, 1));
        // Month arithmetic clamps: 2025-03-31 minus one month is 2025-02-28.
        check("last month", d(2025, 3, 31), d(2025, 2, 1), d(2025, 3, 1));
        check("last 1 month", d(2025, 3, 31), d(2025, 3, 1), d(2025, 4, 1));
    }

    // --- since / until / between ---

    #[test]
    fn since() {
        let f = check("orders since March", today(), d(2025, 3, 1), d(2025, 12, 5));
        assert_eq!(f.range.as_ref().unwrap().label, "since March 2025");
        assert_eq!(rest("orders since March", &f), "orders");
        check(
            "orders since March",
            d(2025, 3, 15),
            d(2025, 3, 1),
            d(2025, 3, 16),
        );
        check(
            "orders since March",
            d(2025, 2, 1),
            d(2024, 3, 1),
            d(2025, 2, 2),
        );
        check(
            "orders since 2024-06-01",
            today(),
            d(2024, 6, 1),
            d(2025, 12, 5),
        );
        check(
            "orders since Q2 2025",
            today(),
            d(2025, 4, 1),
            d(2025, 12, 5),
        );
        check(
            "orders from March 2025",
            today(),
            d(2025, 3, 1),
            d(2025, 12, 5),
        );
        check(
            "orders starting from March 2025",
            today(),
            d(2025, 3, 1),
            d(2025, 12, 5),
        );
        check(
            "orders since last month",
            today(),
            d(2025, 11, 1),
            d(2025, 12, 5),
        );
        check(
            "pedidos desde março",
            today(),
            d(2025, 3, 1),
            d(2025, 12, 5),
        );
        check(
            "pedidos a partir de abril",
            today(),
            d(2025, 4, 1),
            d(2025, 12, 5),
        );
        check(
            "orders after June 2025",
            today(),
            d(2025, 7, 1),
            d(2025, 12, 5),
        );
        // In the future: an empty range.
        check("orders since 2030", today(), d(2030, 1, 1), d(2030, 1, 1));
    }

    #[test]
    fn until() {
        let f = check(
            "orders until June 2025",
            today(),
            d(1900, 1, 1),
            d(2025, 6, 1),
        );
        assert_eq!(f.range.as_ref().unwrap().label, "before June 2025");
        assert_eq!(rest("orders until June 2025", &f), "orders");
        check(
            "orders before June 2025",
            today(),
            d(1900, 1, 1),
            d(2025, 6, 1),
        );
        check(
            "orders prior to 2025",
            today(),
            d(1900, 1, 1),
            d(2025, 1, 1),
        );
        let f = check(
            "pedidos até junho de 2025",
            today(),
            d(1900, 1, 1),
            d(2025, 6, 1),
        );
        assert_eq!(f.range.as_ref().unwrap().label, "before June 2025");
        assert_eq!(rest("pedidos até junho de 2025", &f), "pedidos");
        check(
            "orders through June 2025",
            today(),
            d(1900, 1, 1),
            d(2025, 7, 1),
        );
        check("orders until today", today(), d(1900, 1, 1), d(2025, 12, 5));
    }

    #[test]
    fn between() {
        let text = "revenue between 2025-01-01 and 2025-03-31";
        let f = check(text, today(), d(2025, 1, 1), d(2025, 4, 1));
        assert_eq!(f.range.as_ref().unwrap().label, "2025-01-01 to 2025-03-31");
        assert_eq!(rest(text, &f), "revenue");
        for text in [
            "revenue 2025-01-01..2025-03-31",
            "revenue from 2025-01-01 to 2025-03-31",
            "revenue 2025-01-01 - 2025-03-31",
            "revenue 2025-01-01 – 2025-03-31",
            "receita entre 2025-01-01 e 2025-03-31",
            "revenue from Jan 2025 to Mar 2025",
            "revenue from Jan to Mar 2025",
            "revenue from January through March 2025",
            "revenue Jan 2025 - Mar 2025",
            "revenue jan-mar 2025",
            "revenue between January and March 2025",
            "revenue from Q1 2025 to Q1 2025",
            "receita de janeiro a março de 2025",
            "receita de janeiro até março de 2025",
            "receita entre janeiro e março de 2025",
        ] {
            let f = check(text, today(), d(2025, 1, 1), d(2025, 4, 1));
            let left = rest(text, &f);
            assert!(left == "revenue" || left == "receita", "{text}: {left:?}");
        }
        let f = check(
            "revenue from Jan 2025 to Mar 2025",
            today(),
            d(2025, 1, 1),
            d(2025, 4, 1),
        );
        assert_eq!(f.range.unwrap().label, "January 2025 to March 2025");
        let f = check(
            "revenue from 2023 to 2025",
            today(),
            d(2023, 1, 1),
            d(2026, 1, 1),
        );
        assert_eq!(f.range.unwrap().label, "2023 to 2025");
        check("revenue 2023-2025", today(), d(2023, 1, 1), d(2026, 1, 1));
        check("revenue 2023..2025", today(), d(2023, 1, 1), d(2026, 1, 1));
        // The earlier end moves to the year before when needed.
        check(
            "revenue from Nov to Feb 2025",
            today(),
            d(2024, 11, 1),
            d(2025, 3, 1),
        );
        check(
            "revenue from Nov 2024 to Feb",
            today(),
            d(2024, 11, 1),
            d(2025, 3, 1),
        );
        // Neither end has a year: the later end is the most recent.
        check(
            "revenue from November to January",
            today(),
            d(2024, 11, 1),
            d(2025, 2, 1),
        );
        // Ends given backwards are swapped.
        check(
            "revenue from 2025 to 2023",
            today(),
            d(2023, 1, 1),
            d(2026, 1, 1),
        );
        // To today.
        check(
            "revenue from March to date",
            today(),
            d(2025, 3, 1),
            d(2025, 12, 5),
        );
        check(
            "receita desde março até hoje",
            today(),
            d(2025, 3, 1),
            d(2025, 12, 5),
        );
        check(
            "revenue from March 5 to March 10 2025",
            today(),
            d(2025, 3, 5),
            d(2025, 3, 11),
        );
    }

    // --- comparisons ---

    #[test]
    fn comparisons_of_named_periods() {
        let t = today();
        let text = "how many refunds in March vs February?";
        let f = check_cmp(
            text,
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
        assert_eq!(f.compare.as_ref().unwrap().label, "February 2025");
        assert_eq!(rest(text, &f), "how many refunds ?");
        // February relative to March's year, whatever today is.
        check_cmp(
            "refunds in March 2023 vs February",
            t,
            (d(2023, 3, 1), d(2023, 4, 1)),
            (d(2023, 2, 1), d(2023, 3, 1)),
        );
        // The main period takes the compared one's year.
        check_cmp(
            "refunds in March vs February 2023",
            t,
            (d(2023, 3, 1), d(2023, 4, 1)),
            (d(2023, 2, 1), d(2023, 3, 1)),
        );
        let text = "revenue in 2025 compared with 2024";
        let f = check_cmp(
            text,
            t,
            (d(2025, 1, 1), d(2026, 1, 1)),
            (d(2024, 1, 1), d(2025, 1, 1)),
        );
        assert_eq!(rest(text, &f), "revenue");
        for text in [
            "revenue 2025 vs 2024",
            "revenue 2025 vs. 2024",
            "revenue 2025 versus 2024",
            "revenue 2025 compared to 2024",
            "revenue 2025 against 2024",
            "revenue in 2025 vs in 2024",
            "receita em 2025 comparado com 2024",
            "receita em 2025 em comparação com 2024",
            "receita em 2025 contra 2024",
            "receita de 2025 vs 2024",
            "compare revenue in 2025 and 2024",
            "compare revenue in 2025 with 2024",
            "comparar receita de 2025 e 2024",
        ] {
            let f = check_cmp(
                text,
                t,
                (d(2025, 1, 1), d(2026, 1, 1)),
                (d(2024, 1, 1), d(2025, 1, 1)),
            );
            let left = rest(text, &f);
            assert!(
                ["revenue", "receita", "compare revenue", "comparar receita"]
                    .contains(&left.as_str()),
                "{text}: {left:?}"
            );
        }
        check_cmp(
            "Q3 vs Q2",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2025, 4, 1), d(2025, 7, 1)),
        );
        check_cmp(
            "Q3 2025 vs Q3 2024",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2024, 7, 1), d(2024, 10, 1)),
        );
        check_cmp(
            "was revenue in March higher than in February",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
        // "compare … to …" is a comparison, not a range.
        check_cmp(
            "compare Jan 2025 to Mar 2025",
            t,
            (d(2025, 1, 1), d(2025, 2, 1)),
            (d(2025, 3, 1), d(2025, 4, 1)),
        );
        check_cmp(
            "receita de março vs fevereiro",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
    }

    #[test]
    fn comparisons_with_previous_periods() {
        let t = today();
        let text = "revenue this month vs last month";
        let f = check_cmp(
            text,
            t,
            (d(2025, 12, 1), d(2026, 1, 1)),
            (d(2025, 11, 1), d(2025, 12, 1)),
        );
        assert_eq!(f.compare.as_ref().unwrap().label, "November 2025");
        assert_eq!(rest(text, &f), "revenue");
        check_cmp(
            "revenue in March vs previous month",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
        check_cmp(
            "revenue in March vs the previous period",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
        check_cmp(
            "revenue in Q3 vs prior quarter",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2025, 4, 1), d(2025, 7, 1)),
        );
        check_cmp(
            "revenue in Q3 vs previous period",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2025, 4, 1), d(2025, 7, 1)),
        );
        let f = check_cmp(
            "revenue in March 2024 vs last year",
            t,
            (d(2024, 3, 1), d(2024, 4, 1)),
            (d(2023, 3, 1), d(2023, 4, 1)),
        );
        assert_eq!(f.compare.unwrap().label, "March 2023");
        check_cmp(
            "revenue 2025 vs last year",
            t,
            (d(2025, 1, 1), d(2026, 1, 1)),
            (d(2024, 1, 1), d(2025, 1, 1)),
        );
        // The unit is shorter than the main period: the one just before it.
        check_cmp(
            "revenue 2025 vs the previous month",
            t,
            (d(2025, 1, 1), d(2026, 1, 1)),
            (d(2024, 12, 1), d(2025, 1, 1)),
        );
        check_cmp(
            "revenue ytd vs last year",
            t,
            (d(2025, 1, 1), d(2025, 12, 5)),
            (d(2024, 1, 1), d(2024, 12, 5)),
        );
        check_cmp(
            "revenue ytd vs the previous period",
            t,
            (d(2025, 1, 1), d(2025, 12, 5)),
            (d(2024, 1, 1), d(2024, 12, 5)),
        );
        check_cmp(
            "revenue mtd vs last month",
            t,
            (d(2025, 12, 1), d(2025, 12, 5)),
            (d(2025, 11, 1), d(2025, 11, 5)),
        );
        let f = check_cmp(
            "orders in the last 7 days vs the previous period",
            t,
            (d(2025, 11, 28), d(2025, 12, 5)),
            (d(2025, 11, 21), d(2025, 11, 28)),
        );
        assert_eq!(f.compare.unwrap().label, "2025-11-21 to 2025-11-27");
        check_cmp(
            "orders last 3 months vs previous period",
            t,
            (d(2025, 9, 5), d(2025, 12, 5)),
            (d(2025, 6, 5), d(2025, 9, 5)),
        );
        check_cmp(
            "revenue from Jan 2025 to Mar 2025 vs previous period",
            t,
            (d(2025, 1, 1), d(2025, 4, 1)),
            (d(2024, 10, 1), d(2025, 1, 1)),
        );
        check_cmp(
            "revenue between 2025-01-01 and 2025-01-10 vs previous period",
            t,
            (d(2025, 1, 1), d(2025, 1, 11)),
            (d(2024, 12, 22), d(2025, 1, 1)),
        );
        check_cmp(
            "revenue this week vs last week",
            t,
            (d(2025, 12, 1), d(2025, 12, 8)),
            (d(2025, 11, 24), d(2025, 12, 1)),
        );
        check_cmp(
            "revenue today vs yesterday",
            t,
            (d(2025, 12, 4), d(2025, 12, 5)),
            (d(2025, 12, 3), d(2025, 12, 4)),
        );
        check_cmp(
            "revenue in Q3 vs the same period last year",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2024, 7, 1), d(2024, 10, 1)),
        );
        check_cmp(
            "revenue this month vs a year ago",
            t,
            (d(2025, 12, 1), d(2026, 1, 1)),
            (d(2024, 12, 1), d(2025, 1, 1)),
        );
        check_cmp(
            "receita este mês comparado com o mês anterior",
            t,
            (d(2025, 12, 1), d(2026, 1, 1)),
            (d(2025, 11, 1), d(2025, 12, 1)),
        );
        check_cmp(
            "receita em março em relação ao mesmo período do ano passado",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2024, 3, 1), d(2024, 4, 1)),
        );
        check_cmp(
            "receita no trimestre passado vs período anterior",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2025, 4, 1), d(2025, 7, 1)),
        );
        // Open-ended periods have no previous period.
        let f = find("orders before June 2025 vs previous period", t);
        assert!(f.range.is_some() && f.compare.is_none());
        assert_eq!(
            rest("orders before June 2025 vs previous period", &f),
            "orders vs previous period"
        );
    }

    #[test]
    fn comparison_written_first() {
        let t = today();
        let text = "compared to last year, how is revenue in 2024?";
        let f = check_cmp(
            text,
            t,
            (d(2024, 1, 1), d(2025, 1, 1)),
            (d(2023, 1, 1), d(2024, 1, 1)),
        );
        assert_eq!(rest(text, &f), ", how is revenue ?");
    }

    #[test]
    fn comparison_without_main_period() {
        let t = today();
        let text = "revenue vs last month";
        let f = check_cmp(
            text,
            t,
            (d(2025, 12, 1), d(2026, 1, 1)),
            (d(2025, 11, 1), d(2025, 12, 1)),
        );
        assert_eq!(rest(text, &f), "revenue");
        check_cmp(
            "revenue vs previous quarter",
            t,
            (d(2025, 10, 1), d(2026, 1, 1)),
            (d(2025, 7, 1), d(2025, 10, 1)),
        );
        check_cmp(
            "revenue compared with 2024",
            t,
            (d(2025, 1, 1), d(2026, 1, 1)),
            (d(2024, 1, 1), d(2025, 1, 1)),
        );
        check_cmp(
            "revenue vs February",
            t,
            (d(2025, 12, 1), d(2026, 1, 1)),
            (d(2025, 2, 1), d(2025, 3, 1)),
        );
        // February of this year has not started on 2025-01-15: the one before.
        check_cmp(
            "revenue vs February",
            d(2025, 1, 15),
            (d(2025, 1, 1), d(2025, 2, 1)),
            (d(2024, 2, 1), d(2024, 3, 1)),
        );
        // Anything else becomes the main period.
        let f = check(
            "revenue vs the last 7 days",
            t,
            d(2025, 11, 28),
            d(2025, 12, 5),
        );
        assert_eq!(f.compare, None);
        // Nothing to compare with: dropped.
        let f = find("revenue vs the previous period", t);
        assert_eq!(f, TimeFound::default());
        // "vs" with no time after it is not a time word.
        nothing("revenue vs cost");
    }

    #[test]
    fn grain_with_range() {
        let t = today();
        let text = "monthly revenue in 2025";
        let f = check(text, t, d(2025, 1, 1), d(2026, 1, 1));
        assert_eq!(f.grain, Some(Grain::Month));
        assert_eq!(rest(text, &f), "revenue");
        let text = "revenue by plan last quarter";
        let f = check(text, t, d(2025, 7, 1), d(2025, 10, 1));
        assert_eq!(f.grain, None);
        assert_eq!(rest(text, &f), "revenue by plan");
        let text = "revenue by region last quarter";
        assert_eq!(rest(text, &find(text, t)), "revenue by region");
        let text = "receita por mês em 2025";
        let f = check(text, t, d(2025, 1, 1), d(2026, 1, 1));
        assert_eq!(f.grain, Some(Grain::Month));
        assert_eq!(rest(text, &f), "receita");
        let text = "weekly orders over the last 3 months by country";
        let f = check(text, t, d(2025, 9, 5), d(2025, 12, 5));
        assert_eq!(f.grain, Some(Grain::Week));
        assert_eq!(rest(text, &f), "orders by country");
        let text = "revenue by quarter";
        let f = find(text, t);
        assert_eq!((f.grain, f.range), (Some(Grain::Quarter), None));
        let text = "orders each month of 2024";
        let f = check(text, t, d(2024, 1, 1), d(2025, 1, 1));
        assert_eq!(f.grain, Some(Grain::Month));
        assert_eq!(rest(text, &f), "orders");
    }

    #[test]
    fn spans_cover_only_time_words() {
        let t = today();
        let cases = [
            ("revenue year to date", "revenue"),
            ("orders in the last 7 days", "orders"),
            ("revenue for the last quarter by plan", "revenue by plan"),
            ("total revenue in 2025 by plan", "total revenue by plan"),
            ("what was the 2025 revenue", "what was the revenue"),
            (
                "revenue by plan during Q3 2025 in Europe",
                "revenue by plan in Europe",
            ),
            ("revenue, 2025, by plan", "revenue, , by plan"),
            ("this year's revenue", "revenue"),
            ("last month’s revenue", "revenue"),
            ("churn in the wild last year", "churn in the wild"),
            ("revenue from customers in 2025", "revenue from customers"),
        ];
        for (text, left) in cases {
            let f = find(text, t);
            assert!(f.range.is_some(), "{text}");
            assert_eq!(rest(text, &f), left, "{text}: {f:?}");
        }
    }

    #[test]
    fn spans_are_merged_across_whitespace() {
        let text = "refunds in March vs February by plan";
        let f = find(text, today());
        assert_eq!(f.spans, vec![8..28]);
        assert_eq!(&text[8..28], "in March vs February");
        let text = "revenue by month in 2025";
        let f = find(text, today());
        assert_eq!(f.spans, vec![8..24]);
    }

    #[test]
    fn multibyte_input() {
        let t = today();
        let text = "İstanbul revenue em março de 2025";
        let f = check(text, t, d(2025, 3, 1), d(2025, 4, 1));
        assert_eq!(rest(text, &f), "İstanbul revenue");
        let text = "📈 revenue in 2025 🚀";
        let f = check(text, t, d(2025, 1, 1), d(2026, 1, 1));
        assert_eq!(rest(text, &f), "📈 revenue 🚀");
        // An emoji between words breaks a phrase.
        let text = "March 😀 2025";
        let f = find(text, t);
        assert_eq!(f.range.as_ref().unwrap().label, "March 2025");
        // The second year is left: only the first main expression is used.
        assert_eq!(rest(text, &f), "😀 2025");
        let text = "receita İİİ em MARÇO DE 2025 ß";
        let f = check(text, t, d(2025, 3, 1), d(2025, 4, 1));
        assert_eq!(rest(text, &f), "receita İİİ ß");
        // Decomposed accents.
        let text = "receita em marc\u{327}o de 2025";
        let f = check(text, t, d(2025, 3, 1), d(2025, 4, 1));
        assert_eq!(rest(text, &f), "receita");
        let text = "ÚLTIMOS 7 DIAS";
        check(text, t, d(2025, 11, 28), d(2025, 12, 5));
    }

    #[test]
    fn extreme_today_does_not_panic() {
        for t in [
            NaiveDate::MIN,
            NaiveDate::MAX,
            d(9999, 12, 31),
            d(1, 1, 1),
            d(1900, 1, 1),
            d(2100, 12, 31),
        ] {
            for text in [
                "today",
                "yesterday",
                "this week vs last week",
                "last month",
                "ytd vs previous period",
                "last 100000 years",
                "last 99999 days",
                "since March",
                "until June",
                "Q3",
                "in March vs February",
                "from November to January",
                "revenue vs last month",
                "revenue vs February",
                "orders on Feb 29",
                "the same period last year",
                "2025 vs previous period",
            ] {
                let f = find(text, t);
                assert_spans_ok(text, &f);
            }
        }
        // A year of 2100 and its next year.
        check("in 2100", today(), d(2100, 1, 1), d(2101, 1, 1));
    }

    fn assert_spans_ok(text: &str, f: &TimeFound) {
        let mut prev_end = 0;
        for (k, r) in f.spans.iter().enumerate() {
            assert!(r.start < r.end, "{text:?}: empty span {r:?}");
            assert!(
                k == 0 || r.start > prev_end,
                "{text:?}: spans {:?}",
                f.spans
            );
            assert!(r.end <= text.len(), "{text:?}: {r:?}");
            assert!(
                text.is_char_boundary(r.start) && text.is_char_boundary(r.end),
                "{text:?}: {r:?}"
            );
            prev_end = r.end;
        }
        if f.compare.is_some() {
            assert!(f.range.is_some(), "{text:?}: compare without range");
        }
        for r in f.range.iter().chain(f.compare.iter()) {
            assert!(r.start <= r.end, "{text:?}: {r:?}");
            assert!(!r.label.is_empty(), "{text:?}: {r:?}");
        }
    }

    #[test]
    fn random_inputs_do_not_panic() {
        const WORDS: &[&str] = &[
            "revenue",
            "in",
            "2025",
            "2024",
            "1899",
            "2101",
            "q3",
            "Q5",
            "of",
            "the",
            "last",
            "7",
            "days",
            "weeks",
            "months",
            "vs",
            "versus",
            "compared",
            "with",
            "to",
            "from",
            "between",
            "and",
            "since",
            "until",
            "before",
            "March",
            "may",
            "março",
            "de",
            "em",
            "no",
            "mês",
            "passado",
            "últimos",
            "dias",
            "ytd",
            "mtd",
            "this",
            "year",
            "quarter",
            "by",
            "per",
            "monthly",
            "week",
            "today",
            "yesterday",
            "2025-03-05",
            "2025-02-30",
            "2025-03",
            "2025-01-01..2025-03-31",
            "jan-mar",
            "2023-2025",
            "-",
            "..",
            "?",
            ",",
            "İ",
            "ß",
            "😀",
            "3rd",
            "3º",
            "trimestre",
            "T3",
            "first",
            "top",
            "2000",
            "compare",
            "previous",
            "period",
            "same",
            "ago",
            "a",
            "até",
            "desde",
            "entre",
            "e",
            "hoje",
            "5",
            "31st",
            "0",
            "00",
            "99999999999999999999",
            "—",
            "–",
            "’s",
            "'",
            "/",
            "$",
            "%",
            "#",
            "fy",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let todays = [
            today(),
            d(2025, 1, 1),
            d(2025, 3, 15),
            d(2025, 12, 31),
            d(2024, 2, 29),
            NaiveDate::MAX,
            NaiveDate::MIN,
        ];
        for _ in 0..20_000 {
            let n = (next() % 9) as usize;
            let mut text = String::new();
            for _ in 0..n {
                let r = next();
                match r % 5 {
                    0 => {
                        let c = char::from_u32((next() % 0x2_0000) as u32).unwrap_or('x');
                        text.push(c);
                    }
                    1 => text.push(' '),
                    _ => {
                        text.push_str(WORDS[(r / 5 % WORDS.len() as u64) as usize]);
                        if next() % 3 != 0 {
                            text.push(' ');
                        }
                    }
                }
            }
            let t = todays[(next() % todays.len() as u64) as usize];
            let f = find(&text, t);
            assert_spans_ok(&text, &f);
            // The same input gives the same answer.
            assert_eq!(find(&text, t), f);
        }
    }

    #[test]
    fn halves_and_weeks() {
        let t = today();
        for text in [
            "revenue in H1 2025",
            "revenue 2025 H1",
            "revenue in the first half of 2025",
            "revenue 1st half 2025",
            "receita do primeiro semestre de 2025",
            "receita no 1º semestre de 2025",
            "revenue H1",
        ] {
            let f = check(text, t, d(2025, 1, 1), d(2025, 7, 1));
            assert_eq!(f.range.as_ref().unwrap().label, "H1 2025", "{text}");
            let left = rest(text, &f);
            assert!(left == "revenue" || left == "receita", "{text}: {left:?}");
        }
        check(
            "revenue second half of 2024",
            t,
            d(2024, 7, 1),
            d(2025, 1, 1),
        );
        // H2 has not started on 2025-03-01: last year's.
        check("revenue H2", d(2025, 3, 1), d(2024, 7, 1), d(2025, 1, 1));
        check_cmp(
            "revenue H2 2025 vs previous period",
            t,
            (d(2025, 7, 1), d(2026, 1, 1)),
            (d(2025, 1, 1), d(2025, 7, 1)),
        );
        let f = check(
            "revenue in week 12 of 2025",
            t,
            d(2025, 3, 17),
            d(2025, 3, 24),
        );
        assert_eq!(f.range.as_ref().unwrap().label, "2025-W12");
        assert_eq!(rest("revenue in week 12 of 2025", &f), "revenue");
        check("revenue 2025-W12", t, d(2025, 3, 17), d(2025, 3, 24));
        check(
            "receita na semana 12 de 2025",
            t,
            d(2025, 3, 17),
            d(2025, 3, 24),
        );
        check(
            "revenue for week 53 of 2020",
            t,
            d(2020, 12, 28),
            d(2021, 1, 4),
        );
        check("revenue week 12", t, d(2025, 3, 17), d(2025, 3, 24));
        check_cmp(
            "revenue week 12 vs previous week",
            t,
            (d(2025, 3, 17), d(2025, 3, 24)),
            (d(2025, 3, 10), d(2025, 3, 17)),
        );
    }

    #[test]
    fn first_and_last_part_of_a_year() {
        let t = today();
        let text = "sales in the last quarter of 2024";
        let f = check(text, t, d(2024, 10, 1), d(2025, 1, 1));
        assert_eq!(rest(text, &f), "sales");
        check(
            "receita do último trimestre de 2024",
            t,
            d(2024, 10, 1),
            d(2025, 1, 1),
        );
        check("the first month of 2025", t, d(2025, 1, 1), d(2025, 2, 1));
        check(
            "the last month of last year",
            t,
            d(2024, 12, 1),
            d(2025, 1, 1),
        );
        check("the last half of 2024", t, d(2024, 7, 1), d(2025, 1, 1));
        check("the last week of 2020", t, d(2020, 12, 28), d(2021, 1, 4));
        check("the first week of 2021", t, d(2021, 1, 4), d(2021, 1, 11));
        // Without "of <year>" it is the calendar period before this one.
        check(
            "sales in the last quarter",
            t,
            d(2025, 7, 1),
            d(2025, 10, 1),
        );
    }

    #[test]
    fn preceding_n_units() {
        let t = today();
        let text = "orders in the last 7 days vs the previous 7 days";
        let f = check_cmp(
            text,
            t,
            (d(2025, 11, 28), d(2025, 12, 5)),
            (d(2025, 11, 21), d(2025, 11, 28)),
        );
        assert_eq!(
            f.compare.as_ref().unwrap().label,
            "the previous 7 days (2025-11-21 to 2025-11-27)"
        );
        assert_eq!(rest(text, &f), "orders");
        check_cmp(
            "orders in the past 2 weeks compared with the 2 weeks before",
            t,
            (d(2025, 11, 21), d(2025, 12, 5)),
            (d(2025, 11, 7), d(2025, 11, 21)),
        );
        check_cmp(
            "pedidos nos últimos 7 dias vs os 7 dias anteriores",
            t,
            (d(2025, 11, 28), d(2025, 12, 5)),
            (d(2025, 11, 21), d(2025, 11, 28)),
        );
        check_cmp(
            "revenue in Q3 vs the previous 3 months",
            t,
            (d(2025, 7, 1), d(2025, 10, 1)),
            (d(2025, 4, 1), d(2025, 7, 1)),
        );
        // As the main period it is the same as "last N".
        check(
            "orders in the previous 7 days",
            t,
            d(2025, 11, 28),
            d(2025, 12, 5),
        );
    }

    #[test]
    fn change_from_to_is_a_comparison() {
        let t = today();
        let text = "how did revenue change from 2024 to 2025?";
        let f = check_cmp(
            text,
            t,
            (d(2025, 1, 1), d(2026, 1, 1)),
            (d(2024, 1, 1), d(2025, 1, 1)),
        );
        assert_eq!(rest(text, &f), "how did revenue change ?");
        check_cmp(
            "which region grew most between Q1 and Q2",
            t,
            (d(2025, 4, 1), d(2025, 7, 1)),
            (d(2025, 1, 1), d(2025, 4, 1)),
        );
        check_cmp(
            "como a receita variou de janeiro a março de 2025",
            t,
            (d(2025, 3, 1), d(2025, 4, 1)),
            (d(2025, 1, 1), d(2025, 2, 1)),
        );
        // With a grain it is a series over the whole range.
        let f = check(
            "monthly revenue growth from 2024 to 2025",
            t,
            d(2024, 1, 1),
            d(2026, 1, 1),
        );
        assert_eq!((f.grain, f.compare), (Some(Grain::Month), None));
        // Without a change word it is a range.
        check("revenue from 2024 to 2025", t, d(2024, 1, 1), d(2026, 1, 1));
    }

    #[test]
    fn start_and_end_of() {
        let t = today();
        let f = check(
            "revenue since the beginning of the year",
            t,
            d(2025, 1, 1),
            d(2025, 12, 5),
        );
        assert_eq!(f.range.as_ref().unwrap().label, "year to date 2025");
        check(
            "receita desde o início do ano",
            t,
            d(2025, 1, 1),
            d(2025, 12, 5),
        );
        check(
            "revenue since the start of this month",
            t,
            d(2025, 12, 1),
            d(2025, 12, 5),
        );
        check(
            "revenue since the start of 2024",
            t,
            d(2024, 1, 1),
            d(2025, 12, 5),
        );
        check(
            "orders since the end of Q1",
            t,
            d(2025, 4, 1),
            d(2025, 12, 5),
        );
        let f = check(
            "revenue until the end of March 2025",
            t,
            d(1900, 1, 1),
            d(2025, 4, 1),
        );
        assert_eq!(f.range.as_ref().unwrap().label, "through March 2025");
        check(
            "receita até o fim de março de 2025",
            t,
            d(1900, 1, 1),
            d(2025, 4, 1),
        );
        check(
            "revenue from the start of March to the end of June 2025",
            t,
            d(2025, 3, 1),
            d(2025, 7, 1),
        );
    }

    #[test]
    fn from_a_relative_period_is_that_period() {
        let t = today();
        let text = "orders from last month";
        let f = check(text, t, d(2025, 11, 1), d(2025, 12, 1));
        assert_eq!(rest(text, &f), "orders");
        check("orders from yesterday", t, d(2025, 12, 3), d(2025, 12, 4));
        check("orders from this year", t, d(2025, 1, 1), d(2026, 1, 1));
        // Named periods: since.
        check("orders from 2024", t, d(2024, 1, 1), d(2025, 12, 5));
        // "from" with no time after it is left alone.
        let text = "revenue from customers in Europe";
        assert_eq!(find(text, t), TimeFound::default());
    }

    #[test]
    fn grain_is_not_a_day_of_week_breakdown() {
        for text in [
            "revenue by day of week",
            "receita por dia da semana",
            "orders per week of year",
        ] {
            let f = find(text, today());
            assert_eq!(f.grain, None, "{text}");
            assert!(f.spans.is_empty(), "{text}");
        }
    }

    #[test]
    fn tokens_keep_original_offsets() {
        let text = "İİ MARÇO, 2025?";
        let toks = tokenize(text);
        let lows: Vec<&str> = toks.iter().map(|t| t.low.as_str()).collect();
        assert_eq!(lows, ["ii", "marco", "2025"]);
        assert_eq!(&text[toks[1].start..toks[1].end], "MARÇO");
        assert_eq!(&text[toks[2].start..toks[2].end], "2025");
        let toks = tokenize("a - b .. c 😀$");
        let lows: Vec<&str> = toks.iter().map(|t| t.low.as_str()).collect();
        assert_eq!(lows, ["a", "-", "b", "..", "c", "😀", "$"]);
    }
}
