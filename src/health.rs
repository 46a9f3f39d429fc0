//! Health: what the process knows about itself, served on `HEALTH_ADDR`.
//!
//! - `GET /healthz` — liveness for the ECS container health check: 200 while the receive loop
//!   makes progress (or is legitimately waiting for in-flight slots), 503 with the reason if it
//!   has been stuck for longer than a long poll plus a minute.
//! - `GET /readyz` — readiness: 200 once SQS and the cluster have both answered, 503 `degraded`
//!   with the reason while either fails (a cluster that is down, refusing bulk requests, or
//!   rejecting credentials), or for good once the cluster refused the worker's configuration
//!   (Serverless refusing document ids: only a restart with another configuration helps). It
//!   also shows who the cluster is (`cluster_identity`: flavour and version, once known). With a
//!   fleet budget the body also has `fleet` (mode, live tasks, own share, last table error); a
//!   fallback share is safe and does not make the task unready.
//! - `GET /status` — always 200: a JSON snapshot of the live counters and gauges
//!   ([`crate::status::Snapshot`]): documents in and out per second, rates, messages in flight,
//!   bulk slots, retries, dead letters, last error per stage, cluster and SQS state. What
//!   `f4a-indexer top` draws.
//!
//! Bodies are JSON; the endpoints serve no record contents and no secrets.
//!
//! `f4a-indexer healthcheck` ([`check`]) calls `/healthz` for images without curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Shared health state, updated by the loops that own each fact.
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` of the receive loop's last turn.
    last_receive_turn_ms: AtomicU64,
    waiting_for_slots: AtomicBool,
    stall_after: Duration,
    /// `None` = not known yet, `Some(Ok)` = answered, `Some(Err(reason))`.
    sqs: Mutex<Option<Result<(), String>>>,
    cluster: Mutex<Option<Result<(), String>>>,
    last_cluster_report_ms: AtomicU64,
    /// "OpenSearch 2.19.6", once the start-up identity check got an answer.
    cluster_identity: Mutex<Option<String>>,
    /// Set once, never cleared: the cluster refuses what this configuration sends.
    configuration_problem: Mutex<Option<String>>,
    /// The fleet state (`FLEET_DOCS_PER_SEC`), as shown on `/readyz`.
    fleet: Mutex<Option<serde_json::Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Health {
    /// `stall_after`: how long the receive loop may go without a turn before it counts as stuck.
    pub fn new(stall_after: Duration) -> Arc<Health> {
        Arc::new(Health {
            started: Instant::now(),
            last_receive_turn_ms: AtomicU64::new(0),
            waiting_for_slots: AtomicBool::new(false),
            stall_after,
            sqs: Mutex::new(None),
            cluster: Mutex::new(None),
            last_cluster_report_ms: AtomicU64::new(0),
            cluster_identity: Mutex::new(None),
            configuration_problem: Mutex::new(None),
            fleet: Mutex::new(None),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn receive_turn(&self) {
        self.last_receive_turn_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn waiting_for_slots(&self, waiting: bool) {
        self.waiting_for_slots.store(waiting, Ordering::Relaxed);
        self.receive_turn();
    }

    pub fn sqs_result(&self, r: Result<(), String>) {
        *lock(&self.sqs) = Some(r);
    }

    /// Reported by every bulk attempt and by the idle-time probe. A change is logged once.
    pub fn cluster_result(&self, r: Result<(), String>) {
        self.last_cluster_report_ms
            .store(self.now_ms(), Ordering::Relaxed);
        let mut c = lock(&self.cluster);
        match (&*c, &r) {
            (Some(Ok(())) | None, Err(reason)) => {
                tracing::warn!(reason, "degraded: the cluster is failing")
            }
            (Some(Err(_)), Ok(())) => tracing::info!("the cluster answers again"),
            _ => {}
        }
        *c = Some(r);
    }

    /// Who the cluster is (flavour and version), for `/readyz`.
    pub fn cluster_identified(&self, identity: String) {
        *lock(&self.cluster_identity) = Some(identity);
    }

    pub fn cluster_identity(&self) -> Option<String> {
        lock(&self.cluster_identity).clone()
    }

    /// The cluster refuses what this configuration sends: degraded until a restart. The first
    /// reason is kept (and returned `true` the first time, so the caller logs it once).
    pub fn configuration_refused(&self, reason: &str) -> bool {
        let mut p = lock(&self.configuration_problem);
        if p.is_some() {
            return false;
        }
        *p = Some(reason.to_string());
        true
    }

    /// Why the cluster refuses this configuration, once it did.
    pub fn configuration_problem(&self) -> Option<String> {
        lock(&self.configuration_problem).clone()
    }

    /// The fleet state for `/readyz`.
    pub fn fleet_state(&self, state: serde_json::Value) {
        *lock(&self.fleet) = Some(state);
    }

    /// Time since the cluster state was last reported (the probe skips a busy pipeline).
    pub fn cluster_report_age(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_cluster_report_ms.load(Ordering::Relaxed)),
        )
    }

    pub fn liveness(&self) -> (bool, serde_json::Value) {
        let idle = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_receive_turn_ms.load(Ordering::Relaxed)),
        );
        if !self.waiting_for_slots.load(Ordering::Relaxed) && idle > self.stall_after {
            let reason = format!("receive loop stuck for {}s", idle.as_secs());
            return (false, json!({"status": "unhealthy", "reason": reason}));
        }
        (true, json!({"status": "ok"}))
    }

    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let state = |s: &Option<Result<(), String>>| match s {
            None => ("unknown".to_string(), false),
            Some(Ok(())) => ("ok".to_string(), true),
            Some(Err(e)) => (e.clone(), false),
        };
        let (sqs, sqs_ok) = state(&lock(&self.sqs));
        let (mut cluster, mut cluster_ok) = state(&lock(&self.cluster));
        if let Some(problem) = lock(&self.configuration_problem).clone() {
            (cluster, cluster_ok) = (problem, false);
        }
        let ready = sqs_ok && cluster_ok;
        let status = if ready {
            "ready"
        } else if sqs == "unknown" || cluster == "unknown" {
            "starting"
        } else {
            "degraded"
        };
        let mut body = json!({"status": status, "sqs": sqs, "cluster": cluster,
                              "cluster_identity": self.cluster_identity()});
        if let Some(fleet) = lock(&self.fleet).clone() {
            body["fleet"] = fleet;
        }
        (ready, body)
    }
}

/// Serves the endpoints until `stop` is cancelled.
pub async fn serve(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "health endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let health = health.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&health, req.uri().path())) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(health: &Health, path: &str) -> Response<Full<Bytes>> {
    let checked = match path {
        "/healthz" => Some(health.liveness()),
        "/readyz" => Some(health.readiness()),
        "/status" => {
            let snapshot =
                crate::status::board().snapshot(&health.liveness().1, &health.readiness().1);
            Some((
                true,
                serde_json::to_value(snapshot).unwrap_or_else(|e| json!({"error": e.to_string()})),
            ))
        }
        _ => None,
    };
    let (status, body) = match checked {
        Some((true, body)) => (StatusCode::OK, body),
        Some((false, body)) => (StatusCode::SERVICE_UNAVAILABLE, body),
        None => (
            StatusCode::NOT_FOUND,
            json!({"status": "not found", "paths": ["/healthz", "/readyz", "/status"]}),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A plain HTTP/1.1 GET of `http://host:port/path` (the ECS metadata endpoint); the body on 2xx.
