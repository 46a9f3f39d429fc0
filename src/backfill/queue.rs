//! `--via-queue`: instead of indexing, one message per selected object to `SQS_QUEUE_URL`, in
//! the shape of an S3 event notification (`ObjectCreated:Put`, the key URL-encoded as S3 does),
//! so every task of the service shares the work and the fleet's budget applies.
//!
//! SendMessageBatch, ten messages a call. An object is settled once SQS accepted its message;
//! entries it refused are sent again ([`SEND`]), then count as failed (the checkpoint stays
//! before the first of them).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::listing::Listed;
use super::{rfc3339, Plan};
use crate::backoff::Policy;
use crate::config::Config;
use crate::progress::Progress;
use crate::source::aws;

/// Tries of one batch (and of the entries SQS refused in it): five, 0.5 s doubling to 10 s.
const SEND: Policy = Policy::new(5, 500, 10_000);
/// What S3 leaves as it is in an event's key (besides letters and digits); a space is `+`.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/')
    .remove(b' ');

/// Sends a notification per selected object; `Ok(true)` when SQS accepted all of them.
pub(super) async fn run(
    cfg: &Config,
    mut plan: Plan,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    let sdk = aws::sdk_config(&cfg.source).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = cfg.source.queue_url.clone();
    let progress = Progress::start("backfill", "objects");
    let c = progress.counters.clone();
    let counting = plan
        .counting
        .take()
        .map(|s| tokio::spawn(super::run::count(s, c.clone())));
    let (mut frozen, mut stopped) = (false, false);
    let mut listing_error = None;
    loop {
        if shutdown.is_cancelled() {
            stopped = true;
            break;
        }
        let mut batch: Vec<Listed> = Vec::with_capacity(10);
        while batch.len() < 10 {
            match plan.selector.next().await {
                Ok(Some(o)) => batch.push(o),
                Ok(None) => break,
                Err(e) => {
                    listing_error = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        let refused = send(&sqs, &url, &plan.bucket, &batch).await;
        for (i, o) in batch.iter().enumerate() {
            if refused.contains(&i) {
                frozen = true;
                c.failed.fetch_add(1, Relaxed);
            } else {
                c.done.fetch_add(1, Relaxed);
                c.bytes_done.fetch_add(o.size, Relaxed);
                if !frozen {
                    plan.state.last_key = o.key.clone();
                }
            }
        }
        if !plan.state.last_key.is_empty() {
            if let Err(e) = plan.checkpoint.save(&plan.state).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the checkpoint could not be written"
                );
            }
        }
        if listing_error.is_some() {
            break;
        }
    }
    if let Some(t) = counting {
        t.abort();
    }
    let complete = !stopped && listing_error.is_none() && c.failed.load(Relaxed) == 0;
    Ok(plan
        .conclude(
            progress,
            complete,
            stopped,
            vec![
                ("via_queue", url.into()),
                ("listing_error", listing_error.into()),
            ],
        )
        .await)
}

/// The S3 event notification of one object, as S3 would send it to SQS.
pub(super) fn notification(bucket: &str, o: &Listed) -> String {
    let key = utf8_percent_encode(&o.key, KEY_SAFE)
        .to_string()
        .replace(' ', "+");
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": o.last_modified.map(rfc3339),
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": key, "size": o.size},
        },
    }]})
    .to_string()
}

/// Sends `batch` (≤ 10); the positions SQS still refused after [`SEND`].
async fn send(sqs: &aws_sdk_sqs::Client, url: &str, bucket: &str, batch: &[Listed]) -> Vec<usize> {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    for attempt in 1..=SEND.attempts {
        let entries: Vec<SendMessageBatchRequestEntry> = pending
            .iter()
            .filter_map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(notification(bucket, &batch[i]))
                    .build()
                    .ok()
            })
            .collect();
        match sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                pending = out
                    .failed()
                    .iter()
                    .filter_map(|f| f.id().parse().ok())
                    .collect();
                for f in out.failed() {
                    tracing::warn!(
                        code = f.code(),
                        reason = f.message(),
                        attempt,
                        "SQS refused a message"
                    );
                }
            }
            Err(e) => {
                let text = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                tracing::warn!(error = %text, attempt, "SendMessageBatch failed");
            }
        }
        if pending.is_empty() {
            break;
        }
        if attempt < SEND.attempts {
            tokio::time::sleep(SEND.delay(attempt).max(Duration::from_millis(1))).await;
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::notification::{parse, Notification};

    #[test]
    fn the_service_reads_what_it_sends() {
        let o = Listed {
            key: "fh/2026/11/20/10/a b+ü.gz".into(),
            size: 42,
            last_modified: None,
        };
        let body = notification("bkt", &o);
        match parse(&body).unwrap() {
            Notification::Objects(objs) => {
                assert_eq!(objs.len(), 1);
                assert_eq!(objs[0].bucket, "bkt");
                assert_eq!(objs[0].key, o.key);
                assert_eq!(objs[0].size, Some(42));
            }
            other => panic!("{other:?}"),
        }
    }
}
