//! `conveyor bench tpch`: the TPC-H warehouse benchmark, end to end.
//!
//! The eight tables are generated as Parquet at a scale factor (`lakehouse::tpch`), one
//! `files` connector per table (composite keys for `partsupp` and `lineitem`) syncs them into
//! bronze and silver (in a child `conveyor sync` when the binary is known, so that its peak
//! memory is its own), and the 22 queries run through the lakehouse's SQL engine. Answers are
//! checked against the official ones for scale factors 0.01 and 1 (from DuckDB's `tpch`
//! extension, kept in `src/bench/tpch/`). When Python with the `duckdb` package is at hand,
//! DuckDB runs the same queries on the same Parquet files and the ratio is reported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lakehouse::tpch::{Generated, TABLES, generate};
use crate::lakehouse::{Lakehouse, OutputFormat};

/// The 22 queries (DuckDB's text of the TPC-H queries with the validation parameters).
pub const QUERIES: [&str; 22] = [
    include_str!("tpch/q01.sql"),
    include_str!("tpch/q02.sql"),
    include_str!("tpch/q03.sql"),
    include_str!("tpch/q04.sql"),
    include_str!("tpch/q05.sql"),
    include_str!("tpch/q06.sql"),
    include_str!("tpch/q07.sql"),
    include_str!("tpch/q08.sql"),
    include_str!("tpch/q09.sql"),
    include_str!("tpch/q10.sql"),
    include_str!("tpch/q11.sql"),
    include_str!("tpch/q12.sql"),
    include_str!("tpch/q13.sql"),
    include_str!("tpch/q14.sql"),
    include_str!("tpch/q15.sql"),
    include_str!("tpch/q16.sql"),
    include_str!("tpch/q17.sql"),
    include_str!("tpch/q18.sql"),
    include_str!("tpch/q19.sql"),
    include_str!("tpch/q20.sql"),
    include_str!("tpch/q21.sql"),
    include_str!("tpch/q22.sql"),
];

const ANSWERS_SF0_01: [&str; 22] = [
    include_str!("tpch/sf0_01_q01.csv"),
    include_str!("tpch/sf0_01_q02.csv"),
    include_str!("tpch/sf0_01_q03.csv"),
    include_str!("tpch/sf0_01_q04.csv"),
    include_str!("tpch/sf0_01_q05.csv"),
    include_str!("tpch/sf0_01_q06.csv"),
    include_str!("tpch/sf0_01_q07.csv"),
    include_str!("tpch/sf0_01_q08.csv"),
    include_str!("tpch/sf0_01_q09.csv"),
    include_str!("tpch/sf0_01_q10.csv"),
    include_str!("tpch/sf0_01_q11.csv"),
    include_str!("tpch/sf0_01_q12.csv"),
    include_str!("tpch/sf0_01_q13.csv"),
    include_str!("tpch/sf0_01_q14.csv"),
    include_str!("tpch/sf0_01_q15.csv"),
    include_str!("tpch/sf0_01_q16.csv"),
    include_str!("tpch/sf0_01_q17.csv"),
    include_str!("tpch/sf0_01_q18.csv"),
    include_str!("tpch/sf0_01_q19.csv"),
    include_str!("tpch/sf0_01_q20.csv"),
    include_str!("tpch/sf0_01_q21.csv"),
    include_str!("tpch/sf0_01_q22.csv"),
];

const ANSWERS_SF1: [&str; 22] = [
    include_str!("tpch/sf1_q01.csv"),
    include_str!("tpch/sf1_q02.csv"),
    include_str!("tpch/sf1_q03.csv"),
    include_str!("tpch/sf1_q04.csv"),
    include_str!("tpch/sf1_q05.csv"),
    include_str!("tpch/sf1_q06.csv"),
    include_str!("tpch/sf1_q07.csv"),
    include_str!("tpch/sf1_q08.csv"),
    include_str!("tpch/sf1_q09.csv"),
    include_str!("tpch/sf1_q10.csv"),
    include_str!("tpch/sf1_q11.csv"),
    include_str!("tpch/sf1_q12.csv"),
    include_str!("tpch/sf1_q13.csv"),
    include_str!("tpch/sf1_q14.csv"),
    include_str!("tpch/sf1_q15.csv"),
    include_str!("tpch/sf1_q16.csv"),
    include_str!("tpch/sf1_q17.csv"),
    include_str!("tpch/sf1_q18.csv"),
    include_str!("tpch/sf1_q19.csv"),
    include_str!("tpch/sf1_q20.csv"),
    include_str!("tpch/sf1_q21.csv"),
    include_str!("tpch/sf1_q22.csv"),
];

