//! Property tests (issue 4, item 10; issue 15): the notification parser, the record decoder and
//! every decompressor never panic on arbitrary, mutated or truncated input; valid NDJSON /
//! concatenated / pretty-printed JSON always yields every record; an object of text lines (even
//! ones starting with `[`, `{`, `"` or digits) yields exactly its lines, in order, and a mix of
//! JSON lines and text lines one document per line.
//! Case counts are bounded so the whole file runs in seconds under `cargo test`; set
//! `PROPTEST_CASES` to fuzz longer. Crashers found are kept as regression tests at the bottom.

use std::io::Read;

use f4a_indexer::record::decompress::{open, Content};
use f4a_indexer::record::zip::Entry;
use f4a_indexer::record::{decode_frame, Framer, Item};
use f4a_indexer::source::notification;
use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::{json, Map, Value};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs the decoder the way the pipeline does; returns every item.
fn decode_all(input: &[u8], max: usize) -> Vec<Item<'static>> {
    let mut framer = Framer::new(input, max);
    let mut items = Vec::new();
    let mut guard = 0usize;
    loop {
        match framer.next_frame() {
            Ok(Some(frame)) => {
                assert!(frame.data.len() <= max, "frame longer than the limit");
                decode_frame(&frame, max, &mut items);
            }
            Ok(None) => break,
            Err(e) => panic!("reading from a slice cannot fail: {e}"),
        }
        guard += 1;
        assert!(guard <= input.len() + 1, "framer does not advance");
    }
    items
}

fn records<'a>(items: &'a [Item<'static>]) -> Vec<&'a Map<String, Value>> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Record(r) => Some(&r.fields),
            Item::Raw(_) | Item::Dead(_) => None,
        })
        .collect()
}

/// Decoding `input` yields exactly `recs`, in order, and nothing else.
fn every_record_out(input: &[u8], recs: &[Map<String, Value>]) -> Result<(), TestCaseError> {
    let items = decode_all(input, 1 << 20);
    let got = records(&items);
    prop_assert_eq!(got.len(), recs.len(), "items: {:?}", items);
    for (g, want) in got.iter().zip(recs) {
        prop_assert_eq!(*g, want);
    }
    Ok(())
}

/// JSON values without floats (float text round trips are not exact), nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        "[a-z{}\\[\\]\":,\\\\ \n]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_@.]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-zA-Z_@.]{1,8}", json_value(), 0..6)
        .prop_map(|m| m.into_iter().collect::<Map<String, Value>>())
        // A CloudWatch Logs envelope is decoded differently: not what this property is about.
        .prop_filter("not a CloudWatch message", |m| {
            !m.contains_key("messageType")
        })
}

