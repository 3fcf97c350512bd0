//! The deterministic offline planner: slash commands and small talk by rule, everything else
//! answered extractively from the knowledge index.
//!
//! An answer quotes the sentences of the retrieved chunks that share the most terms with the
//! question (terms as the index sees them: stemmed, without stop words), each followed by a
//! numbered citation, then lists the sources. When the retrieved chunks do not cover enough of
//! the question's terms it says so instead of quoting something loosely related: an honest
//! "not found" beats a confident wrong answer.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::{PlanRequest, Planner, Reply};
use crate::config::AnswerConfig;
use crate::error::Result;
use crate::knowledge::chunker::sentences;
use crate::knowledge::{Retriever, SearchHit};
use crate::model::Citation;
use crate::store::Role;

/// Said in every answer of this planner.
pub const NO_LLM_NOTE: &str = "_No LLM is configured: this answer quotes your documents directly._";

/// Longest sentence quoted whole; longer ones are cut at a word boundary.
const MAX_SENTENCE_CHARS: usize = 400;

/// The offline planner.
#[derive(Clone)]
pub struct OfflinePlanner {
    retriever: Retriever,
    top_k: usize,
    config: AnswerConfig,
}

impl OfflinePlanner {
    /// A planner answering from `retriever`.
    pub fn new(retriever: Retriever, top_k: usize, config: AnswerConfig) -> Self {
        Self {
            retriever,
            top_k,
            config,
        }
    }

    fn terms(&self, text: &str) -> HashSet<u32> {
        self.retriever
            .embedder
            .embed_query(text)
            .indices
            .into_iter()
            .collect()
    }

    /// Share of the question's terms present in the best hits.
    fn coverage(&self, question: &HashSet<u32>, hits: &[SearchHit]) -> f64 {
        if question.is_empty() {
            return 0.0;
        }
        let mut seen = HashSet::new();
        for h in hits.iter().take(3) {
            let p = &h.payload;
            seen.extend(self.terms(&format!("{}\n{}\n{}", p.title, p.heading, p.text)));
        }
        question.intersection(&seen).count() as f64 / question.len() as f64
    }

    async fn search(&self, query: &str) -> Result<(Vec<SearchHit>, HashSet<u32>, f64)> {
        let hits = self.retriever.retrieve(query, self.top_k).await?;
        let terms = self.terms(query);
        let coverage = self.coverage(&terms, &hits);
        Ok((hits, terms, coverage))
    }

    async fn knowledge_answer(&self, req: PlanRequest<'_>) -> Result<Reply> {
        let question = req.inbound.text.trim();
        let (mut hits, mut terms, mut coverage) = self.search(question).await?;
        // A follow-up ("and how much is it?") often names its subject only in the previous
        // question: retry with that question prepended before giving up.
        if coverage < self.config.min_coverage {
            let previous = req
                .history
                .iter()
                .rev()
                .find(|t| t.role == Role::User && t.text.trim() != question);
            if let Some(prev) = previous {
                let combined = format!("{} {}", prev.text, question);
                let (h2, t2, c2) = self.search(&combined).await?;
                let own = self.terms(question);
                // Only accept the combined search if it still matches the new question's terms.
                let own_hit = own.is_empty()
                    || own
                        .iter()
                        .any(|t| self.coverage(&HashSet::from([*t]), &h2) > 0.0);
                if c2 >= self.config.min_coverage && own_hit {
                    (hits, terms, coverage) = (h2, t2, c2);
                }
            }
        }
        if hits.is_empty() || coverage < self.config.min_coverage {
            return Ok(not_found(&hits, coverage));
        }
        Ok(self.extract(&hits, &terms))
    }

