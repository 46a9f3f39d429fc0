//! Faults on the AWS side (issue 18): the real worker binary against LocalStack through the fault
//! proxy of `common::aws_proxy` (`AWS_ENDPOINT_URL` → proxy → LocalStack), and the shared search
//! engine through the cluster-side proxy of `common::proxy`, which only counts (every `_id` each
//! `_bulk` carried). Each scenario asserts what a user can observe afterwards — the documents in
//! the index (every record once), the messages left in the queue, the worker's exit code — and
//! the proxies' counters (calls per operation and their spacing, bytes per object), never log
//! lines; the rig and the shared checks are `common::aws_rig`. Each scenario keeps its fault
//! window well under the minute (12–30 s) so the file runs in under two minutes; the
//! windows are long enough for several backoff rounds.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::aws_proxy::{Call, Fault, Rule};
use common::aws_rig::*;
use common::aws_tools::CredentialsEndpoint;
use common::*;

const MINUTE: Duration = Duration::from_secs(60);

/// S3 answers 503 `SlowDown` to 70 % of GetObject calls for 30 s while objects keep arriving:
/// every record is indexed once (no `_id` sent twice), and the retries are spaced out by
/// backoff, not a tight loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slow_down_on_get_object_backs_off_and_indexes_every_record_once() {
    let r = Rig::new("aws-slowdown", 10).await;
    let (batches, per_batch, per) = (5, 4, 200);
    let objects = batches * per_batch;
    let window = Duration::from_secs(30);
    r.aws.state.set(
        "GetObject",
        Rule::fail(700, vec![Fault::slow_down()]).for_(window),
    );
    let worker = Worker::spawn(&r.env(&[("SQS_VISIBILITY_TIMEOUT_SECONDS", "10")]), &[]);
    for b in 0..batches {
        for k in 0..per_batch {
            let key = format!("slow/{b}-{k}.json.gz");
            r.w.aws
                .put(&r.w.bucket, &key, gzip(&ndjson(per, &key)))
                .await;
        }
        tokio::time::sleep(window / batches as u32).await;
    }
    let took = r
        .wait_settled(&worker, (objects * per) as u64, MINUTE)
        .await;
    r.assert_records((objects * per) as u64, true).await;
    r.assert_queues_empty().await;

    let calls = r.aws.state.calls_of("GetObject");
    let faulted = r.aws.state.faulted("GetObject");
    let gaps = retry_gaps(&calls);
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let per_key_max = {
        let mut n: HashMap<&str, usize> = HashMap::new();
        for c in &calls {
            *n.entry(c.key.as_deref().unwrap_or("")).or_default() += 1;
        }
        n.values().copied().max().unwrap_or(0)
    };
    eprintln!(
        "slowdown: {} GetObject calls for {objects} objects, {faulted} answered SlowDown; \
         retry gaps median {median} ms, min {:?} ms; most calls for one object {per_key_max}; \
         settled {took:?} after the last batch",
        calls.len(),
        gaps.first()
    );
    assert!(faulted >= objects / 2, "SlowDown was injected ({faulted})");
    assert!(
        median >= 100,
        "retries after SlowDown are backed off (median gap {median} ms)"
    );
    assert!(
        per_key_max <= 30,
        "no tight loop on one object ({per_key_max} calls)"
    );
    stop_cleanly(worker).await;
}