/// A printable line that is not JSON: text, or JSON that breaks off with a syntax error. (A line
/// that is JSON, or a JSON prefix cut short, is a record or a broken record, not text.)
fn text_line() -> impl Strategy<Value = String> {
    let start = prop_oneof![
        Just(String::new()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("\"".to_string()),
        Just("[2018-05-17T08:29:12,177][INFO ]".to_string()),
        Just("{\"a\":1} ".to_string()),
        Just("[1]".to_string()),
        Just("\t".to_string()),
        "[0-9]{1,4}",
    ];
    (start, "[ -~éü€]{0,40}")
        .prop_map(|(a, b)| a + &b)
        .prop_filter("text, not JSON", |l| is_text(l))
}

/// What the decoder must read as a text line.
fn is_text(line: &str) -> bool {
    let t = line.trim_ascii();
    if t.is_empty() {
        return false;
    }
    if !t.starts_with(['{', '[']) {
        return true;
    }
    for v in serde_json::Deserializer::from_str(t).into_iter::<IgnoredAny>() {
        if let Err(e) = v {
            return e.is_syntax();
        }
    }
    false
}

fn message(line: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("message".into(), Value::String(line.to_string()));
    m
}

/// Every byte the object yields, ZIP entries one after the other; `Err` where it is damaged.
fn read_content(input: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match open(std::io::Cursor::new(input))?.1 {
        Content::Stream(mut r) => {
            r.read_to_end(&mut out)?;
        }
        Content::Zip(mut entries) => {
            let mut guard = 0;
            while let Some(e) = entries.next_entry()? {
                if let Entry::Data { mut reader, .. } = e {
                    reader.read_to_end(&mut out)?;
                }
                guard += 1;
                assert!(guard < 10_000, "ZIP walker does not advance");
            }
        }
    }
    Ok(out)
}

/// `data` in `format`: zstd (two frames), Snappy framing, Hadoop Snappy, or a stored ZIP entry.
fn compress(format: u8, data: &[u8]) -> Vec<u8> {
    match format % 4 {
        0 => {
            let half = data.len() / 2;
            let mut z = zstd::encode_all(&data[..half], 3).unwrap();
            z.extend(zstd::encode_all(&data[half..], 3).unwrap());
            z
        }
        1 => {
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut w, data).unwrap();
            w.into_inner().unwrap()
        }
        2 => {
            let mut out = Vec::new();
            for block in data.chunks(1000) {
                out.extend((block.len() as u32).to_be_bytes());
                for sub in block.chunks(300) {
                    let c = snap::raw::Encoder::new().compress_vec(sub).unwrap();
                    out.extend((c.len() as u32).to_be_bytes());
                    out.extend(c);
                }
            }
            out
        }
        _ => {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let mut z = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
            z.extend(crc.sum().to_le_bytes());
            z.extend((data.len() as u32).to_le_bytes());
            z.extend((data.len() as u32).to_le_bytes());
            z.extend(5u16.to_le_bytes());
            z.extend(0u16.to_le_bytes());
            z.extend(b"a.log");
            z.extend(data);
            z.extend(b"PK\x05\x06");
            z.extend([0; 18]);
            z
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop_oneof![
        any::<u8>(),
        Just(b'{'),
        Just(b'}'),
        Just(b'['),
        Just(b']'),
        Just(b'"'),
        Just(b'\\'),
        Just(b'\n'),
        Just(0xff),
    ];
    prop_oneof![
        (any::<usize>(), special.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), special).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let len = data.len();
        match *m {
            Mutation::Flip(i, b) if len > 0 => data[i % len] = b,
            Mutation::Insert(i, b) => data.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                data.remove(i % len);
            }
            Mutation::Truncate(i) => data.truncate(i % (len + 1)),
            _ => {}
        }
    }
    data
}

