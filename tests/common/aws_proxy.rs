//! A fault-injecting HTTP/1.1 proxy between the worker (`AWS_ENDPOINT_URL` = [`AwsProxy::url`])
//! and LocalStack, for the AWS side of the fault tests (`tests/aws_faults.rs`).
//!
//! Every request is named by its operation: SQS by `X-Amz-Target` (`AmazonSQS.ReceiveMessage` →
//! `ReceiveMessage`: the JSON protocol aws-sdk-sqs speaks), S3 by method and path (`GET
//! /bucket/key` → `GetObject`, `HEAD` → `HeadObject`, anything else → `S3`). A [`Rule`] per
//! operation answers a share of the calls with an error in the protocol's own shape (S3's XML
//! `<Error>`, SQS's JSON `__type`) or a connection reset, cuts a response body after K bytes
//! (closing the connection short of its `content-length`, a limited number of times), throttles
//! a body to N bytes/s, and holds for a while or until cleared. With
//! [`AwsProxyState::check_expiry`] it also refuses requests signed with an access key whose
//! `Expiration` in the credentials endpoint's keys file has passed (LocalStack checks no
//! signatures, real AWS does).
//!
//! It logs every call ([`Call`]: operation, S3 key, arrival time, fault) and counts the body
//! bytes written per S3 key, so tests assert retry spacing, call counts and bytes on the wire.
//! The forwarding and body streaming are `aws_proxy/forward.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::http::{chance, lock, read_request, response_head, Request};

mod forward;
use forward::forward;

/// An answer instead of the real one.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error response.
    Error {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The connection reset before any byte of a response.
    Reset,
}

impl Fault {
    /// An S3 error as S3 writes it (`<Error><Code>SlowDown</Code>…`).
    pub fn s3(status: u16, code: &str, message: &str) -> Fault {
        Fault::Error {
            status,
            headers: vec![("content-type".into(), "application/xml".into())],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>{message}</Message><RequestId>F4AFAULT</RequestId>\
                 <HostId>injected-by-the-test-proxy</HostId></Error>"
            ),
        }
    }

    /// S3's 503 `SlowDown`.
    pub fn slow_down() -> Fault {
        Fault::s3(503, "SlowDown", "Please reduce your request rate.")
    }

    /// An SQS error in the AWS JSON protocol: `__type` in the body, and the query-protocol
    /// code in `x-amzn-query-error` as SQS sends it for query-compatible clients.
    pub fn sqs(status: u16, type_: &str, query_code: &str, message: &str) -> Fault {
        let fault = if status >= 500 { "Receiver" } else { "Sender" };
        Fault::Error {
            status,
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.0".into()),
                ("x-amzn-query-error".into(), format!("{query_code};{fault}")),
            ],
            body: serde_json::json!({"__type": type_, "message": message}).to_string(),
        }
    }

    /// SQS's 500.
    pub fn sqs_internal() -> Fault {
        Fault::sqs(
            500,
            "com.amazonaws.sqs#InternalError",
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    /// SQS throttling (400 `RequestThrottled`).
    pub fn sqs_throttled() -> Fault {
        Fault::sqs(
            400,
            "com.amazonaws.sqs#RequestThrottled",
            "RequestThrottled",
            "Rate exceeded",
        )
    }
}

/// What the proxy does to one operation's calls. Fields left at their default do nothing.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Share (‰) of the calls answered with one of `faults` (picked at random) instead.
    pub fail_permille: u32,
    pub faults: Vec<Fault>,
    /// The next this many calls fail with one of `faults` whatever the share.
    pub fail_next: u32,
    /// Cut a response body after this many bytes (the connection closes short of its
    /// `content-length`), for the next `cuts` responses.
    pub cut_after: Option<u64>,
    pub cuts: u32,
    /// Write response bodies at most this fast (0: as fast as they come).
    pub throttle_bytes_per_sec: u64,
    /// Only calls for this S3 `bucket/key` (every call of the operation when `None`).
    pub key: Option<String>,
    /// The rule ends then (`None`: until cleared).
    pub until: Option<Instant>,
}

impl Rule {
    /// `permille` of the calls fail with one of `faults`.
    pub fn fail(permille: u32, faults: Vec<Fault>) -> Rule {
        Rule {
            fail_permille: permille,
            faults,
            ..Rule::default()
        }
    }

