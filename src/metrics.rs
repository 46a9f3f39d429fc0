//! Metrics: every OpenTelemetry instrument the worker reports, named in one place.
//!
//! Instruments come from the global meter provider that [`crate::telemetry::init`] installs when
//! metrics export is on; otherwise they are no-ops and cost next to nothing. Histograms are
//! exported as base-2 exponential histograms (see `telemetry::exponential_histograms`), so
//! CloudWatch can compute their percentiles.
//!
//! | name | kind | unit | meaning |
//! |---|---|---|---|
//! | `f4a.documents.received` | counter | `{document}` | records read from objects (undecodable ones included) |
//! | `f4a.documents.indexed` | counter | `{document}` | accepted by the cluster |
//! | `f4a.documents.dead_lettered` | counter | `{document}` | written to the dead-letter index |
//! | `f4a.documents.dropped` | counter | `{document}` | dropped by the item limits, by `reason` (`sampled`, `drop_where`): never sent, never dead-lettered |
//! | `f4a.documents.changed` | counter | `{document}` | kept documents the item limits changed, by `reason` (`fields_filtered`, `max_fields`, `max_fields_per_index`, `max_depth`, `max_string_bytes`) |
//! | `f4a.retention.deleted` | counter | `{index}` | indices deleted by `RETENTION_DAYS` |
//! | `f4a.documents.retried` | counter | `{document}` | document attempts repeated after a failure |
//! | `f4a.bulk.requests` | counter | `{request}` | bulk requests by `outcome` (`ok`, `partial`, `retry`, `overloaded`, `split`) |
//! | `f4a.bulk.duration` | histogram (exponential) | `s` | bulk request latency |
//! | `f4a.messages` | counter | `{message}` | messages settled, by `outcome` (`deleted`, `released`, `ignored`, `invalid`) |
//! | `f4a.messages.in_flight` | up-down counter | `{message}` | messages being processed |
//! | `f4a.rate.configured` | gauge | `{document}/s` | `RATE_LIMIT_DOCS_PER_SEC` (0 = unlimited) |
//! | `f4a.rate.effective` | gauge | `{document}/s` | rate after adaptive decreases |
//! | `f4a.fleet.live_tasks` | gauge | `{task}` | live tasks in the last fleet read (`FLEET_DOCS_PER_SEC` only) |
//! | `f4a.fleet.share` | gauge | `{document}/s` | this task's share of the fleet budget (before adaptive decreases) |
//! | `f4a.fleet.fallback` | gauge | `1` | 1 while the task uses the fallback share `FLEET_DOCS_PER_SEC / FLEET_MAX_TASKS` |
//! | `f4a.rate_limiter.wait` | histogram (exponential) | `s` | time a bulk attempt waited for tokens |
//! | `f4a.lag` | histogram (exponential) | `s` | from the S3 event time to the document being indexed |
//! | `f4a.objects.resumed` | counter | `{resume}` | object bodies that broke mid-stream, by `outcome`: `resumed` (continued from the byte where it broke), `changed` (the object changed since it was opened: 412), `exhausted` (no attempt left); the last two release the message |
//! | `f4a.sqs.empty_receives` | counter | `{receive}` | long polls that returned no message |
//! | `f4a.credentials.refreshes` | counter | `{refresh}` | fetches of the AWS credentials the sink signs with, by `reason` (`initial`, `expiring`, `expired_token`) and `outcome` (`ok`, `failed`) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::metrics::{Counter, Histogram, ObservableGauge, UpDownCounter};
use opentelemetry::KeyValue;

/// The `outcome` of `f4a.messages`: how a message was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every document settled: deleted from the queue.
    Deleted,
    /// Unfinished: returned to the queue for a later try.
    Released,
    /// Nothing to index (`s3:TestEvent`, ObjectRemoved…): deleted.
    Ignored,
    /// Not a notification: returned to the queue for its redrive policy.
    Invalid,
}

impl MessageOutcome {
    pub fn label(self) -> &'static str {
        match self {
            MessageOutcome::Deleted => "deleted",
            MessageOutcome::Released => "released",
            MessageOutcome::Ignored => "ignored",
            MessageOutcome::Invalid => "invalid",
        }
    }
}

/// The `outcome` of `f4a.bulk.requests`: what one bulk attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkOutcome {
    /// Every item done.
    Ok,
    /// Some items failed (retried or refused).
    Partial,
    /// The whole request failed; retried.
    Retry,
    /// The whole request was answered 429; retried, and the rate lowered.
    Overloaded,
    /// Refused as a whole (400/413): split.
    Split,
}

impl BulkOutcome {
    pub fn label(self) -> &'static str {
        match self {
            BulkOutcome::Ok => "ok",
            BulkOutcome::Partial => "partial",
            BulkOutcome::Retry => "retry",
            BulkOutcome::Overloaded => "overloaded",
            BulkOutcome::Split => "split",
        }
    }
}

