//! Pipeline: wires the stages together and owns the message lifecycle.
//!
//! ```text
//! receive loop ──(≤ MAX_IN_FLIGHT_MESSAGES tasks)──► process_message
//!    notification::parse → for each object: object_reader::open → [blocking thread:
//!    decompress → decoder::Framer → decode_frame → Normalizer → Doc] ──bounded channel──►
//!    batcher ──(≤ BULK_CONCURRENCY)──► bulk_sink (rate limiter → _bulk → retry / dead-letter)
//!    every Doc carries an AckToken; process_message waits for its AckGroup, then deletes
//!    the message (acknowledger), or releases it for a later retry.
//! ```
//! Shutdown (SIGTERM): stop receiving, let in-flight messages finish until
//! `SHUTDOWN_TIMEOUT_SECS`, return the unfinished ones to the queue with visibility 0, exit 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{SecondsFormat, Utc};
use opentelemetry::trace::TraceContextExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::acknowledger::{AckGroup, Acknowledger};
use crate::backoff;
use crate::batcher::{self, BatchLimits, Doc};
use crate::bulk_sink::{self, BulkSink};
use crate::config::Config;
use crate::decoder::{decode_frame, DeadRecord, Framer, Item};
use crate::health::{self, Health};
use crate::metrics;
use crate::normalizer::{Normalizer, ObjectContext};
use crate::notification::{self, Notification, ObjectRef};
use crate::object_reader::{self, FetchError, SourceTap};
use crate::rate_limiter::RateLimiter;

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit 0 once a receive comes back empty and nothing is in flight (demo, batch jobs).
    pub exit_when_idle: bool,
}

/// Shared by every message task.
struct Ctx {
    cfg: Arc<Config>,
    health: Arc<Health>,
    s3: aws_sdk_s3::Client,
    acks: Arc<Acknowledger>,
    normalizer: Arc<Normalizer>,
    docs: mpsc::Sender<Doc>,
    records_read: AtomicU64,
}

/// Per-object counts, logged when the object is read.
#[derive(Debug, Default)]
struct ObjectStats {
    records: u64,
    undecodable: u64,
    timestamp_fallbacks: u64,
    timestamp_invalid: u64,
    decompressed_bytes: u64,
}

/// AWS clients from the standard chain; `AWS_ENDPOINT_URL` (LocalStack) switches S3 to path style.
pub async fn aws_clients(cfg: &Config) -> (aws_sdk_sqs::Client, aws_sdk_s3::Client) {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.aws_region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &cfg.aws_endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(cfg.aws_endpoint_url.is_some())
        .build();
    (
        aws_sdk_sqs::Client::new(&conf),
        aws_sdk_s3::Client::from_conf(s3_conf),
    )
}

