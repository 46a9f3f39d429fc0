//! The worker against the kinds of cluster users have, with no AWS account: Amazon OpenSearch
//! Service and OpenSearch Serverless are played by the SigV4-verifying proxy of `tests/tools/`
//! (botocore recomputes every signature) in front of the real node, the Fargate task role by the
//! ECS-style credentials endpoint whose credentials expire while the worker runs. Assertions are
//! on the index, the queue, and what the proxy and the endpoint saw on the wire.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::aws_rig::readyz;
use common::aws_tools::{CredentialsEndpoint, SigV4Proxy};
use common::*;
use serde_json::{json, Value};

fn signed_env(
    w: &World,
    creds: &CredentialsEndpoint,
    proxy: &SigV4Proxy,
    service: &str,
) -> HashMap<String, String> {
    let mut env = w.env();
    creds.worker_env(&mut env);
    env.insert("ES_URL".into(), proxy.url.clone());
    env.insert("ES_AUTH".into(), "sigv4".into());
    env.insert("ES_AWS_SERVICE".into(), service.into());
    env
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_with_expiring_task_role_credentials_index_every_record_once() {
    let w = World::new("sigv4").await;
    // A new set every 20 s, each valid 30 s: about four sets during the run.
    let creds = CredentialsEndpoint::start(20, 10);
    let proxy = SigV4Proxy::start(&w.es.url, &creds.keys_file, "es", &[]);
    let mut env = signed_env(&w, &creds, &proxy, "es");
    env.insert("BULK_MAX_DOCS".into(), "200".into());
    let mut worker = Worker::spawn(&env, &[]);
    // ~70 s of traffic, an object every 5 s; midway the proxy answers two otherwise valid
    // requests with the expired-token 403.
    let (objects, per) = (14usize, 300usize);
    let mut identity = None;
    for i in 0..objects {
        w.aws
            .put(
                &w.bucket,
                &format!("in/{i}.ndjson.gz"),
                gzip(&ndjson(per, &format!("o{i}"))),
            )
            .await;
        if i == 7 {
            proxy.configure(json!({"expire_next": 2})).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            worker.child.try_wait().unwrap().is_none(),
            "the worker exited; log:\n{}",
            worker.log_text()
        );
        if let Some((200, body)) = readyz(&env).await {
            identity = body["cluster_identity"].as_str().map(str::to_string);
        }
    }
    let total = (objects * per) as u64;
    let indexed =
        w.es.wait_count(&w.data(), total, Duration::from_secs(90))
            .await;
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(40)).await, 0);
    let log = worker.log_text();
    assert_eq!(indexed, total, "every record indexed once; log:\n{log}");
    assert_eq!(w.es.count(&w.dead()).await, 0, "nothing dead-lettered");
    assert_eq!(
        w.aws.depth(&w.queue_url).await,
        (0, 0),
        "every message deleted"
    );

    let stats = proxy.stats().await;
    let ecs = creds.stats().await;
    eprintln!("proxy: {stats:#}\ncredentials endpoint: {ecs:#}");
    let injected = n(&stats["faults_injected"]);
    assert_eq!(injected, 2, "{stats:#}");
    // The only refusals are the two injected ones: every signature the worker sent was valid,
    // no credentials were used past their expiry.
    assert_eq!(
        stats["rejected_by_reason"],
        json!({"expired_token": 2}),
        "{stats:#}\n{log}"
    );
    assert_eq!(
        n(&stats["replayed_signatures"]),
        0,
        "every attempt signed anew"
    );
    let keys = stats["access_keys"].as_object().unwrap();
    assert!(
        keys.len() >= 3 && keys.keys().all(|k| k.starts_with("ASIA")),
        "the rotating task-role credentials were picked up: {keys:?}"
    );
    assert!(
        n(&stats["content_encoding"]["gzip"]) >= objects as u64 / 2,
        "{stats:#}"
    );
    assert!(n(&ecs["rotations"]) >= 4, "{ecs}");
    // Refreshed ahead of expiry, not on every request: a handful of fetches per rotation (the
    // SDK's SQS/S3 clients fetch on their own too), not one per bulk request.
    let fetches = n(&ecs["fetches"]);
    let requests = n(&stats["requests"]);
    assert!(
        fetches >= 4 && fetches < requests,
        "{fetches} fetches for {requests} requests"
    );
    let identity = identity.expect("/readyz was ready at some point");
    assert!(
        identity.starts_with("OpenSearch ") && identity.ends_with(" on Amazon OpenSearch Service"),
        "{identity}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_on_and_off_through_the_verifying_proxy() {
    let w = World::new("gzip").await;
    let creds = CredentialsEndpoint::start(300, 60);
    // As AWS does on some signed POSTs: the query (filter_path) is dropped, full answers come back.
    let proxy = SigV4Proxy::start(&w.es.url, &creds.keys_file, "es", &["--ignore-filter-path"]);
    let per = 2000usize;
    let mut bytes = HashMap::new();
    for (i, mode) in ["none", "gzip"].into_iter().enumerate() {
        proxy.reset().await;
        let mut env = signed_env(&w, &creds, &proxy, "es");
        env.insert("ES_COMPRESSION".into(), mode.into());
        w.put_and_wait(&format!("in/{mode}.ndjson.gz"), gzip(&ndjson(per, mode)))
            .await;
        run_until_idle(&env, Duration::from_secs(120)).await;
        assert_eq!(w.es.count(&w.data()).await, ((i + 1) * per) as u64);
        let stats = proxy.stats().await;
        assert_eq!(n(&stats["rejected"]), 0, "{mode}: {stats:#}");
        let gzipped = n(&stats["content_encoding"]["gzip"]);
        if mode == "gzip" {
            assert!(gzipped >= 1, "{stats:#}");
        } else {
            assert_eq!(gzipped, 0, "{stats:#}");
        }
        bytes.insert(mode, n(&stats["bytes_in_accepted"]));
    }
    eprintln!("bytes on the wire: {bytes:?}");
    // The records are alike: gzip sends a fraction of the bytes, each signed as sent.
    assert!(
        bytes["gzip"] * 4 < bytes["none"],
        "bytes on the wire: {bytes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serverless_timeseries_collection_refuses_ids_clearly_then_takes_documents_without() {
    let w = World::new("aoss").await;
    let creds = CredentialsEndpoint::start(300, 60);
    let proxy = SigV4Proxy::start(
        &w.es.url,
        &creds.keys_file,
        "aoss",
        &["--collection-type", "timeseries"],
    );
    let per = 300usize;
    w.put_and_wait("in/ts.ndjson.gz", gzip(&ndjson(per, "ts")))
        .await;
    let mut env = signed_env(&w, &creds, &proxy, "aoss");
    let mut worker = Worker::spawn(&env, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let degraded = loop {
        if let Some((503, body)) = readyz(&env).await {
            if body["status"] == "degraded"
                && body["cluster"]
                    .as_str()
                    .is_some_and(|c| c.contains("ES_DOCUMENT_ID=none"))
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never named ES_DOCUMENT_ID=none; log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(degraded["cluster_identity"], "OpenSearch Serverless");
    // Nothing indexed, nothing dead-lettered (a dead letter would be refused the same way), the
    // message kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.es.count(&w.all()).await, 0);
    let (visible, in_flight) = w.aws.depth(&w.queue_url).await;
    assert_eq!(visible + in_flight, 1, "the message stays in the queue");
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(40)).await, 0);
    let log = worker.log_text();
    assert_eq!(
        log.matches("the cluster refuses this configuration")
            .count(),
        1,
        "one clear error line; log:\n{log}"
    );
    let stats = proxy.stats().await;
    assert!(
        n(&stats["aoss"]["document_id_refused"]) >= per as u64,
        "{stats:#}"
    );
    assert_eq!(
        n(&stats["aoss"]["not_found"]),
        0,
        "the worker asked only what Serverless answers (no GET /, no _refresh): {stats:#}"
    );
    assert_eq!(n(&stats["rejected"]), 0, "{stats:#}");

    // Reconfigured: the same message, documents without ids.
    env.insert("ES_DOCUMENT_ID".into(), "none".into());
    assert_eq!(
        w.aws
            .wait_visible(&w.queue_url, 1, Duration::from_secs(60))
            .await,
        1
    );
    run_until_idle(&env, Duration::from_secs(120)).await;
    assert_eq!(w.es.count(&w.data()).await, per as u64);
    assert_eq!(w.es.count(&w.dead()).await, 0);
    assert_eq!(w.aws.depth(&w.queue_url).await, (0, 0));
    let stats = proxy.stats().await;
    assert_eq!(n(&stats["aoss"]["not_found"]), 0, "{stats:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_clusters_flavour_and_version() {
    let w = World::new("ident").await;
    let env = w.env();
    let mut worker = Worker::spawn(&env, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some((200, body)) = readyz(&env).await {
            if body["cluster_identity"].is_string() {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never ready; log:\n{}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (_, root) = w.es.request(reqwest::Method::GET, "/", None).await;
    let version = root["version"]["number"].as_str().unwrap();
    assert_eq!(body["cluster_identity"], format!("OpenSearch {version}"));
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(40)).await, 0);
    assert!(worker.log_text().contains("cluster identified"));
}
