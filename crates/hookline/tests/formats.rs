//! JSON, XML and Avro records from Kafka through `hookline serve`: valid
//! records are delivered byte for byte, invalid ones land in their
//! product's rejected list without holding up the records after them, and
//! a fixed record is replayed. Avro schemas come from a fake schema
//! registry that the test serves on 127.0.0.1.

mod common;

use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::{order_event, Server, World};
use hookline_receiver::Verification;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JSON_TOPIC: &str = "orders-json";
const XML_TOPIC: &str = "orders-xml";
const AVRO_TOPIC: &str = "orders-avro";
const MAX_PAYLOAD: usize = 4096;

const ORDER_AVRO_SCHEMA: &str =
    r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}"#;
const KNOWN_ID: u32 = 7;
const LATE_ID: u32 = 99;

/// A schema registry that serves [`ORDER_AVRO_SCHEMA`] under [`KNOWN_ID`],
/// and under [`LATE_ID`] once `late_registered` is set, and counts the
/// requests for each id.
#[derive(Clone, Default)]
struct FakeRegistry {
    requests: Arc<Mutex<HashMap<u32, usize>>>,
    late_registered: Arc<AtomicBool>,
}

impl FakeRegistry {
    async fn start(&self) -> String {
        async fn schema(
            State(registry): State<FakeRegistry>,
            Path(id): Path<u32>,
        ) -> Result<Json<Value>, StatusCode> {
            *registry.requests.lock().unwrap().entry(id).or_default() += 1;
            let known = id == KNOWN_ID
                || (id == LATE_ID && registry.late_registered.load(Ordering::SeqCst));
            if known {
                Ok(Json(json!({ "schema": ORDER_AVRO_SCHEMA })))
            } else {
                Err(StatusCode::NOT_FOUND)
            }
        }
        let router = Router::new()
            .route("/schemas/ids/{id}", get(schema))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{address}")
    }