pub async fn run(cfg: Config, opts: RunOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let (sqs, s3) = aws_clients(&cfg).await;
    let es = bulk_sink::build_client(&cfg).context("configuring the Elasticsearch client")?;
    let normalizer = Arc::new(Normalizer::new(
        cfg.es_index.clone(),
        cfg.dead_letter_index.clone(),
        cfg.timestamp_fields.clone(),
    ));
    // Stuck = no receive turn for a whole long poll plus a minute.
    let health = Health::new(Duration::from_secs(cfg.sqs_wait_time_seconds as u64 + 60));
    let background = CancellationToken::new();
    if let Some(addr) = cfg.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("HEALTH_ADDR={addr}: cannot listen"))?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "health endpoints on /healthz and /readyz");
        tokio::spawn(health::serve(listener, health.clone(), background.clone()));
    }
    let sink = Arc::new(BulkSink::new(
        es,
        RateLimiter::new(
            cfg.rate_limit_docs_per_sec,
            cfg.rate_limit_burst,
            cfg.rate_limit_bytes_per_sec,
            cfg.rate_limit_adaptive_floor,
        ),
        normalizer.clone(),
        cfg.retry_initial_backoff,
        cfg.retry_max_backoff,
        health.clone(),
    ));
    tokio::spawn(probe_cluster(
        sink.clone(),
        health.clone(),
        background.clone(),
    ));
    let gauge_sink = sink.clone();
    metrics::register_rate_gauges(Arc::new(move || {
        let configured = gauge_sink.configured_rate().map_or(0.0, f64::from);
        (configured, gauge_sink.effective_rate().unwrap_or(0.0))
    }));
    // Twice a batch: the readers stay one batch ahead of the sink, and no further.
    let (docs_tx, docs_rx) = mpsc::channel(cfg.bulk_max_docs.saturating_mul(2).max(16));
    let limits = BatchLimits {
        max_docs: cfg.bulk_max_docs,
        max_bytes: cfg.bulk_max_bytes,
        flush_interval: cfg.bulk_flush_interval,
        concurrency: cfg.bulk_concurrency,
    };
    let batcher = tokio::spawn(batcher::run(docs_rx, limits, sink.clone()));
    let acks = Arc::new(Acknowledger::new(
        sqs.clone(),
        cfg.sqs_queue_url.clone(),
        cfg.sqs_visibility_timeout_seconds,
    ));
    let heartbeat = tokio::spawn(acks.clone().heartbeat(background.clone()));
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        health: health.clone(),
        s3,
        acks: acks.clone(),
        normalizer,
        docs: docs_tx,
        records_read: AtomicU64::new(0),
    });
    tokio::spawn(summary(ctx.clone(), sink.clone(), background.clone()));
    tracing::info!(
        queue = cfg.queue_name(),
        es_url = %cfg.es_url,
        rate_limit_docs_per_sec = cfg.rate_limit_docs_per_sec.unwrap_or(0),
        rate_limit_burst = cfg.rate_limit_burst,
        bulk_max_docs = cfg.bulk_max_docs,
        bulk_concurrency = cfg.bulk_concurrency,
        max_in_flight_messages = cfg.max_in_flight_messages,
        "f4a-indexer started"
    );

    let mut tasks = JoinSet::new();
    receive_loop(&ctx, &sqs, &mut tasks, &shutdown, opts).await;
    let unfinished_timeout = shutdown.is_cancelled().then_some(cfg.shutdown_timeout);
    // The context holds the documents channel open: drop ours so only running tasks keep it.
    drop(ctx);
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
                in_flight = acks.in_flight(),
                timeout_secs = limit.as_secs(),
                "shutting down: finishing messages in flight"
            );
            // Leave a moment to hand unfinished messages back before ECS's SIGKILL.
            let budget = limit.saturating_sub(Duration::from_millis(1500));
            if tokio::time::timeout(budget, drained).await.is_err() {
                tracing::warn!(
                    in_flight = acks.in_flight(),
                    "shutdown timeout reached; returning unfinished messages to the queue"
                );
                let _ = tokio::time::timeout(Duration::from_millis(1200), acks.release_all()).await;
            }
        }
    }
    background.cancel();
    let _ = heartbeat.await;
    tracing::info!(
        indexed = sink.stats.indexed.load(Ordering::Relaxed),
        dead_lettered = sink.stats.dead_lettered.load(Ordering::Relaxed),
        "f4a-indexer stopped"
    );
    Ok(())
}

