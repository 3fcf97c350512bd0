//! Surfaces where people meet conveyor. Each turns its own input into an [`crate::model::Inbound`]
//! and renders the [`crate::model::Outbound`]; platform types never leave their file.
//!
//! - [`cli`]: `conveyor chat` and `conveyor ask`, in-process or against a running server.
//! - [`web`]: the chat page served at `/` (it talks to `POST /v1/messages`).
//! - [`verify`]: constant-time request signature checks shared by every inbound channel.
//! - [`slack`]: the Slack Events API (`[channels.slack]`, `POST /slack/events`) and replies.
//! - [`discord`]: Discord interactions (`[channels.discord]`: `POST /discord/interactions`,
//!   `/ask` answered with follow-ups).
//! - [`discord_bot`]: the Discord gateway bot (serenity): answers mentions and DMs.
//! - [`telegram`]: the Telegram Bot API (`[channels.telegram]`: long polling, or
//!   `POST /telegram/webhook`) and replies.
//! - [`telegram_doctor`], [`discord_doctor`]: their `conveyor doctor` checks.
//! - [`webhook`]: generic signed webhooks (`[hooks.NAME]`, `POST /hooks/{name}`).

pub mod cli;
pub mod discord;
pub mod discord_bot;
pub mod discord_doctor;
pub mod slack;
pub mod telegram;
pub mod telegram_doctor;
pub mod verify;
pub mod web;
pub mod webhook;