pub fn http_get(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
    .map_err(|e| format!("resolving {host}: {e}"))?
    .next()
    .ok_or_else(|| format!("no address for {host}"))?;
    let (status, body) = get(addr, host, &path)?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(format!("HTTP {status} from {url}"))
    }
}

fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut response = Vec::new();
    let _ = stream.take(1024 * 1024).read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no valid answer from {addr}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// `f4a-indexer healthcheck`: GET /healthz on this container's health port; true on 200.
pub fn check(addr: SocketAddr) -> Result<(), String> {
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let (status, body) = get(target, &target.to_string(), "/healthz")?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", body.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_both_and_reports_degraded() {
        let h = Health::new(Duration::from_secs(60));
        assert_eq!(h.readiness().1["status"], "starting");
        h.sqs_result(Ok(()));
        h.cluster_result(Ok(()));
        assert!(h.readiness().0);
        h.cluster_result(Err("connection refused".into()));
        let (ok, body) = h.readiness();
        assert!(!ok);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["cluster"], "connection refused");
        assert_eq!(body["cluster_identity"], serde_json::Value::Null);
        h.cluster_identified("OpenSearch 2.19.6".into());
        h.cluster_result(Ok(()));
        let (ok, body) = h.readiness();
        assert!(ok);
        assert_eq!(body["cluster_identity"], "OpenSearch 2.19.6");
    }

    #[test]
    fn a_refused_configuration_degrades_for_good() {
        let h = Health::new(Duration::from_secs(60));
        h.sqs_result(Ok(()));
        h.cluster_result(Ok(()));
        assert!(h.configuration_refused("set ES_DOCUMENT_ID=none"));
        assert!(!h.configuration_refused("again"));
        h.cluster_result(Ok(()));
        let (ok, body) = h.readiness();
        assert!(!ok);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["cluster"], "set ES_DOCUMENT_ID=none");
    }

    #[test]
    fn liveness_tolerates_backpressure_but_not_a_stall() {
        let h = Health::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.liveness().0);
        h.waiting_for_slots(true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(h.liveness().0);
    }

    #[tokio::test]
    async fn serves_and_checks() {
        let h = Health::new(Duration::from_secs(60));
        h.receive_turn();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, h.clone(), stop.clone()));
        let r = tokio::task::spawn_blocking(move || check(addr))
            .await
            .unwrap();
        assert_eq!(r, Ok(()));
        let h2 = Health::new(Duration::ZERO);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, h2, stop.clone()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = tokio::task::spawn_blocking(move || check(addr))
            .await
            .unwrap();
        assert!(r.unwrap_err().contains("stuck"));
        stop.cancel();
    }
}
