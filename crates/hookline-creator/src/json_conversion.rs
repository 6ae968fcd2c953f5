//! Conversion of Avro payloads to JSON at send time, for applications whose
//! `avro_format` is `json`. It reuses the creator's product cache, compiled
//! schemas and schema registry client, so a dispatcher converts with the
//! same schemas that the creator validated with.

use crate::Creator;
use async_trait::async_trait;
use bytes::Bytes;
use hookline_core::formats::avro_json::{AvroJsonConverter, ConversionError, ConverterError};
use hookline_core::ContentType;

#[async_trait]
impl AvroJsonConverter for Creator {
    async fn convert(&self, product: &str, payload: &[u8]) -> Result<Bytes, ConverterError> {
        let unavailable =
            |error: &dyn std::fmt::Display| ConverterError::Unavailable(error.to_string());
        let Some(product) = self.product(product).await.map_err(|e| unavailable(&e))? else {
            let reason = format!("product {product:?} does not exist");
            return Err(ConversionError(reason).into());
        };
        if product.content_type != ContentType::Avro {
            let reason = format!(
                "product {:?} takes {}, not Avro",
                product.name, product.content_type
            );
            return Err(ConversionError(reason).into());
        }
        let converted = self
            .validator()
            .avro_to_json(&product, payload)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(converted?)
    }
}
