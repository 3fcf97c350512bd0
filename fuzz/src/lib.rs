//! Fuzz targets of conveyor: one `pub fn NAME(data: &[u8])` per parser of outside input, each
//! called by `fuzz_targets/NAME.rs` (libFuzzer, `cargo fuzz run NAME` on nightly) and by the
//! stable driver (`src/bin/drive.rs`). A target returns normally for every input; a panic is
//! a finding, and so is a broken invariant (a reply part over the platform's limit, a Telegram
//! tag cut in two), which the targets turn into a panic on purpose.
//!
//! Inputs with several fields (headers and a body, a template and its payload) separate them
//! with a NUL byte; [`fields`] reads them, so every byte string is a valid input.

#![allow(clippy::panic)] // A broken invariant is reported as a panic: that is what fuzzers catch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use conveyor::agent::prompts::{Prompts, PromptsConfig};
use conveyor::agent::redact::{Redactor, Vault};
use conveyor::channels::chat::{Markup, check, split as split_text};
use conveyor::channels::webhook::{HookConfig, HookReply, HookVerify, Hooks};
use conveyor::channels::{discord, discord_bot, slack, telegram};
use conveyor::config::Config;
use conveyor::knowledge::Embedder;
use conveyor::knowledge::chunker::{ChunkerConfig, chunk_document, sentences};
use conveyor::knowledge::document;
use conveyor::knowledge::sparse::Bm25Embedder;
use conveyor::model::{Channel, Citation, ConversationKey, Outbound};
use conveyor::tools::net::{AllowHosts, check_url, forbidden_reason, redact_url};
use conveyor::values::Env;
use serde_json::{Value, json};

/// A fuzz target: takes any bytes, returns normally or panics.
pub type Target = fn(&[u8]);

