//! `web:NAME`, the publish target that needs no chat platform: a message "posted" there is
//! written to the store as an egress-ledger row of conversation `web:NAME` under the step's
//! key (so it is written once, whatever retries or crashes happen), and shown by the web page's Workflows tab and `GET /v1/workflows/feed/NAME`. An approval
//! sent there is decided on that page (or with `POST /v1/workflows/approvals/{id}`). This is
//! how the demo's workflows run offline.

use crate::error::Result;
use crate::gateway::egress::Outbox;
use crate::model::{Channel, Outbound};
use crate::store::{EgressRow, NewEgress, Store};

/// The channel name of the web feed.
pub const WEB: Channel = Channel::new("web");

/// The web feed's [`Outbox`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WebFeed;

#[async_trait::async_trait]
impl Outbox for WebFeed {
    fn channel(&self) -> Channel {
        WEB
    }

    async fn resend(&self, store: &Store, row: &EgressRow) -> Result<()> {
        // Nothing to send: the row is the message. A row left pending (a crash between the
        // record and the confirm) is confirmed.
        store.egress_confirm(&row.id, None).await
    }

    async fn post(
        &self,
        store: &Store,
        chat: &str,
        dedupe_key: &str,
        out: &Outbound,
    ) -> Result<()> {
        let conversation = format!("{WEB}:{chat}");
        let payload = serde_json::json!({
            "chat": chat,
            "text": out.text,
            "actions": out.actions,
        });
        let recorded = store
            .egress_record_new(&NewEgress {
                channel: WEB.as_str().into(),
                conversation: conversation.clone(),
                dedupe_key: dedupe_key.to_string(),
                payload,
            })
            .await?;
        // `None`: written before (a repeat), and confirmed then or by the resender.
        match recorded {
            Some(id) => store.egress_confirm(&id, None).await,
            None => Ok(()),
        }
    }
}
