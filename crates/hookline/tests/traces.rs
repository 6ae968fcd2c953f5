//! OTLP trace export end to end: Hookline's processes post their spans to
//! a fake OTLP/HTTP collector on 127.0.0.1, which decodes each
//! `ExportTraceServiceRequest` (protobuf). The tests check that the Kafka
//! record or ingest request, the event and every delivery attempt form one
//! trace, also when the attempt runs in another process behind RabbitMQ.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use common::{order_event, Backend, Server, World, TOKEN};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "order-created-event";
const PRODUCER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";
const GATEWAY_TOKEN: &str = "trace-test-gateway-token";

/// One span as the collector received it, ids in lowercase hex.
#[derive(Debug, Clone)]
struct CollectedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

impl CollectedSpan {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A fake OTLP/HTTP collector that keeps every span it receives.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", post(receive_traces))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Vec<CollectedSpan> {
        self.spans()
            .into_iter()
            .filter(|span| span.name == name)
            .collect()
    }

    fn describe(&self) -> String {
        self.spans()
            .iter()
            .map(|span| {
                format!(
                    "{} {} trace={} span={} parent={} {:?}",
                    span.service,
                    span.name,
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    span.attributes
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn receive_traces(
    State(spans): State<Arc<Mutex<Vec<CollectedSpan>>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = attributes(&resource.attributes)
            .remove("service.name")
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    spans.lock().unwrap().extend(received);
    let response = ExportTraceServiceResponse::default().encode_to_vec();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        response,
    )
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(AnyValue::StringValue(text)) => text.clone(),
                Some(AnyValue::IntValue(number)) => number.to_string(),
                Some(AnyValue::BoolValue(flag)) => flag.to_string(),
                Some(AnyValue::DoubleValue(number)) => number.to_string(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn producer_traceparent() -> String {
    format!("00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01")
}

async fn produce(brokers: &str, key: &str, traceparent: Option<&str>, payload: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let mut headers = OwnedHeaders::new().insert(Header {
        key: "idempotentKey",
        value: Some(key.as_bytes()),
    });
    if let Some(traceparent) = traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent.as_bytes()),
        });
    }
    let record = FutureRecord::<(), _>::to(TOPIC)
        .payload(payload.as_bytes())
        .headers(headers);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("record stored");
}

/// Returns the only span named `name` whose parent is `parent`.
fn only_child(collector: &Collector, name: &str, parent: &CollectedSpan) -> CollectedSpan {
    let children: Vec<CollectedSpan> = collector
        .named(name)
        .into_iter()
        .filter(|span| span.parent_span_id == parent.span_id)
        .collect();
    assert_eq!(
        children.len(),
        1,
        "one {name} span under {} {}; collected:\n{}",
        parent.name,
        parent.span_id,
        collector.describe()
    );
    children[0].clone()
}

/// Checks the chain kafka.consume -> hookline.event -> webhook.attempt of
/// the record at `offset`, and returns the Kafka span.
fn kafka_chain(collector: &Collector, offset: &str) -> CollectedSpan {
    let kafka: Vec<CollectedSpan> = collector
        .named("kafka.consume")
        .into_iter()
        .filter(|span| span.attribute("messaging.kafka.offset") == Some(offset))
        .collect();
    assert_eq!(
        kafka.len(),
        1,
        "one Kafka span for offset {offset}; collected:\n{}",
        collector.describe()
    );
    let kafka = kafka[0].clone();
    let event = only_child(collector, "hookline.event", &kafka);
    let attempt = only_child(collector, "webhook.attempt", &event);

    assert_eq!(
        kafka.trace_id, event.trace_id,
        "record and event share a trace"
    );
    assert_eq!(
        event.trace_id, attempt.trace_id,
        "event and attempt share a trace"
    );
    assert_eq!(attempt.attribute("hookline.attempt"), Some("1"));
    assert_eq!(attempt.attribute("http.response.status_code"), Some("204"));
    assert_eq!(
        attempt.attribute("hookline.event_id"),
        event.attribute("hookline.event_id")
    );
    assert!(attempt
        .attribute("hookline.delivery_id")
        .is_some_and(|id| id.starts_with("dlv_")));
    assert!(attempt.attribute("hookline.application_id").is_some());
    assert!(attempt.attribute("hookline.duration_ms").is_some());
    assert_eq!(kafka.attribute("messaging.destination.name"), Some(TOPIC));
    assert_eq!(
        kafka.attribute("messaging.destination.partition.id"),
        Some("0")
    );
    assert_eq!(kafka.attribute("hookline.product"), Some("order-created"));
    for span in [&attempt, &event, &kafka] {
        assert_eq!(span.service, "hookline-serve", "{}", span.name);
    }
    kafka
}

async fn kafka_record_trace_reaches_attempt(backend: Backend) {
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();
    let collector = Collector::start().await;

    let world = World::with_backend(backend).await;
    let server = world
        .serve(&[
            ("HOOKLINE_KAFKA__BROKERS", brokers.as_str()),
            (
                "HOOKLINE_TELEMETRY__OTLP_ENDPOINT",
                collector.endpoint.as_str(),
            ),
        ])
        .await;
    server.create_product("order-created", TOPIC).await;
    server
        .create_application(&world.receiver, "order-created", "east")
        .await;

    let traceparent = producer_traceparent();
    produce(&brokers, "traced", Some(&traceparent), &order_event("T1")).await;
    produce(&brokers, "untraced", None, &order_event("U1")).await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 2, Duration::from_secs(40))
        .await;
    assert!(
        arrived,
        "got {:?}; log:\n{}",
        world.receiver.stats(),
        server.log_text()
    );

    // A graceful stop flushes the spans that are still queued.
    let log = server.log.clone();
    assert!(
        server.terminate().success(),
        "{}",
        std::fs::read_to_string(log).unwrap()
    );

    // One partition, so the first record is at offset 0 and the second at 1.
    let traced = kafka_chain(&collector, "0");
    assert_eq!(
        traced.trace_id, PRODUCER_TRACE,
        "the record's traceparent is continued"
    );
    assert_eq!(
        traced.parent_span_id, PRODUCER_SPAN,
        "the producer's span is the parent"
    );

    let untraced = kafka_chain(&collector, "1");
    assert_ne!(
        untraced.trace_id, PRODUCER_TRACE,
        "a record without traceparent starts a trace"
    );
    assert_eq!(
        untraced.parent_span_id, "",
        "the Kafka span of an untraced record is a root"
    );
}

