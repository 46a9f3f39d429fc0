use serde_json::json;

use super::*;
use crate::record::target::document_id;
use crate::record::test_support::{normalizer, object_context};
use crate::record::{DeadLetters, DeadRecord};

fn decoding(n: &Normalizer) -> Decoding<'_> {
    Decoding {
        normalizer: n,
        limits: None,
        max_record_bytes: 1024 * 1024,
        with_id: true,
    }
}

/// The entry the service writes for `raw`, read back as a search hit.
fn decode_entry(raw: &str, reason: &str, offset: u64) -> Hit {
    let dead = DeadRecord {
        offset,
        reason: reason.into(),
        raw: raw.into(),
    };
    let n = DeadLetters::new("dl").undecodable(&dead, &object_context(), Some("f4a-2026.11.20"));
    Hit {
        index: "dl".into(),
        id: n.id.to_string(),
        source: n.document(&object_context()),
    }
}

fn replayed(hit: &Hit) -> Result<Replay, Unreplayable> {
    let n = normalizer();
    let origin = origin(hit, "2026-12-01T00:00:00.000Z", true);
    replay(hit, &origin, &decoding(&n))
}

#[test]
fn a_decode_entry_decodes_to_the_document_the_service_would_have_made() {
    let raw = r#"{"msg":"hi","n":1}"#;
    let hit = decode_entry(raw, "invalid JSON: (a decoder bug since fixed)", 42);
    let Ok(Replay::Decoded(docs)) = replayed(&hit) else {
        panic!("not decoded");
    };
    assert_eq!(docs.len(), 1);
    let (n, offset, sub) = &docs[0];
    assert_eq!((*offset, *sub), (42, None));
    // Same _id as the entry, same as the service's for that record.
    assert_eq!(n.id.as_str(), hit.id);
    assert_eq!(n.id, document_id(&object_context(), 42, None));
    // No timestamp of its own: the object's LastModified, as the service does.
    assert!(n.timestamp_fallback);
    assert_eq!(&*n.index, "f4a-2026.11.20");
    let ctx = origin(&hit, "2026-12-01T00:00:00.000Z", true);
    let doc = n.document(&ctx);
    assert_eq!(doc["msg"], "hi");
    assert_eq!(doc["@timestamp"], "2026-11-20T08:00:00.000Z");
    assert_eq!(doc["log"]["offset"], 42);
    assert_eq!(doc["aws"]["s3"]["object"]["key"], "2026/11/24/10/obj");
}

#[test]
fn a_concatenated_decode_entry_gives_the_services_sub_ids() {
    let hit = decode_entry(r#"{"a":1}{"a":2}"#, "x", 7);
    let Ok(Replay::Decoded(docs)) = replayed(&hit) else {
        panic!("not decoded");
    };
    let ids: Vec<_> = docs.iter().map(|(n, _, _)| n.id).collect();
    assert_eq!(
        ids,
        vec![
            document_id(&object_context(), 7, Some(0)),
            document_id(&object_context(), 7, Some(1))
        ]
    );
}

#[test]
fn what_the_entry_does_not_hold_whole_stays_dead_with_the_reason() {
    let cases = [
        (
            decode_entry(
                &"x".repeat(100),
                "record of 5000 bytes exceeds MAX_RECORD_BYTES (100)",
                0,
            ),
            "holds 100 of the record's 5000 bytes",
        ),
        (
            decode_entry(
                &format!("{{\"s\":\"{}", "y".repeat(20_000)),
                "invalid JSON",
                0,
            ),
            "only the first 16 KiB",
        ),
        (
            decode_entry("{\"s\":\"a\u{fffd}b\"}", "invalid JSON", 0),
            "not UTF-8",
        ),
        (
            decode_entry("", "unreadable object: invalid gzip header", 0),
            "backfill the object instead",
        ),
        (
            decode_entry(r#"{"a":"#, "invalid JSON: EOF", 0),
            "still undecodable: invalid JSON",
        ),
    ];
    for (hit, expected) in cases {
        match replayed(&hit) {
            Err(Unreplayable(why)) => assert!(why.contains(expected), "{why} vs {expected}"),
            Ok(_) => panic!("replayed: {expected}"),
        }
    }
}

fn index_entry(original: &str) -> Hit {
    let source = json!({
        "error": {"type": "mapper_parsing_exception", "message": "failed to parse field [n]"},
        "event": {"original": original, "ingested": "2026-11-24T10:00:01.000Z"},
        "f4a": {"stage": "index", "target_index": "f4a-2026.11.20"},
        "aws": {"s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}},
        "log": {"offset": 3},
    });
    Hit {
        index: "dl".into(),
        id: document_id(&object_context(), 3, None).to_string(),
        source: source.as_object().unwrap().clone(),
    }
}

#[test]
fn an_index_entry_is_sent_again_as_it_was_written() {
    let original = r#"{"n":"x","@timestamp":"2026-11-20T08:00:00.000Z","log":{"offset":3}}"#;
    let hit = index_entry(original);
    let Ok(Replay::Document { index, id, source }) = replayed(&hit) else {
        panic!("not a document");
    };
    assert_eq!(index, "f4a-2026.11.20");
    assert_eq!(id.as_deref(), Some(hit.id.as_str()));
    assert_eq!(source, original, "byte for byte");
}

#[test]
fn an_index_entry_cut_at_the_size_limit_stays_dead() {
    let cut = format!("{{\"s\":\"{}", "z".repeat(DEAD_LETTER_SOURCE_BYTES));
    let why = replayed(&index_entry(&cut[..DEAD_LETTER_SOURCE_BYTES]))
        .err()
        .unwrap();
    assert!(why.0.contains("only the first 256 KiB"), "{why}");
    let why = replayed(&index_entry("not json")).err().unwrap();
    assert!(why.0.contains("not a JSON object"), "{why}");
}

#[test]
fn an_id_not_of_the_worker_is_refused_under_deterministic_ids() {
    let mut hit = index_entry(r#"{"a":1}"#);
    hit.id = "cluster-chosen-id".into();
    let why = replayed(&hit).err().unwrap();
    assert!(why.0.contains("ES_DOCUMENT_ID=none"), "{why}");
    // With ES_DOCUMENT_ID=none it goes without an _id.
    let n = normalizer();
    let d = Decoding {
        with_id: false,
        ..decoding(&n)
    };
    let origin = origin(&hit, "", false);
    let Ok(Replay::Document { id, .. }) = replay(&hit, &origin, &d) else {
        panic!("not a document");
    };
    assert_eq!(id, None);
}
