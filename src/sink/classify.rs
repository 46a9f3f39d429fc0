//! The retry decision: a pure function of one `_bulk` answer (status and body), no I/O.
//!
//! - the whole request failed (429, 5xx, 401/403, an unreadable body): retry every document after
//!   a backoff; a 429 also tells the rate limiter to slow down;
//! - 413 or another 400 for the whole request: split the batch to isolate the culprit;
//! - per item: 2xx done; 409 done (op_type `index` with the deterministic `_id`, written by
//!   [`super::doc`]: a conflict means a writer already stored this document); 429, 5xx or a
//!   rejected execution (either engine's spelling, [`super::flavour`]) retried alone; Serverless's
//!   refusal of document ids is a configuration problem (neither retried nor dead-lettered);
//!   anything else (a mapping conflict, say) refused for good, with the cluster's reason, for the
//!   dead-letter index.
//!
//! The body may be the `filter_path` answer or the full one (AWS drops the query of some signed
//! POSTs; Serverless rewrites bulk answers): both parse the same way.
//!
//! Tested with canned and recorded bodies below; a new rule is a new case here, not a change in
//! the loop.

use serde::Deserialize;

use super::flavour;

/// What to do with one document after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    Retry(String),
    /// Retry, and the cluster said it is overloaded (429, `es_rejected_execution_exception`).
    Overloaded(String),
    Reject {
        error_type: String,
        reason: String,
    },
    /// Refused because of how the worker is configured, the same for every document: neither
    /// retried nor dead-lettered (the message is kept), and the operator is told what to change.
    Misconfigured(String),
}

/// What to do with a whole request after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    Items(Vec<ItemOutcome>),
    RetryAll(String),
    /// Retry everything, and slow down: the cluster answered 429.
    Overloaded(String),
    /// The request itself was refused (400, 413): split it to isolate the cause.
    Split(String),
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<BulkError>,
}

/// An item's error: an object in every current version, a bare string in old ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum BulkError {
    Object {
        #[serde(rename = "type", default)]
        error_type: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Text(String),
}

/// The retry decision for one `_bulk` response; `sent` is the number of documents in the request.
pub fn classify_response(status: u16, body: &[u8], sent: usize) -> ResponseOutcome {
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    match status {
        200..=299 => {}
        400 | 413 => return ResponseOutcome::Split(format!("HTTP {status}: {}", snippet())),
        401 | 403 => {
            return ResponseOutcome::RetryAll(format!(
            "HTTP {status}: check ES_AUTH and its credentials (ES_USERNAME/ES_PASSWORD, ES_API_KEY, or the AWS role and ES_AWS_SERVICE/region for sigv4) and the role's privileges: {}",
            snippet()
        ))
        }
        429 => return ResponseOutcome::Overloaded(format!("HTTP 429: {}", snippet())),
        _ => return ResponseOutcome::RetryAll(format!("HTTP {status}: {}", snippet())),
    }
    let parsed: BulkResponse = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return ResponseOutcome::RetryAll(format!(
                "unreadable bulk response ({e}): {}",
                snippet()
            ))
        }
    };
    if !parsed.errors && parsed.items.is_empty() {
        // filter_path drops nothing we need when there are no errors, but some servers omit items.
        return ResponseOutcome::Items(vec![ItemOutcome::Done; sent]);
    }
    let mut out: Vec<ItemOutcome> = parsed
        .items
        .into_iter()
        .take(sent)
        .map(|op| match op.into_values().next() {
            Some(item) => classify_item(item),
            None => ItemOutcome::Retry("empty bulk item".into()),
        })
        .collect();
    // A response with fewer items than documents sent: the missing ones were not confirmed.
    out.resize(
        sent,
        ItemOutcome::Retry("item missing from the bulk response".into()),
    );
    ResponseOutcome::Items(out)
}

/// Why the cluster took nothing of a request, if it took nothing: the whole request failed, or
/// every item was refused for a reason worth retrying (a flood-stage `cluster_block_exception`
/// on the index, a full write queue on its only shard — item-level 429s inside an HTTP 200).
/// `/readyz` reports it: a cluster that answers but accepts nothing is not ready. A request of
/// which some item was stored, or refused for good, says the cluster works.
pub fn nothing_taken(outcome: &ResponseOutcome) -> Option<&str> {
    match outcome {
        ResponseOutcome::RetryAll(reason) | ResponseOutcome::Overloaded(reason) => Some(reason),
        ResponseOutcome::Items(items) => {
            let mut first = None;
            for item in items {
                match item {
                    ItemOutcome::Retry(r)
                    | ItemOutcome::Overloaded(r)
                    | ItemOutcome::Misconfigured(r) => first = first.or(Some(r.as_str())),
                    ItemOutcome::Done | ItemOutcome::Reject { .. } => return None,
                }
            }
            first
        }
        ResponseOutcome::Split(_) => None,
    }
}

