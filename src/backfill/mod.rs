//! `f4a-indexer backfill`: index a bucket's objects from a listing instead of notifications —
//! after a lost or rebuilt cluster, or for data that was never announced.
//!
//! | module | owns |
//! |---|---|
//! | this one | the flags (clap), the plan (where the listing starts, the checkpoint), dry run |
//! | `select` | an object's time (the key's Firehose date-hour, else LastModified), the range |
//! | `listing` | ListObjectsV2 page by page, and the selected objects of it |
//! | `checkpoint` | the last key up to which everything is settled: a file or an S3 object |
//! | `run` | indexing through the service's own reader, normalizer, ids, limiter, batcher and sink |
//! | `queue` | `--via-queue`: one S3-notification-shaped message per object to `SQS_QUEUE_URL` |
//!
//! Configuration of the cluster, rate and records comes from the environment (`config`) as for
//! the service; only what is particular to one run is a flag. Exit codes: 0 every selected
//! object settled, 1 anything else (interrupted, failed objects, a listing that failed), 2 bad
//! flags or configuration.

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;

use crate::config::Config;
use crate::progress::Progress;
use crate::source::aws;
use crate::tool;

mod checkpoint;
mod listing;
mod queue;
mod run;
pub mod select;

use checkpoint::{Checkpoint, Location, State};
use listing::{Listing, Selector};
use select::TimeRange;

/// `f4a-indexer backfill --help`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "f4a-indexer backfill",
    about = "Index the objects of a bucket (a listing instead of notifications), through the same \
             reader, ids, rate limiter and sink as the service; resumable from a checkpoint.",
    after_help = "TIME: RFC 3339 (2026-11-20T10:00:00Z), a date (2026-11-20, UTC) or a UTC date and time \
                  (2026-11-20T10:00). An object's time is the YYYY/MM/DD/HH/ in its key (Firehose), else its \
                  LastModified. Exit codes: 0 every selected object settled, 1 not all, 2 bad flags or configuration. \
                  The cluster, rate and record settings come from the environment, as for the service."
)]
pub struct Args {
    /// The bucket to list.
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// Only keys starting with this (default: the whole bucket).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,
    /// Objects of this time or later (default: no lower bound).
    #[arg(long, value_name = "TIME", value_parser = from_time)]
    pub from: Option<DateTime<Utc>>,
    /// Objects before this time; a date alone includes that whole day (default: no upper bound).
    #[arg(long, value_name = "TIME", value_parser = to_time)]
    pub to: Option<DateTime<Utc>>,
    /// Where the checkpoint is kept: a file path or s3://BUCKET/KEY
    /// [default: ./f4a-backfill-<BUCKET>.checkpoint].
    #[arg(long, value_name = "PATH|s3://BUCKET/KEY", value_parser = Location::parse)]
    pub checkpoint: Option<Location>,
    /// Objects indexed at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Send one notification per object to SQS_QUEUE_URL instead of indexing (the service does).
    #[arg(long)]
    pub via_queue: bool,
    /// List what would be done (objects, bytes), index nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn from_time(s: &str) -> Result<DateTime<Utc>, String> {
    select::parse_time(s, false)
}

fn to_time(s: &str) -> Result<DateTime<Utc>, String> {
    select::parse_time(s, true)
}

/// The subcommand; `args` are those after `backfill`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match tool::parse_args::<Args>("f4a-indexer backfill", args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from >= to {
            eprintln!(
                "f4a-indexer backfill: --to ({}) must be later than --from ({})",
                rfc3339(to),
                rfc3339(from)
            );
            return ExitCode::from(2);
        }
    }
    // The queue is only needed to send to it.
    let cfg = match tool::config(args.via_queue) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    tool::run("backfill", cfg, move |cfg, shutdown| async move {
        let plan = Plan::make(&cfg, &args).await?;
        if args.dry_run {
            return dry_run(plan).await;
        }
        if args.via_queue {
            return queue::run(&cfg, plan, shutdown).await;
        }
        run::run(cfg, plan, args.concurrency as usize, shutdown).await
    })
}

/// What a run does, worked out before it starts.
pub(crate) struct Plan {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) range: TimeRange,
    pub(crate) checkpoint: Checkpoint,
    /// The state the checkpoint will hold (its key updated as objects settle).
    pub(crate) state: State,
    /// The checkpoint this run continues after, if any.
    pub(crate) resumed_after: Option<String>,
    pub(crate) selector: Selector,
    /// A second selector over the same objects, for the totals of the progress display.
    pub(crate) counting: Option<Selector>,
}

