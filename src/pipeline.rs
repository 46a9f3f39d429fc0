//! Pipeline: builds the wings from the configuration, receives with backpressure, and owns
//! shutdown.
//!
//! ```text
//! Queue::receive ──(≤ MAX_IN_FLIGHT_MESSAGES slots)──► MessageWorker::process (message.rs)
//!    notification::parse → for each object: ObjectIndexer::index (object.rs): ObjectStore::open
//!    → [blocking thread: record::{decompress → Framer → Decoder → Normalizer} → Doc]
//!    ──bounded channel──► batcher ──(≤ BULK_CONCURRENCY)──► sink::bulk (rate limiter →
//!    BulkClient → classify → settle / split / retry / dead-letter)
//!    every Doc carries an AckToken; the worker waits for the message's AckGroup, then deletes
//!    the message (source::inflight), or releases it for a later retry.
//! ```
//!
//! Before the first receive, the index templates are set up (bounded in time; `sink::upkeep`),
//! and an upkeep task checks them and runs retention hourly.
//!
//! [`run`] connects to the real systems; [`run_with`] takes any [`Wings`] (the in-memory ones in
//! tests). Shutdown (SIGTERM): stop receiving, let in-flight messages finish until
//! `SHUTDOWN_TIMEOUT_SECS` (less 1.5 s), return the unfinished ones to the queue with visibility
//! 0, exit 0. A half-sent batch is never cancelled.
//!
//! Here: [`Wings`] and the run itself (start-up order, drain). `indexing` has the record and sink
//! wings a backfill shares, `receiver` the receive loop, `background` the fleet member, cluster
//! probe and summary line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::{self, Health};
use crate::message::MessageWorker;
use crate::metrics;
use crate::sink::admin::ClusterAdmin;
use crate::sink::es::EsClient;
use crate::sink::fleet::{dynamo::DynamoTable, FleetTable};
use crate::sink::{upkeep, BulkClient};
use crate::source::inflight::InFlight;
use crate::source::s3::S3Store;
use crate::source::sqs::SqsQueue;
use crate::source::{aws, ObjectStore, Queue};
use crate::status;

mod background;
mod indexing;
mod receiver;

use background::{probe_cluster, start_fleet, summary, Summary};
pub(crate) use indexing::{set_up_at_start, Indexing};
use receiver::Receiver;

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit 0 once a receive comes back empty and nothing is in flight (demo, batch jobs).
    pub exit_when_idle: bool,
}

/// The outside systems the pipeline talks to, one per wing door.
pub struct Wings {
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn ObjectStore>,
    pub cluster: Arc<dyn BulkClient>,
    /// The fleet table (`FLEET_TABLE`); `None` without a fleet budget.
    pub fleet: Option<Arc<dyn FleetTable>>,
    /// Templates and retention ([`crate::sink::upkeep`]); the same client as `cluster`.
    pub admin: Arc<dyn ClusterAdmin>,
}

impl Wings {
    /// The real ones: SQS and S3 through the AWS SDK (`AWS_ENDPOINT_URL`, LocalStack, switches S3
    /// to path style), the cluster through the Elasticsearch client.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Wings> {
        let source = &cfg.source;
        let sdk = aws::sdk_config(source).await;
        // One credentials chain for SQS, S3 and (with ES_AUTH=sigv4) the cluster.
        let cluster = Arc::new(
            EsClient::new(&cfg.sink.es, sdk.credentials_provider())
                .context("configuring the Elasticsearch client")?,
        );
        let fleet = cfg.fleet.as_ref().map(|f| {
            Arc::new(DynamoTable::new(&sdk, &f.table, f.endpoint_url.as_deref()))
                as Arc<dyn FleetTable>
        });
        Ok(Wings {
            queue: Arc::new(SqsQueue::new(&sdk, source)),
            store: Arc::new(S3Store::new(&sdk, source.aws_endpoint_url.is_some())),
            admin: cluster.clone(),
            cluster,
            fleet,
        })
    }
}

/// Runs the worker against the real systems until `shutdown` (or until idle, see [`RunOptions`]).
pub async fn run(cfg: Config, opts: RunOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let wings = Wings::connect(&cfg).await?;
    run_with(cfg, wings, opts, shutdown).await
}

