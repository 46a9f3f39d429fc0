//! One budget for the whole fleet (issue 19): three real workers share `FLEET_DOCS_PER_SEC`
//! through a DynamoDB table (a private moto server); the counting proxy in front of the cluster
//! sees the budget, not three times it, per one-second window.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::moto::Moto;
use common::proxy::Proxy;
use common::*;

const BUDGET: u64 = 600;
const BURST: u64 = 120;
const BATCH: u64 = 40;

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_one_budget() {
    let moto = Moto::start().await;
    let w = World::new("fleet3").await;
    let proxy = Proxy::start(&w.es.url).await;
    proxy.state.sink.store(true, Ordering::SeqCst);
    // 40 s at the budget, times 1.6, in small objects: with two messages in flight per worker
    // none runs dry while the queue has work (an idle task keeps its share).
    let (objects, per_object) = (80, 500);
    w.put_backlog(objects, per_object).await;
    let mut env = w.env();
    env.insert("ES_URL".into(), proxy.url.clone());
    // The harness sets a per-task rate; a fleet budget replaces it.
    env.remove("RATE_LIMIT_DOCS_PER_SEC");
    env.insert("FLEET_DOCS_PER_SEC".into(), BUDGET.to_string());
    env.insert("FLEET_TABLE".into(), unique("f4a-fleet"));
    env.insert("FLEET_MAX_TASKS".into(), "6".into());
    env.insert("AWS_ENDPOINT_URL_DYNAMODB".into(), moto.url.clone());
    env.insert("RATE_LIMIT_BURST".into(), BURST.to_string());
    env.insert("BULK_MAX_DOCS".into(), BATCH.to_string());
    env.insert("SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    env.insert("HEALTH_ADDR".into(), "off".into());
    env.insert("MAX_IN_FLIGHT_MESSAGES".into(), "2".into());
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::spawn(&env, &[])).collect();
    // Joining (a few seconds without sending), then shares settle: measure 30 windows after
    // the first 10 of traffic.
    let windows = 41;
    let deadline = std::time::Instant::now() + Duration::from_secs(windows as u64 + 60);
    while proxy.state.docs_per_second().len() < windows {
        for wk in workers.iter_mut() {
            if let Ok(Some(status)) = wk.child.try_wait() {
                panic!("worker exited early ({status}); log:\n{}", wk.log_text());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "traffic did not flow; log:\n{}",
            workers[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let series = proxy.state.docs_per_second();
    for wk in &workers {
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
    let steady = &series[10..windows - 1];
    let mean = steady.iter().sum::<u64>() as f64 / steady.len() as f64;
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
