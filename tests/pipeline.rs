//! The message lifecycle over the in-memory queue, store and cluster, on paused time: delete vs
//! release, the growing redelivery delay, the heartbeat's cadence, the shutdown drain and its
//! deadline, the receive backoff. No LocalStack, no search engine; each test runs in well under a
//! second of real time whatever its virtual minutes.
//!
//! The real binary against LocalStack and a real search engine is tested in `e2e.rs`,
//! `faults.rs`, `rate.rs` and `telemetry.rs`; these tests pin the timing rules those cannot
//! afford to wait for.

use std::sync::Arc;
use std::time::Duration;

use f4a_indexer::config::Config;
use f4a_indexer::pipeline::{self, RunOptions, Wings};
use f4a_indexer::sink::memory::MemoryCluster;
use f4a_indexer::source::memory::{Call, MemoryQueue, MemoryStore};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "b";
/// The index of the records `ndjson` makes.
const INDEX: &str = "f4a-2026.11.24";
const VISIBILITY: u64 = 30;

struct World {
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    cluster: Arc<MemoryCluster>,
    shutdown: CancellationToken,
}

impl World {
    fn new() -> World {
        World {
            queue: Arc::new(MemoryQueue::new(
                "q",
                Duration::from_secs(VISIBILITY),
                Duration::from_secs(1),
            )),
            store: Arc::new(MemoryStore::new()),
            cluster: Arc::new(MemoryCluster::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts the pipeline with the test defaults and `vars` on top.
    fn start(&self, opts: RunOptions, vars: &[(&str, &str)]) -> JoinHandle<anyhow::Result<()>> {
        let visibility = VISIBILITY.to_string();
        let mut all = vec![
            ("SQS_QUEUE_URL", "http://memory/q"),
            ("SQS_WAIT_TIME_SECONDS", "1"),
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", visibility.as_str()),
            ("HEALTH_ADDR", "off"),
            ("RATE_LIMIT_DOCS_PER_SEC", "0"),
            ("BULK_FLUSH_INTERVAL_MS", "100"),
            ("RETRY_INITIAL_BACKOFF_MS", "100"),
            ("RETRY_MAX_BACKOFF_MS", "2000"),
        ];
        all.extend_from_slice(vars);
        let cfg = Config::from_lookup(|k| {
            all.iter()
                .rev()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .expect("test configuration");
        let wings = Wings {
            queue: self.queue.clone(),
            store: self.store.clone(),
            cluster: self.cluster.clone(),
            fleet: None,
            admin: Arc::new(f4a_indexer::sink::admin::MemoryAdmin::new()),
        };
        tokio::spawn(pipeline::run_with(cfg, wings, opts, self.shutdown.clone()))
    }

    /// Stores `n` records under `key` and announces them; returns the message id.
    fn object(&self, key: &str, n: usize) -> String {
        self.store.put(BUCKET, key, ndjson(n));
        self.queue.send(&notification(key))
    }

    /// Shutdown (SIGTERM) after `after`.
    fn stop_after(&self, after: Duration) {
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            token.cancel();
        });
    }

    /// The visibility changes of message `id`: (seconds since `t0`, new visibility, batch).
    fn visibility_changes(&self, id: &str, t0: Instant) -> Vec<(f64, i32, bool)> {
        self.queue
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::ChangeVisibility {
                    at,
                    id: of,
                    seconds,
                    batch,
                } if of == id => Some(((at - t0).as_secs_f64(), seconds, batch)),
                _ => None,
            })
            .collect()
    }
}

fn idle() -> RunOptions {
    RunOptions {
        exit_when_idle: true,
    }
}

fn notification(key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}}
    }]})
    .to_string()
}

