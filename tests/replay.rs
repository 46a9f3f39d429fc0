//! `f4a-indexer replay-dead-letters` against LocalStack and the real search node, the
//! dead-letter half of the recovery drill: a mapping breaks, documents are dead-lettered, the
//! mapping is fixed, the replay brings them into their daily indices and empties the
//! dead-letter index of them; what is still refused keeps its entry with the new reason, what the
//! entry does not hold whole stays dead with why, and a second run retries what is left.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::time::Duration;

use common::tool::{assert_exit, summary};
use common::World;
use reqwest::Method;
use serde_json::{json, Value};

async fn replay(env: &HashMap<String, String>, args: &[&str]) -> Output {
    common::tool::run_tool("replay-dead-letters", env, args).await
}

/// The strict (broken) or dynamic (fixed) mapping of this world's daily indices.
async fn user_template(w: &World, dynamic: &str) {
    let name = format!("{}-user", w.prefix);
    w.es.user_template(&name, &w.data(), dynamic).await;
}

/// The dead-letter entries by `_id`.
async fn entries(w: &World) -> BTreeMap<String, Value> {
    w.es.all_docs(&w.dead())
        .await
        .into_iter()
        .map(|mut d| {
            let id = d["_id"].as_str().unwrap_or_default().to_string();
            (id, d["_source"].take())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_mapping_brings_the_dead_letters_back_and_the_rest_keep_their_reason() {
    let w = World::new("replay").await;
    user_template(&w, "strict").await;
    // 30 records: every third has a field the strict mapping refuses (fixed below), three have
    // a text `n` (refused by the long mapping, and still after the fix), and one is longer than
    // MAX_RECORD_BYTES (only its head is kept: it can never come back).
    let mut body = String::new();
    for i in 0..30u32 {
        let extra = if i % 3 == 0 {
            format!(",\"extra\":\"field of {i}\"")
        } else {
            String::new()
        };
        let n = if i % 3 == 1 && i < 10 {
            "\"not a number\"".to_string()
        } else {
            i.to_string()
        };
        body.push_str(&format!(
            "{{\"@timestamp\":\"2026-11-20T10:{i:02}:00.000Z\",\"message\":\"record {i}\",\"n\":{n}{extra}}}\n"
        ));
    }
    body.push_str(&format!(
        "{{\"@timestamp\":\"2026-11-20T11:00:00.000Z\",\"message\":\"{}\"}}\n",
        "y".repeat(3000)
    ));
    w.put_and_wait("firehose/2026/11/20/10/stream.json", body.into_bytes())
        .await;
    let mut env = w.env();
    env.insert("MAX_RECORD_BYTES".into(), "2000".into());
    common::run_until_idle(&env, Duration::from_secs(120)).await;
    assert_eq!(
        w.es.count(&w.data()).await,
        17,
        "the records the mapping took"
    );
    let dead = entries(&w).await;
    assert_eq!(dead.len(), 14, "10 strict + 3 mapping + 1 too long");
    let strict: Vec<String> = dead
        .iter()
        .filter(|(_, e)| e["error"]["type"] == "strict_dynamic_mapping_exception")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(strict.len(), 10);

    // A dry run counts and changes nothing.
    let out = replay(&env, &["--dry-run"]).await;
    assert_exit(&out, 0, "exit code");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"{"entries":10,"error_type":"strict_dynamic_mapping_exception"}"#),
        "{stdout}"
    );
    assert_eq!(summary(&out)["entries_selected"], 14, "{stdout}");
    assert_eq!(entries(&w).await, dead, "a dry run changes nothing");

    // The fix: the template and the existing daily index take new fields.
    user_template(&w, "true").await;

    // Only the entries of the fixed cause: all of them come back, their entries go.
    let out = replay(
        &env,
        &[
            "--error-type",
            "strict_dynamic_mapping_exception",
            "--batch",
            "4",
        ],
    )
    .await;
    assert_exit(&out, 0, "exit code");
    let s = summary(&out);
    assert_eq!(
        (s["replayed"].as_u64(), s["summary"].as_str()),
        (Some(10), Some("complete")),
        "{s}"
    );
    assert_eq!(w.es.count(&w.data()).await, 27);
    let docs: HashMap<String, Value> =
        w.es.all_docs(&w.data())
            .await
            .into_iter()
            .map(|mut d| (d["_id"].as_str().unwrap().to_string(), d["_source"].take()))
            .collect();
    for id in &strict {
        let doc = docs
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not back under its _id"));
        let original: Value =
            serde_json::from_str(dead[id]["event"]["original"].as_str().unwrap()).unwrap();
        assert_eq!(doc, &original, "the document as the service made it");
        assert!(doc["extra"].is_string() && doc["log"]["offset"].is_u64());
        assert_eq!(
            doc["aws"]["s3"]["object"]["key"],
            "firehose/2026/11/20/10/stream.json"
        );
    }
    let left = entries(&w).await;
    assert_eq!(left.len(), 4);
    assert!(strict.iter().all(|id| !left.contains_key(id)));

    // An entry of an older worker whose record the decoder of today reads: it comes back.
    let old_id = "0123456789abcdef0123456789abcdef";
    let (status, answer) = w
        .es
        .request(
            Method::PUT,
            &format!("/{}/_doc/{old_id}?refresh=true", w.dead()),
            Some(json!({
                "@timestamp": "2026-11-21T00:00:00.000Z",
                "error": {"type": "decode_error", "message": "invalid JSON: (fixed since)"},
                "event": {"original": "{\"@timestamp\":\"2026-11-20T12:00:00.000Z\",\"message\":\"old\"}", "ingested": "2026-11-20T12:00:01.000Z"},
                "aws": {"s3": {"bucket": {"name": w.bucket}, "object": {"key": "old/key"}}},
                "log": {"offset": 5},
                "f4a": {"stage": "decode", "target_index": format!("{}-2026.11.20", w.prefix)},
            })),
        )
        .await;
    assert!(status == 201 || status == 200, "{answer}");

    // Everything else: the mapping conflicts are refused again and keep their entries with the
    // new reason, the cut record stays dead with why, the old entry comes back. Exit 1: not all.
    let raised = {
        let mut e = env.clone();
        e.insert("MAX_RECORD_BYTES".into(), "100000".into());
        e
    };
    for run in 1..=2u64 {
        let out = replay(&raised, &[]).await;
        assert_exit(&out, 1, &format!("run {run}"));
        let s = summary(&out);
        assert_eq!(s["refused_again"], 3, "run {run}: {s}");
        assert_eq!(s["unreplayable"], 1, "run {run}: {s}");
        assert_eq!(
            s["replayed"],
            if run == 1 { 1 } else { 0 },
            "run {run}: {s}"
        );
        let left = entries(&w).await;
        assert_eq!(left.len(), 4, "run {run}");
        for (id, e) in &left {
            assert_eq!(e["f4a"]["replay"]["attempts"], run, "run {run}: {id} {e}");
            match e["f4a"]["stage"].as_str() {
                Some("index") => {
                    let t = e["error"]["type"].as_str().unwrap_or_default();
                    assert!(
                        t == "mapper_parsing_exception" || t == "document_parsing_exception",
                        "{e}"
                    );
                    assert!(e["f4a"]["replay"]["error"].is_null(), "{e}");
                }
                _ => {
                    let why = e["f4a"]["replay"]["error"].as_str().unwrap_or_default();
                    assert!(why.contains("2000 of the record's 3"), "{e}");
                    assert_eq!(e["error"]["type"], "decode_error", "its cause is kept");
                }
            }
        }
    }
    let old =
        w.es.all_docs(&w.data())
            .await
            .into_iter()
            .find(|d| d["_id"] == old_id)
            .expect("the old entry's record is in its daily index");
    assert_eq!(old["_index"], format!("{}-2026.11.20", w.prefix));
    assert_eq!(old["_source"]["message"], "old");
    assert_eq!(old["_source"]["log"]["offset"], 5);
    assert_eq!(w.es.count(&w.data()).await, 28);

    for bad in [
        &["--batch", "0"][..],
        &["--since", "yesterday"][..],
        &["--bogus"][..],
    ] {
        let out = replay(&env, bad).await;
        assert_exit(&out, 2, &format!("{bad:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_replay_loses_nothing_and_the_next_run_finishes_it() {
    let w = World::new("replaystop").await;
    user_template(&w, "strict").await;
    const RECORDS: usize = 200;
    let body: String = (0..RECORDS)
        .map(|i| {
            format!(
                "{{\"@timestamp\":\"2026-11-20T10:00:00.000Z\",\"message\":\"record {i}\",\"n\":{i},\"extra\":\"x{i}\"}}\n"
            )
        })
        .collect();
    w.put_and_wait("firehose/2026/11/20/10/all-refused.json", body.into_bytes())
        .await;
    let env = w.env();
    common::run_until_idle(&env, Duration::from_secs(120)).await;
    assert_eq!(w.es.count(&w.dead()).await, RECORDS as u64, "all refused");
    let ids: Vec<String> = entries(&w).await.into_keys().collect();
    user_template(&w, "true").await;

    // 20 documents/s in batches of 10: about 10 s for all; stopped after 3.
    let mut slow = env.clone();
    slow.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "20".into());
    slow.insert("RATE_LIMIT_BURST".into(), "10".into());
    let mut run = common::Worker::spawn(&slow, &["replay-dead-letters", "--batch", "10"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.signal("TERM");
    let code = run.wait(Duration::from_secs(60)).await;
    assert_eq!(
        code,
        1,
        "interrupted: not all replayed; log:\n{}",
        run.log_text()
    );
    let indexed = w.es.count(&w.data()).await;
    let left = entries(&w).await;
    assert!(
        indexed > 0 && !left.is_empty(),
        "stopped half-way: {indexed} indexed"
    );
    // Rate-limited like the service: about 4 s at 20/s (a burst of 10, the deletes of the
    // entries sharing the tokens), never the 200 at once.
    assert!(indexed <= 100, "{indexed} indexed in about 4 s at 20/s");
    // Every record is in its index or still has its entry: nothing lost in between.
    let docs: std::collections::HashSet<String> =
        w.es.all_docs(&w.data())
            .await
            .into_iter()
            .map(|d| d["_id"].as_str().unwrap().to_string())
            .collect();
    for id in &ids {
        assert!(docs.contains(id) || left.contains_key(id), "{id} lost");
    }

    let out = replay(&env, &[]).await;
    assert_exit(&out, 0, "exit code");
    assert_eq!(
        w.es.count(&w.data()).await,
        RECORDS as u64,
        "each record once"
    );
    assert_eq!(
        w.es.count(&w.dead()).await,
        0,
        "the dead-letter index is empty"
    );
}
