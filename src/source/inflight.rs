//! Messages in flight: everything the worker tells the queue about a message once received.
//!
//! [`InFlight`] is the registry of messages being worked on (message id → receipt), the
//! heartbeat that extends their visibility before it runs out (so the queue does not hand them to
//! another task while they are being worked on), delete, release (visibility set to a short
//! delay, so the message comes back later), and release of everything at shutdown (visibility 0,
//! so another task takes the messages at once). It works over any [`Queue`]; the calls' retry
//! policies are the queue implementation's.
//!
//! A delete that is given up is logged, never fatal: the message is redelivered, and the
//! deterministic document ids make the second pass overwrite, not duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Queue;

/// SQS's largest batch of visibility changes.
const BATCH: usize = 10;

/// Messages in flight and the queue calls that settle them.
pub struct InFlight {
    queue: Arc<dyn Queue>,
    /// What the heartbeat extends the visibility to, in seconds (`SQS_VISIBILITY_TIMEOUT_SECONDS`).
    visibility_timeout: i32,
    /// message id → receipt.
    registry: Mutex<HashMap<String, String>>,
}

impl InFlight {
    pub fn new(queue: Arc<dyn Queue>, visibility_timeout: i32) -> Self {
        InFlight {
            queue,
            visibility_timeout,
            registry: Mutex::new(HashMap::new()),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map inconsistent: take it anyway.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn track(&self, message_id: &str, receipt: &str) {
        self.registry()
            .insert(message_id.to_string(), receipt.to_string());
    }

    /// Messages being worked on.
    pub fn len(&self) -> usize {
        self.registry().len()
    }

    /// Forget a message without telling the queue: it reappears when its visibility timeout ends.
    fn untrack(&self, message_id: &str) -> Option<String> {
        self.registry().remove(message_id)
    }

    /// The message is done: delete it. A message already released (shutdown) is left alone.
    #[tracing::instrument(name = "ack", skip(self), fields(messaging.operation.type = "settle", messaging.operation.name = "delete"))]
    pub async fn delete(&self, message_id: &str) {
        let Some(receipt) = self.untrack(message_id) else {
            return;
        };
        if let Err(e) = self.queue.delete(&receipt).await {
            crate::status::board().error(
                crate::status::Stage::Delete,
                &format!("message {message_id}: {e}"),
            );
            tracing::error!(
                message_id,
                "giving up deleting the message; it will be redelivered and overwrite its documents"
            );
        }
    }

    /// Give the message back to the queue after `delay_secs` (0 = at once).
    #[tracing::instrument(name = "ack", skip(self), fields(messaging.operation.type = "settle", messaging.operation.name = "release"))]
    pub async fn release(&self, message_id: &str, delay_secs: i32) {
        let Some(receipt) = self.untrack(message_id) else {
            return;
        };
        // If this fails too, the message comes back when its visibility timeout ends.
        let _ = self.queue.change_visibility(&receipt, delay_secs).await;
    }

    /// At shutdown: every message still in flight goes back to the queue at once.
    pub async fn release_all(&self) {
        let ids: Vec<String> = self.registry().keys().cloned().collect();
        for chunk in ids.chunks(BATCH) {
            let entries: Vec<(String, String)> = {
                let reg = self.registry();
                chunk
                    .iter()
                    .filter_map(|id| reg.get(id).map(|r| (id.clone(), r.clone())))
                    .collect()
            };
            self.change_visibility(&entries, 0).await;
            let mut reg = self.registry();
            for (id, _) in &entries {
                reg.remove(id);
            }
        }
        if !ids.is_empty() {
            tracing::info!(
                released = ids.len(),
                "unfinished messages returned to the queue"
            );
        }
    }

    /// Extends every tracked message's visibility to the full timeout, every third of it.
    pub async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let period = Duration::from_millis((self.visibility_timeout as u64 * 1000 / 3).max(500));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let entries: Vec<(String, String)> = self
                .registry()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for chunk in entries.chunks(BATCH) {
                self.change_visibility(chunk, self.visibility_timeout).await;
            }
            if !entries.is_empty() {
                tracing::debug!(
                    messages = entries.len(),
                    visibility_timeout = self.visibility_timeout,
                    "visibility extended"
                );
            }
        }
    }

    /// One batch of (message id, receipt); refused entries are logged.
    async fn change_visibility(&self, entries: &[(String, String)], seconds: i32) {
        if entries.is_empty() {
            return;
        }
        let receipts: Vec<&str> = entries.iter().map(|(_, r)| r.as_str()).collect();
        let Ok(refused) = self.queue.change_visibility_batch(&receipts, seconds).await else {
            return; // logged by the queue; the message's visibility runs on
        };
        for f in refused {
            tracing::warn!(
                entry = format!("m{}", f.index),
                code = f.code,
                reason = f.reason,
                "visibility change refused"
            );
        }
    }
}
