//! The LLM planner against fake providers (`tests/support/llm_fake.rs`): recorded OpenAI and
//! Anthropic responses replayed through rig's wires, and scripted tool loops through the whole
//! gateway on the demo project. Tests assert what conveyor sends (tool results under the
//! right call ids, no personal data) as well as what it answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use conveyor::agent::llm::{ChatMessage, ChatRequest, ChatResponse, Finish, LlmClient};
use conveyor::app::App;
use conveyor::config::{Config, Env, HumanDuration, LlmConfig, LlmProvider, Rate};
use conveyor::model::{Channel, ConversationKey, Inbound, Outbound, UserRef};
use serde_json::Value;

use crate::support::llm_fake::{FakeLlm, Scripted, Wire, fixtures, refused_url};

const UNAVAILABLE: &str = "The LLM was unavailable";

/// Anthropic needs a key from the environment; the tests cannot set variables (no `unsafe`),
/// so they name one cargo always sets for the test process. The fake ignores its value.
const FAKE_KEY_ENV: &str = "CARGO_PKG_NAME";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn llm_config(provider: LlmProvider, url: &str, stream: bool) -> LlmConfig {
    LlmConfig {
        provider,
        model: Some("fake-model".into()),
        base_url: Some(url.into()),
        stream,
        ..LlmConfig::default()
    }
}

/// The `[llm]` section that points `wire`'s provider at a fake.
fn wire_config(wire: Wire, url: &str, stream: bool) -> LlmConfig {
    let provider = match wire {
        Wire::OpenAi => LlmProvider::OpenaiCompatible,
        Wire::Anthropic => LlmProvider::Anthropic,
        Wire::Gemini => LlmProvider::Gemini,
    };
    let mut cfg = llm_config(provider, url, stream);
    if wire != Wire::OpenAi {
        cfg.api_key_env = Some(FAKE_KEY_ENV.into());
    }
    cfg
}

fn client(wire: Wire, url: &str, stream: bool) -> LlmClient {
    LlmClient::build(&wire_config(wire, url, stream), &Env::process()).unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest {
        system: "You are terse.".into(),
        messages: vec![ChatMessage::User("What is the weather?".into())],
        tools: Vec::new(),
    }
}

async fn replay(wire: Wire, reply: Scripted, stream: bool) -> ChatResponse {
    let fake = FakeLlm::start(wire, vec![reply]).await;
    client(wire, &fake.url, stream)
        .complete(&hello())
        .await
        .unwrap()
}

/// The demo project from `conveyor init`, indexed, in a temp folder.
async fn demo_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    dir
}

fn demo_config(dir: &Path, llm: LlmConfig) -> Config {
    let path = dir.join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config = Config::from_toml(&text, &path.display().to_string(), dir, &[]).unwrap();
    config.limits.per_user = Rate::Off;
    config.limits.per_conversation = Rate::Off;
    config.llm = llm;
    config
}

async fn ask(app: &App, text: &str) -> Outbound {
    ask_in(app, &uuid::Uuid::new_v4().to_string(), text).await
}

