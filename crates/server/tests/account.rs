//! The account, balance, ledger and API keys (docs/api.md, "Principals", "Credit ledger",
//! "Accounts and keys").

mod common;

use common::{Backend, TestServer};
use serde_json::json;

dual_test!(the_account_balance_and_ledger_agree);
async fn the_account_balance_and_ledger_agree(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account, key) = s.account(250).await;
    let r = s.get("/api/v1/account", Some(&key)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["account"]["id"], account.as_str());
    assert_eq!(r.body["data"]["account"]["balance_minor"], 250);
    let b = s.get("/api/v1/account/balance", Some(&key)).await;
    assert_eq!(
        b.body["data"],
        json!({"credits": 250, "balance_minor": 250, "currency": "usd"})
    );
    for i in 0..4 {
        s.order(
            Some(&key),
            &format!("k{i}"),
            &json!({"product_id": "web-search", "configuration": {"query": "ledger"}}),
        )
        .await;
    }
    let ledger = s.ledger(&key).await;
    assert_eq!(ledger.len(), 5);
    let sum: i64 = ledger
        .iter()
        .map(|e| e["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(
        sum,
        s.balance(&key).await,
        "the balance is the sum of the ledger"
    );
    assert_eq!(
        ledger[0]["balance_after_minor"].as_i64().unwrap(),
        sum,
        "newest first, running balance"
    );
    let page = s.get("/api/v1/account/ledger?limit=2", Some(&key)).await;
    assert_eq!(page.body["data"]["entries"].as_array().unwrap().len(), 2);
    assert!(page.body["data"]["next_cursor"].is_string());
    let bad = s
        .get("/api/v1/account/ledger?cursor=nope", Some(&key))
        .await;
    assert_eq!((bad.status.as_u16(), bad.param()), (400, "cursor"));
}

dual_test!(an_adjustment_below_zero_is_refused_in_money_and_writes_nothing);
async fn an_adjustment_below_zero_is_refused_in_money_and_writes_nothing(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account, key) = s.account(250).await;
    let refused = s
        .app
        .admin_grant_credits(&account, -251, "correction")
        .await
        .expect_err("an adjustment cannot take the balance below zero");
    assert_eq!(refused.code.as_str(), "insufficient_credits");
    assert!(
        refused.message.contains("2.50 USD"),
        "the balance is named in money: {}",
        refused.message
    );
    assert_eq!(s.balance(&key).await, 250);
    assert_eq!(s.ledger(&key).await.len(), 1, "no entry was written");
    let entry = s
        .app
        .admin_grant_credits(&account, -250, "correction")
        .await
        .expect("an adjustment down to zero is allowed");
    assert_eq!(entry.balance_after_minor, 0);
}

dual_test!(owner_keys_are_shown_once_listed_without_secrets_and_revocable);
async fn owner_keys_are_shown_once_listed_without_secrets_and_revocable(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(0).await;
    let created = s
        .post(
            "/api/v1/account/api-keys",
            Some(&owner),
            &json!({"name": "ci"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["data"]["api_key"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("sf_live_") && secret.len() >= 8 + 43,
        "256 random bits"
    );
    let key_id = created.body["data"]["key_id"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/v1/account", Some(&secret)).await.status, 200);

    let list = s.get("/api/v1/account/api-keys", Some(&owner)).await;
    let text = list.body.to_string();
    assert!(!text.contains(&secret), "listings never carry secrets");
    assert!(!text.contains("secret_hash"));
    assert_eq!(list.body["data"]["api_keys"].as_array().unwrap().len(), 2);

    let del = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/account/api-keys/{key_id}")))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(del.status, 200);
    let after = s.get("/api/v1/account", Some(&secret)).await;
    assert_eq!(
        (after.status.as_u16(), after.code()),
        (401, "unauthorized"),
        "a revoked key stops at once"
    );
    let again = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/account/api-keys/{key_id}")))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(again.status, 404);
}

dual_test!(agent_keys_buy_but_never_manage_keys);
async fn agent_keys_buy_but_never_manage_keys(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(100).await;
    let created = s
        .post(
            "/api/v1/account/api-keys",
            Some(&owner),
            &json!({"role": "agent", "name": "bot"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let agent = created.body["data"]["api_key"].as_str().unwrap().to_owned();
    let bought = s
        .order(
            Some(&agent),
            "agent-1",
            &json!({"product_id": "web-search", "configuration": {"query": "x"}}),
        )
        .await;
    assert_eq!(bought.status, 201);
    for r in [
        s.get("/api/v1/account/api-keys", Some(&agent)).await,
        s.post("/api/v1/account/api-keys", Some(&agent), &json!({}))
            .await,
    ] {
        assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    }
    let bad_role = s
        .post(
            "/api/v1/account/api-keys",
            Some(&owner),
            &json!({"role": "god"}),
        )
        .await;
    assert_eq!((bad_role.status.as_u16(), bad_role.param()), (400, "role"));
}

dual_test!(another_accounts_key_cannot_be_revoked_or_seen);
async fn another_accounts_key_cannot_be_revoked_or_seen(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, a) = s.account(0).await;
    let (_, b) = s.account(0).await;
    let keys = s.get("/api/v1/account/api-keys", Some(&a)).await;
    let a_key_id = keys.body["data"]["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/account/api-keys/{a_key_id}")))
                .bearer_auth(&b),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(s.get("/api/v1/account", Some(&a)).await.status, 200);
}

dual_test!(a_key_revoked_by_another_process_stops_here_within_the_cache_lifetime);
async fn a_key_revoked_by_another_process_stops_here_within_the_cache_lifetime(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account, owner) = s.account(0).await;
    let created = s
        .post("/api/v1/account/api-keys", Some(&owner), &json!({}))
        .await;
    let secret = created.body["data"]["api_key"].as_str().unwrap().to_owned();
    let key_id = created.body["data"]["key_id"].as_str().unwrap().to_owned();
    // This server has now seen the key and remembers it.
    assert_eq!(s.get("/api/v1/account", Some(&secret)).await.status, 200);

    // Another process on the same database (a replica: its own App, so its own cache) revokes it.
    let replica = storefront::bootstrap::build_app(
        &s.config,
        s.store.clone(),
        s.clock.clone(),
        s.base.clone(),
    )
    .await
    .unwrap();
    let account_id = storefront_app::domain::ids::AccountId::parse(&account).unwrap();
    replica
        .revoke_api_key(
            &storefront_app::Principal::Owner {
                account_id,
                key_id: None,
            },
            &key_id,
        )
        .await
        .unwrap();
    assert_eq!(
        replica
            .authenticate(&secret)
            .await
            .expect_err("the revoking process refuses it at once")
            .code
            .as_str(),
        "unauthorized"
    );

    // Here it works until the remembered entry is older than api_key_cache_seconds (5 s)...
    s.clock.advance(chrono::Duration::milliseconds(4_900));
    assert_eq!(s.get("/api/v1/account", Some(&secret)).await.status, 200);
    // ...and not a moment longer.
    s.clock.advance(chrono::Duration::milliseconds(100));
    let after = s.get("/api/v1/account", Some(&secret)).await;
    assert_eq!((after.status.as_u16(), after.code()), (401, "unauthorized"));
}