/// The official answers at scale factor `sf`, where they are kept (0.01 and 1).
pub fn answers(sf: f64) -> Option<&'static [&'static str; 22]> {
    if (sf - 0.01).abs() < 1e-9 {
        Some(&ANSWERS_SF0_01)
    } else if (sf - 1.0).abs() < 1e-9 {
        Some(&ANSWERS_SF1)
    } else {
        None
    }
}

/// What `conveyor bench tpch` is asked to do.
#[derive(Debug, Clone)]
pub struct TpchOptions {
    /// The scale factor (1 is about 8.7 million rows, lineitem 6,001,215 of them).
    pub sf: f64,
    /// Keep the data, store and lakehouse in this folder instead of a temporary one.
    pub dir: Option<PathBuf>,
    /// Timed runs of each query (the median is reported).
    pub runs: usize,
    /// The `conveyor` binary to run the sync in (its own process, so its peak memory is
    /// measured alone); `None` syncs in this process.
    pub sync_exe: Option<PathBuf>,
    /// Python with the `duckdb` package, to time DuckDB on the same files; `None` looks for
    /// `CONVEYOR_DUCKDB_PYTHON`, then `~/.cache/conveyor-duckdb/bin/python`, then `python3`.
    pub python: Option<PathBuf>,
    /// Do not run DuckDB.
    pub no_duckdb: bool,
    /// Generate the data with DuckDB's `dbgen` (Python's `duckdb` and
    /// `duckdb-extension-tpch` packages) instead of the built-in `tpchgen`.
    pub duckdb_data: bool,
}

/// One query's result.
#[derive(Debug, Clone, Serialize)]
pub struct TpchQuery {
    /// 1 to 22.
    pub query: usize,
    /// Median seconds over the runs (planning included).
    pub seconds: f64,
    /// Rows returned.
    pub rows: usize,
    /// Whether the answer matched the official one; `None` when there is none at this scale
    /// factor or the query failed.
    pub correct: Option<bool>,
    /// The first difference from the official answer, or why the query failed.
    pub problem: Option<String>,
    /// DuckDB's median seconds on the same files.
    pub duckdb_seconds: Option<f64>,
}

/// What `conveyor bench tpch` measured.
#[derive(Debug, Clone, Serialize)]
pub struct TpchBench {
    /// The scale factor.
    pub sf: f64,
    /// The folder with the data (`data/`), connectors, store and lakehouse.
    pub dir: String,
    /// Rows generated in all tables.
    pub rows: u64,
    /// Seconds to generate the Parquet files.
    pub generate_seconds: f64,
    /// Seconds of the sync of the eight tables (Parquet → bronze → silver).
    pub sync_seconds: f64,
    /// Rows per second of that sync.
    pub sync_rows_per_second: f64,
    /// Peak resident memory of the sync (bytes); of the child process when the sync ran in
    /// one, else of this whole process.
    pub sync_peak_rss_bytes: Option<u64>,
    /// The queries.
    pub queries: Vec<TpchQuery>,
    /// Sum of the queries' median seconds.
    pub total_seconds: f64,
    /// Queries whose answer matched.
    pub correct: usize,
    /// Whether answers were checked (DuckDB's dbgen data at scale factors 0.01 and 1).
    pub checked: bool,
    /// Whether the data came from DuckDB's dbgen.
    pub duckdb_data: bool,
    /// Sum of DuckDB's median seconds, when it ran.
    pub duckdb_total_seconds: Option<f64>,
    /// Why DuckDB did not run, when it did not.
    pub duckdb_note: Option<String>,
}

impl TpchBench {
    /// Our total time over DuckDB's, when DuckDB ran.
    pub fn ratio(&self) -> Option<f64> {
        self.duckdb_total_seconds
            .filter(|d| *d > 0.0)
            .map(|d| self.total_seconds / d)
    }
}

