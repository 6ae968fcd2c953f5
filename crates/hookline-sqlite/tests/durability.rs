//! State and queued tasks survive closing and reopening the database.

mod common;

use common::{fixture, new_event, tasks_of, PRODUCT};
use hookline_core::queue::DeliveryQueue;
use hookline_core::store::Store;
use hookline_sqlite::SqliteBackend;
use std::time::Duration;

#[tokio::test]
async fn reopened_backend_returns_pending_tasks() {
    let fixture = fixture().await;
    let app = fixture.application.id.clone();
    // Binary payloads must come back byte for byte.
    let payloads: [&[u8]; 3] = [br#"{"order":1}"#, b"\x00\xff\x10binary", br#"{"order":3}"#];
    let events: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| new_event(PRODUCT, &format!("order-{i}"), payload, &[&app]))
        .collect();
    let store = fixture.backend.store();
    store.insert_events(&events).await.unwrap();
    let mut expected: Vec<_> = events.iter().flat_map(tasks_of).collect();
    fixture
        .backend
        .queue()
        .enqueue(expected.clone())
        .await
        .unwrap();
    drop(store);

    let dir = fixture.dir;
    fixture.backend.close().await;
    drop(fixture.backend);

    let reopened = SqliteBackend::open(dir.path()).await.unwrap();
    let mut received: Vec<_> = reopened
        .queue()
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|leased| leased.task)
        .collect();
    received.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
    expected.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
    assert_eq!(received, expected);

    let application = reopened.store().application(&app).await.unwrap();
    assert!(application.is_some(), "application survived reopening");
}

#[tokio::test]
async fn reopening_without_close_keeps_committed_writes() {
    let fixture = fixture().await;
    let event = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);
    fixture
        .backend
        .store()
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    fixture
        .backend
        .queue()
        .enqueue(tasks_of(&event))
        .await
        .unwrap();

    // A second backend on the same file, while the first still has it open,
    // reads what the first committed.
    let second = SqliteBackend::open(fixture.dir.path()).await.unwrap();
    let leased = second
        .queue()
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].task, tasks_of(&event)[0]);
}

#[tokio::test]
async fn open_creates_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("data").join("hookline");
    let backend = SqliteBackend::open(&nested).await.unwrap();
    assert!(nested.join(hookline_sqlite::DATABASE_FILE).exists());
    backend.store().ping().await.unwrap();
    backend.close().await;
}

/// Set in the child process of `aborted_process_loses_no_committed_write`.
const CRASH_DIR_VARIABLE: &str = "HOOKLINE_SQLITE_TEST_CRASH_DIR";

/// The child half of the crash test: writes to the database in the given
/// directory, then aborts without closing anything. Does nothing when run
/// as an ordinary test.
#[tokio::test]
async fn crash_child_writes_then_aborts() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VARIABLE) else {
        return;
    };
    let backend = SqliteBackend::open(std::path::Path::new(&dir))
        .await
        .unwrap();
    let store = backend.store();
    store
        .create_product(&common::product(PRODUCT))
        .await
        .unwrap();
    let application = common::application(PRODUCT, "shop-backend");
    store.create_application(&application).await.unwrap();
    let events: Vec<_> = (0..50)
        .map(|i| {
            new_event(
                PRODUCT,
                &format!("order-{i}"),
                format!("{{\"i\":{i}}}").as_bytes(),
                &[&application.id],
            )
        })
        .collect();
    store.insert_events(&events).await.unwrap();
    backend
        .queue()
        .enqueue(events.iter().flat_map(tasks_of).collect())
        .await
        .unwrap();
    std::process::abort();
}

#[tokio::test]
async fn aborted_process_loses_no_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_writes_then_aborts", "--exact", "--nocapture"])
        .env(CRASH_DIR_VARIABLE, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "child process was expected to abort");

    let backend = SqliteBackend::open(dir.path()).await.unwrap();
    let applications = backend.store().applications(Some(PRODUCT)).await.unwrap();
    assert_eq!(applications.len(), 1);
    let leased = backend
        .queue()
        .receive(100, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(leased.len(), 50);
    let mut payloads: Vec<String> = leased
        .iter()
        .map(|leased| String::from_utf8(leased.task.payload.to_vec()).unwrap())
        .collect();
    payloads.sort();
    assert!(payloads.contains(&"{\"i\":49}".to_owned()));
    assert!(payloads.contains(&"{\"i\":0}".to_owned()));
}

#[tokio::test]
async fn exclusive_open_locks_and_releases_leases() {
    let fixture = fixture().await;
    let event = new_event(PRODUCT, "order-1", b"{}", &[&fixture.application.id]);
    fixture
        .backend
        .store()
        .insert_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    fixture
        .backend
        .queue()
        .enqueue(tasks_of(&event))
        .await
        .unwrap();
    let leased = fixture
        .backend
        .queue()
        .receive(10, Duration::from_secs(3600), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "the task is leased for an hour");
    let dir = fixture.dir;
    fixture.backend.close().await;
    drop(fixture.backend);

    let first = SqliteBackend::open_exclusive(dir.path()).await.unwrap();
    let again = first
        .queue()
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "a lease of a stopped process is released at once"
    );

    let second = SqliteBackend::open_exclusive(dir.path()).await;
    let error = second
        .err()
        .expect("a second exclusive open fails")
        .to_string();
    assert!(error.contains("another process"), "{error}");
    first.close().await;
    drop(first);
    assert!(
        SqliteBackend::open_exclusive(dir.path()).await.is_ok(),
        "the lock goes with the backend"
    );
}
