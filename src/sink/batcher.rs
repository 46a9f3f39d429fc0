//! Batcher stage: gathers encoded documents from all messages into bulk requests.
//!
//! A batch is sent when it reaches `BULK_MAX_DOCS` or `BULK_MAX_BYTES`, or when its oldest document
//! has waited `BULK_FLUSH_INTERVAL_MS`. Readers hand documents over in small chunks
//! ([`CHUNK_DOCS`]): one channel operation per chunk instead of per document keeps the hand-over
//! off the profile. At most `BULK_CONCURRENCY` batches are in the sink at once;
//! when all slots are busy (a slow or failing cluster) the batcher stops reading its bounded input
//! channel, which blocks the object readers, which holds messages in flight, which stops
//! receiving from SQS: the backlog waits in SQS, never in memory.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::bulk::BulkSink;
use super::doc::Doc;
use crate::config::BulkConfig;

/// Documents a reader gathers before handing them to the batcher (also bounded by [`CHUNK_BYTES`]).
pub const CHUNK_DOCS: usize = 64;
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Runs until `input` is closed and every batch has been delivered.
pub async fn run(mut input: mpsc::Receiver<Vec<Doc>>, limits: BulkConfig, sink: Arc<BulkSink>) {
    let mut out = Dispatcher {
        slots: Arc::new(Semaphore::new(limits.concurrency)),
        in_sink: JoinSet::new(),
        sink,
    };
    let mut batch: Vec<Doc> = Vec::with_capacity(limits.max_docs.min(10_000));
    let mut bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                chunk = input.recv() => chunk.map(Some),
                _ = tokio::time::sleep_until(d) => Some(None),
            },
            None => input.recv().await.map(Some),
        };
        match next {
            Some(Some(chunk)) => {
                for doc in chunk {
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + limits.flush_interval);
                    }
                    bytes += doc.body.len();
                    batch.push(doc);
                    if batch.len() >= limits.max_docs || bytes >= limits.max_bytes {
                        out.dispatch(std::mem::take(&mut batch)).await;
                        bytes = 0;
                        deadline = None;
                    }
                }
            }
            // The flush interval elapsed.
            Some(None) => {
                out.dispatch(std::mem::take(&mut batch)).await;
                bytes = 0;
                deadline = None;
            }
            None => break,
        }
    }
    out.dispatch(batch).await;
    while let Some(done) = out.in_sink.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "bulk delivery task failed");
        }
    }
}

/// Hands batches to the sink, at most `BULK_CONCURRENCY` at once.
struct Dispatcher {
    slots: Arc<Semaphore>,
    in_sink: JoinSet<()>,
    sink: Arc<BulkSink>,
}

impl Dispatcher {
    async fn dispatch(&mut self, batch: Vec<Doc>) {
        if batch.is_empty() {
            return;
        }
        // Waiting for a slot is the backpressure point; the semaphore is never closed.
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let sink = self.sink.clone();
        let busy = crate::status::board().bulk_slot();
        self.in_sink.spawn(async move {
            sink.deliver(batch).await;
            drop(busy);
            drop(permit);
        });
        while let Some(done) = self.in_sink.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "bulk delivery task failed");
            }
        }
    }
}
