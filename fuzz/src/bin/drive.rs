//! A fuzz driver for the stable toolchain (cargo-fuzz needs nightly): it runs the targets of
//! `conveyor_fuzz` on mutations of their corpus, catches each panic with `catch_unwind`, and
//! writes the input that caused it to `fuzz/artifacts/TARGET/crash-HASH`.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --bin drive -- <TARGET|all> [--runs N] [--seed S]
//!     [--max-len BYTES] [--keep-going] [--save-each] [--slow-ms MS]
//! cargo run --manifest-path fuzz/Cargo.toml --bin drive -- <TARGET> FILE…   (replay inputs)
//! cargo run --manifest-path fuzz/Cargo.toml --bin drive -- list
//! ```
//!
//! It has no coverage feedback: it leans on good seeds (`fuzz/corpus/TARGET/`, from the shared
//! fixtures), mutations that know what these parsers chew on (UTF-8 whose case mapping changes
//! length, combining marks, bidi controls, emoji sequences, invalid and overlong bytes, markup
//! tokens, long runs, deep nesting, JSON string leaves rewritten in place) and a pool that
//! keeps some mutants as new bases so that inputs drift away from the seeds. Runs are
//! deterministic for a given `--seed`.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conveyor::channels::chat::check::SplitMix64;
use conveyor_fuzz::Target;
use sha2::{Digest, Sha256};

/// The last panic's message and place, written by the panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

