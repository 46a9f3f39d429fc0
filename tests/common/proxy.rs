//! A fault-injecting HTTP/1.1 proxy between the worker (`ES_URL` = [`Proxy::url`]) and the search
//! server, controlled at run time by the test through [`Proxy::state`].
//!
//! Written on raw tokio TCP so every fault is exact: whole-request 429/503 for a share of `_bulk`
//! requests, per-item rewrites (429 `es_rejected_execution_exception`, 400
//! `mapper_parsing_exception`, 409), responses delayed past the client timeout, connections reset
//! mid-response, the cluster down (listener closed: connection refused; or accept-and-drop,
//! counted), 401 for every request, an optional TLS front (self-signed certificate), and a sink
//! mode that answers `_bulk` itself with all-201 items (for rates above what a small node takes),
//! and a cluster capacity (documents per calendar or sliding second, 429 above it).
//!
//! The HTTP/1.1 request reader is `http.rs`'s, shared with the AWS-side proxy (`aws_proxy.rs`);
//! the `_bulk` handling is `proxy/bulk.rs`, the TLS front `proxy/tls.rs`.
//!
//! It counts connections, `_bulk` attempts, documents per attempt, attempts per document `_id`,
//! and documents per one-second window (by arrival), so rate tests can assert on windows.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::http::{lock, read_request, response_head, Request};

mod bulk;
mod tls;

use bulk::handle_bulk;
use tls::Conn;
pub use tls::TlsIdentity;

/// A fault for one document of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemFault {
    /// 429 `es_rejected_execution_exception`; the document is not forwarded.
    Rejected,
    /// 400 `mapper_parsing_exception` with this reason; the document is not forwarded.
    MapperParsing(String),
    /// 409 `version_conflict_engine_exception`; the document *is* forwarded (and indexed).
    Conflict,
}

/// What the item rule sees of one document.
pub struct ItemCtx<'a> {
    pub id: &'a str,
    pub index: &'a str,
    pub source: &'a Value,
    /// How many `_bulk` attempts carried this id before, this one excluded.
    pub previous_attempts: u32,
}

pub type ItemRule = Arc<dyn Fn(&ItemCtx<'_>) -> Option<ItemFault> + Send + Sync>;

/// How the "cluster down" fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownMode {
    /// The listener is closed: connection refused.
    Refuse,
    /// Connections are accepted and closed at once (counted in `dropped_connections`).
    AcceptAndDrop,
}

