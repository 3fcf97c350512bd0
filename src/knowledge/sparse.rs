//! The built-in embedder: sparse lexical vectors with BM25 weighting.
//!
//! Tokenisation, lowercasing, English stop words and Snowball stemming come from Qdrant's own
//! text pipeline (`qdrant_edge::bm25_embed`), so vectors made here match what a Qdrant server's
//! BM25 inference would make. Documents carry saturated term frequencies; the IDF half of BM25
//! is applied by the index at query time (Qdrant's `idf` modifier on the sparse vector), which
//! keeps IDF correct as the collection grows without re-embedding anything.

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;

use super::{Embedder, SparseVector};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[index.bm25]`
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f64,
    /// Length normalisation, 0 (none) to 1 (full).
    pub b: f64,
    /// Expected chunk length in tokens (after stop words are removed).
    pub avg_len: f64,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self {
            // k1 as in Lucene and bm25s; avg_len near the mean token count of chunks of mixed
            // length under the default chunk_size (full 1000-character chunks of English
            // prose have about 90 tokens after stop words; sections and short documents fewer).
            k1: 1.5,
            b: 0.75,
            avg_len: 60.0,
        }
    }
}

/// BM25 sparse embedder.
#[derive(Debug)]
pub struct Bm25Embedder {
    model: EdgeBm25,
}

impl Bm25Embedder {
    /// Builds the embedder with the configured parameters.
    pub fn new(params: &Bm25Params) -> Result<Self> {
        let nn = |v: f64, key: &str| {
            NotNan::new(v).map_err(|_| Error::Config(format!("index.bm25.{key} is not a number")))
        };
        let config = EdgeBm25Config {
            k: nn(params.k1, "k1")?,
            b: nn(params.b, "b")?,
            avg_len: nn(params.avg_len, "avg_len")?,
            language: Some("english".into()),
            ..Default::default()
        };
        let model = EdgeBm25::new(config).map_err(|e| Error::Config(format!("index.bm25: {e}")))?;
        Ok(Self { model })
    }
}

fn convert(v: qdrant_edge::SparseVector) -> SparseVector {
    SparseVector {
        indices: v.indices,
        values: v.values,
    }
}

impl Embedder for Bm25Embedder {
    fn embed_document(&self, text: &str) -> SparseVector {
        convert(self.model.embed_document(text))
    }

    fn embed_query(&self, text: &str) -> SparseVector {
        convert(self.model.embed_query(text))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stems_and_drops_stop_words() {
        let e = Bm25Embedder::new(&Bm25Params::default()).unwrap();
        let a = e.embed_query("The refunds are processed");
        let b = e.embed_query("refund processing");
        assert_eq!(a.indices.len(), 2);
        let mut ai = a.indices.clone();
        let mut bi = b.indices.clone();
        ai.sort_unstable();
        bi.sort_unstable();
        assert_eq!(
            ai, bi,
            "stemming should map refunds/refund and processed/processing together"
        );
        assert!(e.embed_query("the of and").indices.is_empty());
    }
}
