//! The replay loop: a page of entries (the first `--batch` the query selects) → their documents
//! through the service's sink (rate limiter, retries, splits; refusals handed back instead of
//! dead-lettered) → one `_bulk` on the dead-letter index that deletes the entries whose documents
//! were accepted and rewrites the others with the reason and this run's mark → a refresh, so the
//! next page's search sees that → until a page is empty or a signal came.
//!
//! An entry's outcome is that of all its documents (a decode entry can hold several records):
//! its own ack group drains with every token resolved, or the sink hands one back refused. An
//! entry whose document the sink gave up on (the cluster refused the configuration) stays as it
//! was, and the run stops: it would be selected again and again.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::entry::{self, Decoding, Hit, Replay};
use super::{count, query, Args};
use crate::ack::AckGroup;
use crate::backoff::Policy;
use crate::config::{Config, DocumentIds, IndexMode};
use crate::health::Health;
use crate::pipeline::Wings;
use crate::progress::Progress;
use crate::record::provenance::object_at;
use crate::record::{DeadLetters, Limits, Normalizer, ObjectContext};
use crate::sink::admin::ClusterAdmin;
use crate::sink::bulk::BulkSink;
use crate::sink::rate_limiter::RateLimiter;
use crate::sink::{BulkClient, Doc};

/// Tries of one page's `_bulk` on the dead-letter index (the documents are already in; a
/// failure here leaves entries that the next run replays again, overwriting).
const UPKEEP: Policy = Policy::new(5, 500, 10_000);

/// How one entry ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Every document accepted: the entry goes.
    Replayed,
    /// The limits (`DROP_WHERE`, sampling) drop what it decodes to, as the service would: the
    /// entry goes.
    Dropped,
    /// The cluster refused a document again: the entry stays with the new reason.
    Refused { error_type: String, reason: String },
    /// The entry cannot give its document back: it stays, with why.
    Unreplayable(String),
    /// The sink gave a document up (the cluster refuses the configuration): unchanged.
    GaveUp,
}

/// What a run counted.
#[derive(Debug, Default)]
struct Tally {
    replayed: u64,
    dropped: u64,
    refused: u64,
    unreplayable: u64,
    /// Why entries stay dead, with how many: the first reasons seen.
    reasons: HashMap<String, u64>,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        let reason = match o {
            Outcome::Replayed => {
                self.replayed += 1;
                return;
            }
            Outcome::Dropped => {
                self.dropped += 1;
                return;
            }
            Outcome::GaveUp => return,
            Outcome::Refused { error_type, .. } => {
                self.refused += 1;
                error_type.clone()
            }
            Outcome::Unreplayable(reason) => {
                self.unreplayable += 1;
                reason.clone()
            }
        };
        if self.reasons.len() < 20 || self.reasons.contains_key(&reason) {
            *self.reasons.entry(reason).or_default() += 1;
        }
    }
}

/// Replays what `args` select; `Ok(true)` when every selected entry is back in its index.
pub(crate) async fn run(
    cfg: Config,
    args: Args,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    let wings = Wings::connect(&cfg).await?;
    let dead_letter_index = cfg.record.dead_letter_index.clone();
    let run_id = format!("{:032x}", fastrand::u128(..));
    let health = Health::new(Duration::from_secs(3600));
    let sink = BulkSink::new(
        wings.cluster.clone(),
        RateLimiter::new(&cfg.rate),
        DeadLetters::new(&dead_letter_index),
        cfg.sink.retry,
        health.clone(),
    );
    let normalizer = Normalizer::new(
        cfg.record.index.clone(),
        cfg.record.timestamp_fields.clone(),
    );
    let limits = Limits::new(&cfg.record.limits);
    let decoding = Decoding {
        normalizer: &normalizer,
        limits: limits.as_ref(),
        max_record_bytes: cfg.record.max_record_bytes,
        with_id: cfg.record.document_ids == DocumentIds::Deterministic,
    };
    let create = cfg.cluster.index_mode == IndexMode::DataStream;
    let filters = args.filters();
    let selected = query(&filters, Some(&run_id));
    let progress = Progress::start("replay-dead-letters", "entries");
    let counters = progress.counters.clone();
    counters.total.store(
        count(wings.admin.as_ref(), &dead_letter_index, &selected).await?,
        Relaxed,
    );
    counters.total_final.store(true, Relaxed);
    let mut tally = Tally::default();
    let (mut stopped, mut gave_up) = (false, None::<String>);
    let page = Page {
        admin: wings.admin.as_ref(),
        cluster: wings.cluster.as_ref(),
        sink: &sink,
        decoding: &decoding,
        dead_letter_index: &dead_letter_index,
        run_id: &run_id,
        create,
        bulk: (cfg.sink.bulk.max_docs, cfg.sink.bulk.max_bytes),
    };
    loop {
        if shutdown.is_cancelled() {
            stopped = true;
            break;
        }
        let hits = page.search(&selected, args.batch.into()).await?;
        if hits.is_empty() {
            break;
        }
        // One span per batch: the bulk spans of its documents nest under it.
        let span = tracing::info_span!("replay_batch", entries = hits.len());
        let outcomes = page.replay(&hits).instrument(span.clone()).await;
        page.settle(&hits, &outcomes).instrument(span).await?;
        for o in &outcomes {
            tally.add(o);
            match o {
                Outcome::Replayed | Outcome::Dropped => counters.done.fetch_add(1, Relaxed),
                Outcome::GaveUp => 0,
                _ => counters.failed.fetch_add(1, Relaxed),
            };
        }
        if outcomes.contains(&Outcome::GaveUp) {
            gave_up = Some(
                health
                    .configuration_problem()
                    .unwrap_or_else(|| "the sink gave documents up".to_string()),
            );
            break;
        }
    }
    if let Some(reason) = &gave_up {
        tracing::error!(
            reason = %reason,
            "stopping: the cluster refuses this configuration; the entries not replayed are unchanged"
        );
    }
    let complete = !stopped && gave_up.is_none() && tally.refused + tally.unreplayable == 0;
    let outcome = match (complete, stopped) {
        (true, _) => "complete",
        (false, true) => "interrupted",
        (false, false) => "incomplete",
    };
    let mut extra = args.describe(&dead_letter_index);
    extra["run"] = run_id.into();
    extra["replayed"] = tally.replayed.into();
    extra["dropped"] = tally.dropped.into();
    extra["refused_again"] = tally.refused.into();
    extra["unreplayable"] = tally.unreplayable.into();
    extra["still_dead_reasons"] = json!(tally.reasons);
    if let Some(reason) = gave_up {
        extra["stopped_because"] = reason.into();
    }
    progress.finish(outcome, extra).await;
    Ok(complete)
}

