//! OpenTelemetry end to end: the real worker exports to a real OTLP receiver started here (over
//! http/protobuf and over gRPC), and the tests decode what arrived: the span tree of one message,
//! the links from bulk spans to message spans, semantic attributes, and metric values.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_server::{MetricsService, MetricsServiceServer},
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

/// What a receiver got, flattened.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    resources: Vec<Vec<KeyValue>>,
    metrics: Vec<ExportMetricsServiceRequest>,
    requests: usize,
}

type Shared = Arc<Mutex<Received>>;

fn add_traces(r: &Shared, req: ExportTraceServiceRequest) {
    let mut r = r.lock().unwrap();
    r.requests += 1;
    for rs in req.resource_spans {
        r.resources
            .push(rs.resource.map(|x| x.attributes).unwrap_or_default());
        for ss in rs.scope_spans {
            r.spans.extend(ss.spans);
        }
    }
}

struct Grpc(Shared);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        add_traces(&self.0, req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut r = self.0.lock().unwrap();
        r.requests += 1;
        r.metrics.push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (String, Shared) {
    let shared = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (t, m) = (Grpc(shared.clone()), Grpc(shared.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(t))
            .add_service(MetricsServiceServer::new(m))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (format!("http://{addr}"), shared)
}

/// An OTLP/HTTP (protobuf) receiver on `port` (0 = any): `/v1/traces` and `/v1/metrics`.
async fn http_receiver(port: u16) -> Option<(String, Shared)> {
    use http_body_util::BodyExt;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let shared = Shared::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .ok()?;
    let addr = listener.local_addr().unwrap();
    let s = shared.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let reply: Vec<u8> = match path.as_str() {
                            "/v1/traces" => {
                                add_traces(
                                    &s,
                                    ExportTraceServiceRequest::decode(body)
                                        .expect("OTLP trace protobuf"),
                                );
                                ExportTraceServiceResponse::default().encode_to_vec()
                            }
                            "/v1/metrics" => {
                                let mut r = s.lock().unwrap();
                                r.requests += 1;
                                r.metrics.push(
                                    ExportMetricsServiceRequest::decode(body)
                                        .expect("OTLP metrics protobuf"),
                                );
                                ExportMetricsServiceResponse::default().encode_to_vec()
                            }
                            // Stands in for the ECS task metadata endpoint (v4) too.
                            "/ecs/task" => json!({
                                "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/f4a",
                                "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/f4a/abc123",
                                "Family": "f4a-indexer", "Revision": "7",
                                "AvailabilityZone": "us-east-1a", "LaunchType": "FARGATE"
                            })
                            .to_string()
                            .into_bytes(),
                            _ => Vec::new(),
                        };
                        let mut resp = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(reply),
                        ));
                        resp.headers_mut()
                            .insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Some((format!("http://{addr}"), shared))
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Cumulative value of a counter (sum over its latest data points, all attribute sets).
fn counter(
    metrics: &[ExportMetricsServiceRequest],
    name: &str,
    filter: Option<(&str, &str)>,
) -> Option<f64> {
    let mut latest: HashMap<String, (u64, f64)> = HashMap::new();
    for req in metrics {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    let points = match &m.data {
                        Some(metric::Data::Sum(s)) => &s.data_points,
                        Some(metric::Data::Gauge(g)) => &g.data_points,
                        _ => continue,
                    };
                    for p in points {
                        if let Some((k, v)) = filter {
                            if attr(&p.attributes, k).as_deref() != Some(v) {
                                continue;
                            }
                        }
                        let key = format!("{:?}", p.attributes);
                        let value = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => continue,
                        };
                        let e = latest.entry(key).or_insert((0, value));
                        if p.time_unix_nano >= e.0 {
                            *e = (p.time_unix_nano, value);
                        }
                    }
                }
            }
        }
    }
    (!latest.is_empty()).then(|| latest.values().map(|v| v.1).sum())
}

