//! The HTTP edge: envelope, request ids, body limits, content types, fallbacks, health.

mod common;

use common::{Backend, TestServer};
use serde_json::json;

dual_test!(every_response_carries_a_request_id_and_echoes_the_clients);
async fn every_response_carries_a_request_id_and_echoes_the_clients(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/api/v1/products", None).await;
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    let r = s
        .send(
            s.client
                .get(s.url("/api/v1/nothing"))
                .header("x-request-id", "trace-me-42"),
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-me-42"));
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
}

dual_test!(malformed_json_wrong_content_type_and_oversize_bodies_get_the_contract_errors);
async fn malformed_json_wrong_content_type_and_oversize_bodies_get_the_contract_errors(
    backend: Backend,
) {
    let s = TestServer::start(&backend).await;
    let r = s
        .send(
            s.client
                .post(s.url("/api/v1/quotes"))
                .header("content-type", "application/json")
                .body("{\"product_id\": "),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "malformed_json"));
    let r = s
        .send(
            s.client
                .post(s.url("/api/v1/quotes"))
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code(), r.param()),
        (400, "validation_error", "Content-Type")
    );
    let big = "x".repeat(70 * 1024);
    let r = s
        .post("/api/v1/quotes", None, &json!({"product_id": big}))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (413, "payload_too_large"));
    let r = s
        .send(
            s.client
                .post(s.url("/api/v1/quotes"))
                .header("content-type", "application/json")
                .body("[1,2]"),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.param()), (400, "body"));
}

dual_test!(keys_are_required_where_credit_is_involved_and_bad_keys_are_refused);
async fn keys_are_required_where_credit_is_involved_and_bad_keys_are_refused(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/api/v1/account", None).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "unauthorized"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s
        .get("/api/v1/account", Some("sf_live_not-a-real-key"))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "unauthorized"));
    let r = s.order(None, "k1", &json!({"product_id": "web-search", "configuration": {"query": "x"}, "payment_method": "credit"})).await;
    assert_eq!(
        (r.status.as_u16(), r.code(), r.param()),
        (401, "unauthorized", "payment_method"),
        "public agents never spend credit"
    );
}

dual_test!(unknown_methods_and_routes_answer_in_the_envelope);
async fn unknown_methods_and_routes_answer_in_the_envelope(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.send(s.client.delete(s.url("/api/v1/products"))).await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(r.body["ok"], false);
}

dual_test!(health_and_readiness);
async fn health_and_readiness(backend: Backend) {
    let s = TestServer::start(&backend).await;
    assert_eq!(s.get("/healthz", None).await.status, 200);
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ready");
}

dual_test!(metrics_count_requests_by_route_template);
async fn metrics_count_requests_by_route_template(backend: Backend) {
    let s = TestServer::start(&backend).await;
    assert_eq!(s.get("/api/v1/products/web-search", None).await.status, 200);
    let m = s.get("/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.body.as_str().unwrap();
    // Other tests of this process share the recorder (and may count other statuses on the
    // same route): look for this request's line.
    let line = text.lines().find(|l| {
        l.starts_with("storefront_http_requests_total")
            && l.contains("route=\"/api/v1/products/{product_id}\"")
            && l.contains("status=\"200\"")
    });
    assert!(
        line.is_some(),
        "no request counter for the route template and status in:\n{text}"
    );
    assert!(
        !text.contains("/api/v1/products/web-search"),
        "raw paths (which carry ids) are not labels"
    );
}

dual_test!(metrics_label_a_made_up_method_as_other);
async fn metrics_label_a_made_up_method_as_other(backend: Backend) {
    let s = TestServer::start(&backend).await;
    // Any token is a valid method on the wire; each must not become a time series of its own.
    let made_up = reqwest::Method::from_bytes(b"BREW").unwrap();
    let reply = s
        .send(s.client.request(made_up, s.url("/api/v1/products")))
        .await;
    assert_eq!(reply.status, 405, "{:?}", reply.body);
    let text = s.get("/metrics", None).await.body;
    let text = text.as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("storefront_http_requests_total")
                && l.contains("method=\"OTHER\"")
                && l.contains("status=\"405\"")),
        "no OTHER method line in:\n{text}"
    );
    assert!(
        !text.contains("BREW"),
        "the made-up method is a label:\n{text}"
    );
}