/// Every target by name, in the order `drive all` runs them.
pub const TARGETS: &[(&str, Target)] = &[
    ("slack_event", slack_event),
    ("slack_interaction", slack_interaction),
    ("slack_mention", slack_mention),
    ("discord_interaction", discord_interaction),
    ("discord_message", discord_message),
    ("discord_mention", discord_mention),
    ("telegram_update", telegram_update),
    ("telegram_mention", telegram_mention),
    ("webhook", webhook),
    ("verify", verify),
    ("render_split", render_split),
    ("split", split),
    ("document", document),
    ("redact", redact),
    ("config", config),
    ("connector", connector),
    ("cron", cron),
    ("sql_guard", sql_guard),
    ("prompts", prompts),
    ("scrub_urls", scrub_urls),
    ("ssrf", ssrf),
    ("bi_question", bi_question),
    ("semantic_model", semantic_model),
    ("workflow", workflow),
    ("run_args", run_args),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Up to `n` NUL-separated fields of `data` (the last one takes the rest, NULs included).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The bot user of the Slack and Telegram targets, and the Discord bot's id.
const SLACK_BOT: &str = "U0BOT";
const TELEGRAM_BOT: &str = "conv_bot";
const DISCORD_BOT: u64 = 1_000_000_000_000_001;

/// Slack Events API bodies (`/slack/events`), as the Slack channel reads them.
pub fn slack_event(data: &[u8]) {
    let _ = slack::parse(data, Some(SLACK_BOT));
    let _ = slack::parse(data, None);
}

/// Slack interactivity and slash-command bodies (form-encoded).
pub fn slack_interaction(data: &[u8]) {
    let _ = slack::parse_interaction(data);
}

/// Mention handling of Slack messages: `data` is the text of an `app_mention`, of a DM and of
/// a thread follow-up.
pub fn slack_mention(data: &[u8]) {
    let text = text(data);
    for (kind, channel, thread) in [
        ("app_mention", "C1", None),
        ("message", "D1", None),
        ("message", "C1", Some("1.0")),
    ] {
        let body = json!({
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "Ev1",
            "authorizations": [{"user_id": SLACK_BOT}],
            "event": {
                "type": kind, "user": "U1", "text": text, "channel": channel,
                "ts": "2.0", "thread_ts": thread,
            },
        });
        if let Ok(slack::Incoming::Message(m)) = slack::parse(body.to_string().as_bytes(), None)
            && m.0.text.trim() != m.0.text
        {
            panic!("the question keeps white space at its ends: {:?}", m.0.text);
        }
    }
}

/// Discord interaction bodies (`/discord/interactions`).
pub fn discord_interaction(data: &[u8]) {
    let _ = discord::parse(data);
}

/// Discord gateway messages (a `MESSAGE_CREATE` frame or its `d`), as the gateway bot reads
/// them after serenity deserialised them.
pub fn discord_message(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let message = match value.get("t").and_then(Value::as_str) {
        Some("MESSAGE_CREATE") => value.get("d").cloned().unwrap_or(Value::Null),
        _ => value,
    };
    let Ok(message) = serde_json::from_value::<serenity::model::channel::Message>(message) else {
        return;
    };
    let bot = serenity::model::id::UserId::new(DISCORD_BOT);
    let _ = discord_bot::read_message(&message, Some(bot));
    let _ = discord_bot::read_message(&message, None);
}

/// Mention handling of Discord messages: `data` is the content of a guild message that
/// mentions the bot, and of a DM.
pub fn discord_mention(data: &[u8]) {
    let content = text(data);
    let bot = serenity::model::id::UserId::new(DISCORD_BOT);
    for guild in [Some("1000000000000000009"), None] {
        let value = json!({
            "id": "1200000000000000001",
            "channel_id": "1100000000000000001",
            "guild_id": guild,
            "author": {"id": "1000000000000000002", "username": "ana", "global_name": "Ana"},
            "content": content,
            "timestamp": "2026-11-26T10:00:00.000000+00:00",
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [{"id": DISCORD_BOT.to_string(), "username": "conveyor", "bot": true}],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": false,
            "type": 0
        });
        let Ok(message) = serde_json::from_value::<serenity::model::channel::Message>(value) else {
            panic!("the message template no longer reads");
        };
        if let discord_bot::Incoming::Message(m) = discord_bot::read_message(&message, Some(bot))
            && m.0.text.is_empty()
        {
            panic!("an empty question is answered");
        }
    }
}

/// Telegram updates (webhook bodies and `getUpdates` results).
pub fn telegram_update(data: &[u8]) {
    let _ = telegram::parse(data, TELEGRAM_BOT);
    let _ = telegram::parse(data, "");
}

/// Mention handling of Telegram group messages: `data` is `text NUL entities`, where each
/// pair of bytes of `entities` is a mention entity's offset and length (UTF-16 units, as
/// Telegram counts them, so they may fall anywhere).
pub fn telegram_mention(data: &[u8]) {
    let parts = fields(data, 2);
    let text = text(parts[0]);
    let entities: Vec<Value> = parts
        .get(1)
        .map(|e| {
            e.chunks(2)
                .take(8)
                .map(|p| {
                    let offset = usize::from(p[0]);
                    let length = usize::from(p.get(1).copied().unwrap_or(9));
                    json!({"type": "mention", "offset": offset, "length": length})
                })
                .collect()
        })
        .unwrap_or_default();
    for (chat, reply) in [
        (
            json!({"id": -100, "type": "supergroup", "title": "g"}),
            false,
        ),
        (
            json!({"id": -100, "type": "supergroup", "title": "g"}),
            true,
        ),
        (
            json!({"id": 7, "type": "private", "first_name": "A"}),
            false,
        ),
    ] {
        let mut message = json!({
            "message_id": 5,
            "date": 1_700_000_000,
            "chat": chat,
            "from": {"id": 7, "is_bot": false, "first_name": "A"},
            "text": text,
            "entities": entities,
        });
        if reply {
            message["reply_to_message"] = json!({
                "message_id": 4,
                "date": 1_700_000_000,
                "chat": {"id": -100, "type": "supergroup", "title": "g"},
                "from": {"id": 9, "is_bot": true, "first_name": "bot", "username": TELEGRAM_BOT},
                "text": "earlier answer",
            });
        }
        let body = json!({"update_id": 1, "message": message}).to_string();
        if let Ok(telegram::Incoming::Message(m)) = telegram::parse(body.as_bytes(), TELEGRAM_BOT)
            && (m.0.text.is_empty() || m.0.text.trim() != m.0.text)
        {
            panic!("a question with white space at its ends: {:?}", m.0.text);
        }
    }
}

/// The headers of a webhook request, `name: value` lines.
struct Headers(HashMap<String, Vec<u8>>);

impl conveyor::channels::webhook::Headers for Headers {
    fn header(&self, name: &str) -> Option<Result<&str, ()>> {
        let value = self.0.get(name)?;
        Some(
            std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                .ok_or(()),
        )
    }
}

/// The Standard Webhooks spec's test secret (`../shared/fixtures/signatures`), so that signed
/// seeds get past the check.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Its test vector's timestamp.
const WEBHOOK_NOW: i64 = 1_614_265_330;

fn hooks() -> &'static Option<Hooks> {
    static HOOKS: OnceLock<Option<Hooks>> = OnceLock::new();
    HOOKS.get_or_init(|| {
        let hook = |verify, secret_env: &str, text: &str| HookConfig {
            verify,
            secret_env: secret_env.into(),
            text: text.into(),
            conversation: "{{ repository.full_name | default(hook) }}:{{ issue.number }}".into(),
            user: "{{ sender.login | default('webhook') }}".into(),
            reply: HookReply::Sync,
            max_body_bytes: None,
            forward_to: None,
            workflow: None,
        };
        let configs: BTreeMap<String, HookConfig> = [
            (
                "github".to_string(),
                hook(
                    HookVerify::HmacSha256,
                    "HMAC_SECRET",
                    "{% if event == 'issues' %}{{ issue.title }}\n{{ issue.body }}{% else %}{{ comment.body | trim }}{% endif %}",
                ),
            ),
            (
                "std".to_string(),
                hook(
                    HookVerify::StandardWebhooks,
                    "STD_SECRET",
                    "{{ test }} {{ payload.action | default('') }}{{ payload.hook_id }}",
                ),
            ),
            (
                "bearer".to_string(),
                hook(
                    HookVerify::Bearer,
                    "BEARER_TOKEN",
                    "{{ text }}{% for k, v in payload | items %} {{ k }}={{ v }}{% endfor %}",
                ),
            ),
        ]
        .into_iter()
        .collect();
        let env = Env::from_pairs([
            ("HMAC_SECRET", "It's a Secret to Everybody"),
            ("STD_SECRET", WHSEC),
            ("BEARER_TOKEN", "s3cret-token"),
        ]);
        Hooks::build(&configs, &env).ok()
    })
}

