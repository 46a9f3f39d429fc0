//! Normalization: a decoded record → the document that is indexed.
//!
//! It applies the decisions of its neighbours: `@timestamp` from the first field of
//! `TIMESTAMP_FIELDS` that parses, else the object's LastModified ([`super::timestamp`]); the
//! provenance fields under the collision rule ([`super::provenance`]); the deterministic `_id` and
//! the target index ([`super::target`]).
//!
//! A raw record ([`RawRecord`]) is normalized without a tree ([`Normalizer::normalize_raw`]): its
//! text is kept and `@timestamp` spliced in; only its members under the provenance roots become a
//! (small) tree, for the collision rule. Anything the splice cannot express exactly as the tree
//! path would (a nested timestamp field, an `@timestamp` that is not the chosen one) takes the
//! tree path.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::dead_letter::raw_head;
use super::document::{Normalized, OwnedRoots, Source};
use super::item::{DeadRecord, Item, RawRecord, Record};
use super::provenance::{
    add_provenance, expand_owned_dotted_keys, set_leaf, ObjectContext, OWNED_ROOTS,
};
use super::target::{document_id, IndexNames};
use super::timestamp::{parse_raw_timestamp, parse_timestamp, rfc3339_millis};
use crate::config::IndexPattern;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Normalizer {
    index: IndexNames,
    timestamp_fields: Vec<String>,
    /// First bytes of the keys `normalize_raw` must look at (timestamp fields, `@timestamp`, the
    /// owned roots, the roots of dotted timestamp fields): every other key is skipped on one load.
    notable_first_bytes: [bool; 256],
    /// `m` for a timestamp field `m.t`: a record with a top-level `m` takes the tree path.
    timestamp_roots: Vec<String>,
    /// A timestamp field is or lies under `event`, `log` or `aws` (`event.created`): records that
    /// use those roots take the tree path, which finds the field after merging dotted keys.
    timestamp_under_owned_roots: bool,
}

impl Normalizer {
    pub fn new(index: IndexPattern, timestamp_fields: Vec<String>) -> Self {
        let timestamp_roots: Vec<String> = timestamp_fields
            .iter()
            .filter_map(|f| f.split_once('.').map(|(root, _)| root.to_string()))
            .collect();
        let mut notable_first_bytes = [false; 256];
        for name in timestamp_fields
            .iter()
            .chain(&timestamp_roots)
            .map(String::as_str)
            .chain(OWNED_ROOTS)
            .chain(["@timestamp", ""])
        {
            notable_first_bytes[name.bytes().next().map_or(0, usize::from)] = true;
        }
        Normalizer {
            index: IndexNames::new(index),
            timestamp_under_owned_roots: timestamp_fields.iter().any(|f| {
                OWNED_ROOTS.contains(&f.split_once('.').map_or(f.as_str(), |(root, _)| root))
            }),
            timestamp_fields,
            notable_first_bytes,
            timestamp_roots,
        }
    }

