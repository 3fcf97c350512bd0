//! Surfaces where people meet conveyor. Each turns its own input into an [`crate::model::Inbound`]
//! and renders the [`crate::model::Outbound`]; platform types never leave their file.
//!
//! - [`cli`]: `conveyor chat` and `conveyor ask`, in-process or against a running server.
//! - [`web`]: the chat page served at `/` (it talks to `POST /v1/messages`).

pub mod cli;
pub mod web;
