//! Property tests (issue 4, item 10): the notification parser and the record decoder never panic
//! on arbitrary or mutated input, and valid NDJSON / concatenated JSON always yields every record.
//! Case counts are bounded so the whole file runs in seconds under `cargo test`; set
//! `PROPTEST_CASES` to fuzz longer. Crashers found are kept as regression tests at the bottom.

use std::io::Read;

use f4a_indexer::record::{decode_frame, Framer, Item};
use f4a_indexer::source::notification;
use proptest::prelude::*;
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
