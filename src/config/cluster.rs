//! What the worker manages in the cluster itself: the index templates (`ES_SETUP` and the
//! `ES_INDEX_*` settings, `ES_INDEX_TEMPLATE_FILE`) and the retention of old daily indices
//! (`RETENTION_DAYS`, `DEAD_LETTER_RETENTION_DAYS`, `RETENTION_DRY_RUN`,
//! `RETENTION_MAX_DELETES_PER_RUN`).

use std::path::PathBuf;

use serde_json::Value;

use super::env::{err, Env};
use super::{ConfigError, IndexPattern};

/// `ES_SETUP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupMode {
    /// PUT the templates when missing or of another version.
    Ensure,
    /// Touch nothing.
    Off,
    /// PUT the templates at every start.
    Overwrite,
}

/// `ES_INDEX_CODEC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `best_compression`: smaller stores, a little more CPU on merges.
    BestCompression,
    /// The cluster's default codec (needed where `best_compression` cannot run: see README).
    Default,
}

/// `ES_INDEX_NUMBERS`: how the built-in template maps the numbers of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// Doc values only (`index: false`): aggregations, sorting and term/range queries still work
    /// (Elasticsearch 8.1+, OpenSearch 2.12+ search doc values), without the points index that
    /// made up about a sixth of the store in `make bench`'s footprint phase.
    DocValues,
    /// Doc values and the points index (the cluster's default): faster numeric filters on large
    /// indices; needed on clusters older than those versions.
    Indexed,
}

/// The index templates.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    pub mode: SetupMode,
    /// `ES_INDEX_TEMPLATE_FILE`, read and parsed at start-up: replaces the built-in body.
    pub template_file: Option<(PathBuf, serde_json::Map<String, Value>)>,
    pub shards: u32,
    /// `None`: 0 on a single data node, else 1 (asked of the cluster at start-up).
    pub replicas: Option<u32>,
    pub refresh_interval: String,
    pub codec: Codec,
    pub numbers: Numbers,
    pub total_fields_limit: u32,
    pub ignore_above: u32,
    /// `ES_ILM_POLICY` (Elasticsearch): the ILM policy named in the documents' template
    /// (`index.lifecycle.name`), for a cluster that deletes old indices itself.
    pub ilm_policy: Option<String>,
}

/// Deleting old daily indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `RETENTION_DAYS`; `None`: nothing is deleted.
    pub days: Option<u32>,
    /// `DEAD_LETTER_RETENTION_DAYS`: dead-letter entries older than this are deleted from
    /// `DEAD_LETTER_INDEX`; `None`: kept.
    pub dead_letter_days: Option<u32>,
    pub dry_run: bool,
    pub max_deletes_per_run: usize,
}

/// `ES_INDEX_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// Daily (or other dated) indices, op_type `index`: a redelivery overwrites.
    Index,
    /// `ES_INDEX` names a data stream, op_type `create`: a redelivery answers 409, counted as
    /// done (until a rollover: see README).
    DataStream,
}

/// The cluster-side sections.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub setup: SetupConfig,
    pub retention: RetentionConfig,
    pub index_mode: IndexMode,
}

