//! Payments outside the credit ledger (`API.md` §6): card orders and credit top-ups through a
//! hosted checkout confirmed by a signed webhook, MPP orders paid by the retry of the identical
//! request, and refunds through the provider when a paid order fails or is canceled.
//!
//! Safety rests on the database, not on timing: one payment per order and one per MPP challenge
//! (unique indexes), one handling per webhook event (its id is recorded in the same transaction
//! as its effect), order transitions conditional on the order's current status, and provider
//! calls that carry idempotency keys derived from what they pay for.

use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::jobs::{JobError, JobHandler, Worker};
use crate::machines::Delivery;
use crate::ports::{
    CardEvent, Change, CheckoutRequest, GatewayError, IdempotencyCompletion, IdempotencyRef,
    MppCharge, MppProblem, MppRejection, NewOrder, StoreError,
};
use crate::views::OrderOutcome;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use storefront_domain::account::{Account, KeyRole};
use storefront_domain::catalog::{Product, ProductKind};
use storefront_domain::ids::{AccountId, OrderId, PaymentId};
use storefront_domain::job::Job;
use storefront_domain::ledger::{LedgerKind, LedgerMovement};
use storefront_domain::money::MAX_AMOUNT_MINOR;
use storefront_domain::order::{Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::payment::{Payment, PaymentPurpose, PaymentState};
use storefront_domain::timestamp::{format, Timestamp};
use storefront_domain::{DomainError, ErrorCode, PaymentDemand};

/// The job that pays an order back through its provider.
pub const REFUND_JOB: &str = "payment.refund";
/// The job that fulfils an instant product once its card payment arrived.
pub const FULFILL_JOB: &str = "order.fulfill";

const PUBLIC_ACCOUNT_SETTING: &str = "public_account_id";
const PUBLIC_ACCOUNT_EMAIL: &str = "public-purchases@storefront.invalid";

/// What an MPP order request brings besides its body: the credential, if any, and the
/// canonical request body the challenge binds.
#[derive(Debug, Clone, Copy, Default)]
pub struct MppAttempt<'a> {
    pub credential: Option<&'a str>,
    pub body: &'a [u8],
}

/// How a webhook delivery was handled (always acknowledged once its signature is valid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookAck {
    pub event_id: String,
    /// `applied`, `duplicate` or `ignored`.
    pub result: &'static str,
}

