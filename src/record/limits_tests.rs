//! The item limits over real normalized documents (tree and fast path alike).

use serde_json::{json, Value};

use super::*;
use crate::record::test_support::{items, normalizer, object_context as ctx};
use crate::record::Item;

fn limits(vars: &[(&str, &str)]) -> Limits {
    let cfg = crate::config::Config::from_lookup(|k| {
        if k == "SQS_QUEUE_URL" {
            return Some("http://localhost/q".into());
        }
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    Limits::new(&cfg.record.limits).expect("limits on")
}

/// The record's document after the limits, through the same path the reader takes (the fast
/// path for one-line objects), or the drop reason.
fn apply(l: &Limits, record: Value) -> Result<(Value, Changes), DropReason> {
    let line = format!("{record}\n");
    let item = items(line.as_bytes()).remove(0);
    let item: Item<'static> = item.into_owned();
    let (n, _, _) = normalizer().normalize_item(item, &ctx()).unwrap();
    match l.apply(n) {
        Verdict::Keep(n, changes) => Ok((Value::Object(n.document(&ctx())), changes)),
        Verdict::Drop(reason) => Err(reason),
    }
}

fn overflow(doc: &Value) -> Value {
    serde_json::from_str(doc["f4a"]["overflow"].as_str().unwrap()).unwrap()
}

#[test]
fn everything_off_builds_no_limits() {
    let cfg = crate::config::LimitsConfig::default();
    assert!(Limits::new(&cfg).is_none());
}

#[test]
fn include_and_exclude_keep_the_provenance() {
    let l = limits(&[
        ("FIELDS_INCLUDE", "message,k8s.*,event,log.level"),
        ("FIELDS_EXCLUDE", "k8s.secret*,event.original"),
    ]);
    let (doc, changes) = apply(
        &l,
        json!({"message": "m", "noise": 1, "k8s": {"pod": "p", "secretToken": "s", "ns": {"a": 1}},
               "event": {"action": "x", "original": "o"}, "log": {"level": "info", "file": "f"}}),
    )
    .unwrap();
    assert!(changes.filtered);
    assert_eq!(doc["message"], "m");
    assert!(doc.get("noise").is_none());
    assert_eq!(doc["k8s"], json!({"pod": "p", "ns": {"a": 1}}));
    assert_eq!(doc["event"]["action"], "x");
    assert!(doc["event"].get("original").is_none());
    assert_eq!(doc["log"]["level"], "info");
    assert!(doc["log"].get("file").is_none());
    // The provenance and @timestamp are never removed.
    assert_eq!(doc["event"]["ingested"], "2026-11-24T10:00:01.000Z");
    assert_eq!(doc["log"]["offset"], 0);
    assert_eq!(doc["aws"]["s3"]["bucket"]["name"], "b");
    assert!(doc.get("@timestamp").is_some());

    // Excluding a whole provenance root removes only the user's part of it.
    let l = limits(&[("FIELDS_EXCLUDE", "aws,log,@timestamp,*_id")]);
    let (doc, _) = apply(
        &l,
        json!({"aws": {"region": "eu"}, "log": "line", "user_id": 3, "v": 1}),
    )
    .unwrap();
    assert_eq!(
        doc["aws"],
        json!({"s3": {"bucket": {"name": "b"}, "object": {"key": "2026/11/24/10/obj"}}})
    );
    assert_eq!(doc["log"], json!({"offset": 0}));
    assert!(doc.get("user_id").is_none() && doc["v"] == 1);
    assert!(doc.get("@timestamp").is_some());

    // Nothing to remove: not counted as changed.
    let (_, changes) = apply(&l, json!({"v": 1})).unwrap();
    assert!(!changes.any());
}

#[test]
fn drop_where_matches_values_numbers_arrays_and_regexes() {
    let l = limits(&[(
        "DROP_WHERE",
        "level=debug;http.status=200;path=~^/health;env!=prod",
    )]);
    let keep = json!({"env": "prod", "level": "info"});
    assert!(apply(&l, keep).is_ok());
    for dropped in [
        json!({"env": "prod", "level": "debug"}),
        json!({"env": "prod", "http": {"status": 200}}),
        json!({"env": "prod", "http.status": 200}),
        json!({"env": "prod", "path": "/healthz"}),
        json!({"env": "prod", "level": ["warn", "debug"]}),
        json!({"env": "dev"}),
        json!({"level": "info"}),
    ] {
        assert_eq!(
            apply(&l, dropped.clone()).unwrap_err(),
            DropReason::DropWhere,
            "{dropped}"
        );
    }
    assert!(apply(&l, json!({"env": "prod", "path": "/api/health"})).is_ok());
}

#[test]
fn sampling_is_decided_by_the_id_alone() {
    let l = limits(&[("SAMPLE_PERCENT", "30")]);
    let kept = |l: &Limits| -> Vec<u64> {
        (0..2000u64)
            .filter(|&offset| {
                let n = normalizer().normalize(
                    crate::record::Record {
                        offset,
                        sub: None,
                        fields: json!({"n": offset}).as_object().unwrap().clone(),
                        timestamp: None,
                    },
                    &ctx(),
                );
                matches!(l.apply(n), Verdict::Keep(..))
            })
            .collect()
    };
    let first = kept(&l);
    assert!((500..700).contains(&first.len()), "{}", first.len());
    assert_eq!(kept(&l), first, "the same subset every time");
    assert!(kept(&limits(&[("SAMPLE_PERCENT", "0")])).is_empty());
    // Sampling alone keeps the fast path's text.
    let (doc, _) = apply(&limits(&[("SAMPLE_PERCENT", "99.9999")]), json!({"a": 1})).unwrap();
    assert_eq!(doc["a"], 1);
}

#[test]
fn caps_move_the_offending_part_into_one_string_field() {
    let l = limits(&[("MAX_DEPTH", "2")]);
    let (doc, changes) = apply(
        &l,
        json!({"a": {"b": {"c": 1}, "d": 2}, "x.y.z": 3, "arr": [{"q": 1}], "aws": {"s3": {"bucket": {"extra": 1}}}}),
    )
    .unwrap();
    assert!(changes.max_depth && !changes.max_fields);
    assert_eq!(doc["a"], json!({"d": 2}));
    assert!(doc.get("x.y.z").is_none());
    assert_eq!(doc["arr"], json!([{"q": 1}]));
    assert_eq!(
        overflow(&doc),
        json!({"a.b": {"c": 1}, "x.y.z": 3, "aws.s3.bucket.extra": 1})
    );
    assert_eq!(doc["f4a"]["limits"], json!(["max_depth"]));
    // The provenance is deeper than 2 and stays.
    assert_eq!(doc["aws"]["s3"]["bucket"]["name"], "b");

    let l = limits(&[("MAX_STRING_BYTES", "8")]);
    let long = "0123456789";
    let (doc, changes) = apply(
        &l,
        json!({"m": long, "short": "ok", "tags": ["a", long], "n": {"deep": long}}),
    )
    .unwrap();
    assert!(changes.max_string_bytes);
    assert_eq!(doc["short"], "ok");
    assert!(doc.get("m").is_none() && doc.get("tags").is_none());
    assert_eq!(doc["n"], json!({}));
    assert_eq!(
        overflow(&doc),
        json!({"m": long, "tags": ["a", long], "n.deep": long})
    );
    // Nothing is cut: the string is whole in the overflow.
    assert!(doc["f4a"]["overflow"].as_str().unwrap().contains(long));

    let l = limits(&[("MAX_FIELDS_PER_DOCUMENT", "3")]);
    let (doc, changes) = apply(
        &l,
        json!({"a": 1, "b": {"c": 1, "d": 2}, "e": 1, "log": {"level": "x"}}),
    )
    .unwrap();
    assert!(changes.max_fields);
    // Key order: `@timestamp` (not counted), a, b (object), b.c → 3; b.d, e, log.level move.
    assert_eq!(doc["a"], 1);
    assert_eq!(doc["b"], json!({"c": 1}));
    assert_eq!(overflow(&doc), json!({"b.d": 2, "e": 1, "log.level": "x"}));
    assert_eq!(doc["log"]["offset"], 0);
    assert_eq!(doc["f4a"]["limits"], json!(["max_fields"]));

    // Under every cap: untouched, no overflow field.
    let l = limits(&[
        ("MAX_FIELDS_PER_DOCUMENT", "100"),
        ("MAX_DEPTH", "5"),
        ("MAX_STRING_BYTES", "100"),
    ]);
    let (doc, changes) = apply(&l, json!({"a": {"b": "c"}})).unwrap();
    assert!(!changes.any());
    assert!(doc.get("f4a").is_none());
}

#[test]
fn wildcards_match_within_one_segment() {
    assert!(segment_match("*", ""));
    assert!(segment_match("*", "abc"));
    assert!(segment_match("a*", "abc"));
    assert!(segment_match("*c", "abc"));
    assert!(segment_match("a*c", "abc"));
    assert!(segment_match("a*b*c", "aXbYc"));
    assert!(!segment_match("a*b*c", "aXcYb"));
    assert!(!segment_match("ab", "abc"));
    assert!(!segment_match("a*a", "a"));
    let p = FieldPattern {
        segments: vec!["k".into(), "*".into()],
    };
    let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
    assert!(prefix_match(&p, &path("k.x")));
    assert!(prefix_match(&p, &path("k.x.y")));
    assert!(!prefix_match(&p, &path("k")));
    assert!(partial_match(&p, &path("k")));
}

#[test]
fn the_field_budget_of_an_index_spans_documents() {
    let l = limits(&[("MAX_FIELDS_PER_INDEX", "3")]);
    let (doc, changes) = apply(&l, json!({"a": 1, "b": 2})).unwrap();
    assert!(!changes.any() && doc.get("f4a").is_none());
    let (doc, changes) = apply(&l, json!({"c": 1, "d": 2})).unwrap();
    assert!(changes.max_fields_per_index);
    assert_eq!(doc["c"], 1);
    assert_eq!(overflow(&doc), json!({"d": 2}));
    assert_eq!(doc["f4a"]["limits"], json!(["max_fields_per_index"]));
    // Known fields still go in; new ones do not.
    let (doc, _) = apply(&l, json!({"a": 5, "e": 6})).unwrap();
    assert_eq!(doc["a"], 5);
    assert_eq!(overflow(&doc), json!({"e": 6}));
}
