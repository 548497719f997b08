//! The event log is read in commit order (docs/events.md, "Order and cursors"): an event whose
//! transaction commits late is neither skipped nor shown out of order.
//!
//! A file of its own: while its transaction is held open, PostgreSQL readers in every database of
//! the cluster wait for it (the rule is the cluster's oldest running transaction), so it must not
//! run beside other tests that read the log; cargo runs test files one after another.

mod common;

use common::TestServer;
use serde_json::{json, Value};

async fn events(s: &TestServer, key: &str) -> Vec<Value> {
    let r = s.get("/api/v1/events", Some(key)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]["events"].as_array().unwrap().clone()
}

/// PostgreSQL, where writers run in parallel; on SQLite one writer at a time makes insert order
/// commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_skips_an_event_committed_late() {
    use sqlx::Connection;
    let Some(backend) = common::Backend::postgres() else {
        return;
    };
    let s = TestServer::start(&backend).await;
    let (account, owner) = s.account(10_000).await;
    let mut slow = sqlx::PgConnection::connect(s.config.database_url.as_deref().unwrap())
        .await
        .unwrap();
    let mut late = slow.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, account_id, agent_id, type, data, created_at)
         VALUES ('evt_00000000000000000000000000000001', $1, NULL, 'order.created', '{}', '2026-01-01T00:00:00.000Z')",
    )
    .bind(&account)
    .execute(&mut *late)
    .await
    .unwrap();
    // Another transaction commits its events while the first is still open.
    let search = json!({"product_id": "web-search", "configuration": {"query": "late"}});
    let bought = s.order(Some(&owner), "late-1", &search).await;
    assert_eq!(bought.status, 201, "{:?}", bought.body);
    let seen = events(&s, &owner).await;
    assert!(
        seen.is_empty(),
        "nothing past an open transaction is shown yet: {seen:?}"
    );
    late.commit().await.unwrap();
    let seen = events(&s, &owner).await;
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "order.created",
            "order.created",
            "order.paid",
            "order.fulfilled"
        ]
    );
    assert_eq!(seen[0]["id"], "evt_00000000000000000000000000000001");
}
