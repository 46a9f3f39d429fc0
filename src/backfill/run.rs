//! Indexing a backfill: each selected object goes through the service's own data path
//! ([`crate::pipeline::Indexing`]: the object reader, record wing, ids, rate limiter, batcher and
//! sink), so a backfill over indexed data overwrites (same `_id`s) and never exceeds the rate.
//!
//! Up to `--concurrency` objects at once, started in key order. An object is settled once every
//! document of it is indexed or dead-lettered (its ack group drained with no failure; a deleted
//! object counts as settled, there is nothing left to index). The checkpoint is the last key up
//! to which every object is settled — a watermark over the objects in flight — saved at most
//! every [`SAVE_EVERY`] and at the end. An object that fails is tried again ([`OBJECT`]); one
//! that still fails freezes the watermark (later objects are still indexed), so the next run
//! starts again at it.
//!
//! On SIGINT/SIGTERM no object is started any more; those in flight finish (a half-read object
//! is never abandoned: its documents would be sent again by the next run), the checkpoint is
//! saved, and the run exits 1.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::listing::Listed;
use super::Plan;
use crate::ack::AckGroup;
use crate::backoff::Policy;
use crate::config::Config;
use crate::health::Health;
use crate::object::{ObjectError, ObjectIndexer};
use crate::pipeline::{set_up_at_start, Indexing, Wings};
use crate::progress::{Counters, Progress};
use crate::source::{FetchError, ObjectRef};

/// How often the checkpoint is written while it moves.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Tries of one object: a failing read (network, S3 5xx past GetObject's own retries) or a
/// document given up; ids are deterministic, so a second try overwrites.
const OBJECT: Policy = Policy::new(3, 1000, 10_000);

/// How one object ended.
enum Settled {
    Done,
    /// Deleted since the listing: nothing to index.
    Missing,
    Failed(String),
}

/// Indexes what `plan` selects; `Ok(true)` when every selected object was settled.
pub(crate) async fn run(
    cfg: Config,
    mut plan: Plan,
    concurrency: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    let wings = Wings::connect(&cfg).await?;
    let health = Health::new(Duration::from_secs(3600));
    set_up_at_start(&cfg, wings.admin.as_ref()).await;
    let Indexing {
        objects,
        sink: _,
        batcher,
    } = Indexing::build(&cfg, wings.store, wings.cluster, &health);
    let objects = Arc::new(objects);
    let progress = Progress::start("backfill", "objects");
    let counters = progress.counters.clone();
    let counting = plan
        .counting
        .take()
        .map(|selector| tokio::spawn(count(selector, counters.clone())));
    let mut window: VecDeque<(u64, String, Option<bool>)> = VecDeque::new();
    let mut tasks: JoinSet<(u64, u64, Settled)> = JoinSet::new();
    let (mut seq, mut frozen, mut missing) = (0u64, false, 0u64);
    let mut listing_error: Option<String> = None;
    let (mut listing_done, mut stopping) = (false, false);
    let mut saved_at = Instant::now();
    let mut saved_key = plan.state.last_key.clone();
    loop {
        while !stopping && !listing_done && tasks.len() < concurrency {
            match plan.selector.next().await {
                Ok(Some(o)) => {
                    window.push_back((seq, o.key.clone(), None));
                    tasks.spawn(index_one(objects.clone(), plan.bucket.clone(), o, seq));
                    seq += 1;
                }
                Ok(None) => listing_done = true,
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "listing failed; finishing the objects in flight"
                    );
                    listing_error = Some(format!("{e:#}"));
                    listing_done = true;
                }
            }
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = tasks.join_next() => j,
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                tracing::warn!(in_flight = tasks.len(), "stopping: finishing the objects in flight");
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (done_seq, bytes, settled) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A task that panicked: its object is not settled; the watermark stays before it.
                tracing::error!(error = %e, "object task failed");
                frozen = true;
                counters.failed.fetch_add(1, Relaxed);
                continue;
            }
        };
        let ok = match settled {
            Settled::Done => true,
            Settled::Missing => {
                missing += 1;
                true
            }
            Settled::Failed(reason) => {
                tracing::error!(reason, "object not settled; the checkpoint stays before it");
                false
            }
        };
        if ok {
            counters.done.fetch_add(1, Relaxed);
            counters.bytes_done.fetch_add(bytes, Relaxed);
        } else {
            counters.failed.fetch_add(1, Relaxed);
        }
        if let Some(slot) = window.iter_mut().find(|(s, _, _)| *s == done_seq) {
            slot.2 = Some(ok);
        }
        // The watermark: settled objects at the front of the window.
        while let Some((_, _, Some(ok))) = window.front() {
            if !*ok {
                frozen = true;
            }
            let Some((_, key, _)) = window.pop_front() else {
                break;
            };
            if !frozen {
                plan.state.last_key = key;
            }
        }
        if plan.state.last_key != saved_key && saved_at.elapsed() >= SAVE_EVERY {
            save(&plan).await;
            saved_key = plan.state.last_key.clone();
            saved_at = Instant::now();
        }
    }
    if let Some(counting) = counting {
        counting.abort();
    }
    // Every object task has ended: ours is the last sender of the documents channel.
    drop(objects);
    let _ = batcher.await;
    let failed = counters.failed.load(Relaxed);
    let complete = !stopping && listing_error.is_none() && failed == 0;
    if !complete {
        save(&plan).await;
    }
    let last_settled_key = (!plan.state.last_key.is_empty()).then(|| plan.state.last_key.clone());
    Ok(plan
        .conclude(
            progress,
            complete,
            stopping,
            vec![
                ("missing", missing.into()),
                ("last_settled_key", last_settled_key.into()),
                ("listing_error", listing_error.into()),
            ],
        )
        .await)
}

