//! Delivery: a batch goes to the cluster until every document in it is settled.
//!
//! One attempt is: tokens from the rate limiter (so retries are rate limited too) → one `_bulk`
//! request through the [`BulkClient`] → the pure decision of [`super::classify`] → settle what
//! is done, split what the cluster refused as a whole, retry what failed (only those documents,
//! after a jittered exponential backoff, for as long as it takes: the heartbeat keeps the
//! messages, nothing is deleted meanwhile), and write what the cluster refused for good to the
//! dead-letter index.
//!
//! A dead-letter entry that the cluster refuses in turn drops its token unresolved, so the message
//! stays in the queue for redrive instead of being deleted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::classify::{classify_response, nothing_taken, ItemOutcome, ResponseOutcome};
use super::doc::Doc;
use super::rate_limiter::RateLimiter;
use super::BulkClient;
use crate::ack::Delivered;
use crate::backoff;
use crate::config::RetryConfig;
use crate::events::{self, BulkOutcome, BulkRetry, Refusal};
use crate::health::Health;
use crate::metrics;
use crate::record::dead_letter::{self, DeadLetters};

/// Links per bulk span: enough for every message of a full batch in practice.
const MAX_LINKS: usize = 128;

/// A document the cluster refused for good, with its reason.
pub(crate) struct Refused {
    pub(crate) doc: Doc,
    pub(crate) error_type: String,
    pub(crate) reason: String,
}

pub struct BulkSink {
    client: Arc<dyn BulkClient>,
    limiter: RateLimiter,
    /// Refused documents become entries of the dead-letter index.
    dead_letters: DeadLetters,
    /// `RETRY_*`: the backoff between attempts.
    retry: RetryConfig,
    health: Arc<Health>,
}

impl BulkSink {
    /// Documents per second currently allowed, after adaptive decreases (`None` = unlimited).
    pub fn effective_rate(&self) -> Option<f64> {
        self.limiter.effective_rate()
    }

    /// This task's factor of the configured rate (the fleet budget's share, 0–1).
    pub fn set_share(&self, factor: f64) {
        self.limiter.set_share(factor)
    }

    /// `RATE_LIMIT_DOCS_PER_SEC` (`None` = unlimited).
    pub fn configured_rate(&self) -> Option<u32> {
        self.limiter.configured_rate()
    }
}

impl BulkSink {
    pub fn new(
        client: Arc<dyn BulkClient>,
        limiter: RateLimiter,
        dead_letters: DeadLetters,
        retry: RetryConfig,
        health: Arc<Health>,
    ) -> Self {
        BulkSink {
            client,
            limiter,
            dead_letters,
            retry,
            health,
        }
    }

    /// Delivers a batch: returns when every document is indexed, dead-lettered, or given up
    /// (token dropped, message kept).
    pub async fn deliver(&self, docs: Vec<Doc>) {
        let refused = self.deliver_until_settled(docs).await;
        if refused.is_empty() {
            return;
        }
        let mut dead = Vec::with_capacity(refused.len());
        for Refused {
            doc,
            error_type,
            reason,
        } in refused
        {
            let refusal = refusal(&doc, &error_type, &reason);
            if doc.dead_letter {
                events::dead_letter_refused(&refusal);
                continue; // dropping the token keeps the message
            }
            events::document_refused(&refusal);
            let n = self.dead_letters.refused(&dead_letter::Refused {
                obj: &doc.origin,
                offset: doc.offset,
                sub: doc.sub,
                index: &doc.index,
                source: doc.source(),
                error_type: &error_type,
                reason: &reason,
            });
            let mut entry = Doc::encode(n, doc.origin.clone(), doc.offset, doc.sub, true, doc.ack);
            entry.trace = doc.trace;
            dead.push(entry);
        }
        for Refused {
            doc,
            error_type,
            reason,
        } in self.deliver_until_settled(dead).await
        {
            events::dead_letter_refused(&refusal(&doc, &error_type, &reason));
        }
    }

