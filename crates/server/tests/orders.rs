//! Orders on the credit rail (docs/api.md, "Orders" and "Idempotency"): create, idempotency,
//! get, list, cancel, signed status URLs.

mod common;

use common::{vps_config, Backend, TestServer};
use serde_json::{json, Value};

fn search(query: &str) -> Value {
    json!({"product_id": "web-search", "configuration": {"query": query, "max_results": 3}})
}

dual_test!(an_instant_order_is_fulfilled_inline_and_charged_once);
async fn an_instant_order_is_fulfilled_inline_and_charged_once(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(500).await;
    let r = s
        .order(Some(&key), "search-1", &search("linux machine"))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let order = &r.body["data"]["order"];
    assert_eq!(order["status"], "fulfilled");
    assert_eq!(order["payment_status"], "paid");
    let results = order["result"]["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 3);
    assert_eq!(
        results[0]["url"], "/api/v1/products/bare-linux-machine",
        "the offline index ranks the matching product first"
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/orders/{}", order["id"].as_str().unwrap()).as_str())
    );
    let total = order["total_minor"].as_i64().unwrap();
    assert_eq!(s.balance(&key).await, 500 - total);
    let ledger = s.ledger(&key).await;
    assert_eq!(ledger[0]["kind"], "charge");
    assert_eq!(ledger[0]["amount_minor"].as_i64().unwrap(), -total);
    assert_eq!(ledger[0]["order_id"], order["id"]);
    // Fulfilled in the transaction that charged it: no job is left to fulfil it, now or later.
    use storefront_app::clock::Clock;
    let a_day_later = s.clock.now() + chrono::Duration::days(1);
    let backlog = s.store.job_backlog(a_day_later).await.unwrap();
    assert_eq!((backlog.due, backlog.running), (0, 0), "{backlog:?}");
}

dual_test!(an_async_order_is_accepted_processing_with_retry_after);
async fn an_async_order_is_accepted_processing_with_retry_after(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let r = s
        .order(
            Some(&key),
            "vps-1",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["data"]["order"]["status"], "processing");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.body["data"]["order"]["total_minor"], 2000);
    let id = r.body["data"]["order"]["id"].as_str().unwrap();
    let got = s.get(&format!("/api/v1/orders/{id}"), Some(&key)).await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("retry-after").is_some(),
        "polling a non-terminal order says when to come back"
    );
    assert_eq!(got.body["data"]["order"]["status"], "processing");
}

dual_test!(a_replay_returns_the_original_response_and_a_changed_body_is_refused);
async fn a_replay_returns_the_original_response_and_a_changed_body_is_refused(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(500).await;
    let first = s.order(Some(&key), "same-key", &search("replay")).await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    // Same body with other key order and spacing is the same request.
    let reordered =
        json!({"configuration": {"max_results": 3, "query": "replay"}, "product_id": "web-search"});
    let second = s.order(Some(&key), "same-key", &reordered).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.body, first.body, "byte-for-byte the original body");
    let other = s
        .order(Some(&key), "same-key", &search("something else"))
        .await;
    assert_eq!(
        (other.status.as_u16(), other.code()),
        (422, "idempotency_key_reused")
    );
    let total = first.body["data"]["order"]["total_minor"].as_i64().unwrap();
    assert_eq!(s.balance(&key).await, 500 - total, "charged once");
    let orders = s.get("/api/v1/orders", Some(&key)).await;
    assert_eq!(orders.body["data"]["orders"].as_array().unwrap().len(), 1);
}

dual_test!(keys_are_scoped_to_the_account);
async fn keys_are_scoped_to_the_account(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, a) = s.account(500).await;
    let (_, b) = s.account(500).await;
    let ra = s.order(Some(&a), "shared-key", &search("one")).await;
    let rb = s.order(Some(&b), "shared-key", &search("two")).await;
    assert_eq!((ra.status.as_u16(), rb.status.as_u16()), (201, 201));
    assert!(rb.header("idempotent-replayed").is_none());
    assert_ne!(
        ra.body["data"]["order"]["id"],
        rb.body["data"]["order"]["id"]
    );
}

