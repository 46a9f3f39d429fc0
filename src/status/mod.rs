//! Status: the live board behind `GET /status` and `f4a-indexer top`.
//!
//! The stages count into one process-wide [`Board`] of atomics ([`board`]), as cheaply as the
//! metrics do: the record path adds one relaxed `fetch_add` per chunk of documents handed to the
//! batcher, the sink one per bulk request and per batch, a message one per message. Documents
//! out (indexed + dead-lettered), retries and dead letters are the running totals that
//! [`crate::metrics`] already keeps. A sampler task ([`sample_every_second`]) copies the two
//! document totals into a ring of per-second samples, from which [`Board::snapshot`] computes
//! documents in and out per second over the last 10 s and the last minute, and the per-second
//! history `top` draws as sparklines.
//!
//! Last errors are kept per stage (receive, object, record, bulk, document, dead_letter, delete),
//! written only on the error paths (a mutex there is fine). They hold the worker's own reason
//! or the cluster's error type, never record contents: a refused document is reported by its
//! error type and index alone, because the cluster's reason may quote a field's value. URLs in
//! reasons lose their user-info (`https://user:pass@host` → `https://***@host`).
//!
//! [`Snapshot`] is the JSON shape of `/status`, shared with the `top` client, which reads it with
//! defaults for anything missing (an older or newer worker).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::{self, BulkOutcome, MessageOutcome};

mod snapshot;
pub use snapshot::{
    Bulk, Cluster, ClusterIdentity, Documents, LastError, Messages, RateStatus, Rates, Snapshot,
    Sqs,
};

/// Per-second samples kept: two minutes of sparkline, the last minute's rate.
const HISTORY_SECS: usize = 120;
/// Longest reason kept for a last error (a cluster's HTML error page, say, is cut).
const MAX_REASON: usize = 300;

/// Where a last error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// SQS `ReceiveMessage` failed.
    Receive,
    /// An S3 object could not be read; its message goes back to the queue.
    Object,
    /// A record could not be decoded; it was dead-lettered.
    Record,
    /// A bulk request (or some of its items) failed temporarily and is retried.
    Bulk,
    /// The cluster refused a document for good; it was dead-lettered.
    Document,
    /// The cluster refused a dead-letter entry; its message stays in the queue.
    DeadLetter,
    /// SQS `DeleteMessage` was given up; the message will be redelivered.
    Delete,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Object => "object",
            Stage::Record => "record",
            Stage::Bulk => "bulk",
            Stage::Document => "document",
            Stage::DeadLetter => "dead_letter",
            Stage::Delete => "delete",
        }
    }
}

/// What the pipeline tells the board once it is built: the live rates and the configured limits.
pub struct Attached {
    /// (configured, effective) documents per second, 0 = unlimited.
    pub rate: Arc<dyn Fn() -> (f64, f64) + Send + Sync>,
    /// `MAX_IN_FLIGHT_MESSAGES`.
    pub max_in_flight: usize,
    /// `BULK_CONCURRENCY`.
    pub bulk_slots: usize,
    /// The queue's name (the last part of its URL).
    pub queue: String,
}

struct LastErrorState {
    reason: String,
    at: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    count: u64,
}

/// One per-second sample of the document totals.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    docs_in: u64,
    docs_out: u64,
}

/// The process-wide counters and gauges (see the module doc).
pub struct Board {
    started: Instant,
    /// Documents handed to the batcher (records read, undecodable ones included).
    docs_in: AtomicU64,
    messages_in_flight: AtomicI64,
    bulk_busy: AtomicI64,
    bulk_requests: [AtomicU64; 5],
    messages: [AtomicU64; 4],
    errors: Mutex<BTreeMap<Stage, LastErrorState>>,
    cluster: Mutex<Option<ClusterIdentity>>,
    samples: Mutex<VecDeque<Sample>>,
    attached: Mutex<Option<Attached>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static BOARD: OnceLock<Board> = OnceLock::new();

/// The board; created on first use.
pub fn board() -> &'static Board {
    BOARD.get_or_init(Board::new)
}

const BULK_OUTCOMES: [BulkOutcome; 5] = [
    BulkOutcome::Ok,
    BulkOutcome::Partial,
    BulkOutcome::Retry,
    BulkOutcome::Overloaded,
    BulkOutcome::Split,
];
const MESSAGE_OUTCOMES: [MessageOutcome; 4] = [
    MessageOutcome::Deleted,
    MessageOutcome::Released,
    MessageOutcome::Ignored,
    MessageOutcome::Invalid,
];

