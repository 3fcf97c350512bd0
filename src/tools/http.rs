//! Declarative HTTP tools: one TOML file in `tools.dir` describes a call to a remote API
//! (`tools/README.md` documents every key, `tools/weather.toml.example` shows them all).
//!
//! The file is checked completely when it is loaded, so a typo in a placeholder or a missing
//! secret stops start-up with a sentence naming the file, instead of failing the first time a
//! model calls the tool:
//!
//! - placeholders (`{param}`) in the URL, query and body must name declared parameters, and
//!   URL placeholders must be required parameters;
//! - placeholders may appear only in the URL's path, never in its scheme, host or port, so an
//!   argument can never choose which server is called;
//! - secret headers (`{ env = "VAR" }`) must be set in the environment; their values are kept
//!   out of every message, log line, `Debug` output and audit record.
//!
//! At call time the URL goes through the SSRF guard ([`super::net`]), the response body is read
//! chunk by chunk up to the size cap, and only the selected fields are returned.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::net::{AllowHosts, ClientOptions, GuardedClient};
use super::{Caller, LoadContext, Tool, ToolPolicy};
use crate::error::{Error, Result};
use crate::values::HumanDuration;

/// Characters of a non-JSON response returned to the model.
const MAX_TEXT_CHARS: usize = 4000;

/// Characters of an error response's body quoted in the error.
const ERROR_EXCERPT_CHARS: usize = 300;

/// Bytes of an error response read for the excerpt.
const ERROR_BODY_BYTES: usize = 4096;

/// The file as written; see `tools/README.md`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpToolFile {
    name: String,
    description: String,
    #[allow(dead_code)] // Read before deserialising, to pick this loader.
    kind: String,
    #[serde(default)]
    sensitive: bool,
    timeout: Option<HumanDuration>,
    parameters: Option<toml::Table>,
    http: HttpSection,
    #[serde(default)]
    response: ResponseSection,
    #[serde(default)]
    policy: ToolPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    #[serde(default)]
    query: toml::Table,
    body: Option<toml::Value>,
    #[serde(default)]
    headers: toml::Table,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ResponseSection {
    fields: Option<Vec<String>>,
    max_bytes: Option<usize>,
}

/// A string with `{param}` placeholders; `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Param(String),
}

impl Template {
    fn parse(s: &str) -> Self {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                lit.push(c);
                rest = &rest[2..];
                continue;
            }
            if c == '{'
                && let Some(end) = rest.find('}')
            {
                let name = &rest[1..end];
                let is_ident = name
                    .chars()
                    .next()
                    .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                if is_ident {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Param(name.to_owned()));
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Self(pieces)
    }

    fn params(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(n.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// The parameter when the template is exactly `{param}`.
    fn single_param(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Piece::Param(n)] => Some(n),
            _ => None,
        }
    }

    /// The text with each placeholder replaced by `value(param)`; `None` when a value is
    /// absent.
    fn render(
        &self,
        mut value: impl FnMut(&str) -> std::result::Result<Option<String>, String>,
    ) -> std::result::Result<Option<String>, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Param(n) => match value(n)? {
                    Some(v) => out.push_str(&v),
                    None => return Ok(None),
                },
            }
        }
        Ok(Some(out))
    }
}

/// One step of a response field path: `items[0].name` is `items`, `0`, `name`.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A selected response field: its path as written and its steps.
#[derive(Debug, Clone, PartialEq)]
struct FieldPath {
    text: String,
    steps: Vec<Step>,
}

impl FieldPath {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "response.fields: {text:?} is not a field path ({why}); write keys separated by dots and array positions in brackets, e.g. \"items[0].name\""
            )
        };
        if text.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        let mut steps = Vec::new();
        for (i, part) in text.split('.').enumerate() {
            let (key, mut rest) = match part.find('[') {
                Some(pos) => (&part[..pos], &part[pos..]),
                None => (part, ""),
            };
            if key.is_empty() && (rest.is_empty() || i > 0) {
                return Err(bad("a key is empty"));
            }
            if !key.is_empty() {
                steps.push(Step::Key(key.to_owned()));
            }
            while !rest.is_empty() {
                let Some(close) = rest.find(']') else {
                    return Err(bad("a bracket is not closed"));
                };
                let index: usize = rest[1..close]
                    .trim()
                    .parse()
                    .map_err(|_| bad("a position in brackets is not a number"))?;
                steps.push(Step::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad("text follows a closing bracket"));
                }
            }
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    fn select<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for step in &self.steps {
            v = match step {
                Step::Key(k) => v.get(k)?,
                Step::Index(i) => v.get(i)?,
            };
        }
        Some(v)
    }
}

