//! Dead-letter entries: one shape for both stages.
//!
//! A record the worker cannot decode (stage `decode`) and a document the cluster refuses (stage
//! `index`) become the same kind of document in `DEAD_LETTER_INDEX`: `error.type`,
//! `error.message`, `event.original` (the raw record as a string, so it can never conflict with
//! the dead-letter index's own mapping), `f4a.stage`, `f4a.target_index` (for undecodable records the index of the object's fallback
//! date, where a record with no timestamp of its own goes),
//! and the provenance fields. Its `_id` is the record's, so it is idempotent too.
//! `f4a.object.version` and `f4a.object.last_modified` say which version of the object it came
//! from and that version's LastModified: with them `replay-dead-letters` gives a re-decoded
//! record the `_id` and fallback `@timestamp` the service would have given it.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::document::{Normalized, Source};
use super::item::DeadRecord;
use super::provenance::{object_at, ObjectContext};
use super::target::document_id;

/// How much of an undecodable record is kept in its dead-letter entry.
pub const DEAD_LETTER_RAW_BYTES: usize = 16 * 1024;
/// How much of a refused document's source is kept in its dead-letter entry.
pub const DEAD_LETTER_SOURCE_BYTES: usize = 256 * 1024;

/// The head of `data` kept in a dead-letter entry.
pub fn raw_head(data: &[u8]) -> String {
    let head = &data[..data.len().min(DEAD_LETTER_RAW_BYTES)];
    String::from_utf8_lossy(head).into_owned()
}

/// Where an entry was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The worker could not read the record.
    Decode,
    /// The cluster refused the document.
    Index,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Index => "index",
        }
    }
}

/// Builds dead-letter entries for `DEAD_LETTER_INDEX`; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    index: Arc<str>,
}

/// A document the cluster refused, as the sink reports it.
pub struct Refused<'a> {
    pub obj: &'a ObjectContext,
    pub offset: u64,
    pub sub: Option<u32>,
    /// The index it was meant for (`f4a.target_index`).
    pub index: &'a str,
    /// Its JSON source.
    pub source: &'a [u8],
    /// The cluster's error type and reason (`mapper_parsing_exception`, …).
    pub error_type: &'a str,
    pub reason: &'a str,
}

/// Everything a dead-letter entry records.
struct Entry<'a> {
    obj: &'a ObjectContext,
    offset: u64,
    sub: Option<u32>,
    stage: Stage,
    error_type: &'a str,
    reason: &'a str,
    original: &'a str,
    target_index: Option<&'a str>,
}

impl DeadLetters {
    pub fn new(index: &str) -> DeadLetters {
        DeadLetters {
            index: index.into(),
        }
    }

    /// The entry for a record the decoder could not read; `target_index` is where it would have
    /// gone as far as is known (the object's fallback date: [`super::Normalizer::fallback_index`]).
    pub fn undecodable<'a>(
        &self,
        dead: &DeadRecord,
        obj: &ObjectContext,
        target_index: Option<&str>,
    ) -> Normalized<'a> {
        self.entry(&Entry {
            obj,
            offset: dead.offset,
            sub: None,
            stage: Stage::Decode,
            error_type: "decode_error",
            reason: &dead.reason,
            original: &dead.raw,
            target_index,
        })
    }

    /// The entry for a document the cluster refused for good; the first
    /// `DEAD_LETTER_SOURCE_BYTES` of its source are kept.
    pub fn refused<'a>(&self, r: &Refused<'_>) -> Normalized<'a> {
        let source = &r.source[..r.source.len().min(DEAD_LETTER_SOURCE_BYTES)];
        let original = String::from_utf8_lossy(source);
        self.entry(&Entry {
            obj: r.obj,
            offset: r.offset,
            sub: r.sub,
            stage: Stage::Index,
            error_type: r.error_type,
            reason: r.reason,
            original: &original,
            target_index: Some(r.index),
        })
    }

    /// The one shape of an entry. The original travels as a string (`event.original`) so that it
    /// can never cause a mapping conflict of its own in the dead-letter index.
    fn entry<'a>(&self, d: &Entry<'_>) -> Normalized<'a> {
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
        f4a.insert("stage".into(), Value::String(d.stage.as_str().to_string()));
        if let Some(index) = d.target_index {
            f4a.insert("target_index".into(), Value::String(index.to_string()));
        }
        let object = object_at(f4a, "object");
        object.insert("version".into(), Value::String(d.obj.version.clone()));
        object.insert(
            "last_modified".into(),
            Value::String(
                d.obj
                    .last_modified
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        );
        Normalized {
            index: self.index.clone(),
            id: document_id(d.obj, d.offset, d.sub),
            source: Source::Tree(fields),
            provenance_offset: None,
            timestamp_fallback: false,
            timestamp_invalid: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_support::object_context as ctx;

    #[test]
    fn dead_letter_document() {
        let d = DeadRecord {
            offset: 3,
            reason: "invalid JSON".into(),
            raw: "{\"a\":".into(),
        };
        let n = DeadLetters::new("f4a-dead-letter").undecodable(&d, &ctx(), Some("f4a-2026.11.20"));
        assert_eq!(n.document(&ctx())["f4a"]["target_index"], "f4a-2026.11.20");
        assert_eq!(&*n.index, "f4a-dead-letter");
        assert_eq!(n.document(&ctx())["event"]["original"], "{\"a\":");
        assert_eq!(n.document(&ctx())["error"]["message"], "invalid JSON");
        assert_eq!(n.document(&ctx())["f4a"]["stage"], "decode");
        assert_eq!(
            n.document(&ctx())["aws"]["s3"]["object"]["key"],
            "2026/11/24/10/obj"
        );
        assert_eq!(n.id, document_id(&ctx(), 3, None));
        assert_eq!(n.document(&ctx())["f4a"]["object"]["version"], "etag1");
        assert_eq!(
            n.document(&ctx())["f4a"]["object"]["last_modified"],
            "2026-11-20T08:00:00.000Z"
        );
    }
}
