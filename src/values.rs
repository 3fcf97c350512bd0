//! Value types that config sections are made of, and the environment lookup secrets are read
//! through. A leaf: it imports nothing of conveyor but the error type, so every part can own its
//! section (`[server]` in `server`, `[llm]` in `agent::llm`, …) without importing the loader.
//!
//! - [`HumanDuration`]: `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`.
//! - [`Rate`]: `"20/min"` or `"off"`.
//! - [`Secret`]: a value read from an environment variable the file names; never shown.
//! - [`Env`]: where those variables are read from — the process, or what a test gives.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The one environment lookup: every secret (`*_env` keys: platform tokens, the LLM key, the
/// store URL, connector and tool credentials) is read through it. [`Env::process`] reads the
/// process environment; tests give their own with [`Env::from_pairs`] or [`Env::new`].
#[derive(Clone)]
pub struct Env(Arc<Lookup>);

/// How one variable is looked up.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self::new(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup`.
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(lookup))
    }

    /// Holds exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::new(move |name| map.get(name).cloned())
    }

    /// Holds no variables.
    pub fn empty() -> Self {
        Self::new(|_| None)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}

/// A rate such as `20/min`, or no limit (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// `count` events per `per`.
    Limited {
        /// Events allowed per period (also the burst).
        count: u32,
        /// The period.
        per: Duration,
    },
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let expected = "expected a rate like \"20/min\" (units: s, min, h) or \"off\"";
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid rate {s:?}: {expected}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("invalid rate {s:?}: {expected}"))?;
        if count == 0 {
            return Err(format!(
                "invalid rate {s:?}: the count must be at least 1 (use \"off\" for no limit)"
            ));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(format!("invalid rate {s:?}: {expected}")),
        };
        Ok(Self::Limited { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Limited { count, per } => {
                let unit = match per.as_secs() {
                    1 => "s",
                    3600 => "h",
                    _ => "min",
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written like `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid duration {s:?}: expected a number and a unit (ms, s, m, h, d), e.g. \"10s\""
            )
        };
        let n: u64 = n.parse().map_err(|_| bad())?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Self(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret read from the environment. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Reads the variable `name` through `env`, or explains which key named it and how to fix
    /// it.
    pub fn from_lookup(name: &str, key: &str, env: &Env) -> Result<Self> {
        match env.get(name).ok_or(()) {
            Ok(v) if !v.trim().is_empty() => Ok(Self(v)),
            Ok(_) => Err(Error::Config(format!(
                "{key} names the environment variable {name}, which is set but empty; export it with the secret value"
            ))),
            Err(_) => Err(Error::Config(format!(
                "{key} names the environment variable {name}, which is not set; export {name}=... before starting conveyor, or set {key} to the variable that holds the secret"
            ))),
        }
    }

    /// The secret itself. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads `value` as a `T`. An error names the key (`steps[0].text: …`, under `prefix` when it
/// is not empty: `channels.slack.mode: …`) and what is wrong, without the position serde
/// appends.
pub fn from_toml_at<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let message = message
            .split("\nin `")
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let path = if path == "." { "" } else { path.as_str() };
        match (prefix.is_empty(), path.is_empty()) {
            (true, true) => message,
            (true, false) => format!("{path}: {message}"),
            (false, true) => format!("{prefix}: {message}"),
            (false, false) => format!("{prefix}.{path}: {message}"),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_hidden() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!(
            "20/min".parse::<Rate>().unwrap(),
            Rate::Limited {
                count: 20,
                per: Duration::from_secs(60)
            }
        );
        assert!("0/min".parse::<Rate>().is_err());
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(250)
        );
        assert!("ten".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn env_reads_what_it_was_given() {
        let env = Env::from_pairs([("A", "1")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B"), None);
        let err = Secret::from_lookup("B", "store.url_env", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("store.url_env names the environment variable B"),
            "{err}"
        );
        let err = Secret::from_lookup("E", "k", &Env::from_pairs([("E", " ")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("set but empty"), "{err}");
    }
}
