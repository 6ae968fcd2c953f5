//! Plans and usage metering stored in a real SQLite file.

mod common;

use common::fixture;
use hookline_core::limit::{from_unix_millis, LimitWindow};
use hookline_core::store::{Store, StoreError};
use hookline_core::usage::{UsageBatch, UsageEvent, UsageKind, UsageQuery};
use hookline_core::{ApplicationId, LimitPeriod, OverLimit, Plan};
use std::time::Duration;
use time::OffsetDateTime;

fn at(millis: i64) -> OffsetDateTime {
    from_unix_millis(millis)
}

fn plan(name: &str) -> Plan {
    Plan {
        name: name.to_owned(),
        limit: Some(10),
        period: LimitPeriod::Minute,
        over_limit: OverLimit::DeadLetter,
        monthly_fee: "19.99".to_owned(),
        currency: "EUR".to_owned(),
        trial_days: 14,
        created_at: at(1_700_000_000_000),
        updated_at: at(1_700_000_000_000),
    }
}

#[tokio::test]
async fn seeded_plans_exist() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let free = store.plan("free").await.unwrap().expect("free plan");
    assert_eq!(free.limit, Some(100));
    assert_eq!(free.period, LimitPeriod::Hour);
    assert_eq!(free.over_limit, OverLimit::Defer);
    assert_eq!(free.currency, "USD");
    assert_eq!(free.monthly_fee, "0");
    let paid = store.plan("paid").await.unwrap().expect("paid plan");
    assert_eq!(paid.limit, None, "paid is unlimited");
    let names: Vec<String> = store
        .plans()
        .await
        .unwrap()
        .into_iter()
        .map(|plan| plan.name)
        .collect();
    assert_eq!(names, ["free", "paid"]);
}

#[tokio::test]
async fn plan_round_trips_and_updates() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let created = plan("pro");
    store.create_plan(&created).await.unwrap();
    assert_eq!(store.plan("pro").await.unwrap(), Some(created.clone()));

    let duplicate = store.create_plan(&created).await.unwrap_err();
    assert!(
        matches!(duplicate, StoreError::Conflict { entity: "plan", .. }),
        "{duplicate:?}"
    );

    let mut changed = created.clone();
    changed.limit = None;
    changed.period = LimitPeriod::Day;
    changed.over_limit = OverLimit::Defer;
    changed.monthly_fee = "5".to_owned();
    changed.trial_days = 0;
    changed.created_at = at(1_800_000_000_000);
    changed.updated_at = at(1_800_000_000_000);
    assert!(store.update_plan(&changed).await.unwrap());
    let read = store.plan("pro").await.unwrap().expect("plan exists");
    assert_eq!(read.limit, None);
    assert_eq!(read.period, LimitPeriod::Day);
    assert_eq!(read.monthly_fee, "5");
    assert_eq!(read.updated_at, changed.updated_at);
    assert_eq!(read.created_at, created.created_at, "creation time is kept");

    assert!(!store.update_plan(&plan("missing")).await.unwrap());
    assert!(store.plan("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn application_moves_to_another_plan() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let id = &fixture.application.id;
    assert!(store.set_application_plan(id, "paid").await.unwrap());
    let read = store.application(id).await.unwrap().expect("application");
    assert_eq!(read.plan, "paid");
    let missing = ApplicationId::generate();
    assert!(!store.set_application_plan(&missing, "paid").await.unwrap());
}

fn delivered(application: &ApplicationId, at_ms: i64, latency_ms: u64) -> UsageEvent {
    UsageEvent {
        application_id: application.clone(),
        plan: "free".to_owned(),
        at: at(at_ms),
        kind: UsageKind::Delivered {
            latency: Duration::from_millis(latency_ms),
        },
    }
}

fn throttled(application: &ApplicationId, at_ms: i64, window_start_ms: i64) -> UsageEvent {
    UsageEvent {
        application_id: application.clone(),
        plan: "free".to_owned(),
        at: at(at_ms),
        kind: UsageKind::Throttled {
            window: LimitWindow::containing(window_start_ms, 60_000),
            limit: 100,
            dead: false,
        },
    }
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn usage_adds_up_across_batches() {
    let fixture = fixture().await;
    let store = fixture.backend.store();
    let app = fixture.application.id.clone();
    let other = ApplicationId::generate();
    let base = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;

    let first = [
        delivered(&app, base + 10, 30),
        delivered(&app, base + 20, 50),
        throttled(&app, base + 30, base),
        delivered(&other, base + 40, 5),
    ];
    let second = [
        delivered(&app, base + 50, 70),
        throttled(&app, base + 60, base),
        delivered(&app, base + HOUR + 1, 10),
    ];
    store
        .record_usage(&UsageBatch::from_events(&first))
        .await
        .unwrap();
    store
        .record_usage(&UsageBatch::from_events(&second))
        .await
        .unwrap();
    store.record_usage(&UsageBatch::default()).await.unwrap();

    let query = UsageQuery {
        application: Some(app.clone()),
        from: at(base),
        to: at(base + 2 * HOUR),
    };
    let hours = store.usage(&query).await.unwrap();
    assert_eq!(hours.len(), 2, "two hours: {hours:?}");
    let counts = hours[0].counts;
    assert_eq!(hours[0].hour, at(base));
    assert_eq!(counts.delivered, 3);
    assert_eq!(counts.throttled, 2);
    assert_eq!(counts.latency_ms_sum, 150);
    assert_eq!(counts.latency_count, 3);
    assert_eq!(counts.latency_ms_max, 70);
    assert_eq!(hours[1].counts.delivered, 1);

    let first_hour_only = UsageQuery {
        application: None,
        from: at(base),
        to: at(base + HOUR),
    };
    let hours = store.usage(&first_hour_only).await.unwrap();
    assert_eq!(hours.len(), 2, "both applications in the first hour");

    let windows = store
        .over_limit_windows(at(base), at(base + HOUR))
        .await
        .unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].throttled, 2);
    assert_eq!(windows[0].limit, 100);
    assert_eq!(windows[0].window.end, at(base + 60_000));
    let later = store
        .over_limit_windows(at(base + 60_000), at(base + HOUR))
        .await
        .unwrap();
    assert!(later.is_empty(), "a window that ended is outside the range");
}
