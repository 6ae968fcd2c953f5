//! Schema validation of payloads on ingest, for products with `validate`
//! on; see [`hookline_core::formats`] for what each format checks.

use crate::registry::{RegistryError, SchemaRegistry};
use crate::Rejected;
use bytes::Bytes;
use hookline_core::content::PayloadError;
use hookline_core::formats::avro_json::{self, ConversionError};
use hookline_core::formats::{avro, CompiledSchema};
use hookline_core::{ContentType, Product};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Compiled product schemas by product name, with the schema text they were
/// compiled from.
type SchemaCache = HashMap<String, (String, Arc<CompiledSchema>)>;

/// Validates payloads against product schemas, compiling each schema once.
#[derive(Default)]
pub(crate) struct Validator {
    /// Recompiled when a product's schema text changes; never held across an await.
    compiled: RwLock<SchemaCache>,
    registry: Option<SchemaRegistry>,
}

impl Validator {
    pub(crate) fn set_registry(&mut self, registry: SchemaRegistry) {
        self.registry = Some(registry);
    }

    /// Validates `payload` when the product's `validate` flag is on. The
    /// outer error means that the schema registry request failed.
    pub(crate) async fn check(
        &self,
        product: &Product,
        payload: &[u8],
    ) -> Result<Result<(), Rejected>, RegistryError> {
        if !product.validate {
            return Ok(Ok(()));
        }
        if let Some(text) = &product.schema {
            let result = match self.compiled(product, text) {
                Ok(schema) => schema.check(payload).map_err(Rejected::from),
                Err(rejected) => Err(rejected),
            };
            return Ok(result);
        }
        if product.content_type == ContentType::Avro {
            return self.check_wire_format(product, payload).await;
        }
        Ok(Ok(()))
    }

    /// Decodes an Avro payload in the schema-registry wire format with the
    /// schema that the registry has under its id.
    async fn check_wire_format(
        &self,
        product: &Product,
        payload: &[u8],
    ) -> Result<Result<(), Rejected>, RegistryError> {
        let Some((id, datum)) = avro::split_wire_format(payload) else {
            return Ok(Err(PayloadError::MissingSchemaId.into()));
        };
        let Some(registry) = &self.registry else {
            return Ok(Err(Rejected::NoSchemaRegistry {
                product: product.name.clone(),
                schema_id: id,
            }));
        };
        let schema = match registry.schema(id).await? {
            Ok(schema) => schema,
            Err(rejected) => return Ok(Err(rejected.into())),
        };
        Ok(avro::decode(&schema, datum).map_err(Rejected::from))
    }

    /// Converts a payload of the Avro product `product` to JSON, with the
    /// product's schema or the registry's schema for the payload's id. The
    /// outer error means that the schema registry request failed.
    pub(crate) async fn avro_to_json(
        &self,
        product: &Product,
        payload: &[u8],
    ) -> Result<Result<Bytes, ConversionError>, RegistryError> {
        let failed = |reason: &dyn std::fmt::Display| Ok(Err(ConversionError(reason.to_string())));
        if let Some(text) = &product.schema {
            return match self.compiled(product, text) {
                Ok(schema) => match &*schema {
                    CompiledSchema::Avro(schema) => Ok(avro_json::datum_to_json(schema, payload)),
                    CompiledSchema::Json(_) => failed(&format!(
                        "product {:?} takes {}, not Avro",
                        product.name, product.content_type
                    )),
                },
                Err(rejected) => failed(&rejected),
            };
        }
        let Some((id, datum)) = avro::split_wire_format(payload) else {
            return failed(&PayloadError::MissingSchemaId);
        };
        let Some(registry) = &self.registry else {
            return failed(&Rejected::NoSchemaRegistry {
                product: product.name.clone(),
                schema_id: id,
            });
        };
        match registry.schema(id).await? {
            Ok(schema) => Ok(avro_json::datum_to_json(&schema, datum)),
            Err(rejected) => failed(&rejected),
        }
    }

    /// Returns the product's compiled schema, compiling it when the text
    /// differs from the cached one.
    fn compiled(&self, product: &Product, text: &str) -> Result<Arc<CompiledSchema>, Rejected> {
        let cache = self.compiled.read().expect("schema cache lock");
        if let Some((cached_text, schema)) = cache.get(&product.name) {
            if cached_text == text {
                return Ok(schema.clone());
            }
        }
        drop(cache);
        let schema = CompiledSchema::compile(product.content_type, text).map_err(|error| {
            Rejected::InvalidSchema {
                product: product.name.clone(),
                message: error.to_string(),
            }
        })?;
        let schema = Arc::new(schema);
        self.compiled
            .write()
            .expect("schema cache lock")
            .insert(product.name.clone(), (text.to_owned(), schema.clone()));
        tracing::debug!(product = %product.name, "Compiled the product's payload schema");
        Ok(schema)
    }
}
