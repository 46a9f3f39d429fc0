//! One budget for the whole fleet (issue 19): real workers share `FLEET_DOCS_PER_SEC` through a
//! DynamoDB table (a private moto server); the counting proxy in front of the cluster sees the
//! budget, not a multiple of it, per one-second window: three workers steady, a fourth joining
//! and one killed with SIGKILL, and the table away for 30 s. Every record reaches the cluster.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::moto::{Gate, Moto};
use common::proxy::Proxy;
use common::*;

const BUDGET: u64 = 600;
const BURST: u64 = 120;
const BATCH: u64 = 40;
const MAX_TASKS: u64 = 6;

/// The harness's environment with a fleet budget of [`BUDGET`] through `dynamodb`.
fn fleet_env(w: &World, proxy: &Proxy, dynamodb: &str) -> HashMap<String, String> {
    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    // The harness sets a per-task rate; a fleet budget replaces it.
    env.remove("RATE_LIMIT_DOCS_PER_SEC");
    env.insert("FLEET_DOCS_PER_SEC".into(), BUDGET.to_string());
    env.insert("FLEET_TABLE".into(), unique("f4a-fleet"));
    env.insert("FLEET_MAX_TASKS".into(), MAX_TASKS.to_string());
    env.insert("AWS_ENDPOINT_URL_DYNAMODB".into(), dynamodb.to_string());
    env.insert("RATE_LIMIT_BURST".into(), BURST.to_string());
    env.insert("BULK_MAX_DOCS".into(), BATCH.to_string());
    env.insert("SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    env.insert("HEALTH_ADDR".into(), "off".into());
    // With two messages in flight per worker none runs dry while the queue has work (an idle
    // task keeps its share).
    env.insert("MAX_IN_FLIGHT_MESSAGES".into(), "2".into());
    env
}

/// Waits until the proxy has `windows` one-second windows, failing if a worker exits.
async fn wait_windows(proxy: &Proxy, workers: &mut [Worker], windows: usize) {
    let deadline = Instant::now() + Duration::from_secs(windows as u64 + 60);
    while proxy.state.docs_per_second().len() < windows {
        for wk in workers.iter_mut() {
            if let Ok(Some(status)) = wk.child.try_wait() {
                panic!("worker exited early ({status}); log:\n{}", wk.log_text());
            }
        }
        assert!(
            Instant::now() < deadline,
            "traffic did not flow; log:\n{}",
            workers[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every one of `total` documents reached the cluster (distinct `_id`s) and
/// returns the attempts per `_id`.
async fn wait_all(
    proxy: &Proxy,
    total: usize,
    timeout: Duration,
    log: &str,
) -> HashMap<String, u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let by_id = proxy.state.attempts_by_id();
        if by_id.len() >= total {
            assert_eq!(by_id.len(), total, "documents that are not the backlog's");
            return by_id;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} documents arrived; log:\n{log}",
            by_id.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn stop_all(workers: &mut [Worker]) {
    for wk in workers.iter() {
        wk.signal("TERM");
    }
    for wk in workers.iter_mut() {
        assert_eq!(
            wk.wait(Duration::from_secs(40)).await,
            0,
            "{}",
            wk.log_text()
        );
    }
}

/// The index in `docs_per_second()` of the window now under way (the series starts at the first
/// window with traffic, and under a backlog every window has some).
fn now_window(proxy: &Proxy) -> usize {
    proxy.state.docs_per_second().len().saturating_sub(1)
}

fn mean(windows: &[u64]) -> f64 {
    windows.iter().sum::<u64>() as f64 / windows.len() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_one_budget() {
    let moto = Moto::start().await;
    let w = World::new("fleet3").await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    // 40 s at the budget, times 1.6, in small objects.
    let (objects, per_object) = (80, 500);
    w.put_backlog(objects, per_object).await;
    let env = fleet_env(&w, &proxy, &moto.url);
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::spawn(&env, &[])).collect();
    // Joining (a few seconds without sending), then shares settle: measure 30 windows after
    // the first 10 of traffic.
    let windows = 41;
    wait_windows(&proxy, &mut workers, windows).await;
    let series = proxy.state.docs_per_second();
    stop_all(&mut workers).await;
    let steady = &series[10..windows - 1];
    let mean = mean(steady);
    let max = *series.iter().max().unwrap();
    eprintln!(
        "fleet of 3 at {BUDGET}/s: mean {mean:.1} over {} windows, max {max}; {series:?}",
        steady.len()
    );
    assert!(
        (mean - BUDGET as f64).abs() <= BUDGET as f64 * 0.05,
        "mean {mean:.1} not within 5% of {BUDGET}; {series:?}"
    );
    assert!(
        max <= BUDGET + BURST + BATCH,
        "a window of {max} exceeds budget + burst + batch; {series:?}"
    );
    let log = workers[0].log_text();
    assert!(log.contains("left the fleet"), "{log}");
    drop(moto);
}

/// A fourth worker joins (no window above the bound while it does), then one is killed with
/// SIGKILL: its peers take its share once it stops counting (10-14 s) and the sum is back at
/// the budget within 30 s. Its messages come back after the visibility timeout; deterministic
/// `_id`s make their second attempt an overwrite, so every record is in the index once.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_joins_then_one_is_killed() {
    let moto = Moto::start().await;
    let w = World::new("fleetkill").await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    let (objects, per_object) = (80, 500);
    w.put_backlog(objects, per_object).await;
    let mut env = fleet_env(&w, &proxy, &moto.url);
    env.insert("SQS_VISIBILITY_TIMEOUT_SECONDS".into(), "15".into());
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::spawn(&env, &[])).collect();
    wait_windows(&proxy, &mut workers, 12).await;
    let joined_at = now_window(&proxy);
    workers.push(Worker::spawn(&env, &[]));
    wait_windows(&proxy, &mut workers, joined_at + 20).await;
    let killed_at = now_window(&proxy);
    let mut killed = workers.remove(0);
    killed.signal("KILL");
    let _ = killed.wait(Duration::from_secs(10)).await;
    wait_windows(&proxy, &mut workers, killed_at + 31).await;
    let series = proxy.state.docs_per_second();
    let max = *series[..killed_at + 31].iter().max().unwrap();
    // After the kill: 3 of 4 shares until the dead member stops counting, then full shares.
    let recovered = &series[killed_at + 16..killed_at + 30];
    let recovered_mean = mean(recovered);
    eprintln!(
        "join at {joined_at} s, kill at {killed_at} s: max {max}, mean {recovered_mean:.1} \
         from {} s; {series:?}",
        killed_at + 16
    );
    assert!(
        max <= BUDGET + BURST + BATCH,
        "a window of {max} exceeds budget + burst + batch; {series:?}"
    );
    assert!(
        (recovered_mean - BUDGET as f64).abs() <= BUDGET as f64 * 0.05,
        "mean {recovered_mean:.1} 16-30 s after the kill not within 5% of {BUDGET}; {series:?}"
    );
    let total = objects * per_object;
    let log = workers[0].log_text();
    let by_id = wait_all(&proxy, total, Duration::from_secs(120), &log).await;
    // Only the killed worker's in-flight messages (at most two objects) are sent twice.
    let again = by_id.values().filter(|n| **n > 1).count();
    assert!(
        again <= 2 * per_object,
        "{again} documents sent more than once"
    );
    stop_all(&mut workers).await;
    drop(moto);
}

/// The table goes away for 30 s: every worker falls back to `budget / FLEET_MAX_TASKS` (the sum
/// stays within the budget), and the fleet returns to full shares when the table is back.
#[tokio::test(flavor = "multi_thread")]
async fn the_table_goes_away_and_comes_back() {
    let moto = Moto::start().await;
    let gate = Gate::start(&moto.url).await;
    let w = World::new("fleetout").await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    let (objects, per_object) = (100, 500);
    w.put_backlog(objects, per_object).await;
    let env = fleet_env(&w, &proxy, &gate.url);
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::spawn(&env, &[])).collect();
    wait_windows(&proxy, &mut workers, 14).await;
    let down_at = now_window(&proxy);
    gate.set_down(true);
    wait_windows(&proxy, &mut workers, down_at + 30).await;
    gate.set_down(false);
    let up_at = now_window(&proxy);
    wait_windows(&proxy, &mut workers, up_at + 24).await;
    let series = proxy.state.docs_per_second();
    let fallback = 3 * BUDGET / MAX_TASKS;
    // Fallen back from 6 s after the last good read (2 s table timeouts included).
    let outage = &series[down_at + 9..up_at];
    // Back: the table answers, each task joins again (6 s without sending), then full shares.
    let back = &series[up_at + 9..up_at + 23];
    let (outage_max, outage_mean, back_mean) =
        (*outage.iter().max().unwrap(), mean(outage), mean(back));
    eprintln!(
        "table down {down_at}-{up_at} s: max {outage_max}, mean {outage_mean:.1} \
         (fallback {fallback}); back: mean {back_mean:.1}; {series:?}"
    );
    assert!(
        series[down_at..up_at].iter().all(|n| *n <= BUDGET + BATCH),
        "a window during the outage exceeds the budget; {series:?}"
    );
    assert!(
        (outage_mean - fallback as f64).abs() <= fallback as f64 * 0.1,
        "mean {outage_mean:.1} during the outage is not the fallback {fallback}; {series:?}"
    );
    assert!(
        (back_mean - BUDGET as f64).abs() <= BUDGET as f64 * 0.05,
        "mean {back_mean:.1} after the table came back not within 5% of {BUDGET}; {series:?}"
    );
    let total = objects * per_object;
    let log = workers[0].log_text();
    let by_id = wait_all(&proxy, total, Duration::from_secs(120), &log).await;
    assert!(by_id.values().all(|n| *n == 1), "a document was sent twice");
    stop_all(&mut workers).await;
    drop(moto);
}
