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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::{self, Health};
use crate::message::MessageWorker;
use crate::metrics;
use crate::object::ObjectIndexer;
use crate::record::{DeadLetters, Limits, Normalizer};
use crate::sink::admin::ClusterAdmin;
use crate::sink::batcher;
use crate::sink::bulk::BulkSink;
use crate::sink::es::EsClient;
use crate::sink::fleet::{self, dynamo::DynamoTable, Fleet, FleetTable, Mode, Status};
use crate::sink::rate_limiter::RateLimiter;
use crate::sink::{upkeep, BulkClient};
use crate::source::inflight::InFlight;
use crate::source::s3::S3Store;
use crate::source::sqs::{self, SqsQueue};
use crate::source::{aws, ObjectStore, Queue};
use crate::status;

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

/// Joins the fleet (`FLEET_*`): the member loop sets the sink's share and publishes the state
/// on `/readyz` and the metrics. The service key is the queue's name: every task reading the
/// queue shares the budget.
async fn start_fleet(
    cfg: &crate::config::FleetConfig,
    table: Arc<dyn FleetTable>,
    service: &str,
    sink: &Arc<BulkSink>,
    health: &Arc<Health>,
    stop: CancellationToken,
) -> Arc<Fleet> {
    let task = tokio::task::spawn_blocking(fleet::task_id)
        .await
        .unwrap_or_else(|_| format!("{}", std::process::id()));
    let member = Arc::new(Fleet::new(
        table,
        service,
        task,
        cfg.docs_per_sec,
        cfg.max_tasks,
        fleet::Timing::default(),
    ));
    let budget = cfg.docs_per_sec.max(1) as f64;
    let state = Arc::new(std::sync::Mutex::new((0.0f64, 0.0f64, 0.0f64)));
    let gauges = state.clone();
    metrics::register_fleet_gauges(Arc::new(move || {
        *gauges.lock().unwrap_or_else(|e| e.into_inner())
    }));
    let (sink, health, task) = (sink.clone(), health.clone(), member.task().to_string());
    let sink_for_start = sink.clone();
    let apply = Arc::new(move |s: &Status| {
        sink.set_share(s.share / budget);
        *state.lock().unwrap_or_else(|e| e.into_inner()) = (
            s.live_tasks as f64,
            s.share,
            if s.mode == Mode::Fallback { 1.0 } else { 0.0 },
        );
        health.fleet_state(serde_json::json!({
            "mode": s.mode.as_str(),
            "task": task,
            "live_tasks": s.live_tasks,
            "share_docs_per_sec": s.share,
            "budget_docs_per_sec": budget,
            "error": s.error,
        }));
    });
    // Nothing is sent before the first heartbeat and read (or the first table failure).
    sink_for_start.set_share(0.0);
    tokio::spawn(member.clone().run(apply, stop));
    member
}

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

/// The receive loop and what it needs.
struct Receiver<'a> {
    queue: &'a dyn Queue,
    health: &'a Health,
    worker: &'a Arc<MessageWorker>,
    /// `MAX_IN_FLIGHT_MESSAGES`: slots, one per message being worked on.
    max_in_flight: usize,
    /// `SQS_MAX_MESSAGES`.
    max_per_receive: usize,
}

impl Receiver<'_> {
    /// Receives while slots are free and spawns a task per message, until `shutdown` (or idle).
    async fn run(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken, opts: RunOptions) {
        let health = self.health;
        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let mut failures = 0u32;
        loop {
            health.receive_turn();
            // Backpressure: no receive while MAX_IN_FLIGHT_MESSAGES are being worked on.
            health.waiting_for_slots(slots.available_permits() == 0);
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            health.waiting_for_slots(false);
            let mut held: Vec<OwnedSemaphorePermit> = vec![first];
            while held.len() < self.max_per_receive {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            // Abandoning a receive in flight is safe: messages the queue handed out come back
            // after their visibility timeout.
            let result = tokio::select! {
                r = self.queue.receive(held.len()) => r,
                _ = shutdown.cancelled() => return,
            };
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "message task failed");
                }
            }
            let messages = match result {
                Ok(messages) => {
                    failures = 0;
                    health.sqs_result(Ok(()));
                    messages
                }
                Err(e) => {
                    failures += 1;
                    let delay = sqs::RECEIVE.delay(failures);
                    let error = e.to_string();
                    tracing::warn!(
                        error,
                        retry_in_ms = delay.as_millis() as u64,
                        "receive_message failed"
                    );
                    health.sqs_result(Err(format!("receive_message failed: {error}")));
                    status::board().error(status::Stage::Receive, &error);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                metrics::get().empty_receives.add(1, &[]);
                drop(held);
                if opts.exit_when_idle && slots.available_permits() == self.max_in_flight {
                    tracing::info!(
                        "queue is empty and nothing is in flight; exiting (--exit-when-idle)"
                    );
                    return;
                }
                continue;
            }
            for m in messages {
                let permit = held.pop();
                let worker = self.worker.clone();
                tasks.spawn(async move {
                    worker.process(m).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Identifies the cluster at start-up (retried at each turn until it answers), then keeps its
/// readiness state fresh while no bulk request reports it (an idle worker).
async fn probe_cluster(
    sink: Arc<BulkSink>,
    health: Arc<Health>,
    es_url: String,
    stop: CancellationToken,
) {
    const EVERY: Duration = Duration::from_secs(15);
    let mut identified = false;
    loop {
        if !identified {
            identified = sink.identify(&es_url).await;
        } else if health.cluster_report_age() >= EVERY
            || health.readiness().1["cluster"] == "unknown"
        {
            sink.probe().await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// What the summary line reads.
struct Summary {
    acks: Arc<InFlight>,
    sink: Arc<BulkSink>,
    configured_rate: u32,
}

/// One line every 30 s: documents read and indexed per second, messages in flight.
async fn summary(s: Summary, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(30);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    let (mut last_in, mut last_out) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sink = &s.sink;
        let totals = metrics::get().totals();
        let read = totals.received;
        let out = totals.indexed + totals.dead_lettered;
        tracing::info!(
            docs_in_per_sec = (read - last_in) as f64 / EVERY.as_secs_f64(),
            docs_out_per_sec = (out - last_out) as f64 / EVERY.as_secs_f64(),
            messages_in_flight = s.acks.len(),
            configured_rate = s.configured_rate,
            effective_rate = sink.effective_rate().map_or(0, |r| r.round() as u64),
            retried_total = totals.retried,
            dropped_total = totals.dropped,
            "summary"
        );
        (last_in, last_out) = (read, out);
    }
}