/// A header sent with every call. A secret one came from the environment and is marked
/// sensitive; it is never printed.
struct Header {
    name: HeaderName,
    value: HeaderValue,
    secret: bool,
}

/// A tool that calls a remote HTTP API, loaded from a TOML file.
pub struct HttpTool {
    name: String,
    description: String,
    sensitive: bool,
    timeout: Option<Duration>,
    parameters: Value,
    policy: ToolPolicy,
    method: Method,
    url: Template,
    query: Vec<(String, Template)>,
    body: Option<Value>,
    headers: Vec<Header>,
    fields: Option<Vec<FieldPath>>,
    max_bytes: usize,
    client: GuardedClient,
}

impl fmt::Debug for HttpTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|h| {
                if h.secret {
                    format!("{}: ***", h.name)
                } else {
                    format!("{}: {}", h.name, h.value.to_str().unwrap_or("(binary)"))
                }
            })
            .collect();
        f.debug_struct("HttpTool")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl HttpTool {
    /// Builds the tool from a parsed file, or lists every problem found in it (without the
    /// file name; the caller adds it).
    pub fn from_toml(
        table: toml::Table,
        origin: &str,
        cx: &LoadContext<'_>,
    ) -> std::result::Result<Self, Vec<String>> {
        let file: HttpToolFile =
            crate::values::from_toml_at(toml::Value::Table(table), "").map_err(|e| vec![e])?;
        let mut problems = Vec::new();

        if file.description.trim().is_empty() {
            problems.push(
                "description is empty; say what the tool does, for the model that chooses it"
                    .to_owned(),
            );
        }
        let parameters = match file.parameters {
            Some(t) => serde_json::to_value(t).unwrap_or_else(|_| json!({})),
            None => json!({"type": "object", "properties": {}}),
        };
        let properties: Vec<String> = parameters
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let required: Vec<String> = parameters
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let check_params = |t: &Template, key: &str, problems: &mut Vec<String>| {
            for p in t.params() {
                if !properties.iter().any(|k| k == p) {
                    problems.push(format!(
                        "{key} uses the placeholder {{{p}}}, which is not a parameter; declare it under [parameters.properties.{p}] or fix the name (parameters: {})",
                        if properties.is_empty() {
                            "none".to_owned()
                        } else {
                            properties.join(", ")
                        }
                    ));
                }
            }
        };

        let timeout = match file.timeout {
            Some(HumanDuration(d)) if d.is_zero() => {
                problems.push("timeout must be longer than 0s, e.g. \"5s\"".to_owned());
                None
            }
            Some(HumanDuration(d)) => Some(d),
            None => None,
        };

        let method = match file.http.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => {
                problems.push(format!(
                    "http.method: {other:?} is not supported; use GET, POST, PUT, PATCH or DELETE"
                ));
                Method::GET
            }
        };

        let url = Template::parse(&file.http.url);
        check_url_template(&file.http.url, &url, &properties, &required, &mut problems);
        check_params(&url, "http.url", &mut problems);

        let mut query = Vec::new();
        for (key, value) in &file.http.query {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    problems.push(format!(
                        "http.query.{key}: must be a string (may hold {{param}}), number or boolean"
                    ));
                    continue;
                }
            };
            let t = Template::parse(&text);
            check_params(&t, &format!("http.query.{key}"), &mut problems);
            query.push((key.clone(), t));
        }

        let body = match file.http.body {
            None => None,
            Some(b) => {
                if !matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                    problems.push(format!(
                        "http.body is set but http.method is {method}; a body is sent only with POST, PUT or PATCH"
                    ));
                }
                let body = serde_json::to_value(b).unwrap_or(Value::Null);
                let mut templates = Vec::new();
                collect_body_templates(&body, &mut templates);
                for t in &templates {
                    check_params(t, "http.body", &mut problems);
                }
                Some(body)
            }
        };

        let mut headers = Vec::new();
        for (key, value) in &file.http.headers {
            match load_header(key, value, cx) {
                Ok(h) => headers.push(h),
                Err(p) => problems.push(p),
            }
        }

        let fields = match file.response.fields {
            None => None,
            Some(list) if list.is_empty() => {
                problems.push(
                    "response.fields is empty; list the fields to return, or remove it to return the whole response"
                        .to_owned(),
                );
                None
            }
            Some(list) => {
                let mut paths = Vec::new();
                for f in &list {
                    match FieldPath::parse(f) {
                        Ok(p) => paths.push(p),
                        Err(e) => problems.push(e),
                    }
                }
                Some(paths)
            }
        };
        let max_bytes = match file.response.max_bytes {
            Some(0) => {
                problems.push("response.max_bytes must be at least 1".to_owned());
                cx.tools.max_response_bytes
            }
            Some(n) => n,
            None => cx.tools.max_response_bytes,
        };

        let has_secrets = headers.iter().any(|h| h.secret);
        let client = GuardedClient::new(
            AllowHosts::new(&cx.tools.allow_hosts),
            ClientOptions {
                same_origin_redirects_only: has_secrets,
            },
        );
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                problems.push(e.to_string());
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        tracing::debug!(tool = %file.name, origin, "loaded HTTP tool");
        Ok(Self {
            name: file.name,
            description: file.description.trim().to_owned(),
            sensitive: file.sensitive,
            timeout,
            parameters,
            policy: file.policy,
            method,
            url,
            query,
            body,
            headers,
            fields,
            max_bytes,
            client,
        })
    }

    /// The URL for these arguments: path placeholders percent-encoded, query appended.
    fn build_url(&self, args: &Map<String, Value>) -> Result<Url> {
        let text = self
            .url
            .render(|p| match args.get(p) {
                None | Some(Value::Null) => Err(format!("the argument `{p}` is required")),
                Some(v) => {
                    let s = scalar_text(v).ok_or_else(|| {
                        format!("the argument `{p}` must be a string, number or boolean")
                    })?;
                    // Encoding does not help against "..": URL parsers read %2E%2E as a
                    // parent-directory segment too.
                    if s == "." || s == ".." {
                        return Err(format!("the argument `{p}` may not be `.` or `..`"));
                    }
                    Ok(Some(percent_encode(&s)))
                }
            })
            .map_err(Error::BadInput)?
            .ok_or_else(|| Error::BadInput("a URL argument is missing".into()))?;
        let mut url = Url::parse(&text)
            .map_err(|e| Error::BadInput(format!("the arguments do not make a valid URL: {e}")))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, t) in &self.query {
            // `tag = "{tags}"` with an array repeats the key: tag=a&tag=b.
            if let Some(p) = t.single_param()
                && let Some(Value::Array(items)) = args.get(p)
            {
                for item in items {
                    if let Some(s) = scalar_text(item) {
                        pairs.push((key.clone(), s));
                    }
                }
                continue;
            }
            let rendered = t
                .render(|p| Ok(args.get(p).and_then(query_text)))
                .map_err(Error::BadInput)?;
            if let Some(v) = rendered {
                pairs.push((key.clone(), v));
            }
        }
        if !pairs.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