async fn save(plan: &Plan) {
    if plan.state.last_key.is_empty() {
        return;
    }
    if let Err(e) = plan.checkpoint.save(&plan.state).await {
        tracing::warn!(error = format!("{e:#}"), checkpoint = %plan.checkpoint.location, "the checkpoint could not be written");
    }
}

/// Indexes one object until its documents are settled; tried again per [`OBJECT`].
async fn index_one(
    objects: Arc<ObjectIndexer>,
    bucket: String,
    o: Listed,
    seq: u64,
) -> (u64, u64, Settled) {
    let obj = ObjectRef {
        bucket,
        key: o.key.clone(),
        alt_key: None,
        version_id: None,
        size: Some(o.size),
        event_time: None,
    };
    let mut attempt = 1;
    let settled = loop {
        let group = AckGroup::new();
        let read = objects.index(&obj, &group, None).await;
        let outcome = group.wait().await;
        let problem = match read {
            Ok(()) if !outcome.failed => break Settled::Done,
            Err(ObjectError::Fetch(FetchError::Missing { .. })) => break Settled::Missing,
            Ok(()) => "documents were given up".to_string(),
            Err(e) => e.to_string(),
        };
        if attempt >= OBJECT.attempts {
            break Settled::Failed(format!("s3://{}/{}: {problem}", obj.bucket, obj.key));
        }
        tracing::warn!(key = %obj.key, attempt, problem, "object not settled; trying again");
        tokio::time::sleep(OBJECT.delay(attempt)).await;
        attempt += 1;
    };
    (seq, o.size, settled)
}

/// Counts the selected objects and bytes ahead of the work, for the totals and the ETA.
pub(super) async fn count(mut selector: super::listing::Selector, c: Arc<Counters>) {
    loop {
        match selector.next().await {
            Ok(Some(o)) => {
                c.total.fetch_add(1, Relaxed);
                c.bytes_total.fetch_add(o.size, Relaxed);
            }
            Ok(None) => {
                c.total_final.store(true, Relaxed);
                return;
            }
            // The work's own listing reports errors; the totals just stay partial.
            Err(_) => return,
        }
    }
}