async fn ask_in(app: &App, conversation: &str, text: &str) -> Outbound {
    app.gateway
        .handle(Inbound {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            conversation: ConversationKey::new(Channel::API, conversation),
            user: UserRef {
                id: "ana".into(),
                name: Some("Ana".into()),
            },
            text: text.into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap()
}

/// Every message of a request body, as text, for "was this sent?" checks.
fn body_text(requests: &[Value]) -> String {
    requests
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The OpenAI `tool` messages of a request: (tool_call_id, content).
fn openai_tool_messages(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (m["tool_call_id"].as_str().unwrap().to_string(), content)
        })
        .collect()
}

#[test]
fn only_the_provider_layer_imports_rig() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        if text.contains("rig_core") && !entry.path().ends_with("agent/llm.rs") {
            offenders.push(entry.path().display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "rig is imported outside src/agent/llm.rs: {offenders:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The provider layer: recorded responses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_recorded_streams_reassemble_like_the_sdk() {
    let Some(dir) = fixtures() else { return };
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("openai/stream/EXPECTED_reassembled.json")).unwrap(),
    )
    .unwrap();
    for (file, want) in expected["results"].as_object().unwrap() {
        let sse = std::fs::read_to_string(dir.join("openai/stream").join(file)).unwrap();
        let got = replay(Wire::OpenAi, Scripted::sse(sse), true).await;
        let calls: Vec<(String, String, Value)> = got
            .calls
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
            .collect();
        let want_calls: Vec<(String, String, Value)> = want["tool_calls_choice0"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["name"].as_str().unwrap().to_string(),
                    serde_json::from_str(c["arguments"].as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(calls, want_calls, "{file}");
        assert!(
            got.calls.iter().all(|c| c.invalid_arguments.is_none()),
            "{file}"
        );
        if let Some(text) = want["content_choice0"].as_str() {
            assert_eq!(got.text, text, "{file}");
        }
        let finish = match want["finish_reason_choice0"].as_str().unwrap() {
            "length" => Finish::Length,
            "tool_calls" => Finish::ToolCalls,
            _ => Finish::Stop,
        };
        assert_eq!(got.finish, finish, "{file}");
        if file.contains("refusal") {
            // The refusal arrives in `delta.refusal`; it is what the model says.
            assert!(!got.text.is_empty(), "{file}: {got:?}");
        }
    }
}

#[tokio::test]
async fn openai_recorded_responses_parse_unary() {
    let Some(dir) = fixtures() else { return };
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.join("openai/nonstream")).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        let raw: Value = serde_json::from_str(&body).unwrap();
        let got = replay(Wire::OpenAi, Scripted::json(body), false).await;
        let message = &raw["choices"][0]["message"];
        let want_ids: Vec<&str> = message["tool_calls"]
            .as_array()
            .map(|calls| calls.iter().map(|c| c["id"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let ids: Vec<&str> = got.calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, want_ids, "{}", path.display());
        if let Some(text) = message["content"].as_str() {
            assert_eq!(got.text, text, "{}", path.display());
        }
        if raw["choices"][0]["finish_reason"] == "length" {
            assert_eq!(got.finish, Finish::Length, "{}", path.display());
        }
        assert_eq!(
            got.tokens,
            raw["usage"]["total_tokens"].as_u64().unwrap(),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 5);
}

#[tokio::test]
async fn anthropic_recorded_streams_reassemble() {
    let Some(dir) = fixtures() else { return };
    let stream = dir.join("anthropic/stream");
    let sse = |name: &str| Scripted::sse(std::fs::read_to_string(stream.join(name)).unwrap());

    let got = replay(Wire::Anthropic, sse("basic_response.sse"), true).await;
    assert_eq!(got.text, "Hello there!");
    assert_eq!(got.finish, Finish::Stop);

    let got = replay(Wire::Anthropic, sse("tool_use_response.sse"), true).await;
    assert_eq!(got.calls.len(), 1, "{got:?}");
    assert_eq!(got.calls[0].id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    assert_eq!(got.calls[0].name, "get_weather");
    assert!(
        got.calls[0].arguments["location"]
            .as_str()
            .unwrap()
            .contains("Paris")
    );
    assert!(got.text.starts_with("I'll check the current weather"));

    // Cut off by max_tokens in the middle of the tool input: the call is kept with its raw
    // text marked invalid, so the loop can ask the model to repair it.
    let got = replay(
        Wire::Anthropic,
        sse("incomplete_partial_json_response.sse"),
        true,
    )
    .await;
    assert_eq!(got.finish, Finish::Length);
    assert_eq!(got.calls.len(), 1, "{got:?}");
    assert!(got.calls[0].invalid_arguments.is_some(), "{got:?}");
}

#[tokio::test]
async fn a_refusal_from_anthropic_is_said_plainly() {
    let Some(dir) = fixtures() else { return };
    let body = std::fs::read_to_string(dir.join("anthropic/stream/refusal_response.sse")).unwrap();
    let got = replay(Wire::Anthropic, Scripted::sse(body.clone()), true).await;
    assert_eq!((got.text.as_str(), got.finish), ("", Finish::Filtered));

    // Through the loop: the user is told the model declined; no offline fallback.
    let fake = FakeLlm::start(Wire::Anthropic, vec![Scripted::sse(body)]).await;
    let project = demo_project().await;
    let mut llm = llm_config(LlmProvider::Anthropic, &fake.url, true);
    llm.api_key_env = Some(FAKE_KEY_ENV.into());
    let app = App::build(demo_config(project.path(), llm)).await.unwrap();
    let out = ask(&app, "How do I request a refund?").await;
    assert_eq!(out.text, "The model declined to answer this request.");
    assert!(out.citations.is_empty());
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn status_codes_classify_and_retry_after_is_read() {
    for stream in [false, true] {
        let fake = FakeLlm::start(
            Wire::OpenAi,
            vec![
                Scripted::Status {
                    status: 429,
                    headers: vec![("retry-after", "7".into())],
                    body: r#"{"error":{"message":"slow down"}}"#.into(),
                },
                Scripted::status(503),
                Scripted::status(400),
            ],
        )
        .await;
        let c = client(Wire::OpenAi, &fake.url, stream);
        let e = c.complete(&hello()).await.unwrap_err();
        assert_eq!(
            (e.status, e.retryable),
            (Some(429), true),
            "stream={stream}"
        );
        assert_eq!(
            e.retry_after,
            Some(std::time::Duration::from_secs(7)),
            "stream={stream}"
        );
        let e = c.complete(&hello()).await.unwrap_err();
        assert_eq!(
            (e.status, e.retryable),
            (Some(503), true),
            "stream={stream}"
        );
        let e = c.complete(&hello()).await.unwrap_err();
        assert_eq!(
            (e.status, e.retryable),
            (Some(400), false),
            "stream={stream}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tool loop through the gateway
// ---------------------------------------------------------------------------------------------

const QUESTION: &str = "How do I get a refund? I'm ana.souza@example.com, CPF 529.982.247-25, phone +55 11 98765-4321.";
const PERSONAL: [&str; 4] = [
    "ana.souza@example.com",
    "529.982.247-25",
    "52998224725",
    "98765-4321",
];

async fn search_then_cite(wire: Wire, stream: bool) {
    let fake = FakeLlm::start(
        wire,
        vec![
            Scripted::call(
                "call_search_1",
                "search_knowledge",
                r#"{"query": "refund request"}"#,
            ),
            Scripted::text("Ask support within 30 days [1]. Nothing else [42]."),
        ],
    )
    .await;
    let dir = demo_project().await;
    let llm = wire_config(wire, &fake.url, stream);
    let app = App::build(demo_config(dir.path(), llm)).await.unwrap();
    let out = ask(&app, QUESTION).await;

    assert_eq!(fake.hits(), 2);
    assert!(
        out.text
            .starts_with("Ask support within 30 days [1]. Nothing else."),
        "{}",
        out.text
    );
    assert!(!out.text.contains("[42]"), "{}", out.text);
    assert_eq!(out.citations.len(), 1, "{:?}", out.citations);
    assert_eq!(out.citations[0].n, 1);
    assert!(!out.text.contains(UNAVAILABLE));

    let requests = fake.requests();
    // The tools were offered, and the search result went back under the call's id.
    let sent = body_text(&requests);
    assert!(sent.contains("search_knowledge"));
    match wire {
        Wire::OpenAi => {
            let tools = openai_tool_messages(&requests[1]);
            assert_eq!(tools.len(), 1, "{}", requests[1]);
            assert_eq!(tools[0].0, "call_search_1");
            assert!(tools[0].1.contains("results"), "{}", tools[0].1);
            assert_eq!(requests[0]["stream"].as_bool().unwrap_or(false), stream);
        }
        Wire::Anthropic => {
            let last = requests[1]["messages"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(last["role"], "user");
            let block = &last["content"][0];
            assert_eq!(block["type"], "tool_result", "{last}");
            assert_eq!(block["tool_use_id"], "call_search_1", "{last}");
        }
        Wire::Gemini => {
            let contents = requests[1]["contents"].as_array().unwrap();
            let call = &contents[contents.len() - 2]["parts"][0]["functionCall"];
            assert_eq!(call["name"], "search_knowledge", "{}", requests[1]);
            let answer = &contents.last().unwrap()["parts"][0]["functionResponse"];
            assert_eq!(answer["name"], "search_knowledge", "{}", requests[1]);
            // Gemini pairs results with calls by name and order: rig leaves the id out of the
            // replay for models before Gemini 3.
            assert!(
                answer["response"].to_string().contains("results"),
                "{}",
                requests[1]
            );
        }
    }
    // No personal data from the user's text reached the provider.
    for p in PERSONAL {
        assert!(!sent.contains(p), "{p} was sent to the provider");
    }
}

#[tokio::test]
async fn openai_streamed_loop_searches_then_cites() {
    search_then_cite(Wire::OpenAi, true).await;
}

#[tokio::test]
async fn openai_unary_loop_searches_then_cites() {
    search_then_cite(Wire::OpenAi, false).await;
}

#[tokio::test]
async fn anthropic_streamed_loop_searches_then_cites() {
    search_then_cite(Wire::Anthropic, true).await;
}

#[tokio::test]
async fn anthropic_unary_loop_searches_then_cites() {
    search_then_cite(Wire::Anthropic, false).await;
}

#[tokio::test]
async fn gemini_streamed_loop_searches_then_cites() {
    search_then_cite(Wire::Gemini, true).await;
}

#[tokio::test]
async fn gemini_unary_loop_searches_then_cites() {
    search_then_cite(Wire::Gemini, false).await;
}

#[tokio::test]
async fn ollama_speaks_the_openai_wire_without_a_key() {
    let fake = FakeLlm::start(Wire::OpenAi, vec![Scripted::text("Hi from llama [1].")]).await;
    let dir = demo_project().await;
    let mut llm = llm_config(LlmProvider::Ollama, &fake.url, true);
    llm.redact = false;
    let app = App::build(demo_config(dir.path(), llm)).await.unwrap();
    let out = ask(&app, "How do I request a refund?").await;
    assert_eq!(out.planner, "ollama");
    assert!(out.text.starts_with("Hi from llama [1]."), "{}", out.text);
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn the_provider_sees_placeholders_and_the_user_sees_the_values() {
    let fake = FakeLlm::start(Wire::OpenAi, vec![Scripted::EchoUser]).await;
    let (_dir, app) = openai_app(&fake.url, |_| {}).await;
    let out = ask(&app, QUESTION).await;
    let sent = body_text(&fake.requests());
    for p in PERSONAL {
        assert!(!sent.contains(p), "{p} was sent to the provider");
    }
    assert!(sent.contains("[EMAIL_1]"), "{sent}");
    // The echoed placeholders are restored in the reply.
    assert!(out.text.contains("ana.souza@example.com"), "{}", out.text);
    assert!(out.text.contains("529.982.247-25"), "{}", out.text);
    assert!(!out.text.contains("[EMAIL_1]"), "{}", out.text);

    // With redaction off (e.g. a local model), the text goes as typed.
    let fake = FakeLlm::start(Wire::OpenAi, vec![Scripted::EchoUser]).await;
    let (_dir, app) = openai_app(&fake.url, |l| l.redact = false).await;
    ask(&app, QUESTION).await;
    assert!(body_text(&fake.requests()).contains("ana.souza@example.com"));
}

/// A fake customer API for an HTTP tool: answers `GET /customers?email=…` and records the
/// query strings it received.
async fn fake_crm() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/customers",
        axum::routing::get(move |uri: axum::http::Uri| {
            let log = std::sync::Arc::clone(&log);
            async move {
                log.lock()
                    .unwrap()
                    .push(uri.query().unwrap_or("").to_string());
                axum::Json(serde_json::json!({"name": "Ana Souza", "plan": "Pro", "internal": 7}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://localhost:{port}"), seen)
}

#[tokio::test]
async fn tool_arguments_are_restored_before_the_tool_runs_and_every_call_is_audited() {
    let (crm, seen) = fake_crm().await;
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::Answer(crate::support::llm_fake::Answer {
                text: String::new(),
                calls: vec![
                    (
                        "c1".into(),
                        "lookup_customer".into(),
                        r#"{"email":"[EMAIL_1]"}"#.into(),
                    ),
                    (
                        "c2".into(),
                        "search_knowledge".into(),
                        r#"{"query":"refund"}"#.into(),
                    ),
                ],
            }),
            Scripted::text("[EMAIL_1] is on the Pro plan; refunds go through support [2]."),
        ],
    )
    .await;
    let dir = demo_project().await;
    std::fs::create_dir_all(dir.path().join("tools")).unwrap();
    std::fs::write(
        dir.path().join("tools/crm.toml"),
        format!(
            r#"name = "lookup_customer"
description = "Find a customer by e-mail."
kind = "http"
[parameters]
type = "object"
required = ["email"]
[parameters.properties.email]
type = "string"
[http]
url = "{crm}/customers"
[http.query]
email = "{{email}}"
[response]
fields = ["name", "plan"]
"#
        ),
    )
    .unwrap();
    let mut config = demo_config(
        dir.path(),
        llm_config(LlmProvider::OpenaiCompatible, &fake.url, true),
    );
    config.tools.allow_hosts = vec!["localhost".into()];
    let app = App::build(config).await.unwrap();
    let out = ask(&app, QUESTION).await;

    // The tool got the real address; the provider never saw it; the user sees it restored.
    let queries = seen.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains("ana.souza%40example.com"),
        "{queries:?}"
    );
    let requests = fake.requests();
    let sent = body_text(&requests);
    for p in PERSONAL {
        assert!(!sent.contains(p), "{p} was sent to the provider");
    }
    assert!(
        out.text
            .starts_with("ana.souza@example.com is on the Pro plan"),
        "{}",
        out.text
    );
    let results = openai_tool_messages(&requests[1]);
    assert_eq!(results[0].0, "c1");
    assert!(results[0].1.contains("Pro"), "{}", results[0].1);
    assert!(
        !results[0].1.contains("internal"),
        "only the listed fields: {}",
        results[0].1
    );
    assert_eq!(results[1].0, "c2");

    // Both calls are in the audit log, under the asking user and channel, and the chain holds.
    let rows = app.store.audit_tail(10).await.unwrap();
    let mut actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        vec!["lookup_customer", "search_knowledge"],
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r.user_id == "ana" && r.channel == "api" && r.outcome == "ok")
    );
    assert!(matches!(
        app.store.audit_verify().await.unwrap(),
        conveyor::store::AuditVerdict::Intact { .. }
    ));
}

#[tokio::test]
async fn earlier_turns_of_the_conversation_are_sent() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::text("Within 30 days [5]."),
            Scripted::text("Yes, pro rata."),
        ],
    )
    .await;
    let (_dir, app) = openai_app(&fake.url, |_| {}).await;
    ask_in(
        &app,
        "conv-1",
        "How long do I have for a refund? Mail me at ana.souza@example.com",
    )
    .await;
    let out = ask_in(&app, "conv-1", "And after that?").await;
    assert!(out.text.starts_with("Yes, pro rata."), "{}", out.text);
    let second = &fake.requests()[1];
    let roles: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        vec!["system", "user", "assistant", "user"],
        "{second}"
    );
    assert!(
        second["messages"][1]["content"]
            .to_string()
            .contains("How long do I have")
    );
    assert!(
        second["messages"][2]["content"]
            .to_string()
            .contains("Within 30 days")
    );
    assert!(!second.to_string().contains("ana.souza@example.com"));
}

#[tokio::test]
async fn a_spent_token_budget_stops_the_loop_and_says_so() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::call("c1", "search_knowledge", r#"{"query":"refund"}"#),
            Scripted::text("never asked for"),
        ],
    )
    .await;
    // Every fake response reports 60 tokens.
    let (_dir, app) = openai_app(&fake.url, |l| l.token_budget = 50).await;
    let out = ask(&app, "How do refunds work?").await;
    assert_eq!(fake.hits(), 1);
    assert!(out.text.contains("token budget"), "{}", out.text);
    // What the search found is what is known.
    assert!(
        out.text.contains("These sources looked relevant"),
        "{}",
        out.text
    );
    assert!(!out.citations.is_empty());
    assert!(!out.text.contains(UNAVAILABLE), "{}", out.text);
}

async fn openai_app(
    fake_url: &str,
    tweak: impl FnOnce(&mut LlmConfig),
) -> (tempfile::TempDir, App) {
    let dir = demo_project().await;
    let mut llm = llm_config(LlmProvider::OpenaiCompatible, fake_url, true);
    tweak(&mut llm);
    let app = App::build(demo_config(dir.path(), llm)).await.unwrap();
    (dir, app)
}

#[tokio::test]
async fn parallel_calls_each_get_their_result() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::Answer(crate::support::llm_fake::Answer {
                text: String::new(),
                calls: vec![
                    (
                        "call_a".into(),
                        "search_knowledge".into(),
                        r#"{"query":"refund"}"#.into(),
                    ),
                    (
                        "call_b".into(),
                        "search_knowledge".into(),
                        r#"{"query":"pro plan"}"#.into(),
                    ),
                ],
            }),
            Scripted::text("Done [1]."),
        ],
    )
    .await;
    let (_dir, app) = openai_app(&fake.url, |_| {}).await;
    let out = ask(&app, "Refunds and the Pro plan?").await;
    assert!(out.text.starts_with("Done [1]."), "{}", out.text);
    let tools = openai_tool_messages(&fake.requests()[1]);
    let ids: Vec<&str> = tools.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, vec!["call_a", "call_b"]);
}

