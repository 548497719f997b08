//! Instant products through an HTTP upstream: mapping, and failures that refund.

mod common;

use axum::routing::get;
use axum::{Json, Router};
use common::{Backend, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use storefront_providers::UpstreamConfig;

/// A SearXNG-shaped search API on 127.0.0.1:0: `/ok` answers results, `/broken` a 500,
/// `/hang` never answers.
async fn upstream_stand_in() -> String {
    async fn ok(
        axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    ) -> Json<Value> {
        let query = q.get("q").cloned().unwrap_or_default();
        Json(json!({
            "query": query,
            "results": (1..=5).map(|i| json!({"title": format!("{query} #{i}"), "url": format!("https://example.org/{i}"), "content": "text", "engine": "x"})).collect::<Vec<_>>()
        }))
    }
    let app = Router::new()
        .route("/ok", get(ok))
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/hang", get(std::future::pending::<&'static str>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

const CATALOG: &str = r#"
[[products]]
id = "searx"
sku = "searx"
name = "Search through an upstream"
category = "search"
description = "Results from the operator's search engine."
kind = "instant"
fulfiller = "UPSTREAM"
[products.pricing]
model = "per_use"
unit_minor = 3
currency = "usd"
[[products.fields]]
name = "query"
type = "string"
required = true
[[products.fields]]
name = "max_results"
type = "integer"
default = 2
minimum = 1
maximum = 20
"#;

async fn server_with(backend: &Backend, path: &str) -> (TestServer, tempfile::TempDir) {
    let (config, catalog, dir) = upstream_config(path).await;
    let s = TestServer::start_with(backend, |c| {
        c.catalog_file = Some(catalog.clone());
        c.upstreams = vec![config];
    })
    .await;
    (s, dir)
}

async fn upstream_config(path: &str) -> (UpstreamConfig, std::path::PathBuf, tempfile::TempDir) {
    let upstream = upstream_stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG.replace("UPSTREAM", "searx-upstream")).unwrap();
    let config = UpstreamConfig {
        name: "searx-upstream".into(),
        method: Default::default(),
        url: format!("{upstream}{path}"),
        query: [
            ("q".to_owned(), "{query}".to_owned()),
            ("format".to_owned(), "json".to_owned()),
        ]
        .into(),
        json_body: None,
        timeout_ms: 300,
        results_pointer: "/results".into(),
        fields: [
            ("title", "/title"),
            ("url", "/url"),
            ("snippet", "/content"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect(),
        limit_field: Some("max_results".into()),
    };
    (config, catalog, dir)
}

dual_test!(an_upstream_answer_is_mapped_into_the_result);
async fn an_upstream_answer_is_mapped_into_the_result(backend: Backend) {
    let (s, _dir) = server_with(&backend, "/ok").await;
    let (_, key) = s.account(100).await;
    let r = s
        .order(
            Some(&key),
            "u1",
            &json!({"product_id": "searx", "configuration": {"query": "rust & sqlx"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let results = r.body["data"]["order"]["result"]["results"]
        .as_array()
        .unwrap();
    assert_eq!(results.len(), 2, "max_results caps the list");
    assert_eq!(
        results[0],
        json!({"title": "rust & sqlx #1", "url": "https://example.org/1", "snippet": "text"}),
        "the query was URL-encoded"
    );
    assert_eq!(s.balance(&key).await, 97);
}

async fn assert_failure_refunds(backend: &Backend, path: &str) {
    let (s, _dir) = server_with(backend, path).await;
    let (_, key) = s.account(100).await;
    let body = json!({"product_id": "searx", "configuration": {"query": "q"}});
    let r = s.order(Some(&key), "f1", &body).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (502, "fulfillment_failed"),
        "{:?}",
        r.body
    );
    assert!(
        !r.body.to_string().contains("127.0.0.1"),
        "no upstream details leak: {:?}",
        r.body
    );
    assert_eq!(
        s.balance(&key).await,
        100,
        "failed orders are never charged"
    );
    let ledger = s.ledger(&key).await;
    let kinds: Vec<&str> = ledger.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["refund", "charge", "top_up"]);
    let orders = s.get("/api/v1/orders?status=failed", Some(&key)).await;
    let order = &orders.body["data"]["orders"][0];
    assert_eq!(order["payment_status"], "refunded");
    assert_eq!(order["failure"]["code"], "fulfillment_failed");
    let replay = s.order(Some(&key), "f1", &body).await;
    assert_eq!(replay.status, 502);
    assert_eq!(
        replay.header("idempotent-replayed"),
        Some("true"),
        "failures replay too"
    );
    assert_eq!(replay.body, r.body);
    assert_eq!(s.balance(&key).await, 100);
}

dual_test!(an_upstream_error_fails_and_refunds);
async fn an_upstream_error_fails_and_refunds(backend: Backend) {
    assert_failure_refunds(&backend, "/broken").await;
}

dual_test!(an_upstream_timeout_fails_and_refunds);
async fn an_upstream_timeout_fails_and_refunds(backend: Backend) {
    assert_failure_refunds(&backend, "/hang").await;
}

dual_test!(an_identical_request_while_the_first_is_in_flight_gets_409_in_progress);
async fn an_identical_request_while_the_first_is_in_flight_gets_409_in_progress(backend: Backend) {
    use std::sync::Arc;
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    let app = Router::new().route(
        "/held",
        get(move || {
            let (a, r) = (a.clone(), r.clone());
            async move {
                a.notify_one();
                r.notified().await;
                Json(json!({"results": []}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/held", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG.replace("UPSTREAM", "held")).unwrap();
    let upstream = UpstreamConfig {
        name: "held".into(),
        method: Default::default(),
        url,
        query: Default::default(),
        json_body: None,
        timeout_ms: 60_000,
        results_pointer: "/results".into(),
        fields: Default::default(),
        limit_field: None,
    };
    let s = Arc::new(
        TestServer::start_with(&backend, |c| {
            c.catalog_file = Some(catalog.clone());
            c.upstreams = vec![upstream];
        })
        .await,
    );
    let (_, key) = s.account(100).await;
    let body = json!({"product_id": "searx", "configuration": {"query": "held"}});
    let first = {
        let (s, key, body) = (s.clone(), key.clone(), body.clone());
        tokio::spawn(async move { s.order(Some(&key), "held-1", &body).await })
    };
    arrived.notified().await;
    let second = s.order(Some(&key), "held-1", &body).await;
    assert_eq!(
        (second.status.as_u16(), second.code()),
        (409, "idempotency_in_progress")
    );
    assert_eq!(second.header("retry-after"), Some("1"));
    release.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    let third = s.order(Some(&key), "held-1", &body).await;
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
    assert_eq!(third.body, first.body);
}

dual_test!(a_failure_after_an_mpp_or_card_payment_is_refunded_through_stripe);
async fn a_failure_after_an_mpp_or_card_payment_is_refunded_through_stripe(backend: Backend) {
    use common::payments::{self, billing, challenge_of, credential, mpp_order};
    let (config, catalog, _dir) = upstream_config("/broken").await;
    let (s, stripe) = payments::start_with(&backend, |c| {
        c.catalog_file = Some(catalog.clone());
        c.upstreams = vec![config];
    })
    .await;
    let worker = s
        .app
        .background_jobs(storefront_app::jobs::Worker::new(s.app.clone(), "w"));
    let body = json!({"product_id": "searx", "configuration": {"query": "q"}});

    // MPP: paid, fulfilment fails inline, the answer says so, the refund job pays back.
    let first = mpp_order(&s, "m1", &body, None).await;
    let paid = mpp_order(
        &s,
        "m1",
        &body,
        Some(&credential(&challenge_of(&first), "spt_f1")),
    )
    .await;
    assert_eq!(
        (paid.status.as_u16(), paid.code()),
        (502, "fulfillment_failed"),
        "{:?}",
        paid.body
    );
    while worker.run_once().await.unwrap() {}
    let refunds = stripe.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        refunds[0]["payment_intent"],
        stripe.payment_intents()[0]["id"]
    );
    assert_eq!(refunds[0]["amount"], stripe.payment_intents()[0]["amount"]);

    // Card: paid by webhook, fulfilled by the worker, fails, refunded once.
    let mut card = body.clone();
    card["payment_method"] = json!("card");
    for (k, v) in billing().as_object().unwrap() {
        card[k] = v.clone();
    }
    let r = s.order(None, "c1", &card).await;
    let order = r.body["data"]["order"].clone();
    let session = order["payment_action"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    stripe.pay(&session).await.unwrap();
    while worker.run_once().await.unwrap() {}
    let status = s.get(order["status_url"].as_str().unwrap(), None).await;
    assert_eq!(status.body["data"]["order"]["status"], "failed");
    assert_eq!(status.body["data"]["order"]["payment_status"], "refunded");
    assert_eq!(stripe.refunds().len(), 2);
    while worker.run_once().await.unwrap() {}
    assert_eq!(stripe.refunds().len(), 2, "a refund happens once");

    // Each refund wrote one payment.refunded event for the account that paid.
    let mut refunded = Vec::new();
    for account in s.store.list_accounts().await.unwrap() {
        let filter = storefront_app::ports::EventFilter {
            account: account.id.clone(),
            agent: None,
            after: None,
            kinds: vec![storefront_domain::event::EventType::PaymentRefunded],
            limit: 10,
        };
        refunded.extend(s.store.list_events(&filter).await.unwrap());
    }
    let mut rails: Vec<&str> = refunded
        .iter()
        .map(|e| e.data["rail"].as_str().unwrap())
        .collect();
    rails.sort();
    assert_eq!(rails, ["card", "mpp"]);
    for e in &refunded {
        assert_eq!(e.data["status"], "refunded");
        assert!(e.data["refund_id"].as_str().is_some_and(|r| !r.is_empty()));
    }
}
