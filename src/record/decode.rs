//! Decoding: one frame → [`Item`]s.
//!
//! The common record, one JSON object on one line with distinct keys, is not built into a tree:
//! it stays its own text ([`RawRecord`]) with its members located, and only the few fields the
//! normalizer reads are ever parsed. Building and re-serializing a `Value` per record was most of
//! the worker's CPU. Anything unusual (arrays, pretty-printed or concatenated values, CloudWatch
//! Logs messages, duplicate or escaped keys, text lines, errors) takes the tree path
//! ([`super::tree`]).

use std::convert::Infallible;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::frame::Frame;
use super::item::{Item, Member, RawRecord};
use super::tree::decode_tree;

/// A record with more brackets than serde_json's nesting limit (128) takes the tree path.
const MAX_RAW_BRACKETS: usize = 128;
/// Key layouts remembered by a [`Decoder`]: objects usually repeat one or a few.
const SHAPES: usize = 8;

/// Decodes frames one at a time, reusing its buffers from record to record.
#[derive(Debug)]
pub struct Decoder {
    max_record_bytes: usize,
    layouts: KeyLayouts,
    members: Vec<Member>,
}

impl Decoder {
    pub fn new(max_record_bytes: usize) -> Self {
        Decoder {
            max_record_bytes,
            layouts: KeyLayouts::default(),
            members: Vec::new(),
        }
    }

    /// Decodes one frame, handing each item to `emit` (which may stop the frame with an error).
    pub fn decode<E>(
        &mut self,
        frame: &Frame<'_>,
        mut emit: impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(raw) = self.raw(frame) {
            return emit(Item::Raw(raw));
        }
        let mut out = Vec::new();
        decode_tree(frame, self.max_record_bytes, &mut out);
        out.into_iter().try_for_each(emit)
    }

    /// The fast path, if the frame is a one-line JSON object with distinct keys and not a
    /// CloudWatch Logs message; `None` sends it down the tree path (which also reports errors).
    fn raw<'a>(&'a mut self, frame: &Frame<'a>) -> Option<RawRecord<'a>> {
        if frame.len > frame.data.len() as u64 {
            return None;
        }
        let data = frame.data.trim_ascii();
        if data.first() != Some(&b'{') || memchr::memchr(b'\n', data).is_some() {
            return None;
        }
        // Skipping a value does not count its depth; the tree path refuses deeper than
        // serde_json's limit, so a record that might be that deep goes there.
        if memchr::memchr2_iter(b'{', b'[', data)
            .nth(MAX_RAW_BRACKETS)
            .is_some()
        {
            return None;
        }
        let text = std::str::from_utf8(data).ok()?;
        self.members.clear();
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = MembersSeed {
            base: text.as_ptr() as usize,
            out: &mut self.members,
        };
        if !seed.deserialize(&mut de).ok()? || de.end().is_err() {
            return None;
        }
        let rec = RawRecord {
            offset: frame.offset,
            text,
            members: &self.members,
        };
        // Lengths first: this runs for every member of every record.
        if rec.members.iter().any(|m| {
            (m.key.1 - m.key.0 == "messageType".len() && rec.key(m) == "messageType")
                || (m.value.1 - m.value.0 >= 20 && beyond_u64(rec.value(m).as_bytes()))
        }) {
            return None;
        }
        self.layouts.distinct_keys(&rec).then_some(rec)
    }
}

/// The key layouts of recent records that were found free of duplicate keys: for the next record
/// with the same layout that check is one hash comparison.
#[derive(Debug, Default)]
struct KeyLayouts {
    shapes: [u64; SHAPES],
    next_shape: usize,
    key_hashes: Vec<u64>,
}

