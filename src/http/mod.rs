//! The HTTP surface: the `/v1` API, health and metrics endpoints, and the web chat page.
//!
//! Errors become responses in exactly one place, [`ApiError`]'s `IntoResponse`: each
//! [`Error`] kind has one status code, the body is always
//! `{"error": {"kind", "message"}}`, and internal errors are logged here, once.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod auth;
mod chat;
mod connectors;
mod hooks;
mod workflows;

pub(crate) use hooks::resume as resume_delivery;

use crate::app::App;
use crate::channels::web;
use crate::error::Error;
use crate::model::{Channel, Citation, ConversationKey, DataAnswer, Inbound, Outbound, UserRef};
use crate::store::Scope;

/// An [`Error`] on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    kind: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self.0 {
            Error::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_input"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Upstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream"),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Config(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let message = match &self.0 {
            Error::Internal(_) | Error::Config(_) => {
                tracing::error!(error = %self.0, "request failed");
                "Something went wrong inside conveyor; the details are in the server log.".into()
            }
            Error::Upstream(_) => {
                tracing::warn!(error = %self.0, "a backend is unavailable");
                self.0.to_string()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail { kind, message },
            }),
        )
            .into_response();
        let retry_after = match &self.0 {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            Error::ShuttingDown => Some(Duration::from_secs(5)),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            let secs = retry_after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Builds the router.
pub fn router(app: App) -> Router {
    let limit = app.config.server.max_body_bytes;
    let mut router = Router::new();
    // Every chat platform's routes, from the registry: one handler hands each to its platform.
    for kind in crate::channels::PLATFORMS {
        for route in kind.routes {
            router = router.route(route, post(chat::post_platform));
        }
    }
    // Routes that need an API key with a scope (see `auth`); the rest carry their own
    // signatures (chat platforms, hooks) or say nothing private (the page shell, health).
    let chat_scope = Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/messages/{message_id}/{file}", get(get_answer_file))
        .route("/v1/workflows/{name}/runs", post(workflows::start))
        .route("/v1/workflows/approvals/{id}", post(workflows::decide))
        .route_layer(axum::middleware::from_fn_with_state(
            (app.clone(), Scope::Chat),
            auth::require,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_per_address,
        ));
    let read_scope = Router::new()
        .route("/sources/{chunk_id}", get(source_page))
        .route("/v1/chunks/{chunk_id}", get(get_chunk))
        .route("/v1/connectors", get(connectors::get_connectors))
        .route("/v1/runs", get(connectors::get_runs))
        .route("/metrics", get(metrics))
        .route("/hooks/{name}/deliveries/{key}", get(hooks::get_delivery))
        .route("/v1/workflows", get(workflows::list))
        .route("/v1/workflows/runs", get(workflows::runs))
        .route("/v1/workflows/runs/{id}", get(workflows::run))
        .route("/v1/workflows/feed/{name}", get(workflows::feed))
        .route_layer(axum::middleware::from_fn_with_state(
            (app.clone(), Scope::Read),
            auth::require,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_per_address,
        ));
    let admin_scope = Router::new()
        .route("/v1/workflows/runs/{id}/cancel", post(workflows::cancel))
        .route("/v1/workflows/runs/{id}/retry", post(workflows::retry))
        .route_layer(axum::middleware::from_fn_with_state(
            (app.clone(), Scope::Admin),
            auth::require,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_per_address,
        ));
    let session = Router::new()
        .route("/v1/session", post(sign_in).delete(sign_out))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_per_address,
        ));
    router
        .merge(chat_scope)
        .merge(read_scope)
        .merge(admin_scope)
        .merge(session)
        .route("/", get(web_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hooks/{name}", post(hooks::post_hook))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            (
                app.clone(),
                std::sync::Arc::new(tokio::sync::Semaphore::new(app.config.server.max_in_flight)),
            ),
            limit_in_flight,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Serves until `shutdown` fires, then stops accepting and drains in-flight requests for at
/// most the configured drain timeout.
///
/// Its own accept loop rather than `axum::serve`, for what a server on the internet needs:
/// a client that does not finish its headers within `server.header_read_timeout` is cut off,
/// and at most `server.max_connections` connections are open (more are closed as they
/// arrive). Requests in flight are capped by the router (`server.max_in_flight`).
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let server = app.config.server.clone();
    let router = router(app);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(server.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                max = server.max_connections,
                "too many open connections (server.max_connections); closing a new one"
            );
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone().map_request(
            move |req: axum::http::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout.0)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let drain = server.drain_timeout.0;
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(drain) => {
            tracing::warn!(?drain, "drain deadline passed; closing remaining connections");
            Ok(())
        }
    }
}

