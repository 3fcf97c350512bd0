//! The one error type of the library, by kind.
//!
//! Each kind maps to an HTTP status (in `http`) or a chat reply (in the surfaces) in exactly
//! one place. Messages are sentences meant for the person who has to act on them: they say
//! what is wrong and, where possible, what to do about it.

use std::time::Duration;

/// Errors that cross module boundaries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something we cannot accept (malformed, missing, empty, reused key).
    #[error("{0}")]
    BadInput(String),
    /// The request body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is over a rate limit; `retry_after` says when the next request will pass.
    #[error("{message}")]
    RateLimited {
        /// How long until the limit lets the next request through.
        retry_after: Duration,
        /// A polite sentence that says so.
        message: String,
    },
    /// A backend we depend on (store, index, remote API) failed or is unreachable.
    #[error("{0}")]
    Upstream(String),
    /// Configuration is wrong; the message lists every problem found.
    #[error("{0}")]
    Config(String),
    /// A bug or an invariant broken inside conveyor.
    #[error("internal error: {0}")]
    Internal(String),
    /// Another request with the same idempotency key is still being processed.
    #[error("{0}")]
    Conflict(String),
    /// The process is shutting down: the work was stopped and handed back (an inbox row to
    /// the queue, an ingress claim released) for the next process to finish.
    #[error("conveyor is shutting down; retry in a few seconds")]
    ShuttingDown,
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Upstream`] with context.
    /// The error text is scrubbed of URLs' paths, queries and credentials ([`scrub_urls`]):
    /// HTTP clients print the URL they called, and some carry secrets (an API key in the
    /// query, a Slack `response_url`, a bot token in the path).
    pub fn upstream(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Self::Upstream(format!("{context}: {}", scrub_urls(&err.to_string())))
    }

    /// Shorthand for [`Error::Internal`] with context.
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {err}"))
    }
}

/// Choices for a message: `a`, `a or b`, `a, b or c`.
pub fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `text` with every `http://` or `https://` URL cut to its origin (`https://host:port`, plus
/// `/…` when anything followed): error text from HTTP clients names the URL it called, and a
/// URL can carry a secret in its query (`?key=`), its path (a bot token, a Slack
/// `response_url`) or its user info. The text is only ever cut at offsets found in itself.
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        // The next `http://` or `https://`, found in one pass: looking for each scheme on its
        // own read the rest of the text once per URL when only the other scheme occurred.
        let found = rest.match_indices("http").find_map(|(at, _)| {
            let after = &rest[at + 4..];
            if after.starts_with("s://") {
                Some((at, "https://"))
            } else if after.starts_with("://") {
                Some((at, "http://"))
            } else {
                None
            }
        });
        let Some((at, scheme)) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let url = &rest[at + scheme.len()..];
        let end = url
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']')
            })
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, tail) = url.split_at(authority_end);
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        out.push_str(scheme);
        out.push_str(host);
        if !tail.is_empty() {
            out.push_str("/…");
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_error_text_keep_only_their_origin() {
        assert_eq!(
            scrub_urls(
                "error sending request for url (https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key=AIzaSECRET)"
            ),
            "error sending request for url (https://generativelanguage.googleapis.com/…)"
        );
        assert_eq!(
            scrub_urls(
                "POST https://hooks.slack.com/commands/T1/B2/s3cr3t failed; http://u:p@h:8080 too"
            ),
            "POST https://hooks.slack.com/… failed; http://h:8080 too"
        );
        assert_eq!(scrub_urls("no url here: é Ω"), "no url here: é Ω");
        assert_eq!(scrub_urls("https://"), "https://");
        assert_eq!(scrub_urls("xhttps://é/ä?k=v"), "xhttps://é/…");
        assert_eq!(scrub_urls("httphttp://a/b https"), "httphttp://a/… https");
    }

    /// Found by the fuzz target `scrub_urls` (`fuzz/`): with many `http://` URLs and no
    /// `https://`, each URL searched the rest of the text for `https://` again (60 KB took
    /// 1.8 s in a debug build). One pass now finds either scheme.
    #[test]
    fn many_urls_are_scrubbed_in_one_pass() {
        let text = "http://a ".repeat(50_000);
        let started = std::time::Instant::now();
        assert_eq!(scrub_urls(&text), text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
