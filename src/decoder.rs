//! Record decoder stage: splits a decompressed object into records, whatever its layout.
//!
//! Two layers, both streaming with memory bounded by `MAX_RECORD_BYTES`:
//! - [`Framer`] cuts the byte stream into frames without parsing them. The layout is detected from
//!   the first record: newline-delimited JSON (or plain text lines) is cut at newlines; JSON values
//!   concatenated with no separator (Firehose's default), pretty-printed values and top-level arrays
//!   are cut by tracking brackets and strings. A frame longer than the limit keeps only its head.
//! - [`Decoder`] parses one frame into [`Item`]s: a record per JSON object (a CloudWatch Logs
//!   subscription message yields one per log event), `{"message": line}` for a line that is not
//!   JSON, and a dead-letter item with the reason for anything that cannot be decoded.
//!
//! The common record, one JSON object on one line with distinct keys, is not built into a tree:
//! it stays its own text ([`RawRecord`]) with its members located, and only the few fields the
//! normalizer reads are ever parsed. Building and re-serializing a `Value` per record was most of
//! the worker's CPU; anything unusual takes the tree path ([`Record`]).
//!
//! A bad record never stops the object: the framer resynchronises at the next record. In
//! bracket-tracking layouts a truncated record followed by a newline and `{` (impossible in valid
//! JSON) ends there, so one broken line of NDJSON costs one record, not the rest of the object.

use std::convert::Infallible;
use std::fmt;
use std::io::{self, Read};

use chrono::{DateTime, Utc};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// How much of an undecodable record is kept in its dead-letter entry.
pub const DEAD_LETTER_RAW_BYTES: usize = 16 * 1024;
/// Bracket nesting tracked for resynchronisation; deeper input still frames correctly.
const MAX_TRACKED_DEPTH: usize = 512;
const CHUNK: usize = 64 * 1024;

/// One frame: a candidate record and where it starts in the decompressed stream.
#[derive(Debug)]
pub struct Frame<'a> {
    pub offset: u64,
    /// The frame's bytes, or only its first `MAX_RECORD_BYTES` when it is longer.
    pub data: &'a [u8],
    /// The frame's full length in bytes.
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Undecided,
    Lines,
    Values,
}

enum Scan {
    Complete {
        multiline: bool,
    },
    /// A newline followed by `{` where valid JSON cannot have one: the next frame has begun.
    Resynced,
    Eof,
}

pub struct Framer<R> {
    src: R,
    chunk: Box<[u8]>,
    lo: usize,
    hi: usize,
    /// Stream offset of `chunk[lo]`.
    pos: u64,
    layout: Layout,
    in_array: bool,
    max: usize,
    buf: Vec<u8>,
    frame_start: u64,
    frame_len: u64,
    /// First byte of the next frame, already consumed by a resynchronisation.
    pending: Option<(u64, u8)>,
}

impl<R: Read> Framer<R> {
    pub fn new(src: R, max_record_bytes: usize) -> Self {
        Framer {
            src,
            chunk: vec![0; CHUNK].into_boxed_slice(),
            lo: 0,
            hi: 0,
            pos: 0,
            layout: Layout::Undecided,
            in_array: false,
            max: max_record_bytes,
            buf: Vec::new(),
            frame_start: 0,
            frame_len: 0,
            pending: None,
        }
    }

    /// The frame being read when an error ended the stream: its offset and the bytes seen so far.
    pub fn partial(&self) -> (u64, &[u8]) {
        if self.buf.is_empty() {
            (self.pos, &[])
        } else {
            (self.frame_start, &self.buf)
        }
    }

