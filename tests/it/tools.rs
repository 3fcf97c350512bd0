//! Tools through the registry, as the agent uses them, against a local HTTP server that plays
//! the remote API: declarative HTTP tools (path, query, body, secret headers, field selection,
//! size cap, timeout, errors), the SSRF guard, policy, schema checks, the audit log with
//! redaction, load errors, and the `tools` / `audit` commands of the binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conveyor::config::ToolsConfig;
use conveyor::store::{AuditVerdict, Store};
use conveyor::tools::{
    Caller, LoadContext, OutcomeKind, RedactHook, ToolOutcome, ToolRegistry, load_dir,
};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{conveyor, show};

/// The secret the fake API expects in `Authorization`; it must never reach the audit log.
const SECRET_VALUE: &str = "tok-7f3a9c1e-never-audit-me";
/// The variable the tool files name for it (unique to these tests).
const SECRET_VAR: &str = "CONVEYOR_IT_TOOLS_ORDERS_KEY";

/// The fake remote API: what it was asked, and on which port it listens.
struct ApiState {
    port: u16,
    hits: Mutex<Vec<String>>,
}

impl ApiState {
    fn hit(&self, path: &str) {
        self.hits.lock().unwrap().push(path.to_owned());
    }
}

type Api = State<Arc<ApiState>>;

async fn weather(
    State(s): Api,
    UrlPath(city): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    s.hit(&format!("/weather/{city}"));
    axum::Json(json!({
        "city": city,
        "query": query.unwrap_or_default(),
        "current": {"temp": 21.5, "condition": "sunny"},
        "items": [{"name": "a"}, {"name": "b"}],
    }))
    .into_response()
}

async fn orders(
    State(s): Api,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    s.hit("/orders");
    let expected = format!("Bearer {SECRET_VALUE}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return (StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response();
    }
    axum::Json(json!({"received": body, "order_id": "ord-1"})).into_response()
}

async fn big(State(s): Api) -> Response {
    s.hit("/big");
    axum::Json(json!({"blob": "x".repeat(100_000)})).into_response()
}

async fn slow(State(s): Api) -> Response {
    s.hit("/slow");
    tokio::time::sleep(Duration::from_secs(5)).await;
    axum::Json(json!({"late": true})).into_response()
}

async fn fail(State(s): Api) -> Response {
    s.hit("/fail");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "database exploded at row 7\n\n   (stack trace follows)",
    )
        .into_response()
}

async fn text(State(s): Api) -> Response {
    s.hit("/text");
    ([(header::CONTENT_TYPE, "text/plain")], "hello plain text").into_response()
}

async fn redirect_to_ip(State(s): Api) -> Response {
    s.hit("/redirect-ip");
    let to = format!("http://127.0.0.1:{}/weather/target", s.port);
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn redirect_local(State(s): Api) -> Response {
    s.hit("/redirect-local");
    let to = format!("http://localhost:{}/weather/hop", s.port);
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// Starts the fake API on 127.0.0.1.
async fn start_api() -> Arc<ApiState> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(ApiState {
        port,
        hits: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/weather/{city}", get(weather))
        .route("/orders", post(orders))
        .route("/big", get(big))
        .route("/slow", get(slow))
        .route("/fail", get(fail))
        .route("/text", get(text))
        .route("/redirect-ip", get(redirect_to_ip))
        .route("/redirect-local", get(redirect_local))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    state
}

/// A server that answers every request with a chunked body that never ends (no
/// Content-Length), counting the bytes it manages to send before the client hangs up.
async fn start_endless() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("400\r\n{}\r\n", "a".repeat(0x400));
                // Stops at 50 MB at the latest; a client that respects its cap hangs up long
                // before.
                for _ in 0..50_000 {
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(0x400, Ordering::SeqCst);
                }
            });
        }
    });
    (port, sent)
}

/// Replaces "secret" with "***" in every string, the way a PII redactor would.
fn redactor() -> RedactHook {
    fn walk(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.replace("secret", "***")),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v))).collect())
            }
            other => other.clone(),
        }
    }
    Arc::new(walk)
}

