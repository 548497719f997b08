//! Orders: validate, place (idempotently, on any rail), read, list, cancel. The card and MPP
//! steps live in `payments.rs`.
//!
//! Idempotency follows `API.md` §5: the key is claimed first (so a concurrent duplicate sees
//! `idempotency_in_progress`), the charge and the order commit in one transaction, and the
//! outcome is recorded with the final state change so a replay returns the original response.
//! Errors that did not act release the key.

use crate::agents::Gate;
use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::page::{Page, PageRequest};
use crate::payments::MppAttempt;
use crate::ports::{
    Change, ClaimOutcome, IdempotencyCompletion, IdempotencyRef, NewOrder, OrderFilter, StoreError,
};
use crate::principal::Principal;
use crate::quotes::QuoteRequest;
use crate::views::{status_path, OrderOutcome, OrderView};
use serde::Serialize;
use storefront_domain::account::parse_email;
use storefront_domain::agent::ApprovalStatus;
use storefront_domain::catalog::{Product, ProductKind};
use storefront_domain::ids::OrderId;
use storefront_domain::ledger::{LedgerKind, LedgerMovement};
use storefront_domain::money::display_minor;
use storefront_domain::order::{Failure, Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::quote::Quote;
use storefront_domain::{DomainError, ErrorCode};

pub const ORDER_ROUTE: &str = "POST /api/v1/orders";

#[derive(Debug, Clone, PartialEq)]
pub enum OrderSource {
    /// Order a stored quote at its quoted price.
    Quote(String),
    /// Quote and order in one step.
    Configure(QuoteRequest),
}

/// Billing details for card payments (seed 000: never guessed, all required).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BillingDetails {
    pub customer_email: Option<String>,
    pub billing_name: Option<String>,
    pub billing_street: Option<String>,
    pub billing_city: Option<String>,
    pub billing_postal_code: Option<String>,
    pub billing_country: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub source: OrderSource,
    pub payment_method: Option<PaymentMethod>,
    pub billing: BillingDetails,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidatedOrder {
    pub quote: Quote,
    pub payment_methods: Vec<PaymentMethod>,
    pub product_kind: ProductKind,
    pub idempotency_key: Option<String>,
}

/// The result of `place_order`: the outcome and whether it is a replay of an earlier request.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedOrder {
    pub outcome: OrderOutcome,
    pub replayed: bool,
}

impl App {
    fn payment_methods_for(&self, principal: &Principal) -> Vec<PaymentMethod> {
        let mut methods = Vec::new();
        if principal.account_id().is_some() {
            methods.push(PaymentMethod::Credit);
        }
        if self.card_enabled() {
            methods.push(PaymentMethod::Card);
        }
        if self.mpp_enabled() {
            methods.push(PaymentMethod::Mpp);
        }
        methods
    }

    fn resolve_payment_method(
        &self,
        principal: &Principal,
        requested: Option<PaymentMethod>,
        billing: &BillingDetails,
    ) -> Result<PaymentMethod, DomainError> {
        let method = requested.unwrap_or(if principal.account_id().is_some() {
            PaymentMethod::Credit
        } else {
            PaymentMethod::Mpp
        });
        let with_key = principal.account_id().is_some();
        let alternative = if with_key {
            "Pay with payment_method \"credit\"."
        } else {
            "Use an API key and pay with account credit, or ask the operator to enable it."
        };
        match method {
            PaymentMethod::Credit if !with_key => Err(DomainError::new(
                ErrorCode::Unauthorized,
                "Paying with account credit requires an API key.",
                "Send 'Authorization: Bearer <api key>', or pay with payment_method \"card\" or \"mpp\".",
            )
            .with_param("payment_method")),
            PaymentMethod::Credit => Ok(method),
            PaymentMethod::Card => {
                validate_billing(billing)?;
                if self.card_enabled() {
                    Ok(method)
                } else {
                    Err(DomainError::service_unavailable(
                        "Card payments are not configured on this storefront.",
                        alternative,
                    )
                    .with_param("payment_method"))
                }
            }
            PaymentMethod::Mpp if self.mpp_enabled() => Ok(method),
            PaymentMethod::Mpp => Err(DomainError::service_unavailable(
                "Machine Payments Protocol payments are not configured on this storefront.",
                alternative,
            )
            .with_param("payment_method")),
        }
    }