dual_test!(metrics_describe_themselves_and_report_the_backlog);
async fn metrics_describe_themselves_and_report_the_backlog(backend: Backend) {
    let s = TestServer::start(&backend).await;
    assert_eq!(s.get("/api/v1/products", None).await.status, 200);
    // No worker runs in this server: a job due now waits, and waits longer as time passes.
    s.app
        .enqueue_job("metrics.probe", json!({}), 1)
        .await
        .unwrap();
    s.clock.advance(chrono::Duration::seconds(90));
    let text = s.get("/metrics", None).await.body;
    let text = text.as_str().unwrap();
    for described in [
        "storefront_http_requests_total",
        "storefront_http_request_duration_seconds",
        "storefront_services",
        "storefront_jobs_due",
        "storefront_oldest_due_job_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {described} ")),
            "no HELP for {described}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {described} ")),
            "no TYPE for {described}"
        );
    }
    assert!(text.contains("# TYPE storefront_http_request_duration_seconds histogram"));
    assert!(text.contains("storefront_http_request_duration_seconds_bucket{"));
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    assert_eq!(value("storefront_services{status=\"active\"}"), 0.0);
    assert!(value("storefront_jobs_due ") >= 1.0);
    assert!(value("storefront_oldest_due_job_seconds ") >= 90.0);
}

dual_test!(a_metrics_token_closes_metrics_to_everyone_else);
async fn a_metrics_token_closes_metrics_to_everyone_else(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.metrics_token = Some("scrape-secret-1".into());
    })
    .await;
    assert_eq!(s.get("/metrics", None).await.status, 401);
    assert_eq!(s.get("/metrics", Some("wrong")).await.status, 401);
    let allowed = s.get("/metrics", Some("scrape-secret-1")).await;
    assert_eq!(allowed.status, 200);
    assert!(allowed.body.as_str().unwrap().contains("# TYPE "));
}

