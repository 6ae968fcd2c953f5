//! Signing secrets at rest: the key check at open, and re-encryption of
//! secrets under the newest key.

use super::SqliteStore;
use crate::codec::store_failure;
use hookline_core::store::StoreError;
use sqlx::Row;

impl SqliteStore {
    /// Decrypts the secret of the newest application, so that a wrong key
    /// fails when the store opens instead of at the first delivery.
    ///
    /// NOTE: only one row is read. A database whose rows were written with
    /// different keys under the same id passes this check and fails later,
    /// on reading the other rows.
    pub(crate) async fn verify_secret_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT id, secret FROM applications ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(store_failure("read an application secret"))?;
        let Some(row) = row else {
            return Ok(());
        };
        let id: String = row.try_get("id").map_err(store_failure("read an id"))?;
        let secret: String = row
            .try_get("secret")
            .map_err(store_failure("read a secret"))?;
        self.cipher
            .decrypt(&secret, &id)
            .map(drop)
            .map_err(|error| {
                let message = format!(
                    "cannot decrypt the signing secret of application {id} with the \
                     configured secret keys"
                );
                StoreError::backend(message, error)
            })
    }

    /// Re-encrypts with the newest key every secret that is stored in plain
    /// text or under an older key. Returns how many rows changed. A row
    /// changed by someone else since it was read is left for the next pass.
    pub async fn reencrypt_secrets(&self) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT id, secret FROM applications")
            .fetch_all(&self.reader)
            .await
            .map_err(store_failure("read application secrets"))?;
        let mut changed = 0;
        for row in rows {
            let id: String = row.try_get("id").map_err(store_failure("read an id"))?;
            let stored: String = row
                .try_get("secret")
                .map_err(store_failure("read a secret"))?;
            if self.cipher.is_current(&stored) {
                continue;
            }
            let plaintext = self.cipher.decrypt(&stored, &id).map_err(|error| {
                let message = format!("cannot decrypt the signing secret of application {id}");
                StoreError::backend(message, error)
            })?;
            let sealed = self.cipher.encrypt(&plaintext, &id);
            let result =
                sqlx::query("UPDATE applications SET secret = ?1 WHERE id = ?2 AND secret = ?3")
                    .bind(&sealed)
                    .bind(&id)
                    .bind(&stored)
                    .execute(&self.writer)
                    .await
                    .map_err(store_failure("re-encrypt a signing secret"))?;
            changed += result.rows_affected();
        }
        if changed > 0 {
            tracing::info!(
                applications = changed,
                key_id = self.cipher.newest_key_id(),
                "Re-encrypted signing secrets with the newest secret key"
            );
        }
        Ok(changed)
    }
}
