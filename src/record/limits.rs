//! Item limits: what is kept of each normalized document (`FIELDS_INCLUDE`, `FIELDS_EXCLUDE`,
//! `DROP_WHERE`, `SAMPLE_PERCENT`, `MAX_FIELDS_PER_DOCUMENT`, `MAX_DEPTH`, `MAX_STRING_BYTES`).
//!
//! Order, cheapest first: the sample (a hash of the `_id`, so a redelivered object keeps exactly
//! the same subset), then `DROP_WHERE` on the record's own fields, then the field lists, then the
//! caps. Dropping is the user's intent: a dropped record is counted by reason, never
//! dead-lettered. A cap never cuts anything: the offending part (a field beyond the count, a
//! subtree beyond the depth, a string beyond the length) is moved whole into one string field,
//! `f4a.overflow` (a JSON object of dotted path → value, as a string; stored, not indexed, by the
//! built-in template), and the caps that applied are listed in `f4a.limits` (`max_fields`,
//! `max_depth`, `max_string_bytes`). The provenance fields and `@timestamp`
//! are never removed, moved or counted.
//!
//! With every limit off (the default) [`Limits::apply`] is not called at all: the fast path keeps
//! its text. With a field rule or a cap on, a raw record becomes a tree first.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::caps::{cap_depth, cap_fields, cap_strings};
use super::document::{Normalized, Source};
use super::provenance::object_at;
use crate::config::{DropOp, FieldPattern, LimitsConfig};

/// Fields the worker adds: never removed by a filter, never moved or counted by a cap.
const PROTECTED: [&[&str]; 5] = [
    &["@timestamp"],
    &["event", "ingested"],
    &["aws", "s3", "bucket", "name"],
    &["aws", "s3", "object", "key"],
    &["log", "offset"],
];

/// Target indices whose field paths `MAX_FIELDS_PER_INDEX` remembers.
const KNOWN_INDICES: usize = 8;

/// Why a record was dropped (the `reason` of `f4a.documents.dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Outside `SAMPLE_PERCENT`.
    Sampled,
    /// Matched a `DROP_WHERE` condition.
    DropWhere,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Sampled => "sampled",
            DropReason::DropWhere => "drop_where",
        }
    }
}

/// What the limits changed in a kept document (the `reason`s of `f4a.documents.changed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// `FIELDS_INCLUDE`/`FIELDS_EXCLUDE` removed something.
    pub filtered: bool,
    pub max_fields: bool,
    /// `MAX_FIELDS_PER_INDEX` moved fields new to a full index.
    pub max_fields_per_index: bool,
    pub max_depth: bool,
    pub max_string_bytes: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.filtered
            || self.max_fields
            || self.max_fields_per_index
            || self.max_depth
            || self.max_string_bytes
    }

    /// The labels of what changed.
    pub fn labels(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (self.filtered, "fields_filtered"),
            (self.max_fields, "max_fields"),
            (self.max_fields_per_index, "max_fields_per_index"),
            (self.max_depth, "max_depth"),
            (self.max_string_bytes, "max_string_bytes"),
        ]
        .into_iter()
        .filter_map(|(on, label)| on.then_some(label))
    }
}

/// A document after the limits.
pub enum Verdict<'a> {
    Keep(Normalized<'a>, Changes),
    Drop(DropReason),
}

/// The item limits, ready to apply.
#[derive(Debug)]
pub struct Limits {
    cfg: LimitsConfig,
    /// `MAX_FIELDS_PER_INDEX`: the field paths sent so far, per target index (the last few
    /// indices only: a day's index stops receiving new fields after its day).
    known_fields: std::sync::Mutex<Vec<(std::sync::Arc<str>, HashSet<String>)>>,
    /// Records with an `_id` hash below this are kept (`SAMPLE_PERCENT`).
    sample_below: Option<u64>,
    /// A rule needs the document as a tree.
    needs_tree: bool,
}

