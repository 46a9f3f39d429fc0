//! The Python stand-ins for AWS's side of signing (`tests/tools/`, see its README), started from
//! the stack's venv (`F4A_VENV`, set by `scripts/stack.sh env`): [`SigV4Proxy`], a proxy in front
//! of the real node that recomputes every signature with botocore (Amazon OpenSearch Service, or
//! Serverless in `aoss` mode), and [`CredentialsEndpoint`], the ECS task-role credentials
//! endpoint with credentials that expire. Each prints one JSON line when it listens; each is
//! stopped when dropped. Ports are free ones the tools pick themselves.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{repo_path, unique};

/// One tool process; its first stdout line (JSON) says where it listens.
struct Tool {
    child: Child,
    info: Value,
    stderr: PathBuf,
}

impl Tool {
    fn start(script: &str, args: &[String]) -> Tool {
        let venv = std::env::var("F4A_VENV")
            .expect("F4A_VENV is not set: run the tests with `make test` (scripts/stack.sh env)");
        let stderr = std::env::temp_dir().join(format!("{}.log", unique(script)));
        let mut child = Command::new(format!("{venv}/bin/python"))
            .arg(repo_path(&format!("tests/tools/{script}")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("tool log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {script}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the tool's first line");
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "{script} did not start: {line:?}\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        Tool {
            child,
            info,
            stderr,
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .expect("JSON")
}

async fn post_json(url: &str, body: Value) -> Value {
    http()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .expect("JSON")
}

/// `ecs_credentials.py`: what `AWS_CONTAINER_CREDENTIALS_FULL_URI` points at on Fargate, with a
/// new set every `rotate_every` seconds, each valid `grace` seconds past the next one's issue.
pub struct CredentialsEndpoint {
    tool: Tool,
    pub uri: String,
    pub control: String,
    /// Every set issued: the proxy's `--credentials`.
    pub keys_file: PathBuf,
}

impl CredentialsEndpoint {
    pub fn start(rotate_every: u32, grace: u32) -> CredentialsEndpoint {
        let keys_file = std::env::temp_dir().join(format!("{}.json", unique("f4a-keys")));
        let tool = Tool::start(
            "ecs_credentials.py",
            &[
                "--keys-file".into(),
                keys_file.display().to_string(),
                "--rotate-every".into(),
                rotate_every.to_string(),
                "--grace".into(),
                grace.to_string(),
            ],
        );
        CredentialsEndpoint {
            uri: tool.info["credentials_uri"].as_str().expect("uri").into(),
            control: tool.info["control"].as_str().expect("control").into(),
            tool,
            keys_file,
        }
    }

    /// `fetches`, `served`, `rotations`, `fetches_by_key`, …
    pub async fn stats(&self) -> Value {
        get_json(&format!("{}/__control/stats", self.control)).await
    }

    /// The worker's environment for these credentials: the container endpoint, and the static
    /// keys of the harness blanked (an empty variable counts as unset in the AWS chain), so
    /// every AWS call — SQS and S3 at LocalStack too — uses the rotating credentials.
    pub fn worker_env(&self, env: &mut HashMap<String, String>) {
        env.insert(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            self.uri.clone(),
        );
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            env.insert(k.into(), String::new());
        }
    }
}

impl Drop for CredentialsEndpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.keys_file);
    }
}

/// `sigv4_proxy.py` in front of `upstream`: every request verified against the credentials in
/// `keys_file`, forwarded byte for byte when valid.
pub struct SigV4Proxy {
    tool: Tool,
    pub url: String,
}

impl SigV4Proxy {
    /// `service`: `es` or `aoss`; `extra`: more options (`--collection-type timeseries`, …).
    pub fn start(
        upstream: &str,
        keys_file: &std::path::Path,
        service: &str,
        extra: &[&str],
    ) -> SigV4Proxy {
        let mut args: Vec<String> = [
            "--upstream",
            upstream,
            "--credentials",
            &keys_file.display().to_string(),
            "--service",
            service,
            "--region",
            super::REGION,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let tool = Tool::start("sigv4_proxy.py", &args);
        SigV4Proxy {
            url: tool.info["proxy"].as_str().expect("proxy url").into(),
            tool,
        }
    }

    /// The counters (see tests/tools/README.md): `accepted`, `rejected_by_reason`,
    /// `access_keys`, `content_encoding`, `replayed_signatures`, `aoss`, …
    pub async fn stats(&self) -> Value {
        get_json(&format!("{}/__proxy/stats", self.url)).await
    }

    pub async fn reset(&self) {
        post_json(&format!("{}/__proxy/reset", self.url), Value::Null).await;
    }

    /// `{"expire_next": N}` or `{"collection_type": "…"}`.
    pub async fn configure(&self, cfg: Value) -> Value {
        post_json(&format!("{}/__proxy/config", self.url), cfg).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.tool.stderr).unwrap_or_default()
    }
}