#[async_trait]
impl Tool for HttpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "http"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> &Value {
        &self.parameters
    }

    fn sensitive(&self) -> bool {
        self.sensitive
    }

    fn policy(&self) -> &ToolPolicy {
        &self.policy
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn call(&self, _caller: &Caller, args: Value) -> Result<Value> {
        let empty = Map::new();
        let args = args.as_object().unwrap_or(&empty);
        let url = self.build_url(args)?;
        let mut request = self.client.request(self.method.clone(), url);
        for h in &self.headers {
            request = request.header(h.name.clone(), h.value.clone());
        }
        if let Some(template) = &self.body {
            let body = render_body(template, args).unwrap_or(Value::Null);
            request = request.json(&body);
        }
        let mut response = self.client.send(request).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);

        if !status.is_success() {
            let (bytes, _) = read_body(&mut response, ERROR_BODY_BYTES, Overflow::Truncate)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let excerpt: String = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(ERROR_EXCERPT_CHARS)
                .collect();
            return Err(Error::Upstream(if excerpt.is_empty() {
                format!("the API answered {status}")
            } else {
                format!("the API answered {status}: {excerpt}")
            }));
        }

        let (bytes, _) = read_body(&mut response, self.max_bytes, Overflow::Fail).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({ "status": status.as_u16() }));
        }
        let is_json = match &content_type {
            Some(ct) => ct.contains("json"),
            None => matches!(
                bytes.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            ),
        };
        if !is_json {
            return Ok(text_result(&bytes));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Upstream(format!(
                "the API said its answer is JSON, but it is not ({e})"
            ))
        })?;
        Ok(match &self.fields {
            None => value,
            Some(paths) => {
                let mut out = Map::new();
                for p in paths {
                    out.insert(
                        p.text.clone(),
                        p.select(&value).cloned().unwrap_or(Value::Null),
                    );
                }
                Value::Object(out)
            }
        })
    }
}

