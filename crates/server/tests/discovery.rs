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
