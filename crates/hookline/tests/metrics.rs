//! `/metrics` of `hookline serve`, parsed strictly as the Prometheus text
//! exposition format (version 0.0.4): the delivery counters move as events
//! are delivered, the directory cache counts hits and misses, and the Kafka
//! consumer lag is reported per topic and partition.

mod common;

use common::{order_event, Backend, Server, World};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const EVENTS: u64 = 10;

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: the declared type and help text of each metric
/// family, and every sample in the order of the text.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    help: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Returns the value of the series `name` whose labels include `labels`;
    /// `None` when no series matches, and a panic when several do.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self.series(name, labels);
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches several series: {matching:?}"
        );
        matching.first().map(|sample| sample.value)
    }

    fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
            })
            .collect()
    }
}

const METRIC_TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Parses the text format and checks the rules that a scraper relies on.
/// Names, labels and values must be valid, and a family has at most one TYPE
/// and one HELP line, with TYPE before its samples. A family's lines form one
/// group, and no series appears twice. Histogram buckets carry `le`, never
/// decrease, and end in a `+Inf` bucket equal to `_count`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut closed_families: HashSet<String> = HashSet::new();
    let mut current_family: Option<String> = None;
    let mut seen_series: HashSet<String> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a line feed".into());
    }
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fail = |message: String| format!("line {number} `{line}`: {message}");
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut exposition).map_err(fail)?;
            continue;
        }
        let sample = parse_sample(line).map_err(fail)?;
        let family = family_of(&sample.name, &exposition.types);
        if current_family.as_deref() != Some(family.as_str()) {
            if closed_families.contains(&family) {
                return Err(fail(format!(
                    "family {family} is split into several groups"
                )));
            }
            if let Some(previous) = current_family.replace(family.clone()) {
                closed_families.insert(previous);
            }
        }
        let series_key = format!("{}{:?}", sample.name, sample.labels);
        if !seen_series.insert(series_key) {
            return Err(fail("duplicate series".into()));
        }
        exposition.samples.push(sample);
    }
    check_types_precede_samples(text, &exposition)?;
    check_histograms(&exposition)?;
    Ok(exposition)
}

fn parse_comment(comment: &str, exposition: &mut Exposition) -> Result<(), String> {
    let mut parts = comment.trim_start_matches(' ').splitn(3, ' ');
    let keyword = parts.next().unwrap_or_default();
    if keyword != "TYPE" && keyword != "HELP" {
        // Other comments carry no meaning in the format.
        return Ok(());
    }
    let name = parts.next().ok_or("missing metric name")?;
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let rest = parts.next().unwrap_or_default();
    let (map, value) = if keyword == "TYPE" {
        if !METRIC_TYPES.contains(&rest) {
            return Err(format!("unknown metric type {rest:?}"));
        }
        (&mut exposition.types, rest.to_owned())
    } else {
        (&mut exposition.help, unescape(rest, false)?)
    };
    if map.insert(name.to_owned(), value).is_some() {
        return Err(format!("second {keyword} line for {name}"));
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("missing value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let fields: Vec<&str> = rest
        .strip_prefix(' ')
        .ok_or("missing space before the value")?
        .split(' ')
        .collect();
    let value = match fields.as_slice() {
        [value] => parse_value(value)?,
        [value, timestamp] => {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
            parse_value(value)?
        }
        _ => return Err("expected a value and an optional timestamp".into()),
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` and returns the text after the closing brace.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let equals = text.find('=').ok_or("label without `=`")?;
        let label = &text[..equals];
        if !is_label_name(label) {
            return Err(format!("invalid label name {label:?}"));
        }
        let quoted = text[equals + 1..]
            .strip_prefix('"')
            .ok_or("label value is not quoted")?;
        let closing = closing_quote(quoted).ok_or("unterminated label value")?;
        let value = unescape(&quoted[..closing], true)?;
        if labels.insert(label.to_owned(), value).is_some() {
            return Err(format!("label {label} appears twice"));
        }
        text = &quoted[closing + 1..];
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected `,` or `}` after a label".into());
        }
    }
}

/// Byte index of the first quote not escaped by a backslash.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(index),
            _ => escaped = false,
        }
    }
    None
}

/// Resolves `\\` and `\n`, and `\"` in label values; any other escape is invalid.
fn unescape(text: &str, quote_allowed: bool) -> Result<String, String> {
    let mut output = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            output.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => output.push('\\'),
            Some('n') => output.push('\n'),
            Some('"') if quote_allowed => output.push('"'),
            other => return Err(format!("invalid escape sequence \\{other:?}")),
        }
    }
    Ok(output)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("invalid sample value {text:?}")),
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Returns the family of a sample: `x` for `x_bucket`, `x_sum` and `x_count`
/// when `x` is a declared histogram or summary, otherwise the sample's name.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            let kind = types.get(base).map(String::as_str);
            let bucket_allowed = suffix != "_bucket" || kind == Some("histogram");
            if matches!(kind, Some("histogram" | "summary")) && bucket_allowed {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

/// Rejects a TYPE line that follows a sample of its own family.
fn check_types_precede_samples(text: &str, exposition: &Exposition) -> Result<(), String> {
    let mut sampled: HashSet<String> = HashSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let name = declaration.split(' ').next().unwrap_or_default();
            if sampled.contains(name) {
                return Err(format!("TYPE of {name} comes after its samples"));
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            let sample = parse_sample(line)?;
            sampled.insert(family_of(&sample.name, &exposition.types));
        }
    }
    Ok(())
}

fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    let histograms = exposition
        .types
        .iter()
        .filter(|(_, kind)| kind.as_str() == "histogram");
    for (name, _) in histograms {
        let buckets = exposition.series(&format!("{name}_bucket"), &[]);
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for bucket in &buckets {
            let le = bucket
                .labels
                .get("le")
                .ok_or(format!("{name}_bucket without le"))?;
            let bound = parse_value(le)?;
            let mut others = bucket.labels.clone();
            others.remove("le");
            by_series
                .entry(format!("{others:?}"))
                .or_default()
                .push((bound, bucket.value));
        }
        for (series, mut bounds) in by_series {
            bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            if bounds.windows(2).any(|pair| pair[1].1 < pair[0].1) {
                return Err(format!("{name}{series}: bucket counts decrease"));
            }
            let last = bounds.last().expect("a series has at least one bucket");
            if last.0 != f64::INFINITY {
                return Err(format!("{name}{series}: no +Inf bucket"));
            }
            let count = exposition
                .samples
                .iter()
                .find(|sample| {
                    let mut labels = sample.labels.clone();
                    labels.remove("le");
                    sample.name == format!("{name}_count") && format!("{labels:?}") == series
                })
                .ok_or(format!("{name}{series}: no _count"))?;
            if count.value != last.1 {
                return Err(format!("{name}{series}: +Inf bucket differs from _count"));
            }
        }
    }
    Ok(())
}