impl KeyLayouts {
    /// True when no key of `rec` repeats. A hash collision counts as a repeat: the tree path then
    /// decides (last value wins, as in any JSON parser that builds a map).
    fn distinct_keys(&mut self, rec: &RawRecord<'_>) -> bool {
        self.key_hashes.clear();
        let mut shape: u64 = rec.members.len() as u64;
        for m in rec.members {
            let h = xxhash_rust::xxh3::xxh3_64(rec.key(m).as_bytes());
            shape = (shape.rotate_left(17) ^ h).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.key_hashes.push(h);
        }
        if self.shapes.contains(&shape) {
            return true;
        }
        self.key_hashes.sort_unstable();
        if self.key_hashes.windows(2).any(|w| w[0] == w[1]) {
            return false;
        }
        self.shapes[self.next_shape] = shape;
        self.next_shape = (self.next_shape + 1) % SHAPES;
        true
    }
}

/// An integer the tree path would change: 20 digits or more and beyond u64 (held as f64 there).
/// Top-level values only: numbers nested in objects and arrays, and numbers beyond f64 (which the
/// tree path refuses), go to the cluster as written and its mapping decides.
fn beyond_u64(v: &[u8]) -> bool {
    let negative = v.first() == Some(&b'-');
    let int = &v[usize::from(negative)..];
    let digits = int.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0
        || int
            .get(digits)
            .is_some_and(|b| matches!(b, b'.' | b'e' | b'E'))
    {
        return false;
    }
    digits > 20
        || (digits == 20
            && (negative || std::str::from_utf8(int).map_or(true, |d| d.parse::<u64>().is_err())))
}

/// Locates a JSON object's members (into `out`, as byte ranges from `base`). Yields false when a
/// key has escapes: such records take the tree path, which unescapes them.
struct MembersSeed<'s> {
    base: usize,
    out: &'s mut Vec<Member>,
}

impl<'de> DeserializeSeed<'de> for MembersSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let at = |s: &str| {
            let start = (s.as_ptr() as usize).saturating_sub(self.base);
            (start, start + s.len())
        };
        let mut plain_keys = true;
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            match key {
                Some(key) => self.out.push(Member {
                    key: at(key),
                    value: at(value.get()),
                }),
                None => plain_keys = false,
            }
        }
        Ok(plain_keys)
    }
}

/// An object key borrowed from the input; `None` if it had escapes.
struct Key<'a>(Option<&'a str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Some(s)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Key(None))
            }
        }
        d.deserialize_str(V)
    }
}

/// Decodes one frame, appending its items to `out` with no borrow of the frame (raw records
/// become trees): for tests and tools; the pipeline uses [`Decoder::decode`].
pub fn decode_frame(frame: &Frame<'_>, max_record_bytes: usize, out: &mut Vec<Item<'static>>) {
    let _ = Decoder::new(max_record_bytes).decode(frame, |item| {
        out.push(item.into_owned());
        Ok::<(), Infallible>(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_takes_plain_one_line_objects_only() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for (line, raw) in [
            (r#"{"a":1,"b":{"c":[1,2]},"s":"x\"y"}"#, true),
            (r#" {"a":1} "#, true),
            (
                r#"{"u":18446744073709551615,"i":-9223372036854775808,"f":1.5e-7}"#,
                true,
            ),
            (r#"{"u":18446744073709551616}"#, false),
            (r#"{"i":-12345678901234567890}"#, false),
            (r#"{"f":1e400,"g":12345678901234567890123.5}"#, true),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a\u0062":1,"ab":2}"#, false),
            (r#"{"a\u0062":1}"#, false),
            (r#"{"messageType":"DATA_MESSAGE"}"#, false),
            ("{\"a\":\n1}", false),
            (r#"[{"a":1}]"#, false),
            (r#"{"a":1}{"b":2}"#, false),
            (deep.as_str(), false),
        ] {
            let frame = Frame::whole(0, line.as_bytes(), true);
            let mut d = Decoder::new(1 << 20);
            // Twice: the second time the key layout may be remembered.
            for _ in 0..2 {
                let mut got = vec![];
                let _ = d.decode(&frame, |i| {
                    got.push(matches!(i, Item::Raw(_)));
                    Ok::<(), ()>(())
                });
                assert_eq!(got.first(), Some(&raw), "{line}");
            }
        }
    }
}