    /// Bytes consumed from the decompressed stream so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.lo < self.hi {
            return Ok(true);
        }
        loop {
            match self.src.read(&mut self.chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.lo = 0;
                    self.hi = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(if self.fill()? {
            Some(self.chunk[self.lo])
        } else {
            None
        })
    }

    fn bump(&mut self) -> io::Result<Option<u8>> {
        let b = self.peek()?;
        if b.is_some() {
            self.lo += 1;
            self.pos += 1;
        }
        Ok(b)
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() < self.max {
            self.buf.push(b);
        }
        self.frame_len += 1;
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        loop {
            self.buf.clear();
            self.frame_len = 0;
            let (start, first) = match self.pending.take() {
                Some(p) => p,
                None => match self.skip_separators()? {
                    Some(p) => p,
                    None => return Ok(None),
                },
            };
            self.frame_start = start;
            let is_open = first == b'{' || first == b'[';
            match self.layout {
                Layout::Undecided if first == b'[' => {
                    self.layout = Layout::Values;
                    self.in_array = true;
                    continue;
                }
                Layout::Undecided if first == b'{' => match self.scan_value(first)? {
                    Scan::Complete { multiline } => {
                        let line_ends = self.rest_of_line_is_blank()?;
                        // `{}` is one line in pretty-printed output too: it decides nothing.
                        let empty =
                            self.buf.iter().filter(|b| !b.is_ascii_whitespace()).count() == 2;
                        if !(empty && line_ends) {
                            self.layout = if line_ends && !multiline {
                                Layout::Lines
                            } else {
                                Layout::Values
                            };
                        }
                    }
                    Scan::Resynced => self.layout = Layout::Lines,
                    Scan::Eof => {}
                },
                Layout::Undecided | Layout::Lines => {
                    if self.layout == Layout::Undecided {
                        self.layout = Layout::Lines;
                    }
                    self.scan_line(first)?;
                }
                Layout::Values => {
                    if !self.in_array && first == b'[' {
                        self.in_array = true;
                        continue;
                    }
                    if self.in_array && first == b']' {
                        self.in_array = false;
                        continue;
                    }
                    if is_open {
                        self.scan_value(first)?;
                    } else {
                        self.scan_scalar(first)?;
                    }
                }
            }
            return Ok(Some(Frame {
                offset: self.frame_start,
                data: &self.buf,
                len: self.frame_len,
            }));
        }
    }

    /// Skips whitespace, a UTF-8 byte-order mark at the start, and commas between array elements.
    fn skip_separators(&mut self) -> io::Result<Option<(u64, u8)>> {
        loop {
            let at = self.pos;
            let Some(b) = self.bump()? else {
                return Ok(None);
            };
            let skip = b.is_ascii_whitespace()
                || (self.in_array && b == b',')
                || (at < 3 && matches!((at, b), (0, 0xEF) | (1, 0xBB) | (2, 0xBF)));
            if !skip {
                return Ok(Some((at, b)));
            }
        }
    }

    /// After a value: are only blanks left on this line? Consumes those blanks.
    fn rest_of_line_is_blank(&mut self) -> io::Result<bool> {
        while let Some(b) = self.peek()? {
            match b {
                b' ' | b'\t' | b'\r' => {
                    self.bump()?;
                }
                b'\n' => return Ok(true),
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// A frame up to the end of the line (newline excluded); the fast path for NDJSON.
    fn scan_line(&mut self, first: u8) -> io::Result<()> {
        if first == b'\n' {
            return Ok(());
        }
        self.push(first);
        while self.fill()? {
            let avail = &self.chunk[self.lo..self.hi];
            let (take, found) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            let room = self.max.saturating_sub(self.buf.len()).min(take);
            self.buf.extend_from_slice(&avail[..room]);
            self.frame_len += take as u64;
            let consumed = take + usize::from(found);
            self.lo += consumed;
            self.pos += consumed as u64;
            if found {
                break;
            }
        }
        Ok(())
    }

    /// A scalar element of a top-level array, or a stray text line between values.
    fn scan_scalar(&mut self, first: u8) -> io::Result<()> {
        let mut string = JsonString::default();
        string.feed(first);
        self.push(first);
        while let Some(b) = self.peek()? {
            if b == b'\n' || (!string.inside && self.in_array && (b == b',' || b == b']')) {
                break;
            }
            string.feed(b);
            self.bump()?;
            self.push(b);
        }
        Ok(())
    }

    /// A balanced `{…}` or `[…]` value, string- and escape-aware.
    fn scan_value(&mut self, first: u8) -> io::Result<Scan> {
        let mut stack: Vec<u8> = vec![first];
        let mut depth: usize = 1;
        let mut string = JsonString::default();
        let mut last_sig = first;
        let mut multiline = false;
        // Frame length at the last raw newline, while we wait for the next significant byte.
        let mut newline_at: Option<u64> = None;
        self.push(first);
        loop {
            let at = self.pos;
            let Some(b) = self.bump()? else {
                return Ok(Scan::Eof);
            };
            if b == b'\n' {
                newline_at = Some(self.frame_len);
                multiline = true;
                self.push(b);
                // A raw newline cannot be inside a JSON string: the string is broken.
                string.escape = false;
                continue;
            }
            if let Some(nl) = newline_at {
                if !b.is_ascii_whitespace() {
                    newline_at = None;
                    // In valid JSON a `{` after a newline opens an array element. After a
                    // key's colon it would be valid too, but no pretty-printer breaks a line
                    // there, while a truncated NDJSON line often ends right after a colon.
                    let valid_here = !string.inside
                        && match stack.last() {
                            Some(b'{') => false,
                            Some(b'[') => last_sig == b'[' || last_sig == b',',
                            _ => true, // deeper than tracked: no opinion
                        };
                    if b == b'{' && !valid_here {
                        self.buf.truncate(nl.saturating_sub(1) as usize);
                        self.frame_len = nl - 1;
                        self.pending = Some((at, b));
                        return Ok(Scan::Resynced);
                    }
                }
            }
            self.push(b);
            if string.feed(b) {
                if !string.inside {
                    last_sig = b'"';
                }
                continue;
            }
            match b {
                b'{' | b'[' => {
                    depth += 1;
                    if stack.len() < MAX_TRACKED_DEPTH {
                        stack.push(b);
                    }
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth < MAX_TRACKED_DEPTH {
                        stack.pop();
                    }
                    if depth == 0 {
                        return Ok(Scan::Complete { multiline });
                    }
                }
                _ => {}
            }
            if !b.is_ascii_whitespace() {
                last_sig = b;
            }
        }
    }
}

/// Escape-aware tracking of whether a byte is inside a JSON string, fed one byte at a time.
#[derive(Debug, Default, Clone, Copy)]
struct JsonString {
    inside: bool,
    escape: bool,
}

impl JsonString {
    /// Feeds `b`; true when it belongs to a string (its opening and closing quotes included).
    fn feed(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = b == b'"';
            self.inside
        }
    }
}

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
    /// Where its members are in `text`, in order (held by the [`Decoder`], reused per record).
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
    /// The head of the raw bytes (lossy UTF-8), at most [`DEAD_LETTER_RAW_BYTES`].
    pub raw: String,
}

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

/// The tree path: every layout, every error.
fn decode_tree(frame: &Frame<'_>, max_record_bytes: usize, out: &mut Vec<Item<'static>>) {
    let offset = frame.offset;
    let dead = |reason: String| {
        Item::Dead(DeadRecord {
            offset,
            reason,
            raw: raw_head(frame.data),
        })
    };
    if frame.len > frame.data.len() as u64 {
        out.push(dead(format!(
            "record of {} bytes exceeds MAX_RECORD_BYTES ({max_record_bytes})",
            frame.len
        )));
        return;
    }
    let data = frame.data.trim_ascii();
    if data.is_empty() {
        return;
    }
    if data[0] == b'{' || data[0] == b'[' {
        match serde_json::from_slice::<Value>(data) {
            Ok(v) => push_value(v, offset, None, out),
            Err(e) => match split_concatenated(data) {
                Some(values) => {
                    for (i, v) in values.into_iter().enumerate() {
                        push_value(v, offset, Some(i as u32), out);
                    }
                }
                None => out.push(dead(format!("invalid JSON: {e}"))),
            },
        }
        return;
    }
    match std::str::from_utf8(data) {
        Ok(text) => out.push(Item::Record(message_record(text, offset, None))),
        Err(e) => out.push(dead(format!("line is not valid UTF-8: {e}"))),
    }
}

/// The head of `data` kept in a dead-letter entry.
pub fn raw_head(data: &[u8]) -> String {
    let head = &data[..data.len().min(DEAD_LETTER_RAW_BYTES)];
    String::from_utf8_lossy(head).into_owned()
}

/// Several JSON values on one line (`{..}{..}`): all of them, or `None` if any is broken.
fn split_concatenated(data: &[u8]) -> Option<Vec<Value>> {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .collect();
    values.ok().filter(|v| v.len() > 1)
}

fn message_record(text: &str, offset: u64, sub: Option<u32>) -> Record {
    let mut fields = Map::new();
    fields.insert("message".into(), Value::String(text.to_string()));
    Record {
        offset,
        sub,
        fields,
        timestamp: None,
    }
}

fn push_value(v: Value, offset: u64, sub: Option<u32>, out: &mut Vec<Item<'static>>) {
    match v {
        Value::Object(map) => {
            if map.get("messageType").and_then(Value::as_str).is_some()
                && map.contains_key("logGroup")
            {
                cloudwatch(map, offset, sub, out);
            } else {
                out.push(Item::Record(Record {
                    offset,
                    sub,
                    fields: map,
                    timestamp: None,
                }));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let sub = nest(sub, i);
                match item {
                    Value::Object(_) => push_value(item, offset, sub, out),
                    other => out.push(Item::Record(message_record(
                        &scalar_text(&other),
                        offset,
                        sub,
                    ))),
                }
            }
        }
        other => out.push(Item::Record(message_record(
            &scalar_text(&other),
            offset,
            sub,
        ))),
    }
}

/// The position of the `i`th record inside a frame that is itself the `outer`th value of its line.
fn nest(outer: Option<u32>, i: usize) -> Option<u32> {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    Some(outer.map_or(i, |o| o.saturating_mul(1_000_000).saturating_add(i)))
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A CloudWatch Logs subscription message: one record per log event; control messages are skipped.
fn cloudwatch(
    mut map: Map<String, Value>,
    offset: u64,
    outer: Option<u32>,
    out: &mut Vec<Item<'static>>,
) {
    if map.get("messageType").and_then(Value::as_str) != Some("DATA_MESSAGE") {
        return;
    }
    let Some(Value::Array(events)) = map.remove("logEvents") else {
        out.push(Item::Dead(DeadRecord {
            offset,
            reason: "CloudWatch Logs DATA_MESSAGE without a logEvents array".into(),
            raw: raw_head(Value::Object(map).to_string().as_bytes()),
        }));
        return;
    };
    let mut cw = Map::new();
    for (from, to) in [
        ("logGroup", "log_group"),
        ("logStream", "log_stream"),
        ("owner", "owner"),
    ] {
        if let Some(v) = map.get(from) {
            cw.insert(to.into(), v.clone());
        }
    }
    for (i, ev) in events.into_iter().enumerate() {
        let mut cw = cw.clone();
        if let Some(id) = ev.get("id") {
            cw.insert("event_id".into(), id.clone());
        }
        let mut fields = Map::new();
        let message = ev.get("message").map(scalar_text).unwrap_or_default();
        fields.insert("message".into(), Value::String(message));
        let mut aws = Map::new();
        aws.insert("cloudwatch".into(), Value::Object(cw));
        fields.insert("aws".into(), Value::Object(aws));
        let timestamp = ev
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        out.push(Item::Record(Record {
            offset,
            sub: nest(outer, i),
            fields,
            timestamp,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize) -> Vec<(u64, String, u64)> {
        let mut f = Framer::new(input, max);
        let mut out = vec![];
        while let Some(fr) = f.next_frame().unwrap() {
            out.push((
                fr.offset,
                String::from_utf8_lossy(fr.data).into_owned(),
                fr.len,
            ));
        }
        out
    }

    fn items(input: &[u8]) -> Vec<Item<'static>> {
        let mut f = Framer::new(input, 1 << 20);
        let mut out = vec![];
        while let Some(fr) = f.next_frame().unwrap() {
            decode_frame(&fr, 1 << 20, &mut out);
        }
        out
    }

    fn texts(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Record(r) => Value::Object(r.fields.clone()).to_string(),
                Item::Raw(r) => r.text.to_string(),
                Item::Dead(d) => format!("DEAD:{}", d.raw),
            })
            .collect()
    }

    #[test]
    fn ndjson_lines_with_offsets() {
        let f = frames(b"{\"a\":1}\n{\"b\":2}\r\n\n  {\"c\":3}", 1024);
        assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 8, 20]);
        assert_eq!(f[1].1, "{\"b\":2}\r");
        assert_eq!(
            texts(&items(b"{\"a\":1}\n{\"b\":2}\r\n\n  {\"c\":3}")).len(),
            3
        );
    }

    #[test]
    fn concatenated_without_separator() {
        let it = items(b"{\"a\":1}{\"b\":\"}{\"}{\"c\":[1,{\"d\":2}]}");
        assert_eq!(
            texts(&it),
            [r#"{"a":1}"#, r#"{"b":"}{"}"#, r#"{"c":[1,{"d":2}]}"#]
        );
    }

    #[test]
    fn pretty_printed_and_arrays() {
        let it = items(b"{\n  \"a\": 1,\n  \"b\": {\"c\": 2}\n}\n{\n  \"d\": 3\n}\n");
        assert_eq!(texts(&it), [r#"{"a":1,"b":{"c":2}}"#, r#"{"d":3}"#]);
        let it = items(b"[\n {\"a\": 1},\n {\"b\": [1,2]}, 7, \"x\"\n]\n");
        assert_eq!(
            texts(&it),
            [
                r#"{"a":1}"#,
                r#"{"b":[1,2]}"#,
                r#"{"message":"7"}"#,
                r#"{"message":"\"x\""}"#
            ]
        );
        let it = items(b"\xEF\xBB\xBF[{\"a\":1}][{\"b\":2}]");
        assert_eq!(texts(&it), [r#"{"a":1}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn text_lines_become_messages() {
        let it = items(b"hello world\n{\"a\":1}\nplain again\n");
        assert_eq!(
            texts(&it),
            [
                r#"{"message":"hello world"}"#,
                r#"{"a":1}"#,
                r#"{"message":"plain again"}"#
            ]
        );
    }

    #[test]
    fn truncated_line_costs_one_record() {
        let input = b"{\"a\":1}\n{\"a\": 2, \"b\":\n{\"a\":3}\n{\"s\": \"unterminated\n{\"a\":4}\n";
        let it = items(input);
        let t = texts(&it);
        assert_eq!(t[0], r#"{"a":1}"#);
        assert!(t[1].starts_with("DEAD:{\"a\": 2"), "{t:?}");
        assert_eq!(t[2], r#"{"a":3}"#);
        assert!(t[3].starts_with("DEAD:{\"s\""), "{t:?}");
        assert_eq!(t[4], r#"{"a":4}"#);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn truncated_first_line_still_detects_lines() {
        let t = texts(&items(b"{\"a\": \n{\"b\":1}\n{\"c\":2}\n"));
        assert!(t[0].starts_with("DEAD:"), "{t:?}");
        assert_eq!(&t[1..], [r#"{"b":1}"#, r#"{"c":2}"#]);
    }

    #[test]
    fn truncated_in_concatenated_layout_resyncs_on_newline() {
        let t = texts(&items(b"{\"a\":1}{\"b\":\n{\"c\":2}"));
        assert_eq!(t[0], r#"{"a":1}"#);
        assert!(t[1].starts_with("DEAD:"));
        assert_eq!(t[2], r#"{"c":2}"#);
    }

    #[test]
    fn oversized_records_are_dead_and_skipped() {
        let mut input = b"{\"a\":1}\n{\"big\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b"\"}\n{\"c\":2}\n");
        let mut f = Framer::new(&input[..], 1024);
        let mut out = vec![];
        while let Some(fr) = f.next_frame().unwrap() {
            assert!(fr.data.len() <= 1024);
            decode_frame(&fr, 1024, &mut out);
        }
        let t = texts(&out);
        assert_eq!(t.len(), 3);
        assert!(matches!(&out[1], Item::Dead(d) if d.reason.contains("exceeds MAX_RECORD_BYTES")));
        assert_eq!(t[2], r#"{"c":2}"#);
        // Same in the bracket-tracking layout.
        let mut input = b"{\"a\":1}{\"big\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b"\"}{\"c\":2}");
        let mut f = Framer::new(&input[..], 1024);
        let mut out = vec![];
        while let Some(fr) = f.next_frame().unwrap() {
            decode_frame(&fr, 1024, &mut out);
        }
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[1], Item::Dead(_)));
    }

    #[test]
    fn bad_inputs_never_panic() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let it = items(deep.as_bytes());
        assert!(
            matches!(&it[0], Item::Dead(d) if d.reason.contains("recursion")),
            "{it:?}"
        );
        let it = items(b"{\"n\": 1e999}\n{\"n\": 123456789012345678901234567890}\n");
        assert!(matches!(&it[0], Item::Dead(_)));
        assert!(matches!(&it[1], Item::Record(_)));
        let it = items(b"{\"a\":1,\"a\":2}\n");
        assert_eq!(texts(&it), [r#"{"a":2}"#]);
        let it = items(b"\xff\xfe garbage\n{\"s\":\"\xff\"}\n");
        assert!(it.iter().all(|i| matches!(i, Item::Dead(_))), "{it:?}");
        assert!(items(b"").is_empty());
        assert!(items(b"\n\n\n\r\n").is_empty());
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = items(&noise);
    }

    #[test]
    fn cloudwatch_subscription() {
        let cw = r#"{"messageType":"DATA_MESSAGE","owner":"123","logGroup":"/aws/lambda/x","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":1700000000000,"message":"hello"},{"id":"2","timestamp":1700000000001,"message":"{\"k\":1}"}]}{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}"#;
        let it = items(cw.as_bytes());
        assert_eq!(it.len(), 2);
        let Item::Record(r) = &it[1] else { panic!() };
        assert_eq!(r.sub, Some(1));
        assert_eq!(r.fields["message"], "{\"k\":1}");
        assert_eq!(r.fields["aws"]["cloudwatch"]["log_group"], "/aws/lambda/x");
        assert_eq!(r.timestamp.unwrap().timestamp_millis(), 1700000000001);
    }

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
            let frame = Frame {
                offset: 0,
                data: line.as_bytes(),
                len: line.len() as u64,
            };
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
