//! Predictable push (issue 5): with a backlog far larger than the rate, the counting proxy in
//! front of the cluster sees the configured rate, steady, per one-second window; and a cluster
//! that answers 429 above its capacity gets the worker to settle near that capacity.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::proxy::Proxy;
use common::*;

/// Runs the worker until the proxy has seen `windows` one-second windows of traffic, then stops it.
async fn run_for_windows(
    env: &std::collections::HashMap<String, String>,
    proxy: &Proxy,
    windows: usize,
) -> Worker {
    let mut env = env.clone();
    // The stop only cuts the measurement; no need to drain the backlog at the limited rate.
    env.insert("SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    let mut worker = Worker::spawn(&env, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(windows as u64 + 60);
    while proxy.state.docs_per_second().len() < windows {
        assert!(
            std::time::Instant::now() < deadline,
            "traffic did not flow; log:\n{}",
            worker.log_text()
        );
        if let Ok(Some(status)) = worker.child.try_wait() {
            panic!(
                "worker exited early ({status}); log:\n{}",
                worker.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(40)).await, 0);
    worker
}

/// Steady-state windows: the first two (start-up, initial burst) and the last (cut by the stop)
/// are left out of the mean but not out of the maximum.
fn check_steady(series: &[u64], limit: f64, burst: f64, what: &str) {
    assert!(series.len() >= 34, "{what}: only {} windows", series.len());
    let steady = &series[2..series.len() - 1];
    let mean = steady.iter().sum::<u64>() as f64 / steady.len() as f64;
    let max = *series.iter().max().unwrap() as f64;
    eprintln!(
        "{what}: limit {limit}, mean {mean:.1} over {} windows, max {max}; series {series:?}",
        steady.len()
    );
    // Above the limit: at most 3% (window edges). Below it: up to 8%, because the bucket holds
    // only `burst` (0.2 s here), so a pause of the worker process longer than that on a loaded
    // 2-core CI machine loses a batch of tokens for good; that is the machine, not the limiter.
    assert!(
        mean <= limit * 1.03 && mean >= limit * 0.92,
        "{what}: mean {mean:.1} not within -8%/+3% of {limit}; {series:?}"
    );
    assert!(
        max <= limit + burst,
        "{what}: a window of {max} exceeds limit + burst ({}); {series:?}",
        limit + burst
    );
}

async fn steady_rate(rate: u64, name: &str) {
    let w = World::new(name).await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    let burst = rate / 5;
    // 35 windows at `rate`, times 1.5: far more than the run consumes.
    let total = (rate * 35 * 3 / 2) as usize;
    let per_object = (total / 20).max(100);
    w.put_backlog(total.div_ceil(per_object), per_object).await;
    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), rate.to_string());
    env.insert("RATE_LIMIT_BURST".into(), burst.to_string());
    env.insert("BULK_MAX_DOCS".into(), burst.to_string());
    run_for_windows(&env, &proxy, 36).await;
    check_steady(
        &proxy.state.docs_per_second(),
        rate as f64,
        burst as f64,
        &format!("{rate} docs/s"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_rate_200_docs_per_sec() {
    steady_rate(200, "rate200").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_rate_2000_docs_per_sec() {
    steady_rate(2000, "rate2000").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_bytes_per_sec() {
    let w = World::new("ratebytes").await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    // Documents of ~330 bulk bytes: 60 kB/s is ~180 docs/s, far below the document limit.
    let bytes_rate = 60_000u64;
    w.put_backlog(10, 1200).await;
    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "100000".into());
    env.insert("RATE_LIMIT_BYTES_PER_SEC".into(), bytes_rate.to_string());
    env.insert("BULK_MAX_DOCS".into(), "30".into());
    run_for_windows(&env, &proxy, 36).await;
    // The bytes bucket holds one second of rate.
    check_steady(
        &proxy.state.bytes_per_second(),
        bytes_rate as f64,
        bytes_rate as f64,
        "bytes/s",
    );
}

/// How an adaptive run is set up: the cluster's capacity and how it counts it, and the worker's
/// configured rate, burst and batch size.
struct Overload {
    name: &'static str,
    capacity: u64,
    sliding: bool,
    rate: u32,
    burst: u32,
    batch: u32,
    total: usize,
    /// Least share of the capacity the steady accepted rate must reach.
    min_share: f64,
}

/// Runs the worker against a proxy that refuses `_bulk` requests above `o.capacity`: adaptive
/// backoff settles near what the cluster takes, under 5% of requests refused after the first
/// 10 s, and every record is indexed exactly once.
async fn adaptive_settles(o: Overload) {
    let w = World::new(o.name).await;
    let proxy = Proxy::start(&w.es.url).await;
    let capacity = o.capacity;
    proxy
        .state
        .capacity_sliding
        .store(o.sliding, Ordering::SeqCst);
    proxy
        .state
        .capacity_per_sec
        .store(capacity, Ordering::SeqCst);
    let total = o.total;
    w.put_backlog(10, total / 10).await;
    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), o.rate.to_string());
    env.insert("RATE_LIMIT_BURST".into(), o.burst.to_string());
    env.insert("BULK_MAX_DOCS".into(), o.batch.to_string());
    env.insert("RETRY_INITIAL_BACKOFF_MS".into(), "200".into());
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    assert_eq!(
        worker.wait(Duration::from_secs(240)).await,
        0,
        "{}",
        worker.log_text()
    );
    assert!(
        proxy.state.capacity_rejections.load(Ordering::SeqCst) > 0,
        "the cluster refused something (else the test shows nothing)"
    );

    let requests = proxy.state.bulk_by_second();
    let rejected = proxy.state.rejected_by_second();
    let first = *requests.keys().next().unwrap();
    let after = |m: &std::collections::BTreeMap<u64, u64>| {
        m.iter()
            .filter(|(s, _)| **s >= first + 10)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let (req_late, rej_late) = (after(&requests), after(&rejected));
    let share = rej_late as f64 / req_late as f64;
    let accepted = proxy.state.accepted_per_second();
    eprintln!(
        "{}: rejected after 10 s: {rej_late}/{req_late} = {share:.3}; accepted per second: {accepted:?}",
        o.name
    );
    assert!(
        share < 0.05,
        "rejected share after the first seconds: {share:.3}"
    );
    // Near the capacity: the steady accepted rate (start and tail excluded).
    let steady = &accepted[10.min(accepted.len())..accepted.len().saturating_sub(3)];
    let mean = steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64;
    assert!(
        mean >= o.min_share * capacity as f64 && mean <= capacity as f64,
        "accepted mean {mean:.0} vs capacity {capacity}"
    );
    // Every record once.
    assert_eq!(w.es.count(&w.all()).await, total as u64);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

/// Configured for 1000 docs/s, the cluster takes 250 per calendar second.
#[tokio::test(flavor = "multi_thread")]
async fn adaptive_rate_settles_at_cluster_capacity() {
    adaptive_settles(Overload {
        name: "adaptive",
        capacity: 250,
        sliding: false,
        rate: 1000,
        burst: 100,
        batch: 25,
        total: 9000,
        min_share: 0.7,
    })
    .await;
}

/// Configured at five times what the cluster takes, with a burst of a full second and large
/// batches, against a cluster that admits 300 documents per *sliding* second: the case the
/// old climb (2% of the configured rate per second) failed, settling at 240/s with 12.7% of
/// requests refused.
#[tokio::test(flavor = "multi_thread")]
async fn adaptive_rate_settles_under_a_sliding_window_five_times_below_the_configured_rate() {
    adaptive_settles(Overload {
        name: "adaptive-sliding",
        capacity: 300,
        sliding: true,
        rate: 1500,
        burst: 1500,
        batch: 100,
        total: 9000,
        min_share: 0.6,
    })
    .await;
}