async fn scrape(server: &Server) -> Exposition {
    let response = reqwest::get(format!("{}/metrics", server.api))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200, "GET /metrics status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "content type of /metrics: {content_type:?}"
    );
    let text = response.text().await.expect("body of /metrics");
    parse_exposition(&text).unwrap_or_else(|error| panic!("invalid exposition: {error}\n{text}"))
}

/// Scrapes until `condition` is true or `timeout` passes, and returns the last scrape.
async fn scrape_until(
    server: &Server,
    timeout: Duration,
    condition: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let exposition = scrape(server).await;
        if condition(&exposition) || tokio::time::Instant::now() > deadline {
            return exposition;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn counter(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition.value(name, labels).unwrap_or(0.0)
}

async fn delivery_counters_move(backend: Backend) {
    let world = World::with_backend(backend).await;
    let server = world.serve(&[]).await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    server
        .create_application(&world.receiver, "order-created", "metrics")
        .await;

    let before = scrape(&server).await;
    let delivered = [("outcome", "delivered")];
    let created = [("outcome", "created")];
    let delivered_before = counter(&before, "hookline_deliveries_total", &delivered);
    let created_before = counter(&before, "hookline_events_total", &created);

    for n in 0..EVENTS {
        let payload = order_event(&format!("M{n}"));
        let key = format!("metrics-{n}");
        let (status, body) = server.ingest("order-created", Some(&key), &payload).await;
        assert_eq!(status, 202, "ingest: {body}");
    }
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= EVENTS, Duration::from_secs(30))
        .await;
    assert!(arrived, "deliveries: {:?}", world.receiver.stats());

    let expected = delivered_before + EVENTS as f64;
    let after = scrape_until(&server, Duration::from_secs(10), |exposition| {
        counter(exposition, "hookline_deliveries_total", &delivered) >= expected
    })
    .await;
    let delivered_after = counter(&after, "hookline_deliveries_total", &delivered);
    assert_eq!(delivered_after - delivered_before, EVENTS as f64);
    let created_after = counter(&after, "hookline_events_total", &created);
    assert_eq!(created_after - created_before, EVENTS as f64);
    assert_eq!(
        after
            .types
            .get("hookline_deliveries_total")
            .map(String::as_str),
        Some("counter")
    );
    assert!(
        after.help.contains_key("hookline_deliveries_total"),
        "HELP of hookline_deliveries_total"
    );

    // The creator looks up the product's subscribers and the dispatcher the
    // application's endpoint once per event, mostly from the cache.
    let hits = counter(
        &after,
        "hookline_directory_cache_total",
        &[("result", "hit")],
    );
    let misses = counter(
        &after,
        "hookline_directory_cache_total",
        &[("result", "miss")],
    );
    assert!(misses >= 1.0, "the first lookups miss the cache: {misses}");
    assert!(hits >= 1.0, "later lookups hit the cache: {hits}");
    assert!(
        hits + misses >= 2.0 * EVENTS as f64,
        "at least two lookups per event: {hits} hits, {misses} misses"
    );
}

both_backends!(delivery_counters_move);

const TOPIC: &str = "order-created-event";

async fn produce(brokers: &str, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    for n in 0..count {
        let payload = order_event(&format!("LAG{n}"));
        let record = FutureRecord::<(), _>::to(TOPIC).payload(payload.as_bytes());
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("record stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_per_partition() {
    let cluster = MockCluster::new(1).expect("mock Kafka cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();

    let world = World::new().await;
    let server = world
        .serve(&[("HOOKLINE_KAFKA__BROKERS", brokers.as_str())])
        .await;
    server.create_product("order-created", TOPIC).await;
    server
        .create_application(&world.receiver, "order-created", "lag")
        .await;
    produce(&brokers, 6).await;
    let arrived = world
        .receiver
        .wait_for(|stats| stats.verified >= 6, Duration::from_secs(40))
        .await;
    assert!(arrived, "deliveries: {:?}", world.receiver.stats());

    // Statistics arrive every 5 s; once every record is committed, each
    // assigned partition reports a lag of 0.
    let lag_of = |exposition: &Exposition, partition: &str| {
        exposition.value(
            "hookline_kafka_consumer_lag",
            &[("topic", TOPIC), ("partition", partition)],
        )
    };
    let exposition = scrape_until(&server, Duration::from_secs(30), |exposition| {
        lag_of(exposition, "0") == Some(0.0) && lag_of(exposition, "1") == Some(0.0)
    })
    .await;
    assert_eq!(lag_of(&exposition, "0"), Some(0.0), "lag of partition 0");
    assert_eq!(lag_of(&exposition, "1"), Some(0.0), "lag of partition 1");
    assert_eq!(
        exposition
            .types
            .get("hookline_kafka_consumer_lag")
            .map(String::as_str),
        Some("gauge")
    );
    for sample in exposition.series("hookline_kafka_consumer_lag", &[]) {
        let labels: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(labels, ["partition", "topic"], "labels of {sample:?}");
    }
}

#[test]
fn parser_accepts_valid_exposition() {
    let text = concat!(
        "# HELP requests_total Requests, by \\\\ code\\n.\n",
        "# TYPE requests_total counter\n",
        "requests_total{code=\"200\",path=\"/a\\\"b\"} 3\n",
        "requests_total{code=\"500\",path=\"/\"} 1 1700000000000\n",
        "# TYPE latency_seconds histogram\n",
        "latency_seconds_bucket{le=\"0.1\"} 1\n",
        "latency_seconds_bucket{le=\"+Inf\"} 2\n",
        "latency_seconds_sum 0.3\n",
        "latency_seconds_count 2\n",
        "free_form NaN\n",
    );
    let exposition = parse_exposition(text).expect("valid exposition");
    assert_eq!(exposition.samples.len(), 7);
    assert_eq!(
        exposition.value("requests_total", &[("path", "/a\"b")]),
        Some(3.0)
    );
    assert_eq!(exposition.help["requests_total"], "Requests, by \\ code\n.");
}

#[test]
fn parser_rejects_invalid_exposition() {
    let cases = [
        ("no line feed at the end", "up 1"),
        ("invalid name", "1up 1\n"),
        ("unquoted label", "up{job=api} 1\n"),
        ("invalid value", "up one\n"),
        ("duplicate series", "up{a=\"1\"} 1\nup{a=\"1\"} 2\n"),
        ("unknown type", "# TYPE up bogus\nup 1\n"),
        ("second TYPE", "# TYPE up gauge\n# TYPE up gauge\nup 1\n"),
        ("TYPE after samples", "up 1\n# TYPE up gauge\n"),
        ("split family", "a 1\nb 1\na{x=\"y\"} 1\n"),
        ("bad escape", "up{a=\"\\t\"} 1\n"),
        (
            "decreasing buckets",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        ),
        (
            "missing +Inf bucket",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
        ),
    ];
    for (case, text) in cases {
        assert!(
            parse_exposition(text).is_err(),
            "{case}: {text:?} was accepted"
        );
    }
}
