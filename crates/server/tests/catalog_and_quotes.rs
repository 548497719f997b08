//! The catalog and quotes (docs/api.md, "Catalog" and "Quotes") over real HTTP.

mod common;

use common::{vps_config, Backend, TestServer};
use serde_json::json;

dual_test!(the_catalog_pages_through_every_product_with_a_cursor);
async fn the_catalog_pages_through_every_product_with_a_cursor(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/products?limit=3".to_owned();
    loop {
        let r = s.get(&path, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["ok"], true);
        let products = r.body["data"]["products"].as_array().unwrap();
        assert!(products.len() <= 3);
        seen.extend(
            products
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match r.body["data"]["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/products?limit=3&cursor={c}"),
            None => break,
        }
    }
    let all = s.get("/api/v1/products?limit=100", None).await;
    let ids: Vec<String> = all.body["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids, "paging visits every product once, in order");
    for id in [
        "bare-linux-machine",
        "gpu-h100-machine",
        "vps-micro",
        "vps-small",
        "vps-gpu-standard",
        "vps",
        "web-search",
        "kubernetes-hosting-universal",
    ] {
        assert!(
            ids.iter().any(|i| i == id),
            "{id} is in the built-in catalog"
        );
    }
}

dual_test!(search_filters_by_text_and_category);
async fn search_filters_by_text_and_category(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/api/v1/products?q=VPS&category=compute", None).await;
    let ids: Vec<&str> = r.body["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|i| i.contains("vps")), "{ids:?}");
    let r = s.get("/api/v1/products?category=search", None).await;
    let ids: Vec<&str> = r.body["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["web-search"]);
}

dual_test!(a_product_carries_its_schema_pricing_and_availability);
async fn a_product_carries_its_schema_pricing_and_availability(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/api/v1/products/bare-linux-machine", None).await;
    assert_eq!(r.status, 200);
    let p = &r.body["data"]["product"];
    assert_eq!(p["kind"], "async");
    assert_eq!(p["pricing"]["model"], "per_minute");
    assert_eq!(
        p["config_schema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        p["config_schema"]["properties"]["duration_minutes"]["maximum"],
        360
    );
    assert_eq!(p["available"], true);
    let gpu = s.get("/api/v1/products/gpu-h100-machine", None).await;
    assert_eq!(gpu.body["data"]["product"]["available"], false);
    assert!(gpu.body["data"]["product"]["unavailable_reason"]
        .as_str()
        .unwrap()
        .contains("gpu-cloud"));

    let req = s.get("/api/v1/products/vps-micro/requirements", None).await;
    assert_eq!(req.status, 200);
    assert_eq!(
        req.body["data"]["required_fields"],
        json!(["hostname", "region", "image", "billing_term_months"])
    );
    assert_eq!(
        req.body["data"]["supported_images"],
        json!(["debian-12"]),
        "only images the provisioner has"
    );
}

dual_test!(catalog_errors_name_the_parameter);
async fn catalog_errors_name_the_parameter(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let r = s.get("/api/v1/products/no-such-thing", None).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
    let r = s.get("/api/v1/products?limit=0", None).await;
    assert_eq!(
        (r.status.as_u16(), r.code(), r.param()),
        (400, "validation_error", "limit")
    );
    let r = s.get("/api/v1/products?limit=abc", None).await;
    assert_eq!((r.status.as_u16(), r.param()), (400, "limit"));
    let r = s.get("/api/v1/products?cursor=bogus", None).await;
    assert_eq!((r.status.as_u16(), r.param()), (400, "cursor"));
    let r = s.get("/api/v1/products?colour=red", None).await;
    assert_eq!(
        (r.status.as_u16(), r.param()),
        (400, "colour"),
        "unknown query parameters are rejected"
    );
}

dual_test!(quotes_normalize_price_and_warn);
async fn quotes_normalize_price_and_warn(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, key) = s.account(0).await;
    let r = s
        .post("/api/v1/quotes", Some(&key), &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 5000, "colour": "red"}}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let q = &r.body["data"]["quote"];
    assert_eq!(
        q["configuration_normalized"]["duration_minutes"], 60,
        "defaulted down, not clamped up"
    );
    let warnings = q["configuration_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[0]["code"], "out_of_range");
    assert_eq!(warnings[0]["requested"], 5000);
    assert_eq!(warnings[1]["code"], "unknown_field");
    let sum: i64 = q["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(q["total_minor"].as_i64().unwrap(), sum);
    assert!(q["id"].as_str().unwrap().starts_with("qt_"));

    let again = s
        .get(
            &format!("/api/v1/quotes/{}", q["id"].as_str().unwrap()),
            Some(&key),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(&again.body["data"]["quote"], q);
    let (_, other) = s.account(0).await;
    let hidden = s
        .get(
            &format!("/api/v1/quotes/{}", q["id"].as_str().unwrap()),
            Some(&other),
        )
        .await;
    assert_eq!(
        hidden.status, 404,
        "another account's quote does not exist for it"
    );
}

dual_test!(identical_quotes_price_identically);
async fn identical_quotes_price_identically(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let body = json!({"product_id": "vps-small", "configuration": vps_config()});
    let a = s.post("/api/v1/quotes", None, &body).await;
    let b = s.post("/api/v1/quotes", None, &body).await;
    assert_eq!(
        a.body["data"]["quote"]["line_items"],
        b.body["data"]["quote"]["line_items"]
    );
    assert_eq!(
        a.body["data"]["quote"]["total_minor"],
        b.body["data"]["quote"]["total_minor"]
    );
    assert_ne!(a.body["data"]["quote"]["id"], b.body["data"]["quote"]["id"]);
}

dual_test!(quote_input_errors_name_the_field_and_suggest_a_fix);
async fn quote_input_errors_name_the_field_and_suggest_a_fix(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let cases = [
        (
            json!({"product_id": "vps-micro", "configuration": {"region": "local", "image": "debian-12", "billing_term_months": 1}}),
            400,
            "validation_error",
            "configuration.hostname",
        ),
        (
            json!({"product_id": "vps-micro", "configuration": {"hostname": "a", "region": "mars", "image": "debian-12", "billing_term_months": 1}}),
            400,
            "validation_error",
            "configuration.region",
        ),
        (
            json!({"product_id": "vps-micro", "configuration": {"hostname": "a", "region": "local", "image": "debian-12", "billing_term_months": "one"}}),
            400,
            "validation_error",
            "configuration.billing_term_months",
        ),
        (
            json!({"product_id": "web-search", "quantity": -1, "configuration": {"query": "x"}}),
            400,
            "validation_error",
            "quantity",
        ),
        (
            json!({"product_id": "web-search", "quantity": 1000000, "configuration": {"query": "x"}}),
            400,
            "validation_error",
            "quantity",
        ),
        (
            json!({"product_id": "web-search", "quantity": 1.5, "configuration": {"query": "x"}}),
            400,
            "validation_error",
            "quantity",
        ),
        (
            json!({"product_id": "web-search", "configuration": "query=x"}),
            400,
            "validation_error",
            "configuration",
        ),
        (
            json!({"product_id": "web-search", "configuration": {"query": "x"}, "colour": "red"}),
            400,
            "validation_error",
            "colour",
        ),
        (
            json!({"configuration": {"query": "x"}}),
            400,
            "validation_error",
            "product_id",
        ),
        (
            json!({"product_id": "nope", "configuration": {}}),
            404,
            "not_found",
            "product_id",
        ),
    ];
    for (body, status, code, param) in cases {
        let r = s.post("/api/v1/quotes", None, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.code(), r.param()),
            (status, code, param),
            "{body} → {:?}",
            r.body
        );
        assert!(
            !r.body["error"]["suggestion"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "a suggestion for {body}"
        );
        assert_eq!(r.body["ok"], false);
    }
    let huge = s
        .send(s.client.post(s.url("/api/v1/quotes")).header("content-type", "application/json")
            .body(r#"{"product_id": "web-search", "quantity": 99999999999999999999999, "configuration": {"query": "x"}}"#))
        .await;
    assert_eq!(
        (huge.status.as_u16(), huge.param()),
        (400, "quantity"),
        "{:?}",
        huge.body
    );
    let bad_enum = s.post("/api/v1/quotes", None, &cases_region()).await;
    assert!(
        bad_enum.body["error"]["suggestion"]
            .as_str()
            .unwrap()
            .contains("local"),
        "lists allowed values"
    );
}

fn cases_region() -> serde_json::Value {
    json!({"product_id": "vps", "configuration": {"region": "atlantis", "type": "small", "duration_hours": 1}})
}

#[tokio::test]
async fn a_catalog_promising_an_image_local_machines_lack_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.toml");
    let text = storefront_domain::catalog::DEFAULT_CATALOG_TOML.replacen(
        "values = [\"debian-12\"]",
        "values = [\"debian-12\", \"windows-11\"]",
        1,
    );
    std::fs::write(&catalog, text).unwrap();
    let config = storefront::config::Config {
        data_dir: dir.path().to_path_buf(),
        catalog_file: Some(catalog),
        ..Default::default()
    };
    let store = storefront::bootstrap::open_store(&config).await.unwrap();
    let err = storefront::bootstrap::build_app(
        &config,
        store,
        std::sync::Arc::new(storefront_app::SystemClock),
        "http://x".into(),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("windows-11"), "{err}");
}
