//! The event log (docs/api.md, "Events"): every order change writes its event in the same
//! transaction, in order, without secrets; owners see their account's, agents their own, and
//! nobody another account's.

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};

fn search(query: &str) -> Value {
    json!({"product_id": "web-search", "configuration": {"query": query}})
}

async fn events(s: &TestServer, key: &str, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/api/v1/events{query}"), Some(key)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]["events"].as_array().unwrap().clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

dual_test!(orders_write_their_events_in_order_and_each_key_sees_only_its_own);
async fn orders_write_their_events_in_order_and_each_key_sees_only_its_own(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, agent, agent_key) = s.agent(10_000).await;
    let bought = s.order(Some(&owner), "evt-1", &search("owner")).await;
    assert_eq!(bought.status, 201, "{:?}", bought.body);
    let order_id = bought.body["data"]["order"]["id"].as_str().unwrap();

    let all = events(&s, &owner, "").await;
    assert_eq!(
        types(&all),
        ["order.created", "order.paid", "order.fulfilled"]
    );
    for e in &all {
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(e["data"]["id"], order_id, "each event carries the order");
        assert!(
            !e.to_string().contains("sig="),
            "no signed URL in an event: {e}"
        );
    }
    assert_eq!(all[2]["data"]["status"], "fulfilled");
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "oldest first, ids in time order");

    // An escalated order of the agent waits, then is canceled: created, then canceled.
    let rule = s
        .post(
            &format!("/api/v1/agents/{agent}/rules"),
            Some(&owner),
            &json!({"kind": "category", "action": "escalate", "params": {"deny": ["search"]}}),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let waiting = s.order(Some(&agent_key), "evt-2", &search("agent")).await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    let waiting_id = waiting.body["data"]["order"]["id"].as_str().unwrap();
    let canceled = s
        .post(
            &format!("/api/v1/orders/{waiting_id}/cancel"),
            Some(&owner),
            &json!({}),
        )
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);

    let mine = events(&s, &agent_key, "").await;
    assert_eq!(
        types(&mine),
        [
            "order.created",
            "approval.requested",
            "order.canceled",
            "approval.resolved"
        ],
        "the agent's own"
    );
    assert_eq!(mine[0]["data"]["id"], waiting_id);
    assert_eq!(mine[1]["data"]["order_id"], waiting_id);
    assert_eq!(mine[1]["data"]["status"], "pending");
    // What the owner needs to decide from a notification alone.
    let asked = &mine[1]["data"];
    assert_eq!(asked["agent_name"], "buyer");
    assert_eq!(asked["product_id"], "web-search");
    assert!(asked["product_name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let minor = asked["amount_minor"].as_i64().unwrap();
    let display = asked["amount_display"].as_str().unwrap();
    assert!(
        display.contains(&format!("{}.{:02}", minor / 100, minor % 100)),
        "{display} for {minor}"
    );
    assert!(asked["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let review = asked["review_url"].as_str().unwrap();
    assert!(review.starts_with(&s.base), "{review}");
    let approval_id = asked["id"].as_str().unwrap();
    assert!(
        review.ends_with(&format!("#approval-{approval_id}")),
        "{review}"
    );
    assert_eq!(mine[3]["data"]["status"], "denied");
    let account = events(&s, &owner, "").await;
    assert_eq!(account.len(), 7, "the owner sees the whole account");

    // Paging with `after`, filtering by type.
    let page = s.get("/api/v1/events?limit=2", Some(&owner)).await;
    let next = page.body["data"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = events(&s, &owner, &format!("?after={next}")).await;
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[0]["id"], account[2]["id"]);
    let finished = events(&s, &owner, "?type=order.fulfilled,order.canceled").await;
    assert_eq!(types(&finished), ["order.fulfilled", "order.canceled"]);

    // Another account sees nothing of this one, and cannot page from its events; bad
    // parameters are named.
    let (_, stranger) = s.account(0).await;
    assert!(events(&s, &stranger, "").await.is_empty());
    let foreign = s
        .get(&format!("/api/v1/events?after={next}"), Some(&stranger))
        .await;
    assert_eq!((foreign.status.as_u16(), foreign.param()), (400, "after"));
    for (query, param) in [("?type=order.teleported", "type"), ("?after=nope", "after")] {
        let r = s.get(&format!("/api/v1/events{query}"), Some(&owner)).await;
        assert_eq!((r.status.as_u16(), r.param()), (400, param), "{query}");
    }
    assert_eq!(s.get("/api/v1/events", None).await.status, 401);

    // The kill switch and its lifting are events of the agent.
    for (path, body) in [
        ("kill-switch", json!({"confirm": true, "reason": "test"})),
        ("reactivate", json!({})),
    ] {
        let r = s
            .post(
                &format!("/api/v1/agents/{agent}/{path}"),
                Some(&owner),
                &body,
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    let agent_events = events(&s, &owner, "?type=agent.suspended,agent.reactivated").await;
    assert_eq!(
        types(&agent_events),
        ["agent.suspended", "agent.reactivated"]
    );
    assert_eq!(agent_events[0]["data"]["id"], agent.as_str());
    assert_eq!(agent_events[0]["data"]["status"], "suspended");
    assert_eq!(agent_events[1]["data"]["status"], "active");
    assert_eq!(
        types(&events(&s, &agent_key, "?type=agent.suspended").await),
        ["agent.suspended"],
        "the agent sees its own"
    );
}

dual_test!(a_charge_below_the_accounts_threshold_writes_balance_low_once);
async fn a_charge_below_the_accounts_threshold_writes_balance_low_once(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (owner, _, agent_key) = s.agent(10_000).await;
    let patch = |key: &str, body: Value| {
        s.send(
            s.client
                .patch(s.url("/api/v1/account"))
                .bearer_auth(key)
                .json(&body),
        )
    };
    let refused = patch(&agent_key, json!({"balance_low_minor": 100})).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let bad = patch(&owner, json!({"balance_low_minor": 0})).await;
    assert_eq!(
        (bad.status.as_u16(), bad.param()),
        (400, "balance_low_minor")
    );

    let first = s.order(Some(&owner), "low-1", &search("one")).await;
    let total = first.body["data"]["order"]["total_minor"].as_i64().unwrap();
    assert!(total > 0);
    // The next charge takes the balance from the threshold to just below it.
    let threshold = s.balance(&owner).await - total + 1;
    let set = patch(&owner, json!({"balance_low_minor": threshold})).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["data"]["account"]["balance_low_minor"], threshold);
    assert!(events(&s, &owner, "?type=balance.low").await.is_empty());

    s.order(Some(&owner), "low-2", &search("two")).await;
    s.order(Some(&owner), "low-3", &search("three")).await;
    let low = events(&s, &owner, "?type=balance.low").await;
    assert_eq!(low.len(), 1, "only the charge that crossed: {low:?}");
    assert_eq!(low[0]["data"]["threshold_minor"], threshold);
    assert_eq!(
        low[0]["data"]["balance_minor"].as_i64().unwrap(),
        threshold - 1
    );

    // Turned off with null; a field left out changes nothing.
    let unchanged = patch(&owner, json!({})).await;
    assert_eq!(
        unchanged.body["data"]["account"]["balance_low_minor"],
        threshold
    );
    let off = patch(&owner, json!({"balance_low_minor": null})).await;
    assert!(off.body["data"]["account"]["balance_low_minor"].is_null());
}
