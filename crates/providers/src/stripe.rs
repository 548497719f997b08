//! Card payments through Stripe Checkout, over Stripe's HTTP API (form-encoded requests, secret
//! key auth, `Idempotency-Key` on every write) at a configurable base URL, and verification of
//! Stripe's signed webhook deliveries.

use async_trait::async_trait;
use chrono::TimeZone;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;
use storefront_app::ports::{
    CardEvent, CardGateway, CheckoutRequest, CheckoutSession, GatewayError, WebhookRejection,
};
use storefront_domain::timestamp::Timestamp;

/// Stripe's own API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// How far a webhook signature's timestamp may be from now (Stripe's default, 5 minutes).
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone)]
pub struct StripeCard {
    api_base: String,
    secret_key: String,
    webhook_secret: String,
    client: reqwest::Client,
}

impl StripeCard {
    pub fn new(api_base: &str, secret_key: &str, webhook_secret: &str) -> Self {
        Self {
            api_base: api_base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a TLS backend is compiled in"),
        }
    }

    async fn post(
        &self,
        path: &str,
        params: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, GatewayError> {
        let unavailable = |detail: String| GatewayError {
            message: "The card payment provider could not be reached.".into(),
            detail,
        };
        let response = self
            .client
            .post(format!("{}{path}", self.api_base))
            .basic_auth(&self.secret_key, Some(""))
            .header("Idempotency-Key", idempotency_key)
            .form(params)
            .send()
            .await
            .map_err(|e| unavailable(format!("POST {path}: {e}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| unavailable(format!("POST {path}: unreadable answer: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        Err(GatewayError {
            message: if status.is_server_error() {
                "The card payment provider failed.".into()
            } else {
                format!("The card payment provider refused the request: {message}")
            },
            detail: format!("POST {path}: HTTP {status}: {message}"),
        })
    }
}

#[async_trait]
impl CardGateway for StripeCard {
    async fn create_checkout(
        &self,
        req: &CheckoutRequest,
    ) -> Result<CheckoutSession, GatewayError> {
        let mut params: Vec<(String, String)> = vec![
            ("mode".into(), "payment".into()),
            ("client_reference_id".into(), req.reference.clone()),
            ("metadata[reference]".into(), req.reference.clone()),
            ("success_url".into(), req.success_url.clone()),
            ("cancel_url".into(), req.cancel_url.clone()),
            ("expires_at".into(), req.expires_at.timestamp().to_string()),
            ("line_items[0][quantity]".into(), "1".into()),
            (
                "line_items[0][price_data][currency]".into(),
                req.currency.clone(),
            ),
            (
                "line_items[0][price_data][unit_amount]".into(),
                req.amount_minor.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]".into(),
                req.description.clone(),
            ),
        ];
        if let Some(email) = &req.customer_email {
            params.push(("customer_email".into(), email.clone()));
        }
        // One session per reference, however often this is retried.
        let key = format!("checkout_{}", req.reference);
        let session = self.post("/v1/checkout/sessions", &params, &key).await?;
        let field = |name: &str| {
            session[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| GatewayError {
                    message: "The card payment provider answered unexpectedly.".into(),
                    detail: format!("checkout session without '{name}'"),
                })
        };
        Ok(CheckoutSession {
            id: field("id")?,
            url: field("url")?,
        })
    }

    async fn refund(
        &self,
        payment_reference: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let params = vec![
            ("payment_intent".to_owned(), payment_reference.to_owned()),
            ("amount".to_owned(), amount_minor.to_string()),
        ];
        let refund = self.post("/v1/refunds", &params, idempotency_key).await?;
        Ok(refund["id"].as_str().unwrap_or_default().to_owned())
    }

    fn verify_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        now: Timestamp,
    ) -> Result<CardEvent, WebhookRejection> {
        verify_signature(&self.webhook_secret, payload, signature, now)?;
        parse_event(payload)
    }
}

/// Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>` (several
/// `v1` entries while a secret is being rolled), within the tolerance of `now`.
fn verify_signature(
    secret: &str,
    payload: &[u8],
    header: Option<&str>,
    now: Timestamp,
) -> Result<(), WebhookRejection> {
    let header = header
        .ok_or_else(|| WebhookRejection::BadSignature("no Stripe-Signature header".into()))?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => candidates.push(sig),
            _ => {}
        }
    }
    let timestamp =
        timestamp.ok_or_else(|| WebhookRejection::BadSignature("no timestamp".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    // verify_slice compares in constant time.
    let matches = candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|raw| mac.clone().verify_slice(&raw).is_ok())
    });
    if !matches {
        return Err(WebhookRejection::BadSignature(
            "no v1 signature matches".into(),
        ));
    }
    let signed_at = chrono::Utc
        .timestamp_opt(timestamp, 0)
        .single()
        .ok_or(WebhookRejection::Stale)?;
    if (now - signed_at).num_seconds().abs() > WEBHOOK_TOLERANCE_SECONDS {
        return Err(WebhookRejection::Stale);
    }
    Ok(())
}

