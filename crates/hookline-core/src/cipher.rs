//! Encryption of secrets at rest with AES-256-GCM and named keys.
//!
//! A stored value is `enc1:<key id>:<base64 of nonce and ciphertext>`. The
//! nonce is 96 random bits per value. The associated data is the owner's id
//! (an application id), so a value copied to another row fails to decrypt.
//! Values are encrypted with the newest key and decrypted with the key that
//! they name, so keys can be rotated: add a new key in front, re-encrypt,
//! then drop the old key.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Prefix of every encrypted value; the digit is the format version.
const PREFIX: &str = "enc1:";

/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// Longest key id, so ids stay readable in logs and stored values.
const MAX_KEY_ID_LEN: usize = 32;

/// A key or value that cannot be used; the message names the key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error(
        "invalid secret key {entry:?}: {problem}; write each key as <id>:<base64 of 32 bytes>, \
         such as the output of `hookline secrets generate-key`"
    )]
    InvalidKey { entry: String, problem: String },
    #[error("no secret key is configured; set secrets.keys")]
    NoKeys,
    #[error("secret key id {0:?} is listed twice in secrets.keys")]
    DuplicateKeyId(String),
    #[error(
        "the value is encrypted with key id {0:?}, which is not in secrets.keys; \
         add that key back (after the newest one) and run `hookline secrets rotate`"
    )]
    UnknownKey(String),
    #[error(
        "the value does not decrypt with key id {0:?}: the key with that id is not the key \
         that encrypted it, or the stored value was altered"
    )]
    WrongKey(String),
    #[error("the stored value is not a valid encrypted value: {0}")]
    Malformed(String),
}

/// One named 256-bit key.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    key: Key<Aes256Gcm>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", self.id)
    }
}