/// Controls and counters, shared with the proxy's tasks.
pub struct ProxyState {
    upstream: String,
    started: Instant,
    // --- controls ---
    /// Share (per mille) of `_bulk` requests answered with a whole-request error.
    pub bulk_fail_permille: AtomicU32,
    /// Status for those: 429, 503, or 0 to alternate 429/503.
    pub bulk_fail_status: AtomicU32,
    item_rule: Mutex<Option<ItemRule>>,
    /// Delay before a `_bulk` response is written (after forwarding).
    pub bulk_delay_ms: AtomicU64,
    /// Share (per mille) of `_bulk` responses cut by a TCP reset mid-body (after forwarding).
    pub reset_permille: AtomicU32,
    /// Answer every request with 401 (forwarding nothing).
    pub unauthorized: AtomicBool,
    /// Answer 403 to requests whose path starts with one of these (a user without that
    /// privilege), forwarding nothing; counted in `forbidden_answers`.
    forbidden: Mutex<Vec<String>>,
    pub forbidden_answers: AtomicU64,
    /// Answer `_bulk` here with all-201 items, forwarding nothing.
    pub sink: AtomicBool,
    /// A cluster that takes at most this many documents per one-second window and answers 429
    /// to any `_bulk` request that would exceed it (0 = no limit).
    pub capacity_per_sec: AtomicU64,
    /// Count `capacity_per_sec` over the last 1,000 ms (a sliding second) instead of per
    /// calendar second since start: no boundary at which a full second of capacity frees at once.
    pub capacity_sliding: AtomicBool,
    /// Accepted (ms since start, documents) within the last sliding second.
    sliding_window: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// `_bulk` requests refused by `capacity_per_sec`.
    pub capacity_rejections: AtomicU64,
    /// Second since start → documents accepted under `capacity_per_sec`.
    accepted_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Second since start → `_bulk` requests refused by `capacity_per_sec`.
    rejected_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Second since start → `_bulk` body bytes that arrived in that second.
    bytes_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Second since start → forwarded `_bulk` requests that the cluster behind refused, wholly
    /// (429) or in part (an item with status 429): a real node's own overload.
    cluster_refused_by_second: Mutex<BTreeMap<u64, u64>>,
    down: Mutex<Option<(Instant, DownMode)>>,
    // --- counters ---
    pub connections: AtomicU64,
    pub dropped_connections: AtomicU64,
    pub requests: AtomicU64,
    /// Requests whose body came gzip-compressed (inflated before anything else looks at it).
    pub gzip_requests: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bulk_failed_injected: AtomicU64,
    pub bulk_docs: AtomicU64,
    pub items_faulted: AtomicU64,
    pub resets: AtomicU64,
    /// `_id` → times a `_bulk` request carried it.
    attempts_by_id: Mutex<HashMap<String, u32>>,
    /// `_id` → arrival times (ms since start) of the requests carrying it.
    attempt_times: Mutex<HashMap<String, Vec<u64>>>,
    /// Second since start → documents that arrived in `_bulk` requests in that second.
    docs_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Second since start → `_bulk` requests that arrived in that second.
    bulk_by_second: Mutex<BTreeMap<u64, u64>>,
    /// Authorization headers seen (tests check secrets are sent only where they belong).
    pub auth_headers: Mutex<Vec<String>>,
}

