//! Bad input never panics the worker nor loses a good record: a corpus of broken objects and
//! notifications (truncated gzip, gzip of noise, invalid UTF-8, a 50 MB line, deep nesting, a
//! missing bucket, a body that is not JSON) through the real binary, LocalStack and the shared
//! search engine. Each undecodable record is one dead-letter entry with its reason, the good
//! records of the same object are indexed, a message that cannot be read is left for the queue's
//! redrive, and memory stays bounded (peak RSS sampled from /proc).

mod common;

use std::time::Duration;

use common::faulty::*;
use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn lines(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    out
}

fn rec(i: usize, tag: &str) -> Vec<u8> {
    json!({"i": i, "tag": tag, "@timestamp": "2026-11-24T10:00:00.000Z"})
        .to_string()
        .into_bytes()
}

/// gzip through the system's `gzip` (fast even for a 50 MB line in a debug build).
fn gzip_cli(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

/// Peak resident memory of a process while it runs, sampled from /proc.
fn sample_rss(pid: u32) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_corpus_dead_letters_or_redrives_and_keeps_good_records() {
    // maxReceiveCount 1: a message left for redrive moves to the DLQ on its next receive.
    let w = World::with_max_receive("badinput", 1).await;
    let g = |i| rec(i, "good");

    let trunc_full = gzip(&ndjson(200, "trunc"));
    let trunc = trunc_full[..trunc_full.len() / 2].to_vec();
    let mut rng = fastrand::Rng::with_seed(4);
    let noise: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    let mut huge = b"{\"big\":\"".to_vec();
    huge.resize(50 * 1024 * 1024, b'x');
    huge.extend_from_slice(b"\"}");
    let deep = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);

    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("trunc.json.gz", trunc),
        ("noise.gz", gzip(&noise)),
        (
            "utf8.json",
            lines(&[&g(0), b"{\"s\":\"\xff\xfe\xfd\",\"i\":99}", &g(1)]),
        ),
        ("huge.json.gz", gzip_cli(&lines(&[&g(0), &huge, &g(1)]))),
        ("deep.json", lines(&[&g(0), deep.as_bytes(), &g(1)])),
        (
            "bignum.json",
            lines(&[
                &g(0),
                b"{\"n\":1e400,\"i\":98}",
                b"{\"n\":123456789012345678901234567890,\"i\":1}",
                &g(2),
            ]),
        ),
        ("dupkeys.json", lines(&[b"{\"k\":1,\"k\":2,\"i\":0}"])),
        ("emptyrecord.json", lines(&[b"{}"])),
        ("empty.json", Vec::new()),
        ("newlines.json", b"\n\n\n\r\n\n".to_vec()),
    ];
    drop(huge);
    for (key, body) in objects {
        w.put_and_wait(key, body).await;
    }
    let missing_bucket = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": "f4a-no-such-bucket-4c1d"}, "object": {"key": "x.json", "size": 1}}}]})
    .to_string();
    w.aws.send(&w.queue_url, &missing_bucket).await;
    w.aws.send(&w.queue_url, "{not json at all").await;

    let mut env = w.env();
    env.insert("HEALTH_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    env.insert("SQS_VISIBILITY_TIMEOUT_SECONDS".into(), "30".into());
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    let rss = sample_rss(worker.child.id().unwrap());
    let code = worker.wait(3 * MINUTE).await;
    let log = worker.log_text();
    assert_eq!(code, 0, "log:\n{log}");
    log_has_no_panic(&log);
    let peak = rss.await.unwrap();
    assert!(
        peak < 256 * 1024 * 1024,
        "memory stays bounded with a 50 MB line: peak RSS {} MiB",
        peak >> 20
    );

    let docs = w.es.all_docs(&w.data()).await;
    let dead = w.es.all_docs(&w.dead()).await;
    let of = |docs: &[Value], key: &str| -> Vec<Value> {
        docs.iter()
            .filter(|d| d["_source"]["aws"]["s3"]["object"]["key"] == key)
            .map(|d| d["_source"].clone())
            .collect()
    };
    let is = |docs: &[Value]| -> Vec<i64> {
        let mut v: Vec<i64> = docs.iter().filter_map(|d| d["i"].as_i64()).collect();
        v.sort();
        v
    };

    // Truncated gzip: every record before the damage, then one dead-letter entry.
    let t = of(&docs, "trunc.json.gz");
    assert!(!t.is_empty() && t.len() < 200, "{}", t.len());
    assert_eq!(is(&t), (0..t.len() as i64).collect::<Vec<_>>());
    let td = of(&dead, "trunc.json.gz");
    assert_eq!(td.len(), 1);
    assert_eq!(td[0]["f4a"]["stage"], "decode");

    // Binary noise: whatever it decodes to, something says so.
    assert!(of(&docs, "noise.gz").len() + of(&dead, "noise.gz").len() >= 1);

    for (key, good, bad) in [
        ("utf8.json", vec![0, 1], 1),
        ("huge.json.gz", vec![0, 1], 1),
        ("deep.json", vec![0, 1], 1),
        ("bignum.json", vec![0, 1, 2], 1),
    ] {
        assert_eq!(is(&of(&docs, key)), good, "{key}: good records kept");
        let d = of(&dead, key);
        assert_eq!(d.len(), bad, "{key}: dead-lettered");
        for e in &d {
            assert!(!e["error"]["message"].as_str().unwrap().is_empty());
            // 1e400 is valid JSON: the worker passes it as written and the cluster refuses it.
            let stage = if key == "bignum.json" {
                "index"
            } else {
                "decode"
            };
            assert_eq!(e["f4a"]["stage"], stage, "{key}");
            assert!(e["log"]["offset"].as_u64().unwrap() > 0);
        }
    }
    let h = &of(&dead, "huge.json.gz")[0];
    assert!(
        h["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_RECORD_BYTES"),
        "{}",
        h["error"]["message"]
    );
    let head = h["event"]["original"].as_str().unwrap();
    assert!(head.starts_with("{\"big\":\"xxx") && head.len() <= 16 * 1024);
    let big = &of(&docs, "bignum.json");
    assert!(
        big.iter().any(|d| d["n"].is_number()),
        "a beyond-i64 integer is kept as a number"
    );

    let dup = of(&docs, "dupkeys.json");
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0]["k"], 2, "last duplicate key wins");
    let empty = of(&docs, "emptyrecord.json");
    assert_eq!(empty.len(), 1);
    assert!(empty[0]["@timestamp"].is_string() && empty[0]["log"]["offset"] == 0);
    for key in ["empty.json", "newlines.json"] {
        assert!(
            of(&docs, key).is_empty() && of(&dead, key).is_empty(),
            "{key}"
        );
    }

    // The two bad notifications were left in the queue (released with a short delay), every
    // other message deleted. On their next receive SQS moves them to the DLQ.
    let (visible, in_flight) = w.aws.depth(&w.queue_url).await;
    assert_eq!(visible + in_flight, 2, "left for redrive");
    assert!(log.contains("not an S3 notification"), "{log}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    run_until_idle(&env, MINUTE).await;
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    let mut dlq = w.aws.peek_bodies(&w.dlq_url).await;
    dlq.sort();
    let mut want = vec![missing_bucket, "{not json at all".to_string()];
    want.sort();
    assert_eq!(dlq, want, "both in the dead-letter queue");
}
