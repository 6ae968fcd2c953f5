//! [`PortalStore`] on SQLite: accounts, sessions, application owners and
//! signing-secret rotation.

use super::SqliteStore;
use crate::codec::{from_millis, invalid, store_failure, to_millis};
use async_trait::async_trait;
use hookline_core::portal::{Account, PortalSession, PortalStore, PreviousSecret, Role};
use hookline_core::store::StoreError;
use hookline_core::{ApplicationId, SigningSecret};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::OffsetDateTime;

const ACCOUNT_COLUMNS: &str =
    "SELECT id, email, password_hash, role, created_at FROM portal_accounts";

const SESSION_COLUMNS: &str =
    "SELECT token_hash, account_id, csrf_token, created_at, expires_at FROM portal_sessions";

#[async_trait]
impl PortalStore for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let email = account.email.to_lowercase();
        let result = sqlx::query(
            "INSERT INTO portal_accounts (id, email, password_hash, role, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&account.id)
        .bind(&email)
        .bind(&account.password_hash)
        .bind(account.role.as_str())
        .bind(to_millis(account.created_at))
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Err(account_conflict(&error, account)),
            Err(error) => Err(store_failure("create a portal account")(error)),
        }
    }

    async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("{ACCOUNT_COLUMNS} WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read a portal account"))?;
        row.as_ref()
            .map(account_from_row)
            .transpose()
            .map_err(store_failure("read a portal account"))
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("{ACCOUNT_COLUMNS} WHERE email = ?1");
        let row = sqlx::query(&sql)
            .bind(email.to_lowercase())
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read a portal account"))?;
        row.as_ref()
            .map(account_from_row)
            .transpose()
            .map_err(store_failure("read a portal account"))
    }

    async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE portal_accounts SET password_hash = ?1 WHERE id = ?2")
            .bind(password_hash)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(store_failure("change the password of a portal account"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn set_role(&self, id: &str, role: Role) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE portal_accounts SET role = ?1 WHERE id = ?2")
            .bind(role.as_str())
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(store_failure("change the role of a portal account"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_session(&self, session: &PortalSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO portal_sessions \
             (token_hash, account_id, csrf_token, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&session.token_hash)
        .bind(&session.account_id)
        .bind(&session.csrf_token)
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.expires_at))
        .execute(&self.writer)
        .await
        .map_err(store_failure("create a portal session"))?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PortalSession>, StoreError> {
        let sql = format!("{SESSION_COLUMNS} WHERE token_hash = ?1 AND expires_at > ?2");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .bind(to_millis(now))
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read a portal session"))?;
        row.as_ref()
            .map(session_from_row)
            .transpose()
            .map_err(store_failure("read a portal session"))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portal_sessions WHERE token_hash = ?1")
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .map_err(store_failure("delete a portal session"))?;
        Ok(())
    }

    async fn delete_sessions_of(&self, account_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portal_sessions WHERE account_id = ?1")
            .bind(account_id)
            .execute(&self.writer)
            .await
            .map_err(store_failure("delete the portal sessions of an account"))?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM portal_sessions WHERE expires_at <= ?1")
            .bind(to_millis(now))
            .execute(&self.writer)
            .await
            .map_err(store_failure("delete expired portal sessions"))?;
        Ok(result.rows_affected())
    }

    async fn set_application_owner(
        &self,
        application: &ApplicationId,
        account_id: &str,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO application_owners (application_id, account_id, created_at) \
             VALUES (?1, ?2, ?3) \
             ON CONFLICT (application_id) DO UPDATE SET account_id = excluded.account_id",
        )
        .bind(application.as_str())
        .bind(account_id)
        .bind(to_millis(OffsetDateTime::now_utc()))
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_foreign_key_violation(&error) => {
                let message = format!(
                    "failed to set the owner of application {application}: the application \
                     or account {account_id:?} does not exist"
                );
                Err(StoreError::backend(message, error))
            }
            Err(error) => Err(store_failure("set the owner of an application")(error)),
        }
    }

    async fn application_owner(
        &self,
        application: &ApplicationId,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT account_id FROM application_owners WHERE application_id = ?1")
            .bind(application.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read the owner of an application"))
    }

    async fn owned_applications(&self, account_id: &str) -> Result<Vec<ApplicationId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.id FROM application_owners AS o \
             JOIN applications AS a ON a.id = o.application_id \
             WHERE o.account_id = ?1 \
             ORDER BY a.created_at DESC, a.id DESC",
        )
        .bind(account_id)
        .fetch_all(&self.reader)
        .await
        .map_err(store_failure("list the applications of an account"))?;
        Ok(ids.into_iter().map(ApplicationId::from_stored).collect())
    }

    /// Moves the stored (encrypted) current secret into `previous_secret` in
    /// the same statement that writes the new one, so a concurrent rotation
    /// cannot lose either. A second rotation within the overlap replaces the
    /// previous secret, so only the last two secrets ever sign.
    async fn rotate_secret(
        &self,
        application: &ApplicationId,
        secret: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let sealed = self.cipher.encrypt(secret.expose(), application.as_str());
        let result = sqlx::query(
            "UPDATE applications SET previous_secret = secret, \
             previous_secret_expires_at = ?1, secret = ?2 WHERE id = ?3",
        )
        .bind(to_millis(previous_expires_at))
        .bind(&sealed)
        .bind(application.as_str())
        .execute(&self.writer)
        .await
        .map_err(store_failure("rotate the signing secret of an application"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn previous_secret(
        &self,
        application: &ApplicationId,
        now: OffsetDateTime,
    ) -> Result<Option<PreviousSecret>, StoreError> {
        let row = sqlx::query(
            "SELECT previous_secret, previous_secret_expires_at FROM applications \
             WHERE id = ?1 AND previous_secret IS NOT NULL AND previous_secret_expires_at > ?2",
        )
        .bind(application.as_str())
        .bind(to_millis(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(store_failure("read the previous signing secret"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = || -> Result<PreviousSecret, sqlx::Error> {
            let stored: &str = row.try_get("previous_secret")?;
            let expires_at = from_millis(row.try_get("previous_secret_expires_at")?)?;
            let text = self
                .cipher
                .decrypt(stored, application.as_str())
                .map_err(|error| {
                    invalid(
                        "previous signing secret of application",
                        format!("{application}: {error}"),
                    )
                })?;
            let secret = SigningSecret::parse(&text).map_err(|_| {
                invalid(
                    "previous signing secret of application",
                    application.as_str(),
                )
            })?;
            Ok(PreviousSecret { secret, expires_at })
        };
        decode()
            .map(Some)
            .map_err(store_failure("read the previous signing secret"))
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_foreign_key_violation())
}

/// Names the taken key: the email unless the id collided.
fn account_conflict(error: &sqlx::Error, account: &Account) -> StoreError {
    let message = match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        _ => String::new(),
    };
    if message.contains("portal_accounts.id") {
        StoreError::Conflict {
            entity: "account",
            key: account.id.clone(),
        }
    } else {
        StoreError::Conflict {
            entity: "account with email",
            key: account.email.to_lowercase(),
        }
    }
}

fn account_from_row(row: &SqliteRow) -> Result<Account, sqlx::Error> {
    let role: &str = row.try_get("role")?;
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(role).ok_or_else(|| invalid("account role", role))?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

fn session_from_row(row: &SqliteRow) -> Result<PortalSession, sqlx::Error> {
    Ok(PortalSession {
        token_hash: row.try_get("token_hash")?,
        account_id: row.try_get("account_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        expires_at: from_millis(row.try_get("expires_at")?)?,
    })
}
