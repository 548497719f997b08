//! A storefront whose card and MPP rails talk to the Stripe stand-in over HTTP, and an MPP
//! client side built with the `mpp` crate (as an agent's SDK would build it).

use super::{Backend, TestServer};
use mpp::{PaymentChallenge, PaymentCredential};
use serde_json::{json, Value};
use stripe_standin::{Config as StandinConfig, Standin};

pub const STRIPE_SECRET: &str = "sk_test_storefront";
pub const WEBHOOK_SECRET: &str = "whsec_storefront_test";
pub const MPP_SECRET: &str = "mpp-test-secret-of-at-least-32-bytes!";

pub async fn start(backend: &Backend) -> (TestServer, Standin) {
    start_with(backend, |_| {}).await
}

/// Like `start`, with more configuration.
pub async fn start_with(
    backend: &Backend,
    configure: impl FnOnce(&mut storefront::config::Config),
) -> (TestServer, Standin) {
    let standin = Standin::start(
        "127.0.0.1:0".parse().unwrap(),
        StandinConfig {
            secret_key: STRIPE_SECRET.into(),
            webhook_secret: WEBHOOK_SECRET.into(),
            webhook_url: None,
        },
    )
    .await
    .expect("stand-in starts");
    let base = standin.base_url.clone();
    let server = TestServer::start_with(backend, |c| {
        c.stripe_secret_key = Some(STRIPE_SECRET.into());
        c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
        c.stripe_api_base = Some(base);
        c.mpp_secret = Some(MPP_SECRET.into());
        c.mpp_network_id = Some("profile_test".into());
        configure(c);
    })
    .await;
    standin.set_webhook_url(&server.url("/api/v1/webhooks/stripe"));
    (server, standin)
}

/// Billing details of a card order.
pub fn billing() -> Value {
    json!({
        "customer_email": "customer@example.com",
        "billing_name": "Ada Lovelace",
        "billing_street": "1 Analytical Way",
        "billing_city": "London",
        "billing_postal_code": "N1 9GU",
        "billing_country": "GB",
    })
}

/// The challenge of a 402 answer.
pub fn challenge_of(reply: &super::Reply) -> PaymentChallenge {
    let header = reply
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("Payment "))
        .unwrap_or_else(|| panic!("no Payment challenge in {:?}", reply.headers));
    mpp::parse_www_authenticate(header).expect("the challenge parses")
}

/// `Authorization: Payment ...` paying `challenge` with the shared payment token `spt`,
/// echoing the challenge's externalId as the SDKs do.
pub fn credential(challenge: &PaymentChallenge, spt: &str) -> String {
    let request: Value = challenge.request.decode().expect("request decodes");
    let mut payload = json!({ "spt": spt });
    if let Some(external) = request.get("externalId") {
        payload["externalId"] = external.clone();
    }
    mpp::format_authorization(&PaymentCredential::new(challenge.to_echo(), payload))
        .expect("credential formats")
}

/// Posts an order with an optional MPP credential and no API key.
pub async fn mpp_order(
    s: &TestServer,
    idempotency_key: &str,
    body: &Value,
    credential: Option<&str>,
) -> super::Reply {
    let mut req = s
        .client
        .post(s.url("/api/v1/orders"))
        .header("Idempotency-Key", idempotency_key)
        .json(body);
    if let Some(c) = credential {
        req = req.header("Authorization", c);
    }
    s.send(req).await
}
