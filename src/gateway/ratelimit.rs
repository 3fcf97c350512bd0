//! Rate limits per user and per conversation, with governor's keyed GCRA limiters.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use serde::{Deserialize, Serialize};

use crate::values::Rate;

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Messages one user may send, e.g. `"20/min"`, or `"off"`.
    pub per_user: Rate,
    /// Messages one conversation may receive, e.g. `"60/min"`, or `"off"`.
    pub per_conversation: Rate,
    /// Requests to the API (`/v1`, `/sources`, `/metrics`, delivery status, sign-in) per
    /// client address, whoever they claim to be: rotating keys or names gets no further.
    pub per_address: Rate,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_user: Rate::Limited {
                count: 20,
                per: Duration::from_secs(60),
            },
            per_conversation: Rate::Limited {
                count: 60,
                per: Duration::from_secs(60),
            },
            per_address: Rate::Limited {
                count: 600,
                per: Duration::from_secs(60),
            },
        }
    }
}

/// One keyed limit, or none.
pub struct KeyedLimit {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl KeyedLimit {
    /// A limiter for `rate`; `Rate::Off` lets everything through.
    pub fn new(rate: Rate) -> Self {
        let limiter = match rate {
            Rate::Off => None,
            Rate::Limited { count, per } => {
                let burst = NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN);
                let period = per / burst.get();
                Quota::with_period(period).map(|q| RateLimiter::keyed(q.allow_burst(burst)))
            }
        };
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one cell for `key`; on refusal, how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Forgets keys whose state is back at the full burst, so the map does not grow forever.
    pub fn shrink(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_wait() {
        let l = KeyedLimit::new(Rate::Limited {
            count: 2,
            per: Duration::from_secs(60),
        });
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(l.check("b").is_ok(), "keys are independent");
        assert!(KeyedLimit::new(Rate::Off).check("a").is_ok());
    }
}
