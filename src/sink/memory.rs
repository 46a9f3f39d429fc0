//! An in-memory cluster behind [`BulkClient`], for tests that need no search engine.
//!
//! It parses each `_bulk` body as a cluster would (action line, source line), stores the
//! documents by index and `_id` (op_type `index`: a second write of an id replaces the first) and
//! answers with the item statuses. It can be slowed down (on the tokio clock, so paused time drives
//! it) and made to fail; every request is recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{BulkClient, BulkReply, TransportError};

/// One `_bulk` request as the cluster saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub at: Instant,
    /// Documents in the request.
    pub docs: usize,
    /// What the cluster answered.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    /// index → `_id` → source.
    indices: BTreeMap<String, BTreeMap<String, Value>>,
    requests: Vec<Request>,
    latency: Duration,
    /// Every request is answered with this status while set.
    failing: Option<u16>,
    /// The next requests are answered with these statuses, one each.
    next_statuses: VecDeque<u16>,
}

/// An in-memory Elasticsearch/OpenSearch.
#[derive(Default)]
pub struct MemoryCluster {
    state: Mutex<State>,
}

impl MemoryCluster {
    pub fn new() -> MemoryCluster {
        MemoryCluster::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request takes `latency` before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Every request is answered with `status` (`None`: normally again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.state().failing = status;
    }

    /// The next requests are answered with `statuses`, one each, then normally again.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state().next_statuses.extend(statuses);
    }

    /// The documents of `index`: `_id` → source.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        self.state().indices.get(index).cloned().unwrap_or_default()
    }

    /// Documents in all indices.
    pub fn count(&self) -> usize {
        self.state().indices.values().map(BTreeMap::len).sum()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Applies one body and returns the answer's status and items.
    fn apply(&self, body: &[u8]) -> (u16, Value) {
        let mut st = self.state();
        let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        let mut items = Vec::new();
        while let (Some(action), Some(source)) = (lines.next(), lines.next()) {
            let (Ok(action), Ok(source)) = (
                serde_json::from_slice::<Value>(action),
                serde_json::from_slice::<Value>(source),
            ) else {
                return (
                    400,
                    json!({"error": {"type": "parse_exception"}, "status": 400}),
                );
            };
            let index = action["index"]["_index"].as_str().unwrap_or_default();
            let id = action["index"]["_id"].as_str().unwrap_or_default();
            let replaced = st
                .indices
                .entry(index.to_string())
                .or_default()
                .insert(id.to_string(), source)
                .is_some();
            items.push(json!({"index": {"status": if replaced { 200 } else { 201 }}}));
        }
        let docs = items.len();
        st.requests.push(Request {
            at: Instant::now(),
            docs,
            status: 200,
        });
        (200, json!({"errors": false, "items": items}))
    }

    /// The status every document of this request gets instead of being indexed, if any.
    fn injected(&self, docs: usize) -> Option<u16> {
        let mut st = self.state();
        let status = st.next_statuses.pop_front().or(st.failing)?;
        st.requests.push(Request {
            at: Instant::now(),
            docs,
            status,
        });
        Some(status)
    }
}

#[async_trait::async_trait]
impl BulkClient for MemoryCluster {
    async fn bulk(&self, body: Bytes) -> Result<BulkReply, TransportError> {
        let latency = self.state().latency;
        tokio::time::sleep(latency).await;
        let docs = body.iter().filter(|b| **b == b'\n').count() / 2;
        let (status, answer) = match self.injected(docs) {
            Some(status) => (
                status,
                json!({"error": {"type": "injected", "reason": "injected failure"}, "status": status}),
            ),
            None => self.apply(&body),
        };
        Ok(BulkReply {
            status,
            body: Bytes::from(answer.to_string()),
        })
    }

    async fn probe(&self) -> Result<(), String> {
        match self.state().failing {
            Some(status) => Err(format!("HTTP {status} from the cluster")),
            None => Ok(()),
        }
    }
}
