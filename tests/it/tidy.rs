//! The tidy test: the rules of ARCHITECTURE.md that a machine can check, run over every
//! `src/**/*.rs` file.
//!
//! - Crate confinement: each third-party crate in [`CONFINED`] is named only in the files its
//!   invariant allows (matched by path prefix, so files can move within a folder).
//! - The core does not import the surfaces: no file under [`CORE`] names a module of
//!   [`SURFACES`] (`crate::channels`, `crate::app`, …).
//! - Every source file starts with a module doc (`//!`) as its first non-empty line.
//!
//! Uses are found in code only: comments, doc comments and string and character literals are
//! blanked before the scan. A crate counts as named where it starts a path (`sqlx::Row`,
//! `::sqlx::Row`, `use sqlx;`), not where a path merely passes through a segment of that
//! name (`deltalake::arrow::…` names deltalake, not arrow). Relative paths (`super::…`) are
//! not followed.
//!
//! [`check`] works on (path, text) pairs, so the planted-violation test checks the checker
//! without touching the tree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::path::Path;

/// A crate and the only places that may name it.
struct Confined {
    /// The names the crate is written as in code.
    names: &'static [&'static str],
    /// Path prefixes (from the repository root, `/`-separated) of the files allowed to name it.
    allowed: &'static [&'static str],
}

/// Crate confinement, from ARCHITECTURE.md's invariants.
const CONFINED: &[Confined] = &[
    // "only `src/lakehouse/` imports deltalake (and DataFusion, Arrow, Parquet through its
    // re-exports)".
    Confined {
        names: &["deltalake", "datafusion", "arrow", "parquet"],
        allowed: &["src/lakehouse/"],
    },
    // "only `src/agent/llm.rs` imports rig-core".
    Confined {
        names: &["rig_core", "rig"],
        allowed: &["src/agent/llm.rs"],
    },
    // "only `src/store/` and `src/connectors/sql.rs` import sqlx".
    Confined {
        names: &["sqlx"],
        allowed: &["src/store/", "src/connectors/sql.rs"],
    },
    // "only `src/knowledge/edge.rs` and `src/knowledge/sparse.rs` import `qdrant_edge`".
    Confined {
        names: &["qdrant_edge"],
        allowed: &["src/knowledge/edge.rs", "src/knowledge/sparse.rs"],
    },
    // "only `src/http/` imports axum".
    Confined {
        names: &["axum"],
        allowed: &["src/http/"],
    },
    // "only `src/channels/telegram.rs` imports teloxide" (a prefix: `telegram.rs`,
    // `telegram_doctor.rs` or a `telegram/` folder).
    Confined {
        names: &["teloxide"],
        allowed: &["src/channels/telegram"],
    },
    // "serenity's types live only in `src/channels/discord.rs` and
    // `src/channels/discord_bot.rs`" (a prefix, as for teloxide).
    Confined {
        names: &["serenity"],
        allowed: &["src/channels/discord"],
    },
    // governor where it is used today: the gateway's keyed limits, the chat platforms' send
    // pacing and the http connector's request rate.
    Confined {
        names: &["governor"],
        allowed: &[
            "src/gateway/ratelimit.rs",
            "src/channels/",
            "src/connectors/http.rs",
        ],
    },
];

/// The core: files under these prefixes do not import the surfaces.
const CORE: &[&str] = &[
    "src/gateway/",
    "src/agent/",
    "src/knowledge/",
    "src/store/",
    "src/tools/",
    "src/lakehouse/",
    "src/connectors/",
    "src/semantic/",
    "src/model.rs",
    "src/error.rs",
];

/// The parts that own a config section: they read theirs and the value types of
/// `crate::values`, never the loader (`crate::config`), so there is no cycle through it.
const OWN_THEIR_SECTION: &[&str] = &[
    "src/gateway/",
    "src/agent/",
    "src/knowledge/",
    "src/store/",
    "src/tools/",
    "src/lakehouse/",
    "src/connectors/",
    "src/semantic/",
    "src/channels/",
    "src/model.rs",
    "src/values.rs",
];

/// A leaf: it names no other module of the crate but `crate::error`.
const LEAVES: &[&str] = &["src/values.rs", "src/health.rs", "src/model.rs"];

/// What the rest of the program may name in `channels`: the shared parts and the registry.
/// A chat platform's own module (`channels::slack`, …) is named only inside `src/channels/`,
/// so adding a platform is its module plus one registry line.
const CHANNELS_SHARED: &[&str] = &[
    "chat",
    "web",
    "verify",
    "webhook",
    "kind",
    "names",
    "build_platforms",
    "access_platforms",
];

/// The surfaces and the composition root, as `crate::NAME`.
const SURFACES: &[&str] = &[
    "channels", "http", "app", "doctor", "cli", "server", "bench", "init",
];