/// Decrements the busy bulk slots when the delivery ends, however it ends.
pub struct BulkSlot(&'static Board);

impl Drop for BulkSlot {
    fn drop(&mut self) {
        self.0.bulk_busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements the messages in flight when the message is settled, however it ends.
pub struct MessageSlot(&'static Board);

impl Drop for MessageSlot {
    fn drop(&mut self) {
        self.0.messages_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Board {
    fn new() -> Board {
        Board {
            started: Instant::now(),
            docs_in: AtomicU64::new(0),
            messages_in_flight: AtomicI64::new(0),
            bulk_busy: AtomicI64::new(0),
            bulk_requests: Default::default(),
            messages: Default::default(),
            errors: Mutex::new(BTreeMap::new()),
            cluster: Mutex::new(None),
            samples: Mutex::new(VecDeque::with_capacity(HISTORY_SECS + 1)),
            attached: Mutex::new(None),
        }
    }

    /// The pipeline is built: rates and limits can be read from now on.
    pub fn attach(&self, a: Attached) {
        *lock(&self.attached) = Some(a);
    }

    /// `n` documents handed to the batcher.
    pub fn docs_in(&self, n: usize) {
        self.docs_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A batch enters the sink; the slot is free again when the guard is dropped.
    pub fn bulk_slot(&'static self) -> BulkSlot {
        self.bulk_busy.fetch_add(1, Ordering::Relaxed);
        BulkSlot(self)
    }

    /// A message is being worked on until the guard is dropped.
    pub fn message_slot(&'static self) -> MessageSlot {
        self.messages_in_flight.fetch_add(1, Ordering::Relaxed);
        MessageSlot(self)
    }

    pub fn bulk_request(&self, outcome: BulkOutcome) {
        let i = BULK_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.bulk_requests[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn message(&self, outcome: MessageOutcome) {
        let i = MESSAGE_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.messages[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The last error of `stage` (an error path: the lock costs nothing that matters here).
    pub fn error(&self, stage: Stage, reason: &str) {
        let reason = redact(reason);
        let mut errors = lock(&self.errors);
        let e = errors.entry(stage).or_insert_with(|| LastErrorState {
            reason: String::new(),
            at: Instant::now(),
            wall: chrono::Utc::now(),
            count: 0,
        });
        e.reason = reason;
        e.at = Instant::now();
        e.wall = chrono::Utc::now();
        e.count += 1;
    }

    pub fn cluster_identity(&self, id: ClusterIdentity) {
        *lock(&self.cluster) = Some(id);
    }

    pub fn cluster_known(&self) -> bool {
        lock(&self.cluster).is_some()
    }

    /// Takes one sample of the document totals (the sampler calls this every second).
    pub fn sample(&self) {
        let t = metrics::get().totals();
        let s = Sample {
            at: Instant::now(),
            docs_in: self.docs_in.load(Ordering::Relaxed),
            docs_out: t.indexed + t.dead_lettered,
        };
        let mut samples = lock(&self.samples);
        if samples.len() > HISTORY_SECS {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// The JSON of `/status`; `live` and `ready` are the bodies of `/healthz` and `/readyz`.
    pub fn snapshot(&self, live: &serde_json::Value, ready: &serde_json::Value) -> Snapshot {
        let totals = metrics::get().totals();
        let now = Sample {
            at: Instant::now(),
            docs_in: self.docs_in.load(Ordering::Relaxed),
            docs_out: totals.indexed + totals.dead_lettered,
        };
        let samples: Vec<Sample> = lock(&self.samples).iter().copied().collect();
        let rate = |secs: u64| Rates {
            docs_in: per_sec(&samples, &now, secs, |s| s.docs_in),
            docs_out: per_sec(&samples, &now, secs, |s| s.docs_out),
        };
        let (history_in, history_out) = history(&samples);
        let (attached_rate, max_in_flight, bulk_slots, queue) = match &*lock(&self.attached) {
            Some(a) => (
                Some((a.rate)()),
                a.max_in_flight,
                a.bulk_slots,
                a.queue.clone(),
            ),
            None => (None, 0, 0, String::new()),
        };
        let (configured, effective) = attached_rate.unwrap_or((0.0, 0.0));
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("unknown").to_string();
        let count = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let errors = lock(&self.errors)
            .iter()
            .map(|(stage, e)| {
                (
                    stage.label().to_string(),
                    LastError {
                        reason: e.reason.clone(),
                        at: e.wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        age_secs: e.at.elapsed().as_secs(),
                        count: e.count,
                    },
                )
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            live: text(live, "status"),
            ready: text(ready, "status"),
            documents: Documents {
                last_10s: rate(10),
                last_1m: rate(60),
                received: totals.received,
                read: now.docs_in,
                indexed: totals.indexed,
                dead_lettered: totals.dead_lettered,
                retried: totals.retried,
                history_in,
                history_out,
            },
            rate: RateStatus {
                configured,
                effective,
            },
            messages: Messages {
                in_flight: self.messages_in_flight.load(Ordering::Relaxed).max(0) as u64,
                max_in_flight: max_in_flight as u64,
                deleted: count(&self.messages[0]),
                released: count(&self.messages[1]),
                ignored: count(&self.messages[2]),
                invalid: count(&self.messages[3]),
            },
            bulk: Bulk {
                busy: self.bulk_busy.load(Ordering::Relaxed).max(0) as u64,
                slots: bulk_slots as u64,
                ok: count(&self.bulk_requests[0]),
                partial: count(&self.bulk_requests[1]),
                retry: count(&self.bulk_requests[2]),
                overloaded: count(&self.bulk_requests[3]),
                split: count(&self.bulk_requests[4]),
            },
            cluster: Cluster {
                state: text(ready, "cluster"),
                identity: lock(&self.cluster).clone(),
            },
            sqs: Sqs {
                state: text(ready, "sqs"),
                queue,
            },
            last_errors: errors,
        }
    }
}

/// Documents per second over the last `secs` seconds: from the newest sample at least `secs`
/// old (or the oldest there is) to now; 0 before the first sample.
fn per_sec(samples: &[Sample], now: &Sample, secs: u64, f: impl Fn(&Sample) -> u64) -> f64 {
    let window = Duration::from_secs(secs);
    let from = samples
        .iter()
        .rev()
        .find(|s| now.at.saturating_duration_since(s.at) >= window)
        .or(samples.first());
    let Some(from) = from else {
        return 0.0;
    };
    let elapsed = now.at.saturating_duration_since(from.at).as_secs_f64();
    if elapsed < 0.5 {
        return 0.0;
    }
    let per_sec = f(now).saturating_sub(f(from)) as f64 / elapsed;
    (per_sec * 10.0).round() / 10.0
}

/// Documents in and out in each second between consecutive samples, oldest first.
fn history(samples: &[Sample]) -> (Vec<u64>, Vec<u64>) {
    samples
        .windows(2)
        .map(|w| {
            (
                w[1].docs_in.saturating_sub(w[0].docs_in),
                w[1].docs_out.saturating_sub(w[0].docs_out),
            )
        })
        .unzip()
}

/// Runs the sampler until `stop`.
pub async fn sample_every_second(stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => board().sample(),
        }
    }
}

/// `reason` without user-info in URLs, cut to [`MAX_REASON`] characters.
fn redact(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(MAX_REASON + 3));
    let mut rest = reason;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..authority_end]);
            }
            None => out.push_str(&tail[..authority_end]),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    if out.chars().count() > MAX_REASON {
        out = out.chars().take(MAX_REASON).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, docs_in: u64, docs_out: u64) -> Sample {
        Sample {
            at,
            docs_in,
            docs_out,
        }
    }

    #[test]
    fn rates_over_windows_and_history() {
        let t0 = Instant::now();
        let s: Vec<Sample> = (0..=60)
            .map(|i| sample(t0 + Duration::from_secs(i), i * 100, i * 50))
            .collect();
        let now = sample(t0 + Duration::from_secs(60), 6000, 3000);
        assert_eq!(per_sec(&s, &now, 10, |s| s.docs_in), 100.0);
        assert_eq!(per_sec(&s, &now, 60, |s| s.docs_out), 50.0);
        // Fewer samples than the window: the oldest there is.
        let young = &s[55..];
        assert_eq!(per_sec(young, &now, 60, |s| s.docs_in), 100.0);
        assert_eq!(per_sec(&[], &now, 10, |s| s.docs_in), 0.0);
        let (h_in, h_out) = history(&s);
        assert_eq!(h_in.len(), 60);
        assert!(h_in.iter().all(|&n| n == 100) && h_out.iter().all(|&n| n == 50));
    }

    #[test]
    fn reasons_lose_credentials_and_length() {
        assert_eq!(
            redact("error sending request for url (https://elastic:s3cret@es.example:9200/_bulk)"),
            "error sending request for url (https://***@es.example:9200/_bulk)"
        );
        assert_eq!(
            redact("http://host:9200/ refused"),
            "http://host:9200/ refused"
        );
        assert!(redact(&"x".repeat(1000)).chars().count() <= MAX_REASON + 1);
    }

    #[test]
    fn snapshot_counts_and_serializes() {
        // A board of its own (leaked: slot guards need a 'static board), not the process's.
        let b: &'static Board = Box::leak(Box::new(Board::new()));
        b.attach(Attached {
            rate: Arc::new(|| (500.0, 350.0)),
            max_in_flight: 10,
            bulk_slots: 2,
            queue: "q".into(),
        });
        let slot = b.bulk_slot();
        b.bulk_request(BulkOutcome::Overloaded);
        b.message(MessageOutcome::Released);
        b.docs_in(64);
        b.error(Stage::Bulk, "HTTP 429: too many");
        b.error(Stage::Bulk, "HTTP 503: unavailable");
        use serde_json::json;
        let ready = json!({"status": "ready", "sqs": "ok", "cluster": "ok"});
        let s = b.snapshot(&json!({"status": "ok"}), &ready);
        assert_eq!((s.bulk.busy, s.bulk.slots, s.bulk.overloaded), (1, 2, 1));
        assert_eq!(s.messages.released, 1);
        assert_eq!(s.documents.read, 64);
        assert_eq!((s.rate.configured, s.rate.effective), (500.0, 350.0));
        assert_eq!(s.last_errors["bulk"].count, 2);
        assert_eq!(s.last_errors["bulk"].reason, "HTTP 503: unavailable");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["documents"]["last_10s"]["in"], 0.0);
        assert_eq!(json["cluster"]["state"], "ok");
        let back: Snapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back.bulk.slots, 2);
        drop(slot);
        assert_eq!(b.snapshot(&json!({}), &ready).bulk.busy, 0);
    }
}
