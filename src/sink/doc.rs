//! A document as the sink holds it: encoded once, at the reader, into its two bulk lines.
//!
//! The action line written here (`{"index":{"_id":…,"_index":…}}`, op_type `index` with the
//! deterministic `_id`) is what makes a 409 from the cluster mean "already stored": see
//! [`super::classify`], which relies on it. With `ES_DOCUMENT_ID=none` the line has no `_id`
//! (`{"index":{"_index":…}}`): the cluster picks one, and a redelivery duplicates.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::ack::AckToken;
use crate::record::{Normalized, ObjectContext};

/// Documents are encoded straight into shared blocks of this size and cut from them: one
/// allocation for a hundred small documents instead of one each, and no copy (a block is freed
/// when its last document is settled).
const BODY_BLOCK: usize = 64 * 1024;
/// Room a document needs in the block before encoding starts; a larger one grows the block.
const BODY_ROOM: usize = 4 * 1024;

thread_local! {
    static BODY_BLOCKS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// One document, encoded once as its two bulk lines, with what is needed to settle it.
#[derive(Debug)]
pub struct Doc {
    /// `{"index":{...}}\n{source}\n`
    pub body: Bytes,
    /// Where the source line starts in `body`.
    pub source_at: usize,
    pub index: Arc<str>,
    pub origin: Arc<ObjectContext>,
    pub offset: u64,
    pub sub: Option<u32>,
    /// True for dead-letter entries: they are not dead-lettered again.
    pub dead_letter: bool,
    pub ack: AckToken,
    /// The span of the message this document came from: bulk spans link to it.
    pub trace: Option<opentelemetry::trace::SpanContext>,
}

impl Doc {
    pub fn encode(
        n: Normalized<'_>,
        origin: Arc<ObjectContext>,
        offset: u64,
        sub: Option<u32>,
        dead_letter: bool,
        ack: AckToken,
    ) -> Doc {
        // Both lines are written once, into this thread's body block: no Value for the action
        // line, no buffer per document.
        let (body, source_at) = BODY_BLOCKS.with(|block| {
            let mut buf = block.borrow_mut();
            if buf.capacity() - buf.len() < BODY_ROOM {
                *buf = BytesMut::with_capacity(BODY_BLOCK);
            }
            // Same bytes as serializing {"index":{"_id":…,"_index":…}} (keys in map order).
            if origin.with_id {
                buf.extend_from_slice(b"{\"index\":{\"_id\":\"");
                buf.extend_from_slice(n.id.as_bytes());
                buf.extend_from_slice(b"\",\"_index\":");
            } else {
                // ES_DOCUMENT_ID=none: the cluster picks an id.
                buf.extend_from_slice(b"{\"index\":{\"_index\":");
            }
            write_json_str(&mut buf, &n.index);
            buf.extend_from_slice(b"}}\n");
            let source_at = buf.len();
            n.source.write_to(&mut *buf);
            if let Some(offset) = n.provenance_offset {
                // `{…}` becomes `{…,<provenance>offset}}`: the object's provenance, rendered once.
                let len = buf.len();
                buf.truncate(len - 1);
                if !n.source.is_empty() {
                    buf.extend_from_slice(b",");
                }
                buf.extend_from_slice(origin.provenance_json().as_bytes());
                let _ = write!((&mut *buf).writer(), "{offset}}}}}");
            }
            buf.extend_from_slice(b"\n");
            let body = buf.split().freeze();
            if buf.capacity() > BODY_BLOCK {
                // What is left of a block an unusually big document grew: not kept.
                *buf = BytesMut::new();
            }
            (body, source_at)
        });
        Doc {
            body,
            source_at,
            index: n.index,
            origin,
            offset,
            sub,
            dead_letter,
            ack,
            trace: None,
        }
    }

    /// A document whose source is sent exactly as given (a refused document kept in its
    /// dead-letter entry, replayed): `{"index":{"_id":…,"_index":…}}` (no `_id` when `id` is
    /// `None`) and `source` on one line. The caller checks that `source` is one JSON object
    /// without a line break (`serde_json` output never has one).
    pub fn verbatim(
        id: Option<&str>,
        index: &str,
        source: &str,
        origin: Arc<ObjectContext>,
        ack: AckToken,
    ) -> Doc {
        let mut buf = BytesMut::with_capacity(source.len() + index.len() + 64);
        match id {
            Some(id) => {
                buf.extend_from_slice(b"{\"index\":{\"_id\":");
                write_json_str(&mut buf, id);
                buf.extend_from_slice(b",\"_index\":");
            }
            None => buf.extend_from_slice(b"{\"index\":{\"_index\":"),
        }
        write_json_str(&mut buf, index);
        buf.extend_from_slice(b"}}\n");
        let source_at = buf.len();
        buf.extend_from_slice(source.as_bytes());
        buf.extend_from_slice(b"\n");
        Doc {
            body: buf.freeze(),
            source_at,
            index: index.into(),
            origin,
            offset: 0,
            sub: None,
            dead_letter: false,
            ack,
            trace: None,
        }
    }

    /// The same document with op_type `create` (all a data stream accepts): a second write of
    /// its `_id` answers 409, which the sink counts as done.
    pub fn into_create(self) -> Doc {
        const INDEX: &[u8] = b"{\"index\":";
        let mut body = BytesMut::with_capacity(self.body.len() + 1);
        body.extend_from_slice(b"{\"create\":");
        body.extend_from_slice(self.body.get(INDEX.len()..).unwrap_or_default());
        Doc {
            body: body.freeze(),
            source_at: self.source_at + 1,
            ..self
        }
    }

    /// The document's JSON source (without the newline).
    pub fn source(&self) -> &[u8] {
        let end = self.body.len().saturating_sub(1);
        &self.body[self.source_at.min(end)..end]
    }
}

/// `s` as a JSON string; index names rarely need escaping, so they are usually copied as is.
fn write_json_str(buf: &mut BytesMut, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.extend_from_slice(b"\"");
        buf.extend_from_slice(s.as_bytes());
        buf.extend_from_slice(b"\"");
    } else {
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer(buf.writer(), s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::target::document_id;
    use crate::record::Source;
    use serde_json::{json, Value};

    fn origin() -> Arc<ObjectContext> {
        Arc::new(ObjectContext {
            bucket: "b".into(),
            key: "k".into(),
            version: "v".into(),
            last_modified: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            ingested: "2026-11-24T10:00:00.000Z".into(),
            event_time: None,
            provenance: Default::default(),
            with_id: true,
        })
    }

    #[test]
    fn verbatim_sends_the_source_as_given() {
        let source = r#"{"z":1,"a":"x\"y","@timestamp":"2026-11-20T08:00:00.000Z"}"#;
        let doc = Doc::verbatim(
            Some("abc"),
            "f4a-2026.11.20",
            source,
            origin(),
            AckToken::detached(),
        );
        let expected = format!(
            "{}\n{source}\n",
            json!({"index": {"_id": "abc", "_index": "f4a-2026.11.20"}})
        );
        assert_eq!(std::str::from_utf8(&doc.body).unwrap(), expected);
        assert_eq!(doc.source(), source.as_bytes());
        let no_id = Doc::verbatim(None, "i", "{}", origin(), AckToken::detached());
        assert_eq!(&no_id.body[..], b"{\"index\":{\"_index\":\"i\"}}\n{}\n");
    }

    #[test]
    fn encode_writes_the_two_bulk_lines() {
        let source = json!({"b": [1, 2.5, "x\"y"], "a": {"nested": null}, "é": "ü\n"});
        let n = Normalized {
            index: "f4a-\"odd\"\\name".into(),
            id: document_id(&origin(), 1, None),
            source: Source::Tree(source.as_object().unwrap().clone()),
            provenance_offset: None,
            timestamp_fallback: false,
            timestamp_invalid: false,
        };
        let doc = Doc::encode(n.clone(), origin(), 7, None, false, AckToken::detached());
        // The bytes a serde_json Value of the action line would give.
        let action = json!({"index": {"_index": &*n.index, "_id": n.id.as_str()}});
        let expected = format!("{action}\n{source}\n");
        assert_eq!(std::str::from_utf8(&doc.body).unwrap(), expected);
        assert_eq!(doc.source(), source.to_string().as_bytes());
        let line: Value = serde_json::from_slice(&doc.body[..doc.source_at]).unwrap();
        assert_eq!(line["index"]["_index"], "f4a-\"odd\"\\name");

        // A huge document does not leave a huge buffer behind, and the next one is intact.
        let big = json!({"s": "x".repeat(200_000)});
        let n2 = Normalized {
            source: Source::Tree(big.as_object().unwrap().clone()),
            ..n.clone()
        };
        let doc2 = Doc::encode(n2, origin(), 8, None, false, AckToken::detached());
        assert_eq!(doc2.source().len(), big.to_string().len());
        BODY_BLOCKS.with(|b| assert!(b.borrow().capacity() <= BODY_BLOCK));
        let doc3 = Doc::encode(n.clone(), origin(), 9, None, false, AckToken::detached());
        assert_eq!(doc3.body, doc.body);

        // Appended provenance gives the same document as provenance built into the source.
        let o = origin();
        let appended = Normalized {
            provenance_offset: Some(42),
            ..n.clone()
        };
        let doc4 = Doc::encode(
            appended.clone(),
            o.clone(),
            42,
            None,
            false,
            AckToken::detached(),
        );
        let parsed: Value = serde_json::from_slice(doc4.source()).unwrap();
        assert_eq!(parsed, Value::Object(appended.document(&o)));
        assert_eq!(parsed["log"]["offset"], 42);
        assert_eq!(parsed["aws"]["s3"]["object"]["key"], "k");
        assert_eq!(parsed["b"][2], "x\"y");
    }
}
