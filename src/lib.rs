//! f4a-indexer: S3 objects announced on SQS, indexed into Elasticsearch at a rate the cluster
//! can take.
//!
//! The data path is three wings, each with a small trait at the door to the outside system it
//! talks to and an in-memory fake beside the real implementation; a thin top drives them and
//! only imports downward:
//!
//! ```text
//!  pipeline ─► message ─► object                                    (the top)
//!     │           │          │
//!  source/ ──────────► record/ ──────────► sink/                     (the wings)
//!  Queue: SqsQueue      pure: bytes →       BulkClient: EsClient
//!  ObjectStore: S3Store documents            (memory::MemoryCluster)
//!  (memory::*)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`pipeline`] | builds the wings from [`config::Config`] ([`pipeline::Wings`]); the receive loop with its slots; the shutdown drain |
//! | `message` | one message: parse → objects → wait for its ack group → delete or release |
//! | `object` | one object: open → blocking reader → documents into the batcher's channel |
//! | [`ack`] | ack groups and tokens: the no-loss rule (a dropped token is a failure) |
//! | [`source`] | the [`source::Queue`] and [`source::ObjectStore`] traits; SQS, S3, notifications, messages in flight (heartbeat, release), in-memory fakes |
//! | [`record`] | bytes → documents, pure and synchronous: decompress, frame, decode, normalize, item limits, `_id` and index, dead-letter entries |
//! | [`sink`] | the [`sink::BulkClient`] trait; document encoding, batcher, rate limiter, bulk delivery, the pure retry decision, the Elasticsearch client, an in-memory cluster; the cluster's upkeep behind [`sink::admin::ClusterAdmin`]: index templates, retention |
//!
//! Beside them, imported by all and importing none of them: [`config`], the only place that
//! reads the environment (one section per wing, and the start-up check that refuses unknown
//! variables under the worker's prefixes); `events`, every observable outcome (its log line and
//! its metric) named in one place; [`telemetry`] (plain-JSON logs and traces), `metrics` (every
//! instrument), [`health`] (`/healthz`, `/readyz`, `/status`), [`status`] (the live counters and
//! gauges behind `/status`) and `backoff` (retry delays and policies). [`top`] is the
//! `f4a-indexer top` client of `/status`. The one-shot tools: [`backfill`] (a bucket's
//! listing through the same data path) and `replay` (`replay-dead-letters`), sharing [`tool`]
//! (flags, runtime, signals, exit codes) and [`progress`] (bar or JSON lines, summary);
//! [`lifecycle`] prints the ILM/ISM policy equivalent to `RETENTION_DAYS`. `main.rs` parses the
//! command line and runs
//! [`pipeline::run`] (or [`check::run`], the preflight of `f4a-indexer check`). `docs/design.md` states the
//! delivery contract.

pub mod ack;
pub mod backfill;
pub(crate) mod backoff;
pub mod check;
pub mod config;
pub(crate) mod events;
pub mod health;
pub mod lifecycle;
pub(crate) mod message;
pub(crate) mod metrics;
pub(crate) mod object;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod replay;
pub mod sink;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod tool;
pub mod top;