/// A generic webhook request, `name: value` header lines, a blank line, the body: every hook
/// verifies it, picks its delivery key and renders the body's JSON.
pub fn webhook(data: &[u8]) {
    let Some(hooks) = hooks() else {
        panic!("the fuzz hooks do not build");
    };
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&data[..0], data),
    };
    let headers = Headers(
        head.split(|b| *b == b'\n')
            .filter_map(|line| {
                let colon = line.iter().position(|b| *b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
                let value = line[colon + 1..].trim_ascii().to_vec();
                Some((name.trim().to_string(), value))
            })
            .collect(),
    );
    let payload = serde_json::from_slice::<Value>(body).ok();
    let event = headers
        .0
        .get("x-github-event")
        .map(|e| text(e).into_owned());
    for name in ["github", "std", "bearer"] {
        let Some(hook) = hooks.get(name) else {
            panic!("the fuzz hook {name} is missing");
        };
        let _ = hook.verify(&headers, body, WEBHOOK_NOW);
        let Ok(key) = hook.delivery_key(&headers, body) else {
            continue;
        };
        if let Some(payload) = &payload {
            let _ = hook.render(payload, event.as_deref(), &key);
        }
    }
    let _ = conveyor::channels::webhook::ForwardTarget::parse(&text(body));
}

/// The Slack signing secret and timestamp of `../shared/fixtures/slack/SIGNED_requests_derived.json`.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_NOW: i64 = 1_531_420_618;

fn slack_channel() -> &'static Option<slack::Slack> {
    static SLACK: OnceLock<Option<slack::Slack>> = OnceLock::new();
    SLACK.get_or_init(|| {
        let config = slack::SlackConfig {
            signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            api_base_url: "http://127.0.0.1:9".into(),
            bot_user_id: Some(SLACK_BOT.into()),
            feedback_buttons: true,
            sends_per_second_per_channel: 1,
        };
        let env = Env::from_pairs([
            ("SLACK_SIGNING_SECRET", SLACK_SECRET),
            ("SLACK_BOT_TOKEN", "xoxb-fuzz"),
        ]);
        let slack = slack::Slack::build(&config, &env).ok()?;
        slack.set_clock(Some(SLACK_NOW));
        Some(slack)
    })
}

