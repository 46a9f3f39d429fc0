//! The tree path: every layout and every error, through `serde_json::Value`.
//!
//! A record per JSON object (a CloudWatch Logs subscription message yields one per log event,
//! control messages none), `{"message": line}` for a line or array element that is not an object,
//! and a dead item with the reason for anything that cannot be decoded.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::dead_letter::raw_head;
use super::frame::Frame;
use super::item::{DeadRecord, Item, Record};
use super::layout::is_text_line;

/// The tree path: every layout, every error.
pub(super) fn decode_tree(
    frame: &Frame<'_>,
    max_record_bytes: usize,
    out: &mut Vec<Item<'static>>,
) {
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
    // A text line is kept exactly as written, less the `\r` of a CRLF line end.
    let line = || {
        let l = frame.data;
        l.strip_suffix(b"\r").unwrap_or(l)
    };
    if data[0] == b'{' || data[0] == b'[' {
        match serde_json::from_slice::<Value>(data) {
            Ok(v) => push_value(v, offset, None, out),
            Err(e) => match split_concatenated(data) {
                Some(values) => {
                    for (i, v) in values.into_iter().enumerate() {
                        push_value(v, offset, Some(i as u32), out);
                    }
                }
                None => match std::str::from_utf8(line()) {
                    // In the line layout a line whose JSON breaks off with a syntax error is
                    // text (`[2018-05-17T08:29:12,177][INFO ]…`); truncated JSON is not.
                    Ok(text) if frame.line && is_text_line(data) => {
                        out.push(Item::Record(message_record(text, offset, None)))
                    }
                    _ => out.push(dead(format!("invalid JSON: {e}"))),
                },
            },
        }
        return;
    }
    let text = if frame.line { line() } else { data };
    match std::str::from_utf8(text) {
        Ok(text) => out.push(Item::Record(message_record(text, offset, None))),
        Err(e) => out.push(dead(format!("line is not valid UTF-8: {e}"))),
    }
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
    use crate::record::test_support::{items, texts};

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
}
