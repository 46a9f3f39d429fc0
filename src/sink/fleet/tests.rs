//! The fleet's safety rules on paused time with the in-memory table: members heartbeat on their
//! own schedules (staggered), the test samples every share every 100 ms.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{advance, Instant};
use tokio_util::sync::CancellationToken;

use super::memory::MemoryTable;
use super::*;

const BUDGET: u32 = 600;
const MAX_TASKS: u32 = 6;

struct Member {
    fleet: Arc<Fleet>,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

fn join(table: &Arc<MemoryTable>, name: &str) -> Member {
    let fleet = Arc::new(Fleet::new(
        table.clone(),
        "svc",
        name,
        BUDGET,
        MAX_TASKS,
        Timing::default(),
    ));
    let stop = CancellationToken::new();
    let run = tokio::spawn(fleet.clone().run(Arc::new(|_| {}), stop.clone()));
    Member { fleet, stop, run }
}

/// Samples for `secs` seconds; returns the (min, max) sum of shares seen, checking each sample
/// against the budget.
async fn watch(members: &[&Member], secs: u64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for _ in 0..secs * 10 {
        advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
        let now = Instant::now();
        let sum: f64 = members.iter().map(|m| m.fleet.status(now).share).sum();
        assert!(sum <= BUDGET as f64 + 1e-6, "fleet over its budget: {sum}");
        lo = lo.min(sum);
        hi = hi.max(sum);
    }
    (lo, hi)
}

fn shares(members: &[&Member]) -> Vec<(Mode, f64)> {
    let now = Instant::now();
    members
        .iter()
        .map(|m| {
            let s = m.fleet.status(now);
            (s.mode, s.share)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn joining_never_overshoots_and_shares_settle() {
    let table = Arc::new(MemoryTable::new());
    let a = join(&table, "a");
    advance(Duration::from_millis(700)).await;
    let b = join(&table, "b");
    advance(Duration::from_millis(500)).await;
    let c = join(&table, "c");
    watch(&[&a, &b, &c], 15).await;
    assert_eq!(
        shares(&[&a, &b, &c]),
        vec![(Mode::Shared, 200.0); 3],
        "three live tasks share the budget"
    );
    advance(Duration::from_millis(300)).await;
    let d = join(&table, "d");
    // Joining: d sends nothing until every peer counts it; the sum never exceeds the budget.
    watch(&[&a, &b, &c, &d], 15).await;
    assert_eq!(shares(&[&a, &b, &c, &d]), vec![(Mode::Shared, 150.0); 4]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_member_stops_counting_after_the_liveness_window() {
    let table = Arc::new(MemoryTable::new());
    let (a, b, c) = (join(&table, "a"), join(&table, "b"), join(&table, "c"));
    watch(&[&a, &b, &c], 15).await;
    // SIGKILL: no more heartbeats, the item stays.
    c.run.abort();
    let t0 = Instant::now();
    watch(&[&a, &b], 8).await;
    assert_eq!(
        shares(&[&a, &b]),
        vec![(Mode::Shared, 200.0); 2],
        "counted inside the window"
    );
    let t = Timing::default();
    watch(&[&a, &b], (t.liveness + t.interval * 2).as_secs() - 8).await;
    assert_eq!(shares(&[&a, &b]), vec![(Mode::Shared, 300.0); 2]);
    assert!(Instant::now() - t0 <= t.liveness + t.interval * 2);
    assert_eq!(table.len(), 3, "a killed task leaves its item to the TTL");
}

#[tokio::test(start_paused = true)]
async fn a_stopping_member_leaves_and_its_share_is_taken_at_once() {
    let table = Arc::new(MemoryTable::new());
    let (a, b) = (join(&table, "a"), join(&table, "b"));
    watch(&[&a, &b], 15).await;
    b.stop.cancel();
    let _ = b.run.await;
    b.fleet.leave().await;
    watch(&[&a], 3).await;
    assert_eq!(shares(&[&a]), vec![(Mode::Shared, 600.0)]);
    assert_eq!(table.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn table_outage_falls_back_to_the_safe_share_and_recovers() {
    let table = Arc::new(MemoryTable::new());
    let (a, b) = (join(&table, "a"), join(&table, "b"));
    watch(&[&a, &b], 15).await;
    table.set_down(true);
    let t = Timing::default();
    watch(&[&a, &b], (t.stale_after + t.interval * 2).as_secs()).await;
    let fallback = BUDGET as f64 / MAX_TASKS as f64;
    assert_eq!(shares(&[&a, &b]), vec![(Mode::Fallback, fallback); 2]);
    let s = a.fleet.status(Instant::now());
    assert!(s.error.is_some_and(|e| e.contains("unreachable")));
    watch(&[&a, &b], 20).await;
    table.set_down(false);
    watch(&[&a, &b], 15).await;
    assert_eq!(shares(&[&a, &b]), vec![(Mode::Shared, 300.0); 2]);
    assert_eq!(a.fleet.status(Instant::now()).error, None);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_cannot_reach_the_table_at_start_uses_the_fallback() {
    let table = Arc::new(MemoryTable::new());
    table.set_down(true);
    let a = join(&table, "a");
    watch(&[&a], 5).await;
    assert_eq!(shares(&[&a]), vec![(Mode::Fallback, 100.0)]);
}
