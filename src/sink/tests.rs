//! The delivery loop over the in-memory cluster, on paused time: whole-request retries with
//! backoff, splitting, per-item retries, dead letters, and the refused dead letter that keeps its
//! message. Each test checks what reached the cluster and how every token was settled.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::bulk::BulkSink;
use super::memory::{MemoryCluster, Rule};
use super::rate_limiter::RateLimiter;
use super::Doc;
use crate::ack::{AckGroup, GroupOutcome};
use crate::config::{RateConfig, RetryConfig};
use crate::health::Health;
use crate::record::test_support::{normalizer, object_context};
use crate::record::{DeadLetters, ObjectContext, Record};

const INDEX: &str = "f4a-2026.11.24";
const DEAD: &str = "dl";

fn sink(cluster: &Arc<MemoryCluster>) -> BulkSink {
    BulkSink::new(
        cluster.clone(),
        RateLimiter::new(&RateConfig::unlimited()),
        DeadLetters::new(DEAD),
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        },
        Health::new(Duration::from_secs(60)),
    )
}

/// One document per source, at offsets 0, 1, 2 …, each with a token of `group`.
fn docs(sources: &[Value], group: &Arc<AckGroup>) -> Vec<Doc> {
    let origin: Arc<ObjectContext> = Arc::new(object_context());
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let mut fields = source.as_object().cloned().unwrap_or_default();
            fields.insert("@timestamp".into(), json!("2026-11-24T10:00:00Z"));
            let record = Record {
                offset: i as u64,
                sub: None,
                fields,
                timestamp: None,
            };
            let n = normalizer().normalize(record, &origin);
            Doc::encode(n, origin.clone(), i as u64, None, false, group.token())
        })
        .collect()
}

fn plain(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({ "i": i })).collect()
}

/// Delivers `sources` as one batch; returns how their tokens were settled. A loop that never
/// settles fails after an hour of (paused, so instant) time instead of hanging.
async fn deliver(cluster: &Arc<MemoryCluster>, sources: &[Value]) -> GroupOutcome {
    let group = AckGroup::new();
    let sink = sink(cluster);
    tokio::time::timeout(
        Duration::from_secs(3600),
        sink.deliver(docs(sources, &group)),
    )
    .await
    .expect("the batch never settled");
    group.wait().await
}

fn settled(indexed: u64, dead_lettered: u64) -> GroupOutcome {
    GroupOutcome {
        indexed,
        dead_lettered,
        failed: false,
    }
}

#[tokio::test(start_paused = true)]
async fn whole_request_failures_are_retried_after_a_growing_backoff() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.fail_next(&[503, 429, 503, 502]);
    let out = deliver(&cluster, &plain(10)).await;
    assert_eq!(out, settled(10, 0));
    assert_eq!(cluster.docs(INDEX).len(), 10);
    let requests = cluster.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 503, 502, 200]);
    // RETRY_INITIAL_BACKOFF_MS 100, doubling, each wait jittered into its upper half.
    for (k, pair) in requests.windows(2).enumerate() {
        let full = Duration::from_millis(100 << k);
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= full / 2 && gap <= full, "wait {k}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_oversized_request_is_split_until_it_fits() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_rule(Rule::MaxDocs(3));
    let out = deliver(&cluster, &plain(10)).await;
    assert_eq!(out, settled(10, 0), "split, never dead-lettered");
    assert_eq!(cluster.docs(INDEX).len(), 10);
    assert!(cluster.docs(DEAD).is_empty());
    let accepted: Vec<usize> = cluster
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.docs)
        .collect();
    assert_eq!(
        accepted.iter().sum::<usize>(),
        10,
        "each document sent once"
    );
    assert!(accepted.iter().all(|&n| n <= 3), "{accepted:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_as_a_whole_is_split_down_to_its_culprit() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_rule(Rule::RefuseRequestWith("poison".into()));
    let mut sources = plain(8);
    sources[5] = json!({"i": 5, "poison": true});
    let out = deliver(&cluster, &sources).await;
    assert_eq!(out, settled(7, 1));
    assert_eq!(cluster.docs(INDEX).len(), 7);
    let dead: Vec<Value> = cluster.docs(DEAD).into_values().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["error"]["type"], "request_refused");
    assert_eq!(dead[0]["f4a"]["stage"], "index");
    assert_eq!(dead[0]["f4a"]["target_index"], INDEX);
    assert_eq!(
        dead[0]["log"]["offset"], 5,
        "the culprit, found by splitting"
    );
    let original: Value =
        serde_json::from_str(dead[0]["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(
        original["poison"], true,
        "the refused document, as a string"
    );
}

#[tokio::test(start_paused = true)]
async fn only_failed_items_are_retried_and_refused_ones_are_dead_lettered() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_rule(Rule::RejectItemWith {
        field: "busy".into(),
        times: 2,
    });
    cluster.add_rule(Rule::RefuseItemWith {
        field: "conflict".into(),
        status: 400,
        error_type: "mapper_parsing_exception".into(),
    });
    cluster.add_rule(Rule::RefuseItemWith {
        field: "exists".into(),
        status: 409,
        error_type: "version_conflict_engine_exception".into(),
    });
    let sources = vec![
        json!({"i": 0}),
        json!({"i": 1, "busy": true}),
        json!({"i": 2, "conflict": "x"}),
        json!({"i": 3, "exists": true}),
        json!({"i": 4}),
    ];
    let out = deliver(&cluster, &sources).await;
    // 0, 1 (after two rejections), 4 indexed; 3 counts as indexed (409: the id is there); 2 dead.
    assert_eq!(out, settled(4, 1));
    let docs = cluster.docs(INDEX);
    let mut kept: Vec<u64> = docs.values().map(|d| d["i"].as_u64().unwrap()).collect();
    kept.sort();
    assert_eq!(kept, [0, 1, 4]);
    let sizes: Vec<usize> = cluster.requests().iter().map(|r| r.docs).collect();
    // The batch, then the rejected item alone, twice; then the dead-letter entry.
    assert_eq!(sizes, [5, 1, 1, 1], "{sizes:?}");
    let dead: Vec<Value> = cluster.docs(DEAD).into_values().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["error"]["type"], "mapper_parsing_exception");
    assert_eq!(dead[0]["log"]["offset"], 2);
    assert_eq!(dead[0]["aws"]["s3"]["bucket"]["name"], "b");
}

#[tokio::test(start_paused = true)]
async fn a_refused_dead_letter_entry_fails_its_message() {
    let cluster = Arc::new(MemoryCluster::new());
    cluster.add_rule(Rule::RefuseIndex(DEAD.into()));
    cluster.add_rule(Rule::RefuseItemWith {
        field: "conflict".into(),
        status: 400,
        error_type: "mapper_parsing_exception".into(),
    });
    let sources = vec![json!({"i": 0}), json!({"i": 1, "conflict": 1})];
    let out = deliver(&cluster, &sources).await;
    assert_eq!(
        out,
        GroupOutcome {
            indexed: 1,
            dead_lettered: 0,
            failed: true
        },
        "the message must stay in the queue"
    );
    assert!(cluster.docs(DEAD).is_empty());
}
