//! Message lifecycle: one SQS message from receipt to delete or release.
//!
//! The [`MessageWorker`] parses the notification; for each object, streams its records into the
//! batcher ([`ObjectIndexer`]); waits until every document is settled (its [`AckGroup`] drains);
//! then deletes the message, or releases it with a growing delay if anything is unfinished. A body that is
//! not a notification is released the same way, so the queue's redrive policy ends up moving it to
//! the dead-letter queue. Each message is one trace (`process` span), continuing the producer's
//! trace context when the message carries one.

use std::sync::Arc;

use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ack::AckGroup;
use crate::events::{self, MessageOutcome, MessageSettled};
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
        let span = tracing::info_span!(
            "process",
            otel.kind = "consumer",
            messaging.system = "aws_sqs",
            messaging.operation.type = "process",
            messaging.destination.name = %self.queue_name,
            messaging.message.id = %m.id,
            messaging.sqs.receive_count = m.receive_count,
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
        let in_flight = &metrics::get().messages_in_flight;
        in_flight.add(1, &[]);
        let slot = crate::status::board().message_slot();
        self.settle(m).instrument(span).await;
        drop(slot);
        in_flight.add(-1, &[]);
    }

    async fn settle(&self, m: Message) {
        let id = m.id.as_str();
        // When this message is given back for another try.
        let retry_in_secs = redelivery_delay(m.receive_count, self.visibility_timeout);
        self.acks.track(id, &m.receipt);
        let objects = match notification::parse(&m.body) {
            Ok(Notification::Objects(objects)) => objects,
            Ok(Notification::Ignore(reason)) => {
                MessageSettled::Ignored { reason: &reason }.emit();
                self.acks.delete(id).await;
                return;
            }
            Err(e) => {
                MessageSettled::NotANotification {
                    error: &e.to_string(),
                    body_head: head(&m.body),
                    retry_in_secs,
                }
                .emit();
                self.acks.release(id, retry_in_secs).await;
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("objects", objects.len());
        let group = AckGroup::new();
        let mut unfinished = None;
        let message_span = span.context().span().span_context().clone();
        let message_span = message_span.is_valid().then_some(message_span);
        for obj in &objects {
            match self.objects.index(obj, &group, message_span.as_ref()).await {
                Ok(()) => {}
                Err(ObjectError::Fetch(FetchError::Missing { bucket, key })) => {
                    events::object_missing(&bucket, &key);
                }
                Err(e) => {
                    unfinished = Some(e.to_string());
                    break;
                }
            }
        }
        let outcome = group.wait().await;
        span.record("documents", outcome.indexed);
        span.record("dead_lettered", outcome.dead_lettered);
        let settled = match &unfinished {
            Some(reason) => MessageSettled::Unfinished {
                reason,
                retry_in_secs,
            },
            None if outcome.failed => MessageSettled::Incomplete {
                indexed: outcome.indexed,
                dead_lettered: outcome.dead_lettered,
                retry_in_secs,
            },
            None => MessageSettled::Deleted {
                indexed: outcome.indexed,
                dead_lettered: outcome.dead_lettered,
            },
        };
        settled.emit();
        match settled.outcome() {
            MessageOutcome::Deleted => self.acks.delete(id).await,
            _ => self.acks.release(id, retry_in_secs).await,
        }
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
