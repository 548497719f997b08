//! Governance (docs/api.md, "Governance"; so far): agents, agent keys, rules, the agent's
//! pre-action check, and the same rules gating the storefront's own orders — with budgets that hold
//! under concurrency.

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;

fn search(query: &str) -> Value {
    json!({"product_id": "web-search", "configuration": {"query": query, "max_results": 1}})
}

/// An agent of a new account with `credits`: (owner key, agent id, agent key).
async fn agent(s: &TestServer, credits: i64) -> (String, String, String) {
    s.agent(credits).await
}

async fn rule(s: &TestServer, owner: &str, agent: &str, body: Value) -> Value {
    let r = s
        .post(&format!("/api/v1/agents/{agent}/rules"), Some(owner), &body)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["data"]["rule"].clone()
}

dual_test!(owners_manage_agents_and_rules_and_agents_cannot);
async fn owners_manage_agents_and_rules_and_agents_cannot(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, agent_key) = agent(&s, 0).await;
    let first = rule(
        &s,
        &owner,
        &id,
        json!({"kind": "per_transaction_cap", "name": "small only", "params": {"max_minor": 500}}),
    )
    .await;
    assert_eq!(first["code"], "SF-001");
    assert_eq!(first["action"], "deny");
    let second = rule(&s, &owner, &id, json!({"kind": "escalate_above", "params": {"amount_minor": 100, "tier": 1, "timeout_seconds": 600}})).await;
    assert_eq!(second["code"], "SF-002");
    assert_eq!(second["action"], "escalate");

    for (body, param) in [
        (json!({"kind": "teleport", "params": {}}), "kind"),
        (
            json!({"kind": "budget", "params": {"period": "day", "max_minor": 0}}),
            "params.max_minor",
        ),
        (
            json!({"kind": "category", "params": {"allow": ["x"], "deny": ["x"]}}),
            "params.deny",
        ),
        (
            json!({"kind": "escalate_above", "action": "deny", "params": {"amount_minor": 5, "tier": 1, "timeout_seconds": 600}}),
            "action",
        ),
        (
            json!({"kind": "budget", "params": {"period": "day", "max_minor": "100"}}),
            "params",
        ),
    ] {
        let r = s
            .post(&format!("/api/v1/agents/{id}/rules"), Some(&owner), &body)
            .await;
        assert_eq!(
            (r.status.as_u16(), r.param()),
            (400, param),
            "{body}: {:?}",
            r.body
        );
    }
    // Agent keys never touch rules or keys; other accounts see nothing.
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/rules"),
            Some(&agent_key),
            &json!({"kind": "budget"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .post("/api/v1/account/api-keys", Some(&agent_key), &json!({}))
        .await;
    assert_eq!(r.status, 403);
    let (_, stranger) = s.account(0).await;
    let r = s
        .get(&format!("/api/v1/agents/{id}"), Some(&stranger))
        .await;
    assert_eq!(r.status, 404);

    // The agent reads its own rules; disabling one takes it out of the evaluation.
    let own = s.get("/api/v1/agent/rules", Some(&agent_key)).await;
    assert_eq!(own.body["data"]["rules"].as_array().unwrap().len(), 2);
    let off = s
        .send(
            s.client
                .patch(s.url(&format!(
                    "/api/v1/agents/{id}/rules/{}",
                    second["id"].as_str().unwrap()
                )))
                .bearer_auth(&owner)
                .json(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.body["data"]["rule"]["enabled"], false);

    // Deleting the agent revokes its key at once.
    let gone = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/agents/{id}")))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(gone.status, 200);
    let r = s.get("/api/v1/agent/rules", Some(&agent_key)).await;
    assert_eq!(r.status, 401);
}

dual_test!(the_check_endpoint_allows_denies_and_escalates_with_seed_003_spellings);
async fn the_check_endpoint_allows_denies_and_escalates_with_seed_003_spellings(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 0).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "merchant", "params": {"trusted_only": true}}),
    )
    .await;
    rule(&s, &owner, &id, json!({"kind": "escalate_above", "params": {"amount_minor": 5000, "tier": 1, "timeout_seconds": 3600}})).await;
    let stores = s
        .send(
            s.client
                .put(s.url(&format!("/api/v1/agents/{id}/stores")))
                .bearer_auth(&owner)
                .json(&json!({"trusted": ["shop.example"], "blocked": ["scam.example"]})),
        )
        .await;
    assert_eq!(stores.status, 200, "{:?}", stores.body);
    let check = |tx: Value| {
        let s = &s;
        let key = key.clone();
        async move {
            s.post(
                "/api/v1/agent/check",
                Some(&key),
                &json!({"action": "purchase", "transaction": tx}),
            )
            .await
        }
    };
    let allowed = check(json!({"amount": 19.99, "currency": "usd", "merchantName": "Shop", "merchantDomain": "shop.example"})).await;
    assert_eq!(allowed.status, 200, "{:?}", allowed.body);
    assert_eq!(allowed.body["data"]["result"], "allow");
    assert_eq!(allowed.body["data"]["evaluated_rules"], 2);
    let denied = check(json!({"amount_minor": 100, "merchant_domain": "scam.example"})).await;
    assert_eq!(denied.body["data"]["result"], "deny");
    assert_eq!(denied.body["data"]["rule_id"], "SF-001");
    let escalated = check(json!({"amount_minor": 9000, "merchant_domain": "shop.example"})).await;
    assert_eq!(escalated.body["data"]["result"], "escalate");
    assert_eq!(escalated.body["data"]["approval_required"]["tier"], 1);
    assert_eq!(
        escalated.body["data"]["approval_required"]["method"],
        "notification"
    );
    assert_eq!(escalated.body["data"]["approval_required"]["timeout"], 3600);

    let bad = check(json!({"amount": 1.234, "merchant_domain": "shop.example"})).await;
    assert_eq!(
        (bad.status.as_u16(), bad.param()),
        (400, "transaction.amount")
    );
    let bad = check(json!({"amount_minor": -5})).await;
    assert_eq!(
        (bad.status.as_u16(), bad.param()),
        (400, "transaction.amount_minor")
    );
    let bad = check(json!({"amount_minor": "5"})).await;
    assert_eq!(bad.status, 400);
    let (_, owner_only) = s.account(0).await;
    let r = s
        .post(
            "/api/v1/agent/check",
            Some(&owner_only),
            &json!({"transaction": {"amount_minor": 1}}),
        )
        .await;
    assert_eq!(r.status, 403, "only agent keys check");
}

