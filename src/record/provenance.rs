//! Provenance and the collision rule.
//!
//! Every document says where it came from, in ECS names: `event.ingested`, `aws.s3.bucket.name`,
//! `aws.s3.object.key`, `log.offset`. The collision rule makes sure these added fields never make
//! a user's document unindexable: a non-object value on a path the worker writes into becomes
//! `{"value": <it>}` (`"event": "login"` → `event.value`), a user value at a leaf the worker sets
//! is kept beside it as `<leaf>_original` (`@timestamp_original`, `log.offset_original`), and
//! dotted keys under those roots (`"log.level"`) are merged into the same object.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Roots the worker writes into; dotted user keys under them are expanded so both meet in one object.
pub(super) const OWNED_ROOTS: [&str; 3] = ["event", "log", "aws"];

/// Where the records of one object come from.
#[derive(Debug, Clone)]
pub struct ObjectContext {
    pub bucket: String,
    pub key: String,
    /// Version id, else ETag (quotes removed): a rewritten object gets new ids.
    pub version: String,
    pub last_modified: DateTime<Utc>,
    /// `event.ingested`, fixed per object so that all its records carry the same value.
    pub ingested: String,
    /// When S3 announced the object (the start of the `f4a.lag` metric), if the event said.
    pub event_time: Option<DateTime<Utc>>,
    /// The provenance fields as JSON, rendered once per object (see [`ObjectContext::provenance_json`]).
    pub provenance: std::sync::OnceLock<String>,
    /// `ES_DOCUMENT_ID=deterministic`: the action lines of this object's documents carry their
    /// `_id` (false for Serverless collections that refuse ids).
    pub with_id: bool,
}

impl ObjectContext {
    /// `"aws":{"s3":{"bucket":{"name":…},"object":{"key":…}}},"event":{"ingested":…},"log":{"offset":`
    /// — every document of the object ends with this, its offset and `}}`.
    pub fn provenance_json(&self) -> &str {
        self.provenance.get_or_init(|| {
            let mut fields = Map::new();
            add_provenance(&mut fields, self, 0);
            let text = Value::Object(fields).to_string();
            // `{…"log":{"offset":0}}` → `…"log":{"offset":`
            text[1..text.len() - "0}}".len()].to_string()
        })
    }
}

/// Adds the provenance fields under the collision rule.
pub(super) fn add_provenance(fields: &mut Map<String, Value>, obj: &ObjectContext, offset: u64) {
    let event = object_at(fields, "event");
    set_leaf(event, "ingested", Value::String(obj.ingested.clone()));
    let s3 = object_at(object_at(fields, "aws"), "s3");
    set_leaf(
        object_at(s3, "bucket"),
        "name",
        Value::String(obj.bucket.clone()),
    );
    set_leaf(
        object_at(s3, "object"),
        "key",
        Value::String(obj.key.clone()),
    );
    set_leaf(object_at(fields, "log"), "offset", Value::from(offset));
}

/// The object at `map[key]`, created if absent; a non-object there moves to `map[key].value`.
pub(crate) fn object_at<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        let old = slot.take();
        let mut m = Map::new();
        m.insert("value".into(), old);
        *slot = Value::Object(m);
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("slot was just made an object"),
    }
}

/// Sets a worker-owned leaf; a different user value there is kept as `<leaf>_original`.
pub(super) fn set_leaf(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(old) = map.insert(key.to_string(), value) {
        if map.get(key) != Some(&old) {
            map.insert(format!("{key}_original"), old);
        }
    }
}

/// `"log.level": "info"` becomes `"log": {"level": "info"}` so that it and `log.offset` share one
/// object (an object `log` and a dotted `log.x` in one document confuse some mappers).
pub(super) fn expand_owned_dotted_keys(fields: &mut Map<String, Value>) {
    let dotted: Vec<String> = fields
        .keys()
        .filter(|k| {
            // Cheap first-byte test before splitting: most keys are under no owned root.
            matches!(k.as_bytes().first(), Some(b'e' | b'l' | b'a'))
                && k.split_once('.')
                    .is_some_and(|(root, rest)| OWNED_ROOTS.contains(&root) && !rest.is_empty())
        })
        .cloned()
        .collect();
    for key in dotted {
        let mut parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            continue;
        }
        let leaf = parts.pop().unwrap_or_default();
        let Some(value) = fields.remove(&key) else {
            continue;
        };
        let mut target = &mut *fields;
        for p in parts {
            target = object_at(target, p);
        }
        match target.get(leaf) {
            // The same field spelled both ways: keep both rather than pick one.
            Some(existing) if existing != &value => {
                target.insert(format!("{leaf}_dotted"), value);
            }
            _ => {
                target.insert(leaf.to_string(), value);
            }
        }
    }
}
