//! The buckets, the share and the AIMD rate, and a deterministic model of the worker against a
//! cluster of fixed capacity (settling below it, storms that do not depend on the rate).

use super::*;

#[tokio::test]
async fn batches_larger_than_burst_are_split_not_refused() {
    let l = RateLimiter::new(&RateConfig::docs_per_sec(1000).with_burst(10));
    let waited = l.acquire(60, 0).await;
    // 10 at once, then 50 more at 1000/s.
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
}

#[tokio::test]
async fn bytes_are_limited_too() {
    let l = RateLimiter::new(&RateConfig::unlimited().with_bytes_per_sec(10_000));
    let waited = l.acquire(1, 15_000).await;
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

#[tokio::test]
async fn unlimited_never_waits() {
    let l = RateLimiter::new(&RateConfig::unlimited().adaptive(1));
    assert_eq!(l.acquire(1_000_000, 1 << 30).await, Duration::ZERO);
    assert_eq!(l.effective_rate(), None);
}

#[tokio::test]
async fn share_scales_rate_and_burst_and_zero_holds() {
    // Budget 1000/s, burst 100; a quarter share: 25 documents of burst, then 250/s.
    let l = std::sync::Arc::new(RateLimiter::new(
        &RateConfig::docs_per_sec(1000).with_burst(100),
    ));
    l.set_share(0.25);
    assert_eq!(l.effective_rate(), Some(250.0));
    assert!(l.acquire(25, 0).await < Duration::from_millis(20));
    let waited = l.acquire(50, 0).await;
    assert!(waited >= Duration::from_millis(180), "{waited:?}");
    l.set_share(0.0);
    let held = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(1, 0).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!held.is_finished(), "a zero share holds requests");
    l.set_share(1.0);
    assert!(held.await.is_ok());
}

#[test]
fn aimd_decreases_once_per_hold_and_climbs_around_the_last_overload() {
    let t0 = Instant::now();
    let mut a = Aimd::new(1000, 10, t0);
    let close = |x: f64, y: f64| (x - y).abs() < 1e-6;
    assert!(a.overloaded(t0).is_some_and(|r| close(r, 700.0)));
    assert_eq!(
        a.overloaded(t0 + Duration::from_millis(100)),
        None,
        "one overload, many failures"
    );
    // Recovery: 10% of the overload rate (100/s) up to 900, in 2 s.
    a.climb(t0 + Duration::from_secs(1));
    assert!(close(a.effective(), 800.0), "{}", a.effective());
    a.climb(t0 + Duration::from_secs(2));
    assert!(close(a.effective(), 900.0), "{}", a.effective());
    // Probing: 0.8% (8/s) across the rate the cluster refused.
    a.climb(t0 + Duration::from_secs(7));
    assert!(close(a.effective(), 940.0), "{}", a.effective());
    // An overload there remembers 950 (95% of 1000), not 940.
    a.overloaded(t0 + Duration::from_secs(7));
    assert!(close(a.effective(), 658.0), "{}", a.effective());
    assert_eq!(a.overloaded_at, Some(950.0));
    a.climb(t0 + Duration::from_secs(500));
    assert_eq!(a.effective(), 1000.0, "capped at the ceiling");
    for k in 0..50 {
        a.overloaded(t0 + Duration::from_secs(600 + 2 * k));
    }
    assert!(a.effective() >= 10.0, "never below the floor");
}

#[test]
fn climb_speed_follows_the_cluster_not_the_ceiling() {
    // Configured at 50 times what the cluster took: the climb after an overload at 300/s is
    // 30/s, not 10% of 15,000.
    let t0 = Instant::now();
    let mut a = Aimd::new(15_000, 1, t0);
    a.effective = 300.0;
    a.overloaded(t0);
    a.climb(t0 + Duration::from_secs(1));
    assert!((a.effective() - 240.0).abs() < 1e-6, "{}", a.effective());
}

#[test]
fn lower_rate_costs_more_tokens_with_carry() {
    let t0 = Instant::now();
    let mut a = Aimd::new(1000, 1, t0);
    assert_eq!(a.tokens_for(10, t0), 10);
    a.overloaded(t0);
    a.effective = 300.0; // cost 3.33 tokens per document
    let total: u64 = (0..3).map(|_| a.tokens_for(1, t0)).sum();
    assert_eq!(total, 10);
}

