//! Keeping the cluster small (issue 17), on the real search node through LocalStack: the item
//! limits (exact counts, the same sampled subset after redelivery), the index setup (templates
//! on a fresh cluster, ten workers at once, a user without the template privilege) and
//! retention by the date in the index name.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::Utc;
use common::proxy::Proxy;
use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn with(w: &World, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = w.env();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// The `_id` the worker gives the record at `offset` of `bucket/key` (record::target): the test
/// computes the sample the worker must keep from it.
fn document_id(bucket: &str, key: &str, version: &str, offset: u64) -> String {
    let mut k = Vec::new();
    for part in [bucket, key, version] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(&offset.to_le_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&k))
}

fn sampled_in(id: &str, percent: f64) -> bool {
    let h = u64::from_str_radix(&id[..16], 16).unwrap();
    h < (percent / 100.0 * u64::MAX as f64) as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn item_limits_keep_exactly_the_expected_records_and_the_same_subset_on_redelivery() {
    let w = World::new("limits").await;
    let long = "L".repeat(300);
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..300u64 {
        offsets.push(body.len() as u64);
        let rec = json!({
            "i": i,
            "level": if i % 5 == 0 { "debug" } else { "info" },
            "secret": "s3cr3t",
            "msg": if i % 10 == 3 { long.as_str() } else { "short" },
            "@timestamp": "2026-11-24T10:00:00.000Z",
        });
        body.extend_from_slice(rec.to_string().as_bytes());
        body.push(b'\n');
    }
    w.put_and_wait("limits.json", body.clone()).await;
    let head = w
        .aws
        .s3
        .head_object()
        .bucket(&w.bucket)
        .key("limits.json")
        .send()
        .await
        .unwrap();
    let version = head
        .version_id()
        .map(str::to_string)
        .or(head.e_tag().map(|e| e.trim_matches('"').to_string()))
        .unwrap();
    let expected: BTreeSet<u64> = (0..300u64)
        .filter(|i| i % 5 != 0)
        .filter(|&i| {
            sampled_in(
                &document_id(&w.bucket, "limits.json", &version, offsets[i as usize]),
                50.0,
            )
        })
        .collect();
    assert!((90..150).contains(&expected.len()), "{}", expected.len());

    let env = with(
        &w,
        &[
            ("DROP_WHERE", "level=debug"),
            ("FIELDS_EXCLUDE", "secret"),
            ("MAX_STRING_BYTES", "200"),
            ("SAMPLE_PERCENT", "50"),
        ],
    );
    let log = run_until_idle(&env, 2 * MINUTE).await;
    let indexed = |docs: &[Value]| -> BTreeSet<u64> {
        docs.iter()
            .map(|d| d["_source"]["i"].as_u64().unwrap())
            .collect()
    };
    let docs = w.es.all_docs(&w.data()).await;
    assert_eq!(docs.len(), expected.len(), "no duplicates; log:\n{log}");
    assert_eq!(indexed(&docs), expected);
    for d in &docs {
        let s = &d["_source"];
        assert!(s.get("secret").is_none(), "{s}");
        assert_eq!(s["level"], "info");
        assert_eq!(s["aws"]["s3"]["object"]["key"], "limits.json");
        if s["i"].as_u64().unwrap() % 10 == 3 {
            assert!(s.get("msg").is_none());
            let overflow: Value =
                serde_json::from_str(s["f4a"]["overflow"].as_str().unwrap()).unwrap();
            assert_eq!(overflow["msg"], long.as_str(), "moved whole, never cut");
            assert_eq!(s["f4a"]["limits"], json!(["max_string_bytes"]));
        } else {
            assert_eq!(s["msg"], "short");
        }
    }
    // Nothing dead-lettered (dropping is not a failure), the message deleted.
    assert_eq!(w.es.count(&w.dead()).await, 0);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    // The object's log line counts the drops (the counts themselves are asserted above).
    assert!(log.contains("dropped_sampled"), "{log}");

    // Redelivered (the same object again, same ETag, so the same ids): exactly the same subset.
    w.es.delete_indices(&w.data()).await;
    w.put_and_wait("limits.json", body).await;
    run_until_idle(&env, 2 * MINUTE).await;
    let again = w.es.all_docs(&w.data()).await;
    assert_eq!(indexed(&again), expected);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_rule_exits_2_naming_the_variable() {
    let w = World::new("badrule").await;
    for (var, value) in [
        ("DROP_WHERE", "level>3"),
        ("DROP_WHERE", "msg=~(unclosed"),
        ("FIELDS_INCLUDE", "a..b"),
        ("SAMPLE_PERCENT", "150"),
        ("ES_SETUP", "sometimes"),
    ] {
        let mut worker = Worker::spawn(&with(&w, &[(var, value)]), &[]);
        let code = worker.wait(MINUTE).await;
        let log = worker.log_text();
        assert_eq!(code, 2, "{var}={value}: {log}");
        assert!(log.contains(var) && log.contains("accepted"), "{log}");
    }
}

async fn get(w: &World, path: &str) -> (u16, Value) {
    w.es.request(reqwest::Method::GET, path, None).await
}

fn docs_template(w: &World) -> String {
    format!("f4a-indexer-docs-{}", w.prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_cluster_gets_the_templates_and_todays_index_their_settings() {
    let w = World::new("setup").await;
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let records: String = (0..20)
        .map(|i| {
            format!(
                "{}\n",
                json!({"i": i, "x": f64::from(i) + 0.5, "@timestamp": now, "message": "GET /index.html 200", "user": {"name": "ann"}, "when": "2026-11-24T10:00:00Z", "n": "12"})
            )
        })
        .collect();
    w.put_and_wait("fresh.json", records.into_bytes()).await;
    run_until_idle(&w.env(), MINUTE).await;

    let (status, t) = get(&w, &format!("/_index_template/{}", docs_template(&w))).await;
    assert_eq!(status, 200, "{t}");
    let meta = &t["index_templates"][0]["index_template"]["_meta"];
    assert_eq!(meta["managed_by"], "f4a-indexer");
    assert!(meta["f4a_template_version"].is_string(), "{meta}");
    let dl = format!("f4a-indexer-dead-letter-{}", w.dead());
    assert_eq!(get(&w, &format!("/_index_template/{dl}")).await.0, 200);

    let today = format!("{}-{}", w.prefix, Utc::now().format("%Y.%m.%d"));
    assert_eq!(w.es.count(&today).await, 20);
    let (_, s) = get(&w, &format!("/{today}/_settings")).await;
    let s = &s[&today]["settings"]["index"];
    assert_eq!(s["number_of_shards"], "1", "{s}");
    assert_eq!(s["number_of_replicas"], "0", "single data node: no replica");
    assert_eq!(s["refresh_interval"], "30s");
    assert_eq!(s["codec"], "best_compression");
    assert_eq!(s["mapping"]["total_fields"]["limit"], "1000");
    let (_, m) = get(&w, &format!("/{today}/_mapping")).await;
    let p = &m[&today]["mappings"]["properties"];
    assert_eq!(p["@timestamp"]["type"], "date");
    assert_eq!(p["message"]["type"], "text");
    assert_eq!(p["user"]["properties"]["name"]["type"], "keyword");
    assert_eq!(p["when"]["type"], "keyword", "no date detection");
    assert_eq!(p["n"]["type"], "keyword", "no numeric detection");
    assert_eq!(p["event"]["properties"]["ingested"]["type"], "date");
    assert_eq!(p["log"]["properties"]["offset"]["type"], "long");
    // Numbers as doc values only (ES_INDEX_NUMBERS=doc_values), and still searchable by range.
    assert_eq!(p["i"], json!({"type": "long", "index": false}));
    assert_eq!(p["x"], json!({"type": "float", "index": false}));
    w.es.refresh(&today).await;
    let body = json!({"query": {"bool": {"filter": [
        {"range": {"i": {"gte": 5, "lt": 15}}},
        {"range": {"x": {"gte": 10.0}}},
    ]}}});
    let (status, c) =
        w.es.request(
            reqwest::Method::POST,
            &format!("/{today}/_count"),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["count"], 5, "i in 10..15: {c}");
    let (_, h) = get(&w, &format!("/_cluster/health/{today}")).await;
    assert_eq!(h["status"], "green", "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_workers_starting_at_once_agree_on_one_template_version() {
    let w = World::new("ten").await;
    let env = w.env();
    let mut workers: Vec<Worker> = (0..10)
        .map(|_| {
            let mut e = env.clone();
            e.insert("HEALTH_ADDR".into(), "off".into());
            Worker::spawn(&e, &["--exit-when-idle"])
        })
        .collect();
    for worker in &mut workers {
        let code = worker.wait(2 * MINUTE).await;
        let log = worker.log_text();
        assert_eq!(code, 0, "{log}");
        assert!(!log.contains("not set up"), "{log}");
    }
    let (status, t) = get(&w, &format!("/_index_template/{}", docs_template(&w))).await;
    assert_eq!(status, 200);
    let templates = t["index_templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1);
    // The version the templates carry is the one a worker computes: an eleventh finds it
    // unchanged and puts nothing.
    let version = templates[0]["index_template"]["_meta"]["f4a_template_version"].clone();
    let p = Proxy::start(&w.es.url).await;
    let mut e = env.clone();
    e.insert("ES_URL".into(), p.url.clone());
    run_until_idle(&e, MINUTE).await;
    let (_, t) = get(&w, &format!("/_index_template/{}", docs_template(&w))).await;
    assert_eq!(
        t["index_templates"][0]["index_template"]["_meta"]["f4a_template_version"],
        version
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_template_privilege_it_logs_once_and_indexes() {
    let w = World::new("forbidden").await;
    let p = Proxy::start(&w.es.url).await;
    p.state.forbid("/_index_template");
    w.put_and_wait("f.json", ndjson(30, "f")).await;
    let mut env = w.env();
    env.insert("ES_URL".into(), p.url.clone());
    let log = run_until_idle(&env, MINUTE).await;
    assert_eq!(w.es.count(&w.data()).await, 30, "{log}");
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    assert_eq!(
        p.state
            .forbidden_answers
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one refused request, not one per template or per retry"
    );
    assert_eq!(log.matches("manage_index_templates").count(), 1, "{log}");
    let (status, _) = get(&w, &format!("/_index_template/{}", docs_template(&w))).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_exactly_the_old_days_of_es_index() {
    let w = World::new("retention").await;
    let today = Utc::now().date_naive();
    let day = |back: i64| {
        format!(
            "{}-{}",
            w.prefix,
            (today - chrono::Duration::days(back)).format("%Y.%m.%d")
        )
    };
    let mut ours: Vec<String> = (-1..=40).map(day).collect();
    let others = [
        w.dead(),
        format!("{}-2020.01.01-restored", w.prefix),
        format!("{}-unrelated", w.prefix),
    ];
    ours.sort();
    for name in ours.iter().chain(&others) {
        let (status, v) =
            w.es.request(
                reqwest::Method::PUT,
                &format!("/{name}"),
                Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {v}");
    }
    let all = || async {
        w.es.indices(&w.all())
            .await
            .into_iter()
            .collect::<BTreeSet<_>>()
    };
    let before = all().await;
    assert_eq!(before.len(), ours.len() + others.len());

    let dry = with(
        &w,
        &[("RETENTION_DAYS", "30"), ("RETENTION_DRY_RUN", "true")],
    );
    let log = run_until_idle(&dry, MINUTE).await;
    assert_eq!(all().await, before, "a dry run deletes nothing");
    assert_eq!(log.matches("would delete this index").count(), 10, "{log}");

    let env = with(&w, &[("RETENTION_DAYS", "30")]);
    let log = run_until_idle(&env, MINUTE).await;
    let after = all().await;
    let deleted: BTreeSet<String> = before.difference(&after).cloned().collect();
    let expected: BTreeSet<String> = (31..=40).map(day).collect();
    assert_eq!(deleted, expected, "{log}");
    for keep in (-1..=30).map(day).chain(others.iter().cloned()) {
        assert!(after.contains(&keep), "{keep}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_retention_deletes_only_the_old_entries() {
    let w = World::new("dlretention").await;
    let at = |days_back: i64| {
        (Utc::now() - chrono::Duration::days(days_back))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    // 3 entries of 40 days ago, 2 of 10, 2 of today, 1 dated tomorrow.
    let ages = [40, 40, 40, 10, 10, 0, 0, -1];
    for (i, back) in ages.iter().enumerate() {
        let doc = json!({"@timestamp": at(*back), "error": {"type": "mapper_parsing_exception"}, "f4a": {"stage": "index"}});
        let (status, v) =
            w.es.request(
                reqwest::Method::PUT,
                &format!("/{}/_doc/e{i}?refresh=true", w.dead()),
                Some(doc),
            )
            .await;
        assert!(status == 200 || status == 201, "{v}");
    }
    assert_eq!(w.es.count(&w.dead()).await, ages.len() as u64);

    let dry = with(
        &w,
        &[
            ("DEAD_LETTER_RETENTION_DAYS", "30"),
            ("RETENTION_DRY_RUN", "true"),
        ],
    );
    run_until_idle(&dry, MINUTE).await;
    assert_eq!(
        w.es.count(&w.dead()).await,
        ages.len() as u64,
        "a dry run deletes nothing"
    );

    let env = with(&w, &[("DEAD_LETTER_RETENTION_DAYS", "30")]);
    let log = run_until_idle(&env, MINUTE).await;
    let left: BTreeSet<String> =
        w.es.all_docs(&w.dead())
            .await
            .iter()
            .filter_map(|d| d["_id"].as_str().map(String::from))
            .collect();
    let expected: BTreeSet<String> = (3..ages.len()).map(|i| format!("e{i}")).collect();
    assert_eq!(left, expected, "only the 40-day-old entries go: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_stream_mode_counts_a_409_on_redelivery_as_done() {
    let w = World::new("stream").await;
    let stream = w.index("stream");
    let env = with(
        &w,
        &[("ES_INDEX_MODE", "data_stream"), ("ES_INDEX", &stream)],
    );
    w.put_and_wait("s.json", ndjson(40, "s")).await;
    run_until_idle(&env, MINUTE).await;
    let (status, ds) = get(&w, &format!("/_data_stream/{stream}")).await;
    assert_eq!(status, 200, "{ds}");
    assert_eq!(ds["data_streams"][0]["name"], stream.as_str());
    assert_eq!(w.es.count(&stream).await, 40);
    // The same object again: every `create` answers 409, counted as done; nothing twice.
    w.put_and_wait("s.json", ndjson(40, "s")).await;
    let log = run_until_idle(&env, MINUTE).await;
    assert_eq!(w.es.count(&stream).await, 40, "{log}");
    assert_eq!(w.es.count(&w.dead()).await, 0);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    w.es.request(
        reqwest::Method::DELETE,
        &format!("/_data_stream/{stream}"),
        None,
    )
    .await;
}

/// Field paths in a mapping, as the cluster counts them for `total_fields.limit` (objects
/// included).
fn mapped_fields(properties: &Value) -> usize {
    properties.as_object().map_or(0, |m| {
        m.values()
            .map(|f| {
                1 + mapped_fields(&f["properties"]) + f["fields"].as_object().map_or(0, |x| x.len())
            })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn random_keys_never_reach_the_field_limit() {
    let w = World::new("explode").await;
    let mut body = Vec::new();
    for i in 0..20_000u32 {
        let mut rec = serde_json::Map::new();
        rec.insert("i".into(), json!(i));
        rec.insert("@timestamp".into(), json!("2026-11-24T10:00:00.000Z"));
        for _ in 0..3 {
            rec.insert(format!("k{}", fastrand::u32(..1_000_000)), json!("v"));
        }
        body.extend_from_slice(Value::Object(rec).to_string().as_bytes());
        body.push(b'\n');
    }
    w.put_and_wait("explode.json", gzip(&body)).await;
    let index = format!("{}-2026.11.24", w.prefix);
    let env = with(&w, &[("MAX_FIELDS_PER_INDEX", "900")]);
    let log = run_until_idle(&env, 5 * MINUTE).await;
    assert_eq!(w.es.count(&index).await, 20_000, "{log}");
    assert_eq!(
        w.es.count(&w.dead()).await,
        0,
        "no document hit the field limit"
    );
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    let (_, m) = get(&w, &format!("/{index}/_mapping")).await;
    let fields = mapped_fields(&m[&index]["mappings"]["properties"]);
    assert!((900..=1000).contains(&fields), "{fields} fields mapped");
    let (_, h) = get(&w, &format!("/_cluster/health/{index}")).await;
    assert_eq!(h["status"], "green", "{h}");
    // What did not fit is kept whole in the overflow field.
    let (_, hits) =
        w.es.request(
            reqwest::Method::POST,
            &format!("/{index}/_search"),
            Some(json!({"size": 1, "query": {"exists": {"field": "f4a.limits"}}})),
        )
        .await;
    let s = &hits["hits"]["hits"][0]["_source"];
    assert_eq!(
        s["f4a"]["limits"],
        json!(["max_fields_per_index"]),
        "{hits}"
    );
    assert!(s["f4a"]["overflow"].as_str().unwrap().contains("\"k"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_policy_asks_the_cluster_which_engine_it_is() {
    if engine() == Engine::Osmem {
        return; // the double says it is OpenSearch; nothing more to learn here
    }
    let w = World::new("lifecycle").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .args(["lifecycle-policy", "--days", "3"])
        .env_clear()
        .envs(w.env())
        .output()
        .expect("lifecycle-policy");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("a JSON body");
    match engine() {
        Engine::Elasticsearch => assert_eq!(body["policy"]["phases"]["delete"]["min_age"], "3d"),
        _ => assert_eq!(
            body["policy"]["ism_template"][0]["index_patterns"][0],
            format!("{}-*.*.*", w.prefix)
        ),
    }
    // Nothing answers there: it says to pass --engine, exit 1.
    let mut env = w.env();
    env.insert("ES_URL".into(), format!("http://127.0.0.1:{}", free_port()));
    env.insert("ES_REQUEST_TIMEOUT_SECS".into(), "2".into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
        .args(["lifecycle-policy", "--days", "3"])
        .env_clear()
        .envs(env)
        .output()
        .expect("lifecycle-policy");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --engine"));
}
