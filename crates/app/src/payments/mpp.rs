//! HTTP 402 Machine Payments Protocol: an MPP order is stored waiting for payment and answered
//! with a challenge; the identical request retried with a credential under the same idempotency
//! key settles it, and the lifecycle takes over. Whatever does not settle leaves the key
//! claimable by that retry.

use super::gateway_unavailable;
use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::idempotency::canonical;
use crate::jobs::kinds::RefundPayment;
use crate::lifecycle::Rail;
use crate::orders::OrderRequest;
use crate::ports::{
    Applied, Change, IdempotencyCompletion, IdempotencyRef, MppCharge, MppProblem, MppRejection,
    NewOrder, StoreError,
};
use crate::views::OrderOutcome;
use storefront_domain::event::EventType;
use storefront_domain::ids::PaymentId;
use storefront_domain::order::{Order, OrderStatus, PaymentMethod};
use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
use storefront_domain::{DomainError, ErrorCode, PaymentDemand};

impl App {
    /// Stores an MPP order waiting for payment, then answers it like its paid retry would be
    /// answered (a challenge when no credential came with it).
    pub(crate) async fn place_mpp_order(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
        request: &OrderRequest,
        credential: Option<&str>,
    ) -> Result<OrderOutcome, DomainError> {
        if self.mpp.is_none() {
            return Err(DomainError::service_unavailable(
                "Machine Payments Protocol payments are not configured on this storefront.",
                "Pay with account credit, or ask the operator to configure MPP.",
            ));
        }
        if order.total_minor <= 0 {
            return Err(DomainError::validation(
                "payment_method",
                "This order costs nothing, so there is nothing to pay with MPP.",
                "Order it with payment_method \"credit\" (with an API key).",
            ));
        }
        let created = self.order_events(&[EventType::OrderCreated], &order);
        self.store
            .insert_order(&NewOrder {
                events: &created,
                idempotency: Some(key_ref),
                ..NewOrder::of(&order)
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)?;
        tracing::info!(order_id = %order.id, "MPP order waiting for payment");
        self.pay_mpp_order(order, key_ref, request, credential)
            .await
    }

    /// The MPP step of an order waiting for payment: a challenge without a credential, a
    /// settlement with a good one, a refusal with a fresh challenge otherwise. Whatever does not
    /// settle leaves the key claimable by the identical request.
    pub(crate) async fn pay_mpp_order(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
        request: &OrderRequest,
        credential: Option<&str>,
    ) -> Result<OrderOutcome, DomainError> {
        let result = self.settle_mpp(order, key_ref, request, credential).await;
        if result.is_err() {
            self.unlock(key_ref).await;
        }
        result
    }

    async fn settle_mpp(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
        request: &OrderRequest,
        credential: Option<&str>,
    ) -> Result<OrderOutcome, DomainError> {
        let gateway = self.mpp.clone().ok_or_else(DomainError::internal)?;
        let product = self
            .catalog
            .get(&order.product_id)
            .ok_or_else(|| unknown_product(&order.product_id))?;
        let now = self.clock.now();
        let charge = MppCharge {
            order_id: order.id.to_string(),
            amount_minor: order.total_minor,
            currency: order.currency.to_string(),
            description: format!("{} ({})", product.name, order.id),
            // The challenge binds the request's meaning, however its body was spelled.
            body: canonical(request).into_bytes(),
            expires_at: now + self.settings.mpp_challenge_ttl,
        };
        let demand = |rejection: Option<&MppRejection>| -> DomainError {
            let challenges = match gateway.challenge(&charge) {
                Ok(c) => vec![c],
                Err(e) => return gateway_unavailable(e),
            };
            let (code, message, suggestion) = match rejection {
                None => (
                    ErrorCode::PaymentRequired,
                    format!(
                        "Order {} waits for payment of {}.",
                        order.id,
                        storefront_domain::money::display_minor(order.total_minor, &order.currency)
                    ),
                    "Pay the WWW-Authenticate Payment challenge and retry the identical request with the same idempotency key and 'Authorization: Payment <credential>'.".to_owned(),
                ),
                Some(r) => (
                    match r.problem {
                        MppProblem::MalformedCredential => ErrorCode::MalformedCredential,
                        MppProblem::InvalidChallenge => ErrorCode::InvalidChallenge,
                        MppProblem::VerificationFailed => ErrorCode::VerificationFailed,
                        MppProblem::PaymentExpired => ErrorCode::PaymentExpired,
                    },
                    format!("The payment credential was not accepted: {}", r.reason),
                    "Pay the fresh challenge in WWW-Authenticate and retry the identical request; nothing was charged.".to_owned(),
                ),
            };
            DomainError::new(code, message, suggestion).with_payment_demand(PaymentDemand {
                order_id: order.id.to_string(),
                challenges,
                credential_rejected: rejection.is_some(),
                reason: rejection.map(|r| r.reason.clone()),
            })
        };
        let Some(credential) = credential else {
            return Err(demand(None));
        };
        let presented = match gateway.inspect(credential) {
            Ok(p) => p,
            Err(r) => return Err(demand(Some(&r))),
        };
        // Expiry on the storefront's clock (the gateway checks the wall clock too).
        if presented.expires_at.is_some_and(|at| at <= now) {
            return Err(demand(Some(&MppRejection {
                problem: MppProblem::PaymentExpired,
                reason: "The challenge has expired.".into(),
                retryable: false,
            })));
        }
        let settlement = match gateway.settle(credential, &charge).await {
            Ok(s) => s,
            Err(r) if r.retryable => {
                tracing::warn!(reason = %r.reason, "MPP settlement could not reach the provider");
                return Err(DomainError::service_unavailable(
                    "The payment provider could not be reached; nothing was decided.",
                    "Retry the identical request with the same credential in a few seconds.",
                )
                .with_retry_after(5));
            }
            Err(r) => return Err(demand(Some(&r))),
        };
        let payment = Payment {
            id: PaymentId::generate(),
            account_id: order.account_id.clone(),
            order_id: Some(order.id.clone()),
            purpose: PaymentPurpose::Order,
            rail: PaymentMethod::Mpp,
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
            status: PaymentState::Succeeded,
            session_id: None,
            checkout_url: None,
            payment_reference: Some(settlement.payment_reference.clone()),
            challenge_id: Some(presented.challenge_id.clone()),
            created_at: now,
            updated_at: now,
        };
        let paid = self.mark_paid(order, product, Rail::Mpp).await?;
        let completion = self
            .answer_at_commit(&paid, Some(&settlement.receipt))
            .map(|answer| IdempotencyCompletion::new(key_ref.clone(), answer.to_value()));
        let applied = self
            .store
            .apply_change(&Change {
                new_payment: Some(&payment),
                completes: completion.as_ref(),
                ..paid.change(&[OrderStatus::PendingPayment])
            })
            .await
            .and_then(Applied::without_charge);
        match applied {
            Ok(true) => {}
            Ok(false) | Err(StoreError::Conflict(_)) => {
                // The order stopped waiting (or was paid) while this payment settled: give the
                // money back and report the order as it is.
                tracing::warn!(order_id = %paid.order.id, "MPP payment settled for an order no longer waiting; refunding");
                self.refund_orphan(&payment).await;
                return Err(DomainError::new(
                    ErrorCode::VerificationFailed,
                    format!(
                        "Order {} no longer waits for payment; the payment is refunded.",
                        paid.order.id
                    ),
                    "Fetch the order to see its state; start a new order with a new idempotency key.",
                ));
            }
            Err(e) => {
                self.refund_orphan(&payment).await;
                return Err(store_failure(e));
            }
        }
        tracing::info!(order_id = %paid.order.id, reference = %settlement.payment_reference, "MPP payment settled");
        self.paid_committed(paid, Rail::Mpp, Some(key_ref), Some(settlement.receipt))
            .await?
            .ok_or_else(DomainError::internal)
    }

    /// Records a refund job for a payment that has no order to pay for.
    async fn refund_orphan(&self, payment: &Payment) {
        let job = RefundPayment::orphaned(payment, self.clock.now());
        if let Err(e) = self.store.enqueue_job(&job).await {
            tracing::error!(error = %e, payment_reference = ?payment.payment_reference, "could not queue the refund of an orphaned payment; refund it by hand");
        }
    }
}
