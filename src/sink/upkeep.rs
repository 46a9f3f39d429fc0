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

/// Every [`EVERY`] until `stop`: the setup check (unless a 401/403 said it is not ours to do,
/// or `ES_SETUP=overwrite` already did it at start-up) and the retention run.
pub async fn run(
    cfg: Config,
    admin: std::sync::Arc<dyn ClusterAdmin>,
    first: Vec<SetupOutcome>,
    stop: CancellationToken,
) {
    let mut forbidden = first.contains(&SetupOutcome::Forbidden);
    let mut retention = super::retention::Retention::new(&cfg);
    loop {
        if let Some(r) = retention.as_mut() {
            r.run(admin.as_ref(), chrono::Utc::now()).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if !forbidden && cfg.cluster.setup.mode == SetupMode::Ensure {
            forbidden = set_up(&cfg, admin.as_ref())
                .await
                .contains(&SetupOutcome::Forbidden);
        }
    }
}