/// One large object's GetObject body is cut five times mid-stream: every record is indexed once,
/// and the object's bytes crossed the wire about once (each reopen continued at its offset with
/// `Range`, none restarted from byte 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_cut_mid_stream_resumes_at_the_offset() {
    let r = Rig::new("aws-cut", 10).await;
    // About 100 MB of gzip.
    let (records, pad) = (26_000, 4_000);
    let t0 = Instant::now();
    let body = gzip(&padded_records(records, pad));
    let size = body.len() as u64;
    eprintln!("cut: {size} bytes generated in {:?}", t0.elapsed());
    let key = "big/0.json.gz";
    r.w.put_and_wait(key, body).await;
    r.aws.state.set(
        "GetObject",
        Rule {
            cut_after: Some(size / 7),
            cuts: 5,
            ..Rule::default()
        }
        .key(&r.s3(key)),
    );
    let worker = Worker::spawn(&r.env(&[("BULK_MAX_DOCS", "500")]), &[]);
    let took = r.wait_settled(&worker, records as u64, 2 * MINUTE).await;
    r.assert_records(records as u64, true).await;
    r.assert_queues_empty().await;

    let calls = r.aws.state.calls_of("GetObject");
    let sent = r.aws.state.bytes_sent(&r.s3(key));
    eprintln!(
        "cut: object {size} bytes, {} bytes sent by the proxy ({:.3}x) over {} GetObject calls, \
         {} cuts; ranges {:?}; settled in {took:?}",
        sent,
        sent as f64 / size as f64,
        calls.len(),
        r.aws.state.cuts(),
        calls.iter().map(|c| c.range.clone()).collect::<Vec<_>>()
    );
    assert_eq!(r.aws.state.cuts(), 5, "the body was cut five times");
    assert_eq!(calls.len(), 6, "one GetObject and one reopen per cut");
    assert!(
        calls[1..].iter().all(|c| c
            .range
            .as_deref()
            .is_some_and(|r| !r.starts_with("bytes=0-"))),
        "each reopen asks for the rest of the object, not byte 0"
    );
    assert!(
        sent >= size && sent <= size + size / 20,
        "the object's bytes crossed the wire about once: {sent} for {size}"
    );
    stop_cleanly(worker).await;
}

/// ReceiveMessage answers 500 or throttling to every call for 15 s: the worker backs off (a
/// bounded number of calls in the window, not a tight loop), `/readyz` says SQS is failing, and
/// it indexes everything after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_receive_errors_and_throttling_back_off_and_recover() {
    let r = Rig::new("aws-receive", 10).await;
    let env = r.env(&[]);
    let worker = Worker::spawn(&env, &[]);
    // Idle polling first (one long poll a second), then the fault window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(15);
    let from = r.aws.state.elapsed_ms();
    r.aws.state.set(
        "ReceiveMessage",
        Rule::fail(1000, vec![Fault::sqs_internal(), Fault::sqs_throttled()]).for_(window),
    );
    // The long poll forwarded before the rule ends within SQS_WAIT_TIME_SECONDS (1 s); objects
    // put after that can only be received once the window is over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.put_objects("recv", 3, 100).await;
    let left = window.saturating_sub(Duration::from_millis(r.aws.state.elapsed_ms() - from));
    tokio::time::sleep(left.saturating_sub(Duration::from_secs(1))).await;
    // Near the end of the window the worker says why it is not ready.
    let (status, body) = readyz(&env).await.expect("/readyz answers");
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("degraded")),
        "{body}"
    );
    assert!(
        body["sqs"]
            .as_str()
            .unwrap_or("")
            .contains("receive_message"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to = from + window.as_millis() as u64;
    let took = r.wait_settled(&worker, 300, MINUTE).await;
    let (status, body) = readyz(&env).await.expect("/readyz answers");
    assert_eq!(status, 200, "ready again: {body}");
    r.assert_records(300, true).await;
    r.assert_queues_empty().await;

    let calls = r.aws.state.calls_of("ReceiveMessage");
    let in_window = calls_between(&calls, from, to);
    let faulted = r.aws.state.faulted("ReceiveMessage");
    eprintln!(
        "receive: {in_window} ReceiveMessage calls in the {window:?} fault window ({faulted} \
         faulted), {} in all; settled {took:?} after the window",
        calls.len()
    );
    assert!(in_window >= 3, "the worker kept trying ({in_window} calls)");
    assert!(
        in_window <= 40,
        "no tight loop: {in_window} ReceiveMessage calls in {window:?}"
    );
    stop_cleanly(worker).await;
}

/// DeleteMessage fails for 12 s: the messages come back after their visibility timeout and are
/// processed again, their documents overwrite (no duplicates), nothing crashes, and once deletes
/// work the queue empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_message_failing_redelivers_without_duplicates() {
    let r = Rig::new("aws-delete", 10).await;
    let (objects, per) = (3, 100);
    r.put_objects("del", objects, per).await;
    for op in ["DeleteMessage", "DeleteMessageBatch"] {
        r.aws.state.set(
            op,
            Rule::fail(1000, vec![Fault::sqs_internal()]).for_(Duration::from_secs(12)),
        );
    }
    let worker = Worker::spawn(&r.env(&[("SQS_VISIBILITY_TIMEOUT_SECONDS", "4")]), &[]);
    let took = r
        .wait_settled(&worker, (objects * per) as u64, MINUTE)
        .await;
    let max_sends = r.assert_records((objects * per) as u64, false).await;
    r.assert_queues_empty().await;

    let gets = r.aws.state.calls_of("GetObject");
    let deletes = r.aws.state.count("DeleteMessage") + r.aws.state.count("DeleteMessageBatch");
    let failed = r.aws.state.faulted("DeleteMessage") + r.aws.state.faulted("DeleteMessageBatch");
    eprintln!(
        "delete: {} GetObject calls for {objects} objects, {deletes} delete calls ({failed} \
         failed), an id sent up to {max_sends} times; settled in {took:?}",
        gets.len()
    );
    assert!(failed > 0, "deletes failed");
    assert!(
        gets.len() > objects,
        "the undeleted messages came back and were read again ({} GetObject calls)",
        gets.len()
    );
    assert!(
        max_sends >= 2,
        "documents were sent again (and overwritten)"
    );
    stop_cleanly(worker).await;
}

