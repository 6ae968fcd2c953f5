//! Products and applications.

use super::secrets::open_secret;
use super::PgStore;
use crate::codec::{
    content_type_name, is_foreign_key_violation, is_unique_violation, parse_application_state,
    parse_content_type, store_failure,
};
use hookline_core::cipher::{CipherError, SecretCipher};
use hookline_core::store::StoreError;
use hookline_core::{Application, ApplicationId, AvroFormat, Product};
use sqlx::postgres::PgRow;
use sqlx::Row;

const SELECT_PRODUCTS: &str =
    "SELECT name, topic, content_type, payload_schema, validate_payload, \
     created_at FROM products";

const SELECT_APPLICATIONS: &str =
    "SELECT id, name, product, plan, webhook_url, secret, state, created_at FROM applications";

impl PgStore {
    pub(super) async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO products \
             (name, topic, content_type, payload_schema, validate_payload, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&product.name)
        .bind(&product.topic)
        .bind(content_type_name(product.content_type))
        .bind(product.schema.as_deref())
        .bind(product.validate)
        .bind(product.created_at)
        .execute(&self.pool)
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
        let sql = format!("{SELECT_PRODUCTS} WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_failure("read a product"))?;
        row.as_ref()
            .map(product_from_row)
            .transpose()
            .map_err(store_failure("read a product"))
    }

    pub(super) async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        let sql = format!("{SELECT_PRODUCTS} ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(application.id.as_str())
        .bind(&application.name)
        .bind(&application.product)
        .bind(&application.plan)
        .bind(&application.webhook_url)
        .bind(self.seal_secret(application)?)
        .bind(application.state.as_str())
        .bind(application.created_at)
        .bind(avro_format.as_str())
        .execute(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET \
               name = excluded.name, product = excluded.product, plan = excluded.plan, \
               webhook_url = excluded.webhook_url, state = excluded.state, \
               resumed_at = CASE WHEN applications.state = 'disabled' \
                 AND excluded.state = 'active' THEN now() ELSE applications.resumed_at END \
             WHERE (applications.name, applications.product, applications.plan, \
                    applications.webhook_url, applications.state) \
               IS DISTINCT FROM \
                   (excluded.name, excluded.product, excluded.plan, \
                    excluded.webhook_url, excluded.state)",
        )
        .bind(application.id.as_str())
        .bind(&application.name)
        .bind(&application.product)
        .bind(&application.plan)
        .bind(&application.webhook_url)
        .bind(self.seal_secret(application)?)
        .bind(application.state.as_str())
        .bind(application.created_at)
        .execute(&self.pool)
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
        let sql = format!("{SELECT_APPLICATIONS} WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_failure("read an application"))?;
        row.as_ref()
            .map(|row| application_from_row(row, self.keys()))
            .transpose()
            .map_err(store_failure("read an application"))
    }

    /// Lists applications in every state, oldest first, of one product or
    /// of all products.
    pub(super) async fn list_applications(
        &self,
        product: Option<&str>,
    ) -> Result<Vec<Application>, StoreError> {
        let rows = match product {
            Some(product) => {
                let sql =
                    format!("{SELECT_APPLICATIONS} WHERE product = $1 ORDER BY created_at, id");
                sqlx::query(&sql).bind(product).fetch_all(&self.pool).await
            }
            None => {
                let sql = format!("{SELECT_APPLICATIONS} ORDER BY created_at, id");
                sqlx::query(&sql).fetch_all(&self.pool).await
            }
        }
        .map_err(store_failure("list applications"))?;
        rows.iter()
            .map(|row| application_from_row(row, self.keys()))
            .collect::<Result<_, _>>()
            .map_err(store_failure("list applications"))
    }
}

fn product_from_row(row: &PgRow) -> Result<Product, sqlx::Error> {
    let content_type: &str = row.try_get("content_type")?;
    Ok(Product {
        name: row.try_get("name")?,
        topic: row.try_get("topic")?,
        content_type: parse_content_type(content_type)?,
        schema: row.try_get("payload_schema")?,
        validate: row.try_get("validate_payload")?,
        created_at: row.try_get("created_at")?,
    })
}

fn application_from_row(
    row: &PgRow,
    keys: Result<&SecretCipher, CipherError>,
) -> Result<Application, sqlx::Error> {
    let stored: &str = row.try_get("secret")?;
    let state: &str = row.try_get("state")?;
    let id: String = row.try_get("id")?;
    Ok(Application {
        secret: open_secret(keys, stored, &id)?,
        id: ApplicationId::from_stored(id),
        name: row.try_get("name")?,
        product: row.try_get("product")?,
        plan: row.try_get("plan")?,
        webhook_url: row.try_get("webhook_url")?,
        state: parse_application_state(state)?,
        created_at: row.try_get("created_at")?,
    })
}
