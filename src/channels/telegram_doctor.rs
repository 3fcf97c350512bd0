//! `conveyor doctor` for `[channels.telegram]`: the token (and the webhook's secret token)
//! present and well-formed, and (online) `getMe` and `getWebhookInfo`, which tell whether the
//! token works and whether Telegram's webhook setting matches the configured mode.

use std::time::Duration;

use serde_json::Value;

use crate::channels::telegram::{TelegramConfig, TelegramMode};
use crate::health::Check;
use crate::values::Env;

const AREA: &str = "telegram";

/// BotFather tokens look like `123456789:AA…` (a numeric bot id, a colon, 35 URL-safe chars).
fn token_shape_ok(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.chars().all(|c| c.is_ascii_digit())
        && secret.len() >= 30
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Telegram accepts 1–256 characters `A-Z a-z 0-9 _ -` as a webhook secret token.
fn secret_shape_ok(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Runs the checks.
pub async fn doctor(config: &TelegramConfig, env: &Env, online: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    let lookup = |var: &str| env.get(var).filter(|v| !v.trim().is_empty());
    let token = lookup(&config.token_env);
    match token.as_deref() {
        None => checks.push(Check::fail(
            AREA,
            format!("{} (bot token) is not set", config.token_env),
            format!(
                "talk to @BotFather on Telegram, send /newbot (or /token for an existing bot), then export {}=…",
                config.token_env
            ),
        )),
        Some(t) if token_shape_ok(t) => checks.push(Check::ok(
            AREA,
            format!("{} holds a bot token", config.token_env),
        )),
        Some(_) => checks.push(Check::fail(
            AREA,
            format!(
                "{} does not look like a BotFather token (123456789:AA…)",
                config.token_env
            ),
            "copy the whole token BotFather gave you, including the number and the colon",
        )),
    }
    if config.mode == TelegramMode::Webhook {
        let var = config.secret_token_env.as_deref().unwrap_or_default();
        match lookup(var) {
            None => checks.push(Check::fail(
                AREA,
                format!("{var} (webhook secret token) is not set"),
                format!(
                    "choose a random secret (e.g. `openssl rand -hex 32`), export {var}=…, and pass the same value as secret_token to setWebhook"
                ),
            )),
            Some(s) if secret_shape_ok(&s) => {
                checks.push(Check::ok(AREA, format!("{var} holds a webhook secret token")));
            }
            Some(_) => checks.push(Check::fail(
                AREA,
                format!("{var} is not a valid secret token"),
                "Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -; `openssl rand -hex 32` makes one",
            )),
        }
    }
    let Some(token) = token else { return checks };
    if !online {
        checks.push(Check::skip(AREA, "getMe not called (--offline)"));
        return checks;
    }
    let base = config.api_url.trim_end_matches('/');
    let call = |method: &str| {
        let url = format!("{base}/bot{token}/{method}");
        async move {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?
                .get(url)
                .send()
                .await?
                .json::<Value>()
                .await
        }
    };
    match call("getMe").await {
        Err(e) => {
            // The error may carry the URL, which holds the token: say only what failed.
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "the answer was not Bot API JSON"
            };
            checks.push(Check::fail(
                AREA,
                format!("cannot reach the Bot API at {base}: {why}"),
                "check the network; conveyor needs outbound HTTPS to api.telegram.org",
            ));
            return checks;
        }
        Ok(v) if v.get("ok").and_then(Value::as_bool) == Some(true) => {
            let username = v
                .pointer("/result/username")
                .and_then(Value::as_str)
                .unwrap_or("?");
            checks.push(Check::ok(
                AREA,
                format!("getMe: the token belongs to @{username}"),
            ));
            if let Some(configured) = &config.bot_username
                && configured.trim_start_matches('@') != username
            {
                checks.push(Check::warn(
                    AREA,
                    format!("channels.telegram.bot_username is {configured}, but the token belongs to @{username}"),
                    format!("set bot_username = \"{username}\" or remove it (conveyor asks getMe)"),
                ));
            }
            let groups_privacy = v
                .pointer("/result/can_read_all_group_messages")
                .and_then(Value::as_bool);
            if groups_privacy == Some(true) {
                checks.push(Check::ok(
                    AREA,
                    "privacy mode is off: the bot sees every group message (it still answers only mentions, replies and /ask)",
                ));
            }
        }
        Ok(v) => {
            let description = v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("no description");
            checks.push(Check::fail(
                AREA,
                format!("getMe failed: {description}"),
                "the token is wrong or was revoked: ask @BotFather for the current one (/token)",
            ));
            return checks;
        }
    }
    match call("getWebhookInfo").await {
        Ok(v) if v.get("ok").and_then(Value::as_bool) == Some(true) => {
            let url = v
                .pointer("/result/url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let last_error = v
                .pointer("/result/last_error_message")
                .and_then(Value::as_str);
            match (config.mode, url.is_empty()) {
                (TelegramMode::Polling, true) => checks.push(Check::ok(AREA, "no webhook set: long polling will work")),
                (TelegramMode::Polling, false) => checks.push(Check::fail(
                    AREA,
                    format!("a webhook is set ({url}), so long polling (getUpdates) will be refused"),
                    "remove it (curl \"https://api.telegram.org/bot$TOKEN/deleteWebhook\") or set mode = \"webhook\"",
                )),
                (TelegramMode::Webhook, true) => checks.push(Check::fail(
                    AREA,
                    "mode is webhook, but Telegram has no webhook URL for this bot",
                    "call setWebhook with url=https://YOUR-HOST/telegram/webhook and secret_token=… (see the README)",
                )),
                (TelegramMode::Webhook, false) => {
                    if !url.ends_with("/telegram/webhook") {
                        checks.push(Check::warn(
                            AREA,
                            format!("the webhook points at {url}"),
                            "conveyor listens on POST /telegram/webhook; point setWebhook there",
                        ));
                    } else {
                        checks.push(Check::ok(AREA, format!("webhook set to {url}")));
                    }
                    if let Some(err) = last_error {
                        checks.push(Check::warn(
                            AREA,
                            format!("Telegram's last delivery to the webhook failed: {err}"),
                            "check that the URL is reachable from the internet over HTTPS and that conveyor is running",
                        ));
                    }
                }
            }
        }
        _ => checks.push(Check::warn(
            AREA,
            "getWebhookInfo failed",
            "run `conveyor doctor` again; if it persists, check the Bot API status",
        )),
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        assert!(token_shape_ok(
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
        ));
        assert!(!token_shape_ok("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(!token_shape_ok("12345:short"));
        assert!(secret_shape_ok("abc_DEF-123"));
        assert!(!secret_shape_ok("has space"));
        assert!(!secret_shape_ok(""));
    }
}
