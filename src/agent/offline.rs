//! The deterministic offline planner: slash commands and small talk by rule, everything else
//! answered extractively from the knowledge index.
//!
//! An answer quotes the sentences of the retrieved chunks that share the most terms with the
//! question (terms as the index sees them: stemmed, without stop words), each followed by a
//! numbered citation, then lists the sources. When the retrieved chunks do not cover enough of
//! the question's terms it says so instead of quoting something loosely related: an honest
//! "not found" beats a confident wrong answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{PlanRequest, Planner, Reply};

use crate::error::Result;
use crate::knowledge::chunker::sentences;
use crate::knowledge::{Retriever, SearchHit};
use crate::model::Citation;
use crate::semantic::{Outcome, Semantic};
use crate::store::{Role, Turn};

/// `[answer]`: how the offline planner builds extractive answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Most sentences quoted in one answer.
    pub max_sentences: usize,
    /// Share of the question's terms (0..1) that the retrieved passages must contain before
    /// we call them relevant; below it the answer says nothing relevant was found.
    pub min_coverage: f64,
}

impl AnswerConfig {
    /// Adds every problem to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !(0.0..=1.0).contains(&self.min_coverage) {
            problems.push("answer.min_coverage: must be between 0 and 1".into());
        }
        if self.max_sentences == 0 {
            problems.push("answer.max_sentences: must be at least 1".into());
        }
    }
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            max_sentences: 3,
            min_coverage: 0.5,
        }
    }
}

/// Said in every answer of this planner.
pub const NO_LLM_NOTE: &str = "_No LLM is configured: this answer quotes your documents directly._";

/// Longest sentence quoted whole; longer ones are cut at a word boundary.
const MAX_SENTENCE_CHARS: usize = 400;

/// Words that carry the shape of a question, not its subject ("can I *get* …", "*tell* me
/// …", "how *much* …"). They still take part in retrieval, but not in deciding whether the
/// passages cover the question or which sentences answer it, where a common verb would
/// otherwise make an unrelated sentence look relevant.
const QUESTION_WORDS: &str = "get got tell know want need please give show explain help like      way thing things something anything info information question much many";

/// Words that point back at an earlier subject; a short question with one is a follow-up.
const BACK_REFERENCES: &[&str] = &[
    "it", "its", "that", "this", "those", "these", "they", "them", "their", "there", "one",
];

/// The offline planner.
#[derive(Clone)]
pub struct OfflinePlanner {
    retriever: Retriever,
    top_k: usize,
    config: AnswerConfig,
    question_words: HashSet<u32>,
    /// The semantic model, when there is one: questions about the data are answered from it.
    semantic: Option<Arc<Semantic>>,
}

/// One retrieval and what it covers.
struct Search {
    hits: Vec<SearchHit>,
    /// The question's content terms.
    terms: HashSet<u32>,
    /// Share of `terms` present in the best hits.
    coverage: f64,
    /// Terms of the best hits.
    seen: HashSet<u32>,
}

impl OfflinePlanner {
    /// A planner answering from `retriever`.
    pub fn new(retriever: Retriever, top_k: usize, config: AnswerConfig) -> Self {
        let question_words = retriever
            .embedder
            .embed_query(QUESTION_WORDS)
            .indices
            .into_iter()
            .collect();
        Self {
            retriever,
            top_k,
            config,
            question_words,
            semantic: None,
        }
    }

    /// Answers questions about the data from `semantic` (before the documents).
    #[must_use]
    pub fn with_semantic(mut self, semantic: Option<Arc<Semantic>>) -> Self {
        self.semantic = semantic;
        self
    }

    fn terms(&self, text: &str) -> HashSet<u32> {
        self.retriever
            .embedder
            .embed_query(text)
            .indices
            .into_iter()
            .collect()
    }

    /// The terms that say what a question is about.
    fn content_terms(&self, text: &str) -> HashSet<u32> {
        let mut t = self.terms(text);
        t.retain(|id| !self.question_words.contains(id));
        t
    }

