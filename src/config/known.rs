//! The worker's own variables, and the start-up check that refuses a variable under its
//! prefixes that it does not know: a typo (`RATE_LIMIT_DOC_PER_SEC=100`) must stop the worker,
//! never let it run on a default against a small cluster.

use super::env::ConfigError;

/// Prefixes the worker owns: every variable starting with one of them must be in [`KNOWN`].
pub const PREFIXES: &[&str] = &[
    "ES_",
    "SQS_",
    "BULK_",
    "RATE_LIMIT_",
    "RETRY_",
    "DEAD_LETTER_",
    "MAX_",
    "HEALTH_",
    "SHUTDOWN_",
    "TIMESTAMP_",
    "FIELDS_",
    "DROP_",
    "SAMPLE_",
    "RETENTION_",
    "FLEET_",
];

/// Every variable under [`PREFIXES`] that the configuration reads (a unit test keeps the two in
/// step, another checks that the README documents each).
pub const KNOWN: &[&str] = &[
    "SQS_QUEUE_URL",
    "SQS_MAX_MESSAGES",
    "SQS_WAIT_TIME_SECONDS",
    "SQS_VISIBILITY_TIMEOUT_SECONDS",
    "MAX_IN_FLIGHT_MESSAGES",
    "ES_URL",
    "ES_CLOUD_ID",
    "ES_AUTH",
    "ES_AWS_SERVICE",
    "ES_COMPRESSION",
    "ES_DOCUMENT_ID",
    "ES_USERNAME",
    "ES_PASSWORD",
    "ES_API_KEY",
    "ES_CA_CERT",
    "ES_TLS_SKIP_VERIFY",
    "ES_REQUEST_TIMEOUT_SECS",
    "ES_INDEX",
    "DEAD_LETTER_INDEX",
    "TIMESTAMP_FIELDS",
    "MAX_RECORD_BYTES",
    "RATE_LIMIT_DOCS_PER_SEC",
    "RATE_LIMIT_BURST",
    "RATE_LIMIT_BYTES_PER_SEC",
    "RATE_LIMIT_ADAPTIVE",
    "RATE_LIMIT_MIN_DOCS_PER_SEC",
    "BULK_MAX_DOCS",
    "BULK_MAX_BYTES",
    "BULK_FLUSH_INTERVAL_MS",
    "BULK_CONCURRENCY",
    "RETRY_INITIAL_BACKOFF_MS",
    "RETRY_MAX_BACKOFF_MS",
    "SHUTDOWN_TIMEOUT_SECS",
    "HEALTH_ADDR",
    // Item limits (config::limits).
    "FIELDS_INCLUDE",
    "FIELDS_EXCLUDE",
    "DROP_WHERE",
    "SAMPLE_PERCENT",
    "MAX_FIELDS_PER_DOCUMENT",
    "MAX_FIELDS_PER_INDEX",
    "MAX_DEPTH",
    "MAX_STRING_BYTES",
    // Index templates and retention (config::cluster).
    "ES_SETUP",
    "ES_INDEX_MODE",
    "ES_INDEX_TEMPLATE_FILE",
    "ES_INDEX_SHARDS",
    "ES_INDEX_REPLICAS",
    "ES_INDEX_REFRESH_INTERVAL",
    "ES_INDEX_CODEC",
    "ES_INDEX_NUMBERS",
    "ES_INDEX_TOTAL_FIELDS_LIMIT",
    "ES_INDEX_IGNORE_ABOVE",
    "ES_ILM_POLICY",
    "RETENTION_DAYS",
    "DEAD_LETTER_RETENTION_DAYS",
    "RETENTION_DRY_RUN",
    "RETENTION_MAX_DELETES_PER_RUN",
    "FLEET_DOCS_PER_SEC",
    "FLEET_TABLE",
    "FLEET_MAX_TASKS",
];

/// The first variable (in name order) under the worker's prefixes that it does not know, as an
/// error naming the closest known one. Empty variables count as unset, as everywhere: they
/// change nothing, spelled right or not. The value is never echoed (a misspelt `ES_PASWORD` holds
/// a secret).
pub fn check(vars: &[(String, String)]) -> Result<(), ConfigError> {
    let mut unknown: Vec<&str> = vars
        .iter()
        .filter(|(name, value)| {
            !value.trim().is_empty()
                && PREFIXES.iter().any(|p| name.starts_with(p))
                && !KNOWN.contains(&name.as_str())
        })
        .map(|(name, _)| name.as_str())
        .collect();
    unknown.sort_unstable();
    let Some(name) = unknown.first() else {
        return Ok(());
    };
    let closest = closest(name);
    let prefix = PREFIXES
        .iter()
        .filter(|p| name.starts_with(**p))
        .max_by_key(|p| p.len())
        .copied()
        .unwrap_or_default();
    let siblings: Vec<&str> = KNOWN
        .iter()
        .copied()
        .filter(|k| k.starts_with(prefix))
        .collect();
    Err(ConfigError {
        var: name.to_string(),
        value: "<redacted>".into(),
        problem: format!("is not a variable of f4a-indexer; did you mean {closest}?"),
        accepted: format!(
            "the variables in README.md's configuration table; under {prefix}: {}",
            siblings.join(", ")
        ),
    })
}

/// The known variable nearest to `name` by edit distance.
fn closest(name: &str) -> &'static str {
    KNOWN
        .iter()
        .copied()
        .min_by_key(|k| strsim::levenshtein(name, k))
        .unwrap_or(KNOWN[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_typo_names_the_closest_variable_and_never_the_value() {
        let e = check(&vars(&[("RATE_LIMIT_DOC_PER_SEC", "100")])).unwrap_err();
        assert_eq!(e.var, "RATE_LIMIT_DOC_PER_SEC");
        assert!(
            e.problem.contains("did you mean RATE_LIMIT_DOCS_PER_SEC?"),
            "{e}"
        );
        assert!(e.accepted.contains("RATE_LIMIT_BURST"), "{e}");
        let e = check(&vars(&[("ES_PASWORD", "hunter2")])).unwrap_err();
        assert!(e.to_string().contains("did you mean ES_PASSWORD?"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = check(&vars(&[("SQS_QUEUE_ULR", "http://x/q")])).unwrap_err();
        assert!(e.to_string().contains("SQS_QUEUE_URL"), "{e}");
    }

    #[test]
    fn known_foreign_and_empty_variables_pass() {
        let all: Vec<(&str, &str)> = KNOWN.iter().map(|k| (*k, "1")).collect();
        assert_eq!(check(&vars(&all)), Ok(()));
        let foreign = [
            ("AWS_REGION", "x"),
            ("OTEL_SERVICE_NAME", "x"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("ECS_CONTAINER_METADATA_URI_V4", "x"),
            ("MALLOC_ARENA_MAX", "2"),
            ("HOME", "/"),
            ("BULK_MAX_DOC", ""),
        ];
        assert_eq!(check(&vars(&foreign)), Ok(()));
    }

    #[test]
    fn every_known_variable_is_under_a_prefix() {
        for k in KNOWN {
            assert!(PREFIXES.iter().any(|p| k.starts_with(p)), "{k}");
        }
    }
}