impl Plan {
    async fn make(cfg: &Config, args: &Args) -> anyhow::Result<Plan> {
        let sdk = aws::sdk_config(&cfg.source).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(cfg.source.aws_endpoint_url.is_some())
                .build(),
        );
        let location = args
            .checkpoint
            .clone()
            .unwrap_or_else(|| Location::default_for(&args.bucket));
        let checkpoint = Checkpoint::new(location, s3.clone());
        let mut state = State {
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            from: args.from.map(rfc3339),
            to: args.to.map(rfc3339),
            last_key: String::new(),
        };
        let resumed_after = match checkpoint.load().await? {
            Some(saved) if saved.same_run(&state) => Some(saved.last_key),
            Some(saved) => {
                return Err(tool::Usage(format!(
                    "--checkpoint {}: holds a checkpoint of another run (bucket {}, prefix {:?}, from {:?}, to {:?}); \
                     remove it or name another --checkpoint",
                    checkpoint.location, saved.bucket, saved.prefix, saved.from, saved.to
                ))
                .into())
            }
            None => None,
        };
        let layout = Listing::first_key(&s3, &args.bucket, &args.prefix)
            .await?
            .is_some_and(|k| select::layout_under(&args.prefix, &k));
        // The later of the checkpoint and --from's first key.
        let from_key = args
            .from
            .filter(|_| layout)
            .map(|from| select::start_after(&args.prefix, from));
        let start = match (resumed_after.clone(), from_key) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(k) = &resumed_after {
            state.last_key = k.clone();
            tracing::info!(checkpoint = %checkpoint.location, after = %k, "continuing after the checkpoint");
        }
        let range = TimeRange {
            from: args.from,
            to: args.to,
        };
        let skip_key = match &checkpoint.location {
            Location::S3 { bucket, key } if *bucket == args.bucket => Some(key.clone()),
            _ => None,
        };
        let selector = |start: Option<String>| {
            Selector::new(
                Listing::new(s3.clone(), &args.bucket, &args.prefix, start),
                range,
                layout,
                skip_key.clone(),
            )
        };
        Ok(Plan {
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            range,
            selector: selector(start.clone()),
            counting: Some(selector(start)),
            checkpoint,
            state,
            resumed_after,
        })
    }

    /// The run's parameters, for the summary line.
    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "bucket": self.bucket,
            "prefix": self.prefix,
            "from": self.range.from.map(rfc3339),
            "to": self.range.to.map(rfc3339),
            "checkpoint": self.checkpoint.location.to_string(),
            "resumed_after": self.resumed_after,
        })
    }

    /// The end of an indexing or `--via-queue` run: after a complete one the checkpoint goes
    /// (nothing is left to resume); the summary line names the outcome, the run's parameters and
    /// `fields`. Returns `complete`.
    pub(crate) async fn conclude(
        &self,
        progress: Progress,
        complete: bool,
        stopped: bool,
        fields: Vec<(&'static str, serde_json::Value)>,
    ) -> bool {
        if complete {
            if let Err(e) = self.checkpoint.remove().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the checkpoint could not be removed"
                );
            }
        }
        let mut extra = self.describe();
        for (name, value) in fields {
            extra[name] = value;
        }
        let outcome = match (complete, stopped) {
            (true, _) => "complete",
            (false, true) => "interrupted",
            (false, false) => "incomplete",
        };
        progress.finish(outcome, extra).await;
        complete
    }
}

/// `--dry-run`: one line per selected object on stdout, then the summary.
async fn dry_run(mut plan: Plan) -> anyhow::Result<bool> {
    let progress = Progress::start("backfill", "objects");
    let c = progress.counters.clone();
    while let Some(o) = plan.selector.next().await? {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "{}",
            serde_json::json!({
                "key": o.key,
                "bytes": o.size,
                "time": select::object_time(&o.key, o.last_modified).map(|t| match t {
                    select::ObjectTime::KeyHour(h) => format!("key hour {}", rfc3339(h)),
                    select::ObjectTime::LastModified(t) => format!("last modified {}", rfc3339(t)),
                }),
            })
        );
        c.total.fetch_add(1, Relaxed);
        c.bytes_total.fetch_add(o.size, Relaxed);
    }
    c.total_final
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut extra = plan.describe();
    extra["dry_run"] = true.into();
    progress.finish("dry_run", extra).await;
    Ok(true)
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
