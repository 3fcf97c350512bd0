//! Scheduled connector runs: the scheduler driven with chosen clock times over a real SQLite
//! store and real Delta tables (due and not-due connectors, the catch-up of a missed run, a
//! failing connector, a busy one), and `conveyor serve` running a connector every second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Timelike, Utc};
use conveyor::config::Config;
use conveyor::connectors::gold::GoldStatus;
use conveyor::connectors::schedule::Scheduler;
use conveyor::connectors::{self};
use conveyor::lakehouse::{Lakehouse, OutputFormat};
use conveyor::store::{RunClaim, Store};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{conveyor, show};

/// A project folder: config, store, lakehouse, a connectors folder and CSV files.
struct Farm {
    dir: TempDir,
    config: Arc<Config>,
    store: Store,
    lake: Lakehouse,
}

impl Farm {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let config = Config::from_toml("", "conveyor.toml", dir.path(), &[]).unwrap();
        let store = Store::connect(&config.store_url().unwrap()).await.unwrap();
        let lake = Lakehouse::open(&config.lakehouse, &config.base_dir).unwrap();
        Self {
            dir,
            config: Arc::new(config),
            store,
            lake,
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A `files` connector over `data/NAME.csv` keyed by `id`.
    fn csv_connector(&self, name: &str, schedule: Option<&str>, csv: &str, extra: &str) {
        self.write(&format!("data/{name}.csv"), csv);
        let schedule = schedule
            .map(|s| format!("schedule = \"{s}\"\n"))
            .unwrap_or_default();
        self.write(
            &format!("connectors/{name}.toml"),
            &format!(
                "name = \"{name}\"\nkind = \"files\"\npath = \"data/{name}.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\n{schedule}{extra}"
            ),
        );
    }

    /// A scheduler over the connectors folder as it is now (no index held: the feed opens
    /// the configured one when needed).
    fn scheduler(&self) -> Scheduler {
        let defs =
            connectors::load_dir(&self.config.connectors_dir(), &self.config.base_dir).unwrap();
        Scheduler::new(
            self.store.clone(),
            self.lake.clone(),
            Arc::new(self.config.run_settings()),
            None,
            defs,
        )
    }

    /// The run history of `connector`, newest first, as (status, error).
    async fn history(&self, connector: &str) -> Vec<(String, Option<String>)> {
        self.store
            .runs(Some(connector), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.status, r.error))
            .collect()
    }

    async fn rows(&self, query: &str) -> Vec<Value> {
        let out = self.lake.query(query, None).await.unwrap();
        serde_json::from_str(&out.render(OutputFormat::Json).unwrap()).unwrap()
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 4, h, m, 0).unwrap()
}

const CUSTOMERS: &str = "id,name,plan\n1,Ada,pro\n2,Bob,starter\n3,Cy,pro\n";
const PRODUCTS: &str = "id,title\n1,Lamp\n2,Desk\n";

#[tokio::test]
async fn a_due_connector_runs_into_silver_history_and_gold_and_a_not_due_one_does_not() {
    let farm = Farm::new().await;
    farm.csv_connector("customers", Some("*/15 * * * *"), CUSTOMERS, "");
    farm.csv_connector("products", Some("0 6 * * *"), PRODUCTS, "");
    farm.csv_connector("manual", None, PRODUCTS, "");
    farm.write(
        "connectors/plans.sql",
        "SELECT plan, count(*) AS customers FROM customers GROUP BY plan",
    );
    let scheduler = farm.scheduler();

    // Between 00:05 and 00:20 only the quarter-hourly connector fires (at 00:15).
    assert_eq!(scheduler.next_fire(at(0, 5)), Some(at(0, 15)));
    let due: Vec<&str> = scheduler
        .due(at(0, 5), at(0, 20))
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(due, ["customers"]);

    let report = scheduler
        .run_due(at(0, 5), at(0, 20))
        .await
        .unwrap()
        .expect("customers is due");
    assert!(!report.failed(), "{report:?}");
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].connector, "customers");
    assert_eq!(report.runs[0].inserted, 3);

    let rows = farm
        .rows("SELECT id, name FROM silver.customers ORDER BY id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "name": "Ada"}),
            json!({"id": 2, "name": "Bob"}),
            json!({"id": 3, "name": "Cy"})
        ]
    );
    assert_eq!(farm.history("customers").await, [("ok".into(), None)]);
    assert!(farm.history("products").await.is_empty());
    assert!(farm.history("manual").await.is_empty());

    // The gold model ran after the source, in the same pass.
    assert_eq!(report.gold.len(), 1);
    assert!(
        matches!(report.gold[0].status, GoldStatus::Built { rows: 2, .. }),
        "{:?}",
        report.gold
    );
    let plans = farm
        .rows("SELECT plan, customers FROM gold.plans ORDER BY plan")
        .await;
    assert_eq!(
        plans,
        vec![
            json!({"plan": "pro", "customers": 2}),
            json!({"plan": "starter", "customers": 1})
        ]
    );
}

