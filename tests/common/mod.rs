//! Test harness shared by the integration tests: the real LocalStack (started by `make test`),
//! a private osmem-server per test, unique AWS resources per test, and the real worker binary.
//!
//! Nothing here is mocked. The environment comes from `scripts/stack.sh env`:
//! `AWS_ENDPOINT_URL` (LocalStack) and `OSMEM_BIN` (the search server binary).
#![allow(dead_code)]

pub mod proxy;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

pub const REGION: &str = "us-east-1";

pub fn localstack_url() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: run the integration tests with `make test`, which starts LocalStack",
    )
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:06x}",
        std::process::id(),
        fastrand::u32(..0xffffff)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private osmem-server on a free port, killed on drop.
pub struct SearchServer {
    child: std::process::Child,
    pub url: String,
    http: reqwest::Client,
}

impl SearchServer {
    pub async fn start() -> SearchServer {
        let bin = std::env::var("OSMEM_BIN")
            .expect("OSMEM_BIN is not set: run the integration tests with `make test`");
        let port = free_port();
        let child = std::process::Command::new(&bin)
            .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let s = SearchServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = s
                .http
                .get(format!("{}/_cluster/health", s.url))
                .send()
                .await
            {
                if r.status().is_success() {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "osmem-server did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("search server request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn refresh(&self) {
        self.request(reqwest::Method::POST, "/_refresh", None).await;
    }

    /// Documents in `index` (a name or pattern), 0 if it does not exist.
    pub async fn count(&self, index: &str) -> u64 {
        self.refresh().await;
        let (status, v) = self
            .request(reqwest::Method::GET, &format!("/{index}/_count"), None)
            .await;
        if status == 404 {
            return 0;
        }
        v["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("count of {index}: {status} {v}"))
    }

    /// All documents of `index` (up to 10,000) with `_id`, `_index` and `_source`.
    pub async fn all_docs(&self, index: &str) -> Vec<Value> {
        self.refresh().await;
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                &format!("/{index}/_search"),
                Some(json!({"size": 10000, "query": {"match_all": {}}})),
            )
            .await;
        if status == 404 {
            return vec![];
        }
        v["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("search {index}: {status} {v}"))
    }

    /// Waits until `index` holds at least `n` documents.
    pub async fn wait_count(&self, index: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.count(index).await;
            if c >= n || Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for SearchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// AWS clients pointed at LocalStack.
#[derive(Clone)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub firehose: aws_sdk_firehose::Client,
}

impl Aws {
    pub async fn new() -> Aws {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(localstack_url())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        Aws {
            s3,
            sqs: aws_sdk_sqs::Client::new(&conf),
            firehose: aws_sdk_firehose::Client::new(&conf),
        }
    }

    /// A queue with a redrive dead-letter queue after `max_receive` receives; returns (queue, dlq) URLs.
    pub async fn queue_with_dlq(&self, name: &str, max_receive: u32) -> (String, String) {
        let dlq = self
            .sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap();
        let dlq_url = dlq.queue_url().unwrap().to_string();
        let dlq_arn = self.queue_arn(&dlq_url).await;
        let q = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, "300")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}).to_string(),
            )
            .send()
            .await
            .unwrap();
        (q.queue_url().unwrap().to_string(), dlq_url)
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        let a = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        a.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
    }

    /// A bucket whose ObjectCreated events go to the queue; drains LocalStack's s3:TestEvent so
    /// tests start from an empty queue.
    pub async fn bucket_notifying(&self, bucket: &str, queue_url: &str) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        self.s3.create_bucket().bucket(bucket).send().await.unwrap();
        let arn = self.queue_arn(queue_url).await;
        let qc = QueueConfiguration::builder()
            .queue_arn(arn)
            .events(Event::S3ObjectCreated)
            .build()
            .unwrap();
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(qc)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// The bucket stops announcing new objects (tests then announce them by hand).
    pub async fn stop_notifications(&self, bucket: &str) {
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder().build(),
            )
            .send()
            .await
            .unwrap();
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    pub async fn send(&self, queue_url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// (visible, in flight) messages, as SQS reports them.
    pub async fn depth(&self, queue_url: &str) -> (u64, u64) {
        let a = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = a.attributes().cloned().unwrap_or_default();
        let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Waits until the queue holds `n` visible messages (S3 notifications arrive asynchronously).
    pub async fn wait_visible(&self, queue_url: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let (visible, _) = self.depth(queue_url).await;
            if visible >= n || Instant::now() > deadline {
                return visible;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Receives and deletes everything visible now (LocalStack's s3:TestEvent, say).
    pub async fn purge_visible(&self, queue_url: &str) {
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Bodies of the messages visible now, received and made visible again at once.
    pub async fn peek_bodies(&self, queue_url: &str) -> Vec<String> {
        let r = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        r.messages
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.body().map(str::to_string))
            .collect()
    }
}

/// One test's world: a private search server, a queue with a DLQ, a bucket notifying the queue.
pub struct World {
    pub aws: Aws,
    pub es: SearchServer,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
}

impl World {
    pub async fn new(name: &str) -> World {
        Self::with_max_receive(name, 5).await
    }

    pub async fn with_max_receive(name: &str, max_receive: u32) -> World {
        let aws = Aws::new().await;
        let es = SearchServer::start().await;
        let base = unique(name);
        let (queue_url, dlq_url) = aws.queue_with_dlq(&base, max_receive).await;
        let bucket = base.to_lowercase();
        aws.bucket_notifying(&bucket, &queue_url).await;
        aws.purge_visible(&queue_url).await;
        World {
            aws,
            es,
            bucket,
            queue_url,
            dlq_url,
        }
    }

    /// Worker environment for this world; tests add or override variables.
    pub fn env(&self) -> HashMap<String, String> {
        [
            ("SQS_QUEUE_URL", self.queue_url.as_str()),
            ("AWS_ENDPOINT_URL", &localstack_url()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("ES_URL", &self.es.url),
            ("SQS_WAIT_TIME_SECONDS", "1"),
            ("BULK_FLUSH_INTERVAL_MS", "200"),
            ("RETRY_INITIAL_BACKOFF_MS", "100"),
            ("RETRY_MAX_BACKOFF_MS", "2000"),
            ("RATE_LIMIT_DOCS_PER_SEC", "0"),
            ("LOG_FORMAT", "text"),
            ("HEALTH_ADDR", &format!("127.0.0.1:{}", free_port())),
            (
                "RUST_LOG",
                "info,aws=warn,aws_smithy_runtime=warn,aws_config=warn",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Puts `body` under `key` and waits for its notification to be in the queue.
    pub async fn put_and_wait(&self, key: &str, body: Vec<u8>) {
        let (before, _) = self.aws.depth(&self.queue_url).await;
        self.aws.put(&self.bucket, key, body).await;
        let n = self
            .aws
            .wait_visible(&self.queue_url, before + 1, Duration::from_secs(20))
            .await;
        assert!(n > before, "no notification for {key}");
    }
}

/// The real worker binary, with its log captured in a file (printed when a test fails).
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    pub fn spawn(env: &HashMap<String, String>, args: &[&str]) -> Worker {
        let log = std::env::temp_dir().join(format!("{}.log", unique("f4a-worker")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_f4a-indexer"))
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the worker");
        Worker { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit code; panics (printing the log) on timeout.
    pub async fn wait(&mut self, timeout: Duration) -> i32 {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => {
                let _ = self.child.start_kill();
                panic!(
                    "worker did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("worker running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// Runs the worker with `--exit-when-idle` and asserts it exits 0.
pub async fn run_until_idle(env: &HashMap<String, String>, timeout: Duration) -> String {
    let mut w = Worker::spawn(env, &["--exit-when-idle"]);
    let code = w.wait(timeout).await;
    let log = w.log_text();
    assert_eq!(code, 0, "worker exit code; log:\n{log}");
    log
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` NDJSON records `{"i": k, "@timestamp": ...}`.
pub fn ndjson(n: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(
            json!({"i": i, "tag": tag, "@timestamp": "2026-11-24T10:00:00.000Z", "msg": "x".repeat(40)})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}