/// Runs the worker against `wings`: builds the stages from `cfg`, receives until `shutdown` (or
/// until idle), then drains.
pub async fn run_with(
    cfg: Config,
    wings: Wings,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (source, worker_cfg) = (&cfg.source, &cfg.worker);
    // Stuck = no receive turn for a whole long poll plus a minute.
    let health = Health::new(Duration::from_secs(source.wait_time_seconds as u64 + 60));
    let background = CancellationToken::new();
    if let Some(addr) = worker_cfg.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("HEALTH_ADDR={addr}: cannot listen"))?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "health endpoints on /healthz, /readyz and /status");
        tokio::spawn(health::serve(listener, health.clone(), background.clone()));
    }
    let Indexing {
        objects,
        sink,
        batcher,
    } = Indexing::build(&cfg, wings.store, wings.cluster, &health);
    tokio::spawn(probe_cluster(
        sink.clone(),
        health.clone(),
        cfg.sink.es.url.clone(),
        background.clone(),
    ));
    let fleet = match (&cfg.fleet, wings.fleet.clone()) {
        (Some(f), Some(table)) => Some(
            start_fleet(
                f,
                table,
                wings.queue.name(),
                &sink,
                &health,
                background.clone(),
            )
            .await,
        ),
        _ => None,
    };
    let gauge_sink = sink.clone();
    let rates: Arc<dyn Fn() -> (f64, f64) + Send + Sync> = Arc::new(move || {
        let configured = gauge_sink.configured_rate().map_or(0.0, f64::from);
        (configured, gauge_sink.effective_rate().unwrap_or(0.0))
    });
    metrics::register_rate_gauges(rates.clone());
    status::board().attach(status::Attached {
        rate: rates,
        max_in_flight: worker_cfg.max_in_flight_messages,
        bulk_slots: cfg.sink.bulk.concurrency,
        queue: wings.queue.name().to_string(),
    });
    tokio::spawn(status::sample_every_second(background.clone()));
    // Templates before the first document, so today's index is created with them; bounded, so
    // a slow cluster delays receiving by at most this (the upkeep loop tries again).
    let setup = set_up_at_start(&cfg, wings.admin.as_ref()).await;
    let upkeep = tokio::spawn(upkeep::run(
        cfg.clone(),
        wings.admin.clone(),
        setup,
        background.clone(),
    ));
    let acks = Arc::new(InFlight::new(
        wings.queue.clone(),
        source.visibility_timeout_seconds,
    ));
    let heartbeat = tokio::spawn(acks.clone().heartbeat(background.clone()));
    let worker = Arc::new(MessageWorker {
        objects,
        acks: acks.clone(),
        queue_name: wings.queue.name().to_string(),
        visibility_timeout: source.visibility_timeout_seconds,
    });
    tokio::spawn(summary(
        Summary {
            acks: acks.clone(),
            sink: sink.clone(),
            configured_rate: cfg.rate.docs_per_sec.unwrap_or(0),
        },
        background.clone(),
    ));
    tracing::info!(
        queue = wings.queue.name(),
        es_url = %cfg.sink.es.url,
        rate_limit_docs_per_sec = cfg.rate.docs_per_sec.unwrap_or(0),
        rate_limit_burst = cfg.rate.burst,
        bulk_max_docs = cfg.sink.bulk.max_docs,
        bulk_concurrency = cfg.sink.bulk.concurrency,
        max_in_flight_messages = worker_cfg.max_in_flight_messages,
        "f4a-indexer started"
    );

    let mut tasks = JoinSet::new();
    let receiver = Receiver {
        queue: wings.queue.as_ref(),
        health: &health,
        worker: &worker,
        max_in_flight: worker_cfg.max_in_flight_messages,
        max_per_receive: source.max_messages as usize,
    };
    receiver.run(&mut tasks, &shutdown, opts).await;
    let unfinished_timeout = shutdown
        .is_cancelled()
        .then_some(worker_cfg.shutdown_timeout);
    // The worker holds the documents channel open: drop ours so only running tasks keep it.
    drop(worker);
    let drained = async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "message task failed");
            }
        }
        let _ = batcher.await;
    };
    match unfinished_timeout {
        None => drained.await,
        Some(limit) => {
            tracing::info!(
                in_flight = acks.len(),
                timeout_secs = limit.as_secs(),
                "shutting down: finishing messages in flight"
            );
            // Leave a moment to hand unfinished messages back before ECS's SIGKILL.
            let budget = limit.saturating_sub(Duration::from_millis(1500));
            if tokio::time::timeout(budget, drained).await.is_err() {
                tracing::warn!(
                    in_flight = acks.len(),
                    "shutdown timeout reached; returning unfinished messages to the queue"
                );
                let _ = tokio::time::timeout(Duration::from_millis(1200), acks.release_all()).await;
            }
        }
    }
    // After the last bulk attempt: peers take this task's share at their next read.
    if let Some(fleet) = &fleet {
        fleet.leave().await;
    }
    background.cancel();
    let _ = heartbeat.await;
    // A retention run in progress finishes (it is bounded); the next would start in an hour.
    let _ = tokio::time::timeout(Duration::from_secs(10), upkeep).await;
    tracing::info!(
        indexed = metrics::get().totals().indexed,
        dead_lettered = metrics::get().totals().dead_lettered,
        "f4a-indexer stopped"
    );
    Ok(())
}
