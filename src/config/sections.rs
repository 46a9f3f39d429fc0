//! Reading each section of the configuration from the environment: defaults, ranges, and the
//! rules between variables (a floor below the rate, a maximum backoff above the initial one).
//! The cluster's URL and authentication are read by [`cluster`].

use std::path::PathBuf;
use std::time::Duration;

use super::connection;
use super::env::{check_http_url, err, index_pattern, Env};
use super::{
    health_addr, BulkConfig, ConfigError, DocumentIds, EsConfig, FleetConfig, OtelProtocol,
    OtelSettings, RateConfig, RecordConfig, RetryConfig, SinkConfig, SourceConfig, WorkerConfig,
};

const MIB: usize = 1024 * 1024;

pub(super) fn source(env: &Env<'_>) -> Result<SourceConfig, ConfigError> {
    let queue_url = env
        .string("SQS_QUEUE_URL")
        .ok_or_else(|| err("SQS_QUEUE_URL", None, "is required", "an SQS queue URL"))?;
    if !queue_url.starts_with("http://") && !queue_url.starts_with("https://") {
        return Err(err(
            "SQS_QUEUE_URL",
            Some(&queue_url),
            "is not a URL",
            "https://sqs.<region>.amazonaws.com/<account>/<queue>",
        ));
    }
    let aws_endpoint_url = env.string("AWS_ENDPOINT_URL");
    if let Some(u) = &aws_endpoint_url {
        check_http_url("AWS_ENDPOINT_URL", u)?;
    }
    Ok(SourceConfig {
        queue_url,
        aws_region: env
            .string("AWS_REGION")
            .or_else(|| env.string("AWS_DEFAULT_REGION")),
        aws_endpoint_url,
        max_messages: env.uint("SQS_MAX_MESSAGES", 10, 1, 10)? as i32,
        wait_time_seconds: env.uint("SQS_WAIT_TIME_SECONDS", 20, 0, 20)? as i32,
        visibility_timeout_seconds: env.uint("SQS_VISIBILITY_TIMEOUT_SECONDS", 300, 2, 43_200)?
            as i32,
    })
}

pub(super) fn sink(env: &Env<'_>) -> Result<SinkConfig, ConfigError> {
    let connection::Cluster {
        url,
        auth,
        compression,
    } = connection::cluster(env)?;
    let ca_cert = env.string("ES_CA_CERT").map(PathBuf::from);
    if let Some(p) = &ca_cert {
        if !p.is_file() {
            return Err(err(
                "ES_CA_CERT",
                Some(&p.display().to_string()),
                "is not a readable file",
                "the path of a PEM file",
            ));
        }
    }
    let es = EsConfig {
        url,
        auth,
        compression,
        ca_cert,
        tls_skip_verify: env.bool("ES_TLS_SKIP_VERIFY", false)?,
        request_timeout: Duration::from_secs(env.uint("ES_REQUEST_TIMEOUT_SECS", 30, 1, 3600)?),
    };
    let bulk = BulkConfig {
        max_docs: env.uint("BULK_MAX_DOCS", 500, 1, 100_000)? as usize,
        max_bytes: env.uint("BULK_MAX_BYTES", 5 * MIB as u64, 1024, 512 * MIB as u64)? as usize,
        flush_interval: Duration::from_millis(env.uint(
            "BULK_FLUSH_INTERVAL_MS",
            1000,
            1,
            3_600_000,
        )?),
        concurrency: env.uint("BULK_CONCURRENCY", 2, 1, 64)? as usize,
    };
    let retry = RetryConfig {
        initial_backoff: Duration::from_millis(env.uint(
            "RETRY_INITIAL_BACKOFF_MS",
            500,
            1,
            600_000,
        )?),
        max_backoff: Duration::from_millis(env.uint(
            "RETRY_MAX_BACKOFF_MS",
            30_000,
            1,
            3_600_000,
        )?),
    };
    if retry.max_backoff < retry.initial_backoff {
        return Err(err(
            "RETRY_MAX_BACKOFF_MS",
            Some(&retry.max_backoff.as_millis().to_string()),
            "is smaller than RETRY_INITIAL_BACKOFF_MS",
            "a value >= RETRY_INITIAL_BACKOFF_MS",
        ));
    }
    Ok(SinkConfig { es, bulk, retry })
}

