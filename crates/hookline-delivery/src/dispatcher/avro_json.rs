//! Conversion of Avro payloads to JSON at send time, for applications whose
//! `avro_format` is `json`.
//!
//! The queue always contains the producer's bytes. Each attempt of such an
//! application converts them again, so every path that enqueues a task
//! (fan-out, crash recovery, replays, resumed applications) sends JSON, and
//! a changed `avro_format` applies from the next attempt on. The egress
//! signs the bytes it sends, so the signature covers the JSON.
//!
//! A payload that cannot be converted is dead-lettered with the reason, so
//! the event stays stored and can be replayed once the schema or the
//! application's format is fixed. When the schema or the format cannot be
//! read, for example because the state store or the schema registry is
//! down, the task is postponed without counting an attempt.

use super::Dispatcher;
use crate::recorder::Finished;
use hookline_core::formats::avro_json::{AvroJsonConverter, ConversionError, ConverterError};
use hookline_core::queue::{DeliveryTask, Leased, Settlement};
use hookline_core::store::{AttemptOutcome, DeliveryUpdate};
use hookline_core::{Attempt, AttemptResult, AvroFormat, ContentType};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Delay before a task whose schema or Avro format could not be read is
/// tried again.
const LOOKUP_RETRY: Duration = Duration::from_secs(5);

/// Payload that one attempt sends, or the reason it sends none.
pub(super) enum Payload {
    /// The task's payload unchanged, as the producer sent it.
    AsProduced,
    /// Copy of the task with the JSON payload and the JSON content type.
    Converted(DeliveryTask),
    /// A lookup failed, so the task is tried again after the delay.
    Postpone(Duration),
    /// The payload cannot be converted, so the delivery is dead-lettered.
    Failed(ConversionError),
}

impl Dispatcher {
    /// Sets the converter for the Avro payloads of applications whose
    /// `avro_format` is `json`. Without one, such deliveries are
    /// dead-lettered. Returns `false` and keeps the first converter when one
    /// was set before.
    pub fn set_avro_json_converter(&self, converter: Arc<dyn AvroJsonConverter>) -> bool {
        self.avro_json.set(converter).is_ok()
    }

    /// Chooses the payload an attempt of `task` sends, converting Avro to JSON
    /// when the application's `avro_format` is `json`.
    pub(super) async fn convert_payload(&self, task: &DeliveryTask) -> Payload {
        if task.content_type != ContentType::Avro {
            return Payload::AsProduced;
        }
        let format = match self.directory.avro_format(&task.application_id).await {
            Ok(format) => format,
            Err(error) => {
                tracing::warn!(%error, delivery_id = %task.delivery_id, application_id = %task.application_id, retry_in = ?LOOKUP_RETRY, "Failed to read the application's Avro format, so the delivery is postponed");
                return Payload::Postpone(LOOKUP_RETRY);
            }
        };
        if format == AvroFormat::Binary {
            return Payload::AsProduced;
        }
        let Some(converter) = self.avro_json.get() else {
            let reason = "no Avro to JSON converter is set on this dispatcher. Call Dispatcher::set_avro_json_converter before running it, then replay the delivery".to_owned();
            return Payload::Failed(ConversionError(reason));
        };
        match converter.convert(&task.product, &task.payload).await {
            Ok(json) => {
                metrics::counter!("hookline_avro_json_conversions_total", "outcome" => "converted")
                    .increment(1);
                let mut converted = task.clone();
                converted.content_type = ContentType::Json;
                converted.payload = json;
                Payload::Converted(converted)
            }
            Err(ConverterError::Unavailable(message)) => {
                tracing::warn!(error = %message, delivery_id = %task.delivery_id, product = %task.product, retry_in = ?LOOKUP_RETRY, "Failed to read the Avro schema for JSON conversion, so the delivery is postponed");
                Payload::Postpone(LOOKUP_RETRY)
            }
            Err(ConverterError::Failed(error)) => Payload::Failed(error),
        }
    }

    /// Dead-letters a delivery whose payload cannot be converted, recording
    /// one attempt with the error class `conversion_failed` and the reason.
    pub(super) fn conversion_failed(&self, lease: Leased, error: ConversionError) -> Finished {
        let task = &lease.task;
        let reason = error.to_string();
        metrics::counter!("hookline_avro_json_conversions_total", "outcome" => "failed")
            .increment(1);
        metrics::counter!("hookline_deliveries_total", "outcome" => "dead").increment(1);
        tracing::warn!(
            delivery_id = %task.delivery_id,
            application_id = %task.application_id,
            product = %task.product,
            %reason,
            "Delivery dead-lettered: its Avro payload cannot be converted to JSON"
        );
        let attempt = Attempt {
            delivery_id: task.delivery_id.clone(),
            number: task.attempts_made + 1,
            started_at: OffsetDateTime::now_utc(),
            duration_ms: 0,
            result: AttemptResult::Error {
                class: "conversion_failed".into(),
                message: reason.clone(),
            },
            response_excerpt: None,
            response_truncated: false,
        };
        let outcome = AttemptOutcome {
            attempt,
            update: DeliveryUpdate::Dead {
                reason: reason.clone(),
            },
        };
        Finished {
            outcome: Some(outcome),
            settlement: Settlement::DeadLetter { lease, reason },
            usage: None,
        }
    }
}