    /// The rule holds for `d` from now.
    pub fn for_(mut self, d: Duration) -> Rule {
        self.until = Some(Instant::now() + d);
        self
    }

    pub fn key(mut self, key: &str) -> Rule {
        self.key = Some(key.to_string());
        self
    }
}

/// One call that reached the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: String,
    /// S3 `bucket/key` (as in the path).
    pub key: Option<String>,
    /// Milliseconds since the proxy started.
    pub at_ms: u64,
    /// The `Range` header, for resumed reads.
    pub range: Option<String>,
    /// The access key the request was signed with.
    pub access_key: Option<String>,
    /// `Some("error")`, `Some("reset")`, `Some("expired")`: the fault it got; `None`: forwarded.
    pub fault: Option<&'static str>,
}

/// Controls and counters, shared with the proxy's tasks.
pub struct AwsProxyState {
    upstream: String,
    started: Instant,
    rules: Mutex<HashMap<String, Rule>>,
    /// Refuse requests signed with an expired (or unknown) key of this keys file.
    expiry_keys: Mutex<Option<PathBuf>>,
    calls: Mutex<Vec<Call>>,
    /// `bucket/key` → response body bytes written to the client.
    bytes_by_key: Mutex<HashMap<String, u64>>,
    /// Response bodies cut short.
    cuts_done: Mutex<u64>,
}

impl AwsProxyState {
    pub fn set(&self, op: &str, rule: Rule) {
        lock(&self.rules).insert(op.to_string(), rule);
    }

    pub fn clear(&self, op: &str) {
        lock(&self.rules).remove(op);
    }

    /// From now on, requests signed with a key that `keys_file` (ecs_credentials.py's) says
    /// has expired, or does not hold, get AWS's expired-token error.
    pub fn check_expiry(&self, keys_file: &std::path::Path) {
        *lock(&self.expiry_keys) = Some(keys_file.to_path_buf());
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Calls of `op` (all of them, faulted ones included).
    pub fn calls_of(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }

    pub fn count(&self, op: &str) -> usize {
        lock(&self.calls).iter().filter(|c| c.op == op).count()
    }

    /// Calls of `op` that got an injected fault of any kind.
    pub fn faulted(&self, op: &str) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.op == op && c.fault.is_some())
            .count()
    }

    /// Response body bytes written for S3 `bucket/key`.
    pub fn bytes_sent(&self, key: &str) -> u64 {
        lock(&self.bytes_by_key).get(key).copied().unwrap_or(0)
    }

    pub fn cuts(&self) -> u64 {
        *lock(&self.cuts_done)
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// What to do with a call of `op` for `key` now: a fault, or (cut after, throttle).
    fn decide(&self, op: &str, key: Option<&str>) -> Result<(Option<u64>, u64), Fault> {
        let mut rules = lock(&self.rules);
        let Some(rule) = rules.get_mut(op) else {
            return Ok((None, 0));
        };
        if rule.until.is_some_and(|u| Instant::now() >= u) {
            rules.remove(op);
            return Ok((None, 0));
        }
        if rule.key.as_deref().is_some_and(|k| Some(k) != key) {
            return Ok((None, 0));
        }
        let forced = rule.fail_next > 0;
        rule.fail_next = rule.fail_next.saturating_sub(1);
        if !rule.faults.is_empty() && (forced || chance(rule.fail_permille)) {
            return Err(rule.faults[fastrand::usize(..rule.faults.len())].clone());
        }
        let cut = match rule.cut_after {
            Some(k) if rule.cuts > 0 => {
                rule.cuts -= 1;
                Some(k)
            }
            _ => None,
        };
        Ok((cut, rule.throttle_bytes_per_sec))
    }

    /// The access key's expiry per the keys file: `None` when valid (or not checked).
    fn expired(&self, access_key: Option<&str>) -> Option<String> {
        let path = lock(&self.expiry_keys).clone()?;
        // A keys file that cannot be read refuses everything: a silent pass would make the
        // check vacuous (ecs_credentials.py replaces the file atomically).
        let doc: serde_json::Value = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(doc) => doc,
            Err(e) => return Some(format!("keys file {}: {e}", path.display())),
        };
        let Some(key) = access_key else {
            return Some("unsigned request".into());
        };
        let entry = doc["credentials"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["AccessKeyId"].as_str() == Some(key)));
        let Some(entry) = entry else {
            return Some(format!("unknown access key {key}"));
        };
        let exp = entry["Expiration"]
            .as_str()
            .and_then(|e| chrono::NaiveDateTime::parse_from_str(e, "%Y-%m-%dT%H:%M:%SZ").ok());
        match exp {
            Some(exp) => {
                (exp.and_utc() <= chrono::Utc::now()).then(|| format!("{key} expired at {exp}"))
            }
            None => Some(format!("no readable Expiration for {key}")),
        }
    }
}

