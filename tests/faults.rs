//! Delivery guarantees under faults (issue 4): the real worker binary against LocalStack and the
//! shared search engine (a real OpenSearch node by default), with the fault-injecting proxy of `common::proxy` in between. Every scenario
//! asserts on what a user can observe afterwards — the documents in the index (each record exactly
//! once, or in the dead-letter index with its reason) and the messages left in the queues — and on
//! the proxy's counters (attempts, connections, documents per second), never on log lines alone.
//! Bad input is `tests/bad_input.rs`; secrets and TLS are `tests/security.rs`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::faulty::*;
use common::proxy::{DownMode, ItemFault};
use common::*;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn watch_first_empty(w: &World) -> tokio::task::JoinHandle<Option<u64>> {
    let aws = w.aws.clone();
    let queue = w.queue_url.clone();
    let es = w.es.clone();
    let data = w.data();
    tokio::spawn(async move {
        let deadline = Instant::now() + 5 * MINUTE;
        while Instant::now() < deadline {
            if aws.depth(&queue).await == (0, 0) {
                return Some(es.count(&data).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    })
}

fn log_has_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "the worker panicked:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// 1. 30% of bulk requests answered 429/503.

#[tokio::test(flavor = "multi_thread")]
async fn bulk_429_503_storm_every_record_once_with_backoff() {
    let (w, p) = world_with_proxy("storm").await;
    // 3,600 records at 80/s with 30% of requests failing: the storm lasts over a minute.
    let n = 3600;
    w.put_and_wait("storm.json.gz", gzip(&ndjson(n, "storm")))
        .await;
    p.state.fail_bulk(300, 0); // 30%, alternating 429 and 503
    let env = env_via(
        &w,
        &p,
        &[
            ("RATE_LIMIT_DOCS_PER_SEC", "80"),
            ("RATE_LIMIT_BURST", "40"),
            ("BULK_MAX_DOCS", "40"),
            ("RETRY_INITIAL_BACKOFF_MS", "400"),
            ("RETRY_MAX_BACKOFF_MS", "3000"),
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", "10"),
        ],
    );
    let watcher = watch_first_empty(&w);
    let log = // The adaptive limiter backs off from every 429 (15% of requests): ~30 docs/s, about two
    // minutes for the 3,600 records; the bound leaves room for a loaded CI machine.
    run_until_idle(&env, 5 * MINUTE).await;
    log_has_no_panic(&log);

    assert_eq!(
        watcher.await.unwrap(),
        Some(n as u64),
        "the message was deleted only once every record was indexed"
    );
    assert_exactly_once(&w, &[("storm.json.gz", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));

    let injected = p.state.bulk_failed_injected.load(Ordering::SeqCst);
    let requests = p.state.bulk_requests();
    let batches = n.div_ceil(40) as u64;
    assert!(injected >= 5, "faults were injected ({injected})");
    // ~1/0.7 attempts per batch; a tight loop would be orders of magnitude more.
    assert!(
        requests <= batches * 3,
        "{requests} bulk requests for {batches} batches"
    );
    assert_eq!(requests - injected, batches, "each batch accepted once");
    // Backoff: attempts carrying the same document are at least half the initial backoff apart.
    let mut min_gap = u64::MAX;
    for times in p.state.attempt_times().values() {
        for pair in times.windows(2) {
            min_gap = min_gap.min(pair[1] - pair[0]);
        }
    }
    assert!(min_gap >= 190, "retry after only {min_gap} ms");
}

// ---------------------------------------------------------------------------------------------
// 2. Item-level partial failures.

#[tokio::test(flavor = "multi_thread")]
async fn item_failures_retry_only_failed_items_and_dead_letter_permanent_ones() {
    let (w, p) = world_with_proxy("items").await;
    let n = 300;
    w.put_and_wait("items.json", ndjson(n, "items")).await;
    const REASON: &str = "failed to parse field [msg] of type [long] in document";
    // i % 10 == 1: rejected (429) on the first two attempts; i % 10 == 3: mapping error (400)
    // for good; i % 10 == 5: 409 (the document is forwarded, so it is there).
    let dead_index = w.dead();
    p.state.set_item_rule(move |c| {
        if c.index == dead_index {
            return None;
        }
        match c.source["i"].as_u64()? % 10 {
            1 if c.previous_attempts < 2 => Some(ItemFault::Rejected),
            3 => Some(ItemFault::MapperParsing(REASON.into())),
            5 => Some(ItemFault::Conflict),
            _ => None,
        }
    });
    let env = env_via(&w, &p, &[("BULK_MAX_DOCS", "50")]);
    let log = run_until_idle(&env, 2 * MINUTE).await;
    log_has_no_panic(&log);

    // Indexed: everything but the permanent failures, once.
    let docs = w.es.all_docs(&w.data()).await;
    let mut indexed: Vec<u64> = docs
        .iter()
        .map(|d| d["_source"]["i"].as_u64().unwrap())
        .collect();
    indexed.sort();
    let expected: Vec<u64> = (0..n as u64).filter(|i| i % 10 != 3).collect();
    assert_eq!(indexed, expected);

    // Dead-lettered: the permanent ones, with the cluster's reason, the original, the provenance.
    let dead = w.es.all_docs(&w.dead()).await;
    assert_eq!(dead.len(), n / 10);
    for d in &dead {
        let s = &d["_source"];
        assert_eq!(s["error"]["type"], "mapper_parsing_exception");
        assert_eq!(s["error"]["message"], REASON);
        assert_eq!(s["f4a"]["stage"], "index");
        assert!(s["f4a"]["target_index"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-2026", w.prefix)));
        let original: Value = serde_json::from_str(s["event"]["original"].as_str().unwrap())
            .expect("event.original is the document");
        assert_eq!(original["i"].as_u64().unwrap() % 10, 3);
        assert_eq!(original["tag"], "items");
        assert_eq!(s["aws"]["s3"]["object"]["key"], "items.json");
        assert_eq!(s["aws"]["s3"]["bucket"]["name"], w.bucket.as_str());
        assert!(s["log"]["offset"].is_number());
    }

    // Only the failed items were sent again: per document, attempts by the rule.
    let attempts = p.state.attempts_by_id();
    let by_i: HashMap<u64, String> = docs
        .iter()
        .map(|d| {
            (
                d["_source"]["i"].as_u64().unwrap(),
                d["_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (i, id) in &by_i {
        let want = if i % 10 == 1 { 3 } else { 1 };
        assert_eq!(attempts[id], want, "attempts of record {i}");
    }
    for d in &dead {
        // One attempt into the data index, one into the dead-letter index (same id).
        assert_eq!(attempts[d["_id"].as_str().unwrap()], 2);
    }
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 3. Cluster down, then back.

#[tokio::test(flavor = "multi_thread")]
async fn cluster_down_then_back_keeps_message_and_finishes() {
    let (w, p) = world_with_proxy("down").await;
    let n = 500;
    w.put_and_wait("down.json.gz", gzip(&ndjson(n, "down")))
        .await;
    // First half: connections accepted and dropped (counted); second half: refused.
    // Down for a minute: 30 s of dropped connections, then 30 s of refused ones.
    let phase = Duration::from_secs(30);
    // Each phase is set to outlast its part of the loop below, so the cluster is never up
    // between the phases or before the "nothing reached the cluster" check.
    let overlap = Duration::from_secs(5);
    p.state.down_for(phase + overlap, DownMode::AcceptAndDrop);
    let env = env_via(
        &w,
        &p,
        &[
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", "6"),
            ("BULK_MAX_DOCS", "100"),
            ("RETRY_INITIAL_BACKOFF_MS", "200"),
            ("RETRY_MAX_BACKOFF_MS", "4000"),
        ],
    );
    let health = format!("http://{}/readyz", env["HEALTH_ADDR"]);
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut received = false;
    let mut degraded = None;
    let mut refuse_phase = false;
    while started.elapsed() < 2 * phase {
        if !refuse_phase && started.elapsed() >= phase {
            let dropped = p.state.dropped_connections.load(Ordering::SeqCst);
            // A few connection attempts per batch as the backoff grows; not a spin.
            assert!(
                (2..=80).contains(&dropped),
                "{dropped} connection attempts in {phase:?}"
            );
            p.state.down_for(phase + overlap, DownMode::Refuse);
            refuse_phase = true;
        }
        assert!(
            worker.child.try_wait().unwrap().is_none(),
            "the worker exited while the cluster was down; log:\n{}",
            worker.log_text()
        );
        let (visible, in_flight) = w.aws.depth(&w.queue_url).await;
        if in_flight == 1 {
            received = true;
        }
        if received {
            assert_eq!(
                (visible, in_flight),
                (0, 1),
                "the message stays invisible at {:?} (heartbeat)",
                started.elapsed()
            );
        }
        if let Ok(r) = http.get(&health).send().await {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == 503 && body["status"] == "degraded" {
                degraded = Some(body);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(received, "the worker received the message");
    assert_eq!(
        w.es.count(&w.data()).await,
        0,
        "nothing reached the cluster"
    );
    let body = degraded.unwrap_or_else(|| {
        panic!(
            "/readyz never reported degraded; log:\n{}",
            worker.log_text()
        )
    });
    assert!(!body["cluster"].as_str().unwrap_or("").is_empty(), "{body}");

    // The cluster is back: the worker finishes on its own.
    let code = worker.wait(2 * MINUTE).await;
    let log = worker.log_text();
    assert_eq!(code, 0, "log:\n{log}");
    log_has_no_panic(&log);
    assert_exactly_once(&w, &[("down.json.gz", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 4. Slow cluster: responses after the client timeout; and connections reset mid-response.

#[tokio::test(flavor = "multi_thread")]
async fn slow_cluster_timeouts_are_retried_without_duplicates() {
    let (w, p) = world_with_proxy("slow").await;
    let n = 400;
    w.put_and_wait("slow.json", ndjson(n, "slow")).await;
    // The cluster indexes each request but answers after the worker's 1 s timeout.
    p.state.set_delay(Duration::from_millis(1500));
    let env = env_via(
        &w,
        &p,
        &[("ES_REQUEST_TIMEOUT_SECS", "1"), ("BULK_MAX_DOCS", "50")],
    );
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = p.state.bulk_requests();
    p.state.set_delay(Duration::ZERO);
    let code = worker.wait(2 * MINUTE).await;
    assert_eq!(code, 0, "log:\n{}", worker.log_text());
    assert!(during >= 3, "requests timed out meanwhile ({during})");
    assert!(
        p.state.bulk_requests() > n.div_ceil(50) as u64,
        "timed-out requests were retried"
    );
    assert_exactly_once(&w, &[("slow.json", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_resets_mid_response_are_retried_without_duplicates() {
    let (w, p) = world_with_proxy("reset").await;
    // 25 bulks at a 40% reset chance: fewer than two resets is a one-in-20,000 run (with 400
    // records, 10 bulks, it was one in 20, and it happened once on Elasticsearch 9).
    let n = 1000;
    w.put_and_wait("reset.json", ndjson(n, "reset")).await;
    p.state.reset_permille.store(400, Ordering::SeqCst);
    let env = env_via(&w, &p, &[("BULK_MAX_DOCS", "40")]);
    let log = run_until_idle(&env, 2 * MINUTE).await;
    log_has_no_panic(&log);
    assert!(
        p.state.resets.load(Ordering::SeqCst) >= 2,
        "resets happened"
    );
    assert_exactly_once(&w, &[("reset.json", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM during a large object, with a slow cluster.

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_slow_cluster_exits_in_time_and_restart_is_exactly_once() {
    let (w, p) = world_with_proxy("term").await;
    let n = 3000;
    w.put_and_wait("big.json.gz", gzip(&ndjson(n, "big"))).await;
    p.state.set_delay(Duration::from_millis(1500));
    let shutdown_secs = 4;
    let env = env_via(
        &w,
        &p,
        &[
            ("RATE_LIMIT_DOCS_PER_SEC", "400"),
            ("BULK_MAX_DOCS", "100"),
            ("SHUTDOWN_TIMEOUT_SECS", "4"),
        ],
    );
    let mut worker = Worker::spawn(&env, &[]);
    assert!(
        w.es.wait_count(&w.data(), 200, MINUTE).await >= 200,
        "indexing started; log:\n{}",
        worker.log_text()
    );
    let started = Instant::now();
    worker.signal("TERM");
    let code = worker.wait(Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert_eq!(code, 0, "log:\n{}", worker.log_text());
    assert!(
        took <= Duration::from_secs(shutdown_secs + 1),
        "exited after {took:?}"
    );
    assert!(w.es.count(&w.data()).await < n as u64, "stopped mid-object");
    assert_eq!(
        w.aws
            .wait_visible(&w.queue_url, 1, Duration::from_secs(5))
            .await,
        1,
        "the unfinished message went back to the queue at once"
    );

    p.state.set_delay(Duration::ZERO);
    let env = env_via(&w, &p, &[]);
    run_until_idle(&env, 2 * MINUTE).await;
    assert_exactly_once(&w, &[("big.json.gz", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 6. SIGKILL mid-batch.

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_then_redelivery_is_exactly_once() {
    let (w, p) = world_with_proxy("kill").await;
    let n = 1500;
    w.put_and_wait("kill.json.gz", gzip(&ndjson(n, "kill")))
        .await;
    // Slow answers, so a bulk request is in flight when the worker dies.
    p.state.set_delay(Duration::from_millis(500));
    let env = env_via(
        &w,
        &p,
        &[
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", "5"),
            ("RATE_LIMIT_DOCS_PER_SEC", "300"),
            ("BULK_MAX_DOCS", "100"),
        ],
    );
    let mut worker = Worker::spawn(&env, &[]);
    assert!(
        w.es.wait_count(&w.data(), 200, MINUTE).await >= 200,
        "indexing started; log:\n{}",
        worker.log_text()
    );
    worker.signal("KILL");
    let code = worker.wait(Duration::from_secs(5)).await;
    assert_ne!(code, 0);
    let partial = w.es.count(&w.data()).await;
    assert!(partial < n as u64, "killed mid-object ({partial})");
    // Nobody released it: it comes back when its visibility timeout ends.
    assert_eq!(
        w.aws
            .wait_visible(&w.queue_url, 1, Duration::from_secs(15))
            .await,
        1
    );
    p.state.set_delay(Duration::ZERO);
    run_until_idle(&env_via(&w, &p, &[]), 2 * MINUTE).await;
    assert_exactly_once(&w, &[("kill.json.gz", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

// ---------------------------------------------------------------------------------------------
// 7. Two workers on one queue.

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_a_queue_within_the_sum_of_their_limits() {
    let (w, p) = world_with_proxy("two").await;
    let (objects, per) = (8, 200);
    for k in 0..objects {
        w.put_and_wait(&format!("two/{k}.json"), ndjson(per, &format!("t{k}")))
            .await;
    }
    let (rate, burst) = (100u64, 50u64);
    let extra = [
        ("RATE_LIMIT_DOCS_PER_SEC", "100"),
        ("RATE_LIMIT_BURST", "50"),
        ("BULK_MAX_DOCS", "50"),
        ("SQS_MAX_MESSAGES", "1"),
        ("MAX_IN_FLIGHT_MESSAGES", "2"),
    ];
    let mut a = Worker::spawn(&env_via(&w, &p, &extra), &["--exit-when-idle"]);
    let mut b = Worker::spawn(&env_via(&w, &p, &extra), &["--exit-when-idle"]);
    assert_eq!(a.wait(2 * MINUTE).await, 0, "log:\n{}", a.log_text());
    assert_eq!(b.wait(2 * MINUTE).await, 0, "log:\n{}", b.log_text());

    let keys: Vec<String> = (0..objects).map(|k| format!("two/{k}.json")).collect();
    let expected: Vec<(&str, usize)> = keys.iter().map(|k| (k.as_str(), per)).collect();
    assert_exactly_once(&w, &expected).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    for (name, wk) in [("a", &a), ("b", &b)] {
        assert!(
            wk.log_text().contains("message done"),
            "worker {name} took part"
        );
    }
    // Per one-second window, the two together never exceed their rates plus their bursts; over
    // the whole run, the sum of their rates.
    // (One batch of slack: a batch sent at the end of a window may arrive in the next one.)
    let windows = p.state.docs_per_second();
    let max = *windows.iter().max().unwrap();
    assert!(
        max <= 2 * (rate + burst) + 50,
        "window of {max} docs: {windows:?}"
    );
    let total: u64 = windows.iter().sum();
    assert_eq!(total, (objects * per) as u64);
    let secs = windows.len() as f64;
    let avg = (total - 2 * burst) as f64 / secs;
    assert!(
        avg <= 2.0 * rate as f64 * 1.1,
        "average {avg:.0} docs/s: {windows:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Processing longer than the visibility timeout.

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_keeps_a_long_message_from_a_second_worker() {
    let (w, p) = world_with_proxy("long").await;
    let n = 500;
    w.put_and_wait("long.json", ndjson(n, "long")).await;
    let extra = [
        ("SQS_VISIBILITY_TIMEOUT_SECONDS", "4"),
        ("RATE_LIMIT_DOCS_PER_SEC", "40"),
        ("RATE_LIMIT_BURST", "20"),
        ("BULK_MAX_DOCS", "20"),
    ];
    let started = Instant::now();
    let mut a = Worker::spawn(&env_via(&w, &p, &extra), &["--exit-when-idle"]);
    assert!(w.es.wait_count(&w.data(), 1, MINUTE).await >= 1);
    // A second task polls the same queue all along.
    let mut b = Worker::spawn(&env_via(&w, &p, &extra), &[]);
    assert_eq!(a.wait(2 * MINUTE).await, 0, "log:\n{}", a.log_text());
    let took = started.elapsed();
    b.signal("TERM");
    assert_eq!(b.wait(Duration::from_secs(30)).await, 0);
    assert!(
        took >= Duration::from_secs(8),
        "processing outlasted the visibility timeout twice ({took:?})"
    );
    // Nobody processed the message in parallel: every document was sent exactly once.
    let attempts = p.state.attempts_by_id();
    assert_eq!(attempts.len(), n);
    assert!(
        attempts.values().all(|c| *c == 1),
        "a document was sent twice"
    );
    assert_eq!(p.state.bulk_docs.load(Ordering::SeqCst), n as u64);
    assert_exactly_once(&w, &[("long.json", n)]).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    assert!(!b.log_text().contains("object read"), "{}", b.log_text());
}
