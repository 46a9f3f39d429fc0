//! `f4a-indexer check`: the preflight a user runs before deploying. It prints a table of what the
//! worker will use (secrets redacted) and tries each thing a run needs — the queue (its
//! attributes: visibility timeout, redrive policy), the cluster (who it is, and that it lets the
//! worker in), writing and deleting a probe document in the dead-letter index, today's target
//! index name — and says for each failing line what to fix. Exit 0 only if every needed piece
//! works (a missing redrive policy is a warning: a run works without it).

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;

use crate::config::{Compression, Config, DocumentIds, EsAuth};
use crate::sink::classify::{classify_response, ItemOutcome, ResponseOutcome};
use crate::sink::es::EsClient;
use crate::sink::BulkClient;
use crate::source::aws;

/// The probe's `_id` (with `ES_DOCUMENT_ID=deterministic`).
const PROBE_ID: &str = "f4a-indexer-check-probe";
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

struct Line {
    what: &'static str,
    verdict: Verdict,
    detail: String,
}

/// Runs every check, prints the table; `true` when nothing failed.
pub async fn run(cfg: &Config) -> bool {
    let mut lines = vec![Line {
        what: "config",
        verdict: Verdict::Ok,
        detail: describe(cfg),
    }];
    let sdk = aws::sdk_config(&cfg.source).await;
    lines.push(queue(&sdk, &cfg.source.queue_url).await);
    match EsClient::new(&cfg.sink.es, sdk.credentials_provider()) {
        Err(e) => lines.push(Line {
            what: "cluster",
            verdict: Verdict::Fail,
            detail: format!("{e:#}"),
        }),
        Ok(es) => {
            let cluster = cluster(&es, &cfg.sink.es.url).await;
            let reachable = cluster.verdict == Verdict::Ok;
            lines.push(cluster);
            if reachable {
                lines.push(probe_write(&es, cfg).await);
            }
        }
    }
    let today = cfg.record.index.render(chrono::Utc::now());
    lines.push(Line {
        what: "index",
        verdict: Verdict::Ok,
        detail: format!(
            "today's documents go to {today} (ES_INDEX={}, rendered with each record's @timestamp); dead letters to {}",
            cfg.record.index.as_str(),
            cfg.record.dead_letter_index
        ),
    });
    print(&lines);
    lines.iter().all(|l| l.verdict != Verdict::Fail)
}

fn print(lines: &[Line]) {
    println!("f4a-indexer {} check", env!("CARGO_PKG_VERSION"));
    println!("{:<8} {:<6} DETAIL", "CHECK", "RESULT");
    for l in lines {
        let verdict = match l.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("{:<8} {:<6} {}", l.what, verdict, l.detail);
    }
}

/// What the worker will use, secrets redacted.
fn describe(cfg: &Config) -> String {
    let es = &cfg.sink.es;
    let auth = match &es.auth {
        EsAuth::None => "none".to_string(),
        EsAuth::Basic { username, .. } => format!("basic (user {username}, password <redacted>)"),
        EsAuth::ApiKey(_) => "api_key (<redacted>)".to_string(),
        EsAuth::SigV4(s) => format!(
            "sigv4 (service {}, region {}, credentials from the AWS chain)",
            s.service.signing_name(),
            s.region
        ),
    };
    format!(
        "queue {}; cluster {}; auth {auth}; compression {}; document ids {}; rate {} docs/s",
        cfg.source.queue_url,
        es.url,
        match es.compression {
            Compression::Gzip => "gzip",
            Compression::None => "none",
        },
        match cfg.record.document_ids {
            DocumentIds::Deterministic => "deterministic",
            DocumentIds::None => "none",
        },
        cfg.rate
            .docs_per_sec
            .map_or("unlimited".to_string(), |r| r.to_string()),
    )
}

async fn queue(sdk: &aws_config::SdkConfig, url: &str) -> Line {
    let client = aws_sdk_sqs::Client::new(sdk);
    let call = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send();
    let attrs = match tokio::time::timeout(STEP_TIMEOUT, call).await {
        Ok(Ok(out)) => out.attributes.unwrap_or_default(),
        Ok(Err(e)) => {
            return Line {
                what: "queue",
                verdict: Verdict::Fail,
                detail: format!(
                    "GetQueueAttributes failed: {}; check SQS_QUEUE_URL, AWS_REGION and the role's sqs:GetQueueAttributes/ReceiveMessage/DeleteMessage/ChangeMessageVisibility",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ),
            }
        }
        Err(_) => {
            return Line {
                what: "queue",
                verdict: Verdict::Fail,
                detail: format!("no answer from SQS within {}s", STEP_TIMEOUT.as_secs()),
            }
        }
    };
    let visibility = attrs
        .get(&QueueAttributeName::VisibilityTimeout)
        .cloned()
        .unwrap_or_default();
    match attrs.get(&QueueAttributeName::RedrivePolicy) {
        Some(redrive) => Line {
            what: "queue",
            verdict: Verdict::Ok,
            detail: format!("reachable; visibility timeout {visibility} s; redrive policy {redrive}"),
        },
        None => Line {
            what: "queue",
            verdict: Verdict::Warn,
            detail: format!("reachable; visibility timeout {visibility} s; NO redrive policy: a message that keeps failing is retried forever; give the queue a dead-letter queue"),
        },
    }
}

