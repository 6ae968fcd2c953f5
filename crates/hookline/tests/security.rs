//! Guarantees an operator relies on: every admin route needs the token, and
//! no signing secret ever reaches a log line or an API listing.

mod common;

use common::{order_event, World};
use hookline_receiver::Behaviour;
use serde_json::Value;
use std::time::Duration;

/// Replaces `{param}` segments with a value of the right shape.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{id}" => "app_0000",
            "{name}" => "order-created",
            other if other.starts_with('{') => "x",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_admin_route_requires_the_token() {
    let world = World::new().await;
    let server = world.serve(&[]).await;
    let client = reqwest::Client::new();
    let document: Value = client
        .get(format!("{}/openapi.json", server.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"]
        .as_object()
        .expect("paths in the OpenAPI document");

    let mut checked = 0;
    for (path, operations) in paths {
        if !path.starts_with("/api/") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = format!("{}{}", server.api, concrete(path));
            let missing = client.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(missing.status(), 401, "{method} {path} without a token");
            let wrong = client
                .request(method.clone(), &url)
                .bearer_auth("not-the-token")
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} admin operations were found in the OpenAPI document"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_logs_or_listings() {
    let world = World::new().await;
    let verbose = (
        "RUST_LOG",
        "debug,hyper=info,h2=info,rustls=info,sqlx=info,reqwest=info,tower=info",
    );
    let server = world
        .serve(&[
            verbose,
            ("HOOKLINE_RETRY__INTERVAL", "10ms"),
            ("HOOKLINE_RETRY__BACKOFF_UNIT", "1ms"),
            ("HOOKLINE_RETRY__MAX_RETRIES", "1"),
        ])
        .await;
    server
        .create_product("order-created", "order-created-event")
        .await;
    let ok = server
        .create_application(&world.receiver, "order-created", "fine")
        .await;
    let failing = server
        .create_application(&world.receiver, "order-created", "broken")
        .await;
    world
        .receiver
        .script("broken", Behaviour::AlwaysFail { status: 500 });

    for id in [&ok, &failing] {
        let (status, body) = server
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/applications/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            body.get("secret").is_none(),
            "GET of {id} must not return the secret"
        );
    }
    for n in 0..5 {
        let key = format!("sec-{n}");
        server
            .ingest("order-created", Some(&key), &order_event(&key))
            .await;
    }
    server
        .wait_deliveries(&failing, Duration::from_secs(10), |d| {
            d.len() == 5 && d.iter().all(|d| d["state"] == "dead")
        })
        .await;

    assert!(
        world.receiver.stats().verified >= 10,
        "deliveries were signed and verified"
    );
    let created_secrets = world.receiver_secrets();
    assert_eq!(created_secrets.len(), 2);

    let mut listings = server.log_text();
    for path in ["/api/v1/applications", "/api/v1/dead-letters", "/metrics"] {
        let (_, body) = server.request(reqwest::Method::GET, path, None).await;
        listings.push_str(&body.to_string());
    }
    let metrics = reqwest::get(format!("{}/metrics", server.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    listings.push_str(&metrics);
    for secret in created_secrets {
        let key_part = secret.trim_start_matches("whsec_");
        assert!(
            !listings.contains(&secret),
            "a whsec_ secret appears in logs or listings"
        );
        assert!(
            !listings.contains(key_part),
            "a secret's key appears in logs or listings"
        );
    }
    assert!(
        server.log_text().contains("Delivery dead-lettered"),
        "the log covers failures too"
    );
}