dual_test!(agent_orders_on_the_storefront_pass_the_same_rules);
async fn agent_orders_on_the_storefront_pass_the_same_rules(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 1_000).await;
    let ok = s.order(Some(&key), "a1", &search("x")).await;
    assert_eq!(ok.status, 201, "no rules: allowed {:?}", ok.body);

    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "params": {"deny": ["search"]}}),
    )
    .await;
    let denied = s.order(Some(&key), "a2", &search("y")).await;
    assert_eq!(
        (denied.status.as_u16(), denied.code()),
        (403, "rules_denied"),
        "{:?}",
        denied.body
    );
    assert!(denied.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SF-001"));
    // The owner's own key is not an agent: no rules apply to it.
    let mine = s.order(Some(&owner), "o1", &search("z")).await;
    assert_eq!(mine.status, 201);

    let (owner2, id2, key2) = agent(&s, 1_000).await;
    rule(
        &s,
        &owner2,
        &id2,
        json!({"kind": "budget", "params": {"period": "day", "max_minor": 1}}),
    )
    .await;
    let first = s.order(Some(&key2), "m0", &search("one")).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let two = search("two");
    let capped = s.order(Some(&key2), "m1", &two).await;
    assert_eq!(
        (capped.status.as_u16(), capped.code()),
        (403, "spending_cap_exceeded"),
        "{:?}",
        capped.body
    );
    assert_eq!(
        s.balance(&key2).await,
        999,
        "a refused order charges nothing"
    );
    // The key was not consumed: once the owner lifts the cap, the same request goes through.
    let rules = s
        .get(&format!("/api/v1/agents/{id2}/rules"), Some(&owner2))
        .await;
    let rule_id = rules.body["data"]["rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let removed = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/agents/{id2}/rules/{rule_id}")))
                .bearer_auth(&owner2),
        )
        .await;
    assert_eq!(removed.status, 200);
    let retried = s.order(Some(&key2), "m1", &two).await;
    assert_eq!(retried.status, 201, "{:?}", retried.body);
}

dual_test!(a_hundred_concurrent_orders_never_exceed_a_daily_budget);
async fn a_hundred_concurrent_orders_never_exceed_a_daily_budget(backend: Backend) {
    let s = Arc::new(TestServer::start(&backend).await);
    let (owner, id, key) = agent(&s, 100_000).await;
    // web-search costs 1 minor unit per use: a budget of 37 admits exactly 37 orders.
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "budget", "params": {"period": "day", "max_minor": 37}}),
    )
    .await;
    let replies = futures::future::join_all((0..100).map(|i| {
        let s = s.clone();
        let key = key.clone();
        async move {
            s.order(Some(&key), &format!("b{i}"), &search(&format!("q{i}")))
                .await
        }
    }))
    .await;
    let mut charged = 0i64;
    for r in &replies {
        match r.status.as_u16() {
            201 => charged += r.body["data"]["order"]["total_minor"].as_i64().unwrap(),
            403 => assert_eq!(r.code(), "spending_cap_exceeded", "{:?}", r.body),
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!(charged <= 37, "charged {charged} against a budget of 37");
    assert_eq!(charged, 37, "the budget is used up, not left idle");
    assert_eq!(s.balance(&key).await, 100_000 - charged);
}

dual_test!(canceling_an_order_that_waits_for_approval_closes_the_approval);
async fn canceling_an_order_that_waits_for_approval_closes_the_approval(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 500).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "action": "escalate", "name": "ask me", "params": {"deny": ["search"]}}),
    )
    .await;
    for (n, canceler) in [(1, &owner), (2, &key)] {
        let waiting = s.order(Some(&key), &format!("c{n}"), &search("one")).await;
        assert_eq!(waiting.status, 202, "{:?}", waiting.body);
        let order_id = waiting.body["data"]["order"]["id"].as_str().unwrap();
        let approval_id = waiting.body["data"]["order"]["approval"]["approval_id"]
            .as_str()
            .unwrap();

        let canceled = s
            .post(
                &format!("/api/v1/orders/{order_id}/cancel"),
                Some(canceler),
                &json!({}),
            )
            .await;
        assert_eq!(canceled.status, 200, "{:?}", canceled.body);
        assert_eq!(canceled.body["data"]["order"]["status"], "canceled");

        // The approval is closed with the order, saying why; nothing is left pending.
        let pending = s
            .get("/api/v1/approvals?status=pending", Some(&owner))
            .await;
        assert_eq!(pending.body["data"]["approvals"], json!([]));
        let polled = s
            .get(&format!("/api/v1/agent/approval/{approval_id}"), Some(&key))
            .await;
        // The flat shape of the governance API we follow (docs/api.md, "Approvals"), with the
        // reason for the decision.
        let polled = &polled.body["data"];
        assert_eq!(polled["approval_id"], approval_id, "{polled:?}");
        assert_eq!(polled["status"], "denied");
        assert_eq!(polled["order_id"], order_id);
        assert_eq!(polled["tier"], 1);
        assert_eq!(polled["method"], "notification");
        assert_eq!(
            polled["reason"],
            "The order was canceled before a decision."
        );
        assert!(polled["decided_at"].is_string() && polled["expires_at"].is_string());
        for decision in ["approve", "deny"] {
            let late = s
                .post(
                    &format!("/api/v1/approvals/{approval_id}/{decision}"),
                    Some(&owner),
                    &json!({}),
                )
                .await;
            assert_eq!((late.status.as_u16(), late.code()), (400, "invalid_state"));
            let message = late.body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("already denied") && message.contains("order was canceled"),
                "the real reason: {message}"
            );
        }
    }
    assert_eq!(s.balance(&owner).await, 500, "nothing was charged");
}