async fn cluster(es: &EsClient, url: &str) -> Line {
    match tokio::time::timeout(STEP_TIMEOUT, es.identify()).await {
        Ok(Ok(identity)) => Line {
            what: "cluster",
            verdict: Verdict::Ok,
            detail: format!("{identity} at {url}; credentials accepted"),
        },
        Ok(Err(reason)) => Line {
            what: "cluster",
            verdict: Verdict::Fail,
            detail: format!("{reason}; check ES_URL (or ES_CLOUD_ID), ES_AUTH and its credentials"),
        },
        Err(_) => Line {
            what: "cluster",
            verdict: Verdict::Fail,
            detail: format!("no answer from {url} within {}s", STEP_TIMEOUT.as_secs()),
        },
    }
}

/// Writes a probe document to the dead-letter index and deletes it again, through the same
/// bulk path (compression, signing) the worker uses.
async fn probe_write(es: &EsClient, cfg: &Config) -> Line {
    let index = &cfg.record.dead_letter_index;
    let with_id = cfg.record.document_ids == DocumentIds::Deterministic;
    let action = if with_id {
        format!("{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{PROBE_ID}\"}}}}\n")
    } else {
        format!("{{\"index\":{{\"_index\":\"{index}\"}}}}\n")
    };
    let body = format!(
        "{action}{{\"@timestamp\":\"{}\",\"error\":{{\"type\":\"f4a_check\",\"message\":\"probe written by f4a-indexer check\"}}}}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let fail = |detail: String| Line {
        what: "write",
        verdict: Verdict::Fail,
        detail,
    };
    let outcome = match tokio::time::timeout(STEP_TIMEOUT, es.bulk(Bytes::from(body))).await {
        Err(_) => return fail(format!("no answer within {}s", STEP_TIMEOUT.as_secs())),
        Ok(Err(e)) => return fail(e.to_string()),
        Ok(Ok(reply)) => classify_response(reply.status, &reply.body, 1),
    };
    match outcome {
        ResponseOutcome::Items(items) => match items.into_iter().next() {
            Some(ItemOutcome::Done) => {}
            Some(ItemOutcome::Misconfigured(reason)) => return fail(reason),
            Some(ItemOutcome::Reject { error_type, reason }) => {
                return fail(format!(
                    "{index} refused the probe: {error_type}: {reason}; the role needs to write (and create) {index}"
                ))
            }
            Some(ItemOutcome::Retry(r) | ItemOutcome::Overloaded(r)) => {
                return fail(format!("{index} refused the probe for now: {r}"))
            }
            None => return fail("no item in the answer".into()),
        },
        ResponseOutcome::RetryAll(r) | ResponseOutcome::Overloaded(r) | ResponseOutcome::Split(r) => {
            return fail(format!("the bulk request was refused: {r}"))
        }
    }
    if !with_id {
        return Line {
            what: "write",
            verdict: Verdict::Ok,
            detail: format!(
                "probe written to {index} (not deleted: ES_DOCUMENT_ID=none gives it no known id)"
            ),
        };
    }
    let delete = format!("{{\"delete\":{{\"_index\":\"{index}\",\"_id\":\"{PROBE_ID}\"}}}}\n");
    match tokio::time::timeout(STEP_TIMEOUT, es.bulk(Bytes::from(delete))).await {
        Ok(Ok(reply)) if (200..300).contains(&reply.status) => Line {
            what: "write",
            verdict: Verdict::Ok,
            detail: format!("probe written to {index} and deleted"),
        },
        Ok(Ok(reply)) => Line {
            what: "write",
            verdict: Verdict::Warn,
            detail: format!(
                "probe written to {index}, but deleting it got HTTP {} (the worker never deletes)",
                reply.status
            ),
        },
        _ => Line {
            what: "write",
            verdict: Verdict::Warn,
            detail: format!(
                "probe written to {index}, deleting it failed (the worker never deletes)"
            ),
        },
    }
}
