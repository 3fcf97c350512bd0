//! Request signature checks shared by every inbound channel (webhooks, Slack, ...).
//!
//! Every comparison of a secret-derived value goes through [`Mac::verify_slice`], which is
//! constant time, so a forger learns nothing from how long a refusal takes. Errors say which
//! check failed and never echo the secret or the expected signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from our clock, in seconds (Slack and Standard Webhooks
/// both use five minutes).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's format.
    #[error("the {header} header is malformed: {why}")]
    BadFormat {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The signed timestamp is outside the tolerance window (a replay, or a skewed clock).
    #[error("the signed timestamp is more than {TOLERANCE_SECS} seconds away from now")]
    StaleTimestamp,
    /// The signature does not match the body and the secret.
    #[error("the signature does not match")]
    Mismatch,
    /// The configured secret is unusable (e.g. a Standard Webhooks secret that is not base64).
    #[error("the configured secret is malformed: {0}")]
    BadSecret(&'static str),
}

fn mac(key: &[u8]) -> Result<HmacSha256, VerifyError> {
    // HMAC accepts keys of any length, so this error never happens in practice.
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| VerifyError::BadSecret("unusable key"))
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>` over the raw body.
pub fn github_sha256(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), VerifyError> {
    const NAME: &str = "X-Hub-Signature-256";
    let header = header.ok_or(VerifyError::MissingHeader(NAME))?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(VerifyError::BadFormat {
            header: NAME,
            why: "expected sha256=<hex>",
        })?;
    let sig = hex::decode(hex_sig).map_err(|_| VerifyError::BadFormat {
        header: NAME,
        why: "the signature is not hexadecimal",
    })?;
    let mut m = mac(secret.as_bytes())?;
    m.update(body);
    m.verify_slice(&sig).map_err(|_| VerifyError::Mismatch)
}

/// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`): the signature
/// header is a space-separated list of `v1,<base64>`; one match is enough. `secret` is
/// `whsec_<base64>` (the prefix is optional).
pub fn standard_webhooks(
    secret: &str,
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    signature_header: Option<&str>,
    now: i64,
) -> Result<(), VerifyError> {
    let msg_id = msg_id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signatures = signature_header.ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts = parse_timestamp(timestamp, "webhook-timestamp")?;
    fresh(ts, now)?;
    let key = STANDARD
        .decode(
            secret
                .trim()
                .strip_prefix("whsec_")
                .unwrap_or(secret.trim()),
        )
        .map_err(|_| VerifyError::BadSecret("expected whsec_<base64>"))?;
    let mut signed = mac(&key)?;
    signed.update(msg_id.as_bytes());
    signed.update(b".");
    signed.update(timestamp.as_bytes());
    signed.update(b".");
    signed.update(body);
    let mut any_v1 = false;
    for candidate in signatures.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        any_v1 = true;
        let Ok(sig) = STANDARD.decode(b64) else {
            continue;
        };
        if signed.clone().verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    if any_v1 {
        Err(VerifyError::Mismatch)
    } else {
        Err(VerifyError::BadFormat {
            header: "webhook-signature",
            why: "expected a space-separated list of v1,<base64>",
        })
    }
}

/// `Authorization: Bearer <token>`, compared in constant time.
pub fn bearer(expected: &str, authorization: Option<&str>) -> Result<(), VerifyError> {
    const NAME: &str = "Authorization";
    let header = authorization.ok_or(VerifyError::MissingHeader(NAME))?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(VerifyError::BadFormat {
            header: NAME,
            why: "expected Bearer <token>",
        })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(VerifyError::BadFormat {
            header: NAME,
            why: "expected Bearer <token>",
        });
    }
    // Compare MACs of both tokens: equal-length values, compared in constant time, so neither
    // the token's content nor its length leaks through timing.
    let mut want = mac(b"conveyor bearer check")?;
    want.update(expected.as_bytes());
    let want = want.finalize().into_bytes();
    let mut got = mac(b"conveyor bearer check")?;
    got.update(token.trim().as_bytes());
    got.verify_slice(&want).map_err(|_| VerifyError::Mismatch)
}

/// Telegram's `X-Telegram-Bot-Api-Secret-Token`: the exact `secret_token` given to
/// `setWebhook`, compared in constant time (no HMAC: Telegram sends the value itself).
pub fn telegram_secret_token(expected: &str, header: Option<&str>) -> Result<(), VerifyError> {
    let token = header.ok_or(VerifyError::MissingHeader(
        "X-Telegram-Bot-Api-Secret-Token",
    ))?;
    // As for bearer tokens: MACs of both values, so neither content nor length leaks.
    let mut want = mac(b"conveyor telegram secret check")?;
    want.update(expected.as_bytes());
    let want = want.finalize().into_bytes();
    let mut got = mac(b"conveyor telegram secret check")?;
    got.update(token.as_bytes());
    got.verify_slice(&want).map_err(|_| VerifyError::Mismatch)
}

