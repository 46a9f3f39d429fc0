//! End-to-end tests of issue 15 (the real binary, LocalStack, the real search node): an object of
//! plain-text log lines that start with `[` is one document per line, exactly; objects in every
//! accepted compression, under keys with no suffix at all, give the same documents as gzip; the
//! dead-letter entries of a ZIP with an encrypted entry say why and name their target index.
//! `e2e.rs::every_fixture_format` checks the per-object numbers of every fixture.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("fixtures/{name}"))).unwrap()
}

fn key_of(d: &Value) -> &str {
    d["_source"]["aws"]["s3"]["object"]["key"]
        .as_str()
        .unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticsearch_plain_text_log_lines_are_the_documents() {
    let w = World::new("eslog").await;
    let log = fixture("elasticsearch.log");
    w.put_and_wait("logs/es-node-1/server.log", log.clone())
        .await;
    run_until_idle(&w.env(), MINUTE * 2).await;

    let text = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(w.es.count(&w.dead()).await, 0, "nothing dead-lettered");
    let mut docs: Vec<(u64, String)> =
        w.es.all_docs(&w.data())
            .await
            .iter()
            .map(|d| {
                let s = &d["_source"];
                (
                    s["log"]["offset"].as_u64().unwrap(),
                    s["message"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    docs.sort();
    let messages: Vec<&str> = docs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(messages, lines, "one document per line, exactly the line");
    assert!(lines[0].starts_with("[2018-05-17T08:29:12,"));
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compression_without_a_key_suffix_gives_the_gzip_documents() {
    let w = World::new("compress").await;
    let objects = [
        ("gzip", "app-logs.ndjson.gz"),
        ("zstd", "app-logs.ndjson.zst"),
        ("pzstd", "app-logs.pzstd.ndjson.zst"),
        ("snappy", "app-logs.ndjson.sz"),
        ("hadoop", "app-logs.ndjson.snappy"),
        ("zip", "app-logs.zip"),
        ("zip-streamed", "app-logs-streamed.zip"),
        ("zip-encrypted", "encrypted-entry.zip"),
    ];
    for (key, name) in objects {
        // No suffix: the content alone tells the compression.
        w.put_and_wait(&format!("firehose/{key}"), fixture(name))
            .await;
    }
    run_until_idle(&w.env(), MINUTE * 3).await;

    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in w.es.all_docs(&w.data()).await {
        let s = &d["_source"];
        by_key
            .entry(key_of(&d).to_string())
            .or_default()
            .push(format!(
                "{}|{}|{}",
                s["timestamp"], s["service"], s["message"]
            ));
    }
    for v in by_key.values_mut() {
        v.sort();
    }
    let gzip = by_key["firehose/gzip"].clone();
    assert_eq!(gzip.len(), 300);
    for (key, _) in &objects[1..7] {
        assert_eq!(by_key[&format!("firehose/{key}")], gzip, "{key}");
    }
    assert_eq!(by_key["firehose/zip-encrypted"].len(), 200);
    let dead = w.es.all_docs(&w.dead()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let s = &dead[0]["_source"];
    assert_eq!(key_of(&dead[0]), "firehose/zip-encrypted");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secret.ndjson is encrypted"),
        "{s}"
    );
    assert_eq!(s["f4a"]["stage"], "decode");
    assert!(
        s["f4a"]["target_index"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-20", w.prefix)),
        "{s}"
    );
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}