pub(super) fn record(env: &Env<'_>) -> Result<RecordConfig, ConfigError> {
    let index = index_pattern(
        "ES_INDEX",
        &env.string("ES_INDEX")
            .unwrap_or_else(|| "f4a-%Y.%m.%d".into()),
    )?;
    let dead_letter_index = env
        .string("DEAD_LETTER_INDEX")
        .unwrap_or_else(|| "f4a-dead-letter".into());
    if !index_pattern("DEAD_LETTER_INDEX", &dead_letter_index)?.is_literal() {
        return Err(err(
            "DEAD_LETTER_INDEX",
            Some(&dead_letter_index),
            "must not contain strftime patterns",
            "a plain lowercase index name",
        ));
    }
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
    Ok(RecordConfig {
        index,
        dead_letter_index,
        timestamp_fields,
        max_record_bytes: env.uint("MAX_RECORD_BYTES", MIB as u64, 1024, 256 * MIB as u64)?
            as usize,
        limits: super::limits::limits(env)?,
        document_ids: match env.string("ES_DOCUMENT_ID").as_deref() {
            None | Some("deterministic") => DocumentIds::Deterministic,
            Some("none") => DocumentIds::None,
            Some(other) => {
                return Err(err(
                    "ES_DOCUMENT_ID",
                    Some(other),
                    "is unknown",
                    "deterministic, none",
                ))
            }
        },
    })
}

pub(super) fn rate(env: &Env<'_>) -> Result<RateConfig, ConfigError> {
    // With a fleet budget the limiter's ceiling is the budget (a task alone may take all of it);
    // the burst and the adaptive floor are the fleet's, split by share like the rate.
    let fleet = env.uint("FLEET_DOCS_PER_SEC", 0, 0, u32::MAX as u64)? as u32;
    if fleet > 0 {
        if let Some(v) = env.string("RATE_LIMIT_DOCS_PER_SEC") {
            return Err(err(
                "RATE_LIMIT_DOCS_PER_SEC",
                Some(&v),
                "cannot be combined with FLEET_DOCS_PER_SEC",
                "unset it (FLEET_DOCS_PER_SEC is the rate of the whole fleet), or unset FLEET_DOCS_PER_SEC",
            ));
        }
    }
    let rate = if fleet > 0 {
        fleet
    } else {
        env.uint("RATE_LIMIT_DOCS_PER_SEC", 1000, 0, u32::MAX as u64)? as u32
    };
    let burst = env.uint("RATE_LIMIT_BURST", rate.max(1) as u64, 1, u32::MAX as u64)? as u32;
    let bytes = env.uint("RATE_LIMIT_BYTES_PER_SEC", 0, 0, u32::MAX as u64)? as u32;
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
    let limit = RateConfig::docs_per_sec(rate)
        .with_burst(burst)
        .with_bytes_per_sec(bytes);
    Ok(if adaptive {
        limit.adaptive(floor)
    } else {
        limit
    })
}

/// `FLEET_*`: `None` unless `FLEET_DOCS_PER_SEC` is set; the table and the maximum number of
/// tasks are then required.
pub(super) fn fleet(env: &Env<'_>) -> Result<Option<FleetConfig>, ConfigError> {
    let docs_per_sec = env.uint("FLEET_DOCS_PER_SEC", 0, 0, u32::MAX as u64)? as u32;
    if docs_per_sec == 0 {
        return Ok(None);
    }
    let table = env.string("FLEET_TABLE").ok_or_else(|| {
        err(
            "FLEET_TABLE",
            None,
            "is required with FLEET_DOCS_PER_SEC",
            "a DynamoDB table name (3-255 of a-z A-Z 0-9 _ - .)",
        )
    })?;
    let valid = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !valid {
        return Err(err(
            "FLEET_TABLE",
            Some(&table),
            "is not a DynamoDB table name",
            "3-255 of a-z A-Z 0-9 _ - .",
        ));
    }
    if env.string("FLEET_MAX_TASKS").is_none() {
        return Err(err(
            "FLEET_MAX_TASKS",
            None,
            "is required with FLEET_DOCS_PER_SEC",
            "an integer from 1 to 10000: the autoscaling maximum x MaximumPercent / 100",
        ));
    }
    let max_tasks = env.uint("FLEET_MAX_TASKS", 1, 1, 10_000)? as u32;
    if let Some(u) = env.string("AWS_ENDPOINT_URL_DYNAMODB") {
        check_http_url("AWS_ENDPOINT_URL_DYNAMODB", &u)?;
    }
    Ok(Some(FleetConfig {
        docs_per_sec,
        table,
        max_tasks,
        endpoint_url: env
            .string("AWS_ENDPOINT_URL_DYNAMODB")
            .or_else(|| env.string("AWS_ENDPOINT_URL")),
    }))
}

pub(super) fn worker(env: &Env<'_>) -> Result<WorkerConfig, ConfigError> {
    Ok(WorkerConfig {
        max_in_flight_messages: env.uint("MAX_IN_FLIGHT_MESSAGES", 20, 1, 10_000)? as usize,
        shutdown_timeout: Duration::from_secs(env.uint("SHUTDOWN_TIMEOUT_SECS", 25, 0, 3600)?),
        health_addr: health_addr(env.get)?,
    })
}

pub(super) fn otel_settings(env: &Env<'_>) -> Result<OtelSettings, ConfigError> {
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
