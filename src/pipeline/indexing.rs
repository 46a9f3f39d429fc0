//! The record and sink wings without the queue ([`Indexing`]), and the bounded template setup
//! before the first document ([`set_up_at_start`]): what a queue run and a backfill share.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::health::Health;
use crate::object::ObjectIndexer;
use crate::record::{DeadLetters, Limits, Normalizer};
use crate::sink::admin::ClusterAdmin;
use crate::sink::batcher;
use crate::sink::bulk::BulkSink;
use crate::sink::rate_limiter::RateLimiter;
use crate::sink::{upkeep, BulkClient};
use crate::source::ObjectStore;

/// The index templates, before the first document (so a new daily index is created with them),
/// bounded by [`upkeep::SETUP_AT_START`]: a slow cluster delays indexing by at most that.
pub(crate) async fn set_up_at_start(
    cfg: &Config,
    admin: &dyn ClusterAdmin,
) -> Vec<crate::sink::setup::SetupOutcome> {
    match tokio::time::timeout(upkeep::SETUP_AT_START, upkeep::set_up(cfg, admin)).await {
        Ok(outcomes) => outcomes,
        Err(_) => {
            tracing::warn!(
                timeout_secs = upkeep::SETUP_AT_START.as_secs(),
                "index setup did not finish in time; indexing starts, setup is tried again in an hour"
            );
            vec![]
        }
    }
}

/// The record and sink wings, ready for objects: everything but the queue. The message worker
/// drives it here; `backfill` drives it with a listing of a bucket, `replay-dead-letters` uses
/// its sink.
pub(crate) struct Indexing {
    pub(crate) objects: ObjectIndexer,
    pub(crate) sink: Arc<BulkSink>,
    /// Ends once every sender of the documents channel is dropped and every batch is delivered.
    pub(crate) batcher: JoinHandle<()>,
}

impl Indexing {
    pub(crate) fn build(
        cfg: &Config,
        store: Arc<dyn ObjectStore>,
        cluster: Arc<dyn BulkClient>,
        health: &Arc<Health>,
    ) -> Indexing {
        let record = &cfg.record;
        let dead_letters = DeadLetters::new(&record.dead_letter_index);
        let sink = Arc::new(BulkSink::new(
            cluster,
            RateLimiter::new(&cfg.rate),
            dead_letters.clone(),
            cfg.sink.retry,
            health.clone(),
        ));
        // Twice a batch: the readers stay one batch ahead of the sink, and no further.
        let bulk = cfg.sink.bulk;
        let (docs, batches) = mpsc::channel((bulk.max_docs * 2 / batcher::CHUNK_DOCS).max(4));
        let batcher = tokio::spawn(batcher::run(batches, bulk, sink.clone()));
        let objects = ObjectIndexer {
            store,
            normalizer: Arc::new(Normalizer::new(
                record.index.clone(),
                record.timestamp_fields.clone(),
            )),
            limits: Limits::new(&record.limits).map(Arc::new),
            create: cfg.cluster.index_mode == crate::config::IndexMode::DataStream,
            dead_letters,
            max_record_bytes: record.max_record_bytes,
            document_ids: record.document_ids,
            docs,
        };
        Indexing {
            objects,
            sink,
            batcher,
        }
    }
}