    async fn search(&self, query: &str) -> Result<Search> {
        let hits = self.retriever.retrieve(query, self.top_k).await?;
        let terms = self.content_terms(query);
        let mut seen = HashSet::new();
        for h in hits.iter().take(3) {
            let p = &h.payload;
            seen.extend(self.terms(&format!("{}\n{}\n{}", p.title, p.heading, p.text)));
        }
        let coverage = if terms.is_empty() {
            0.0
        } else {
            terms.intersection(&seen).count() as f64 / terms.len() as f64
        };
        Ok(Search {
            hits,
            terms,
            coverage,
            seen,
        })
    }

    async fn knowledge_answer(&self, req: PlanRequest<'_>) -> Result<Reply> {
        let question = req.inbound.text.trim();
        let mut best = self.search(question).await?;
        let previous = subject_question(req.history);
        // A follow-up ("and how much is it for a year?") names its subject only in the
        // previous question: search with that question prepended when this one points back
        // or is not covered on its own.
        if let Some(prev) = previous {
            let follow_up = refers_back(question) && best.terms.len() <= 3;
            if follow_up || best.coverage < self.config.min_coverage {
                let combined = self.search(&format!("{} {}", prev.text, question)).await?;
                // The combined search must still match something the new question asks.
                let own_hit =
                    best.terms.is_empty() || best.terms.iter().any(|t| combined.seen.contains(t));
                if combined.coverage >= self.config.min_coverage && own_hit {
                    best = combined;
                }
            }
        }
        if best.hits.is_empty() || best.coverage < self.config.min_coverage {
            return Ok(not_found(&best.hits, best.coverage));
        }
        Ok(self.extract(&best.hits, &best.terms))
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
            ..Reply::default()
        }
    }
}

/// The conversation's current subject: the latest earlier question that got an answer with
/// sources (a question that found nothing sets no subject).
fn subject_question(history: &[Turn]) -> Option<&Turn> {
    history.windows(2).rev().find_map(|pair| {
        let (asked, answered) = (&pair[0], &pair[1]);
        let cited = answered.meta["citations"]
            .as_array()
            .is_some_and(|c| !c.is_empty());
        (asked.role == Role::User && answered.role == Role::Assistant && cited).then_some(asked)
    })
}

/// Whether a question points back at an earlier subject.
fn refers_back(question: &str) -> bool {
    question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| BACK_REFERENCES.contains(&w.to_lowercase().as_str()))
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
        ..Reply::default()
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
                ..Reply::default()
            });
        }
        if let Some(reply) = small_talk(text) {
            return Ok(Reply {
                text: reply.to_string(),
                ..Reply::default()
            });
        }
        if let Some(semantic) = &self.semantic
            && let Some(reply) = bi_answer(semantic, req).await
        {
            return Ok(reply);
        }
        self.knowledge_answer(req).await
    }
}

/// A question about the data, answered from the semantic model: `None` when it is not one
/// (the documents answer it).
async fn bi_answer(semantic: &Semantic, req: PlanRequest<'_>) -> Option<Reply> {
    let today = chrono::Utc::now().date_naive();
    let who = crate::semantic::Asker {
        roles: req.roles.to_vec(),
        attributes: req.attributes.clone(),
    };
    match semantic.ask(&req.inbound.text, &who, today).await {
        Outcome::NotBi => None,
        Outcome::Answer(a) => Some(Reply {
            text: crate::semantic::present::markdown(semantic.model(), &a),
            data: Some(crate::semantic::present::data_answer(semantic.model(), &a)),
            ..Reply::default()
        }),
        Outcome::Clarify { text, options } => Some(Reply {
            text: if options.is_empty() {
                text
            } else {
                format!(
                    "{text}\n\n{}",
                    options
                        .iter()
                        .map(|o| format!("- {o}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            },
            choices: options,
            ..Reply::default()
        }),
        Outcome::Refused(why) => Some(Reply {
            text: crate::semantic::present::sentence_case(&why),
            ..Reply::default()
        }),
    }
}