impl ProxyState {
    pub fn set_item_rule(
        &self,
        rule: impl Fn(&ItemCtx<'_>) -> Option<ItemFault> + Send + Sync + 'static,
    ) {
        *lock(&self.item_rule) = Some(Arc::new(rule));
    }

    /// Requests to paths starting with `prefix` (`/_index_template`) get 403 from now on.
    pub fn forbid(&self, prefix: &str) {
        self.forbidden.lock().unwrap().push(prefix.to_string());
    }

    pub fn clear_item_rule(&self) {
        *lock(&self.item_rule) = None;
    }

    /// A share of `_bulk` requests fails with `status` (0 = alternate 429 and 503).
    pub fn fail_bulk(&self, permille: u32, status: u32) {
        self.bulk_fail_status.store(status, Ordering::SeqCst);
        self.bulk_fail_permille.store(permille, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.bulk_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// The cluster is down for `d` from now.
    pub fn down_for(&self, d: Duration, mode: DownMode) {
        *lock(&self.down) = Some((Instant::now() + d, mode));
    }

    pub fn is_down(&self) -> Option<DownMode> {
        let mut g = lock(&self.down);
        match *g {
            Some((until, mode)) if Instant::now() < until => Some(mode),
            Some(_) => {
                *g = None;
                None
            }
            None => None,
        }
    }

    pub fn attempts_by_id(&self) -> HashMap<String, u32> {
        lock(&self.attempts_by_id).clone()
    }

    pub fn attempt_times(&self) -> HashMap<String, Vec<u64>> {
        lock(&self.attempt_times).clone()
    }

    /// Documents per one-second window since the proxy started, empty windows included,
    /// from the first to the last window that saw a document.
    pub fn docs_per_second(&self) -> Vec<u64> {
        dense(&lock(&self.docs_by_second))
    }

    /// Documents accepted per one-second window under `capacity_per_sec`.
    pub fn accepted_per_second(&self) -> Vec<u64> {
        dense(&lock(&self.accepted_by_second))
    }

    /// (second, requests refused by `capacity_per_sec` in it), for the seconds that had any.
    pub fn rejected_by_second(&self) -> BTreeMap<u64, u64> {
        lock(&self.rejected_by_second).clone()
    }

    /// (second, forwarded `_bulk` requests the cluster refused wholly or in part with 429), for
    /// the seconds that had any.
    pub fn cluster_refused_by_second(&self) -> BTreeMap<u64, u64> {
        lock(&self.cluster_refused_by_second).clone()
    }

    /// `_bulk` body bytes per one-second window.
    pub fn bytes_per_second(&self) -> Vec<u64> {
        dense(&lock(&self.bytes_by_second))
    }

    /// (second, `_bulk` requests that arrived in it), for the seconds that had any.
    pub fn bulk_by_second(&self) -> BTreeMap<u64, u64> {
        lock(&self.bulk_by_second).clone()
    }

    pub fn bulk_per_second(&self) -> Vec<u64> {
        dense(&lock(&self.bulk_by_second))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn bulk_requests(&self) -> u64 {
        self.bulk_requests.load(Ordering::SeqCst)
    }

    /// Resets every counter (controls are left as they are).
    pub fn reset_counters(&self) {
        for c in [
            &self.connections,
            &self.dropped_connections,
            &self.requests,
            &self.bulk_requests,
            &self.bulk_failed_injected,
            &self.bulk_docs,
            &self.items_faulted,
            &self.resets,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        lock(&self.attempts_by_id).clear();
        lock(&self.attempt_times).clear();
        lock(&self.docs_by_second).clear();
        lock(&self.bulk_by_second).clear();
    }
}

fn dense(m: &BTreeMap<u64, u64>) -> Vec<u64> {
    let (Some(first), Some(last)) = (m.keys().next(), m.keys().next_back()) else {
        return vec![];
    };
    (*first..=*last)
        .map(|s| m.get(&s).copied().unwrap_or(0))
        .collect()
}

/// The proxy; stops when dropped.
pub struct Proxy {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A plain HTTP proxy to `upstream` (e.g. the search engine URL) on a free port.
    pub async fn start(upstream: &str) -> Proxy {
        Self::start_inner(upstream, None).await
    }

    /// The same behind TLS with `identity`'s certificate (`url` is `https://localhost:port`).
    pub async fn start_tls(upstream: &str, identity: &TlsIdentity) -> Proxy {
        Self::start_inner(upstream, Some(identity.acceptor())).await
    }

    async fn start_inner(upstream: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            started: Instant::now(),
            bulk_fail_permille: AtomicU32::new(0),
            bulk_fail_status: AtomicU32::new(0),
            item_rule: Mutex::new(None),
            bulk_delay_ms: AtomicU64::new(0),
            reset_permille: AtomicU32::new(0),
            unauthorized: AtomicBool::new(false),
            forbidden: Mutex::new(Vec::new()),
            forbidden_answers: AtomicU64::new(0),
            sink: AtomicBool::new(false),
            down: Mutex::new(None),
            connections: AtomicU64::new(0),
            dropped_connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            gzip_requests: AtomicU64::new(0),
            bulk_requests: AtomicU64::new(0),
            bulk_failed_injected: AtomicU64::new(0),
            bulk_docs: AtomicU64::new(0),
            capacity_per_sec: AtomicU64::new(0),
            capacity_sliding: AtomicBool::new(false),
            sliding_window: Mutex::new(Default::default()),
            capacity_rejections: AtomicU64::new(0),
            accepted_by_second: Mutex::new(BTreeMap::new()),
            rejected_by_second: Mutex::new(BTreeMap::new()),
            bytes_by_second: Mutex::new(BTreeMap::new()),
            cluster_refused_by_second: Mutex::new(BTreeMap::new()),
            items_faulted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            attempts_by_id: Mutex::new(HashMap::new()),
            attempt_times: Mutex::new(HashMap::new()),
            docs_by_second: Mutex::new(BTreeMap::new()),
            bulk_by_second: Mutex::new(BTreeMap::new()),
            auth_headers: Mutex::new(Vec::new()),
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            state.clone(),
            http,
            tls.clone(),
        ));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if tls.is_some() {
            "localhost".to_string()
        } else {
            "127.0.0.1".to_string()
        };
        Proxy {
            url: format!("{scheme}://{host}:{}", addr.port()),
            addr,
            state,
            task,
        }
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    state: Arc<ProxyState>,
    http: reqwest::Client,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        if state.is_down() == Some(DownMode::Refuse) {
            drop(listener);
            while state.is_down() == Some(DownMode::Refuse) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
        }
        // Wake up now and then to notice a Refuse period.
        let accepted =
            match tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
                Err(_) => continue,
                Ok(Err(_)) => continue,
                Ok(Ok((s, _))) => s,
            };
        state.connections.fetch_add(1, Ordering::SeqCst);
        if state.is_down().is_some() {
            state.dropped_connections.fetch_add(1, Ordering::SeqCst);
            let _ = accepted.set_zero_linger();
            drop(accepted);
            continue;
        }
        let (state, http, tls) = (state.clone(), http.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = accepted.set_nodelay(true);
            match tls {
                None => serve_conn(accepted, state, http).await,
                Some(acceptor) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(accepted))
                            .await
                    {
                        serve_conn(s, state, http).await
                    }
                }
            }
        });
    }
}