/// ChangeMessageVisibility(Batch) fails for a share of the calls while a slow object (its body
/// throttled to 100 KB/s, 15 s) is read under a 9 s visibility timeout: the heartbeat retries, the
/// message is never handed out twice, and every record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_visibility_failing_during_a_long_object_is_retried() {
    let r = Rig::new("aws-visibility", 10).await;
    let records = 1_000;
    let body = gzip(&padded_records(records, 1_500));
    let size = body.len() as u64;
    let key = "slow/0.json.gz";
    r.w.put_and_wait(key, body).await;
    r.aws.state.set(
        "GetObject",
        Rule {
            throttle_bytes_per_sec: 100_000,
            ..Rule::default()
        },
    );
    // The first heartbeat's first four calls fail for sure, then 30 % of them.
    for op in ["ChangeMessageVisibility", "ChangeMessageVisibilityBatch"] {
        r.aws.state.set(
            op,
            Rule {
                fail_next: 4,
                ..Rule::fail(300, vec![Fault::sqs_internal(), Fault::sqs_throttled()])
            },
        );
    }
    let worker = Worker::spawn(&r.env(&[("SQS_VISIBILITY_TIMEOUT_SECONDS", "9")]), &[]);
    let took = r.wait_settled(&worker, records as u64, MINUTE).await;
    r.assert_records(records as u64, true).await;
    r.assert_queues_empty().await;

    let cmv = r.aws.state.calls_of("ChangeMessageVisibilityBatch");
    let failed = cmv.iter().filter(|c| c.fault.is_some()).count();
    let gets = r.aws.state.count("GetObject");
    eprintln!(
        "visibility: object {size} bytes read in {took:?}; {} ChangeMessageVisibilityBatch \
         calls, {failed} failed; {gets} GetObject calls",
        cmv.len()
    );
    assert!(
        took >= Duration::from_secs(10),
        "the object took longer than the visibility timeout"
    );
    assert!(failed >= 4, "visibility changes failed");
    assert!(cmv.len() > failed, "and were retried");
    assert_eq!(gets, 1, "the message was never handed out again");
    stop_cleanly(worker).await;
}