dual_test!(escalated_orders_wait_for_the_owner_who_approves_denies_or_lets_them_expire);
async fn escalated_orders_wait_for_the_owner_who_approves_denies_or_lets_them_expire(
    backend: Backend,
) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 500).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "action": "escalate", "name": "ask me about searches", "params": {"deny": ["search"]}}),
    )
    .await;
    let worker = s
        .app
        .background_jobs(storefront_app::jobs::Worker::new(s.app.clone(), "w"));

    // 1. It waits, uncharged, naming its approval.
    let waiting = s.order(Some(&key), "e1", &search("one")).await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    let order = waiting.body["data"]["order"].clone();
    assert_eq!(order["status"], "awaiting_approval");
    assert_eq!(order["payment_status"], "unpaid");
    assert_eq!(order["approval"]["status"], "pending");
    assert_eq!(order["approval"]["tier"], 1);
    assert_eq!(s.balance(&owner).await, 500);
    let approval_id = order["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = s
        .get("/api/v1/approvals?status=pending", Some(&owner))
        .await;
    assert_eq!(
        pending.body["data"]["approvals"][0]["id"],
        approval_id.as_str()
    );
    // Agents never decide approvals; other accounts never see them.
    let r = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let (_, stranger) = s.account(0).await;
    let r = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&stranger),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);

    // 2. Approved: charged once, fulfilled by the worker.
    let approved = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(approved.body["data"]["approval"]["status"], "approved");
    while worker.run_once().await.unwrap() {}
    let order_id = order["id"].as_str().unwrap();
    let done = s
        .get(&format!("/api/v1/orders/{order_id}"), Some(&owner))
        .await;
    assert_eq!(
        done.body["data"]["order"]["status"], "fulfilled",
        "{:?}",
        done.body
    );
    assert_eq!(done.body["data"]["order"]["approval"]["status"], "approved");
    let total = order["total_minor"].as_i64().unwrap();
    assert_eq!(s.balance(&owner).await, 500 - total);
    let twice = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(
        (twice.status.as_u16(), twice.code()),
        (400, "invalid_state")
    );
    assert_eq!(
        s.balance(&owner).await,
        500 - total,
        "decided once, charged once"
    );

    // 3. Denied: canceled, nothing charged.
    let second = s.order(Some(&key), "e2", &search("two")).await;
    let second_approval = second.body["data"]["order"]["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = s
        .post(
            &format!("/api/v1/approvals/{second_approval}/deny"),
            Some(&owner),
            &json!({"reason": "not today"}),
        )
        .await;
    assert_eq!(
        denied.body["data"]["approval"]["status"], "denied",
        "{:?}",
        denied.body
    );
    assert_eq!(
        denied.body["data"]["approval"]["decision_reason"],
        "not today"
    );
    let second_id = second.body["data"]["order"]["id"].as_str().unwrap();
    let canceled = s
        .get(&format!("/api/v1/orders/{second_id}"), Some(&owner))
        .await;
    assert_eq!(canceled.body["data"]["order"]["status"], "canceled");

    // 4. Expired on the clock: the worker cancels it; a late approval is refused.
    let third = s.order(Some(&key), "e3", &search("three")).await;
    let third_approval = third.body["data"]["order"]["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.clock.advance(chrono::Duration::hours(2));
    while worker.run_once().await.unwrap() {}
    let late = s
        .post(
            &format!("/api/v1/approvals/{third_approval}/approve"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(
        (late.status.as_u16(), late.code()),
        (410, "approval_expired"),
        "{:?}",
        late.body
    );
    let third_id = third.body["data"]["order"]["id"].as_str().unwrap();
    let expired = s
        .get(&format!("/api/v1/orders/{third_id}"), Some(&owner))
        .await;
    assert_eq!(expired.body["data"]["order"]["status"], "canceled");
    assert_eq!(
        expired.body["data"]["order"]["approval"]["status"],
        "expired"
    );
    assert_eq!(s.balance(&owner).await, 500 - total);
}

dual_test!(the_kill_switch_suspends_at_once_cancels_waiting_orders_and_only_the_owner_lifts_it);
async fn the_kill_switch_suspends_at_once_cancels_waiting_orders_and_only_the_owner_lifts_it(
    backend: Backend,
) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 500).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "action": "escalate", "params": {"deny": ["search"]}}),
    )
    .await;
    let waiting = s.order(Some(&key), "k1", &search("wait")).await;
    let order_id = waiting.body["data"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let unconfirmed = s
        .post(
            "/api/v1/agent/kill-switch",
            Some(&key),
            &json!({"confirm": false}),
        )
        .await;
    assert_eq!(
        (unconfirmed.status.as_u16(), unconfirmed.param()),
        (400, "confirm")
    );
    let pulled = s
        .post(
            "/api/v1/agent/kill-switch",
            Some(&key),
            &json!({"confirm": true, "reason": "runaway loop"}),
        )
        .await;
    assert_eq!(pulled.status, 200, "{:?}", pulled.body);
    assert_eq!(pulled.body["data"]["success"], true);
    assert_eq!(pulled.body["data"]["agent_status"], "suspended");
    assert_eq!(pulled.body["data"]["active_checkouts_canceled"], 0);

    let order = s
        .get(&format!("/api/v1/orders/{order_id}"), Some(&owner))
        .await;
    assert_eq!(order.body["data"]["order"]["status"], "canceled");
    assert_eq!(order.body["data"]["order"]["approval"]["status"], "denied");
    for r in [
        s.order(Some(&key), "k2", &search("more")).await,
        s.get("/api/v1/account/balance", Some(&key)).await,
        s.post(
            "/api/v1/agent/check",
            Some(&key),
            &json!({"transaction": {"amount_minor": 1}}),
        )
        .await,
    ] {
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "kill_switch_active"),
            "{:?}",
            r.body
        );
    }
    let rules = s.get("/api/v1/agent/rules", Some(&key)).await;
    assert_eq!(rules.status, 200, "a suspended agent still reads its rules");
    let self_lift = s
        .post(
            &format!("/api/v1/agents/{id}/reactivate"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(self_lift.status, 403);

    let lifted = s
        .post(
            &format!("/api/v1/agents/{id}/reactivate"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(lifted.body["data"]["agent"]["status"], "active");
    let balance = s.get("/api/v1/account/balance", Some(&key)).await;
    assert_eq!(balance.status, 200);
    assert_eq!(s.balance(&owner).await, 500, "nothing was charged");
}

dual_test!(agents_connect_read_their_boundaries_and_poll_their_approvals);
async fn agents_connect_read_their_boundaries_and_poll_their_approvals(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 500).await;
    let put = |path: String, body: Value| {
        let s = &s;
        let owner = owner.clone();
        async move {
            s.send(s.client.put(s.url(&path)).bearer_auth(&owner).json(&body))
                .await
        }
    };
    put(
        format!("/api/v1/agents/{id}/soul"),
        json!({"soul": "# Be frugal\nAsk before big spends."}),
    )
    .await;
    put(
        format!("/api/v1/agents/{id}/stores"),
        json!({"trusted": ["Shop.Example"], "blocked": []}),
    )
    .await;
    let bad = put(
        format!("/api/v1/agents/{id}/stores"),
        json!({"trusted": ["not a domain"]}),
    )
    .await;
    assert_eq!((bad.status.as_u16(), bad.param()), (400, "trusted"));

    let connect = json!({"agentName": "Shopping Assistant", "agentType": "shopping", "platform": "claude", "capabilities": ["shopping", "payment"]});
    let first = s.post("/api/v1/agent/connect", Some(&key), &connect).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["data"]["agent"]["name"], "Shopping Assistant");
    assert_eq!(first.body["data"]["agent"]["status"], "active");
    let again = s.post("/api/v1/agent/connect", Some(&key), &connect).await;
    assert_eq!(again.status, 200);

    let soul = s.get("/api/v1/agent/soul", Some(&key)).await;
    assert!(soul.body["data"]["soul"]
        .as_str()
        .unwrap()
        .starts_with("# Be frugal"));
    let stores = s.get("/api/v1/agent/stores", Some(&key)).await;
    assert_eq!(stores.body["data"]["trusted"], json!(["shop.example"]));

    // The agent polls the approval its order waits for; another agent cannot.
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "action": "escalate", "params": {"deny": ["search"]}}),
    )
    .await;
    let waiting = s.order(Some(&key), "p1", &search("poll")).await;
    let approval_id = waiting.body["data"]["order"]["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let polled = s
        .get(&format!("/api/v1/agent/approval/{approval_id}"), Some(&key))
        .await;
    assert_eq!(
        polled.body["data"]["status"], "pending",
        "{:?}",
        polled.body
    );
    assert!(polled.body["data"]["reason"].is_null() && polled.body["data"]["decided_at"].is_null());
    let (_, _, other_key) = agent(&s, 0).await;
    let hidden = s
        .get(
            &format!("/api/v1/agent/approval/{approval_id}"),
            Some(&other_key),
        )
        .await;
    assert_eq!(hidden.status, 404);
    s.clock.advance(chrono::Duration::hours(2));
    let expired = s
        .get(&format!("/api/v1/agent/approval/{approval_id}"), Some(&key))
        .await;
    assert_eq!(expired.body["data"]["status"], "expired");

    // An agent that needs confirmation waits after its first connection.
    let careful = s
        .post(
            "/api/v1/agents",
            Some(&owner),
            &json!({"name": "careful", "requires_confirmation": true}),
        )
        .await;
    let careful_id = careful.body["data"]["agent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let careful_key = s
        .post(
            &format!("/api/v1/agents/{careful_id}/keys"),
            Some(&owner),
            &json!({}),
        )
        .await;
    let careful_key = careful_key.body["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = s
        .post("/api/v1/agent/connect", Some(&careful_key), &connect)
        .await;
    assert_eq!(pending.status, 201);
    assert_eq!(pending.body["data"]["agent"]["status"], "pending");
    let blocked = s.order(Some(&careful_key), "c1", &search("x")).await;
    assert_eq!(blocked.status, 403);
    s.post(
        &format!("/api/v1/agents/{careful_id}/reactivate"),
        Some(&owner),
        &json!({}),
    )
    .await;
    let allowed = s.order(Some(&careful_key), "c1", &search("x")).await;
    assert_eq!(allowed.status, 201, "{:?}", allowed.body);
}

async fn put_json(s: &TestServer, key: &str, path: &str, body: &Value) -> common::Reply {
    s.send(s.client.put(s.url(path)).bearer_auth(key).json(body))
        .await
}

dual_test!(seed_003_flow_connect_check_checkout_update_complete_escalate_approve_receipt);
async fn seed_003_flow_connect_check_checkout_update_complete_escalate_approve_receipt(
    backend: Backend,
) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 0).await;
    rule(&s, &owner, &id, json!({"kind": "escalate_above", "params": {"amount_minor": 10000, "tier": 1, "timeout_seconds": 600}})).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "params": {"deny": ["gambling"]}}),
    )
    .await;
    let connected = s
        .post("/api/v1/agent/connect", Some(&key), &json!({"agentName": "Shopping Assistant", "agentType": "shopping", "platform": "claude", "capabilities": ["shopping", "payment"]}))
        .await;
    assert_eq!(connected.status, 201);
    let checked = s
        .post("/api/v1/agent/check", Some(&key), &json!({"action": "purchase", "transaction": {"amount": 49.99, "currency": "USD", "merchantName": "TechShop", "merchantDomain": "techshop.com", "category": "electronics"}}))
        .await;
    assert_eq!(checked.body["data"]["result"], "allow");

    // Create → update → complete (allowed) → receipt.
    let item = json!({"name": "Wireless Headphones", "unit_amount": 4999, "quantity": 1, "sku": "WH-100", "category": "electronics"});
    let created = s
        .post("/api/v1/agent/checkout", Some(&key), &json!({"items": [item], "currency": "USD", "merchant_name": "TechShop", "merchant_domain": "techshop.com", "metadata": {"ref": "order-123"}}))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let c = &created.body["data"];
    assert_eq!(c["status"], "ready_for_payment");
    assert_eq!(c["currency"], "usd");
    assert_eq!(c["totals"][2]["amount"], 4999);
    assert!(c["line_items"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("li_"));
    let checkout_id = c["id"].as_str().unwrap().to_owned();
    let updated = put_json(&s, &key, "/api/v1/agent/checkout/update", &json!({"checkout_id": checkout_id, "items": [{"name": "Wireless Headphones", "unit_amount": 3999, "quantity": 2}]})).await;
    assert_eq!(
        updated.body["data"]["totals"][2]["amount"], 7998,
        "{:?}",
        updated.body
    );
    let completed = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": checkout_id}),
        )
        .await;
    assert_eq!(
        completed.body["data"]["status"], "approved",
        "{:?}",
        completed.body
    );
    assert!(completed.body["data"]["approval_required"].is_null());
    let mismatch = s
        .post("/api/v1/agent/checkout/receipt", Some(&key), &json!({"checkout_id": checkout_id, "receipt": {"external_id": "pi_1", "provider": "stripe", "amount_charged": 7000}}))
        .await;
    assert_eq!(
        (mismatch.status.as_u16(), mismatch.code()),
        (400, "receipt_mismatch")
    );
    let receipt = s
        .post("/api/v1/agent/checkout/receipt", Some(&key), &json!({"checkout_id": checkout_id, "receipt": {"external_id": "pi_1", "provider": "stripe", "amount_charged": 7998, "currency": "USD"}}))
        .await;
    assert_eq!(
        receipt.body["data"]["status"], "completed",
        "{:?}",
        receipt.body
    );
    assert_eq!(receipt.body["data"]["order"]["external_payment_id"], "pi_1");
    assert_eq!(
        receipt.body["data"]["order"]["checkout_session_id"],
        checkout_id.as_str()
    );
    let late = put_json(
        &s,
        &key,
        "/api/v1/agent/checkout/update",
        &json!({"checkout_id": checkout_id, "category": "x"}),
    )
    .await;
    assert_eq!(
        (late.status.as_u16(), late.code()),
        (409, "checkout_completed")
    );

    // Escalation: complete waits for the owner; the agent polls; approval → receipt.
    let big = s
        .post("/api/v1/agent/checkout", Some(&key), &json!({"items": [{"name": "Laptop", "unit_amount": 150000, "quantity": 1}], "merchant_domain": "techshop.com"}))
        .await;
    let big_id = big.body["data"]["id"].as_str().unwrap().to_owned();
    let escalated = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": big_id}),
        )
        .await;
    assert_eq!(
        escalated.body["data"]["status"], "ready_for_payment",
        "{:?}",
        escalated.body
    );
    let approval = escalated.body["data"]["approval_required"].clone();
    assert_eq!(approval["status"], "pending");
    assert_eq!(approval["timeout"], 600);
    let approval_id = approval["approval_id"].as_str().unwrap().to_owned();
    let again = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": big_id}),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "approval_pending")
    );
    let polled = s
        .get(&format!("/api/v1/agent/approval/{approval_id}"), Some(&key))
        .await;
    assert_eq!(polled.body["data"]["status"], "pending");
    assert_eq!(polled.body["data"]["checkout_id"], big_id.as_str());
    assert_eq!(
        (approval["tier"].clone(), approval["method"].clone()),
        (json!(1), json!("notification"))
    );
    let approved = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    let read = s
        .get(
            &format!("/api/v1/agent/checkout?checkout_id={big_id}"),
            Some(&key),
        )
        .await;
    assert_eq!(read.body["data"]["status"], "approved");
    let done = s
        .post("/api/v1/agent/checkout/receipt", Some(&key), &json!({"checkout_id": big_id, "receipt": {"external_id": "pi_2", "provider": "stripe", "amount_charged": 150000}}))
        .await;
    assert_eq!(done.body["data"]["status"], "completed");

    // A deny cancels; a denied approval is reported on complete.
    let denied = s
        .post("/api/v1/agent/checkout", Some(&key), &json!({"items": [{"name": "Chips", "unit_amount": 500, "quantity": 1, "category": "gambling"}]}))
        .await;
    assert_eq!(denied.body["data"]["status"], "canceled");
    assert_eq!(denied.body["data"]["rule_result"], "deny");
    let denied_id = denied.body["data"]["id"].as_str().unwrap();
    let nope = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": denied_id}),
        )
        .await;
    assert_eq!(
        (nope.status.as_u16(), nope.code()),
        (409, "checkout_not_ready")
    );

    // A denied approval is reported on complete; unknown approvals have their code.
    let denied_big = s
        .post(
            "/api/v1/agent/checkout",
            Some(&key),
            &json!({"items": [{"name": "TV", "unit_amount": 90000, "quantity": 1}]}),
        )
        .await;
    let denied_big_id = denied_big.body["data"]["id"].as_str().unwrap().to_owned();
    let esc = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": denied_big_id}),
        )
        .await;
    let esc_approval = esc.body["data"]["approval_required"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(
        &format!("/api/v1/approvals/{esc_approval}/deny"),
        Some(&owner),
        &json!({"reason": "too pricey"}),
    )
    .await;
    let after_deny = s
        .get(
            &format!("/api/v1/agent/checkout?checkout_id={denied_big_id}"),
            Some(&key),
        )
        .await;
    assert_eq!(after_deny.body["data"]["status"], "canceled");
    let polled_denied = s
        .get(
            &format!("/api/v1/agent/approval/{esc_approval}"),
            Some(&key),
        )
        .await;
    assert_eq!(polled_denied.body["data"]["status"], "denied");
    let missing = s
        .get(
            "/api/v1/agent/approval/apr_00000000000000000000000000000000",
            Some(&key),
        )
        .await;
    assert_eq!(
        (missing.status.as_u16(), missing.code()),
        (404, "approval_not_found")
    );

    // The error table: unknown, expired, limits.
    let unknown = s
        .get(
            "/api/v1/agent/checkout?checkout_id=chk_00000000000000000000000000000000",
            Some(&key),
        )
        .await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.code()),
        (404, "checkout_not_found")
    );
    let long_name = "x".repeat(201);
    for (body, param) in [
        (
            json!({"items": [{"name": long_name, "unit_amount": 1, "quantity": 1}]}),
            "items[0].name",
        ),
        (
            json!({"items": [{"name": "a", "unit_amount": 100000000, "quantity": 1}]}),
            "items[0].unit_amount",
        ),
        (
            json!({"items": [{"name": "a", "unit_amount": 0, "quantity": 1}]}),
            "items[0].unit_amount",
        ),
        (
            json!({"items": [{"name": "a", "unit_amount": 1, "quantity": 10001}]}),
            "items[0].quantity",
        ),
        (
            json!({"items": [], "metadata": {"blob": "y".repeat(11_000)}}),
            "metadata",
        ),
        (json!({"items": [], "currency": "dollars"}), "currency"),
        (json!({"items": [], "currency": "XYZ"}), "currency"),
    ] {
        let r = s.post("/api/v1/agent/checkout", Some(&key), &body).await;
        assert_eq!((r.status.as_u16(), r.param()), (400, param), "{:?}", r.body);
    }
    let r = s
        .post(
            "/api/v1/agent/checkout",
            Some(&key),
            &json!({"items": [{"name": "a", "unit_amount": "5", "quantity": 1}]}),
        )
        .await;
    assert_eq!(r.status, 400, "amounts as strings are refused");
    let r = s
        .post(
            "/api/v1/agent/checkout",
            Some(&key),
            &json!({"items": [{"name": "a", "unit_amount": 1.5, "quantity": 1}]}),
        )
        .await;
    assert_eq!(r.status, 400, "fractional minor units are refused");
    let open = s
        .post(
            "/api/v1/agent/checkout",
            Some(&key),
            &json!({"items": [{"name": "a", "unit_amount": 1, "quantity": 1}]}),
        )
        .await;
    let open_id = open.body["data"]["id"].as_str().unwrap().to_owned();
    s.clock.advance(chrono::Duration::hours(2));
    let expired = s
        .post(
            "/api/v1/agent/checkout/complete",
            Some(&key),
            &json!({"checkout_id": open_id}),
        )
        .await;
    assert_eq!(
        (expired.status.as_u16(), expired.code()),
        (410, "checkout_expired")
    );

    // The kill switch cancels open checkouts.
    let live = s
        .post(
            "/api/v1/agent/checkout",
            Some(&key),
            &json!({"items": [{"name": "a", "unit_amount": 1, "quantity": 1}]}),
        )
        .await;
    let live_id = live.body["data"]["id"].as_str().unwrap().to_owned();
    s.post(
        "/api/v1/agent/kill-switch",
        Some(&key),
        &json!({"confirm": true, "reason": "test"}),
    )
    .await;
    s.post(
        &format!("/api/v1/agents/{id}/reactivate"),
        Some(&owner),
        &json!({}),
    )
    .await;
    let after = s
        .get(
            &format!("/api/v1/agent/checkout?checkout_id={live_id}"),
            Some(&key),
        )
        .await;
    assert_eq!(after.body["data"]["status"], "canceled", "{:?}", after.body);
}