/// A deterministic model of the worker against a cluster that admits `capacity` documents per
/// sliding (or calendar) second and refuses whole requests above it: two bulk slots sharing
/// the limiter, `batch`-document requests, a refused request retried after 200 ms.
/// With `storm` a share (per mille) of requests is also refused with 429 whatever the rate,
/// and as many with 503 (retried, no overload signal), the retry after 400 ms.
/// Returns (share of requests refused after the first 10 s, accepted documents per second
/// after the first 10 s).
fn simulate(configured: u32, burst: u32, capacity: u64, batch: u64, sliding: bool) -> (f64, f64) {
    simulate_with(configured, burst, capacity, batch, sliding, 0)
}

fn simulate_with(
    configured: u32,
    burst: u32,
    capacity: u64,
    batch: u64,
    sliding: bool,
    storm: u64,
) -> (f64, f64) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut permille = move || {
        // xorshift64: deterministic, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % 1000
    };
    const MS: u64 = 1;
    let horizon_ms = 120_000;
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut aimd = Aimd::new(configured, 1, t0);
    let per_token_ms = 1000.0 / configured as f64;
    let mut tat = 0.0f64; // GCRA theoretical arrival time, ms
    let mut accepted: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut in_window = 0u64;
    // Per slot: time it may send next, tokens already taken for its pending request.
    let mut slots = [(0u64, false), (5u64, false)];
    let (mut requests, mut refused, mut late_docs) = (0u64, 0u64, 0u64);
    let mut now = 0u64;
    while now < horizon_ms {
        for slot in slots.iter_mut() {
            if slot.0 > now {
                continue;
            }
            if !slot.1 {
                // Take tokens (GCRA with the burst), send when they are there.
                let n = aimd.tokens_for(batch, at(now)) as f64;
                let start = tat.max(now as f64);
                tat = start + n * per_token_ms;
                let ready = (tat - burst as f64 * per_token_ms).max(now as f64);
                slot.0 = ready.ceil() as u64;
                slot.1 = true;
                continue;
            }
            // Send.
            let window_start = if sliding {
                now.saturating_sub(999)
            } else {
                now / 1000 * 1000
            };
            while let Some(&(t, n)) = accepted.front() {
                if t >= window_start {
                    break;
                }
                accepted.pop_front();
                in_window -= n;
            }
            let late = now >= 10_000;
            if late {
                requests += 1;
            }
            let roll = permille();
            if in_window + batch > capacity || roll < storm {
                aimd.overloaded(at(now));
                if late {
                    refused += 1;
                }
                slot.0 = now + if storm > 0 { 400 } else { 200 };
            } else if roll < 2 * storm {
                slot.0 = now + 400;
            } else {
                accepted.push_back((now, batch));
                in_window += batch;
                if late {
                    late_docs += batch;
                }
                slot.0 = now + 20; // the response's latency
            }
            slot.1 = false;
        }
        now += MS;
    }
    let secs = (horizon_ms - 10_000) as f64 / 1000.0;
    (
        refused as f64 / requests.max(1) as f64,
        late_docs as f64 / secs,
    )
}

#[test]
fn settles_below_capacity_whatever_the_ratio_of_configured_rate_to_capacity() {
    for sliding in [true, false] {
        for (capacity, batch) in [(300u64, 100u64), (300, 25), (2000, 100), (5000, 500)] {
            for ratio in [1u32, 2, 10, 50] {
                let configured = capacity as u32 * ratio;
                let (share, rate) = simulate(configured, configured, capacity, batch, sliding);
                let what = format!(
                    "capacity {capacity}/s ({}), batch {batch}, configured {configured}/s: \
                     {rate:.0}/s accepted, {:.1}% of requests refused",
                    if sliding { "sliding" } else { "calendar" },
                    share * 100.0
                );
                assert!(share < 0.05, "{what}");
                assert!(rate >= 0.6 * capacity as f64, "{what}");
            }
        }
    }
}

#[test]
fn overloads_that_do_not_depend_on_the_rate_do_not_ratchet_it_to_the_floor() {
    // tests/faults.rs's storm: 80/s, batches of 40, 15% of requests 429 and 15% 503 whatever
    // the rate. Remembering each overload's rate as the new capacity would sink the rate
    // towards the floor; the worker keeps well over a third of it.
    let (_, rate) = simulate_with(80, 40, u64::MAX, 40, false, 150);
    assert!(rate >= 0.35 * 80.0, "{rate:.1}/s of 80");
}
