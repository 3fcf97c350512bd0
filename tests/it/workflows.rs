//! Workflows end to end through the engine of a real `App` (SQLite, and PostgreSQL when
//! `CONVEYOR_TEST_POSTGRES_URL` is set): the journal, replay after a lost process, retries with
//! the same idempotency key, approvals, sleeps, sub-workflows, cancel and retry. The chat side
//! is the fake Slack Web API; `http` steps reach a local recorder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use conveyor::app::App;
use conveyor::channels::slack::SlackConfig;
use conveyor::config::{Config, Env, Rate};
use conveyor::store::workflows::{JournalOp, NewRun, RunState, Started, StepState};
use conveyor::tools::Caller;
use conveyor::workflows::{Decided, StartRequest};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::slack::FakeSlack;

/// A local HTTP endpoint that records each request's `Idempotency-Key` and body and answers
/// with scripted statuses (200 when nothing is scripted).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Recorder {
    async fn start() -> (Self, String) {
        let rec = Recorder::default();
        let app = Router::new()
            .route("/call", post(record))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
            .with_state(rec.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/call", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rec, url)
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(rec): State<Recorder>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    rec.seen.lock().unwrap().push((key, body));
    let status = rec.script.lock().unwrap().pop_front().unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        json!({"ok": status == 200, "refund_id": "rf_1"}).to_string(),
    )
}

struct Harness {
    app: App,
    slack: FakeSlack,
    http: Recorder,
    // Last: the app's index lives in it until the app is dropped.
    _dir: tempfile::TempDir,
}

/// The demo project with `files` (name, text) added to its tools folder, Slack configured
/// against the fake, `http` steps allowed to reach 127.0.0.1, and `store` (a URL) when given.
async fn harness(files: &[(&str, String)], store: Option<String>) -> Harness {
    harness_with(files, store, false, |_| {}).await
}

/// [`harness`] on a demo whose data is synced (with `synced`), with `change` applied to the
/// config before the app is built.
async fn harness_with(
    files: &[(&str, String)],
    store: Option<String>,
    synced: bool,
    change: impl FnOnce(&mut Config),
) -> Harness {
    let dir = crate::common::demo(synced).await;
    let slack = FakeSlack::start().await;
    let (http, url) = Recorder::start().await;
    for (name, text) in files {
        std::fs::write(
            dir.path().join("tools").join(name),
            text.replace("{HTTP}", &url)
                .replace("{SLOW}", &url.replace("/call", "/slow")),
        )
        .unwrap();
    }
    let path = dir.path().join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config =
        Config::from_toml(&text, &path.display().to_string(), dir.path(), &[]).unwrap();
    config.limits.per_user = Rate::Off;
    config.limits.per_conversation = Rate::Off;
    config.workflows.allow_private = vec!["127.0.0.1".into()];
    if let Some(url) = store {
        config.store.url = url;
    }
    config
        .channels
        .set(&SlackConfig {
            signing_secret_env: "TEST_SLACK_SIGNING_SECRET".into(),
            bot_token_env: "TEST_SLACK_BOT_TOKEN".into(),
            api_base_url: slack.url.clone(),
            bot_user_id: None,
            feedback_buttons: true,
            sends_per_second_per_channel: 1,
        })
        .unwrap();
    change(&mut config);
    let env = |name: &str| match name {
        "TEST_HOOK_TOKEN" => Some("hook-token".to_string()),
        "TEST_SLACK_SIGNING_SECRET" => Some("s3cret".to_string()),
        "TEST_SLACK_BOT_TOKEN" => Some("xoxb-test".to_string()),
        _ => None,
    };
    let app = App::build_with_env(config, &Env::new(env)).await.unwrap();
    Harness {
        _dir: dir,
        app,
        slack,
        http,
    }
}

fn by_slack(user: &str) -> Caller {
    Caller {
        user_id: user.into(),
        channel: "slack".into(),
        conversation: "slack:C1".into(),
        roles: Vec::new(),
        attributes: Default::default(),
    }
}