dual_test!(idempotency_key_is_required_bounded_and_may_come_as_request_id);
async fn idempotency_key_is_required_bounded_and_may_come_as_request_id(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(500).await;
    let r = s.post("/api/v1/orders", Some(&key), &search("x")).await;
    assert_eq!(
        (r.status.as_u16(), r.code(), r.param()),
        (400, "validation_error", "Idempotency-Key")
    );
    let long = "k".repeat(256);
    let r = s.order(Some(&key), &long, &search("x")).await;
    assert_eq!((r.status.as_u16(), r.param()), (400, "Idempotency-Key"));
    let mut body = search("from the body");
    body["request_id"] = json!("rid-1");
    let r = s.post("/api/v1/orders", Some(&key), &body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["data"]["order"]["idempotency_key"], "rid-1");
    let again = s.post("/api/v1/orders", Some(&key), &body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

dual_test!(validation_and_insufficient_credits_do_not_consume_the_key);
async fn validation_and_insufficient_credits_do_not_consume_the_key(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account, key) = s.account(100).await;
    let bad = s
        .order(
            Some(&key),
            "retry-me",
            &json!({"product_id": "vps-micro", "configuration": {"region": "local"}}),
        )
        .await;
    assert_eq!((bad.status.as_u16(), bad.code()), (400, "validation_error"));
    let poor = s
        .order(
            Some(&key),
            "retry-me",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    assert_eq!(
        (poor.status.as_u16(), poor.code()),
        (402, "insufficient_credits")
    );
    assert!(
        poor.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1.00 USD"),
        "names the balance: {:?}",
        poor.body
    );
    assert_eq!(s.balance(&key).await, 100, "nothing moved");
    s.app
        .admin_grant_credits(&account, 5000, "top up")
        .await
        .unwrap();
    let ok = s
        .order(
            Some(&key),
            "retry-me",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    assert_eq!(ok.status, 202, "the key is still free: {:?}", ok.body);
    assert!(ok.header("idempotent-replayed").is_none());
}

dual_test!(ordering_a_quote_charges_the_quoted_price_until_it_expires);
async fn ordering_a_quote_charges_the_quoted_price_until_it_expires(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let q = s
        .post(
            "/api/v1/quotes",
            Some(&key),
            &json!({"product_id": "vps-small", "configuration": vps_config()}),
        )
        .await;
    let quote = &q.body["data"]["quote"];
    let r = s
        .order(Some(&key), "from-quote", &json!({"quote_id": quote["id"]}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["data"]["order"]["total_minor"], quote["total_minor"]);
    assert_eq!(r.body["data"]["order"]["quote_id"], quote["id"]);

    let q2 = s
        .post(
            "/api/v1/quotes",
            Some(&key),
            &json!({"product_id": "vps-small", "configuration": vps_config()}),
        )
        .await;
    s.clock.advance(chrono::Duration::minutes(16));
    let late = s
        .order(
            Some(&key),
            "late",
            &json!({"quote_id": q2.body["data"]["quote"]["id"]}),
        )
        .await;
    assert_eq!(
        (late.status.as_u16(), late.code(), late.param()),
        (410, "quote_expired", "quote_id")
    );
    let both = s
        .order(
            Some(&key),
            "both",
            &json!({"quote_id": quote["id"], "product_id": "vps-small"}),
        )
        .await;
    assert_eq!((both.status.as_u16(), both.param()), (400, "quote_id"));
    let (_, other) = s.account(10_000).await;
    let foreign = s
        .order(Some(&other), "foreign", &json!({"quote_id": quote["id"]}))
        .await;
    assert_eq!(
        (foreign.status.as_u16(), foreign.code()),
        (404, "not_found")
    );
}

dual_test!(unavailable_products_and_unconfigured_payment_methods_answer_503);
async fn unavailable_products_and_unconfigured_payment_methods_answer_503(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(100_000).await;
    let gpu = s
        .order(
            Some(&key),
            "gpu",
            &json!({"product_id": "gpu-h100-machine", "configuration": {}}),
        )
        .await;
    assert_eq!(
        (gpu.status.as_u16(), gpu.code()),
        (503, "service_unavailable")
    );
    let card = s.order(Some(&key), "card", &json!({"product_id": "web-search", "configuration": {"query": "x"}, "payment_method": "card"})).await;
    assert_eq!(
        (card.status.as_u16(), card.code()),
        (400, "validation_error"),
        "billing is checked first"
    );
    assert!(
        card.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("billing_country"),
        "lists every missing field"
    );
    let billing = json!({"product_id": "web-search", "configuration": {"query": "x"}, "payment_method": "card",
        "customer_email": "c@example.com", "billing_name": "C", "billing_street": "Cloud Street 1", "billing_city": "Prague",
        "billing_postal_code": "11000", "billing_country": "CZ"});
    let card = s.order(Some(&key), "card", &billing).await;
    assert_eq!(
        (card.status.as_u16(), card.code()),
        (503, "service_unavailable")
    );
    let mpp = s.order(None, "mpp", &search("x")).await;
    assert_eq!(
        (mpp.status.as_u16(), mpp.code()),
        (503, "service_unavailable"),
        "public agents default to MPP"
    );
    assert_eq!(s.balance(&key).await, 100_000);
}

dual_test!(validate_previews_without_creating_anything);
async fn validate_previews_without_creating_anything(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(1_000).await;
    let r = s
        .send(
            s.client
                .post(s.url("/api/v1/orders/validate"))
                .bearer_auth(&key)
                .header("Idempotency-Key", "pre-1")
                .json(&search("x")),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["product_kind"], "instant");
    assert_eq!(r.body["data"]["payment_methods"], json!(["credit"]));
    assert_eq!(r.body["data"]["idempotency_key"], "pre-1");
    assert_eq!(s.balance(&key).await, 1_000);
    let orders = s.get("/api/v1/orders", Some(&key)).await;
    assert!(orders.body["data"]["orders"].as_array().unwrap().is_empty());
    let bad = s
        .post(
            "/api/v1/orders/validate",
            Some(&key),
            &json!({"product_id": "vps"}),
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.param()),
        (400, "configuration.region")
    );
}

dual_test!(orders_list_newest_first_with_filters_and_cursors);
async fn orders_list_newest_first_with_filters_and_cursors(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(100_000).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = s
            .order(Some(&key), &format!("s{i}"), &search(&format!("q{i}")))
            .await;
        ids.push(r.body["data"]["order"]["id"].as_str().unwrap().to_owned());
    }
    let r = s
        .order(
            Some(&key),
            "v",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    let vps_id = r.body["data"]["order"]["id"].as_str().unwrap().to_owned();

    let mut listed = Vec::new();
    let mut path = "/api/v1/orders?product_id=web-search&limit=2".to_owned();
    loop {
        let page = s.get(&path, Some(&key)).await;
        assert_eq!(page.status, 200);
        listed.extend(
            page.body["data"]["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
        match page.body["data"]["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/orders?product_id=web-search&limit=2&cursor={c}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(listed, ids, "newest first, every order once");
    let processing = s.get("/api/v1/orders?status=processing", Some(&key)).await;
    let only: Vec<&str> = processing.body["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(only, [vps_id.as_str()]);
    let bad = s.get("/api/v1/orders?status=done", Some(&key)).await;
    assert_eq!((bad.status.as_u16(), bad.param()), (400, "status"));
    let (_, other) = s.account(0).await;
    let theirs = s.get("/api/v1/orders", Some(&other)).await;
    assert!(theirs.body["data"]["orders"].as_array().unwrap().is_empty());
    let hidden = s
        .get(&format!("/api/v1/orders/{vps_id}"), Some(&other))
        .await;
    assert_eq!(
        (hidden.status.as_u16(), hidden.code()),
        (404, "not_found"),
        "other accounts' orders do not exist"
    );
}

dual_test!(the_signed_status_url_works_without_a_key_until_it_expires);
async fn the_signed_status_url_works_without_a_key_until_it_expires(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let r = s
        .order(
            Some(&key),
            "status",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    let status_url = r.body["data"]["order"]["status_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(status_url.starts_with(&s.base));
    let got = s.get(&status_url, None).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        got.body["data"]["order"]["id"],
        r.body["data"]["order"]["id"]
    );
    assert!(got.body["data"]["order"]["management_tokens"].is_null());

    let tampered = status_url.replace("sig=", "sig=A");
    let bad = s.get(&tampered, None).await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (403, "invalid_signature")
    );
    let other_id = status_url.replace(
        r.body["data"]["order"]["id"].as_str().unwrap(),
        "ord_00000000000000000000000000000000",
    );
    let bad = s.get(&other_id, None).await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (403, "invalid_signature"),
        "a signature is for one path"
    );
    let unsigned = s
        .get(&status_url[..status_url.find('?').unwrap()], None)
        .await;
    assert_eq!(unsigned.code(), "invalid_signature");
    s.clock.advance(chrono::Duration::days(31));
    let late = s.get(&status_url, None).await;
    assert_eq!(
        (late.status.as_u16(), late.code()),
        (403, "signature_expired")
    );
}

const INSTALL_CATALOG: &str = r#"
[[products]]
id = "install-box"
sku = "install-box"
name = "Box needing install settings"
category = "hosting"
description = "An async product that waits for install configuration."
kind = "async"
fulfiller = "local"
requires_install_configuration = true
[products.pricing]
model = "per_month"
unit_minor = 700
currency = "usd"
unit_field = "months"
[[products.fields]]
name = "months"
type = "integer"
default = 1
minimum = 1
maximum = 12
[[products.install_fields]]
name = "cluster_name"
type = "string"
required = true
"#;

dual_test!(cancel_refunds_an_order_that_has_not_started_and_refuses_later_states);
async fn cancel_refunds_an_order_that_has_not_started_and_refuses_later_states(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, INSTALL_CATALOG).unwrap();
    let s = TestServer::start_with(&backend, |c| c.catalog_file = Some(catalog.clone())).await;
    let (_, key) = s.account(5_000).await;
    let r = s
        .order(
            Some(&key),
            "box",
            &json!({"product_id": "install-box", "configuration": {"months": 2}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        r.body["data"]["order"]["status"],
        "awaiting_install_configuration"
    );
    assert_eq!(s.balance(&key).await, 5_000 - 1_400);
    let id = r.body["data"]["order"]["id"].as_str().unwrap();

    let (_, other) = s.account(0).await;
    let foreign = s
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&other),
            &json!({}),
        )
        .await;
    assert_eq!(foreign.status, 404);

    let c = s
        .send(
            s.client
                .post(s.url(&format!("/api/v1/orders/{id}/cancel")))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert_eq!(c.body["data"]["order"]["status"], "canceled");
    assert_eq!(c.body["data"]["order"]["payment_status"], "refunded");
    assert_eq!(s.balance(&key).await, 5_000);
    let ledger = s.ledger(&key).await;
    assert_eq!(ledger[0]["kind"], "refund");
    assert_eq!(ledger[0]["amount_minor"], 1_400);

    let again = s
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (400, "invalid_state")
    );
    assert_eq!(s.balance(&key).await, 5_000, "refunded once");
}

dual_test!(processing_and_fulfilled_orders_cannot_be_canceled);
async fn processing_and_fulfilled_orders_cannot_be_canceled(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(10_000).await;
    let vps = s
        .order(
            Some(&key),
            "v",
            &json!({"product_id": "vps-micro", "configuration": vps_config()}),
        )
        .await;
    let done = s.order(Some(&key), "s", &search("x")).await;
    for r in [vps, done] {
        let id = r.body["data"]["order"]["id"].as_str().unwrap();
        let c = s
            .post(
                &format!("/api/v1/orders/{id}/cancel"),
                Some(&key),
                &json!({}),
            )
            .await;
        assert_eq!((c.status.as_u16(), c.code()), (400, "invalid_state"));
    }
}

dual_test!(a_key_held_by_a_crashed_request_is_taken_over_after_the_lock_timeout);
async fn a_key_held_by_a_crashed_request_is_taken_over_after_the_lock_timeout(backend: Backend) {
    use storefront_app::ports::{ClaimOutcome, IdempotencyRef};
    let s = TestServer::start(&backend).await;
    let (account, key) = s.account(10_000).await;
    let body = json!({"product_id": "vps-micro", "configuration": vps_config()});
    // A process claimed the key with this very body and died before doing anything.
    let claim = IdempotencyRef {
        scope: account.clone(),
        route: "POST /api/v1/orders".into(),
        key: "crashed".into(),
    };
    // The fingerprint is that of the parsed request, as every door computes it.
    let fp = storefront_app::orders::OrderRequest {
        source: storefront_app::orders::OrderSource::Configure(
            storefront_app::quotes::QuoteRequest {
                product_id: "vps-micro".into(),
                quantity: None,
                configuration: vps_config().as_object().unwrap().clone(),
            },
        ),
        payment_method: None,
        billing: Default::default(),
    }
    .fingerprint();
    let now = s.app.clock().now();
    assert_eq!(
        s.store
            .claim_idempotency_key(&claim, &fp, now, now)
            .await
            .unwrap(),
        ClaimOutcome::Acquired
    );

    let blocked = s.order(Some(&key), "crashed", &body).await;
    assert_eq!(
        (blocked.status.as_u16(), blocked.code()),
        (409, "idempotency_in_progress")
    );
    assert_eq!(blocked.header("retry-after"), Some("1"));
    s.clock.advance(chrono::Duration::minutes(3));
    let taken = s.order(Some(&key), "crashed", &body).await;
    assert_eq!(taken.status, 202, "{:?}", taken.body);
    assert_eq!(s.balance(&key).await, 8_000);
    let replay = s.order(Some(&key), "crashed", &body).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let mut original = taken.body.clone();
    original["data"]["order"]["management_tokens"] = serde_json::Value::Null;
    assert_eq!(
        replay.body, original,
        "the original, less the tokens shown only once"
    );
}

dual_test!(install_configuration_goes_to_the_signed_url_then_delivery_starts);
async fn install_configuration_goes_to_the_signed_url_then_delivery_starts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, INSTALL_CATALOG).unwrap();
    let s = TestServer::start_with(&backend, |c| c.catalog_file = Some(catalog.clone())).await;
    let (_, key) = s.account(5_000).await;
    let r = s
        .order(
            Some(&key),
            "install",
            &json!({"product_id": "install-box", "configuration": {}}),
        )
        .await;
    if r.status == 503 {
        eprintln!("skipped: local machines are unavailable on this host");
        return;
    }
    assert_eq!(r.status, 202, "{:?}", r.body);
    let order = &r.body["data"]["order"];
    assert_eq!(order["status"], "awaiting_install_configuration");
    assert!(
        order["service_id"].is_null(),
        "nothing is delivered before the configuration"
    );
    assert_eq!(order["install_action"]["method"], "POST");
    let url = order["install_action"]["url"].as_str().unwrap().to_owned();

    let missing = s.post(&url, None, &json!({"config": {}})).await;
    assert_eq!(
        (missing.status.as_u16(), missing.param()),
        (400, "config.cluster_name")
    );
    let forged = s
        .post(
            &url.replace("sig=", "sig=A"),
            None,
            &json!({"config": {"cluster_name": "c1"}}),
        )
        .await;
    assert_eq!(
        (forged.status.as_u16(), forged.code()),
        (403, "invalid_signature")
    );
    let get_signed = s.get(&url, None).await;
    assert_eq!(
        get_signed.status.as_u16(),
        405,
        "the signature is for POST only"
    );

    let done = s
        .post(&url, None, &json!({"config": {"cluster_name": "c1"}}))
        .await;
    assert_eq!(done.status, 202, "{:?}", done.body);
    let order = &done.body["data"]["order"];
    assert_eq!(order["status"], "processing");
    assert_eq!(order["configuration"]["install"]["cluster_name"], "c1");
    assert!(order["install_action"].is_null());
    assert!(order["service_id"].is_string(), "delivery started");
    assert!(order["management_tokens"]["read_token"].is_string());
    let again = s
        .post(&url, None, &json!({"config": {"cluster_name": "c2"}}))
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (400, "invalid_state")
    );
    let (_, other) = s.account(0).await;
    let id = order["id"].as_str().unwrap();
    let foreign = s
        .post(
            &format!("/api/v1/orders/{id}/install"),
            Some(&other),
            &json!({"config": {"cluster_name": "c3"}}),
        )
        .await;
    assert_eq!(foreign.status, 404);
}
