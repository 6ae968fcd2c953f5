//! Webhook signatures.
//!
//! The default scheme follows Standard Webhooks: the signed content is
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, the MAC is HMAC-SHA256 keyed
//! with the base64-decoded part of a `whsec_…` secret, and the header value is
//! `v1,<base64 MAC>`, space-separated when several secrets are active.
//! The `body-hmac` scheme signs the raw body alone, for consumers of the
//! 3scale reference deployment and GitHub-style receivers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

/// An application's signing secret, `whsec_<base64 of the key>`.
///
/// `Debug` and `Display` never print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    encoded: String,
    key: Vec<u8>,
}

/// Minimum key length that [`SigningSecret::parse`] accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 24;
/// Maximum key length that [`SigningSecret::parse`] accepts, in bytes.
pub const MAX_SECRET_BYTES: usize = 64;

/// A secret string that is not `whsec_` followed by the canonical base64 of
/// 24 to 64 bytes. The message never contains the rejected value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSecret {
    #[error("invalid signing secret: it must start with `whsec_`")]
    MissingPrefix,
    #[error("invalid signing secret: the part after `whsec_` is not canonical padded base64")]
    NotBase64,
    #[error("invalid signing secret: the key is {bytes} bytes long; expected {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}")]
    KeyLength { bytes: usize },
}

impl SigningSecret {
    /// Creates a secret from 32 random bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let encoded = format!("{SECRET_PREFIX}{}", STANDARD.encode(&key));
        Self { encoded, key }
    }

    /// Parses `whsec_<base64>` strictly: canonical padded base64 with no
    /// whitespace, of a key of 24 to 64 bytes.
    pub fn parse(value: &str) -> Result<Self, InvalidSecret> {
        let base64 = value
            .strip_prefix(SECRET_PREFIX)
            .ok_or(InvalidSecret::MissingPrefix)?;
        // The decoder's error names the offending byte, so it is dropped
        // here: it would echo part of the secret.
        let key = STANDARD
            .decode(base64)
            .map_err(|_| InvalidSecret::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(InvalidSecret::KeyLength { bytes: key.len() });
        }
        Ok(Self {
            encoded: value.to_owned(),
            key,
        })
    }

    /// Wraps a key that comes from elsewhere as raw bytes, such as a 3scale
    /// application's `user_key`, whose UTF-8 bytes are then the HMAC key.
    /// Unlike [`SigningSecret::parse`] it accepts keys of any length,
    /// because the key's owner chose it. The `whsec_` form is the base64 of
    /// these bytes, so a Standard Webhooks library verifies with
    /// `whsec_<base64 of the user_key>`.
    pub fn from_raw_key(key: &[u8]) -> Self {
        let encoded = format!("{SECRET_PREFIX}{}", STANDARD.encode(key));
        Self {
            encoded,
            key: key.to_vec(),
        }
    }

    /// Returns the `whsec_…` form, to show to the application's owner once.
    pub fn expose(&self) -> &str {
        &self.encoded
    }

    /// Signs one delivery: returns `v1,<base64 HMAC-SHA256>` over
    /// `"{id}.{timestamp}.{body}"`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Builds the `webhook-signature` header value for all active secrets.
pub fn signature_header(
    secrets: &[SigningSecret],
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| secret.sign(webhook_id, timestamp, body))
        .collect();
    signatures.join(" ")
}

/// Reason a received webhook failed verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("webhook-timestamp {timestamp} is more than {tolerance_secs}s away from now ({now})")]
    TimestampOutOfTolerance {
        timestamp: i64,
        now: i64,
        tolerance_secs: i64,
    },
    #[error("no v1 signature in webhook-signature matches the body")]
    NoMatchingSignature,
}

/// Verifies a received webhook as a Standard Webhooks consumer does: the
/// timestamp must be within `tolerance_secs` of `now`, and one of the
/// space-separated `v1,` signatures must match. Comparison is constant-time.
pub fn verify(
    secret: &SigningSecret,
    webhook_id: &str,
    timestamp: i64,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp,
            now,
            tolerance_secs,
        });
    }
    let mut mac = HmacSha256::new_from_slice(&secret.key).expect("HMAC takes keys of any length");
    mac.update(format!("{webhook_id}.{timestamp}.").as_bytes());
    mac.update(body);
    for candidate in signature_header.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(bytes) = STANDARD.decode(encoded) else {
            continue;
        };
        if mac.clone().verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// Encoding of a `body-hmac` signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHmacEncoding {
    Base64,
    Hex,
}