    /// Everything an order needs to be accepted, without effects: the quote (stored or fresh),
    /// the product (available), the payment method (configured, allowed for the principal).
    async fn prepare_order(
        &self,
        principal: &Principal,
        req: &OrderRequest,
    ) -> Result<(Quote, &Product, PaymentMethod), DomainError> {
        let quote = match &req.source {
            OrderSource::Quote(id) => self.live_quote(principal, id).await?,
            OrderSource::Configure(q) => self.price_request(principal, q)?,
        };
        let product = self
            .catalog
            .get(&quote.product_id)
            .ok_or_else(|| unknown_product(&quote.product_id))?;
        if !product.available {
            return Err(DomainError::service_unavailable(
                format!(
                    "{} cannot be delivered here: {}.",
                    product.id,
                    product
                        .unavailable_reason
                        .as_deref()
                        .unwrap_or("its provider is not configured")
                ),
                "Choose a product with \"available\": true from GET /api/v1/products.",
            )
            .with_param("product_id"));
        }
        // A key the machine's provisioner would refuse is refused now, not after payment.
        if let (Some(provisioner), Some(key)) = (
            self.provisioner(&product.fulfiller),
            quote
                .configuration_normalized
                .get("ssh_public_key")
                .and_then(serde_json::Value::as_str),
        ) {
            provisioner.check_authorized_key(key).map_err(|why| {
                DomainError::validation(
                    "configuration.ssh_public_key",
                    format!("The SSH public key was refused: {why}."),
                    "Send an ed25519 key (ssh-keygen -t ed25519), or omit the key to get a generated one.",
                )
            })?;
        }
        let method = self.resolve_payment_method(principal, req.payment_method, &req.billing)?;
        Ok((quote, product, method))
    }

    /// `POST /api/v1/orders/validate`: the preflight of seed 004; creates nothing.
    pub async fn validate_order(
        &self,
        principal: &Principal,
        req: &OrderRequest,
        idempotency_key: Option<String>,
    ) -> Result<ValidatedOrder, DomainError> {
        let (quote, product, _) = self.prepare_order(principal, req).await?;
        Ok(ValidatedOrder {
            payment_methods: self.payment_methods_for(principal),
            product_kind: product.kind,
            quote,
            idempotency_key,
        })
    }

    /// Places an order exactly once per idempotency key. `fingerprint` identifies the request
    /// body (canonical JSON hash) so a reused key with another body is refused.
    pub async fn place_order(
        &self,
        principal: &Principal,
        key: &str,
        fingerprint: &str,
        req: &OrderRequest,
        attempt: MppAttempt<'_>,
    ) -> Result<PlacedOrder, DomainError> {
        let key_ref = IdempotencyRef {
            scope: principal.idempotency_scope(),
            route: ORDER_ROUTE.to_owned(),
            key: key.to_owned(),
        };
        if let Some(stored) = self.claim_idempotency(&key_ref, fingerprint).await? {
            let outcome: OrderOutcome = serde_json::from_value(stored).map_err(|e| {
                tracing::error!(error = %e, "stored idempotent outcome is unreadable");
                DomainError::internal()
            })?;
            return Ok(PlacedOrder {
                outcome,
                replayed: true,
            });
        }

        // A previous holder of this key may have crashed after its order committed: finish that
        // order instead of creating a second one.
        if let Some(existing) = self
            .store
            .find_order_by_idempotency_key(&key_ref)
            .await
            .map_err(store_failure)?
        {
            // An MPP order waiting for payment: this is its (paid) retry.
            if existing.status == OrderStatus::PendingPayment
                && existing.payment_method == PaymentMethod::Mpp
            {
                let outcome = self.pay_mpp_order(existing, &key_ref, attempt).await?;
                return Ok(PlacedOrder {
                    outcome,
                    replayed: false,
                });
            }
            let outcome = self.resume_order(existing, &key_ref).await?;
            return Ok(PlacedOrder {
                outcome,
                replayed: true,
            });
        }

        match self
            .charge_and_create(principal, &key_ref, req, attempt)
            .await
        {
            Ok(outcome) => Ok(PlacedOrder {
                outcome,
                replayed: false,
            }),
            Err(e) => {
                // Nothing acted: free the key so the corrected request can use it. Unless an
                // order exists (an MPP order waiting for payment): the key stays bound to it and
                // to its body.
                let order_exists = self
                    .store
                    .find_order_by_idempotency_key(&key_ref)
                    .await
                    .map_or(true, |o| o.is_some());
                if !order_exists {
                    self.release_idempotency(&key_ref).await;
                }
                Err(e)
            }
        }
    }

