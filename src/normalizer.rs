//! Normalizer stage: turns a decoded record into the document that is indexed.
//!
//! It owns four decisions, all documented in the README:
//! - `@timestamp`: the first field of `TIMESTAMP_FIELDS` that parses (RFC 3339 / ISO 8601, epoch
//!   seconds or milliseconds, as numbers or numeric strings), else the object's LastModified;
//!   written as RFC 3339 UTC with milliseconds.
//! - provenance in ECS names: `event.ingested`, `aws.s3.bucket.name`, `aws.s3.object.key`,
//!   `log.offset`.
//! - the collision rule, so that added fields never make a user's document unindexable: a
//!   non-object value on a path the worker writes into becomes `{"value": <it>}` (`"event":
//!   "login"` → `event.value`), and a user value at a leaf the worker sets is kept beside it as
//!   `<leaf>_original` (`@timestamp_original`, `log.offset_original`). Dotted keys under those
//!   roots (`"log.level"`) are merged into the same object.
//! - the deterministic `_id` (bucket, key, object version or ETag, byte offset, sub-position) and
//!   the target index (`ES_INDEX` rendered with `@timestamp`), so a redelivery overwrites.
//!
//! A raw record ([`RawRecord`]) is normalized without a tree ([`Normalizer::normalize_raw`]): its
//! text is kept and `@timestamp` spliced in; only its members under the provenance roots become a
//! (small) tree, for the collision rule. Anything the splice cannot express exactly as the tree
//! path would (a nested timestamp field, an `@timestamp` that is not the chosen one) takes the
//! tree path.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::BufMut;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::config::IndexPattern;
use crate::decoder::{DeadRecord, Item, RawRecord, Record};

/// Roots the worker writes into; dotted user keys under them are expanded so both meet in one object.
const OWNED_ROOTS: [&str; 3] = ["event", "log", "aws"];

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

/// A document ready to be encoded into a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized<'a> {
    /// Shared: every document of a day (or hour) carries the same name.
    pub index: Arc<str>,
    pub id: DocId,
    /// The document; without the provenance fields when `provenance_offset` is set.
    pub source: Source<'a>,
    /// The record uses none of the provenance roots (`event`, `log`, `aws`), the common case: the
    /// encoder appends the object's pre-rendered provenance with this `log.offset` instead of
    /// building the same objects for every record.
    pub provenance_offset: Option<u64>,
    /// No timestamp field parsed: `@timestamp` is the object's LastModified.
    pub timestamp_fallback: bool,
    /// A timestamp field was present but could not be parsed (kept, see the collision rule).
    pub timestamp_invalid: bool,
}

/// A document's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Source<'a> {
    Tree(Map<String, Value>),
    /// A raw record's text with `@timestamp` written into it: over the bytes `replace` if given
    /// (the record's own `@timestamp` value), else as a new last member.
    Raw {
        text: &'a str,
        timestamp: DateTime<Utc>,
        replace: Option<(usize, usize)>,
        /// For a record that uses the provenance roots: those members are written from a tree.
        owned: Option<Box<OwnedRoots>>,
    },
}

/// The members of a raw record under `event`, `log` and `aws`, as a tree with the provenance
/// merged in (the collision rule needs a tree), and where the other members are in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedRoots {
    /// Byte ranges of the other members (`"key":value`) in the record's text, in order.
    kept: Vec<(usize, usize)>,
    tree: Map<String, Value>,
}