/// `[limits] per_address` on the API routes, before the key is even looked at (so guessing
/// keys is limited too): 429 with `Retry-After` past it. The address is the connection's peer,
/// or, from a proxy in `server.trusted_proxies`, the client `X-Forwarded-For` names.
async fn limit_per_address(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = client_address(peer, request.headers(), &app.config.server.trusted_proxies);
        if let Err(wait) = app.gateway.check_address(client) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return ApiError(Error::RateLimited {
                retry_after: Duration::from_secs(secs),
                message: format!(
                    "too many requests from {client} (limits.per_address); retry in {secs} s"
                ),
            })
            .into_response();
        }
    }
    next.run(request).await
}

/// The client's address: `peer`, unless `peer` is a trusted proxy, then the last address of
/// `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address it got the
/// request from, so the entries left of the first untrusted one are the client's own claims).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .copied()
        .unwrap_or(peer)
}

/// Caps the requests handled at once: past `server.max_in_flight`, 503 with `Retry-After`
/// (a client retries; nothing queues without bound). Every request, also a chat platform's or
/// a webhook's, is bounded in time, reading its body included.
async fn limit_in_flight(
    State((app, slots)): State<(App, std::sync::Arc<tokio::sync::Semaphore>)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        let mut response = ApiError(Error::Upstream(
            "conveyor is handling as many requests as it is set to (server.max_in_flight); retry in a second".into(),
        ))
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    // The handlers answer at `request_timeout` themselves (with how to get the answer later);
    // this bound adds `header_read_timeout` for sending the body, and stops a client that
    // trickles its body forever.
    let server = &app.config.server;
    let limit = server.request_timeout.0 + server.header_read_timeout.0;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(Error::Upstream(format!(
            "the request took longer than server.request_timeout ({}) plus server.header_read_timeout ({}) to send and answer; retry it",
            server.request_timeout, server.header_read_timeout
        )))
        .into_response(),
    }
}

/// Body of `POST /v1/messages`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The client's id for the conversation.
    pub conversation_id: String,
    /// The client's id for the user.
    pub user: String,
    /// The question.
    pub text: String,
}

/// Answer of `POST /v1/messages`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageResponse {
    /// The conversation.
    pub conversation_id: String,
    /// Id of the stored answer.
    pub message_id: String,
    /// Id of the stored question.
    pub reply_to: String,
    /// The key the answer is recorded under.
    pub idempotency_key: String,
    /// The answer, Markdown with `[n]` markers.
    pub text: String,
    /// Sources behind the markers.
    pub citations: Vec<Citation>,
    /// Which planner answered.
    pub planner: String,
    /// The numbers behind a BI answer: how the question was understood, the SQL, the table,
    /// the CSV and the chart (SVG inline, PNG and SVG at their URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataAnswer>,
    /// Choices offered with a question back; each can be sent as the next message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl MessageResponse {
    fn new(out: Outbound, idempotency_key: String) -> Self {
        Self {
            data: out.data.map(|d| d.for_api(&out.message_id)),
            conversation_id: out.conversation.id,
            message_id: out.message_id,
            reply_to: out.reply_to,
            idempotency_key,
            text: out.text,
            citations: out.citations,
            planner: out.planner,
            choices: out.choices,
        }
    }
}

