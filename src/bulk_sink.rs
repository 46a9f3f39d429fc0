//! Bulk sink stage: sends batches to the cluster's `_bulk` API and settles every document.
//!
//! Each attempt first takes its tokens from the rate limiter, so retries are rate limited too.
//! The retry decision is a pure function of the response ([`classify_response`]):
//! - the whole request failed (connection error, timeout, 429, 5xx, 401/403): retry all documents
//!   after a jittered exponential backoff, for as long as it takes (the heartbeat keeps the
//!   messages; nothing is deleted meanwhile);
//! - 413 or another 400 for the whole request: split the batch in halves until the culprit is
//!   alone, then dead-letter it;
//! - per item: 2xx done; 409 done (a document with this deterministic id is already there);
//!   429, 5xx or `es_rejected_execution_exception` retried alone; any other error (a mapping
//!   conflict, say) goes to the dead-letter index with the cluster's reason.
//!
//! A dead-letter entry that the cluster refuses in turn drops its token unresolved, so the message
//! stays in the queue for redrive instead of being deleted.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use serde::Deserialize;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::acknowledger::Delivered;
use crate::backoff;
use crate::batcher::Doc;
use crate::config::{Config, EsAuth};
use crate::health::Health;
use crate::metrics;
use crate::normalizer::{DeadLetter, Normalizer};
use crate::rate_limiter::RateLimiter;

/// Links per bulk span: enough for every message of a full batch in practice.
const MAX_LINKS: usize = 128;

/// How much of a refused document's source is kept in its dead-letter entry.
const DEAD_LETTER_SOURCE_BYTES: usize = 256 * 1024;

/// A document the cluster refused for good, with its reason.
struct Refused {
    doc: Doc,
    error_type: String,
    reason: String,
}

/// What to do with one document after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    Retry(String),
    /// Retry, and the cluster said it is overloaded (429, `es_rejected_execution_exception`).
    Overloaded(String),
    Reject {
        error_type: String,
        reason: String,
    },
}

/// What to do with a whole request after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    Items(Vec<ItemOutcome>),
    RetryAll(String),
    /// Retry everything, and slow down: the cluster answered 429.
    Overloaded(String),
    /// The request itself was refused (400, 413): split it to isolate the cause.
    Split(String),
}

/// Counters read by the periodic summary line and the stop line.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub indexed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retried: AtomicU64,
}

pub struct BulkSink {
    client: Elasticsearch,
    limiter: RateLimiter,
    normalizer: Arc<Normalizer>,
    initial_backoff: Duration,
    max_backoff: Duration,
    health: Arc<Health>,
    pub stats: SinkStats,
}

impl BulkSink {
    /// Documents per second currently allowed, after adaptive decreases (`None` = unlimited).
    pub fn effective_rate(&self) -> Option<f64> {
        self.limiter.effective_rate()
    }

    /// `RATE_LIMIT_DOCS_PER_SEC` (`None` = unlimited).
    pub fn configured_rate(&self) -> Option<u32> {
        self.limiter.configured_rate()
    }
}

/// The official client, configured from `ES_*`: one node, auth, TLS verification, timeout.
pub fn build_client(cfg: &Config) -> anyhow::Result<Elasticsearch> {
    use anyhow::Context;
    let url = Url::parse(&cfg.es_url).context("ES_URL")?;
    let mut t = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(cfg.es_request_timeout)
        .disable_proxy();
    t = match &cfg.es_auth {
        EsAuth::None => t,
        EsAuth::Basic { username, password } => {
            t.auth(Credentials::Basic(username.clone(), password.clone()))
        }
        EsAuth::ApiKey(key) => t.auth(Credentials::EncodedApiKey(key.clone())),
    };
    if cfg.es_tls_skip_verify {
        tracing::warn!("ES_TLS_SKIP_VERIFY=true: the cluster's TLS certificate is NOT verified; anyone on the path can read and alter what is indexed");
        t = t.cert_validation(CertificateValidation::None);
    } else if let Some(path) = &cfg.es_ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("ES_CA_CERT: reading {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .with_context(|| format!("ES_CA_CERT: {} is not a PEM certificate", path.display()))?;
        t = t.cert_validation(CertificateValidation::Full(cert));
    }
    Ok(Elasticsearch::new(
        t.build().context("building the Elasticsearch client")?,
    ))
}