/// Checks the URL template: a literal http(s) scheme and host, placeholders only after the
/// host, each of them a required parameter, and a valid URL once filled in.
fn check_url_template(
    raw: &str,
    t: &Template,
    properties: &[String],
    required: &[String],
    problems: &mut Vec<String>,
) {
    let lower = raw.to_ascii_lowercase();
    let Some(after_scheme) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        problems.push(format!(
            "http.url {raw:?} must start with https:// or http://"
        ));
        return;
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.contains('{') {
        problems.push(format!(
            "http.url {raw:?} has a placeholder in its host or port; placeholders are allowed only in the path (and in http.query), so that arguments cannot choose the server"
        ));
        return;
    }
    // Placeholders that are not parameters at all are reported once, by the caller.
    for p in t.params().filter(|p| properties.iter().any(|k| k == p)) {
        if !required.iter().any(|r| r == p) {
            problems.push(format!(
                "http.url uses {{{p}}}, but `{p}` is not in parameters.required; a URL cannot be built without it, so add it to required (or move it to http.query, where absent values are left out)"
            ));
        }
    }
    let sample = t.render(|_| Ok(Some("x".to_owned())));
    if let Ok(Some(s)) = sample
        && let Err(e) = Url::parse(&s)
    {
        problems.push(format!("http.url {raw:?} is not a valid URL: {e}"));
    }
}