/// Writes the project of the benchmark into `root`: an empty `conveyor.toml` (every default)
/// and one `files` connector per table over `data/<table>/`.
pub fn write_project(root: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::Upstream(format!("bench: {what}: {e}"));
    std::fs::create_dir_all(root.join("connectors")).map_err(|e| io("creating connectors/", e))?;
    std::fs::write(
        root.join("conveyor.toml"),
        "# TPC-H benchmark project (conveyor bench tpch): every setting at its default.\n",
    )
    .map_err(|e| io("writing conveyor.toml", e))?;
    for (table, key) in TABLES {
        let key = key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            root.join(format!("connectors/{table}.toml")),
            format!(
                "name = \"{table}\"\nkind = \"files\"\npath = \"data/{table}\"\nformat = \"parquet\"\nprimary_key = [{key}]\n"
            ),
        )
        .map_err(|e| io("writing a connector", e))?;
    }
    Ok(())
}

/// Runs the benchmark; `progress` hears each step.
pub async fn tpch(opts: TpchOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<TpchBench> {
    // The data goes to --dir, kept, or to a temporary folder removed when this returns.
    let tmp = tempfile::tempdir()
        .map_err(|e| Error::Upstream(format!("cannot create a temporary folder: {e}")))?;
    let root = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    write_project(&root)?;
    let data = root.join("data");
    let sf = opts.sf;

    progress(&format!(
        "generating TPC-H at scale factor {sf} into {}",
        data.display()
    ));
    let started = Instant::now();
    let generated: Vec<Generated> = if opts.duckdb_data {
        duckdb_generate(opts.python.as_deref(), &data, sf).await?
    } else {
        let d = data.clone();
        tokio::task::spawn_blocking(move || {
            generate(&d, sf, &|g: &Generated| {
                eprintln!("  {}: {} rows", g.table, g.rows);
            })
        })
        .await
        .map_err(|e| Error::internal("generating TPC-H", e))??
    };
    let generate_seconds = started.elapsed().as_secs_f64();
    let rows: u64 = generated.iter().map(|g| g.rows).sum();

    progress("syncing the eight tables (Parquet → bronze → silver)");
    let started = Instant::now();
    let sync_peak_rss_bytes = match &opts.sync_exe {
        Some(exe) => sync_in_child(exe, &root).await?,
        None => {
            sync_here(&root).await?;
            super::peak_rss_bytes()
        }
    };
    let sync_seconds = started.elapsed().as_secs_f64();

    let config = crate::config::Config::load(&root.join("conveyor.toml"))?;
    let lake = Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    // The official answers hold for dbgen's rows; tpchgen's addresses and comments differ
    // from them, so its data is not checked.
    let expected = if opts.duckdb_data { answers(sf) } else { None };
    let runs = opts.runs.max(1);
    let mut queries = Vec::with_capacity(22);
    for (i, text) in QUERIES.iter().enumerate() {
        let n = i + 1;
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let started = Instant::now();
            let out = lake
                .query_with(text, 10_000_000, Duration::from_secs(3600))
                .await;
            times.push(started.elapsed().as_secs_f64());
            let failed = out.is_err();
            last = Some(out);
            if failed {
                break;
            }
        }
        let seconds = median(&mut times);
        let q = match last {
            Some(Ok(out)) => {
                let csv = out.render(OutputFormat::Csv)?;
                let (correct, problem) = match expected {
                    Some(a) => match compare(&csv, a[i]) {
                        Ok(()) => (Some(true), None),
                        Err(p) => (Some(false), Some(p)),
                    },
                    None => (None, None),
                };
                TpchQuery {
                    query: n,
                    seconds,
                    rows: out.rows,
                    correct,
                    problem,
                    duckdb_seconds: None,
                }
            }
            Some(Err(e)) => TpchQuery {
                query: n,
                seconds,
                rows: 0,
                correct: expected.map(|_| false),
                problem: Some(e.to_string()),
                duckdb_seconds: None,
            },
            None => continue,
        };
        progress(&format!(
            "Q{n:02}: {:.3}s, {} rows{}",
            q.seconds,
            q.rows,
            match (q.correct, &q.problem) {
                (Some(true), _) => ", correct".to_string(),
                (_, Some(p)) => format!(", WRONG: {p}"),
                _ => String::new(),
            }
        ));
        queries.push(q);
    }

    let (duckdb_total_seconds, duckdb_note) = if opts.no_duckdb {
        (None, Some("not asked for (--no-duckdb)".to_string()))
    } else {
        progress("running the same queries with DuckDB on the same Parquet files");
        match duckdb_times(opts.python.as_deref(), &generated, runs).await {
            Ok(times) => {
                for (q, t) in queries.iter_mut().zip(&times) {
                    q.duckdb_seconds = Some(*t);
                }
                (Some(times.iter().sum()), None)
            }
            Err(note) => (None, Some(note)),
        }
    };
    let total_seconds = queries.iter().map(|q| q.seconds).sum();
    let correct = queries.iter().filter(|q| q.correct == Some(true)).count();
    let out = TpchBench {
        sf,
        dir: root.display().to_string(),
        rows,
        generate_seconds,
        sync_seconds,
        sync_rows_per_second: rows as f64 / sync_seconds.max(1e-9),
        sync_peak_rss_bytes,
        queries,
        total_seconds,
        correct,
        checked: expected.is_some(),
        duckdb_data: opts.duckdb_data,
        duckdb_total_seconds,
        duckdb_note,
    };
    Ok(out)
}