struct Reply {
    status: u16,
    body: Vec<u8>,
    /// Cut the connection with a reset after writing part of the body.
    reset: bool,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            body: v.to_string().into_bytes(),
            reset: false,
            delay: Duration::ZERO,
        }
    }
}

async fn serve_conn<S: Conn>(mut s: S, state: Arc<ProxyState>, http: reqwest::Client) {
    let mut buf = Vec::new();
    loop {
        let Some(mut req) = read_request(&mut s, &mut buf).await else {
            return;
        };
        // The worker gzips bulk bodies by default (ES_COMPRESSION): the faults and counts here
        // are about documents, so the body is inflated and forwarded plain.
        if req.inflate_gzip().is_none() {
            return;
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        if req.gzipped {
            state.gzip_requests.fetch_add(1, Ordering::SeqCst);
        }
        if state.is_down().is_some() {
            let _ = s.tcp().set_zero_linger();
            return;
        }
        if let Some(a) = req.header("authorization") {
            lock(&state.auth_headers).push(a.to_string());
        }
        let reply = handle(&req, &state, &http).await;
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let head = response_head(
            reply.status,
            &[("content-type".into(), "application/json".into())],
            reply.body.len() as u64,
        );
        if reply.reset {
            state.resets.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&reply.body[..reply.body.len() / 2]).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = s.tcp().set_zero_linger();
            return;
        }
        let mut out = head.into_bytes();
        out.extend_from_slice(&reply.body);
        if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

async fn forward(
    http: &reqwest::Client,
    state: &ProxyState,
    req: &Request,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = http.request(method, format!("{}{}", state.upstream, req.target));
    if let Some(ct) = req.header("content-type") {
        r = r.header("content-type", ct);
    }
    if !body.is_empty() || req.method == "POST" || req.method == "PUT" {
        r = r.body(body);
    }
    let resp = r.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, bytes.to_vec()))
}

async fn handle(req: &Request, state: &ProxyState, http: &reqwest::Client) -> Reply {
    if state.unauthorized.load(Ordering::SeqCst) {
        return Reply::json(
            401,
            json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}),
        );
    }
    let path = req.target.split('?').next().unwrap_or("");
    if state
        .forbidden
        .lock()
        .unwrap()
        .iter()
        .any(|p| path.starts_with(p.as_str()))
    {
        state.forbidden_answers.fetch_add(1, Ordering::SeqCst);
        return Reply::json(
            403,
            json!({"error": {"type": "security_exception", "reason": format!("action [{}] is unauthorized for user [f4a]", req.target)}, "status": 403}),
        );
    }
    if !(req.method == "POST" && path.ends_with("/_bulk")) {
        return match forward(http, state, req, req.body.clone()).await {
            Ok((status, body)) => Reply {
                status,
                body,
                reset: false,
                delay: Duration::ZERO,
            },
            Err(e) => Reply::json(502, json!({"error": e})),
        };
    }
    handle_bulk(req, state, http).await
}
