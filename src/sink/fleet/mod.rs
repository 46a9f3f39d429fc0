//! Fleet budget: one insert rate for the whole service, shared through a table of members.
//!
//! Each task keeps one item in the table ([`FleetTable`]: DynamoDB in production, an in-memory
//! fake in tests) and bumps its heartbeat counter every [`Timing::interval`]; after each
//! heartbeat it reads all members with a strongly consistent query and takes
//! `FLEET_DOCS_PER_SEC / live tasks` as its share. The share becomes the rate limiter's share
//! factor (`RateLimiter::set_share`): ceiling, burst and adaptive rate all scale with it.
//!
//! Liveness is judged as the Kinesis Client Library judges leases: a member counts while its
//! counter changed less than [`Timing::liveness`] ago, measured on this task's own monotonic
//! clock between two of its own reads. Wall clocks of other hosts are never compared; the TTL
//! attribute of the items only lets DynamoDB collect items of tasks that died.
//!
//! Safety rules, each one keeping the sum of the shares within the budget:
//! - a member seen for the first time counts at once (counting too many only lowers shares);
//! - a joining task (first heartbeat, or first one after a write gap that peers may have taken
//!   for death) sends nothing until [`Timing::stale_after`] has passed since that heartbeat:
//!   by then every peer has either read the table since (and counts it) or fallen back;
//! - a share is used only while the read it came from started less than `stale_after` ago, and
//!   only while this task's own last successful heartbeat started less than `stale_after` ago
//!   (shorter than `liveness`, so a task that cannot write fences itself before its peers stop
//!   counting it); otherwise the task falls back to `budget / FLEET_MAX_TASKS`;
//! - a stopping task deletes its item only after its last bulk attempt ([`Fleet::leave`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod dynamo;
pub mod memory;
#[cfg(test)]
mod tests;

/// One member's item as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub task: String,
    pub beat: u64,
}

/// The table could not be read or written; the task falls back to its safe share.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TableError(pub String);

/// The table of members, keyed by service and task.
#[async_trait]
pub trait FleetTable: Send + Sync {
    /// Creates the table if it is missing (where the task may); an existing table is left alone.
    async fn ensure(&self) -> Result<(), TableError>;
    /// Writes this task's item: its heartbeat counter and the TTL (epoch seconds) for GC.
    async fn heartbeat(
        &self,
        service: &str,
        task: &str,
        beat: u64,
        expires: u64,
    ) -> Result<(), TableError>;
    /// Every item of `service`, read strongly consistently.
    async fn members(&self, service: &str) -> Result<Vec<Member>, TableError>;
    /// Deletes this task's item.
    async fn leave(&self, service: &str, task: &str) -> Result<(), TableError>;
}

/// How often the table is used and how long facts stay true.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Heartbeat and read, each time; also the timeout of each table call.
    pub interval: Duration,
    /// Age (from its start) after which a read, or this task's own last heartbeat, no longer
    /// justifies a full share; also the time a joining task waits.
    pub stale_after: Duration,
    /// A member whose counter did not change for this long (own clock) is dead.
    pub liveness: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            interval: Duration::from_secs(2),
            stale_after: Duration::from_secs(6),
            liveness: Duration::from_secs(10),
        }
    }
}

/// Items live a day past their last heartbeat before DynamoDB's TTL may collect them.
const ITEM_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the task currently does with the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Registered, waiting until every peer counts it; sends nothing.
    Joining,
    /// `budget / live tasks`.
    Shared,
    /// `budget / FLEET_MAX_TASKS`: the table cannot be read or written, or not recently.
    Fallback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Joining => "joining",
            Mode::Shared => "shared",
            Mode::Fallback => "fallback",
        }
    }
}

/// The fleet state for the limiter, `/readyz` and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub mode: Mode,
    /// Documents per second this task may send.
    pub share: f64,
    /// Live tasks in the last good read, this one included (0: none yet).
    pub live_tasks: usize,
    /// The last table error, while it lasts.
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    beat: u64,
    /// Start of the heartbeat that (re)joined the fleet.
    joined_at: Option<Instant>,
    /// Start of the last successful heartbeat.
    last_write: Option<Instant>,
    /// Start of the last successful read, and the live tasks it found (self included).
    last_read: Option<(Instant, usize)>,
    /// Per peer: last counter seen, and when (own clock) it was first seen with that value.
    seen: HashMap<String, (u64, Instant)>,
    error: Option<String>,
}

/// One task's membership in the fleet.
pub struct Fleet {
    table: Arc<dyn FleetTable>,
    service: String,
    task: String,
    budget: f64,
    max_tasks: u32,
    timing: Timing,
    state: Mutex<State>,
}

impl Fleet {
    pub fn new(
        table: Arc<dyn FleetTable>,
        service: impl Into<String>,
        task: impl Into<String>,
        budget: u32,
        max_tasks: u32,
        timing: Timing,
    ) -> Fleet {
        Fleet {
            table,
            service: service.into(),
            task: task.into(),
            budget: budget.max(1) as f64,
            max_tasks: max_tasks.max(1),
            timing,
            state: Mutex::new(State::default()),
        }
    }

