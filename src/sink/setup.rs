//! Index setup (`ES_SETUP`): the composable index templates for `ES_INDEX`'s indices and for
//! `DEAD_LETTER_INDEX`, made for a small cluster, put idempotently.
//!
//! Each template carries its version in `_meta` (`f4a_template_revision`, a number raised when
//! the built-in body changes, and `f4a_template_version`, a hash of the body): a template is PUT
//! only when missing (`?create=true`, so of ten tasks starting at once one creates it and the
//! others find it) or of another version, and never over a higher revision (a newer worker put
//! it); `ES_SETUP=overwrite` PUTs it at every start. A 401/403 is logged once, with the
//! privilege needed, and indexing goes on without templates: the worker never stops indexing
//! because it cannot manage the cluster.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::admin::{AdminReply, ClusterAdmin};
use crate::config::{index_glob, Codec, IndexPattern, Numbers, SetupConfig, SetupMode};

/// Raised whenever the built-in bodies change, so an older worker never overwrites a newer
/// worker's template during a rolling deployment.
pub const TEMPLATE_REVISION: u64 = 2;
/// Above the stack templates of Elasticsearch (100) and below what users usually pick (200+).
const PRIORITY: u64 = 150;
/// The dead-letter template wins over any of ours that might also match.
const DEAD_LETTER_PRIORITY: u64 = 160;

/// One template to put.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    /// The body, `_meta` with its version included.
    pub body: Value,
    pub version: String,
}

/// What happened to one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    Created,
    Updated,
    /// Present with this version already.
    Unchanged,
    /// A newer worker's revision is in place: left alone.
    Newer,
    /// 401/403: the user lacks the privilege (logged once).
    Forbidden,
    /// Another answer (a 4xx: a template the cluster refuses): logged; tried again in an hour.
    Failed(String),
    /// No answer, or 429/5xx each time: logged; tried again soon (`upkeep::SETUP_RETRY`).
    NoAnswer(String),
}

/// The templates for `index` (and its dead-letter index), with `replicas` replicas.
pub fn templates(
    cfg: &SetupConfig,
    index: &IndexPattern,
    dead_letter_index: &str,
    replicas: u32,
    data_stream: bool,
) -> Vec<Template> {
    let glob = index_glob(index);
    let settings = |refresh: &str| {
        let mut s = json!({
            "number_of_shards": cfg.shards,
            "number_of_replicas": replicas,
            "refresh_interval": refresh,
            "mapping": {"total_fields": {"limit": cfg.total_fields_limit}},
        });
        if cfg.codec == Codec::BestCompression {
            s["codec"] = json!("best_compression");
        }
        json!({ "index": s })
    };
    // Only the documents' indices age out; the dead-letter index is one index, kept.
    let document_settings = |refresh: &str| {
        let mut s = settings(refresh);
        if let Some(policy) = &cfg.ilm_policy {
            s["index"]["lifecycle"] = json!({"name": policy});
        }
        s
    };
    let provenance = json!({
        "@timestamp": {"type": "date"},
        "event": {"properties": {"ingested": {"type": "date"}}},
        "log": {"properties": {"offset": {"type": "long"}}},
        "aws": {"properties": {"s3": {"properties": {
            "bucket": {"properties": {"name": {"type": "keyword"}}},
            "object": {"properties": {"key": {"type": "keyword"}}},
        }}}},
    });
    let documents = match &cfg.template_file {
        Some((_, body)) => {
            let mut body = body.clone();
            body.entry("index_patterns").or_insert(json!([glob]));
            body.entry("priority").or_insert(json!(PRIORITY));
            Value::Object(body)
        }
        None => {
            let mut properties = provenance.clone();
            properties["message"] = json!({"type": "text"});
            // What the item limits add (record::limits): the overflow is kept, never indexed.
            properties["f4a"] = json!({"properties": {
                "overflow": {"type": "keyword", "index": false, "doc_values": false},
                "limits": {"type": "keyword"},
            }});
            let mut dynamic_templates = vec![json!({"strings_as_keywords": {
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": cfg.ignore_above},
            }})];
            if cfg.numbers == Numbers::DocValues {
                // JSON floats map to `float` and integers to `long`, as dynamic mapping does.
                dynamic_templates.push(json!({"floats_as_doc_values": {
                    "match_mapping_type": "double",
                    "mapping": {"type": "float", "index": false},
                }}));
                dynamic_templates.push(json!({"longs_as_doc_values": {
                    "match_mapping_type": "long",
                    "mapping": {"type": "long", "index": false},
                }}));
            }
            json!({
                "index_patterns": [glob],
                "priority": PRIORITY,
                "template": {
                    "settings": document_settings(&cfg.refresh_interval),
                    "mappings": {
                        "date_detection": false,
                        "numeric_detection": false,
                        "dynamic_templates": dynamic_templates,
                        "properties": properties,
                    },
                },
            })
        }
    };
    let mut documents = documents;
    if data_stream {
        documents["data_stream"] = json!({});
    }
    let mut dl_properties = provenance;
    dl_properties["event"]["properties"]["original"] =
        json!({"type": "keyword", "index": false, "doc_values": false});
    dl_properties["error"] = json!({"properties": {
        "type": {"type": "keyword"},
        "message": {"type": "text"},
    }});
    dl_properties["f4a"] = json!({"properties": {
        "stage": {"type": "keyword"},
        "target_index": {"type": "keyword"},
    }});
    let dead_letter = json!({
        "index_patterns": [dead_letter_index],
        "priority": DEAD_LETTER_PRIORITY,
        "template": {
            "settings": settings(&cfg.refresh_interval),
            "mappings": {
                "date_detection": false,
                "numeric_detection": false,
                "dynamic_templates": [{"strings_as_keywords": {
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": cfg.ignore_above},
                }}],
                "properties": dl_properties,
            },
        },
    });
    let prefix = |name: &str| {
        let p = name.split('%').next().unwrap_or_default();
        let p = p.trim_matches(|c| matches!(c, '-' | '_' | '.'));
        if p.is_empty() {
            "all".to_string()
        } else {
            p.to_string()
        }
    };
    vec![
        versioned(
            format!("f4a-indexer-docs-{}", prefix(index.as_str())),
            documents,
        ),
        versioned(
            format!("f4a-indexer-dead-letter-{}", prefix(dead_letter_index)),
            dead_letter,
        ),
    ]
}

