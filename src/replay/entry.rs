//! One dead-letter entry, read back: what it can give the cluster again.
//!
//! A stage `index` entry holds the refused document as the worker wrote it (`event.original`) and
//! the index it was for (`f4a.target_index`): it is sent again as it is, with the entry's own
//! `_id` (the document's). A stage `decode` entry holds the record's raw text: it is decoded,
//! normalized and limited again as the service would, with the coordinates the entry kept
//! (bucket, key, offset, and `f4a.object.*` when a recent worker wrote it).
//!
//! What the entry does not hold whole cannot come back: a text cut at the entry's size limit, a
//! record longer than `MAX_RECORD_BYTES` (only its head was kept), bytes that were not UTF-8
//! (replaced in the entry), an object that could not be read at all. Those are refused here
//! with the reason ([`Unreplayable`]), never re-sent mangled.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::record::dead_letter::{DEAD_LETTER_RAW_BYTES, DEAD_LETTER_SOURCE_BYTES};
use crate::record::target::DocId;
use crate::record::{decode_frame, Frame, Limits, Normalized, Normalizer, ObjectContext, Verdict};

/// One hit of the dead-letter index.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) index: String,
    pub(crate) id: String,
    pub(crate) source: Map<String, Value>,
}

impl Hit {
    /// A hit of a `_search` answer; `None` when it has no `_id` or no object `_source`.
    pub(crate) fn from_json(hit: &Value) -> Option<Hit> {
        Some(Hit {
            index: hit.get("_index")?.as_str()?.to_string(),
            id: hit.get("_id")?.as_str()?.to_string(),
            source: hit.get("_source")?.as_object()?.clone(),
        })
    }

    fn str_at(&self, path: &[&str]) -> Option<&str> {
        let (last, parents) = path.split_last()?;
        let mut map = &self.source;
        for p in parents {
            map = map.get(*p)?.as_object()?;
        }
        map.get(*last)?.as_str()
    }

    pub(crate) fn stage(&self) -> Option<&str> {
        self.str_at(&["f4a", "stage"])
    }
}

/// Why an entry cannot be replayed; kept in the entry as `f4a.replay.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreplayable(pub(crate) String);

fn unreplayable<T>(reason: impl Into<String>) -> Result<T, Unreplayable> {
    Err(Unreplayable(reason.into()))
}

/// What the record settings of the run are (the service's, from the environment).
pub(crate) struct Decoding<'a> {
    pub(crate) normalizer: &'a Normalizer,
    pub(crate) limits: Option<&'a Limits>,
    pub(crate) max_record_bytes: usize,
    /// `ES_DOCUMENT_ID=deterministic`: documents are sent with their `_id`.
    pub(crate) with_id: bool,
}

