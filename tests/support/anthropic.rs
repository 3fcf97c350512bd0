//! Anthropic messages wire format for the fake provider: whole messages and SSE streams
//! (`message_start`, content blocks with `input_json_delta` fragments, `message_stop`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::{Value, json};

use super::llm_fake::Answer;

fn stop(a: &Answer) -> &'static str {
    if a.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

fn input(args: &str) -> Value {
    serde_json::from_str(args).unwrap_or_else(|_| json!({}))
}

/// A `message` object.
pub fn message(a: &Answer) -> Value {
    let mut content = Vec::new();
    if !a.text.is_empty() {
        content.push(json!({"type": "text", "text": a.text}));
    }
    for (id, name, args) in &a.calls {
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input(args)}));
    }
    json!({
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": content,
        "stop_reason": stop(a),
        "stop_sequence": null,
        "usage": {"input_tokens": 50, "output_tokens": 10},
    })
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An SSE stream of message events.
pub fn sse(a: &Answer) -> String {
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 50, "output_tokens": 1}}}),
    );
    let mut index = 0;
    if !a.text.is_empty() {
        out.push_str(&event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        out.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": a.text}}),
        ));
        out.push_str(&event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (id, name, args) in &a.calls {
        out.push_str(&event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        let chars: Vec<char> = args.chars().collect();
        for piece in chars.chunks(6) {
            let p: String = piece.iter().collect();
            out.push_str(&event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": p}}),
            ));
        }
        out.push_str(&event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    out.push_str(&event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop(a), "stop_sequence": null},
            "usage": {"output_tokens": 10}}),
    ));
    out.push_str(&event("message_stop", json!({"type": "message_stop"})));
    out
}