/// The public key of `../shared/fixtures/signatures/discord_interaction_signed_requests.json`
/// (RFC 8032's first test key).
const DISCORD_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn discord_channel() -> &'static Option<discord::Discord> {
    static DISCORD: OnceLock<Option<discord::Discord>> = OnceLock::new();
    DISCORD.get_or_init(|| {
        let config = discord::DiscordConfig {
            public_key: DISCORD_PUBLIC_KEY.into(),
            application_id: "1".into(),
            token_env: None,
            api_base_url: "http://127.0.0.1:9".into(),
        };
        discord::Discord::build(&config, &Env::from_pairs(Vec::<(String, String)>::new())).ok()
    })
}

/// Request signature checks (`channels::verify`, and the Slack and Discord channels' own):
/// the first byte picks the scheme, NUL-separated fields are its secret, headers and body.
pub fn verify(data: &[u8]) {
    use conveyor::channels::verify as v;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest, 5);
    let s = |i: usize| f.get(i).map(|b| text(b).into_owned());
    let b = |i: usize| f.get(i).copied().unwrap_or_default();
    match which % 6 {
        0 => {
            let _ = v::github_sha256(&s(0).unwrap_or_default(), b(2), s(1).as_deref());
        }
        1 => {
            let _ = v::standard_webhooks(
                &s(0).unwrap_or_default(),
                s(1).as_deref(),
                s(2).as_deref(),
                b(4),
                s(3).as_deref(),
                WEBHOOK_NOW,
            );
        }
        2 => {
            let _ = v::bearer(&s(0).unwrap_or_default(), s(1).as_deref());
        }
        3 => {
            let _ = v::telegram_secret_token(&s(0).unwrap_or_default(), s(1).as_deref());
        }
        4 => {
            let _ = v::slack_v0(
                &s(0).unwrap_or_default(),
                s(1).as_deref(),
                b(3),
                s(2).as_deref(),
                SLACK_NOW,
            );
        }
        _ => {
            // Headers first, then the body: timestamp, signature, body.
            let f = fields(rest, 3);
            let s = |i: usize| f.get(i).map(|b| text(b).into_owned());
            let body = f.get(2).copied().unwrap_or_default();
            if let Some(slack) = slack_channel() {
                let _ = slack.verify(s(0).as_deref(), s(1).as_deref(), body);
            }
            if let Some(discord) = discord_channel() {
                let _ = discord.verify(s(1).as_deref(), s(0).as_deref(), body);
            }
        }
    }
}

fn outbound(text: &str, citations: Vec<Citation>) -> Outbound {
    Outbound {
        conversation: ConversationKey::new(Channel::API, "fuzz"),
        reply_to: "m1".into(),
        message_id: "m2".into(),
        text: text.to_string(),
        citations,
        planner: "offline".into(),
        data: None,
        choices: Vec::new(),
        actions: Vec::new(),
    }
}

/// A small limit (16 to 215 characters), so that short inputs are cut too.
fn small_limit(data: &[u8]) -> usize {
    16 + usize::from(data.first().copied().unwrap_or(0)) % 200
}

/// A limit between the smallest real one (Discord's 2000) and Telegram's 4096.
fn medium_limit(data: &[u8]) -> usize {
    2000 + usize::from(data.last().copied().unwrap_or(0)) * 8
}

/// A planner's Markdown answer rendered for each platform (Slack mrkdwn, Telegram HTML,
/// Discord Markdown) and split at the platform's limit and at smaller ones. Every part must
/// fit, keep its markup whole, and together the parts must keep all the text.
pub fn render_split(data: &[u8]) {
    let parts = fields(data, 3);
    let answer = text(parts[0]);
    let citations = match (parts.get(1), parts.get(2)) {
        (Some(title), Some(source)) => vec![Citation {
            n: 1,
            title: text(title).into_owned(),
            source: text(source).into_owned(),
            doc_id: "d".into(),
            chunk_id: "c".into(),
            snippet: String::new(),
        }],
        _ => Vec::new(),
    };
    let out = outbound(&answer, citations);
    let rendered = [
        (
            slack::render(&out),
            Markup::SlackMrkdwn,
            slack::MAX_MESSAGE_CHARS,
        ),
        (
            telegram::render(&out),
            Markup::TelegramHtml,
            telegram::MAX_MESSAGE_CHARS,
        ),
        (
            discord::render(&out),
            Markup::DiscordMarkdown,
            discord::MAX_MESSAGE_CHARS,
        ),
    ];
    let _ = slack::to_mrkdwn(&answer);
    let _ = telegram::to_html(&answer);
    for (text, markup, real) in rendered {
        for max in [real, medium_limit(data)]
            .into_iter()
            .take(1 + data.len() % 2)
        {
            let pieces = split_text(&text, max, markup);
            if let Some(why) = check::parts_problem(&text, &pieces, max, markup) {
                panic!("{markup:?} split at {max}: {why}");
            }
        }
        // Far below any real limit a link or tag cannot always be kept whole (a link may
        // have up to `MAX_LINK_CHARS`); every part must still fit.
        let max = small_limit(data);
        for part in split_text(&text, max, markup) {
            let n = part.chars().count();
            if n > max {
                panic!("{markup:?} split at {max}: a part of {n} characters: {part:?}");
            }
        }
    }
}

