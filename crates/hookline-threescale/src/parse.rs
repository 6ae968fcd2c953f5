//! Turns 3scale applications into Hookline's terms: ids, state, webhook
//! URL, signing key and plan name.

use crate::api::RawApplication;
use crate::ThreescaleSettings;
use hookline_core::{ApplicationId, ApplicationState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// Prefix of the Hookline id of a 3scale application:
/// `app_3s{service}_{application}`.
const ID_PREFIX: &str = "app_3s";

/// A 3scale application that can receive webhooks. The Redis cache tier
/// stores it as JSON, encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParsedApplication {
    pub(crate) id: ApplicationId,
    pub(crate) name: String,
    /// `Active` for `live`; `Disabled` for `suspended`, `pending` or a
    /// missing state.
    pub(crate) state: ApplicationState,
    pub(crate) webhook_url: String,
    /// The secret field's text, such as the `user_key`.
    pub(crate) secret_text: String,
    pub(crate) plan: String,
    /// The 3scale application plan's id, when the application has one.
    pub(crate) plan_id: Option<u64>,
}

/// The field whose absence keeps a 3scale application from receiving webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    Id,
    WebhookUrl,
    Secret,
}

/// Returns the Hookline id of application `application` of service `service`.
pub fn application_id(service: u64, application: u64) -> ApplicationId {
    ApplicationId::parse(&format!("{ID_PREFIX}{service}_{application}"))
        .expect("digits and an underscore form a valid id")
}

/// Returns the service and application ids inside an id made by
/// [`application_id`], or `None` for any other id.
pub fn parse_application_id(id: &ApplicationId) -> Option<(u64, u64)> {
    let (service, application) = id.as_str().strip_prefix(ID_PREFIX)?.split_once('_')?;
    Some((service.parse().ok()?, application.parse().ok()?))
}

/// Parses one application of `service`. `plan_names` maps plan ids to
/// their `system_name`.
pub(crate) fn parse_application(
    raw: &RawApplication,
    service: u64,
    settings: &ThreescaleSettings,
    plan_names: &HashMap<u64, String>,
) -> Result<ParsedApplication, (Option<u64>, Missing)> {
    let id = raw
        .get("id")
        .and_then(Value::as_u64)
        .ok_or((None, Missing::Id))?;
    let webhook_url =
        field(raw, &settings.webhook_url_field).ok_or((Some(id), Missing::WebhookUrl))?;
    let secret_text = field(raw, &settings.secret_field).ok_or((Some(id), Missing::Secret))?;
    let state = match raw.get("state").and_then(Value::as_str) {
        Some("live") => ApplicationState::Active,
        _ => ApplicationState::Disabled,
    };
    let name = field(raw, "name").unwrap_or_else(|| format!("3scale application {id}"));
    Ok(ParsedApplication {
        id: application_id(service, id),
        name,
        state,
        webhook_url,
        secret_text,
        plan: plan_name(raw, settings, plan_names),
        plan_id: raw.get("plan_id").and_then(Value::as_u64),
    })
}

/// The Hookline plan: the configured mapping of the plan's `system_name`,
/// else the `system_name` itself. Without a known `system_name` the
/// `plan_name` stands in for it, and without either the plan is `default`.
fn plan_name(
    raw: &RawApplication,
    settings: &ThreescaleSettings,
    plan_names: &HashMap<u64, String>,
) -> String {
    let system_name = raw
        .get("plan_id")
        .and_then(Value::as_u64)
        .and_then(|plan_id| plan_names.get(&plan_id).cloned())
        .or_else(|| field(raw, "plan_name"))
        .unwrap_or_else(|| "default".to_owned());
    settings
        .plans
        .get(&system_name)
        .cloned()
        .unwrap_or(system_name)
}

/// Returns a non-empty text field, at the top level (where 3scale's JSON puts extra
/// fields) or inside an `extra_fields` object.
fn field(raw: &RawApplication, name: &str) -> Option<String> {
    let value = raw
        .get(name)
        .or_else(|| raw.get("extra_fields")?.get(name))?;
    let text = value.as_str()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> ThreescaleSettings {
        let mut settings = ThreescaleSettings::new(
            "https://admin.example".parse().unwrap(),
            "t".into(),
            [("order-created".to_owned(), 42)].into(),
        );
        settings.plans.insert("basic".into(), "free".into());
        settings
    }

    fn raw(value: Value) -> RawApplication {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn ids_round_trip() {
        let id = application_id(42, 7001);
        assert_eq!(id.as_str(), "app_3s42_7001");
        assert_eq!(parse_application_id(&id), Some((42, 7001)));
        assert_eq!(parse_application_id(&ApplicationId::generate()), None);
    }

    #[test]
    fn live_application_is_active_with_mapped_plan() {
        let plans = HashMap::from([(501, "basic".to_owned())]);
        let app = raw(
            json!({"id": 7001, "state": "live", "plan_id": 501, "plan_name": "Basic",
            "user_key": "k1", "name": "Acme", "webhook-url": "https://hooks.acme.example/o"}),
        );
        let parsed = parse_application(&app, 42, &settings(), &plans).unwrap();
        assert_eq!(parsed.id.as_str(), "app_3s42_7001");
        assert_eq!(parsed.state, ApplicationState::Active);
        assert_eq!(parsed.plan, "free");
        assert_eq!(parsed.secret_text, "k1");
        assert_eq!(parsed.webhook_url, "https://hooks.acme.example/o");
    }

    #[test]
    fn plan_falls_back_to_system_name_then_plan_name() {
        let plans = HashMap::from([(502, "unlimited".to_owned())]);
        let known = raw(json!({"plan_id": 502, "plan_name": "Unlimited"}));
        assert_eq!(plan_name(&known, &settings(), &plans), "unlimited");
        let unknown = raw(json!({"plan_id": 999, "plan_name": "gold"}));
        assert_eq!(plan_name(&unknown, &settings(), &plans), "gold");
        assert_eq!(plan_name(&raw(json!({})), &settings(), &plans), "default");
    }

    #[test]
    fn suspended_and_pending_are_disabled() {
        for state in ["suspended", "pending"] {
            let app = raw(json!({"id": 1, "state": state, "user_key": "k",
                "webhook-url": "https://a.example/"}));
            let parsed = parse_application(&app, 42, &settings(), &HashMap::new()).unwrap();
            assert_eq!(parsed.state, ApplicationState::Disabled, "{state}");
        }
    }

    #[test]
    fn missing_fields_are_reported() {
        let no_url = raw(json!({"id": 7003, "state": "live", "user_key": "k"}));
        let skipped = parse_application(&no_url, 42, &settings(), &HashMap::new());
        assert_eq!(skipped, Err((Some(7003), Missing::WebhookUrl)));
        let no_key = raw(json!({"id": 7004, "state": "live", "webhook-url": "https://a.example/"}));
        let skipped = parse_application(&no_key, 42, &settings(), &HashMap::new());
        assert_eq!(skipped, Err((Some(7004), Missing::Secret)));
        let no_id = raw(json!({"state": "live"}));
        let skipped = parse_application(&no_id, 42, &settings(), &HashMap::new());
        assert_eq!(skipped, Err((None, Missing::Id)));
    }

    #[test]
    fn extra_fields_object_is_read() {
        let app = raw(json!({"id": 5, "state": "live", "user_key": "k",
            "extra_fields": {"webhook-url": "https://a.example/x"}}));
        let parsed = parse_application(&app, 42, &settings(), &HashMap::new()).unwrap();
        assert_eq!(parsed.webhook_url, "https://a.example/x");
    }
}