dual_test!(every_check_decision_approval_and_kill_switch_is_audited);
async fn every_check_decision_approval_and_kill_switch_is_audited(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, id, key) = agent(&s, 500).await;
    let deny = rule(
        &s,
        &owner,
        &id,
        json!({"kind": "per_transaction_cap", "params": {"max_minor": 1000}}),
    )
    .await;
    let escalate = rule(
        &s,
        &owner,
        &id,
        json!({"kind": "category", "action": "escalate", "params": {"deny": ["search"]}}),
    )
    .await;
    s.post(
        "/api/v1/agent/check",
        Some(&key),
        &json!({"transaction": {"amount_minor": 5000}}),
    )
    .await;
    let waiting = s.order(Some(&key), "au1", &search("audit")).await;
    let approval_id = waiting.body["data"]["order"]["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(
        &format!("/api/v1/approvals/{approval_id}/deny"),
        Some(&owner),
        &json!({"reason": "no"}),
    )
    .await;
    s.post(
        "/api/v1/agent/kill-switch",
        Some(&key),
        &json!({"confirm": true, "reason": "audit test"}),
    )
    .await;

    let all = s
        .get(
            &format!("/api/v1/audit?agent_id={id}&limit=100"),
            Some(&owner),
        )
        .await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let events = all.body["data"]["events"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["result"].as_str().unwrap_or("").to_owned(),
                e["rule_code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let code = |r: &Value| r["code"].as_str().unwrap().to_owned();
    assert_eq!(
        summary,
        vec![
            ("check".into(), "deny".into(), code(&deny)),
            ("order_decision".into(), "escalate".into(), code(&escalate)),
            ("approval".into(), "denied".into(), code(&escalate)),
            ("kill_switch".into(), "suspended".into(), String::new()),
        ]
    );
    // Pages continue after the cursor; other accounts see nothing; agents cannot read it.
    let first = s
        .get(
            &format!("/api/v1/audit?agent_id={id}&limit=2"),
            Some(&owner),
        )
        .await;
    let cursor = first.body["data"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = s
        .get(
            &format!("/api/v1/audit?agent_id={id}&after={cursor}"),
            Some(&owner),
        )
        .await;
    assert_eq!(rest.body["data"]["events"].as_array().unwrap().len(), 2);
    let (_, stranger) = s.account(0).await;
    let none = s.get("/api/v1/audit", Some(&stranger)).await;
    assert_eq!(none.body["data"]["events"], json!([]));
    s.post(
        &format!("/api/v1/agents/{id}/reactivate"),
        Some(&owner),
        &json!({}),
    )
    .await;
    let forbidden = s.get("/api/v1/audit", Some(&key)).await;
    assert_eq!(forbidden.status, 403);
}

async fn token(s: &TestServer, device_code: &str) -> common::Reply {
    s.post(
        "/api/v1/agent-auth/token",
        None,
        &json!({"device_code": device_code}),
    )
    .await
}

dual_test!(customer_agent_tokens_follow_the_device_flow_of_rfc_8628);
async fn customer_agent_tokens_follow_the_device_flow_of_rfc_8628(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let email = format!("customer-{}@example.com", common::uuid_like());
    let (account, owner) = s
        .app
        .admin_create_account(&email, "Customer")
        .await
        .unwrap();
    s.app
        .admin_grant_credits(account.id.as_str(), 1_000, "t")
        .await
        .unwrap();
    let owner = owner.api_key;

    let bad = s
        .post(
            "/api/v1/agent-auth/device",
            None,
            &json!({"customer_email": "nope", "agent_name": "x"}),
        )
        .await;
    assert_eq!((bad.status.as_u16(), bad.param()), (400, "customer_email"));
    let started = s
        .post(
            "/api/v1/agent-auth/device",
            None,
            &json!({"customer_email": email.to_uppercase(), "agent_name": "Travel bot"}),
        )
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let d = &started.body["data"];
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let user_code = d["user_code"].as_str().unwrap().to_owned();
    assert_eq!(d["interval"], 5);
    assert!(d["verification_uri"]
        .as_str()
        .unwrap()
        .ends_with("/dashboard/device"));

    let pending = token(&s, &device_code).await;
    assert_eq!(
        (pending.status.as_u16(), pending.code()),
        (400, "authorization_pending")
    );
    let fast = token(&s, &device_code).await;
    assert_eq!(fast.code(), "slow_down", "polled within the interval");
    s.clock.advance(chrono::Duration::seconds(11));

    // Only the owner of the customer's account sees the code.
    let (_, stranger) = s.account(0).await;
    let hidden = s
        .post(
            "/api/v1/agent-auth/decide",
            Some(&stranger),
            &json!({"user_code": user_code}),
        )
        .await;
    assert_eq!(hidden.status, 404);
    let approved = s
        .post(
            "/api/v1/agent-auth/decide",
            Some(&owner),
            &json!({"user_code": user_code.to_lowercase()}),
        )
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    let twice = s
        .post(
            "/api/v1/agent-auth/decide",
            Some(&owner),
            &json!({"user_code": user_code}),
        )
        .await;
    assert_eq!(twice.code(), "invalid_state");

    let granted = token(&s, &device_code).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.body["data"]["token_type"], "Bearer");
    let access = granted.body["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_id = granted.body["data"]["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = token(&s, &device_code).await;
    assert_eq!(
        again.code(),
        "invalid_grant",
        "a device code is exchanged once"
    );

    // The token is an agent key with default rules.
    let rules = s.get("/api/v1/agent/rules", Some(&access)).await;
    let kinds: Vec<&str> = rules.body["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["per_transaction_cap", "budget"]);
    let bought = s.order(Some(&access), "dev1", &search("device")).await;
    assert_eq!(bought.status, 201, "{:?}", bought.body);
    let agent = s
        .get(&format!("/api/v1/agents/{agent_id}"), Some(&owner))
        .await;
    assert_eq!(agent.body["data"]["agent"]["name"], "Travel bot");

    // Denied and expired codes.
    let denied = s
        .post(
            "/api/v1/agent-auth/device",
            None,
            &json!({"customer_email": email, "agent_name": "Other"}),
        )
        .await;
    let denied_code = denied.body["data"]["device_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied_user = denied.body["data"]["user_code"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(
        "/api/v1/agent-auth/decide",
        Some(&owner),
        &json!({"user_code": denied_user, "decision": "deny"}),
    )
    .await;
    assert_eq!(token(&s, &denied_code).await.code(), "access_denied");
    let late = s
        .post(
            "/api/v1/agent-auth/device",
            None,
            &json!({"customer_email": email, "agent_name": "Late"}),
        )
        .await;
    let late_code = late.body["data"]["device_code"]
        .as_str()
        .unwrap()
        .to_owned();
    s.clock.advance(chrono::Duration::minutes(11));
    assert_eq!(token(&s, &late_code).await.code(), "expired_token");
    assert_eq!(token(&s, "sf_dev_unknown").await.code(), "invalid_grant");
}

dual_test!(an_agents_lease_extension_waits_for_approval_and_is_applied_when_approved);
async fn an_agents_lease_extension_waits_for_approval_and_is_applied_when_approved(
    backend: Backend,
) {
    if common::machines::image_dir().is_none() {
        return;
    }
    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (owner, id, key) = agent(&s, 10_000).await;
    let bought = s
        .order(
            Some(&owner),
            "m",
            &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 15}}),
        )
        .await;
    let order_id = bought.body["data"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let service_id = bought.body["data"]["order"]["service_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.poll_until(&format!("/api/v1/orders/{order_id}"), Some(&owner), |b| {
        b["data"]["order"]["credentials_available"] == true
    })
    .await;
    rule(&s, &owner, &id, json!({"kind": "escalate_above", "params": {"amount_minor": 10, "tier": 1, "timeout_seconds": 600}})).await;
    let before = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&owner))
        .await;
    let expires_before = before.body["data"]["service"]["expires_at"].clone();
    let balance_before = s.balance(&owner).await;

    let extend = |key: String| {
        let s = &s;
        let service_id = service_id.clone();
        async move {
            s.send(
                s.client
                    .post(s.url(&format!("/api/v1/services/{service_id}/extend")))
                    .bearer_auth(key)
                    .header("Idempotency-Key", "ext-1")
                    .json(&json!({"additional_minutes": 15})),
            )
            .await
        }
    };
    let waiting = extend(key.clone()).await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    assert_eq!(waiting.body["data"]["status"], "awaiting_approval");
    assert_eq!(waiting.body["data"]["order"]["status"], "awaiting_approval");
    assert_eq!(
        s.balance(&owner).await,
        balance_before,
        "nothing charged while waiting"
    );
    let replay = extend(key.clone()).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let approval_id = waiting.body["data"]["order"]["approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approved = s
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    let after = s
        .get(&format!("/api/v1/services/{service_id}"), Some(&owner))
        .await;
    assert_ne!(
        after.body["data"]["service"]["expires_at"], expires_before,
        "the lease grew"
    );
    assert_eq!(
        s.balance(&owner).await,
        balance_before - 75,
        "15 minutes at 0.05 charged once"
    );
}