impl SecretKey {
    /// Parses `<id>:<base64 of 32 bytes>`. Ids are 1 to 32 ASCII letters,
    /// digits, `-`, `_` or `.`.
    pub fn parse(entry: &str) -> Result<Self, CipherError> {
        let invalid = |problem: &str| CipherError::InvalidKey {
            entry: redact(entry),
            problem: problem.to_owned(),
        };
        let (id, encoded) = entry
            .trim()
            .split_once(':')
            .ok_or_else(|| invalid("the id and the key are not separated by ':'"))?;
        if !is_valid_id(id) {
            return Err(invalid(
                "the id must be 1 to 32 ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| invalid("the key is not valid base64"))?;
        if bytes.len() != 32 {
            return Err(invalid(&format!(
                "the key is {} bytes; AES-256 needs 32",
                bytes.len()
            )));
        }
        Ok(Self {
            id: id.to_owned(),
            key: *Key::<Aes256Gcm>::from_slice(&bytes),
        })
    }

    /// Generates a random key with the given id.
    pub fn generate(id: &str) -> Result<Self, CipherError> {
        if !is_valid_id(id) {
            return Err(CipherError::InvalidKey {
                entry: id.to_owned(),
                problem: "the id must be 1 to 32 ASCII letters, digits, '-', '_' or '.'".into(),
            });
        }
        Ok(Self {
            id: id.to_owned(),
            key: Aes256Gcm::generate_key(OsRng),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the `<id>:<base64>` form that [`SecretKey::parse`] reads.
    pub fn to_entry(&self) -> String {
        format!("{}:{}", self.id, STANDARD.encode(self.key))
    }
}

/// The configured keys, newest first.
#[derive(Debug, Clone)]
pub struct SecretCipher {
    keys: Vec<SecretKey>,
}

impl SecretCipher {
    /// Builds a cipher from keys ordered newest first.
    pub fn new(keys: Vec<SecretKey>) -> Result<Self, CipherError> {
        if keys.is_empty() {
            return Err(CipherError::NoKeys);
        }
        for (index, key) in keys.iter().enumerate() {
            if keys[..index].iter().any(|earlier| earlier.id == key.id) {
                return Err(CipherError::DuplicateKeyId(key.id.clone()));
            }
        }
        Ok(Self { keys })
    }

    /// Parses `<id>:<base64>` entries ordered newest first.
    pub fn parse(entries: &[String]) -> Result<Self, CipherError> {
        let keys = entries
            .iter()
            .map(|entry| SecretKey::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// Returns the id of the key that new values are encrypted with.
    pub fn newest_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Encrypts `plaintext` with the newest key, bound to `owner`.
    pub fn encrypt(&self, plaintext: &str, owner: &str) -> String {
        let key = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: owner.as_bytes(),
        };
        let ciphertext = Aes256Gcm::new(&key.key)
            .encrypt(&nonce, payload)
            .expect("AES-GCM encrypts any input shorter than 64 GiB");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(sealed))
    }

    /// Decrypts a stored value bound to `owner`. A value without the
    /// `enc1:` prefix was written before encryption existed and is returned
    /// as it is; [`SecretCipher::is_current`] is false for it, so the next
    /// re-encryption pass encrypts it.
    pub fn decrypt(&self, stored: &str, owner: &str) -> Result<String, CipherError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, encoded) = rest
            .split_once(':')
            .ok_or_else(|| CipherError::Malformed("no key id".into()))?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == id)
            .ok_or_else(|| CipherError::UnknownKey(id.to_owned()))?;
        let sealed = STANDARD
            .decode(encoded)
            .map_err(|_| CipherError::Malformed("not base64".into()))?;
        if sealed.len() < NONCE_LEN {
            return Err(CipherError::Malformed("shorter than a nonce".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: owner.as_bytes(),
        };
        let plaintext = Aes256Gcm::new(&key.key)
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CipherError::WrongKey(id.to_owned()))?;
        String::from_utf8(plaintext).map_err(|_| CipherError::Malformed("not UTF-8".into()))
    }

    /// Whether `stored` is encrypted with the newest key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.newest_key_id())
    }
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Keeps the id of a key entry for error messages and hides the key.
fn redact(entry: &str) -> String {
    match entry.trim().split_once(':') {
        Some((id, _)) => format!("{id}:<redacted>"),
        None => "<redacted>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(ids: &[&str]) -> SecretCipher {
        let keys = ids
            .iter()
            .map(|id| SecretKey::generate(id).unwrap())
            .collect();
        SecretCipher::new(keys).unwrap()
    }

    #[test]
    fn round_trip_hides_plaintext() {
        let cipher = cipher(&["k1"]);
        let stored = cipher.encrypt("whsec_c2VjcmV0", "app_1");
        assert!(stored.starts_with("enc1:k1:"), "{stored}");
        assert!(!stored.contains("whsec_"));
        assert_eq!(cipher.decrypt(&stored, "app_1").unwrap(), "whsec_c2VjcmV0");
        assert_ne!(stored, cipher.encrypt("whsec_c2VjcmV0", "app_1"));
    }

    #[test]
    fn value_is_bound_to_its_owner() {
        let cipher = cipher(&["k1"]);
        let stored = cipher.encrypt("whsec_c2VjcmV0", "app_1");
        assert_eq!(
            cipher.decrypt(&stored, "app_2"),
            Err(CipherError::WrongKey("k1".into()))
        );
    }

    #[test]
    fn rotation_decrypts_old_and_encrypts_new() {
        let old = cipher(&["k1"]);
        let stored = old.encrypt("whsec_c2VjcmV0", "app_1");
        let rotated = SecretCipher::new(vec![
            SecretKey::generate("k2").unwrap(),
            old.keys[0].clone(),
        ])
        .unwrap();
        assert!(!rotated.is_current(&stored));
        assert_eq!(rotated.decrypt(&stored, "app_1").unwrap(), "whsec_c2VjcmV0");
        let again = rotated.encrypt("whsec_c2VjcmV0", "app_1");
        assert!(rotated.is_current(&again));
        assert!(again.starts_with("enc1:k2:"));
    }

    #[test]
    fn wrong_and_missing_keys_fail_clearly() {
        let stored = cipher(&["k1"]).encrypt("whsec_c2VjcmV0", "app_1");
        let other = cipher(&["k1"]);
        let error = other.decrypt(&stored, "app_1").unwrap_err();
        assert_eq!(error, CipherError::WrongKey("k1".into()));
        assert!(error.to_string().contains("k1"));
        let error = cipher(&["k9"]).decrypt(&stored, "app_1").unwrap_err();
        assert_eq!(error, CipherError::UnknownKey("k1".into()));
        assert!(error.to_string().contains("secrets.keys"));
    }

    #[test]
    fn plaintext_values_pass_through() {
        let cipher = cipher(&["k1"]);
        assert_eq!(cipher.decrypt("whsec_abc", "app_1").unwrap(), "whsec_abc");
        assert!(!cipher.is_current("whsec_abc"));
    }

    #[test]
    fn key_entries_parse_and_print_back() {
        let key = SecretKey::generate("k1").unwrap();
        let parsed = SecretKey::parse(&key.to_entry()).unwrap();
        assert_eq!(parsed.id(), "k1");
        assert_eq!(parsed.to_entry(), key.to_entry());
    }

    #[test]
    fn invalid_key_entries_are_rejected() {
        let short = format!("k1:{}", STANDARD.encode([7u8; 16]));
        for entry in ["k1", "k1:???", short.as_str(), ":AAAA", "bad id:AAAA"] {
            let error = SecretKey::parse(entry).unwrap_err();
            assert!(matches!(error, CipherError::InvalidKey { .. }), "{entry}");
            assert!(!error.to_string().contains("???"), "{error}");
        }
        let key = SecretKey::generate("k1").unwrap();
        assert_eq!(
            SecretCipher::new(vec![key.clone(), key]).unwrap_err(),
            CipherError::DuplicateKeyId("k1".into())
        );
        assert_eq!(
            SecretCipher::new(Vec::new()).unwrap_err(),
            CipherError::NoKeys
        );
    }
}