async fn receive_loop(
    ctx: &Arc<Ctx>,
    sqs: &aws_sdk_sqs::Client,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
    opts: RunOptions,
) {
    let cfg = &ctx.cfg;
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight_messages));
    let mut failures = 0u32;
    loop {
        ctx.health.receive_turn();
        // Backpressure: no receive while MAX_IN_FLIGHT_MESSAGES are being worked on.
        ctx.health.waiting_for_slots(slots.available_permits() == 0);
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        ctx.health.waiting_for_slots(false);
        let mut held: Vec<OwnedSemaphorePermit> = vec![first];
        while held.len() < cfg.sqs_max_messages as usize {
            match slots.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let request = sqs
            .receive_message()
            .queue_url(&cfg.sqs_queue_url)
            .max_number_of_messages(held.len() as i32)
            .wait_time_seconds(cfg.sqs_wait_time_seconds)
            .visibility_timeout(cfg.sqs_visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send();
        // Abandoning a receive in flight is safe: messages SQS handed out come back after their
        // visibility timeout.
        let result = tokio::select! {
            r = request => r,
            _ = shutdown.cancelled() => return,
        };
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "message task failed");
            }
        }
        let messages = match result {
            Ok(out) => {
                failures = 0;
                ctx.health.sqs_result(Ok(()));
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                failures += 1;
                let delay =
                    backoff::delay(failures, Duration::from_secs(1), Duration::from_secs(30));
                let error = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                tracing::warn!(
                    error,
                    retry_in_ms = delay.as_millis() as u64,
                    "receive_message failed"
                );
                ctx.health
                    .sqs_result(Err(format!("receive_message failed: {error}")));
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
            if opts.exit_when_idle && slots.available_permits() == cfg.max_in_flight_messages {
                tracing::info!(
                    "queue is empty and nothing is in flight; exiting (--exit-when-idle)"
                );
                return;
            }
            continue;
        }
        for m in messages {
            let permit = held.pop();
            tasks.spawn(process_message(ctx.clone(), m, permit));
        }
    }
}

async fn process_message(ctx: Arc<Ctx>, m: Message, permit: Option<OwnedSemaphorePermit>) {
    let id = m.message_id().unwrap_or_default().to_string();
    let receive_count: i32 = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let span = tracing::info_span!(
        "process",
        otel.kind = "consumer",
        messaging.system = "aws_sqs",
        messaging.operation.type = "process",
        messaging.destination.name = ctx.cfg.queue_name(),
        messaging.message.id = %id,
        messaging.sqs.receive_count = receive_count,
        objects = tracing::field::Empty,
        documents = tracing::field::Empty,
        dead_lettered = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = trace_parent(&m) {
        let _ = span.set_parent(parent);
    }
    let metrics = metrics::get();
    metrics.messages_in_flight.add(1, &[]);
    async {
        let Some(receipt) = m.receipt_handle() else {
            tracing::error!("message without a receipt handle; ignoring it");
            return;
        };
        ctx.acks.track(&id, receipt);
        let notification = match notification::parse(m.body().unwrap_or_default()) {
            Ok(n) => n,
            Err(e) => {
                let delay = redelivery_delay(receive_count, ctx.cfg.sqs_visibility_timeout_seconds);
                tracing::warn!(error = %e, body_head = %head(m.body().unwrap_or_default()), retry_in_secs = delay, "message is not an S3 notification; leaving it in the queue for its redrive policy");
                tracing::Span::current().record("otel.status_code", "ERROR");
                metrics.message("invalid");
                ctx.acks.release(&id, delay).await;
                return;
            }
        };
        let objects = match notification {
            Notification::Ignore(reason) => {
                tracing::info!(reason, "nothing to index; deleting the message");
                metrics.message("ignored");
                ctx.acks.delete(&id).await;
                return;
            }
            Notification::Objects(objects) => objects,
        };
        tracing::Span::current().record("objects", objects.len());
        let group = AckGroup::new();
        let mut retry_reason = None;
        let message_span = tracing::Span::current().context().span().span_context().clone();
        let message_span = message_span.is_valid().then_some(message_span);
        for obj in &objects {
            match index_object(&ctx, obj, &group, message_span.as_ref()).await {
                Ok(()) => {}
                Err(ObjectError::Fetch(FetchError::Missing { bucket, key })) => {
                    tracing::warn!(bucket, key, "object no longer exists; skipping it");
                }
                Err(e) => {
                    retry_reason = Some(e.to_string());
                    break;
                }
            }
        }
        let outcome = group.wait().await;
        let span = tracing::Span::current();
        span.record("documents", outcome.indexed);
        span.record("dead_lettered", outcome.dead_lettered);
        if let Some(reason) = retry_reason {
            let delay = redelivery_delay(receive_count, ctx.cfg.sqs_visibility_timeout_seconds);
            tracing::warn!(reason, retry_in_secs = delay, "message not finished; returning it to the queue");
            span.record("otel.status_code", "ERROR");
            metrics.message("released");
            ctx.acks.release(&id, delay).await;
        } else if outcome.failed {
            let delay = redelivery_delay(receive_count, ctx.cfg.sqs_visibility_timeout_seconds);
            tracing::error!(indexed = outcome.indexed, dead_lettered = outcome.dead_lettered, retry_in_secs = delay, "some documents were neither indexed nor dead-lettered; keeping the message");
            metrics.message("released");
            ctx.acks.release(&id, delay).await;
        } else {
            tracing::info!(indexed = outcome.indexed, dead_lettered = outcome.dead_lettered, "message done; deleting it");
            metrics.message("deleted");
            ctx.acks.delete(&id).await;
        }
    }
    .instrument(span)
    .await;
    metrics.messages_in_flight.add(-1, &[]);
    drop(permit);
}

/// The trace a producer attached to the message: a W3C `traceparent` message attribute, or the
/// `AWSTraceHeader` system attribute that X-Ray-instrumented senders set. The message's span
/// continues that trace.
fn trace_parent(m: &Message) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let remote = |trace: &str, span: &str, sampled: bool| {
        let sc = SpanContext::new(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        sc.is_valid()
            .then(|| opentelemetry::Context::new().with_remote_span_context(sc))
    };
    let attr = m
        .message_attributes()
        .and_then(|a| a.get("traceparent"))
        .and_then(|v| v.string_value());
    if let Some(tp) = attr {
        // version-traceid-spanid-flags
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [_, trace, span, flags] = parts[..] {
            let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
            if let Some(cx) = remote(trace, span, sampled) {
                return Some(cx);
            }
        }
    }
    let header = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))?;
    // Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
    let (mut root, mut parent, mut sampled) = (None, None, false);
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", v)) => root = v.split('-').skip(1).collect::<Vec<_>>().concat().into(),
            Some(("Parent", v)) => parent = Some(v.to_string()),
            Some(("Sampled", v)) => sampled = v == "1",
            _ => {}
        }
    }
    remote(&root?, &parent?, sampled)
}

