//! What a frame decodes to: a raw record (the fast path's borrowed text), a record tree, or a
//! dead record with the reason it could not be decoded.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::dead_letter::raw_head;

/// What a frame decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// A record on the fast path: its text, borrowed from the frame.
    Raw(RawRecord<'a>),
    Record(Record),
    Dead(DeadRecord),
}

impl Item<'_> {
    /// The item with no borrow of its frame: a raw record becomes the tree it stands for.
    pub fn into_owned(self) -> Item<'static> {
        match self {
            Item::Raw(raw) => match raw.to_record() {
                Ok(rec) => Item::Record(rec),
                Err(e) => Item::Dead(DeadRecord {
                    offset: raw.offset,
                    reason: format!("invalid JSON: {e}"),
                    raw: raw_head(raw.text.as_bytes()),
                }),
            },
            Item::Record(r) => Item::Record(r),
            Item::Dead(d) => Item::Dead(d),
        }
    }
}

/// One JSON object on one line with distinct keys and no escapes in them, left as its text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord<'a> {
    /// Byte offset of the frame in the decompressed object.
    pub offset: u64,
    /// The object, `{` to `}`, with no newline in it (so it is a valid bulk source line as is).
    pub text: &'a str,
    /// Where its members are in `text`, in order (held by the `Decoder`, reused per record).
    pub members: &'a [Member],
}

/// One member of a [`RawRecord`]: byte ranges in its text of the key (without quotes) and of
/// the value's JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    pub key: (usize, usize),
    pub value: (usize, usize),
}

impl<'a> RawRecord<'a> {
    pub fn key(&self, m: &Member) -> &'a str {
        self.text.get(m.key.0..m.key.1).unwrap_or_default()
    }

    pub fn value(&self, m: &Member) -> &'a str {
        self.text.get(m.value.0..m.value.1).unwrap_or_default()
    }

    /// The record as a tree, as the tree path would have decoded it. A value the tree cannot hold
    /// (a number beyond f64, say) is an error; the fast path passes such values to the cluster as
    /// written.
    pub fn to_record(&self) -> Result<Record, serde_json::Error> {
        let mut fields = Map::new();
        for m in self.members {
            fields.insert(
                self.key(m).to_string(),
                serde_json::from_str(self.value(m))?,
            );
        }
        Ok(Record {
            offset: self.offset,
            sub: None,
            fields,
            timestamp: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Byte offset of the frame in the decompressed object.
    pub offset: u64,
    /// Position inside the frame when one frame holds several records (array, CloudWatch batch).
    pub sub: Option<u32>,
    pub fields: Map<String, Value>,
    /// A timestamp the source format fixes (CloudWatch log events), used before TIMESTAMP_FIELDS.
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadRecord {
    pub offset: u64,
    pub reason: String,
    /// The head of the raw bytes (lossy UTF-8), at most `DEAD_LETTER_RAW_BYTES`.
    pub raw: String,
}
