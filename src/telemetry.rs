//! Telemetry: logs (JSON or text, filtered by `RUST_LOG`) and OpenTelemetry traces and metrics.
//!
//! Export is configured only by the standard `OTEL_*` variables: the endpoint variables decide
//! whether a signal is exported at all ([`crate::config::OtelSettings`]); everything else
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_METRIC_EXPORT_INTERVAL`, timeouts) is read by the SDK itself.
//! With no endpoint set, or `OTEL_SDK_DISABLED=true`, no exporter is built: nothing is sent and
//! nothing slows down.
//!
//! `http/protobuf` exports run on the SDK's own threads with a blocking HTTP client; `grpc`
//! (tonic) needs the tokio runtime, so it uses the SDK's async-runtime processors instead.
//! JSON log lines are plain JSON (no ANSI escapes anywhere, the current span's fields as a JSON
//! object) and carry `trace_id` and `span_id` so that logs join traces in the backend.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{Aggregation, InstrumentKind, SdkMeterProvider, Stream};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, OtelProtocol, OtelSettings};

/// Keeps the exporters alive; [`Telemetry::shutdown`] flushes what is still buffered.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

pub fn init(format: LogFormat, otel: &OtelSettings) -> Telemetry {
    let mut problems = Vec::new();
    // Only read (ECS metadata included) when something is exported.
    let resource = if otel.traces.is_some() || otel.metrics.is_some() {
        resource()
    } else {
        Resource::builder_empty().build()
    };
    let tracer = otel.traces.and_then(|protocol| {
        build_tracer(protocol, resource.clone())
            .map_err(|e| problems.push(format!("traces: {e}")))
            .ok()
    });
    let meter = otel.metrics.and_then(|protocol| {
        build_meter(protocol, resource.clone())
            .map_err(|e| problems.push(format!("metrics: {e}")))
            .ok()
    });
    if let Some(m) = &meter {
        opentelemetry::global::set_meter_provider(m.clone());
    }

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => json_layer(std::io::stderr).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel_layer = tracer.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("f4a-indexer"))
            .with_error_records_to_exceptions(true)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .init();
    for p in problems {
        tracing::error!(problem = p, "OpenTelemetry export disabled for this signal");
    }
    if tracer.is_some() || meter.is_some() {
        tracing::info!(
            traces = tracer.is_some(),
            metrics = meter.is_some(),
            "OpenTelemetry export on"
        );
    }
    Telemetry { tracer, meter }
}

fn build_tracer(protocol: OtelProtocol, resource: Resource) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder().with_resource(resource);
    Ok(match protocol {
        OtelProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()?;
            builder.with_batch_exporter(exporter).build()
        }
        OtelProtocol::Grpc => {
            use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?;
            let processor =
                BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
            builder.with_span_processor(processor).build()
        }
    })
}

/// Every histogram as a base-2 exponential histogram: the ADOT collector's awsemf exporter
/// turns those into CloudWatch value/count arrays, from which CloudWatch computes percentiles
/// (the dashboard's p50/p99); explicit-bucket histograms would arrive as Count/Sum/Min/Max only.
/// At most 100 buckets: an EMF metric takes at most 100 values.
fn exponential_histograms(i: &opentelemetry_sdk::metrics::Instrument) -> Option<Stream> {
    if i.kind() != InstrumentKind::Histogram {
        return None;
    }
    Stream::builder()
        .with_aggregation(Aggregation::Base2ExponentialHistogram {
            max_size: 100,
            max_scale: 20,
            record_min_max: true,
        })
        .build()
        .ok()
}

fn build_meter(protocol: OtelProtocol, resource: Resource) -> anyhow::Result<SdkMeterProvider> {
    let builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_view(exponential_histograms);
    Ok(match protocol {
        OtelProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()?;
            builder.with_periodic_exporter(exporter).build()
        }
        OtelProtocol::Grpc => {
            use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()?;
            let reader =
                PeriodicReader::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
            builder.with_reader(reader).build()
        }
    })
}

/// `service.name` (default `f4a-indexer`, or `OTEL_SERVICE_NAME`), `service.version`,
/// `OTEL_RESOURCE_ATTRIBUTES`, and on ECS the task ARN, cluster, family and zone.
fn resource() -> Resource {
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(ecs_attributes());
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        builder = builder.with_service_name("f4a-indexer");
    }
    builder.build()
}

/// Reads the ECS task metadata endpoint (v4) when the agent provides one.
fn ecs_attributes() -> Vec<KeyValue> {
    let Ok(base) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") else {
        return Vec::new();
    };
    let task = match crate::health::http_get(&format!("{}/task", base.trim_end_matches('/'))) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("f4a-indexer: ECS task metadata unavailable: {e}");
            return Vec::new();
        }
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&task) else {
        return Vec::new();
    };
    let mut attrs = vec![
        KeyValue::new("cloud.provider", "aws"),
        KeyValue::new("cloud.platform", "aws_ecs"),
    ];
    for (key, field) in [
        ("aws.ecs.task.arn", "TaskARN"),
        ("aws.ecs.cluster.arn", "Cluster"),
        ("aws.ecs.task.family", "Family"),
        ("aws.ecs.task.revision", "Revision"),
        ("cloud.availability_zone", "AvailabilityZone"),
        ("aws.ecs.launchtype", "LaunchType"),
    ] {
        if let Some(s) = v.get(field).and_then(|x| x.as_str()) {
            attrs.push(KeyValue::new(key, s.to_string()));
        }
    }
    attrs
}

impl Telemetry {
    /// Flushes and stops the exporters. Blocking: call it off the async workers.
    pub fn shutdown(self) {
        if let Some(p) = self.tracer {
            if let Err(e) = p.shutdown() {
                eprintln!("f4a-indexer: flushing traces failed: {e}");
            }
        }
        if let Some(m) = self.meter {
            if let Err(e) = m.shutdown() {
                eprintln!("f4a-indexer: flushing metrics failed: {e}");
            }
        }
    }
}

/// The trace a producer attached to a message: a W3C `traceparent` message attribute, or the
/// `AWSTraceHeader` system attribute that X-Ray-instrumented senders set (tried second). The
/// message's span continues that trace.
pub fn remote_parent(
    traceparent: Option<&str>,
    aws_trace_header: Option<&str>,
) -> Option<opentelemetry::Context> {
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
    if let Some(tp) = traceparent {
        // version-traceid-spanid-flags
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [_, trace, span, flags] = parts[..] {
            let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
            if let Some(cx) = remote(trace, span, sampled) {
                return Some(cx);
            }
        }
    }
    let header = aws_trace_header?;
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

/// The `LOG_FORMAT=json` layer writing to `writer`. Span fields are kept as JSON ([`JsonFields`])
/// so that each line can carry them as an object; colours are off (CloudWatch shows escapes raw).
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .fmt_fields(JsonFields::new())
        .event_format(JsonWithTrace)
        .with_writer(writer)
}

/// One JSON object per line: time, level, target, message, fields, the current span's name and
/// fields (`span_fields`, an object), and the OpenTelemetry `trace_id`/`span_id` when the event
/// happens inside a trace.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        obj.insert("level".into(), event.metadata().level().as_str().into());
        obj.insert("target".into(), event.metadata().target().into());
        let mut visitor = JsonVisitor(&mut obj);
        event.record(&mut visitor);
        if let Some(span) = ctx.lookup_current() {
            obj.insert("span".into(), span.name().into());
            let ext = span.extensions();
            if let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                // JsonFields wrote them as a JSON object; kept as a string should another
                // formatter ever be configured.
                let value = serde_json::from_str::<serde_json::Value>(fields.fields.as_str())
                    .unwrap_or_else(|_| fields.fields.as_str().into());
                if !value.as_object().is_some_and(|o| o.is_empty()) && !fields.is_empty() {
                    obj.insert("span_fields".into(), value);
                }
            }
        }
        // Asked after the extensions above are released: the OTel layer locks them too.
        let cx = tracing::Span::current().context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            obj.insert("trace_id".into(), sc.trace_id().to_string().into());
            obj.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let line = serde_json::Value::Object(obj).to_string();
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn json_lines_are_plain_json_with_span_fields_as_an_object() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(json_layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "process",
                otel.kind = "consumer",
                messaging.message.id = %"m-1",
                documents = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("documents", 3u64);
            tracing::info!(indexed = 3u64, "message done; deleting it");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains("\\u001b"),
            "{text}"
        );
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "message done; deleting it");
        assert_eq!(line["indexed"], 3);
        assert_eq!(line["span"], "process");
        let fields = &line["span_fields"];
        assert_eq!(fields["otel.kind"], "consumer", "{line}");
        assert_eq!(fields["messaging.message.id"], "m-1");
        assert_eq!(fields["documents"], 3);
    }
}
