//! Signing secrets at rest: encryption on write, decryption on read, the
//! key check and re-encryption under the newest key.

use super::PgStore;
use crate::codec::{invalid, store_failure};
use hookline_core::cipher::{CipherError, SecretCipher};
use hookline_core::store::StoreError;
use hookline_core::{Application, SigningSecret};
use sqlx::Row;

impl PgStore {
    /// Returns the secret keys, or [`CipherError::NoKeys`] when the store
    /// was opened without them.
    pub(super) fn keys(&self) -> Result<&SecretCipher, CipherError> {
        self.cipher.as_deref().ok_or(CipherError::NoKeys)
    }

    /// Encrypts an application's signing secret for storage.
    pub(super) fn seal_secret(&self, application: &Application) -> Result<String, StoreError> {
        let keys = self.keys().map_err(|error| {
            let message = format!("cannot store the secret of application {}", application.id);
            StoreError::backend(message, error)
        })?;
        Ok(keys.encrypt(application.secret.expose(), application.id.as_str()))
    }

    /// Decrypts the secret of the newest application, so that a wrong key
    /// fails at startup instead of at the first delivery.
    ///
    /// NOTE: only one row is read. A database whose rows were written with
    /// different keys under the same id passes this check and fails later,
    /// on reading the other rows.
    pub async fn verify_secret_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT id, secret FROM applications ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_failure("read an application secret"))?;
        let Some(row) = row else {
            return Ok(());
        };
        let id: String = row.try_get("id").map_err(store_failure("read an id"))?;
        let stored: String = row
            .try_get("secret")
            .map_err(store_failure("read a secret"))?;
        self.decrypt_for_rotation(&stored, &id).map(drop)
    }

    /// Re-encrypts with the newest key every secret that is stored in plain
    /// text or under an older key, the previous secrets of rotated
    /// applications included. Returns how many values changed. A value
    /// that another process changed since it was read is left as it is, so
    /// several processes may run this at once.
    pub async fn reencrypt_secrets(&self) -> Result<u64, StoreError> {
        let keys = self
            .keys()
            .map_err(|error| StoreError::backend("cannot re-encrypt secrets", error))?;
        let mut changed = 0;
        for column in ["secret", "previous_secret"] {
            changed += self.reencrypt_column(keys, column).await?;
        }
        if changed > 0 {
            tracing::info!(
                secrets = changed,
                key_id = keys.newest_key_id(),
                "Re-encrypted signing secrets with the newest secret key"
            );
        }
        Ok(changed)
    }

    /// Re-encrypts one column of `applications`, `secret` or
    /// `previous_secret`.
    async fn reencrypt_column(
        &self,
        keys: &SecretCipher,
        column: &'static str,
    ) -> Result<u64, StoreError> {
        let select =
            format!("SELECT id, {column} AS stored FROM applications WHERE {column} IS NOT NULL");
        let update =
            format!("UPDATE applications SET {column} = $1 WHERE id = $2 AND {column} = $3");
        let rows = sqlx::query(&select)
            .fetch_all(&self.pool)
            .await
            .map_err(store_failure("read application secrets"))?;
        let mut changed = 0;
        for row in rows {
            let id: String = row.try_get("id").map_err(store_failure("read an id"))?;
            let stored: String = row
                .try_get("stored")
                .map_err(store_failure("read a secret"))?;
            if keys.is_current(&stored) {
                continue;
            }
            let plaintext = self.decrypt_for_rotation(&stored, &id)?;
            let sealed = keys.encrypt(&plaintext, &id);
            let result = sqlx::query(&update)
                .bind(&sealed)
                .bind(&id)
                .bind(&stored)
                .execute(&self.pool)
                .await
                .map_err(store_failure("re-encrypt a signing secret"))?;
            changed += result.rows_affected();
        }
        Ok(changed)
    }

    fn decrypt_for_rotation(&self, stored: &str, id: &str) -> Result<String, StoreError> {
        self.keys()
            .and_then(|keys| keys.decrypt(stored, id))
            .map_err(|error| {
                let message = format!(
                    "cannot decrypt the signing secret of application {id} with the \
                     configured secret keys"
                );
                StoreError::backend(message, error)
            })
    }
}

/// Decrypts a stored signing secret; the error names the application and
/// the key id, never the secret.
pub(super) fn open_secret(
    keys: Result<&SecretCipher, CipherError>,
    stored: &str,
    id: &str,
) -> Result<SigningSecret, sqlx::Error> {
    let text = keys
        .and_then(|keys| keys.decrypt(stored, id))
        .map_err(|error| invalid("signing secret of application", format!("{id}: {error}")))?;
    SigningSecret::parse(&text).map_err(|_| invalid("signing secret of application", id))
}