    /// Claims an idempotency key for a request with this fingerprint. `Ok(None)`: the caller now
    /// holds the key and must complete or release it. `Ok(Some(outcome))`: the request was
    /// already done, here is what it answered. Errors: the key is in flight (`409`) or was used
    /// with another body (`422`).
    pub(crate) async fn claim_idempotency(
        &self,
        key_ref: &IdempotencyRef,
        fingerprint: &str,
    ) -> Result<Option<serde_json::Value>, DomainError> {
        let now = self.clock.now();
        let stale_before = now - self.settings.idempotency_lock_timeout;
        match self
            .store
            .claim_idempotency_key(key_ref, fingerprint, now, stale_before)
            .await
            .map_err(store_failure)?
        {
            ClaimOutcome::Existing { fingerprint: original, .. } if original != fingerprint => Err(DomainError::new(
                ErrorCode::IdempotencyKeyReused,
                "This Idempotency-Key was already used with a different request body.",
                "Send the identical body to get the original result, or use a new key for a new request.",
            )
            .with_param("Idempotency-Key")),
            ClaimOutcome::Existing { outcome: Some(mut stored), .. } => {
                self.signer.resign(&mut stored);
                Ok(Some(stored))
            }
            ClaimOutcome::Existing { outcome: None, .. } => Err(DomainError::new(
                ErrorCode::IdempotencyInProgress,
                "A request with this Idempotency-Key is still being processed.",
                "Retry the identical request after the Retry-After delay to get its result.",
            )
            .with_retry_after(1)),
            ClaimOutcome::Acquired => Ok(None),
        }
    }

    /// Frees a key whose request did not act.
    pub(crate) async fn release_idempotency(&self, key_ref: &IdempotencyRef) {
        if let Err(e) = self.store.release_idempotency_key(key_ref).await {
            tracing::error!(error = %e, "could not release an idempotency key");
        }
    }

