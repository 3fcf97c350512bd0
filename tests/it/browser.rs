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

#[tokio::test]
async fn the_web_page_shows_a_bi_answer_and_asks_a_clicked_choice() {
    let Some(tools) = browser_tools() else { return };
    let dir = common::demo(true).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("serve.log");
    let _serve = Serve(
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
    let shots = std::env::var_os("CONVEYOR_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().to_path_buf());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/web_bi.cjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
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
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
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