dual_test!(ambiguous_requests_are_refused_before_anything_is_bought);
async fn ambiguous_requests_are_refused_before_anything_is_bought(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(10_000).await;
    let order = |body: &'static str| {
        s.client
            .post(s.url("/api/v1/orders"))
            .bearer_auth(&owner)
            .header("content-type", "application/json")
            .body(body)
    };
    let search = r#"{"product_id": "web-search", "configuration": {"query": "x"}}"#;

    // Two idempotency keys: which one would a retry use?
    let r = s
        .send(
            order(search)
                .header("Idempotency-Key", "first")
                .header("Idempotency-Key", "second"),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "validation_error"));
    assert_eq!(r.param(), "Idempotency-Key");

    // A member twice: the last one would win silently, inside the configuration or at the top.
    for (n, body, param) in [
        (
            1,
            r#"{"product_id": "web-search", "configuration": {"query": "cheap", "query": "dear"}}"#,
            "configuration.query",
        ),
        (
            2,
            r#"{"product_id": "web-search", "product_id": "bare-linux-machine", "configuration": {}}"#,
            "product_id",
        ),
    ] {
        let r = s
            .send(order(body).header("Idempotency-Key", format!("dup-{n}")))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (400, "validation_error"),
            "{:?}",
            r.body
        );
        assert_eq!(r.param(), param);
    }
    // A value that equals a member name is no duplicate.
    let r = s
        .send(
            s.client
                .post(s.url("/api/v1/quotes"))
                .header("content-type", "application/json")
                .body(r#"{"product_id": "web-search", "configuration": {"query": "product_id"}}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    assert_eq!(s.balance(&owner).await, 10_000, "nothing was bought");
    let orders = s.get("/api/v1/orders", Some(&owner)).await;
    assert_eq!(orders.body["data"]["orders"], json!([]));
}

dual_test!(the_kill_switch_asks_for_a_key_before_reading_the_body);
async fn the_kill_switch_asks_for_a_key_before_reading_the_body(backend: Backend) {
    let s = TestServer::start(&backend).await;
    for path in [
        "/api/v1/agent/kill-switch",
        "/api/v1/agents/agt_x/kill-switch",
    ] {
        for body in [json!({}), json!({"confirm": "yes"}), json!([])] {
            let r = s.post(path, None, &body).await;
            assert_eq!(
                (r.status.as_u16(), r.code()),
                (401, "unauthorized"),
                "{path} {body}"
            );
        }
    }
}

/// Sends `raw` on a connection of its own and reads the whole answer (the request asks the server
/// to close the connection after it).
async fn raw_exchange(s: &TestServer, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

dual_test!(an_http_1_1_request_needs_exactly_one_host);
async fn an_http_1_1_request_needs_exactly_one_host(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let mcp = |first: &str, second: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let refusals = [
        "GET /api/v1/products HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /api/v1/products HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"
            .to_owned(),
        // Two hosts cannot smuggle a foreign one past /mcp's allow-list, in either order.
        mcp("evil.example", "127.0.0.1"),
        mcp("127.0.0.1", "evil.example"),
    ];
    for raw in &refusals {
        let answer = raw_exchange(&s, raw).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{raw:?} → {answer}");
        assert!(
            answer.contains("\"param\":\"Host\"") && answer.contains("validation_error"),
            "the envelope names Host: {answer}"
        );
    }
    // HTTP/1.0 may omit it; one Host is fine.
    let answer = raw_exchange(&s, "GET /api/v1/products HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let answer = raw_exchange(
        &s,
        "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

dual_test!(a_path_segment_that_is_not_utf8_is_answered_in_the_envelope);
async fn a_path_segment_that_is_not_utf8_is_answered_in_the_envelope(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(0).await;
    for (path, key) in [
        ("/api/v1/products/%FF%FE", None),
        ("/api/v1/orders/ord_%C3%28", Some(owner.as_str())),
    ] {
        let r = s.get(path, key).await;
        assert_eq!(
            (r.status.as_u16(), r.code(), r.param()),
            (400, "validation_error", "path"),
            "{path}: {:?}",
            r.body
        );
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
}

dual_test!(credentials_without_a_key_or_a_signature_are_unauthorized);
async fn credentials_without_a_key_or_a_signature_are_unauthorized(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(10_000).await;
    let order = s
        .order(
            Some(&owner),
            "creds-1",
            &json!({"product_id": "web-search", "configuration": {"query": "x"}}),
        )
        .await;
    let id = order.body["data"]["order"]["id"].as_str().unwrap();
    let path = format!("/api/v1/orders/{id}/credentials");
    let r = s.get(&path, None).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (401, "unauthorized"),
        "{:?}",
        r.body
    );
    // A signature that is there but wrong stays a signature error.
    let r = s
        .get(&format!("{path}?expires=4102444800&sig=AAAA"), None)
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "invalid_signature"));
}

dual_test!(signed_urls_are_accepted_in_their_one_canonical_form);
async fn signed_urls_are_accepted_in_their_one_canonical_form(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(10_000).await;
    let order = s
        .order(
            Some(&owner),
            "signed-1",
            &json!({"product_id": "web-search", "configuration": {"query": "x"}}),
        )
        .await;
    let status_url = order.body["data"]["order"]["status_url"].as_str().unwrap();
    let (path, query) = status_url.split_once('?').unwrap();
    let (expires, sig) = query.split_once('&').unwrap();
    let (expires, sig) = (
        expires.strip_prefix("expires=").unwrap(),
        sig.strip_prefix("sig=").unwrap(),
    );
    assert_eq!(s.get(status_url, None).await.status, 200, "as handed out");
    let spelled_otherwise = [
        format!("{path}?expires={expires}&sig={sig}&sig={sig}"),
        format!("{path}?expires={expires}&sig=AAAA&sig={sig}"),
        format!("{path}?sig={sig}&expires={expires}"),
        format!("{path}?expires=0{expires}&sig={sig}"),
        format!(
            "{path}?expires=%3{}{}&sig={sig}",
            &expires[..1],
            &expires[1..]
        ),
        format!("{path}?expires={expires}&sig={sig}&extra=1"),
        format!("{path}?expires={expires}"),
    ];
    for url in &spelled_otherwise {
        let r = s.get(url, None).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "invalid_signature"),
            "{url}"
        );
    }
}
