//! Batcher stage: gathers encoded documents from all messages into bulk requests.
//!
//! A batch is sent when it reaches `BULK_MAX_DOCS` or `BULK_MAX_BYTES`, or when its oldest document
//! has waited `BULK_FLUSH_INTERVAL_MS`. At most `BULK_CONCURRENCY` batches are in the sink at once;
//! when all slots are busy (a slow or failing cluster) the batcher stops reading its bounded input
//! channel, which blocks the object readers, which holds messages in flight, which stops
//! receiving from SQS: the backlog waits in SQS, never in memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::acknowledger::AckToken;
use crate::bulk_sink::BulkSink;
use crate::normalizer::{Normalized, ObjectContext};

/// One document, encoded once as its two bulk lines, with what is needed to settle it.
#[derive(Debug)]
pub struct Doc {
    /// `{"index":{...}}\n{source}\n`
    pub body: Bytes,
    /// Where the source line starts in `body`.
    pub source_at: usize,
    pub index: String,
    pub origin: Arc<ObjectContext>,
    pub offset: u64,
    pub sub: Option<u32>,
    /// True for dead-letter entries: they are not dead-lettered again.
    pub dead_letter: bool,
    pub ack: AckToken,
    /// The span of the message this document came from: bulk spans link to it.
    pub trace: Option<opentelemetry::trace::SpanContext>,
}

impl Doc {
    pub fn encode(
        n: Normalized,
        origin: Arc<ObjectContext>,
        offset: u64,
        sub: Option<u32>,
        dead_letter: bool,
        ack: AckToken,
    ) -> Doc {
        let action = serde_json::json!({"index": {"_index": n.index, "_id": n.id}});
        let mut body = Vec::with_capacity(256);
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &action);
        body.push(b'\n');
        let source_at = body.len();
        let _ = serde_json::to_writer(&mut body, &Value::Object(n.source));
        body.push(b'\n');
        Doc {
            body: Bytes::from(body),
            source_at,
            index: n.index,
            origin,
            offset,
            sub,
            dead_letter,
            ack,
            trace: None,
        }
    }

    /// The document's JSON source (without the newline).
    pub fn source(&self) -> &[u8] {
        let end = self.body.len().saturating_sub(1);
        &self.body[self.source_at.min(end)..end]
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_docs: usize,
    pub max_bytes: usize,
    pub flush_interval: Duration,
    pub concurrency: usize,
}

/// Runs until `input` is closed and every batch has been delivered.
pub async fn run(mut input: mpsc::Receiver<Doc>, limits: BatchLimits, sink: Arc<BulkSink>) {
    let slots = Arc::new(Semaphore::new(limits.concurrency));
    let mut in_sink = JoinSet::new();
    let mut batch: Vec<Doc> = Vec::with_capacity(limits.max_docs.min(10_000));
    let mut bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                doc = input.recv() => doc.map(Some),
                _ = tokio::time::sleep_until(d) => Some(None),
            },
            None => input.recv().await.map(Some),
        };
        match next {
            Some(Some(doc)) => {
                if batch.is_empty() {
                    deadline = Some(Instant::now() + limits.flush_interval);
                }
                bytes += doc.body.len();
                batch.push(doc);
                if batch.len() < limits.max_docs && bytes < limits.max_bytes {
                    continue;
                }
            }
            Some(None) => {} // the flush interval elapsed
            None => break,
        }
        if batch.is_empty() {
            deadline = None;
            continue;
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(limits.max_docs.min(10_000)));
        bytes = 0;
        deadline = None;
        // Waiting for a slot is the backpressure point; the semaphore is never closed.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let sink = sink.clone();
        in_sink.spawn(async move {
            sink.deliver(full).await;
            drop(permit);
        });
        while let Some(done) = in_sink.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "bulk delivery task failed");
            }
        }
    }
    if !batch.is_empty() {
        if let Ok(permit) = slots.clone().acquire_owned().await {
            let sink = sink.clone();
            in_sink.spawn(async move {
                sink.deliver(batch).await;
                drop(permit);
            });
        }
    }
    while let Some(done) = in_sink.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "bulk delivery task failed");
        }
    }
}