    /// [`Normalizer::normalize`] for a raw record, without building its tree when it can: same
    /// document, same `_id`, same index (member order and the spelling of numbers and escapes are
    /// the record's own). An error when the record needs the tree path but holds a value a tree
    /// cannot (a number beyond f64): the tree path would not have decoded it either.
    pub fn normalize_raw<'a>(
        &self,
        rec: RawRecord<'a>,
        obj: &ObjectContext,
    ) -> Result<Normalized<'a>, DeadRecord> {
        match self.raw_plan(&rec) {
            Some(plan) => {
                let mut timestamp_invalid = false;
                let mut chosen = None;
                for &(_, member) in &plan.candidates {
                    match parse_raw_timestamp(rec.value(&rec.members[member])) {
                        Some(t) => {
                            chosen = Some((t, member));
                            break;
                        }
                        None => timestamp_invalid = true,
                    }
                }
                let replace = match (chosen, plan.at_timestamp) {
                    (Some((_, m)), Some(at)) if m == at => Some(rec.members[at].value),
                    // `@timestamp` is there but another value wins: the collision rule keeps it
                    // as `@timestamp_original`, which the tree path does.
                    (_, Some(_)) => return self.normalize_tree(&rec, obj),
                    (_, None) => None,
                };
                let ts = chosen.map_or(obj.last_modified, |(t, _)| t);
                let owned = if plan.owned.is_empty() {
                    None
                } else {
                    let mut tree = Map::new();
                    let mut kept = Vec::with_capacity(rec.members.len());
                    let mut next = plan.owned.iter().peekable();
                    for (i, m) in rec.members.iter().enumerate() {
                        if next.next_if(|&&o| o == i).is_some() {
                            match serde_json::from_str(rec.value(m)) {
                                Ok(v) => tree.insert(rec.key(m).to_string(), v),
                                Err(_) => return self.normalize_tree(&rec, obj),
                            };
                        } else {
                            // `"key"…value`: the key's opening quote is just before it.
                            kept.push((m.key.0.saturating_sub(1), m.value.1));
                        }
                    }
                    expand_owned_dotted_keys(&mut tree);
                    add_provenance(&mut tree, obj, rec.offset);
                    Some(Box::new(OwnedRoots { kept, tree }))
                };
                Ok(Normalized {
                    index: self.index.name(ts),
                    id: document_id(obj, rec.offset, None),
                    provenance_offset: owned.is_none().then_some(rec.offset),
                    source: Source::Raw {
                        text: rec.text,
                        timestamp: ts,
                        replace,
                        owned,
                    },
                    timestamp_fallback: chosen.is_none(),
                    timestamp_invalid,
                })
            }
            None => self.normalize_tree(&rec, obj),
        }
    }

    /// The index of the object's fallback date (its LastModified): where a record without a
    /// timestamp of its own goes, and so the one named by the dead-letter entry of a record
    /// that cannot be decoded (whose own timestamp, if any, cannot be read).
    pub fn fallback_index(&self, obj: &ObjectContext) -> Arc<str> {
        self.index.name(obj.last_modified)
    }

    /// Any decoded item: the document with its record's offset and sub-position, or the
    /// dead-letter reason (the decoder's, or [`Normalizer::normalize_raw`]'s).
    pub fn normalize_item<'a>(
        &self,
        item: Item<'a>,
        obj: &ObjectContext,
    ) -> Result<(Normalized<'a>, u64, Option<u32>), DeadRecord> {
        match item {
            Item::Raw(rec) => {
                let offset = rec.offset;
                Ok((self.normalize_raw(rec, obj)?, offset, None))
            }
            Item::Record(rec) => {
                let (offset, sub) = (rec.offset, rec.sub);
                Ok((self.normalize(rec, obj), offset, sub))
            }
            Item::Dead(dead) => Err(dead),
        }
    }

    fn normalize_tree<'a>(
        &self,
        rec: &RawRecord<'_>,
        obj: &ObjectContext,
    ) -> Result<Normalized<'a>, DeadRecord> {
        match rec.to_record() {
            Ok(tree) => Ok(self.normalize(tree, obj)),
            Err(e) => Err(DeadRecord {
                offset: rec.offset,
                reason: format!("invalid JSON: {e}"),
                raw: raw_head(rec.text.as_bytes()),
            }),
        }
    }

    /// What the fast path needs from a raw record's keys, or `None` if it must take the tree path.
    fn raw_plan(&self, rec: &RawRecord<'_>) -> Option<RawPlan> {
        if rec.members.is_empty() {
            return None;
        }
        let mut plan = RawPlan::default();
        for (i, m) in rec.members.iter().enumerate() {
            let key = rec.key(m);
            let first = key.as_bytes().first().map_or(0, |&b| usize::from(b));
            if !self.notable_first_bytes[first] {
                continue;
            }
            let root = key.split_once('.').map_or(key, |(root, _)| root);
            if OWNED_ROOTS.contains(&root) {
                if self.timestamp_under_owned_roots {
                    return None;
                }
                plan.owned.push(i);
                continue;
            }
            if self.timestamp_roots.iter().any(|r| r == key) {
                return None;
            }
            if key == "@timestamp" {
                plan.at_timestamp = Some(i);
            }
            if let Some(rank) = self.timestamp_fields.iter().position(|f| f == key) {
                plan.candidates.push((rank, i));
            }
        }
        plan.candidates.sort_unstable();
        Some(plan)
    }

    pub fn normalize<'a>(&self, rec: Record, obj: &ObjectContext) -> Normalized<'a> {
        let Record {
            offset,
            sub,
            mut fields,
            timestamp,
        } = rec;
        expand_owned_dotted_keys(&mut fields);

        let mut timestamp_invalid = false;
        let mut chosen: Option<(DateTime<Utc>, Option<&str>)> = timestamp.map(|t| (t, None));
        if chosen.is_none() {
            for name in &self.timestamp_fields {
                let Some(v) = lookup(&fields, name) else {
                    continue;
                };
                match parse_timestamp(v) {
                    Some(t) => {
                        chosen = Some((t, Some(name.as_str())));
                        break;
                    }
                    None => timestamp_invalid = true,
                }
            }
        }
        let timestamp_fallback = chosen.is_none();
        let (ts, from_field) = chosen.unwrap_or((obj.last_modified, None));
        let ts_text = Value::String(rfc3339_millis(ts));
        if from_field == Some("@timestamp") {
            fields.insert("@timestamp".into(), ts_text);
        } else {
            set_leaf(&mut fields, "@timestamp", ts_text);
        }

        let provenance_offset = if OWNED_ROOTS.iter().any(|r| fields.contains_key(*r)) {
            add_provenance(&mut fields, obj, offset);
            None
        } else {
            Some(offset)
        };

        Normalized {
            index: self.index.name(ts),
            id: document_id(obj, offset, sub),
            source: Source::Tree(fields),
            provenance_offset,
            timestamp_fallback,
            timestamp_invalid,
        }
    }
}

