//! Notification stage: turns an SQS message body into the list of S3 objects it announces.
//!
//! Three envelopes are accepted: an S3 event notification sent straight to SQS, the same wrapped in
//! an SNS `Notification` (its `Message` holds the event as a string), and an EventBridge
//! `Object Created` event. Every record of a message is used, not only the first.
//! Object keys in S3 events are URL-encoded (`+` for space, `%xx` for UTF-8 bytes); EventBridge
//! keys are not. Both spellings travel with the [`ObjectRef`], so the object reader can try the
//! other one if the first is not found.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One S3 object named by a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key to fetch first (decoded for S3 events, as given for EventBridge).
    pub key: String,
    /// The other reading of the key, when it differs (tried on NoSuchKey).
    pub alt_key: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    /// When S3 created the object: the start of the end-to-end lag.
    pub event_time: Option<DateTime<Utc>>,
}

/// What a message asks of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Index these objects, then delete the message.
    Objects(Vec<ObjectRef>),
    /// Nothing to index (`s3:TestEvent`, ObjectRemoved, …): log the reason and delete the message.
    Ignore(String),
}

/// The body is not a notification this worker understands. The message is left in the queue so
/// that the queue's redrive policy moves it to its dead-letter queue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an S3 notification: {0}")]
pub struct NotANotification(pub String);

pub fn parse(body: &str) -> Result<Notification, NotANotification> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| NotANotification(format!("body is not JSON ({e})")))?;
    parse_value(&v, 0)
}

fn parse_value(v: &Value, depth: u8) -> Result<Notification, NotANotification> {
    let Some(obj) = v.as_object() else {
        return Err(NotANotification("body is not a JSON object".into()));
    };
    // SNS envelope: the S3 event is a JSON string in `Message`.
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let msg = obj
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| NotANotification("SNS notification without a Message string".into()))?;
        let inner: Value = serde_json::from_str(msg)
            .map_err(|e| NotANotification(format!("SNS Message is not JSON ({e})")))?;
        return parse_value(&inner, depth + 1);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Ignore("s3:TestEvent".into()));
    }
    if let Some(records) = obj.get("Records") {
        return parse_s3_records(records);
    }
    if let Some(detail_type) = obj.get("detail-type").and_then(Value::as_str) {
        return parse_eventbridge(detail_type, obj);
    }
    Err(NotANotification(
        "no Records, SNS Message or EventBridge detail-type".into(),
    ))
}

fn parse_s3_records(records: &Value) -> Result<Notification, NotANotification> {
    let records = records
        .as_array()
        .ok_or_else(|| NotANotification("Records is not an array".into()))?;
    let mut objects = Vec::new();
    let mut ignored = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
        // Event names come as "ObjectCreated:Put" (S3) or "s3:ObjectCreated:Put" (some tools).
        if !name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
            ignored.push(
                if name.is_empty() {
                    "<no eventName>"
                } else {
                    name
                }
                .to_string(),
            );
            continue;
        }
        let s3 = r
            .get("s3")
            .ok_or_else(|| NotANotification(format!("Records[{i}] has no s3 field")))?;
        let bucket = str_at(s3, &["bucket", "name"])
            .ok_or_else(|| NotANotification(format!("Records[{i}] has no s3.bucket.name")))?;
        let raw_key = str_at(s3, &["object", "key"])
            .ok_or_else(|| NotANotification(format!("Records[{i}] has no s3.object.key")))?;
        let key = decode_key(raw_key);
        objects.push(ObjectRef {
            bucket: bucket.to_string(),
            alt_key: (key != raw_key).then(|| raw_key.to_string()),
            key,
            version_id: str_at(s3, &["object", "versionId"]).map(str::to_string),
            size: s3.pointer("/object/size").and_then(Value::as_u64),
            event_time: r
                .get("eventTime")
                .and_then(Value::as_str)
                .and_then(parse_time),
        });
    }
    if objects.is_empty() {
        return Ok(Notification::Ignore(if ignored.is_empty() {
            "no records".into()
        } else {
            format!("not an object-created event: {}", ignored.join(", "))
        }));
    }
    Ok(Notification::Objects(objects))
}

fn parse_eventbridge(
    detail_type: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<Notification, NotANotification> {
    if detail_type != "Object Created" {
        return Ok(Notification::Ignore(format!(
            "EventBridge detail-type {detail_type:?}"
        )));
    }
    let detail = obj
        .get("detail")
        .ok_or_else(|| NotANotification("EventBridge event without detail".into()))?;
    let bucket = str_at(detail, &["bucket", "name"])
        .ok_or_else(|| NotANotification("EventBridge detail has no bucket.name".into()))?;
    let key = str_at(detail, &["object", "key"])
        .ok_or_else(|| NotANotification("EventBridge detail has no object.key".into()))?;
    let decoded = decode_key(key);
    Ok(Notification::Objects(vec![ObjectRef {
        bucket: bucket.to_string(),
        alt_key: (decoded != key).then_some(decoded),
        key: key.to_string(),
        version_id: str_at(detail, &["object", "version-id"]).map(str::to_string),
        size: detail.pointer("/object/size").and_then(Value::as_u64),
        event_time: obj.get("time").and_then(Value::as_str).and_then(parse_time),
    }]))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_str)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())
}