fn request(workflow: &str, input: Value) -> StartRequest {
    StartRequest {
        workflow: workflow.into(),
        input,
        kind: "api".into(),
        trigger: json!({}),
        by: Some(by_slack("U1")),
        key: None,
        parent: None,
    }
}

impl Harness {
    async fn run(&self, workflow: &str, input: Value) -> conveyor::store::workflows::WorkflowRun {
        let started = self
            .app
            .workflows
            .start(request(workflow, input))
            .await
            .unwrap();
        self.app
            .workflows
            .wait(started.id(), Duration::from_secs(30))
            .await
            .unwrap()
    }

    async fn steps(&self, run: &str) -> Vec<(String, i64, StepState)> {
        self.app
            .store
            .wf_steps(run)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.path, s.attempt, s.state))
            .collect()
    }

    /// Resumes due runs until `run` settles (finished, or waiting again).
    async fn resume(&self, run: &str) -> conveyor::store::workflows::WorkflowRun {
        self.app.workflows.resume_due().await.unwrap();
        self.app
            .workflows
            .wait(run, Duration::from_secs(30))
            .await
            .unwrap()
    }
}

const TRIAGE: &str = r#"
name = "triage"
kind = "workflow"
description = "Search the knowledge base, call the ticket API, post to Slack"

[inputs]
type = "object"
required = ["title"]
properties = { title = { type = "string", minLength = 1 }, severity = { type = "integer" } }

[[steps]]
id = "search"
tool = "search_knowledge"
args = { query = "{{ input.title }}" }

[[steps]]
id = "call"
http = { method = "POST", url = "{HTTP}", body = { title = "{{ input.title }}", hits = "{{ steps.search.results | length }}" } }
retry = { attempts = 3, backoff = "10ms", jitter = false }

[[steps]]
id = "post"
publish = "slack:C1"
text = "Ticket for *{{ input.title }}*: {{ steps.call.body.refund_id }}"
"#;

#[tokio::test]
async fn a_run_journals_each_step_and_feeds_its_output_to_the_next() {
    let h = harness(&[("triage.toml", TRIAGE.into())], None).await;
    let run = h.run("triage", json!({"title": "refund policy"})).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(
        h.steps(&run.id).await,
        vec![
            ("search".into(), 1, StepState::Succeeded),
            ("call".into(), 1, StepState::Succeeded),
            ("post".into(), 1, StepState::Succeeded),
        ]
    );
    // The tool's output reached the request; the request carried the step's key.
    let seen = h.http.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, format!("wf:{}:call", run.id));
    assert_eq!(seen[0].1["title"], "refund policy");
    assert!(seen[0].1["hits"].as_u64().unwrap() > 0, "{seen:?}");
    // And the request's answer reached the message, posted once, with no rating buttons.
    let posts = h.slack.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "C1");
    let text = posts[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("refund policy") && text.contains("rf_1"),
        "{text}"
    );
    assert!(!posts[0].body.to_string().contains("feedback_up"));
    // The step rows hold inputs and outputs for `workflows show`.
    let steps = h.app.store.wf_steps(&run.id).await.unwrap();
    assert_eq!(steps[1].input.as_ref().unwrap()["method"], "POST");
    assert_eq!(steps[1].output.as_ref().unwrap()["status"], 200);
}

