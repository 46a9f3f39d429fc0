//! What the worker does to the cluster besides indexing: the index setup before the first
//! receive ([`set_up`]), then every hour the setup check again (a cheap GET per template, so a
//! template deleted or a setup that failed at start-up is put back) and the retention run
//! ([`run`]). Nothing here can stop indexing: every failure is logged and tried again an hour
//! later.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::admin::ClusterAdmin;
use super::setup::{self, SetupOutcome};
use crate::config::{Config, SetupMode};

/// How often the setup is checked and old indices are deleted.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Longest wait for the setup before the first receive.
pub const SETUP_AT_START: Duration = Duration::from_secs(20);
/// Retry of a setup that got no answer.
pub const SETUP_RETRY: Duration = Duration::from_secs(30);

/// The templates as `ES_SETUP` says, once; returns what happened to each.
pub async fn set_up(cfg: &Config, admin: &dyn ClusterAdmin) -> Vec<SetupOutcome> {
    let s = &cfg.cluster.setup;
    if s.mode == SetupMode::Off {
        return vec![];
    }
    let replicas = setup::replicas(admin, s.replicas).await;
    let templates = setup::templates(
        s,
        &cfg.record.index,
        &cfg.record.dead_letter_index,
        replicas,
        cfg.cluster.index_mode == crate::config::IndexMode::DataStream,
    );
    setup::ensure(admin, s.mode, &templates).await
}

/// Until `stop`: the retention run every [`EVERY`]; the setup check every [`EVERY`] with
/// `ES_SETUP=ensure`, and every [`SETUP_RETRY`] while the last setup failed for want of an
/// answer (a cluster down at start-up gets its templates soon after it is back); never again
/// after a 401/403 (not ours to do).
pub async fn run(
    cfg: Config,
    admin: std::sync::Arc<dyn ClusterAdmin>,
    first: Vec<SetupOutcome>,
    stop: CancellationToken,
) {
    let mode = cfg.cluster.setup.mode;
    let failed = |o: &[SetupOutcome]| o.iter().any(|o| matches!(o, SetupOutcome::NoAnswer(_)));
    let mut forbidden = first.contains(&SetupOutcome::Forbidden);
    let mut setup_failed = failed(&first);
    let mut retention = super::retention::Retention::new(&cfg);
    let mut next_retention = tokio::time::Instant::now();
    let mut next_setup = tokio::time::Instant::now() + EVERY;
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_retention {
            if let Some(r) = retention.as_mut() {
                r.run(admin.as_ref(), chrono::Utc::now()).await;
            }
            next_retention = now + EVERY;
        }
        if setup_failed {
            next_setup = next_setup.min(now + SETUP_RETRY);
        }
        let setup_due =
            mode != SetupMode::Off && !forbidden && (setup_failed || mode == SetupMode::Ensure);
        let wake = if setup_due {
            next_setup.min(next_retention)
        } else {
            next_retention
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if setup_due && tokio::time::Instant::now() >= next_setup {
            let outcomes = set_up(&cfg, admin.as_ref()).await;
            forbidden = outcomes.contains(&SetupOutcome::Forbidden);
            setup_failed = failed(&outcomes);
            next_setup = tokio::time::Instant::now() + EVERY;
        }
    }
}
