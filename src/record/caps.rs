//! The caps of the item limits (`MAX_DEPTH`, `MAX_STRING_BYTES`, `MAX_FIELDS_PER_DOCUMENT`,
//! `MAX_FIELDS_PER_INDEX`): walks of a document's tree that move the offending parts, whole,
//! into an overflow map keyed by dotted path (see [`super::limits`], which writes it as
//! `f4a.overflow`). The provenance fields are never moved or counted.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::limits::{dotted, protected_ancestor, protected_exact};

/// Moves every field deeper than `max` (as the cluster counts depth: each dot is a level) into
/// `overflow`; true if anything moved.
pub(super) fn cap_depth(
    map: &mut Map<String, Value>,
    path: &mut Vec<String>,
    max: usize,
    overflow: &mut Map<String, Value>,
) -> bool {
    let mut moved = false;
    for (key, mut value) in std::mem::take(map) {
        let depth = path.len();
        path.extend(key.split('.').map(str::to_string));
        let guarded = protected_exact(path) || protected_ancestor(path);
        let too_deep = path.len() > max
            || (path.len() == max && holds_object(&value) && !value_is_empty(&value));
        if too_deep && !guarded {
            overflow.insert(dotted(path), value);
            moved = true;
        } else {
            match &mut value {
                Value::Object(m) => moved |= cap_depth(m, path, max, overflow),
                Value::Array(items) => {
                    for item in items.iter_mut() {
                        if let Value::Object(m) = item {
                            moved |= cap_depth(m, path, max, overflow);
                        }
                    }
                }
                _ => {}
            }
            map.insert(key, value);
        }
        path.truncate(depth);
    }
    moved
}

/// An object, or an array holding one (at any depth of arrays).
fn holds_object(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(holds_object),
        _ => false,
    }
}

fn value_is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Moves every string longer than `max` bytes (or the array holding it) into `overflow`.
pub(super) fn cap_strings(
    map: &mut Map<String, Value>,
    path: &mut Vec<String>,
    max: usize,
    overflow: &mut Map<String, Value>,
) -> bool {
    let mut moved = false;
    for (key, mut value) in std::mem::take(map) {
        let depth = path.len();
        path.extend(key.split('.').map(str::to_string));
        let guarded = protected_exact(path);
        match &mut value {
            Value::Object(m) => {
                moved |= cap_strings(m, path, max, overflow);
                map.insert(key, value);
            }
            v if !guarded && has_long_string(v, max) => {
                overflow.insert(dotted(path), value);
                moved = true;
            }
            _ => {
                map.insert(key, value);
            }
        }
        path.truncate(depth);
    }
    moved
}

fn has_long_string(v: &Value, max: usize) -> bool {
    match v {
        Value::String(s) => s.len() > max,
        Value::Array(items) => items.iter().any(|i| has_long_string(i, max)),
        Value::Object(m) => m.values().any(|i| has_long_string(i, max)),
        _ => false,
    }
}

/// Keeps the first `max` field paths (objects count, as in the cluster's mapping), in document
/// order; a field that would go beyond is moved whole into `overflow`.
pub(super) fn cap_fields(
    map: &mut Map<String, Value>,
    path: &mut Vec<String>,
    max: usize,
    seen: &mut HashSet<String>,
    overflow: &mut Map<String, Value>,
) -> bool {
    let mut moved = false;
    for (key, mut value) in std::mem::take(map) {
        let depth = path.len();
        path.extend(key.split('.').map(str::to_string));
        if protected_exact(path) {
            map.insert(key, value);
        } else if value.is_object() {
            // The object's own path(s), then its members one by one.
            let own = new_paths(path, depth, seen);
            let guarded = protected_ancestor(path);
            if guarded || seen.len() + own.len() <= max {
                if !guarded {
                    seen.extend(own);
                }
                if let Value::Object(m) = &mut value {
                    moved |= cap_fields(m, path, max, seen, overflow);
                }
                map.insert(key, value);
            } else {
                overflow.insert(dotted(path), value);
                moved = true;
            }
        } else {
            let mut all = new_paths(path, depth, seen);
            collect_paths(&value, path, &mut all);
            all.retain(|p| !seen.contains(p));
            all.sort_unstable();
            all.dedup();
            if seen.len() + all.len() <= max {
                seen.extend(all);
                map.insert(key, value);
            } else {
                overflow.insert(dotted(path), value);
                moved = true;
            }
        }
        path.truncate(depth);
    }
    moved
}

/// The paths a key adds (a dotted key `a.b` under `x` adds `x.a` and `x.a.b`), not yet seen.
fn new_paths(path: &[String], depth: usize, seen: &HashSet<String>) -> Vec<String> {
    (depth + 1..=path.len())
        .map(|n| dotted(&path[..n]))
        .filter(|p| !seen.contains(p))
        .collect()
}

/// Every field path inside `v` (objects in arrays map to the array's path).
fn collect_paths(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                let depth = path.len();
                for seg in k.split('.') {
                    path.push(seg.to_string());
                    out.push(dotted(path));
                }
                collect_paths(inner, path, out);
                path.truncate(depth);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_paths(item, path, out);
            }
        }
        _ => {}
    }
}
