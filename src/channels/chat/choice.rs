//! Clarifying choices as buttons: when the planner asks a question back ("“sales” can mean
//! Revenue or Order count. Which one?"), each option goes under the answer as a button, and a
//! click asks that option in the same conversation, as if the person who clicked had typed it.
//!
//! A button carries only `{answer id}:{index}` (Telegram's `callback_data` holds 64 bytes):
//! the options themselves are stored with the answer (`choices` in its meta), so a modified
//! client can pick one of the options offered in its own conversation and nothing else. The
//! click's idempotency key is the answer, the option and the person: clicking twice (or the
//! platform delivering the click twice) asks once.

use super::Button;
use crate::error::Result;
use crate::model::{ConversationKey, Inbound, UserRef};
use crate::store::Store;

/// The action of a choice button (`conveyor_choose` on Slack, `conveyor:choose:…` on
/// Discord, `choose:…` on Telegram).
pub const CHOOSE: &str = "choose";

/// The longest button label: Slack takes 75 characters, Discord 80.
const MAX_LABEL_CHARS: usize = 75;

/// The most options offered as buttons.
const MAX_CHOICES: usize = 5;

/// One button per option of the answer `message_id` (at most five), labelled with the
/// option (cut to 75 characters).
pub fn choice_buttons(message_id: &str, choices: &[String]) -> Vec<Button> {
    choices
        .iter()
        .take(MAX_CHOICES)
        .enumerate()
        .map(|(i, choice)| Button {
            label: label(choice),
            action: CHOOSE.into(),
            value: format!("{message_id}:{i}"),
        })
        .collect()
}

fn label(choice: &str) -> String {
    if choice.chars().count() <= MAX_LABEL_CHARS {
        return choice.to_string();
    }
    let mut cut: String = choice.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The message a click on the choice button `value` asks: the option's text, from `user`, in
/// whichever of `conversations` the answer that offered it belongs to. `None` (with a log
/// line) when the value is malformed, the answer is unknown, it belongs to another
/// conversation, or it offered no such option.
pub async fn chosen(
    store: &Store,
    conversations: &[ConversationKey],
    user: UserRef,
    value: &str,
) -> Result<Option<Inbound>> {
    let Some((message_id, index)) = value
        .rsplit_once(':')
        .and_then(|(id, i)| Some((id, i.parse::<usize>().ok()?)))
    else {
        tracing::info!(value, "a choice button with a value conveyor did not write");
        return Ok(None);
    };
    let Some((conversation, meta)) = store.message_meta(message_id).await? else {
        tracing::info!(
            message_id,
            "a choice under an answer conveyor does not have"
        );
        return Ok(None);
    };
    let Some(key) = conversations
        .iter()
        .find(|c| c.as_storage_key() == conversation)
    else {
        tracing::warn!(
            message_id,
            "a choice clicked outside the conversation of its answer; ignored"
        );
        return Ok(None);
    };
    let Some(text) = meta
        .get("choices")
        .and_then(|c| c.get(index))
        .and_then(serde_json::Value::as_str)
    else {
        tracing::info!(message_id, index, "a choice the answer did not offer");
        return Ok(None);
    };
    Ok(Some(Inbound {
        idempotency_key: format!("{CHOOSE}:{value}:{}", user.id),
        conversation: key.clone(),
        user,
        text: text.to_string(),
        attachments: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buttons_carry_the_answer_and_the_index_and_short_labels() {
        let long = "revenue by region ".repeat(10);
        let b = choice_buttons(
            "0190b2c4-aaaa-7bbb-8ccc-123456789012",
            &["revenue by region".into(), long],
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].label, "revenue by region");
        assert_eq!(b[1].value, "0190b2c4-aaaa-7bbb-8ccc-123456789012:1");
        assert_eq!(b[1].label.chars().count(), MAX_LABEL_CHARS);
        assert!(b[1].label.ends_with('…'));
        // What Telegram's callback_data takes (64 bytes) with its prefix.
        assert!(format!("{CHOOSE}:{}", b[1].value).len() <= 64);
    }
}
