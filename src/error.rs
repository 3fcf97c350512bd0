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
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Upstream`] with context.
    pub fn upstream(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Self::Upstream(format!("{context}: {err}"))
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