impl BulkSink {
    pub fn new(
        client: Elasticsearch,
        limiter: RateLimiter,
        normalizer: Arc<Normalizer>,
        initial_backoff: Duration,
        max_backoff: Duration,
        health: Arc<Health>,
    ) -> Self {
        BulkSink {
            client,
            limiter,
            normalizer,
            initial_backoff,
            max_backoff,
            health,
            stats: SinkStats::default(),
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
            if doc.dead_letter {
                tracing::error!(index = %doc.index, bucket = %doc.origin.bucket, key = %doc.origin.key, offset = doc.offset, error_type, reason, "dead-letter entry refused; its message stays in the queue");
                continue; // dropping the token keeps the message
            }
            tracing::warn!(index = %doc.index, bucket = %doc.origin.bucket, key = %doc.origin.key, offset = doc.offset, error_type, reason, "document refused by the cluster; dead-lettering it");
            let source = &doc.source()[..doc.source().len().min(DEAD_LETTER_SOURCE_BYTES)];
            let original = String::from_utf8_lossy(source);
            let n = self.normalizer.dead_letter(&DeadLetter {
                obj: &doc.origin,
                offset: doc.offset,
                sub: doc.sub,
                stage: "index",
                error_type: &error_type,
                reason: &reason,
                original: &original,
                target_index: Some(&doc.index),
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
            tracing::error!(bucket = %doc.origin.bucket, key = %doc.origin.key, offset = doc.offset, error_type, reason, "dead-letter entry refused; its message stays in the queue");
        }
    }

    /// Counts a document the cluster accepted and resolves its token.
    fn settled(&self, doc: Doc) {
        let m = metrics::get();
        if doc.dead_letter {
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            m.docs_dead_lettered.add(1, &[]);
            doc.ack.resolve(Delivered::DeadLettered);
        } else {
            self.stats.indexed.fetch_add(1, Ordering::Relaxed);
            m.docs_indexed.add(1, &[]);
            if let Some(t) = doc.origin.event_time {
                let lag = (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0;
                m.lag.record(lag, &[]);
            }
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
                    self.stats
                        .retried
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    metrics::get().docs_retried.add(pending.len() as u64, &[]);
                    tokio::time::sleep(backoff::delay(
                        attempt,
                        self.initial_backoff,
                        self.max_backoff,
                    ))
                    .await;
                }
                attempt += 1;
                let bytes: usize = pending.iter().map(|d| d.body.len()).sum();
                let waited = self.limiter.acquire(pending.len(), bytes).await;
                let outcome = self.send(&pending, waited, attempt).await;
                match outcome {
                    ResponseOutcome::RetryAll(reason) | ResponseOutcome::Overloaded(reason) => {
                        tracing::warn!(
                            docs = pending.len(),
                            attempt,
                            reason,
                            "bulk request failed; retrying after backoff"
                        );
                    }
                    ResponseOutcome::Split(reason) if pending.len() > 1 => {
                        tracing::warn!(
                            docs = pending.len(),
                            reason,
                            "bulk request refused as a whole; splitting it"
                        );
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
                            }
                        }
                        if let Some(reason) = first_retry_reason {
                            tracing::warn!(
                                docs = retry.len(),
                                attempt,
                                reason,
                                "bulk items rejected temporarily; retrying them after backoff"
                            );
                        }
                        pending = retry;
                    }
                }
            }
            refused
        })
    }

    /// `GET /` on the cluster: the readiness probe while no bulk request reports its state.
    pub async fn probe(&self) {
        let result = self
            .client
            .send::<Bytes, ()>(
                Method::Get,
                "/",
                HeaderMap::new(),
                None,
                None,
                Some(Duration::from_secs(5)),
            )
            .await;
        let state = match result {
            Ok(r) if r.status_code().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "HTTP {} from the cluster",
                r.status_code().as_u16()
            )),
            Err(e) => Err(format!("cluster unreachable: {}", error_chain(&e))),
        };
        self.health.cluster_result(state);
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
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let query = [(
            "filter_path",
            "errors,items.*.status,items.*.error.type,items.*.error.reason",
        )];
        let result = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                Some(&query),
                Some(body),
                None,
            )
            .instrument(span.clone())
            .await;
        let outcome = match result {
            Err(e) => ResponseOutcome::RetryAll(if e.is_timeout() {
                format!("timeout: {e}")
            } else {
                format!("transport error: {}", error_chain(&e))
            }),
            Ok(resp) => {
                let status = resp.status_code().as_u16();
                span.record("http.response.status_code", status);
                match resp.bytes().await {
                    Ok(bytes) => classify_response(status, &bytes, docs.len()),
                    Err(e) => {
                        ResponseOutcome::RetryAll(format!("reading the response failed: {e}"))
                    }
                }
            }
        };
        match &outcome {
            ResponseOutcome::RetryAll(reason) | ResponseOutcome::Overloaded(reason) => {
                self.health.cluster_result(Err(reason.clone()))
            }
            _ => self.health.cluster_result(Ok(())),
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
                    "ok"
                } else {
                    "partial"
                }
            }
            ResponseOutcome::RetryAll(_) => "retry",
            ResponseOutcome::Overloaded(_) => "overloaded",
            ResponseOutcome::Split(_) => "split",
        };
        if label != "ok" {
            span.record("otel.status_code", "ERROR");
        }
        m.bulk_request(label);
        tracing::debug!(parent: &span, took_ms = started.elapsed().as_millis() as u64, "bulk request done");
        outcome
    }
}

