//! The framer's tests: offsets, layouts, text lines, resynchronisation, oversized records.

use super::*;
use crate::record::decode::decode_frame;
use crate::record::item::Item;
use crate::record::test_support::{items, texts};

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

#[test]
fn ndjson_lines_with_offsets() {
    // A line starts where the line starts: its leading blanks belong to it.
    let f = frames(b"{\"a\":1}\n{\"b\":2}\r\n\n  {\"c\":3}", 1024);
    assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 8, 18]);
    assert_eq!(f[1].1, "{\"b\":2}\r");
    assert_eq!(
        texts(&items(b"{\"a\":1}\n{\"b\":2}\r\n\n  {\"c\":3}")).len(),
        3
    );
}

#[test]
fn text_lines_starting_with_brackets_are_lines_exactly() {
    let log = "[2018-05-17T08:29:12,177][INFO ][o.e.c.m.MetaDataCreateIndexService] [n1] [logs] creating index, cause [api], shards [5]/[1]\n\
               [2018-05-17T08:29:12,301][WARN ][o.e.m.j.JvmGcMonitorService] [gc][1] overhead, spent [1.2s]\r\n\
               \tat org.elasticsearch.Foo.bar(Foo.java:12)\n\
               {cluster.name=docker-cluster}\n\
               {\"a\":1}\n\
               \n\
               \"quoted\" text\n\
               42 apples\n";
    let want: Vec<String> = log
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l {
            "{\"a\":1}" => l.to_string(),
            _ => serde_json::json!({ "message": l }).to_string(),
        })
        .collect();
    assert_eq!(texts(&items(log.as_bytes())), want);
    // Truncated JSON in the line layout is still a dead record, not text.
    let t = texts(&items(b"[INFO ] up\n{\"a\": 1, \"b\":\n"));
    assert!(t[1].starts_with("DEAD:"), "{t:?}");
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
fn text_lines_among_pretty_printed_values_are_lines() {
    let input = b"{\n  \"a\": 1\n}\n[2018-05-17T08:29:12,177][INFO ][o.e.n.Node] [n1] started\n{INFO} up\n{\n  \"b\": 2\n}\n[\n  {\"c\": 3}\n]\n";
    assert_eq!(
        texts(&items(input)),
        [
            r#"{"a":1}"#,
            r#"{"message":"[2018-05-17T08:29:12,177][INFO ][o.e.n.Node] [n1] started"}"#,
            r#"{"message":"{INFO} up"}"#,
            r#"{"b":2}"#,
            r#"{"c":3}"#,
        ]
    );
}
