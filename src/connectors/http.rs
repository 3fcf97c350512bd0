//! The `http` connector: records from a REST JSON API.
//!
//! One run requests the API page by page (page number, offset, a cursor field in the response,
//! or the `Link: <…>; rel="next"` header), takes the array at `records` out of every response,
//! and stages each page's records to disk before it asks for the next (so a run holds one page
//! in memory), with the connector's URL (without its query) as their source object. Requests go through the SSRF guard ([`GuardedClient`]), are paced by `rate`, retried
//! with capped exponential backoff and jitter on connection errors, 5xx and 429 (honouring
//! `Retry-After`), capped at `max_pages` and bounded by `timeout` as a whole.
//!
//! Incremental sync: with `incremental = { field, param }` the cursor is the largest `field`
//! value seen, sent as `param` on the next run. Such a run sees only changed records, so it
//! cannot see deletions: only a full listing (the first run, or any run without a cursor) marks
//! the source object as replaced, which lets the lakehouse delete the rows the API no longer
//! lists. With `incremental.full_every` (e.g. `"1d"`) a run lists everything again once that
//! long has passed since the last full listing, so deletions reach silver on that schedule.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LINK, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    BuildContext, Env, Extract, OnError, PrimaryKey, Progress, RowIssue, Source, SourceConfig,
    deserialize_strict,
};
use crate::error::{Error, Result};
use crate::lakehouse::{RecordStager, SourceRecord};
use crate::tools::net::{AllowHosts, ClientOptions, GuardedClient, redact_url};
use crate::values::{HumanDuration, Rate, Secret};

/// The keys of a `kind = "http"` connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The first URL requested (http or https).
    pub url: String,
    /// Where the array of records is in each response: a JSON pointer (`/data/items`) or a
    /// dotted path (`data.items`); empty means the response itself is the array.
    #[serde(default)]
    pub records: String,
    /// The field (or fields) that identify a record.
    pub primary_key: PrimaryKey,
    /// Credentials, read from the environment.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// How to get the next page; none means one request.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// Incremental sync by an updated-since parameter.
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// Most requests per period, e.g. `"5/s"`, or `"off"`.
    #[serde(default = "default_rate")]
    pub rate: Rate,
    /// Most pages one run requests; more fails the run (a safety net against an API that
    /// never says it is done).
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Time limit of the whole run's requests.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of one request after a connection error, 5xx or 429.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// For APIs on your own network: allow the URL's host even when it resolves to a
    /// loopback or private address (refused otherwise, like every outbound request).
    #[serde(default)]
    pub allow_private: bool,
    /// Largest page the API may answer, in bytes; a larger one fails the run rather than the
    /// memory of the process that syncs (`serve` included).
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: usize,
}

fn default_max_page_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_rate() -> Rate {
    Rate::Limited {
        count: 10,
        per: Duration::from_secs(1),
    }
}
fn default_max_pages() -> u32 {
    10_000
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_max_retries() -> u32 {
    5
}

/// `auth = { type = … }`: every secret is the name of an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The variable holding the token.
        token_env: String,
    },
    /// HTTP basic authentication.
    Basic {
        /// The variable holding the user name.
        username_env: String,
        /// The variable holding the password.
        password_env: String,
    },
    /// A header of the API's own naming, e.g. `X-Api-Key`.
    Header {
        /// The header name.
        name: String,
        /// The variable holding its value.
        value_env: String,
    },
    /// A query parameter, e.g. `api_key`.
    Query {
        /// The parameter name.
        name: String,
        /// The variable holding its value.
        value_env: String,
    },
}

impl Auth {
    /// The variables to check when the API refuses the credentials.
    fn variables(&self) -> String {
        match self {
            Self::Bearer { token_env } => token_env.clone(),
            Self::Basic {
                username_env,
                password_env,
            } => format!("{username_env} and {password_env}"),
            Self::Header { value_env, .. } | Self::Query { value_env, .. } => value_env.clone(),
        }
    }
}

