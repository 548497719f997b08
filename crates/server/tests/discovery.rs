//! Discovery documents: generated from the live catalog, so they list exactly what is for sale.

mod common;

use common::{Backend, TestServer};

dual_test!(the_manifest_and_llms_txt_list_the_live_catalog);
async fn the_manifest_and_llms_txt_list_the_live_catalog(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let m = s.get("/.well-known/agent-storefront.json", None).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.body["base_url"], s.base.as_str());
    let products = s.get("/api/v1/products?limit=100", None).await;
    let ids: Vec<&str> = products.body["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let listed: Vec<&str> = m.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids, "every product, in catalog order");
    let bare = m.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "bare-linux-machine")
        .unwrap();
    assert_eq!(bare["price_summary"], "0.99 USD + 0.05 USD per minute");
    let gpu = m.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "gpu-h100-machine")
        .unwrap();
    assert_eq!(gpu["available"], false);
    assert!(m.body["workflow"].as_array().unwrap().len() >= 5);
    let card = m.body["payment_methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "card");
    assert!(
        card.is_none(),
        "card is not configured here, so not offered"
    );
    for link in m.body["links"].as_object().unwrap().values() {
        let r = s.get(link.as_str().unwrap(), None).await;
        assert_eq!(r.status, 200, "{link} answers");
    }

    let llms = s.get("/llms.txt", None).await;
    assert!(llms
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = llms.body.as_str().unwrap();
    for id in &ids {
        assert!(text.contains(id), "llms.txt names {id}");
    }
    assert!(text.contains(&format!("curl -s {}/api/v1/products", s.base)));

    let policy = s.get("/agent-policy.json", None).await;
    assert!(
        policy.body["secrets"]["treat_as_bearer_secrets"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    let aup = s.get("/acceptable-use", None).await;
    assert!(aup
        .header("content-type")
        .unwrap()
        .starts_with("text/markdown"));
    assert!(aup.body.as_str().unwrap().starts_with("# Acceptable use"));
}

dual_test!(the_llms_txt_example_completes_a_purchase_when_run_as_written);
async fn the_llms_txt_example_completes_a_purchase_when_run_as_written(backend: Backend) {
    let s = TestServer::start(&backend).await;
    s.start_worker();
    let (_, key) = s.account(10_000).await;
    let text = s
        .get("/llms.txt", None)
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    let script = text
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("llms.txt has a shell example");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env("STOREFRONT_API_KEY", &key)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the example finishes")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orders = s.get("/api/v1/orders", Some(&key)).await;
    let order = &orders.body["data"]["orders"][0];
    assert_eq!(order["status"], "fulfilled", "the example bought something");
    assert!(s.balance(&key).await < 10_000);
    if common::machines::image_dir().is_some() {
        assert!(
            stdout.contains("OPENSSH PRIVATE KEY"),
            "credentials printed: {stdout}"
        );
        let service = order["service_id"].as_str().unwrap();
        let after = s
            .poll_until(&format!("/api/v1/services/{service}"), Some(&key), |b| {
                b["data"]["service"]["status"] == "terminated"
            })
            .await;
        assert_eq!(after["data"]["service"]["status"], "terminated");
    }
}

async fn fetch(s: &TestServer, host: &str) -> serde_json::Value {
    let req = s
        .client
        .get(s.url("/.well-known/agent-storefront.json"))
        .header("host", host)
        .header("x-forwarded-proto", "https");
    s.send(req).await.body
}

dual_test!(documents_name_the_configured_base_url_or_the_requests_host);
async fn documents_name_the_configured_base_url_or_the_requests_host(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let m = fetch(&s, "shop.example:8443").await;
    assert_eq!(m["base_url"], "https://shop.example:8443", "{m}");
    assert!(m["links"]["openapi"]
        .as_str()
        .unwrap()
        .starts_with("https://shop.example:8443/"));
    let garbage = fetch(&s, "evil.example/<script>").await;
    assert_eq!(
        garbage["base_url"],
        s.base.as_str(),
        "an unusable Host falls back"
    );

    let configured = TestServer::start_with(&backend, |c| {
        c.base_url = Some("https://store.example".into());
    })
    .await;
    let m = fetch(&configured, "shop.example:8443").await;
    assert_eq!(m["base_url"], "https://store.example", "configuration wins");
}

dual_test!(the_reference_shows_every_body_field_by_field_with_an_example);
async fn the_reference_shows_every_body_field_by_field_with_an_example(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/docs", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let html = r.body.as_str().unwrap();
    assert!(
        !html.contains('`'),
        "Markdown backticks are rendered, not shown"
    );
    let orders = html
        .split("<section>")
        .find(|section| section.contains("<code>POST /api/v1/orders</code>"))
        .expect("a section for POST /api/v1/orders");
    for row in [
        "<td><code>product_id</code></td><td>string or null",
        "<td><code>quote_id</code></td><td>string or null",
        "<td><code>quantity</code></td><td>integer or null",
    ] {
        assert!(orders.contains(row), "{row} in:\n{orders}");
    }
    assert!(orders.contains("Example:"), "{orders}");
    let quotes = html
        .split("<section>")
        .find(|section| section.contains("<code>POST /api/v1/quotes</code>"))
        .unwrap();
    assert!(
        quotes.contains("<td><code>product_id</code></td><td>string; at least 1 character</td><td>required</td>"),
        "{quotes}"
    );
    // The example of a body with required fields shows them.
    assert!(
        quotes.contains("&quot;product_id&quot;: &quot;...&quot;"),
        "{quotes}"
    );
}
