//! Every observable outcome, named in one place: the log line and the metric that go with it.
//!
//! The stages report what happened through these; nothing else writes these lines or counts these
//! outcomes, so a log search, a dashboard and an alarm see the same events under the same names
//! (the metrics' `outcome` labels are the enums of [`crate::metrics`]). Lines are written in the
//! caller's span (`process`, `object`, `bulk`), which carries the message id and the object.
//!
//! Per-record warnings go through a [`Throttle`]: ten at once, then one every six seconds per
//! kind, each saying how many were suppressed before it. One bad object cannot flood the logs,
//! and nothing is lost: the object's `object read` line counts every record and every
//! undecodable one, and each dead-letter entry holds the reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::metrics;
pub(crate) use crate::metrics::{BulkOutcome, MessageOutcome, ResumeOutcome};
use crate::status::{self, Stage};

/// How a message was settled. Emitted in its `process` span.
pub(crate) enum MessageSettled<'a> {
    /// Every document indexed or dead-lettered.
    Deleted { indexed: u64, dead_lettered: u64 },
    /// Nothing to index.
    Ignored { reason: &'a str },
    /// The body is not a notification: released for the queue's redrive policy.
    NotANotification {
        error: &'a str,
        body_head: &'a str,
        retry_in_secs: i32,
    },
    /// An object could not be read (S3, network): released for a later try.
    Unfinished { reason: &'a str, retry_in_secs: i32 },
    /// Some documents were neither indexed nor dead-lettered: released.
    Incomplete {
        indexed: u64,
        dead_lettered: u64,
        retry_in_secs: i32,
    },
}

impl MessageSettled<'_> {
    pub(crate) fn outcome(&self) -> MessageOutcome {
        match self {
            MessageSettled::Deleted { .. } => MessageOutcome::Deleted,
            MessageSettled::Ignored { .. } => MessageOutcome::Ignored,
            MessageSettled::NotANotification { .. } => MessageOutcome::Invalid,
            MessageSettled::Unfinished { .. } | MessageSettled::Incomplete { .. } => {
                MessageOutcome::Released
            }
        }
    }

    pub(crate) fn emit(&self) {
        let error_status = || {
            tracing::Span::current().record("otel.status_code", "ERROR");
        };
        match *self {
            MessageSettled::Deleted {
                indexed,
                dead_lettered,
            } => tracing::info!(indexed, dead_lettered, "message done; deleting it"),
            MessageSettled::Ignored { reason } => {
                tracing::info!(reason, "nothing to index; deleting the message")
            }
            MessageSettled::NotANotification {
                error,
                body_head,
                retry_in_secs,
            } => {
                tracing::warn!(error, body_head, retry_in_secs, "message is not an S3 notification; leaving it in the queue for its redrive policy");
                error_status();
            }
            MessageSettled::Unfinished {
                reason,
                retry_in_secs,
            } => {
                status::board().error(Stage::Object, reason);
                tracing::warn!(
                    reason,
                    retry_in_secs,
                    "message not finished; returning it to the queue"
                );
                error_status();
            }
            MessageSettled::Incomplete {
                indexed,
                dead_lettered,
                retry_in_secs,
            } => tracing::error!(
                indexed,
                dead_lettered,
                retry_in_secs,
                "some documents were neither indexed nor dead-lettered; keeping the message"
            ),
        }
        metrics::get().message(self.outcome());
        status::board().message(self.outcome());
    }
}

/// An object was read to its end (possibly a corrupt one: its damage is dead-lettered).
pub(crate) struct ObjectRead {
    pub(crate) records: u64,
    pub(crate) undecodable: u64,
    pub(crate) timestamp_fallbacks: u64,
    pub(crate) timestamp_invalid: u64,
    /// Dropped by `SAMPLE_PERCENT` and by `DROP_WHERE`: never sent, never dead-lettered.
    pub(crate) dropped_sampled: u64,
    pub(crate) dropped_where: u64,
    /// Kept documents the item limits changed.
    pub(crate) changed: crate::object::ChangeCounts,
    pub(crate) compressed_bytes: u64,
    pub(crate) decompressed_bytes: u64,
    /// As detected from the content (`gzip`, `zstd`, `snappy`, `hadoop-snappy`, `zip`, `none`).
    pub(crate) compression: &'static str,
}