/// `templates` for OpenSearch Serverless: mappings only. A collection manages its own shards,
/// replicas and refreshes and refuses index settings, and it has no `_cluster/health` to count
/// data nodes with.
pub fn for_serverless(templates: Vec<Template>) -> Vec<Template> {
    templates
        .into_iter()
        .map(|t| {
            let mut body = t.body;
            if let Some(inner) = body.get_mut("template").and_then(Value::as_object_mut) {
                inner.remove("settings");
            }
            versioned(t.name, body)
        })
        .collect()
}

/// `body` with its version in `_meta` (the user's own `_meta` keys kept).
fn versioned(name: String, mut body: Value) -> Template {
    if let Some(m) = body.as_object_mut() {
        m.remove("_meta");
    }
    let version = format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(body.to_string().as_bytes())
    );
    let mut meta = Map::new();
    meta.insert("managed_by".into(), json!("f4a-indexer"));
    meta.insert("f4a_template_revision".into(), json!(TEMPLATE_REVISION));
    meta.insert("f4a_template_version".into(), json!(version));
    body["_meta"] = Value::Object(meta);
    Template {
        name,
        body,
        version,
    }
}

/// Replicas for the templates: as configured, else 0 on a single data node (so that health is
/// green) and 1 on more; 1 when the cluster does not say.
pub async fn replicas(admin: &dyn ClusterAdmin, configured: Option<u32>) -> u32 {
    if let Some(r) = configured {
        return r;
    }
    match admin.get("_cluster/health").await {
        Ok(r) if r.is_success() => match r.json()["number_of_data_nodes"].as_u64() {
            Some(1) => 0,
            Some(_) => 1,
            None => 1,
        },
        Ok(r) => {
            tracing::warn!(
                status = r.status,
                "cannot read the data-node count (GET _cluster/health); templates get 1 replica (set ES_INDEX_REPLICAS)"
            );
            1
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the data-node count; templates get 1 replica (set ES_INDEX_REPLICAS)");
            1
        }
    }
}

