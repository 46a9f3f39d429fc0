//! The rig of `tests/aws_faults.rs`: a [`World`] with the AWS-side fault proxy in front of
//! LocalStack and the counting cluster proxy in front of the search engine, and the checks its
//! scenarios share (every record once, queues empty, a clean SIGTERM, retry spacing).
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::aws_proxy::{AwsProxy, Call};
use super::aws_tools::CredentialsEndpoint;
use super::proxy::Proxy;
use super::{gzip, localstack_url, ndjson, Worker, World};

const MINUTE: Duration = Duration::from_secs(60);

/// A world, the AWS-side proxy in front of LocalStack and the counting proxy in front of the
/// search engine.
pub struct Rig {
    pub w: World,
    pub aws: AwsProxy,
    pub es: Proxy,
}

impl Rig {
    pub async fn new(name: &str, max_receive: u32) -> Rig {
        let w = World::with_max_receive(name, max_receive).await;
        let aws = AwsProxy::start(&localstack_url()).await;
        let es = Proxy::start(&w.es.url).await;
        Rig { w, aws, es }
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env = self.w.env();
        env.insert("AWS_ENDPOINT_URL".into(), self.aws.url.clone());
        env.insert("ES_URL".into(), self.es.url.clone());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    /// `bucket/key`, as the AWS proxy names S3 objects.
    pub fn s3(&self, key: &str) -> String {
        format!("{}/{key}", self.w.bucket)
    }

    /// Puts `n` gzip NDJSON objects of `per` records under `prefix` and waits for their
    /// notifications.
    pub async fn put_objects(&self, prefix: &str, n: usize, per: usize) {
        let (before, _) = self.w.aws.depth(&self.w.queue_url).await;
        for k in 0..n {
            let key = format!("{prefix}/{k:03}.json.gz");
            self.w
                .aws
                .put(&self.w.bucket, &key, gzip(&ndjson(per, &key)))
                .await;
        }
        let want = before + n as u64;
        let seen = self
            .w
            .aws
            .wait_visible(&self.w.queue_url, want, MINUTE)
            .await;
        assert!(seen >= want, "notifications: {seen} of {want}");
    }

    /// Waits until the index holds `total` documents and the queue is empty (every message
    /// deleted); the time it took.
    pub async fn wait_settled(&self, worker: &Worker, total: u64, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let count = self.w.es.count(&self.w.data()).await;
            let depth = self.w.aws.depth(&self.w.queue_url).await;
            if count >= total && depth == (0, 0) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "not settled in {timeout:?}: {count} of {total} documents, queue {depth:?}; log:\n{}",
                worker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The index holds exactly `total` documents, the `_bulk` requests carried `total` distinct
    /// ids, and (when `once`) each of them exactly once. The greatest number of sends of one id.
    pub async fn assert_records(&self, total: u64, once: bool) -> u32 {
        assert_eq!(
            self.w.es.count(&self.w.data()).await,
            total,
            "documents in the index"
        );
        assert_eq!(self.w.es.count(&self.w.dead()).await, 0, "dead letters");
        let by_id = self.es.state.attempts_by_id();
        assert_eq!(by_id.len() as u64, total, "distinct ids sent");
        let max = by_id.values().copied().max().unwrap_or(0);
        if once {
            assert_eq!(max, 1, "an id was sent more than once");
        }
        max
    }

    /// Nothing left in the queue or its dead-letter queue.
    pub async fn assert_queues_empty(&self) {
        assert_eq!(self.w.aws.depth(&self.w.queue_url).await, (0, 0), "queue");
        assert_eq!(self.w.aws.depth(&self.w.dlq_url).await, (0, 0), "DLQ");
    }
}

/// Still running, then exits 0 on SIGTERM.
pub async fn stop_cleanly(mut worker: Worker) {
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker exited; log:\n{}",
        worker.log_text()
    );
    worker.signal("TERM");
    let code = worker.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "exit code on SIGTERM; log:\n{}", worker.log_text());
}

/// `/readyz` (status, body); `None` while the worker does not answer.
pub async fn readyz(env: &HashMap<String, String>) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(format!("http://{}/readyz", env["HEALTH_ADDR"]))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// Gaps (ms) between a faulted call and the next call of the same S3 key.
pub fn retry_gaps(calls: &[Call]) -> Vec<u64> {
    let mut by_key: HashMap<&str, Vec<&Call>> = HashMap::new();
    for c in calls {
        by_key
            .entry(c.key.as_deref().unwrap_or(""))
            .or_default()
            .push(c);
    }
    let mut gaps = Vec::new();
    for calls in by_key.values() {
        for pair in calls.windows(2) {
            if pair[0].fault.is_some() {
                gaps.push(pair[1].at_ms - pair[0].at_ms);
            }
        }
    }
    gaps.sort_unstable();
    gaps
}

pub fn calls_between(calls: &[Call], from_ms: u64, to_ms: u64) -> usize {
    calls
        .iter()
        .filter(|c| c.at_ms >= from_ms && c.at_ms < to_ms)
        .count()
}

/// `n` NDJSON records of about `pad` bytes each, of random text (so gzip barely shrinks them):
/// slices at random offsets of a 1 MiB random pool, far apart enough that gzip's 32 KiB window
/// finds no repeats, and quick to make in a debug build.
pub fn padded_records(n: usize, pad: usize) -> Vec<u8> {
    let pool: Vec<u8> = std::iter::repeat_with(|| fastrand::alphanumeric() as u8)
        .take(1 << 20)
        .collect();
    let mut out = Vec::with_capacity(n * (pad + 80));
    for i in 0..n {
        let at = fastrand::usize(..pool.len() - pad);
        out.extend_from_slice(
            format!("{{\"i\":{i},\"@timestamp\":\"2026-11-24T10:00:00.000Z\",\"pad\":\"")
                .as_bytes(),
        );
        out.extend_from_slice(&pool[at..at + pad]);
        out.extend_from_slice(b"\"}\n");
    }
    out
}

/// Switches the credentials endpoint to `mode` (`up`, `down`, `error`, `hang`).
pub async fn set_mode(creds: &CredentialsEndpoint, mode: &str) {
    let ok = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/__control/mode", creds.control))
        .json(&serde_json::json!({ "mode": mode }))
        .send()
        .await
        .unwrap()
        .status()
        .is_success();
    assert!(ok, "credentials endpoint mode {mode}");
}
