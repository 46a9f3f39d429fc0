//! f4a-indexer: S3 objects announced on SQS, indexed into Elasticsearch at a rate the cluster
//! can take.
//!
//! One module per pipeline stage, in the order data flows through them:
//!
//! | stage | module | owns |
//! |---|---|---|
//! | notification | [`notification`] | SQS body → objects (S3 event, SNS, EventBridge) |
//! | object reader | [`object_reader`] | GetObject as a stream |
//! | record | [`record`] | bytes → documents, pure: decompress, frame, decode (fast and tree paths), normalize (`@timestamp`, provenance, collision rule, `_id`, index), dead-letter entries |
//! | sink | [`sink`] | [`sink::Doc`] encoding, batcher, rate limiter, bulk delivery, the pure retry decision, the Elasticsearch client behind [`sink::BulkClient`] |
//! | acknowledger | [`acknowledger`] | messages in flight: heartbeat, delete/release |
//!
//! Above them, importing only downward: [`pipeline`] builds the stages, receives with
//! backpressure and owns shutdown; [`message`] is one SQS message's lifecycle (its
//! `MessageWorker`); [`object`] runs one object's records through the stages (its
//! `ObjectIndexer`); [`ack`] holds the no-loss rule (ack groups and tokens). [`config`] is the only
//! place that reads the environment; [`telemetry`] sets up logs and traces; [`health`] serves
//! `/healthz` and `/readyz`; [`metrics`] names every instrument; [`backoff`] is the shared retry
//! delay.

pub mod ack;
pub mod acknowledger;
pub mod backoff;
pub mod config;
pub mod health;
pub mod message;
pub mod metrics;
pub mod notification;
pub mod object;
pub mod object_reader;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod telemetry;
