//! The SQS implementation of [`Queue`].
//!
//! One retry policy per call, with the reason:
//! - receive: none here. The receive loop is itself the retry: it backs off ([`RECEIVE`], 1 s
//!   doubling to 30 s, without end) and reports SQS as degraded meanwhile.
//! - delete ([`DELETE`]): three tries, 0.2 s doubling to 2 s, then given up. A message whose delete
//!   was lost is redelivered after its visibility timeout and its documents are overwritten (the
//!   ids are deterministic): worth a retry, not worth holding a slot for.
//! - change visibility, one or a batch ([`CHANGE_VISIBILITY`]): the same three tries. A lost
//!   extension lets another task take the message too (its documents are overwritten, not
//!   duplicated); a lost release only delays the message until its timeout ends.

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};

use super::{EntryRefused, Message, Queue, QueueError};
use crate::backoff::Policy;
use crate::config::SourceConfig;

/// See the module documentation.
pub(crate) const RECEIVE: Policy = Policy::new(u32::MAX, 1_000, 30_000);
/// See the module documentation.
const DELETE: Policy = Policy::new(3, 200, 2_000);
/// See the module documentation.
const CHANGE_VISIBILITY: Policy = Policy::new(3, 200, 2_000);

/// An SQS queue through the AWS SDK.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    name: String,
    wait_time_seconds: i32,
    visibility_timeout: i32,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, cfg: &SourceConfig) -> SqsQueue {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(sdk),
            url: cfg.queue_url.clone(),
            name: cfg.queue_name().to_string(),
            wait_time_seconds: cfg.wait_time_seconds,
            visibility_timeout: cfg.visibility_timeout_seconds,
        }
    }
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(&self, max: usize) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(self.wait_time_seconds)
            .visibility_timeout(self.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(message)
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        retry(DELETE, "delete_message", || {
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn change_visibility(&self, receipt: &str, seconds: i32) -> Result<(), QueueError> {
        retry(CHANGE_VISIBILITY, "change_message_visibility", || {
            self.client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .visibility_timeout(seconds)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn change_visibility_batch(
        &self,
        receipts: &[&str],
        seconds: i32,
    ) -> Result<Vec<EntryRefused>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<ChangeMessageVisibilityBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(*receipt)
                    .visibility_timeout(seconds)
                    .build()
                    .ok()
            })
            .collect();
        let out = retry(CHANGE_VISIBILITY, "change_message_visibility_batch", || {
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(batch.clone()))
                .send()
        })
        .await?;
        Ok(out
            .failed()
            .iter()
            .map(|f| EntryRefused {
                index: f
                    .id()
                    .strip_prefix('m')
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX),
                code: f.code().to_string(),
                reason: f.message().unwrap_or_default().to_string(),
            })
            .collect())
    }
}

/// The worker's view of an SQS message; `None` (logged) for one without a receipt handle, which
/// could be neither deleted nor released.
fn message(m: aws_sdk_sqs::types::Message) -> Option<Message> {
    let id = m.message_id().unwrap_or_default().to_string();
    let Some(receipt) = m.receipt_handle().map(str::to_string) else {
        tracing::error!(
            messaging.message.id = %id,
            "message without a receipt handle; ignoring it"
        );
        return None;
    };
    let system = |name: MessageSystemAttributeName| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .map(String::to_string)
    };
    Some(Message {
        receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        aws_trace_header: system(MessageSystemAttributeName::AwsTraceHeader),
        traceparent: m
            .message_attributes()
            .and_then(|a| a.get("traceparent"))
            .and_then(|v| v.string_value())
            .map(str::to_string),
        body: m.body.unwrap_or_default(),
        id,
        receipt,
    })
}

/// `call` under `policy`; each failure is logged with its attempt. SQS throttling and blips pass;
/// a call that keeps failing is given up (see the module documentation for why that is safe).
async fn retry<T, E, Fut>(
    policy: Policy,
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, QueueError>
where
    Fut: std::future::Future<Output = Result<T, aws_sdk_sqs::error::SdkError<E>>>,
    E: std::error::Error + 'static,
{
    let mut last = String::new();
    for attempt in 1..=policy.attempts {
        match call().await {
            Ok(out) => return Ok(out),
            Err(e) => {
                last = aws_sdk_sqs::error::DisplayErrorContext(e).to_string();
                tracing::warn!(attempt, error = %last, "{what} failed");
                if attempt < policy.attempts {
                    tokio::time::sleep(policy.delay(attempt)).await;
                }
            }
        }
    }
    Err(QueueError(format!("{what} failed: {last}")))
}
