//! The sink wing: encoded documents → bulk requests → settled documents.
//!
//! ```text
//! Doc (doc.rs) ──channel──► batcher ──(≤ BULK_CONCURRENCY)──► bulk: rate limiter → BulkClient
//!                                                              → classify → settle / split /
//!                                                              retry / dead-letter
//! ```
//!
//! The cluster is behind one small trait, [`BulkClient`]: post a `_bulk` body and get the status
//! and body back (or a transport error), probe, identify. `es::EsClient` is the real one (auth,
//! gzip, SigV4 with `sigv4.rs`); `flavour.rs` holds what differs between engines; everything
//! above it (batching, rate, retry decisions, dead letters) is the same whatever the client.
//! Every document carries its message's ack token; the sink resolves it (indexed or
//! dead-lettered) or drops it (the message is then kept for another try).
//!
//! Beside the data path, the cluster's upkeep ([`upkeep`]): the index templates ([`setup`]) and
//! the deletion of old daily indices ([`retention`]), through a second small trait,
//! [`admin::ClusterAdmin`] (the same client; [`admin::MemoryAdmin`] in tests).

use bytes::Bytes;

pub mod admin;
pub(crate) mod batcher;
pub(crate) mod bulk;
pub(crate) mod classify;
pub(crate) mod doc;
pub(crate) mod es;
mod es_admin;
pub mod flavour;
pub mod fleet;
pub mod memory;
pub(crate) mod rate_limiter;
pub mod retention;
pub mod setup;
pub(crate) mod sigv4;
pub mod upkeep;

pub use doc::Doc;
pub use flavour::ClusterIdentity;

/// What a cluster answered to one `_bulk` request, whatever its status.
#[derive(Debug, Clone)]
pub struct BulkReply {
    pub status: u16,
    pub body: Bytes,
}

/// No answer came: the request is retried as a whole. Displayed as the reason that is logged
/// and reported on `/readyz`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("timeout: {0}")]
    Timeout(String),
    /// Connection refused or reset, TLS failure, DNS…: the message includes its causes.
    #[error("transport error: {0}")]
    Failed(String),
    /// The status line came but the body could not be read.
    #[error("reading the response failed: {reason}")]
    Body { status: u16, reason: String },
}

/// The cluster, as the sink sees it.
///
/// Contract: [`BulkClient::bulk`] sends `body` (NDJSON, every line ending in `\n`) once, as it is,
/// and returns any HTTP answer as `Ok` (4xx and 5xx included: the caller classifies them); `Err`
/// only when no complete answer came. It does not retry: the caller retries through the rate
/// limiter. [`BulkClient::probe`] makes one cheap request and says whether the cluster answered
/// with success, or why not; [`BulkClient::identify`] says who the cluster is (flavour and
/// version), or why it cannot tell.
#[async_trait::async_trait]
pub trait BulkClient: Send + Sync {
    async fn bulk(&self, body: Bytes) -> Result<BulkReply, TransportError>;
    async fn probe(&self) -> Result<(), String>;
    async fn identify(&self) -> Result<ClusterIdentity, String>;
}

#[cfg(test)]
mod tests;
