//! OpenAI chat-completions wire format for the fake provider: whole responses and SSE
//! streams whose tool-call arguments arrive in fragments, as the real API sends them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::{Value, json};

use super::llm_fake::Answer;

fn finish(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
}

/// A `chat.completion` object.
pub fn completion(a: &Answer) -> Value {
    let mut message = json!({"role": "assistant", "content": null, "refusal": null});
    if !a.text.is_empty() {
        message["content"] = json!(a.text);
    }
    if !a.calls.is_empty() {
        message["tool_calls"] = a
            .calls
            .iter()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
            })
            .collect();
    }
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_727_346_165,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish(a)}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    })
}

fn chunk(delta: Value, finish_reason: Value) -> String {
    let c = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_727_346_165,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    });
    format!("data: {c}\n\n")
}

/// Splits `s` into pieces of at most `n` characters.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

/// An SSE stream of `chat.completion.chunk`s ending in `[DONE]`.
pub fn sse(a: &Answer) -> String {
    let mut out = chunk(json!({"role": "assistant", "content": null}), Value::Null);
    for p in pieces(&a.text, 7) {
        out.push_str(&chunk(json!({"content": p}), Value::Null));
    }
    for (i, (id, name, args)) in a.calls.iter().enumerate() {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for p in pieces(args, 5) {
            out.push_str(&chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}),
                Value::Null,
            ));
        }
    }
    out.push_str(&chunk(json!({}), json!(finish(a))));
    let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_727_346_165,
        "model": "fake-model", "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}});
    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    out
}
