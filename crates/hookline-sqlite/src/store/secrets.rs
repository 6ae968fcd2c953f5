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
    /// text or under an older key, the previous secrets of rotated
    /// applications included. Returns how many values changed. A value
    /// changed by someone else since it was read is left for the next pass.
    pub async fn reencrypt_secrets(&self) -> Result<u64, StoreError> {
        let mut changed = 0;
        for column in [SecretColumn::Current, SecretColumn::Previous] {
            changed += self.reencrypt_column(column).await?;
        }
        if changed > 0 {
            tracing::info!(
                secrets = changed,
                key_id = self.cipher.newest_key_id(),
                "Re-encrypted signing secrets with the newest secret key"
            );
        }
        Ok(changed)
    }

    async fn reencrypt_column(&self, column: SecretColumn) -> Result<u64, StoreError> {
        let name = column.name();
        let select =
            format!("SELECT id, {name} AS stored FROM applications WHERE {name} IS NOT NULL");
        let update = format!("UPDATE applications SET {name} = ?1 WHERE id = ?2 AND {name} = ?3");
        let rows = sqlx::query(&select)
            .fetch_all(&self.reader)
            .await
            .map_err(store_failure("read application secrets"))?;
        let mut changed = 0;
        for row in rows {
            let id: String = row.try_get("id").map_err(store_failure("read an id"))?;
            let stored: String = row
                .try_get("stored")
                .map_err(store_failure("read a secret"))?;
            if self.cipher.is_current(&stored) {
                continue;
            }
            let plaintext = self.cipher.decrypt(&stored, &id).map_err(|error| {
                let message = format!("cannot decrypt the {} of application {id}", column.label());
                StoreError::backend(message, error)
            })?;
            let sealed = self.cipher.encrypt(&plaintext, &id);
            let result = sqlx::query(&update)
                .bind(&sealed)
                .bind(&id)
                .bind(&stored)
                .execute(&self.writer)
                .await
                .map_err(store_failure("re-encrypt a signing secret"))?;
            changed += result.rows_affected();
        }
        Ok(changed)
    }
}

/// A column of `applications` that contains an encrypted signing secret.
#[derive(Clone, Copy)]
enum SecretColumn {
    Current,
    Previous,
}

impl SecretColumn {
    fn name(self) -> &'static str {
        match self {
            Self::Current => "secret",
            Self::Previous => "previous_secret",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Current => "signing secret",
            Self::Previous => "previous signing secret",
        }
    }
}
