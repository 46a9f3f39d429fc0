//! Validation of every section, and the unknown-variable rule.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;

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
    assert_eq!(c.sink.es.url, "http://localhost:9200");
    assert_eq!(c.rate.docs_per_sec, Some(1000));
    assert_eq!(c.rate.burst, 1000);
    assert_eq!(c.sink.bulk.max_docs, 500);
    assert_eq!(c.sink.bulk.max_bytes, 5 * 1024 * 1024);
    assert_eq!(c.sink.bulk.flush_interval, Duration::from_secs(1));
    assert_eq!(c.sink.bulk.concurrency, 2);
    assert_eq!(c.source.max_messages, 10);
    assert_eq!(c.source.wait_time_seconds, 20);
    assert_eq!(c.source.visibility_timeout_seconds, 300);
    assert_eq!(c.worker.max_in_flight_messages, 20);
    assert_eq!(c.worker.shutdown_timeout, Duration::from_secs(25));
    assert_eq!(c.record.dead_letter_index, "f4a-dead-letter");
    assert_eq!(
        c.record.timestamp_fields,
        ["@timestamp", "timestamp", "ts", "time", "eventTime"]
    );
    assert_eq!(c.telemetry.log_format, LogFormat::Json);
    assert_eq!(c.sink.es.auth, EsAuth::None);
    assert_eq!(c.source.queue_name(), "q");
    assert_eq!(
        c.worker.health_addr,
        Some(SocketAddr::from(([0, 0, 0, 0], 8080)))
    );
    assert_eq!(
        cfg(&[("HEALTH_ADDR", "off")]).unwrap().worker.health_addr,
        None
    );
    assert_eq!(
        cfg(&[("HEALTH_ADDR", "8080")]).unwrap_err().var,
        "HEALTH_ADDR"
    );
    assert_eq!(c.telemetry.otel, OtelSettings::default());
    let ts = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(c.record.index.render(ts), "f4a-2026.11.24");
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
    assert_eq!(c.telemetry.otel.traces, Some(OtelProtocol::HttpProtobuf));
    assert_eq!(c.telemetry.otel.metrics, Some(OtelProtocol::HttpProtobuf));
    let c = cfg(&[
        ep,
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ])
    .unwrap();
    assert_eq!(
        c.telemetry.otel,
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
        c.telemetry.otel,
        OtelSettings {
            traces: Some(OtelProtocol::HttpProtobuf),
            metrics: None
        }
    );
    assert_eq!(
        cfg(&[ep, ("OTEL_SDK_DISABLED", "true")])
            .unwrap()
            .telemetry
            .otel,
        OtelSettings::default()
    );
    let e = cfg(&[ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
    assert_eq!(e.var, "OTEL_EXPORTER_OTLP_PROTOCOL");
}

#[test]
fn rate_zero_is_unlimited_and_burst_defaults_to_rate() {
    let c = cfg(&[("RATE_LIMIT_DOCS_PER_SEC", "0")]).unwrap();
    assert_eq!(c.rate.docs_per_sec, None);
    let c = cfg(&[("RATE_LIMIT_DOCS_PER_SEC", "250")]).unwrap();
    assert_eq!(c.rate.burst, 250);
    let c = cfg(&[
        ("RATE_LIMIT_DOCS_PER_SEC", "250"),
        ("RATE_LIMIT_BURST", "50"),
    ])
    .unwrap();
    assert_eq!(c.rate.burst, 50);
    assert_eq!(c.rate.adaptive_floor, Some(2));
    assert_eq!(c.rate.bytes_per_sec, None);
    let c = cfg(&[
        ("RATE_LIMIT_ADAPTIVE", "false"),
        ("RATE_LIMIT_BYTES_PER_SEC", "1000000"),
    ])
    .unwrap();
    assert_eq!(c.rate.adaptive_floor, None);
    assert_eq!(c.rate.bytes_per_sec, Some(1_000_000));
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
    let c = cfg(&[("ES_API_KEY", "id:sekrit")]).unwrap();
    assert!(!format!("{c:?}").contains("sekrit"));
    let e = cfg(&[("ES_API_KEY", "sekrit")]).unwrap_err();
    assert_eq!(e.var, "ES_API_KEY");
    assert!(!e.to_string().contains("sekrit"), "{e}");
}

#[test]
fn unknown_variables_are_refused_before_anything_else() {
    let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let e = Config::from_vars(&vars(&[
        ("SQS_QUEUE_URL", "http://localhost:4566/000000000000/q"),
        ("RATE_LIMIT_DOC_PER_SEC", "100"),
    ]))
    .unwrap_err();
    assert_eq!(e.var, "RATE_LIMIT_DOC_PER_SEC");
    assert!(e.to_string().contains("RATE_LIMIT_DOCS_PER_SEC"), "{e}");
    let c = Config::from_vars(&vars(&[
        ("SQS_QUEUE_URL", "http://localhost:4566/000000000000/q"),
        ("RATE_LIMIT_DOCS_PER_SEC", "100"),
        ("AWS_REGION", "eu-west-1"),
    ]))
    .unwrap();
    assert_eq!(c.rate.docs_per_sec, Some(100));
    assert_eq!(c.source.aws_region.as_deref(), Some("eu-west-1"));
}

#[test]
fn every_variable_read_under_the_prefixes_is_known_and_documented() {
    let asked = std::cell::RefCell::new(Vec::<String>::new());
    let _ = Config::from_lookup(|k| {
        asked.borrow_mut().push(k.to_string());
        match k {
            "SQS_QUEUE_URL" => Some("http://localhost/q".into()),
            // Reach the variables read only in combination.
            "ES_USERNAME" | "ES_PASSWORD" => Some("x".into()),
            "FLEET_DOCS_PER_SEC" => Some("600".into()),
            "FLEET_TABLE" => Some("f4a-fleet".into()),
            "FLEET_MAX_TASKS" => Some("2".into()),
            _ => None,
        }
    });
    let asked = asked.into_inner();
    for k in asked
        .iter()
        .filter(|k| known::PREFIXES.iter().any(|p| k.starts_with(p)))
    {
        assert!(
            known::KNOWN.contains(&k.as_str()),
            "{k} is read but not in KNOWN"
        );
    }
    for k in known::KNOWN {
        assert!(
            asked.iter().any(|a| a == k),
            "{k} is in KNOWN but never read"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for k in known::KNOWN {
        assert!(
            readme.contains(&format!("`{k}`")),
            "{k} is not in README.md"
        );
    }
}

#[test]
fn es_auth_is_inferred_as_before_and_sigv4_from_an_aws_host() {
    let auth = |vars: &[(&str, &str)]| cfg(vars).map(|c| c.sink.es.auth);
    assert_eq!(auth(&[]).unwrap(), EsAuth::None);
    assert!(matches!(
        auth(&[("ES_API_KEY", "id:key")]).unwrap(),
        EsAuth::ApiKey(k) if k == "aWQ6a2V5"
    ));
    assert!(matches!(
        auth(&[("ES_USERNAME", "u"), ("ES_PASSWORD", "p")]).unwrap(),
        EsAuth::Basic { .. }
    ));
    assert_eq!(
        auth(&[(
            "ES_URL",
            "https://search-logs-x7.eu-west-1.es.amazonaws.com"
        )])
        .unwrap(),
        EsAuth::SigV4(AwsSigning {
            service: AwsService::Es,
            region: "eu-west-1".into()
        })
    );
    // The host's region wins over AWS_REGION (the queue may live elsewhere).
    assert_eq!(
        auth(&[
            ("ES_URL", "https://abc123.us-east-2.aoss.amazonaws.com"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap(),
        EsAuth::SigV4(AwsSigning {
            service: AwsService::Aoss,
            region: "us-east-2".into()
        })
    );
    // A proxy or VPC endpoint: service and region from the variables.
    assert_eq!(
        auth(&[
            ("ES_URL", "http://127.0.0.1:9321"),
            ("ES_AUTH", "sigv4"),
            ("ES_AWS_SERVICE", "aoss"),
            ("AWS_REGION", "eu-north-1"),
        ])
        .unwrap(),
        EsAuth::SigV4(AwsSigning {
            service: AwsService::Aoss,
            region: "eu-north-1".into()
        })
    );
    // Basic auth against a domain (fine-grained access control) stays basic.
    assert!(matches!(
        auth(&[
            ("ES_URL", "https://search-x.eu-west-1.es.amazonaws.com"),
            ("ES_USERNAME", "u"),
            ("ES_PASSWORD", "p"),
        ])
        .unwrap(),
        EsAuth::Basic { .. }
    ));
}

#[test]
fn es_auth_misconfigurations_name_the_variables() {
    let e = cfg(&[("ES_URL", "http://127.0.0.1:9321"), ("ES_AUTH", "sigv4")]).unwrap_err();
    assert_eq!(e.var, "AWS_REGION");
    assert!(e.problem.contains("ES_AUTH=sigv4"), "{e}");
    let e = cfg(&[
        ("ES_AUTH", "sigv4"),
        ("AWS_REGION", "us-east-1"),
        ("ES_USERNAME", "u"),
        ("ES_PASSWORD", "hunter2"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "ES_PASSWORD");
    assert!(
        e.problem.contains("sigv4") && !e.to_string().contains("hunter2"),
        "{e}"
    );
    let e = cfg(&[("ES_AUTH", "oauth")]).unwrap_err();
    assert_eq!(e.var, "ES_AUTH");
    assert!(e.accepted.contains("sigv4, basic, api_key, none"), "{e}");
    let e = cfg(&[("ES_AUTH", "basic")]).unwrap_err();
    assert_eq!(e.var, "ES_PASSWORD");
    let e = cfg(&[("ES_AUTH", "api_key")]).unwrap_err();
    assert_eq!(e.var, "ES_API_KEY");
    let e = cfg(&[("ES_AUTH", "none"), ("ES_API_KEY", "id:sekrit")]).unwrap_err();
    assert_eq!(e.var, "ES_API_KEY");
    assert!(!e.to_string().contains("sekrit"), "{e}");
    let e = cfg(&[("ES_AWS_SERVICE", "es")]).unwrap_err();
    assert_eq!(e.var, "ES_AWS_SERVICE");
    let e = cfg(&[
        ("ES_AUTH", "sigv4"),
        ("AWS_REGION", "us-east-1"),
        ("ES_AWS_SERVICE", "opensearch"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "ES_AWS_SERVICE");
    assert!(e.accepted.contains("es, aoss"), "{e}");
}

#[test]
fn cloud_id_compression_and_document_ids() {
    let c = cfg(&[(
        "ES_CLOUD_ID",
        "x:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==",
    ), ("ES_API_KEY", "id:key")])
    .unwrap();
    assert_eq!(
        c.sink.es.url,
        "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io"
    );
    let e = cfg(&[("ES_CLOUD_ID", "garbage")]).unwrap_err();
    assert_eq!(e.var, "ES_CLOUD_ID");
    let e = cfg(&[
        ("ES_CLOUD_ID", "x:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRhYmM="),
        ("ES_URL", "http://localhost:9200"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "ES_CLOUD_ID");
    assert_eq!(cfg(&[]).unwrap().sink.es.compression, Compression::Gzip);
    assert_eq!(
        cfg(&[("ES_COMPRESSION", "none")])
            .unwrap()
            .sink
            .es
            .compression,
        Compression::None
    );
    assert_eq!(
        cfg(&[("ES_COMPRESSION", "zstd")]).unwrap_err().var,
        "ES_COMPRESSION"
    );
    assert_eq!(
        cfg(&[]).unwrap().record.document_ids,
        DocumentIds::Deterministic
    );
    assert_eq!(
        cfg(&[("ES_DOCUMENT_ID", "none")])
            .unwrap()
            .record
            .document_ids,
        DocumentIds::None
    );
    assert_eq!(
        cfg(&[("ES_DOCUMENT_ID", "random")]).unwrap_err().var,
        "ES_DOCUMENT_ID"
    );
}

#[test]
fn fleet_budget_needs_table_and_max_tasks() {
    assert_eq!(cfg(&[]).unwrap().fleet, None);
    let e = cfg(&[("FLEET_DOCS_PER_SEC", "600")]).unwrap_err();
    assert_eq!(e.var, "FLEET_TABLE");
    let e = cfg(&[("FLEET_DOCS_PER_SEC", "600"), ("FLEET_TABLE", "f4a-fleet")]).unwrap_err();
    assert_eq!(e.var, "FLEET_MAX_TASKS");
    assert!(e.accepted.contains("MaximumPercent"), "{e}");
    let e = cfg(&[
        ("FLEET_DOCS_PER_SEC", "600"),
        ("FLEET_TABLE", "a b"),
        ("FLEET_MAX_TASKS", "4"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "FLEET_TABLE");
    let e = cfg(&[
        ("FLEET_DOCS_PER_SEC", "600"),
        ("FLEET_TABLE", "f4a-fleet"),
        ("FLEET_MAX_TASKS", "0"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "FLEET_MAX_TASKS");
    let e = cfg(&[
        ("FLEET_DOCS_PER_SEC", "600"),
        ("FLEET_TABLE", "f4a-fleet"),
        ("FLEET_MAX_TASKS", "4"),
        ("RATE_LIMIT_DOCS_PER_SEC", "100"),
    ])
    .unwrap_err();
    assert_eq!(e.var, "RATE_LIMIT_DOCS_PER_SEC");
}

#[test]
fn fleet_budget_is_the_limiter_ceiling_and_dynamodb_endpoint_wins() {
    let c = cfg(&[
        ("FLEET_DOCS_PER_SEC", "600"),
        ("FLEET_TABLE", "f4a-fleet"),
        ("FLEET_MAX_TASKS", "8"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9370"),
    ])
    .unwrap();
    let f = c.fleet.unwrap();
    assert_eq!((f.docs_per_sec, f.max_tasks), (600, 8));
    assert_eq!(f.table, "f4a-fleet");
    assert_eq!(f.endpoint_url.as_deref(), Some("http://127.0.0.1:9370"));
    assert_eq!(c.rate.docs_per_sec, Some(600));
    assert_eq!(c.rate.burst, 600);
    assert_eq!(c.rate.adaptive_floor, Some(6));
    let c = cfg(&[
        ("FLEET_DOCS_PER_SEC", "600"),
        ("FLEET_TABLE", "f4a-fleet"),
        ("FLEET_MAX_TASKS", "8"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
    ])
    .unwrap();
    assert_eq!(
        c.fleet.unwrap().endpoint_url.as_deref(),
        Some("http://127.0.0.1:4566")
    );
}
