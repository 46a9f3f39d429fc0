//! The normalized document, and how it is written as a bulk source line.
//!
//! A raw record's document ([`Source::Raw`]) is its own text with `@timestamp` spliced in (and, if
//! it uses the provenance roots, those members rewritten from a small tree); a tree record's is
//! serialized. The provenance of the common record is not in the source at all: the encoder
//! appends the object's pre-rendered provenance ([`Normalized::provenance_offset`]).

use std::sync::Arc;

use bytes::BufMut;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::provenance::{add_provenance, ObjectContext};
use super::target::DocId;
use super::timestamp::write_rfc3339_millis;

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
    pub(super) kept: Vec<(usize, usize)>,
    pub(super) tree: Map<String, Value>,
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