#[tokio::test]
async fn nothing_runs_before_its_fire_time() {
    let farm = Farm::new().await;
    farm.csv_connector("customers", Some("0 * * * *"), CUSTOMERS, "");
    let scheduler = farm.scheduler();

    // 00:01 → 00:59: the hourly schedule does not fire; 01:00 is the next fire time.
    assert!(
        scheduler
            .run_due(at(0, 1), at(0, 59))
            .await
            .unwrap()
            .is_none()
    );
    assert!(farm.history("customers").await.is_empty());
    assert_eq!(
        farm.lake
            .version(conveyor::lakehouse::Layer::Silver, "customers")
            .await
            .unwrap(),
        None
    );
    assert_eq!(scheduler.next_fire(at(0, 59)), Some(at(1, 0)));

    // At 01:00 exactly it fires.
    let report = scheduler
        .run_due(at(0, 59), at(1, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_eq!(farm.history("customers").await.len(), 1);
}

#[tokio::test]
async fn a_run_missed_while_serve_was_down_is_caught_up_once_at_start() {
    let farm = Farm::new().await;
    farm.csv_connector("customers", Some("0 * * * *"), CUSTOMERS, "");
    // Daily, twelve hours from now: it does not fire in the next few hours.
    let daily = format!("30 {} * * *", (Utc::now().hour() + 12) % 24);
    farm.csv_connector("daily", Some(&daily), PRODUCTS, "");

    // Both ran once (a whole day's window holds a fire time of each).
    let first = farm
        .scheduler()
        .run_due(at(0, 0), at(23, 59))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.runs.len(), 2, "{first:?}");
    // A connector added since, which never ran.
    farm.csv_connector("fresh", Some("0 * * * *"), PRODUCTS, "");
    let scheduler = farm.scheduler();
    let last = farm.store.runs(Some("customers"), 1).await.unwrap()[0].started_at;
    let last = DateTime::from_timestamp_millis(last).unwrap();

    // Restarted a second later: the daily connector missed nothing, and a connector that
    // never ran is not caught up (it runs at its next fire time).
    let missed: Vec<String> = scheduler
        .missed(last + chrono::Duration::seconds(1))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name.clone())
        .collect();
    assert!(!missed.contains(&"daily".to_string()), "{missed:?}");
    assert!(!missed.contains(&"fresh".to_string()), "{missed:?}");

    // Restarted three hours later: customers missed three hourly runs and runs once; the
    // daily connector and the fresh one do not run.
    farm.write("data/customers.csv", &format!("{CUSTOMERS}4,Dee,starter\n"));
    let report = scheduler
        .catch_up(last + chrono::Duration::hours(3))
        .await
        .unwrap()
        .expect("customers missed a run");
    let ran: Vec<&str> = report.runs.iter().map(|r| r.connector.as_str()).collect();
    assert_eq!(ran, ["customers"], "{report:?}");
    assert_eq!(report.runs[0].inserted, 1);
    assert_eq!(farm.history("customers").await.len(), 2);
    assert_eq!(farm.history("daily").await.len(), 1);
    assert!(farm.history("fresh").await.is_empty());
    let count = farm
        .rows("SELECT count(*) AS n FROM silver.customers")
        .await;
    assert_eq!(count, vec![json!({"n": 4})]);
}

#[tokio::test]
async fn a_failing_connector_does_not_stop_the_others() {
    let farm = Farm::new().await;
    // `broken` fails its run: a row without its primary key, and on_error = "fail".
    farm.csv_connector(
        "broken",
        Some("*/5 * * * *"),
        "id,name\n1,Ada\n,nobody\n",
        "on_error = \"fail\"\n",
    );
    farm.csv_connector("customers", Some("*/5 * * * *"), CUSTOMERS, "");
    let scheduler = farm.scheduler();

    let report = scheduler
        .run_due(at(0, 0), at(0, 5))
        .await
        .unwrap()
        .unwrap();
    assert!(report.failed());
    assert_eq!(report.runs.len(), 2);
    let broken = report
        .runs
        .iter()
        .find(|r| r.connector == "broken")
        .unwrap();
    assert!(broken.error.is_some(), "{broken:?}");
    let ok = report
        .runs
        .iter()
        .find(|r| r.connector == "customers")
        .unwrap();
    assert!(ok.error.is_none(), "{ok:?}");

    let history = farm.history("broken").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].0, "failed");
    assert!(
        history[0].1.as_deref().unwrap().contains("primary key"),
        "{history:?}"
    );
    assert_eq!(farm.history("customers").await, [("ok".into(), None)]);
    let count = farm
        .rows("SELECT count(*) AS n FROM silver.customers")
        .await;
    assert_eq!(count, vec![json!({"n": 3})]);
}

