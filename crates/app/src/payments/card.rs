//! Card payments through a hosted checkout (Stripe Checkout): the order waits in
//! `pending_payment` until the provider's signed webhook says the session was paid (then the
//! lifecycle takes over) or expired (then the order is canceled).

use super::{card_not_configured, gateway_unavailable, redirect};
use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::jobs::kinds::RefundPayment;
use crate::lifecycle::Rail;
use crate::ports::{
    Applied, CardEvent, Change, CheckoutRequest, IdempotencyCompletion, IdempotencyRef, NewOrder,
};
use crate::views::OrderOutcome;
use serde::Serialize;
use storefront_domain::catalog::Product;
use storefront_domain::event::EventType;
use storefront_domain::ids::PaymentId;
use storefront_domain::ledger::{LedgerKind, LedgerMovement};
use storefront_domain::order::{Order, OrderStatus, PaymentMethod};
use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
use storefront_domain::DomainError;

/// How a webhook delivery was handled (always acknowledged once its signature is valid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookAck {
    pub event_id: String,
    /// `applied`, `duplicate` or `ignored`.
    pub result: &'static str,
}

impl App {
    /// Opens the checkout of a card order and stores the order (`pending_payment`, as it comes)
    /// with it.
    pub(crate) async fn place_card_order(
        &self,
        order: Order,
        customer_email: Option<String>,
        product: &Product,
        key_ref: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let card = self.card.clone().ok_or_else(card_not_configured)?;
        if order.total_minor <= 0 {
            return Err(DomainError::validation(
                "payment_method",
                "This order costs nothing, so there is nothing to pay by card.",
                "Order it with payment_method \"credit\" (with an API key).",
            ));
        }
        let now = self.clock.now();
        let status_url = self.order_view(&order).status_url;
        let session = card
            .create_checkout(&CheckoutRequest {
                reference: order.id.to_string(),
                description: format!("{} ({})", product.name, order.id),
                amount_minor: order.total_minor,
                currency: order.currency.to_string(),
                customer_email,
                success_url: status_url.clone(),
                cancel_url: status_url,
                expires_at: now + self.settings.checkout_ttl,
            })
            .await
            .map_err(gateway_unavailable)?;
        let payment = Payment {
            id: PaymentId::generate(),
            account_id: order.account_id.clone(),
            order_id: Some(order.id.clone()),
            purpose: PaymentPurpose::Order,
            rail: PaymentMethod::Card,
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            status: PaymentState::Pending,
            session_id: Some(session.id),
            checkout_url: Some(session.url.clone()),
            payment_reference: None,
            challenge_id: None,
            created_at: now,
            updated_at: now,
        };
        let mut view = self.order_view(&order);
        view.payment_action = Some(redirect(&session.url));
        let outcome = OrderOutcome::Accepted {
            order: view,
            retry_after_seconds: Some(5),
            payment_receipt: None,
        };
        let created = self.order_events(&[EventType::OrderCreated], &order);
        self.store
            .insert_order(&NewOrder {
                events: &created,
                idempotency: Some(key_ref),
                completes: Some(&IdempotencyCompletion::new(
                    key_ref.clone(),
                    outcome.to_value(),
                )),
                payment: Some(&payment),
                ..NewOrder::of(&order)
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        tracing::info!(order_id = %order.id, "card order waiting for payment");
        Ok(outcome)
    }

    /// `POST /api/v1/webhooks/stripe`: verifies the delivery and applies the event exactly once.
    pub async fn handle_card_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<WebhookAck, DomainError> {
        let card = self.card.clone().ok_or_else(card_not_configured)?;
        let event = card
            .verify_webhook(payload, signature, self.clock.now())
            .map_err(|why| {
                tracing::warn!(reason = %why, "webhook delivery refused");
                DomainError::validation(
                    "Stripe-Signature",
                    format!("The webhook delivery was refused: {why}."),
                    "Sign deliveries with the endpoint's signing secret (whsec_...) and send them promptly.",
                )
            })?;
        match event {
            CardEvent::CheckoutCompleted {
                event_id,
                session_id,
                amount_total,
                currency,
                payment_intent,
                ..
            } => {
                self.checkout_completed(
                    event_id,
                    &session_id,
                    amount_total,
                    &currency,
                    payment_intent,
                )
                .await
            }
            CardEvent::CheckoutExpired {
                event_id,
                session_id,
                ..
            } => self.checkout_expired(event_id, &session_id).await,
            CardEvent::Other { event_id, kind } => {
                tracing::info!(%event_id, %kind, "webhook event ignored");
                Ok(WebhookAck {
                    event_id,
                    result: "ignored",
                })
            }
        }
    }

    async fn checkout_completed(
        &self,
        event_id: String,
        session_id: &str,
        amount_total: i64,
        currency: &str,
        payment_intent: Option<String>,
    ) -> Result<WebhookAck, DomainError> {
        let ack = |result| WebhookAck {
            event_id: event_id.clone(),
            result,
        };
        let Some(mut payment) = self.session_payment(&event_id, session_id).await? else {
            return Ok(ack("ignored"));
        };
        if amount_total != payment.amount_minor || currency != payment.currency.as_str() {
            tracing::error!(%event_id, %session_id, amount_total, expected = payment.amount_minor, "checkout amount disagrees with the payment; not applied");
            return Ok(ack("ignored"));
        }
        let now = self.clock.now();
        payment.status = PaymentState::Succeeded;
        payment.payment_reference = payment_intent;
        payment.updated_at = now;
        let event = Some((event_id.as_str(), "checkout.session.completed", now));
        let applied = match (payment.purpose, &payment.order_id) {
            (PaymentPurpose::TopUp, _) => {
                let account_id = payment
                    .account_id
                    .clone()
                    .ok_or_else(DomainError::internal)?;
                let movement = LedgerMovement {
                    account_id,
                    kind: LedgerKind::TopUp,
                    amount_minor: payment.amount_minor,
                    order_id: None,
                    description: format!("card top-up ({})", payment.id),
                };
                self.store
                    .apply_change(&Change {
                        payment: Some((&payment, &[PaymentState::Pending])),
                        movement: Some((&movement, now)),
                        webhook_event: event,
                        ..Change::default()
                    })
                    .await
                    .and_then(Applied::without_charge)
                    .map_err(store_failure)?
            }
            (PaymentPurpose::Order, Some(order_id)) => {
                let order = self.load_order(order_id).await?;
                if order.status != OrderStatus::PendingPayment {
                    // Paid after the order was canceled: keep the record, give the money back.
                    let refund = RefundPayment::orphaned(&payment, now);
                    self.store
                        .apply_change(&Change {
                            payment: Some((
                                &payment,
                                &[PaymentState::Pending, PaymentState::Canceled],
                            )),
                            jobs: std::slice::from_ref(&refund),
                            webhook_event: event,
                            ..Change::default()
                        })
                        .await
                        .and_then(Applied::without_charge)
                        .map_err(store_failure)?
                } else {
                    let product = self
                        .catalog
                        .get(&order.product_id)
                        .ok_or_else(|| unknown_product(&order.product_id))?;
                    let paid = self.mark_paid(order, product, Rail::Card).await?;
                    let applied = self
                        .store
                        .apply_change(&Change {
                            payment: Some((&payment, &[PaymentState::Pending])),
                            webhook_event: event,
                            ..paid.change(&[OrderStatus::PendingPayment])
                        })
                        .await
                        .and_then(Applied::without_charge)
                        .map_err(store_failure)?;
                    if applied {
                        self.paid_committed(paid, Rail::Card, None, None).await?;
                    }
                    applied
                }
            }
            (PaymentPurpose::Order, None) => return Err(DomainError::internal()),
        };
        if applied {
            tracing::info!(%event_id, payment_id = %payment.id, "card payment received");
            Ok(ack("applied"))
        } else {
            Ok(ack("duplicate"))
        }
    }

    /// The payment a checkout session event concerns; `None` (logged) for a session this
    /// storefront did not open.
    async fn session_payment(
        &self,
        event_id: &str,
        session_id: &str,
    ) -> Result<Option<Payment>, DomainError> {
        let payment = self
            .store
            .find_payment_by_session(session_id)
            .await
            .map_err(store_failure)?;
        if payment.is_none() {
            tracing::warn!(%event_id, %session_id, "event for an unknown checkout session; ignored");
        }
        Ok(payment)
    }

    async fn checkout_expired(
        &self,
        event_id: String,
        session_id: &str,
    ) -> Result<WebhookAck, DomainError> {
        let ack = |result| WebhookAck {
            event_id: event_id.clone(),
            result,
        };
        let Some(mut payment) = self.session_payment(&event_id, session_id).await? else {
            return Ok(ack("ignored"));
        };
        let now = self.clock.now();
        payment.status = PaymentState::Canceled;
        payment.updated_at = now;
        let mut order = match &payment.order_id {
            Some(id) => Some(self.load_order(id).await?),
            None => None,
        };
        if let Some(o) = order.as_mut() {
            o.status = OrderStatus::Canceled;
            o.updated_at = now;
        }
        let canceled = order.as_ref().map_or_else(Vec::new, |o| {
            self.order_events(&[EventType::OrderCanceled], o)
        });
        let applied = self
            .store
            .apply_change(&Change {
                events: &canceled,
                order: order
                    .as_ref()
                    .map(|o| (o, &[OrderStatus::PendingPayment][..])),
                payment: Some((&payment, &[PaymentState::Pending])),
                webhook_event: Some((event_id.as_str(), "checkout.session.expired", now)),
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        tracing::info!(%event_id, applied, "checkout expired");
        Ok(ack(if applied { "applied" } else { "duplicate" }))
    }
}
