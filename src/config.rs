//! Configuration: the single place where environment variables are read, defaulted and validated.
//!
//! Every variable is a public contract (see the README's configuration table). A bad value is
//! reported as a [`ConfigError`] naming the variable, the value and what is accepted; `main` turns
//! it into exit code 2 before anything connects anywhere. Secrets are never echoed back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};

/// A configuration value that cannot be used. Displayed as one line an operator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}={value}: {problem} (accepted: {accepted})")]
pub struct ConfigError {
    pub var: &'static str,
    /// Already quoted, or `<unset>` / `<redacted>`.
    pub value: String,
    pub problem: String,
    pub accepted: String,
}

/// How the worker authenticates to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum EsAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// The base64 "id:key" form that Kibana and the `_security/api_key` API hand out.
    ApiKey(String),
}

// Hand-written so a `{:?}` of the config can never print a secret.
impl std::fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EsAuth::None => write!(f, "None"),
            EsAuth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            EsAuth::ApiKey(_) => write!(f, "ApiKey(<redacted>)"),
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

/// `ES_INDEX`: a strftime pattern rendered with each record's `@timestamp` (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    pattern: String,
    /// No `%` at all: the name is used as is and never formatted.
    literal: bool,
}

impl IndexPattern {
    pub fn render(&self, ts: chrono::DateTime<chrono::Utc>) -> String {
        if self.literal {
            self.pattern.clone()
        } else {
            // Validated at start-up, so formatting cannot fail (an invalid item would panic in Display).
            ts.format(&self.pattern).to_string()
        }
    }
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub sqs_queue_url: String,
    pub aws_region: Option<String>,
    pub aws_endpoint_url: Option<String>,

    pub es_url: String,
    pub es_auth: EsAuth,
    pub es_ca_cert: Option<PathBuf>,
    pub es_tls_skip_verify: bool,
    pub es_request_timeout: Duration,
    pub es_index: IndexPattern,
    pub dead_letter_index: String,

    /// Documents per second; `None` = unlimited.
    pub rate_limit_docs_per_sec: Option<u32>,
    pub rate_limit_burst: u32,
    /// Bulk body bytes per second; `None` = unlimited.
    pub rate_limit_bytes_per_sec: Option<u32>,
    /// Lowest effective rate the adaptive limiter may fall to; `None` = adaptive off.
    pub rate_limit_adaptive_floor: Option<u32>,

    pub bulk_max_docs: usize,
    pub bulk_max_bytes: usize,
    pub bulk_flush_interval: Duration,
    pub bulk_concurrency: usize,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,

    pub sqs_max_messages: i32,
    pub sqs_wait_time_seconds: i32,
    pub sqs_visibility_timeout_seconds: i32,
    pub max_in_flight_messages: usize,

    pub timestamp_fields: Vec<String>,
    pub max_record_bytes: usize,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// `None` when `HEALTH_ADDR=off`.
    pub health_addr: Option<SocketAddr>,
    pub otel: OtelSettings,
}

