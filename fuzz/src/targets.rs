//! Bodies of the fuzz targets. Each takes arbitrary bytes, must never
//! panic, and asserts the properties its input code promises. `cargo fuzz`
//! runs them through the binaries in `fuzz_targets/` (nightly Rust), and
//! `crates/hookline-creator/tests/fuzz_properties.rs` includes this file to
//! run them over random inputs with proptest on stable Rust.

use bytes::Bytes;
use hookline_core::content::PayloadError;
use hookline_core::formats::{avro, CompiledSchema};
use hookline_core::signing::{
    signature_header, verify, InvalidSecret, SigningSecret, MAX_SECRET_BYTES, MIN_SECRET_BYTES,
};
use hookline_core::webhook_url::AddressPolicy;
use hookline_core::{ContentType, EventSource, Product};
use hookline_creator::{check_incoming, IncomingEvent, Rejected};
use std::net::IpAddr;
use time::OffsetDateTime;

/// Largest payload the ingest target accepts, small so that the size check
/// is reached often.
const MAX_PAYLOAD: usize = 512;
/// A fixed secret for the signature target (the Standard Webhooks test vector).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The timestamp that signatures in the signature target carry.
const NOW: i64 = 1_614_265_330;

/// Splits `data` at the first zero byte, twice, into three parts.
fn three_parts(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(3, |byte| *byte == 0);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    let third = parts.next().unwrap_or_default();
    (first, second, third)
}

/// Runs the ingest checks: payload size, idempotency key, declared content type
/// and well-formedness. The first byte picks the product's format; then
/// come the `content-type` header, the idempotency key and the body,
/// separated by zero bytes.
pub fn ingest_check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let content_type =
        [ContentType::Json, ContentType::Xml, ContentType::Avro][usize::from(selector % 3)];
    let (header, key, body) = three_parts(rest);
    let header = (selector & 0x80 != 0).then(|| String::from_utf8_lossy(header).into_owned());
    let key = (selector & 0x40 != 0).then(|| String::from_utf8_lossy(key).into_owned());
    let product = Product {
        name: "fuzzed".into(),
        topic: "fuzzed".into(),
        content_type,
        schema: None,
        validate: false,
        created_at: OffsetDateTime::UNIX_EPOCH,
    };
    let incoming = IncomingEvent {
        product: product.name.clone(),
        idempotency_key: key.clone(),
        content_type: header.clone(),
        payload: Bytes::copy_from_slice(body),
        source: EventSource::Http,
        span: tracing::Span::none(),
    };
    match check_incoming(&product, &incoming, MAX_PAYLOAD) {
        Ok(()) => {
            assert!(!body.is_empty(), "an empty payload was accepted");
            assert!(
                body.len() <= MAX_PAYLOAD,
                "an oversized payload was accepted"
            );
            if let Some(header) = &header {
                assert_eq!(ContentType::parse(header), Some(content_type));
            }
            if content_type == ContentType::Json {
                assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok());
            }
            if content_type == ContentType::Xml {
                let text = std::str::from_utf8(body).expect("accepted XML is UTF-8");
                assert!(!has_prolog_doctype(text), "a DTD was accepted: {text:?}");
            }
        }
        Err(Rejected::TooLarge { size, .. }) => assert!(size > MAX_PAYLOAD),
        Err(_) => {}
    }
}

/// Verifies `webhook-signature` values: arbitrary header values
/// never verify unless they carry the real signature, and a header that
/// carries it verifies whatever else surrounds it.
pub fn signature_verify(data: &[u8]) {
    let secret = SigningSecret::parse(SECRET).expect("the test vector parses");
    let (id, header, body) = three_parts(data);
    let id = String::from_utf8_lossy(id);
    let header = String::from_utf8_lossy(header);
    let genuine = secret.sign(&id, NOW, body);
    let verdict = verify(&secret, &id, NOW, &header, body, NOW, 300);
    let carries_genuine = header.split(' ').any(|part| part == genuine);
    assert_eq!(verdict.is_ok(), carries_genuine, "header {header:?}");

    let wrapped = format!("{header} {genuine}");
    assert_eq!(verify(&secret, &id, NOW, &wrapped, body, NOW, 300), Ok(()));
    let rotated = signature_header(std::slice::from_ref(&secret), &id, NOW, body);
    assert_eq!(verify(&secret, &id, NOW, &rotated, body, NOW, 300), Ok(()));
    let late = verify(&secret, &id, NOW, &genuine, body, NOW + 301, 300);
    assert!(late.is_err(), "a signature outside the tolerance verified");
}

