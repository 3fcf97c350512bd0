//! The `conveyor` binary as a user runs it: init, ask, index, chat, serve, eval, and the error
//! messages of bad configs and unreachable backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::{conveyor, show};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, for assertion messages.
fn assert_no_panic(o: &Output) {
    assert!(!stderr(o).contains("panicked"), "{}", show(o));
}

fn assert_success(o: &Output) {
    assert!(o.status.success(), "{}", show(o));
    assert_no_panic(o);
}

/// A starter project made by `conveyor init`.
struct Project {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Project {
    fn init() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("proj");
        let out = conveyor().arg("init").arg(&dir).output().unwrap();
        assert_success(&out);
        Self { _tmp: tmp, dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("conveyor.toml")
    }

    /// `conveyor --config <project> ARGS…`.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = conveyor();
        cmd.arg("--config").arg(self.config()).args(args);
        cmd
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("conveyor.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn init_creates_an_indexed_project_and_refuses_to_overwrite_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let out = conveyor().arg("init").arg(&dir).output().unwrap();
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("indexed 5 documents into") && text.contains("chunks"),
        "{}",
        show(&out)
    );
    assert!(text.contains("ask"), "{}", show(&out));
    assert!(dir.join("conveyor.toml").is_file());
    for folder in ["docs", "prompts", "tools", "data/index"] {
        assert!(dir.join(folder).is_dir(), "{folder} missing");
    }
    assert!(dir.join("docs/account-help.md").is_file());
    assert!(dir.join("data/index/manifest.json").is_file());

