//! The outcome of one health check (`Check`, `Status`): plain data that the parts which check
//! themselves (each chat platform's `conveyor doctor` checks) and `doctor`, which runs and
//! prints them, share, so neither imports the other.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but probably not as intended.
    Warn,
    /// Will not work.
    Fail,
    /// Not checked (offline, or nothing to check).
    Skip,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `config`, `store`, `index`, `llm`, `slack`, `telegram`, …
    pub area: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it, for warnings and failures.
    pub advice: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn ok(area: &str, message: impl Into<String>) -> Self {
        Self {
            area: area.into(),
            status: Status::Ok,
            message: message.into(),
            advice: None,
        }
    }

    /// A warning with advice.
    pub fn warn(area: &str, message: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            area: area.into(),
            status: Status::Warn,
            message: message.into(),
            advice: Some(advice.into()),
        }
    }

    /// A failure with advice.
    pub fn fail(area: &str, message: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            area: area.into(),
            status: Status::Fail,
            message: message.into(),
            advice: Some(advice.into()),
        }
    }

    /// Not checked, and why.
    pub fn skip(area: &str, message: impl Into<String>) -> Self {
        Self {
            area: area.into(),
            status: Status::Skip,
            message: message.into(),
            advice: None,
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.status {
            Status::Ok => " ok ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        write!(f, "[{tag}] {:<9} {}", self.area, self.message)?;
        if let Some(advice) = &self.advice {
            write!(f, "\n                 → {advice}")?;
        }
        Ok(())
    }
}