pub(super) fn cluster(
    env: &Env<'_>,
    index: &IndexPattern,
    dead_letter_index: &str,
) -> Result<ClusterConfig, ConfigError> {
    let mode = match env.string("ES_SETUP").as_deref() {
        None | Some("ensure") => SetupMode::Ensure,
        Some("off") => SetupMode::Off,
        Some("overwrite") => SetupMode::Overwrite,
        Some(other) => {
            return Err(err(
                "ES_SETUP",
                Some(other),
                "is unknown",
                "ensure, off, overwrite",
            ))
        }
    };
    let template_file = match env.string("ES_INDEX_TEMPLATE_FILE") {
        None => None,
        Some(path) => {
            let accepted = "the path of a JSON file holding an _index_template body (an object)";
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "ES_INDEX_TEMPLATE_FILE",
                    Some(&path),
                    &format!("cannot be read: {e}"),
                    accepted,
                )
            })?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(body)) => Some((PathBuf::from(path), body)),
                Ok(_) => {
                    return Err(err(
                        "ES_INDEX_TEMPLATE_FILE",
                        Some(&path),
                        "does not hold a JSON object",
                        accepted,
                    ))
                }
                Err(e) => {
                    return Err(err(
                        "ES_INDEX_TEMPLATE_FILE",
                        Some(&path),
                        &format!("is not JSON: {e}"),
                        accepted,
                    ))
                }
            }
        }
    };
    let replicas = match env.string("ES_INDEX_REPLICAS").as_deref() {
        None | Some("auto") => None,
        Some(_) => Some(env.uint("ES_INDEX_REPLICAS", 0, 0, 16)? as u32),
    };
    let refresh_interval = env
        .string("ES_INDEX_REFRESH_INTERVAL")
        .unwrap_or_else(|| "30s".into());
    if !valid_interval(&refresh_interval) {
        return Err(err(
            "ES_INDEX_REFRESH_INTERVAL",
            Some(&refresh_interval),
            "is not a time value",
            "a number with a unit (500ms, 1s, 30s, 1m), or -1 (refresh off)",
        ));
    }
    let codec = match env.string("ES_INDEX_CODEC").as_deref() {
        None | Some("best_compression") => Codec::BestCompression,
        Some("default") => Codec::Default,
        Some(other) => {
            return Err(err(
                "ES_INDEX_CODEC",
                Some(other),
                "is unknown",
                "best_compression, default",
            ))
        }
    };
    let numbers = match env.string("ES_INDEX_NUMBERS").as_deref() {
        None | Some("doc_values") => Numbers::DocValues,
        Some("indexed") => Numbers::Indexed,
        Some(other) => {
            return Err(err(
                "ES_INDEX_NUMBERS",
                Some(other),
                "is unknown",
                "doc_values, indexed",
            ))
        }
    };
    let ilm_policy = env.string("ES_ILM_POLICY");
    if let Some(name) = &ilm_policy {
        let ok = name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
        if !ok || name.starts_with(['-', '_', '.']) {
            return Err(err(
                "ES_ILM_POLICY",
                Some(name),
                "is not a policy name",
                "lowercase letters, digits, '-', '_' and '.', not first (e.g. f4a-retention)",
            ));
        }
    }
    let setup = SetupConfig {
        mode,
        template_file,
        shards: env.uint("ES_INDEX_SHARDS", 1, 1, 1024)? as u32,
        replicas,
        refresh_interval,
        codec,
        numbers,
        total_fields_limit: env.uint("ES_INDEX_TOTAL_FIELDS_LIMIT", 1000, 10, 100_000)? as u32,
        ignore_above: env.uint("ES_INDEX_IGNORE_ABOVE", 1024, 1, 32_766)? as u32,
        ilm_policy,
    };
    if mode != SetupMode::Off && glob_matches(&index_glob(index), dead_letter_index) {
        return Err(err(
            "DEAD_LETTER_INDEX",
            Some(dead_letter_index),
            &format!(
                "is matched by the template pattern of ES_INDEX ({}), so it would get the documents' template",
                index_glob(index)
            ),
            "a name ES_INDEX's pattern cannot produce (or ES_SETUP=off)",
        ));
    }
    let days = |var: &'static str| -> Result<Option<u32>, ConfigError> {
        Ok(match env.uint(var, 0, 0, 36_500)? {
            0 => None,
            n => Some(n as u32),
        })
    };
    let retention = RetentionConfig {
        days: days("RETENTION_DAYS")?,
        dead_letter_days: days("DEAD_LETTER_RETENTION_DAYS")?,
        dry_run: env.bool("RETENTION_DRY_RUN", false)?,
        max_deletes_per_run: env.uint("RETENTION_MAX_DELETES_PER_RUN", 50, 1, 10_000)? as usize,
    };
    if retention.days.is_some() && !index.has_date() {
        return Err(err(
            "RETENTION_DAYS",
            Some(&retention.days.unwrap_or_default().to_string()),
            &format!(
                "needs a date in ES_INDEX ({} has no %Y, %m and %d)",
                index.as_str()
            ),
            "an ES_INDEX with %Y, %m and %d (the default f4a-%Y.%m.%d), or RETENTION_DAYS unset",
        ));
    }
    let index_mode = match env.string("ES_INDEX_MODE").as_deref() {
        None | Some("index") => IndexMode::Index,
        Some("data_stream") => IndexMode::DataStream,
        Some(other) => {
            return Err(err(
                "ES_INDEX_MODE",
                Some(other),
                "is unknown",
                "index, data_stream",
            ))
        }
    };
    if index_mode == IndexMode::DataStream && !index.is_literal() {
        return Err(err(
            "ES_INDEX",
            Some(index.as_str()),
            "must be a plain data stream name with ES_INDEX_MODE=data_stream (the stream rolls over by itself)",
            "a lowercase name such as logs-f4a-default",
        ));
    }
    Ok(ClusterConfig {
        setup,
        retention,
        index_mode,
    })
}

/// `30s`, `500ms`, `1m`, `-1`.
fn valid_interval(v: &str) -> bool {
    if v == "-1" {
        return true;
    }
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&v[digits..], "ms" | "s" | "m" | "h" | "d")
}

/// The index pattern of a template for `ES_INDEX`: each strftime item becomes `*`
/// (`f4a-%Y.%m.%d` → `f4a-*.*.*`), so the template matches every name it renders and, through
/// the literal parts, little else.
pub fn index_glob(index: &IndexPattern) -> String {
    let mut out = String::new();
    let mut chars = index.as_str().chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            // Flags and width, then the item itself.
            while chars
                .next_if(|c| matches!(c, '-' | '_' | '0'..='9' | '.' | ':' | '#'))
                .is_some()
            {}
            chars.next();
            if !out.ends_with('*') {
                out.push('*');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `name` matches `glob` (`*` any characters), as the cluster matches index patterns.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_intervals() {
        let p = |s: &str| super::super::env::index_pattern("ES_INDEX", s).unwrap();
        assert_eq!(index_glob(&p("f4a-%Y.%m.%d")), "f4a-*.*.*");
        assert_eq!(index_glob(&p("logs-%Y%m%d")), "logs-*");
        assert_eq!(index_glob(&p("static")), "static");
        assert!(glob_matches("f4a-*.*.*", "f4a-2026.11.24"));
        assert!(!glob_matches("f4a-*.*.*", "f4a-dead-letter"));
        assert!(glob_matches("logs-*", "logs-dead"));
        assert!(glob_matches("static", "static"));
        assert!(!glob_matches("static", "static2"));
        assert!(valid_interval("30s") && valid_interval("500ms") && valid_interval("-1"));
        assert!(!valid_interval("30") && !valid_interval("s") && !valid_interval("1 s"));
    }
}