#[tokio::test]
async fn a_failing_request_is_retried_with_the_same_idempotency_key() {
    let h = harness(&[("triage.toml", TRIAGE.into())], None).await;
    h.http.script.lock().unwrap().extend([503, 500]);
    let run = h.run("triage", json!({"title": "refund"})).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let steps = h.steps(&run.id).await;
    assert!(steps.contains(&("call".into(), 1, StepState::Errored)));
    assert!(steps.contains(&("call".into(), 2, StepState::Errored)));
    assert!(steps.contains(&("call".into(), 3, StepState::Succeeded)));
    let keys: Vec<String> = h.http.seen().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![format!("wf:{}:call", run.id); 3]);

    // A client error is not retried (retry.on defaults to timeout, upstream, rate_limited):
    // the run fails with the answer in its error, and nothing is posted.
    h.http.script.lock().unwrap().extend([422]);
    let run = h.run("triage", json!({"title": "refund"})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert!(
        error.contains("step `call`") && error.contains("422"),
        "{error}"
    );
    assert_eq!(h.slack.calls_of("chat.postMessage").len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_and_one_key_starts_one_run() {
    let keyed = TRIAGE.replace(
        "description = ",
        "idempotency = \"{{ input.title }}\"\ndescription = ",
    );
    let h = harness(&[("triage.toml", keyed)], None).await;
    let err = h
        .app
        .workflows
        .start(request("triage", json!({"severity": "high"})))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"title\" is a required property") && msg.contains("/severity"),
        "{msg}"
    );
    let err = h
        .app
        .workflows
        .start(request("nope", json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no workflow `nope`"), "{err}");
    assert!(
        h.app
            .store
            .wf_runs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    let first = h
        .app
        .workflows
        .start(request("triage", json!({"title": "t1"})))
        .await
        .unwrap();
    let second = h
        .app
        .workflows
        .start(request("triage", json!({"title": "t1"})))
        .await
        .unwrap();
    assert!(matches!(first, Started::New { .. }));
    assert!(matches!(&second, Started::Existing { id, .. } if id == first.id()));
    h.app
        .workflows
        .wait(first.id(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(h.http.seen().len(), 1, "one key, one run, one request");
}

const FLOW: &str = r#"
name = "flow"
kind = "workflow"
description = "Branches, loops and skips"
output = "{{ steps.each }}"

[[steps]]
id = "pick"
branch = [
  { when = "{{ input.n > 10 }}", steps = [ { id = "big", tool = "search_knowledge", args = { query = "refund" } } ] },
  { steps = [ { id = "small", tool = "search_knowledge", args = { query = "pricing" } } ] },
]

[[steps]]
id = "each"
for_each = "{{ input.items }}"
parallelism = 2
steps = [
  { id = "one", http = { method = "POST", url = "{HTTP}", body = { item = "{{ item }}", index = "{{ index }}" } } },
]

[[steps]]
id = "never"
skip_if = "{{ steps.small is none }}"
publish = "slack:C1"
text = "small was taken"
"#;

#[tokio::test]
async fn branches_loops_and_skips_follow_the_data() {
    let h = harness(&[("flow.toml", FLOW.into())], None).await;
    let run = h
        .run("flow", json!({"n": 20, "items": ["a", "b", "c"]}))
        .await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let steps = h.steps(&run.id).await;
    let paths: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert!(
        paths.contains(&"big") && !paths.contains(&"small"),
        "{paths:?}"
    );
    for i in 0..3 {
        assert!(
            paths.contains(&format!("each[{i}].one").as_str()),
            "{paths:?}"
        );
    }
    assert!(steps.contains(&("never".into(), 1, StepState::Skipped)));
    let mut items: Vec<(String, i64)> = h
        .http
        .seen()
        .into_iter()
        .map(|(k, b)| {
            assert!(k.starts_with(&format!("wf:{}:each[", run.id)), "{k}");
            (
                b["item"].as_str().unwrap().to_string(),
                b["index"].as_i64().unwrap(),
            )
        })
        .collect();
    items.sort();
    assert_eq!(
        items,
        vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 2)]
    );
    // The loop's output is the list of each item's last output.
    assert_eq!(run.output.unwrap().as_array().unwrap().len(), 3);
    assert!(h.slack.calls_of("chat.postMessage").is_empty());

    let run = h.run("flow", json!({"n": 1, "items": []})).await;
    assert_eq!(run.state, RunState::Succeeded);
    let paths: Vec<String> = h.steps(&run.id).await.into_iter().map(|s| s.0).collect();
    assert!(paths.contains(&"small".to_string()) && !paths.contains(&"big".to_string()));
    assert_eq!(h.slack.calls_of("chat.postMessage").len(), 1);

    let run = h.run("flow", json!({"n": 1, "items": "oops"})).await;
    assert_eq!(run.state, RunState::Failed);
    assert!(run.error.unwrap().contains("rather than a list"));
}

const APPROVE: &str = r#"
name = "refund"
kind = "workflow"
description = "Refund after a manager approves"

[[steps]]
id = "ask"
approval = "slack:C9"
text = "Refund {{ input.amount }} USD?"
approvers = ["slack:U1", "slack:U2"]
self_approval = false
timeout = "1h"

[[steps]]
id = "pay"
http = { method = "POST", url = "{HTTP}", body = { amount = "{{ input.amount }}", by = "{{ steps.ask.by }}" } }

[[steps]]
id = "done"
publish = "slack:C9"
text = "Refunded {{ input.amount }} USD ({{ steps.ask.by }} approved)."
"#;

#[tokio::test]
async fn an_approval_waits_for_a_permitted_person_and_resumes_once() {
    let h = harness(&[("refund.toml", APPROVE.into())], None).await;
    let run = h.run("refund", json!({"amount": 700})).await;
    assert_eq!(run.state, RunState::Waiting, "{run:?}");
    let posts = h.slack.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 1);
    let body = posts[0].body.to_string();
    assert!(
        body.contains("conveyor_wf_approve") && body.contains("conveyor_wf_reject"),
        "{body}"
    );
    assert!(body.contains("Refund 700 USD?"), "{body}");
    assert!(h.http.seen().is_empty(), "nothing paid before the approval");
    let signal = h
        .app
        .store
        .wf_signal_of(&run.id, "ask")
        .await
        .unwrap()
        .unwrap();
    let engine = &h.app.workflows;
    // The requester may not approve their own run; someone else not listed may not either.
    assert!(matches!(
        engine.decide(&signal.id, true, "slack:U1").await.unwrap(),
        Decided::NotAllowed(why) if why.contains("someone else")
    ));
    assert!(matches!(
        engine.decide(&signal.id, true, "slack:U3").await.unwrap(),
        Decided::NotAllowed(why) if why.contains("not one of")
    ));
    assert_eq!(
        engine.decide(&signal.id, true, "slack:U2").await.unwrap(),
        Decided::Recorded
    );
    assert!(matches!(
        engine.decide(&signal.id, false, "slack:U2").await.unwrap(),
        Decided::Already { decision, .. } if decision == "approve"
    ));
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(h.http.seen().len(), 1);
    assert_eq!(h.http.seen()[0].1["by"], "slack:U2");
    let posts = h.slack.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 2, "the question once, the result once");
    assert!(
        posts[1].body["text"]
            .as_str()
            .unwrap()
            .contains("slack:U2 approved")
    );

    // A rejection fails the run with who rejected it; nothing is paid.
    let run = h.run("refund", json!({"amount": 5})).await;
    let signal = h
        .app
        .store
        .wf_signal_of(&run.id, "ask")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        engine.decide(&signal.id, false, "slack:U2").await.unwrap(),
        Decided::Recorded
    );
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Failed);
    assert!(run.error.unwrap().contains("rejected by slack:U2"));
    assert_eq!(h.http.seen().len(), 1);
}