#[tokio::test]
async fn malformed_arguments_get_one_repair_round_then_a_tool_error() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::call("call_1", "search_knowledge", r#"{"query": "refund"#),
            Scripted::call("call_2", "search_knowledge", r#"{"query": refund}"#),
            Scripted::text("I could not search."),
        ],
    )
    .await;
    let (_dir, app) = openai_app(&fake.url, |_| {}).await;
    let out = ask(&app, "How do refunds work?").await;
    assert!(out.text.starts_with("I could not search."), "{}", out.text);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let first = openai_tool_messages(&requests[1]);
    assert_eq!(first[0].0, "call_1");
    assert!(
        first[0].1.contains("not a valid JSON object"),
        "{}",
        first[0].1
    );
    assert!(first[0].1.contains("Call it again"), "{}", first[0].1);
    let second = openai_tool_messages(&requests[2]);
    assert_eq!(second.last().unwrap().0, "call_2");
    assert!(second.last().unwrap().1.contains("not valid JSON again"));
}

#[tokio::test]
async fn a_spent_step_budget_still_answers_and_says_so() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::call("c1", "search_knowledge", r#"{"query":"refund"}"#),
            Scripted::call("c2", "search_knowledge", r#"{"query":"refund policy"}"#),
            Scripted::text("Refunds go through support [1]."),
        ],
    )
    .await;
    let (_dir, app) = openai_app(&fake.url, |l| l.max_steps = 2).await;
    let out = ask(&app, "How do refunds work?").await;
    assert_eq!(fake.hits(), 3);
    assert!(
        out.text.starts_with("Refunds go through support [1]."),
        "{}",
        out.text
    );
    assert!(out.text.contains("step budget"), "{}", out.text);
    // The wrap-up request offers no tools.
    let last = fake.requests().pop().unwrap();
    assert!(
        last.get("tools")
            .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty)),
        "{last}"
    );
}

