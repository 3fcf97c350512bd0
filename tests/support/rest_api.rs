//! A fake REST JSON API on `127.0.0.1:0` for the `http` connector: the same records behind
//! every pagination style, an `updated_since` filter, scriptable 429 (with `Retry-After`) and
//! 500 answers, and a bearer-protected endpoint. Every request's path and query is recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    records: Vec<Value>,
    /// Path and query of every request, in order.
    seen: Vec<String>,
    /// Answers given before the real one (status, Retry-After).
    faults: VecDeque<(u16, Option<u64>)>,
}

/// The running fake.
#[derive(Clone)]
pub struct RestApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

type Params = Query<HashMap<String, String>>;
type Shared = State<Arc<Mutex<Inner>>>;

/// The bearer token `/secure` accepts.
pub const TOKEN: &str = "conveyor";

impl RestApi {
    /// Starts the fake serving `records` (objects with `id` and `updated_at`).
    pub async fn start(records: Vec<Value>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            records,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/page", get(page))
            .route("/offset", get(offset))
            .route("/cursor", get(cursor))
            .route("/link", get(link))
            .route("/items", get(items))
            .route("/secure", get(secure))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            inner,
        }
    }

    /// Replaces the records.
    pub fn set_records(&self, records: Vec<Value>) {
        self.inner.lock().unwrap().records = records;
    }

    /// The next requests answer these statuses (with `Retry-After` seconds) first.
    pub fn fail_next(&self, faults: &[(u16, Option<u64>)]) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().copied());
    }

    /// Every request so far (path and query).
    pub fn seen(&self) -> Vec<String> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.inner.lock().unwrap().seen.clear();
    }
}

/// Records the request, answers a scripted fault if one is queued, and returns the records
/// that pass `updated_since`.
fn begin(
    state: &Arc<Mutex<Inner>>,
    uri: &Uri,
    q: &HashMap<String, String>,
) -> Result<Vec<Value>, Response> {
    let mut inner = state.lock().unwrap();
    inner.seen.push(
        uri.path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    if let Some((status, retry)) = inner.faults.pop_front() {
        let mut headers = HeaderMap::new();
        if let Some(s) = retry {
            headers.insert("retry-after", s.to_string().parse().unwrap());
        }
        return Err((
            StatusCode::from_u16(status).unwrap(),
            headers,
            axum::Json(json!({"error": "scripted"})),
        )
            .into_response());
    }
    let since = q.get("updated_since").cloned();
    Ok(inner
        .records
        .iter()
        .filter(|r| match &since {
            None => true,
            Some(s) => r["updated_at"].as_str().unwrap_or("") > s.as_str(),
        })
        .cloned()
        .collect())
}

fn num(q: &HashMap<String, String>, k: &str, default: usize) -> usize {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `?page=1&per_page=3` (pages from 1) → `{"data": [...], "page": n}`.
async fn page(State(s): Shared, uri: Uri, Query(q): Params) -> Response {
    let all = match begin(&s, &uri, &q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (p, size) = (num(&q, "page", 1).max(1), num(&q, "per_page", 3));
    let data: Vec<Value> = all.into_iter().skip((p - 1) * size).take(size).collect();
    axum::Json(json!({"data": data, "page": p})).into_response()
}

/// `?offset=0&limit=3` → a bare array.
async fn offset(State(s): Shared, uri: Uri, Query(q): Params) -> Response {
    let all = match begin(&s, &uri, &q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (o, l) = (num(&q, "offset", 0), num(&q, "limit", 3));
    axum::Json(Value::Array(all.into_iter().skip(o).take(l).collect())).into_response()
}

/// `?cursor=…` → `{"items": [...], "meta": {"next_cursor": "…" | null}}`, 2 per page.
async fn cursor(State(s): Shared, uri: Uri, Query(q): Params) -> Response {
    let all = match begin(&s, &uri, &q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let start: usize = q
        .get("cursor")
        .and_then(|c| c.strip_prefix("c"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
    let next = (start + 2 < all.len()).then(|| format!("c{}", start + 2));
    axum::Json(json!({"items": items, "meta": {"next_cursor": next}})).into_response()
}

/// `?page=n`, 2 per page, with `Link: <…>; rel="next"` while there are more.
async fn link(State(s): Shared, uri: Uri, Query(q): Params) -> Response {
    let all = match begin(&s, &uri, &q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let p = num(&q, "page", 1).max(1);
    let items: Vec<Value> = all.iter().skip((p - 1) * 2).take(2).cloned().collect();
    let mut headers = HeaderMap::new();
    if p * 2 < all.len() {
        headers.insert(
            "link",
            format!(
                "</link?page=1>; rel=\"first\", </link?page={}>; rel=\"next\"",
                p + 1
            )
            .parse()
            .unwrap(),
        );
    }
    (headers, axum::Json(Value::Array(items))).into_response()
}

/// One page of everything (after `updated_since`) → `{"results": [...]}`.
async fn items(State(s): Shared, uri: Uri, Query(q): Params) -> Response {
    match begin(&s, &uri, &q) {
        Ok(all) => axum::Json(json!({"results": all})).into_response(),
        Err(e) => e,
    }
}

/// Like `/items`, but only with `Authorization: Bearer conveyor`.
async fn secure(State(s): Shared, uri: Uri, headers: HeaderMap, Query(q): Params) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {TOKEN}") {
        s.lock().unwrap().seen.push(
            uri.path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        );
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "bad token"})),
        )
            .into_response();
    }
    items(State(s), uri, Query(q)).await
}
