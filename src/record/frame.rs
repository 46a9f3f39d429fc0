//! Framing: cuts a decompressed byte stream into candidate records without parsing them.
//!
//! The layout is decided once per object by [`super::layout::detect`] over the object's head
//! (read ahead, then replayed): lines (NDJSON, text, or both mixed) are cut at newlines; JSON
//! values concatenated with no separator (Firehose's default), pretty-printed values and
//! top-level arrays are cut by tracking brackets and strings. Memory is bounded by
//! `MAX_RECORD_BYTES` (a frame longer than that keeps only its head) plus the head, once.
//!
//! A bad record never stops the object: the framer resynchronises at the next record. In
//! bracket-tracking layouts a truncated record followed by a newline and `{` (impossible in valid
//! JSON) ends there, so one broken record costs one record, not the rest of the object.

use std::io::{self, Read};

use super::layout::{detect, is_text_line, Layout, HEAD_BYTES};

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
    /// A whole line of a line-layout object (newline excluded): a JSON object or a text line.
    /// Otherwise a JSON value (or a stray scalar) of a bracket-tracking layout.
    pub line: bool,
}

impl<'a> Frame<'a> {
    /// A frame of `data` whole, at `offset`: for tests and tools.
    pub fn whole(offset: u64, data: &'a [u8], line: bool) -> Frame<'a> {
        Frame {
            offset,
            data,
            len: data.len() as u64,
            line,
        }
    }
}

pub struct Framer<R> {
    src: R,
    /// Read buffer; the object's head at first (read ahead to decide the layout), then `CHUNK`.
    chunk: Vec<u8>,
    lo: usize,
    hi: usize,
    /// Stream offset of `chunk[lo]`.
    pos: u64,
    /// Offset of this stream's first byte in the object (ZIP entries after the first).
    base: u64,
    /// `None` until the head has been read.
    layout: Option<Layout>,
    /// A read error met while reading the head, reported once the head is framed.
    deferred: Option<io::Error>,
    in_array: bool,
    /// Whether only blanks precede the next frame on its line.
    line_start: bool,
    max: usize,
    buf: Vec<u8>,
    frame_start: u64,
    frame_len: u64,
    /// First byte of the next frame, already consumed by a resynchronisation.
    pending: Option<(u64, u8)>,
}

impl<R: Read> Framer<R> {
    pub fn new(src: R, max_record_bytes: usize) -> Self {
        Self::at(src, max_record_bytes, 0)
    }

    /// A framer whose offsets start at `base`: a later part of one object (a ZIP entry).
    pub fn at(src: R, max_record_bytes: usize, base: u64) -> Self {
        Framer {
            src,
            chunk: Vec::new(),
            lo: 0,
            hi: 0,
            pos: base,
            base,
            layout: None,
            deferred: None,
            in_array: false,
            line_start: true,
            max: max_record_bytes,
            buf: Vec::new(),
            frame_start: base,
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

    /// Offset in the object just past the bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the head, decides the layout, and leaves the head in `chunk` to be framed.
    fn decide(&mut self) -> Layout {
        let mut head = Vec::new();
        let read = self
            .src
            .by_ref()
            .take(HEAD_BYTES as u64)
            .read_to_end(&mut head);
        let complete = match read {
            Ok(_) => head.len() < HEAD_BYTES,
            Err(e) => {
                self.deferred = Some(e);
                true
            }
        };
        let layout = detect(&head, complete);
        self.hi = head.len();
        self.chunk = head;
        self.layout = Some(layout);
        layout
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.lo < self.hi {
            return Ok(true);
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.chunk.len() != CHUNK {
            self.chunk = vec![0; CHUNK];
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
        let layout = match self.layout {
            Some(l) => l,
            None => self.decide(),
        };
        loop {
            self.buf.clear();
            self.frame_len = 0;
            let (start, first) = match self.pending.take() {
                Some(p) => {
                    self.line_start = true; // a resynchronisation happens at a newline
                    p
                }
                None => match self.skip_separators(layout)? {
                    Some(p) => p,
                    None => return Ok(None),
                },
            };
            self.frame_start = start;
            let line = layout == Layout::Lines;
            if line {
                self.scan_line(first)?;
                if self.buf.iter().all(u8::is_ascii_whitespace) && self.frame_len <= self.max as u64
                {
                    continue; // a blank line
                }
            } else {
                // Outside an array, a line that starts like JSON but is not JSON (a text line
                // such as `[2018-05-17T08:29:12,177][INFO ]…` among pretty-printed values) is
                // a line, not a value: cut as a value it would fall apart into fragments.
                let line_start = std::mem::take(&mut self.line_start);
                if !self.in_array
                    && line_start
                    && (first == b'[' || first == b'{')
                    && self.text_line_ahead(first)
                {
                    self.scan_line(first)?;
                    self.line_start = true; // the line's newline is consumed
                    return Ok(Some(Frame {
                        offset: self.frame_start,
                        data: &self.buf,
                        len: self.frame_len,
                        line: true,
                    }));
                }
                if !self.in_array && first == b'[' {
                    self.in_array = true;
                    continue;
                }
                if self.in_array && first == b']' {
                    self.in_array = false;
                    continue;
                }
                if first == b'{' || first == b'[' {
                    self.scan_value(first)?;
                } else {
                    self.scan_scalar(first)?;
                }
            }
            return Ok(Some(Frame {
                offset: self.frame_start,
                data: &self.buf,
                len: self.frame_len,
                line,
            }));
        }
    }

    /// Skips what separates frames: newlines in the line layout (a line's leading blanks are
    /// part of it), whitespace and array commas otherwise, and a UTF-8 byte-order mark at the start.
    fn skip_separators(&mut self, layout: Layout) -> io::Result<Option<(u64, u8)>> {
        loop {
            let at = self.pos;
            let Some(b) = self.bump()? else {
                return Ok(None);
            };
            let rel = at - self.base;
            let skip = match layout {
                Layout::Lines => b == b'\n',
                Layout::Values => b.is_ascii_whitespace() || (self.in_array && b == b','),
            } || (rel < 3 && matches!((rel, b), (0, 0xEF) | (1, 0xBB) | (2, 0xBF)));
            if !skip {
                return Ok(Some((at, b)));
            }
            if b == b'\n' {
                self.line_start = true;
            } else if b == b',' {
                self.line_start = false;
            }
        }
    }

    /// Whether the line whose first byte `first` was just consumed is a text line, as far as the
    /// read buffer holds it (the line layout's rule: its JSON breaks off with a syntax error).
    fn text_line_ahead(&self, first: u8) -> bool {
        if self.lo == 0 || self.chunk.get(self.lo - 1) != Some(&first) {
            return false;
        }
        let rest = &self.chunk[self.lo - 1..self.hi];
        let line = memchr::memchr(b'\n', rest).map_or(rest, |i| &rest[..i]);
        is_text_line(line)
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

    /// A balanced `{…}` or `[…]` value, string- and escape-aware; it ends early at a newline
    /// followed by `{` where valid JSON cannot have one (the next frame has begun).
    fn scan_value(&mut self, first: u8) -> io::Result<()> {
        let mut stack: Vec<u8> = vec![first];
        let mut depth: usize = 1;
        let mut string = JsonString::default();
        let mut last_sig = first;
        // Frame length at the last raw newline, while we wait for the next significant byte.
        let mut newline_at: Option<u64> = None;
        self.push(first);
        loop {
            let at = self.pos;
            let Some(b) = self.bump()? else {
                return Ok(());
            };
            if b == b'\n' {
                newline_at = Some(self.frame_len);
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
                        return Ok(());
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
                        return Ok(());
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

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