/// `pagination = { type = … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pagination {
    /// Page numbers: `?page=1&per_page=100`, until a page has fewer than `size` records.
    Page {
        /// The page-number parameter.
        #[serde(default = "page_param")]
        param: String,
        /// The page-size parameter; empty to not send one.
        #[serde(default = "size_param")]
        size_param: String,
        /// Records per page.
        #[serde(default = "hundred")]
        size: u32,
        /// The first page's number.
        #[serde(default = "one")]
        start: u64,
    },
    /// Offsets: `?offset=0&limit=100`, until a page has fewer than `limit` records.
    Offset {
        /// The offset parameter.
        #[serde(default = "offset_param")]
        param: String,
        /// The limit parameter.
        #[serde(default = "limit_param")]
        limit_param: String,
        /// Records per page.
        #[serde(default = "hundred")]
        limit: u32,
    },
    /// A cursor in each response, sent back as `param`, until it is missing or empty.
    Cursor {
        /// The parameter the cursor is sent as.
        #[serde(default = "cursor_param")]
        param: String,
        /// Where the next cursor is in the response (pointer or dotted path).
        field: String,
    },
    /// The `Link: <…>; rel="next"` header (RFC 8288), until there is none.
    Link,
}

fn page_param() -> String {
    "page".into()
}
fn size_param() -> String {
    "per_page".into()
}
fn offset_param() -> String {
    "offset".into()
}
fn limit_param() -> String {
    "limit".into()
}
fn cursor_param() -> String {
    "cursor".into()
}
fn hundred() -> u32 {
    100
}
fn one() -> u64 {
    1
}

/// `incremental = { field, param }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// The record field whose largest value is the cursor (dotted path).
    pub field: String,
    /// The query parameter the cursor is sent as.
    pub param: String,
    /// How often a run lists everything instead (no updated-since parameter), so that records
    /// deleted at the source are deleted from silver too; e.g. `"1d"`. Without it only the
    /// first run (or `conveyor sync --full`) is a full listing.
    #[serde(default)]
    pub full_every: Option<HumanDuration>,
}

impl HttpConfig {
    /// Adds every problem of these keys to `problems`.
    fn validate(&self, problems: &mut Vec<String>) {
        match Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => problems.push(format!(
                "url: `{}` must be an http or https URL with a host",
                redact_url(&u)
            )),
            Err(e) => problems.push(format!(
                "url: not a URL ({e}); write it in full, e.g. url = \"https://api.example.com/v1/orders\""
            )),
        }
        if self.max_pages == 0 {
            problems.push("max_pages: must be at least 1".into());
        }
        if self.max_page_bytes < 64 {
            problems.push(
                "max_page_bytes: must be at least 64 (the default is 33554432, 32 MiB)".into(),
            );
        }
        if self.timeout.0 < Duration::from_secs(1) {
            problems.push("timeout: must be at least 1s".into());
        }
        match &self.pagination {
            Some(Pagination::Page { size: 0, .. }) => {
                problems.push("pagination.size: must be at least 1".into())
            }
            Some(Pagination::Offset { limit: 0, .. }) => {
                problems.push("pagination.limit: must be at least 1".into())
            }
            Some(Pagination::Cursor { field, .. }) if field.trim().is_empty() => problems.push(
                "pagination.field: name where the next cursor is in the response, e.g. field = \"next_cursor\"".into(),
            ),
            _ => {}
        }
        if let Some(Auth::Header { name, .. }) = &self.auth
            && HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            problems.push(format!("auth.name: `{name}` is not a valid header name"));
        }
        if let Some(inc) = &self.incremental
            && (inc.field.trim().is_empty() || inc.param.trim().is_empty())
        {
            problems.push(
                "incremental: give both field and param, e.g. incremental = { field = \"updated_at\", param = \"updated_since\" }".into(),
            );
        }
    }
}

impl SourceConfig for HttpConfig {
    fn parse(table: toml::Table, _base_dir: &Path, problems: &mut Vec<String>) -> Option<Self> {
        let config: Self = deserialize_strict(table, problems)?;
        config.validate(problems);
        Some(config)
    }

    fn primary_key(&self) -> &[String] {
        &self.primary_key.0
    }

    /// Secrets come from `cx.env` when a run starts.
    fn build(&self, cx: &BuildContext) -> Arc<dyn Source> {
        Arc::new(HttpSource {
            name: cx.name.clone(),
            config: self.clone(),
            env: cx.env.clone(),
        })
    }
}

/// Reads one API.
#[derive(Clone)]
pub struct HttpSource {
    name: String,
    config: HttpConfig,
    env: Env,
}

