//! Per-conversation ordering: messages of one conversation are handled one at a time, in
//! arrival order (tokio's mutex is fair), while different conversations run concurrently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// A lock per conversation, created on demand and dropped when nobody holds or waits for it.
#[derive(Debug, Default)]
pub struct ConversationLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl ConversationLocks {
    /// Waits for the conversation's turn.
    pub async fn lock(&self, conversation: &str) -> OwnedMutexGuard<()> {
        let lock = {
            // A std mutex is right here: it guards a map lookup and is never held across an
            // await.
            let mut map = match self.locks.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(conversation).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(conversation.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}