const SLEEPY: &str = r#"
name = "sleepy"
kind = "workflow"
description = "Waits, then calls"
timeout = "30s"

[[steps]]
id = "nap"
sleep = "1s"

[[steps]]
id = "call"
http = { method = "POST", url = "{HTTP}", body = { woke = true } }
"#;

#[tokio::test]
async fn a_sleep_suspends_the_run_and_it_resumes_after_its_time() {
    let short = SLEEPY
        .replace("timeout = \"30s\"", "timeout = \"2s\"")
        .replace("name = \"sleepy\"", "name = \"late\"")
        .replace("sleep = \"1s\"", "sleep = \"10s\"");
    let h = harness(
        &[("sleepy.toml", SLEEPY.into()), ("late.toml", short)],
        None,
    )
    .await;
    let run = h.run("sleepy", json!({})).await;
    assert_eq!(run.state, RunState::Waiting);
    assert!(run.wake_at.is_some() && run.lease_until == 0, "{run:?}");
    // Not due yet: nothing resumes it.
    assert_eq!(h.app.workflows.resume_due().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(h.http.seen().len(), 1);

    // A run still waiting at its deadline fails, with the reason, at the deadline.
    let run = h.run("late", json!({})).await;
    assert_eq!(run.state, RunState::Waiting);
    assert!(run.wake_at.unwrap() <= run.deadline + 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Failed);
    assert!(run.error.unwrap().contains("longer than its timeout (2s)"));
}

const PARENT: &str = r#"
name = "parent"
kind = "workflow"
description = "Calls a child"

[[steps]]
id = "child"
workflow = "child"
input = { fail = "{{ input.fail }}" }

[on_failure]
publish = "slack:C1"
text = "parent failed: {{ error }}"
"#;

const CHILD: &str = r#"
name = "child"
kind = "workflow"
description = "Fails on demand"

[inputs]
type = "object"
properties = { fail = { type = "boolean" } }

[[steps]]
id = "check"
http = { method = "POST", url = "{HTTP}", body = { fail = "{{ input.fail }}" } }
"#;

#[tokio::test]
async fn a_sub_workflow_runs_as_its_own_run_and_its_failure_fails_the_parent() {
    let h = harness(
        &[("parent.toml", PARENT.into()), ("child.toml", CHILD.into())],
        None,
    )
    .await;
    let run = h.run("parent", json!({"fail": false})).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let children = h
        .app
        .store
        .wf_runs(&conveyor::store::workflows::RunFilter {
            parent: Some(run.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].state, RunState::Succeeded);

    h.http.script.lock().unwrap().push_back(400);
    let run = h.run("parent", json!({"fail": true})).await;
    assert_eq!(run.state, RunState::Failed);
    let error = run.error.unwrap();
    assert!(
        error.contains("sub-workflow `child`") && error.contains("400"),
        "{error}"
    );
    // on_failure posted the reason.
    let posts = h.slack.calls_of("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .contains("parent failed")
    );
}

#[tokio::test]
async fn cancel_stops_a_waiting_run_and_retry_from_a_step_runs_it_again() {
    let h = harness(&[("refund.toml", APPROVE.into())], None).await;
    let engine = &h.app.workflows;
    let run = h.run("refund", json!({"amount": 10})).await;
    assert_eq!(run.state, RunState::Waiting);
    assert_eq!(
        engine.cancel(&run.id, "test").await.unwrap(),
        Some(RunState::Waiting)
    );
    let signal = h
        .app
        .store
        .wf_signal_of(&run.id, "ask")
        .await
        .unwrap()
        .unwrap();
    // A decision after the cancel wakes nothing.
    engine.decide(&signal.id, true, "slack:U2").await.unwrap();
    assert_eq!(engine.resume_due().await.unwrap(), 0);
    let cancelled = h.app.store.wf_run(&run.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert!(h.http.seen().is_empty());

    // Retried, the approval is asked again (a new question, under a key of its own).
    assert!(engine.retry(&run.id, None).await.unwrap());
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Waiting, "{run:?}");
    assert_eq!(h.slack.calls_of("chat.postMessage").len(), 2);
    let signal = h
        .app
        .store
        .wf_signal_of(&run.id, "ask")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        engine.decide(&signal.id, true, "slack:U2").await.unwrap(),
        Decided::Recorded
    );
    let run = h.resume(&run.id).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(h.http.seen().len(), 1);

    // A finished run is not retried; a failed one from a named step runs that step again.
    assert!(!engine.retry(&run.id, None).await.unwrap());
    let err = engine.retry(&run.id, Some("nope")).await.unwrap_err();
    assert!(
        err.to_string().contains("no top-level step `nope`"),
        "{err}"
    );
}

/// A process that died mid-run: its lease runs out, another claims the run, finished steps
/// are read back (not run again) and the interrupted step is tried again with the same key.
async fn orphaned_run_resumes(store: Option<String>) {
    let h = harness(&[("triage.toml", TRIAGE.into())], store).await;
    let store = &h.app.store;
    // What the dead process left: step `search` done, `call` started (its request may have
    // gone out), lease about to run out.
    let started = store
        .wf_start(
            &NewRun {
                workflow: "triage".into(),
                idem_key: None,
                input: json!({"title": "refund"}),
                trigger_kind: "api".into(),
                trigger: json!({}),
                timeout: Duration::from_secs(60),
                parent: None,
                concurrency: None,
            },
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let Started::New {
        id,
        lease: Some(lease),
        ..
    } = started
    else {
        panic!("{started:?}")
    };
    assert!(
        store
            .wf_journal(
                &lease,
                vec![
                    JournalOp::Begin {
                        path: "search".into(),
                        attempt: 1,
                        input: json!({}),
                    },
                    JournalOp::End {
                        path: "search".into(),
                        attempt: 1,
                        state: StepState::Succeeded,
                        output: Some(json!({"results": [{"text": "from the first process"}]})),
                        error: None,
                    },
                    JournalOp::Begin {
                        path: "call".into(),
                        attempt: 1,
                        input: json!({}),
                    },
                ],
                Duration::from_millis(300),
            )
            .await
            .unwrap()
    );
    // Within the lease nobody takes it.
    assert_eq!(h.app.workflows.resume_due().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let run = h.resume(&id).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.attempts, 2);
    let steps = h.steps(&id).await;
    assert_eq!(
        steps,
        vec![
            ("search".into(), 1, StepState::Succeeded),
            ("call".into(), 1, StepState::Running),
            ("call".into(), 2, StepState::Succeeded),
            ("post".into(), 1, StepState::Succeeded),
        ]
    );
    // `search` was replayed: the request carries the first process's output.
    let seen = h.http.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, format!("wf:{id}:call"));
    assert_eq!(seen[0].1["hits"], 1);
    // The dead owner can no longer write to the run.
    assert!(
        !store
            .wf_journal(&lease, vec![], Duration::from_secs(1))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_orphaned_run_resumes_at_its_first_unfinished_step_on_sqlite() {
    orphaned_run_resumes(None).await;
}

#[tokio::test]
async fn an_orphaned_run_resumes_at_its_first_unfinished_step_on_postgres() {
    crate::common::with_pg_schema(|url| async move { orphaned_run_resumes(Some(url)).await }).await;
}

/// One request to the app's router: status and JSON body.
async fn call(app: &App, req: Request<Body>) -> (StatusCode, Value) {
    let res = conveyor::http::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post_json(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_demo_workflows_run_offline_through_the_api_and_chat() {
    let h = harness_with(&[], None, true, |_| {}).await;
    let (status, list) = call(&h.app, get("/v1/workflows")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ticket_triage", "weekly_digest"]);

    // The digest: a metric query, posted to the web feed.
    let run = h.run("weekly_digest", json!({})).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let (_, feed) = call(&h.app, get("/v1/workflows/feed/digest")).await;
    let text = feed["posts"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Revenue by plan") && text.contains("enterprise"),
        "{text}"
    );

    // `/run digest` in chat starts it again and answers with its output.
    let (status, answer) = call(
        &h.app,
        post_json(
            "/v1/messages",
            &json!({"conversation_id": "c1", "user": "ana", "text": "/run digest"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("`weekly_digest` finished"), "{text}");
    let (_, answer) = call(
        &h.app,
        post_json(
            "/v1/messages",
            &json!({"conversation_id": "c1", "user": "ana", "text": "/run nope"}),
        ),
    )
    .await;
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("no workflow `nope`") && text.contains("/run triage"),
        "{text}"
    );

    // The triage: a bad input is refused with the reason and records nothing.
    let (status, err) = call(
        &h.app,
        post_json(
            "/v1/workflows/ticket_triage/runs",
            &json!({"input": {"body": "x"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("title"), "{err}");
    let (status, started) = call(
        &h.app,
        post_json(
            "/v1/workflows/ticket_triage/runs",
            &json!({"input": {"title": "Can I get a refund?", "customer": "Acme"}, "wait": 10}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["run"]["state"], "waiting");
    let id = started["run"]["id"].as_str().unwrap().to_string();
    let (_, detail) = call(&h.app, get(&format!("/v1/workflows/runs/{id}"))).await;
    let steps = detail["steps"].as_array().unwrap();
    let states: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("context", "succeeded"),
            ("summary", "succeeded"),
            ("approve", "waiting")
        ]
    );
    let summary = steps[1]["output"]["text"].as_str().unwrap();
    assert!(summary.to_lowercase().contains("refund"), "{summary}");
    let approval = steps[2]["output"]["approval"].as_str().unwrap().to_string();
    // The question is on the triage feed with its buttons.
    let (_, feed) = call(&h.app, get("/v1/workflows/feed/triage")).await;
    assert_eq!(feed["posts"][0]["actions"][0]["value"], approval.as_str());
    let (status, decided) = call(
        &h.app,
        post_json(
            &format!("/v1/workflows/approvals/{approval}"),
            &json!({"decision": "approve"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (status, _) = call(
        &h.app,
        post_json(
            &format!("/v1/workflows/approvals/{approval}"),
            &json!({"decision": "reject"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let run = h.resume(&id).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let (_, feed) = call(&h.app, get("/v1/workflows/feed/triage")).await;
    let posted = feed["posts"][0]["text"].as_str().unwrap();
    assert!(
        posted.contains("approved by api:local") && posted.contains("Acme"),
        "{posted}"
    );
    let (_, runs) = call(
        &h.app,
        get("/v1/workflows/runs?workflow=ticket_triage&state=succeeded"),
    )
    .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let (status, _) = call(&h.app, get("/v1/workflows/runs?state=sideways")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A finished run cannot be cancelled; metrics count the runs.
    let (status, _) = call(
        &h.app,
        post_json(&format!("/v1/workflows/runs/{id}/cancel"), &json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let res = conveyor::http::router(h.app.clone())
        .oneshot(get("/metrics"))
        .await
        .unwrap();
    let metrics =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        metrics.contains(
            "conveyor_workflow_runs_total{workflow=\"weekly_digest\",outcome=\"succeeded\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_hook_starts_its_workflow_once_per_delivery_and_refuses_bad_payloads() {
    use conveyor::config::{HookConfig, HookReply, HookVerify};
    let h = harness_with(&[("triage.toml", TRIAGE.into())], None, false, |c| {
        c.hooks.insert(
            "alerts".into(),
            HookConfig {
                verify: HookVerify::Bearer,
                secret_env: "TEST_HOOK_TOKEN".into(),
                text: String::new(),
                conversation: "{{ hook }}".into(),
                user: "webhook:{{ hook }}".into(),
                reply: HookReply::Async,
                max_body_bytes: None,
                forward_to: None,
                workflow: Some("triage".into()),
            },
        );
    })
    .await;
    let deliver = |body: Value, token: &str| {
        Request::post("/hooks/alerts")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", "delivery-1")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, _) = call(&h.app, deliver(json!({"title": "x"}), "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, bad) = call(&h.app, deliver(json!({"severity": 1}), "hook-token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad.to_string().contains("title"));
    assert!(
        h.app
            .store
            .wf_runs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    let (status, first) = call(
        &h.app,
        deliver(json!({"title": "printer on fire"}), "hook-token"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["status"], "started");
    let (_, again) = call(
        &h.app,
        deliver(json!({"title": "printer on fire"}), "hook-token"),
    )
    .await;
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["run"], first["run"]);
    let run = h
        .app
        .workflows
        .wait(first["run"].as_str().unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.trigger_kind, "hook");
    assert_eq!(h.http.seen().len(), 1, "one delivery, one run, one request");
}

#[tokio::test]
async fn a_schedule_fires_once_per_fire_time_however_often_it_is_checked() {
    let tick = r#"
name = "tick"
kind = "workflow"
description = "Every minute"

[[triggers]]
schedule = "* * * * *"

[[steps]]
id = "call"
http = { method = "POST", url = "{HTTP}", body = { at = "{{ trigger.fire_time }}" } }
"#;
    let h = harness(&[("tick.toml", tick.into())], None).await;
    let engine = &h.app.workflows;
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::seconds(150);
    // Two or three fire times passed: each runs. Another process checking the same window
    // (here: the same engine again) starts nothing.
    let fired = engine.fire_schedules(since, now).await.unwrap();
    assert!((2..=3).contains(&fired), "{fired}");
    assert_eq!(engine.fire_schedules(since, now).await.unwrap(), 0);
    let runs = h.app.store.wf_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), fired);
    assert_eq!(runs[0].trigger_kind, "schedule");
    // After a long stop, only the latest fire time runs (no burst of missed minutes).
    let long_ago = now - chrono::Duration::hours(3);
    let later = now + chrono::Duration::minutes(1);
    assert_eq!(engine.fire_schedules(long_ago, later).await.unwrap(), 1);
    assert!(
        runs[0]
            .idem_key
            .as_deref()
            .unwrap()
            .starts_with("schedule:")
    );
    // A process starting later catches up nothing already fired.
    assert_eq!(engine.catch_up_schedules(now).await.unwrap(), 0);
}

#[tokio::test]
async fn rows_changed_by_a_sync_start_the_data_trigger_once_per_matching_row() {
    let watcher = r#"
name = "big_refunds"
kind = "workflow"
description = "Each refunded order over 500 USD"

[[triggers]]
data = "silver.orders"
filter = "status = 'refunded' AND total_usd > 500"

[[steps]]
id = "call"
http = { method = "POST", url = "{HTTP}", body = { order = "{{ input.order_id }}", total = "{{ input.total_usd }}" } }
"#;
    let h = harness_with(&[("watch.toml", watcher.into())], None, true, |_| {}).await;
    let engine = &h.app.workflows;
    // The first look notes where the table is: rows synced before start nothing.
    assert_eq!(engine.check_data_triggers().await.unwrap(), 0);
    assert_eq!(engine.check_data_triggers().await.unwrap(), 0);
    let csv = h._dir.path().join("data/orders.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("59001,1013,PRD-003,7,120.00,840.00,refunded,2025-07-20T15:00:00Z\n");
    text.push_str("59002,1013,PRD-003,1,120.00,120.00,refunded,2025-07-20T15:00:00Z\n");
    text.push_str("59003,1013,PRD-003,9,120.00,1080.00,paid,2025-07-20T15:00:00Z\n");
    std::fs::write(&csv, text).unwrap();
    let out = crate::common::conveyor()
        .current_dir(h._dir.path())
        .args(["sync", "orders"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::common::show(&out));
    assert_eq!(engine.check_data_triggers().await.unwrap(), 1);
    assert_eq!(engine.check_data_triggers().await.unwrap(), 0);
    let runs = h.app.store.wf_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].input["order_id"], 59001);
    let run = engine
        .wait(&runs[0].id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(h.http.seen()[0].1["order"], 59001);
}

#[tokio::test]
async fn a_step_past_its_timeout_is_retried_on_timeout_then_fails_with_the_reason() {
    let slow = r#"
name = "slow"
kind = "workflow"
description = "A call that never answers in time"

[[steps]]
id = "call"
http = { method = "POST", url = "{SLOW}" }
timeout = "200ms"
retry = { attempts = 2, backoff = "10ms", on = ["timeout"] }
"#;
    let h = harness(&[("slow.toml", slow.into())], None).await;
    let started = std::time::Instant::now();
    let run = h.run("slow", json!({})).await;
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("took longer than 200ms"),
        "{run:?}"
    );
    assert_eq!(
        h.steps(&run.id).await,
        vec![
            ("call".into(), 1, StepState::Errored),
            ("call".into(), 2, StepState::Failed),
        ]
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout did not cut the call"
    );
}
