//! `f4a-indexer replay-dead-letters`: index the entries of `DEAD_LETTER_INDEX` again once their
//! cause is fixed (a mapping corrected, a template changed, a limit raised).
//!
//! | module | owns |
//! |---|---|
//! | this one | the flags (clap), the query they select, the dry run |
//! | `entry` | one entry read back: the document to send again, or why it cannot come back |
//! | `run` | the loop: a page of entries → the service's sink → delete or rewrite each entry |
//!
//! The dead-letter index itself is the state of a run: an entry is deleted only once its
//! document is accepted, and one that stays dead is rewritten with the new reason and this run's
//! mark (`f4a.replay.run`), which the query leaves out. So an interrupted run loses nothing, and
//! the next one continues with what is left; a document sent twice (accepted, then the run
//! stopped before its entry was deleted) overwrites itself under the same `_id`.
//! Exit codes: 0 every selected entry is back in its index, 1 anything else (entries still
//! dead, interrupted, failed), 2 bad flags or configuration.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::{json, Value};

use crate::backfill::{rfc3339, select};
use crate::config::Config;
use crate::progress::Progress;
use crate::sink::admin::ClusterAdmin;
use crate::tool;

mod entry;
mod run;

/// `f4a-indexer replay-dead-letters --help`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "f4a-indexer replay-dead-letters",
    about = "Index the entries of DEAD_LETTER_INDEX again, through the service's rate limiter and \
             sink: stage index entries with their original index, _id and document, stage decode \
             entries decoded again from their raw text. An entry is deleted once its document is \
             accepted; one refused again keeps its entry, with the new reason.",
    after_help = "TIME: RFC 3339 (2026-11-20T10:00:00Z), a date (2026-11-20, UTC) or a UTC date and \
                  time (2026-11-20T10:00). Exit codes: 0 every selected entry is back in its index, \
                  1 not all (still refused, cannot be replayed, interrupted), 2 bad flags or \
                  configuration. The cluster, rate and record settings come from the environment, \
                  as for the service."
)]
pub struct Args {
    /// Only entries dead-lettered at this time or later (their @timestamp).
    #[arg(long, value_name = "TIME", value_parser = since)]
    pub since: Option<DateTime<Utc>>,
    /// Only entries meant for this index (f4a.target_index; * and ? match any characters,
    /// one character). Repeat for several.
    #[arg(long = "index", value_name = "INDEX")]
    pub indices: Vec<String>,
    /// Only entries of this error type (error.type, e.g. mapper_parsing_exception,
    /// decode_error). Repeat for several.
    #[arg(long = "error-type", value_name = "TYPE")]
    pub error_types: Vec<String>,
    /// Entries read and sent at once.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
    /// Count the selected entries (by stage, error type, target index); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn since(s: &str) -> Result<DateTime<Utc>, String> {
    select::parse_time(s, false)
}

/// The subcommand; `args` are those after `replay-dead-letters`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match tool::parse_args::<Args>("f4a-indexer replay-dead-letters", args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let cfg = match tool::config(false) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    tool::run(
        "replay-dead-letters",
        cfg,
        move |cfg, shutdown| async move {
            if args.dry_run {
                return dry_run(&cfg, &args).await;
            }
            run::run(cfg, args, shutdown).await
        },
    )
}

impl Args {
    /// The filters of the flags, as the clauses of a bool query's `filter`.
    pub(crate) fn filters(&self) -> Vec<Value> {
        let mut filters = Vec::new();
        if let Some(t) = self.since {
            filters.push(json!({"range": {"@timestamp": {"gte": rfc3339(t)}}}));
        }
        if !self.indices.is_empty() {
            let should: Vec<Value> = self
                .indices
                .iter()
                .map(|i| match i.contains(['*', '?']) {
                    true => json!({"wildcard": {"f4a.target_index": {"value": i}}}),
                    false => json!({"term": {"f4a.target_index": i}}),
                })
                .collect();
            filters.push(json!({"bool": {"should": should, "minimum_should_match": 1}}));
        }
        if !self.error_types.is_empty() {
            filters.push(json!({"terms": {"error.type": self.error_types}}));
        }
        filters
    }

    /// The run's parameters, for the summary line.
    pub(crate) fn describe(&self, dead_letter_index: &str) -> Value {
        json!({
            "dead_letter_index": dead_letter_index,
            "since": self.since.map(rfc3339),
            "index": self.indices,
            "error_type": self.error_types,
        })
    }
}

/// The entries `filters` select and `run` has not marked (all of them for `None`).
pub(crate) fn query(filters: &[Value], run: Option<&str>) -> Value {
    let mut q = json!({"bool": {"filter": filters}});
    if let Some(run) = run {
        q["bool"]["must_not"] = json!([{"term": {"f4a.replay.run": run}}]);
    }
    q
}

/// How many entries `query` selects; 0 when there is no dead-letter index yet.
pub(crate) async fn count(
    admin: &dyn ClusterAdmin,
    index: &str,
    query: &Value,
) -> anyhow::Result<u64> {
    let reply = admin
        .post(&format!("/{index}/_count"), json!({"query": query}))
        .await?;
    if reply.status == 404 {
        return Ok(0);
    }
    anyhow::ensure!(
        reply.is_success(),
        "counting the entries of {index} failed: HTTP {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(reply.json()["count"].as_u64().unwrap_or(0))
}

/// `--dry-run`: the number of selected entries, one line per stage, error type and target
/// index on stdout, then the summary.
async fn dry_run(cfg: &Config, args: &Args) -> anyhow::Result<bool> {
    let wings = crate::pipeline::Wings::connect(cfg).await?;
    let index = &cfg.record.dead_letter_index;
    let query = query(&args.filters(), None);
    let progress = Progress::start("replay-dead-letters", "entries");
    let total = count(wings.admin.as_ref(), index, &query).await?;
    let c = &progress.counters;
    c.total.store(total, std::sync::atomic::Ordering::Relaxed);
    c.total_final
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let aggs = json!({
        "stage": {"terms": {"field": "f4a.stage", "size": 10}},
        "error_type": {"terms": {"field": "error.type", "size": 50}},
        "target_index": {"terms": {"field": "f4a.target_index", "size": 100}},
    });
    if total > 0 {
        let reply = wings
            .admin
            .post(
                &format!("/{index}/_search"),
                json!({"size": 0, "query": query, "aggs": aggs}),
            )
            .await?;
        // An index made without the worker's template may not have keyword fields to group by:
        // the count above still stands.
        if reply.is_success() {
            let body = reply.json();
            for name in ["stage", "error_type", "target_index"] {
                let buckets = body["aggregations"][name]["buckets"].as_array().cloned();
                for b in buckets.unwrap_or_default() {
                    println!("{}", json!({name: b["key"], "entries": b["doc_count"]}));
                }
            }
        }
    }
    let mut extra = args.describe(index);
    extra["dry_run"] = true.into();
    progress.finish("dry_run", extra).await;
    Ok(true)
}