impl Limits {
    /// `None` when every limit is off: nothing to do per record.
    pub fn new(cfg: &LimitsConfig) -> Option<Limits> {
        if cfg.is_off() {
            return None;
        }
        let sample_below = cfg
            .sample_percent
            .map(|p| (p / 100.0 * u64::MAX as f64) as u64);
        let needs_tree = !(cfg.include.is_empty()
            && cfg.exclude.is_empty()
            && cfg.drop_where.is_empty()
            && cfg.max_fields.is_none()
            && cfg.max_fields_per_index.is_none()
            && cfg.max_depth.is_none()
            && cfg.max_string_bytes.is_none());
        Some(Limits {
            cfg: cfg.clone(),
            known_fields: Default::default(),
            sample_below,
            needs_tree,
        })
    }

    pub fn apply<'a>(&self, mut n: Normalized<'a>) -> Verdict<'a> {
        if let Some(below) = self.sample_below {
            // The `_id` is already a 128-bit hash: its first 64 bits decide.
            let h = u64::from_str_radix(&n.id[..16], 16).unwrap_or(0);
            if h >= below {
                return Verdict::Drop(DropReason::Sampled);
            }
        }
        if !self.needs_tree {
            return Verdict::Keep(n, Changes::default());
        }
        let mut fields = match n.source {
            Source::Tree(map) => map,
            // The raw text with `@timestamp` (and, if it used the provenance roots, the
            // provenance merged in); otherwise the encoder still appends the provenance.
            raw @ Source::Raw { .. } => raw.to_map(),
        };
        if self.cfg.drop_where.iter().any(|r| r.matches(&fields)) {
            return Verdict::Drop(DropReason::DropWhere);
        }
        let mut changes = Changes::default();
        if !self.cfg.include.is_empty() || !self.cfg.exclude.is_empty() {
            let mut path = vec![];
            changes.filtered = self.filter(&mut fields, &mut path);
        }
        let mut overflow = Map::new();
        let mut path = vec![];
        if let Some(max) = self.cfg.max_depth {
            changes.max_depth = cap_depth(&mut fields, &mut path, max, &mut overflow);
        }
        if let Some(max) = self.cfg.max_string_bytes {
            changes.max_string_bytes = cap_strings(&mut fields, &mut path, max, &mut overflow);
        }
        if let Some(max) = self.cfg.max_fields {
            let mut seen = HashSet::new();
            changes.max_fields = cap_fields(&mut fields, &mut path, max, &mut seen, &mut overflow);
        }
        if let Some(max) = self.cfg.max_fields_per_index {
            let mut known = self.known_fields.lock().unwrap_or_else(|e| e.into_inner());
            let pos = match known.iter().position(|(i, _)| *i == n.index) {
                Some(pos) => pos,
                None => {
                    if known.len() >= KNOWN_INDICES {
                        known.remove(0);
                    }
                    known.push((n.index.clone(), HashSet::new()));
                    known.len() - 1
                }
            };
            let seen = &mut known[pos].1;
            changes.max_fields_per_index =
                cap_fields(&mut fields, &mut path, max, seen, &mut overflow);
        }
        if !overflow.is_empty() {
            let f4a = object_at(&mut fields, "f4a");
            f4a.insert(
                "overflow".into(),
                Value::String(Value::Object(overflow).to_string()),
            );
            let labels: Vec<Value> = changes
                .labels()
                .filter(|l| *l != "fields_filtered")
                .map(Value::from)
                .collect();
            f4a.insert("limits".into(), Value::Array(labels));
        }
        n.source = Source::Tree(fields);
        Verdict::Keep(n, changes)
    }

    /// `FIELDS_INCLUDE` then `FIELDS_EXCLUDE` over `map` at `path`; true if anything was removed.
    fn filter(&self, map: &mut Map<String, Value>, path: &mut Vec<String>) -> bool {
        let mut removed = false;
        for (key, mut value) in std::mem::take(map) {
            let depth = path.len();
            path.extend(key.split('.').map(str::to_string));
            let keep = if protected_exact(path) {
                true
            } else {
                let excluded = self.cfg.exclude.iter().any(|p| prefix_match(p, path));
                let included = self.cfg.include.is_empty()
                    || self.cfg.include.iter().any(|p| prefix_match(p, path));
                let partly = self.cfg.include.iter().any(|p| partial_match(p, path));
                if !excluded && included {
                    // Excludes may still apply further down.
                    removed |= self.filter_value(&mut value, path);
                    true
                } else if (partly && !excluded) || protected_ancestor(path) {
                    removed |= self.filter_value(&mut value, path);
                    // Only objects (or arrays of them) can hold what is kept further down.
                    match &value {
                        Value::Object(m) => !m.is_empty(),
                        Value::Array(a) => !a.is_empty(),
                        _ => false,
                    }
                } else {
                    false
                }
            };
            if keep {
                map.insert(key, value);
            } else {
                removed = true;
            }
            path.truncate(depth);
        }
        removed
    }

    fn filter_value(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::Object(m) => self.filter(m, path),
            Value::Array(items) => {
                let before = items.len();
                let included = self.cfg.include.is_empty()
                    || self.cfg.include.iter().any(|p| prefix_match(p, path));
                let mut removed = false;
                items.retain_mut(|item| match item {
                    Value::Object(m) => {
                        removed |= self.filter(m, path);
                        true
                    }
                    _ => included,
                });
                removed || items.len() != before
            }
            _ => false,
        }
    }
}