impl Source<'_> {
    /// Writes the document as one line of JSON.
    pub fn write_to(&self, buf: &mut impl BufMut) {
        match self {
            // Writing into memory cannot fail.
            Source::Tree(map) => {
                let _ = serde_json::to_writer(buf.writer(), map);
            }
            Source::Raw {
                text,
                timestamp,
                replace,
                owned: Some(owned),
            } => {
                let mut sep = b'{';
                for &(start, end) in &owned.kept {
                    buf.put_u8(sep);
                    sep = b',';
                    put_spliced(buf, text, (start, end), *replace, *timestamp);
                }
                if replace.is_none() {
                    buf.put_u8(sep);
                    sep = b',';
                    put_timestamp_member(buf, *timestamp);
                }
                for (k, v) in &owned.tree {
                    buf.put_u8(sep);
                    let _ = serde_json::to_writer(buf.writer(), k);
                    buf.put_u8(b':');
                    let _ = serde_json::to_writer(buf.writer(), v);
                }
                buf.put_u8(b'}');
            }
            Source::Raw {
                text,
                timestamp,
                replace,
                owned: None,
            } => match *replace {
                Some(_) => put_spliced(buf, text, (0, text.len()), *replace, *timestamp),
                None => {
                    // `{…}` → `{…,"@timestamp":"…"}` (the record has members: see normalize_raw).
                    buf.put_slice(&text.as_bytes()[..text.len().saturating_sub(1)]);
                    buf.put_u8(b',');
                    put_timestamp_member(buf, *timestamp);
                    buf.put_u8(b'}');
                }
            },
        }
    }

    /// The fields as a tree.
    pub fn to_map(&self) -> Map<String, Value> {
        match self {
            Source::Tree(map) => map.clone(),
            Source::Raw { .. } => {
                let mut text = Vec::new();
                self.write_to(&mut text);
                serde_json::from_slice(&text).unwrap_or_default()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Source::Tree(map) if map.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct Normalizer {
    index: IndexPattern,
    /// The pattern uses date items only, so its name is the same for a whole UTC day.
    index_daily: bool,
    dead_letter_index: String,
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

/// `"@timestamp":"<RFC 3339>"`.
fn put_timestamp_member(buf: &mut impl BufMut, timestamp: DateTime<Utc>) {
    buf.put_slice(b"\"@timestamp\":\"");
    write_rfc3339_millis(timestamp, buf);
    buf.put_u8(b'"');
}

/// `text[range]`, with `@timestamp`'s value written over the bytes `replace` if they lie in it.
fn put_spliced(
    buf: &mut impl BufMut,
    text: &str,
    (start, end): (usize, usize),
    replace: Option<(usize, usize)>,
    timestamp: DateTime<Utc>,
) {
    let text = text.as_bytes();
    match replace {
        Some((a, b)) if start <= a && b <= end => {
            buf.put_slice(&text[start..a]);
            buf.put_u8(b'"');
            write_rfc3339_millis(timestamp, buf);
            buf.put_u8(b'"');
            buf.put_slice(&text[b..end]);
        }
        _ => buf.put_slice(&text[start..end]),
    }
}

/// Index names kept per thread by [`Normalizer::index_name`].
const INDEX_CACHE_DAYS: usize = 4;

thread_local! {
    /// Index names last rendered on this thread: (pattern, UTC day, name).
    static INDEX_CACHE: RefCell<Vec<(String, i64, Arc<str>)>> = const { RefCell::new(Vec::new()) };
}

impl Normalizer {
    pub fn new(
        index: IndexPattern,
        dead_letter_index: String,
        timestamp_fields: Vec<String>,
    ) -> Self {
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
            index_daily: date_only(index.as_str()),
            index,
            dead_letter_index,
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
                    index: self.index_name(ts),
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
                raw: crate::decoder::raw_head(rec.text.as_bytes()),
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
            index: self.index_name(ts),
            id: document_id(obj, offset, sub),
            source: Source::Tree(fields),
            provenance_offset,
            timestamp_fallback,
            timestamp_invalid,
        }
    }

    /// `ES_INDEX` rendered with `ts`; a date-only pattern is rendered once per UTC day and thread
    /// (strftime formatting costs more than everything else the normalizer does to a record).
    fn index_name(&self, ts: DateTime<Utc>) -> Arc<str> {
        if !self.index_daily {
            return self.index.render(ts).into();
        }
        let day = ts.timestamp().div_euclid(86_400);
        INDEX_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, _, name)) = cache
                .iter()
                .find(|(pattern, d, _)| *d == day && pattern == self.index.as_str())
            {
                return name.clone();
            }
            let name: Arc<str> = self.index.render(ts).into();
            // A few days at once (late records, objects spanning midnight) stay cached.
            if cache.len() >= INDEX_CACHE_DAYS {
                cache.remove(0);
            }
            cache.push((self.index.as_str().to_string(), day, name.clone()));
            name
        })
    }

    /// The dead-letter document for a record that could not be decoded or was refused by the
    /// cluster. The original travels as a string (`event.original`) so that it can never cause a
    /// mapping conflict of its own in the dead-letter index.
    pub fn dead_letter<'a>(&self, d: &DeadLetter<'_>) -> Normalized<'a> {
        let mut error = Map::new();
        error.insert("type".into(), Value::String(d.error_type.to_string()));
        error.insert("message".into(), Value::String(d.reason.to_string()));
        let mut fields = Map::new();
        fields.insert(
            "@timestamp".into(),
            Value::String(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        fields.insert("error".into(), Value::Object(error));
        let event = object_at(&mut fields, "event");
        event.insert("original".into(), Value::String(d.original.to_string()));
        event.insert("ingested".into(), Value::String(d.obj.ingested.clone()));
        let s3 = object_at(object_at(&mut fields, "aws"), "s3");
        object_at(s3, "bucket").insert("name".into(), Value::String(d.obj.bucket.clone()));
        object_at(s3, "object").insert("key".into(), Value::String(d.obj.key.clone()));
        object_at(&mut fields, "log").insert("offset".into(), Value::from(d.offset));
        let f4a = object_at(&mut fields, "f4a");
        f4a.insert("stage".into(), Value::String(d.stage.to_string()));
        if let Some(index) = d.target_index {
            f4a.insert("target_index".into(), Value::String(index.to_string()));
        }
        Normalized {
            index: self.dead_letter_index.as_str().into(),
            id: document_id(d.obj, d.offset, d.sub),
            source: Source::Tree(fields),
            provenance_offset: None,
            timestamp_fallback: false,
            timestamp_invalid: false,
        }
    }

    /// Dead-letter document for a record the decoder could not read.
    pub fn undecodable<'a>(&self, dead: &DeadRecord, obj: &ObjectContext) -> Normalized<'a> {
        self.dead_letter(&DeadLetter {
            obj,
            offset: dead.offset,
            sub: None,
            stage: "decode",
            error_type: "decode_error",
            reason: &dead.reason,
            original: &dead.raw,
            target_index: None,
        })
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

impl Normalized<'_> {
    /// The whole document as it is indexed, provenance included.
    pub fn document(&self, obj: &ObjectContext) -> Map<String, Value> {
        let mut doc = self.source.to_map();
        if let Some(offset) = self.provenance_offset {
            add_provenance(&mut doc, obj, offset);
        }
        doc
    }
}

/// Adds the provenance fields under the collision rule.
fn add_provenance(fields: &mut Map<String, Value>, obj: &ObjectContext, offset: u64) {
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

/// Everything a dead-letter entry records.
pub struct DeadLetter<'a> {
    pub obj: &'a ObjectContext,
    pub offset: u64,
    pub sub: Option<u32>,
    /// `decode` (the worker could not read it) or `index` (the cluster refused it).
    pub stage: &'a str,
    pub error_type: &'a str,
    pub reason: &'a str,
    pub original: &'a str,
    pub target_index: Option<&'a str>,
}

/// True when every strftime item of `pattern` depends on the date alone (year, month, day, week,
/// weekday): then the rendered name cannot change within a UTC day.
fn date_only(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            i += 1;
            // Padding flags, width and chrono's modifiers.
            while i < b.len() && matches!(b[i], b'-' | b'_' | b'0'..=b'9' | b'.' | b':' | b'#') {
                i += 1;
            }
            match b.get(i) {
                Some(c) if b"YCymbBhdeaAwuUWGgVjDxFv%nt".contains(c) => {}
                _ => return false,
            }
        }
        i += 1;
    }
    true
}