/// The splitter on raw text in every markup. Discord's text is the planner's unchanged, so
/// there every rule must hold for any text; Slack and Telegram text is always what their
/// renderers wrote (`render_split` checks that), so raw text there must only not panic.
pub fn split(data: &[u8]) {
    let text = text(data);
    for markup in [
        Markup::Plain,
        Markup::SlackMrkdwn,
        Markup::TelegramHtml,
        Markup::DiscordMarkdown,
    ] {
        for max in [medium_limit(data), small_limit(data)] {
            let parts = split_text(&text, max, markup);
            if matches!(markup, Markup::Plain | Markup::DiscordMarkdown)
                && let Some(why) = check::parts_problem(&text, &parts, max, markup)
            {
                panic!("{markup:?} split at {max}: {why}");
            }
        }
    }
}

fn embedder() -> &'static Option<Bm25Embedder> {
    static EMBEDDER: OnceLock<Option<Bm25Embedder>> = OnceLock::new();
    EMBEDDER.get_or_init(|| Bm25Embedder::new(&Default::default()).ok())
}

/// Knowledge documents: the first byte picks the file type (Markdown, HTML, text, JSON,
/// JSONL), the rest is the file; each document is chunked and embedded as the indexer does.
pub fn document(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let file = match which % 8 {
        0 => "doc.md",
        1 => "page.html",
        2 => "notes.txt",
        3 => "records.json",
        4 => "records.jsonl",
        5 => "https://example.test/page.htm?x=1",
        6 => "README.markdown",
        _ => "dump.ndjson",
    };
    let content = text(rest);
    let Ok(docs) = document::parse(file, file, &content, 0) else {
        return;
    };
    let small = ChunkerConfig {
        max_chars: 8 + usize::from(which / 8) * 4,
        overlap_chars: usize::from(which / 16),
    };
    for doc in docs.iter().take(50) {
        for (cfg, embed) in [(ChunkerConfig::default(), true), (small, false)] {
            for (n, chunk) in chunk_document(doc, &cfg).into_iter().enumerate() {
                let most = cfg.max_chars.max(1) + cfg.overlap_chars;
                if chunk.text.chars().count() > most {
                    panic!("a chunk over {most} characters: {:?}", chunk.text);
                }
                // The embedder is Qdrant's tokenizer and stemmer: a few chunks are enough.
                if embed
                    && n < 3
                    && let Some(embedder) = embedder()
                {
                    let _ = embedder.embed_document(&chunk.text);
                }
            }
        }
        for section in &doc.sections {
            let _ = sentences(&section.text);
        }
    }
    if let Some(embedder) = embedder() {
        let cut = content
            .char_indices()
            .nth(1024)
            .map_or(content.len(), |(i, _)| i);
        let _ = embedder.embed_query(&content[..cut]);
    }
}

/// The redactor over text and over the JSON of tool arguments; restoring a redacted text
/// gives the text back.
pub fn redact(data: &[u8]) {
    let redactor = Redactor::default();
    let text = text(data);
    let mut vault = Vault::default();
    let masked = redactor.redact(&text, &mut vault);
    let restored = redactor.restore(&masked, &vault);
    // Text that already holds placeholder-shaped spans (`[EMAIL_1]`) is the one case where
    // restoring may not give the text back.
    if restored != text && !has_placeholder_shape(&text) {
        panic!("redact then restore changed the text:\n{text:?}\n{masked:?}\n{restored:?}");
    }
    let _ = redactor.find(&text);
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let masked = redactor.redact_json(&value, &mut vault);
        let _ = redactor.restore_json(&masked, &vault);
    }
}