const MIB: usize = 1024 * 1024;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get`, so tests can pass a map instead of the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env { get: &get };

        let sqs_queue_url = env
            .string("SQS_QUEUE_URL")
            .ok_or_else(|| err("SQS_QUEUE_URL", None, "is required", "an SQS queue URL"))?;
        if !sqs_queue_url.starts_with("http://") && !sqs_queue_url.starts_with("https://") {
            return Err(err(
                "SQS_QUEUE_URL",
                Some(&sqs_queue_url),
                "is not a URL",
                "https://sqs.<region>.amazonaws.com/<account>/<queue>",
            ));
        }
        let aws_endpoint_url = env.string("AWS_ENDPOINT_URL");
        if let Some(u) = &aws_endpoint_url {
            check_http_url("AWS_ENDPOINT_URL", u)?;
        }

        let es_url = env
            .string("ES_URL")
            .unwrap_or_else(|| "http://localhost:9200".into());
        check_http_url("ES_URL", &es_url)?;
        let es_auth = match (
            env.string("ES_USERNAME"),
            env.string("ES_PASSWORD"),
            env.string("ES_API_KEY"),
        ) {
            (None, None, None) => EsAuth::None,
            (None, None, Some(key)) => EsAuth::ApiKey(key),
            (Some(username), Some(password), None) => EsAuth::Basic { username, password },
            (Some(_), None, _) => {
                return Err(err(
                    "ES_PASSWORD",
                    None,
                    "is required when ES_USERNAME is set",
                    "the password of ES_USERNAME",
                ))
            }
            (None, Some(_), _) => {
                return Err(err(
                    "ES_USERNAME",
                    None,
                    "is required when ES_PASSWORD is set",
                    "a user name",
                ))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(ConfigError {
                    var: "ES_API_KEY",
                    value: "<redacted>".into(),
                    problem: "cannot be combined with ES_USERNAME/ES_PASSWORD".into(),
                    accepted: "either ES_API_KEY or ES_USERNAME+ES_PASSWORD".into(),
                })
            }
        };
        let es_ca_cert = env.string("ES_CA_CERT").map(PathBuf::from);
        if let Some(p) = &es_ca_cert {
            if !p.is_file() {
                return Err(err(
                    "ES_CA_CERT",
                    Some(&p.display().to_string()),
                    "is not a readable file",
                    "the path of a PEM file",
                ));
            }
        }
        let es_tls_skip_verify = env.bool("ES_TLS_SKIP_VERIFY", false)?;
        let es_request_timeout =
            Duration::from_secs(env.uint("ES_REQUEST_TIMEOUT_SECS", 30, 1, 3600)?);

        let es_index = index_pattern(
            "ES_INDEX",
            &env.string("ES_INDEX")
                .unwrap_or_else(|| "f4a-%Y.%m.%d".into()),
        )?;
        let dead_letter_index = env
            .string("DEAD_LETTER_INDEX")
            .unwrap_or_else(|| "f4a-dead-letter".into());
        let dl = index_pattern("DEAD_LETTER_INDEX", &dead_letter_index)?;
        if !dl.literal {
            return Err(err(
                "DEAD_LETTER_INDEX",
                Some(&dead_letter_index),
                "must not contain strftime patterns",
                "a plain lowercase index name",
            ));
        }

        let rate = env.uint("RATE_LIMIT_DOCS_PER_SEC", 1000, 0, u32::MAX as u64)? as u32;
        let rate_limit_docs_per_sec = (rate > 0).then_some(rate);
        let rate_limit_burst =
            env.uint("RATE_LIMIT_BURST", rate.max(1) as u64, 1, u32::MAX as u64)? as u32;

        let bytes_rate = env.uint("RATE_LIMIT_BYTES_PER_SEC", 0, 0, u32::MAX as u64)? as u32;
        let rate_limit_bytes_per_sec = (bytes_rate > 0).then_some(bytes_rate);
        let adaptive = env.bool("RATE_LIMIT_ADAPTIVE", true)?;
        let floor = env.uint(
            "RATE_LIMIT_MIN_DOCS_PER_SEC",
            (rate / 100).max(1) as u64,
            1,
            u32::MAX as u64,
        )? as u32;
        if rate > 0 && floor > rate {
            return Err(err(
                "RATE_LIMIT_MIN_DOCS_PER_SEC",
                Some(&floor.to_string()),
                "is above RATE_LIMIT_DOCS_PER_SEC",
                "a value from 1 to RATE_LIMIT_DOCS_PER_SEC",
            ));
        }
        let rate_limit_adaptive_floor = adaptive.then_some(floor);

        let bulk_max_docs = env.uint("BULK_MAX_DOCS", 500, 1, 100_000)? as usize;
        let bulk_max_bytes =
            env.uint("BULK_MAX_BYTES", 5 * MIB as u64, 1024, 512 * MIB as u64)? as usize;
        let bulk_flush_interval =
            Duration::from_millis(env.uint("BULK_FLUSH_INTERVAL_MS", 1000, 1, 3_600_000)?);
        let bulk_concurrency = env.uint("BULK_CONCURRENCY", 2, 1, 64)? as usize;
        let retry_initial_backoff =
            Duration::from_millis(env.uint("RETRY_INITIAL_BACKOFF_MS", 500, 1, 600_000)?);
        let retry_max_backoff =
            Duration::from_millis(env.uint("RETRY_MAX_BACKOFF_MS", 30_000, 1, 3_600_000)?);
        if retry_max_backoff < retry_initial_backoff {
            return Err(err(
                "RETRY_MAX_BACKOFF_MS",
                Some(&retry_max_backoff.as_millis().to_string()),
                "is smaller than RETRY_INITIAL_BACKOFF_MS",
                "a value >= RETRY_INITIAL_BACKOFF_MS",
            ));
        }

        let sqs_max_messages = env.uint("SQS_MAX_MESSAGES", 10, 1, 10)? as i32;
        let sqs_wait_time_seconds = env.uint("SQS_WAIT_TIME_SECONDS", 20, 0, 20)? as i32;
        let sqs_visibility_timeout_seconds =
            env.uint("SQS_VISIBILITY_TIMEOUT_SECONDS", 300, 2, 43_200)? as i32;
        let max_in_flight_messages = env.uint("MAX_IN_FLIGHT_MESSAGES", 20, 1, 10_000)? as usize;

        let ts_raw = env
            .string("TIMESTAMP_FIELDS")
            .unwrap_or_else(|| "@timestamp,timestamp,ts,time,eventTime".into());
        let timestamp_fields: Vec<String> = ts_raw
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if timestamp_fields.is_empty() {
            return Err(err(
                "TIMESTAMP_FIELDS",
                Some(&ts_raw),
                "names no field",
                "a comma-separated list of field names",
            ));
        }
        let max_record_bytes =
            env.uint("MAX_RECORD_BYTES", MIB as u64, 1024, 256 * MIB as u64)? as usize;
        let shutdown_timeout =
            Duration::from_secs(env.uint("SHUTDOWN_TIMEOUT_SECS", 25, 0, 3600)?);
        let log_format = match env.string("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => return Err(err("LOG_FORMAT", Some(other), "is unknown", "json, text")),
        };

        let health_addr = health_addr(&get)?;
        let otel = otel_settings(&env)?;

        Ok(Config {
            sqs_queue_url,
            aws_region: env
                .string("AWS_REGION")
                .or_else(|| env.string("AWS_DEFAULT_REGION")),
            aws_endpoint_url,
            es_url,
            es_auth,
            es_ca_cert,
            es_tls_skip_verify,
            es_request_timeout,
            es_index,
            dead_letter_index,
            rate_limit_docs_per_sec,
            rate_limit_burst,
            rate_limit_bytes_per_sec,
            rate_limit_adaptive_floor,
            bulk_max_docs,
            bulk_max_bytes,
            bulk_flush_interval,
            bulk_concurrency,
            retry_initial_backoff,
            retry_max_backoff,
            sqs_max_messages,
            sqs_wait_time_seconds,
            sqs_visibility_timeout_seconds,
            max_in_flight_messages,
            timestamp_fields,
            max_record_bytes,
            shutdown_timeout,
            log_format,
            health_addr,
            otel,
        })
    }

    /// The queue's name, the last path segment of its URL (for logs and span attributes).
    pub fn queue_name(&self) -> &str {
        self.sqs_queue_url
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or(&self.sqs_queue_url)
    }
}

fn otel_settings(env: &Env<'_>) -> Result<OtelSettings, ConfigError> {
    if env.bool("OTEL_SDK_DISABLED", false)? {
        return Ok(OtelSettings::default());
    }
    let signal = |name: &'static str,
                  endpoint: &'static str,
                  protocol: &'static str,
                  exporter: &'static str| {
        if env.string(exporter).as_deref() == Some("none") {
            return Ok(None);
        }
        if env.string(endpoint).is_none() && env.string("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return Ok(None);
        }
        let (var, value) = match env.string(protocol) {
            Some(v) => (protocol, Some(v)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                env.string("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        match value.as_deref() {
            None | Some("http/protobuf") => Ok(Some(OtelProtocol::HttpProtobuf)),
            Some("grpc") => Ok(Some(OtelProtocol::Grpc)),
            Some(other) => Err(err(
                var,
                Some(other),
                &format!("is not supported for {name}"),
                "http/protobuf, grpc",
            )),
        }
    };
    Ok(OtelSettings {
        traces: signal(
            "traces",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_TRACES_EXPORTER",
        )?,
        metrics: signal(
            "metrics",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_METRICS_EXPORTER",
        )?,
    })
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

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// An unset or empty variable counts as unset: ECS task definitions often carry "" for "default".
    fn string(&self, var: &str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn uint(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.string(var) else {
            return Ok(default);
        };
        let accepted = format!("an integer from {min} to {max}");
        let n: u64 = raw
            .parse()
            .map_err(|_| err(var, Some(&raw), "is not a whole number", &accepted))?;
        if n < min || n > max {
            return Err(err(var, Some(&raw), "is out of range", &accepted));
        }
        Ok(n)
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.string(var).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(err(
                var,
                Some(other),
                "is not a boolean",
                "true, false, 1, 0, yes, no",
            )),
        }
    }
}

fn err(var: &'static str, value: Option<&str>, problem: &str, accepted: &str) -> ConfigError {
    ConfigError {
        var,
        value: value.map_or_else(|| "<unset>".to_string(), |v| format!("{v:?}")),
        problem: problem.to_string(),
        accepted: accepted.to_string(),
    }
}

fn check_http_url(var: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() > "https://".len();
    if ok {
        Ok(())
    } else {
        Err(err(
            var,
            Some(value),
            "is not an http(s) URL",
            "http://host:port or https://host:port",
        ))
    }
}

/// Validates an index name or strftime pattern: every `%` item must be known (chrono panics while
/// formatting an unknown one) and the rendered name must be a legal Elasticsearch index name.
fn index_pattern(var: &'static str, pattern: &str) -> Result<IndexPattern, ConfigError> {
    let accepted = "a lowercase index name, optionally with strftime items such as %Y %m %d %H";
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(err(
            var,
            Some(pattern),
            "has an invalid strftime item",
            accepted,
        ));
    }
    let literal = !pattern.contains('%');
    let sample = if literal {
        pattern.to_string()
    } else {
        chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
            .format(pattern)
            .to_string()
    };
    let illegal = |c: char| {
        c.is_uppercase()
            || matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
            )
    };
    if sample.is_empty()
        || sample.len() > 255
        || sample.starts_with(['-', '_', '+', '.'])
        || sample.chars().any(illegal)
    {
        return Err(err(
            var,
            Some(pattern),
            "is not a valid index name",
            accepted,
        ));
    }
    Ok(IndexPattern {
        pattern: pattern.to_string(),
        literal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("SQS_QUEUE_URL".into())
            .or_insert_with(|| "http://localhost:4566/000000000000/q".into());
        Config::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.es_url, "http://localhost:9200");
        assert_eq!(c.rate_limit_docs_per_sec, Some(1000));
        assert_eq!(c.rate_limit_burst, 1000);
        assert_eq!(c.bulk_max_docs, 500);
        assert_eq!(c.bulk_max_bytes, 5 * MIB);
        assert_eq!(c.bulk_flush_interval, Duration::from_secs(1));
        assert_eq!(c.bulk_concurrency, 2);
        assert_eq!(c.sqs_max_messages, 10);
        assert_eq!(c.sqs_wait_time_seconds, 20);
        assert_eq!(c.sqs_visibility_timeout_seconds, 300);
        assert_eq!(c.max_in_flight_messages, 20);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(c.dead_letter_index, "f4a-dead-letter");
        assert_eq!(
            c.timestamp_fields,
            ["@timestamp", "timestamp", "ts", "time", "eventTime"]
        );
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.es_auth, EsAuth::None);
        assert_eq!(c.queue_name(), "q");
        assert_eq!(c.health_addr, Some(SocketAddr::from(([0, 0, 0, 0], 8080))));
        assert_eq!(cfg(&[("HEALTH_ADDR", "off")]).unwrap().health_addr, None);
        assert_eq!(
            cfg(&[("HEALTH_ADDR", "8080")]).unwrap_err().var,
            "HEALTH_ADDR"
        );
        assert_eq!(c.otel, OtelSettings::default());
        let ts = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(c.es_index.render(ts), "f4a-2026.11.24");
    }

    #[test]
    fn missing_queue_url_names_variable() {
        let e = Config::from_lookup(|_| None).unwrap_err();
        assert_eq!(e.var, "SQS_QUEUE_URL");
        assert!(e.to_string().contains("SQS_QUEUE_URL=<unset>"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_variable_and_range() {
        let e = cfg(&[("SQS_MAX_MESSAGES", "11")]).unwrap_err();
        assert_eq!(e.var, "SQS_MAX_MESSAGES");
        assert!(e.to_string().contains("from 1 to 10"), "{e}");
        let e = cfg(&[("SQS_WAIT_TIME_SECONDS", "abc")]).unwrap_err();
        assert_eq!(e.var, "SQS_WAIT_TIME_SECONDS");
        let e = cfg(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert!(e.to_string().contains("json, text"), "{e}");
        let e = cfg(&[("ES_URL", "localhost:9200")]).unwrap_err();
        assert_eq!(e.var, "ES_URL");
    }

    #[test]
    fn otel_settings_follow_the_standard_variables() {
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let c = cfg(&[ep]).unwrap();
        assert_eq!(c.otel.traces, Some(OtelProtocol::HttpProtobuf));
        assert_eq!(c.otel.metrics, Some(OtelProtocol::HttpProtobuf));
        let c = cfg(&[
            ep,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(
            c.otel,
            OtelSettings {
                traces: Some(OtelProtocol::Grpc),
                metrics: None
            }
        );
        let c = cfg(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        )])
        .unwrap();
        assert_eq!(
            c.otel,
            OtelSettings {
                traces: Some(OtelProtocol::HttpProtobuf),
                metrics: None
            }
        );
        assert_eq!(
            cfg(&[ep, ("OTEL_SDK_DISABLED", "true")]).unwrap().otel,
            OtelSettings::default()
        );
        let e = cfg(&[ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert_eq!(e.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
    }

    #[test]
    fn rate_zero_is_unlimited_and_burst_defaults_to_rate() {
        let c = cfg(&[("RATE_LIMIT_DOCS_PER_SEC", "0")]).unwrap();
        assert_eq!(c.rate_limit_docs_per_sec, None);
        let c = cfg(&[("RATE_LIMIT_DOCS_PER_SEC", "250")]).unwrap();
        assert_eq!(c.rate_limit_burst, 250);
        let c = cfg(&[
            ("RATE_LIMIT_DOCS_PER_SEC", "250"),
            ("RATE_LIMIT_BURST", "50"),
        ])
        .unwrap();
        assert_eq!(c.rate_limit_burst, 50);
        assert_eq!(c.rate_limit_adaptive_floor, Some(2));
        assert_eq!(c.rate_limit_bytes_per_sec, None);
        let c = cfg(&[
            ("RATE_LIMIT_ADAPTIVE", "false"),
            ("RATE_LIMIT_BYTES_PER_SEC", "1000000"),
        ])
        .unwrap();
        assert_eq!(c.rate_limit_adaptive_floor, None);
        assert_eq!(c.rate_limit_bytes_per_sec, Some(1_000_000));
        let e = cfg(&[
            ("RATE_LIMIT_DOCS_PER_SEC", "100"),
            ("RATE_LIMIT_MIN_DOCS_PER_SEC", "200"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "RATE_LIMIT_MIN_DOCS_PER_SEC");
    }

    #[test]
    fn index_patterns() {
        assert!(cfg(&[("ES_INDEX", "logs")]).is_ok());
        assert!(cfg(&[("ES_INDEX", "logs-%Y-%m")]).is_ok());
        assert_eq!(cfg(&[("ES_INDEX", "logs-%Q")]).unwrap_err().var, "ES_INDEX");
        assert_eq!(cfg(&[("ES_INDEX", "Logs")]).unwrap_err().var, "ES_INDEX");
        assert_eq!(
            cfg(&[("DEAD_LETTER_INDEX", "dl-%Y")]).unwrap_err().var,
            "DEAD_LETTER_INDEX"
        );
    }

    #[test]
    fn auth_combinations_and_secrets_never_echoed() {
        let c = cfg(&[("ES_USERNAME", "u"), ("ES_PASSWORD", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = cfg(&[("ES_USERNAME", "u")]).unwrap_err();
        assert_eq!(e.var, "ES_PASSWORD");
        let e = cfg(&[
            ("ES_USERNAME", "u"),
            ("ES_PASSWORD", "hunter2"),
            ("ES_API_KEY", "sekrit"),
        ])
        .unwrap_err();
        assert!(!e.to_string().contains("sekrit") && !e.to_string().contains("hunter2"));
        let c = cfg(&[("ES_API_KEY", "sekrit")]).unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