/// The `outcome` of `f4a.objects.resumed`: what came of a body stream that broke mid-object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Reopened from the byte where it broke; decoding went on.
    Resumed,
    /// The object changed since it was opened (412): the message is released.
    Changed,
    /// Every attempt failed: the message is released.
    Exhausted,
}

impl ResumeOutcome {
    pub fn label(self) -> &'static str {
        match self {
            ResumeOutcome::Resumed => "resumed",
            ResumeOutcome::Changed => "changed",
            ResumeOutcome::Exhausted => "exhausted",
        }
    }
}

/// The `reason` of `f4a.credentials.refreshes`: why the sink fetched AWS credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialRefresh {
    /// The first request.
    Initial,
    /// The cached ones are close to their expiry.
    Expiring,
    /// The cluster answered 403: the session token has expired.
    ExpiredToken,
}

impl CredentialRefresh {
    pub fn label(self) -> &'static str {
        match self {
            CredentialRefresh::Initial => "initial",
            CredentialRefresh::Expiring => "expiring",
            CredentialRefresh::ExpiredToken => "expired_token",
        }
    }
}

/// Running totals of the document counters, for the summary and stop log lines (OpenTelemetry
/// counters cannot be read back). Counted by the same calls as the counters, never apart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub received: u64,
    pub indexed: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    /// Dropped by the item limits.
    pub dropped: u64,
}

pub struct Metrics {
    docs_received: Counter<u64>,
    docs_indexed: Counter<u64>,
    docs_dead_lettered: Counter<u64>,
    docs_retried: Counter<u64>,
    docs_dropped: Counter<u64>,
    docs_changed: Counter<u64>,
    indices_deleted: Counter<u64>,
    bulk_requests: Counter<u64>,
    pub bulk_duration: Histogram<f64>,
    messages: Counter<u64>,
    pub messages_in_flight: UpDownCounter<i64>,
    pub rate_wait: Histogram<f64>,
    lag: Histogram<f64>,
    resumes: Counter<u64>,
    pub empty_receives: Counter<u64>,
    credential_refreshes: Counter<u64>,
    received: AtomicU64,
    indexed: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();
static GAUGES: OnceLock<Vec<ObservableGauge<f64>>> = OnceLock::new();
static FLEET_GAUGES: OnceLock<Vec<ObservableGauge<f64>>> = OnceLock::new();

/// The instruments; created on first use, after telemetry has installed the meter provider.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let m = opentelemetry::global::meter("f4a-indexer");
        let counter = |name: &'static str, unit: &'static str, desc: &'static str| {
            m.u64_counter(name)
                .with_unit(unit)
                .with_description(desc)
                .build()
        };
        let seconds = |name: &'static str, desc: &'static str| {
            m.f64_histogram(name)
                .with_unit("s")
                .with_description(desc)
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0, 1800.0, 3600.0,
                ])
                .build()
        };
        Metrics {
            docs_received: counter(
                "f4a.documents.received",
                "{document}",
                "Records read from S3 objects",
            ),
            docs_indexed: counter(
                "f4a.documents.indexed",
                "{document}",
                "Documents accepted by the cluster",
            ),
            docs_dead_lettered: counter(
                "f4a.documents.dead_lettered",
                "{document}",
                "Documents written to the dead-letter index",
            ),
            docs_retried: counter(
                "f4a.documents.retried",
                "{document}",
                "Document attempts repeated after a failure",
            ),
            docs_dropped: counter(
                "f4a.documents.dropped",
                "{document}",
                "Records dropped by the item limits, by reason",
            ),
            docs_changed: counter(
                "f4a.documents.changed",
                "{document}",
                "Kept documents the item limits changed, by reason",
            ),
            indices_deleted: counter(
                "f4a.retention.deleted",
                "{index}",
                "Indices deleted by RETENTION_DAYS",
            ),
            bulk_requests: counter("f4a.bulk.requests", "{request}", "Bulk requests by outcome"),
            bulk_duration: seconds("f4a.bulk.duration", "Bulk request latency"),
            messages: counter(
                "f4a.messages",
                "{message}",
                "SQS messages settled, by outcome",
            ),
            messages_in_flight: m
                .i64_up_down_counter("f4a.messages.in_flight")
                .with_unit("{message}")
                .with_description("SQS messages being processed")
                .build(),
            rate_wait: seconds(
                "f4a.rate_limiter.wait",
                "Time a bulk attempt waited for rate-limit tokens",
            ),
            lag: seconds(
                "f4a.lag",
                "From the S3 event time to the document being indexed",
            ),
            resumes: counter(
                "f4a.objects.resumed",
                "{resume}",
                "Object bodies that broke mid-stream, by outcome",
            ),
            empty_receives: counter(
                "f4a.sqs.empty_receives",
                "{receive}",
                "Long polls that returned no message",
            ),
            credential_refreshes: counter(
                "f4a.credentials.refreshes",
                "{refresh}",
                "Fetches of the AWS credentials the sink signs with",
            ),
            received: AtomicU64::new(0),
            indexed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    })
}