dual_test!(every_rule_kind_allows_denies_and_escalates_through_the_check_endpoint);
async fn every_rule_kind_allows_denies_and_escalates_through_the_check_endpoint(backend: Backend) {
    let s = TestServer::start(&backend).await;
    // (kind, params, a transaction it allows, one it objects to)
    let cases = [
        (
            "per_transaction_cap",
            json!({"max_minor": 500}),
            json!({"amount_minor": 500}),
            json!({"amount_minor": 501}),
        ),
        (
            "budget",
            json!({"period": "week", "max_minor": 500}),
            json!({"amount_minor": 500}),
            json!({"amount_minor": 501}),
        ),
        (
            "category",
            json!({"allow": ["compute"]}),
            json!({"amount_minor": 1, "category": "compute"}),
            json!({"amount_minor": 1, "category": "toys"}),
        ),
        (
            "merchant",
            json!({"trusted_only": true}),
            json!({"amount_minor": 1, "merchant_domain": "shop.example"}),
            json!({"amount_minor": 1, "merchant_domain": "other.example"}),
        ),
        (
            "product",
            json!({"deny": ["gpu"]}),
            json!({"amount_minor": 1, "product_id": "cpu"}),
            json!({"amount_minor": 1, "product_id": "gpu"}),
        ),
        (
            "escalate_above",
            json!({"amount_minor": 500, "tier": 1, "timeout_seconds": 600}),
            json!({"amount_minor": 500}),
            json!({"amount_minor": 501}),
        ),
    ];
    for (kind, params, allowed, objected) in cases {
        let actions: &[&str] = if kind == "escalate_above" {
            &["escalate"]
        } else {
            &["deny", "escalate"]
        };
        for action in actions {
            let (owner, id, key) = agent(&s, 0).await;
            put_json(
                &s,
                &owner,
                &format!("/api/v1/agents/{id}/stores"),
                &json!({"trusted": ["shop.example"]}),
            )
            .await;
            rule(
                &s,
                &owner,
                &id,
                json!({"kind": kind, "action": action, "params": params}),
            )
            .await;
            let check = |tx: Value| {
                let s = &s;
                let key = key.clone();
                async move {
                    s.post(
                        "/api/v1/agent/check",
                        Some(&key),
                        &json!({"action": "purchase", "transaction": tx}),
                    )
                    .await
                }
            };
            let ok = check(allowed.clone()).await;
            assert_eq!(
                ok.body["data"]["result"], "allow",
                "{kind} {action}: {:?}",
                ok.body
            );
            let no = check(objected.clone()).await;
            assert_eq!(
                no.body["data"]["result"], *action,
                "{kind} {action}: {:?}",
                no.body
            );
            assert_eq!(no.body["data"]["rule_id"], "SF-001");
        }
    }
    // rate: the window counts the agent's orders.
    let (owner, id, key) = agent(&s, 100).await;
    rule(
        &s,
        &owner,
        &id,
        json!({"kind": "rate", "params": {"max_transactions": 1, "per_seconds": 3600}}),
    )
    .await;
    let first = s.order(Some(&key), "r1", &search("rate")).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let second = s.order(Some(&key), "r2", &search("rate")).await;
    assert_eq!(
        (second.status.as_u16(), second.code()),
        (403, "rules_denied")
    );
    s.clock.advance(chrono::Duration::hours(2));
    let later = s.order(Some(&key), "r3", &search("rate")).await;
    assert_eq!(later.status, 201, "the window moved on");
}