    /// Delivers like [`BulkSink::deliver`] (rate limiter, retries, splits) but hands back what the
    /// cluster refused for good instead of dead-lettering it: `replay-dead-letters` keeps its
    /// own entry of such a document, with the new reason. Every other document is settled (its
    /// token resolved) or given up (its token dropped).
    pub(crate) async fn deliver_returning_refused(&self, docs: Vec<Doc>) -> Vec<Refused> {
        let refused = self.deliver_until_settled(docs).await;
        for r in &refused {
            events::document_refused(&refusal(&r.doc, &r.error_type, &r.reason));
        }
        refused
    }

    /// Waits for the rate limiter's tokens for `docs` writes of `bytes` bytes that do not go
    /// through [`BulkSink::deliver`] (the replay's own deletes and rewrites of its entries).
    pub(crate) async fn paced(&self, docs: usize, bytes: usize) {
        self.limiter.acquire(docs, bytes).await;
    }

    /// Counts a document the cluster accepted and resolves its token.
    fn settled(&self, doc: Doc) {
        let m = metrics::get();
        if doc.dead_letter {
            m.dead_lettered();
            doc.ack.resolve(Delivered::DeadLettered);
        } else {
            let lag = doc
                .origin
                .event_time
                .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
            m.indexed(lag);
            doc.ack.resolve(Delivered::Indexed);
        }
    }

