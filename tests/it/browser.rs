//! The web page in a real browser: `conveyor serve` on the synced demo, and Debian's chromium
//! driven by playwright-core (`tests/browser/web_bi.cjs`). Runs when `CONVEYOR_TEST_BROWSER`
//! names a folder whose `node_modules` holds playwright-core (`.ci/run` installs both);
//! reports itself skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// The folder holding `node_modules/playwright-core`, when browser tests are to run.
fn browser_tools() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("CONVEYOR_TEST_BROWSER").map(PathBuf::from) else {
        eprintln!(
            "skipped: set CONVEYOR_TEST_BROWSER to a folder with node_modules/playwright-core (and install chromium) to run the browser test"
        );
        return None;
    };
    Some(dir)
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `conveyor serve` on the synced demo, on a free loopback port, once it is ready.
struct Served {
    dir: tempfile::TempDir,
    log: PathBuf,
    base: String,
    _serve: Serve,
}

async fn serve_demo() -> Served {
    let dir = common::demo(true).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("serve.log");
    let serve = Serve(
        common::conveyor()
            .current_dir(dir.path())
            .arg("serve")
            .env("CONVEYOR__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "not ready within 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Served {
        dir,
        log,
        base,
        _serve: serve,
    }
}

/// Runs `tests/browser/SCRIPT` against the server; what it saw (its one line of JSON).
async fn browse(tools: &std::path::Path, served: &Served, script: &str) -> Value {
    let shots = std::env::var_os("CONVEYOR_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| served.dir.path().to_path_buf());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&served.base)
        .arg(&shots)
        .env("NODE_PATH", tools.join("node_modules"))
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "the browser script failed:\n{}\n{}\n--- serve log\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&served.log).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_web_page_shows_a_bi_answer_and_asks_a_clicked_choice() {
    let Some(tools) = browser_tools() else { return };
    let served = serve_demo().await;
    let seen = browse(&tools, &served, "web_bi.cjs").await;
    assert_eq!(
        seen["headers"],
        serde_json::json!(["Plan", "Revenue"]),
        "{seen}"
    );
    assert_eq!(
        seen["first_row"],
        serde_json::json!(["enterprise", "$47,072.00"]),
        "{seen}"
    );
    assert_eq!(seen["chart_src"], "data:image/svg+xml;base64,", "{seen}");
    assert!(
        seen["chart_alt"].as_str().unwrap().starts_with("Bar chart"),
        "{seen}"
    );
    assert!(seen["chart_width"].as_i64().unwrap() > 200, "{seen}");
    assert_eq!(seen["csv_head"], "Plan,Revenue", "{seen}");
    assert_eq!(seen["sql_visible"], true, "{seen}");
    assert_eq!(seen["sql_has_group_by"], true, "{seen}");
    assert!(
        seen["clarify_text"]
            .as_str()
            .unwrap()
            .contains("Did you mean region?"),
        "{seen}"
    );
    assert_eq!(
        seen["choices"],
        serde_json::json!(["revenue by region"]),
        "{seen}"
    );
    assert!(
        seen["after_click_user"]
            .as_str()
            .unwrap()
            .contains("revenue by region"),
        "{seen}"
    );
    assert_eq!(
        seen["after_click_headers"],
        serde_json::json!(["Region", "Revenue"]),
        "{seen}"
    );
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
}

/// A string field of what the script saw (empty when it is not a string).
fn text<'a>(seen: &'a Value, field: &str) -> &'a str {
    seen[field].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_workflows_tab_runs_a_workflow_and_decides_an_approval() {
    let Some(tools) = browser_tools() else { return };
    let served = serve_demo().await;
    let seen = browse(&tools, &served, "web_workflows.cjs").await;
    assert_eq!(seen["chat_first"], true, "{seen}");
    assert_eq!(seen["chat_hidden"], true, "{seen}");
    assert_eq!(
        seen["workflows"],
        serde_json::json!(["ticket_triage", "weekly_digest"]),
        "{seen}"
    );
    assert_eq!(
        seen["triage_triggers"],
        serde_json::json!(["hook tickets", "/run triage"]),
        "{seen}"
    );
    assert_eq!(seen["prefill"], "{}", "{seen}");
    // weekly_digest: the query, then the post on the digest feed.
    assert_eq!(seen["digest_state"], "succeeded", "{seen}");
    assert_eq!(
        seen["digest_steps"],
        serde_json::json!(["revenue", "post"]),
        "{seen}"
    );
    assert!(
        text(&seen, "digest_post").contains("Revenue by plan"),
        "{seen}"
    );
    // ticket_triage: waits for the approval, then goes on when approved in the page.
    assert_eq!(seen["triage_waiting"], "waiting", "{seen}");
    assert_eq!(
        seen["approve_buttons"],
        serde_json::json!(["Approve", "Reject"]),
        "{seen}"
    );
    assert_eq!(seen["triage_after"], "succeeded", "{seen}");
    assert_eq!(
        seen["triage_steps"],
        serde_json::json!(["context", "summary", "approve", "post"]),
        "{seen}"
    );
    let post = text(&seen, "triage_post");
    assert!(
        post.contains("approved by api:local") && post.contains("Acme"),
        "{seen}"
    );
    // A refused input: the reason, naming the missing field.
    assert!(text(&seen, "bad_input_error").contains("title"), "{seen}");
    // Hostile text is shown as text, never as markup.
    assert!(
        text(&seen, "hostile_post").contains("<img src=x onerror="),
        "{seen}"
    );
    assert_eq!(
        seen["hostile_markup"],
        serde_json::json!({"pwned": false, "imgs": 0, "bold": 0}),
        "{seen}"
    );
    // The runs table: every run, newest first; the filter; a click opens one.
    assert_eq!(
        seen["runs_workflows"],
        serde_json::json!(["ticket_triage", "ticket_triage", "weekly_digest"]),
        "{seen}"
    );
    assert_eq!(
        seen["filtered"],
        serde_json::json!(["weekly_digest"]),
        "{seen}"
    );
    assert_eq!(seen["clicked_workflow"], "weekly_digest", "{seen}");
    assert_eq!(seen["chat_back"], true, "{seen}");
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
}
