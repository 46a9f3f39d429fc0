//! The search side of the harness: [`SearchServer`], a client of one engine (the shared node of
//! `scripts/stack.sh`, or a private one) that refreshes before it counts or reads, and
//! [`PrivateNode`], a node of a test's own for tests that break, overload or restart their
//! cluster.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, unique};

/// The search engine the suites run against (`F4A_ENGINE`, as `scripts/stack.sh` chose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A real OpenSearch node (2.x or 3.x).
    OpenSearch,
    /// A real Elasticsearch node (8.19 or 9.x, `scripts/elasticsearch/`).
    Elasticsearch,
    /// osmem-server, the in-memory double: no refresh needed, nothing survives a restart, no
    /// node settings.
    Osmem,
}

pub fn engine() -> Engine {
    match std::env::var("F4A_ENGINE").as_deref() {
        Ok("osmem") => Engine::Osmem,
        Ok("opensearch") | Ok("opensearch3") => Engine::OpenSearch,
        Ok("elasticsearch") | Ok("elasticsearch8") => Engine::Elasticsearch,
        other => panic!(
            "F4A_ENGINE is {other:?}: run the integration tests with `make test` (scripts/stack.sh env sets it)"
        ),
    }
}

/// URL of the shared search engine started by `scripts/stack.sh start`.
pub fn shared_es_url() -> String {
    std::env::var("ES_URL").expect(
        "ES_URL is not set: run the integration tests with `make test`, which starts the search engine",
    )
}

/// A client of one search engine (the shared one, or a private node's).
#[derive(Clone)]
pub struct SearchServer {
    pub url: String,
    http: reqwest::Client,
}

