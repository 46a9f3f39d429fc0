//! The JSON shape of `GET /status`, shared by the worker ([`super::Board::snapshot`]) and the
//! `top` client, which reads it with defaults for anything missing (an older or newer worker).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `GET /` told about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterIdentity {
    pub name: String,
    pub uuid: String,
    /// `opensearch` or `elasticsearch`.
    pub distribution: String,
    pub version: String,
}

/// `GET /status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub version: String,
    pub uptime_secs: u64,
    /// `/healthz`'s status: `ok` or `unhealthy`.
    pub live: String,
    /// `/readyz`'s status: `ready`, `starting` or `degraded`.
    pub ready: String,
    pub documents: Documents,
    pub rate: RateStatus,
    pub messages: Messages,
    pub bulk: Bulk,
    pub cluster: Cluster,
    pub sqs: Sqs,
    /// Stage → its last error.
    pub last_errors: BTreeMap<String, LastError>,
}

/// Documents per second in (handed to the batcher) and out (indexed or dead-lettered).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    #[serde(rename = "in")]
    pub docs_in: f64,
    #[serde(rename = "out")]
    pub docs_out: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Documents {
    pub last_10s: Rates,
    pub last_1m: Rates,
    /// Records of objects read to their end (`f4a.documents.received`).
    pub received: u64,
    /// Records handed to the batcher so far, objects still being read included.
    pub read: u64,
    pub indexed: u64,
    pub dead_lettered: u64,
    pub retried: u64,
    /// Documents read in each of the last seconds, oldest first (up to 120).
    pub history_in: Vec<u64>,
    /// Documents indexed or dead-lettered in each of the last seconds, oldest first.
    pub history_out: Vec<u64>,
}

/// Documents per second; 0 = unlimited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RateStatus {
    pub configured: f64,
    pub effective: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Messages {
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub deleted: u64,
    pub released: u64,
    pub ignored: u64,
    pub invalid: u64,
}

/// Bulk slots (`BULK_CONCURRENCY`) and bulk requests by outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Bulk {
    pub busy: u64,
    pub slots: u64,
    pub ok: u64,
    pub partial: u64,
    pub retry: u64,
    pub overloaded: u64,
    pub split: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cluster {
    /// `ok`, `unknown`, or the reason it fails (as on `/readyz`).
    pub state: String,
    /// From `GET /`, once the cluster answered it.
    pub identity: Option<ClusterIdentity>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sqs {
    /// `ok`, `unknown`, or the reason it fails (as on `/readyz`).
    pub state: String,
    pub queue: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LastError {
    pub reason: String,
    /// When it last happened (RFC 3339, UTC).
    pub at: String,
    pub age_secs: u64,
    /// How many times it happened since the start.
    pub count: u64,
}
