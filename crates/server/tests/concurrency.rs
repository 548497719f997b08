//! Under any number of concurrent identical requests, exactly one order and one charge exist.

mod common;

use common::{vps_config, Backend, TestServer};
use serde_json::json;

async fn fire_identical(
    s: &TestServer,
    key: &str,
    body: &serde_json::Value,
    n: usize,
) -> Vec<common::Reply> {
    let requests = (0..n).map(|_| s.order(Some(key), "one-purchase", body));
    futures::future::join_all(requests).await
}

dual_test!(two_hundred_identical_async_orders_make_one_order_and_one_charge);
async fn two_hundred_identical_async_orders_make_one_order_and_one_charge(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(1_000_000).await;
    let body = json!({"product_id": "vps-micro", "configuration": vps_config()});
    let replies = fire_identical(&s, &key, &body, 200).await;
    let mut ids = std::collections::HashSet::new();
    for r in &replies {
        match r.status.as_u16() {
            202 => {
                ids.insert(r.body["data"]["order"]["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(r.code(), "idempotency_in_progress"),
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same order");
    let orders = s.get("/api/v1/orders?limit=100", Some(&key)).await;
    assert_eq!(orders.body["data"]["orders"].as_array().unwrap().len(), 1);
    let charges = s
        .ledger(&key)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "charge")
        .count();
    assert_eq!(charges, 1);
    assert_eq!(s.balance(&key).await, 1_000_000 - 2_000);
}

dual_test!(two_hundred_identical_instant_orders_make_one_order_and_one_charge);
async fn two_hundred_identical_instant_orders_make_one_order_and_one_charge(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(1_000).await;
    let body = json!({"product_id": "web-search", "configuration": {"query": "concurrency"}});
    let replies = fire_identical(&s, &key, &body, 200).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let in_progress = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(
        created + in_progress,
        200,
        "only originals, replays and in-progress answers"
    );
    assert!(created >= 1);
    let orders = s.get("/api/v1/orders", Some(&key)).await;
    assert_eq!(orders.body["data"]["orders"].as_array().unwrap().len(), 1);
    let charges = s
        .ledger(&key)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "charge")
        .count();
    assert_eq!(charges, 1);
    assert_eq!(s.balance(&key).await, 999);
}

dual_test!(concurrent_different_orders_never_overdraw);
async fn concurrent_different_orders_never_overdraw(backend: Backend) {
    let s = TestServer::start(&backend).await;
    // Credit for exactly 7 monthly VPS orders of 2000 each.
    let (_, key) = s.account(14_000).await;
    let body = json!({"product_id": "vps-micro", "configuration": vps_config()});
    let requests = (0..30).map(|i| {
        let body = body.clone();
        let key = key.clone();
        let s = &s;
        async move { s.order(Some(&key), &format!("k{i}"), &body).await }
    });
    let replies = futures::future::join_all(requests).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let refused = replies.iter().filter(|r| r.status == 402).count();
    assert_eq!((accepted, refused), (7, 23));
    assert_eq!(s.balance(&key).await, 0);
    let sum: i64 = s
        .ledger(&key)
        .await
        .iter()
        .map(|e| e["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 0, "the ledger sums to the balance");
}

// An instant credit order is placed in one unit (key, order, debit, entry and events in one
// database call): a refused debit must take back everything else the unit wrote, its key too.
dual_test!(concurrent_instant_orders_never_overdraw_and_a_refused_key_stays_free);
async fn concurrent_instant_orders_never_overdraw_and_a_refused_key_stays_free(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let body = json!({"product_id": "web-search", "configuration": {"query": "overdraw"}});
    let (_, probe) = s.account(1_000).await;
    let price = s.post("/api/v1/quotes", Some(&probe), &body).await.body["data"]["quote"]
        ["total_minor"]
        .as_i64()
        .expect("a priced quote");
    assert!(price > 0);
    // Credit for exactly 7 orders.
    let (account, key) = s.account(7 * price).await;
    let idempotency_keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let requests = idempotency_keys
        .iter()
        .map(|k| s.order(Some(&key), k, &body));
    let replies = futures::future::join_all(requests).await;
    let created: Vec<usize> = (0..30).filter(|&i| replies[i].status == 201).collect();
    let refused: Vec<usize> = (0..30)
        .filter(|&i| replies[i].status == 402 && replies[i].code() == "insufficient_credits")
        .collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!((created.len(), refused.len()), (7, 23), "{statuses:?}");
    assert_eq!(s.balance(&key).await, 0);
    let ledger = s.ledger(&key).await;
    assert_eq!(
        ledger.iter().filter(|e| e["kind"] == "charge").count(),
        7,
        "one charge per created order"
    );
    let orders = s.get("/api/v1/orders?limit=100", Some(&key)).await;
    assert_eq!(orders.body["data"]["orders"].as_array().unwrap().len(), 7);

    // A refused key recorded nothing: after a top-up, the same key places the order.
    s.app
        .admin_grant_credits(&account, price, "top-up")
        .await
        .expect("credits");
    let retried = s
        .order(Some(&key), &idempotency_keys[refused[0]], &body)
        .await;
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(s.balance(&key).await, 0);
}