/// Visibility delay before a message comes back for another try: grows with its receive count
/// (5 s, 10 s, 20 s, …) so a poison message never spins, capped at the visibility timeout.
fn redelivery_delay(receive_count: i32, visibility_timeout: i32) -> i32 {
    let exp = receive_count.saturating_sub(1).clamp(0, 16) as u32;
    5i32.saturating_mul(2i32.saturating_pow(exp))
        .min(visibility_timeout)
}

fn head(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("reading s3://{bucket}/{key} failed: {reason}")]
    Read {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("the pipeline is shutting down")]
    Stopped,
}

async fn index_object(
    ctx: &Arc<Ctx>,
    obj: &ObjectRef,
    group: &Arc<AckGroup>,
    message_span: Option<&opentelemetry::trace::SpanContext>,
) -> Result<(), ObjectError> {
    let span = tracing::info_span!("object", aws.s3.bucket = %obj.bucket, aws.s3.key = %obj.key, bytes = tracing::field::Empty, records = tracing::field::Empty);
    async {
        let opened = object_reader::open(&ctx.s3, obj).await?;
        let meta = Arc::new(ObjectContext {
            bucket: obj.bucket.clone(),
            key: opened.key.clone(),
            version: opened
                .version_id
                .clone()
                .or(opened.etag.clone())
                .unwrap_or_default(),
            last_modified: opened
                .last_modified
                .or(obj.event_time)
                .unwrap_or_else(Utc::now),
            ingested: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            event_time: obj.event_time,
        });
        let source = SourceTap::new(SyncIoBridge::new(opened.body.into_async_read()));
        let (compressed, source_failed) = (source.bytes.clone(), source.failed.clone());
        let (normalizer, docs, group, max) = (
            ctx.normalizer.clone(),
            ctx.docs.clone(),
            group.clone(),
            ctx.cfg.max_record_bytes,
        );
        let meta2 = meta.clone();
        let trace = message_span.cloned();
        let decode_span = tracing::info_span!(
            "decode",
            records = tracing::field::Empty,
            undecodable = tracing::field::Empty,
            decompressed_bytes = tracing::field::Empty
        );
        let read = tokio::task::spawn_blocking(move || {
            let _entered = decode_span.enter();
            let out = Reader {
                meta: &meta2,
                normalizer: &normalizer,
                max_record_bytes: max,
                docs: &docs,
                group: &group,
                trace,
            };
            let read = out.read(source);
            if let Ok(stats) = &read {
                decode_span.record("records", stats.records);
                decode_span.record("undecodable", stats.undecodable);
                decode_span.record("decompressed_bytes", stats.decompressed_bytes);
            }
            read
        })
        .await
        .map_err(|e| ObjectError::Read {
            bucket: meta.bucket.clone(),
            key: meta.key.clone(),
            reason: format!("reader task failed: {e}"),
        })?;
        let bytes = compressed.load(Ordering::Relaxed);
        let span = tracing::Span::current();
        span.record("bytes", bytes);
        match read {
            Ok(stats) => {
                span.record("records", stats.records);
                ctx.records_read.fetch_add(stats.records, Ordering::Relaxed);
                tracing::info!(
                    records = stats.records,
                    undecodable = stats.undecodable,
                    timestamp_fallbacks = stats.timestamp_fallbacks,
                    timestamp_invalid = stats.timestamp_invalid,
                    compressed_bytes = bytes,
                    decompressed_bytes = stats.decompressed_bytes,
                    "object read"
                );
                Ok(())
            }
            Err(ReadError::Stopped) => Err(ObjectError::Stopped),
            Err(ReadError::Io(e)) if source_failed.load(Ordering::Relaxed) => {
                Err(ObjectError::Read {
                    bucket: meta.bucket.clone(),
                    key: meta.key.clone(),
                    reason: e.to_string(),
                })
            }
            Err(ReadError::Io(e)) => Err(ObjectError::Read {
                bucket: meta.bucket.clone(),
                key: meta.key.clone(),
                reason: format!("unexpected read error: {e}"),
            }),
        }
    }
    .instrument(span)
    .await
}

