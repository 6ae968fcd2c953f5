//! Password hashing with argon2id, with the `argon2` crate's default
//! parameters (version 0.5: 19 MiB of memory, 2 passes, 1 lane).
//! Hashing runs on the blocking thread pool because it takes tens of
//! milliseconds of CPU.

use crate::error::PortalError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

/// Minimum password length, in characters.
pub(crate) const MIN_LENGTH: usize = 10;
/// Maximum password length, in characters, which bounds hashing work.
pub(crate) const MAX_LENGTH: usize = 256;

/// Returns why `password` is not acceptable as a new password.
pub(crate) fn weakness(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!(
            "The password must have at least {MIN_LENGTH} characters."
        ));
    }
    if length > MAX_LENGTH {
        return Some(format!(
            "The password must have at most {MAX_LENGTH} characters."
        ));
    }
    None
}

/// Hashes a password into a PHC string.
pub(crate) async fn hash(password: String) -> Result<String, PortalError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|error| PortalError::Internal(format!("password hashing task failed: {error}")))?
}

fn hash_now(password: &str) -> Result<String, PortalError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PortalError::Internal(format!("password hashing failed: {error}")))
}

/// Checks a password against a stored PHC string. Without a stored hash
/// (an unknown email), it checks against a fixed hash so that the response
/// takes as long as for a known email.
pub(crate) async fn verify(password: String, stored: Option<String>) -> bool {
    let checked = tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("A stored password hash is not a valid PHC string");
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await;
    checked.unwrap_or(false)
}

/// Returns a hash of a random password, made once, for [`verify`] of unknown emails.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(&crate::session::random_token()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_its_password() {
        let stored = hash("correct horse battery".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".to_owned(), Some(stored.clone())).await);
        assert!(!verify("wrong horse battery".to_owned(), Some(stored)).await);
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        assert!(!verify("anything at all".to_owned(), None).await);
    }

    #[test]
    fn short_passwords_are_weak() {
        assert!(weakness("short").is_some());
        assert!(weakness("long enough password").is_none());
        assert!(weakness(&"x".repeat(MAX_LENGTH + 1)).is_some());
    }
}
