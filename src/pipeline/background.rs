//! The tasks that run beside the receive loop for a whole run: the fleet member (share of the
//! budget), the cluster probe (readiness while idle) and the 30-second summary line.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics;
use crate::sink::bulk::BulkSink;
use crate::sink::fleet::{self, Fleet, FleetTable, Mode, Status};
use crate::source::inflight::InFlight;

/// Joins the fleet (`FLEET_*`): the member loop sets the sink's share and publishes the state
/// on `/readyz` and the metrics. The service key is the queue's name: every task reading the
/// queue shares the budget.
pub(super) async fn start_fleet(
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

/// Identifies the cluster at start-up (retried at each turn until it answers), then keeps its
/// readiness state fresh while no bulk request reports it (an idle worker).
pub(super) async fn probe_cluster(
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
pub(super) struct Summary {
    pub(super) acks: Arc<InFlight>,
    pub(super) sink: Arc<BulkSink>,
    pub(super) configured_rate: u32,
}

/// One line every 30 s: documents read and indexed per second, messages in flight.
pub(super) async fn summary(s: Summary, stop: CancellationToken) {
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