/// What one entry gives the cluster again.
pub(crate) enum Replay {
    /// A stage `index` entry: the stored document, its index and `_id`.
    Document {
        index: String,
        id: Option<String>,
        source: String,
    },
    /// A stage `decode` entry decoded again: its documents (none when the limits drop them all).
    Decoded(Vec<(Normalized<'static>, u64, Option<u32>)>),
}

/// The replay of `hit`, or why there is none.
pub(crate) fn replay(
    hit: &Hit,
    origin: &ObjectContext,
    d: &Decoding<'_>,
) -> Result<Replay, Unreplayable> {
    let id = match (d.with_id, DocId::parse(&hit.id)) {
        (false, _) => None,
        (true, Some(id)) => Some(id),
        (true, None) => {
            return unreplayable(format!(
            "the entry's _id {:?} is not one of the worker's (written with ES_DOCUMENT_ID=none?): \
                 replaying it under ES_DOCUMENT_ID=deterministic could duplicate it",
            hit.id
        ))
        }
    };
    let original = hit.str_at(&["event", "original"]).unwrap_or_default();
    match hit.stage() {
        Some("index") => {
            let Some(index) = hit.str_at(&["f4a", "target_index"]) else {
                return unreplayable("the entry names no f4a.target_index");
            };
            if let Err(e) = serde_json::from_str::<Map<String, Value>>(original) {
                return unreplayable(if original.len() + 3 >= DEAD_LETTER_SOURCE_BYTES {
                    format!(
                        "the entry holds only the first {} KiB of the document",
                        DEAD_LETTER_SOURCE_BYTES / 1024
                    )
                } else {
                    format!("event.original is not a JSON object: {e}")
                });
            }
            if original.contains('\n') {
                // Not the worker's writing (serde_json escapes line breaks): a bulk body needs
                // the source on one line, so it goes through the parser.
                let v: Value = serde_json::from_str(original).unwrap_or_default();
                return Ok(Replay::Document {
                    index: index.to_string(),
                    id: id.map(|i| i.to_string()),
                    source: v.to_string(),
                });
            }
            Ok(Replay::Document {
                index: index.to_string(),
                id: id.map(|i| i.to_string()),
                source: original.to_string(),
            })
        }
        Some("decode") => decode(hit, original, origin, id, d).map(Replay::Decoded),
        Some(other) => unreplayable(format!("unknown f4a.stage {other:?}")),
        None => unreplayable("the entry has no f4a.stage"),
    }
}

/// The text of a decode entry, decoded again; refused when the entry does not hold it whole.
fn decode(
    hit: &Hit,
    raw: &str,
    origin: &ObjectContext,
    id: Option<DocId>,
    d: &Decoding<'_>,
) -> Result<Vec<(Normalized<'static>, u64, Option<u32>)>, Unreplayable> {
    let reason = hit.str_at(&["error", "message"]).unwrap_or_default();
    if raw.is_empty() {
        return unreplayable(format!(
            "the entry holds no record text (the object itself could not be read: {reason}); \
             backfill the object instead"
        ));
    }
    if let Some(full) = longer_than_kept(reason) {
        if full > raw.len() as u64 {
            return unreplayable(format!(
                "the entry holds {} of the record's {full} bytes",
                raw.len()
            ));
        }
    }
    if raw.len() + 3 >= DEAD_LETTER_RAW_BYTES {
        return unreplayable(format!(
            "the entry holds only the first {} KiB of the record",
            DEAD_LETTER_RAW_BYTES / 1024
        ));
    }
    if raw.contains('\u{fffd}') {
        return unreplayable(
            "the record's text holds U+FFFD: bytes that were not UTF-8 were replaced in the entry",
        );
    }
    let offset = origin_offset(hit);
    let mut items = Vec::new();
    let frame = Frame::whole(offset, raw.as_bytes(), !raw.contains('\n'));
    decode_frame(&frame, d.max_record_bytes, &mut items);
    let single = items.len() == 1;
    let mut docs = Vec::with_capacity(items.len());
    for item in items {
        let (mut n, offset, sub) = match d.normalizer.normalize_item(item, origin) {
            Ok(n) => n,
            Err(dead) => return unreplayable(format!("still undecodable: {}", dead.reason)),
        };
        if single {
            // The entry's `_id` is the record's: a replay overwrites instead of duplicating.
            if let Some(id) = id {
                n.id = id;
            }
        }
        if n.timestamp_fallback {
            if let Some(target) = hit.str_at(&["f4a", "target_index"]) {
                n.index = Arc::from(target);
            }
        }
        match d.limits {
            None => docs.push((n, offset, sub)),
            Some(limits) => match limits.apply(n) {
                Verdict::Keep(n, _) => docs.push((n, offset, sub)),
                Verdict::Drop(_) => {}
            },
        }
    }
    Ok(docs)
}

/// `record of N bytes exceeds MAX_RECORD_BYTES (…)`: N.
fn longer_than_kept(reason: &str) -> Option<u64> {
    let rest = reason.strip_prefix("record of ")?;
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("bytes exceeds MAX_RECORD_BYTES")
        .then(|| n.parse().ok())
        .flatten()
}

fn origin_offset(hit: &Hit) -> u64 {
    hit.source
        .get("log")
        .and_then(|l| l.get("offset"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The object an entry came from, as far as it says: a recent worker's entry names the
/// object's version and LastModified (so a re-decoded record gets the very `_id` and fallback
/// `@timestamp` the service would give it); an older one falls back to `event.ingested`.
pub(crate) fn origin(hit: &Hit, ingested: &str, with_id: bool) -> ObjectContext {
    let time = |s: Option<&str>| {
        s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
    };
    let last_modified = time(hit.str_at(&["f4a", "object", "last_modified"]))
        .or_else(|| time(hit.str_at(&["event", "ingested"])))
        .unwrap_or_else(Utc::now);
    ObjectContext {
        bucket: hit
            .str_at(&["aws", "s3", "bucket", "name"])
            .unwrap_or_default()
            .to_string(),
        key: hit
            .str_at(&["aws", "s3", "object", "key"])
            .unwrap_or_default()
            .to_string(),
        // Without the version the sub-records of an old entry still get distinct, stable ids.
        version: hit
            .str_at(&["f4a", "object", "version"])
            .unwrap_or(&hit.id)
            .to_string(),
        last_modified,
        ingested: ingested.to_string(),
        event_time: None,
        provenance: Default::default(),
        with_id,
    }
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
