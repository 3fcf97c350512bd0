//! The egress ledger as channels use it: a reply part is recorded before it is sent, and a part
//! that was already recorded (a retried delivery of the same event) is not sent again.

use serde_json::Value;

use crate::error::Result;
use crate::model::Channel;
use crate::store::{NewEgress, Store};

/// Records one outgoing message under `dedupe_key`. Returns the ledger id when this call
/// created the row (the caller sends it, then confirms), or `None` when it was recorded
/// before (the caller must not send it again).
pub async fn record_once(
    store: &Store,
    channel: Channel,
    conversation: &str,
    dedupe_key: &str,
    payload: &Value,
) -> Result<Option<String>> {
    let id = store
        .egress_record_new(&NewEgress {
            channel: channel.as_str().into(),
            conversation: conversation.into(),
            dedupe_key: dedupe_key.into(),
            payload: payload.clone(),
        })
        .await?;
    if id.is_none() {
        tracing::info!(channel = %channel, dedupe_key, "reply already recorded; not sending it again");
    }
    Ok(id)
}
