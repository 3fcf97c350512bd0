//! Fakes of remote services, speaking their real wire formats on `127.0.0.1`.

pub mod anthropic;
pub mod discord;
pub mod discord_gateway;
pub mod gemini;
pub mod llm_fake;
pub mod multipart;
pub mod openai;
pub mod rest_api;
pub mod slack;
pub mod telegram;