    fn requests_for(&self, id: u32) -> usize {
        self.requests.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

fn avro_record(schema_id: u32, order_id: &str) -> Vec<u8> {
    let schema = Schema::parse_str(ORDER_AVRO_SCHEMA).unwrap();
    let value = AvroValue::Record(vec![("id".into(), AvroValue::String(order_id.into()))]);
    let mut payload = vec![0];
    payload.extend_from_slice(&schema_id.to_be_bytes());
    payload.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
    payload
}

/// Produces records in order to partition 0 of `topic`, each acknowledged
/// before the next is sent.
async fn produce(brokers: &str, topic: &str, payloads: &[Vec<u8>]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    for payload in payloads {
        let record = FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload(payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("record stored");
    }
}

async fn create_product(server: &Server, body: Value) {
    let (status, response) = server
        .request(reqwest::Method::POST, "/api/v1/products", Some(body))
        .await;
    assert_eq!(status, 201, "create product: {response}");
}

/// Polls a product's rejected list until it has `count` records.
async fn wait_rejected(server: &Server, product: &str, count: usize) -> Vec<Value> {
    let path = format!("/api/v1/products/{product}/rejected");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = server.request(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "list rejected records: {body}");
        let records = body.as_array().cloned().unwrap_or_default();
        if records.len() >= count || tokio::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Returns the bodies an endpoint received, sorted, to compare with what
/// was produced.
fn received_bodies(world: &World, endpoint: &str) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = world
        .receiver
        .deliveries(endpoint)
        .iter()
        .map(|webhook| webhook.body.to_vec())
        .collect();
    bodies.sort();
    bodies
}

fn sorted(mut payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    payloads.sort();
    payloads
}

fn reason_of(record: &Value) -> &str {
    record["reason"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_formats_are_validated_and_rejected_records_replayed() {
    let registry = FakeRegistry::default();
    let registry_url = registry.start().await;
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    for topic in [JSON_TOPIC, XML_TOPIC, AVRO_TOPIC] {
        cluster.create_topic(topic, 1, 1).expect("create topic");
    }
    let brokers = cluster.bootstrap_servers();
    let max_payload = MAX_PAYLOAD.to_string();

    let world = World::new().await;
    let server = world
        .serve(&[
            ("HOOKLINE_KAFKA__BROKERS", brokers.as_str()),
            ("HOOKLINE_SCHEMA_REGISTRY__URL", registry_url.as_str()),
            ("HOOKLINE_INGEST__MAX_PAYLOAD_SIZE", max_payload.as_str()),
        ])
        .await;
    let schema: Value =
        serde_json::from_str(include_str!("../../../fixtures/order-created.schema.json")).unwrap();
    create_product(
        &server,
        json!({"name": "orders-json", "topic": JSON_TOPIC, "schema": schema}),
    )
    .await;
    create_product(
        &server,
        json!({"name": "orders-xml", "topic": XML_TOPIC, "content_type": "application/xml"}),
    )
    .await;
    create_product(
        &server,
        json!({"name": "orders-avro", "topic": AVRO_TOPIC, "content_type": "application/avro", "validate": true}),
    )
    .await;
    for (product, endpoint) in [
        ("orders-json", "json"),
        ("orders-xml", "xml"),
        ("orders-avro", "avro"),
    ] {
        server
            .create_application(&world.receiver, product, endpoint)
            .await;
    }

    let json_valid: Vec<Vec<u8>> = ["J1", "J2", "J3"]
        .iter()
        .map(|id| order_event(id).into_bytes())
        .collect();
    let malformed = br#"{"orderId": "J-bad", "#.to_vec();
    let oversized = json!({"orderId": "J-big", "padding": "x".repeat(MAX_PAYLOAD)})
        .to_string()
        .into_bytes();
    let off_schema = order_event("J-extra")
        .replacen('{', r#"{"coupon": "SPRING", "#, 1)
        .into_bytes();
    produce(
        &brokers,
        JSON_TOPIC,
        &[
            json_valid[0].clone(),
            malformed,
            json_valid[1].clone(),
            oversized.clone(),
            off_schema.clone(),
            json_valid[2].clone(),
        ],
    )
    .await;

    let xml_valid: Vec<Vec<u8>> = vec![
        b"<?xml version=\"1.0\"?><order id=\"X1\"><name>A &amp; B</name></order>".to_vec(),
        b"<order id=\"X2\"/>".to_vec(),
    ];
    let external_entity = b"<?xml version=\"1.0\"?>\
        <!DOCTYPE order [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
        <order>&xxe;</order>"
        .to_vec();
    produce(
        &brokers,
        XML_TOPIC,
        &[xml_valid[0].clone(), external_entity, xml_valid[1].clone()],
    )
    .await;

    let avro_valid = vec![avro_record(KNOWN_ID, "A1"), avro_record(KNOWN_ID, "A2")];
    let unknown_id = avro_record(LATE_ID, "A-late");
    produce(
        &brokers,
        AVRO_TOPIC,
        &[
            avro_valid[0].clone(),
            unknown_id.clone(),
            avro_valid[1].clone(),
        ],
    )
    .await;

    // Valid records, including those after a rejected one, arrive unchanged.
    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 7, Duration::from_secs(60))
        .await;
    assert!(
        arrived,
        "7 deliveries expected, got {:?}; log:\n{}",
        world.receiver.stats(),
        server.log_text()
    );
    assert_eq!(received_bodies(&world, "json"), sorted(json_valid.clone()));
    assert_eq!(received_bodies(&world, "xml"), sorted(xml_valid.clone()));
    assert_eq!(received_bodies(&world, "avro"), sorted(avro_valid.clone()));
    for webhook in world.receiver.deliveries("avro") {
        assert_eq!(webhook.content_type.as_deref(), Some("application/avro"));
    }
    for headers in world.receiver.request_headers("avro") {
        let schema_id = headers
            .get("webhook-schema-id")
            .and_then(|v| v.to_str().ok());
        assert_eq!(schema_id, Some("7"));
    }
    assert_eq!(
        registry.requests_for(KNOWN_ID),
        1,
        "the schema of id 7 is fetched once for two records"
    );

    // Each invalid record is kept with its reason and its bytes.
    let json_rejected = wait_rejected(&server, "orders-json", 3).await;
    assert_eq!(json_rejected.len(), 3, "{json_rejected:?}");
    let reasons: Vec<&str> = json_rejected.iter().map(reason_of).collect();
    assert!(
        reasons[0].contains("does not match the product's schema"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("coupon"), "{reasons:?}");
    assert!(
        reasons[1].contains("ingest.max_payload_size"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("not valid JSON"), "{reasons:?}");
    assert_eq!(json_rejected[1]["payload_size"], oversized.len());
    assert_eq!(json_rejected[2]["topic"], JSON_TOPIC);
    assert_eq!(json_rejected[2]["partition"], 0);
    assert_eq!(json_rejected[2]["offset"], 1);

    let xml_rejected = wait_rejected(&server, "orders-xml", 1).await;
    assert_eq!(xml_rejected.len(), 1, "{xml_rejected:?}");
    assert!(
        reason_of(&xml_rejected[0]).contains("DOCTYPE"),
        "{xml_rejected:?}"
    );

    let avro_rejected = wait_rejected(&server, "orders-avro", 1).await;
    assert_eq!(avro_rejected.len(), 1, "{avro_rejected:?}");
    assert!(
        reason_of(&avro_rejected[0]).contains("schema id 99"),
        "{avro_rejected:?}"
    );

    // Once the registry serves id 99, the Avro record replays unchanged.
    registry.late_registered.store(true, Ordering::SeqCst);
    let avro_replay = format!(
        "/api/v1/products/orders-avro/rejected/{}/replay",
        avro_rejected[0]["id"]
    );
    let (status, body) = server
        .request(reqwest::Method::POST, &avro_replay, None)
        .await;
    assert_eq!(status, 202, "replay: {body}");
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.succeeded >= 8, Duration::from_secs(20))
            .await
    );
    let mut expected = avro_valid.clone();
    expected.push(unknown_id);
    assert_eq!(received_bodies(&world, "avro"), sorted(expected));
    assert!(wait_rejected(&server, "orders-avro", 0).await.is_empty());
    let (status, body) = server
        .request(reqwest::Method::POST, &avro_replay, None)
        .await;
    assert_eq!(status, 409, "a second replay: {body}");

    // Once the schema allows the extra field, that record replays too. The
    // creator uses the new schema once its cached product expires.
    let mut relaxed = schema.clone();
    relaxed
        .as_object_mut()
        .unwrap()
        .remove("additionalProperties");
    let (status, body) = server
        .request(
            reqwest::Method::PUT,
            "/api/v1/products/orders-json/schema",
            Some(json!({ "schema": relaxed })),
        )
        .await;
    assert_eq!(status, 200, "replace schema: {body}");
    let json_replay = format!(
        "/api/v1/products/orders-json/rejected/{}/replay",
        json_rejected[0]["id"]
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let (status, body) = server
            .request(reqwest::Method::POST, &json_replay, None)
            .await;
        if status != 422 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        status.0, 202,
        "replay after the schema change: {}",
        status.1
    );
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.succeeded >= 9, Duration::from_secs(20))
            .await
    );
    let mut expected = json_valid;
    expected.push(off_schema);
    assert_eq!(received_bodies(&world, "json"), sorted(expected));
}

#[tokio::test]
async fn product_schema_is_checked_at_creation() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    let cases = [
        json!({"name": "a", "schema": {"type": 12}}),
        json!({"name": "b", "content_type": "application/avro", "schema": "not a schema"}),
        json!({"name": "c", "content_type": "application/xml", "schema": {"type": "object"}}),
    ];
    for body in cases {
        let (status, response) = server
            .request(
                reqwest::Method::POST,
                "/api/v1/products",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body} gave {response}");
        assert_eq!(response["error"]["field"], "schema", "{response}");
    }

    let avro = json!({"name": "d", "content_type": "application/avro", "schema": {"type": "long"}});
    let (status, response) = server
        .request(reqwest::Method::POST, "/api/v1/products", Some(avro))
        .await;
    assert_eq!(status, 201, "{response}");
    assert_eq!(response["schema"], r#"{"type":"long"}"#);
    assert_eq!(response["validate"], true);
}

const PLACED_SCHEMA_ID: u32 = 12;
const PLACED_AVRO_SCHEMA: &str = r#"{
    "type": "record", "name": "OrderPlaced", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "coupon", "type": ["null", "string"], "default": null},
        {"name": "items", "type": {"type": "array", "items": "string"}},
        {"name": "attributes", "type": {"type": "map", "values": "long"}},
        {"name": "signature", "type": "bytes"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]
}"#;

/// Serves `schema` under `id` in the Confluent registry API on 127.0.0.1.
async fn serve_schema(id: u32, schema: &'static str) -> String {
    let route = format!("/schemas/ids/{id}");
    let router = Router::new().route(
        &route,
        get(move || async move { Json(json!({ "schema": schema })) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// One `OrderPlaced` record in the wire format of schema id 12.
struct Placed {
    id: &'static str,
    paid: bool,
    coupon: Option<&'static str>,
    items: &'static [&'static str],
    attributes: &'static [(&'static str, i64)],
    signature: &'static [u8],
    /// Big-endian two's complement of the total in cents.
    total_cents: &'static [u8],
    placed_at_millis: i64,
}

impl Placed {
    fn encode(&self) -> Vec<u8> {
        let schema = Schema::parse_str(PLACED_AVRO_SCHEMA).unwrap();
        let coupon = match self.coupon {
            Some(coupon) => AvroValue::Union(1, Box::new(AvroValue::String(coupon.into()))),
            None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        };
        let status = if self.paid {
            AvroValue::Enum(1, "PAID".into())
        } else {
            AvroValue::Enum(0, "NEW".into())
        };
        let items = self
            .items
            .iter()
            .map(|item| AvroValue::String((*item).into()))
            .collect();
        let attributes = self
            .attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), AvroValue::Long(*value)))
            .collect();
        let value = AvroValue::Record(vec![
            ("id".into(), AvroValue::String(self.id.into())),
            ("status".into(), status),
            ("coupon".into(), coupon),
            ("items".into(), AvroValue::Array(items)),
            ("attributes".into(), AvroValue::Map(attributes)),
            (
                "signature".into(),
                AvroValue::Bytes(self.signature.to_vec()),
            ),
            (
                "total".into(),
                AvroValue::Decimal(apache_avro::Decimal::from(self.total_cents)),
            ),
            (
                "placed_at".into(),
                AvroValue::TimestampMillis(self.placed_at_millis),
            ),
        ]);
        let mut payload = vec![0];
        payload.extend_from_slice(&PLACED_SCHEMA_ID.to_be_bytes());
        payload.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
        payload
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_format_chooses_bytes_or_json() {
    let registry_url = serve_schema(PLACED_SCHEMA_ID, PLACED_AVRO_SCHEMA).await;
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    let topic = "orders-placed";
    cluster.create_topic(topic, 1, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();
    let world = World::new().await;
    let server = world
        .serve(&[
            ("HOOKLINE_KAFKA__BROKERS", brokers.as_str()),
            ("HOOKLINE_SCHEMA_REGISTRY__URL", registry_url.as_str()),
        ])
        .await;
    create_product(
        &server,
        json!({"name": "orders-placed", "topic": topic, "content_type": "application/avro", "validate": true}),
    )
    .await;
    let binary_app = server
        .create_application(&world.receiver, "orders-placed", "binary")
        .await;
    let json_app = server
        .create_application(&world.receiver, "orders-placed", "json")
        .await;

    // The format is validated, set with PATCH and shown by GET.
    let json_path = format!("/api/v1/applications/{json_app}");
    let (status, body) = server
        .request(
            reqwest::Method::PATCH,
            &json_path,
            Some(json!({"avro_format": "xml"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "avro_format", "{body}");
    let (status, body) = server
        .request(
            reqwest::Method::PATCH,
            &json_path,
            Some(json!({"avro_format": "json"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["avro_format"], "json", "{body}");
    assert_eq!(body["plan"], "paid", "the plan is unchanged: {body}");
    let (_, body) = server.request(reqwest::Method::GET, &json_path, None).await;
    assert_eq!(body["avro_format"], "json", "{body}");
    let binary_path = format!("/api/v1/applications/{binary_app}");
    let (_, body) = server
        .request(reqwest::Method::GET, &binary_path, None)
        .await;
    assert_eq!(body["avro_format"], "binary", "the default: {body}");

    let paid = Placed {
        id: "P1",
        paid: true,
        coupon: Some("SPRING"),
        items: &["book", "pen"],
        attributes: &[("gift", 1)],
        signature: &[1, 2, 3, 255],
        total_cents: &[0x30, 0x39],
        placed_at_millis: 1_714_566_600_250,
    };
    let new = Placed {
        id: "P2",
        paid: false,
        coupon: None,
        items: &[],
        attributes: &[],
        signature: &[],
        total_cents: &[0xfb],
        placed_at_millis: 0,
    };
    let produced = vec![paid.encode(), new.encode()];
    produce(&brokers, topic, &produced).await;

    let arrived = world
        .receiver
        .wait_for(|stats| stats.succeeded >= 4, Duration::from_secs(60))
        .await;
    assert!(
        arrived,
        "4 deliveries expected, got {:?}; log:\n{}",
        world.receiver.stats(),
        server.log_text()
    );

    // The binary application receives the producer's bytes.
    assert_eq!(received_bodies(&world, "binary"), sorted(produced.clone()));
    for webhook in world.receiver.deliveries("binary") {
        assert_eq!(webhook.content_type.as_deref(), Some("application/avro"));
        assert_eq!(webhook.verification, Verification::Verified);
    }

    // The JSON application receives each record as one JSON document.
    let expected_paid = concat!(
        r#"{"id":"P1","status":"PAID","coupon":"SPRING","items":["book","pen"],"#,
        r#""attributes":{"gift":1},"signature":"AQID/w==","total":"123.45","#,
        r#""placed_at":"2024-05-01T12:30:00.250Z"}"#
    );
    let expected_new = json!({
        "id": "P2", "status": "NEW", "coupon": null, "items": [], "attributes": {},
        "signature": "", "total": "-0.05", "placed_at": "1970-01-01T00:00:00.000Z"
    });
    let json_deliveries = world.receiver.deliveries("json");
    assert_eq!(json_deliveries.len(), 2, "{json_deliveries:?}");
    let mut by_id = HashMap::new();
    for webhook in &json_deliveries {
        assert_eq!(webhook.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            webhook.verification,
            Verification::Verified,
            "the signature covers the JSON body"
        );
        let document = webhook.json().expect("JSON body");
        by_id.insert(
            document["id"].as_str().unwrap().to_owned(),
            webhook.body.clone(),
        );
    }
    assert_eq!(by_id["P1"].as_ref(), expected_paid.as_bytes());
    assert_eq!(
        serde_json::from_slice::<Value>(&by_id["P2"]).unwrap(),
        expected_new
    );
    for headers in world.receiver.request_headers("json") {
        assert!(
            headers.get("webhook-schema-id").is_none(),
            "JSON deliveries carry no registry schema id"
        );
    }
    for headers in world.receiver.request_headers("binary") {
        let schema_id = headers
            .get("webhook-schema-id")
            .and_then(|v| v.to_str().ok());
        assert_eq!(schema_id, Some("12"));
    }

    // A record with no JSON form is dead-lettered for the JSON application
    // only, and a replay after switching it to binary delivers the bytes.
    let far_future = Placed {
        id: "P3",
        placed_at_millis: i64::MAX,
        ..new
    };
    let far_future = far_future.encode();
    produce(&brokers, topic, std::slice::from_ref(&far_future)).await;
    let deliveries = server
        .wait_deliveries(&json_app, Duration::from_secs(30), |deliveries| {
            deliveries.iter().any(|d| d["state"] == "dead")
        })
        .await;
    let dead: Vec<&Value> = deliveries.iter().filter(|d| d["state"] == "dead").collect();
    assert_eq!(dead.len(), 1, "{deliveries:?}");
    let reason = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot convert the Avro payload to JSON"),
        "{reason}"
    );
    assert!(
        reason.contains("outside the years 0000 to 9999"),
        "{reason}"
    );
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.succeeded >= 5, Duration::from_secs(30))
            .await
    );
    let mut expected_binary = produced.clone();
    expected_binary.push(far_future.clone());
    assert_eq!(received_bodies(&world, "binary"), sorted(expected_binary));
    assert_eq!(world.receiver.deliveries("json").len(), 2);

    let (status, body) = server
        .request(
            reqwest::Method::PATCH,
            &json_path,
            Some(json!({"avro_format": "binary"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let replay = format!(
        "/api/v1/dead-letters/{}/replay",
        dead[0]["id"].as_str().unwrap()
    );
    let (status, body) = server.request(reqwest::Method::POST, &replay, None).await;
    assert_eq!(status, 202, "replay: {body}");
    assert!(
        world
            .receiver
            .wait_for(|stats| stats.succeeded >= 6, Duration::from_secs(30))
            .await,
        "replay not delivered; log:\n{}",
        server.log_text()
    );
    let replayed = world.receiver.deliveries("json");
    let last = replayed.last().unwrap();
    assert_eq!(last.body.as_ref(), far_future.as_slice());
    assert_eq!(last.content_type.as_deref(), Some("application/avro"));
    assert_eq!(last.verification, Verification::Verified);
}

#[tokio::test]
async fn avro_format_is_set_at_creation() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    create_product(
        &server,
        json!({"name": "placed", "content_type": "application/avro", "schema": {"type": "long"}}),
    )
    .await;
    let url = world.receiver.endpoint_url("created");
    let mut body = json!({"name": "created", "product": "placed", "plan": "paid", "webhook_url": url, "avro_format": "avro"});
    let (status, response) = server
        .request(
            reqwest::Method::POST,
            "/api/v1/applications",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 422, "{response}");
    assert_eq!(response["error"]["field"], "avro_format", "{response}");

    body["avro_format"] = json!("json");
    let (status, response) = server
        .request(reqwest::Method::POST, "/api/v1/applications", Some(body))
        .await;
    assert_eq!(status, 201, "{response}");
    assert_eq!(response["avro_format"], "json", "{response}");
    let (status, listed) = server
        .request(
            reqwest::Method::GET,
            "/api/v1/applications?product=placed",
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["avro_format"], "json", "{listed}");

    let (status, spec) = server
        .request(reqwest::Method::GET, "/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    let properties = &spec["components"]["schemas"]["CreateApplication"]["properties"];
    assert!(properties.get("avro_format").is_some(), "{properties}");
}
