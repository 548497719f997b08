//! Limits: rate limits per API key and per client address (`429 rate_limited` with
//! `Retry-After` and `RateLimit-*` headers; health is never limited), the connection limit with
//! the header read timeout (slowloris), the header size limit, the request time limit, and a
//! flood — after each the server keeps serving.

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

/// A raw client connection, for what no well-behaved HTTP client does.
async fn raw(s: &TestServer) -> tokio::net::TcpStream {
    let addr = s.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects")
}

/// Reads until the server answers or closes; `None` when it closed without a word.
async fn answer(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(common::binary::GUARD, stream.read(&mut buf))
        .await
        .expect("the server acts within the guard")
        .unwrap_or(0);
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_header_clients_are_cut_off_and_cannot_starve_the_server() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start_with(&Backend::Sqlite, |c| {
        c.max_connections = 20;
        c.header_read_timeout_seconds = 1;
    })
    .await;
    // Slowloris: every connection slot taken by a client that never finishes its headers.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = raw(&s).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A normal client still gets through: the slow ones are disconnected after the header
    // timeout and their slots freed.
    let ok = tokio::time::timeout(common::binary::GUARD, s.get("/healthz", None))
        .await
        .expect("served despite the slow clients");
    assert_eq!(ok.status, 200);
    for stream in &mut slow {
        let said = answer(stream).await;
        assert!(
            said.as_deref()
                .is_none_or(|a| a.starts_with("HTTP/1.1 408")),
            "a slow client is cut off: {said:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let s = TestServer::start(&Backend::Sqlite).await;
    let huge = "x".repeat(100 * 1024);
    let refused = s
        .client
        .get(s.url("/api/v1/products"))
        .header("X-Huge", huge)
        .send()
        .await;
    // hyper answers 431, or closes the connection before reading further.
    if let Ok(r) = refused {
        assert_eq!(r.status().as_u16(), 431);
    }
    assert_eq!(s.get("/api/v1/products", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_trickles_in_is_answered_at_the_time_limit() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start_with(&Backend::Sqlite, |c| {
        c.request_timeout_seconds = 1;
    })
    .await;
    let (_, key) = s.account(0).await;
    let mut stream = raw(&s).await;
    let head = format!(
        "POST /api/v1/quotes HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"product_id\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes.
    let said = answer(&mut stream).await.expect("an answer, not a hang");
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.contains("service_unavailable"), "{said}");
    assert_eq!(s.get("/healthz", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_is_rate_limited_and_leaves_the_server_serving() {
    let s = TestServer::start_with(&Backend::Sqlite, |c| {
        c.public_rate_limit_per_minute = 100;
    })
    .await;
    let (_, key) = s.account(0).await;
    let mut flood = Vec::new();
    for _ in 0..1500 {
        let client = s.client.clone();
        let url = s.url("/api/v1/products");
        flood.push(tokio::spawn(async move {
            client.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for f in flood {
        let status = f.await.unwrap().unwrap_or(0);
        *counts.entry(status).or_insert(0) += 1;
    }
    // The burst of 100, plus what refills (one every 0.6 s) while the flood lasts; every other
    // answer is a 429 — no error, no dropped connection.
    let (ok, limited) = (
        counts.get(&200).copied().unwrap_or(0),
        counts.get(&429).copied().unwrap_or(0),
    );
    assert!((100..150).contains(&ok), "{counts:?}");
    assert_eq!(ok + limited, 1500, "{counts:?}");
    // Health and callers with keys are unaffected by the flooding address.
    assert_eq!(s.get("/healthz", None).await.status, 200);
    assert_eq!(
        s.get("/api/v1/account/balance", Some(&key)).await.status,
        200
    );
}

dual_test!(an_address_that_keeps_failing_authentication_is_refused_before_keys_are_looked_up);
async fn an_address_that_keeps_failing_authentication_is_refused_before_keys_are_looked_up(
    backend: Backend,
) {
    let s = TestServer::start_with(&backend, |c| c.failed_auth_per_minute = 5).await;
    let (_, key) = s.account(0).await;
    // Valid keys never count as failures.
    for _ in 0..20 {
        assert_eq!(
            s.get("/api/v1/account/balance", Some(&key)).await.status,
            200
        );
    }
    // Guessed keys: each is a fresh bucket of its own, so only the address can stop them.
    for n in 0..5 {
        let guess = format!("sf_live_guess{n:04}");
        let r = s.get("/api/v1/account/balance", Some(&guess)).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (401, "unauthorized"),
            "guess {n}"
        );
    }
    let refused = s
        .get("/api/v1/account/balance", Some("sf_live_guess-next"))
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (429, "rate_limited")
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown, revoked or malformed API keys"));
    // While refused, no key from this address is looked up, a valid one included; calls
    // without a key and health go on.
    let valid = s.get("/api/v1/account/balance", Some(&key)).await;
    assert_eq!(valid.status, 429);
    assert_eq!(s.get("/api/v1/products", None).await.status, 200);
    assert_eq!(s.get("/healthz", None).await.status, 200);
}