impl ObjectRead {
    pub(crate) fn emit(&self) {
        tracing::info!(
            records = self.records,
            undecodable = self.undecodable,
            timestamp_fallbacks = self.timestamp_fallbacks,
            timestamp_invalid = self.timestamp_invalid,
            dropped = self.dropped_sampled + self.dropped_where,
            dropped_sampled = self.dropped_sampled,
            dropped_drop_where = self.dropped_where,
            fields_filtered = self.changed.fields_filtered,
            capped_max_fields = self.changed.max_fields,
            capped_max_fields_per_index = self.changed.max_fields_per_index,
            capped_max_depth = self.changed.max_depth,
            capped_max_string_bytes = self.changed.max_string_bytes,
            compressed_bytes = self.compressed_bytes,
            decompressed_bytes = self.decompressed_bytes,
            compression = self.compression,
            "object read"
        );
        let m = metrics::get();
        m.received(self.records + self.undecodable);
        m.dropped("sampled", self.dropped_sampled);
        m.dropped("drop_where", self.dropped_where);
        let c = &self.changed;
        m.changed("fields_filtered", c.fields_filtered);
        m.changed("max_fields", c.max_fields);
        m.changed("max_fields_per_index", c.max_fields_per_index);
        m.changed("max_depth", c.max_depth);
        m.changed("max_string_bytes", c.max_string_bytes);
    }
}

pub(crate) fn object_missing(bucket: &str, key: &str) {
    tracing::warn!(bucket, key, "object no longer exists; skipping it");
}

/// An object's body stream broke mid-object at byte `offset` (of the stored, compressed bytes)
/// and what came of it: reopened from there (`Resumed`, after `attempt` tries), or given up and
/// the message released (`Changed`, `Exhausted`).
pub(crate) fn object_resume(
    bucket: &str,
    key: &str,
    offset: u64,
    attempt: u32,
    outcome: ResumeOutcome,
    error: &str,
) {
    match outcome {
        ResumeOutcome::Resumed => tracing::warn!(
            bucket,
            key,
            offset,
            attempt,
            error,
            "object body broke mid-stream; resumed from the byte where it broke"
        ),
        ResumeOutcome::Changed => tracing::warn!(
            bucket,
            key,
            offset,
            error,
            "object body broke mid-stream and the object changed since it was opened; releasing the message"
        ),
        ResumeOutcome::Exhausted => tracing::warn!(
            bucket,
            key,
            offset,
            attempt,
            error,
            "object body broke mid-stream and could not be reopened; releasing the message"
        ),
    }
    metrics::get().resume(outcome);
}

/// A record that cannot be decoded; its dead-letter entry follows.
pub(crate) fn record_undecodable(bucket: &str, key: &str, offset: u64, reason: &str) {
    // The reason is the worker's own (the record's bytes are in the dead-letter entry).
    status::board().error(
        Stage::Record,
        &format!("s3://{bucket}/{key} at offset {offset}: {reason}"),
    );
    static THROTTLE: LazyLock<Throttle> = LazyLock::new(Throttle::new);
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::warn!(
            bucket,
            key,
            offset,
            reason,
            suppressed,
            "undecodable record; dead-lettering it"
        );
    }
}

/// Where a document the cluster refused came from.
pub(crate) struct Refusal<'a> {
    pub(crate) index: &'a str,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
    pub(crate) offset: u64,
    pub(crate) error_type: &'a str,
    pub(crate) reason: &'a str,
}

/// The cluster refused a document for good; its dead-letter entry follows.
pub(crate) fn document_refused(r: &Refusal<'_>) {
    // Not the cluster's reason: it may quote a field's value.
    status::board().error(Stage::Document, &refused_summary(r));
    static THROTTLE: LazyLock<Throttle> = LazyLock::new(Throttle::new);
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::warn!(
            index = r.index,
            bucket = r.bucket,
            key = r.key,
            offset = r.offset,
            error_type = r.error_type,
            reason = r.reason,
            suppressed,
            "document refused by the cluster; dead-lettering it"
        );
    }
}

/// The cluster refused a dead-letter entry too: its token is dropped, its message kept.
pub(crate) fn dead_letter_refused(r: &Refusal<'_>) {
    status::board().error(Stage::DeadLetter, &refused_summary(r));
    static THROTTLE: LazyLock<Throttle> = LazyLock::new(Throttle::new);
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::error!(
            index = r.index,
            bucket = r.bucket,
            key = r.key,
            offset = r.offset,
            error_type = r.error_type,
            reason = r.reason,
            suppressed,
            "dead-letter entry refused; its message stays in the queue"
        );
    }
}