/// `GET /v1/messages/{id}/chart.png` (also `chart.svg`, `data.csv`): a BI answer's chart or
/// CSV, from its recorded answer, for the key that asked (or anyone on an open API).
async fn get_answer_file(
    State(app): State<App>,
    Extension(caller): Extension<auth::Caller>,
    Path((message_id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let missing = || {
        Error::NotFound(format!(
            "no answer {message_id} with a {file}: the id is a `message_id` of POST /v1/messages whose answer has `data`"
        ))
    };
    if !matches!(file.as_str(), "chart.png" | "chart.svg" | "data.csv") {
        return Err(Error::NotFound(format!(
            "an answer has chart.png, chart.svg and data.csv, not `{file}`"
        ))
        .into());
    }
    let (conversation, meta) = app
        .store
        .message_meta(&message_id)
        .await?
        .ok_or_else(missing)?;
    // A key sees the answers of its own conversations only (`api:key:ID/…`).
    if let Some(id) = caller.key_id()
        && !conversation.starts_with(&format!("{}:{id}/", Channel::API))
    {
        return Err(missing().into());
    }
    let key = meta
        .get("ingress")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(missing)?;
    let Some(crate::store::IngressStatus::Done(recorded)) = app.store.ingress_response(key).await?
    else {
        return Err(missing().into());
    };
    let out: Outbound = serde_json::from_str(&recorded)
        .map_err(|e| Error::internal("reading a recorded answer", e))?;
    let data = out.data.ok_or_else(missing)?;
    let private = (header::CACHE_CONTROL, "private, max-age=3600".to_string());
    let nosniff = (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string());
    let response = match file.as_str() {
        "data.csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"answer.csv\"".to_string(),
                ),
                private,
                nosniff,
            ],
            data.csv,
        )
            .into_response(),
        "chart.svg" => {
            let chart = data.chart.ok_or_else(missing)?;
            (
                [
                    (header::CONTENT_TYPE, "image/svg+xml".to_string()),
                    // Shown as a picture: nothing in it may run or load.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'".to_string(),
                    ),
                    private,
                    nosniff,
                ],
                chart.svg,
            )
                .into_response()
        }
        _ => {
            let chart = data.chart.ok_or_else(missing)?;
            (
                [
                    (header::CONTENT_TYPE, "image/png".to_string()),
                    private,
                    nosniff,
                    (header::CONTENT_LENGTH, chart.png.len().to_string()),
                ],
                chart.png,
            )
                .into_response()
        }
    };
    Ok(response)
}

fn json_rejection(r: JsonRejection) -> Error {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::TooLarge(
            "the request body is larger than server.max_body_bytes allows; send a shorter message"
                .into(),
        );
    }
    match r {
        JsonRejection::MissingJsonContentType(_) => Error::BadInput(
            "send the body as JSON with the header Content-Type: application/json".into(),
        ),
        JsonRejection::JsonSyntaxError(e) => Error::BadInput(format!(
            "the body is not valid JSON ({}); expected {{\"conversation_id\": \"…\", \"user\": \"…\", \"text\": \"…\"}}",
            e.body_text()
                .trim_start_matches("Failed to parse the request body as JSON: ")
        )),
        JsonRejection::JsonDataError(e) => Error::BadInput(format!(
            "the JSON body does not have the expected fields ({}); expected {{\"conversation_id\": \"…\", \"user\": \"…\", \"text\": \"…\"}}",
            e.body_text()
                .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        )),
        other => Error::BadInput(other.body_text()),
    }
}

fn field(name: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::BadInput(format!("{name} is empty; give it a value")));
    }
    if value.len() > 200 {
        return Err(Error::BadInput(format!(
            "{name} is longer than 200 bytes; use a shorter id"
        )));
    }
    Ok(())
}

async fn post_message(
    State(app): State<App>,
    Extension(caller): Extension<auth::Caller>,
    headers: HeaderMap,
    body: Result<Json<MessageRequest>, JsonRejection>,
) -> Result<Json<MessageResponse>, ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    field("conversation_id", &req.conversation_id)?;
    field("user", &req.user)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => v
            .to_str()
            .map_err(|_| {
                Error::BadInput("the Idempotency-Key header must be plain ASCII text".into())
            })?
            .trim()
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    // A key holder is who their key says, whatever the body claims (`user` is then only a
    // display name), and their conversations and idempotency keys are theirs alone: another
    // key naming the same ids gets its own. An open API (loopback, no keys) trusts the body.
    let (user, conversation, idempotency) = match caller.key_id() {
        Some(id) => (
            UserRef {
                id: id.clone(),
                name: Some(req.user),
            },
            format!("{id}/{}", req.conversation_id),
            format!("{id}/{key}"),
        ),
        None => (
            UserRef {
                id: req.user,
                name: None,
            },
            req.conversation_id.clone(),
            key.clone(),
        ),
    };
    let inbound = Inbound {
        idempotency_key: idempotency,
        conversation: ConversationKey::new(Channel::API, conversation),
        user,
        text: req.text,
        attachments: Vec::new(),
    };
    let out = answer_tracked(
        &app,
        inbound,
        "retry with the same Idempotency-Key to get the answer once it is ready",
    )
    .await?;
    let mut response = MessageResponse::new(out, key);
    response.conversation_id = req.conversation_id;
    Ok(Json(response))
}