/// S3 event keys are form-encoded: `+` is a space, then `%xx` bytes form UTF-8.
/// Invalid UTF-8 after decoding keeps the raw key (the object reader then tries it as given).
pub fn decode_key(raw: &str) -> String {
    let plus = raw.replace('+', " ");
    match percent_encoding::percent_decode_str(&plus).decode_utf8() {
        Ok(s) => s.into_owned(),
        Err(_) => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_event(names_keys: &[(&str, &str)]) -> String {
        let recs: Vec<Value> = names_keys
            .iter()
            .map(|(name, key)| {
                serde_json::json!({
                    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                    "eventTime": "2026-11-24T10:00:00.123Z", "eventName": name,
                    "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
                           "object": {"key": key, "size": 42, "eTag": "abc", "sequencer": "01"}}
                })
            })
            .collect();
        serde_json::json!({ "Records": recs }).to_string()
    }

    #[test]
    fn direct_s3_event_all_records_and_decoded_keys() {
        let body = s3_event(&[
            ("ObjectCreated:Put", "2026/11/24/10/obj+1.gz"),
            ("ObjectCreated:CompleteMultipartUpload", "caf%C3%A9%20x%2By"),
        ]);
        let Notification::Objects(objs) = parse(&body).unwrap() else {
            panic!()
        };
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].bucket, "b");
        assert_eq!(objs[0].key, "2026/11/24/10/obj 1.gz");
        assert_eq!(objs[0].alt_key.as_deref(), Some("2026/11/24/10/obj+1.gz"));
        assert_eq!(objs[0].size, Some(42));
        assert!(objs[0].event_time.is_some());
        assert_eq!(objs[1].key, "café x+y");
    }

    #[test]
    fn plain_key_has_no_alternative() {
        let Notification::Objects(objs) =
            parse(&s3_event(&[("ObjectCreated:Put", "a/b.json")])).unwrap()
        else {
            panic!()
        };
        assert_eq!(objs[0].key, "a/b.json");
        assert_eq!(objs[0].alt_key, None);
    }

    #[test]
    fn sns_wrapped() {
        let inner = s3_event(&[("ObjectCreated:Put", "k")]);
        let body = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": inner}).to_string();
        assert!(matches!(parse(&body).unwrap(), Notification::Objects(o) if o[0].key == "k"));
        let test_event =
            serde_json::json!({"Type": "Notification", "Message": "{\"Event\":\"s3:TestEvent\"}"})
                .to_string();
        assert!(matches!(
            parse(&test_event).unwrap(),
            Notification::Ignore(_)
        ));
    }

    #[test]
    fn eventbridge() {
        let body = serde_json::json!({
            "version": "0", "id": "x", "detail-type": "Object Created", "source": "aws.s3",
            "time": "2026-11-24T10:00:00Z", "region": "us-east-1",
            "detail": {"version": "0", "bucket": {"name": "b"}, "object": {"key": "a b+c", "size": 5, "etag": "e", "version-id": "v1"}}
        })
        .to_string();
        let Notification::Objects(o) = parse(&body).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "a b+c");
        assert_eq!(o[0].alt_key.as_deref(), Some("a b c"));
        assert_eq!(o[0].version_id.as_deref(), Some("v1"));
        let deleted = body.replace("Object Created", "Object Deleted");
        assert!(matches!(parse(&deleted).unwrap(), Notification::Ignore(_)));
    }

    #[test]
    fn test_event_and_removals_are_ignored() {
        let t = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T10:00:00Z","Bucket":"b"}"#;
        assert_eq!(
            parse(t).unwrap(),
            Notification::Ignore("s3:TestEvent".into())
        );
        assert!(
            matches!(parse(&s3_event(&[("ObjectRemoved:Delete", "k")])).unwrap(), Notification::Ignore(r) if r.contains("ObjectRemoved"))
        );
    }

    #[test]
    fn garbage_is_not_a_notification() {
        for body in [
            "hello",
            "",
            "[]",
            "{}",
            r#"{"Records": 5}"#,
            r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
            r#"{"Type":"Notification","Message":"nope"}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn key_decoding() {
        assert_eq!(decode_key("a+b%2Bc"), "a b+c");
        assert_eq!(decode_key("obj%201.json.gz"), "obj 1.json.gz");
        assert_eq!(decode_key("%E2%82%AC"), "€");
        assert_eq!(decode_key("%FF"), "%FF");
    }
}