/// Whether `text` holds `[` + capitals + `_` + digits + `]`.
fn has_placeholder_shape(text: &str) -> bool {
    text.match_indices('[').any(|(at, _)| {
        let rest = &text[at + 1..];
        let label = rest.bytes().take_while(u8::is_ascii_uppercase).count();
        let rest = &rest[label..];
        let Some(rest) = rest.strip_prefix('_') else {
            return false;
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        label > 0 && digits > 0 && rest[digits..].starts_with(']')
    })
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("conveyor-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// The config loader: `conveyor.toml NUL overrides`, the overrides being
/// `CONVEYOR__…=value` lines as the environment gives them.
pub fn config(data: &[u8]) {
    let parts = fields(data, 2);
    let toml_text = text(parts[0]);
    let env: Vec<(String, String)> = parts
        .get(1)
        .map(|e| {
            text(e)
                .lines()
                .take(16)
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let _ = Config::from_toml(&toml_text, "fuzz.toml", scratch(), &env);
}

/// A connector definition file (`connectors/NAME.toml`).
pub fn connector(data: &[u8]) {
    let text = text(data);
    if let Ok(def) =
        conveyor::connectors::parse_definition(&text, Path::new("fuzz.toml"), scratch())
    {
        for at in instants() {
            let _ = def.next_run(at);
            let _ = def.previous_run(at);
        }
    }
}

fn instants() -> Vec<chrono::DateTime<chrono::Utc>> {
    [
        0_i64,
        1_709_164_800, // 2024-02-29
        1_774_224_000, // 2026-03-23, a DST change in Europe
        4_102_444_799, // 2099-12-31T23:59:59
        253_402_300_799,
    ]
    .into_iter()
    .filter_map(|s| chrono::DateTime::from_timestamp(s, 0))
    .collect()
}

/// Cron schedules: `data` is a connector's `schedule`; its next and previous runs are found
/// around a few instants.
pub fn cron(data: &[u8]) {
    let schedule = Value::String(text(data).into_owned()).to_string();
    let toml_text = format!(
        "name = \"orders\"\nkind = \"files\"\npath = \"orders.csv\"\nformat = \"csv\"\nprimary_key = \"id\"\nschedule = {schedule}\n"
    );
    if let Ok(def) =
        conveyor::connectors::parse_definition(&toml_text, Path::new("fuzz.toml"), scratch())
    {
        for at in instants() {
            let _ = def.next_run(at);
            let _ = def.previous_run(at);
        }
    }
}

/// The read-only SQL check of `conveyor sql`.
pub fn sql_guard(data: &[u8]) {
    let text = text(data);
    let _ = conveyor::lakehouse::check_read_only(&text);
    let _ = conveyor::lakehouse::is_explain(&text);
}

/// Prompt template loading: `data` is the system template (compiled and checked for unknown
/// variables, as at start-up).
pub fn prompts(data: &[u8]) {
    let dir = scratch().join("prompts");
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("system.md.j2"), data).is_err() {
        return;
    }
    let config = PromptsConfig {
        vars: [("company".to_string(), "Lumen".to_string())]
            .into_iter()
            .collect(),
        ..PromptsConfig::default()
    };
    let _ = Prompts::load(&config, scratch(), true);
}

/// URL scrubbing of error text; scrubbing twice changes nothing more.
pub fn scrub_urls(data: &[u8]) {
    let text = text(data);
    let once = conveyor::error::scrub_urls(&text);
    let twice = conveyor::error::scrub_urls(&once);
    if once != twice {
        panic!("scrub_urls is not idempotent: {once:?} → {twice:?}");
    }
}

/// The SSRF guard: `data` as a URL, as an address, and as raw address bytes.
pub fn ssrf(data: &[u8]) {
    let text = text(data);
    let allow = AllowHosts::new(&["allowed.test", "localhost"]);
    if let Ok(url) = url::Url::parse(text.trim()) {
        let _ = check_url(&url, &allow);
        let _ = redact_url(&url);
    }
    let _ = allow.contains(text.trim());
    if let Ok(ip) = text.trim().parse::<std::net::IpAddr>() {
        let _ = forbidden_reason(ip);
    }
    if let Ok(octets) = <[u8; 16]>::try_from(data.get(..16).unwrap_or_default()) {
        let v6 = std::net::Ipv6Addr::from(octets);
        let _ = forbidden_reason(v6.into());
    }
    if let Ok(octets) = <[u8; 4]>::try_from(data.get(..4).unwrap_or_default()) {
        let _ = forbidden_reason(std::net::Ipv4Addr::from(octets).into());
    }
}

/// The demo's semantic model (checked without tables) and some values read from its data.
fn demo_semantic() -> &'static (
    conveyor::semantic::model::Model,
    conveyor::semantic::ValueIndex,
) {
    static MODEL: std::sync::OnceLock<(
        conveyor::semantic::model::Model,
        conveyor::semantic::ValueIndex,
    )> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let text = include_str!("../../src/init/demo/connectors/shop.semantic.toml");
        let mut problems = Vec::new();
        let model = conveyor::semantic::model::from_sources(
            &[("shop.semantic.toml".into(), text.into())],
            &mut problems,
        );
        let mut values = conveyor::semantic::ValueIndex::default();
        values.values.insert(
            "customers.country".into(),
            ["DE", "GB", "BR", "US", "JP"].map(String::from).to_vec(),
        );
        values.values.insert(
            "customers.plan".into(),
            ["pro", "enterprise", "starter"].map(String::from).to_vec(),
        );
        values.values.insert(
            "customers.company".into(),
            ["Atlas Robotics", "Bluefin Studio", "São Paulo Ltda"]
                .map(String::from)
                .to_vec(),
        );
        (model, values)
    })
}

/// A question in chat: time expressions, then the offline parser over the demo model, then
/// the SQL compiler when it makes a query.
pub fn bi_question(data: &[u8]) {
    let text = text(data);
    let today = chrono::NaiveDate::from_ymd_opt(2025, 12, 4).unwrap_or_default();
    let found = conveyor::semantic::when::find(&text, today);
    for span in &found.spans {
        assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "a time span is not on char boundaries"
        );
    }
    let (model, values) = demo_semantic();
    if let conveyor::semantic::parse::Parsed::Query(q) =
        conveyor::semantic::parse::parse(model, values, &text, today)
    {
        let _ = conveyor::semantic::compile::compile(model, &q);
    }
}