/// The largest count of `name`'s points, which must arrive as base-2 exponential histograms (the
/// only kind from which CloudWatch, through awsemf, computes the dashboard's percentiles).
fn histogram_count(metrics: &[ExportMetricsServiceRequest], name: &str) -> Option<u64> {
    let mut best = None;
    for req in metrics {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    match &m.data {
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                best = Some(best.unwrap_or(0).max(p.count));
                            }
                        }
                        other => {
                            panic!("{name} exported as {other:?}, not an exponential histogram")
                        }
                    }
                }
            }
        }
    }
    best
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn traced_run(protocol: &str, endpoint: &str, received: &Shared) {
    let w = World::new(&format!("otel-{}", protocol.replace('/', "-"))).await;
    let n = 20;
    // The object is announced by hand, with the producer's trace context on the message.
    w.aws.stop_notifications(&w.bucket).await;
    w.aws
        .put(
            &w.bucket,
            "2026/11/24/10/stream-1",
            gzip(&ndjson(n, "otel")),
        )
        .await;
    let event = json!({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": w.bucket}, "object": {"key": "2026/11/24/10/stream-1"}}}]});
    let sent = w
        .aws
        .sqs
        .send_message()
        .queue_url(&w.queue_url)
        .message_body(event.to_string())
        .message_attributes(
            "traceparent",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(format!("00-{TRACE_ID}-{PARENT_ID}-01"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let message_id = sent.message_id().unwrap().to_string();

    let mut env = w.env();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into());
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into());
    env.insert("OTEL_METRIC_EXPORT_INTERVAL".into(), "500".into());
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into());
    if protocol == "http/protobuf" {
        env.insert(
            "ECS_CONTAINER_METADATA_URI_V4".into(),
            format!("{endpoint}/ecs"),
        );
    }
    let mut worker = Worker::spawn(&env, &["--exit-when-idle"]);
    assert_eq!(
        worker.wait(Duration::from_secs(60)).await,
        0,
        "{}",
        worker.log_text()
    );
    assert_eq!(w.es.count(&w.all()).await, n as u64);

    let r = received.lock().unwrap();
    let log = worker.log_text();
    let by_name = |name: &str| {
        r.spans
            .iter()
            .filter(|s| s.name == name)
            .collect::<Vec<_>>()
    };
    let process = by_name("process");
    assert_eq!(
        process.len(),
        1,
        "one process span per message; got {:?}\n{log}",
        r.spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let p = process[0];
    assert_eq!(hex(&p.trace_id), TRACE_ID, "continues the producer's trace");
    assert_eq!(hex(&p.parent_span_id), PARENT_ID);
    assert_eq!(p.kind, 5, "SPAN_KIND_CONSUMER");
    assert_eq!(
        attr(&p.attributes, "messaging.system").as_deref(),
        Some("aws_sqs")
    );
    assert_eq!(
        attr(&p.attributes, "messaging.message.id"),
        Some(message_id)
    );
    assert_eq!(
        attr(&p.attributes, "messaging.destination.name"),
        w.queue_url.rsplit('/').next().map(str::to_string)
    );
    assert_eq!(
        attr(&p.attributes, "messaging.sqs.receive_count").as_deref(),
        Some("1")
    );
    assert_eq!(attr(&p.attributes, "documents").as_deref(), Some("20"));

    let object = by_name("object");
    assert_eq!(object.len(), 1);
    let o = object[0];
    assert_eq!(
        o.parent_span_id, p.span_id,
        "object fetch is a child of process"
    );
    assert_eq!(attr(&o.attributes, "aws.s3.bucket"), Some(w.bucket.clone()));
    assert_eq!(
        attr(&o.attributes, "aws.s3.key").as_deref(),
        Some("2026/11/24/10/stream-1")
    );
    assert_eq!(attr(&o.attributes, "records").as_deref(), Some("20"));
    assert!(attr(&o.attributes, "bytes").is_some());
    let decode = by_name("decode");
    assert_eq!(decode.len(), 1);
    assert_eq!(
        decode[0].parent_span_id, o.span_id,
        "decoding is a child of the object fetch"
    );
    let ack: Vec<_> = by_name("ack")
        .into_iter()
        .filter(|s| s.parent_span_id == p.span_id)
        .collect();
    assert_eq!(ack.len(), 1, "acknowledgement is a child of process");
    assert_eq!(
        attr(&ack[0].attributes, "messaging.operation.name").as_deref(),
        Some("delete")
    );

    let bulk = by_name("bulk");
    assert!(!bulk.is_empty());
    let docs: u64 = bulk
        .iter()
        .filter_map(|b| attr(&b.attributes, "docs"))
        .map(|d| d.parse::<u64>().unwrap())
        .sum();
    assert_eq!(docs, n as u64);
    for b in &bulk {
        assert_eq!(
            attr(&b.attributes, "db.system.name").as_deref(),
            Some("elasticsearch")
        );
        assert_eq!(
            attr(&b.attributes, "db.operation.name").as_deref(),
            Some("bulk")
        );
        assert_eq!(
            attr(&b.attributes, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert!(attr(&b.attributes, "rate_limiter.wait_ms").is_some());
        assert!(
            b.links
                .iter()
                .any(|l| l.span_id == p.span_id && l.trace_id == p.trace_id),
            "bulk span links to the message span"
        );
    }
    let resource = &r.resources[0];
    assert_eq!(
        attr(resource, "service.name").as_deref(),
        Some("f4a-indexer")
    );
    assert_eq!(
        attr(resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    if protocol == "http/protobuf" {
        assert_eq!(
            attr(resource, "aws.ecs.task.arn").as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:task/f4a/abc123")
        );
        assert_eq!(
            attr(resource, "aws.ecs.cluster.arn").as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:cluster/f4a")
        );
        assert_eq!(attr(resource, "cloud.platform").as_deref(), Some("aws_ecs"));
    }

    assert_eq!(
        counter(&r.metrics, "f4a.documents.indexed", None),
        Some(n as f64),
        "metrics:\n{log}"
    );
    assert_eq!(
        counter(&r.metrics, "f4a.documents.received", None),
        Some(n as f64)
    );
    assert_eq!(
        counter(&r.metrics, "f4a.documents.dead_lettered", None).unwrap_or(0.0),
        0.0
    );
    assert!(counter(&r.metrics, "f4a.bulk.requests", Some(("outcome", "ok"))).unwrap() >= 1.0);
    assert_eq!(
        counter(&r.metrics, "f4a.messages", Some(("outcome", "deleted"))),
        Some(1.0)
    );
    assert_eq!(
        counter(&r.metrics, "f4a.messages.in_flight", None),
        Some(0.0)
    );
    assert_eq!(counter(&r.metrics, "f4a.rate.configured", None), Some(0.0));
    assert!(counter(&r.metrics, "f4a.sqs.empty_receives", None).unwrap() >= 1.0);
    assert_eq!(histogram_count(&r.metrics, "f4a.lag"), Some(n as u64));
    assert!(histogram_count(&r.metrics, "f4a.bulk.duration").unwrap() >= 1);
    assert!(histogram_count(&r.metrics, "f4a.rate_limiter.wait").unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_metrics_over_http_protobuf() {
    let (endpoint, received) = http_receiver(0).await.unwrap();
    traced_run("http/protobuf", &endpoint, &received).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_metrics_over_grpc() {
    let (endpoint, received) = grpc_receiver().await;
    traced_run("grpc", &endpoint, &received).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_trace_ids() {
    let (endpoint, _received) = http_receiver(0).await.unwrap();
    let w = World::new("otel-logs").await;
    w.put_and_wait("a.json", ndjson(3, "logs")).await;
    let mut env = w.env();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
    env.insert("LOG_FORMAT".into(), "json".into());
    let log = run_until_idle(&env, Duration::from_secs(60)).await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty() && lines.len() == log.lines().count(),
        "every line is JSON:\n{log}"
    );
    let done = lines
        .iter()
        .find(|l| l["message"] == "message done; deleting it")
        .expect("done line");
    assert_eq!(done["trace_id"].as_str().map(str::len), Some(32), "{done}");
    assert_eq!(done["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(done["span"], "process");
}

/// Without an endpoint nothing is exported, not even to the default port, and nothing complains.
#[tokio::test(flavor = "multi_thread")]
async fn no_endpoint_no_export_no_error() {
    let default_port = http_receiver(4318).await;
    let w = World::new("otel-off").await;
    w.put_and_wait("a.json", ndjson(5, "off")).await;
    let env = w.env();
    assert!(!env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let log = run_until_idle(&env, Duration::from_secs(60)).await;
    assert_eq!(w.es.count(&w.all()).await, 5);
    assert!(
        !log.contains("ERROR") && !log.contains("OpenTelemetry"),
        "{log}"
    );
    if let Some((_, received)) = default_port {
        assert_eq!(
            received.lock().unwrap().requests,
            0,
            "nothing sent to the default endpoint"
        );
    }
}
