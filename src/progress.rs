//! Progress of the one-shot tools (`backfill`, `replay-dead-letters`): a live `indicatif` bar
//! when stderr is a terminal, else one JSON line on stderr every [`EVERY`] (for logs of a task
//! or a CI job), and the final summary, one JSON line on stdout.
//!
//! The tools count what they settle here; documents are read from the worker's own counters
//! (`metrics`), so the numbers are those of the sink that did the work.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How often a JSON progress line is written when stderr is not a terminal.
pub const EVERY: Duration = Duration::from_secs(5);

/// The counters of one run; cheap to share.
#[derive(Debug, Default)]
pub struct Counters {
    /// Items (objects, dead-letter entries) settled, failed, known so far.
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub total: AtomicU64,
    /// The total is final (the listing or search has ended): an ETA can be given.
    pub total_final: AtomicBool,
    /// Bytes of the settled items and of all known ones (objects only).
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// A running progress display.
pub struct Progress {
    pub counters: Arc<Counters>,
    tool: &'static str,
    /// What an item is, for the lines ("objects", "entries").
    items: &'static str,
    started: Instant,
    docs_at_start: u64,
    stop: CancellationToken,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display (bar or lines) of `tool`, counting `items`.
    pub fn start(tool: &'static str, items: &'static str) -> Progress {
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let docs_at_start = docs();
        let started = Instant::now();
        let ticker = {
            let (counters, stop) = (counters.clone(), stop.clone());
            if std::io::stderr().is_terminal() {
                tokio::spawn(bar(counters, items, docs_at_start, stop))
            } else {
                tokio::spawn(lines(counters, tool, items, started, docs_at_start, stop))
            }
        };
        Progress {
            counters,
            tool,
            items,
            started,
            docs_at_start,
            stop,
            ticker: Some(ticker),
        }
    }

    /// Stops the display and prints the summary on stdout: the counters, `extra`'s fields and
    /// `outcome` (`complete`, `interrupted`, `failed`).
    pub async fn finish(mut self, outcome: &str, extra: Value) -> Value {
        self.stop.cancel();
        if let Some(t) = self.ticker.take() {
            let _ = t.await;
        }
        let mut line = snapshot(
            &self.counters,
            self.tool,
            self.items,
            self.started,
            self.docs_at_start,
        );
        line["summary"] = json!(outcome);
        if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), extra) {
            obj.remove("progress");
            obj.extend(extra);
        }
        println!("{line}");
        line
    }
}

/// Documents the sink settled in this process (indexed or dead-lettered).
fn docs() -> u64 {
    let t = metrics::get().totals();
    t.indexed + t.dead_lettered
}

fn snapshot(c: &Counters, tool: &str, items: &str, started: Instant, docs0: u64) -> Value {
    let elapsed = started.elapsed().as_secs_f64();
    let documents = docs().saturating_sub(docs0);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "progress": tool,
        items: get(&c.done),
        format!("{items}_failed"): get(&c.failed),
        format!("{items}_selected"): get(&c.total),
        "selection_complete": c.total_final.load(Ordering::Relaxed),
        "bytes": get(&c.bytes_done),
        "bytes_selected": get(&c.bytes_total),
        "documents": documents,
        "docs_per_sec": if elapsed > 0.0 { (documents as f64 / elapsed).round() } else { 0.0 },
        "elapsed_secs": (elapsed * 10.0).round() / 10.0,
    })
}

async fn lines(
    c: Arc<Counters>,
    tool: &'static str,
    items: &'static str,
    started: Instant,
    docs0: u64,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => eprintln!("{}", snapshot(&c, tool, items, started, docs0)),
        }
    }
}

async fn bar(c: Arc<Counters>, items: &'static str, docs0: u64, stop: CancellationToken) {
    let with_bytes = items == "objects";
    let style = if with_bytes {
        "{spinner} {elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {msg} ETA {eta}"
    } else {
        "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ETA {eta}"
    };
    let pb = ProgressBar::new(0);
    if let Ok(s) = ProgressStyle::with_template(style) {
        pb.set_style(s.progress_chars("=> "));
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (len, pos) = if with_bytes {
            (get(&c.bytes_total), get(&c.bytes_done))
        } else {
            (get(&c.total), get(&c.done))
        };
        pb.set_length(len.max(pos));
        pb.set_position(pos);
        let documents = docs().saturating_sub(docs0);
        let rate = documents as f64 / started.elapsed().as_secs_f64().max(0.001);
        let more = if c.total_final.load(Ordering::Relaxed) {
            ""
        } else {
            "+"
        };
        pb.set_message(format!(
            "{}/{}{more} {items}, {} failed, {documents} docs, {rate:.0} docs/s",
            get(&c.done),
            get(&c.total),
            get(&c.failed),
        ));
        tokio::select! {
            _ = stop.cancelled() => {
                pb.finish();
                return;
            }
            _ = tick.tick() => {}
        }
    }
}