/// The proxy; stops when dropped.
pub struct AwsProxy {
    pub url: String,
    pub state: Arc<AwsProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsProxy {
    /// A proxy to `upstream` (LocalStack's URL) on a free port.
    pub async fn start(upstream: &str) -> AwsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AwsProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            started: Instant::now(),
            rules: Mutex::new(HashMap::new()),
            expiry_keys: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            bytes_by_key: Mutex::new(HashMap::new()),
            cuts_done: Mutex::new(0),
        });
        // No automatic decompression (reqwest without the gzip feature): bytes pass as they are.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(serve_conn(s, st.clone(), http.clone()));
            }
        });
        AwsProxy {
            url: format!("http://127.0.0.1:{}", addr.port()),
            state,
            task,
        }
    }
}

/// The operation a request is, and its S3 `bucket/key` if it has one.
fn operation(req: &Request) -> (String, Option<String>) {
    if let Some(t) = req.header("x-amz-target") {
        let op = t.rsplit('.').next().unwrap_or(t);
        return (op.to_string(), None);
    }
    // SQS's query protocol, in case a client speaks it.
    if let Some(action) = std::str::from_utf8(&req.body)
        .ok()
        .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
    {
        return (action.to_string(), None);
    }
    let path = req.path().trim_start_matches('/');
    let key = path.contains('/').then(|| path.to_string());
    // The Rust SDK names most S3 operations in the query (`?x-id=GetObject`).
    if let Some(x) = req
        .target
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("x-id=")))
    {
        return (x.to_string(), key);
    }
    let op = match (req.method.as_str(), &key) {
        ("GET", Some(_)) => "GetObject",
        ("HEAD", Some(_)) => "HeadObject",
        _ => "S3",
    };
    (op.to_string(), key)
}

/// The access key of a SigV4 `Authorization` header (`… Credential=AKID/date/region/…`).
fn access_key(req: &Request) -> Option<String> {
    let auth = req.header("authorization")?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_string())
}

fn expired_fault(op: &str, why: &str) -> Fault {
    if op == "GetObject" || op == "HeadObject" || op == "S3" {
        Fault::s3(
            400,
            "ExpiredToken",
            &format!("The provided token has expired ({why})."),
        )
    } else {
        Fault::sqs(
            403,
            "com.amazon.coral.service#ExpiredTokenException",
            "ExpiredToken",
            &format!("The security token included in the request is expired ({why})"),
        )
    }
}

async fn serve_conn(mut s: TcpStream, state: Arc<AwsProxyState>, http: reqwest::Client) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf).await else {
            return;
        };
        let (op, key) = operation(&req);
        let akid = access_key(&req);
        let mut call = Call {
            op: op.clone(),
            key: key.clone(),
            at_ms: state.elapsed_ms(),
            range: req.header("range").map(str::to_string),
            access_key: akid.clone(),
            fault: None,
        };
        let decided = match state.expired(akid.as_deref()) {
            Some(why) => {
                call.fault = Some("expired");
                Err(expired_fault(&op, &why))
            }
            None => state.decide(&op, key.as_deref()),
        };
        if let Err(f) = &decided {
            call.fault = call.fault.or(Some(match f {
                Fault::Error { .. } => "error",
                Fault::Reset => "reset",
            }));
        }
        lock(&state.calls).push(call);
        let keep_open = match decided {
            Err(Fault::Reset) => {
                let _ = s.set_zero_linger();
                return;
            }
            Err(Fault::Error {
                status,
                headers,
                body,
            }) => {
                let mut out = response_head(status, &headers, body.len() as u64).into_bytes();
                out.extend_from_slice(body.as_bytes());
                s.write_all(&out).await.is_ok()
            }
            Ok((cut, throttle)) => {
                forward(&mut s, &state, &http, &req, key.as_deref(), cut, throttle).await
            }
        };
        if !keep_open || s.flush().await.is_err() {
            return;
        }
    }
}
