//! Cluster administration, as the worker needs it: index templates (setup.rs), listing and
//! deleting indices (retention.rs), the data-node count. Behind one small trait, [`ClusterAdmin`],
//! with the real client in `es_admin.rs` and an in-memory fake here ([`MemoryAdmin`]).
//!
//! Contract: each call makes one HTTP request to `path` (with its query string) and returns any
//! HTTP answer as `Ok` (4xx and 5xx included: the caller decides); `Err` only when no answer came.
//! No call retries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{json, Value};

use super::TransportError;

/// An answer to an admin request.
#[derive(Debug, Clone)]
pub struct AdminReply {
    pub status: u16,
    pub body: Bytes,
}

impl AdminReply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[async_trait::async_trait]
pub trait ClusterAdmin: Send + Sync {
    async fn get(&self, path: &str) -> Result<AdminReply, TransportError>;
    async fn put(&self, path: &str, body: Value) -> Result<AdminReply, TransportError>;
    async fn post(&self, path: &str, body: Value) -> Result<AdminReply, TransportError>;
    async fn delete(&self, path: &str) -> Result<AdminReply, TransportError>;
}

/// What the fake cluster holds.
#[derive(Debug, Default)]
struct AdminState {
    templates: BTreeMap<String, Value>,
    indices: BTreeSet<String>,
    data_nodes: u32,
    /// Paths starting with one of these are answered 403.
    forbidden: Vec<String>,
    /// Every request, as `METHOD path`.
    log: Vec<String>,
}

/// An in-memory cluster for the admin calls: `_index_template/{name}` (GET, PUT with
/// `?create=true`), `_cluster/health`, `_cat/indices/{glob}`, `DELETE /{index}`.
pub struct MemoryAdmin {
    state: Mutex<AdminState>,
}

impl Default for MemoryAdmin {
    fn default() -> Self {
        MemoryAdmin::new()
    }
}

impl MemoryAdmin {
    pub fn new() -> MemoryAdmin {
        MemoryAdmin {
            state: Mutex::new(AdminState {
                data_nodes: 1,
                ..AdminState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AdminState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_data_nodes(&self, n: u32) {
        self.state().data_nodes = n;
    }

    /// Requests to paths starting with `prefix` get 403 (a user without that privilege).
    pub fn forbid(&self, prefix: &str) {
        self.state().forbidden.push(prefix.to_string());
    }

    pub fn add_index(&self, name: &str) {
        self.state().indices.insert(name.to_string());
    }

    pub fn indices(&self) -> Vec<String> {
        self.state().indices.iter().cloned().collect()
    }

    pub fn template(&self, name: &str) -> Option<Value> {
        self.state().templates.get(name).cloned()
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.state().log.clone()
    }

    fn answer(status: u16, body: Value) -> Result<AdminReply, TransportError> {
        Ok(AdminReply {
            status,
            body: Bytes::from(body.to_string()),
        })
    }

    fn check(&self, method: &str, path: &str) -> Option<Result<AdminReply, TransportError>> {
        let mut s = self.state();
        s.log.push(format!("{method} {path}"));
        let bare = path.trim_start_matches('/');
        s.forbidden
            .iter()
            .any(|f| bare.starts_with(f.trim_start_matches('/')))
            .then(|| Self::answer(403, json!({"error": {"type": "security_exception"}})))
    }
}

fn split_query(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('?').unwrap_or((path, ""))
}

#[async_trait::async_trait]
impl ClusterAdmin for MemoryAdmin {
    async fn get(&self, path: &str) -> Result<AdminReply, TransportError> {
        if let Some(r) = self.check("GET", path) {
            return r;
        }
        let (p, _) = split_query(path);
        let s = self.state();
        if let Some(name) = p.strip_prefix("_index_template/") {
            return match s.templates.get(name) {
                Some(t) => Self::answer(
                    200,
                    json!({"index_templates": [{"name": name, "index_template": t}]}),
                ),
                None => Self::answer(404, json!({"error": "index_template_missing"})),
            };
        }
        if p == "_cluster/health" {
            return Self::answer(200, json!({"number_of_data_nodes": s.data_nodes}));
        }
        if let Some(glob) = p.strip_prefix("_cat/indices/") {
            let rows: Vec<Value> = s
                .indices
                .iter()
                .filter(|i| glob.split(',').any(|g| crate::config::glob_matches(g, i)))
                .map(|i| json!({"index": i}))
                .collect();
            return Self::answer(200, Value::Array(rows));
        }
        Self::answer(404, json!({"error": "not supported by MemoryAdmin"}))
    }

    async fn put(&self, path: &str, body: Value) -> Result<AdminReply, TransportError> {
        if let Some(r) = self.check("PUT", path) {
            return r;
        }
        let (p, query) = split_query(path);
        let mut s = self.state();
        if let Some(name) = p.strip_prefix("_index_template/") {
            if query.contains("create=true") && s.templates.contains_key(name) {
                return Self::answer(
                    400,
                    json!({"error": {"type": "illegal_argument_exception", "reason": format!("index template [{name}] already exists")}}),
                );
            }
            s.templates.insert(name.to_string(), body);
            return Self::answer(200, json!({"acknowledged": true}));
        }
        Self::answer(404, json!({"error": "not supported by MemoryAdmin"}))
    }

    async fn post(&self, path: &str, _body: Value) -> Result<AdminReply, TransportError> {
        if let Some(r) = self.check("POST", path) {
            return r;
        }
        let (p, _) = split_query(path);
        if p.ends_with("/_delete_by_query") {
            // The fake holds no documents: nothing to delete.
            return Self::answer(200, json!({"deleted": 0}));
        }
        Self::answer(404, json!({"error": "not supported by MemoryAdmin"}))
    }

    async fn delete(&self, path: &str) -> Result<AdminReply, TransportError> {
        if let Some(r) = self.check("DELETE", path) {
            return r;
        }
        let (p, _) = split_query(path);
        let mut s = self.state();
        if s.indices.remove(p) {
            Self::answer(200, json!({"acknowledged": true}))
        } else {
            Self::answer(404, json!({"error": {"type": "index_not_found_exception"}}))
        }
    }
}