/// Credentials read from the environment at the start of a run.
enum Credentials {
    None,
    Bearer(Secret),
    Basic(Secret, Secret),
    Header(HeaderName, Secret),
    Query(String, Secret),
}

/// The cursor saved between runs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
struct Cursor {
    /// The largest `incremental.field` value seen so far.
    since: Option<Value>,
    /// When the last full listing ran (Unix milliseconds); kept with `incremental.full_every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    full_at: Option<i64>,
}

impl HttpSource {
    fn credentials(&self) -> Result<Credentials> {
        let key = |k: &str| format!("connector `{}`: auth.{k}", self.name);
        let env = self.env.clone();
        let from_env = |n: &str, k: &str| Secret::from_lookup(n, k, &env);
        Ok(match &self.config.auth {
            None => Credentials::None,
            Some(Auth::Bearer { token_env }) => {
                Credentials::Bearer(from_env(token_env, &key("token_env"))?)
            }
            Some(Auth::Basic {
                username_env,
                password_env,
            }) => Credentials::Basic(
                from_env(username_env, &key("username_env"))?,
                from_env(password_env, &key("password_env"))?,
            ),
            Some(Auth::Header { name, value_env }) => Credentials::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Error::Config(format!("{}: not a header name", key("name"))))?,
                from_env(value_env, &key("value_env"))?,
            ),
            Some(Auth::Query { name, value_env }) => {
                Credentials::Query(name.clone(), from_env(value_env, &key("value_env"))?)
            }
        })
    }

    fn client(&self, base: &Url) -> Result<GuardedClient> {
        let allow: Vec<String> = if self.config.allow_private {
            base.host_str().map(str::to_string).into_iter().collect()
        } else {
            Vec::new()
        };
        GuardedClient::new(
            AllowHosts::new(&allow),
            ClientOptions {
                same_origin_redirects_only: self.config.auth.is_some(),
            },
        )
    }

    /// Every page of one run, in order: each page's records are staged to disk (see
    /// [`RecordStager`]) before the next page is requested, so a run of any size holds one
    /// page in memory. Returns the new cursor value.
    async fn fetch_all(
        &self,
        since: Option<&Value>,
        progress: &dyn Progress,
        out: &mut Extract,
        stager: &mut Option<RecordStager>,
        source: &Arc<str>,
    ) -> Result<Option<Value>> {
        let base = Url::parse(&self.config.url).map_err(|e| {
            Error::Config(format!("connector `{}`: url: not a URL ({e})", self.name))
        })?;
        let creds = self.credentials()?;
        let client = self.client(&base)?;
        let limiter = limiter(self.config.rate);
        let mut largest = since.cloned();
        let mut next = Some(first_url(&base, &self.config, since));
        let mut page_no = 0u32;
        let mut pos: u64 = 0;
        let mut offset: u64 = 0;
        let mut page = match &self.config.pagination {
            Some(Pagination::Page { start, .. }) => *start,
            _ => 0,
        };
        while let Some(url) = next.take() {
            page_no += 1;
            if page_no > self.config.max_pages {
                return Err(Error::Upstream(format!(
                    "connector `{}`: stopped after {} pages (max_pages) and the API still had a next page; raise max_pages if it really has that many, or check the pagination settings",
                    self.name, self.config.max_pages
                )));
            }
            if let Some(l) = &limiter {
                l.until_ready().await;
            }
            progress.step(&format!("page {page_no}"));
            let (headers, body) = self.get(&client, &creds, url.clone()).await?;
            let items = match find(&body, &self.config.records) {
                Some(Value::Array(items)) => items.clone(),
                Some(other) if self.config.records.is_empty() => {
                    return Err(Error::Upstream(format!(
                        "connector `{}`: {} answered {} where an array of records was expected; set records to where the array is, e.g. records = \"data\"",
                        self.name,
                        redact_url(&url),
                        json_kind(other)
                    )));
                }
                Some(Value::Null) | None => Vec::new(),
                Some(other) => {
                    return Err(Error::Upstream(format!(
                        "connector `{}`: `{}` in the answer of {} is {}, not an array of records",
                        self.name,
                        self.config.records,
                        redact_url(&url),
                        json_kind(other)
                    )));
                }
            };
            let count = items.len() as u64;
            let mut page_records = Vec::with_capacity(items.len());
            for item in items {
                pos += 1;
                match item {
                    record @ Value::Object(_) => {
                        if let Some(inc) = &self.config.incremental
                            && let Some(v) = find(&record, &inc.field)
                            && !v.is_null()
                            && largest.as_ref().is_none_or(|l| greater(v, l))
                        {
                            largest = Some(v.clone());
                        }
                        if let Value::Object(map) = record {
                            match key_issue(&self.config.primary_key, source, pos, &map) {
                                Some(issue) => out.issues.push(issue),
                                None => page_records.push(SourceRecord {
                                    source: source.clone(),
                                    line: pos,
                                    data: map,
                                }),
                            }
                        }
                    }
                    other => out.issues.push(RowIssue {
                        source: source.to_string(),
                        line: pos,
                        reason: format!("record {pos} is {}, not an object", json_kind(&other)),
                    }),
                }
            }
            if !page_records.is_empty() {
                let mut s = match stager.take() {
                    Some(s) => s,
                    None => RecordStager::temporary(false, crate::lakehouse::STAGE_ROWS)?,
                };
                let (s, staged) = tokio::task::spawn_blocking(move || {
                    let staged = page_records.iter().try_for_each(|r| s.push(r));
                    (s, staged)
                })
                .await
                .map_err(|e| Error::internal("staging a page of records", e))?;
                staged?;
                *stager = Some(s);
            }
            next = match &self.config.pagination {
                None => None,
                Some(Pagination::Page {
                    param,
                    size_param,
                    size,
                    ..
                }) => (count > 0 && count >= u64::from(*size)).then(|| {
                    page += 1;
                    let mut u = base_with_since(&base, &self.config, since);
                    u.query_pairs_mut().append_pair(param, &page.to_string());
                    if !size_param.is_empty() {
                        u.query_pairs_mut()
                            .append_pair(size_param, &size.to_string());
                    }
                    u
                }),
                Some(Pagination::Offset {
                    param,
                    limit_param,
                    limit,
                }) => (count > 0 && count >= u64::from(*limit)).then(|| {
                    offset += count;
                    let mut u = base_with_since(&base, &self.config, since);
                    u.query_pairs_mut()
                        .append_pair(param, &offset.to_string())
                        .append_pair(limit_param, &limit.to_string());
                    u
                }),
                Some(Pagination::Cursor { param, field }) => match find(&body, field) {
                    Some(Value::String(c)) if !c.is_empty() && count > 0 => {
                        Some(with_param(&base, &self.config, since, param, c))
                    }
                    Some(Value::Number(n)) if count > 0 => Some(with_param(
                        &base,
                        &self.config,
                        since,
                        param,
                        &n.to_string(),
                    )),
                    _ => None,
                },
                Some(Pagination::Link) => match next_link(&headers, &url) {
                    None => None,
                    Some(u) if creds_present(&creds) && u.origin() != base.origin() => {
                        return Err(Error::Upstream(format!(
                            "connector `{}`: the API's next link points to another host ({}); it was not followed because the requests carry credentials",
                            self.name,
                            redact_url(&u)
                        )));
                    }
                    Some(u) => Some(u),
                },
            };
        }
        progress.total(u64::from(page_no));
        Ok(largest)
    }

    /// One GET with retries; returns the headers and the parsed body.
    async fn get(
        &self,
        client: &GuardedClient,
        creds: &Credentials,
        mut url: Url,
    ) -> Result<(HeaderMap, Value)> {
        if let Credentials::Query(name, value) = creds
            && !url.query_pairs().any(|(k, _)| k == name.as_str())
        {
            url.query_pairs_mut().append_pair(name, value.expose());
        }
        let shown = redact_url(&url);
        let mut attempt: u32 = 0;
        loop {
            let mut req = client.request(Method::GET, url.clone());
            req = req.header(reqwest::header::ACCEPT, "application/json");
            req = match creds {
                Credentials::None | Credentials::Query(..) => req,
                Credentials::Bearer(t) => req.bearer_auth(t.expose()),
                Credentials::Basic(u, p) => req.basic_auth(u.expose(), Some(p.expose())),
                Credentials::Header(name, v) => {
                    let mut value = HeaderValue::from_str(v.expose()).map_err(|_| {
                        Error::Config(format!(
                            "connector `{}`: the value of {} cannot be sent in a header (it holds characters a header cannot carry)",
                            self.name,
                            self.config.auth.as_ref().map(Auth::variables).unwrap_or_default()
                        ))
                    })?;
                    value.set_sensitive(true);
                    req.header(name.clone(), value)
                }
            };
            let (retry, wait, why) = match client.send(req).await {
                Err(Error::Upstream(why)) => (true, None, why),
                Err(Error::Unauthorized(blocked)) => {
                    // The guard's sentence ends with advice for tools; connectors have their
                    // own switch.
                    let reason = blocked
                        .split("; if this is an internal service")
                        .next()
                        .unwrap_or(&blocked);
                    return Err(Error::Unauthorized(format!(
                        "connector `{}`: {reason}; if this API is on your own network, set allow_private = true in the connector file",
                        self.name
                    )));
                }
                Err(e) => return Err(e),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let headers = resp.headers().clone();
                        let mut resp = resp;
                        let cap = self.config.max_page_bytes;
                        let bytes = crate::tools::net::read_at_most(&mut resp, cap)
                            .await
                            .map_err(|_| {
                                Error::Upstream(format!(
                                    "connector `{}`: reading the answer of {shown} failed",
                                    self.name
                                ))
                            })?
                            .ok_or_else(|| {
                                Error::Upstream(format!(
                                    "connector `{}`: a page of {shown} is larger than max_page_bytes ({cap} bytes); ask for smaller pages (pagination size or limit) or raise max_page_bytes in the connector file",
                                    self.name
                                ))
                            })?;
                        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                            Error::Upstream(format!(
                                "connector `{}`: {shown} did not answer JSON ({e})",
                                self.name
                            ))
                        })?;
                        return Ok((headers, body));
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        let check = match &self.config.auth {
                            Some(a) => format!(
                                "check that {} holds a valid, unexpired credential for this API",
                                a.variables()
                            ),
                            None => "the API needs credentials; add auth = { type = \"bearer\", token_env = \"…\" } (or basic, header, query)".to_string(),
                        };
                        return Err(Error::Unauthorized(format!(
                            "connector `{}`: {shown} refused the request with HTTP {} ({}); {check}",
                            self.name,
                            status.as_u16(),
                            status.canonical_reason().unwrap_or("refused"),
                        )));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        (
                            true,
                            retry_after(resp.headers()),
                            format!("HTTP {}", status.as_u16()),
                        )
                    } else {
                        return Err(Error::Upstream(format!(
                            "connector `{}`: {shown} answered HTTP {}; check the url and its parameters",
                            self.name,
                            status.as_u16()
                        )));
                    }
                }
            };
            if !retry || attempt >= self.config.max_retries {
                return Err(Error::Upstream(format!(
                    "connector `{}`: {shown} failed after {} attempt{} (last: {why}); the API is unreachable or overloaded, try again later",
                    self.name,
                    attempt + 1,
                    if attempt == 0 { "" } else { "s" }
                )));
            }
            let delay = wait.unwrap_or_else(|| backoff(attempt));
            tracing::warn!(connector = %self.name, url = %shown, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, reason = %why, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn creds_present(c: &Credentials) -> bool {
    !matches!(c, Credentials::None)
}

/// Capped exponential backoff with jitter: 0.5s, 1s, 2s, … up to 30s, each times 0.5–1.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.min(6))
        .min(Duration::from_secs(30));
    let jitter = (uuid::Uuid::new_v4().as_u128() % 500) as f64 / 1000.0 + 0.5;
    base.mul_f64(jitter)
}