fn collect_body_templates(v: &Value, out: &mut Vec<Template>) {
    match v {
        Value::String(s) => out.push(Template::parse(s)),
        Value::Array(items) => items.iter().for_each(|i| collect_body_templates(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_body_templates(i, out)),
        _ => {}
    }
}

/// Fills the body template: a string that is exactly `{param}` becomes the argument with its
/// JSON type; other strings get text substitution. A value whose argument is absent is left
/// out of its object (and is `null` in an array).
fn render_body(v: &Value, args: &Map<String, Value>) -> Option<Value> {
    match v {
        Value::String(s) => {
            let t = Template::parse(s);
            if let Some(p) = t.single_param() {
                return args.get(p).filter(|v| !v.is_null()).cloned();
            }
            t.render(|p| Ok(args.get(p).and_then(query_text)))
                .ok()
                .flatten()
                .map(Value::String)
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| render_body(i, args).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| render_body(v, args).map(|r| (k.clone(), r)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text of an argument inside a larger string: scalars as themselves, arrays joined with
/// commas, objects as JSON; `null` counts as absent.
fn query_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| scalar_text(i).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Object(_) => Some(v.to_string()),
        other => scalar_text(other),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays inside its
/// path segment (`/` becomes `%2F`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Headers conveyor sets itself; a file may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

fn load_header(
    key: &str,
    value: &toml::Value,
    cx: &LoadContext<'_>,
) -> std::result::Result<Header, String> {
    let name = HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| format!("http.headers: {key:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "http.headers.{key}: this header is set by conveyor and cannot be configured"
        ));
    }
    match value {
        toml::Value::String(s) => {
            let value = HeaderValue::from_str(s).map_err(|_| {
                format!("http.headers.{key}: the value has characters a header cannot carry")
            })?;
            Ok(Header {
                name,
                value,
                secret: false,
            })
        }
        toml::Value::Table(t) => {
            if let Some(unknown) = t.keys().find(|k| *k != "env" && *k != "prefix") {
                return Err(format!(
                    "http.headers.{key}: unknown key `{unknown}`; a secret header is {{ env = \"VAR\", prefix = \"Bearer \" }}"
                ));
            }
            let Some(var) = t.get("env").and_then(toml::Value::as_str) else {
                return Err(format!(
                    "http.headers.{key}: `env` is missing; write {{ env = \"VAR\" }} with the name of the environment variable that holds the secret"
                ));
            };
            let prefix = match t.get("prefix") {
                None => "",
                Some(toml::Value::String(p)) => p.as_str(),
                Some(_) => {
                    return Err(format!("http.headers.{key}.prefix: must be a string"));
                }
            };
            let secret = match cx.env.get(var) {
                Some(v) if !v.trim().is_empty() => v,
                Some(_) => {
                    return Err(format!(
                        "http.headers.{key}.env names the environment variable {var}, which is set but empty; export it with the secret value"
                    ));
                }
                None => {
                    return Err(format!(
                        "http.headers.{key}.env names the environment variable {var}, which is not set; export {var}=... before starting conveyor"
                    ));
                }
            };
            let mut value = HeaderValue::from_str(&format!("{prefix}{secret}")).map_err(|_| {
                format!(
                    "http.headers.{key}: the value of {var} (with its prefix) has characters a header cannot carry, such as a line break"
                )
            })?;
            value.set_sensitive(true);
            Ok(Header {
                name,
                value,
                secret: true,
            })
        }
        _ => Err(format!(
            "http.headers.{key}: must be a string, or {{ env = \"VAR\", prefix = \"…\" }} for a secret"
        )),
    }
}

/// What to do when a body is bigger than the cap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// Fail the call.
    Fail,
    /// Keep the first bytes (for error excerpts).
    Truncate,
}

/// Reads the body chunk by chunk, never holding more than `cap` bytes (plus one chunk).
/// Returns the bytes and whether they were truncated.
async fn read_body(
    response: &mut reqwest::Response,
    cap: usize,
    overflow: Overflow,
) -> Result<(Vec<u8>, bool)> {
    let too_large = || {
        Error::Upstream(format!(
            "the response is larger than the limit of {cap} bytes; ask for less data, or raise response.max_bytes in the tool file (or tools.max_response_bytes)"
        ))
    };
    if overflow == Overflow::Fail
        && response
            .content_length()
            .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::upstream("reading the response failed", e))?
    {
        if out.len() + chunk.len() > cap {
            return match overflow {
                Overflow::Fail => Err(too_large()),
                Overflow::Truncate => {
                    let room = cap - out.len();
                    out.extend_from_slice(&chunk[..room]);
                    Ok((out, true))
                }
            };
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// A non-JSON answer as `{"text": …}`, cut to [`MAX_TEXT_CHARS`].
fn text_result(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_TEXT_CHARS).collect();
    if chars.next().is_some() {
        json!({ "text": format!("{head}…"), "truncated": true })
    } else {
        json!({ "text": head })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tools::ToolsConfig;
    use crate::values::Env;

    #[test]
    fn templates_split_placeholders_and_keep_escaped_braces() {
        let t = Template::parse("https://x/{a}/b{{c}}/{not a param}/{_b1}");
        assert_eq!(t.params().collect::<Vec<_>>(), vec!["a", "_b1"]);
        let out = t.render(|p| Ok(Some(format!("<{p}>")))).unwrap().unwrap();
        assert_eq!(out, "https://x/<a>/b{c}/{not a param}/<_b1>");
        assert_eq!(Template::parse("{x}").single_param(), Some("x"));
        assert_eq!(Template::parse("a{x}").single_param(), None);
    }

    #[test]
    fn field_paths_parse_and_select() {
        let v = json!({"a": {"b": 1}, "items": [{"name": "x"}, {"name": "y"}], "m": [[1, 2]]});
        let sel = |p: &str| FieldPath::parse(p).unwrap().select(&v).cloned();
        assert_eq!(sel("a.b"), Some(json!(1)));
        assert_eq!(sel("items[1].name"), Some(json!("y")));
        assert_eq!(sel("m[0][1]"), Some(json!(2)));
        assert_eq!(sel("a.c"), None);
        for bad in ["", "a..b", "a[x]", "a[0", "a[0]b", ".a"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn body_keeps_types_and_drops_absent_values() {
        let template = json!({"id": "{id}", "n": "{n}", "note": "for {id}", "gone": "{missing}", "list": ["{n}", "{missing}"], "fixed": 1});
        let args = json!({"id": "a1", "n": 3});
        let out = render_body(&template, args.as_object().unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"id": "a1", "n": 3, "note": "for a1", "list": [3, null], "fixed": 1})
        );
    }

    #[test]
    fn path_values_are_encoded_into_one_segment() {
        assert_eq!(percent_encode("São Paulo/x?y"), "S%C3%A3o%20Paulo%2Fx%3Fy");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    fn load(text: &str, env: &[(&str, &str)]) -> std::result::Result<HttpTool, Vec<String>> {
        let tools = ToolsConfig::default();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cx = LoadContext {
            tools: &tools,
            env: Env::from_pairs(env),
        };
        HttpTool::from_toml(toml::from_str(text).unwrap(), "t.toml", &cx)
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let tool = load(
            r#"
name = "t"
description = "d"
kind = "http"
[http]
url = "https://api.example.com/x"
[http.headers]
Authorization = { env = "T_KEY", prefix = "Bearer " }
Accept = "application/json"
"#,
            &[("T_KEY", "hunter2-secret")],
        )
        .unwrap();
        let dbg = format!("{tool:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("authorization: ***"), "{dbg}");
        assert!(dbg.contains("application/json"), "{dbg}");
    }

    #[test]
    fn the_example_file_loads_and_its_secret_is_required() {
        let text = include_str!("../../tools/weather.toml.example");
        let tool = load(text, &[("WEATHER_API_KEY", "k")]).unwrap();
        assert_eq!(tool.name, "weather");
        assert_eq!(tool.method, Method::POST);
        assert_eq!(tool.timeout, Some(Duration::from_secs(5)));
        assert_eq!(tool.max_bytes, 65536);
        let problems = load(text, &[]).unwrap_err();
        assert!(problems[0].contains("WEATHER_API_KEY"), "{problems:?}");
    }

    #[test]
    fn every_problem_of_a_file_is_listed() {
        let problems = load(
            r#"
name = "t"
description = ""
kind = "http"
timeout = "0s"
[parameters]
type = "object"
properties = { city = { type = "string" }, units = { type = "string" } }
[http]
method = "GET"
url = "https://{host}/weather/{city}"
body = { a = "{x}" }
[http.query]
units = "{unit}"
[http.headers]
X-Key = { env = "SURELY_UNSET_T_VAR" }
[response]
fields = ["a..b"]
"#,
            &[],
        )
        .unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "description is empty",
            "timeout",
            "host or port",
            "{unit}",
            "body is set but http.method is GET",
            "{x}",
            "SURELY_UNSET_T_VAR",
            "a..b",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }

        let problems = load(
            r#"
name = "t"
description = "d"
kind = "http"
[parameters]
type = "object"
properties = { city = { type = "string" } }
[http]
url = "https://api.example.com/{city}"
"#,
            &[],
        )
        .unwrap_err();
        assert!(
            problems[0].contains("not in parameters.required"),
            "{problems:?}"
        );

        let problems = load(
            "name = \"t\"\ndescription = \"d\"\nkind = \"http\"\nsurprise = 1\n[http]\nurl = \"https://a.example/\"\n",
            &[],
        )
        .unwrap_err();
        assert!(problems[0].contains("surprise"), "{problems:?}");
    }

    #[test]
    fn urls_get_encoded_path_and_query_without_absent_values() {
        let tool = load(
            r#"
name = "t"
description = "d"
kind = "http"
[parameters]
type = "object"
required = ["city"]
properties = { city = { type = "string" }, units = { type = "string" }, tags = { type = "array" } }
[http]
url = "https://api.example.com/v1/{city}/now"
[http.query]
units = "{units}"
tag = "{tags}"
fixed = 1
"#,
            &[],
        )
        .unwrap();
        let args = json!({"city": "São Paulo/x", "tags": ["a", "b"]});
        let url = tool.build_url(args.as_object().unwrap()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/S%C3%A3o%20Paulo%2Fx/now?fixed=1&tag=a&tag=b"
        );
        let err = tool
            .build_url(json!({"city": ".."}).as_object().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
    }
}
