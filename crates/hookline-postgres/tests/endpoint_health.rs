//! Disabling and enabling applications, and failure streaks, on PostgreSQL.

mod common;

use common::fixture;
use hookline_core::endpoint_health::Disablement;
use hookline_core::store::Store;
use hookline_core::{ApplicationId, ApplicationState};
use time::OffsetDateTime;

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
}

#[tokio::test]
async fn disable_stores_reason_and_time_once() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;
    assert_eq!(store.disablement(id).await.unwrap(), None);

    let gone = Disablement {
        reason: "the endpoint responded with HTTP 410 Gone".into(),
        disabled_at: at(10),
    };
    assert!(store.disable_application(id, &gone).await.unwrap());
    let later = Disablement {
        reason: "a second reason".into(),
        disabled_at: at(20),
    };
    assert!(
        !store.disable_application(id, &later).await.unwrap(),
        "a disabled application is not disabled again"
    );
    assert_eq!(store.disablement(id).await.unwrap(), Some(gone));
    let application = store.application(id).await.unwrap().unwrap();
    assert_eq!(application.state, ApplicationState::Disabled);

    assert!(store.enable_application(id).await.unwrap());
    assert_eq!(store.disablement(id).await.unwrap(), None);
    let application = store.application(id).await.unwrap().unwrap();
    assert_eq!(application.state, ApplicationState::Active);

    let unknown = ApplicationId::generate();
    assert!(!store.disable_application(&unknown, &later).await.unwrap());
    assert!(!store.enable_application(&unknown).await.unwrap());
}

#[tokio::test]
async fn failure_streak_starts_once_and_ends_on_success() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;

    let first = store.record_endpoint_failure(id, at(1)).await.unwrap();
    assert_eq!(first, Some(at(1)));
    let second = store.record_endpoint_failure(id, at(5)).await.unwrap();
    assert_eq!(second, Some(at(1)), "a streak keeps its start");

    store.record_endpoint_success(id).await.unwrap();
    let fresh = store.record_endpoint_failure(id, at(9)).await.unwrap();
    assert_eq!(fresh, Some(at(9)), "a success ends the streak");

    assert!(store.enable_application(id).await.unwrap());
    let after_enable = store.record_endpoint_failure(id, at(12)).await.unwrap();
    assert_eq!(after_enable, Some(at(12)), "enabling ends the streak");

    let unknown = ApplicationId::generate();
    assert_eq!(
        store
            .record_endpoint_failure(&unknown, at(1))
            .await
            .unwrap(),
        None
    );
}