fn caller(user: &str, channel: &str) -> Caller {
    Caller {
        user_id: user.into(),
        channel: channel.into(),
        conversation: format!("{channel}:conv-1"),
        roles: Vec::new(),
        attributes: Default::default(),
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// The tool files of the in-process tests, pointing at the fake APIs.
fn write_tool_files(dir: &Path, port: u16, endless_port: u16) {
    let base = format!("http://localhost:{port}");
    write(
        dir,
        "weather.toml",
        &r#"
name = "weather"
description = "Weather for a city"
kind = "http"
[parameters]
type = "object"
required = ["city"]
additionalProperties = false
properties = { city = { type = "string", minLength = 1 }, units = { type = "string", enum = ["metric", "imperial"] }, lang = { type = "string" } }
[http]
url = "BASE/weather/{city}"
[http.query]
units = "{units}"
lang = "{lang}"
[response]
fields = ["city", "query", "current.temp", "items[1].name", "missing.path"]
"#
        .replace("BASE", &base),
    );
    write(
        dir,
        "orders.toml",
        &r#"
name = "create_order"
description = "Create an order"
kind = "http"
[parameters]
type = "object"
required = ["item", "quantity"]
properties = { item = { type = "string" }, quantity = { type = "integer", minimum = 1 }, note = { type = "string" } }
[http]
method = "POST"
url = "BASE/orders"
[http.body]
item = "{item}"
quantity = "{quantity}"
note = "{note}"
summary = "{quantity} x {item}"
[http.body.meta]
source = "conveyor"
[http.headers]
Authorization = { env = "VAR", prefix = "Bearer " }
"#
        .replace("BASE", &base)
        .replace("VAR", SECRET_VAR),
    );
    let simple = |file: &str, name: &str, url: &str, extra: &str| {
        write(
            dir,
            file,
            &format!(
                "name = \"{name}\"\ndescription = \"Calls {url}\"\nkind = \"http\"\n{extra}\n[http]\nurl = \"{url}\"\n"
            ),
        );
    };
    simple(
        "big.toml",
        "big",
        &format!("{base}/big"),
        "[response]\nmax_bytes = 1000",
    );
    simple(
        "endless.toml",
        "endless",
        &format!("http://localhost:{endless_port}/endless"),
        "[response]\nmax_bytes = 10000",
    );
    simple(
        "slow.toml",
        "slow",
        &format!("{base}/slow"),
        "timeout = \"300ms\"",
    );
    simple("fail.toml", "fail", &format!("{base}/fail"), "");
    simple("text.toml", "text", &format!("{base}/text"), "");
    simple(
        "redirect_ip.toml",
        "redirect_ip",
        &format!("{base}/redirect-ip"),
        "",
    );
    simple(
        "redirect_ok.toml",
        "redirect_ok",
        &format!("{base}/redirect-local"),
        "",
    );
    simple(
        "metadata.toml",
        "metadata",
        "http://169.254.169.254/latest/meta-data/",
        "",
    );
    simple(
        "direct_ip.toml",
        "direct_ip",
        &format!("http://127.0.0.1:{port}/weather/direct"),
        "",
    );
    simple(
        "restricted.toml",
        "restricted",
        &format!("{base}/weather/restricted"),
        "[policy]\nusers = [\"alice\"]",
    );
    simple(
        "sensitive.toml",
        "sensitive",
        &format!("{base}/weather/sensitive"),
        "sensitive = true",
    );
    simple(
        "sensitive_cli.toml",
        "sensitive_cli",
        &format!("{base}/weather/sensitive-cli"),
        "sensitive = true\n[policy]\nchannels = [\"cli\"]",
    );
    // Not tools: ignored.
    write(dir, "README.md", "# not a tool\n");
    write(dir, "broken.toml.example", "this is not toml = = =\n");
}

/// The fake APIs, a folder of tool files, and registries over them.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    api: Arc<ApiState>,
    endless_sent: Arc<AtomicUsize>,
}

impl Fixture {
    async fn new() -> Self {
        let api = start_api().await;
        let (endless_port, endless_sent) = start_endless().await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tools");
        std::fs::create_dir_all(&dir).unwrap();
        write_tool_files(&dir, api.port, endless_port);
        Self {
            _tmp: tmp,
            dir,
            api,
            endless_sent,
        }
    }

    /// A registry over the tool files, auditing into `store`, with this allow list.
    fn registry(&self, store: &Store, allow_hosts: &[&str]) -> ToolRegistry {
        let config = ToolsConfig {
            allow_hosts: allow_hosts.iter().map(|h| h.to_string()).collect(),
            ..ToolsConfig::default()
        };
        let mut registry = ToolRegistry::new(store.clone(), &config, redactor());
        let env = |name: &str| (name == SECRET_VAR).then(|| SECRET_VALUE.to_owned());
        let cx = LoadContext {
            tools: &config,
            env: conveyor::config::Env::new(env),
        };
        let loaded = load_dir(&self.dir, &cx, &mut registry).unwrap();
        assert_eq!(loaded, 14);
        registry
    }

    fn hits(&self) -> Vec<String> {
        self.api.hits.lock().unwrap().clone()
    }
}

async fn memory_store() -> Store {
    Store::connect("sqlite::memory:").await.unwrap()
}

fn message(o: &ToolOutcome) -> String {
    o.message.clone().unwrap_or_default()
}

fn assert_kind(o: &ToolOutcome, kind: OutcomeKind) {
    assert_eq!(o.kind, kind, "{o:#?}");
}

#[tokio::test]
async fn http_tools_fill_path_query_and_body_send_secrets_and_select_fields() {
    let fx = Fixture::new().await;
    let store = memory_store().await;
    let tools = fx.registry(&store, &["localhost"]);
    let alice = caller("alice", "api");

    let o = tools
        .invoke(
            &alice,
            "weather",
            json!({"city": "São Paulo/secret", "units": "metric"}),
        )
        .await;
    assert_kind(&o, OutcomeKind::Ok);
    // Only the selected fields; the path argument arrived whole (its `/` encoded), the absent
    // `lang` was left out of the query, a missing path is null.
    assert_eq!(
        o.result,
        Some(json!({
            "city": "São Paulo/secret",
            "query": "units=metric",
            "current.temp": 21.5,
            "items[1].name": "b",
            "missing.path": null,
        }))
    );
    assert!(o.audit_id.is_some());

    let o = tools
        .invoke(
            &alice,
            "create_order",
            json!({"item": "widget", "quantity": 3}),
        )
        .await;
    assert_kind(&o, OutcomeKind::Ok);
    assert_eq!(
        o.result.as_ref().unwrap()["received"],
        json!({"item": "widget", "quantity": 3, "summary": "3 x widget", "meta": {"source": "conveyor"}})
    );

    // Both calls are audited, redacted by the hook, and the header secret is nowhere.
    let rows = store.audit_tail(10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].action, "weather");
    assert_eq!(rows[0].user_id, "alice");
    assert_eq!(rows[0].channel, "api");
    assert_eq!(rows[0].conversation, "api:conv-1");
    assert_eq!(rows[0].outcome, "ok");
    assert_eq!(rows[0].arguments["city"], "São Paulo/***");
    assert_eq!(rows[0].result["city"], "São Paulo/***");
    assert_eq!(rows[1].action, "create_order");
    assert_eq!(rows[1].result["received"]["quantity"], 3);
    let everything = serde_json::to_string(&rows).unwrap();
    assert!(!everything.contains(SECRET_VALUE), "{everything}");
    assert!(!everything.contains("secret"), "{everything}");
    assert_eq!(
        store.audit_verify().await.unwrap(),
        AuditVerdict::Intact { records: 2 }
    );
}

