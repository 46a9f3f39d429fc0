//! Configuration: the single place where environment variables are read, defaulted and validated.
//!
//! Every variable is a public contract (see the README's configuration table). [`Config`] has one
//! section per wing ([`SourceConfig`], [`RecordConfig`], [`SinkConfig`], [`RateConfig`]) plus
//! [`TelemetryConfig`] and [`WorkerConfig`]; each section is read by its own function, and each
//! wing is built from its section. A bad value is reported as a [`ConfigError`] naming the
//! variable, the value and what is accepted, and so is a variable under the worker's prefixes
//! that it does not know ([`known`]); `main` turns either into exit code 2 before anything
//! connects anywhere. Secrets are never echoed back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod cluster;
mod connection;
mod env;
pub mod known;
mod limits;
mod sections;
#[cfg(test)]
mod tests;

pub use cluster::{
    glob_matches, index_glob, ClusterConfig, Codec, IndexMode, Numbers, RetentionConfig,
    SetupConfig, SetupMode,
};
use env::{err, Env};
pub use env::{ConfigError, IndexPattern};
pub use limits::{DropOp, DropRule, FieldPattern, LimitsConfig};
use sections::{fleet, otel_settings, rate, record, sink, source, worker};

/// How the worker authenticates to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum EsAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// The base64 "id:key" form that Kibana and the `_security/api_key` API hand out (given as
    /// `id:key`, it is encoded at start-up).
    ApiKey(String),
    /// AWS Signature V4 with credentials from the default AWS chain (task role, env, profile).
    SigV4(AwsSigning),
}

/// What SigV4 signs for: the scope's service and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSigning {
    pub service: AwsService,
    pub region: String,
}

/// `ES_AWS_SERVICE`: an Amazon OpenSearch Service domain (`es`) or OpenSearch Serverless (`aoss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    Es,
    Aoss,
}

impl AwsService {
    /// The signing name of the scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            AwsService::Es => "es",
            AwsService::Aoss => "aoss",
        }
    }
}

/// `ES_COMPRESSION`: how bulk bodies travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip`, fast level.
    Gzip,
    None,
}

/// `ES_DOCUMENT_ID`: whether documents carry their deterministic `_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentIds {
    /// Redelivery overwrites instead of duplicating.
    Deterministic,
    /// No `_id` in the action line (TIMESERIES and VECTOR Serverless collections refuse one); a
    /// redelivered message then duplicates its documents.
    None,
}

// Hand-written so a `{:?}` of the config can never print a secret.
impl std::fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EsAuth::None => write!(f, "None"),
            EsAuth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            EsAuth::ApiKey(_) => write!(f, "ApiKey(<redacted>)"),
            EsAuth::SigV4(s) => write!(f, "SigV4({}, {})", s.service.signing_name(), s.region),
        }
    }
}

/// OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`, or its per-signal variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelProtocol {
    HttpProtobuf,
    Grpc,
}

/// Which OpenTelemetry signals are exported, and how. `None` = not exported: no endpoint is set,
/// `OTEL_SDK_DISABLED=true`, or `OTEL_{TRACES,METRICS}_EXPORTER=none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OtelSettings {
    pub traces: Option<OtelProtocol>,
    pub metrics: Option<OtelProtocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The whole configuration, one section per part of the worker.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceConfig,
    pub record: RecordConfig,
    pub sink: SinkConfig,
    pub rate: RateConfig,
    /// `None`: no fleet budget (`FLEET_DOCS_PER_SEC` unset), each task has its own rate.
    pub fleet: Option<FleetConfig>,
    pub telemetry: TelemetryConfig,
    pub worker: WorkerConfig,
    /// What the worker manages in the cluster: index templates, retention.
    pub cluster: ClusterConfig,
}