#[tokio::test]
async fn a_busy_connector_is_skipped_without_error() {
    let farm = Farm::new().await;
    farm.csv_connector("customers", Some("*/5 * * * *"), CUSTOMERS, "");
    farm.csv_connector("products", Some("*/5 * * * *"), PRODUCTS, "");
    let scheduler = farm.scheduler();

    // A manual `conveyor sync customers` holds the connector right now.
    let claim = farm
        .store
        .run_claim("customers", "manual-run", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claim, RunClaim::Owned);

    let report = scheduler
        .run_due(at(0, 0), at(0, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.not_run.len(), 1, "{report:?}");
    assert_eq!(report.not_run[0].connector, "customers");
    assert!(report.not_run[0].busy, "{report:?}");
    assert!(
        report.not_run[0].error.contains("already syncing"),
        "{report:?}"
    );
    let ran: Vec<&str> = report.runs.iter().map(|r| r.connector.as_str()).collect();
    assert_eq!(ran, ["products"]);

    // The manual run is untouched: still the only (running) run of customers.
    let history = farm.store.runs(Some("customers"), 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].id.as_str(), history[0].status.as_str()),
        ("manual-run", "running")
    );
    assert_eq!(
        farm.lake
            .version(conveyor::lakehouse::Layer::Silver, "customers")
            .await
            .unwrap(),
        None
    );
}

/// A running `conveyor serve`, killed on drop unless it already exited.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `conveyor_index_chunks` gauge of `/metrics`.
async fn index_chunks(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("conveyor_index_chunks "))
        .unwrap_or_else(|| panic!("no conveyor_index_chunks in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn serve_runs_a_connector_every_second_and_feeds_the_index_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // A connector on a six-field (seconds) schedule, indexed into the knowledge index.
    write(
        &dir,
        "data/gadgets.csv",
        "id,name,note\n1,Zephyrine,The zephyrine gadget folds into a pocket-sized cube for travel.\n",
    );
    write(
        &dir,
        "connectors/gadgets.toml",
        "name = \"gadgets\"\nkind = \"files\"\npath = \"data/gadgets.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\nschedule = \"* * * * * *\"\n\n[index]\ntitle = \"name\"\ntext = [\"note\"]\n",
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join("serve.log");
    let child = conveyor()
        .arg("--config")
        .arg(dir.join("conveyor.toml"))
        .arg("serve")
        .env("CONVEYOR__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server { child, log };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Within 30 s a scheduled run of gadgets shows in the history, finished and ok.
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("serve exited early with {status}:\n{}", server.log());
        }
        if let Ok(r) = client
            .get(format!("{base}/v1/runs?connector=gadgets"))
            .send()
            .await
            && r.status() == 200
        {
            let v: Value = r.json().await.unwrap();
            if let Some(run) = v["runs"]
                .as_array()
                .unwrap()
                .iter()
                // The oldest: the first run read the file; later ones find it unchanged.
                .rev()
                .find(|r| r["status"] == "ok")
            {
                break run.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run of gadgets within 30 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run["rows_read"], 1, "{run}");

    // The connector list says the scheduler runs gadgets, and not the demo connectors
    // (they have no schedule).
    let v: Value = client
        .get(format!("{base}/v1/connectors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_name = |n: &str| {
        v["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("gadgets")["scheduled"], true, "{v}");
    assert!(by_name("gadgets")["next_run"].is_string(), "{v}");
    assert_eq!(by_name("customers")["scheduled"], false, "{v}");

    // The feed ran in-process, into the index serve holds: the row answers a question.
    ask_until_cited(
        &client,
        &base,
        "What does the zephyrine gadget fold into?",
        "silver.gadgets#1",
        &|| server.log(),
    )
    .await;

    // A manual `conveyor sync products` while serve holds the index: the data syncs, the
    // feed cannot run there, and the next scheduled pass (of gadgets) indexes products.
    let chunks_before = index_chunks(&client, &base).await;
    crate::common::give_demo_product_priority_support(&dir);
    let out = conveyor()
        .arg("--config")
        .arg(dir.join("conveyor.toml"))
        .args(["sync", "products"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("index feed: not run"),
        "{}",
        show(&out)
    );
    ask_until_cited(
        &client,
        &base,
        "Which plan has priority support?",
        "silver.products#PRD-002",
        &|| server.log(),
    )
    .await;
    // The index size gauge follows the feed (12 product rows more).
    let deadline = Instant::now() + Duration::from_secs(10);
    while index_chunks(&client, &base).await < chunks_before + 12 {
        assert!(
            Instant::now() < deadline,
            "conveyor_index_chunks stayed below {} + 12",
            chunks_before
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second scheduled run comes a second or so later (the file is unchanged: nothing read).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = client
            .get(format!("{base}/v1/runs?connector=gadgets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["runs"].as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only one scheduled run within 30 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM stops the scheduler with the server, promptly and cleanly.
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve still running 15 s after SIGTERM:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = server.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("scheduled connector runs are on"), "{log}");
}

/// Asks `question` (each time in a new conversation) until the answer cites `source`, for at
/// most 30 s; fails with the last answer and the server's log.
async fn ask_until_cited(
    client: &reqwest::Client,
    base: &str,
    question: &str,
    source: &str,
    log: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = client
            .post(format!("{base}/v1/messages"))
            .json(&json!({
                "conversation_id": format!("ask-{}", uuid::Uuid::new_v4()),
                "user": "tester",
                "text": question
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v.to_string().contains(source) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer to {question:?} cited {source} within 30 s: {v}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