/// Answers `inbound` as its own tracked task and waits for it up to `server.request_timeout`.
/// If the client goes away or the timeout fires, the task still finishes and records its
/// answer in the ledger, so a retry with the same key gets it instead of finding the key stuck
/// mid-processing. `retry_hint` tells the caller how to retry after a timeout.
pub(crate) async fn answer_tracked(
    app: &App,
    inbound: Inbound,
    retry_hint: &str,
) -> Result<Outbound, Error> {
    let gateway = std::sync::Arc::clone(&app.gateway);
    let work = app
        .tasks
        .spawn(async move { gateway.handle(inbound).await });
    let timeout = app.config.server.request_timeout.0;
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| {
            Error::Upstream(format!(
                "answering took longer than server.request_timeout ({}); {retry_hint}",
                app.config.server.request_timeout
            ))
        })?
        .map_err(|e| Error::internal("answering a message", e))?
}

async fn get_chunk(
    State(app): State<App>,
    Path(chunk_id): Path<String>,
) -> Result<Json<crate::knowledge::SearchHit>, ApiError> {
    match app.knowledge.index.get(&chunk_id).await? {
        Some(hit) => Ok(Json(hit)),
        None => Err(Error::NotFound(format!("no chunk with id {chunk_id} in the index")).into()),
    }
}

async fn source_page(
    State(app): State<App>,
    Path(chunk_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    match app.knowledge.index.get(&chunk_id).await? {
        Some(hit) => Ok((page_headers(), Html(web::source_page(&hit.payload)))),
        None => Err(Error::NotFound(format!(
            "no chunk with id {chunk_id} in the index; it may have been re-indexed since"
        ))
        .into()),
    }
}

/// Headers every HTML page gets: no framing, no sniffing, no referrer, and a policy that lets
/// the page talk only to this server.
fn page_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

async fn web_page(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    auth::check_host(&app, &headers)?;
    Ok((page_headers(), Html(web::PAGE)))
}

/// `POST /v1/session {"key": "cvk_…"}`: the web page signs in; the key (it must have the
/// `chat` scope) comes back as an HttpOnly, SameSite=Strict cookie.
#[derive(Deserialize)]
struct SignIn {
    key: String,
}

async fn sign_in(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    auth::check_host(&app, &headers)?;
    let Json(req) = body.map_err(json_rejection)?;
    let key = app.store.api_key_check(&req.key).await?.ok_or_else(|| {
        Error::Unauthorized(
            "the API key is not valid (unknown, revoked or mistyped); `conveyor keys list` shows the active ones".into(),
        )
    })?;
    if !key.allows(Scope::Chat) {
        return Err(Error::Unauthorized(format!(
            "the API key `{}` does not have the `chat` scope the page needs",
            key.id
        ))
        .into());
    }
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/{}",
        auth::COOKIE,
        req.key.trim(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Json(serde_json::json!({"signed_in": key.id})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

async fn sign_out() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("conveyor_key=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<App>) -> Response {
    let store = app.store.ping().await;
    let index = app.knowledge.index.count().await;
    match (store, index) {
        (Ok(()), Ok(chunks)) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "index_chunks": chunks})),
        )
            .into_response(),
        (s, i) => {
            let mut problems = Vec::new();
            // Store and index errors already say which part failed.
            problems.extend(s.err().map(|e| e.to_string()));
            problems.extend(i.err().map(|e| e.to_string()));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "not ready", "problems": problems})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(app): State<App>) -> Response {
    if let Ok(n) = app.knowledge.index.count().await {
        app.metrics.set_index_chunks(n);
    }
    if let Ok(queued) = app.store.inbox_queued().await {
        app.metrics.set_inbox_queued(queued);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let allowed = match uri.path() {
        "/v1/messages" => "POST",
        p if p.starts_with("/hooks/") && !p.contains("/deliveries/") => "POST",
        p if crate::channels::PLATFORMS
            .iter()
            .any(|k| k.routes.contains(&p)) =>
        {
            "POST"
        }
        _ => "GET",
    };
    let mut response = ApiError(Error::BadInput(format!(
        "{method} is not allowed on {}; use {allowed}",
        uri.path()
    )))
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

async fn not_found() -> ApiError {
    ApiError(Error::NotFound(
        "no such endpoint; see the README for the API (POST /v1/messages, GET /healthz, GET /readyz, GET /metrics)".into(),
    ))
}