/// One insert budget for the whole service, shared through a DynamoDB table (`FLEET_*`).
/// With it, [`RateConfig::docs_per_sec`] is the budget and each task sends at its share of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `FLEET_DOCS_PER_SEC`: documents per second for all tasks together.
    pub docs_per_sec: u32,
    /// `FLEET_TABLE`: the DynamoDB table of members (created if missing).
    pub table: String,
    /// `FLEET_MAX_TASKS`: most tasks that can run at once (rolling deployments included); the
    /// fallback share is `docs_per_sec / max_tasks`.
    pub max_tasks: u32,
    /// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
}

/// The queue and the AWS SDK (`SQS_*`, `AWS_*`).
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub queue_url: String,
    pub aws_region: Option<String>,
    /// `AWS_ENDPOINT_URL` (LocalStack); S3 then uses path-style addressing.
    pub aws_endpoint_url: Option<String>,
    /// Messages per receive, 1–10.
    pub max_messages: i32,
    /// Long-poll wait, 0–20 s.
    pub wait_time_seconds: i32,
    /// Set on receive, renewed by the heartbeat every third of it, caps the redelivery delay.
    pub visibility_timeout_seconds: i32,
}

impl SourceConfig {
    /// The queue's name, the last path segment of its URL (for logs and span attributes).
    pub fn queue_name(&self) -> &str {
        self.queue_url
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or(&self.queue_url)
    }
}

/// Records → documents (`ES_INDEX`, `DEAD_LETTER_INDEX`, `TIMESTAMP_FIELDS`, `MAX_RECORD_BYTES`).
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub index: IndexPattern,
    /// A plain name, no strftime items.
    pub dead_letter_index: String,
    /// Tried in order for `@timestamp`; dotted paths allowed.
    pub timestamp_fields: Vec<String>,
    /// Longest record; a longer one is dead-lettered with its head.
    pub max_record_bytes: usize,
    /// What is kept of each record (all off by default).
    pub limits: LimitsConfig,
    /// `ES_DOCUMENT_ID`.
    pub document_ids: DocumentIds,
}

/// The cluster and how batches reach it (`ES_*`, `BULK_*`, `RETRY_*`).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub es: EsConfig,
    pub bulk: BulkConfig,
    pub retry: RetryConfig,
}

/// The cluster connection (`ES_*` but `ES_INDEX` and `ES_DOCUMENT_ID`).
#[derive(Debug, Clone)]
pub struct EsConfig {
    /// `ES_URL`, or the Elasticsearch URL `ES_CLOUD_ID` names.
    pub url: String,
    pub auth: EsAuth,
    /// `ES_COMPRESSION` of bulk bodies.
    pub compression: Compression,
    /// PEM of a private CA that signed the cluster's certificate.
    pub ca_cert: Option<PathBuf>,
    pub tls_skip_verify: bool,
    /// Of one bulk request; a timeout is retried.
    pub request_timeout: Duration,
}

/// When a batch is sent, and how many are in flight (`BULK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkConfig {
    pub max_docs: usize,
    pub max_bytes: usize,
    /// Longest wait of a batch's oldest document.
    pub flush_interval: Duration,
    /// Bulk requests in flight at once.
    pub concurrency: usize,
}

/// Backoff of failed bulk requests and items (`RETRY_*`): doubling from `initial`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// The insert rate (`RATE_LIMIT_*`), built with named constructors:
/// `RateConfig::docs_per_sec(500).with_burst(50).adaptive(5)`, `RateConfig::unlimited()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// `None`: unlimited.
    pub docs_per_sec: Option<u32>,
    /// Token-bucket size in documents.
    pub burst: u32,
    /// Bulk body bytes per second; `None`: unlimited.
    pub bytes_per_sec: Option<u32>,
    /// Lowest effective rate the adaptive limiter may fall to; `None`: adaptive off.
    pub adaptive_floor: Option<u32>,
}

impl RateConfig {
    /// No limit at all.
    pub fn unlimited() -> RateConfig {
        RateConfig {
            docs_per_sec: None,
            burst: 1,
            bytes_per_sec: None,
            adaptive_floor: None,
        }
    }