impl Metrics {
    pub fn bulk_request(&self, outcome: BulkOutcome) {
        self.bulk_requests
            .add(1, &[KeyValue::new("outcome", outcome.label())]);
    }

    pub fn message(&self, outcome: MessageOutcome) {
        self.messages
            .add(1, &[KeyValue::new("outcome", outcome.label())]);
    }

    /// Records read from an object, undecodable ones included.
    pub fn received(&self, n: u64) {
        self.docs_received.add(n, &[]);
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// A document accepted by the cluster, `lag` seconds after S3 announced its object (if known).
    pub fn indexed(&self, lag: Option<f64>) {
        self.docs_indexed.add(1, &[]);
        self.indexed.fetch_add(1, Ordering::Relaxed);
        if let Some(lag) = lag {
            self.lag.record(lag, &[]);
        }
    }

    pub fn dead_lettered(&self) {
        self.docs_dead_lettered.add(1, &[]);
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// Document attempts about to be repeated.
    pub fn retried(&self, n: u64) {
        self.docs_retried.add(n, &[]);
        self.retried.fetch_add(n, Ordering::Relaxed);
    }

    /// Records dropped by the item limits for `reason` (`sampled`, `drop_where`).
    pub fn dropped(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.docs_dropped.add(n, &[KeyValue::new("reason", reason)]);
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Kept documents the item limits changed for `reason`.
    pub fn changed(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.docs_changed.add(n, &[KeyValue::new("reason", reason)]);
        }
    }

    /// A body stream that broke mid-object, and what came of it.
    pub fn resume(&self, outcome: ResumeOutcome) {
        self.resumes
            .add(1, &[KeyValue::new("outcome", outcome.label())]);
    }

    pub fn index_deleted(&self) {
        self.indices_deleted.add(1, &[]);
    }

    /// A fetch of the sink's AWS credentials, and whether it worked.
    pub fn credentials_refreshed(&self, reason: CredentialRefresh, ok: bool) {
        self.credential_refreshes.add(
            1,
            &[
                KeyValue::new("reason", reason.label()),
                KeyValue::new("outcome", if ok { "ok" } else { "failed" }),
            ],
        );
    }

    pub fn totals(&self) -> Totals {
        Totals {
            received: self.received.load(Ordering::Relaxed),
            indexed: self.indexed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Registers the configured and effective rate gauges, read from `rate` at each export.
pub fn register_rate_gauges(rate: Arc<dyn Fn() -> (f64, f64) + Send + Sync>) {
    GAUGES.get_or_init(|| {
        let m = opentelemetry::global::meter("f4a-indexer");
        let configured = rate.clone();
        vec![
            m.f64_observable_gauge("f4a.rate.configured")
                .with_unit("{document}/s")
                .with_description("Configured insert rate (0 = unlimited)")
                .with_callback(move |o| o.observe(configured().0, &[]))
                .build(),
            m.f64_observable_gauge("f4a.rate.effective")
                .with_unit("{document}/s")
                .with_description("Insert rate after adaptive decreases (0 = unlimited)")
                .with_callback(move |o| o.observe(rate().1, &[]))
                .build(),
        ]
    });
}

/// Registers the fleet gauges, read from `fleet` at each export: (live tasks, own share,
/// 1.0 in fallback else 0.0).
pub fn register_fleet_gauges(fleet: Arc<dyn Fn() -> (f64, f64, f64) + Send + Sync>) {
    FLEET_GAUGES.get_or_init(|| {
        let m = opentelemetry::global::meter("f4a-indexer");
        let (live, share) = (fleet.clone(), fleet.clone());
        vec![
            m.f64_observable_gauge("f4a.fleet.live_tasks")
                .with_unit("{task}")
                .with_description("Live tasks in the last read of the fleet table")
                .with_callback(move |o| o.observe(live().0, &[]))
                .build(),
            m.f64_observable_gauge("f4a.fleet.share")
                .with_unit("{document}/s")
                .with_description("This task's share of FLEET_DOCS_PER_SEC")
                .with_callback(move |o| o.observe(share().1, &[]))
                .build(),
            m.f64_observable_gauge("f4a.fleet.fallback")
                .with_unit("1")
                .with_description("1 while the fleet table cannot be used (fallback share)")
                .with_callback(move |o| o.observe(fleet().2, &[]))
                .build(),
        ]
    });
}