/// Slack's `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`, with
/// `X-Slack-Request-Timestamp` within five minutes of `now`.
pub fn slack_v0(
    signing_secret: &str,
    timestamp: Option<&str>,
    body: &[u8],
    signature: Option<&str>,
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader("X-Slack-Request-Timestamp"))?;
    let signature = signature.ok_or(VerifyError::MissingHeader("X-Slack-Signature"))?;
    let ts = parse_timestamp(timestamp, "X-Slack-Request-Timestamp")?;
    fresh(ts, now)?;
    let hex_sig = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(VerifyError::BadFormat {
            header: "X-Slack-Signature",
            why: "expected v0=<hex>",
        })?;
    let sig = hex::decode(hex_sig).map_err(|_| VerifyError::BadFormat {
        header: "X-Slack-Signature",
        why: "the signature is not hexadecimal",
    })?;
    let mut m = mac(signing_secret.as_bytes())?;
    m.update(b"v0:");
    m.update(timestamp.as_bytes());
    m.update(b":");
    m.update(body);
    m.verify_slice(&sig).map_err(|_| VerifyError::Mismatch)
}

fn parse_timestamp(value: &str, header: &'static str) -> Result<i64, VerifyError> {
    value.trim().parse().map_err(|_| VerifyError::BadFormat {
        header,
        why: "expected Unix seconds",
    })
}

fn fresh(ts: i64, now: i64) -> Result<(), VerifyError> {
    if now.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
        Err(VerifyError::StaleTimestamp)
    } else {
        Ok(())
    }
}

/// Bytes of HMAC kept in a signed action value (Telegram's `callback_data` holds 64 bytes in
/// all, so the tag is short; 12 bytes still leave a forger 2^96 guesses).
const ACTION_TAG_BYTES: usize = 12;

/// Signs a button's value: `{value}.{tag}`, the tag an HMAC of `action` and `value` under
/// `key` (a platform secret). A modified chat client can send any button value, so a value
/// that authorises something (an approval) is signed and checked with [`verify_action`].
pub fn sign_action(key: &[u8], action: &str, value: &str) -> Result<String, VerifyError> {
    let mut m = mac(key)?;
    m.update(action.as_bytes());
    m.update(b"\0");
    m.update(value.as_bytes());
    let tag = m.finalize().into_bytes();
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(tag.get(..ACTION_TAG_BYTES).unwrap_or_default());
    Ok(format!("{value}.{tag}"))
}

