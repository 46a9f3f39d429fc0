//! The fast path and the tree path give the same document: every record the decoder leaves as
//! text is normalized both ways here and the results compared.

use serde_json::{Map, Value};

use super::decode::Decoder;
use super::document::{Normalized, Source};
use super::frame::Frame;
use super::item::{Item, Record};
use super::normalize::Normalizer;
use super::test_support::{default_index, normalizer as norm, object_context as ctx};

/// Normalizes `line` on the fast path (if the decoder takes it) and on the tree path.
fn both_paths(
    n: &Normalizer,
    line: &str,
) -> (Option<Normalized<'static>>, Normalized<'static>, bool) {
    let frame = Frame::whole(7, line.as_bytes(), true);
    let mut fast = None;
    let mut raw = false;
    let _ = Decoder::new(1 << 20).decode(&frame, |item| {
        if let Item::Raw(r) = item {
            raw = true;
            let m = n.normalize_raw(r, &ctx());
            fast = m.ok().map(|m| Normalized {
                source: Source::Tree(m.source.to_map()),
                index: m.index,
                id: m.id,
                provenance_offset: m.provenance_offset,
                timestamp_fallback: m.timestamp_fallback,
                timestamp_invalid: m.timestamp_invalid,
            });
        }
        Ok::<(), ()>(())
    });
    let fields: Map<String, Value> = serde_json::from_str(line).unwrap();
    let tree = n.normalize(
        Record {
            offset: 7,
            sub: None,
            fields,
            timestamp: None,
        },
        &ctx(),
    );
    (fast, tree, raw)
}

#[test]
fn fast_path_gives_the_tree_paths_document() {
    let dotted = Normalizer::new(
        default_index(),
        vec!["m.t".into(), "@timestamp".into(), "ts".into()],
    );
    let owned_ts = Normalizer::new(
        default_index(),
        vec!["event.created".into(), "log".into(), "ts".into()],
    );
    for (n, line) in [
        (
            norm(),
            r#"{"@timestamp":"2026-11-24T10:00:00+02:00","v":1.0,"big":18446744073709551615}"#,
        ),
        (
            norm(),
            r#"{"ts":1764000000123,"s":"caf\u00e9 \"q\"","ab":[1,{"x":null}]}"#,
        ),
        (norm(), r#"{"@timestamp":"not a time","ts":1764000000123}"#),
        (
            norm(),
            r#"{"ts":"nope","time":"also not","eventTime":"2026-01-02 03:04:05"}"#,
        ),
        (norm(), r#"{"nothing":"to see"}"#),
        (
            norm(),
            r#"{"@timestamp":"2026\u002d11\u002d24T10:00:00Z","x":"\n"}"#,
        ),
        (norm(), r#"{"ts":"1764000000.5"}"#),
        (
            norm(),
            r#" { "spaced" : { "a" : 1 } , "@timestamp" : 1764000000 } "#,
        ),
        (norm(), r#"{"log.level":"info","x":1}"#),
        (norm(), r#"{"event":"login","x":1}"#),
        (norm(), r#"{"aws":{"region":"eu-west-1"},"ts":1}"#),
        (
            norm(),
            r#"{"event":"login","event.action":"x","@timestamp":"2026-01-01T00:00:00Z"}"#,
        ),
        (
            norm(),
            r#"{"log":{"offset":5},"event.ingested":"x","y":[1,{"z":2}]}"#,
        ),
        (
            norm(),
            r#"{"aws.s3.bucket.name":"mine","@timestamp":"bad","ts":7}"#,
        ),
        (norm(), r#"{"log.level":"warn"}"#),
        (
            norm(),
            r#" { "a" : 1 , "log" : "str" , "@timestamp" : 1764000000 } "#,
        ),
        (norm(), r#"{}"#),
        (
            dotted.clone(),
            r#"{"m":{"t":"2026-01-02T03:04:05Z"},"ts":5}"#,
        ),
        (dotted.clone(), r#"{"m.t":"2026-01-02T03:04:05Z"}"#),
        (dotted, r#"{"@timestamp":"2026-01-02T03:04:05Z","ts":5}"#),
        (
            owned_ts.clone(),
            r#"{"event.created":"2026-01-02T03:04:05Z","x":1}"#,
        ),
        (
            owned_ts.clone(),
            r#"{"event":{"created":1764000000},"log":5}"#,
        ),
        (owned_ts, r#"{"log":1764000000,"ts":5}"#),
    ] {
        let (fast, tree, raw) = both_paths(&n, line);
        assert!(raw, "{line} should decode to a raw record");
        let fast = fast.unwrap_or_else(|| panic!("{line}: fast path failed"));
        assert_eq!(fast.document(&ctx()), tree.document(&ctx()), "{line}");
        assert_eq!(
            (
                &fast.index,
                &fast.id,
                fast.timestamp_fallback,
                fast.timestamp_invalid
            ),
            (
                &tree.index,
                &tree.id,
                tree.timestamp_fallback,
                tree.timestamp_invalid
            ),
            "{line}"
        );
    }
}

#[test]
fn fast_path_keeps_the_records_text() {
    let (fast, _, _) = both_paths(&norm(), r#"{"n":1.50,"@timestamp":1764000000}"#);
    assert!(fast.is_some());
    let line = r#"{"n":1.50,"@timestamp":1764000000,"u":"\u00e9"}"#;
    let frame = Frame::whole(0, line.as_bytes(), true);
    let _ = Decoder::new(1 << 20).decode(&frame, |item| {
        let Item::Raw(r) = item else {
            panic!("not raw")
        };
        let n = norm().normalize_raw(r, &ctx()).unwrap();
        let mut out = Vec::new();
        n.source.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"n":1.50,"@timestamp":"2025-11-24T16:00:00.000Z","u":"\u00e9"}"#
        );
        Ok::<(), ()>(())
    });
    // A value the tree cannot hold: fine on the fast path, a decode error where the tree
    // path is needed.
    let frame = |line: &'static str| Frame::whole(0, line.as_bytes(), true);
    for (line, ok) in [
        (r#"{"n":[1e999]}"#, true),
        (r#"{"n":[1e999],"log.x":1}"#, true),
        (r#"{"log":{"x":1e999}}"#, false),
    ] {
        let _ = Decoder::new(1 << 20).decode(&frame(line), |item| {
            let Item::Raw(r) = item else {
                panic!("not raw")
            };
            let n = norm().normalize_raw(r, &ctx());
            assert_eq!(n.is_ok(), ok, "{line}");
            Ok::<(), ()>(())
        });
    }
}