/// A document `_id`: 32 lowercase hex digits, held inline (no allocation per document).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DocId([u8; 32]);

impl DocId {
    pub fn as_str(&self) -> &str {
        // Only ever hex digits (see document_id).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for DocId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 128-bit xxh3 of the record's coordinates, hex: stable across runs, versions and machines.
pub fn document_id(obj: &ObjectContext, offset: u64, sub: Option<u32>) -> DocId {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        obj.bucket.as_bytes(),
        obj.key.as_bytes(),
        obj.version.as_bytes(),
    ] {
        hasher.update(part);
        hasher.update(&[0]);
    }
    hasher.update(&offset.to_le_bytes());
    if let Some(sub) = sub {
        hasher.update(&sub.to_le_bytes());
    }
    let hash = hasher.digest128();
    // Hand-rolled hex: `format!` costs more than the hash itself.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((hash >> ((31 - i) * 4)) & 0xf) as usize];
    }
    DocId(id)
}

/// `2026-11-24T10:00:00.123Z`: RFC 3339, UTC, milliseconds. Written by hand for the years
/// 0–9999 (chrono's general formatter is a large share of the normalizer's cost per record).
pub fn rfc3339_millis(ts: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_millis(ts, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`rfc3339_millis`] appended to `buf`.
pub fn write_rfc3339_millis(ts: DateTime<Utc>, buf: &mut impl BufMut) {
    use chrono::{Datelike, Timelike};
    let year = ts.year();
    if !(0..=9999).contains(&year) {
        buf.put_slice(ts.to_rfc3339_opts(SecondsFormat::Millis, true).as_bytes());
        return;
    }
    let millis = ts.timestamp_subsec_millis().min(999);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: u32, digits: usize| {
        for d in 0..digits {
            out[at + digits - 1 - d] = b'0' + (value / 10u32.pow(d as u32) % 10) as u8;
        }
    };
    put(0, year as u32, 4);
    put(5, ts.month(), 2);
    put(8, ts.day(), 2);
    put(11, ts.hour(), 2);
    put(14, ts.minute(), 2);
    put(17, ts.second().min(59), 2);
    put(20, millis, 3);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = c;
    }
    buf.put_slice(&out);
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

/// The object at `map[key]`, created if absent; a non-object there moves to `map[key].value`.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
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
fn set_leaf(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(old) = map.insert(key.to_string(), value) {
        if map.get(key) != Some(&old) {
            map.insert(format!("{key}_original"), old);
        }
    }
}

/// `"log.level": "info"` becomes `"log": {"level": "info"}` so that it and `log.offset` share one
/// object (an object `log` and a dotted `log.x` in one document confuse some mappers).
fn expand_owned_dotted_keys(fields: &mut Map<String, Value>) {
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

/// RFC 3339 / ISO 8601 strings (offset optional, `T` or space) and epoch numbers: below 1e11 they
/// are seconds (fractions allowed), below 1e14 milliseconds, then microseconds, then nanoseconds.
pub fn parse_timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => n.as_f64().and_then(from_epoch),
        Value::String(s) => parse_timestamp_text(s),
        _ => None,
    }
}