enum ReadError {
    /// The S3 stream failed (network): retry the message later.
    Io(std::io::Error),
    Stopped,
}

/// Everything the blocking reader of one object needs.
struct Reader<'a> {
    meta: &'a Arc<ObjectContext>,
    normalizer: &'a Normalizer,
    max_record_bytes: usize,
    docs: &'a mpsc::Sender<Doc>,
    group: &'a Arc<AckGroup>,
    /// The message's span, carried by every document so that bulk spans can link to it.
    trace: Option<opentelemetry::trace::SpanContext>,
}

impl Reader<'_> {
    /// Runs on a blocking thread: decompress → frame → decode → normalize → encode → send.
    /// Corrupt content (a truncated gzip, say) ends the object with one dead-letter entry and
    /// keeps every record read before it; a failing source is reported for a retry.
    fn read(
        &self,
        source: SourceTap<impl std::io::Read + Send + 'static>,
    ) -> Result<ObjectStats, ReadError> {
        let failed = source.failed.clone();
        let mut stats = ObjectStats::default();
        let reader = match object_reader::decompress(source) {
            Ok(r) => r,
            Err(e) if failed.load(Ordering::Relaxed) => return Err(ReadError::Io(e)),
            Err(e) => {
                let dead = DeadRecord {
                    offset: 0,
                    reason: format!("unreadable object: {e}"),
                    raw: String::new(),
                };
                self.send_dead(&dead, &mut stats)?;
                return Ok(stats);
            }
        };
        let mut framer = Framer::new(reader, self.max_record_bytes);
        let mut items = Vec::new();
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => decode_frame(&frame, self.max_record_bytes, &mut items),
                Ok(None) => break,
                Err(e) if failed.load(Ordering::Relaxed) => return Err(ReadError::Io(e)),
                Err(e) => {
                    let (offset, partial) = framer.partial();
                    let dead = DeadRecord {
                        offset,
                        reason: format!(
                            "corrupt or truncated data after {} decompressed bytes: {e}",
                            framer.position()
                        ),
                        raw: String::from_utf8_lossy(
                            &partial[..partial.len().min(crate::decoder::DEAD_LETTER_RAW_BYTES)],
                        )
                        .into_owned(),
                    };
                    self.send_dead(&dead, &mut stats)?;
                    break;
                }
            }
            for item in items.drain(..) {
                match item {
                    Item::Record(rec) => {
                        let (offset, sub) = (rec.offset, rec.sub);
                        let n = self.normalizer.normalize(rec, self.meta);
                        stats.records += 1;
                        stats.timestamp_fallbacks += u64::from(n.timestamp_fallback);
                        stats.timestamp_invalid += u64::from(n.timestamp_invalid);
                        self.send(Doc::encode(
                            n,
                            self.meta.clone(),
                            offset,
                            sub,
                            false,
                            self.group.token(),
                        ))?;
                    }
                    Item::Dead(dead) => {
                        tracing::warn!(bucket = %self.meta.bucket, key = %self.meta.key, offset = dead.offset, reason = %dead.reason, "undecodable record; dead-lettering it");
                        self.send_dead(&dead, &mut stats)?;
                    }
                }
            }
        }
        stats.decompressed_bytes = framer.position();
        metrics::get()
            .docs_received
            .add(stats.records + stats.undecodable, &[]);
        Ok(stats)
    }

    fn send_dead(&self, dead: &DeadRecord, stats: &mut ObjectStats) -> Result<(), ReadError> {
        stats.undecodable += 1;
        let n = self.normalizer.undecodable(dead, self.meta);
        self.send(Doc::encode(
            n,
            self.meta.clone(),
            dead.offset,
            None,
            true,
            self.group.token(),
        ))
    }

    /// Blocks while the batcher is full: the backpressure that reaches back to SQS.
    fn send(&self, mut doc: Doc) -> Result<(), ReadError> {
        doc.trace = self.trace.clone();
        self.docs.blocking_send(doc).map_err(|_| ReadError::Stopped)
    }
}