/// `Retry-After` as seconds or an HTTP date, capped at five minutes.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
    };
    Some(d.min(Duration::from_secs(300)))
}

fn limiter(rate: Rate) -> Option<DefaultDirectRateLimiter> {
    match rate {
        Rate::Off => None,
        Rate::Limited { count, per } => {
            let period = per / count.max(1);
            Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(NonZeroU32::MIN)))
        }
    }
}

/// The URL with the incremental parameter, when there is a cursor.
fn base_with_since(base: &Url, config: &HttpConfig, since: Option<&Value>) -> Url {
    let mut u = base.clone();
    if let (Some(inc), Some(v)) = (&config.incremental, since) {
        u.query_pairs_mut().append_pair(&inc.param, &as_text(v));
    }
    u
}

fn with_param(
    base: &Url,
    config: &HttpConfig,
    since: Option<&Value>,
    param: &str,
    value: &str,
) -> Url {
    let mut u = base_with_since(base, config, since);
    u.query_pairs_mut().append_pair(param, value);
    u
}

/// The first page's URL.
fn first_url(base: &Url, config: &HttpConfig, since: Option<&Value>) -> Url {
    let mut u = base_with_since(base, config, since);
    match &config.pagination {
        Some(Pagination::Page {
            param,
            size_param,
            size,
            start,
        }) => {
            u.query_pairs_mut().append_pair(param, &start.to_string());
            if !size_param.is_empty() {
                u.query_pairs_mut()
                    .append_pair(size_param, &size.to_string());
            }
        }
        Some(Pagination::Offset {
            param,
            limit_param,
            limit,
        }) => {
            u.query_pairs_mut()
                .append_pair(param, "0")
                .append_pair(limit_param, &limit.to_string());
        }
        _ => {}
    }
    u
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against `current`.
pub fn next_link(headers: &HeaderMap, current: &Url) -> Option<Url> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in split_links(text) {
            let part = part.trim();
            let Some(rest) = part.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.trim().split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return current.join(target.trim()).ok();
            }
        }
    }
    None
}

