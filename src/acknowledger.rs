//! Acknowledger: everything the worker tells SQS about a message once it is received.
//!
//! [`Acknowledger`] is the registry of messages in flight, the heartbeat that extends their
//! visibility before it runs out (so SQS does not hand them to another task while they are being
//! worked on), delete, and release (visibility set to a short delay, or to 0 at shutdown, so
//! another task takes the message at once).
//!
//! Deletes are retried a few times and then given up: a message whose delete failed is
//! redelivered, and the deterministic document ids make the second pass overwrite, not duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use tokio_util::sync::CancellationToken;

use crate::backoff;

/// Messages in flight and the SQS calls that settle them.
pub struct Acknowledger {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_timeout: i32,
    /// message id → receipt handle.
    in_flight: Mutex<HashMap<String, String>>,
}

impl Acknowledger {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String, visibility_timeout: i32) -> Self {
        Acknowledger {
            sqs,
            queue_url,
            visibility_timeout,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map inconsistent: take it anyway.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn track(&self, message_id: &str, receipt: &str) {
        self.registry()
            .insert(message_id.to_string(), receipt.to_string());
    }

    pub fn in_flight(&self) -> usize {
        self.registry().len()
    }

    /// Forget a message without telling SQS: it reappears when its visibility timeout ends.
    pub fn untrack(&self, message_id: &str) -> Option<String> {
        self.registry().remove(message_id)
    }

    /// The message is done: delete it (a few tries; redelivery covers a lost delete).
    #[tracing::instrument(name = "ack", skip(self), fields(messaging.operation.type = "settle", messaging.operation.name = "delete"))]
    pub async fn delete(&self, message_id: &str) {
        let Some(receipt) = self.untrack(message_id) else {
            return;
        };
        let deleted = retry_sqs("delete_message", || {
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(&receipt)
                .send()
        })
        .await;
        if deleted.is_none() {
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
        retry_sqs("change_message_visibility", || {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(&receipt)
                .visibility_timeout(delay_secs)
                .send()
        })
        .await;
    }

    /// At shutdown: every message still in flight goes back to the queue at once.
    pub async fn release_all(&self) {
        let ids: Vec<String> = self.registry().keys().cloned().collect();
        for chunk in ids.chunks(10) {
            let entries: Vec<(String, String)> = {
                let reg = self.registry();
                chunk
                    .iter()
                    .filter_map(|id| reg.get(id).map(|r| (id.clone(), r.clone())))
                    .collect()
            };
            self.change_visibility_batch(&entries, 0).await;
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
            for chunk in entries.chunks(10) {
                self.change_visibility_batch(chunk, self.visibility_timeout)
                    .await;
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

    async fn change_visibility_batch(&self, entries: &[(String, String)], timeout: i32) {
        if entries.is_empty() {
            return;
        }
        let batch: Vec<ChangeMessageVisibilityBatchRequestEntry> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, (_, receipt))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(receipt)
                    .visibility_timeout(timeout)
                    .build()
                    .ok()
            })
            .collect();
        let out = retry_sqs("change_message_visibility_batch", || {
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(batch.clone()))
                .send()
        })
        .await;
        for f in out.iter().flat_map(|o| o.failed()) {
            tracing::warn!(
                entry = f.id(),
                code = f.code(),
                reason = f.message(),
                "visibility change refused"
            );
        }
    }
}

/// Three tries with a short jittered backoff: SQS throttling and blips pass, and a call that keeps
/// failing is given up (a lost delete or visibility change only means a redelivery).
async fn retry_sqs<T, E, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, aws_sdk_sqs::error::SdkError<E>>>,
    E: std::error::Error + 'static,
{
    for attempt in 1..=3u32 {
        match call().await {
            Ok(out) => return Some(out),
            Err(e) => {
                let e = aws_sdk_sqs::error::DisplayErrorContext(e);
                tracing::warn!(attempt, error = %e, "{what} failed");
                tokio::time::sleep(backoff::delay(
                    attempt,
                    Duration::from_millis(200),
                    Duration::from_secs(2),
                ))
                .await;
            }
        }
    }
    None
}