/// Keeps the cluster's readiness state fresh while no bulk request reports it (an idle worker).
async fn probe_cluster(sink: Arc<BulkSink>, health: Arc<Health>, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(15);
    loop {
        if health.cluster_report_age() >= EVERY || health.readiness().1["cluster"] == "unknown" {
            sink.probe().await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One line every 30 s: documents read and indexed per second, messages in flight.
async fn summary(ctx: Arc<Ctx>, sink: Arc<BulkSink>, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(30);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    let (mut last_in, mut last_out) = (0u64, 0u64);
    let weak = Arc::downgrade(&ctx);
    drop(ctx);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(ctx) = weak.upgrade() else { return };
        let read = ctx.records_read.load(Ordering::Relaxed);
        let out = sink.stats.indexed.load(Ordering::Relaxed)
            + sink.stats.dead_lettered.load(Ordering::Relaxed);
        tracing::info!(
            docs_in_per_sec = (read - last_in) as f64 / EVERY.as_secs_f64(),
            docs_out_per_sec = (out - last_out) as f64 / EVERY.as_secs_f64(),
            messages_in_flight = ctx.acks.in_flight(),
            configured_rate = ctx.cfg.rate_limit_docs_per_sec.unwrap_or(0),
            effective_rate = sink.effective_rate().map_or(0, |r| r.round() as u64),
            retried_total = sink.stats.retried.load(Ordering::Relaxed),
            "summary"
        );
        (last_in, last_out) = (read, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_delay_grows_and_caps() {
        assert_eq!(redelivery_delay(1, 300), 5);
        assert_eq!(redelivery_delay(2, 300), 10);
        assert_eq!(redelivery_delay(4, 300), 40);
        assert_eq!(redelivery_delay(100, 300), 300);
        assert_eq!(redelivery_delay(0, 300), 5);
    }
}