/// [`parse_timestamp`] of a value's JSON text, without building a `Value` for the usual cases.
fn parse_raw_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    match raw.as_bytes().first() {
        Some(b'"') if !raw.contains('\\') => parse_timestamp_text(&raw[1..raw.len() - 1]),
        Some(b'-' | b'0'..=b'9') => raw.parse::<f64>().ok().and_then(from_epoch),
        _ => serde_json::from_str::<Value>(raw)
            .ok()
            .as_ref()
            .and_then(parse_timestamp),
    }
}

fn parse_timestamp_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.to_utc());
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(t.and_utc());
        }
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return s.parse::<f64>().ok().and_then(from_epoch);
    }
    None
}

fn from_epoch(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() {
        return None;
    }
    let a = x.abs();
    let units_per_sec = if a < 1e11 {
        1.0
    } else if a < 1e14 {
        1e3
    } else if a < 1e17 {
        1e6
    } else {
        1e9
    };
    // Whole seconds and the remainder apart: one f64 product in nanoseconds loses the millis.
    let secs = (x / units_per_sec).floor();
    if !(-1e13..=1e13).contains(&secs) {
        return None;
    }
    let rem_micros = ((x - secs * units_per_sec) * (1e6 / units_per_sec)).round();
    let nanos = (rem_micros as u32).min(999_999) * 1000;
    DateTime::from_timestamp(secs as i64, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ObjectContext {
        ObjectContext {
            bucket: "b".into(),
            key: "2026/11/24/10/obj".into(),
            version: "etag1".into(),
            last_modified: DateTime::parse_from_rfc3339("2026-11-20T08:00:00Z")
                .unwrap()
                .to_utc(),
            ingested: "2026-11-24T10:00:01.000Z".into(),
            event_time: None,
            provenance: Default::default(),
        }
    }

    fn norm() -> Normalizer {
        let cfg = crate::config::Config::from_lookup(|k| {
            (k == "SQS_QUEUE_URL").then(|| "http://localhost/q".to_string())
        })
        .unwrap();
        Normalizer::new(cfg.es_index, cfg.dead_letter_index, cfg.timestamp_fields)
    }

    fn rec(v: Value) -> Record {
        Record {
            offset: 7,
            sub: None,
            fields: v.as_object().unwrap().clone(),
            timestamp: None,
        }
    }

    #[test]
    fn timestamps() {
        let t =
            |v: Value| parse_timestamp(&v).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        assert_eq!(
            t(json!("2026-11-24T10:00:00.5+02:00")).unwrap(),
            "2026-11-24T08:00:00.500Z"
        );
        assert_eq!(
            t(json!("2026-11-24 10:00:00")).unwrap(),
            "2026-11-24T10:00:00.000Z"
        );
        assert_eq!(
            t(json!("2026-11-24T10:00:00.123+0000")).unwrap(),
            "2026-11-24T10:00:00.123Z"
        );
        assert_eq!(t(json!(1764000000)).unwrap(), "2025-11-24T16:00:00.000Z");
        assert_eq!(t(json!(1764000000.25)).unwrap(), "2025-11-24T16:00:00.250Z");
        assert_eq!(
            t(json!(1764000000123u64)).unwrap(),
            "2025-11-24T16:00:00.123Z"
        );
        assert_eq!(
            t(json!("1764000000123")).unwrap(),
            "2025-11-24T16:00:00.123Z"
        );
        assert_eq!(t(json!("yesterday")), None);
        assert_eq!(t(json!(true)), None);
        assert_eq!(t(json!(1e300)), None);
        assert_eq!(t(json!("")), None);
    }

    #[test]
    fn hand_written_formats_match_the_general_ones() {
        for t in [
            "2026-11-24T10:00:00.123Z",
            "1970-01-01T00:00:00Z",
            "0001-02-03T04:05:06.999999Z",
            "9999-12-31T23:59:59.5Z",
            "2024-02-29T12:34:56.007Z",
        ] {
            let ts = DateTime::parse_from_rfc3339(t).unwrap().to_utc();
            assert_eq!(
                rfc3339_millis(ts),
                ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                "{t}"
            );
        }
        let far = DateTime::from_timestamp(300_000_000_000, 0).unwrap();
        assert_eq!(
            rfc3339_millis(far),
            far.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        let id = document_id(&ctx(), 7, Some(3));
        let hash = {
            let mut key = b"b\x002026/11/24/10/obj\x00etag1\x00".to_vec();
            key.extend_from_slice(&7u64.to_le_bytes());
            key.extend_from_slice(&3u32.to_le_bytes());
            xxhash_rust::xxh3::xxh3_128(&key)
        };
        assert_eq!(id.as_str(), format!("{hash:032x}"));
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
        let n = Normalizer::new(norm().index.clone(), "dl".into(), vec!["m.t".into()]);
        assert_eq!(
            n.normalize(rec(json!({"m": {"t": "2026-01-02T03:04:05Z"}})), &ctx())
                .document(&ctx())["@timestamp"],
            "2026-01-02T03:04:05.000Z"
        );
    }

    #[test]
    fn index_names_per_day_are_cached_only_for_date_patterns() {
        assert!(date_only("f4a-%Y.%m.%d"));
        assert!(date_only("logs-%G-w%V-%a"));
        assert!(date_only("static-name"));
        assert!(!date_only("f4a-%Y.%m.%d.%H"));
        assert!(!date_only("f4a-%s"));
        assert!(!date_only("f4a-%Y%"));
        let cfg = |pattern: &str| {
            crate::config::Config::from_lookup(|k| match k {
                "SQS_QUEUE_URL" => Some("http://localhost/q".to_string()),
                "ES_INDEX" => Some(pattern.to_string()),
                _ => None,
            })
            .unwrap()
            .es_index
        };
        let ts = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let daily = Normalizer::new(cfg("d-%Y.%m.%d"), "dl".into(), vec![]);
        let hourly = Normalizer::new(cfg("h-%Y.%m.%d.%H"), "dl".into(), vec![]);
        assert!(daily.index_daily && !hourly.index_daily);
        // Interleaved patterns and days on one thread: every name is still right.
        for (t, d, h) in [
            (
                "2026-11-24T23:59:59.999Z",
                "d-2026.11.24",
                "h-2026.11.24.23",
            ),
            ("2026-11-24T00:00:00Z", "d-2026.11.24", "h-2026.11.24.00"),
            ("2026-11-25T00:00:00Z", "d-2026.11.25", "h-2026.11.25.00"),
            ("1969-12-31T23:59:59Z", "d-1969.12.31", "h-1969.12.31.23"),
            ("2026-11-25T13:00:00Z", "d-2026.11.25", "h-2026.11.25.13"),
        ] {
            assert_eq!(&*daily.index_name(ts(t)), d);
            assert_eq!(&*hourly.index_name(ts(t)), h);
            assert_eq!(*norm().index_name(ts(t)), norm().index.render(ts(t)));
        }
    }

    #[test]
    fn dead_letter_document() {
        let d = DeadRecord {
            offset: 3,
            reason: "invalid JSON".into(),
            raw: "{\"a\":".into(),
        };
        let n = norm().undecodable(&d, &ctx());
        assert_eq!(&*n.index, "f4a-dead-letter");
        assert_eq!(n.document(&ctx())["event"]["original"], "{\"a\":");
        assert_eq!(n.document(&ctx())["error"]["message"], "invalid JSON");
        assert_eq!(n.document(&ctx())["f4a"]["stage"], "decode");
        assert_eq!(
            n.document(&ctx())["aws"]["s3"]["object"]["key"],
            "2026/11/24/10/obj"
        );
        assert_eq!(n.id, document_id(&ctx(), 3, None));
    }

    /// Normalizes `line` on the fast path (if the decoder takes it) and on the tree path.
    fn both_paths(
        n: &Normalizer,
        line: &str,
    ) -> (Option<Normalized<'static>>, Normalized<'static>, bool) {
        use crate::decoder::{Decoder, Frame, Item};
        let frame = Frame {
            offset: 7,
            data: line.as_bytes(),
            len: line.len() as u64,
        };
        let mut fast = None;
        let mut raw = false;
        let _ = Decoder::new(1 << 20).decode(&frame, |item| {
            if let Item::Raw(r) = item {
                raw = true;
                let m = n.normalize_raw(r, &ctx());
                fast = m.ok().map(|m| Normalized {
                    source: Source::Tree(m.source.to_map()),
                    index: m.index,
                    id: m.id,
                    provenance_offset: m.provenance_offset,
                    timestamp_fallback: m.timestamp_fallback,
                    timestamp_invalid: m.timestamp_invalid,
                });
            }
            Ok::<(), ()>(())
        });
        let fields: Map<String, Value> = serde_json::from_str(line).unwrap();
        let tree = n.normalize(
            Record {
                offset: 7,
                sub: None,
                fields,
                timestamp: None,
            },
            &ctx(),
        );
        (fast, tree, raw)
    }

    #[test]
    fn fast_path_gives_the_tree_paths_document() {
        let mut dotted = norm();
        dotted = Normalizer::new(
            dotted.index.clone(),
            dotted.dead_letter_index.clone(),
            vec!["m.t".into(), "@timestamp".into(), "ts".into()],
        );
        let owned_ts = Normalizer::new(
            norm().index.clone(),
            "dl".into(),
            vec!["event.created".into(), "log".into(), "ts".into()],
        );
        for (n, line) in [
            (
                norm(),
                r#"{"@timestamp":"2026-11-24T10:00:00+02:00","v":1.0,"big":18446744073709551615}"#,
            ),
            (
                norm(),
                r#"{"ts":1764000000123,"s":"caf\u00e9 \"q\"","ab":[1,{"x":null}]}"#,
            ),
            (norm(), r#"{"@timestamp":"not a time","ts":1764000000123}"#),
            (
                norm(),
                r#"{"ts":"nope","time":"also not","eventTime":"2026-01-02 03:04:05"}"#,
            ),
            (norm(), r#"{"nothing":"to see"}"#),
            (
                norm(),
                r#"{"@timestamp":"2026\u002d11\u002d24T10:00:00Z","x":"\n"}"#,
            ),
            (norm(), r#"{"ts":"1764000000.5"}"#),
            (
                norm(),
                r#" { "spaced" : { "a" : 1 } , "@timestamp" : 1764000000 } "#,
            ),
            (norm(), r#"{"log.level":"info","x":1}"#),
            (norm(), r#"{"event":"login","x":1}"#),
            (norm(), r#"{"aws":{"region":"eu-west-1"},"ts":1}"#),
            (
                norm(),
                r#"{"event":"login","event.action":"x","@timestamp":"2026-01-01T00:00:00Z"}"#,
            ),
            (
                norm(),
                r#"{"log":{"offset":5},"event.ingested":"x","y":[1,{"z":2}]}"#,
            ),
            (
                norm(),
                r#"{"aws.s3.bucket.name":"mine","@timestamp":"bad","ts":7}"#,
            ),
            (norm(), r#"{"log.level":"warn"}"#),
            (
                norm(),
                r#" { "a" : 1 , "log" : "str" , "@timestamp" : 1764000000 } "#,
            ),
            (norm(), r#"{}"#),
            (
                dotted.clone(),
                r#"{"m":{"t":"2026-01-02T03:04:05Z"},"ts":5}"#,
            ),
            (dotted.clone(), r#"{"m.t":"2026-01-02T03:04:05Z"}"#),
            (dotted, r#"{"@timestamp":"2026-01-02T03:04:05Z","ts":5}"#),
            (
                owned_ts.clone(),
                r#"{"event.created":"2026-01-02T03:04:05Z","x":1}"#,
            ),
            (
                owned_ts.clone(),
                r#"{"event":{"created":1764000000},"log":5}"#,
            ),
            (owned_ts, r#"{"log":1764000000,"ts":5}"#),
        ] {
            let (fast, tree, raw) = both_paths(&n, line);
            assert!(raw, "{line} should decode to a raw record");
            let fast = fast.unwrap_or_else(|| panic!("{line}: fast path failed"));
            assert_eq!(fast.document(&ctx()), tree.document(&ctx()), "{line}");
            assert_eq!(
                (
                    &fast.index,
                    &fast.id,
                    fast.timestamp_fallback,
                    fast.timestamp_invalid
                ),
                (
                    &tree.index,
                    &tree.id,
                    tree.timestamp_fallback,
                    tree.timestamp_invalid
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn fast_path_keeps_the_records_text() {
        let (fast, _, _) = both_paths(&norm(), r#"{"n":1.50,"@timestamp":1764000000}"#);
        assert!(fast.is_some());
        use crate::decoder::{Decoder, Frame, Item};
        let line = r#"{"n":1.50,"@timestamp":1764000000,"u":"\u00e9"}"#;
        let frame = Frame {
            offset: 0,
            data: line.as_bytes(),
            len: line.len() as u64,
        };
        let _ = Decoder::new(1 << 20).decode(&frame, |item| {
            let Item::Raw(r) = item else {
                panic!("not raw")
            };
            let n = norm().normalize_raw(r, &ctx()).unwrap();
            let mut out = Vec::new();
            n.source.write_to(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"{"n":1.50,"@timestamp":"2025-11-24T16:00:00.000Z","u":"\u00e9"}"#
            );
            Ok::<(), ()>(())
        });
        // A value the tree cannot hold: fine on the fast path, a decode error where the tree
        // path is needed.
        let frame = |line: &'static str| Frame {
            offset: 0,
            data: line.as_bytes(),
            len: line.len() as u64,
        };
        for (line, ok) in [
            (r#"{"n":[1e999]}"#, true),
            (r#"{"n":[1e999],"log.x":1}"#, true),
            (r#"{"log":{"x":1e999}}"#, false),
        ] {
            let _ = Decoder::new(1 << 20).decode(&frame(line), |item| {
                let Item::Raw(r) = item else {
                    panic!("not raw")
                };
                let n = norm().normalize_raw(r, &ctx());
                assert_eq!(n.is_ok(), ok, "{line}");
                Ok::<(), ()>(())
            });
        }
    }
}