both_backends!(kafka_record_trace_reaches_attempt);

async fn ingest_with_traceparent(server: &Server, key: &str, traceparent: &str) -> u16 {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/products/order-created/events",
            server.api
        ))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .header("traceparent", traceparent)
        .body(order_event(key))
        .send()
        .await
        .expect("ingest request");
    response.status().as_u16()
}

/// Distributed: `hookline api` accepts the request, RabbitMQ carries the
/// task, `hookline dispatcher` sends it through `hookline gateway`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_trace_crosses_processes() {
    let collector = Collector::start().await;
    let otlp = (
        "HOOKLINE_TELEMETRY__OTLP_ENDPOINT",
        collector.endpoint.as_str(),
    );
    let world = World::with_backend(Backend::Distributed).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let gateway_url = format!("http://{listen}");

    let api = world.start("api", &[otlp]).await;
    let gateway = world
        .start(
            "gateway",
            &[
                otlp,
                ("HOOKLINE_GATEWAY__LISTEN", listen.as_str()),
                ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
            ],
        )
        .await;
    let dispatcher = world
        .start(
            "dispatcher",
            &[
                otlp,
                ("HOOKLINE_DISPATCHER__GATEWAY_URL", gateway_url.as_str()),
                ("HOOKLINE_GATEWAY__TOKEN", GATEWAY_TOKEN),
            ],
        )
        .await;
    api.create_product("order-created", TOPIC).await;
    api.create_application(&world.receiver, "order-created", "west")
        .await;

    let status = ingest_with_traceparent(&api, "over-http", &producer_traceparent()).await;
    assert_eq!(status, 202);
    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 1, Duration::from_secs(30))
        .await;
    assert!(
        arrived,
        "got {:?}; dispatcher log:\n{}",
        world.receiver.stats(),
        dispatcher.log_text()
    );
    for process in [dispatcher, gateway, api] {
        assert!(process.terminate().success());
    }

    let spans = collector.spans();
    let request = collector.named("POST /api/v1/products/{name}/events");
    assert_eq!(request.len(), 1, "collected:\n{}", collector.describe());
    let request = &request[0];
    assert_eq!(request.service, "hookline-api");
    assert_eq!(
        request.trace_id, PRODUCER_TRACE,
        "the request's traceparent is continued"
    );
    assert_eq!(request.parent_span_id, PRODUCER_SPAN);
    assert_eq!(request.attribute("http.response.status_code"), Some("202"));

    let event = collector.named("hookline.event");
    assert_eq!(event.len(), 1, "collected:\n{}", collector.describe());
    let event = &event[0];
    assert_eq!(
        event.parent_span_id, request.span_id,
        "the event is a child of the request"
    );
    assert_eq!(event.trace_id, PRODUCER_TRACE);

    let attempt = collector.named("webhook.attempt");
    assert_eq!(attempt.len(), 1, "collected:\n{}", collector.describe());
    let attempt = &attempt[0];
    assert_eq!(attempt.service, "hookline-dispatcher");
    assert_eq!(
        attempt.trace_id, PRODUCER_TRACE,
        "the trace crosses RabbitMQ"
    );
    assert_eq!(
        attempt.parent_span_id, event.span_id,
        "the attempt is a child of the event"
    );
    assert_eq!(attempt.attribute("http.response.status_code"), Some("204"));

    let forwarded = collector.named("gateway.attempt");
    assert_eq!(forwarded.len(), 1, "collected:\n{}", collector.describe());
    let forwarded = &forwarded[0];
    assert_eq!(forwarded.service, "hookline-gateway");
    assert_eq!(forwarded.trace_id, PRODUCER_TRACE);
    assert_eq!(
        forwarded.parent_span_id, attempt.span_id,
        "the gateway continues the attempt"
    );
    assert_eq!(forwarded.attribute("hookline.consumer_status"), Some("204"));
    assert_eq!(
        forwarded.attribute("http.response.status_code"),
        Some("200")
    );
    assert!(spans.iter().all(|span| span.trace_id == PRODUCER_TRACE));
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