fn parse_event(payload: &[u8]) -> Result<CardEvent, WebhookRejection> {
    let event: Value =
        serde_json::from_slice(payload).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    let text = |pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let event_id = text("/id").ok_or_else(|| WebhookRejection::Malformed("no id".into()))?;
    let kind = text("/type").ok_or_else(|| WebhookRejection::Malformed("no type".into()))?;
    let session_id = || {
        text("/data/object/id")
            .ok_or_else(|| WebhookRejection::Malformed("no data.object.id".into()))
    };
    let reference = text("/data/object/client_reference_id")
        .or_else(|| text("/data/object/metadata/reference"));
    Ok(match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
            if text("/data/object/payment_status").as_deref() == Some("paid") =>
        {
            CardEvent::CheckoutCompleted {
                event_id,
                session_id: session_id()?,
                reference,
                amount_total: event
                    .pointer("/data/object/amount_total")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| WebhookRejection::Malformed("no amount_total".into()))?,
                currency: text("/data/object/currency").unwrap_or_default(),
                payment_intent: text("/data/object/payment_intent"),
            }
        }
        "checkout.session.expired" => CardEvent::CheckoutExpired {
            event_id,
            session_id: session_id()?,
            reference,
        },
        _ => CardEvent::Other { event_id, kind },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(secret: &str, payload: &str, t: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{payload}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_for_secret_payload_and_age() {
        let now = chrono::Utc::now();
        let t = now.timestamp();
        let payload = r#"{"id":"evt_1","type":"ping"}"#;
        let ok = header("whsec_a", payload, t);
        assert!(verify_signature("whsec_a", payload.as_bytes(), Some(&ok), now).is_ok());
        assert!(matches!(
            verify_signature("whsec_b", payload.as_bytes(), Some(&ok), now),
            Err(WebhookRejection::BadSignature(_))
        ));
        assert!(matches!(
            verify_signature("whsec_a", b"{}", Some(&ok), now),
            Err(WebhookRejection::BadSignature(_))
        ));
        let old = header("whsec_a", payload, t - WEBHOOK_TOLERANCE_SECONDS - 1);
        assert_eq!(
            verify_signature("whsec_a", payload.as_bytes(), Some(&old), now),
            Err(WebhookRejection::Stale)
        );
        for garbage in ["", "t=,v1=", "v1=zz", "t=1", "t=abc,v1=00"] {
            assert!(verify_signature("whsec_a", payload.as_bytes(), Some(garbage), now).is_err());
        }
        assert!(verify_signature("whsec_a", payload.as_bytes(), None, now).is_err());
    }

    #[test]
    fn completed_sessions_need_to_be_paid() {
        let unpaid = br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"unpaid","amount_total":5}}}"#;
        assert!(matches!(parse_event(unpaid), Ok(CardEvent::Other { .. })));
        let paid = br#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"paid","amount_total":5,"currency":"usd","client_reference_id":"ord_1"}}}"#;
        assert!(matches!(
            parse_event(paid),
            Ok(CardEvent::CheckoutCompleted { amount_total: 5, reference: Some(r), .. }) if r == "ord_1"
        ));
    }
}
