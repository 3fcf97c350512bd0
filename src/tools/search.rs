//! The built-in `search_knowledge` tool: retrieval over the knowledge index, for planners that
//! decide themselves when to look something up.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Caller, Tool, ToolPolicy};
use crate::error::{Error, Result};
use crate::knowledge::Retriever;

/// Results returned when the caller does not say `k`.
const DEFAULT_K: usize = 5;

/// Most results one call may ask for.
const MAX_K: usize = 20;

/// With filters, this many times `k` hits are retrieved and then filtered, so that filtering
/// usually still leaves `k`. Retrieval is cheap next to the model call that asked for it.
const FILTER_OVERSAMPLE: usize = 5;

/// `search_knowledge(query, k?, filters?)` over a [`Retriever`].
///
/// Filters apply to the retrieved hits, not inside the index: `source` and `title` keep a hit
/// when its source path (or URL) or its document title contains the given text, ignoring
/// case. A filter that matches nothing among the best `k × 5` hits returns no results, even if
/// a matching document exists further down the ranking; for this tool's job (give the model
/// the passages that best answer a question) that is the right trade for simplicity.
pub struct SearchKnowledge {
    retriever: Retriever,
    parameters: Value,
    policy: ToolPolicy,
}

impl SearchKnowledge {
    /// The tool over `retriever`, callable by everyone.
    pub fn new(retriever: Retriever) -> Self {
        Self {
            retriever,
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "What to look for, in words that are likely to appear in the documents."
                    },
                    "k": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_K,
                        "default": DEFAULT_K,
                        "description": "How many passages to return."
                    },
                    "filters": {
                        "type": "object",
                        "properties": {
                            "source": {
                                "type": "string",
                                "description": "Keep passages whose source path or URL contains this text."
                            },
                            "title": {
                                "type": "string",
                                "description": "Keep passages whose document title contains this text."
                            }
                        },
                        "additionalProperties": false
                    }
                },
                "required": ["query"],
                "additionalProperties": false
            }),
            policy: ToolPolicy::default(),
        }
    }
}

#[async_trait]
impl Tool for SearchKnowledge {
    fn name(&self) -> &str {
        "search_knowledge"
    }

    fn description(&self) -> &str {
        "Search the knowledge base (the indexed documents) and return the most relevant \
         passages with their title, source and heading. Cite passages by their number n."
    }

    fn parameters(&self) -> &Value {
        &self.parameters
    }

    fn policy(&self) -> &ToolPolicy {
        &self.policy
    }

    async fn call(&self, _caller: &Caller, args: Value) -> Result<Value> {
        let query = args
            .get("query")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadInput("query: a search text is required".into()))?;
        let k = args
            .get("k")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_K, |k| usize::try_from(k).unwrap_or(MAX_K))
            .clamp(1, MAX_K);
        let filter = |key: &str| {
            args.get("filters")
                .and_then(|f| f.get(key))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase)
        };
        let source = filter("source");
        let title = filter("title");
        let filtered = source.is_some() || title.is_some();
        let fetch = if filtered { k * FILTER_OVERSAMPLE } else { k };
        let hits = self.retriever.retrieve(query, fetch).await?;
        let results: Vec<Value> = hits
            .into_iter()
            .filter(|h| {
                source
                    .as_ref()
                    .is_none_or(|s| h.payload.source.to_lowercase().contains(s))
                    && title
                        .as_ref()
                        .is_none_or(|t| h.payload.title.to_lowercase().contains(t))
            })
            .take(k)
            .enumerate()
            .map(|(i, h)| {
                json!({
                    "n": i + 1,
                    "title": h.payload.title,
                    "source": h.payload.source,
                    "heading": h.payload.heading,
                    "text": h.payload.text,
                    "chunk_id": h.id,
                    "doc_id": h.payload.doc_id,
                    // Four decimals: enough to rank, and stable text in the audit log.
                    "score": (f64::from(h.score) * 10_000.0).round() / 10_000.0,
                })
            })
            .collect();
        Ok(json!({ "results": results }))
    }
}