/// What one page needs.
struct Page<'a> {
    admin: &'a dyn ClusterAdmin,
    cluster: &'a dyn BulkClient,
    sink: &'a BulkSink,
    decoding: &'a Decoding<'a>,
    dead_letter_index: &'a str,
    run_id: &'a str,
    /// `ES_INDEX_MODE=data_stream`: documents are sent with op_type `create`.
    create: bool,
    /// `BULK_MAX_DOCS`, `BULK_MAX_BYTES`: the documents go in requests of at most this.
    bulk: (usize, usize),
}

impl Page<'_> {
    /// The first `size` entries `query` selects (none when there is no dead-letter index).
    async fn search(&self, query: &Value, size: usize) -> anyhow::Result<Vec<Hit>> {
        let reply = self
            .admin
            .post(
                &format!("/{}/_search", self.dead_letter_index),
                json!({"size": size, "query": query, "sort": ["_doc"]}),
            )
            .await
            .context("searching the dead-letter index")?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        anyhow::ensure!(
            reply.is_success(),
            "searching {} failed: HTTP {}: {}",
            self.dead_letter_index,
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
        Ok(hits.iter().filter_map(Hit::from_json).collect())
    }

    /// Sends the documents of `hits`; the outcome of each entry, in order.
    async fn replay(&self, hits: &[Hit]) -> Vec<Outcome> {
        let ingested = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; hits.len()];
        let mut groups: Vec<Option<Arc<AckGroup>>> = vec![None; hits.len()];
        // An entry's documents share its origin: a refused one is traced back by it.
        let mut by_origin: HashMap<*const ObjectContext, usize> = HashMap::new();
        let mut docs = Vec::new();
        for (i, hit) in hits.iter().enumerate() {
            let origin = Arc::new(entry::origin(hit, &ingested, self.decoding.with_id));
            let group = AckGroup::new();
            let built: Vec<Doc> = match entry::replay(hit, &origin, self.decoding) {
                Err(why) => {
                    outcomes[i] = Some(Outcome::Unreplayable(why.0));
                    continue;
                }
                Ok(Replay::Document { index, id, source }) => vec![Doc::verbatim(
                    id.as_deref(),
                    &index,
                    &source,
                    origin.clone(),
                    group.token(),
                )],
                Ok(Replay::Decoded(records)) => records
                    .into_iter()
                    .map(|(n, offset, sub)| {
                        Doc::encode(n, origin.clone(), offset, sub, false, group.token())
                    })
                    .collect(),
            };
            if built.is_empty() {
                outcomes[i] = Some(Outcome::Dropped);
                continue;
            }
            by_origin.insert(Arc::as_ptr(&origin), i);
            groups[i] = Some(group);
            docs.extend(
                built
                    .into_iter()
                    .map(|d| if self.create { d.into_create() } else { d }),
            );
        }
        for chunk in chunks(docs, self.bulk) {
            for r in self.sink.deliver_returning_refused(chunk).await {
                if let Some(&i) = by_origin.get(&Arc::as_ptr(&r.doc.origin)) {
                    outcomes[i].get_or_insert(Outcome::Refused {
                        error_type: r.error_type,
                        reason: r.reason,
                    });
                }
            }
        }
        let mut done = Vec::with_capacity(hits.len());
        for (outcome, group) in outcomes.into_iter().zip(groups) {
            done.push(match (outcome, group) {
                (Some(o), _) => o,
                (None, Some(g)) => match g.wait().await.failed {
                    false => Outcome::Replayed,
                    true => Outcome::GaveUp,
                },
                (None, None) => Outcome::GaveUp,
            });
        }
        done
    }

    /// Deletes the entries that came back, rewrites those that stay dead (reason, mark), in one
    /// `_bulk` on the dead-letter index, then refreshes it for the next search.
    async fn settle(&self, hits: &[Hit], outcomes: &[Outcome]) -> anyhow::Result<()> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut body = BytesMut::new();
        let mut actions = 0;
        for (hit, outcome) in hits.iter().zip(outcomes) {
            let action = |op: &str| json!({op: {"_index": hit.index, "_id": hit.id}});
            let rewritten = match outcome {
                Outcome::Replayed | Outcome::Dropped => {
                    put_line(&mut body, &action("delete"));
                    actions += 1;
                    continue;
                }
                Outcome::GaveUp => continue,
                Outcome::Refused { error_type, reason } => {
                    let mut s = hit.source.clone();
                    let error = object_at(&mut s, "error");
                    error.insert("type".into(), error_type.clone().into());
                    error.insert("message".into(), reason.clone().into());
                    self.mark(s, &at, None)
                }
                Outcome::Unreplayable(why) => self.mark(hit.source.clone(), &at, Some(why)),
            };
            put_line(&mut body, &action("index"));
            put_line(&mut body, &Value::Object(rewritten));
            actions += 1;
        }
        if actions == 0 {
            return Ok(());
        }
        let body = body.freeze();
        self.sink.paced(actions, body.len()).await;
        self.upkeep_bulk(body).await?;
        let refresh = format!("/{}/_refresh", self.dead_letter_index);
        let reply = self.admin.post(&refresh, json!({})).await?;
        anyhow::ensure!(
            reply.is_success(),
            "refreshing {} failed: HTTP {}",
            self.dead_letter_index,
            reply.status
        );
        Ok(())
    }

    /// `f4a.replay`: this run's mark, when, how many replays so far, and why it cannot come
    /// back (none when the cluster refused it again: `error.*` says why).
    fn mark(
        &self,
        mut source: Map<String, Value>,
        at: &str,
        why: Option<&str>,
    ) -> Map<String, Value> {
        let f4a = object_at(&mut source, "f4a");
        let attempts = f4a
            .get("replay")
            .and_then(|r| r.get("attempts"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut replay = json!({"run": self.run_id, "at": at, "attempts": attempts + 1});
        if let Some(why) = why {
            replay["error"] = why.into();
        }
        f4a.insert("replay".into(), replay);
        source
    }

    /// One `_bulk` of deletes and rewrites, tried until every item is done (a delete of an entry
    /// already gone is done too).
    async fn upkeep_bulk(&self, body: Bytes) -> anyhow::Result<()> {
        let mut last = String::new();
        for attempt in 0..UPKEEP.attempts {
            if attempt > 0 {
                tokio::time::sleep(UPKEEP.delay(attempt)).await;
            }
            let reply = match self.cluster.bulk(body.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            if !(200..300).contains(&reply.status) {
                last = format!(
                    "HTTP {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
                continue;
            }
            let failed = answer["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| {
                    let (op, r) = item.as_object().and_then(|o| o.iter().next()).unzip();
                    let status = r.and_then(|r| r["status"].as_u64()).unwrap_or(0);
                    !((200..300).contains(&status)
                        || (op == Some(&"delete".to_string()) && status == 404))
                });
            match failed {
                None => return Ok(()),
                Some(item) => last = format!("an item failed: {item}"),
            }
        }
        anyhow::bail!(
            "updating the dead-letter index {} failed {} times, last: {last}; the documents sent are in \
             their indices, and the next run replays the entries left (overwriting)",
            self.dead_letter_index,
            UPKEEP.attempts
        )
    }
}

/// `docs` in requests of at most `max_docs` documents and about `max_bytes` bytes.
fn chunks(docs: Vec<Doc>, (max_docs, max_bytes): (usize, usize)) -> Vec<Vec<Doc>> {
    let mut out: Vec<Vec<Doc>> = Vec::new();
    let mut bytes = 0;
    for doc in docs {
        let full = out
            .last()
            .is_none_or(|c| c.len() >= max_docs.max(1) || bytes + doc.body.len() > max_bytes);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += doc.body.len();
        if let Some(c) = out.last_mut() {
            c.push(doc);
        }
    }
    out
}

fn put_line(buf: &mut BytesMut, v: &Value) {
    let _ = serde_json::to_writer(buf.writer(), v);
    buf.put_u8(b'\n');
}