    /// `rate` documents per second with a burst of one second of rate, not adaptive.
    pub fn docs_per_sec(rate: u32) -> RateConfig {
        RateConfig {
            docs_per_sec: (rate > 0).then_some(rate),
            burst: rate.max(1),
            ..RateConfig::unlimited()
        }
    }

    pub fn with_burst(self, burst: u32) -> RateConfig {
        RateConfig { burst, ..self }
    }

    pub fn with_bytes_per_sec(self, bytes: u32) -> RateConfig {
        RateConfig {
            bytes_per_sec: (bytes > 0).then_some(bytes),
            ..self
        }
    }

    /// Adaptive (AIMD) down to `floor` documents per second.
    pub fn adaptive(self, floor: u32) -> RateConfig {
        RateConfig {
            adaptive_floor: Some(floor),
            ..self
        }
    }
}

/// Logs and OpenTelemetry export (`LOG_FORMAT`, `OTEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub otel: OtelSettings,
}

/// The process around the wings (`MAX_IN_FLIGHT_MESSAGES`, `SHUTDOWN_TIMEOUT_SECS`, `HEALTH_ADDR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Messages processed at once; receiving pauses at this number.
    pub max_in_flight_messages: usize,
    /// After SIGTERM, time to finish messages in flight before returning them to the queue.
    pub shutdown_timeout: Duration,
    /// `None` when `HEALTH_ADDR=off`.
    pub health_addr: Option<SocketAddr>,
}

impl Config {
    /// Reads the process environment; unknown variables under the worker's prefixes are refused.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&process_vars())
    }

    /// [`Config::from_env`] for a tool that does not read the queue (`backfill` without
    /// `--via-queue`, `replay-dead-letters`): `SQS_QUEUE_URL` may be unset, and is then empty.
    pub fn from_env_without_queue() -> Result<Config, ConfigError> {
        let mut vars = process_vars();
        if !vars.iter().any(|(k, _)| k == "SQS_QUEUE_URL") {
            // Never used by such a tool; a valid URL so the source section reads as usual.
            vars.push(("SQS_QUEUE_URL".to_string(), NO_QUEUE.to_string()));
        }
        let mut cfg = Config::from_vars(&vars)?;
        if cfg.source.queue_url == NO_QUEUE {
            cfg.source.queue_url = String::new();
        }
        Ok(cfg)
    }

    /// Reads `vars` as the environment: the unknown-variable check, then every section.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Config, ConfigError> {
        known::check(vars)?;
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
    }

    /// Reads variables through `get`, without the unknown-variable check (that needs the whole
    /// list: [`Config::from_vars`]), so tests and tools can pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env { get: &get };
        let (source, sink, record) = (source(&env)?, sink(&env)?, record(&env)?);
        let cluster = cluster::cluster(&env, &record.index, &record.dead_letter_index)?;
        Ok(Config {
            source,
            sink,
            record,
            cluster,
            rate: rate(&env)?,
            fleet: fleet(&env)?,
            worker: worker(&env)?,
            telemetry: TelemetryConfig {
                log_format: match env.string("LOG_FORMAT").as_deref() {
                    None | Some("json") => LogFormat::Json,
                    Some("text") => LogFormat::Text,
                    Some(other) => {
                        return Err(err("LOG_FORMAT", Some(other), "is unknown", "json, text"))
                    }
                },
                otel: otel_settings(&env)?,
            },
        })
    }
}

/// Stands in for an unset `SQS_QUEUE_URL` while [`Config::from_env_without_queue`] reads.
const NO_QUEUE: &str = "http://unset.invalid/no-queue";

fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// `HEALTH_ADDR` alone, for the `healthcheck` subcommand (which needs nothing else).
pub fn health_addr(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    let env = Env { get };
    match env.string("HEALTH_ADDR").as_deref() {
        None => Ok(Some(SocketAddr::from(([0, 0, 0, 0], 8080)))),
        Some("off") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            err(
                "HEALTH_ADDR",
                Some(v),
                "is not a socket address",
                "host:port such as 0.0.0.0:8080, or off",
            )
        }),
    }
}