/// Signs the raw body alone with HMAC-SHA256 keyed with the secret's UTF-8
/// bytes, as the 3scale reference deployment's `X-HMAC-SIGNATURE` does.
/// With a `prefix` of `sha256=` and hex encoding this is GitHub's
/// `X-Hub-Signature-256`. It carries no timestamp, so it cannot stop replays.
pub fn body_hmac(
    secret_text: &str,
    body: &[u8],
    encoding: BodyHmacEncoding,
    prefix: &str,
) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret_text.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let encoded = match encoding {
        BodyHmacEncoding::Base64 => STANDARD.encode(digest),
        BodyHmacEncoding::Hex => hex::encode(digest),
    };
    format!("{prefix}{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks specification and
    // used by its reference libraries.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn sign_reproduces_standard_webhooks_vector() {
        let secret = SigningSecret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(
            secret.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn verify_accepts_vector_and_rejects_tampering() {
        let secret = SigningSecret::parse(VECTOR_SECRET).unwrap();
        let now = VECTOR_TIMESTAMP + 10;
        let ok = verify(
            &secret,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_SIGNATURE,
            VECTOR_BODY,
            now,
            300,
        );
        assert_eq!(ok, Ok(()));

        let tampered = verify(
            &secret,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_SIGNATURE,
            b"{}",
            now,
            300,
        );
        assert_eq!(tampered, Err(VerifyError::NoMatchingSignature));

        let late = verify(
            &secret,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_SIGNATURE,
            VECTOR_BODY,
            now + 1000,
            300,
        );
        assert!(matches!(
            late,
            Err(VerifyError::TimestampOutOfTolerance { .. })
        ));
    }

    #[test]
    fn rotation_header_carries_both_signatures() {
        let old = SigningSecret::parse(VECTOR_SECRET).unwrap();
        let new = SigningSecret::generate();
        let header = signature_header(
            &[new.clone(), old.clone()],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], VECTOR_SIGNATURE);
        let now = VECTOR_TIMESTAMP;
        assert_eq!(
            verify(&new, VECTOR_ID, now, &header, VECTOR_BODY, now, 300),
            Ok(())
        );
    }

    #[test]
    fn generated_secret_round_trips_and_hides_key() {
        let secret = SigningSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(secret.expose()).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "SigningSecret(<redacted>)");
    }

    #[test]
    fn raw_key_signs_with_its_bytes() {
        let secret = SigningSecret::from_raw_key(b"a1b2c3d4e5f60718293a4b5c6d7e8f90");
        let mut mac = HmacSha256::new_from_slice(b"a1b2c3d4e5f60718293a4b5c6d7e8f90").unwrap();
        mac.update(format!("{VECTOR_ID}.{VECTOR_TIMESTAMP}.").as_bytes());
        mac.update(VECTOR_BODY);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(
            secret.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            expected
        );
        assert_eq!(
            secret.expose(),
            "whsec_YTFiMmMzZDRlNWY2MDcxODI5M2E0YjVjNmQ3ZThmOTA="
        );
        assert_eq!(SigningSecret::parse(secret.expose()).unwrap(), secret);
    }

    #[test]
    fn parse_rejects_malformed_secrets() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(InvalidSecret::MissingPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!"),
            Err(InvalidSecret::NotBase64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ="),
            Err(InvalidSecret::KeyLength { bytes: 5 })
        );
    }

    #[test]
    fn parse_accepts_only_24_to_64_byte_keys() {
        for bytes in [0, 1, 23, 65, 100] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; bytes]));
            assert_eq!(
                SigningSecret::parse(&text),
                Err(InvalidSecret::KeyLength { bytes }),
                "{bytes}-byte key"
            );
        }
        for bytes in [24, 32, 64] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; bytes]));
            assert!(SigningSecret::parse(&text).is_ok(), "{bytes}-byte key");
        }
    }

    #[test]
    fn parse_rejects_non_canonical_base64() {
        let canonical = STANDARD.encode([9u8; 32]);
        let cases = [
            format!("whsec_{}", canonical.trim_end_matches('=')),
            format!("whsec_ {canonical}"),
            format!("whsec_{canonical}\n"),
            // The URL-safe alphabet in place of `+` and `/`.
            format!(
                "whsec_{}",
                STANDARD
                    .encode([0xfb; 32])
                    .replace('+', "-")
                    .replace('/', "_")
            ),
            // The last character carries bits past the key's end.
            format!(
                "whsec_{}",
                STANDARD.encode([9u8; 31]).replace("CQ==", "CR==")
            ),
        ];
        for case in cases {
            assert_eq!(
                SigningSecret::parse(&case),
                Err(InvalidSecret::NotBase64),
                "{case:?}"
            );
        }
    }

    #[test]
    fn parse_errors_never_echo_the_value() {
        let values = [
            "sk_live_4f9a2b8c7d6e5f4a3b2c1d0e".to_owned(),
            "whsec_%%%SECRETPART%%%".to_owned(),
            format!("whsec_{}", STANDARD.encode(b"SECRETPART-too-short")),
            format!("whsec_{}", STANDARD.encode([b'S'; 80])),
        ];
        for value in &values {
            let error = SigningSecret::parse(value).unwrap_err();
            let message = error.to_string();
            assert!(!message.contains(value.as_str()), "{message}");
            assert!(!message.contains("SECRETPART"), "{message}");
            let payload = value.trim_start_matches("whsec_");
            assert!(!message.contains(payload), "{message}");
        }
    }

    #[test]
    fn body_hmac_matches_known_digest() {
        // Expected values computed independently with Python's `hmac` module.
        let body = b"The quick brown fox jumps over the lazy dog";
        let hex = body_hmac("key", body, BodyHmacEncoding::Hex, "sha256=");
        assert_eq!(
            hex,
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let base64 = body_hmac("key", body, BodyHmacEncoding::Base64, "");
        assert_eq!(base64, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    }
}
