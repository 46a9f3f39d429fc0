//! End-to-end tests: the real worker binary against the real LocalStack (S3, SQS, Firehose) and the
//! search engine of `F4A_ENGINE` (a real OpenSearch node by default). Each test builds its own
//! bucket, queue and index names on the shared node, and asserts what a user can observe:
//! documents in the index, messages left in the queues, exit codes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("fixtures/{name}"))).unwrap()
}

fn by_key(docs: &[Value]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for d in docs {
        let key = d["_source"]["aws"]["s3"]["object"]["key"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        *m.entry(key).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_to_index() {
    let w = World::new("firehose").await;
    let stream = unique("f4a-stream");
    w.aws
        .firehose
        .create_delivery_stream()
        .delivery_stream_name(&stream)
        .extended_s3_destination_configuration(
            aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
                .bucket_arn(format!("arn:aws:s3:::{}", w.bucket))
                .role_arn("arn:aws:iam::000000000000:role/firehose")
                .compression_format(aws_sdk_firehose::types::CompressionFormat::Gzip)
                .buffering_hints(
                    aws_sdk_firehose::types::BufferingHints::builder()
                        .interval_in_seconds(1)
                        .size_in_mbs(1)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Wait for the stream to be usable.
    for _ in 0..50 {
        let d = w
            .aws
            .firehose
            .describe_delivery_stream()
            .delivery_stream_name(&stream)
            .send()
            .await
            .unwrap();
        if d.delivery_stream_description()
            .map(|d| d.delivery_stream_status().as_str())
            == Some("ACTIVE")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Sensor records from the fixture, sent as three batches.
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&fixture("te-process.ndjson.gz")[..]),
        &mut text,
    )
    .unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(300)
        .collect();
    for chunk in lines.chunks(100) {
        let records: Vec<_> = chunk
            .iter()
            .map(|l| {
                let mut data = l.to_vec();
                data.push(b'\n');
                aws_sdk_firehose::types::Record::builder()
                    .data(aws_sdk_firehose::primitives::Blob::new(data))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = w
            .aws
            .firehose
            .put_record_batch()
            .delivery_stream_name(&stream)
            .set_records(Some(records))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_put_count(), 0);
    }
    assert!(
        w.aws.wait_visible(&w.queue_url, 3, MINUTE).await >= 3,
        "Firehose objects were not announced"
    );

    run_until_idle(&w.env(), MINUTE * 2).await;

    assert_eq!(w.es.count(&w.all()).await, 300);
    let docs = w.es.all_docs(&w.all()).await;
    let d = &docs[0]["_source"];
    assert_eq!(d["aws"]["s3"]["bucket"]["name"], w.bucket.as_str());
    let key = d["aws"]["s3"]["object"]["key"].as_str().unwrap();
    assert!(key.starts_with("20"), "Firehose date-based key: {key}");
    assert!(d["xmeas_1"].is_number() && d["xmv_11"].is_number());
    assert!(d["event"]["ingested"].is_string() && d["log"]["offset"].is_number());
    assert!(docs.iter().all(|d| d["_index"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}-2026.11.2", w.prefix))));
    assert_eq!(
        w.aws.depth(&w.queue_url).await,
        (0, 0),
        "every message deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_format() {
    let w = World::new("formats").await;
    let manifest: Value = serde_json::from_slice(&fixture("manifest.json")).unwrap();
    let fixtures = manifest["fixtures"].as_object().unwrap();
    for name in fixtures.keys() {
        w.put_and_wait(&format!("in/{name}"), fixture(name)).await;
    }
    run_until_idle(&w.env(), MINUTE * 3).await;

    let indexed = by_key(&w.es.all_docs(&w.data()).await);
    let dead = by_key(&w.es.all_docs(&w.dead()).await);
    for (name, f) in fixtures {
        let key = format!("in/{name}");
        assert_eq!(
            indexed.get(&key).copied().unwrap_or(0),
            f["indexed"].as_u64().unwrap(),
            "{name} indexed"
        );
        assert_eq!(
            dead.get(&key).copied().unwrap_or(0),
            f["dead_letter"].as_u64().unwrap(),
            "{name} dead-lettered"
        );
    }
    // Per-day indices follow each record's own timestamp.
    let te = &fixtures["te-process.ndjson.gz"]["by_utc_date"];
    for (day, n) in te.as_object().unwrap() {
        let docs = w.es.all_docs(&w.index(day)).await;
        let te_docs = docs
            .iter()
            .filter(|d| d["_source"]["aws"]["s3"]["object"]["key"] == "in/te-process.ndjson.gz")
            .count();
        assert_eq!(te_docs as u64, n.as_u64().unwrap(), "te records of {day}");
    }
    // Dead-letter entries say why, and where the record came from.
    for d in w.es.all_docs(&w.dead()).await {
        let s = &d["_source"];
        assert!(!s["error"]["message"].as_str().unwrap().is_empty());
        assert!(s["log"]["offset"].is_number());
        assert_eq!(s["aws"]["s3"]["bucket"]["name"], w.bucket.as_str());
    }
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn envelopes_odd_keys_and_ignored_messages() {
    // maxReceiveCount 1: the garbage message moves to the DLQ on its second receive.
    let w = World::with_max_receive("envelopes", 1).await;
    let key = "dir/obj with space+plus €.json";
    w.put_and_wait(key, ndjson(3, "plain")).await;
    // Objects put without their own notification, announced below by hand.
    w.aws.stop_notifications(&w.bucket).await;
    w.aws.put(&w.bucket, "sns/obj.json", ndjson(4, "sns")).await;
    w.aws
        .put(&w.bucket, "eb/a b+c.json", ndjson(5, "eventbridge"))
        .await;
    let s3_event = |key: &str, name: &str| {
        json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "eventTime": "2026-11-24T10:00:00.000Z",
            "s3": {"bucket": {"name": w.bucket}, "object": {"key": key, "size": 1}}}]})
        .to_string()
    };
    let sns = json!({"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:000000000000:t",
        "Message": s3_event("sns/obj.json", "ObjectCreated:Put")});
    w.aws.send(&w.queue_url, &sns.to_string()).await;
    let eventbridge = json!({"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
        "time": "2026-11-24T10:00:00Z", "region": "us-east-1",
        "detail": {"bucket": {"name": w.bucket}, "object": {"key": "eb/a b+c.json", "size": 1}}});
    w.aws.send(&w.queue_url, &eventbridge.to_string()).await;
    w.aws
        .send(
            &w.queue_url,
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"x"}"#,
        )
        .await;
    w.aws
        .send(
            &w.queue_url,
            &s3_event("sns/obj.json", "ObjectRemoved:Delete"),
        )
        .await;
    w.aws
        .send(
            &w.queue_url,
            &s3_event("does/not/exist.json", "ObjectCreated:Put"),
        )
        .await;
    w.aws.send(&w.queue_url, "this is not a notification").await;

    let mut env = w.env();
    env.insert("SQS_VISIBILITY_TIMEOUT_SECONDS".into(), "30".into());
    let log = run_until_idle(&env, MINUTE * 2).await;
    // The garbage message was released with a short delay; a second run sees it again, and SQS
    // moves it to the DLQ instead of delivering it a second time.
    tokio::time::sleep(Duration::from_secs(6)).await;
    run_until_idle(&env, MINUTE).await;

    let docs = w.es.all_docs(&w.all()).await;
    let keys = by_key(&docs);
    assert_eq!(keys.get(key), Some(&3), "URL-encoded key decoded: {keys:?}");
    assert_eq!(keys.get("sns/obj.json"), Some(&4));
    assert_eq!(keys.get("eb/a b+c.json"), Some(&5));
    assert_eq!(docs.len(), 12);
    assert!(log.contains("not an S3 notification"), "{log}");
    assert_eq!(
        w.aws.depth(&w.queue_url).await,
        (0, 0),
        "all but the garbage deleted"
    );
    let dlq = w.aws.peek_bodies(&w.dlq_url).await;
    assert_eq!(
        dlq,
        vec!["this is not a notification".to_string()],
        "garbage left for redrive"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_does_not_duplicate() {
    let w = World::new("redeliver").await;
    w.put_and_wait("a.json", gzip(&ndjson(50, "a"))).await;
    let body = w.aws.peek_bodies(&w.queue_url).await.pop().unwrap();
    run_until_idle(&w.env(), MINUTE).await;
    let first: Vec<String> =
        w.es.all_docs(&w.all())
            .await
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(first.len(), 50);
    // The same notification again, as SQS would redeliver it.
    w.aws.send(&w.queue_url, &body).await;
    run_until_idle(&w.env(), MINUTE).await;
    let mut second: Vec<String> =
        w.es.all_docs(&w.all())
            .await
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(second.len(), 50, "no duplicates");
    let mut first = first;
    first.sort();
    second.sort();
    assert_eq!(first, second, "same deterministic ids");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_documents_are_dead_lettered_with_the_reason() {
    let w = World::new("refused").await;
    let records = [
        json!({"n": 1, "i": 0}),
        json!({"n": "not a number", "i": 1}),
        json!({"event": "login", "i": 2}),
        json!({"event": {"action": "x"}, "i": 3}),
        json!({"log": "text", "i": 4}),
        json!({"log.level": "info", "i": 5}),
        json!({"aws": 1, "i": 6}),
        json!({"@timestamp": "yesterday", "i": 7}),
    ];
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    w.put_and_wait("mixed.json", body.into_bytes()).await;
    let mut env = w.env();
    env.insert("ES_INDEX".into(), w.index("logs"));
    run_until_idle(&env, MINUTE).await;

    let docs = w.es.all_docs(&w.index("logs")).await;
    let by_i: HashMap<i64, Value> = docs
        .iter()
        .map(|d| (d["_source"]["i"].as_i64().unwrap(), d["_source"].clone()))
        .collect();
    let mut got: Vec<i64> = by_i.keys().copied().collect();
    got.sort();
    assert_eq!(
        got,
        [0, 2, 3, 4, 5, 6, 7],
        "all but the mapping conflict indexed"
    );
    assert_eq!(by_i[&2]["event"]["value"], "login");
    assert_eq!(by_i[&3]["event"]["action"], "x");
    assert_eq!(by_i[&4]["log"]["value"], "text");
    assert_eq!(by_i[&5]["log"]["level"], "info");
    assert_eq!(by_i[&6]["aws"]["value"], 1);
    assert_eq!(by_i[&7]["@timestamp_original"], "yesterday");
    for d in by_i.values() {
        assert_eq!(d["aws"]["s3"]["object"]["key"], "mixed.json");
        assert!(d["log"]["offset"].is_number() && d["event"]["ingested"].is_string());
    }
    let dead = w.es.all_docs(&w.dead()).await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0]["_source"];
    // The cluster's own name for a mapping conflict: Elasticsearch renamed it in 8.x.
    let conflict = match engine() {
        Engine::Elasticsearch => "document_parsing_exception",
        _ => "mapper_parsing_exception",
    };
    assert_eq!(d["error"]["type"], conflict, "{d}");
    assert_eq!(d["f4a"]["stage"], "index");
    assert_eq!(d["f4a"]["target_index"], w.index("logs").as_str());
    assert!(d["event"]["original"]
        .as_str()
        .unwrap()
        .contains("not a number"));
    assert_eq!(d["aws"]["s3"]["object"]["key"], "mixed.json");
    assert_eq!(
        w.aws.depth(&w.queue_url).await,
        (0, 0),
        "message deleted once all records are settled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_object_exits_zero_and_restart_completes() {
    let w = World::new("sigterm").await;
    let n = 3000;
    w.put_and_wait("big.json.gz", gzip(&ndjson(n, "big"))).await;
    let mut env = w.env();
    env.insert("RATE_LIMIT_DOCS_PER_SEC".into(), "300".into());
    env.insert("BULK_MAX_DOCS".into(), "100".into());
    env.insert("SHUTDOWN_TIMEOUT_SECS".into(), "4".into());
    let mut worker = Worker::spawn(&env, &[]);
    assert!(
        w.es.wait_count(&w.all(), 200, MINUTE).await >= 200,
        "indexing started; log:\n{}",
        worker.log_text()
    );
    let started = std::time::Instant::now();
    worker.signal("TERM");
    let code = worker.wait(Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert_eq!(code, 0, "log:\n{}", worker.log_text());
    assert!(took <= Duration::from_secs(5), "exited after {took:?}");
    let partial = w.es.count(&w.all()).await;
    assert!(partial < n as u64, "stopped mid-object ({partial})");
    // The unfinished message went back to the queue at once (visibility 0).
    assert_eq!(
        w.aws
            .wait_visible(&w.queue_url, 1, Duration::from_secs(5))
            .await,
        1
    );

    run_until_idle(&w.env(), MINUTE * 2).await;
    let docs = w.es.all_docs(&w.all()).await;
    assert_eq!(docs.len(), n, "every record exactly once");
    let mut seen: Vec<i64> = docs
        .iter()
        .map(|d| d["_source"]["i"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_variable() {
    let cases = [
        (vec![], "SQS_QUEUE_URL"),
        (
            vec![("SQS_QUEUE_URL", "http://x/q"), ("SQS_MAX_MESSAGES", "11")],
            "SQS_MAX_MESSAGES",
        ),
        (
            vec![
                ("SQS_QUEUE_URL", "http://x/q"),
                ("RATE_LIMIT_DOCS_PER_SEC", "fast"),
            ],
            "RATE_LIMIT_DOCS_PER_SEC",
        ),
        (
            vec![("SQS_QUEUE_URL", "http://x/q"), ("ES_INDEX", "logs-%Q")],
            "ES_INDEX",
        ),
        (
            vec![("SQS_QUEUE_URL", "http://x/q"), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT",
        ),
    ];
    for (vars, name) in cases {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
            .env_clear()
            .envs(vars)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name) && err.contains("accepted"),
            "{name}: {err}"
        );
    }
}

/// TCP ports a process listens on: its socket inodes matched against /proc/net/tcp{,6} LISTEN rows.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is f[1] (hexip:hexport), st is f[3] (0A = LISTEN), inode is f[9].
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                ports.push(u16::from_str_radix(f[1].rsplit(':').next().unwrap(), 16).unwrap());
            }
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_and_healthcheck_subcommand() {
    let w = World::new("health").await;
    let mut env = w.env();
    let health = env["HEALTH_ADDR"].clone();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("http://{health}{path}");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.json::<Value>().await.ok()?))
        }
    };
    let mut worker = Worker::spawn(&env, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some((200, body)) = get("/readyz").await {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready; log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["status"], "ready");
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    // The health endpoint is the only port the worker listens on.
    let health_port: u16 = health.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        listening_ports(worker.child.id().unwrap()),
        vec![health_port]
    );
    let check = |addr: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
            .arg("healthcheck")
            .env("HEALTH_ADDR", addr)
            .output()
            .await
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(health.clone()).await, Some(0));
    assert_eq!(
        check(format!("127.0.0.1:{}", free_port())).await,
        Some(1),
        "nothing listening"
    );
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);

    // A cluster that does not answer: degraded, with the reason.
    env.insert("ES_URL".into(), format!("http://127.0.0.1:{}", free_port()));
    let mut worker = Worker::spawn(&env, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((503, body)) = get("/readyz").await {
            if body["status"] == "degraded" {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never degraded; log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body["cluster"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    assert_eq!(body["sqs"], "ok");
    assert_eq!(
        get("/healthz").await.unwrap().0,
        200,
        "alive while degraded"
    );
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(30)).await, 0);
}

/// Issue 9: records that already use the roots the worker writes into stay indexable.
#[tokio::test(flavor = "multi_thread")]
async fn added_fields_never_make_a_document_unindexable() {
    let w = World::new("collide").await;
    let records = [
        json!({"event": "login", "i": 0}),
        json!({"event": {"action": "x"}, "i": 1}),
        json!({"log": "text", "i": 2}),
        json!({"log.level": "info", "i": 3}),
        json!({"aws": 1, "i": 4}),
        json!({"@timestamp": "yesterday", "i": 5}),
    ];
    // One object per record, in order, so each arrives after the previous one set the mapping.
    let mut env = w.env();
    env.insert("ES_INDEX".into(), w.index("issue9"));
    for (k, r) in records.iter().enumerate() {
        w.put_and_wait(&format!("r{k}.json"), format!("{r}\n").into_bytes())
            .await;
        run_until_idle(&env, MINUTE).await;
    }
    let docs = w.es.all_docs(&w.index("issue9")).await;
    assert_eq!(docs.len(), 6, "all indexed");
    assert_eq!(w.es.count(&w.dead()).await, 0, "none dead-lettered");
    let by_i: HashMap<i64, Value> = docs
        .iter()
        .map(|d| (d["_source"]["i"].as_i64().unwrap(), d["_source"].clone()))
        .collect();
    assert_eq!(by_i[&0]["event"]["value"], "login");
    assert_eq!(by_i[&1]["event"]["action"], "x");
    assert_eq!(by_i[&2]["log"]["value"], "text");
    assert_eq!(by_i[&3]["log"]["level"], "info");
    assert_eq!(by_i[&4]["aws"]["value"], 1);
    assert_eq!(by_i[&5]["@timestamp_original"], "yesterday");
    for (i, d) in &by_i {
        assert_eq!(d["aws"]["s3"]["object"]["key"], format!("r{i}.json"));
        assert_eq!(d["aws"]["s3"]["bucket"]["name"], w.bucket.as_str());
        assert!(
            d["log"]["offset"].is_number()
                && d["event"]["ingested"].is_string()
                && d["@timestamp"].is_string()
        );
    }
    // The original values are searchable where the rule puts them.
    let (_, hits) =
        w.es.request(
            reqwest::Method::POST,
            &format!("/{}/_search", w.index("issue9")),
            Some(json!({"query": {"match": {"event.value": "login"}}})),
        )
        .await;
    assert_eq!(
        hits["hits"]["hits"].as_array().map(Vec::len),
        Some(1),
        "{hits}"
    );
}

/// The harness's private node, which tests that break or restart their cluster use: its own
/// settings, SIGKILL and SIGTERM, and a restart on the same data path and port that keeps what
/// the node acknowledged (a real node; osmem takes no settings and keeps nothing).
#[tokio::test(flavor = "multi_thread")]
async fn private_node_takes_settings_and_restarts_on_its_data_path() {
    let mut node = PrivateNode::start(&[
        ("thread_pool.write.size", "1"),
        ("thread_pool.write.queue_size", "2"),
    ])
    .await;
    let url = node.url.clone();
    for i in 0..3 {
        let (status, v) = node
            .es
            .request(
                reqwest::Method::PUT,
                &format!("/kept/_doc/{i}"),
                Some(json!({"i": i})),
            )
            .await;
        assert!(status == 200 || status == 201, "{status} {v}");
    }
    assert_eq!(node.es.count("kept").await, 3);
    if !node.persistent() {
        return;
    }
    let (_, pool) = node
        .es
        .request(
            reqwest::Method::GET,
            "/_cat/thread_pool/write?format=json&h=size,queue_size",
            None,
        )
        .await;
    assert_eq!(pool[0]["size"], "1", "{pool}");
    assert_eq!(pool[0]["queue_size"], "2", "{pool}");

    node.kill().await;
    assert!(
        reqwest::get(format!("{url}/")).await.is_err(),
        "the node is gone after SIGKILL"
    );
    node.restart().await;
    assert_eq!(node.url, url, "same port after the restart");
    assert_eq!(
        node.es.count("kept").await,
        3,
        "acknowledged documents survive SIGKILL"
    );

    node.stop().await;
    node.restart().await;
    assert_eq!(node.es.count("kept").await, 3, "and a clean stop");
    assert!(node.data_path().is_dir());
}