// ---------------------------------------------------------------------------------------------
// Provider down: the offline planner answers
// ---------------------------------------------------------------------------------------------

async fn offline_after(script: Vec<Scripted>, retries: u32) -> (Outbound, usize) {
    let fake = FakeLlm::start(Wire::OpenAi, script).await;
    let (_dir, app) = openai_app(&fake.url, |l| l.retries = retries).await;
    let out = ask(&app, "How do I request a refund?").await;
    (out, fake.hits())
}

#[tokio::test]
async fn server_errors_are_retried_then_offline_answers() {
    let (out, hits) = offline_after(vec![Scripted::status(500)], 2).await;
    assert_eq!(hits, 3);
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(out.text.contains("HTTP 500"), "{}", out.text);
    assert!(!out.text.contains("No LLM is configured"), "{}", out.text);
    assert!(
        !out.citations.is_empty(),
        "the offline answer quotes the documents"
    );
}

#[tokio::test]
async fn rate_limits_honour_retry_after_then_offline_answers() {
    let limited = Scripted::Status {
        status: 429,
        headers: vec![("retry-after", "0".into())],
        body: r#"{"error":{"message":"rate limited"}}"#.into(),
    };
    let started = std::time::Instant::now();
    let (out, hits) = offline_after(vec![limited], 3).await;
    assert_eq!(hits, 4);
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    // Retry-After: 0 means no backoff wait.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let (out, hits) = offline_after(vec![Scripted::status(400)], 3).await;
    assert_eq!(hits, 1);
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(
        out.text.contains("rejected the request: HTTP 400"),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn slow_responses_time_out_are_retried_then_offline_answers() {
    let slow = Scripted::Delayed(
        std::time::Duration::from_secs(5),
        Box::new(Scripted::text("too late")),
    );
    let fake = FakeLlm::start(Wire::OpenAi, vec![slow]).await;
    let (_dir, app) = openai_app(&fake.url, |l| {
        l.timeout = HumanDuration(std::time::Duration::from_millis(300));
        l.retries = 1;
    })
    .await;
    let started = std::time::Instant::now();
    let out = ask(&app, "How do I request a refund?").await;
    assert_eq!(fake.hits(), 2);
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(out.text.contains("did not answer in time"), "{}", out.text);
    assert!(!out.text.contains("too late"));
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test]
async fn the_turn_budget_bounds_all_retries() {
    let slow = Scripted::Delayed(
        std::time::Duration::from_secs(5),
        Box::new(Scripted::text("too late")),
    );
    let fake = FakeLlm::start(Wire::OpenAi, vec![slow]).await;
    let (_dir, app) = openai_app(&fake.url, |l| {
        l.timeout = HumanDuration(std::time::Duration::from_millis(400));
        l.turn_timeout = HumanDuration(std::time::Duration::from_millis(600));
        l.retries = 5;
    })
    .await;
    let started = std::time::Instant::now();
    let out = ask(&app, "How do I request a refund?").await;
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(fake.hits() <= 2, "{}", fake.hits());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn time_running_out_after_tools_answers_with_what_was_found() {
    let fake = FakeLlm::start(
        Wire::OpenAi,
        vec![
            Scripted::call("c1", "search_knowledge", r#"{"query":"refund"}"#),
            Scripted::Delayed(
                std::time::Duration::from_secs(5),
                Box::new(Scripted::text("too late")),
            ),
        ],
    )
    .await;
    let (_dir, app) = openai_app(&fake.url, |l| {
        l.timeout = HumanDuration(std::time::Duration::from_millis(700));
        l.turn_timeout = HumanDuration(std::time::Duration::from_millis(700));
    })
    .await;
    let out = ask(&app, "How do I request a refund?").await;
    assert!(out.text.contains("time budget"), "{}", out.text);
    assert!(
        out.text.contains("These sources looked relevant"),
        "{}",
        out.text
    );
    assert!(!out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(!out.citations.is_empty());
}

#[tokio::test]
async fn a_refused_connection_falls_back_to_offline() {
    let url = refused_url().await;
    let (_dir, app) = openai_app(&url, |l| l.retries = 1).await;
    let out = ask(&app, "How do I request a refund?").await;
    assert!(out.text.contains(UNAVAILABLE), "{}", out.text);
    assert!(out.text.contains("could not be reached"), "{}", out.text);
    assert_eq!(out.planner, "openai-compatible");
}

/// Replays a recorded Anthropic tool-runner loop through the gateway: the fake answers with
/// the recorded responses in order. Returns the reply, the fake and the cassette.
async fn replay_cassette(name: &str) -> Option<(Outbound, FakeLlm, Value)> {
    let dir = fixtures()?;
    let path = dir.join("anthropic/tool_runner_cassettes").join(name);
    let cassette: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let stream = cassette[0]["response"]["body"].is_string();
    let script: Vec<Scripted> = cassette
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let status = x["response"]["status_code"].as_u64().unwrap() as u16;
            let body = match &x["response"]["body"] {
                Value::String(sse) => sse.clone(),
                other => other.to_string(),
            };
            match (status, stream) {
                (200, true) => Scripted::sse(body),
                (200, false) => Scripted::json(body),
                _ => Scripted::Status {
                    status,
                    headers: Vec::new(),
                    body,
                },
            }
        })
        .collect();
    let fake = FakeLlm::start(Wire::Anthropic, script).await;
    let project = demo_project().await;
    let mut llm = llm_config(LlmProvider::Anthropic, &fake.url, stream);
    llm.api_key_env = Some(FAKE_KEY_ENV.into());
    let app = App::build(demo_config(project.path(), llm)).await.unwrap();
    let out = ask(&app, "What is the weather in SF?").await;
    Some((out, fake, cassette))
}

/// The first `tool_use` id of a recorded response body (JSON or SSE text).
fn recorded_tool_id(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let at = text.find("toolu_").unwrap();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The `tool_result` blocks of the last message of an Anthropic request.
fn anthropic_tool_results(request: &Value) -> Vec<Value> {
    let last = request["messages"].as_array().unwrap().last().unwrap();
    last["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .cloned()
        .collect()
}

#[tokio::test]
async fn recorded_anthropic_loop_ending_in_400_falls_back() {
    let Some((out, fake, cassette)) =
        replay_cassette("f59a9391-643b-422c-96dc-1f28bc7ea4d7.json").await
    else {
        return;
    };
    assert_eq!(fake.hits(), 2);
    assert!(
        out.text.contains("rejected the request: HTTP 400"),
        "{}",
        out.text
    );
    // The recorded model asked for a tool we do not have: the error went back under its id.
    let results = anthropic_tool_results(&fake.requests()[1]);
    let want = recorded_tool_id(&cassette[0]["response"]["body"]);
    assert_eq!(results[0]["tool_use_id"], want.as_str(), "{results:?}");
    assert_eq!(results[0]["is_error"], true, "{results:?}");
}

#[tokio::test]
async fn recorded_anthropic_loops_finish_with_the_recorded_answer() {
    // One unary and one streamed loop: tool_use, our tool error back, then the final text.
    for name in [
        "10e53c1d-51be-4c64-b5bf-99adb3fa4719.json",
        "555fb399-a54c-455b-9ac5-2c9673f18e12.json",
    ] {
        let Some((out, fake, cassette)) = replay_cassette(name).await else {
            return;
        };
        assert_eq!(fake.hits(), 2, "{name}");
        assert!(!out.text.contains(UNAVAILABLE), "{name}: {}", out.text);
        let results = anthropic_tool_results(&fake.requests()[1]);
        assert!(!results.is_empty(), "{name}");
        let want = recorded_tool_id(&cassette[0]["response"]["body"]);
        assert_eq!(
            results[0]["tool_use_id"],
            want.as_str(),
            "{name}: {results:?}"
        );
        // `get_weather` is not one of our tools: the model is told so, as an error.
        assert_eq!(results[0]["is_error"], true, "{name}: {results:?}");
        let recorded = match &cassette[1]["response"]["body"] {
            // Streamed: the text deltas, joined.
            Value::String(sse) => sse
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter(|e| e["delta"]["type"] == "text_delta")
                .map(|e| e["delta"]["text"].as_str().unwrap_or("").to_string())
                .collect::<String>(),
            other => other["content"][0]["text"].as_str().unwrap().to_string(),
        };
        assert!(!recorded.is_empty(), "{name}");
        assert!(
            out.text.starts_with(recorded.trim()),
            "{name}: {} vs {recorded}",
            out.text
        );
        assert!(!out.text.trim().is_empty(), "{name}");
    }
}

/// The closing benchmark of the LLM planner: time per turn with a fake provider that answers
/// at once (a search_knowledge call, then an answer), so what is measured is conveyor's own
/// work: retrieval, prompt rendering, redaction, two local HTTP round trips with SSE parsing,
/// the audited tool call and citation checks. Run with
/// `cargo test --release --test it llm::planner_overhead -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "benchmark; prints p50/p99"]
async fn planner_overhead_per_turn() {
    use conveyor::agent::offline::OfflinePlanner;
    use conveyor::agent::tool_loop::{LlmPlanner, LlmPlannerParts};
    use conveyor::agent::{PlanRequest, Planner};

    const TURNS: usize = 200;
    let mut script = Vec::new();
    for i in 0..TURNS {
        script.push(Scripted::call(
            &format!("c{i}"),
            "search_knowledge",
            r#"{"query":"refund"}"#,
        ));
        script.push(Scripted::text("Refunds go through support [1]."));
    }
    let fake = FakeLlm::start(Wire::OpenAi, script).await;
    let (dir, app) = openai_app(&fake.url, |_| {}).await;
    let config = demo_config(
        dir.path(),
        llm_config(LlmProvider::OpenaiCompatible, &fake.url, true),
    );
    let planner = LlmPlanner::new(
        &config.llm,
        LlmPlannerParts {
            tools: std::sync::Arc::clone(&app.tools),
            prompts: std::sync::Arc::clone(&app.prompts),
            retriever: app.knowledge.retriever(),
            top_k: config.index.top_k,
            fallback: std::sync::Arc::new(OfflinePlanner::new(
                app.knowledge.retriever(),
                config.index.top_k,
                config.answer.clone(),
            )),
            env: Env::process(),
        },
    )
    .unwrap();
    let inbound = Inbound {
        idempotency_key: "bench".into(),
        conversation: ConversationKey::new(Channel::API, "bench"),
        user: UserRef {
            id: "ana".into(),
            name: None,
        },
        text: QUESTION.into(),
        attachments: Vec::new(),
    };
    let mut times = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        let started = std::time::Instant::now();
        let reply = planner
            .answer(PlanRequest {
                inbound: &inbound,
                history: &[],
                roles: &[],
                attributes: &Default::default(),
            })
            .await
            .unwrap();
        times.push(started.elapsed());
        assert!(reply.text.starts_with("Refunds go through support [1]."));
    }
    times.sort();
    println!(
        "LLM planner per turn (fake provider, 2 requests + 1 tool call): p50 {:?}, p99 {:?}",
        times[TURNS / 2],
        times[TURNS * 99 / 100]
    );
}
