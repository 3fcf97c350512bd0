//! API keys on the HTTP surface (issue 12, finding 2): scopes, identities bound to keys,
//! the web page's cookie, Host checks and security headers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use conveyor::app::App;
use conveyor::config::{Config, Rate};
use conveyor::store::Scope;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn app_at(dir: &Path, listen: &str) -> App {
    app_with(dir, |c| c.server.listen = listen.parse().unwrap()).await
}

async fn app_with(dir: &Path, change: impl FnOnce(&mut Config)) -> App {
    let path = dir.join("conveyor.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config = Config::from_toml(&text, &path.display().to_string(), dir, &[]).unwrap();
    config.limits.per_user = Rate::Off;
    config.limits.per_conversation = Rate::Off;
    change(&mut config);
    App::build(config).await.unwrap()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn ask(auth: Option<&str>, conversation: &str, user: &str) -> Request<Body> {
    let mut req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("host", "127.0.0.1:8080");
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    req.body(Body::from(
        json!({"conversation_id": conversation, "user": user, "text": "How do I request a refund?"})
            .to_string(),
    ))
    .unwrap()
}

fn get(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path).header("host", "localhost:8080");
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn keys_gate_the_api_by_scope_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let app = app_at(dir.path(), "127.0.0.1:8080").await;
    let router = conveyor::http::router(app.clone());
    // No key yet and a loopback listener: open, as before keys existed.
    assert_eq!(
        send(&router, ask(None, "c", "ana")).await.status,
        StatusCode::OK
    );

    let (chat, _) = app
        .store
        .api_key_create("web", &[Scope::Chat], "test")
        .await
        .unwrap();
    let (read, read_record) = app
        .store
        .api_key_create("grafana", &[Scope::Read], "test")
        .await
        .unwrap();
    // Keys exist: nothing gets in without one.
    let r = send(&router, ask(None, "c", "ana")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("conveyor keys create"),
        "{}",
        r.body
    );
    for path in [
        "/v1/runs",
        "/v1/connectors",
        "/metrics",
        "/v1/chunks/x",
        "/sources/x",
    ] {
        assert_eq!(
            send(&router, get(path, None)).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // A wrong or malformed key, and a key without the scope, are refused.
    // The last character changed (to one it is not: a key may already end in `0`).
    let last = if chat.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &chat[..chat.len() - 1]);
    assert_eq!(
        send(&router, ask(Some(&wrong), "c", "ana")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, ask(Some("cvk_nonsense"), "c", "ana"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(&router, ask(Some(&read), "c", "ana")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`chat` scope"),
        "{}",
        r.body
    );
    assert_eq!(
        send(&router, get("/v1/runs", Some(&chat))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The right scopes get in.
    assert_eq!(
        send(&router, ask(Some(&chat), "c", "ana")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, get("/v1/runs", Some(&read))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, get("/metrics", Some(&read))).await.status,
        StatusCode::OK
    );
    // Open routes stay open.
    assert_eq!(
        send(&router, get("/healthz", None)).await.status,
        StatusCode::OK
    );
    // Revoked: refused from the next request on.
    assert!(
        app.store
            .api_key_revoke(&format!("cvk_{}", read_record.id))
            .await
            .unwrap()
    );
    assert_eq!(
        send(&router, get("/v1/runs", Some(&read))).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Only the hash is stored.
    assert!(!format!("{:?}", app.store.api_keys().await.unwrap()).contains(&chat[17..]));
}

/// Issue 12, findings 2 and 3: the body's `user` and `conversation_id` no longer choose who
/// the caller is or whose history the planner sees.
#[tokio::test]
async fn a_key_is_its_own_user_and_owns_its_conversations() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let app = app_at(dir.path(), "127.0.0.1:8080").await;
    let router = conveyor::http::router(app.clone());
    let (a, a_rec) = app
        .store
        .api_key_create("a", &[Scope::Chat], "t")
        .await
        .unwrap();
    let (b, b_rec) = app
        .store
        .api_key_create("b", &[Scope::Chat], "t")
        .await
        .unwrap();
    let r = send(&router, ask(Some(&a), "shared", "U0SLACKADMIN")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["conversation_id"], "shared");
    assert_eq!(
        send(&router, ask(Some(&b), "shared", "U0SLACKADMIN"))
            .await
            .status,
        StatusCode::OK
    );
    let turns_a = app
        .store
        .recent_turns(&format!("api:key:{}/shared", a_rec.id), 10)
        .await
        .unwrap();
    let turns_b = app
        .store
        .recent_turns(&format!("api:key:{}/shared", b_rec.id), 10)
        .await
        .unwrap();
    // Each key has its own question and answer; neither sees the other's.
    assert_eq!(turns_a.len(), 2, "{turns_a:?}");
    assert_eq!(turns_b.len(), 2, "{turns_b:?}");
    assert!(
        app.store
            .recent_turns("api:shared", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The same Idempotency-Key under two keys is two messages, not one answer shared.
    let with_key = |k: &str| {
        let mut req = ask(Some(k), "idem", "x");
        req.headers_mut()
            .insert("idempotency-key", "same-1".parse().unwrap());
        req
    };
    let first = send(&router, with_key(&a)).await;
    let second = send(&router, with_key(&b)).await;
    assert_ne!(first.body["message_id"], second.body["message_id"]);
}

#[tokio::test]
async fn a_public_listener_without_keys_refuses_and_loopback_checks_the_host() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let public = app_at(dir.path(), "0.0.0.0:8080").await;
    let router = conveyor::http::router(public.clone());
    assert_eq!(
        send(&router, ask(None, "c", "ana")).await.status,
        StatusCode::UNAUTHORIZED
    );
    drop(router);
    drop(public);

    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let local = app_at(dir.path(), "127.0.0.1:8080").await;
    let router = conveyor::http::router(local);
    // DNS rebinding: a page at evil.example resolving its name to 127.0.0.1.
    let mut req = ask(None, "c", "ana");
    req.headers_mut()
        .insert("host", "evil.example:8080".parse().unwrap());
    assert_eq!(send(&router, req).await.status, StatusCode::UNAUTHORIZED);
    let page = Request::get("/")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, page).await.status, StatusCode::UNAUTHORIZED);
    // The page itself, from localhost, with its security headers.
    let r = send(&router, get("/", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn the_web_page_signs_in_with_a_cookie_that_other_sites_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let app = app_at(dir.path(), "127.0.0.1:8080").await;
    let router = conveyor::http::router(app.clone());
    let (chat, _) = app
        .store
        .api_key_create("web", &[Scope::Chat], "t")
        .await
        .unwrap();
    let (read, _) = app
        .store
        .api_key_create("ro", &[Scope::Read], "t")
        .await
        .unwrap();
    let sign_in = |key: &str| {
        Request::post("/v1/session")
            .header("content-type", "application/json")
            .header("host", "localhost:8080")
            .body(Body::from(json!({"key": key}).to_string()))
            .unwrap()
    };
    assert_eq!(
        send(&router, sign_in("cvk_wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, sign_in(&read)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(&router, sign_in(&chat)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |origin: &str| {
        Request::post("/v1/messages")
            .header("content-type", "application/json")
            .header("host", "localhost:8080")
            .header("origin", origin)
            .header("cookie", pair.clone())
            .body(Body::from(
                json!({"conversation_id": "w", "user": "ana", "text": "How do I request a refund?"})
                    .to_string(),
            ))
            .unwrap()
    };
    assert_eq!(
        send(&router, with_cookie("http://localhost:8080"))
            .await
            .status,
        StatusCode::OK
    );
    // The same cookie sent by another site's page: refused.
    assert_eq!(
        send(&router, with_cookie("https://evil.example"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

/// Issue 12, finding 8: a client that never finishes its headers held its connection forever
/// (slow loris), and requests queued without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_excess_requests_get_503() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let app = app_with(dir.path(), |c| {
        c.server.header_read_timeout = conveyor::config::HumanDuration(Duration::from_millis(300));
        c.server.request_timeout = conveyor::config::HumanDuration(Duration::from_millis(800));
        c.server.max_in_flight = 1;
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(conveyor::http::serve(app, listener, shutdown.clone()));

    // Half a request line, then silence: the server closes the connection.
    let mut loris = tokio::net::TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), loris.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");

    // A request whose body never comes holds the only slot ...
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck
        .write_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so the next one gets 503 with Retry-After at once instead of waiting.
    let client = reqwest::Client::new();
    let busy = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    // The stuck request ends at server.request_timeout, and the slot is free again.
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stuck.read_to_string(&mut answer))
        .await
        .expect("the stuck request was answered")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let ok = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// `[limits] per_address` (issue 12, finding 2): rotating keys, names or conversation ids does
/// not get a client past its address's limit (wrong keys included: guessing is limited too);
/// another address is not affected; behind a trusted proxy the client's `X-Forwarded-For`
/// address counts, from anyone else the header is ignored.
#[tokio::test]
async fn requests_are_limited_per_client_address_whoever_they_claim_to_be() {
    let dir = tempfile::tempdir().unwrap();
    conveyor::init::init(dir.path(), false).await.unwrap();
    let app = app_with(dir.path(), |c| {
        c.limits.per_address = Rate::Limited {
            count: 3,
            per: std::time::Duration::from_secs(60),
        };
        c.server.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
    })
    .await;
    let router = conveyor::http::router(app.clone());
    let from = |mut req: Request<Body>, peer: &str, forwarded: Option<&str>| {
        let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        if let Some(f) = forwarded {
            req.headers_mut()
                .insert("x-forwarded-for", f.parse().unwrap());
        }
        req
    };
    for i in 0..3 {
        let r = send(
            &router,
            from(
                ask(
                    Some(&format!("wrong-{i}")),
                    &format!("c{i}"),
                    &format!("u{i}"),
                ),
                "127.0.0.1",
                None,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = send(&router, from(ask(None, "c9", "u9"), "127.0.0.1", None)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per_address"),
        "{}",
        r.body
    );
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let r = send(
        &router,
        from(ask(None, "c9", "u9"), "127.0.0.1", Some("192.0.2.7")),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client, through the trusted proxy, has its own budget.
    let r = send(
        &router,
        from(
            get("/metrics", None),
            "10.0.0.1",
            Some("198.51.100.4, 10.0.0.1"),
        ),
    )
    .await;
    assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(
        conveyor::http::client_address(
            "10.0.0.1".parse().unwrap(),
            &{
                let mut h = axum::http::HeaderMap::new();
                h.insert(
                    "x-forwarded-for",
                    "203.0.113.9, 198.51.100.4".parse().unwrap(),
                );
                h
            },
            &["10.0.0.1".parse().unwrap()],
        ),
        "198.51.100.4".parse::<std::net::IpAddr>().unwrap(),
        "the rightmost untrusted entry, not the client's own claim on the left"
    );
}