    async fn charge_and_create(
        &self,
        principal: &Principal,
        key_ref: &IdempotencyRef,
        req: &OrderRequest,
        attempt: MppAttempt<'_>,
    ) -> Result<OrderOutcome, DomainError> {
        let (quote, product, method) = self.prepare_order(principal, req).await?;
        let account_id = match method {
            PaymentMethod::Credit => principal.require_account()?.clone(),
            PaymentMethod::Card | PaymentMethod::Mpp => match principal.account_id() {
                Some(a) => a.clone(),
                None => self.public_account().await?,
            },
        };
        let now = self.clock.now();
        let status = match (product.kind, product.requires_install_configuration) {
            (ProductKind::Instant, _) => OrderStatus::Paid,
            (ProductKind::Async, true) => OrderStatus::AwaitingInstallConfiguration,
            (ProductKind::Async, false) => OrderStatus::Processing,
        };
        let mut order = Order {
            id: OrderId::generate(),
            account_id: Some(account_id.clone()),
            agent_id: principal.agent_id().cloned(),
            status,
            payment_status: PaymentStatus::Paid,
            payment_method: method,
            product_id: product.id.clone(),
            quantity: quote.quantity,
            configuration: quote.configuration_normalized.clone(),
            configuration_warnings: quote.configuration_warnings.clone(),
            line_items: quote.line_items.clone(),
            total_minor: quote.total_minor,
            currency: quote.currency.clone(),
            quote_id: quote.id.clone(),
            idempotency_key: key_ref.key.clone(),
            created_at: now,
            updated_at: now,
            provisioning_estimate: self.provisioning_estimate(product).await,
            requires_install_configuration: product.requires_install_configuration,
            service_id: None,
            result: None,
            failure: None,
        };
        // An agent key's order passes its owner's rules first; its budgets are re-checked in
        // the order's own transaction.
        let budget = match self
            .govern_order(
                principal,
                product,
                order.total_minor,
                order.currency.as_str(),
            )
            .await?
        {
            Gate::Proceed(guard) => guard,
            Gate::Escalate(escalation) if method == PaymentMethod::Credit => {
                if matches!(req.source, OrderSource::Configure(_)) {
                    self.store
                        .insert_quote(&quote)
                        .await
                        .map_err(store_failure)?;
                }
                return self.await_approval(order, escalation, key_ref).await;
            }
            Gate::Escalate(escalation) => {
                return Err(DomainError::new(
                    ErrorCode::RulesDenied,
                    format!(
                    "Rule {} needs the owner's approval ({}); approvals hold credit orders only.",
                    escalation.rule_code, escalation.reason
                ),
                    "Order with payment_method \"credit\" to wait for the owner's approval.",
                ))
            }
        };
        if matches!(req.source, OrderSource::Configure(_)) && method != PaymentMethod::Credit {
            self.store
                .insert_quote(&quote)
                .await
                .map_err(store_failure)?;
        }
        match method {
            PaymentMethod::Card => {
                return self
                    .place_card_order(order, req.billing.customer_email.clone(), product, key_ref)
                    .await
            }
            PaymentMethod::Mpp => return self.place_mpp_order(order, key_ref, attempt).await,
            PaymentMethod::Credit => {}
        }
        // A machine product gets its service, its provisioning job and its resource tokens in
        // the order's own transaction (outbox): a paid order never lacks what delivers it.
        let delivery = (!product.requires_install_configuration)
            .then(|| self.machine_delivery(product, &mut order, now))
            .flatten();
        let charge = (order.total_minor > 0).then(|| LedgerMovement {
            account_id: account_id.clone(),
            kind: LedgerKind::Charge,
            amount_minor: -order.total_minor,
            order_id: Some(order.id.clone()),
            description: format!("{} ({})", product.name, order.id),
        });
        // Async orders are finished for this request once they are stored: record the outcome
        // in the same transaction. Instant orders record theirs after fulfillment.
        let accepted = (product.kind == ProductKind::Async).then(|| self.outcome_of(&order));
        // An instant order is fulfilled inline after this commit. Should this process die
        // before it records the result, the order must not stay paid and undelivered: a job
        // commits with it that fulfils it once its request counts as dead (a no-op when the
        // request finished).
        let mut jobs = delivery.as_ref().map_or_else(Vec::new, |d| d.jobs.clone());
        if accepted.is_none() {
            let mut recovery = storefront_domain::job::Job::new(
                crate::payments::FULFILL_JOB,
                serde_json::json!({ "order_id": order.id }),
                5,
                now,
            );
            recovery.run_at = now + self.settings.idempotency_lock_timeout;
            jobs.push(recovery);
        }
        let completion = accepted
            .as_ref()
            .map(|o| IdempotencyCompletion::new(key_ref.clone(), o.to_value()));
        let own_quote = matches!(req.source, OrderSource::Configure(_)).then_some(&quote);
        match self
            .store
            .insert_order(&NewOrder {
                order: &order,
                quote: own_quote,
                idempotency: Some(key_ref),
                charge: charge.as_ref(),
                service: delivery.as_ref().map(|d| &d.service),
                jobs: &jobs,
                resource_tokens: delivery.as_ref().map_or(&[][..], |d| &d.stored_tokens),
                updates_service: None,
                completes: completion.as_ref(),
                payment: None,
                budget: budget.as_ref(),
                approval: None,
            })
            .await
        {
            // No service update rides along, so the insert cannot be refused.
            Ok(_) => {}
            Err(StoreError::BudgetExceeded {
                spent_minor,
                max_minor,
            }) => {
                return Err(DomainError::new(
                    ErrorCode::SpendingCapExceeded,
                    format!(
                        "This order of {} would exceed the agent's budget: {} already spent of {}.",
                        display_minor(order.total_minor, &order.currency),
                        display_minor(spent_minor, &order.currency),
                        display_minor(max_minor, &order.currency)
                    ),
                    "Ask the account owner to raise the budget, or wait for the next period.",
                ))
            }
            Err(StoreError::InsufficientCredits { balance_minor }) => {
                return Err(insufficient_credits(
                    balance_minor,
                    order.total_minor,
                    &order.currency,
                ))
            }
            Err(e) => return Err(store_failure(e)),
        }
        tracing::info!(order_id = %order.id, product_id = %order.product_id, total_minor = order.total_minor, "order placed");
        metrics::counter!("storefront_orders_total", "product" => order.product_id.clone())
            .increment(1);
        match accepted {
            Some(OrderOutcome::Accepted {
                mut order,
                retry_after_seconds,
                payment_receipt,
            }) if delivery.is_some() => {
                order.management_tokens = delivery.map(|d| d.tokens_view());
                Ok(OrderOutcome::Accepted {
                    order,
                    retry_after_seconds,
                    payment_receipt,
                })
            }
            Some(outcome) => Ok(outcome),
            None => self.fulfill_instant(order, key_ref).await,
        }
    }

