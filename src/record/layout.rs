//! Layout detection: which framing an object's content really has, decided once per object from
//! its head (issue 15).
//!
//! The rule: a layout is chosen only when the content *is* that layout. The first value must
//! parse as JSON (checked by serde_json over the head, without building it): a top-level array
//! only if it parses as an array; concatenated or pretty-printed values only if the first object
//! parses and spans lines or is followed by another value on its line. Everything else —
//! Elasticsearch's `[2018-05-17T08:29:12,177][INFO ]…` logs, `{INFO} …`, a truncated first
//! record, NDJSON — is lines, where each line is judged on its own. A wrong guess therefore
//! falls back to lines, never to fragments of lines.

use serde::de::IgnoredAny;

/// How much of an object's head is read to decide its layout (held once, then replayed).
pub(crate) const HEAD_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One record per line: a JSON object, or `{"message": line}`.
    Lines,
    /// JSON values cut by tracking brackets: concatenated, pretty-printed, top-level arrays.
    Values,
}

/// The layout of an object whose first bytes are `head`; `complete` when `head` is the whole
/// object (or all of it that could be read).
pub(crate) fn detect(head: &[u8], complete: bool) -> Layout {
    let mut at = if head.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    loop {
        at += head[at..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        let rest = &head[at..];
        let Some(&first) = rest.first() else {
            return Layout::Lines;
        };
        if first != b'{' && first != b'[' {
            return Layout::Lines;
        }
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<IgnoredAny>();
        match values.next() {
            Some(Ok(_)) => {
                let end = values.byte_offset();
                let value = &rest[..end];
                let follows = rest[end..]
                    .iter()
                    .find(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                    .copied();
                let line_ends = matches!(follows, None | Some(b'\n'));
                // Another value on the line: concatenated JSON if it is JSON as far as it goes
                // (`[1]{x` is a text line).
                let value_follows = matches!(follows, Some(b'{' | b'['))
                    && match values.next() {
                        Some(Ok(_)) => true,
                        Some(Err(e)) => e.is_eof(),
                        None => false,
                    };
                if value_follows || memchr::memchr(b'\n', value).is_some() {
                    return Layout::Values;
                }
                if !line_ends {
                    // `[1] some text`, `{"a":1} trailing words`: a text line.
                    return Layout::Lines;
                }
                if first == b'[' {
                    return Layout::Values;
                }
                // `{}` is one line in pretty-printed output too: it decides nothing.
                if value.iter().filter(|b| !b.is_ascii_whitespace()).count() == 2 {
                    at += end;
                    continue;
                }
                return Layout::Lines;
            }
            // The first value is longer than the head and JSON as far as it goes.
            Some(Err(e)) if e.is_eof() && !complete => {
                return if first == b'[' || memchr::memchr(b'\n', rest).is_some() {
                    Layout::Values
                } else {
                    Layout::Lines
                };
            }
            // Not JSON, or a truncated first record: lines, each judged on its own.
            _ => return Layout::Lines,
        }
    }
}

/// Whether a line that starts with `{` or `[` but did not decode is a text line: its JSON breaks
/// off with a syntax error (`[2018-05-17T08:29:12,177][INFO ]`, `{INFO} started`). A line cut
/// short (truncated JSON), or valid JSON the decoder cannot hold (deeper than 128 levels, a
/// number beyond f64), is broken JSON instead: a dead-letter entry.
pub(crate) fn is_text_line(data: &[u8]) -> bool {
    for value in serde_json::Deserializer::from_slice(data).into_iter::<IgnoredAny>() {
        if let Err(e) = value {
            return e.is_syntax();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_only_what_the_content_is() {
        for (head, want) in [
            (&b"{\"a\":1}\n{\"a\":2}\n"[..], Layout::Lines),
            (b"{\"a\":1}{\"a\":2}", Layout::Values),
            (b"{\n  \"a\": 1\n}\n", Layout::Values),
            (b"[{\"a\":1},{\"a\":2}]", Layout::Values),
            (b"\xEF\xBB\xBF [\n 1,\n 2\n]\n", Layout::Values),
            (b"{}\n{\n  \"a\": null\n}\n", Layout::Values),
            (b"{}\n{\"a\":1}\n", Layout::Lines),
            (
                b"[2018-05-17T08:29:12,177][INFO ][o.e.c.m.MetaDataCreateIndexService] [node-1] created\n",
                Layout::Lines,
            ),
            (b"[INFO ] starting\n", Layout::Lines),
            (b"{INFO} starting\n", Layout::Lines),
            (b"[1] some text\n", Layout::Lines),
            (b"[1]{x\n", Layout::Lines),
            (b"{\"a\":1}{\"b\":\n{\"c\":2}", Layout::Values),
            (b"{\"a\":1} trailing words\n", Layout::Lines),
            (b"{\"a\": \n{\"b\":1}\n", Layout::Lines),
            (b"{\"a\": 1, \"b\":", Layout::Lines),
            (b"\"quoted\"\n", Layout::Lines),
            (b"12 apples\n", Layout::Lines),
            (b"", Layout::Lines),
            (b"  \n\n", Layout::Lines),
        ] {
            assert_eq!(detect(head, true), want, "{}", String::from_utf8_lossy(head));
        }
        // A first value longer than the head: JSON as far as it goes.
        assert_eq!(detect(b"[{\"a\":1},{\"a\":", false), Layout::Values);
        assert_eq!(detect(b"{\"a\":\n1,", false), Layout::Values);
        assert_eq!(detect(b"{\"a\":\"xxxx", false), Layout::Lines);
        // Deeper than serde_json's limit is still JSON.
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert_eq!(detect(deep.as_bytes(), true), Layout::Values);
    }

    #[test]
    fn text_lines_and_broken_json_are_told_apart() {
        assert!(is_text_line(b"[2018-05-17T08:29:12,177][INFO ] x"));
        assert!(is_text_line(b"{INFO} started"));
        assert!(is_text_line(b"{\"a\":1} trailing"));
        assert!(!is_text_line(b"{\"a\": 1, \"b\":"));
        assert!(!is_text_line(b"{\"s\": \"unterminated"));
        assert!(!is_text_line(b"{\"n\": 1e999}"));
        assert!(!is_text_line(b"{\"a\":1}{\"b\":"));
    }
}