/// The worker takes its credentials from an ECS-style endpoint (sets valid 20 s, a new one every
/// 10 s); the endpoint goes down (connections refused) until the worker's set has run out, then
/// answers 500 for 10 s more (the worker's tries counted: no tight loop), objects arriving
/// meanwhile. The proxy would refuse a request signed with an expired set, as AWS does (checked
/// at the end). Once the endpoint is back, the worker fetches a new set and
/// indexes what arrived meanwhile: every record once, the queue empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_endpoint_down_while_credentials_expire_recovers() {
    let r = Rig::new("aws-creds", 10).await;
    let creds = CredentialsEndpoint::start(10, 10);
    r.aws.state.check_expiry(&creds.keys_file);
    let mut env = r.env(&[]);
    creds.worker_env(&mut env);
    r.put_objects("before", 2, 100).await;
    let worker = Worker::spawn(&env, &[]);
    r.wait_settled(&worker, 200, MINUTE).await;

    let down_at = Instant::now();
    set_mode(&creds, "down").await;
    // The SDK uses its cached set until shortly before it expires (at most 20 s), then can sign
    // nothing: no call reaches AWS. Objects put from then on wait for the endpoint.
    let last_call = || r.aws.state.calls().last().map_or(0, |c| c.at_ms);
    while r.aws.state.elapsed_ms() - last_call() < 3_000 {
        assert!(
            down_at.elapsed() < Duration::from_secs(30),
            "the worker went on calling AWS with the endpoint down: {:#?}\nlog:\n{}",
            &r.aws.state.calls()[r.aws.state.calls().len().saturating_sub(8)..],
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let starved_at = down_at.elapsed();
    let from = r.aws.state.elapsed_ms();
    r.put_objects("during", 3, 100).await;
    // The rest of the outage answers 500 instead of refusing: the tries are counted there.
    set_mode(&creds, "error").await;
    let errors_before = creds.stats().await["errors_served"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let credential_tries =
        creds.stats().await["errors_served"].as_u64().unwrap_or(0) - errors_before;
    let (status, body) = readyz(&env).await.expect("/readyz answers");
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("degraded")),
        "not ready without credentials: {body}"
    );
    let to = r.aws.state.elapsed_ms();
    let outage = down_at.elapsed();
    set_mode(&creds, "up").await;
    let took = r.wait_settled(&worker, 500, MINUTE).await;
    r.assert_records(500, false).await;
    r.assert_queues_empty().await;

    let calls = r.aws.state.calls();
    let expired = calls.iter().filter(|c| c.fault == Some("expired")).count();
    let starved = calls_between(&calls, from, to);
    let stats = creds.stats().await;
    eprintln!(
        "credentials: the worker's set ran out {starved_at:?} into a {outage:?} outage; {starved} \
         AWS calls from then until the endpoint was back, {expired} refused as expired in all; \
         {credential_tries} credential fetches answered 500 in the last 10 s of it; the endpoint \
         served {} sets ({} rotations); settled {took:?} after it came back",
        stats["served"], stats["rotations"]
    );
    assert_eq!(starved, 0, "nothing reached AWS without credentials");
    assert!(
        (1..=60).contains(&credential_tries),
        "the worker kept asking for credentials, without a tight loop ({credential_tries} tries in 10 s)"
    );
    assert_eq!(expired, 0, "no request was signed with an expired set");
    // Credentials after the outage come from a fetch made after it.
    let after: Vec<&Call> = calls.iter().filter(|c| c.at_ms >= to).collect();
    assert!(!after.is_empty(), "AWS calls after the outage");
    assert!(
        after.iter().all(|c| c.fault.is_none()),
        "every call after the outage went through"
    );
    stop_cleanly(worker).await;

    // The proxy's check is live: a request signed with the first set, long expired, is refused.
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds.keys_file).unwrap()).unwrap();
    let first = &keys["credentials"][0];
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&r.aws.url)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            first["AccessKeyId"].as_str().unwrap(),
            first["SecretAccessKey"].as_str().unwrap(),
            first["Token"].as_str().map(str::to_string),
            None,
            "expired",
        ))
        .load()
        .await;
    let err = aws_sdk_sqs::Client::new(&conf)
        .get_queue_attributes()
        .queue_url(&r.w.queue_url)
        .send()
        .await
        .expect_err("an expired set is refused");
    let code = aws_sdk_sqs::error::ProvideErrorMetadata::code(&err).map(str::to_string);
    assert_eq!(code.as_deref(), Some("ExpiredToken"), "{err:?}");
}
