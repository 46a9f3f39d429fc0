//! Message lifecycle: one SQS message from receipt to delete or release.
//!
//! The [`MessageWorker`] parses the notification; for each object, streams its records into the
//! batcher ([`ObjectIndexer`]); waits until every document is settled (its [`AckGroup`] drains); then
//! delete the message, or release it with a growing delay if anything is unfinished. A body that is
//! not a notification is released the same way, so the queue's redrive policy ends up moving it to
//! the dead-letter queue. Each message is one trace (`process` span), continuing the producer's
//! trace context when the message carries one.

use std::sync::Arc;

use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ack::AckGroup;
use crate::metrics;
use crate::object::{ObjectError, ObjectIndexer};
use crate::source::inflight::InFlight;
use crate::source::notification::{self, Notification};
use crate::source::{FetchError, Message};
use crate::telemetry;

/// Works messages, one call of [`MessageWorker::process`] each; shared by all message tasks.
pub(crate) struct MessageWorker {
    pub(crate) objects: ObjectIndexer,
    pub(crate) acks: Arc<InFlight>,
    /// For span attributes.
    pub(crate) queue_name: String,
    /// The cap of the redelivery delay.
    pub(crate) visibility_timeout: i32,
}

impl MessageWorker {
    /// Takes `m` from receipt to delete or release. Returns once the message is settled.
    pub(crate) async fn process(&self, m: Message) {
        let id = m.id.clone();
        let receive_count = m.receive_count;
        let span = tracing::info_span!(
            "process",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "process",
            messaging.destination.name = %self.queue_name,
            messaging.message.id = %id,
            messaging.sqs.receive_count = receive_count,
            objects = tracing::field::Empty,
            documents = tracing::field::Empty,
            dead_lettered = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if let Some(parent) =
            telemetry::remote_parent(m.traceparent.as_deref(), m.aws_trace_header.as_deref())
        {
            let _ = span.set_parent(parent);
        }
        let metrics = metrics::get();
        metrics.messages_in_flight.add(1, &[]);
        // When this message is given back for another try.
        let delay = redelivery_delay(receive_count, self.visibility_timeout);
        async {
        self.acks.track(&id, &m.receipt);
        let notification = match notification::parse(&m.body) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, body_head = %head(&m.body), retry_in_secs = delay, "message is not an S3 notification; leaving it in the queue for its redrive policy");
                tracing::Span::current().record("otel.status_code", "ERROR");
                metrics.message("invalid");
                self.acks.release(&id, delay).await;
                return;
            }
        };
        let objects = match notification {
            Notification::Ignore(reason) => {
                tracing::info!(reason, "nothing to index; deleting the message");
                metrics.message("ignored");
                self.acks.delete(&id).await;
                return;
            }
            Notification::Objects(objects) => objects,
        };
        tracing::Span::current().record("objects", objects.len());
        let group = AckGroup::new();
        let mut retry_reason = None;
        let message_span = tracing::Span::current().context().span().span_context().clone();
        let message_span = message_span.is_valid().then_some(message_span);
        for obj in &objects {
            match self.objects.index(obj, &group, message_span.as_ref()).await {
                Ok(()) => {}
                Err(ObjectError::Fetch(FetchError::Missing { bucket, key })) => {
                    tracing::warn!(bucket, key, "object no longer exists; skipping it");
                }
                Err(e) => {
                    retry_reason = Some(e.to_string());
                    break;
                }
            }
        }
        let outcome = group.wait().await;
        let span = tracing::Span::current();
        span.record("documents", outcome.indexed);
        span.record("dead_lettered", outcome.dead_lettered);
        if let Some(reason) = retry_reason {
            tracing::warn!(reason, retry_in_secs = delay, "message not finished; returning it to the queue");
            span.record("otel.status_code", "ERROR");
            metrics.message("released");
            self.acks.release(&id, delay).await;
        } else if outcome.failed {
            tracing::error!(indexed = outcome.indexed, dead_lettered = outcome.dead_lettered, retry_in_secs = delay, "some documents were neither indexed nor dead-lettered; keeping the message");
            metrics.message("released");
            self.acks.release(&id, delay).await;
        } else {
            tracing::info!(indexed = outcome.indexed, dead_lettered = outcome.dead_lettered, "message done; deleting it");
            metrics.message("deleted");
            self.acks.delete(&id).await;
        }
    }
    .instrument(span)
    .await;
        metrics.messages_in_flight.add(-1, &[]);
    }
}

/// Visibility delay before a message comes back for another try: grows with its receive count
/// (5 s, 10 s, 20 s, …) so a poison message never spins, capped at the visibility timeout.
fn redelivery_delay(receive_count: i32, visibility_timeout: i32) -> i32 {
    let exp = receive_count.saturating_sub(1).clamp(0, 16) as u32;
    5i32.saturating_mul(2i32.saturating_pow(exp))
        .min(visibility_timeout)
}

fn head(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_delay_grows_and_caps() {
        assert_eq!(redelivery_delay(1, 300), 5);
        assert_eq!(redelivery_delay(2, 300), 10);
        assert_eq!(redelivery_delay(4, 300), 40);
        assert_eq!(redelivery_delay(100, 300), 300);
        assert_eq!(redelivery_delay(0, 300), 5);
    }
}
