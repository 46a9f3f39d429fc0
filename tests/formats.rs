//! Every fixture of `fixtures/manifest.json` (every layout and compression: gzip, zstd, Snappy
//! framing, Hadoop Snappy, ZIP, the corrupt and truncated ones, Elasticsearch's plain-text log)
//! through the whole pipeline over the in-memory queue, store and cluster: the documents and
//! dead-letter entries per object are the manifest's numbers. Seconds, no LocalStack; `e2e.rs`
//! `every_fixture_format` does the same against LocalStack and the real search engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use f4a_indexer::config::Config;
use f4a_indexer::pipeline::{self, RunOptions, Wings};
use f4a_indexer::sink::memory::MemoryCluster;
use f4a_indexer::source::memory::{MemoryQueue, MemoryStore};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const BUCKET: &str = "b";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn notification(key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}}
    }]})
    .to_string()
}

/// Indexes `objects` (key, body) and returns every document: (index, source).
async fn index(objects: &[(String, Vec<u8>)]) -> Vec<(String, Value)> {
    let queue = Arc::new(MemoryQueue::new(
        "q",
        Duration::from_secs(30),
        Duration::from_secs(1),
    ));
    let store = Arc::new(MemoryStore::new());
    let cluster = Arc::new(MemoryCluster::new());
    for (key, body) in objects {
        store.put(BUCKET, key, body.clone());
        queue.send(&notification(key));
    }
    let vars = [
        ("SQS_QUEUE_URL", "http://memory/q"),
        ("SQS_WAIT_TIME_SECONDS", "1"),
        ("HEALTH_ADDR", "off"),
        ("RATE_LIMIT_DOCS_PER_SEC", "0"),
        ("BULK_FLUSH_INTERVAL_MS", "100"),
    ];
    let cfg = Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let wings = Wings {
        queue: queue.clone(),
        store,
        cluster: cluster.clone(),
        admin: std::sync::Arc::new(f4a_indexer::sink::admin::MemoryAdmin::new()),
        fleet: None,
    };
    let run = pipeline::run_with(
        cfg,
        wings,
        RunOptions {
            exit_when_idle: true,
        },
        CancellationToken::new(),
    );
    tokio::time::timeout(Duration::from_secs(3600), run)
        .await
        .expect("the pipeline never returned")
        .expect("pipeline result");
    assert_eq!(queue.depth(), (0, 0), "every message deleted");
    cluster
        .all_docs()
        .into_iter()
        .map(|(index, _, doc)| (index, doc))
        .collect()
}

fn key_of(doc: &Value) -> String {
    doc["aws"]["s3"]["object"]["key"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn every_fixture_gives_the_manifests_documents() {
    let manifest: Value = serde_json::from_slice(&fixture("manifest.json")).unwrap();
    let fixtures = manifest["fixtures"].as_object().unwrap();
    let objects: Vec<(String, Vec<u8>)> = fixtures
        .keys()
        .map(|name| (format!("in/{name}"), fixture(name)))
        .collect();
    let docs = index(&objects).await;
    let (mut indexed, mut dead) = (HashMap::<String, u64>::new(), HashMap::<String, u64>::new());
    for (index, doc) in &docs {
        let counts = if index == "f4a-dead-letter" {
            &mut dead
        } else {
            &mut indexed
        };
        *counts.entry(key_of(doc)).or_default() += 1;
    }
    for (name, f) in fixtures {
        let key = format!("in/{name}");
        let got = (
            indexed.get(&key).copied().unwrap_or(0),
            dead.get(&key).copied().unwrap_or(0),
        );
        let want = (
            f["indexed"].as_u64().unwrap(),
            f["dead_letter"].as_u64().unwrap(),
        );
        assert_eq!(got, want, "{name}: (indexed, dead-lettered)");
    }
    // The same 300 records whatever the compression: the same documents (less provenance).
    let body = |key: &str| {
        let mut v: Vec<String> = docs
            .iter()
            .filter(|(i, d)| i != "f4a-dead-letter" && key_of(d) == key)
            .map(|(_, d)| format!("{}|{}", d["timestamp"], d["message"]))
            .collect();
        v.sort();
        v
    };
    let reference = body("in/app-logs.ndjson.gz");
    assert_eq!(reference.len(), 300);
    for name in [
        "app-logs.ndjson.zst",
        "app-logs.pzstd.ndjson.zst",
        "misnamed-zstd.json",
        "app-logs.zip",
        "app-logs-streamed.zip",
        "app-logs.ndjson.sz",
        "concatenated-streams.ndjson.sz",
        "app-logs.ndjson.snappy",
    ] {
        assert_eq!(body(&format!("in/{name}")), reference, "{name}");
    }
    // Dead-letter entries say why, and which index the record would have gone to.
    for (index, d) in docs.iter().filter(|(i, _)| i == "f4a-dead-letter") {
        assert!(
            !d["error"]["message"].as_str().unwrap().is_empty(),
            "{index}: {d}"
        );
        assert!(
            d["f4a"]["target_index"]
                .as_str()
                .is_some_and(|t| t.starts_with("f4a-20")),
            "{d}"
        );
    }
    let reasons: Vec<&str> = docs
        .iter()
        .filter(|(i, d)| i == "f4a-dead-letter" && key_of(d).ends_with(".zip"))
        .filter_map(|(_, d)| d["error"]["message"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("is encrypted")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("method 12 (bzip2)")),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn elasticsearch_text_log_lines_are_documents_exactly() {
    let log = fixture("elasticsearch.log");
    let docs = index(&[("es/server.log".to_string(), log.clone())]).await;
    let text = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut got: Vec<(u64, String)> = docs
        .iter()
        .map(|(index, d)| {
            assert_ne!(index, "f4a-dead-letter", "{d}");
            (
                d["log"]["offset"].as_u64().unwrap(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let got: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(got, lines);
    assert!(lines.iter().filter(|l| l.starts_with('[')).count() > 50);
}