/// Splits a `Link` value at the commas between links (not the ones inside `<…>` or quotes).
fn split_links(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_url, mut in_quote, mut start) = (false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '<' if !in_quote => in_url = true,
            '>' if !in_quote => in_url = false,
            '"' if !in_url => in_quote = !in_quote,
            ',' if !in_url && !in_quote => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The value at `path`: a JSON pointer (`/a/0/b`), a dotted path (`a.b`), or the value itself
/// when the path is empty.
pub fn find<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    if path.is_empty() {
        return Some(value);
    }
    if path.starts_with('/') {
        return value.pointer(path);
    }
    let mut cur = value;
    for key in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Whether `a` comes after `b`: numbers by value, RFC 3339 timestamps by instant, other text
/// by its characters. Values of different kinds are not comparable (`false`).
pub fn greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x > y,
            _ => x.as_f64().unwrap_or(f64::NAN) > y.as_f64().unwrap_or(f64::NAN),
        },
        (Value::String(x), Value::String(y)) => {
            match (
                chrono::DateTime::parse_from_rfc3339(x),
                chrono::DateTime::parse_from_rfc3339(y),
            ) {
                (Ok(x), Ok(y)) => x > y,
                _ => x > y,
            }
        }
        _ => false,
    }
}

/// The problem with a record whose primary key is missing or empty, if it has one.
pub(super) fn key_issue(
    key: &PrimaryKey,
    source: &Arc<str>,
    line: u64,
    data: &Map<String, Value>,
) -> Option<RowIssue> {
    for k in &key.0 {
        let present = match data.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        if !present {
            return Some(RowIssue {
                source: source.to_string(),
                line,
                reason: format!("the primary key `{k}` is missing or empty"),
            });
        }
    }
    None
}