    let again = conveyor().arg("init").arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    assert!(stderr(&again).contains("--force"), "{}", show(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        show(&again)
    );
    assert_no_panic(&again);
}

#[test]
fn ask_answers_with_citations_in_text_and_json() {
    let p = Project::init();
    let out = p.run(&["ask", "How do I reset my password?"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("click \"Forgot password\""), "{}", show(&out));
    assert!(text.contains("[1]"), "{}", show(&out));
    assert!(text.contains("Sources:"), "{}", show(&out));
    assert!(text.contains("account-help.md"), "{}", show(&out));

    let out = p.run(&["ask", "--json", "How do I request a refund?"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    assert!(
        v["text"].as_str().unwrap().contains("Request refund"),
        "{v}"
    );
    let citations = v["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{v}");
    assert!(
        citations[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("refund-policy.md"),
        "{v}"
    );
    assert_eq!(v["planner"], "offline", "{v}");
}

#[test]
fn index_adds_new_documents_and_reports_bad_paths() {
    let p = Project::init();
    let extra = p.dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("zorblax.md"),
        "# Zorblax calibration\n\n## Calibrating the zorblax\n\n\
         To calibrate the zorblax, turn the quartz dial three times clockwise and press the amber button.\n",
    )
    .unwrap();

    let out = p.run(&["index", extra.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("Indexed 1 of 1 files"),
        "{}",
        show(&out)
    );

    let out = p.run(&["ask", "How do I calibrate the zorblax?"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("quartz dial"), "{}", show(&out));
    assert!(text.contains("[1]"), "{}", show(&out));
    assert!(text.contains("zorblax.md"), "{}", show(&out));

    // --json: a machine-readable report; the file is unchanged now.
    let out = p.run(&["index", "--json", extra.to_str().unwrap()]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    assert_eq!(v["files_seen"], 1, "{v}");
    assert_eq!(v["files_unchanged"], 1, "{v}");
    assert_eq!(v["chunks"], 0, "{v}");
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["elapsed"].is_number(), "{v}");

    // A malformed file among good ones: the good one goes in, the bad one is named with its
    // line, and the exit code says not everything was indexed.
    std::fs::write(
        extra.join("broken.jsonl"),
        "{\"text\": \"fine\"}\n{not json\n",
    )
    .unwrap();
    std::fs::write(
        extra.join("more.md"),
        "# Gizmo\n\nThe gizmo hums in B flat.\n",
    )
    .unwrap();
    let out = p.run(&["index", extra.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("Indexed 1 of 3 files (1 unchanged"),
        "{}",
        show(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("not indexed:"), "{}", show(&out));
    assert!(err.contains("broken.jsonl line 2"), "{}", show(&out));
    assert_no_panic(&out);
    let out = p.run(&["ask", "What does the gizmo hum?"]);
    assert_success(&out);
    assert!(stdout(&out).contains("B flat"), "{}", show(&out));

    let missing = p.dir.join("no-such-folder");
    let out = p.run(&["index", missing.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains("exists"), "{}", show(&out));
    assert_no_panic(&out);
}

#[test]
fn config_errors_are_reported_together_with_their_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "[server]\nlisten = \"nonsense\"\n[limits]\nper_user = \"5/fortnight\"\n[bogus_section]\nkey = 1\n",
    );
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args(["ask", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("3 problems"), "{}", show(&out));
    assert!(err.contains("server.listen"), "{}", show(&out));
    assert!(err.contains("limits.per_user"), "{}", show(&out));
    assert!(err.contains("bogus_section"), "{}", show(&out));
    assert!(err.contains(&cfg.display().to_string()), "{}", show(&out));
    assert_no_panic(&out);
}

#[test]
fn a_bad_env_override_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .env("CONVEYOR__SERVER__LISTEN", "nonsense")
        .args(["ask", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("CONVEYOR__SERVER__LISTEN"),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains("server.listen"), "{}", show(&out));
    assert_no_panic(&out);
}

#[test]
fn an_unset_secret_variable_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "[store]\nurl_env = \"CONVEYOR_IT_SURELY_UNSET_DATABASE_URL\"\n",
    );
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args(["ask", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("CONVEYOR_IT_SURELY_UNSET_DATABASE_URL"),
        "{}",
        show(&out)
    );
    assert!(err.contains("not set"), "{}", show(&out));
    assert!(err.contains("store.url_env"), "{}", show(&out));
    assert_no_panic(&out);
}

#[test]
fn a_missing_config_file_suggests_init() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("nowhere.toml");
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args(["ask", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains(&cfg.display().to_string()), "{}", show(&out));
    assert!(err.contains("not found"), "{}", show(&out));
    assert!(err.contains("conveyor init"), "{}", show(&out));

    // Without --config, the default is ./conveyor.toml in the working directory.
    let out = conveyor()
        .current_dir(tmp.path())
        .args(["ask", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("conveyor init"), "{}", show(&out));
}

#[test]
fn an_unreachable_postgres_fails_fast_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "[store]\nurl = \"postgres://postgres@127.0.0.1:1/test\"\n",
    );
    let started = Instant::now();
    let out = conveyor()
        .arg("--config")
        .arg(&cfg)
        .args(["ask", "How do I reset my password?"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = stderr(&out);
    assert!(err.contains("127.0.0.1:1"), "{}", show(&out));
    assert!(err.contains("PostgreSQL"), "{}", show(&out));
    assert!(err.contains("check store.url"), "{}", show(&out));
    assert_no_panic(&out);
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

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
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

#[tokio::test]
async fn serve_answers_over_http_holds_the_index_and_stops_on_sigterm() {
    let p = Project::init();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = p.dir.join("serve.log");
    let child = p
        .cmd(&["serve"])
        .env("CONVEYOR__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server { child, log };

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("serve exited early with {status}:\n{}", server.log());
        }
        assert!(
            Instant::now() < deadline,
            "no /healthz 200 within 20 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let resp = client
        .post(format!("{base}/v1/messages"))
        .json(&serde_json::json!({
            "conversation_id": "it-serve",
            "user": "tester",
            "text": "How do I request a refund?"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["text"].as_str().unwrap().contains("[1]"), "{v}");
    assert!(
        v["text"].as_str().unwrap().contains("Request refund"),
        "{v}"
    );
    assert!(!v["citations"].as_array().unwrap().is_empty(), "{v}");

    // In-process ask cannot open the index the server holds, and says what to do instead.
    let out = p.run(&["ask", "How do I request a refund?"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("in use"), "{}", show(&out));
    assert!(err.contains("--server"), "{}", show(&out));
    assert_no_panic(&out);

    let out = p.run(&["ask", "--server", &base, "How do I reset my password?"]);
    assert_success(&out);
    assert!(stdout(&out).contains("Forgot password"), "{}", show(&out));
    assert!(stdout(&out).contains("[1]"), "{}", show(&out));

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.wait_exit(Duration::from_secs(15));
    let log = server.log();
    assert!(
        status.is_some(),
        "serve still running 15 s after SIGTERM:\n{log}"
    );
    assert_eq!(status.unwrap().code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn chat_reads_questions_from_a_pipe() {
    let p = Project::init();
    let mut child = p
        .cmd(&["chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"How do I request a refund?\n/quit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("Request refund"), "{}", show(&out));
    assert!(text.contains("[1]"), "{}", show(&out));
    assert!(text.contains("refund-policy.md"), "{}", show(&out));
}

#[test]
fn eval_retrieval_on_cranfield_reports_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/retrieval/cranfield/beir_format");
    if !dir.join("corpus.jsonl").exists() {
        println!("skipped: Cranfield fixture not found");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // No config file: eval uses the defaults.
    let out = conveyor()
        .current_dir(tmp.path())
        .args(["eval", "retrieval", "--json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    let ndcg = v["ndcg_at_10"].as_f64().unwrap();
    assert!(ndcg >= 0.373, "nDCG@10 {ndcg} below 0.373: {v}");
    assert!(v["recall_at_100"].as_f64().unwrap() >= 0.738, "{v}");
    assert_eq!(v["queries"], 225, "{v}");
}

#[tokio::test]
async fn access_approve_list_and_revoke_from_the_command_line() {
    let p = Project::init();
    let store = conveyor::store::Store::connect(&format!(
        "sqlite://{}",
        p.dir.join("data/conveyor.db").display()
    ))
    .await
    .unwrap();
    let code = store
        .pairing_code_for("telegram", "4242", Some("Ana"), "4242", 3_600_000)
        .await
        .unwrap()
        .code;
    store.close().await;

    let out = p.run(&["access", "list"]);
    assert_success(&out);
    assert!(stdout(&out).contains(&code), "{}", show(&out));
    assert!(stdout(&out).contains("Ana"), "{}", show(&out));

    let out = p.run(&["access", "approve", &code.to_lowercase()]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("telegram user 4242 (Ana) may now talk"),
        "{}",
        show(&out)
    );

    let out = p.run(&["access", "approve", &code]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("already approved"), "{}", show(&out));
    assert_no_panic(&out);

    let out = p.run(&["access", "approve", "NOPE-NOPE"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no pairing code"), "{}", show(&out));

    let out = p.run(&["access", "list", "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["grants"][0]["user_id"], "4242");
    assert_eq!(v["pending"].as_array().unwrap().len(), 0);

    let out = p.run(&["access", "grant", "slack", "U999"]);
    assert_success(&out);
    let out = p.run(&["access", "revoke", "telegram", "4242"]);
    assert_success(&out);
    let out = p.run(&["access", "revoke", "telegram", "4242"]);
    assert!(!out.status.success());
    let out = p.run(&["access", "grant", "irc", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("use slack, discord or telegram"),
        "{}",
        show(&out)
    );
}

#[test]
fn doctor_passes_on_a_fresh_project_and_names_missing_channel_secrets() {
    let p = Project::init();
    let out = p.run(&["doctor", "--offline"]);
    assert_success(&out);
    let text = stdout(&out);
    for area in ["config", "store", "index", "llm", "connectors", "channels"] {
        assert!(text.contains(area), "{area} not checked:\n{text}");
    }
    assert!(text.contains("0 failed"), "{text}");

    let config = std::fs::read_to_string(p.config()).unwrap()
        + "\n[channels.slack]\nsigning_secret_env = \"DOC_SLACK_SECRET\"\nbot_token_env = \"DOC_SLACK_TOKEN\"\n\
           \n[channels.telegram]\ntoken_env = \"DOC_TG_TOKEN\"\nmode = \"webhook\"\nsecret_token_env = \"DOC_TG_SECRET\"\n";
    std::fs::write(p.config(), config).unwrap();
    let out = p
        .cmd(&["doctor", "--offline"])
        .env("DOC_SLACK_TOKEN", "xoxp-user-token")
        .env(
            "DOC_TG_TOKEN",
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        )
        .env("DOC_TG_SECRET", "not valid!")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_no_panic(&out);
    let text = stdout(&out);
    assert!(
        text.contains("DOC_SLACK_SECRET (signing secret) is not set"),
        "{text}"
    );
    assert!(text.contains("user token (xoxp-…)"), "{text}");
    assert!(text.contains("DOC_TG_TOKEN holds a bot token"), "{text}");
    assert!(
        text.contains("DOC_TG_SECRET is not a valid secret token"),
        "{text}"
    );
    assert!(text.contains("open to anyone"), "{text}");
    let out = p.run(&["doctor", "--offline", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "fail")
    );
}

#[tokio::test]
async fn doctor_online_asks_slack_who_the_token_belongs_to() {
    let fake = crate::support::slack::FakeSlack::start().await;
    let p = Project::init();
    let config = std::fs::read_to_string(p.config()).unwrap()
        + &format!(
            "\n[channels.slack]\nsigning_secret_env = \"DOC_SLACK_SECRET\"\nbot_token_env = \"DOC_SLACK_TOKEN\"\napi_base_url = \"{}\"\n\
             \n[access.slack]\nusers = [\"W222\"]\n",
            fake.url
        );
    std::fs::write(p.config(), config).unwrap();
    let mut cmd = p.cmd(&["doctor"]);
    cmd.env(
        "DOC_SLACK_SECRET",
        "8f742231b10e8888abcd99yyyzzz85a5"
            .replace('y', "a")
            .replace('z', "b"),
    )
    .env("DOC_SLACK_TOKEN", "xoxb-123-456-abc");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("auth.test: signed in as @conveyor (W111) in workspace Lumen Labs"),
        "{text}"
    );
    assert!(text.contains("access restricted"), "{text}");
    assert_eq!(
        fake.calls_of("auth.test")[0].auth.as_deref(),
        Some("Bearer xoxb-123-456-abc")
    );
}

#[tokio::test]
async fn keys_create_list_and_revoke_from_the_command_line() {
    let p = Project::init();
    let out = p.run(&["keys", "create", "grafana", "--scope", "read,chat"]);
    assert_success(&out);
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        key.starts_with("cvk_") && key.len() == 4 + 12 + 1 + 64,
        "{key}"
    );
    assert!(stderr(&out).contains("shown only now"), "{}", show(&out));
    let id = &key[..16];
    let out = p.run(&["keys", "list"]);
    assert_success(&out);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains(id) && listed.contains("chat,read") && listed.contains("active"),
        "{listed}"
    );
    assert!(
        !listed.contains(&key[17..]),
        "the secret is never listed: {listed}"
    );
    let out = p.run(&["keys", "create", "x", "--scope", "root"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("`root` is not a scope"),
        "{}",
        show(&out)
    );
    let out = p.run(&["keys", "revoke", id]);
    assert_success(&out);
    let out = p.run(&["keys", "revoke", id]);
    assert!(!out.status.success());
    let store = conveyor::store::Store::connect(&format!(
        "sqlite://{}",
        p.dir.join("data/conveyor.db").display()
    ))
    .await
    .unwrap();
    assert!(store.api_key_check(&key).await.unwrap().is_none());
}

/// `conveyor inbox`: an operator sees what waits and what was given up, and queues a failed
/// message again once its cause is fixed.
#[tokio::test]
async fn inbox_lists_queued_and_failed_messages_and_retries_a_failed_one() {
    let p = Project::init();
    let out = p.run(&["inbox", "list"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("The inbox is empty"),
        "{}",
        show(&out)
    );

    let url = format!("sqlite://{}", p.dir.join("data/conveyor.db").display());
    let store = conveyor::store::Store::connect(&url).await.unwrap();
    let payload = serde_json::json!({"inbound": {}});
    let lease = store
        .inbox_put("telegram", "telegram:77", &payload, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .inbox_fail(&lease, "given up after 5 attempts; last error: store down")
        .await
        .unwrap();
    store
        .inbox_put("slack", "slack:Ev9", &payload, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store.close().await;

    let out = p.run(&["inbox", "list"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("failed   telegram:77"), "{text}");
    assert!(text.contains("store down"), "{text}");
    assert!(text.contains("queued   slack:Ev9"), "{text}");
    assert!(text.contains("conveyor inbox retry KEY"), "{text}");
    let out = p.run(&["inbox", "list", "--failed", "--json"]);
    assert_success(&out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["key"], "telegram:77");

    let out = p.run(&["inbox", "retry", "telegram:77"]);
    assert_success(&out);
    let out = p.run(&["inbox", "list", "--failed"]);
    assert!(
        stdout(&out).contains("The inbox is empty"),
        "{}",
        show(&out)
    );
    let out = p.run(&["inbox", "retry", "telegram:77"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("no failed message `telegram:77`"),
        "{}",
        show(&out)
    );
    assert_no_panic(&out);
}
