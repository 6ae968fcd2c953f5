//! Verifies the signature of a webhook request from Hookline (Standard Webhooks).
//! Needs the crates `base64` 0.22, `hmac` 0.12 and `sha2` 0.10.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far `webhook-timestamp` may be from the receiver's clock, in seconds.
pub const TOLERANCE_SECS: u64 = 5 * 60;

/// Reason a request is not a genuine, recent webhook from Hookline.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    InvalidSecret,
    InvalidTimestamp,
    TimestampOutOfTolerance,
    NoMatchingSignature,
}

/// Checks the headers `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` of a request against its raw body. `secret` is
/// `whsec_` followed by the base64 of the key.
pub fn verify(
    secret: &str,
    webhook_id: &str,
    webhook_timestamp: &str,
    webhook_signature: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let encoded_key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded_key)
        .map_err(|_| VerifyError::InvalidSecret)?;

    if webhook_timestamp.is_empty() || !webhook_timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    let sent_at: u64 = webhook_timestamp
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if now.abs_diff(sent_at) > TOLERANCE_SECS {
        return Err(VerifyError::TimestampOutOfTolerance);
    }

    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{webhook_id}.{webhook_timestamp}.").as_bytes());
    mac.update(body);

    // During secret rotation the header carries several signatures.
    for entry in webhook_signature.split(' ') {
        let Some(signature) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(signature) else {
            continue;
        };
        // `verify_slice` compares in constant time.
        if mac.clone().verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}
