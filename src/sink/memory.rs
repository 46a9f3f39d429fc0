//! An in-memory cluster behind [`BulkClient`], for tests that need no search engine.
//!
//! It parses each `_bulk` body as a cluster would (action line, source line), stores the
//! documents by index and `_id` (op_type `index`: a second write of an id replaces the first) and
//! answers with the item statuses. It can be slowed down (on the tokio clock, so paused time drives
//! it), made to fail whole requests, and given [`Rule`]s that refuse requests or items the way a
//! real cluster does (413, a 400 for the whole request, mapping conflicts, 429
//! `es_rejected_execution_exception`, 409). Every request is recorded.

use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// How the cluster refuses what it is sent; rules are checked in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A request of more than this many documents is answered 413.
    MaxDocs(usize),
    /// A request holding a document with this top-level field is answered 400 as a whole.
    RefuseRequestWith(String),
    /// A document with this top-level field gets this item status and error type.
    RefuseItemWith {
        field: String,
        status: u16,
        error_type: String,
    },
    /// Every document sent to this index is refused (400 `mapper_parsing_exception`).
    RefuseIndex(String),
    /// A document with this top-level field is rejected (429 `es_rejected_execution_exception`)
    /// its first `times` attempts, then indexed.
    RejectItemWith { field: String, times: u32 },
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
    rules: Vec<Rule>,
    /// Rejections so far per `_id`, for [`Rule::RejectItemWith`].
    rejected: HashMap<String, u32>,
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

    pub fn add_rule(&self, rule: Rule) {
        self.state().rules.push(rule);
    }

    /// The documents of `index`: `_id` → source.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        self.state().indices.get(index).cloned().unwrap_or_default()
    }

    /// Every document of every index: (index, `_id`, source).
    pub fn all_docs(&self) -> Vec<(String, String, Value)> {
        let st = self.state();
        st.indices
            .iter()
            .flat_map(|(index, docs)| {
                docs.iter()
                    .map(move |(id, d)| (index.clone(), id.clone(), d.clone()))
            })
            .collect()
    }

    /// Documents in all indices.
    pub fn count(&self) -> usize {
        self.state().indices.values().map(BTreeMap::len).sum()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Applies one body and returns the answer's status and body.
    fn apply(&self, body: &[u8]) -> (u16, Value) {
        let mut st = self.state();
        let mut docs = Vec::new();
        let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        while let (Some(action), Some(source)) = (lines.next(), lines.next()) {
            let (Ok(action), Ok(source)) = (
                serde_json::from_slice::<Value>(action),
                serde_json::from_slice::<Value>(source),
            ) else {
                return (400, error("parse_exception", "the body is not NDJSON"));
            };
            let index = action["index"]["_index"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let id = action["index"]["_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            docs.push((index, id, source));
        }
        let refused = st.rules.iter().find_map(|rule| match rule {
            Rule::MaxDocs(max) if docs.len() > *max => Some(413),
            Rule::RefuseRequestWith(field) if docs.iter().any(|d| d.2.get(field).is_some()) => {
                Some(400)
            }
            _ => None,
        });
        if let Some(status) = refused {
            st.requests.push(Request {
                at: Instant::now(),
                docs: docs.len(),
                status,
            });
            return (status, error("request_refused", "refused by a rule"));
        }
        let mut items = Vec::new();
        let mut errors = false;
        for (index, id, source) in docs {
            let status = match item_status(&mut st, &index, &id, &source) {
                Some((status, error_type)) => {
                    errors = true;
                    json!({"status": status, "error": {"type": error_type, "reason": format!("{error_type} by a rule")}})
                }
                None => {
                    let replaced = st
                        .indices
                        .entry(index)
                        .or_default()
                        .insert(id, source)
                        .is_some();
                    json!({"status": if replaced { 200 } else { 201 }})
                }
            };
            items.push(json!({ "index": status }));
        }
        st.requests.push(Request {
            at: Instant::now(),
            docs: items.len(),
            status: 200,
        });
        (200, json!({"errors": errors, "items": items}))
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
            Some(status) => (status, error("injected", "injected failure")),
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

fn error(error_type: &str, reason: &str) -> Value {
    json!({"error": {"type": error_type, "reason": reason}})
}

/// The item status and error type the rules give one document, or `None`: it is indexed.
fn item_status(st: &mut State, index: &str, id: &str, source: &Value) -> Option<(u16, String)> {
    for rule in &st.rules {
        match rule {
            Rule::RefuseIndex(refused) if refused == index => {
                return Some((400, "mapper_parsing_exception".into()))
            }
            Rule::RefuseItemWith {
                field,
                status,
                error_type,
            } if source.get(field).is_some() => return Some((*status, error_type.clone())),
            Rule::RejectItemWith { field, times } if source.get(field).is_some() => {
                let so_far = st.rejected.entry(id.to_string()).or_default();
                if *so_far < *times {
                    *so_far += 1;
                    return Some((429, "es_rejected_execution_exception".into()));
                }
            }
            _ => {}
        }
    }
    None
}