/// The value of a signed button value made by [`sign_action`] for `action`, when its tag
/// checks out (constant time).
pub fn verify_action<'a>(
    key: &[u8],
    action: &str,
    signed: &'a str,
) -> Result<&'a str, VerifyError> {
    let (value, tag) = signed.rsplit_once('.').ok_or(VerifyError::BadFormat {
        header: "button value",
        why: "no signature",
    })?;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| VerifyError::BadFormat {
            header: "button value",
            why: "the signature is not base64url",
        })?;
    let mut m = mac(key)?;
    m.update(action.as_bytes());
    m.update(b"\0");
    m.update(value.as_bytes());
    m.verify_truncated_left(&tag)
        .map_err(|_| VerifyError::Mismatch)?;
    if tag.len() != ACTION_TAG_BYTES {
        return Err(VerifyError::Mismatch);
    }
    Ok(value)
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn signed_actions_check_out_and_forgeries_do_not() {
        let signed = sign_action(b"k", "approve", "run-42").unwrap();
        assert!(signed.len() <= 64, "{signed}");
        assert_eq!(verify_action(b"k", "approve", &signed).unwrap(), "run-42");
        assert_eq!(
            verify_action(b"other", "approve", &signed),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_action(b"k", "reject", &signed),
            Err(VerifyError::Mismatch)
        );
        let forged = signed.replace("run-42", "run-43");
        assert_eq!(
            verify_action(b"k", "approve", &forged),
            Err(VerifyError::Mismatch)
        );
        // A truncated tag is refused, not accepted as a prefix.
        let short = &signed[..signed.len() - 4];
        assert!(verify_action(b"k", "approve", short).is_err());
        assert!(verify_action(b"k", "approve", "no-tag").is_err());
        assert!(verify_action(b"k", "approve", "x.%%%").is_err());
    }

    fn fixture(name: &str) -> Option<Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/signatures")
            .join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(serde_json::from_str(&text).unwrap()),
            Err(_) => {
                println!("skipped: {} is absent", path.display());
                None
            }
        }
    }

    fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
        v.get(key).and_then(Value::as_str)
    }

    #[test]
    fn github_vectors() {
        let Some(f) = fixture("github_webhook_vectors.json") else {
            return;
        };
        let valid = f["vectors"].as_array().unwrap();
        assert!(!valid.is_empty());
        for v in valid {
            let r = github_sha256(
                s(v, "secret").unwrap(),
                s(v, "body").unwrap().as_bytes(),
                s(v, "expected_x_hub_signature_256"),
            );
            assert_eq!(r, Ok(()), "{}", v["name"]);
        }
        let negative = f["negative"].as_array().unwrap();
        assert!(!negative.is_empty());
        for v in negative {
            let r = github_sha256(
                s(v, "secret").unwrap(),
                s(v, "body").unwrap().as_bytes(),
                s(v, "x_hub_signature_256"),
            );
            assert!(r.is_err(), "{} was accepted", v["name"]);
        }
    }

    #[test]
    fn github_errors_say_what_failed_without_secrets() {
        assert_eq!(
            github_sha256("k", b"x", None),
            Err(VerifyError::MissingHeader("X-Hub-Signature-256"))
        );
        assert!(matches!(
            github_sha256("k", b"x", Some("sha1=00")),
            Err(VerifyError::BadFormat { .. })
        ));
        let e = github_sha256("hunter2", b"x", Some("sha256=00")).unwrap_err();
        assert_eq!(e, VerifyError::Mismatch);
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn standard_webhooks_vector() {
        let Some(f) = fixture("standard_webhooks_vector.json") else {
            return;
        };
        let secret = s(&f, "secret").unwrap();
        let h = &f["headers"];
        let now: i64 = s(h, "webhook-timestamp").unwrap().parse().unwrap();
        let check = |id: &str, ts: &str, body: &str, sig: &str, now: i64| {
            standard_webhooks(secret, Some(id), Some(ts), body.as_bytes(), Some(sig), now)
        };
        let (id, ts, body, sig) = (
            s(h, "webhook-id").unwrap(),
            s(h, "webhook-timestamp").unwrap(),
            s(&f, "body").unwrap(),
            s(h, "webhook-signature").unwrap(),
        );
        assert_eq!(check(id, ts, body, sig, now), Ok(()));
        // Several signatures (key rotation): one match is enough.
        let several = format!("v1,AAAA v2,zzz {sig}");
        assert_eq!(check(id, ts, body, &several, now), Ok(()));
        // Within the window on both sides; outside it, stale.
        assert_eq!(check(id, ts, body, sig, now + 299), Ok(()));
        assert_eq!(
            check(id, ts, body, sig, now + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(id, ts, body, sig, now - 301),
            Err(VerifyError::StaleTimestamp)
        );
        let negative = f["negative"].as_array().unwrap();
        assert!(!negative.is_empty());
        for n in negative {
            let r = check(
                s(n, "webhook-id").unwrap_or(id),
                s(n, "webhook-timestamp").unwrap_or(ts),
                s(n, "body").unwrap_or(body),
                sig,
                now,
            );
            assert!(r.is_err(), "{n} was accepted");
        }
        assert_eq!(
            standard_webhooks(secret, Some(id), Some(ts), body.as_bytes(), None, now),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
        assert!(matches!(
            check(id, ts, body, "v1", now),
            Err(VerifyError::BadFormat { .. })
        ));
    }

    #[test]
    fn slack_vectors() {
        let Some(f) = fixture("slack_signing_vectors.json") else {
            return;
        };
        let vectors = f["vectors"].as_array().unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for v in vectors {
            let now = v["valid_when_now"].as_i64().unwrap_or_else(unix_now);
            let r = slack_v0(
                s(v, "signing_secret").unwrap(),
                s(v, "timestamp"),
                s(v, "body").unwrap().as_bytes(),
                s(v, "expected_signature"),
                now,
            );
            if s(v, "expect") == Some("valid") {
                assert_eq!(r, Ok(()), "{}", v["name"]);
                valid += 1;
            } else {
                assert!(r.is_err(), "{} was accepted", v["name"]);
                invalid += 1;
            }
        }
        assert!(valid > 0 && invalid > 0);
    }

    #[test]
    fn telegram_secret_token_cases() {
        let Some(f) = fixture("telegram_secret_token_cases.json") else {
            return;
        };
        let mut checked = 0;
        for case in f["cases"].as_array().unwrap() {
            // A bot without a configured secret has no webhook in conveyor: build refuses it.
            let Some(secret) = s(case, "configured_secret") else {
                continue;
            };
            let expect = s(case, "expect").unwrap();
            let result = telegram_secret_token(secret, s(case, "request_header"));
            assert_eq!(result.is_ok(), expect.starts_with("accept"), "{case}");
            checked += 1;
        }
        assert_eq!(checked, 3);
        assert_eq!(
            telegram_secret_token("SecretToken", Some("SecretToken2")),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer("t0k", Some("Bearer t0k")), Ok(()));
        assert_eq!(bearer("t0k", Some("bearer t0k")), Ok(()));
        assert_eq!(
            bearer("t0k", Some("Bearer t0K")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            bearer("t0k", Some("Bearer t0k0")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            bearer("t0k", None),
            Err(VerifyError::MissingHeader("Authorization"))
        );
        assert!(matches!(
            bearer("t0k", Some("Basic t0k")),
            Err(VerifyError::BadFormat { .. })
        ));
    }
}