/// Puts `templates` as `mode` says; one line per template, and for a 401/403 one line only
/// (the others need the same privilege and are not tried).
pub async fn ensure(
    admin: &dyn ClusterAdmin,
    mode: SetupMode,
    templates: &[Template],
) -> Vec<SetupOutcome> {
    let mut out = vec![];
    if mode == SetupMode::Off {
        return out;
    }
    for t in templates {
        let outcome = ensure_one(admin, mode, t).await;
        match &outcome {
            SetupOutcome::Forbidden => {
                tracing::error!(
                    template = %t.name,
                    "index setup is not permitted (HTTP 401/403 on _index_template): the worker's user needs the cluster privilege `manage_index_templates` (OpenSearch: `cluster:admin/indices/template/*`), or set ES_SETUP=off; indexing goes on without the templates"
                );
                out.push(outcome);
                break;
            }
            SetupOutcome::Failed(reason) | SetupOutcome::NoAnswer(reason) => {
                tracing::warn!(template = %t.name, reason, "index template not set up; indexing goes on, setup is tried again later")
            }
            SetupOutcome::Newer => {
                tracing::info!(template = %t.name, "index template of a newer worker in place; left alone")
            }
            SetupOutcome::Unchanged => {
                tracing::debug!(template = %t.name, version = %t.version, "index template up to date")
            }
            other => {
                tracing::info!(template = %t.name, version = %t.version, outcome = ?other, "index template put")
            }
        }
        out.push(outcome);
    }
    out
}

async fn ensure_one(admin: &dyn ClusterAdmin, mode: SetupMode, t: &Template) -> SetupOutcome {
    let path = format!("_index_template/{}", t.name);
    if mode == SetupMode::Overwrite {
        return put(admin, &path, t, false).await;
    }
    for _ in 0..3 {
        let current = match retried(|| admin.get(&path)).await {
            Ok(r) => r,
            Err(reason) => return SetupOutcome::NoAnswer(reason),
        };
        match current.status {
            404 => match put(admin, &path, t, true).await {
                // Another task created it meanwhile: compare with what it put.
                SetupOutcome::Failed(reason) if reason.contains("already exists") => continue,
                other => return other,
            },
            401 | 403 => return SetupOutcome::Forbidden,
            s if (200..300).contains(&s) => {
                let meta = &current.json()["index_templates"][0]["index_template"]["_meta"];
                if meta["f4a_template_version"].as_str() == Some(t.version.as_str()) {
                    return SetupOutcome::Unchanged;
                }
                if meta["f4a_template_revision"]
                    .as_u64()
                    .is_some_and(|r| r > TEMPLATE_REVISION)
                {
                    return SetupOutcome::Newer;
                }
                return match put(admin, &path, t, false).await {
                    SetupOutcome::Created => SetupOutcome::Updated,
                    other => other,
                };
            }
            s => {
                return SetupOutcome::Failed(format!("HTTP {s} on GET {path}: {}", head(&current)))
            }
        }
    }
    SetupOutcome::Failed(format!("{path} kept changing while being set up"))
}

async fn put(admin: &dyn ClusterAdmin, path: &str, t: &Template, create: bool) -> SetupOutcome {
    let target = if create {
        format!("{path}?create=true")
    } else {
        path.to_string()
    };
    match retried(|| admin.put(&target, t.body.clone())).await {
        Ok(r) if r.is_success() => SetupOutcome::Created,
        Ok(r) if matches!(r.status, 401 | 403) => SetupOutcome::Forbidden,
        Ok(r) => SetupOutcome::Failed(format!("HTTP {} on PUT {path}: {}", r.status, head(&r))),
        Err(reason) => SetupOutcome::NoAnswer(reason),
    }
}

/// A call retried on 429 and 5xx (a cluster that is up but busy or starting), a few times. No
/// answer at all is not retried here: receiving waits for the setup, and a cluster that is down
/// gets the setup again from the upkeep loop ([`super::upkeep::SETUP_RETRY`]).
async fn retried<F, Fut>(call: F) -> Result<AdminReply, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<AdminReply, super::TransportError>>,
{
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        match call().await {
            Ok(r) if r.status == 429 || r.status >= 500 => {
                last = format!("HTTP {}: {}", r.status, head(&r));
            }
            Ok(r) => return Ok(r),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

fn head(r: &AdminReply) -> String {
    String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned()
}

#[cfg(test)]
#[path = "setup_tests.rs"]
mod tests;