/// Parses `whsec_` secrets: accepted secrets have 24 to 64 key bytes and
/// round-trip, and a rejection's message is one of the fixed messages, so
/// it never echoes the input.
pub fn secret_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SigningSecret::parse(text) {
        Ok(secret) => {
            assert_eq!(secret.expose(), text);
            let key = text
                .strip_prefix("whsec_")
                .expect("accepted secrets have the prefix");
            let decoded = base64_len(key);
            assert!((MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&decoded));
            assert_eq!(format!("{secret:?}"), "SigningSecret(<redacted>)");
        }
        Err(error) => {
            let expected = match error {
                InvalidSecret::MissingPrefix => InvalidSecret::MissingPrefix.to_string(),
                InvalidSecret::NotBase64 => InvalidSecret::NotBase64.to_string(),
                InvalidSecret::KeyLength { bytes } => {
                    InvalidSecret::KeyLength { bytes }.to_string()
                }
            };
            assert_eq!(error.to_string(), expected);
        }
    }
}

/// Decoded length of canonical padded base64 text.
fn base64_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|byte| *byte == b'=').count();
    text.len() / 4 * 3 - padding
}

/// Validates webhook URLs: an accepted URL is HTTPS without credentials,
/// and a literal address in it passes the address policy, under both the
/// strict and the relaxed policy.
pub fn url_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let relaxed = AddressPolicy {
        allow_private: true,
        ..AddressPolicy::default()
    };
    for policy in [AddressPolicy::default(), relaxed] {
        let Ok(url) = policy.check_url(text) else {
            continue;
        };
        assert_eq!(url.scheme(), "https", "{text:?}");
        assert!(
            url.username().is_empty() && url.password().is_none(),
            "{text:?}"
        );
        let ip: Option<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            Some(url::Host::Domain(_)) => None,
            None => panic!("an accepted URL has no host: {text:?}"),
        };
        if let Some(ip) = ip {
            assert!(policy.is_allowed(ip), "{text:?} reaches {ip}");
        }
        // Checking the normalised URL again gives the same URL.
        assert_eq!(policy.check_url(url.as_str()).as_ref(), Ok(&url));
    }
}

/// Checks XML payloads: an accepted document is UTF-8 without a DTD.
pub fn xml_check(data: &[u8]) {
    match ContentType::Xml.check_payload(data) {
        Ok(()) => {
            let text = std::str::from_utf8(data).expect("accepted XML is UTF-8");
            assert!(!text.is_empty());
            assert!(!has_prolog_doctype(text), "a DTD was accepted: {text:?}");
        }
        Err(PayloadError::Empty) => assert!(data.is_empty()),
        Err(_) => {}
    }
}

/// Returns whether `<!DOCTYPE` appears before the first element, where a
/// parser would read it as a document type declaration.
///
/// NOTE: `<!DOCTYPE` later in the text is not checked, because the XML check
/// accepts malformed element names: `<z<!DOCTYPEA/>` passes it (quick-xml
/// 0.42 does not validate names), though no XML parser would read a DTD there.
fn has_prolog_doctype(text: &str) -> bool {
    let mut rest = text;
    loop {
        let Some(open) = rest.find('<') else {
            return false;
        };
        rest = &rest[open..];
        if rest.starts_with("<!DOCTYPE") {
            return true;
        }
        // Processing instructions and comments may precede the declaration,
        // and a `<!DOCTYPE` inside them declares nothing.
        // The end is searched after the whole opener: `<!-->` opens a
        // comment and does not close it.
        let (opener, close) = if rest.starts_with("<?") {
            ("<?", "?>")
        } else if rest.starts_with("<!--") {
            ("<!--", "-->")
        } else {
            return false;
        };
        match rest[opener.len()..].find(close) {
            Some(end) => rest = &rest[opener.len() + end + close.len()..],
            None => return false,
        }
    }
}

/// An Avro schema with every kind of length-prefixed and nested value.
const AVRO_SCHEMA: &str = r#"{
  "type": "record", "name": "Order",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "amount", "type": "long"},
    {"name": "note", "type": ["null", "string"]},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attributes", "type": {"type": "map", "values": "bytes"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}}
  ]
}"#;

/// Decodes arbitrary bytes as Avro, raw and in the schema-registry wire
/// format, with every allocation capped at 1 MiB.
pub fn avro_decode(data: &[u8]) {
    avro::limit_allocations(1 << 20);
    let schema = CompiledSchema::compile(ContentType::Avro, AVRO_SCHEMA).expect("schema compiles");
    let _ = schema.check(data);
    if let Some((_, datum)) = avro::split_wire_format(data) {
        assert_eq!(datum.len(), data.len() - avro::HEADER_LEN);
        let _ = schema.check(datum);
    }
}

/// Runs every target on `data`.
pub fn all(data: &[u8]) {
    ingest_check(data);
    signature_verify(data);
    secret_parse(data);
    url_check(data);
    xml_check(data);
    avro_decode(data);
}