impl SearchServer {
    pub fn at(url: &str) -> SearchServer {
        SearchServer {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    /// The shared engine (`ES_URL`); tests keep to their own index names on it.
    pub fn shared() -> SearchServer {
        Self::at(&shared_es_url())
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

    /// Makes what was indexed into `index` (a name or pattern) searchable.
    pub async fn refresh(&self, index: &str) {
        self.request(
            reqwest::Method::POST,
            &format!("/{index}/_refresh?allow_no_indices=true&ignore_unavailable=true"),
            None,
        )
        .await;
    }

    /// A read of `index` after a refresh. A real engine answers 503 "all shards failed" while an
    /// index the worker has just created still has its primary shard initializing: that is
    /// "nothing visible yet", so the read is repeated until the shard is up (at most 30 s).
    async fn read(
        &self,
        index: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.refresh(index).await;
            let (status, v) = self.request(method.clone(), path, body.clone()).await;
            if status != 503 || Instant::now() > deadline {
                return (status, v);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Documents in `index` (a name or pattern), 0 if it does not exist.
    pub async fn count(&self, index: &str) -> u64 {
        let (status, v) = self
            .read(
                index,
                reqwest::Method::GET,
                &format!("/{index}/_count"),
                None,
            )
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
        let (status, v) = self
            .read(
                index,
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

    /// Names of the indices matching `pattern`.
    pub async fn indices(&self, pattern: &str) -> Vec<String> {
        let (status, v) = self
            .request(
                reqwest::Method::GET,
                &format!("/_cat/indices/{pattern}?format=json&h=index"),
                None,
            )
            .await;
        if status != 200 {
            return vec![];
        }
        v.as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["index"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A user's template `name` over the worker's (priority 150) for `pattern`: with `dynamic`
    /// `"strict"` it refuses documents with fields outside its mapping (`@timestamp`, `message`,
    /// `n` as long, and the worker's `event`, `log`, `aws`); with `"true"` it takes them, and
    /// the indices that already match are changed to take them too (the fix of a broken mapping).
    pub async fn user_template(&self, name: &str, pattern: &str, dynamic: &str) {
        let body = serde_json::json!({
            "index_patterns": [pattern],
            "priority": 500,
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {
                    "dynamic": dynamic,
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "message": {"type": "text"},
                        "n": {"type": "long"},
                        "event": {"type": "object", "dynamic": true},
                        "log": {"type": "object", "dynamic": true},
                        "aws": {"type": "object", "dynamic": true},
                    },
                },
            },
        });
        let path = format!("/_index_template/{name}");
        let (status, answer) = self.request(reqwest::Method::PUT, &path, Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        if dynamic != "strict" && !self.indices(pattern).await.is_empty() {
            let body = serde_json::json!({"dynamic": dynamic});
            let path = format!("/{pattern}/_mapping");
            let (status, answer) = self.request(reqwest::Method::PUT, &path, Some(body)).await;
            assert_eq!(status, 200, "{answer}");
        }
    }

    /// Deletes the composable index templates whose name matches `pattern` (the worker's
    /// `ES_SETUP` puts them), by name.
    pub async fn delete_templates(&self, pattern: &str) {
        let (status, v) = self
            .request(
                reqwest::Method::GET,
                &format!("/_index_template/{pattern}"),
                None,
            )
            .await;
        if status != 200 {
            return;
        }
        for t in v["index_templates"].as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str() {
                self.request(
                    reqwest::Method::DELETE,
                    &format!("/_index_template/{name}"),
                    None,
                )
                .await;
            }
        }
    }

    /// Deletes the indices matching `pattern`, by name (a wildcard delete may be refused by
    /// `action.destructive_requires_name`).
    pub async fn delete_indices(&self, pattern: &str) {
        let names = self.indices(pattern).await;
        if !names.is_empty() {
            self.request(
                reqwest::Method::DELETE,
                &format!("/{}", names.join(",")),
                None,
            )
            .await;
        }
    }
}

/// A search node of a test's own, for tests that must break, overload or restart their
/// cluster: a real OpenSearch or Elasticsearch node (own home and data path, own port, optional
/// `-E` settings)
/// or, with `F4A_ENGINE=osmem`, a private osmem. Killed on drop, its home removed.
pub struct PrivateNode {
    child: Option<std::process::Child>,
    pub url: String,
    pub es: SearchServer,
    port: u16,
    home: PathBuf,
    settings: Vec<(String, String)>,
    log: PathBuf,
}

impl PrivateNode {
    /// Starts a node with these node settings (`thread_pool.write.size`, ...); a real node
    /// takes a free port, osmem ignores the settings.
    pub async fn start(settings: &[(&str, &str)]) -> PrivateNode {
        let home = std::env::temp_dir().join(unique("f4a-node"));
        std::fs::create_dir_all(&home).expect("node home");
        let mut node = PrivateNode {
            child: None,
            url: String::new(),
            es: SearchServer::at("http://127.0.0.1:0"),
            port: 0,
            log: home.join("node.log"),
            home,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        node.launch().await;
        node
    }

    /// Whether documents survive a restart (a real node: yes; osmem: no).
    pub fn persistent(&self) -> bool {
        engine() != Engine::Osmem
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The node's data path (its home's `data/`).
    pub fn data_path(&self) -> PathBuf {
        self.home.join("data")
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        match engine() {
            Engine::Osmem => {
                let bin = std::env::var("F4A_OSMEM_BIN")
                    .expect("F4A_OSMEM_BIN is not set: run the tests with `make test`");
                if self.port == 0 {
                    self.port = free_port();
                }
                let child = std::process::Command::new(&bin)
                    .args([
                        "-addr",
                        &format!("127.0.0.1:{}", self.port),
                        "-no-stdin-watch",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
                self.child = Some(child);
                self.set_url();
                let deadline = Instant::now() + Duration::from_secs(20);
                while self
                    .es
                    .http
                    .get(format!("{}/_cluster/health", self.url))
                    .send()
                    .await
                    .map(|r| !r.status().is_success())
                    .unwrap_or(true)
                {
                    assert!(Instant::now() < deadline, "osmem did not start");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            real => {
                // Both launchers take the same arguments (scripts/opensearch/,
                // scripts/elasticsearch/); `scripts/stack.sh env` names their argfiles.
                let (java_var, args_var) = if real == Engine::Elasticsearch {
                    ("F4A_ELASTICSEARCH_JAVA", "F4A_ELASTICSEARCH_ARGS")
                } else {
                    ("F4A_OPENSEARCH_JAVA", "F4A_OPENSEARCH_ARGS")
                };
                let java = std::env::var(java_var).unwrap_or_else(|_| {
                    panic!("{java_var} is not set: run the tests with `make test`")
                });
                let args = std::env::var(args_var).unwrap_or_else(|_| {
                    panic!("{args_var} is not set: run the tests with `make test`")
                });
                let heap = std::env::var("F4A_ES_HEAP").unwrap_or_else(|_| "512m".into());
                let mut cmd = std::process::Command::new(&java);
                cmd.arg(format!("-Xms{heap}"))
                    .arg(format!("-Xmx{heap}"))
                    .arg(format!("@{args}"))
                    .arg("--home")
                    .arg(&self.home)
                    .arg("--data")
                    .arg(self.data_path())
                    .args(["--port", &self.port.to_string()]);
                for (k, v) in &self.settings {
                    cmd.arg("-E").arg(format!("{k}={v}"));
                }
                let mut child = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {java}: {e}"));
                // The launcher prints the bound port once every primary shard is up.
                let stdout = child.stdout.take().expect("node stdout");
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
                    let _ = tx.send(line);
                });
                let line = tokio::task::spawn_blocking(move || {
                    rx.recv_timeout(Duration::from_secs(180))
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                self.child = Some(child);
                let port: u16 = line.trim().parse().unwrap_or_else(|_| {
                    panic!(
                        "private {real:?} node did not start (stdout {line:?}); log:\n{}",
                        self.log_text()
                    )
                });
                self.port = port;
                self.set_url();
            }
        }
    }

    fn set_url(&mut self) {
        self.url = format!("http://127.0.0.1:{}", self.port);
        self.es = SearchServer::at(&self.url);
    }

    /// SIGTERM; the node closes cleanly (exit 0) within a minute.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        if engine() != Engine::Osmem {
            assert_eq!(
                status.code(),
                Some(0),
                "node exit after SIGTERM; log:\n{}",
                self.log_text()
            );
        }
    }

    /// SIGKILL: the node dies at once, in the middle of whatever it does.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Starts the node again on the same home, data path and port (after `stop` or `kill`).
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.home);
        } else {
            eprintln!("private node home kept: {}", self.home.display());
        }
    }
}
