//! Planning an answer. [`Planner`] is the seam: the deterministic [`offline::OfflinePlanner`]
//! is always available (and is the fallback when a remote LLM fails); LLM planners plug in
//! behind the same trait.

pub mod llm;
pub mod offline;
pub mod prompts;
pub mod redact;
pub mod tool_loop;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::{Citation, DataAnswer, Inbound};
use crate::store::Turn;

/// Everything a planner gets for one message.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    /// The message to answer.
    pub inbound: &'a Inbound,
    /// Earlier turns of the conversation, oldest first (the current message excluded).
    pub history: &'a [Turn],
    /// The sender's roles (`[roles]`), for the tool policy.
    pub roles: &'a [String],
    /// The sender's attributes (`[attributes]`), for the semantic model's access rules.
    pub attributes: &'a crate::model::Attributes,
}

/// A planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reply {
    /// Markdown text with `[n]` citation markers.
    pub text: String,
    /// The sources the markers point at.
    pub citations: Vec<Citation>,
    /// The numbers behind a BI answer.
    pub data: Option<DataAnswer>,
    /// Choices offered with a question back.
    pub choices: Vec<String>,
}

/// Something that answers messages.
#[async_trait]
pub trait Planner: Send + Sync {
    /// Short name reported with every answer (`offline`, `openai`, …).
    fn name(&self) -> &'static str;
    /// Answers one message.
    async fn answer(&self, req: PlanRequest<'_>) -> Result<Reply>;
}