/// A broken rule: where and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, from the repository root.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The rule, in words.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.rule)
    }
}

/// Every violation in `files`: (path from the repository root with `/`, text) pairs.
pub fn check(files: &[(String, String)]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (path, text) in files {
        check_file(path, text, &mut out);
    }
    check_cycles(files, &mut out);
    out.sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
    out
}

fn check_file(path: &str, text: &str, out: &mut Vec<Violation>) {
    let mut violation = |line: usize, rule: String| {
        out.push(Violation {
            file: path.to_string(),
            line,
            rule,
        })
    };

    // Module doc first.
    let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
    match first {
        Some((_, l)) if l.trim_start().starts_with("//!") => {}
        Some((i, _)) => violation(
            i + 1,
            "module doc: the first non-empty line of a source file must be a `//!` doc saying what the module is for".into(),
        ),
        None => violation(
            1,
            "module doc: the file is empty; it must start with a `//!` doc".into(),
        ),
    }

    let tokens = tokenize(&code_only(text));
    let core = CORE.iter().any(|p| path.starts_with(p));
    let owns_section = OWN_THEIR_SECTION.iter().any(|p| path.starts_with(p));
    let leaf = LEAVES.contains(&path);
    for (i, t) in tokens.iter().enumerate() {
        let Tok::Ident(name) = &t.tok else { continue };
        if name == "channels" && !path.starts_with("src/channels/") {
            for (line, module) in crate_modules(&tokens, i) {
                let lowercase = module
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase());
                if lowercase && !CHANNELS_SHARED.contains(&module.as_str()) {
                    violation(
                        line,
                        format!(
                            "platform named outside src/channels/: `channels::{module}`; go through the registry (`channels::PLATFORMS`, `Platforms::get`)"
                        ),
                    );
                }
            }
        }
        if !starts_path(&tokens, i) {
            continue;
        }
        for c in CONFINED {
            if c.names.contains(&name.as_str()) && !c.allowed.iter().any(|p| path.starts_with(p)) {
                violation(
                    t.line,
                    format!(
                        "crate confinement: `{name}` may be named only in {}",
                        c.allowed.join(", ")
                    ),
                );
            }
        }
        if (owns_section || leaf) && name == "crate" {
            for (line, module) in crate_modules(&tokens, i) {
                if owns_section && module == "config" {
                    violation(
                        line,
                        "config owned by its parts: a part reads its own section and `crate::values`, never the loader `crate::config`".into(),
                    );
                }
                if leaf && module != "error" {
                    violation(
                        line,
                        format!(
                            "leaf module: {path} may name no module of the crate but `crate::error`, not `crate::{module}`"
                        ),
                    );
                }
            }
        }
        if core && name == "crate" {
            for (line, module) in crate_modules(&tokens, i) {
                if SURFACES.contains(&module.as_str()) {
                    violation(
                        line,
                        format!(
                            "core imports a surface: files under {} must not name `crate::{module}`",
                            CORE.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// The top-level module a source file belongs to (`src/channels/chat/mod.rs` → `channels`);
/// `None` for the crate root and the binary.
fn top_module(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// No cycle between top-level modules (test code aside): a module that imports another may
/// not be imported back by it, directly or through others. Each edge of a cycle is reported
/// where it is first written, with the whole cycle.
fn check_cycles(files: &[(String, String)], out: &mut Vec<Violation>) {
    use std::collections::{BTreeMap, BTreeSet};
    // (from, to) → first (file, line) that writes it.
    let mut edges: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    for (path, text) in files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let code = code_only(text);
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        let tokens = tokenize(code);
        for (i, t) in tokens.iter().enumerate() {
            if t.tok != Tok::Ident("crate".into()) || !starts_path(&tokens, i) {
                continue;
            }
            for (line, to) in crate_modules(&tokens, i) {
                let leaf = to.chars().next().is_some_and(|c| c.is_ascii_lowercase());
                if leaf
                    && to != from
                    && files
                        .iter()
                        .any(|(p, _)| top_module(p).as_deref() == Some(&to))
                {
                    edges
                        .entry((from.clone(), to))
                        .or_insert_with(|| (path.clone(), line));
                }
            }
        }
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.as_str()).or_default().insert(to.as_str());
    }
    // The shortest path from `start` to `goal`, if any.
    let path_between = |start: &str, goal: &str| -> Option<Vec<String>> {
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut seen = BTreeSet::from([start]);
        while let Some(at) = queue.pop_front() {
            if at == goal {
                let mut path = vec![goal.to_string()];
                let mut cur = goal;
                while let Some(p) = previous.get(cur) {
                    path.push(p.to_string());
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            for next in graph.get(at).into_iter().flatten() {
                if seen.insert(next) {
                    previous.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    };
    for ((from, to), (file, line)) in &edges {
        if let Some(back) = path_between(to, from) {
            out.push(Violation {
                file: file.clone(),
                line: *line,
                rule: format!("module cycle: {from} → {}", back.join(" → ")),
            });
        }
    }
}

/// A token of code, with its line.
#[derive(Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The text with comments (also doc comments) and the contents of string and character
/// literals replaced by spaces; line breaks are kept, so lines still count right.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < n {
        let ch = c[i];
        let starts_token = i == 0 || !is_ident_char(c[i - 1]);
        if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0usize;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if let Some((open, hashes)) = raw_string_start(&c, i).filter(|_| starts_token) {
            for _ in 0..open {
                out.push(' ');
            }
            i += open;
            while i < n {
                if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if ch == '"' {
            out.push(' ');
            i += 1;
            while i < n {
                if c[i] == '\\' {
                    out.push(' ');
                    out.push(blank(at(i + 1)));
                    i += 2;
                } else if c[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if ch == '\'' && at(i + 1) == '\\' {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            out.push_str("   ");
            i += 3;
            while i < n && c[i] != '\'' && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            if i < n && c[i] == '\'' {
                out.push(' ');
                i += 1;
            }
        } else if ch == '\'' && at(i + 2) == '\'' {
            // A plain character literal ('x'); a lifetime ('a) is left as it is.
            out.push_str("   ");
            i += 3;
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

/// At `i`, the start of a raw string (`r"`, `r#"`, `br##"`, `cr"`): its opening's length
/// and number of `#`.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|ch| **ch == '#').count();
    j += hashes;
    (c.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Identifiers, `::` and other punctuation of `code` (numbers count as identifiers, which
/// does no harm here).
fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(c[start..i].iter().collect()),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Whether the identifier at `i` starts a path that names it as a crate: `NAME::…` or
/// `::NAME::…` (not `a::NAME::…`), or `use NAME;` / `use NAME as …` / `extern crate NAME`.
fn starts_path(tokens: &[Token], i: usize) -> bool {
    let before = |k: usize| i.checked_sub(k).map(|j| &tokens[j].tok);
    let inside_path = before(1) == Some(&Tok::PathSep)
        && matches!(before(2), Some(Tok::Ident(_) | Tok::Punct('>')));
    if inside_path {
        return false;
    }
    let followed_by_path = tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep);
    let used_whole = matches!(before(1), Some(Tok::Ident(k)) if k == "use")
        || (matches!(before(1), Some(Tok::Ident(k)) if k == "crate")
            && matches!(before(2), Some(Tok::Ident(k)) if k == "extern"));
    followed_by_path || used_whole
}

/// The top-level modules named after the `crate` at `i`, with their lines: `crate::a::…` →
/// `a`; `crate::{a::x, b}` → `a`, `b`.
fn crate_modules(tokens: &[Token], i: usize) -> Vec<(usize, String)> {
    let tok = |k: usize| tokens.get(k).map(|t| &t.tok);
    if tok(i + 1) != Some(&Tok::PathSep) {
        return Vec::new();
    }
    match tok(i + 2) {
        Some(Tok::Ident(m)) => vec![(tokens[i + 2].line, m.clone())],
        Some(Tok::Punct('{')) => {
            let mut out = Vec::new();
            let mut depth = 0usize;
            let mut expect_item = true;
            for t in &tokens[i + 2..] {
                match &t.tok {
                    Tok::Punct('{') => {
                        depth += 1;
                        expect_item = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => expect_item = true,
                    Tok::Ident(m) if depth == 1 && expect_item => {
                        out.push((t.line, m.clone()));
                        expect_item = false;
                    }
                    _ => {}
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Every `.rs` file below `dir`, as (path from `root` with `/`, text), sorted by path.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn tidy_the_source_tree_keeps_the_rules_of_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    read_sources(root, &root.join("src"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p == "src/lib.rs"),
        "no sources found under {}",
        root.display()
    );
    let violations = check(&files);
    assert!(
        violations.is_empty(),
        "{} rule{} of ARCHITECTURE.md broken:\n  {}",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" },
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn tidy_reports_planted_violations_with_file_line_and_rule() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = vec![
        file(
            "src/gateway/x.rs",
            "//! A gateway part.\n\nuse crate::channels::slack;\n",
        ),
        file(
            "src/tools/y.rs",
            "//! A tool.\nuse std::sync::Arc;\nuse deltalake::DeltaTable;\n",
        ),
        file("src/z.rs", "\n\nuse std::fmt;\n//! Too late.\n"),
        file(
            "src/connectors/grouped.rs",
            "//! Grouped imports.\nuse crate::{\n    config::Config,\n    app::App,\n};\n",
        ),
        file(
            "src/agent/tool_loop.rs",
            "//! Not the provider layer.\nfn f() { let _ = ::rig_core::Foo; }\n",
        ),
        file(
            "src/channels/slack.rs",
            "//! Slack.\nfn f() -> teloxide::Bot { todo() }\n",
        ),
        file(
            "src/knowledge/indexer.rs",
            "//! Indexer.\n#[derive(sqlx::FromRow)]\nstruct Row;\n",
        ),
        file(
            "src/channels/teams.rs",
            "//! A new platform.\nuse crate::config::Secret;\n",
        ),
        file("src/values.rs", "//! Values.\nuse crate::store::Store;\n"),
        file(
            "src/http/teams.rs",
            "//! A route.\nuse crate::channels::{chat, teams::Teams};\n",
        ),
        file(
            "src/store/cycle.rs",
            "//! Store.\n\nuse crate::knowledge::Chunk;\n#[cfg(test)]\nmod tests { use crate::tools::T; }\n",
        ),
        file(
            "src/knowledge/cycle.rs",
            "//! Knowledge.\nuse crate::store::Store;\n",
        ),
        file(
            "src/tools/cycle.rs",
            "//! Tools.\nuse crate::store::Store;\n",
        ),
    ];
    let found: Vec<String> = check(&files).iter().map(ToString::to_string).collect();
    let expect = [
        "src/channels/teams.rs:2: config owned by its parts",
        "src/connectors/grouped.rs:3: config owned by its parts",
        "src/values.rs:2: leaf module",
        "src/http/teams.rs:2: platform named outside src/channels/: `channels::teams`",
        "src/store/cycle.rs:3: module cycle: store → knowledge → store",
        "src/knowledge/cycle.rs:2: module cycle: knowledge → store → knowledge",
        "src/gateway/x.rs:3: core imports a surface",
        "crate::channels",
        "src/tools/y.rs:3: crate confinement: `deltalake` may be named only in src/lakehouse/",
        "src/z.rs:3: module doc",
        "src/connectors/grouped.rs:4: core imports a surface",
        "crate::app",
        "src/agent/tool_loop.rs:2: crate confinement: `rig_core` may be named only in src/agent/llm.rs",
        "src/channels/slack.rs:2: crate confinement: `teloxide` may be named only in src/channels/telegram",
        "src/knowledge/indexer.rs:2: crate confinement: `sqlx`",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.contains(e)),
            "`{e}` not reported; found:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), 14, "{}", found.join("\n"));
}

#[test]
fn tidy_ignores_comments_strings_and_allowed_places() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = vec![
        // Comments, doc comments and strings that mention crates and surfaces.
        file(
            "src/gateway/a.rs",
            concat!(
                "//! Unlike `crate::channels`, this names no surface; see `deltalake::DeltaTable`.\n",
                "/// Replies like `crate::app::App` does.\n",
                "// use sqlx::Row;\n",
                "/* use axum::Router; /* nested */ use teloxide::Bot; */\n",
                "fn f() -> &'static str { let _c = '\"'; let _q = '\\''; \"use crate::http; sqlx::query\" }\n",
                "fn g() -> &'static str { r#\"serenity::Client \"quoted\" \"# }\n",
                "use crate::tools::http::HttpTool;\n",
                "use crate::values::Rate;\n",
                "pub(crate) fn h() {}\n",
            ),
        ),
        // A crate's name as a later segment of a path is not a use of that crate.
        file(
            "src/connectors/b.rs",
            "//! B.\nuse crate::lakehouse::typed::KeyColumns;\nfn f(x: Foo) { x.arrow(); ColType::arrow(); }\n",
        ),
        // Allowed places, by prefix.
        file(
            "src/lakehouse/new/deep.rs",
            "//! Deep.\nuse deltalake::arrow::array::Int64Array;\nuse datafusion::prelude::*;\n",
        ),
        file(
            "src/channels/telegram/mod.rs",
            "//! Telegram.\nuse teloxide::Bot;\n",
        ),
        file(
            "src/channels/discord_bot.rs",
            "//! Bot.\nuse serenity::all::Http;\nuse governor::Quota;\n",
        ),
        file("src/store/x.rs", "//! Store.\nuse sqlx::Row;\n"),
        file("src/connectors/sql.rs", "//! SQL.\nuse sqlx::Row;\n"),
        // Surfaces may import each other and the core.
        file(
            "src/http/x.rs",
            "//! HTTP.\nuse axum::Router;\nuse crate::app::App;\nuse crate::channels::chat;\n",
        ),
        // A module doc after blank lines is still first.
        file("src/blank.rs", "\n\n//! Blank lines first.\n"),
    ];
    let found: Vec<String> = check(&files).iter().map(ToString::to_string).collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}