/// The cluster refused documents because of how the worker is configured (Serverless refusing
/// document ids): said once as an error naming the fix (then at debug level: `/readyz` keeps
/// saying it); the messages are kept.
pub(crate) fn configuration_refused(reason: &str, docs: usize, first: bool) {
    if first {
        tracing::error!(
            reason,
            docs,
            "the cluster refuses this configuration; documents are neither indexed nor dead-lettered and their messages stay in the queue until the worker is reconfigured"
        );
    } else {
        tracing::debug!(
            docs,
            reason,
            "documents refused because of the configuration; messages kept"
        );
    }
}

/// Who the cluster is, said once at start-up (or when it first answers).
pub(crate) fn cluster_identified(identity: &str, url: &str) {
    tracing::info!(cluster = identity, es_url = url, "cluster identified");
}

/// A refusal for `/status`: where and what kind, without the cluster's reason.
fn refused_summary(r: &Refusal<'_>) -> String {
    format!(
        "{} in index {} (s3://{}/{} at offset {})",
        r.error_type, r.index, r.bucket, r.key, r.offset
    )
}

/// What one bulk attempt led to, logged in the delivery loop.
pub(crate) enum BulkRetry<'a> {
    /// The whole request failed: all its documents again, after a backoff.
    Request {
        docs: usize,
        attempt: u32,
        reason: &'a str,
    },
    /// Refused as a whole: split in halves.
    Split { docs: usize, reason: &'a str },
    /// Some items failed temporarily: those again, after a backoff.
    Items {
        docs: usize,
        attempt: u32,
        reason: &'a str,
    },
}

impl BulkRetry<'_> {
    pub(crate) fn emit(&self) {
        let (BulkRetry::Request { reason, .. }
        | BulkRetry::Split { reason, .. }
        | BulkRetry::Items { reason, .. }) = *self;
        status::board().error(Stage::Bulk, reason);
        match *self {
            BulkRetry::Request {
                docs,
                attempt,
                reason,
            } => tracing::warn!(
                docs,
                attempt,
                reason,
                "bulk request failed; retrying after backoff"
            ),
            BulkRetry::Split { docs, reason } => tracing::warn!(
                docs,
                reason,
                "bulk request refused as a whole; splitting it"
            ),
            BulkRetry::Items {
                docs,
                attempt,
                reason,
            } => tracing::warn!(
                docs,
                attempt,
                reason,
                "bulk items rejected temporarily; retrying them after backoff"
            ),
        }
    }
}

/// The adaptive limiter lowered the rate after an overload signal.
pub(crate) fn rate_lowered(effective_rate: f64, configured_rate: u32) {
    tracing::warn!(
        effective_rate = effective_rate.round() as u64,
        configured_rate,
        "cluster overloaded; lowering the insert rate"
    );
}

/// At most a burst of lines at once, then one per period; counts what it suppresses.
pub(crate) struct Throttle {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl Throttle {
    const BURST: u32 = 10;
    const PERIOD: Duration = Duration::from_secs(6);

    fn new() -> Throttle {
        let quota = Quota::with_period(Self::PERIOD)
            .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(
                std::num::NonZeroU32::new(Self::BURST).unwrap_or(std::num::NonZeroU32::MIN),
            );
        Throttle {
            limiter: RateLimiter::direct(quota),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write this line, `n` were suppressed since the last one; `None`: suppress it.
    pub(crate) fn admit(&self) -> Option<u64> {
        match self.limiter.check() {
            Ok(()) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_a_burst_through_then_counts_what_it_suppresses() {
        let t = Throttle::new();
        for _ in 0..Throttle::BURST {
            assert_eq!(t.admit(), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(t.admit(), None);
        }
        assert_eq!(t.suppressed.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn message_outcomes_map_to_their_labels() {
        let released = MessageSettled::Unfinished {
            reason: "x",
            retry_in_secs: 5,
        };
        assert_eq!(released.outcome().label(), "released");
        let incomplete = MessageSettled::Incomplete {
            indexed: 1,
            dead_lettered: 0,
            retry_in_secs: 5,
        };
        assert_eq!(incomplete.outcome(), MessageOutcome::Released);
        let invalid = MessageSettled::NotANotification {
            error: "e",
            body_head: "b",
            retry_in_secs: 5,
        };
        assert_eq!(invalid.outcome().label(), "invalid");
    }
}
