//! The event log is read in commit order (docs/events.md, "Order and cursors"): a reader that
//! keeps continuing after the last event it saw, while many requests of one account commit at
//! once, sees exactly the log as it stands at the end — nothing skipped, nothing twice, nothing
//! out of order.

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};

async fn page(s: &TestServer, key: &str, after: Option<&str>) -> Vec<Value> {
    let query = match after {
        Some(id) => format!("/api/v1/events?limit=100&after={id}"),
        None => "/api/v1/events?limit=100".to_owned(),
    };
    let r = s.get(&query, Some(key)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]["events"].as_array().unwrap().clone()
}

dual_test!(a_reader_following_the_log_during_concurrent_writes_misses_nothing);
async fn a_reader_following_the_log_during_concurrent_writes_misses_nothing(backend: Backend) {
    // The follower reads as fast as it can: no rate limit (limits have their own test).
    let s = TestServer::start_with(&backend, |c| c.rate_limit_per_minute = 0).await;
    let (_, owner) = s.account(1_000_000).await;
    let (writers, orders_each) = (8, 10);
    let expected = writers * orders_each * 3; // created, paid, fulfilled

    let done = std::sync::atomic::AtomicBool::new(false);
    let buying = async {
        let writers = (0..writers).map(|w| {
            let (s, owner) = (&s, owner.clone());
            async move {
                for i in 0..orders_each {
                    let body = json!({"product_id": "web-search", "configuration": {"query": format!("q{w}-{i}")}});
                    let r = s.order(Some(&owner), &format!("order-{w}-{i}"), &body).await;
                    assert_eq!(r.status, 201, "{:?}", r.body);
                }
            }
        });
        futures::future::join_all(writers).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    // Follows the log while the writers run, then reads what is left once they are done.
    let following = async {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            for e in page(&s, &owner, seen.last().map(String::as_str)).await {
                seen.push(e["id"].as_str().unwrap().to_owned());
            }
            if finished
                && page(&s, &owner, seen.last().map(String::as_str))
                    .await
                    .is_empty()
            {
                return seen;
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), seen) = tokio::join!(buying, following);

    let mut log: Vec<String> = Vec::new();
    loop {
        let next = page(&s, &owner, log.last().map(String::as_str)).await;
        if next.is_empty() {
            break;
        }
        log.extend(next.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(log.len(), expected);
    assert_eq!(seen.len(), log.len(), "the follower missed events");
    assert_eq!(seen, log, "the follower saw the log exactly, in its order");
}