impl crate::config::DropRule {
    /// Whether the record `fields` matches this condition.
    fn matches(&self, fields: &Map<String, Value>) -> bool {
        let value = lookup(fields, &self.field);
        let any = |f: &dyn Fn(&str) -> bool| match value {
            None => false,
            Some(Value::Array(items)) => items.iter().any(|v| f(&text(v))),
            Some(v) => f(&text(v)),
        };
        match &self.op {
            DropOp::Eq(want) => any(&|t| t == want),
            DropOp::Ne(want) => !any(&|t| t == want),
            DropOp::Matches(re) => any(&|t| re.is_match(t)),
        }
    }
}

/// A value as the rules compare it: a string as it is, anything else as its JSON.
fn text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

/// A dotted path: the top-level key as written first, then through nested objects (whose keys
/// may themselves hold dots).
fn lookup<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = fields.get(name) {
        return Some(v);
    }
    for (dot, _) in name.match_indices('.') {
        if let Some(Value::Object(inner)) = fields.get(&name[..dot]) {
            if let Some(v) = lookup(inner, &name[dot + 1..]) {
                return Some(v);
            }
        }
    }
    None
}

/// `*` matches any characters (none included) within one segment.
fn segment_match(pattern: &str, segment: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = segment.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The pattern matches `path` or one of its ancestors.
fn prefix_match(p: &FieldPattern, path: &[String]) -> bool {
    p.segments.len() <= path.len()
        && p.segments
            .iter()
            .zip(path)
            .all(|(s, seg)| segment_match(s, seg))
}

/// The pattern may match something below `path`.
fn partial_match(p: &FieldPattern, path: &[String]) -> bool {
    p.segments.len() > path.len()
        && p.segments
            .iter()
            .zip(path)
            .all(|(s, seg)| segment_match(s, seg))
}

pub(super) fn protected_exact(path: &[String]) -> bool {
    PROTECTED
        .iter()
        .any(|p| p.len() <= path.len() && p.iter().zip(path).all(|(a, b)| a == b))
}

pub(super) fn protected_ancestor(path: &[String]) -> bool {
    PROTECTED
        .iter()
        .any(|p| p.len() > path.len() && p.iter().zip(path).all(|(a, b)| a == b))
}

pub(super) fn dotted(path: &[String]) -> String {
    path.join(".")
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