fn valid_notification() -> impl Strategy<Value = String> {
    let key = prop_oneof!["[a-zA-Z0-9/%+ ._-]{0,24}", any::<String>()];
    (key, 0..4usize, any::<bool>(), any::<bool>()).prop_map(|(key, n, sns, eventbridge)| {
        let record = json!({"eventVersion": "2.1", "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T10:00:00.000Z",
            "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 1, "versionId": "v"}}});
        let s3 = json!({"Records": vec![record; n]});
        if eventbridge {
            json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": "b"}, "object": {"key": key}}})
            .to_string()
        } else if sns {
            json!({"Type": "Notification", "Message": s3.to_string()}).to_string()
        } else {
            s3.to_string()
        }
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn notification_parse_never_panics_on_arbitrary_text(body in any::<String>()) {
        let _ = notification::parse(&body);
    }

    #[test]
    fn notification_parse_never_panics_on_mutated_notifications(
        body in valid_notification(),
        ms in prop::collection::vec(mutation(), 0..6),
    ) {
        let parsed = notification::parse(&body);
        prop_assert!(parsed.is_ok(), "valid notification refused: {body} → {parsed:?}");
        let mutated = String::from_utf8_lossy(&mutate(body.into_bytes(), &ms)).into_owned();
        let _ = notification::parse(&mutated);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        max in prop_oneof![Just(8usize), Just(64), Just(1 << 20)],
    ) {
        decode_all(&data, max);
    }

    #[test]
    fn decoder_never_panics_on_json_like_bytes(
        data in "[\\[\\]{}\":,\\\\ \\nabc0-9.eE+-]{0,512}",
        max in prop_oneof![Just(16usize), Just(1 << 20)],
    ) {
        decode_all(data.as_bytes(), max);
    }

    #[test]
    fn every_ndjson_record_comes_out_in_order(
        recs in prop::collection::vec(json_object(), 1..12),
        crlf in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for r in &recs {
            serde_json::to_writer(&mut input, r).unwrap();
            input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        every_record_out(&input, &recs)?;
    }

    #[test]
    fn every_concatenated_or_pretty_record_comes_out_in_order(
        recs in prop::collection::vec(json_object(), 1..8),
        pretty in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for r in &recs {
            if pretty {
                serde_json::to_writer_pretty(&mut input, r).unwrap();
                input.push(b'\n');
            } else {
                serde_json::to_writer(&mut input, r).unwrap();
            }
        }
        every_record_out(&input, &recs)?;
    }

    #[test]
    fn every_text_line_is_one_document_exactly(
        lines in prop::collection::vec(text_line(), 1..16),
        crlf in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for l in &lines {
            input.extend_from_slice(l.as_bytes());
            input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let want: Vec<Map<String, Value>> = lines.iter().map(|l| message(l)).collect();
        every_record_out(&input, &want)?;
    }

    #[test]
    fn mixed_json_and_text_lines_are_one_document_per_line(
        lines in prop::collection::vec(
            prop_oneof![json_object().prop_map(Ok), text_line().prop_map(Err)],
            1..16,
        ),
    ) {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for l in &lines {
            match l {
                Ok(obj) => {
                    serde_json::to_writer(&mut input, obj).unwrap();
                    want.push(obj.clone());
                }
                Err(text) => {
                    input.extend_from_slice(text.as_bytes());
                    want.push(message(text));
                }
            }
            input.push(b'\n');
        }
        every_record_out(&input, &want)?;
    }

    #[test]
    fn decompressors_round_trip_and_never_panic_on_truncated_or_mutated_data(
        data in prop::collection::vec(any::<u8>(), 1..3000),
        format in any::<u8>(),
        cut in any::<usize>(),
        ms in prop::collection::vec(mutation(), 0..4),
    ) {
        let z = compress(format, &data);
        prop_assert_eq!(read_content(z.clone()).expect("intact data decodes"), data);
        let cut = z[..cut % (z.len() + 1)].to_vec();
        let _ = read_content(cut);
        let _ = read_content(mutate(z, &ms));
    }

    #[test]
    fn decoder_never_panics_on_mutated_ndjson(
        recs in prop::collection::vec(json_object(), 1..8),
        ms in prop::collection::vec(mutation(), 1..8),
        max in prop_oneof![Just(32usize), Just(1 << 20)],
    ) {
        let mut input = Vec::new();
        for r in &recs {
            serde_json::to_writer(&mut input, r).unwrap();
            input.push(b'\n');
        }
        let input = mutate(input, &ms);
        let items = decode_all(&input, max);
        // Anything that is not blank yields something: a record or a dead-letter entry. (Array
        // punctuation alone, such as an array truncated right after `[` or `,`, holds no record.)
        if input.iter().any(|b| !b.is_ascii_whitespace() && !matches!(b, b'[' | b']' | b',')) {
            prop_assert!(!items.is_empty(), "input {:?} vanished", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn gzip_reader_never_panics_on_arbitrary_or_truncated_data(
        data in prop::collection::vec(any::<u8>(), 0..1024),
        cut in any::<usize>(),
        gz in any::<bool>(),
    ) {
        let input = if gz {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            let z = e.finish().unwrap();
            z[..cut % (z.len() + 1)].to_vec()
        } else {
            data
        };
        if let Ok(mut r) = f4a_indexer::record::decompress::decompress(std::io::Cursor::new(input)) {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
        }
    }
}

// Regression cases: inputs found by the properties above (and the bad-input corpus).

#[test]
fn regression_deep_nesting_and_huge_numbers() {
    let deep = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    let items = decode_all(deep.as_bytes(), 1 << 20);
    assert!(matches!(items.as_slice(), [Item::Dead(_)]), "{items:?}");
    let items = decode_all(b"{\"n\":1e400}\n{\"n\":-1e999}\n", 1 << 20);
    assert_eq!(
        items.iter().filter(|i| matches!(i, Item::Dead(_))).count(),
        2
    );
    let _ = notification::parse(&("[".repeat(100_000)));
    let _ = notification::parse(
        &("{\"Type\":\"Notification\",\"Message\":".to_string() + &"[".repeat(50_000)),
    );
}

#[test]
fn regression_pretty_printed_object_after_an_empty_first_record() {
    // Found by `every_concatenated_or_pretty_record_comes_out_in_order`: a first record `{}` (one
    // line even when pretty-printed) made the framer pick the line layout and cut the next
    // pretty-printed record into pieces.
    let items = decode_all(b"{}\n{\n  \"a\": null\n}\n", 1 << 20);
    let got = records(&items);
    assert_eq!(got.len(), 2, "{items:?}");
    assert_eq!(got[1]["a"], Value::Null);
    // NDJSON starting with `{}` still uses lines (a broken line costs one record).
    let items = decode_all(b"{}\n{\"a\":1}\n{\"b\":\n{\"c\":3}\n", 1 << 20);
    assert_eq!(records(&items).len(), 3, "{items:?}");
}
