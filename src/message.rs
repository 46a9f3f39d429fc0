//! Message lifecycle: one SQS message from receipt to delete or release.
//!
//! The [`MessageWorker`] parses the notification; for each object, streams its records into the
//! batcher ([`ObjectIndexer`]); waits until every document is settled (its [`AckGroup`] drains); then
//! delete the message, or release it with a growing delay if anything is unfinished. A body that is
//! not a notification is released the same way, so the queue's redrive policy ends up moving it to
//! the dead-letter queue. Each message is one trace (`process` span), continuing the producer's
//! trace context when the message carries one.

use std::sync::Arc;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ack::AckGroup;
use crate::acknowledger::Acknowledger;
use crate::metrics;
use crate::notification::{self, Notification};
use crate::object::{ObjectError, ObjectIndexer};
use crate::object_reader::FetchError;

/// Works messages, one call of [`MessageWorker::process`] each; shared by all message tasks.
pub(crate) struct MessageWorker {
    pub(crate) objects: ObjectIndexer,
    pub(crate) acks: Arc<Acknowledger>,
    /// For span attributes.
    pub(crate) queue_name: String,
    /// The cap of the redelivery delay.
    pub(crate) visibility_timeout: i32,
}

impl MessageWorker {
    /// Takes `m` from receipt to delete or release. Returns once the message is settled.
    pub(crate) async fn process(&self, m: Message) {
        let id = m.message_id().unwrap_or_default().to_string();
        let receive_count: i32 = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
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
        if let Some(parent) = trace_parent(&m) {
            let _ = span.set_parent(parent);
        }
        let metrics = metrics::get();
        metrics.messages_in_flight.add(1, &[]);
        // When this message is given back for another try.
        let delay = redelivery_delay(receive_count, self.visibility_timeout);
        async {
        let Some(receipt) = m.receipt_handle() else {
            tracing::error!("message without a receipt handle; ignoring it");
            return;
        };
        self.acks.track(&id, receipt);
        let notification = match notification::parse(m.body().unwrap_or_default()) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, body_head = %head(m.body().unwrap_or_default()), retry_in_secs = delay, "message is not an S3 notification; leaving it in the queue for its redrive policy");
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

/// The trace a producer attached to the message: a W3C `traceparent` message attribute, or the
/// `AWSTraceHeader` system attribute that X-Ray-instrumented senders set. The message's span
/// continues that trace.
fn trace_parent(m: &Message) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let remote = |trace: &str, span: &str, sampled: bool| {
        let sc = SpanContext::new(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        sc.is_valid()
            .then(|| opentelemetry::Context::new().with_remote_span_context(sc))
    };
    let attr = m
        .message_attributes()
        .and_then(|a| a.get("traceparent"))
        .and_then(|v| v.string_value());
    if let Some(tp) = attr {
        // version-traceid-spanid-flags
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [_, trace, span, flags] = parts[..] {
            let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
            if let Some(cx) = remote(trace, span, sampled) {
                return Some(cx);
            }
        }
    }
    let header = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))?;
    // Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
    let (mut root, mut parent, mut sampled) = (None, None, false);
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", v)) => root = v.split('-').skip(1).collect::<Vec<_>>().concat().into(),
            Some(("Parent", v)) => parent = Some(v.to_string()),
            Some(("Sampled", v)) => sampled = v == "1",
            _ => {}
        }
    }
    remote(&root?, &parent?, sampled)
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