    /// Runs the fulfiller of a paid instant order, then records fulfilled or failed-and-refunded
    /// together with the key's outcome.
    pub(crate) async fn fulfill_instant(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        self.fulfill_paid(order, Some(key_ref)).await
    }

    /// Runs the fulfiller of a paid instant order and records the result (and the outcome of
    /// the request's key, when a request is waiting for it).
    pub(crate) async fn fulfill_paid(
        &self,
        mut order: Order,
        key_ref: Option<&IdempotencyRef>,
    ) -> Result<OrderOutcome, DomainError> {
        let product = self
            .catalog
            .get(&order.product_id)
            .ok_or_else(|| unknown_product(&order.product_id))?;
        let fulfiller = self.fulfillers.get(&product.fulfiller);
        let result = match fulfiller {
            Some(f) => {
                f.fulfill(product, &order.configuration, order.quantity)
                    .await
            }
            None => Err(crate::ports::FulfillmentError {
                message: "The product's fulfiller is not configured.".into(),
                detail: format!("no fulfiller named '{}'", product.fulfiller),
            }),
        };
        order.updated_at = self.clock.now();
        let mut refund = (None, None);
        match result {
            Ok(value) => {
                order.status = OrderStatus::Fulfilled;
                order.result = Some(value);
            }
            Err(e) => {
                tracing::warn!(order_id = %order.id, detail = %e.detail, "fulfillment failed; refunding");
                order.status = OrderStatus::Failed;
                order.failure = Some(Failure {
                    code: ErrorCode::FulfillmentFailed.as_str().into(),
                    message: e.message,
                });
                refund = self.refund_for(&order, "refund: fulfillment failed", order.updated_at);
                if order.payment_status == PaymentStatus::Paid {
                    order.payment_status = PaymentStatus::Refunded;
                }
            }
        }
        let outcome = self.outcome_of(&order);
        let completion =
            key_ref.map(|key| IdempotencyCompletion::new(key.clone(), outcome.to_value()));
        let (movement, refund_job) = refund;
        let moved = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[OrderStatus::Paid])),
                movement: movement.as_ref(),
                jobs: refund_job.as_slice(),
                completes: completion.as_ref(),
                ..Change::default()
            })
            .await
            .map_err(store_failure)?;
        match (moved, key_ref) {
            (true, _) => Ok(outcome),
            // Another process finished this order first (crash recovery racing a slow holder):
            // report what it recorded.
            (false, Some(key_ref)) => {
                let current = self.load_order(&order.id).await?;
                self.record_outcome(&current, key_ref).await
            }
            (false, None) => Ok(self.outcome_of(&self.load_order(&order.id).await?)),
        }
    }

    /// Builds (and records) the outcome of an order whose request was interrupted.
    async fn resume_order(
        &self,
        order: Order,
        key_ref: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let is_instant = self
            .catalog
            .get(&order.product_id)
            .is_some_and(|p| p.kind == ProductKind::Instant);
        if order.status == OrderStatus::Paid && is_instant {
            return self.fulfill_instant(order, key_ref).await;
        }
        self.record_outcome(&order, key_ref).await
    }

    async fn record_outcome(
        &self,
        order: &Order,
        key_ref: &IdempotencyRef,
    ) -> Result<OrderOutcome, DomainError> {
        let outcome = self.outcome_of(order);
        self.store
            .complete_idempotency_key(&IdempotencyCompletion::new(
                key_ref.clone(),
                outcome.to_value(),
            ))
            .await
            .map_err(store_failure)?;
        Ok(outcome)
    }

    fn outcome_of(&self, order: &Order) -> OrderOutcome {
        match order.status {
            OrderStatus::Fulfilled => OrderOutcome::Created {
                order: self.order_view(order),
                payment_receipt: None,
            },
            OrderStatus::Failed => OrderOutcome::Failed {
                error: DomainError::new(
                    ErrorCode::FulfillmentFailed,
                    format!(
                        "Order {} failed: {} Nothing was charged (the payment was refunded).",
                        order.id,
                        order
                            .failure
                            .as_ref()
                            .map(|f| f.message.as_str())
                            .unwrap_or("the provider failed.")
                    ),
                    "Retry with a new Idempotency-Key.",
                ),
            },
            // The service is still being provisioned: the credentials URL, not yet the credentials.
            _ => OrderOutcome::Accepted {
                order: self.with_service(self.order_view(order), order, None),
                retry_after_seconds: order.retry_after_seconds(),
                payment_receipt: None,
            },
        }
    }

    pub(crate) async fn load_order(&self, id: &OrderId) -> Result<Order, DomainError> {
        self.store
            .get_order(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| DomainError::not_found("order", id.as_str()))
    }

    /// An order of the principal's account; other accounts' orders do not exist for it.
    async fn owned_order(&self, principal: &Principal, id: &str) -> Result<Order, DomainError> {
        let not_found = || DomainError::not_found("order", id);
        let account = principal.require_account()?;
        let order_id = OrderId::parse(id).ok_or_else(not_found)?;
        let order = self
            .store
            .get_order(&order_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        if order.account_id.as_ref() != Some(account) {
            return Err(not_found());
        }
        Ok(order)
    }

    pub async fn get_order(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(OrderView, Option<u64>), DomainError> {
        let order = self.owned_order(principal, id).await?;
        self.full_view(order).await
    }

    /// The order with what its service adds, and how long to wait before polling again (while
    /// the order or its machine is not done).
    async fn full_view(&self, order: Order) -> Result<(OrderView, Option<u64>), DomainError> {
        use storefront_domain::service::ServiceStatus;
        let service = match &order.service_id {
            Some(id) => self.store.get_service(id).await.map_err(store_failure)?,
            None => None,
        };
        let mut view = self.with_service(self.order_view(&order), &order, service.as_ref());
        view.payment_action = self.pending_payment_action(&order).await;
        view.approval = self.approval_of(&order).await;
        let settling = service.as_ref().is_some_and(|s| {
            matches!(
                s.status,
                ServiceStatus::Provisioning
                    | ServiceStatus::Restarting
                    | ServiceStatus::Reinstalling
            )
        });
        let retry = order.retry_after_seconds().or(settling.then_some(2));
        Ok((view, retry))
    }

    /// An order reached either with a key of its account, or — without a key — through a URL
    /// signed for `method` on `path` (`signature` = its `expires` and `sig`).
    async fn order_by_key_or_signature(
        &self,
        principal: &Principal,
        id: &str,
        method: &str,
        path: &str,
        signature: Option<(Option<&str>, Option<&str>)>,
    ) -> Result<Order, DomainError> {
        match signature {
            // Neither a key nor a signature: no credential at all (a wrong signature stays
            // `invalid_signature`).
            Some((None, None)) if matches!(principal, Principal::Public) => {
                Err(DomainError::unauthorized())
            }
            Some((expires, sig)) if principal.account_id().is_none() => {
                self.signer
                    .verify(method, path, expires, sig, self.clock.now())?;
                let order_id =
                    OrderId::parse(id).ok_or_else(|| DomainError::not_found("order", id))?;
                self.load_order(&order_id).await
            }
            _ => self.owned_order(principal, id).await,
        }
    }

    /// How long delivery should take: from the latest observed provisionings of the product
    /// when there are enough, else the catalog's estimate.
    async fn provisioning_estimate(
        &self,
        product: &storefront_domain::catalog::Product,
    ) -> Option<storefront_domain::catalog::ProvisioningEstimate> {
        let fallback = product.provisioning_estimate;
        if product.kind != ProductKind::Async {
            return fallback;
        }
        match self
            .store
            .recent_provisioning_seconds(&product.id, 20)
            .await
        {
            Ok(seconds) => {
                storefront_domain::catalog::ProvisioningEstimate::from_history(seconds, fallback)
            }
            Err(e) => {
                tracing::warn!(error = %e, "provisioning history unavailable; using the catalog's estimate");
                fallback
            }
        }
    }

    /// Seed 000's install step: the configuration a product needs after payment, validated
    /// against its install schema; then delivery starts. Accepted from a key of the order's
    /// account or through the signed `install_action.url`.
    pub async fn submit_install_configuration(
        &self,
        principal: &Principal,
        id: &str,
        signature: Option<(Option<&str>, Option<&str>)>,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<OrderView, DomainError> {
        let mut order = self
            .order_by_key_or_signature(
                principal,
                id,
                "POST",
                &crate::views::install_path(id),
                signature,
            )
            .await?;
        let invalid = |order: &Order| {
            DomainError::new(
                ErrorCode::InvalidState,
                format!(
                    "Order {} is {}; it takes no install configuration now.",
                    order.id,
                    order.status.as_str()
                ),
                "Only orders in awaiting_install_configuration accept one.",
            )
        };
        if order.status != OrderStatus::AwaitingInstallConfiguration {
            return Err(invalid(&order));
        }
        let product = self
            .catalog
            .get(&order.product_id)
            .ok_or_else(|| unknown_product(&order.product_id))?;
        let normalized =
            storefront_domain::pricing::normalize(&product.install_fields, config, "config")?;
        let now = self.clock.now();
        order.configuration.insert(
            "install".into(),
            serde_json::Value::Object(normalized.configuration),
        );
        order.status = OrderStatus::Processing;
        order.updated_at = now;
        let delivery = self.machine_delivery(product, &mut order, now);
        let moved = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[OrderStatus::AwaitingInstallConfiguration])),
                new_service: delivery.as_ref().map(|d| &d.service),
                resource_tokens: delivery.as_ref().map_or(&[][..], |d| &d.stored_tokens),
                jobs: delivery.as_ref().map_or(&[][..], |d| &d.jobs),
                ..Change::default()
            })
            .await
            .map_err(store_failure)?;
        if !moved {
            return Err(invalid(&self.load_order(&order.id).await?));
        }
        tracing::info!(order_id = %order.id, "install configuration accepted; delivery starts");
        let mut view = self.with_service(self.order_view(&order), &order, None);
        view.management_tokens = delivery.map(|d| d.tokens_view());
        Ok(view)
    }

    /// Credentials of the order's machine: for the account's keys, or for whoever holds the
    /// signed `credentials_action.url` (`expires` and `sig`).
    pub async fn order_credentials(
        &self,
        principal: &Principal,
        id: &str,
        signature: Option<(Option<&str>, Option<&str>)>,
    ) -> Result<crate::machines::Credentials, DomainError> {
        let order = self
            .order_by_key_or_signature(
                principal,
                id,
                "GET",
                &crate::views::credentials_path(id),
                signature,
            )
            .await?;
        let service_id = order.service_id.as_ref().ok_or_else(|| {
            DomainError::new(
                ErrorCode::NotFound,
                format!("Order {} has no machine and so no credentials.", order.id),
                "Only machine orders hand over credentials.",
            )
        })?;
        let service = self
            .store
            .get_service(service_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(DomainError::internal)?;
        self.credentials_of(&service)
    }

    /// `GET <status_url>`: the signature is the credential. The view keeps `credentials_action`
    /// (handed to the same holder with the status URL, and the only way to the machine for an
    /// agent that kept just this URL) but no management tokens.
    pub async fn order_status(
        &self,
        id: &str,
        expires: Option<&str>,
        sig: Option<&str>,
    ) -> Result<(OrderView, Option<u64>), DomainError> {
        self.signer
            .verify("GET", &status_path(id), expires, sig, self.clock.now())?;
        let order_id = OrderId::parse(id).ok_or_else(|| DomainError::not_found("order", id))?;
        let order = self.load_order(&order_id).await?;
        let (mut view, retry) = self.full_view(order).await?;
        view.management_tokens = None;
        Ok((view, retry))
    }

    pub async fn list_orders(
        &self,
        principal: &Principal,
        filter: &OrderFilter,
    ) -> Result<Page<OrderView>, DomainError> {
        let account = principal.require_account()?;
        if let Some(c) = &filter.page.cursor {
            if OrderId::parse(c).is_none() {
                return Err(PageRequest::invalid_cursor());
            }
        }
        let orders = self
            .store
            .list_orders(account, filter)
            .await
            .map_err(store_failure)?;
        let views = orders.iter().map(|o| self.order_view(o)).collect();
        Ok(Page::from_fetched(
            views,
            filter.page.limit,
            |o: &OrderView| o.id.clone(),
        ))
    }

    /// Cancels an order that has not started delivery, refunding what was paid.
    pub async fn cancel_order(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<OrderView, DomainError> {
        let mut order = self.owned_order(principal, id).await?;
        let is_instant = self
            .catalog
            .get(&order.product_id)
            .is_some_and(|p| p.kind == ProductKind::Instant);
        // A paid instant order is being fulfilled inline right now; it cannot be stopped.
        if !order.status.is_cancelable() || (is_instant && order.status == OrderStatus::Paid) {
            return Err(invalid_state_for_cancel(&order));
        }
        if order.status == OrderStatus::AwaitingApproval {
            if let Some(canceled) = self.cancel_awaiting_approval(&order).await? {
                return Ok(self.order_view(&canceled));
            }
        }
        let expected = order.status;
        let now = self.clock.now();
        let (movement, refund_job) = self.refund_for(&order, "refund: order canceled", now);
        order.status = OrderStatus::Canceled;
        if order.payment_status == PaymentStatus::Paid {
            order.payment_status = PaymentStatus::Refunded;
        }
        order.updated_at = now;
        let moved = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[expected])),
                movement: movement.as_ref(),
                jobs: refund_job.as_slice(),
                ..Change::default()
            })
            .await
            .map_err(store_failure)?;
        if !moved {
            let current = self.load_order(&order.id).await?;
            return Err(invalid_state_for_cancel(&current));
        }
        tracing::info!(order_id = %order.id, "order canceled");
        Ok(self.order_view(&order))
    }

    /// Cancels an order that waits for the owner's approval together with that approval (denied,
    /// saying why), in one transaction, so the owner is not left an approval that nothing can
    /// decide. `None` when the order has no pending approval (the caller cancels it alone).
    async fn cancel_awaiting_approval(&self, order: &Order) -> Result<Option<Order>, DomainError> {
        let approval = self
            .store
            .find_approval_for_order(&order.id)
            .await
            .map_err(store_failure)?;
        let Some(approval) = approval.filter(|a| a.status == ApprovalStatus::Pending) else {
            return Ok(None);
        };
        let closed = self
            .close(
                approval,
                ApprovalStatus::Denied,
                Some(ORDER_CANCELED_REASON.to_owned()),
            )
            .await?;
        let current = self.load_order(&order.id).await?;
        match closed {
            Some(_) => {
                tracing::info!(order_id = %order.id, "order canceled with its approval");
                Ok(Some(current))
            }
            // Decided meanwhile (approved, denied or expired): say what the order is now.
            None => Err(invalid_state_for_cancel(&current)),
        }
    }
}

