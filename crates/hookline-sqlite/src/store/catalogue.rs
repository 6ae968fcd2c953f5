//! Products and applications.

use super::SqliteStore;
use crate::codec::{
    content_type_name, from_millis, invalid, parse_application_state, parse_content_type,
    store_failure, to_millis,
};
use hookline_core::cipher::SecretCipher;
use hookline_core::store::StoreError;
use hookline_core::{Application, ApplicationId, AvroFormat, Product, SigningSecret};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::OffsetDateTime;

const PRODUCT_COLUMNS: &str =
    "SELECT name, topic, content_type, payload_schema, validate_payload, \
     created_at FROM products";

const APPLICATION_COLUMNS: &str =
    "SELECT id, name, product, plan, webhook_url, secret, state, created_at FROM applications";

impl SqliteStore {
    pub(super) async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO products \
             (name, topic, content_type, payload_schema, validate_payload, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&product.name)
        .bind(&product.topic)
        .bind(content_type_name(product.content_type))
        .bind(product.schema.as_deref())
        .bind(product.validate)
        .bind(to_millis(product.created_at))
        .execute(&self.writer)
        .await;

        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict {
                entity: "product",
                key: product.name.clone(),
            }),
            Err(error) => Err(store_failure("create a product")(error)),
        }
    }

    pub(super) async fn find_product(&self, name: &str) -> Result<Option<Product>, StoreError> {
        let sql = format!("{PRODUCT_COLUMNS} WHERE name = ?1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read a product"))?;
        row.as_ref()
            .map(product_from_row)
            .transpose()
            .map_err(store_failure("read a product"))
    }

    pub(super) async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        let sql = format!("{PRODUCT_COLUMNS} ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(store_failure("list products"))?;
        rows.iter()
            .map(product_from_row)
            .collect::<Result<_, _>>()
            .map_err(store_failure("list products"))
    }

    pub(super) async fn insert_application(
        &self,
        application: &Application,
        avro_format: AvroFormat,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO applications \
             (id, name, product, plan, webhook_url, secret, state, created_at, avro_format) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(application.id.as_str())
        .bind(&application.name)
        .bind(&application.product)
        .bind(&application.plan)
        .bind(&application.webhook_url)
        .bind(
            self.cipher
                .encrypt(application.secret.expose(), application.id.as_str()),
        )
        .bind(application.state.as_str())
        .bind(to_millis(application.created_at))
        .bind(avro_format.as_str())
        .execute(&self.writer)
        .await;

        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict {
                entity: "application",
                key: application.id.to_string(),
            }),
            Err(error) if is_foreign_key_violation(&error) => {
                let message = format!(
                    "failed to create application {}: product {:?} does not exist",
                    application.id, application.product
                );
                Err(StoreError::backend(message, error))
            }
            Err(error) => Err(store_failure("create an application")(error)),
        }
    }

    /// Inserts or updates an application of an external directory. The
    /// `WHERE` clause skips rows that would not change, so a directory that
    /// upserts its whole list on every refresh writes nothing in the steady
    /// state. A move from disabled to active marks the application resumed.
    pub(super) async fn upsert_application_row(
        &self,
        application: &Application,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO applications \
             (id, name, product, plan, webhook_url, secret, state, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO UPDATE SET \
               name = excluded.name, product = excluded.product, plan = excluded.plan, \
               webhook_url = excluded.webhook_url, state = excluded.state, \
               resumed_at = CASE WHEN applications.state = 'disabled' \
                 AND excluded.state = 'active' THEN ?9 ELSE applications.resumed_at END \
             WHERE applications.name IS NOT excluded.name \
               OR applications.product IS NOT excluded.product \
               OR applications.plan IS NOT excluded.plan \
               OR applications.webhook_url IS NOT excluded.webhook_url \
               OR applications.state IS NOT excluded.state",
        )
        .bind(application.id.as_str())
        .bind(&application.name)
        .bind(&application.product)
        .bind(&application.plan)
        .bind(&application.webhook_url)
        .bind(
            self.cipher
                .encrypt(application.secret.expose(), application.id.as_str()),
        )
        .bind(application.state.as_str())
        .bind(to_millis(application.created_at))
        .bind(to_millis(OffsetDateTime::now_utc()))
        .execute(&self.writer)
        .await;

        match result {
            Ok(_) => Ok(()),
            Err(error) if is_foreign_key_violation(&error) => {
                let message = format!(
                    "failed to store application {}: product {:?} does not exist",
                    application.id, application.product
                );
                Err(StoreError::backend(message, error))
            }
            Err(error) => Err(store_failure("store an application")(error)),
        }
    }

    pub(super) async fn find_application(
        &self,
        id: &ApplicationId,
    ) -> Result<Option<Application>, StoreError> {
        let sql = format!("{APPLICATION_COLUMNS} WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(store_failure("read an application"))?;
        row.as_ref()
            .map(|row| application_from_row(row, &self.cipher))
            .transpose()
            .map_err(store_failure("read an application"))
    }

    /// Lists applications in every state, oldest first, of one product or
    /// of all products.
    pub(super) async fn list_applications(
        &self,
        product: Option<&str>,
    ) -> Result<Vec<Application>, StoreError> {
        let sql = format!(
            "{APPLICATION_COLUMNS} WHERE ?1 IS NULL OR product = ?1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(product)
            .fetch_all(&self.reader)
            .await
            .map_err(store_failure("list applications"))?;
        rows.iter()
            .map(|row| application_from_row(row, &self.cipher))
            .collect::<Result<_, _>>()
            .map_err(store_failure("list applications"))
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_foreign_key_violation())
}

fn product_from_row(row: &SqliteRow) -> Result<Product, sqlx::Error> {
    let content_type: &str = row.try_get("content_type")?;
    Ok(Product {
        name: row.try_get("name")?,
        topic: row.try_get("topic")?,
        content_type: parse_content_type(content_type)?,
        schema: row.try_get("payload_schema")?,
        validate: row.try_get("validate_payload")?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

fn application_from_row(
    row: &SqliteRow,
    cipher: &SecretCipher,
) -> Result<Application, sqlx::Error> {
    let stored: &str = row.try_get("secret")?;
    let state: &str = row.try_get("state")?;
    let id: String = row.try_get("id")?;
    Ok(Application {
        secret: decrypt_secret(cipher, stored, &id)?,
        id: ApplicationId::from_stored(id),
        name: row.try_get("name")?,
        product: row.try_get("product")?,
        plan: row.try_get("plan")?,
        webhook_url: row.try_get("webhook_url")?,
        state: parse_application_state(state)?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

/// Decrypts a stored signing secret; the error names the application and
/// the key id, never the secret.
fn decrypt_secret(
    cipher: &SecretCipher,
    stored: &str,
    id: &str,
) -> Result<SigningSecret, sqlx::Error> {
    let text = cipher
        .decrypt(stored, id)
        .map_err(|error| invalid("signing secret of application", format!("{id}: {error}")))?;
    SigningSecret::parse(&text).map_err(|_| invalid("signing secret of application", id))
}