fn median(times: &mut [f64]) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `conveyor sync --json` in a child process; its peak memory as it reported it.
pub(super) async fn sync_in_child(exe: &Path, root: &Path) -> Result<Option<u64>> {
    let out = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(root.join("conveyor.toml"))
        .args(["sync", "--json"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| Error::Upstream(format!("bench: cannot run {}: {e}", exe.display())))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Upstream(format!(
            "bench: the sync printed no report ({e}); it exited with {}",
            out.status
        ))
    })?;
    check_runs(&report)?;
    Ok(report
        .get("peak_rss_bytes")
        .and_then(serde_json::Value::as_u64))
}

/// The sync in this process, through the same pipeline as `conveyor sync`.
pub(super) async fn sync_here(root: &Path) -> Result<()> {
    use crate::connectors::pipeline::{IndexAccess, Pipeline};
    let config = crate::config::Config::load(&root.join("conveyor.toml"))?;
    let defs = crate::connectors::load_dir(&config.connectors_dir(), &config.base_dir)?;
    let store = crate::store::Store::connect(&config.store_url()?).await?;
    let lake = Lakehouse::open(&config.lakehouse, &config.base_dir)?;
    let pipeline = Pipeline {
        store: &store,
        lake: &lake,
        settings: &config.run_settings(),
        index: IndexAccess::OpenWhenNeeded,
        progress: false,
        full: false,
        feed_all: false,
    };
    let report = pipeline
        .run(&defs, &defs, &crate::connectors::pipeline::Quiet, &|| true)
        .await;
    store.close().await;
    let report = report?;
    let runs = serde_json::json!({ "runs": report.runs });
    check_runs(&runs)
}

fn check_runs(report: &serde_json::Value) -> Result<()> {
    let runs = report
        .get("runs")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| Error::Upstream("bench: the sync report has no runs".into()))?;
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let e = r.get("error")?.as_str()?;
            Some(format!(
                "{}: {e}",
                r.get("connector").and_then(|c| c.as_str()).unwrap_or("?")
            ))
        })
        .collect();
    if runs.len() != TABLES.len() || !failed.is_empty() {
        return Err(Error::Upstream(format!(
            "bench: the sync did not write all {} tables: {}",
            TABLES.len(),
            failed.join("; ")
        )));
    }
    Ok(())
}

/// Compares a result (CSV with a header) with an official answer (`|`-separated with a
/// header): same rows in the same order; numbers equal within 0.01 or one part in a million
/// (the answers round to two or four places and sum floating point), text equal when trimmed.
pub fn compare(csv: &str, answer: &str) -> std::result::Result<(), String> {
    let ours: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv.as_bytes())
        .records()
        .map(|r| {
            r.map(|r| r.iter().map(str::to_owned).collect())
                .map_err(|e| format!("unreadable result: {e}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let theirs: Vec<Vec<&str>> = answer
        .lines()
        .skip(1)
        // An empty line is a row of one null value (Q17 at small scale factors).
        .map(|l| l.split('|').collect())
        .collect();
    if ours.len() != theirs.len() {
        return Err(format!(
            "{} rows, the answer has {}",
            ours.len(),
            theirs.len()
        ));
    }
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a.len() != b.len() {
            return Err(format!(
                "row {}: {} columns, the answer has {}",
                i + 1,
                a.len(),
                b.len()
            ));
        }
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (x.trim(), y.trim());
            let same = match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) => (p - q).abs() <= 0.01_f64.max(q.abs() * 1e-6),
                _ => x == y,
            };
            if !same {
                return Err(format!(
                    "row {} column {}: {x:?}, the answer has {y:?}",
                    i + 1,
                    j + 1
                ));
            }
        }
    }
    Ok(())
}

