//! The receive loop: receives while message slots are free (`MAX_IN_FLIGHT_MESSAGES`), one task
//! per message, backing off on receive failures, until shutdown or (with `--exit-when-idle`) an
//! empty queue.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::RunOptions;
use crate::health::Health;
use crate::message::MessageWorker;
use crate::metrics;
use crate::source::{sqs, Queue};
use crate::status;

/// The receive loop and what it needs.
pub(super) struct Receiver<'a> {
    pub(super) queue: &'a dyn Queue,
    pub(super) health: &'a Health,
    pub(super) worker: &'a Arc<MessageWorker>,
    /// `MAX_IN_FLIGHT_MESSAGES`: slots, one per message being worked on.
    pub(super) max_in_flight: usize,
    /// `SQS_MAX_MESSAGES`.
    pub(super) max_per_receive: usize,
}

impl Receiver<'_> {
    /// Receives while slots are free and spawns a task per message, until `shutdown` (or idle).
    pub(super) async fn run(
        &self,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
        opts: RunOptions,
    ) {
        let health = self.health;
        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let mut failures = 0u32;
        loop {
            health.receive_turn();
            // Backpressure: no receive while MAX_IN_FLIGHT_MESSAGES are being worked on.
            health.waiting_for_slots(slots.available_permits() == 0);
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            health.waiting_for_slots(false);
            let mut held: Vec<OwnedSemaphorePermit> = vec![first];
            while held.len() < self.max_per_receive {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            // Abandoning a receive in flight is safe: messages the queue handed out come back
            // after their visibility timeout.
            let result = tokio::select! {
                r = self.queue.receive(held.len()) => r,
                _ = shutdown.cancelled() => return,
            };
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "message task failed");
                }
            }
            let messages = match result {
                Ok(messages) => {
                    failures = 0;
                    health.sqs_result(Ok(()));
                    messages
                }
                Err(e) => {
                    failures += 1;
                    let delay = sqs::RECEIVE.delay(failures);
                    let error = e.to_string();
                    tracing::warn!(
                        error,
                        retry_in_ms = delay.as_millis() as u64,
                        "receive_message failed"
                    );
                    health.sqs_result(Err(format!("receive_message failed: {error}")));
                    status::board().error(status::Stage::Receive, &error);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                metrics::get().empty_receives.add(1, &[]);
                drop(held);
                if opts.exit_when_idle && slots.available_permits() == self.max_in_flight {
                    tracing::info!(
                        "queue is empty and nothing is in flight; exiting (--exit-when-idle)"
                    );
                    return;
                }
                continue;
            }
            for m in messages {
                let permit = held.pop();
                let worker = self.worker.clone();
                tasks.spawn(async move {
                    worker.process(m).await;
                    drop(permit);
                });
            }
        }
    }
}
