//! Who is calling: API keys on the HTTP surface.
//!
//! `/v1/*`, `/sources/*`, `/metrics` and webhook delivery status need a key with the route's
//! scope ([`Scope`]), sent as `Authorization: Bearer cvk_…`, or the session cookie the web page
//! sets after signing in with a key (`POST /v1/session`; HttpOnly, SameSite=Strict, and a
//! cookie-authenticated POST must come from the page's own origin). The chat platforms' routes
//! and `/hooks/NAME` keep their own signatures; `/`, `/healthz` and `/readyz` are open.
//!
//! With no active key and a loopback-only listener the API stays open, as it was before keys
//! existed (the start-up log says so); the caller is then the local user. Anywhere else, no
//! key means 401. A loopback listener also checks `Host`, so a web page elsewhere cannot reach
//! it through DNS rebinding.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiError;
use crate::app::App;
use crate::error::Error;
use crate::store::{ApiKey, Scope};

/// The session cookie of the web page.
pub const COOKIE: &str = "conveyor_key";

/// Who made a request, once [`require`] let it through.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The API is open (no keys, loopback only): whoever runs on this machine.
    Local,
    /// The holder of this key.
    Key(ApiKey),
}

impl Caller {
    /// The caller's id among API users: `key:<id>` for a key, `None` when the API is open
    /// (the request names its user).
    pub fn key_id(&self) -> Option<String> {
        match self {
            Self::Local => None,
            Self::Key(k) => Some(format!("key:{}", k.id)),
        }
    }
}

/// What a request presented.
fn presented(headers: &HeaderMap) -> (Option<String>, bool) {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = v.strip_prefix("Bearer ")
    {
        return (Some(token.trim().to_string()), false);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string());
    let from_cookie = cookie.is_some();
    (cookie, from_cookie)
}

/// Whether the API is open: no active key and a loopback-only listener.
pub async fn is_open(app: &App) -> Result<bool, Error> {
    Ok(app.config.server.listen.ip().is_loopback() && app.store.api_keys_active().await? == 0)
}

/// The `Host` names a loopback listener answers to.
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name.ends_with(".localhost")
}

/// Refuses a request to a loopback listener whose `Host` is not a loopback name (DNS
/// rebinding: a page on another site resolving its own name to 127.0.0.1).
pub fn check_host(app: &App, headers: &HeaderMap) -> Result<(), Error> {
    if !app.config.server.listen.ip().is_loopback() {
        return Ok(());
    }
    match headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        None => Ok(()),
        Some(host) if loopback_host(host) => Ok(()),
        Some(host) => Err(Error::Unauthorized(format!(
            "this server listens on loopback only and answers to localhost, not to `{host}`"
        ))),
    }
}

/// Whether a cookie-authenticated request comes from the page's own origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host),
        // Browsers send Origin on every cross-site POST; without one it is not a browser's
        // cross-site request.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// The caller of a request that needs `scope`, or why it is refused.
pub async fn authenticate(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Caller, Error> {
    check_host(app, headers)?;
    let (token, from_cookie) = presented(headers);
    let Some(token) = token else {
        if is_open(app).await? {
            return Ok(Caller::Local);
        }
        return Err(Error::Unauthorized(
            "this endpoint needs an API key: send `Authorization: Bearer cvk_…` (create one with `conveyor keys create NAME --scope chat`)".into(),
        ));
    };
    let Some(key) = app.store.api_key_check(&token).await? else {
        return Err(Error::Unauthorized(
            "the API key is not valid (unknown, revoked or mistyped); `conveyor keys list` shows the active ones".into(),
        ));
    };
    if from_cookie && *method != Method::GET && !same_origin(headers) {
        return Err(Error::Unauthorized(
            "a request signed in by cookie must come from conveyor's own page".into(),
        ));
    }
    if !key.allows(scope) {
        return Err(Error::Unauthorized(format!(
            "the API key `{}` does not have the `{}` scope this endpoint needs",
            key.id,
            scope.as_str()
        )));
    }
    Ok(Caller::Key(key))
}

/// Middleware: lets a request through with its [`Caller`] in the extensions when it may use
/// `scope`, else answers 401.
pub async fn require(
    State((app, scope)): State<(App, Scope)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = authenticate(&app, request.method(), request.headers(), scope).await?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:80",
            "app.localhost",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
