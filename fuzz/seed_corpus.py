#!/usr/bin/env python3
"""Writes fuzz/corpus/TARGET/ seeds from the shared fixtures (../shared/fixtures, see its
README.md and each folder's SOURCES.md) and from this repository's own files.

    python3 fuzz/seed_corpus.py [--fixtures ../shared/fixtures]

Seeds are named by the SHA-1 of their bytes (as cargo-fuzz names corpus entries), so running
it again adds nothing twice. Inputs with several fields separate them with a NUL byte, as
fuzz/src/lib.rs reads them.
"""

import argparse
import glob
import hashlib
import json
import os
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(REPO, "..", "shared", "fixtures"))
    fx = os.path.abspath(ap.parse_args().fixtures)

    # Slack: Events API bodies, the signed ones byte for byte.
    slack_texts = []
    for p in sorted(glob.glob(os.path.join(fx, "slack", "*.json"))):
        name = os.path.basename(p)
        doc = json.loads(read(p))
        if name == "SIGNED_requests_derived.json":
            for r in doc["requests"]:
                put("slack_event", r["body"])
                h = r["headers"]
                put("verify", b"\x05" + "\0".join([h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"], r["body"]]).encode())
            continue
        if name == "retry_and_ssl_check_cases.json":
            put("slack_interaction", "ssl_check=1&token=x")
            continue
        put("slack_event", read(p))
        text = (doc.get("event") or {}).get("text")
        if text:
            slack_texts.append(text)
    for t in slack_texts + ["<@U0BOT> how do refunds work?", "hi <@U0BOT|conveyor> and <@U1>", "<@U0BOT>", "<@U0BOT", "İ<@U0BOT>éΩ", "<@U2> <@U0BOT> two <!here> <https://a.test|x>"]:
        put("slack_mention", t)

    # Slack interactions: a slash command and a feedback button (docs field names).
    command = {
        "token": "x", "team_id": "T1", "team_domain": "t", "channel_id": "C1", "channel_name": "general",
        "user_id": "U1", "user_name": "ana", "command": "/conveyor", "text": "how do refunds work?",
        "api_app_id": "A1", "response_url": "https://hooks.slack.com/commands/T1/1/abc", "trigger_id": "13345224609.738474920.8088930838d88f008e0",
    }
    put("slack_interaction", urllib.parse.urlencode(command))
    put("slack_interaction", urllib.parse.urlencode(dict(command, channel_id="D1", channel_name="directmessage", text="")))
    for action in ["conveyor_feedback_up", "conveyor_feedback_down", "other"]:
        payload = {
            "type": "block_actions", "user": {"id": "U1", "username": "ana", "team_id": "T1"},
            "team": {"id": "T1"}, "response_url": "https://hooks.slack.com/actions/T1/1/abc",
            "actions": [{"action_id": action, "block_id": "b", "value": "m-123", "type": "button"}],
        }
        put("slack_interaction", urllib.parse.urlencode({"payload": json.dumps(payload)}))
    put("slack_interaction", urllib.parse.urlencode({"payload": json.dumps({"type": "view_submission"})}))
    for v in json.loads(read(os.path.join(fx, "signatures", "slack_signing_vectors.json")))["vectors"]:
        put("slack_interaction", v["body"] or "")
        put("verify", b"\x04" + "\0".join([v["signing_secret"] or "", v["timestamp"] or "", v["expected_signature"] or "", v["body"] or ""]).encode())

    # Discord: interactions, gateway frames, signed requests.
    for p in sorted(glob.glob(os.path.join(fx, "discord", "interaction_*.json"))):
        put("discord_interaction", read(p))
    for p in sorted(glob.glob(os.path.join(fx, "discord", "gateway", "*.json"))):
        put("discord_message", read(p))
    signed = json.loads(read(os.path.join(fx, "signatures", "discord_interaction_signed_requests.json")))
    for r in signed["valid"] + signed["invalid"]:
        if not isinstance(r, dict) or "body" not in r:
            continue
        put("discord_interaction", r["body"])
        h = r.get("headers", {})
        put("verify", b"\x05" + "\0".join([h.get("X-Signature-Timestamp", ""), h.get("X-Signature-Ed25519", ""), r["body"]]).encode())
    bot = "1000000000000000001"
    message = {
        "id": "1200000000000000001", "channel_id": "1100000000000000001", "guild_id": "1000000000000000009",
        "author": {"id": "1000000000000000002", "username": "ana", "global_name": "Ana"},
        "content": f"<@{bot}> How do I request a refund?", "timestamp": "2026-11-26T10:00:00.000000+00:00",
        "edited_timestamp": None, "tts": False, "mention_everyone": False,
        "mentions": [{"id": bot, "username": "conveyor", "bot": True}], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": False, "type": 0,
    }
    put("discord_message", json.dumps({"op": 0, "s": 3, "t": "MESSAGE_CREATE", "d": message}))
    put("discord_message", json.dumps(dict(message, guild_id=None, mentions=[], content="hi in a DM")))
    put("discord_message", json.dumps(dict(message, type=19, message_reference={"message_id": "1"})))
    for t in [f"<@{bot}> How do I request a refund?", f"hey <@!{bot}>   there", f"<@{bot}>", f"İ<@{bot}>éΩ", "no mention", f"<@{bot}><@{bot}>x<@!{bot}"]:
        put("discord_mention", t)

    # Telegram: every update, and group texts with mention entities.
    for p in sorted(glob.glob(os.path.join(fx, "telegram", "**", "*.json"), recursive=True)):
        put("telegram_update", read(p))
    for text, entities in [
        ("İ@conv_botéΩ what is the refund policy?", b"\x01\x09"),
        ("@conv_bot hello", b"\x00\x09"),
        ("hello @Conv_Bot", b"\x06\x09"),
        ("/ask@conv_bot how?", b""),
        ("/ask what now", b""),
        ("👨‍👩‍👧 @conv_bot 👍🏽", b"\x09\x09"),
        ("@conv_botx not me", b"\x00\x0a"),
    ]:
        put("telegram_mention", text.encode() + b"\0" + entities)

    # Webhooks: GitHub deliveries as signed, a Standard Webhooks vector, a bearer request.
    gh = json.loads(read(os.path.join(fx, "github", "SIGNED_requests_derived.json")))
    for r in gh["requests"]:
        body = read(os.path.join(fx, "github", r["body_file"]))
        head = "".join(f"{k}: {v}\n" for k, v in r["headers"].items()).encode()
        put("webhook", head + b"\n" + body)
    sw = json.loads(read(os.path.join(fx, "signatures", "standard_webhooks_vector.json")))
    head = "".join(f"{k}: {v}\n" for k, v in sw["headers"].items()).encode()
    put("webhook", head + b"\n" + sw["body"].encode())
    put("verify", b"\x01" + "\0".join([sw["secret"], sw["headers"]["webhook-id"], sw["headers"]["webhook-timestamp"], sw["headers"]["webhook-signature"], sw["body"]]).encode())
    put("webhook", b"authorization: Bearer s3cret-token\nidempotency-key: k-1\n\n" + json.dumps({"text": "deploy failed on main", "n": 3}).encode())
    for v in json.loads(read(os.path.join(fx, "signatures", "github_webhook_vectors.json")))["vectors"]:
        put("verify", b"\x00" + "\0".join([v["secret"], v["expected_x_hub_signature_256"], v["body"]]).encode())
    for c in json.loads(read(os.path.join(fx, "signatures", "telegram_secret_token_cases.json")))["cases"]:
        put("verify", b"\x03" + ((c.get("configured_secret") or "") + ("\0" + c["request_header"] if c.get("request_header") is not None else "")).encode())
    put("verify", b"\x02s3cret\0Bearer s3cret")
    put("verify", b"\x02s3cret\0bearer  s3cret ")

    # Rendering and splitting: Markdown answers.
    answers = [
        "Refunds take **5 days** [1]. See `refund-policy.md` and [the policy](https://lumen.test/refunds).\n\n## Steps\n\n1. Open **Billing**\n2. Click `Refund`",
        "```rust\nfn main() {\n    println!(\"<b>&amp;</b>\");\n}\n```\nDone [2].",
        "İ@conv_botéΩ " + "word & more < > \" " * 300,
        ("A long paragraph with a [link](https://example.com/a/very/long/path?x=1&y=2) in it. " * 40 + "\n\n") * 3,
        "# T\n" + "\n".join(f"- item {i} **bold {i}** `code {i}`" for i in range(400)),
    ]
    for p in [os.path.join(REPO, "README.md"), os.path.join(REPO, "prompts", "README.md")] + sorted(glob.glob(os.path.join(REPO, "src", "init", "demo", "*.md"))):
        answers.append(read(p, "r"))
    # At most 6,000 bytes: longer than Discord's and Slack's limits, and short enough for
    # many inputs per second.
    for a in answers:
        a = a.encode()[:6000]
        put("render_split", a + b"\0Refund policy\0https://lumen.test/refunds?a=1&b=<2>")
        put("render_split", a)
        put("split", a)
    put("split", "<b>" + "word &amp; more " * 300 + "</b> and <a href=\"https://x.test/a?b=1&amp;c=2\">link</a>")
    put("split", "<b>" + "word &amp; more " * 300 + "</b>")
    put("split", "<https://example.com/a/very/long/path|the title> " * 80)
    put("split", "```\n" + "let x = 1;\n" * 400 + "```")
    put("split", "```rust\n" + "let x = 1;\n" * 300 + "```\n" + "```" + "x" * 3000 + "\ncode\n```")

    # Knowledge documents (first byte: 0 md, 1 html, 2 txt, 3 json, 4 jsonl).
    for p in sorted(glob.glob(os.path.join(REPO, "src", "init", "demo", "*.md"))) + [os.path.join(REPO, "README.md")]:
        put("document", b"\x00" + read(p)[:6000])
        put("document", b"\x02" + read(p)[:6000])
    html = "<html><head><title>Refunds &amp; returns</title><style>p{}</style></head><body><h1>Refunds</h1><p>Within <b>30 days</b>&nbsp;&#233;&#x1F600;</p><pre>  code\n  more</pre><h2>Steps</h2><ul><li>One</li><li>Two</li></ul><script>var x='<h1>';</script><!-- c --><table><tr><td>a</td><td>b</td></tr></table></body></html>"
    put("document", b"\x01" + html.encode())
    corpus = read(os.path.join(fx, "retrieval", "cranfield", "beir_format", "corpus.jsonl")).splitlines()
    put("document", b"\x04" + b"\n".join(corpus[:6]))
    put("document", b"\x03" + b"[" + b",".join(corpus[:4]) + b"]")
    put("document", b"\x03" + json.dumps({"id": "1", "title": "T", "text": "body é"}).encode())

    # The redactor.
    for t in [
        "mail ana@example.com or call +55 11 91234-5678, CPF 123.456.789-09, card 4111 1111 1111 1111",
        "IBAN GB82 WEST 1234 5698 7654 32 and token ghp_0123456789abcdefghijABCDEFGHIJ0123",
        "Authorization: Bearer abcdef0123456789abcdef0123456789 password=hunter2hunter2",
        "already [EMAIL_1] here and ana@example.com, (555) 123-4567",
        "postgres://user:p4ss@db.internal:5432/x https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
        json.dumps({"to": "ana@example.com", "amount": 4111111111111111, "nested": {"phone": "+1 415 555 2671"}}),
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    ]:
        put("redact", t)

    # Config and connectors.
    conf = read(os.path.join(REPO, "src", "init", "conveyor.toml"))
    put("config", conf)
    put("config", conf + b"\0CONVEYOR__SERVER__LISTEN=127.0.0.1:9\nCONVEYOR__LLM__PROVIDER=openai")
    put("config", b"""[server]\nlisten = "127.0.0.1:8080"\n[channels.slack]\nsigning_secret_env = "S"\nbot_token_env = "T"\n[channels.telegram]\ntoken_env = "TG"\n[hooks.gh]\nverify = "hmac-sha256"\nsecret_env = "H"\ntext = "{{ comment.body }}"\nforward_to = "slack:C1"\n[access.slack]\nusers = ["U1"]\n[prompts.vars]\ncompany = "Lumen"\n""")
    for p in sorted(glob.glob(os.path.join(REPO, "src", "init", "demo", "connectors", "*.toml"))):
        put("connector", read(p))
    for s in ["0 * * * *", "*/15 * * * *", "*/30 * * * * *", "0 0 29 2 *", "0 0 31 2 *", "0 0 L * *", "0 0 * * 5L", "0 0 * * MON#2", "@hourly", "0 0 1W * *", "59 23 31 12 * 2099", "0 0 ? * *", "1-59/7 0-23/5 1-31/3 */2 1-5"]:
        put("cron", s)

    # BI questions and semantic models.
    for line in read(os.path.join(REPO, "src", "init", "demo", "bi-questions.jsonl")).decode().splitlines():
        if line.strip():
            put("bi_question", json.loads(line)["question"].encode())
    for q in ["monthly revenue in 2025 vs 2024", "receita por região desde março", "top 3 customers by revenue between 2025-01-01 and 2025-03-31", "İstanbul revenue em março de 2025 🎉", "share of revenue by plan last 7 days", "Q3 2025 vs previous quarter revenue by country"]:
        put("bi_question", q.encode())
    put("semantic_model", read(os.path.join(REPO, "src", "init", "demo", "connectors", "shop.semantic.toml")))

    # SQL.
    for p in sorted(glob.glob(os.path.join(REPO, "src", "bench", "tpch", "q*.sql"))) + sorted(glob.glob(os.path.join(REPO, "src", "init", "demo", "connectors", "*.sql"))):
        put("sql_guard", read(p))
    for q in ["DELETE FROM silver.orders", "INSERT INTO t VALUES (1)", "EXPLAIN SELECT 1", "SELECT 1; SELECT 2", "COPY t TO 'x.csv'", "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'", "WITH a AS (SELECT 1) SELECT * FROM a", "SET datafusion.x = 1"]:
        put("sql_guard", q)

    # Prompt templates.
    for p in sorted(glob.glob(os.path.join(REPO, "prompts", "*.j2"))):
        put("prompts", read(p))
    put("prompts", "é{{ x }}\nΩ {{ é }} {{ typo }}")
    put("prompts", "{% for c in context %}[{{ c.n }}] {{ c.title }}{% endfor %} {{ company }} {{ user | upper }}")

    # URL scrubbing and the SSRF guard.
    for t in [
        "error sending request for url (https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key=AIzaSECRET)",
        "POST https://hooks.slack.com/commands/T1/B2/s3cr3t failed; http://u:p@h:8080 too",
        "xhttps://é/ä?k=v http://[::1]:80/x",
    ]:
        put("scrub_urls", t)
    for t in ["http://127.0.0.1/", "https://allowed.test/x", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "http://2130706433/", "http://169.254.169.254/latest", "http://168.63.129.16/", "http://[64:ff9b::a00:1]/", "http://[2001::1]/", "http://[fe80::1%25eth0]/", "ftp://x/", "http://u:p@localhost:8080/", "10.0.0.1", "::1", "fd00::1"]:
        put("ssrf", t)


if __name__ == "__main__":
    main()