#[tokio::test]
async fn oversized_slow_failing_and_plain_text_responses() {
    let fx = Fixture::new().await;
    let store = memory_store().await;
    let tools = fx.registry(&store, &["localhost"]);
    let c = caller("u1", "api");

    let o = tools.invoke(&c, "big", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    assert!(
        message(&o).contains("larger than the limit of 1000 bytes"),
        "{o:#?}"
    );
    assert!(o.result.is_none());

    // A body without Content-Length that never ends: read piece by piece, dropped at the cap.
    let o = tokio::time::timeout(
        Duration::from_secs(20),
        tools.invoke(&c, "endless", json!({})),
    )
    .await
    .expect("a body over the cap must end the call");
    assert_kind(&o, OutcomeKind::Error);
    assert!(message(&o).contains("larger than the limit"), "{o:#?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = fx.endless_sent.load(Ordering::SeqCst);
    assert!(
        sent < 10 * 1024 * 1024,
        "the client kept reading: {sent} bytes"
    );

    let o = tools.invoke(&c, "slow", json!({})).await;
    assert_kind(&o, OutcomeKind::Timeout);
    assert!(message(&o).contains("300ms"), "{o:#?}");
    assert!(o.duration < Duration::from_secs(3), "{o:#?}");

    let o = tools.invoke(&c, "fail", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    let m = message(&o);
    assert!(
        m.contains("500") && m.contains("database exploded at row 7"),
        "{m}"
    );

    let o = tools.invoke(&c, "text", Value::Null).await;
    assert_kind(&o, OutcomeKind::Ok);
    assert_eq!(o.result, Some(json!({"text": "hello plain text"})));

    let outcomes: Vec<String> = store
        .audit_tail(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, ["error", "error", "timeout", "error", "ok"]);
    let rows = store.audit_tail(10).await.unwrap();
    assert!(
        rows[3].result["error"]
            .as_str()
            .unwrap()
            .contains("database exploded"),
        "{:?}",
        rows[3]
    );
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_addresses_unless_the_host_is_allowed_by_name() {
    let fx = Fixture::new().await;
    let store = memory_store().await;
    let c = caller("u1", "api");

    // No allow list: neither the name nor the IP literal of loopback is reachable, and
    // nothing reaches the server.
    let strict = fx.registry(&store, &[]);
    let o = strict
        .invoke(&c, "weather", json!({"city": "Lisbon"}))
        .await;
    assert_kind(&o, OutcomeKind::Error);
    let m = message(&o);
    assert!(
        m.contains("localhost") && m.contains("loopback") && m.contains("tools.allow_hosts"),
        "{m}"
    );
    let o = strict.invoke(&c, "direct_ip", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    assert!(message(&o).contains("127.0.0.1"), "{o:#?}");
    let o = strict.invoke(&c, "metadata", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    let m = message(&o);
    assert!(
        m.contains("169.254.169.254") && m.contains("metadata"),
        "{m}"
    );
    assert!(fx.hits().is_empty(), "{:?}", fx.hits());

    // Allowed by name: the same tool works; the IP literal is still not allowed.
    let allowed = fx.registry(&store, &["localhost"]);
    let o = allowed
        .invoke(&c, "weather", json!({"city": "Lisbon"}))
        .await;
    assert_kind(&o, OutcomeKind::Ok);
    let o = allowed.invoke(&c, "direct_ip", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    let o = allowed.invoke(&c, "metadata", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);

    // A redirect from the allowed host to 127.0.0.1 by address is refused before it is
    // followed; a redirect that stays on the allowed host is followed.
    let o = allowed.invoke(&c, "redirect_ip", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    assert!(message(&o).contains("127.0.0.1"), "{o:#?}");
    let o = allowed.invoke(&c, "redirect_ok", json!({})).await;
    assert_kind(&o, OutcomeKind::Ok);
    assert_eq!(o.result.as_ref().unwrap()["city"], "hop");
    assert_eq!(
        fx.hits(),
        [
            "/weather/Lisbon",
            "/redirect-ip",
            "/redirect-local",
            "/weather/hop"
        ]
    );
    assert_eq!(
        store.audit_verify().await.unwrap(),
        AuditVerdict::Intact { records: 8 }
    );
}

#[tokio::test]
async fn policy_and_schema_violations_are_refused_and_audited() {
    let fx = Fixture::new().await;
    let store = memory_store().await;
    let tools = fx.registry(&store, &["localhost"]);

    let o = tools
        .invoke(&caller("bob", "api"), "restricted", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Denied);
    assert!(message(&o).contains("bob"), "{o:#?}");
    // `users = ["alice"]` names alice where the platform vouches for her id, not on the API,
    // whose callers name themselves (issue 12, finding 3).
    let o = tools
        .invoke(&caller("alice", "slack"), "restricted", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Ok);
    let o = tools
        .invoke(&caller("alice", "api"), "restricted", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Denied);

    // Sensitive without a policy: nobody. Sensitive with a channel list: that channel only.
    let o = tools
        .invoke(&caller("alice", "cli"), "sensitive", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Denied);
    assert!(message(&o).contains("sensitive"), "{o:#?}");
    let o = tools
        .invoke(&caller("alice", "cli"), "sensitive_cli", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Ok);
    let o = tools
        .invoke(&caller("alice", "api"), "sensitive_cli", json!({}))
        .await;
    assert_kind(&o, OutcomeKind::Denied);

    // Schema violations name the field.
    let c = caller("alice", "api");
    let o = tools.invoke(&c, "weather", json!({"city": 42})).await;
    assert_kind(&o, OutcomeKind::Invalid);
    assert!(message(&o).contains("city"), "{o:#?}");
    let o = tools.invoke(&c, "weather", json!({})).await;
    assert_kind(&o, OutcomeKind::Invalid);
    assert!(message(&o).contains("\"city\""), "{o:#?}");
    let o = tools
        .invoke(
            &c,
            "weather",
            json!({"city": "Lisbon", "units": "kelvin", "extra": 1}),
        )
        .await;
    assert_kind(&o, OutcomeKind::Invalid);
    let m = message(&o);
    assert!(m.contains("units") && m.contains("extra"), "{m}");
    let o = tools
        .invoke(&c, "create_order", json!({"item": "w", "quantity": 0}))
        .await;
    assert_kind(&o, OutcomeKind::Invalid);
    assert!(message(&o).contains("quantity"), "{o:#?}");

    let o = tools.invoke(&c, "no_such_tool", json!({})).await;
    assert_kind(&o, OutcomeKind::Error);
    assert!(
        message(&o).contains("no tool named `no_such_tool`"),
        "{o:#?}"
    );

    // Only the allowed calls reached the API.
    assert_eq!(fx.hits(), ["/weather/restricted", "/weather/sensitive-cli"]);
    let rows = store.audit_tail(100).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.user_id.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("restricted", "bob", "denied"),
            ("restricted", "alice", "ok"),
            ("restricted", "alice", "denied"),
            ("sensitive", "alice", "denied"),
            ("sensitive_cli", "alice", "ok"),
            ("sensitive_cli", "alice", "denied"),
            ("weather", "alice", "invalid"),
            ("weather", "alice", "invalid"),
            ("weather", "alice", "invalid"),
            ("create_order", "alice", "invalid"),
            ("no_such_tool", "alice", "error"),
        ]
    );
    assert!(
        rows[0].result["error"].as_str().unwrap().contains("bob"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[6].arguments, json!({"city": 42}));
    assert_eq!(
        store.audit_verify().await.unwrap(),
        AuditVerdict::Intact { records: 11 }
    );

    // What a model is offered depends on who asks.
    let offered =
        |c: &Caller| -> Vec<String> { tools.specs_for(c).into_iter().map(|s| s.name).collect() };
    assert!(!offered(&caller("bob", "api")).contains(&"restricted".to_string()));
    assert!(offered(&caller("alice", "slack")).contains(&"restricted".to_string()));
    assert!(!offered(&caller("alice", "api")).contains(&"restricted".to_string()));
    assert!(!offered(&caller("alice", "cli")).contains(&"sensitive".to_string()));
    assert_eq!(tools.specs().len(), 14);
}

#[tokio::test]
async fn a_result_that_cannot_be_audited_is_not_returned() {
    let fx = Fixture::new().await;
    let store = memory_store().await;
    let tools = fx.registry(&store, &["localhost"]);
    store.close().await;
    let o = tools
        .invoke(
            &caller("alice", "api"),
            "weather",
            json!({"city": "Lisbon"}),
        )
        .await;
    assert_kind(&o, OutcomeKind::Error);
    assert!(o.result.is_none(), "{o:#?}");
    assert!(o.audit_id.is_none(), "{o:#?}");
    assert!(message(&o).contains("audit log"), "{o:#?}");
    assert_eq!(
        o.for_model(),
        json!({"error": message(&o), "outcome": "error"})
    );
}

#[tokio::test]
async fn load_errors_of_every_file_are_reported_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "bad_placeholder.toml",
        r#"
name = "a"
description = "A"
kind = "http"
[parameters]
type = "object"
required = ["city"]
properties = { city = { type = "string" } }
[http]
url = "https://api.example.com/weather/{citty}"
"#,
    );
    write(
        dir,
        "bad_secret.toml",
        r#"
name = "b"
description = "B"
kind = "http"
[http]
url = "https://api.example.com/b"
[http.headers]
X-Api-Key = { env = "CONVEYOR_IT_SURELY_UNSET_TOOL_KEY" }
"#,
    );
    write(
        dir,
        "dup1.toml",
        "name = \"same\"\ndescription = \"d\"\nkind = \"http\"\n[http]\nurl = \"https://a.example/\"\n",
    );
    write(
        dir,
        "dup2.toml",
        "name = \"same\"\ndescription = \"d\"\nkind = \"http\"\n[http]\nurl = \"https://b.example/\"\n",
    );
    write(dir, "nokind.toml", "name = \"n\"\n");
    write(dir, "README.md", "not a tool");
    write(dir, "x.toml.example", "= nonsense");

    let store = memory_store().await;
    let config = ToolsConfig::default();
    let mut registry = ToolRegistry::new(store.clone(), &config, redactor());
    let err = load_dir(dir, &LoadContext::new(&config), &mut registry)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("4 problems"), "{err}");
    for needle in [
        "bad_placeholder.toml",
        "{citty}",
        "bad_secret.toml",
        "CONVEYOR_IT_SURELY_UNSET_TOOL_KEY",
        "dup2.toml: the tool name `same` is already used by",
        "nokind.toml: kind is missing",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("x.toml.example") && !err.contains("README"),
        "{err}"
    );

    // A missing folder is no tools, not an error.
    let n = load_dir(
        &dir.join("does-not-exist"),
        &LoadContext::new(&config),
        &mut registry,
    )
    .unwrap();
    assert_eq!(n, 0);
}

// ---------------------------------------------------------------------------------------------
// The binary: `conveyor tools …` and `conveyor audit …` on a project made by `conveyor init`.

/// Runs the binary off the async runtime (the fake API runs on it meanwhile).
async fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = conveyor();
    cmd.arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        show(&out)
    );
    out
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_calls_tools_and_verifies_and_tails_the_audit_log() {
    let api = start_api().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let init = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || conveyor().arg("init").arg(&dir).output().unwrap()
    })
    .await
    .unwrap();
    assert!(init.status.success(), "{}", show(&init));
    let config = dir.join("conveyor.toml");
    let key_var = "CONVEYOR_IT_CLI_WEATHER_KEY";
    write(
        &dir.join("tools"),
        "weather.toml",
        &r#"
name = "weather"
description = "Weather for a city"
kind = "http"
[parameters]
type = "object"
required = ["city"]
properties = { city = { type = "string" } }
[http]
url = "http://localhost:PORT/weather/{city}"
[http.headers]
X-Api-Key = { env = "VAR" }
[response]
fields = ["city", "current.temp"]
"#
        .replace("PORT", &api.port.to_string())
        .replace("VAR", key_var),
    );
    write(
        &dir.join("tools"),
        "restricted.toml",
        &format!(
            "name = \"restricted\"\ndescription = \"Only for alice\"\nkind = \"http\"\n[http]\nurl = \"http://localhost:{}/weather/r\"\n[policy]\nusers = [\"alice\"]\n",
            api.port
        ),
    );
    let key = [(key_var, "cli-secret-value")];
    let allow = [
        (key_var, "cli-secret-value"),
        ("CONVEYOR__TOOLS__ALLOW_HOSTS", "[\"localhost\"]"),
    ];

    // A secret that is not set stops everything, naming the variable.
    let out = run(&config, &["tools", "list"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(key_var),
        "{}",
        show(&out)
    );

    let out = run(&config, &["tools", "list"], &key).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    for needle in [
        "search_knowledge",
        "builtin",
        "weather",
        "http",
        "Weather for a city",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }

    let out = run(&config, &["tools", "list", "--json"], &key).await;
    assert!(out.status.success(), "{}", show(&out));
    let list = json_out(&out);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // The demo's semantic model adds the two BI tools, its workflows one tool each.
    assert_eq!(
        names,
        [
            "query_metrics",
            "restricted",
            "run_sql",
            "search_knowledge",
            "ticket_triage",
            "weather",
            "weekly_digest"
        ]
    );
    assert_eq!(list[4]["kind"], "workflow");
    assert_eq!(list[4]["parameters"]["required"], json!(["title"]));
    assert_eq!(list[5]["parameters"]["required"], json!(["city"]));
    assert_eq!(list[1]["policy"]["users"], json!(["alice"]));

    // The built-in search over the demo documents.
    let out = run(
        &config,
        &[
            "tools",
            "call",
            "search_knowledge",
            "--args",
            r#"{"query": "refund request", "k": 2}"#,
        ],
        &key,
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let v = json_out(&out);
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 2, "{v}");
    assert_eq!(results[0]["n"], 1);
    assert!(
        results[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("refund-policy.md"),
        "{v}"
    );
    let out = run(
        &config,
        &[
            "tools",
            "call",
            "search_knowledge",
            "--args",
            r#"{"query": "refund", "filters": {"source": "account-help"}}"#,
        ],
        &key,
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    for r in json_out(&out)["results"].as_array().unwrap() {
        assert!(
            r["source"].as_str().unwrap().contains("account-help"),
            "{r}"
        );
    }

    // Loopback is refused until the host is allowed by name.
    let call_weather = [
        "tools",
        "call",
        "weather",
        "--args",
        r#"{"city": "Lisbon"}"#,
    ];
    let out = run(&config, &call_weather, &key).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tools.allow_hosts"),
        "{}",
        show(&out)
    );
    assert!(api.hits.lock().unwrap().is_empty());
    let out = run(&config, &call_weather, &allow).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        json_out(&out),
        json!({"city": "Lisbon", "current.temp": 21.5})
    );

    // Policy, schema and argument syntax.
    let out = run(
        &config,
        &["tools", "call", "restricted", "--user", "bob"],
        &allow,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("you may not use the tool `restricted`"),
        "{}",
        show(&out)
    );
    let out = run(
        &config,
        &["tools", "call", "restricted", "--user", "alice"],
        &allow,
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let out = run(
        &config,
        &["tools", "call", "weather", "--args", r#"{"city": 5}"#],
        &allow,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("city"),
        "{}",
        show(&out)
    );
    let out = run(
        &config,
        &["tools", "call", "weather", "--args", "{not json"],
        &allow,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--args"),
        "{}",
        show(&out)
    );

    // Seven calls reached the registry (the bad JSON did not); all are in the log.
    let out = run(&config, &["audit", "tail", "--json"], &[]).await;
    assert!(out.status.success(), "{}", show(&out));
    let rows = json_out(&out);
    let rows = rows.as_array().unwrap();
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("search_knowledge", "ok"),
            ("search_knowledge", "ok"),
            ("weather", "error"),
            ("weather", "ok"),
            ("restricted", "denied"),
            ("restricted", "ok"),
            ("weather", "invalid"),
        ]
    );
    assert_eq!(rows[4]["user_id"], "bob");
    assert_eq!(rows[4]["channel"], "cli");
    let all = serde_json::to_string(rows).unwrap();
    assert!(!all.contains("cli-secret-value"), "{all}");

    let out = run(&config, &["audit", "tail", "-n", "2"], &[]).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("restricted") && text.contains("invalid"),
        "{text}"
    );

    let out = run(&config, &["audit", "verify"], &[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "audit log intact: 7 records"
    );

    // Someone edits a record behind conveyor's back.
    tamper(
        &dir.join("data/conveyor.db"),
        "UPDATE audit SET outcome = 'ok' WHERE id = 5",
    )
    .await;
    let out = run(&config, &["audit", "verify"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("record 5"), "{}", show(&out));
}

async fn tamper(db: &Path, sql: &str) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[test]
fn allow_hosts_override_parses_as_a_list() {
    let env = vec![(
        "CONVEYOR__TOOLS__ALLOW_HOSTS".to_owned(),
        "[\"localhost\", \"crm.internal\"]".to_owned(),
    )];
    let c = conveyor::config::Config::from_toml("", "t.toml", Path::new("/x"), &env).unwrap();
    assert_eq!(c.tools.allow_hosts, ["localhost", "crm.internal"]);
}