    /// Sends until every document is done or refused; returns the refused ones with the reason.
    fn deliver_until_settled(
        &self,
        docs: Vec<Doc>,
    ) -> Pin<Box<dyn Future<Output = Vec<Refused>> + Send + '_>> {
        Box::pin(async move {
            let mut refused = Vec::new();
            let mut pending = docs;
            let mut attempt = 0u32;
            while !pending.is_empty() {
                if attempt > 0 {
                    metrics::get().retried(pending.len() as u64);
                    tokio::time::sleep(backoff::delay(
                        attempt,
                        self.retry.initial_backoff,
                        self.retry.max_backoff,
                    ))
                    .await;
                }
                attempt += 1;
                let bytes: usize = pending.iter().map(|d| d.body.len()).sum();
                let waited = self.limiter.acquire(pending.len(), bytes).await;
                let outcome = self.send(&pending, waited, attempt).await;
                match outcome {
                    ResponseOutcome::RetryAll(reason) | ResponseOutcome::Overloaded(reason) => {
                        BulkRetry::Request {
                            docs: pending.len(),
                            attempt,
                            reason: &reason,
                        }
                        .emit();
                    }
                    ResponseOutcome::Split(reason) if pending.len() > 1 => {
                        BulkRetry::Split {
                            docs: pending.len(),
                            reason: &reason,
                        }
                        .emit();
                        let second = pending.split_off(pending.len() / 2);
                        refused.extend(
                            self.deliver_until_settled(std::mem::take(&mut pending))
                                .await,
                        );
                        refused.extend(self.deliver_until_settled(second).await);
                    }
                    ResponseOutcome::Split(reason) => {
                        let doc = pending.pop().expect("one document");
                        refused.push(Refused {
                            doc,
                            error_type: "request_refused".to_string(),
                            reason,
                        });
                    }
                    ResponseOutcome::Items(items) => {
                        let mut retry = Vec::new();
                        let mut first_retry_reason = None;
                        let mut misconfigured = (0usize, None);
                        for (doc, item) in pending.drain(..).zip(items) {
                            match item {
                                ItemOutcome::Done => self.settled(doc),
                                ItemOutcome::Retry(reason) | ItemOutcome::Overloaded(reason) => {
                                    first_retry_reason.get_or_insert(reason);
                                    retry.push(doc);
                                }
                                ItemOutcome::Reject { error_type, reason } => {
                                    refused.push(Refused {
                                        doc,
                                        error_type,
                                        reason,
                                    })
                                }
                                // Dropping the token keeps the message: nothing to retry or
                                // dead-letter until the configuration changes.
                                ItemOutcome::Misconfigured(reason) => {
                                    misconfigured.0 += 1;
                                    misconfigured.1.get_or_insert(reason);
                                    drop(doc);
                                }
                            }
                        }
                        if let (docs, Some(reason)) = misconfigured {
                            let first = self.health.configuration_refused(&reason);
                            events::configuration_refused(&reason, docs, first);
                        }
                        if let Some(reason) = first_retry_reason {
                            BulkRetry::Items {
                                docs: retry.len(),
                                attempt,
                                reason: &reason,
                            }
                            .emit();
                        }
                        pending = retry;
                    }
                }
            }
            refused
        })
    }

    /// Asks the cluster whether it answers: the readiness probe while no bulk request reports
    /// its state.
    pub async fn probe(&self) {
        let state = self.client.probe().await;
        self.health.cluster_result(state);
    }

    /// Asks the cluster who it is; logs it once and shows it on `/readyz`. `false` while it
    /// cannot tell (the readiness state then says why).
    pub async fn identify(&self, es_url: &str) -> bool {
        match self.client.identify().await {
            Ok(identity) => {
                let text = identity.to_string();
                events::cluster_identified(&text, es_url);
                self.health.cluster_identified(text);
                self.health.cluster_result(Ok(()));
                true
            }
            Err(reason) => {
                self.health.cluster_result(Err(reason));
                false
            }
        }
    }

    async fn send(&self, docs: &[Doc], rate_wait: Duration, attempt: u32) -> ResponseOutcome {
        let size: usize = docs.iter().map(|d| d.body.len()).sum();
        let mut body = BytesMut::with_capacity(size);
        for d in docs {
            body.extend_from_slice(&d.body);
        }
        let body: Bytes = body.freeze();
        let span = tracing::info_span!(
            "bulk",
            db.system.name = "elasticsearch",
            db.operation.name = "bulk",
            docs = docs.len(),
            bytes = size,
            retry.attempt = attempt,
            rate_limiter.wait_ms = rate_wait.as_millis() as u64,
            http.response.status_code = tracing::field::Empty,
            item_failures = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // A bulk request carries documents of many messages: link to each message's span.
        let mut linked = std::collections::HashSet::new();
        for sc in docs.iter().filter_map(|d| d.trace.as_ref()) {
            if linked.len() < MAX_LINKS && linked.insert(sc.span_id()) {
                span.add_link(sc.clone());
            }
        }
        let started = Instant::now();
        let result = self.client.bulk(body).instrument(span.clone()).await;
        let outcome = match result {
            Ok(reply) => {
                span.record("http.response.status_code", reply.status);
                classify_response(reply.status, &reply.body, docs.len())
            }
            Err(e) => {
                if let super::TransportError::Body { status, .. } = &e {
                    span.record("http.response.status_code", *status);
                }
                ResponseOutcome::RetryAll(e.to_string())
            }
        };
        match nothing_taken(&outcome) {
            Some(reason) => self.health.cluster_result(Err(reason.to_string())),
            None => self.health.cluster_result(Ok(())),
        }
        let overloaded = match &outcome {
            ResponseOutcome::Overloaded(_) => true,
            ResponseOutcome::Items(items) => items
                .iter()
                .any(|i| matches!(i, ItemOutcome::Overloaded(_))),
            _ => false,
        };
        if overloaded {
            self.limiter.overloaded();
        }
        let m = metrics::get();
        m.bulk_duration.record(started.elapsed().as_secs_f64(), &[]);
        m.rate_wait.record(rate_wait.as_secs_f64(), &[]);
        let label = match &outcome {
            ResponseOutcome::Items(items) => {
                let failures = items.iter().filter(|i| **i != ItemOutcome::Done).count();
                span.record("item_failures", failures);
                if failures == 0 {
                    BulkOutcome::Ok
                } else {
                    BulkOutcome::Partial
                }
            }
            ResponseOutcome::RetryAll(_) => BulkOutcome::Retry,
            ResponseOutcome::Overloaded(_) => BulkOutcome::Overloaded,
            ResponseOutcome::Split(_) => BulkOutcome::Split,
        };
        if label != BulkOutcome::Ok {
            span.record("otel.status_code", "ERROR");
        }
        m.bulk_request(label);
        crate::status::board().bulk_request(label);
        tracing::debug!(parent: &span, took_ms = started.elapsed().as_millis() as u64, "bulk request done");
        outcome
    }
}

/// What the logs say about a refused document.
fn refusal<'a>(doc: &'a Doc, error_type: &'a str, reason: &'a str) -> Refusal<'a> {
    Refusal {
        index: &doc.index,
        bucket: &doc.origin.bucket,
        key: &doc.origin.key,
        offset: doc.offset,
        error_type,
        reason,
    }
}
