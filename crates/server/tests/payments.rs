//! Payments (docs/api.md, "Payments"): card orders through Stripe Checkout and signed webhooks,
//! credit top-ups, and HTTP 402 Machine Payments Protocol orders — all against the Stripe stand-in
//! over HTTP.

mod common;

use common::payments::{self, billing, challenge_of, credential, mpp_order};
use common::{Backend, TestServer};
use serde_json::{json, Value};

fn search(query: &str) -> Value {
    json!({"product_id": "web-search", "configuration": {"query": query, "max_results": 2}})
}

fn card_search(query: &str) -> Value {
    let mut body = search(query);
    body["payment_method"] = json!("card");
    for (k, v) in billing().as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn session_of(order: &Value) -> String {
    let url = order["payment_action"]["url"]
        .as_str()
        .expect("a hosted page");
    url.rsplit('/').next().unwrap().to_owned()
}

dual_test!(a_card_order_is_paid_through_the_webhook_once_and_fulfilled);
async fn a_card_order_is_paid_through_the_webhook_once_and_fulfilled(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    s.start_worker();
    let r = s.order(None, "card-1", &card_search("linux")).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let order = r.body["data"]["order"].clone();
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["payment_status"], "unpaid");
    assert_eq!(order["payment_method"], "card");
    assert_eq!(order["payment_action"]["type"], "redirect");
    let session_id = session_of(&order);
    let session = stripe
        .session(&session_id)
        .expect("the session exists at Stripe");
    assert_eq!(session["amount_total"], order["total_minor"]);
    assert_eq!(session["client_reference_id"], order["id"]);
    assert_eq!(session["customer_email"], "customer@example.com");

    // The identical request replays; it opens no second session.
    let again = s.order(None, "card-1", &card_search("linux")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(session_of(&again.body["data"]["order"]), session_id);

    let status_url = order["status_url"].as_str().unwrap().to_owned();
    let before = s.get(&status_url, None).await;
    assert_eq!(before.body["data"]["order"]["status"], "pending_payment");
    assert_eq!(
        before.body["data"]["order"]["payment_action"]["url"],
        order["payment_action"]["url"]
    );

    assert_eq!(stripe.pay(&session_id).await.unwrap(), Some(200));
    let done = s
        .poll_until(&status_url, None, |b| {
            b["data"]["order"]["status"] == "fulfilled"
        })
        .await;
    let paid = &done["data"]["order"];
    assert_eq!(paid["payment_status"], "paid");
    assert!(paid["result"]["results"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    assert!(paid["payment_action"].is_null(), "nothing left to pay");

    // Stripe delivers again: acknowledged, nothing changes.
    let (event_id, _) = stripe.events().into_iter().last().unwrap();
    assert_eq!(stripe.redeliver(&event_id).await, Some(200));
    let after = s.get(&status_url, None).await;
    assert_eq!(
        after.body["data"]["order"]["updated_at"],
        paid["updated_at"]
    );
    assert_eq!(stripe.payment_intents().len(), 1);
    assert!(stripe.refunds().is_empty());
}

dual_test!(webhook_deliveries_with_a_bad_or_stale_signature_are_refused);
async fn webhook_deliveries_with_a_bad_or_stale_signature_are_refused(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let r = s.order(None, "card-2", &card_search("rust")).await;
    let order = r.body["data"]["order"].clone();
    let session_id = session_of(&order);
    let event = json!({
        "id": "evt_forged", "object": "event", "type": "checkout.session.completed",
        "data": {"object": {"id": session_id, "payment_status": "paid",
                            "amount_total": order["total_minor"], "currency": "usd",
                            "client_reference_id": order["id"]}}
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let forged = stripe_standin::sign("whsec_wrong", &event, now);
    let stale = stripe.signature_header(&event, now - 3600);
    for signature in [
        Some(forged.as_str()),
        Some(stale.as_str()),
        Some("t=1,v1=zz"),
        None,
    ] {
        let mut req = s
            .client
            .post(s.url("/api/v1/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(event.clone());
        if let Some(sig) = signature {
            req = req.header("Stripe-Signature", sig);
        }
        let reply = s.send(req).await;
        assert_eq!(reply.status, 400, "{signature:?}: {:?}", reply.body);
        assert_eq!(reply.param(), "Stripe-Signature");
    }
    let status = s.get(order["status_url"].as_str().unwrap(), None).await;
    assert_eq!(status.body["data"]["order"]["status"], "pending_payment");

    // A correctly signed event for a session nobody knows is acknowledged and ignored.
    let unknown = event.replace(&session_id, "cs_test_unknown");
    let reply = s
        .send(
            s.client
                .post(s.url("/api/v1/webhooks/stripe"))
                .header("Stripe-Signature", stripe.signature_header(&unknown, now))
                .body(unknown.replace("evt_forged", "evt_unknown")),
        )
        .await;
    // The body changed after signing: refused too.
    assert_eq!(reply.status, 400);
    let unknown = unknown.replace("evt_forged", "evt_unknown");
    let reply = s
        .send(
            s.client
                .post(s.url("/api/v1/webhooks/stripe"))
                .header("Stripe-Signature", stripe.signature_header(&unknown, now))
                .body(unknown),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["data"]["result"], "ignored");

    // A correctly signed event whose amount disagrees with the order is not applied.
    let cheaper = event.replace("evt_forged", "evt_cheaper").replace(
        &format!("\"amount_total\":{}", order["total_minor"]),
        "\"amount_total\":0",
    );
    assert!(cheaper.contains("\"amount_total\":0"));
    let reply = s
        .send(
            s.client
                .post(s.url("/api/v1/webhooks/stripe"))
                .header("Stripe-Signature", stripe.signature_header(&cheaper, now))
                .body(cheaper),
        )
        .await;
    assert_eq!(reply.body["data"]["result"], "ignored", "{:?}", reply.body);
    let status = s.get(order["status_url"].as_str().unwrap(), None).await;
    assert_eq!(status.body["data"]["order"]["status"], "pending_payment");
}

dual_test!(an_expired_checkout_cancels_its_order);
async fn an_expired_checkout_cancels_its_order(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let r = s.order(None, "card-3", &card_search("x")).await;
    let order = r.body["data"]["order"].clone();
    let session_id = session_of(&order);
    let expire = s
        .send(
            s.client
                .post(format!(
                    "{}/v1/checkout/sessions/{session_id}/expire",
                    stripe.base_url
                ))
                .basic_auth(payments::STRIPE_SECRET, Some("")),
        )
        .await;
    assert_eq!(expire.status, 200);
    let status = s.get(order["status_url"].as_str().unwrap(), None).await;
    assert_eq!(status.body["data"]["order"]["status"], "canceled");
    // Paying the expired session is impossible at Stripe, so nothing is charged.
    assert!(stripe.pay(&session_id).await.is_err());
}

dual_test!(card_orders_without_billing_details_name_every_missing_field);
async fn card_orders_without_billing_details_name_every_missing_field(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let mut body = search("x");
    body["payment_method"] = json!("card");
    body["customer_email"] = json!("customer@example.com");
    let r = s.order(None, "card-4", &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "validation_error");
    let message = r.body["error"]["message"].as_str().unwrap();
    for field in [
        "billing_name",
        "billing_street",
        "billing_city",
        "billing_postal_code",
        "billing_country",
    ] {
        assert!(message.contains(field), "{message} names {field}");
    }
    assert!(stripe.events().is_empty());
    // The key was not consumed: the corrected request goes through.
    let fixed = s.order(None, "card-4", &card_search("x")).await;
    assert_eq!(fixed.status, 202, "{:?}", fixed.body);
}

dual_test!(a_top_up_credits_the_account_once_when_paid);
async fn a_top_up_credits_the_account_once_when_paid(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let (_, key) = s.account(0).await;
    let bad = s
        .post(
            "/api/v1/account/top-ups",
            Some(&key),
            &json!({"amount_minor": 5}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.param(), "amount_minor");
    let r = s
        .post(
            "/api/v1/account/top-ups",
            Some(&key),
            &json!({"amount_minor": 2500}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let top_up = r.body["data"]["top_up"].clone();
    assert_eq!(top_up["status"], "pending");
    let session_id = session_of(&top_up);
    assert_eq!(stripe.pay(&session_id).await.unwrap(), Some(200));
    assert_eq!(s.balance(&key).await, 2500);
    let (event_id, _) = stripe.events().into_iter().last().unwrap();
    assert_eq!(stripe.redeliver(&event_id).await, Some(200));
    assert_eq!(
        s.balance(&key).await,
        2500,
        "a duplicate delivery credits nothing"
    );
    let ledger = s.ledger(&key).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0]["kind"], "top_up");
    let shown = s
        .get(
            &format!("/api/v1/account/top-ups/{}", top_up["id"].as_str().unwrap()),
            Some(&key),
        )
        .await;
    assert_eq!(shown.body["data"]["top_up"]["status"], "succeeded");
    // Another account cannot see it.
    let (_, other) = s.account(0).await;
    let hidden = s
        .get(
            &format!("/api/v1/account/top-ups/{}", top_up["id"].as_str().unwrap()),
            Some(&other),
        )
        .await;
    assert_eq!(hidden.status, 404);
}

dual_test!(an_mpp_order_pays_on_the_identical_retry_and_carries_a_receipt);
async fn an_mpp_order_pays_on_the_identical_retry_and_carries_a_receipt(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let body = search("mpp");
    let first = mpp_order(&s, "mpp-1", &body, None).await;
    assert_eq!(first.status, 402, "{:?}", first.body);
    assert_eq!(first.code(), "payment_required");
    assert_eq!(first.body["status"], "unpaid");
    assert!(first.body.get("credential_status").is_none());
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let order_id = first.body["order_id"].as_str().unwrap().to_owned();
    let challenge = challenge_of(&first);
    assert_eq!(challenge.method.as_str(), "stripe");
    assert_eq!(challenge.intent.as_str(), "charge");
    let request: Value = challenge.request.decode().unwrap();
    assert_eq!(request["externalId"], order_id.as_str());
    assert_eq!(request["currency"], "usd");
    assert_eq!(request["methodDetails"]["networkId"], "profile_test");
    assert!(
        challenge.verify(payments::MPP_SECRET),
        "the id is the SDKs' HMAC binding of the challenge"
    );

    // Asking again without paying: the same order, a challenge again, no second order.
    let again = mpp_order(&s, "mpp-1", &body, None).await;
    assert_eq!(again.status, 402);
    assert_eq!(again.body["order_id"], order_id.as_str());

    let paid = mpp_order(
        &s,
        "mpp-1",
        &body,
        Some(&credential(&challenge, "spt_good_1")),
    )
    .await;
    assert_eq!(paid.status, 201, "{:?}", paid.body);
    let order = &paid.body["data"]["order"];
    assert_eq!(order["id"], order_id.as_str());
    assert_eq!(order["status"], "fulfilled");
    assert_eq!(order["payment_method"], "mpp");
    let receipt = mpp::parse_receipt(paid.header("payment-receipt").expect("a receipt")).unwrap();
    assert!(receipt.is_success());
    let intents = stripe.payment_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(receipt.reference, intents[0]["id"].as_str().unwrap());
    assert_eq!(intents[0]["amount"], order["total_minor"]);
    assert_eq!(
        intents[0]["metadata"]["mpp_challenge_id"],
        challenge.id.as_str()
    );

    // The identical paid retry replays; the credential is not spent twice.
    let replay = mpp_order(
        &s,
        "mpp-1",
        &body,
        Some(&credential(&challenge, "spt_good_1")),
    )
    .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(stripe.payment_intents().len(), 1);

    // The same credential on another order is refused: it was bound to this one.
    let other = mpp_order(
        &s,
        "mpp-2",
        &body,
        Some(&credential(&challenge, "spt_good_2")),
    )
    .await;
    assert_eq!(other.status, 402, "{:?}", other.body);
    assert_eq!(other.code(), "invalid-challenge");
    assert_eq!(other.body["credential_status"], "rejected");
    assert_ne!(other.body["order_id"], order_id.as_str());
    assert_eq!(stripe.payment_intents().len(), 1);
}

dual_test!(a_declined_token_is_rejected_with_a_fresh_challenge_and_no_charge);
async fn a_declined_token_is_rejected_with_a_fresh_challenge_and_no_charge(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let body = search("decline");
    let first = mpp_order(&s, "mpp-d", &body, None).await;
    let challenge = challenge_of(&first);
    for token in ["spt_decline_1", "spt_requires_payment_method_1"] {
        let r = mpp_order(&s, "mpp-d", &body, Some(&credential(&challenge, token))).await;
        assert_eq!(r.status, 402, "{:?}", r.body);
        assert_eq!(r.body["credential_status"], "rejected");
        assert!(r.body["reason"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(r.code(), "verification-failed");
        challenge_of(&r);
    }
    assert!(stripe
        .payment_intents()
        .iter()
        .all(|pi| pi["status"] != "succeeded"));
    let status = mpp_order(&s, "mpp-d", &body, None).await;
    assert_eq!(status.status, 402, "still unpaid, still payable");
    let fresh = challenge_of(&status);
    let ok = mpp_order(&s, "mpp-d", &body, Some(&credential(&fresh, "spt_fine"))).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
}

dual_test!(malformed_tampered_and_expired_credentials_get_their_problem_codes);
async fn malformed_tampered_and_expired_credentials_get_their_problem_codes(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let body = search("garbage");
    let first = mpp_order(&s, "mpp-g", &body, None).await;
    let challenge = challenge_of(&first);
    let huge = format!("Payment {}", "A".repeat(70_000));
    for garbage in [
        "Payment",
        "Payment !!!",
        "Payment eyJub3QiOiJqc29uIn0",
        huge.as_str(),
    ] {
        let r = mpp_order(&s, "mpp-g", &body, Some(garbage)).await;
        assert!(
            r.status == 402 || r.status == 431 || r.status == 400,
            "{garbage:.20}: {}",
            r.status
        );
        if r.status == 402 {
            assert_eq!(r.code(), "malformed-credential", "{:?}", r.body);
        }
    }
    // A tampered amount breaks the HMAC binding.
    let mut tampered = challenge.clone();
    let mut request: Value = tampered.request.decode().unwrap();
    request["amount"] = json!("0");
    tampered.request = mpp::Base64UrlJson::from_value(&request).unwrap();
    let r = mpp_order(&s, "mpp-g", &body, Some(&credential(&tampered, "spt_x"))).await;
    assert_eq!(r.code(), "invalid-challenge", "{:?}", r.body);
    // A different body on the same key is another request.
    let r = mpp_order(
        &s,
        "mpp-g",
        &search("other"),
        Some(&credential(&challenge, "spt_x")),
    )
    .await;
    assert_eq!(r.status, 422);
    // The storefront's clock passes the challenge's expiry.
    s.clock.advance(chrono::Duration::minutes(10));
    let r = mpp_order(
        &s,
        "mpp-g",
        &body,
        Some(&credential(&challenge, "spt_late")),
    )
    .await;
    assert_eq!(r.code(), "payment-expired", "{:?}", r.body);
    assert!(
        stripe.payment_intents().is_empty(),
        "nothing reached Stripe"
    );
}

dual_test!(fifty_concurrent_paid_retries_make_one_payment_intent_and_one_order);
async fn fifty_concurrent_paid_retries_make_one_payment_intent_and_one_order(backend: Backend) {
    let (s, stripe) = payments::start(&backend).await;
    let body = search("race");
    let first = mpp_order(&s, "mpp-race", &body, None).await;
    let auth = credential(&challenge_of(&first), "spt_race");
    let s = std::sync::Arc::new(s);
    let replies = futures::future::join_all((0..50).map(|_| {
        let s = s.clone();
        let body = body.clone();
        let auth = auth.clone();
        async move { mpp_order(&s, "mpp-race", &body, Some(&auth)).await }
    }))
    .await;
    let mut created = 0;
    for r in &replies {
        match r.status.as_u16() {
            201 => created += 1,
            409 => assert_eq!(r.code(), "idempotency_in_progress"),
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!(created >= 1);
    assert_eq!(stripe.payment_intents().len(), 1);
    let ids: std::collections::BTreeSet<_> = replies
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.body["data"]["order"]["id"].clone().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one order");
}

dual_test!(without_stripe_card_and_mpp_are_unavailable_and_not_offered);
async fn without_stripe_card_and_mpp_are_unavailable_and_not_offered(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.order(None, "card-x", &card_search("x")).await;
    assert_eq!(r.status, 503);
    let r = mpp_order(&s, "mpp-x", &search("x"), None).await;
    assert_eq!(r.status, 503);
    let manifest = s.get("/.well-known/agent-storefront.json", None).await;
    let methods: Vec<&str> = manifest.body["payment_methods"]
        .as_array()
        .expect("payment methods are listed")
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(methods, ["credit"], "unconfigured rails are not offered");
    let (s, _stripe) = payments::start(&backend).await;
    let manifest = s.get("/.well-known/agent-storefront.json", None).await;
    let methods: Vec<&str> = manifest.body["payment_methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(methods, ["credit", "card", "mpp"]);
}
