//! Rate limits: per API key and per client address, `429 rate_limited` with `Retry-After` and
//! `RateLimit-*` headers; health is never limited.

mod common;

use common::{Backend, TestServer};

dual_test!(keys_and_addresses_have_their_own_buckets_and_health_is_never_limited);
async fn keys_and_addresses_have_their_own_buckets_and_health_is_never_limited(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit_per_minute = 3;
        c.public_rate_limit_per_minute = 2;
    })
    .await;
    let (_, key) = s.account(0).await;
    let (_, other) = s.account(0).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = s.get("/api/v1/account/balance", Some(&key)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        remaining.push(
            r.header("ratelimit-remaining")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_eq!(
        remaining,
        [2, 1, 0],
        "the bucket drains one request at a time"
    );
    let refused = s.get("/api/v1/account/balance", Some(&key)).await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (429, "rate_limited")
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    // Another key has its own bucket.
    assert_eq!(
        s.get("/api/v1/account/balance", Some(&other)).await.status,
        200
    );

    // Without a key, the client's address is the bucket.
    for _ in 0..2 {
        assert_eq!(s.get("/api/v1/products", None).await.status, 200);
    }
    assert_eq!(s.get("/api/v1/products", None).await.status, 429);
    for _ in 0..10 {
        assert_eq!(s.get("/healthz", None).await.status, 200);
    }
}

dual_test!(the_agent_policy_states_the_limits_in_force);
async fn the_agent_policy_states_the_limits_in_force(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit_per_minute = 77;
        c.public_rate_limit_per_minute = 11;
    })
    .await;
    let policy = s.get("/agent-policy.json", None).await;
    assert_eq!(policy.body["rate_limits"]["per_api_key_per_minute"], 77);
    assert_eq!(
        policy.body["rate_limits"]["per_address_per_minute_without_key"],
        11
    );
}
