//! Payments outside the credit ledger: card orders and credit top-ups through a hosted
//! checkout confirmed by a signed webhook (`card`, `topups`), MPP orders paid by the retry of the
//! identical request (`mpp`), and refunds through the provider (`refunds`). What a paid order
//! then becomes is decided in `lifecycle.rs`.
//!
//! Safety rests on the database, not on timing: one payment per order and one per MPP challenge
//! (unique indexes), one handling per webhook event (its id is recorded in the same transaction
//! as its effect), order transitions conditional on the order's current status, and provider
//! calls that carry idempotency keys derived from what they pay for.

mod card;
mod mpp;
mod refunds;
mod topups;

pub use card::WebhookAck;
pub use topups::TopUpView;

use crate::app::App;
use crate::ports::GatewayError;
use serde_json::{json, Value};
use storefront_domain::order::{Order, OrderStatus, PaymentMethod};
use storefront_domain::DomainError;

fn gateway_unavailable(e: GatewayError) -> DomainError {
    tracing::error!(detail = %e.detail, "payment provider call failed");
    DomainError::service_unavailable(
        e.message,
        "Retry the identical request in a minute; nothing was charged.",
    )
    .with_retry_after(30)
}

fn card_not_configured() -> DomainError {
    DomainError::service_unavailable(
        "Card payments are not configured on this storefront.",
        "Pay with account credit, or ask the operator to configure Stripe.",
    )
}

fn redirect(url: &str) -> Value {
    json!({ "type": "redirect", "url": url })
}

impl App {
    /// The hosted payment page of a card order still waiting for payment.
    pub(crate) async fn pending_payment_action(&self, order: &Order) -> Option<Value> {
        if order.status != OrderStatus::PendingPayment
            || order.payment_method != PaymentMethod::Card
        {
            return None;
        }
        match self.store.find_payment_for_order(&order.id).await {
            Ok(p) => p.and_then(|p| p.checkout_url).map(|url| redirect(&url)),
            Err(e) => {
                tracing::warn!(error = %e, "payment of an order unreadable");
                None
            }
        }
    }
}