/// The Python that has the `duckdb` package.
fn python(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    if let Ok(p) = std::env::var("CONVEYOR_DUCKDB_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/conveyor-duckdb/bin/python");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("python3")
}

const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
spec = json.load(open(sys.argv[1]))
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
for table, path in spec["tables"].items():
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
out = []
for q in spec["queries"]:
    times = []
    for _ in range(spec["runs"]):
        t = time.perf_counter()
        con.execute(q).fetchall()
        times.append(time.perf_counter() - t)
    times.sort()
    out.append(times[len(times) // 2])
print(json.dumps(out))
"#;

const DUCKDB_DBGEN: &str = r#"
import json, os, sys
import duckdb, duckdb_extension_tpch
root, sf = sys.argv[1], float(sys.argv[2])
ext_dir = os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions")
ext = [os.path.join(d, f) for d, _, fs in os.walk(ext_dir) for f in fs if f == "tpch.duckdb_extension"][0]
con = duckdb.connect(config={"autoinstall_known_extensions": False})
con.execute("SET enable_progress_bar = false")
con.execute(f"LOAD '{ext}'")
con.execute(f"CALL dbgen(sf={sf})")
out = {}
for t in ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]:
    os.makedirs(os.path.join(root, t), exist_ok=True)
    path = os.path.join(root, t, t + ".parquet")
    con.execute(f"COPY {t} TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 122880)")
    out[t] = [path, con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    con.execute(f"DROP TABLE {t}")
print(json.dumps(out))
"#;

/// The eight tables written by DuckDB's `dbgen` (the reference generator) through Python.
async fn duckdb_generate(
    python_path: Option<&Path>,
    data: &Path,
    sf: f64,
) -> Result<Vec<Generated>> {
    let py = python(python_path);
    let out = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(DUCKDB_DBGEN)
        .arg(data)
        .arg(sf.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Upstream(format!("bench: cannot run {} ({e})", py.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Upstream(format!(
            "bench: DuckDB's dbgen failed with {} ({}); install `pip install duckdb duckdb-extension-tpch` or drop --duckdb-data",
            py.display(),
            err.lines().last().unwrap_or("")
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tables: std::collections::HashMap<String, (String, u64)> =
        serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .map_err(|e| Error::Upstream(format!("bench: DuckDB's dbgen report: {e}")))?;
    TABLES
        .iter()
        .map(|(t, _)| {
            let (path, rows) = tables
                .get(*t)
                .ok_or_else(|| Error::Upstream(format!("bench: DuckDB did not write {t}")))?;
            Ok(Generated {
                table: t,
                path: PathBuf::from(path),
                rows: *rows,
            })
        })
        .collect()
}

/// DuckDB's median seconds per query on the same Parquet files; `Err` says why it could not
/// run (no Python, no `duckdb` package).
async fn duckdb_times(
    python_path: Option<&Path>,
    generated: &[Generated],
    runs: usize,
) -> std::result::Result<Vec<f64>, String> {
    let py = python(python_path);
    let spec = serde_json::json!({
        "tables": generated
            .iter()
            .map(|g| (g.table.to_string(), serde_json::Value::String(g.path.display().to_string())))
            .collect::<serde_json::Map<_, _>>(),
        "queries": QUERIES,
        "runs": runs,
    });
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), spec.to_string()).map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(DUCKDB_SCRIPT)
        .arg(file.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{} could not be run ({e}); install DuckDB with `pip install duckdb` or set CONVEYOR_DUCKDB_PYTHON", py.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "DuckDB did not run with {} ({last}); install it with `pip install duckdb` or set CONVEYOR_DUCKDB_PYTHON",
            py.display()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .map_err(|e| format!("DuckDB's times are unreadable: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn answers_compare_with_tolerance_and_name_the_difference() {
        let answer = "a|b|c\nA|1.00|x\nB|2.5|y\n";
        assert_eq!(compare("a,b,c\nA,1.0000001,x\nB,2.5,y\n", answer), Ok(()));
        let e = compare("a,b,c\nA,1.5,x\nB,2.5,y\n", answer).unwrap_err();
        assert!(e.contains("row 1 column 2"), "{e}");
        let e = compare("a,b,c\nA,1,x\n", answer).unwrap_err();
        assert!(e.contains("1 rows, the answer has 2"), "{e}");
        assert!(answers(0.01).is_some() && answers(1.0).is_some() && answers(0.1).is_none());
    }
}