fn ndjson(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = json!({"i": i, "@timestamp": "2026-11-24T10:00:00.000Z", "msg": "x"});
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Waits for the pipeline to return; a pipeline that never does fails after a (paused, so
/// instant) hour instead of hanging.
async fn finished(run: JoinHandle<anyhow::Result<()>>) {
    tokio::time::timeout(Duration::from_secs(3600), run)
        .await
        .expect("the pipeline never returned")
        .expect("pipeline task")
        .expect("pipeline result");
}

#[tokio::test(start_paused = true)]
async fn settled_messages_are_deleted_and_unfinished_ones_released() {
    let w = World::new();
    let good = w.object("good.json", 20);
    let garbage = w.queue.send("this is not a notification");
    w.store.fail(BUCKET, "denied.json", "AccessDenied");
    let denied = w.queue.send(&notification("denied.json"));
    let test_event = w
        .queue
        .send(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#);
    let missing = w.queue.send(&notification("gone.json"));
    let t0 = Instant::now();
    finished(w.start(idle(), &[])).await;

    let mut deleted = w.queue.deleted();
    deleted.sort();
    let mut expected = vec![good, test_event, missing];
    expected.sort();
    assert_eq!(deleted, expected, "settled (or nothing to do): deleted");
    assert_eq!(w.cluster.docs(INDEX).len(), 20);
    for id in [&garbage, &denied] {
        let changes = w.visibility_changes(id, t0);
        assert_eq!(changes.len(), 1, "{id}: {changes:?}");
        assert_eq!(changes[0].1, 5, "released with the first redelivery delay");
        assert_eq!(w.queue.receive_count(id), Some(1));
    }
    assert_eq!(
        w.queue.depth(),
        (0, 2),
        "released messages wait out their delay"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.queue.depth(), (2, 0), "then they are visible again");
}

#[tokio::test(start_paused = true)]
async fn redelivery_delay_grows_with_each_receive_up_to_the_visibility_timeout() {
    let w = World::new();
    let poison = w.queue.send("{\"not\": \"a notification\"}");
    let t0 = Instant::now();
    w.stop_after(Duration::from_secs(120));
    finished(w.start(RunOptions::default(), &[])).await;

    let changes = w.visibility_changes(&poison, t0);
    let delays: Vec<i32> = changes.iter().map(|c| c.1).collect();
    // 5, 10, 20, then capped at SQS_VISIBILITY_TIMEOUT_SECONDS (30).
    assert_eq!(&delays[..5], [5, 10, 20, 30, 30], "{changes:?}");
    // Each release comes when the previous delay has passed: the message is received again as
    // soon as it is visible (the worker long-polls), and released at once.
    for pair in changes.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            (gap - f64::from(pair[0].1)).abs() < 0.5,
            "released {gap:.1}s after a {}s delay",
            pair[0].1
        );
    }
    assert!(w.queue.deleted().is_empty(), "never deleted: redrive's job");
}

#[tokio::test(start_paused = true)]
async fn heartbeat_extends_visibility_every_third_of_the_timeout() {
    let w = World::new();
    // Longer than two visibility timeouts.
    w.cluster.set_latency(Duration::from_secs(65));
    let id = w.object("slow.json", 5);
    let t0 = Instant::now();
    finished(w.start(idle(), &[])).await;

    let beats = w.visibility_changes(&id, t0);
    let times: Vec<f64> = beats.iter().map(|b| b.0).collect();
    assert_eq!(beats.len(), 6, "at 10, 20 … 60 s: {beats:?}");
    for (k, (at, seconds, batch)) in beats.iter().enumerate() {
        let due = 10.0 * (k + 1) as f64;
        assert!((at - due).abs() < 0.5, "beat {k} at {at:.1}s: {times:?}");
        assert_eq!(*seconds, VISIBILITY as i32, "extended to the full timeout");
        assert!(batch, "the heartbeat batches its changes");
    }
    assert_eq!(w.queue.deleted(), std::slice::from_ref(&id));
    let received: usize = w
        .queue
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Receive { ids, .. } if ids.contains(&id)))
        .count();
    assert_eq!(received, 1, "never handed out again while it was worked on");
    assert_eq!(w.cluster.docs(INDEX).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_messages_in_flight_finish() {
    let w = World::new();
    w.cluster.set_latency(Duration::from_secs(5));
    let id = w.object("a.json", 10);
    let t0 = Instant::now();
    w.stop_after(Duration::from_secs(1));
    finished(w.start(RunOptions::default(), &[("SHUTDOWN_TIMEOUT_SECS", "25")])).await;

    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "returned once drained: {took:?}"
    );
    assert_eq!(w.queue.deleted(), std::slice::from_ref(&id));
    assert_eq!(w.cluster.docs(INDEX).len(), 10);
    assert!(w.visibility_changes(&id, t0).is_empty(), "nothing released");
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_returns_unfinished_messages_at_visibility_zero() {
    let w = World::new();
    // The cluster refuses everything: the message can never finish.
    w.cluster.fail_with(Some(503));
    let id = w.object("stuck.json", 10);
    let t0 = Instant::now();
    w.stop_after(Duration::from_secs(2));
    finished(w.start(RunOptions::default(), &[("SHUTDOWN_TIMEOUT_SECS", "25")])).await;

    // SIGTERM at 2 s; the drain gets the timeout less 1.5 s to hand messages back in.
    let took = t0.elapsed().as_secs_f64();
    assert!((25.5..27.0).contains(&took), "returned after {took:.1}s");
    let changes = w.visibility_changes(&id, t0);
    let last = changes.last().expect("released");
    assert_eq!(last.1, 0, "visible again at once: {changes:?}");
    assert!(
        (last.0 - 25.5).abs() < 0.5,
        "released at the deadline: {changes:?}"
    );
    assert_eq!(w.queue.depth(), (1, 0), "visible now");
    assert!(w.queue.deleted().is_empty(), "not deleted");
    assert_eq!(w.cluster.count(), 0);
    assert!(
        w.cluster.requests().len() > 5,
        "kept retrying until the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_receives_back_off_exponentially() {
    let w = World::new();
    w.queue.fail_receives(4);
    let id = w.object("a.json", 3);
    let t0 = Instant::now();
    finished(w.start(idle(), &[])).await;

    let attempts: Vec<f64> = w
        .queue
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::ReceiveFailed { at } => Some((*at - t0).as_secs_f64()),
            Call::Receive { at, ids } if ids.contains(&id) => Some((*at - t0).as_secs_f64()),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    // Waits of 1, 2, 4, 8 s, each jittered into its upper half.
    for (k, pair) in attempts.windows(2).enumerate() {
        let full = f64::from(1u32 << k);
        let gap = pair[1] - pair[0];
        assert!(
            gap >= full / 2.0 - 0.01 && gap <= full + 0.01,
            "wait {k}: {gap:.2}s, {attempts:?}"
        );
    }
    assert_eq!(w.queue.deleted(), [id]);
}

#[tokio::test(start_paused = true)]
async fn refused_documents_are_dead_lettered_and_a_refused_dead_letter_keeps_the_message() {
    use f4a_indexer::sink::memory::Rule;
    let w = World::new();
    w.cluster.add_rule(Rule::RefuseItemWith {
        field: "i".into(),
        status: 400,
        error_type: "mapper_parsing_exception".into(),
    });
    let id = w.object("refused.json", 4);
    let t0 = Instant::now();
    finished(w.start(idle(), &[])).await;
    assert_eq!(
        w.queue.deleted(),
        std::slice::from_ref(&id),
        "all dead-lettered: done"
    );
    assert_eq!(w.cluster.docs("f4a-dead-letter").len(), 4);
    assert!(w.cluster.docs(INDEX).is_empty());

    // The same with a dead-letter index that refuses the entries too: the message is kept.
    let w = World::new();
    w.cluster.add_rule(Rule::RefuseItemWith {
        field: "i".into(),
        status: 400,
        error_type: "mapper_parsing_exception".into(),
    });
    w.cluster
        .add_rule(Rule::RefuseIndex("f4a-dead-letter".into()));
    let id = w.object("refused.json", 4);
    finished(w.start(idle(), &[])).await;
    assert!(w.queue.deleted().is_empty());
    let changes = w.visibility_changes(&id, t0);
    assert_eq!(changes.len(), 1, "released for another try: {changes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_body_broken_mid_stream_is_resumed_where_it_broke() {
    use std::io::Write;
    let w = World::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&ndjson(20_000)).unwrap();
    let body = gz.finish().unwrap();
    let len = body.len() as u64;
    w.store.put(BUCKET, "big.json.gz", body);
    // Three breaks inside the gzip stream (and one inside the first chunk of the reader).
    w.store
        .cut_at(BUCKET, "big.json.gz", &[100, len / 3, len / 2, len - 10]);
    let id = w.queue.send(&notification("big.json.gz"));
    finished(w.start(idle(), &[])).await;

    assert_eq!(w.queue.deleted(), [id], "done in one pass");
    assert_eq!(w.cluster.docs(INDEX).len(), 20_000, "every record");
    let sent: usize = w.cluster.requests().iter().map(|r| r.docs).sum();
    assert_eq!(sent, 20_000, "no document sent twice");
    assert_eq!(
        w.store.served(BUCKET, "big.json.gz"),
        len,
        "every byte fetched once: each reopen starts where the last stream broke"
    );
}

// Real time (12 s): the reopen backoff sleeps under the blocking reader, and tokio does not
// auto-advance paused time while a blocking task runs.
#[tokio::test]
async fn a_body_that_cannot_be_reopened_releases_the_message_as_before() {
    let w = World::new();
    let body = ndjson(2_000);
    let len = body.len() as u64;
    w.store.put(BUCKET, "a.json", body);
    // The break, then each of the five reopen tries breaks again before its first byte.
    w.store.cut_at(BUCKET, "a.json", &[5_000; 6]);
    let id = w.queue.send(&notification("a.json"));
    let t0 = Instant::now();
    w.stop_after(Duration::from_secs(12));
    finished(w.start(RunOptions::default(), &[])).await;

    let changes = w.visibility_changes(&id, t0);
    assert_eq!(changes.len(), 1, "released once: {changes:?}");
    assert_eq!(changes[0].1, 5, "with the first redelivery delay");
    assert_eq!(
        w.queue.deleted(),
        [id],
        "then read whole on its next delivery"
    );
    assert_eq!(w.cluster.docs(INDEX).len(), 2_000);
    assert_eq!(
        w.store.served(BUCKET, "a.json"),
        5_000 + len,
        "restarted from byte 0"
    );
}