/// An error with its causes (`a: b: c`): the transport's own message hides the reason (a TLS
/// certificate refused, a connection refused) in its source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<BulkError>,
}

#[derive(Deserialize)]
struct BulkError {
    #[serde(rename = "type", default)]
    error_type: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The retry decision for one `_bulk` response; `sent` is the number of documents in the request.
pub fn classify_response(status: u16, body: &[u8], sent: usize) -> ResponseOutcome {
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    match status {
        200..=299 => {}
        400 | 413 => return ResponseOutcome::Split(format!("HTTP {status}: {}", snippet())),
        401 | 403 => {
            return ResponseOutcome::RetryAll(format!(
            "HTTP {status}: check ES_USERNAME/ES_PASSWORD/ES_API_KEY and the role's privileges: {}",
            snippet()
        ))
        }
        429 => return ResponseOutcome::Overloaded(format!("HTTP 429: {}", snippet())),
        _ => return ResponseOutcome::RetryAll(format!("HTTP {status}: {}", snippet())),
    }
    let parsed: BulkResponse = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return ResponseOutcome::RetryAll(format!(
                "unreadable bulk response ({e}): {}",
                snippet()
            ))
        }
    };
    if !parsed.errors && parsed.items.is_empty() {
        // filter_path drops nothing we need when there are no errors, but some servers omit items.
        return ResponseOutcome::Items(vec![ItemOutcome::Done; sent]);
    }
    let mut out: Vec<ItemOutcome> = parsed
        .items
        .into_iter()
        .take(sent)
        .map(|op| match op.into_values().next() {
            Some(item) => classify_item(item),
            None => ItemOutcome::Retry("empty bulk item".into()),
        })
        .collect();
    // A response with fewer items than documents sent: the missing ones were not confirmed.
    out.resize(
        sent,
        ItemOutcome::Retry("item missing from the bulk response".into()),
    );
    ResponseOutcome::Items(out)
}

fn classify_item(item: BulkItem) -> ItemOutcome {
    let (error_type, reason) = match item.error {
        Some(e) => (e.error_type, e.reason.unwrap_or_default()),
        None => (String::new(), String::new()),
    };
    match item.status {
        200..=299 => ItemOutcome::Done,
        // op_type `index` with a deterministic id: a conflict means a writer already stored it.
        409 => ItemOutcome::Done,
        429 => ItemOutcome::Overloaded(format!("429 {error_type}: {reason}")),
        _ if error_type == "es_rejected_execution_exception" => {
            ItemOutcome::Overloaded(format!("{} {error_type}: {reason}", item.status))
        }
        500..=599 => ItemOutcome::Retry(format!("{} {error_type}: {reason}", item.status)),
        s => ItemOutcome::Reject {
            error_type: if error_type.is_empty() {
                format!("http_{s}")
            } else {
                error_type
            },
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ok() {
        let body =
            br#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}"#;
        assert_eq!(
            classify_response(200, body, 2),
            ResponseOutcome::Items(vec![ItemOutcome::Done, ItemOutcome::Done])
        );
        assert_eq!(
            classify_response(200, br#"{"errors":false}"#, 3),
            ResponseOutcome::Items(vec![ItemOutcome::Done; 3])
        );
    }

    #[test]
    fn partial_failures_are_classified_per_item() {
        let body = br#"{"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [a]"}}},
            {"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}"#;
        let ResponseOutcome::Items(items) = classify_response(200, body, 6) else {
            panic!()
        };
        assert_eq!(items[0], ItemOutcome::Done);
        assert!(matches!(items[1], ItemOutcome::Overloaded(_)));
        assert_eq!(
            items[2],
            ItemOutcome::Reject {
                error_type: "mapper_parsing_exception".into(),
                reason: "failed to parse field [a]".into()
            }
        );
        assert_eq!(items[3], ItemOutcome::Done);
        assert!(matches!(items[4], ItemOutcome::Retry(_)));
        assert!(
            matches!(items[5], ItemOutcome::Retry(_)),
            "missing item is retried"
        );
    }

    #[test]
    fn request_level_statuses() {
        assert!(matches!(
            classify_response(429, b"{}", 1),
            ResponseOutcome::Overloaded(_)
        ));
        assert!(matches!(
            classify_response(503, b"", 1),
            ResponseOutcome::RetryAll(_)
        ));
        assert!(matches!(
            classify_response(401, b"", 1),
            ResponseOutcome::RetryAll(_)
        ));
        assert!(matches!(
            classify_response(413, b"", 1),
            ResponseOutcome::Split(_)
        ));
        assert!(matches!(
            classify_response(400, b"", 1),
            ResponseOutcome::Split(_)
        ));
        assert!(matches!(
            classify_response(200, b"<html>", 1),
            ResponseOutcome::RetryAll(_)
        ));
    }
}
