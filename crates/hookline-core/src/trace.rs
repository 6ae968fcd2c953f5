//! Trace context that travels with an event: the W3C `traceparent` value
//! (<https://www.w3.org/TR/trace-context/>), and the glue between `tracing`
//! spans and OpenTelemetry.
//!
//! A trace runs from the Kafka record or the ingest request through the
//! event to each delivery attempt. The attempt runs later, often in another
//! process, so the event stores the `traceparent` of its span and every
//! [`DeliveryTask`](crate::queue::DeliveryTask) carries it through the queue.
//!
//! Spans meant for export use the target [`TARGET`]. The `hookline` binary
//! sends that target to the OpenTelemetry layer only, and only when OTLP
//! export is configured. Otherwise no subscriber enables these spans, so
//! creating one costs a cached check of its call site.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `tracing` target of the spans that are exported over OTLP.
pub const TARGET: &str = "hookline::otel";

/// Name of the W3C Trace Context header, in Kafka records and HTTP requests.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Flag that is set while trace export is on in this process. Sources read
/// incoming `traceparent` headers only while it is set. Off by default.
static EXPORT_ENABLED: AtomicBool = AtomicBool::new(false);

/// Sets whether spans of [`TARGET`] are exported in this process. Sources
/// read the `traceparent` of Kafka records and requests only while it is on.
pub fn set_export_enabled(enabled: bool) {
    EXPORT_ENABLED.store(enabled, Ordering::Relaxed);
}

/// Reports whether spans of [`TARGET`] are exported in this process.
pub fn export_enabled() -> bool {
    EXPORT_ENABLED.load(Ordering::Relaxed)
}

/// A parsed `traceparent` value: trace id, parent span id and trace flags.
/// The type is `Copy` and keeps the ids as bytes. It is formatted as text
/// when written to a store, a queue message or a header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Length of a version `00` value: `00-<32 hex>-<16 hex>-<2 hex>`.
const VERSION_00_LEN: usize = 55;

impl TraceParent {
    /// Builds a trace parent, or returns `None` when either id is all
    /// zeros, which W3C Trace Context defines as invalid.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Parses a `traceparent` header value. Returns `None` for any value
    /// that W3C Trace Context Level 1 requires a parser to ignore: a wrong length,
    /// uppercase or non-hex digits, a missing separator, version `ff`, or an
    /// all-zero id. A higher version is read by its version `00` prefix, as
    /// the specification recommends.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']).as_bytes();
        if value.len() < VERSION_00_LEN {
            return None;
        }
        let version = decode_hex::<1>(&value[0..2])?[0];
        let valid_length = match version {
            0xff => false,
            0x00 => value.len() == VERSION_00_LEN,
            _ => value.len() == VERSION_00_LEN || value[VERSION_00_LEN] == b'-',
        };
        if !valid_length || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = decode_hex::<16>(&value[3..35])?;
        let span_id = decode_hex::<8>(&value[36..52])?;
        let flags = decode_hex::<1>(&value[53..55])?[0];
        Self::new(trace_id, span_id, flags)
    }

    /// Returns the 16-byte trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// Returns the 8-byte id of the parent span.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// Reports whether the `sampled` flag is set, which means that the caller
    /// may have recorded its span.
    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// Returns the context of `span` as exported, or `None` when the span
    /// is disabled or no OpenTelemetry layer records it. Reading the context
    /// starts the OpenTelemetry span, so set its parent before calling this.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span_ref = context.span();
        let span_context = span_ref.span_context();
        if !span_context.is_valid() {
            return None;
        }
        Self::new(
            span_context.trace_id().to_bytes(),
            span_context.span_id().to_bytes(),
            span_context.trace_flags().to_u8(),
        )
    }

    /// Makes this remote span the OpenTelemetry parent of `span`. It has no
    /// effect on a disabled span, or on a span whose OpenTelemetry span has
    /// already started because it was entered or read with
    /// [`TraceParent::of_span`]. A failure is logged at debug level.
    pub fn adopt_into(&self, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        let remote = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        let parent = opentelemetry::Context::new().with_remote_span_context(remote);
        if let Err(error) = span.set_parent(parent) {
            tracing::debug!(%error, traceparent = %self, "Failed to set the remote parent of a span");
        }
    }
}

/// Decodes exactly `N` bytes from lowercase hex digits, or returns `None`
/// for a wrong length or any other character.
fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != N * 2 {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(bytes)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for TraceParent {
    /// Writes the version `00` form, `00-<trace id>-<span id>-<flags>`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "TraceParent({self})")
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid W3C traceparent value {text:?}, expected \"00-<32 hex digits>-<16 hex digits>-<2 hex digits>\" in lowercase"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parse_round_trips_version_00() {
        let parsed = TraceParent::parse(SAMPLE).expect("valid value");
        assert_eq!(
            hex::encode(parsed.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(parsed.span_id()), "00f067aa0ba902b7");
        assert!(parsed.is_sampled());
        assert_eq!(parsed.to_string(), SAMPLE);
    }

    #[test]
    fn parse_rejects_invalid_values() {
        let cases = [
            ("", "empty"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "no flags",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "uppercase",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero span id",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "00 with suffix",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "bad separator",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "non-hex digit",
            ),
        ];
        for (value, case) in cases {
            assert_eq!(TraceParent::parse(value), None, "{case}: {value:?}");
        }
    }

    #[test]
    fn parse_reads_higher_version_prefix() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        let parsed = TraceParent::parse(value).expect("a higher version is read");
        assert!(!parsed.is_sampled());
        assert_eq!(
            parsed.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn serde_uses_header_text() {
        let parsed = TraceParent::parse(SAMPLE).unwrap();
        let json = serde_json::to_value(parsed).unwrap();
        assert_eq!(json, SAMPLE);
        let deserialized: TraceParent = serde_json::from_value(json).unwrap();
        assert_eq!(deserialized, parsed);
        let invalid = serde_json::from_value::<TraceParent>(serde_json::json!("00-zz"));
        assert!(invalid.is_err());
    }

    #[test]
    fn of_span_without_layer_is_none() {
        let span = tracing::info_span!(target: TARGET, "test");
        assert_eq!(TraceParent::of_span(&span), None);
    }
}
