//! `conveyor doctor` for `[channels.discord]`: the public key and application id well-formed,
//! the bot token present and shaped like one, and (online, with a token) `GET /users/@me` and
//! `GET /applications/@me`, which tell whether the token works and belongs to the configured
//! application, and where Discord sends interactions.

use std::time::Duration;

use serde_json::Value;

use crate::channels::discord::DiscordConfig;
use crate::health::Check;
use crate::values::Env;

const AREA: &str = "discord";

/// Runs the checks.
pub async fn doctor(config: &DiscordConfig, env: &Env, online: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    // The public key was checked when the config loaded (64 hex characters, a valid Ed25519
    // point), or doctor would have stopped there.
    checks.push(Check::ok(AREA, "public_key is a valid Ed25519 key"));
    if config.application_id.chars().all(|c| c.is_ascii_digit()) {
        checks.push(Check::ok(
            AREA,
            format!("application id {}", config.application_id),
        ));
    } else {
        checks.push(Check::fail(
            AREA,
            format!("application_id `{}` is not a number", config.application_id),
            "copy the Application ID from the Developer Portal → General Information",
        ));
    }
    let Some(var) = config.token_env.as_deref() else {
        checks.push(Check::skip(
            AREA,
            "no token_env: only /discord/interactions (slash commands) works; the gateway bot (mentions, DMs) is off",
        ));
        return checks;
    };
    let Some(token) = env.get(var).filter(|v| !v.trim().is_empty()) else {
        checks.push(Check::fail(
            AREA,
            format!("{var} (bot token) is not set"),
            format!("Developer Portal → your application → Bot → Reset Token, then export {var}=…"),
        ));
        return checks;
    };
    if token.split('.').count() == 3 && !token.starts_with("Bot ") {
        checks.push(Check::ok(AREA, format!("{var} holds a bot token")));
    } else {
        checks.push(Check::fail(
            AREA,
            format!("{var} does not look like a bot token (three parts separated by dots, without a `Bot ` prefix)"),
            "copy the token from Developer Portal → Bot (Reset Token shows it once)",
        ));
        return checks;
    }
    if !online {
        checks.push(Check::skip(AREA, "Discord API not called (--offline)"));
        return checks;
    }
    let base = config.api_base_url.trim_end_matches('/');
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let token = token.clone();
        async move {
            let response = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?
                .get(url)
                .header("Authorization", format!("Bot {token}"))
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            ))
        }
    };
    match get("/users/@me").await {
        Err(e) => {
            checks.push(Check::fail(
                AREA,
                format!("cannot reach the Discord API at {base}: {e}"),
                "check the network; conveyor needs outbound HTTPS to discord.com",
            ));
            return checks;
        }
        Ok((status, v)) if status.is_success() => {
            let name = v.get("username").and_then(Value::as_str).unwrap_or("?");
            checks.push(Check::ok(AREA, format!("the token belongs to bot {name}")));
        }
        Ok((status, _)) => {
            checks.push(Check::fail(
                AREA,
                format!("GET /users/@me answered HTTP {status}"),
                "the token is wrong or was reset: copy a new one from Developer Portal → Bot",
            ));
            return checks;
        }
    }
    if let Ok((status, v)) = get("/applications/@me").await
        && status.is_success()
    {
        let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
        if id != config.application_id {
            checks.push(Check::fail(
                AREA,
                format!(
                    "the token belongs to application {id}, not {}",
                    config.application_id
                ),
                "use the token and the application id (and public key) of the same application",
            ));
        }
        match v.get("interactions_endpoint_url").and_then(Value::as_str) {
            Some(url) if url.ends_with("/discord/interactions") => {
                checks.push(Check::ok(AREA, format!("interactions are sent to {url}")));
            }
            Some(url) if !url.is_empty() => checks.push(Check::warn(
                AREA,
                format!("interactions are sent to {url}"),
                "conveyor listens on POST /discord/interactions; set that as the Interactions Endpoint URL",
            )),
            _ => checks.push(Check::warn(
                AREA,
                "no Interactions Endpoint URL is set: /ask slash commands will not reach conveyor",
                "Developer Portal → General Information → Interactions Endpoint URL = https://YOUR-HOST/discord/interactions",
            )),
        }
        let flags = v.get("flags").and_then(Value::as_u64).unwrap_or(0);
        // GATEWAY_MESSAGE_CONTENT (1 << 18) or its limited variant (1 << 19).
        if flags & ((1 << 18) | (1 << 19)) == 0 {
            checks.push(Check::warn(
                AREA,
                "the Message Content intent is not enabled: the bot sees mentions and DMs but not the text of other messages",
                "Developer Portal → Bot → Privileged Gateway Intents → Message Content Intent",
            ));
        }
    }
    checks
}
