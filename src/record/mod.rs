//! The record wing: an object's bytes → documents. Pure and synchronous: no I/O, no tokio.
//!
//! ```text
//! bytes ─► decompress ─► frame ─► decode ──(fast path: RawRecord)──► normalize ─► Normalized
//!                                   └─────(tree path: Record)─────┘      │
//!                                   └─(DeadRecord)─► dead_letter ◄───────┘ (refused by the sink)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`decompress`] | compression detection by magic bytes (gzip, zstd, Snappy, ZIP) or framing (Hadoop Snappy), the source tap |
//! | `hadoop_snappy` | Hadoop's block framing of raw Snappy blocks |
//! | [`zip`] | a ZIP archive's entries, streamed from their local headers |
//! | `layout` | which layout an object really has (lines unless its first value proves otherwise) |
//! | `frame` | cutting the stream into records: lines, concatenated, pretty-printed, arrays; resync |
//! | `item` | what a frame decodes to: raw record, tree record, dead record |
//! | `decode` | one frame → items; the fast path that keeps one-line objects as text |
//! | `tree` | the tree path: every layout and error, CloudWatch Logs messages |
//! | `normalize` | the [`Normalizer`]: a record → its document (both paths give the same one) |
//! | `document` | the normalized document and how it is written as a bulk source line |
//! | `provenance` | where a record came from, and the collision rule |
//! | `timestamp` | `@timestamp` parsing and RFC 3339 writing |
//! | `target` | the deterministic `_id` and the index name |
//! | `limits` | the item limits: sample, `DROP_WHERE`, field lists, caps (`f4a.overflow`) |
//! | `caps` | the caps' walks: what moves into the overflow |
//! | `dead_letter` | one entry shape for records that cannot be decoded or that the cluster refuses |
//!
//! Everything here runs on the reader's blocking thread, once per record: it is the hot path
//! measured by `make bench`.

pub(crate) mod caps;
pub(crate) mod dead_letter;
pub(crate) mod decode;
pub mod decompress;
pub(crate) mod document;
pub(crate) mod frame;
pub(crate) mod hadoop_snappy;
pub(crate) mod item;
pub(crate) mod layout;
pub(crate) mod limits;
pub(crate) mod normalize;
pub(crate) mod provenance;
pub(crate) mod target;
pub(crate) mod timestamp;
pub(crate) mod tree;
pub mod zip;

pub use dead_letter::DeadLetters;
pub use decode::{decode_frame, Decoder};
pub use document::{Normalized, Source};
pub use frame::{Frame, Framer};
pub use item::{DeadRecord, Item, RawRecord, Record};
pub use limits::{Changes, DropReason, Limits, Verdict};
pub use normalize::Normalizer;
pub use provenance::ObjectContext;

#[cfg(test)]
mod fast_path_tests;

/// Shared by the unit tests of this wing.
#[cfg(test)]
pub(crate) mod test_support {
    use chrono::DateTime;
    use serde_json::Value;

    use super::{decode_frame, Framer, Item, Normalizer, ObjectContext};
    use crate::config::{Config, IndexPattern};

    pub(crate) fn object_context() -> ObjectContext {
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

    fn default_config() -> Config {
        Config::from_lookup(|k| (k == "SQS_QUEUE_URL").then(|| "http://localhost/q".to_string()))
            .unwrap()
    }

    /// `ES_INDEX`'s default, `f4a-%Y.%m.%d`.
    pub(crate) fn default_index() -> IndexPattern {
        default_config().record.index
    }

    /// A normalizer with the default settings.
    pub(crate) fn normalizer() -> Normalizer {
        let cfg = default_config();
        Normalizer::new(cfg.record.index, cfg.record.timestamp_fields)
    }

    /// Every item of `input`, framed and decoded as the reader does.
    pub(crate) fn items(input: &[u8]) -> Vec<Item<'static>> {
        let mut f = Framer::new(input, 1 << 20);
        let mut out = vec![];
        while let Some(fr) = f.next_frame().unwrap() {
            decode_frame(&fr, 1 << 20, &mut out);
        }
        out
    }

    /// Items as text: a record's JSON, a raw record's text, `DEAD:` and the raw head.
    pub(crate) fn texts(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Record(r) => Value::Object(r.fields.clone()).to_string(),
                Item::Raw(r) => r.text.to_string(),
                Item::Dead(d) => format!("DEAD:{}", d.raw),
            })
            .collect()
    }
}