    /// Picks the best sentences and numbers their sources.
    fn extract(&self, hits: &[SearchHit], terms: &HashSet<u32>) -> Reply {
        let top = hits
            .first()
            .map(|h| h.score)
            .unwrap_or(1.0)
            .max(f32::EPSILON);
        let mut candidates: Vec<(f64, usize, usize, usize, String)> = Vec::new();
        for (rank, hit) in hits.iter().enumerate() {
            // A sentence under a heading that names part of the question ("Support hours")
            // answers that part even when it does not repeat the words.
            let heading = self.terms(&hit.payload.heading);
            for (pos, sentence) in sentences(&hit.payload.text).into_iter().enumerate() {
                let st = self.terms(sentence);
                let shared = terms
                    .iter()
                    .filter(|t| st.contains(t) || heading.contains(t))
                    .count();
                if shared == 0 {
                    continue;
                }
                let score = shared as f64 / terms.len().max(1) as f64
                    + 0.5 * f64::from(hit.score / top)
                    - 0.001 * pos as f64;
                candidates.push((score, shared, rank, pos, clip(sentence)));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Elsewhere than in the best sentence's own passage, a sentence that shares at most
        // half of its terms is usually a loose match ("kept" in a sentence about audit logs,
        // for a question about backups); next to the best sentence it is useful context.
        let best_shared = candidates.first().map(|c| c.1).unwrap_or(0);
        let best_rank = candidates.first().map(|c| c.2).unwrap_or(0);
        let mut chosen: Vec<(usize, usize, String)> = Vec::new();
        let mut seen_text = HashSet::new();
        for (_, shared, rank, pos, text) in candidates {
            if chosen.len() >= self.config.max_sentences {
                break;
            }
            if rank != best_rank && shared * 2 <= best_shared {
                continue;
            }
            if seen_text.insert(text.to_lowercase()) {
                chosen.push((rank, pos, text));
            }
        }
        // Quote in reading order: by source rank, then by position in the chunk.
        chosen.sort_by_key(|(rank, pos, _)| (*rank, *pos));

        let mut numbers: HashMap<String, usize> = HashMap::new();
        let mut citations: Vec<Citation> = Vec::new();
        let mut body = String::new();
        for (rank, _, text) in &chosen {
            let hit = &hits[*rank];
            let n = *numbers
                .entry(hit.payload.doc_id.clone())
                .or_insert_with(|| {
                    citations.push(Citation {
                        n: citations.len() + 1,
                        title: hit.payload.title.clone(),
                        source: hit.payload.source.clone(),
                        doc_id: hit.payload.doc_id.clone(),
                        chunk_id: hit.id.clone(),
                        snippet: hit.payload.text.clone(),
                    });
                    citations.len()
                });
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(text);
            body.push_str(&format!(" [{n}]"));
        }
        let mut out = body;
        out.push_str("\n\nSources:");
        for c in &citations {
            out.push_str(&format!("\n[{}] {} — {}", c.n, c.title, c.source));
        }
        out.push_str("\n\n");
        out.push_str(NO_LLM_NOTE);
        Reply {
            text: out,
            citations,
        }
    }
}

fn clip(sentence: &str) -> String {
    let s = sentence.trim();
    if s.chars().count() <= MAX_SENTENCE_CHARS {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(MAX_SENTENCE_CHARS).collect();
    if let Some(i) = cut.rfind(char::is_whitespace) {
        cut.truncate(i);
    }
    format!("{cut}…")
}

fn not_found(hits: &[SearchHit], coverage: f64) -> Reply {
    let mut text = String::from(
        "I couldn't find anything about that in the indexed documents, so I won't guess.",
    );
    if coverage > 0.0 {
        let mut titles: Vec<&str> = Vec::new();
        for h in hits {
            if !titles.contains(&h.payload.title.as_str()) {
                titles.push(&h.payload.title);
            }
            if titles.len() == 3 {
                break;
            }
        }
        if !titles.is_empty() {
            text.push_str(&format!(
                " The closest documents only partly match: {}.",
                titles.join("; ")
            ));
        }
    }
    text.push_str(
        " Try other words, or add documents with `conveyor index PATH`.\n\n_No LLM is configured: I answer only from your documents._",
    );
    Reply {
        text,
        citations: Vec::new(),
    }
}

const HELP: &str = "I answer questions from the documents in my knowledge index.\n\n\
- Ask in plain words, e.g. *What is the refund policy?* I quote the most relevant sentences, \
each followed by a numbered citation like [1], and list the sources.\n\
- Follow-up questions use the previous question for context.\n\
- If nothing relevant is indexed, I say so instead of guessing.\n\
- Commands: `/help` shows this.\n\n\
_No LLM is configured: answers are extracted from your documents, not generated._";

fn small_talk(text: &str) -> Option<&'static str> {
    let t = text
        .trim()
        .trim_end_matches(['!', '.', '?'])
        .to_ascii_lowercase();
    match t.as_str() {
        "hi" | "hello" | "hey" | "hola" | "olá" | "ola" | "good morning" | "good afternoon" => {
            Some(
                "Hello! Ask me anything about the indexed documents, or type /help to see what I can do.",
            )
        }
        "thanks" | "thank you" | "thx" | "obrigado" | "obrigada" => {
            Some("You're welcome! Ask another question any time.")
        }
        _ => None,
    }
}

#[async_trait]
impl Planner for OfflinePlanner {
    fn name(&self) -> &'static str {
        "offline"
    }

    async fn answer(&self, req: PlanRequest<'_>) -> Result<Reply> {
        let text = req.inbound.text.trim();
        if let Some(cmd) = text.strip_prefix('/') {
            let name = cmd.split_whitespace().next().unwrap_or("");
            let reply = match name {
                "help" | "start" => HELP.to_string(),
                _ => format!("I don't know the command /{name}. Type /help to see what I can do."),
            };
            return Ok(Reply {
                text: reply,
                citations: Vec::new(),
            });
        }
        if let Some(reply) = small_talk(text) {
            return Ok(Reply {
                text: reply.to_string(),
                citations: Vec::new(),
            });
        }
        self.knowledge_answer(req).await
    }
}