fn classify_item(item: BulkItem) -> ItemOutcome {
    let (error_type, reason) = match item.error {
        Some(BulkError::Object { error_type, reason }) => (error_type, reason.unwrap_or_default()),
        Some(BulkError::Text(reason)) => (String::new(), reason),
        None => (String::new(), String::new()),
    };
    match item.status {
        200..=299 => ItemOutcome::Done,
        // op_type `index` with a deterministic id: a conflict means a writer already stored it.
        409 => ItemOutcome::Done,
        429 => ItemOutcome::Overloaded(format!("429 {error_type}: {reason}")),
        _ if flavour::is_rejected_execution(&error_type) => {
            ItemOutcome::Overloaded(format!("{} {error_type}: {reason}", item.status))
        }
        s if flavour::is_document_id_refusal(s, &error_type, &reason) => {
            ItemOutcome::Misconfigured(format!(
                "{s} {error_type}: {reason}: this OpenSearch Serverless collection (TIMESERIES or VECTOR) refuses document ids; set ES_DOCUMENT_ID=none, or use a SEARCH collection"
            ))
        }
        500..=599 => ItemOutcome::Retry(format!("{} {error_type}: {reason}", item.status)),
        s => ItemOutcome::Reject {
            error_type: if error_type.is_empty() {
                format!("http_{s}")
            } else {
                error_type
            },
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ok() {
        let body =
            br#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}"#;
        assert_eq!(
            classify_response(200, body, 2),
            ResponseOutcome::Items(vec![ItemOutcome::Done, ItemOutcome::Done])
        );
        assert_eq!(
            classify_response(200, br#"{"errors":false}"#, 3),
            ResponseOutcome::Items(vec![ItemOutcome::Done; 3])
        );
    }

    #[test]
    fn partial_failures_are_classified_per_item() {
        let body = br#"{"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [a]"}}},
            {"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}"#;
        let ResponseOutcome::Items(items) = classify_response(200, body, 6) else {
            panic!()
        };
        assert_eq!(items[0], ItemOutcome::Done);
        assert!(matches!(items[1], ItemOutcome::Overloaded(_)));
        assert_eq!(
            items[2],
            ItemOutcome::Reject {
                error_type: "mapper_parsing_exception".into(),
                reason: "failed to parse field [a]".into()
            }
        );
        assert_eq!(items[3], ItemOutcome::Done);
        assert!(matches!(items[4], ItemOutcome::Retry(_)));
        assert!(
            matches!(items[5], ItemOutcome::Retry(_)),
            "missing item is retried"
        );
    }

    /// Recorded from a real Elasticsearch 9.5.3 node (`scripts/elasticsearch/record-fixtures.sh`).
    const ES9_BLOCKED: &[u8] =
        include_bytes!("../../tests/fixtures/es/9.5.3/bulk-read-only-allow-delete-filtered.json");
    const ES9_WRITE_REJECTED: &[u8] =
        include_bytes!("../../tests/fixtures/es/9.5.3/bulk-write-rejected-filtered.json");

    #[test]
    fn a_blocked_index_is_overload_and_nothing_taken() {
        let out = classify_response(200, ES9_BLOCKED, 1);
        let ResponseOutcome::Items(items) = &out else {
            panic!("{out:?}")
        };
        assert!(matches!(&items[0], ItemOutcome::Overloaded(r)
            if r.starts_with("429 cluster_block_exception") && r.contains("flood-stage watermark")));
        assert!(nothing_taken(&out).is_some_and(|r| r.contains("read-only-allow-delete block")));
    }

    #[test]
    fn write_queue_rejections_next_to_stored_items_are_not_nothing_taken() {
        let n = ES9_WRITE_REJECTED
            .windows(9)
            .filter(|w| w == b"\"status\":")
            .count();
        let out = classify_response(200, ES9_WRITE_REJECTED, n);
        let ResponseOutcome::Items(items) = &out else {
            panic!("{out:?}")
        };
        assert!(items.iter().any(|i| matches!(i, ItemOutcome::Overloaded(r)
            if r.contains("es_rejected_execution_exception"))));
        if items.contains(&ItemOutcome::Done) {
            assert_eq!(nothing_taken(&out), None);
        }
        let all_refused = ResponseOutcome::Items(vec![
            ItemOutcome::Overloaded("429 es_rejected_execution_exception: queue full".into()),
            ItemOutcome::Retry("503 unavailable_shards_exception: x".into()),
        ]);
        assert_eq!(
            nothing_taken(&all_refused),
            Some("429 es_rejected_execution_exception: queue full")
        );
        let one_rejected_for_good = ResponseOutcome::Items(vec![
            ItemOutcome::Overloaded("429 x".into()),
            ItemOutcome::Reject {
                error_type: "document_parsing_exception".into(),
                reason: "r".into(),
            },
        ]);
        assert_eq!(nothing_taken(&one_rejected_for_good), None);
        assert_eq!(
            nothing_taken(&ResponseOutcome::Overloaded("429 whole".into())),
            Some("429 whole")
        );
    }

    fn fixture(path: &str) -> Vec<u8> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read(format!("{p}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The statuses recorded in a fixture's items, to compare the outcome with.
    fn recorded_statuses(body: &[u8]) -> Vec<u16> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i.as_object().unwrap().values().next().unwrap()["status"]
                    .as_u64()
                    .unwrap() as u16
            })
            .collect()
    }

    #[test]
    fn recorded_answers_of_every_flavour_full_or_filtered() {
        for dir in ["es/9.5.3", "es/8.19.21", "opensearch/2.19.6"] {
            for name in [
                "bulk-mapping-conflict",
                "bulk-mapping-conflict-filtered",
                "bulk-write-rejected",
                "bulk-write-rejected-filtered",
            ] {
                let body = fixture(&format!("{dir}/{name}.json"));
                let statuses = recorded_statuses(&body);
                let ResponseOutcome::Items(items) = classify_response(200, &body, statuses.len())
                else {
                    panic!("{dir}/{name}: not classified per item")
                };
                for (status, item) in statuses.iter().zip(&items) {
                    match status {
                        200 | 201 => assert_eq!(*item, ItemOutcome::Done, "{dir}/{name}"),
                        429 => assert!(
                            matches!(item, ItemOutcome::Overloaded(r) if r.contains("rejected_execution_exception")),
                            "{dir}/{name}: {item:?}"
                        ),
                        400 => assert!(
                            matches!(item, ItemOutcome::Reject { error_type, reason }
                                if error_type.ends_with("parsing_exception") && reason.contains("failed to parse") || reason.contains("object mapping")),
                            "{dir}/{name}: {item:?}"
                        ),
                        s => panic!("{dir}/{name}: unexpected recorded status {s}"),
                    }
                }
            }
        }
        // The flood-stage block and indexing pressure, as Elasticsearch answers them.
        for dir in ["es/9.5.3", "es/8.19.21"] {
            let body = fixture(&format!("{dir}/bulk-read-only-allow-delete.json"));
            assert!(matches!(
                classify_response(200, &body, 1),
                ResponseOutcome::Items(items) if matches!(&items[0], ItemOutcome::Overloaded(r) if r.contains("cluster_block_exception"))
            ));
            let body = fixture(&format!("{dir}/bulk-indexing-pressure-rejected.json"));
            assert!(matches!(
                classify_response(429, &body, 40),
                ResponseOutcome::Overloaded(_)
            ));
        }
    }

    #[test]
    fn opensearch_spelling_without_a_429_status_is_still_a_rejection() {
        let body = br#"{"errors":true,"items":[{"index":{"status":503,"error":{"type":"rejected_execution_exception","reason":"rejected execution of ... on OpenSearchThreadPoolExecutor[name = n/write]"}}}]}"#;
        let ResponseOutcome::Items(items) = classify_response(200, body, 1) else {
            panic!()
        };
        assert!(matches!(items[0], ItemOutcome::Overloaded(_)));
    }

    #[test]
    fn serverless_document_id_refusal_is_a_configuration_problem() {
        // What Serverless answers (and the proxy's aoss mode merges), unfiltered.
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"logs","_id":"9c1f","status":400,"error":{"type":"illegal_argument_exception","reason":"Document ID is not supported in create/index operation request"}}},
            {"index":{"_index":"logs","_id":"x1","_version":1,"result":"created","status":201}}]}"#;
        let ResponseOutcome::Items(items) = classify_response(200, body, 2) else {
            panic!()
        };
        assert!(
            matches!(&items[0], ItemOutcome::Misconfigured(r) if r.contains("ES_DOCUMENT_ID=none")),
            "{:?}",
            items[0]
        );
        assert_eq!(items[1], ItemOutcome::Done);
    }

    #[test]
    fn an_old_engines_string_error_is_read_too() {
        let body = br#"{"errors":true,"items":[{"index":{"_id":"a","status":400,"error":"MapperParsingException[failed to parse [v]]"}}]}"#;
        assert_eq!(
            classify_response(200, body, 1),
            ResponseOutcome::Items(vec![ItemOutcome::Reject {
                error_type: "http_400".into(),
                reason: "MapperParsingException[failed to parse [v]]".into()
            }])
        );
    }

    #[test]
    fn request_level_statuses() {
        assert!(matches!(
            classify_response(429, b"{}", 1),
            ResponseOutcome::Overloaded(_)
        ));
        assert!(matches!(
            classify_response(503, b"", 1),
            ResponseOutcome::RetryAll(_)
        ));
        assert!(matches!(
            classify_response(401, b"", 1),
            ResponseOutcome::RetryAll(_)
        ));
        assert!(matches!(
            classify_response(413, b"", 1),
            ResponseOutcome::Split(_)
        ));
        assert!(matches!(
            classify_response(400, b"", 1),
            ResponseOutcome::Split(_)
        ));
        assert!(matches!(
            classify_response(200, b"<html>", 1),
            ResponseOutcome::RetryAll(_)
        ));
    }
}