struct Options {
    runs: u64,
    seed: u64,
    max_len: Option<usize>,
    keep_going: bool,
    save_each: bool,
    slow: Duration,
    timeout: Duration,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: drive <TARGET|all|list> [--runs N] [--seed S] [--max-len BYTES] [--keep-going] [--save-each] [--slow-ms MS] [--timeout SECS] [FILE…]\ntargets: {}",
        conveyor_fuzz::TARGETS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(which) = args.first().cloned() else {
        return usage();
    };
    if which == "list" {
        for (name, _) in conveyor_fuzz::TARGETS {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let mut options = Options {
        runs: 100_000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        max_len: None,
        keep_going: false,
        save_each: false,
        slow: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
    };
    let mut files = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let mut number = |what: &str| -> Option<u64> {
            let value = rest.next().and_then(|v| v.replace('_', "").parse().ok());
            if value.is_none() {
                eprintln!("{what} needs a number");
            }
            value
        };
        match arg.as_str() {
            "--runs" => match number("--runs") {
                Some(n) => options.runs = n,
                None => return usage(),
            },
            "--seed" => match number("--seed") {
                Some(n) => options.seed = n,
                None => return usage(),
            },
            "--max-len" => match number("--max-len") {
                Some(n) => options.max_len = Some(n as usize),
                None => return usage(),
            },
            "--slow-ms" => match number("--slow-ms") {
                Some(n) => options.slow = Duration::from_millis(n),
                None => return usage(),
            },
            "--timeout" => match number("--timeout") {
                Some(n) => options.timeout = Duration::from_secs(n),
                None => return usage(),
            },
            "--keep-going" => options.keep_going = true,
            "--save-each" => options.save_each = true,
            other if other.starts_with("--") => {
                eprintln!("unknown option {other}");
                return usage();
            }
            file => files.push(PathBuf::from(file)),
        }
    }
    let targets: Vec<(&'static str, Target)> = if which == "all" {
        conveyor_fuzz::TARGETS.to_vec()
    } else {
        match conveyor_fuzz::target(&which) {
            Some(f) => vec![(conveyor_fuzz::TARGETS[index_of(&which)].0, f)],
            None => {
                eprintln!("no target named {which}");
                return usage();
            }
        }
    };

    panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "a panic without a message".into()),
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{at}"));
        }
    }));

    if !files.is_empty() {
        let [(name, f)] = targets[..] else {
            eprintln!("replaying files needs one target");
            return usage();
        };
        return replay(name, f, &files);
    }

    println!(
        "seed {} (repeat this run with --seed {})",
        options.seed, options.seed
    );
    start_watchdog(options.timeout);
    let mut failed = false;
    for (i, (name, f)) in targets.iter().enumerate() {
        let seed = options.seed.wrapping_add(i as u64);
        if !fuzz(name, *f, seed, &options) {
            failed = true;
            if !options.keep_going {
                return ExitCode::FAILURE;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn index_of(name: &str) -> usize {
    conveyor_fuzz::TARGETS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(0)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `f` on `data`; the panic message when it panicked.
fn run_one(f: Target, data: &[u8]) -> Option<String> {
    match panic::catch_unwind(AssertUnwindSafe(|| f(data))) {
        Ok(()) => None,
        Err(_) => Some(
            LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .unwrap_or_else(|| "a panic".into()),
        ),
    }
}

fn replay(name: &str, f: Target, files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                failed = true;
                continue;
            }
        };
        let started = Instant::now();
        match run_one(f, &data) {
            None => println!(
                "{name} {}: ok in {:.1} ms",
                file.display(),
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Some(message) => {
                println!("{name} {}: PANIC: {message}", file.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn short_hash(data: &[u8]) -> String {
    hex(&Sha256::digest(data)[..20])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `fuzz/artifacts/TARGET/KIND-HASH`; the path.
fn save_artifact(target: &str, kind: &str, data: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("artifacts").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{}", short_hash(data)));
    if let Err(e) = std::fs::write(&path, data) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    path
}

/// The seeds of `target`: every file of `fuzz/corpus/TARGET/`, or one empty input.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

/// The input being run and since when, for the watchdog.
struct Running {
    target: &'static str,
    input: Vec<u8>,
    since: Option<Instant>,
    /// Inputs run before this one.
    runs: u64,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    target: "",
    input: Vec::new(),
    since: None,
    runs: 0,
});

/// As libFuzzer's `-timeout`: an input that runs longer than `timeout` (a hang, or a parser
/// gone exponential) is written to `artifacts/TARGET/timeout-HASH` and the process exits
/// with status 3, since a thread cannot be stopped from outside.
fn start_watchdog(timeout: Duration) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let Ok(running) = RUNNING.lock() else {
                continue;
            };
            if running.since.is_some_and(|t| t.elapsed() > timeout) {
                let path = save_artifact(running.target, "timeout", &running.input);
                println!(
                    "{}: TIMEOUT: an input of {} bytes ran for more than {} s, saved to {}",
                    running.target,
                    running.input.len(),
                    timeout.as_secs(),
                    path.display()
                );
                println!(
                    "{}: {} inputs in total before the timeout, FAILED",
                    running.target, running.runs
                );
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
        }
    });
}

fn note_running(target: &'static str, runs: u64, input: Option<&[u8]>) {
    if let Ok(mut running) = RUNNING.lock() {
        running.target = target;
        running.runs = runs;
        running.input.clear();
        if let Some(input) = input {
            running.input.extend_from_slice(input);
        }
        running.since = input.map(|_| Instant::now());
    }
}

/// Fuzzes one target for `options.runs` inputs; false when an input panicked.
fn fuzz(name: &'static str, f: Target, seed: u64, options: &Options) -> bool {
    let seeds = corpus(name);
    // As libFuzzer, 4 KiB by default; more where length matters (splitting past a platform's
    // limit, documents) and room to grow the longest seed (a whole webhook payload).
    let longest = seeds.iter().map(Vec::len).max().unwrap_or(0);
    let max_len = options.max_len.unwrap_or(match name {
        "render_split" | "split" | "document" => 8 * 1024,
        _ => 4 * 1024,
    });
    let max_len = max_len.max(longest + longest / 4);
    let mut rng = rng(seed);
    let mut pool = Pool::new(seeds.clone());
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut slowest = (Duration::ZERO, 0usize);
    let mut ok = true;
    let mut runs = 0u64;
    let current = fuzz_dir().join("artifacts").join(name).join("current");
    // The seeds themselves first, then mutants.
    while runs < options.runs {
        let input = if (runs as usize) < seeds.len() {
            seeds[runs as usize].clone()
        } else {
            mutate(&mut rng, &pool, max_len)
        };
        if options.save_each {
            let _ = std::fs::create_dir_all(current.parent().unwrap_or(Path::new(".")));
            let _ = std::fs::write(&current, &input);
        }
        note_running(name, runs, Some(&input));
        let one = Instant::now();
        let outcome = run_one(f, &input);
        let took = one.elapsed();
        note_running(name, runs, None);
        runs += 1;
        if let Some(message) = outcome {
            let path = save_artifact(name, "crash", &input);
            println!("{name}: PANIC after {runs} inputs: {message}");
            println!(
                "  input ({} bytes) saved to {}",
                input.len(),
                path.display()
            );
            println!(
                "  replay: cargo run --manifest-path fuzz/Cargo.toml --bin drive -- {name} {}",
                path.display()
            );
            ok = false;
            if !options.keep_going {
                break;
            }
        }
        if took > slowest.0 {
            slowest = (took, input.len());
            if took > options.slow {
                let path = save_artifact(name, "slow", &input);
                println!(
                    "{name}: an input of {} bytes took {:.2} s, saved to {}",
                    input.len(),
                    took.as_secs_f64(),
                    path.display()
                );
            }
        }
        pool.offer(&mut rng, input);
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  {name}: {runs} inputs, {:.0}/s, pool {}",
                runs as f64 / secs,
                pool.items.len()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{name}: {runs} inputs in {secs:.1} s ({:.0} inputs/s), {} seeds, slowest {:.1} ms ({} bytes){}",
        runs as f64 / secs,
        seeds.len(),
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1,
        if ok { "" } else { ", FAILED" }
    );
    let _ = std::io::stdout().flush();
    ok
}

/// The shared splitmix64 for `seed`, mixed so that seed 0 does not start at state 0.
fn rng(seed: u64) -> SplitMix64 {
    SplitMix64(seed ^ 0x9e37_79b9_7f4a_7c15)
}

/// Seeds (always kept) plus mutants kept as bases for further mutation.
struct Pool {
    seeds: usize,
    items: Vec<Vec<u8>>,
}

const POOL_MUTANTS: usize = 512;

impl Pool {
    fn new(seeds: Vec<Vec<u8>>) -> Self {
        Self {
            seeds: seeds.len(),
            items: seeds,
        }
    }

    fn pick(&self, rng: &mut SplitMix64) -> &[u8] {
        // Half the time a seed: mutants drift, seeds keep the structure parsers need.
        let i = if rng.chance(2) || self.items.len() == self.seeds {
            rng.below(self.seeds)
        } else {
            self.seeds + rng.below(self.items.len() - self.seeds)
        };
        &self.items[i]
    }

    fn offer(&mut self, rng: &mut SplitMix64, input: Vec<u8>) {
        if !rng.chance(8) {
            return;
        }
        if self.items.len() < self.seeds + POOL_MUTANTS {
            self.items.push(input);
        } else {
            let i = self.seeds + rng.below(POOL_MUTANTS);
            self.items[i] = input;
        }
    }
}

/// Byte strings these parsers treat specially.
const DICT: &[&str] = &[
    // Case mapping that changes byte length, and neighbours.
    "İ",
    "Ω",
    "ẞ",
    "ß",
    "ﬁ",
    "Ⱥ",
    "ı",
    "K", // KELVIN SIGN
    "é",
    "e\u{301}",
    "\u{301}\u{302}\u{303}",
    "Å",
    // Bidi, zero-width, BOM, separators.
    "\u{202E}",
    "\u{200F}",
    "\u{2066}",
    "\u{200B}",
    "\u{200D}",
    "\u{FEFF}",
    "\u{2028}",
    "\u{85}",
    "\u{A0}",
    "\u{3000}",
    "مرحبا",
    "שלום",
    // Emoji and astral characters (2 UTF-16 units).
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "👍🏽",
    "🇧🇷",
    "𝕏",
    "\u{10FFFF}",
    "\r\n",
    "\n\n",
    "\t",
    "\0",
    // Markup of the platforms and of Markdown.
    "<b>",
    "</b>",
    "<i>",
    "</i>",
    "<code>",
    "</code>",
    "<pre>",
    "</pre>",
    "<a href=\"https://x.test/?a=1&amp;b=2\">",
    "</a>",
    "<br/>",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&#233;",
    "&#x1F600;",
    "&nbsp;",
    "&",
    "<",
    ">",
    "<@U0BOT>",
    "<@U0BOT|bot>",
    "<@U1>",
    "<!here>",
    "<#C1|general>",
    "<https://example.com/a|title>",
    "<@1000000000000000001>",
    "<@!1000000000000000001>",
    "@conv_bot",
    "@CONV_BOT",
    "/ask",
    "/ask@conv_bot ",
    "**",
    "`",
    "```",
    "```rust\n",
    "\n```\n",
    "[1]",
    "[x](https://a.test/p)",
    "](",
    "# ",
    "###### ",
    "> ",
    "- ",
    "1. ",
    "|---|",
    "---\ntitle: t\n---\n",
    "<h1>",
    "</h1>",
    "<script>",
    "</script>",
    "<!--",
    "-->",
    "<![CDATA[",
    "<title>",
    "<p>",
    "<table><tr><td>",
    // Templates.
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ user }}",
    "{% for t in tools %}",
    "{% endfor %}",
    "{{ x | upper }}",
    // JSON, TOML, form encoding.
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "{}",
    "[]",
    "null",
    "1e999",
    "-0",
    "18446744073709551616",
    "[[",
    "]]",
    "= ",
    "%",
    "%ZZ",
    "%C4%B0",
    "+",
    "payload=",
    // URLs and addresses.
    "https://",
    "http://u:p@",
    "://",
    "@",
    "?key=",
    "#frag",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "0x7f.1",
    "017700000001",
    "2130706433",
    "169.254.169.254",
    "168.63.129.16",
    "64:ff9b::",
    "2001::",
    "fe80::1%eth0",
    "xn--",
    // SQL.
    "SELECT ",
    "WITH ",
    "; DROP TABLE t",
    "/*",
    "*/",
    "--",
    "'",
    "((((",
    // Cron.
    "*/",
    "L",
    "W",
    "#",
    "?",
    "@yearly",
    "59",
    "31",
    "2 30",
    "0 0 30 2 *",
    // Numbers that look like cards, phones, CPFs, IBANs, e-mails, tokens.
    "4111 1111 1111 1111",
    "+55 11 91234-5678",
    "123.456.789-09",
    "GB82 WEST 1234 5698 7654 32",
    "a@b.co",
    "ghp_0123456789abcdefghijABCDEFGHIJ0123",
    "-----BEGIN PRIVATE KEY-----",
    "[EMAIL_1]",
    "[PHONE_1]",
];

/// Invalid or borderline UTF-8 byte sequences.
const BAD_BYTES: &[&[u8]] = &[
    b"\xed\xa0\x80",     // an encoded surrogate
    b"\xed\xbf\xbf",     // an encoded low surrogate
    b"\xc0\xaf",         // an overlong '/'
    b"\xe0\x80\xaf",     // an overlong '/'
    b"\xf0\x80\x80\xaf", // an overlong '/'
    b"\xf4\x90\x80\x80", // past U+10FFFF
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc3",         // a cut 'é'
    b"\xe2\x84",     // a cut 'Ω'
    b"\xf0\x9f\x91", // a cut emoji
];

fn mutate(rng: &mut SplitMix64, pool: &Pool, max_len: usize) -> Vec<u8> {
    let mut data = pool.pick(rng).to_vec();
    let steps = 1 + rng.below(4) * rng.below(3);
    for _ in 0..steps {
        mutate_once(rng, pool, &mut data, max_len);
    }
    data.truncate(max_len);
    data
}

fn token<'a>(rng: &mut SplitMix64) -> &'a [u8] {
    if rng.chance(6) {
        BAD_BYTES[rng.below(BAD_BYTES.len())]
    } else {
        DICT[rng.below(DICT.len())].as_bytes()
    }
}

fn insert_at(data: &mut Vec<u8>, at: usize, what: &[u8]) {
    let at = at.min(data.len());
    data.splice(at..at, what.iter().copied());
}

/// A position in `data`, mostly on a character boundary (so inserted text lands between
/// characters, as in real text) and sometimes inside one.
fn position(rng: &mut SplitMix64, data: &[u8]) -> usize {
    let mut at = rng.below(data.len() + 1);
    if !rng.chance(8) {
        while at > 0 && at < data.len() && (data[at] & 0xC0) == 0x80 {
            at -= 1;
        }
    }
    at
}

fn range(rng: &mut SplitMix64, data: &[u8], most: usize) -> (usize, usize) {
    let start = position(rng, data);
    let len = 1 + rng.below(most.max(1));
    (start, (start + len).min(data.len()))
}

fn mutate_once(rng: &mut SplitMix64, pool: &Pool, data: &mut Vec<u8>, max_len: usize) {
    match rng.below(16) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            const SPECIAL: [u8; 11] = [
                0, 0xff, 0x7f, 0x80, 0xc0, b'"', b'\\', b'<', b'>', b' ', b'\n',
            ];
            data[i] = if rng.chance(2) {
                SPECIAL[rng.below(SPECIAL.len())]
            } else {
                rng.next_u64() as u8
            };
        }
        2 => {
            let at = position(rng, data);
            let n = 1 + rng.below(4);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            insert_at(data, at, &bytes);
        }
        3 if !data.is_empty() => {
            let most = if rng.chance(4) { data.len() } else { 16 };
            let (s, e) = range(rng, data, most);
            data.drain(s..e);
        }
        4 if !data.is_empty() => {
            let (s, e) = range(rng, data, 64);
            let copy = data[s..e].to_vec();
            let at = position(rng, data);
            insert_at(data, at, &copy);
        }
        5..=7 => {
            let at = position(rng, data);
            let t = token(rng);
            insert_at(data, at, t);
        }
        8 if !data.is_empty() => {
            let (s, e) = range(rng, data, 8);
            let t = token(rng);
            data.splice(s..e, t.iter().copied());
        }
        9 => {
            // Splice: a piece of another input, or this one's head with another's tail.
            let other = pool.pick(rng).to_vec();
            if other.is_empty() {
                return;
            }
            if rng.chance(2) {
                let (s, e) = range(rng, &other, 256);
                let at = position(rng, data);
                insert_at(data, at, &other[s..e]);
            } else {
                let cut = position(rng, data);
                let from = position(rng, &other);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        10 => {
            // A long run of one token or of a piece of the input.
            let piece: Vec<u8> = if data.is_empty() || rng.chance(2) {
                token(rng).to_vec()
            } else {
                let (s, e) = range(rng, data, 16);
                data[s..e].to_vec()
            };
            if piece.is_empty() {
                return;
            }
            let times = [2, 10, 100, 1000, 5000][rng.below(5)];
            let times = times.min(max_len.saturating_sub(data.len()) / piece.len());
            let run = piece.repeat(times);
            let at = position(rng, data);
            insert_at(data, at, &run);
        }
        11 => {
            // Deep nesting.
            let (open, close): (&[u8], &[u8]) = [
                (&b"<b>"[..], &b"</b>"[..]),
                (b"<a href=\"https://n.test\">", b"</a>"),
                (b"**", b"**"),
                (b"[", b"](https://a.test)"),
                (b"```\n", b"\n```\n"),
                (b"{\"a\":", b"}"),
                (b"[", b"]"),
                (b"(", b")"),
                (b"{{ (", b") }}"),
                (b"<div>", b"</div>"),
                (b"> ", b"\n"),
            ][rng.below(11)];
            let depth = [3, 20, 200, 2000][rng.below(4)];
            let mut nested = open.repeat(depth);
            nested.extend_from_slice(b"x");
            if !rng.chance(4) {
                nested.extend(close.repeat(depth));
            }
            let at = position(rng, data);
            insert_at(data, at, &nested);
        }
        12 => {
            // Change a number: a length, an offset, a timestamp.
            if let Some(i) = (0..8)
                .map(|_| rng.below(data.len().max(1)))
                .find(|i| data.get(*i).is_some_and(u8::is_ascii_digit))
            {
                data[i] = b"0123456789"[rng.below(10)];
                if rng.chance(3) {
                    insert_at(data, i, b"9999999999");
                }
            }
        }
        13 => {
            let at = position(rng, data);
            data.truncate(at);
        }
        _ => mutate_json(rng, data),
    }
}

/// Rewrites one string (or number) of a JSON input in place, so the input stays JSON and
/// reaches the code behind the parser.
fn mutate_json(rng: &mut SplitMix64, data: &mut Vec<u8>) {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data) else {
        let at = position(rng, data);
        let t = token(rng);
        insert_at(data, at, t);
        return;
    };
    let mut leaves = Vec::new();
    collect_leaves(&value, String::new(), &mut leaves);
    if leaves.is_empty() {
        return;
    }
    let pointer = leaves[rng.below(leaves.len())].clone();
    let Some(leaf) = value.pointer_mut(&pointer) else {
        return;
    };
    *leaf = match leaf {
        serde_json::Value::String(s) => {
            let mut bytes = std::mem::take(s).into_bytes();
            for _ in 0..1 + rng.below(3) {
                match rng.below(4) {
                    0 => bytes.clear(),
                    1 => {
                        let t = DICT[rng.below(DICT.len())].as_bytes();
                        bytes = t.repeat([1, 3, 50, 1500][rng.below(4)]);
                    }
                    _ => {
                        let at = position(rng, &bytes);
                        let t = DICT[rng.below(DICT.len())].as_bytes();
                        insert_at(&mut bytes, at, t);
                    }
                }
            }
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null => {
            match rng.below(6) {
                0 => serde_json::json!(0),
                1 => serde_json::json!(-1),
                2 => serde_json::json!(u64::MAX),
                3 => serde_json::json!(i64::MIN),
                4 => serde_json::json!("1"),
                _ => serde_json::json!(1.5),
            }
        }
        _ => return,
    };
    if let Ok(text) = serde_json::to_vec(&value) {
        *data = text;
    }
}

fn collect_leaves(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                collect_leaves(v, format!("{at}/{key}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_leaves(v, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}
