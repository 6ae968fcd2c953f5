//! Plans: rate limits, what happens over them, and prices.

use crate::error::{json_rejection, ApiError};
use crate::ApiState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hookline_core::plan::{is_currency_code, is_valid_plan_name, parse_fee};
use hookline_core::{LimitPeriod, OverLimit, Plan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A plan's terms. Absent fields take their defaults, also on `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    /// 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`. Required on `POST`; on `PUT`
    /// it may be sent, and must then equal the name in the path.
    name: Option<String>,
    /// Notifications per period, at least 1; absent or `null` for unlimited.
    #[schema(value_type = Option<u64>)]
    limit: Option<Value>,
    /// `second`, `minute`, `hour` (default) or `day`.
    period: Option<String>,
    /// `defer` (default): send over-limit notifications in the next window;
    /// `dead_letter`: dead-letter them with the reason `rate_limited`.
    over_limit: Option<String>,
    /// Decimal amount as a string or a number, such as `"19.99"`; default 0.
    #[schema(value_type = Option<String>)]
    monthly_fee: Option<Value>,
    /// ISO 4217 code; default `USD`.
    currency: Option<String>,
    /// Default 0.
    trial_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanView {
    name: String,
    /// Notifications per period; `null` means unlimited.
    limit: Option<u64>,
    period: String,
    over_limit: String,
    /// Canonical decimal string, such as `19.9` for `19.90`.
    monthly_fee: String,
    currency: String,
    trial_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Plan> for PlanView {
    fn from(plan: Plan) -> Self {
        Self {
            name: plan.name,
            limit: plan.limit,
            period: plan.period.as_str().to_owned(),
            over_limit: plan.over_limit.as_str().to_owned(),
            monthly_fee: plan.monthly_fee,
            currency: plan.currency,
            trial_days: plan.trial_days,
            created_at: plan.created_at,
            updated_at: plan.updated_at,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/plans", request_body = PlanBody, tag = "plans",
    responses((status = 201, body = PlanView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    body: Result<Json<PlanBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    let name = request
        .name
        .clone()
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    let plan = plan_from_body(name, request)?;
    state.store.create_plan(&plan).await?;
    tracing::info!(plan = %plan.name, limit = ?plan.limit, period = plan.period.as_str(), "Plan created");
    Ok((StatusCode::CREATED, Json(plan.into())))
}

#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", responses((status = 200, body = [PlanView])))]
pub(crate) async fn list(State(state): State<ApiState>) -> Result<Json<Vec<PlanView>>, ApiError> {
    let plans = state.store.plans().await?;
    Ok(Json(plans.into_iter().map(PlanView::from).collect()))
}

/// Replaces a plan's terms. Applications on the plan get the new limit from
/// their next delivery on.
#[utoipa::path(put, path = "/api/v1/plans/{name}", request_body = PlanBody, tag = "plans",
    params(("name" = String, Path, description = "Plan name")),
    responses((status = 200, body = PlanView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<PlanBody>, JsonRejection>,
) -> Result<Json<PlanView>, ApiError> {
    let Json(request) = body.map_err(json_rejection)?;
    if request.name.as_ref().is_some_and(|given| *given != name) {
        return Err(ApiError::invalid(
            "name",
            "a plan cannot be renamed; send the name in the path or leave it out",
        ));
    }
    let missing = || ApiError::not_found(format!("plan {name:?} does not exist"));
    let existing = state.store.plan(&name).await?.ok_or_else(missing)?;
    let mut plan = plan_from_body(name.clone(), request)?;
    plan.created_at = existing.created_at;
    if !state.store.update_plan(&plan).await? {
        return Err(missing());
    }
    state.directory.invalidate();
    tracing::info!(plan = %plan.name, limit = ?plan.limit, period = plan.period.as_str(), "Plan updated");
    Ok(Json(plan.into()))
}

/// Checks a request body and builds the plan it describes, created now.
fn plan_from_body(name: String, body: PlanBody) -> Result<Plan, ApiError> {
    if !is_valid_plan_name(&name) {
        return Err(ApiError::invalid(
            "name",
            format!("plan name {name:?} is invalid; use 1 to 64 of a-z, 0-9, '.', '_' or '-'"),
        ));
    }
    let period = match body.period.as_deref() {
        None => LimitPeriod::Hour,
        Some(given) => LimitPeriod::parse(given).ok_or_else(|| {
            ApiError::invalid(
                "period",
                format!("period {given:?} is invalid; use second, minute, hour or day"),
            )
        })?,
    };
    let over_limit = match body.over_limit.as_deref() {
        None => OverLimit::Defer,
        Some(given) => OverLimit::parse(given).ok_or_else(|| {
            ApiError::invalid(
                "over_limit",
                format!("over_limit {given:?} is invalid; use defer or dead_letter"),
            )
        })?,
    };
    let currency = body.currency.unwrap_or_else(|| "USD".to_owned());
    if !is_currency_code(&currency) {
        return Err(ApiError::invalid(
            "currency",
            format!(
                "currency {currency:?} is invalid; use a three-letter ISO 4217 code such as USD"
            ),
        ));
    }
    let now = OffsetDateTime::now_utc();
    Ok(Plan {
        name,
        limit: parse_limit(body.limit)?,
        period,
        over_limit,
        monthly_fee: parse_monthly_fee(body.monthly_fee)?,
        currency,
        trial_days: body.trial_days.unwrap_or(0),
        created_at: now,
        updated_at: now,
    })
}

/// The limit must fit the stores' signed 64-bit columns.
fn parse_limit(value: Option<Value>) -> Result<Option<u64>, ApiError> {
    let limit = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_u64(),
        Some(_) => None,
    };
    match limit {
        Some(limit) if limit >= 1 && i64::try_from(limit).is_ok() => Ok(Some(limit)),
        _ => Err(ApiError::invalid(
            "limit",
            "limit must be a whole number from 1 to 9223372036854775807, or null for unlimited",
        )),
    }
}

fn parse_monthly_fee(value: Option<Value>) -> Result<String, ApiError> {
    let text = match value {
        None => return Ok("0".to_owned()),
        Some(Value::String(text)) => text,
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => String::new(),
    };
    parse_fee(text.trim()).ok_or_else(|| {
        ApiError::invalid(
            "monthly_fee",
            format!(
                "monthly_fee {text:?} is invalid; send a non-negative decimal such as \"19.99\", \
                 with up to 15 digits before the point and 4 after it"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limit_accepts_positive_integers_and_null() {
        assert_eq!(parse_limit(None).unwrap(), None);
        assert_eq!(parse_limit(Some(Value::Null)).unwrap(), None);
        assert_eq!(parse_limit(Some(json!(100))).unwrap(), Some(100));
        for invalid in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!("100"),
            json!(u64::MAX),
        ] {
            assert!(parse_limit(Some(invalid.clone())).is_err(), "{invalid}");
        }
    }

    #[test]
    fn monthly_fee_accepts_strings_and_numbers() {
        assert_eq!(parse_monthly_fee(None).unwrap(), "0");
        assert_eq!(parse_monthly_fee(Some(json!("19.90"))).unwrap(), "19.9");
        assert_eq!(parse_monthly_fee(Some(json!(19.99))).unwrap(), "19.99");
        assert_eq!(parse_monthly_fee(Some(json!(10))).unwrap(), "10");
        for invalid in [json!("-1"), json!(-1), json!(true), json!("1e3")] {
            assert!(
                parse_monthly_fee(Some(invalid.clone())).is_err(),
                "{invalid}"
            );
        }
    }
}