/// A raw record's timestamp candidates `(rank in TIMESTAMP_FIELDS, member)`, best first, where
/// its own `@timestamp` is, and its members under the provenance roots.
#[derive(Default)]
struct RawPlan {
    candidates: Vec<(usize, usize)>,
    at_timestamp: Option<usize>,
    owned: Vec<usize>,
}

/// Top-level key first, then a dotted path through nested objects.
fn lookup<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = fields.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut cur = fields.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_support::{default_index, normalizer as norm, object_context as ctx};
    use serde_json::json;

    fn rec(v: Value) -> Record {
        Record {
            offset: 7,
            sub: None,
            fields: v.as_object().unwrap().clone(),
            timestamp: None,
        }
    }

    #[test]
    fn adds_provenance_timestamp_index_and_stable_id() {
        let n = norm().normalize(rec(json!({"ts": 1764000000123u64, "v": 1})), &ctx());
        assert_eq!(&*n.index, "f4a-2025.11.24");
        assert_eq!(n.document(&ctx())["@timestamp"], "2025-11-24T16:00:00.123Z");
        assert_eq!(n.document(&ctx())["ts"], 1764000000123u64);
        assert_eq!(
            n.document(&ctx())["event"]["ingested"],
            "2026-11-24T10:00:01.000Z"
        );
        assert_eq!(n.document(&ctx())["aws"]["s3"]["bucket"]["name"], "b");
        assert_eq!(
            n.document(&ctx())["aws"]["s3"]["object"]["key"],
            "2026/11/24/10/obj"
        );
        assert_eq!(n.document(&ctx())["log"]["offset"], 7);
        assert!(!n.timestamp_fallback);
        let again = norm().normalize(rec(json!({"other": 2})), &ctx());
        assert_eq!(again.id, n.id, "id depends on position, not content");
        let mut moved = rec(json!({}));
        moved.offset = 8;
        assert_ne!(norm().normalize(moved, &ctx()).id, n.id);
        assert_eq!(n.id.len(), 32);
    }

    #[test]
    fn falls_back_to_last_modified() {
        let n = norm().normalize(rec(json!({"x": 1})), &ctx());
        assert!(n.timestamp_fallback);
        assert_eq!(n.document(&ctx())["@timestamp"], "2026-11-20T08:00:00.000Z");
        assert_eq!(&*n.index, "f4a-2026.11.20");
    }

    #[test]
    fn collision_rule_keeps_user_values() {
        let n = norm().normalize(
            rec(json!({"event": "login", "log": "GET / 200", "aws": 1})),
            &ctx(),
        );
        assert_eq!(n.document(&ctx())["event"]["value"], "login");
        assert_eq!(
            n.document(&ctx())["event"]["ingested"],
            "2026-11-24T10:00:01.000Z"
        );
        assert_eq!(n.document(&ctx())["log"]["value"], "GET / 200");
        assert_eq!(n.document(&ctx())["log"]["offset"], 7);
        assert_eq!(n.document(&ctx())["aws"]["value"], 1);
        assert_eq!(n.document(&ctx())["aws"]["s3"]["bucket"]["name"], "b");

        let n = norm().normalize(
            rec(json!({"log.level": "info", "event.action": "x", "aws": {"s3": "str"}})),
            &ctx(),
        );
        assert_eq!(n.document(&ctx())["log"]["level"], "info");
        assert!(n.document(&ctx()).get("log.level").is_none());
        assert_eq!(n.document(&ctx())["event"]["action"], "x");
        assert_eq!(n.document(&ctx())["aws"]["s3"]["value"], "str");

        let n = norm().normalize(
            rec(json!({"@timestamp": "yesterday", "log": {"offset": "x"}})),
            &ctx(),
        );
        assert!(n.timestamp_invalid && n.timestamp_fallback);
        assert_eq!(n.document(&ctx())["@timestamp"], "2026-11-20T08:00:00.000Z");
        assert_eq!(n.document(&ctx())["@timestamp_original"], "yesterday");
        assert_eq!(n.document(&ctx())["log"]["offset_original"], "x");

        // A valid @timestamp is normalised in place, not duplicated.
        let n = norm().normalize(rec(json!({"@timestamp": "2026-11-24T10:00:00Z"})), &ctx());
        assert_eq!(n.document(&ctx())["@timestamp"], "2026-11-24T10:00:00.000Z");
        assert!(n.document(&ctx()).get("@timestamp_original").is_none());
    }

    #[test]
    fn source_timestamp_wins_and_dotted_lookup_works() {
        let mut r = rec(json!({"ts": "garbage", "m": {"t": "2026-01-02T03:04:05Z"}}));
        r.timestamp = DateTime::from_timestamp_millis(1_700_000_000_000);
        assert_eq!(
            norm().normalize(r, &ctx()).document(&ctx())["@timestamp"],
            "2023-11-14T22:13:20.000Z"
        );
        let n = Normalizer::new(default_index(), vec!["m.t".into()]);
        assert_eq!(
            n.normalize(rec(json!({"m": {"t": "2026-01-02T03:04:05Z"}})), &ctx())
                .document(&ctx())["@timestamp"],
            "2026-01-02T03:04:05.000Z"
        );
    }
}
