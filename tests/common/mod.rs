//! Test harness shared by the integration tests: the real LocalStack and the shared search
//! engine (both started by `make test`), private search nodes for tests that break or restart
//! their cluster, unique AWS resources and index names per test, and the real worker binary.
//!
//! Nothing here is mocked. The environment comes from `scripts/stack.sh env`:
//! `AWS_ENDPOINT_URL` (LocalStack), `ES_URL` (the shared engine), `F4A_ENGINE` (`opensearch`,
//! `opensearch3`, `elasticsearch`, `elasticsearch8` or `osmem`), and for private nodes
//! `F4A_OPENSEARCH_JAVA` + `F4A_OPENSEARCH_ARGS` (a real OpenSearch node, `scripts/opensearch/`),
//! `F4A_ELASTICSEARCH_JAVA` + `F4A_ELASTICSEARCH_ARGS` (a real Elasticsearch node,
//! `scripts/elasticsearch/`) or `F4A_OSMEM_BIN` (the in-memory double).
//!
//! A real engine makes documents searchable only after a refresh: [`SearchServer::count`] and
//! [`SearchServer::all_docs`] refresh the indices they read first.
#![allow(dead_code)]

pub mod aws_proxy;
pub mod aws_rig;
pub mod aws_tools;
pub mod faulty;
pub mod http;
pub mod moto;
pub mod proxy;
pub mod search;
pub mod tmux;
pub mod tool;

// Not every suite uses every item.
#[allow(unused_imports)]
pub use search::{engine, shared_es_url, Engine, PrivateNode, SearchServer};

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
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

/// AWS clients pointed at LocalStack.
#[derive(Clone)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub firehose: aws_sdk_firehose::Client,
}

impl Aws {
    /// The SDK configuration of these clients (LocalStack, test credentials).
    pub async fn sdk_config() -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(localstack_url())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    pub async fn new() -> Aws {
        let conf = Self::sdk_config().await;
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

/// One test's world: a queue with a DLQ, a bucket notifying the queue, and index names of its
/// own on the shared search engine (`{prefix}-%Y.%m.%d` and `{prefix}-dead-letter`), removed
/// when the world is dropped (kept when the test failed).
pub struct World {
    pub aws: Aws,
    pub es: SearchServer,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    /// Prefix of every index this world's worker writes.
    pub prefix: String,
}

impl World {
    pub async fn new(name: &str) -> World {
        Self::with_max_receive(name, 5).await
    }

    pub async fn with_max_receive(name: &str, max_receive: u32) -> World {
        let aws = Aws::new().await;
        let es = SearchServer::shared();
        let base = unique(name);
        let (queue_url, dlq_url) = aws.queue_with_dlq(&base, max_receive).await;
        let bucket = base.to_lowercase();
        aws.bucket_notifying(&bucket, &queue_url).await;
        aws.purge_visible(&queue_url).await;
        World {
            aws,
            es,
            prefix: bucket.clone(),
            bucket,
            queue_url,
            dlq_url,
        }
    }

    /// This world's daily data indices (`ES_INDEX` renders `{prefix}-2026.11.24`, ...).
    pub fn data(&self) -> String {
        format!("{}-2*", self.prefix)
    }

    /// This world's dead-letter index.
    pub fn dead(&self) -> String {
        format!("{}-dead-letter", self.prefix)
    }

    /// Every index of this world.
    pub fn all(&self) -> String {
        format!("{}-*", self.prefix)
    }

    /// An index name of this world's own, for tests that set `ES_INDEX` to a fixed name.
    pub fn index(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
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
            ("ES_INDEX", &format!("{}-%Y.%m.%d", self.prefix)),
            ("DEAD_LETTER_INDEX", &self.dead()),
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
        .chain(
            // The embedded Elasticsearch 9.x node has no native zstd: a `best_compression`
            // shard fails there (scripts/elasticsearch/README.md); real distributions are fine.
            std::env::var("F4A_ENGINE")
                .is_ok_and(|e| e.starts_with("elasticsearch"))
                .then(|| ("ES_INDEX_CODEC".to_string(), "default".to_string())),
        )
        .collect()
    }

    /// Puts `objects` gzip NDJSON objects of `per_object` records under `backlog/` and waits
    /// until the queue has announced them all: a backlog for rate and load tests.
    pub async fn put_backlog(&self, objects: usize, per_object: usize) {
        for k in 0..objects {
            self.aws
                .put(
                    &self.bucket,
                    &format!("backlog/{k:04}.json.gz"),
                    gzip(&ndjson(per_object, &format!("o{k}"))),
                )
                .await;
        }
        let seen = self
            .aws
            .wait_visible(&self.queue_url, objects as u64, Duration::from_secs(60))
            .await;
        assert_eq!(seen, objects as u64, "notifications of the backlog");
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

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("indices of the failed test kept: {}", self.all());
            return;
        }
        // Keep the shared node small over many runs. Drop cannot await: a thread of its own
        // with its own runtime does the delete.
        // A client of its own too: the test's pooled connections belong to the test's runtime.
        let (url, pattern) = (self.es.url.clone(), self.all());
        let templates = format!("f4a-indexer-*{}*", self.prefix);
        let _ = std::thread::spawn(move || {
            let es = SearchServer::at(&url);
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    es.delete_indices(&pattern).await;
                    es.delete_templates(&templates).await;
                });
            }
        })
        .join();
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
