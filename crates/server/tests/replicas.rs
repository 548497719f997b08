//! Several `storefront serve` processes on one PostgreSQL database keep the guarantees of one:
//! one order per idempotency key, one charge per order, no overdraft.

mod common;

use common::binary::{admin, start, terminate};
use common::Backend;
use serde_json::Value;
use std::collections::HashSet;

const VPS: &str = r#"{"product_id": "vps-micro", "configuration": {"hostname": "replica-test", "region": "local", "image": "debian-12", "billing_term_months": 1}}"#;

async fn post_order(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    idempotency_key: &str,
) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .header("content-type", "application/json")
        .body(VPS)
        .send()
        .await
        .expect("request reaches a replica");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_json(client: &reqwest::Client, url: String, key: &str) -> Value {
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_database() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database_url(dir.path()).await;
    let db = Some(db.as_str());
    let a = start(dir.path(), db, &["--role", "api"]).await;
    let b = start(dir.path(), db, &["--role", "api"]).await;
    let (ok, out, err) = admin(
        dir.path(),
        db,
        &[
            "create-account",
            "--email",
            "r@example.com",
            "--name",
            "Replicas",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let account = created["account_id"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    // Exactly 13 monthly VPS orders of 2000 fit, plus 2000 for the identical-request storm.
    let (ok, _, _) = admin(
        dir.path(),
        db,
        &[
            "grant-credits",
            "--account",
            account,
            "--amount-minor",
            "28000",
            "--reason",
            "test",
        ],
    )
    .await;
    assert!(ok);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let bases = [a.base.clone(), b.base.clone()];

    // 500 identical requests split between the replicas.
    let storm = (0..500).map(|i| post_order(&client, &bases[i % 2], &key, "storm-1"));
    let replies = futures::future::join_all(storm).await;
    let mut order_ids = HashSet::new();
    for (status, body) in &replies {
        match status {
            202 => {
                order_ids.insert(body["data"]["order"]["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["error"]["code"], "idempotency_in_progress"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        order_ids.len(),
        1,
        "originals and replays all name one order"
    );

    // 60 different orders, credit for 13 of them.
    let keys: Vec<String> = (0..60).map(|i| format!("rush-{i}")).collect();
    let rush = keys
        .iter()
        .enumerate()
        .map(|(i, k)| post_order(&client, &bases[i % 2], &key, k));
    let replies = futures::future::join_all(rush).await;
    let accepted = replies.iter().filter(|(s, _)| *s == 202).count();
    let refused = replies
        .iter()
        .filter(|(s, b)| *s == 402 && b["error"]["code"] == "insufficient_credits")
        .count();
    assert_eq!((accepted, refused), (13, 47));

    let balance: Value = get_json(
        &client,
        format!("{}/api/v1/account/balance", bases[1]),
        &key,
    )
    .await;
    assert_eq!(
        balance["data"]["balance_minor"], 0,
        "no overdraft, nothing left over"
    );
    let orders: Value = get_json(
        &client,
        format!("{}/api/v1/orders?limit=100", bases[0]),
        &key,
    )
    .await;
    assert_eq!(orders["data"]["orders"].as_array().unwrap().len(), 14);
    let ledger: Value = get_json(
        &client,
        format!("{}/api/v1/account/ledger?limit=100", bases[0]),
        &key,
    )
    .await;
    let entries = ledger["data"]["entries"].as_array().unwrap();
    let charges = entries.iter().filter(|e| e["kind"] == "charge").count();
    assert_eq!(charges, 14, "one charge per order");
    let sum: i64 = entries
        .iter()
        .map(|e| e["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 0, "the ledger sums to the balance");
    assert!(terminate(a).await.success());
    assert!(terminate(b).await.success());
}