/// A semantic model file: `data` is its TOML.
pub fn semantic_model(data: &[u8]) {
    let text = text(data).into_owned();
    let mut problems = Vec::new();
    let model = conveyor::semantic::model::from_sources(
        &[("fuzz.semantic.toml".into(), text)],
        &mut problems,
    );
    // Every metric compiles or says why.
    for m in model
        .measures
        .iter()
        .map(|m| m.name.clone())
        .chain(model.metrics.iter().map(|m| m.name.clone()))
    {
        let q = conveyor::semantic::compile::MetricQuery {
            metrics: vec![m],
            ..Default::default()
        };
        let _ = conveyor::semantic::compile::compile(&model, &q);
    }
}

/// A workflow file (`tools/*.toml` with `kind = "workflow"`): `data` is its TOML. Either it is
/// read, or every problem is a sentence naming where it is.
pub fn workflow(data: &[u8]) {
    let Ok(table) = toml::from_str::<toml::Table>(&text(data)) else {
        return;
    };
    match conveyor::workflows::def::from_toml(table, "fuzz.toml") {
        Ok(w) => assert!(!w.steps.is_empty(), "a workflow without steps was accepted"),
        Err(problems) => assert!(
            !problems.is_empty() && problems.iter().all(|p| !p.trim().is_empty()),
            "refused without a reason: {problems:?}"
        ),
    }
}

/// The arguments of `/run NAME …` in chat (`key=value` pairs, JSON or text): always an object,
/// and every pair's key comes from the text as typed.
pub fn run_args(data: &[u8]) {
    let t = text(data);
    let v = conveyor::workflows::command::parse_args(&t);
    let Value::Object(map) = &v else {
        panic!("the input of /run is not an object: {v}");
    };
    // Pairs: each key is a slice of the text (a JSON object's keys may be escaped).
    if t.trim_start().starts_with('{') {
        return;
    }
    for key in map.keys() {
        assert!(
            key == "text" || t.contains(key.as_str()),
            "key {key:?} is not in the text {t:?}"
        );
    }
}
