//! Gemini generateContent wire format for the fake provider: whole responses and the SSE
//! stream of `streamGenerateContent?alt=sse` (one `GenerateContentResponse` per event).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::{Value, json};

use super::llm_fake::Answer;

fn parts(a: &Answer) -> Vec<Value> {
    let mut parts = Vec::new();
    if !a.text.is_empty() {
        parts.push(json!({"text": a.text}));
    }
    for (id, name, args) in &a.calls {
        let args: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        parts.push(json!({"functionCall": {"id": id, "name": name, "args": args}}));
    }
    parts
}

fn response(parts: Vec<Value>, finish: Option<&str>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
        "modelVersion": "gemini-fake",
    })
}

/// A `GenerateContentResponse`.
pub fn generate(a: &Answer) -> Value {
    response(parts(a), Some("STOP"))
}

/// An SSE stream: the text in pieces, then the calls, the last event with `finishReason`.
pub fn sse(a: &Answer) -> String {
    let mut out = String::new();
    let chars: Vec<char> = a.text.chars().collect();
    for piece in chars.chunks(8) {
        let p: String = piece.iter().collect();
        out.push_str(&format!(
            "data: {}\n\n",
            response(vec![json!({"text": p})], None)
        ));
    }
    let calls = Answer {
        text: String::new(),
        calls: a.calls.clone(),
    };
    out.push_str(&format!(
        "data: {}\n\n",
        response(parts(&calls), Some("STOP"))
    ));
    out
}