/// A credit top-up as shown to its owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUpView {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `pending`, `succeeded` or `canceled`.
    pub status: &'static str,
    pub payment_action: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

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
    /// The account that owns purchases made without an API key (its services, its orders).
    /// Made on first use, once per database however many processes race to make it.
    pub(crate) async fn public_account(&self) -> Result<AccountId, DomainError> {
        if let Some(id) = self.public_account.get() {
            return Ok(id.clone());
        }
        let candidate = AccountId::generate();
        let id = self
            .store
            .setting_or_init(PUBLIC_ACCOUNT_SETTING, candidate.as_str())
            .await
            .map_err(store_failure)?;
        let id = AccountId::parse(&id).ok_or_else(DomainError::internal)?;
        let now = self.clock.now();
        let account = Account {
            id: id.clone(),
            email: PUBLIC_ACCOUNT_EMAIL.into(),
            name: "Purchases without an API key".into(),
            currency: self.settings.account_currency.clone(),
            balance_minor: 0,
            created_at: now,
        };
        // An owner key nobody holds: the operator can issue a real one with `admin create-key`.
        let (key, _) = crate::accounts::new_key(&id, KeyRole::Owner, None, "owner".into(), now);
        match self.store.create_account(&account, &key).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(store_failure(e)),
        }
        let _ = self.public_account.set(id.clone());
        Ok(id)
    }

    /// Opens the checkout of a card order and stores the order, waiting for payment, with it.
    pub(crate) async fn place_card_order(
        &self,
        mut order: Order,
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
        order.status = OrderStatus::PendingPayment;
        order.payment_status = PaymentStatus::Unpaid;
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
        self.store
            .insert_order(&NewOrder {
                order: &order,
                quote: None,
                idempotency: Some(key_ref),
                charge: None,
                service: None,
                jobs: &[],
                resource_tokens: &[],
                updates_service: None,
                completes: Some(&IdempotencyCompletion::new(
                    key_ref.clone(),
                    outcome.to_value(),
                )),
                payment: Some(&payment),
                budget: None,
                approval: None,
            })
            .await
            .map_err(store_failure)?;
        tracing::info!(order_id = %order.id, "card order waiting for payment");
        Ok(outcome)
    }

    /// Stores an MPP order waiting for payment, then answers it like its paid retry would be
    /// answered (a challenge when no credential came with it).
    pub(crate) async fn place_mpp_order(
        &self,
        mut order: Order,
        key_ref: &IdempotencyRef,
        attempt: MppAttempt<'_>,
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
        order.status = OrderStatus::PendingPayment;
        order.payment_status = PaymentStatus::Unpaid;
        if order.account_id.is_none() {
            order.account_id = Some(self.public_account().await?);
        }
        self.store
            .insert_order(&NewOrder {
                order: &order,
                quote: None,
                idempotency: Some(key_ref),
                charge: None,
                service: None,
                jobs: &[],
                resource_tokens: &[],
                updates_service: None,
                completes: None,
                payment: None,
                budget: None,
                approval: None,
            })
            .await
            .map_err(store_failure)?;
        tracing::info!(order_id = %order.id, "MPP order waiting for payment");
        self.pay_mpp_order(order, key_ref, attempt).await
    }

    /// The MPP step of an order waiting for payment: a challenge without a credential, a
    /// settlement with a good one, a refusal with a fresh challenge otherwise. Whatever does not
    /// settle leaves the key claimable by the identical request.
    pub(crate) async fn pay_mpp_order(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
        attempt: MppAttempt<'_>,
    ) -> Result<OrderOutcome, DomainError> {
        let result = self.settle_mpp(order, key_ref, attempt).await;
        if result.is_err() {
            if let Err(e) = self.store.unlock_idempotency_key(key_ref).await {
                tracing::error!(error = %e, "could not unlock an idempotency key");
            }
        }
        result
    }

    async fn settle_mpp(
        &self,
        mut order: Order,
        key_ref: &IdempotencyRef,
        attempt: MppAttempt<'_>,
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
            body: attempt.body.to_vec(),
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
        let Some(credential) = attempt.credential else {
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
        let delivery = self.mark_paid(&mut order, product, now);
        let outcome = match product.kind {
            ProductKind::Async => Some(OrderOutcome::Accepted {
                order: self.with_service(self.order_view(&order), &order, None),
                retry_after_seconds: order.retry_after_seconds(),
                payment_receipt: Some(settlement.receipt.clone()),
            }),
            ProductKind::Instant => None,
        };
        let completion = outcome
            .as_ref()
            .map(|o| IdempotencyCompletion::new(key_ref.clone(), o.to_value()));
        let applied = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[OrderStatus::PendingPayment])),
                new_payment: Some(&payment),
                new_service: delivery.as_ref().map(|d| &d.service),
                resource_tokens: delivery.as_ref().map_or(&[][..], |d| &d.stored_tokens),
                jobs: delivery.as_ref().map_or(&[][..], |d| &d.jobs),
                completes: completion.as_ref(),
                ..Change::default()
            })
            .await;
        match applied {
            Ok(true) => {}
            Ok(false) | Err(StoreError::Conflict(_)) => {
                // The order stopped waiting (or was paid) while this payment settled: give the
                // money back and report the order as it is.
                tracing::warn!(order_id = %order.id, "MPP payment settled for an order no longer waiting; refunding");
                self.refund_orphan(&payment).await;
                return Err(DomainError::new(
                    ErrorCode::VerificationFailed,
                    format!("Order {} no longer waits for payment; the payment is refunded.", order.id),
                    "Fetch the order to see its state; start a new order with a new idempotency key.",
                ));
            }
            Err(e) => {
                self.refund_orphan(&payment).await;
                return Err(store_failure(e));
            }
        }
        tracing::info!(order_id = %order.id, reference = %settlement.payment_reference, "MPP payment settled");
        metrics::counter!("storefront_orders_total", "product" => order.product_id.clone())
            .increment(1);
        match outcome {
            Some(OrderOutcome::Accepted {
                mut order,
                retry_after_seconds,
                payment_receipt,
            }) => {
                order.management_tokens = delivery.map(|d| d.tokens_view());
                Ok(OrderOutcome::Accepted {
                    order,
                    retry_after_seconds,
                    payment_receipt,
                })
            }
            Some(other) => Ok(other),
            None => {
                let outcome = self.fulfill_instant(order, key_ref).await?;
                Ok(outcome.with_receipt(settlement.receipt))
            }
        }
    }

    /// Moves a paid order to its next state: instant products stay `paid` until fulfilled,
    /// products that need install configuration wait for it, machines get their delivery.
    fn mark_paid(&self, order: &mut Order, product: &Product, now: Timestamp) -> Option<Delivery> {
        order.payment_status = PaymentStatus::Paid;
        order.updated_at = now;
        order.status = match (product.kind, product.requires_install_configuration) {
            (ProductKind::Instant, _) => OrderStatus::Paid,
            (ProductKind::Async, true) => OrderStatus::AwaitingInstallConfiguration,
            (ProductKind::Async, false) => OrderStatus::Processing,
        };
        (!product.requires_install_configuration)
            .then(|| self.machine_delivery(product, order, now))
            .flatten()
    }

    /// Records a refund job for a payment that has no order to pay for.
    async fn refund_orphan(&self, payment: &Payment) {
        let job = refund_job(payment.id.as_str(), payment, self.clock.now());
        if let Err(e) = self.store.enqueue_job(&job).await {
            tracing::error!(error = %e, payment_reference = ?payment.payment_reference, "could not queue the refund of an orphaned payment; refund it by hand");
        }
    }

    /// What gives the money of a paid order back: a ledger refund for credit, a provider
    /// refund job for card and MPP. Nothing for an unpaid order.
    pub(crate) fn refund_for(
        &self,
        order: &Order,
        why: &str,
        now: Timestamp,
    ) -> (Option<LedgerMovement>, Option<Job>) {
        if order.payment_status != PaymentStatus::Paid || order.total_minor <= 0 {
            return (None, None);
        }
        match order.payment_method {
            PaymentMethod::Credit => (
                order.account_id.clone().map(|account_id| LedgerMovement {
                    account_id,
                    kind: LedgerKind::Refund,
                    amount_minor: order.total_minor,
                    order_id: Some(order.id.clone()),
                    description: format!("{why} ({})", order.id),
                }),
                None,
            ),
            PaymentMethod::Card | PaymentMethod::Mpp => (
                None,
                Some(Job::new(
                    REFUND_JOB,
                    json!({ "order_id": order.id, "reason": why }),
                    10,
                    now,
                )),
            ),
        }
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
        let event = Some((event_id.as_str(), "checkout.session.completed"));
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
                        movement: Some(&movement),
                        webhook_event: event,
                        ..Change::default()
                    })
                    .await
                    .map_err(store_failure)?
            }
            (PaymentPurpose::Order, Some(order_id)) => {
                let mut order = self.load_order(order_id).await?;
                if order.status != OrderStatus::PendingPayment {
                    // Paid after the order was canceled: keep the record, give the money back.
                    let refund = refund_job(payment.id.as_str(), &payment, now);
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
                        .map_err(store_failure)?
                } else {
                    let product = self
                        .catalog
                        .get(&order.product_id)
                        .ok_or_else(|| unknown_product(&order.product_id))?;
                    let delivery = self.mark_paid(&mut order, product, now);
                    let mut jobs = delivery
                        .as_ref()
                        .map(|d| d.jobs.clone())
                        .unwrap_or_default();
                    if product.kind == ProductKind::Instant {
                        jobs.push(Job::new(
                            FULFILL_JOB,
                            json!({ "order_id": order.id }),
                            5,
                            now,
                        ));
                    }
                    self.store
                        .apply_change(&Change {
                            order: Some((&order, &[OrderStatus::PendingPayment])),
                            payment: Some((&payment, &[PaymentState::Pending])),
                            new_service: delivery.as_ref().map(|d| &d.service),
                            resource_tokens: delivery
                                .as_ref()
                                .map_or(&[][..], |d| &d.stored_tokens),
                            jobs: &jobs,
                            webhook_event: event,
                            ..Change::default()
                        })
                        .await
                        .map_err(store_failure)?
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
        let applied = self
            .store
            .apply_change(&Change {
                order: order
                    .as_ref()
                    .map(|o| (o, &[OrderStatus::PendingPayment][..])),
                payment: Some((&payment, &[PaymentState::Pending])),
                webhook_event: Some((event_id.as_str(), "checkout.session.expired")),
                ..Change::default()
            })
            .await
            .map_err(store_failure)?;
        tracing::info!(%event_id, applied, "checkout expired");
        Ok(ack(if applied { "applied" } else { "duplicate" }))
    }

    /// `POST /api/v1/account/top-ups`: a card checkout that credits the account when paid.
    pub async fn create_top_up(
        &self,
        principal: &crate::Principal,
        amount_minor: i64,
    ) -> Result<TopUpView, DomainError> {
        let account_id = principal.require_owner()?.clone();
        if !(100..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(DomainError::validation(
                "amount_minor",
                format!("amount_minor must be between 100 and {MAX_AMOUNT_MINOR} minor units."),
                "Send a whole number of cents, like 2000 for 20.00.",
            ));
        }
        let card = self.card.clone().ok_or_else(card_not_configured)?;
        let account = self
            .store
            .get_account(&account_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::unauthorized)?;
        let now = self.clock.now();
        let id = PaymentId::generate();
        let back = format!("{}/api/v1/account/top-ups/{id}", self.settings.base_url);
        let session = card
            .create_checkout(&CheckoutRequest {
                reference: id.to_string(),
                description: format!("Credit top-up ({id})"),
                amount_minor,
                currency: account.currency.to_string(),
                customer_email: Some(account.email.clone()),
                success_url: back.clone(),
                cancel_url: back,
                expires_at: now + self.settings.checkout_ttl,
            })
            .await
            .map_err(gateway_unavailable)?;
        let payment = Payment {
            id,
            account_id: Some(account_id),
            order_id: None,
            purpose: PaymentPurpose::TopUp,
            rail: PaymentMethod::Card,
            amount_minor,
            currency: account.currency,
            status: PaymentState::Pending,
            session_id: Some(session.id),
            checkout_url: Some(session.url),
            payment_reference: None,
            challenge_id: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_payment(&payment)
            .await
            .map_err(store_failure)?;
        Ok(top_up_view(&payment))
    }

    /// `GET /api/v1/account/top-ups/{id}`.
    pub async fn get_top_up(
        &self,
        principal: &crate::Principal,
        id: &str,
    ) -> Result<TopUpView, DomainError> {
        let account = principal.require_owner()?;
        let not_found = || DomainError::not_found("top-up", id);
        let payment_id = PaymentId::parse(id).ok_or_else(not_found)?;
        let payment = self
            .store
            .get_payment(&payment_id)
            .await
            .map_err(store_failure)?
            .filter(|p| {
                p.purpose == PaymentPurpose::TopUp && p.account_id.as_ref() == Some(account)
            })
            .ok_or_else(not_found)?;
        Ok(top_up_view(&payment))
    }

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

    /// Registers every background job kind (machines and payments) on a worker.
    pub fn background_jobs(&self, worker: Worker) -> Worker {
        self.approval_jobs(self.payment_jobs(self.machine_jobs(worker)))
    }

    /// Registers the payment job kinds on a worker.
    pub fn payment_jobs(&self, worker: Worker) -> Worker {
        let handler = Arc::new(PaymentJobs { app: self.clone() });
        worker
            .handle(REFUND_JOB, handler.clone())
            .handle(FULFILL_JOB, handler)
    }
}

fn top_up_view(p: &Payment) -> TopUpView {
    TopUpView {
        id: p.id.to_string(),
        amount_minor: p.amount_minor,
        currency: p.currency.to_string(),
        status: p.status.as_str(),
        payment_action: (p.status == PaymentState::Pending)
            .then(|| p.checkout_url.as_deref().map(redirect))
            .flatten(),
        created_at: format(&p.created_at),
        updated_at: format(&p.updated_at),
    }
}

fn refund_job(payment_id: &str, payment: &Payment, now: Timestamp) -> Job {
    Job::new(
        REFUND_JOB,
        json!({ "payment_id": payment_id, "order_id": payment.order_id, "reason": "paid for an order that no longer waited" }),
        10,
        now,
    )
}

struct PaymentJobs {
    app: App,
}

fn retry(message: impl Into<String>) -> JobError {
    JobError {
        message: message.into(),
        retryable: true,
    }
}

impl PaymentJobs {
    /// Pays a payment back through its provider; the refund's idempotency key is the payment's
    /// id, so a retried job never refunds twice.
    async fn refund(&self, job: &Job) -> Result<(), JobError> {
        let app = &self.app;
        let payment = match job.payload.get("payment_id").and_then(Value::as_str) {
            Some(id) => {
                let id = PaymentId::parse(id).ok_or_else(|| retry("bad payment id"))?;
                app.store
                    .get_payment(&id)
                    .await
                    .map_err(|e| retry(e.to_string()))?
            }
            None => {
                let id = job
                    .payload
                    .get("order_id")
                    .and_then(Value::as_str)
                    .and_then(OrderId::parse)
                    .ok_or_else(|| retry("refund job without an order or payment"))?;
                app.store
                    .find_payment_for_order(&id)
                    .await
                    .map_err(|e| retry(e.to_string()))?
            }
        };
        let Some(mut payment) = payment else {
            // An orphaned MPP settlement has no row: nothing to look up, the job says it all.
            return Err(JobError {
                message: "no payment to refund".into(),
                retryable: false,
            });
        };
        if payment.status == PaymentState::Refunded {
            return Ok(());
        }
        let Some(reference) = payment.payment_reference.clone() else {
            return Err(JobError {
                message: format!("payment {} has no provider reference", payment.id),
                retryable: false,
            });
        };
        let card = app
            .card
            .clone()
            .ok_or_else(|| retry("card gateway not configured; cannot refund yet"))?;
        let refund_id = card
            .refund(
                &reference,
                payment.amount_minor,
                &format!("refund_{}", payment.id),
            )
            .await
            .map_err(|e| retry(e.detail))?;
        let now = app.clock.now();
        payment.status = PaymentState::Refunded;
        payment.updated_at = now;
        app.store
            .apply_change(&Change {
                payment: Some((&payment, &[PaymentState::Succeeded, PaymentState::Pending])),
                ..Change::default()
            })
            .await
            .map_err(|e| retry(e.to_string()))?;
        tracing::info!(payment_id = %payment.id, %refund_id, "payment refunded");
        Ok(())
    }

    /// Fulfils an instant order paid by card, like the credit rail does inline.
    async fn fulfill(&self, job: &Job) -> Result<(), JobError> {
        let app = &self.app;
        let id = job
            .payload
            .get("order_id")
            .and_then(Value::as_str)
            .and_then(OrderId::parse)
            .ok_or_else(|| JobError {
                message: "fulfil job without an order id".into(),
                retryable: false,
            })?;
        let order = app.load_order(&id).await.map_err(|e| retry(e.message))?;
        if order.status != OrderStatus::Paid {
            return Ok(());
        }
        app.fulfill_paid(order, None)
            .await
            .map(|_| ())
            .map_err(|e| retry(e.message))
    }
}

#[async_trait]
impl JobHandler for PaymentJobs {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        match job.kind.as_str() {
            REFUND_JOB => self.refund(job).await,
            FULFILL_JOB => self.fulfill(job).await,
            other => Err(JobError {
                message: format!("unknown job kind {other}"),
                retryable: false,
            }),
        }
    }
}