/// The reason an approval carries when its order was canceled before the owner decided.
const ORDER_CANCELED_REASON: &str = "The order was canceled before a decision.";

/// `402 insufficient_credits`, naming the balance and the price.
pub(crate) fn insufficient_credits(
    balance_minor: i64,
    total_minor: i64,
    currency: &storefront_domain::money::Currency,
) -> DomainError {
    DomainError::new(
        ErrorCode::InsufficientCredits,
        format!(
            "The balance is {} but this costs {}.",
            display_minor(balance_minor, currency),
            display_minor(total_minor, currency)
        ),
        "Top up the account's credits, or buy something smaller.",
    )
}

fn invalid_state_for_cancel(order: &Order) -> DomainError {
    DomainError::new(
        ErrorCode::InvalidState,
        format!("Order {} is {} and can no longer be canceled.", order.id, order.status.as_str()),
        "Only orders that have not started delivery can be canceled; terminate the service instead.",
    )
}

fn validate_billing(b: &BillingDetails) -> Result<(), DomainError> {
    let fields = [
        ("customer_email", &b.customer_email),
        ("billing_name", &b.billing_name),
        ("billing_street", &b.billing_street),
        ("billing_city", &b.billing_city),
        ("billing_postal_code", &b.billing_postal_code),
        ("billing_country", &b.billing_country),
    ];
    let missing: Vec<&str> = fields
        .iter()
        .filter(|(_, v)| v.as_deref().is_none_or(|s| s.trim().is_empty()))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::validation(
            missing[0],
            format!(
                "Card orders need billing details; missing: {}.",
                missing.join(", ")
            ),
            "Ask the customer for the missing billing details; never guess them.",
        ));
    }
    if b.customer_email.as_deref().and_then(parse_email).is_none() {
        return Err(DomainError::validation(
            "customer_email",
            "customer_email is not a valid e-mail address.",
            "Send the customer's address, like customer@example.com.",
        ));
    }
    let country = b.billing_country.as_deref().unwrap_or_default();
    if !(country.len() == 2 && country.bytes().all(|c| c.is_ascii_uppercase())) {
        return Err(DomainError::validation(
            "billing_country",
            format!("'{country}' is not an ISO 3166-1 alpha-2 country code."),
            "Use two upper-case letters, like CZ or US.",
        ));
    }
    Ok(())
}
