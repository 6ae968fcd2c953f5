//! The applications of one service: the list read from 3scale, and the
//! lookup tables built from it.

use crate::parse::ParsedApplication;
use hookline_core::directory::Endpoint;
use hookline_core::{ApplicationId, ApplicationState, PlanLimit, SigningSecret};
use std::collections::HashMap;
use std::sync::Arc;

/// The applications of one service as read from 3scale, with the rate
/// limit of each plan they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApplicationList {
    pub(crate) applications: Vec<ParsedApplication>,
    /// Rate limit by Hookline plan name; `None` sends without a limit.
    pub(crate) limits: HashMap<String, Option<PlanLimit>>,
}

/// The applications of one service, as last read.
pub(crate) struct Snapshot {
    /// Every application with a webhook URL and a secret, in any state.
    pub(crate) endpoints: HashMap<ApplicationId, Arc<Endpoint>>,
    /// The live ones, sorted by id.
    pub(crate) subscribers: Arc<[ApplicationId]>,
}

impl ApplicationList {
    /// Builds the lookup tables of the list.
    pub(crate) fn into_snapshot(self) -> Snapshot {
        let ApplicationList {
            applications,
            limits,
        } = self;
        let mut subscribers: Vec<ApplicationId> = applications
            .iter()
            .filter(|application| application.state == ApplicationState::Active)
            .map(|application| application.id.clone())
            .collect();
        subscribers.sort();
        let endpoints = applications
            .into_iter()
            .map(|application| {
                let endpoint = Endpoint {
                    application_id: application.id.clone(),
                    limit: limits.get(&application.plan).copied().flatten(),
                    url: application.webhook_url,
                    plan: application.plan,
                    secrets: vec![SigningSecret::from_raw_key(
                        application.secret_text.as_bytes(),
                    )],
                    active: application.state == ApplicationState::Active,
                };
                (application.id, Arc::new(endpoint))
            })
            .collect();
        Snapshot {
            endpoints,
            subscribers: subscribers.into(),
        }
    }
}