/// With `on_error = "fail"`, malformed records fail the run (nothing is written).
pub(super) fn fail_on_issues(out: &Extract, on_error: OnError) -> Result<()> {
    if on_error != OnError::Fail || out.issues.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{} malformed record{} (on_error = \"fail\", nothing was written):",
        out.issues.len(),
        if out.issues.len() == 1 { "" } else { "s" }
    );
    for i in out.issues.iter().take(20) {
        msg.push_str(&format!("\n  - {i}"));
    }
    if out.issues.len() > 20 {
        msg.push_str(&format!("\n  - … and {} more", out.issues.len() - 20));
    }
    Err(Error::BadInput(msg))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[async_trait]
impl Source for HttpSource {
    async fn extract(
        &self,
        cursor: Option<&Value>,
        on_error: OnError,
        progress: &dyn Progress,
    ) -> Result<Extract> {
        let previous: Cursor = super::decode_cursor(cursor, &self.name)?;
        // The cursor is only meaningful with `incremental`; without it every run is full. With
        // `full_every`, a run lists everything again once that long has passed since the last
        // full listing, which is how deletions at the source reach silver.
        let now = chrono::Utc::now().timestamp_millis();
        let since = match &self.config.incremental {
            Some(inc) => {
                let full_due = inc.full_every.is_some_and(|every| {
                    let every = i64::try_from(every.0.as_millis()).unwrap_or(i64::MAX);
                    previous
                        .full_at
                        .is_none_or(|at| now.saturating_sub(at) >= every)
                });
                if full_due {
                    None
                } else {
                    previous.since.clone()
                }
            }
            None => None,
        };
        let source: Arc<str> = match Url::parse(&self.config.url) {
            Ok(u) => Arc::from(redact_url(&u)),
            Err(_) => Arc::from(self.config.url.as_str()),
        };
        let mut out = Extract::default();
        let mut stager = None;
        let started = Instant::now();
        let largest = tokio::time::timeout(
            self.config.timeout.0,
            self.fetch_all(since.as_ref(), progress, &mut out, &mut stager, &source),
        )
        .await
        .map_err(|_| {
            Error::Upstream(format!(
                "connector `{}`: the run took longer than its timeout ({:.0?}); raise timeout or lower the number of pages (max_pages)",
                self.name,
                started.elapsed()
            ))
        })??;
        fail_on_issues(&out, on_error)?;
        if let Some(stager) = stager {
            let staged = tokio::task::spawn_blocking(move || stager.finish())
                .await
                .map_err(|e| Error::internal("staging records", e))??;
            out.staged = Some(staged);
        }
        if since.is_none() {
            // A full listing: every record the API has is in `records`, so rows of this
            // source missing from it were deleted at the source.
            out.replaced.push(source.to_string());
        }
        out.unchanged = 0;
        let full_at = match &self.config.incremental {
            Some(inc) if inc.full_every.is_some() => {
                if since.is_none() {
                    Some(now)
                } else {
                    previous.full_at
                }
            }
            _ => None,
        };
        out.cursor = serde_json::to_value(Cursor {
            since: if self.config.incremental.is_some() {
                largest
            } else {
                None
            },
            full_at,
        })
        .map_err(|e| Error::internal("encoding the cursor", e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                "<https://a.example/x?page=1>; rel=\"prev\", <https://a.example/x?page=3&q=a,b>; rel=\"next\"",
            ),
        );
        let cur = Url::parse("https://a.example/x?page=2").unwrap();
        assert_eq!(
            next_link(&h, &cur).unwrap().as_str(),
            "https://a.example/x?page=3&q=a,b"
        );
        let mut h = HeaderMap::new();
        h.insert(LINK, HeaderValue::from_static("</x?page=9>; rel=next"));
        assert_eq!(
            next_link(&h, &cur).unwrap().as_str(),
            "https://a.example/x?page=9"
        );
        assert!(next_link(&HeaderMap::new(), &cur).is_none());
    }

    #[test]
    fn paths_and_ordering() {
        let v = json!({"data": {"items": [1, 2]}, "meta": {"next": "c2"}});
        assert_eq!(find(&v, "data.items"), Some(&json!([1, 2])));
        assert_eq!(find(&v, "/data/items/1"), Some(&json!(2)));
        assert_eq!(find(&v, "meta.next"), Some(&json!("c2")));
        assert_eq!(find(&v, ""), Some(&v));
        assert!(greater(&json!(10), &json!(9)));
        assert!(!greater(
            &json!("2024-01-02T00:00:00Z"),
            &json!("2024-01-01T23:00:00-02:00")
        ));
        assert!(greater(&json!("b"), &json!("a")));
    }

    #[test]
    fn config_parses() {
        let c: HttpConfig = toml::from_str(
            "url = \"https://api.example.com/v1/orders\"\nrecords = \"data\"\nprimary_key = \"id\"\nauth = { type = \"header\", name = \"X-Api-Key\", value_env = \"K\" }\npagination = { type = \"cursor\", field = \"meta.next\" }\nincremental = { field = \"updated_at\", param = \"updated_since\" }\nrate = \"5/s\"\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        c.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            matches!(c.pagination, Some(Pagination::Cursor { ref param, .. }) if param == "cursor")
        );
        let bad = toml::from_str::<HttpConfig>(
            "url = \"x\"\nprimary_key = \"id\"\npagination = { type = \"pages\" }\n",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert!(backoff(10) <= Duration::from_secs(30));
    }
}