    pub fn task(&self) -> &str {
        &self.task
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget share that [`Fleet::status`] allows at `budget / max_tasks`.
    pub fn fallback_share(&self) -> f64 {
        self.budget / self.max_tasks as f64
    }

    /// One heartbeat, then one read of the members.
    pub async fn tick(&self) {
        let t = self.timing;
        let write_start = Instant::now();
        let beat = {
            let mut s = self.lock();
            s.beat += 1;
            s.beat
        };
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(ITEM_TTL)
            .as_secs();
        let write = tokio::time::timeout(
            t.interval,
            self.table
                .heartbeat(&self.service, &self.task, beat, expires),
        )
        .await
        .unwrap_or_else(|_| Err(TableError("heartbeat timed out".into())));
        let wrote = write.is_ok();
        match write {
            Ok(()) => {
                let mut s = self.lock();
                // Peers may have stopped counting this task: join again.
                let rejoin = s
                    .last_write
                    .is_none_or(|w| write_start.duration_since(w) >= rejoin_gap(t));
                if rejoin {
                    s.joined_at = Some(write_start);
                    tracing::info!(task = %self.task, "joined the fleet");
                }
                s.last_write = Some(write_start);
            }
            Err(e) => self.failed("heartbeat", e),
        }
        let read_start = Instant::now();
        let read = tokio::time::timeout(t.interval, self.table.members(&self.service))
            .await
            .unwrap_or_else(|_| Err(TableError("query timed out".into())));
        match read {
            Ok(members) => {
                let mut s = self.lock();
                let mut seen = HashMap::with_capacity(members.len());
                for m in members.into_iter().filter(|m| m.task != self.task) {
                    let since = match s.seen.get(&m.task) {
                        Some(&(beat, since)) if beat == m.beat => since,
                        _ => read_start,
                    };
                    seen.insert(m.task, (m.beat, since));
                }
                let live = 1 + seen
                    .values()
                    .filter(|(_, since)| read_start.duration_since(*since) < t.liveness)
                    .count();
                s.seen = seen;
                s.last_read = Some((read_start, live));
                if wrote {
                    s.error = None;
                }
            }
            Err(e) => self.failed("query", e),
        }
    }

    fn failed(&self, what: &str, e: TableError) {
        let mut s = self.lock();
        if s.error.is_none() {
            tracing::warn!(error = %e, "fleet table {what} failed; the share falls back to FLEET_DOCS_PER_SEC / FLEET_MAX_TASKS once the last good state is too old");
        }
        s.error = Some(format!("{what}: {e}"));
    }

    /// The share allowed at `now`.
    pub fn status(&self, now: Instant) -> Status {
        let t = self.timing;
        let s = self.lock();
        let fresh = |at: Instant| now.saturating_duration_since(at) < t.stale_after;
        let live = s.last_read.map_or(0, |(_, n)| n);
        let (mode, share) = match (s.joined_at, s.last_write, s.last_read) {
            // Before the first heartbeat and read: wait, unless the table already failed.
            (None, _, _) if s.error.is_none() => (Mode::Joining, 0.0),
            (Some(joined), Some(w), Some((r, n))) if fresh(w) && fresh(r) => {
                if now.saturating_duration_since(joined) < t.stale_after {
                    (Mode::Joining, 0.0)
                } else {
                    (Mode::Shared, self.budget / n.max(1) as f64)
                }
            }
            _ => (Mode::Fallback, self.fallback_share()),
        };
        Status {
            mode,
            share: share.min(self.budget),
            live_tasks: live,
            error: s.error.clone(),
        }
    }

    /// Heartbeats until `stop`, and hands each change of share to `apply` (checked every
    /// 200 ms, so a stale state falls back on time even while a table call hangs).
    pub async fn run(
        self: Arc<Self>,
        apply: Arc<dyn Fn(&Status) + Send + Sync>,
        stop: CancellationToken,
    ) {
        if let Err(e) = self.table.ensure().await {
            self.failed("create table", e);
        }
        // Both loops in this one future (no spawned task): aborting it stops the heartbeats.
        let beats = async {
            let mut every = tokio::time::interval(self.timing.interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => self.tick().await,
                }
            }
        };
        let shares = async {
            let mut last: Option<Status> = None;
            loop {
                let now = self.status(Instant::now());
                if last
                    .as_ref()
                    .is_none_or(|l| l.mode != now.mode || l.share != now.share)
                {
                    tracing::info!(
                        mode = now.mode.as_str(),
                        share_docs_per_sec = now.share,
                        live_tasks = now.live_tasks,
                        "fleet share"
                    );
                    apply(&now);
                }
                last = Some(now);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        };
        tokio::join!(beats, shares);
    }

    /// Deletes this task's item (after its last bulk attempt): peers take its share at their
    /// next read.
    pub async fn leave(&self) {
        let r = tokio::time::timeout(
            self.timing.interval,
            self.table.leave(&self.service, &self.task),
        )
        .await
        .unwrap_or_else(|_| Err(TableError("delete timed out".into())));
        match r {
            Ok(()) => tracing::info!(task = %self.task, "left the fleet"),
            Err(e) => {
                tracing::warn!(error = %e, "could not delete the fleet item; peers stop counting this task after the liveness window")
            }
        }
    }
}

/// A gap between two of this task's successful heartbeats after which a peer may have seen its
/// counter still for `liveness` (a peer observes each write up to one interval late).
fn rejoin_gap(t: Timing) -> Duration {
    t.liveness.saturating_sub(t.interval * 2)
}

/// A task id unique for the table: on ECS the task's id from the task metadata endpoint (as
/// `telemetry` reads it), else the process id; with a random suffix either way, so a restarted
/// process, or two on one host, never share an item. Blocking (one local HTTP call at start).
pub fn task_id() -> String {
    let ecs = std::env::var("ECS_CONTAINER_METADATA_URI_V4")
        .ok()
        .and_then(|base| {
            crate::health::http_get(&format!("{}/task", base.trim_end_matches('/'))).ok()
        })
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| {
            let arn = v.get("TaskARN")?.as_str()?;
            Some(arn.rsplit('/').next().unwrap_or(arn).to_string())
        });
    let base = ecs.unwrap_or_else(|| std::process::id().to_string());
    format!("{base}-{:08x}", fastrand::u32(..))
}
