//! Orders: validate, place (idempotently, on any rail), read, list, cancel. What happens once
//! an order is paid lives in `lifecycle.rs`; the card and MPP steps in `payments`.
//!
//! Placing follows the idempotency state machine of `idempotency.rs` (docs/api.md,
//! "Idempotency"): the key is claimed first (so a concurrent duplicate sees
//! `idempotency_in_progress`), the charge and the order commit in one transaction with the
//! request's answer, and errors that did not act release the key. One exception saves two
//! durable writes: a credit order for an instant product fulfilled in this process is placed in
//! one unit, its key recorded done with it (`place_in_one_unit`).

use crate::agents::Gate;
use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::idempotency::{fingerprint, remembered, Claim};
use crate::lifecycle::{charged, Rail};
use crate::page::{Page, PageRequest};
use crate::ports::{Applied, Change, IdempotencyCompletion, IdempotencyRef, OrderFilter};
use crate::principal::Principal;
use crate::quotes::QuoteRequest;
use crate::views::{status_path, OrderOutcome, OrderView};
use serde::Serialize;
use storefront_domain::account::parse_email;
use storefront_domain::agent::ApprovalStatus;
use storefront_domain::catalog::{Product, ProductKind};
use storefront_domain::event::EventType;
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::ids::OrderId;
use storefront_domain::order::{Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::quote::Quote;
use storefront_domain::{DomainError, ErrorCode};

pub const ORDER_ROUTE: &str = "POST /api/v1/orders";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// Order a stored quote at its quoted price.
    Quote(String),
    /// Quote and order in one step.
    Configure(QuoteRequest),
}

/// Billing details for card payments (never guessed, all required; docs/api.md, "Orders").
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BillingDetails {
    pub customer_email: Option<String>,
    pub billing_name: Option<String>,
    pub billing_street: Option<String>,
    pub billing_city: Option<String>,
    pub billing_postal_code: Option<String>,
    pub billing_country: Option<String>,
}

/// An order as parsed from any door. Its canonical JSON is the idempotency fingerprint and the
/// body an MPP challenge binds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRequest {
    pub source: OrderSource,
    pub payment_method: Option<PaymentMethod>,
    pub billing: BillingDetails,
}

impl OrderRequest {
    /// What identifies this request under an idempotency key.
    pub fn fingerprint(&self) -> String {
        fingerprint(self)
    }
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

/// What `place_in_one_unit` came to (returned once and taken apart at once: its size does not
/// matter).
#[allow(clippy::large_enum_variant)]
enum OneUnit<'a> {
    Placed(OrderOutcome),
    /// Take the regular way, with what was decided on the way.
    Regular(Decided<'a>),
}

/// What the one-unit attempt already decided, so the regular way does not ask twice (the
/// rules' decision is audited).
#[derive(Default)]
struct Decided<'a> {
    prepared: Option<(Quote, &'a Product, PaymentMethod)>,
    gate: Option<Gate>,
}

impl<'a> Decided<'a> {
    fn prepared(prepared: (Quote, &'a Product, PaymentMethod)) -> Self {
        Self {
            prepared: Some(prepared),
            gate: None,
        }
    }
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

    /// `POST /api/v1/orders/validate`: the preflight (docs/api.md, "Validate before ordering");
    /// creates nothing.
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

    /// Places an order exactly once per idempotency key. `mpp_credential` is the
    /// `Authorization: Payment` credential of an MPP order's paid retry.
    pub async fn place_order(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        req: &OrderRequest,
        mpp_credential: Option<&str>,
    ) -> Result<PlacedOrder, DomainError> {
        let key = IdempotencyRef::new(principal, ORDER_ROUTE, key);
        let fingerprint = req.fingerprint();
        let decided = match self
            .place_in_one_unit(principal, &key, req, &fingerprint)
            .await?
        {
            OneUnit::Placed(outcome) => {
                return Ok(PlacedOrder {
                    outcome,
                    replayed: false,
                })
            }
            OneUnit::Regular(decided) => decided,
        };
        let key = match self.claim(key, &fingerprint).await? {
            Claim::Replay(stored) => {
                return Ok(PlacedOrder {
                    outcome: remembered(stored)?,
                    replayed: true,
                })
            }
            Claim::Held(key) => key,
        };

        // A previous holder of this key may have crashed after its order committed: finish that
        // order instead of creating a second one.
        if let Some(existing) = self
            .store
            .find_order_by_idempotency_key(&key)
            .await
            .map_err(store_failure)?
        {
            // An MPP order waiting for payment: this is its (paid) retry.
            if existing.status == OrderStatus::PendingPayment
                && existing.payment_method == PaymentMethod::Mpp
            {
                let outcome = self
                    .pay_mpp_order(existing, &key, req, mpp_credential)
                    .await?;
                return Ok(PlacedOrder {
                    outcome,
                    replayed: false,
                });
            }
            let outcome = self.resume_order(existing, &key).await?;
            return Ok(PlacedOrder {
                outcome,
                replayed: true,
            });
        }

        match self
            .charge_and_create(principal, &key, req, mpp_credential, decided)
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
                    .find_order_by_idempotency_key(&key)
                    .await
                    .map_or(true, |o| o.is_some());
                if !order_exists {
                    self.release(&key).await;
                }
                Err(e)
            }
        }
    }

    /// Places a credit order for an instant product whose fulfiller computes in this process
    /// (`Fulfiller::computes_in_process`) in one durable unit: the order, already fulfilled,
    /// commits with its charge, its events and its key recorded done — one transaction instead
    /// of three (claim the key; charge; record the fulfilment) and no safety-net job. The key is
    /// not claimed first, so a key seen before takes the regular way (which replays or refuses
    /// it), and of two identical requests racing here the second finds the key taken inside its
    /// unit, which then writes nothing, and takes the regular way too. Anything else — another
    /// rail or product, an escalation, a failed fulfilment, a request the regular way must
    /// judge under its key — goes the regular way with what was decided here, so the rules are
    /// asked (and audited) once.
    async fn place_in_one_unit<'a>(
        &'a self,
        principal: &Principal,
        key: &IdempotencyRef,
        req: &OrderRequest,
        fingerprint: &str,
    ) -> Result<OneUnit<'a>, DomainError> {
        // Errors are judged on the regular way, after the key: a retry gets its first answer.
        let Ok(prepared) = self.prepare_order(principal, req).await else {
            return Ok(OneUnit::Regular(Decided::default()));
        };
        let (quote, product, method) = &prepared;
        let in_process = self.in_process_fulfiller(product).is_some();
        if *method != PaymentMethod::Credit || product.kind != ProductKind::Instant || !in_process {
            return Ok(OneUnit::Regular(Decided::prepared(prepared)));
        }
        // An agent's order is decided and audited before its unit: a key seen before is looked
        // up first, so a replay records no second decision. Anyone else's replay is found inside
        // the unit, whose key insert then changes nothing — a read fewer for every new order.
        if principal.agent_id().is_some()
            && self
                .store
                .idempotency_key_exists(key)
                .await
                .map_err(store_failure)?
        {
            return Ok(OneUnit::Regular(Decided::prepared(prepared)));
        }
        let order = self
            .new_order(principal, key, quote, product, *method)
            .await?;
        let budget = match self.govern_order(principal, product, &order).await? {
            Gate::Proceed(budget) => budget,
            escalate => {
                return Ok(OneUnit::Regular(Decided {
                    prepared: Some(prepared),
                    gate: Some(escalate),
                }))
            }
        };
        let mut paid = self.mark_paid(order, product, Rail::Credit).await?;
        if !self.fulfil_before_commit(&mut paid, product).await {
            return Ok(OneUnit::Regular(Decided {
                prepared: Some(prepared),
                gate: Some(Gate::Proceed(budget)),
            }));
        }
        let answer = self
            .answer_at_commit(&paid, None)
            .ok_or_else(DomainError::internal)?;
        let completion = IdempotencyCompletion::new(key.clone(), answer.to_value());
        let inserted = self
            .store
            .insert_order(&crate::ports::NewOrder {
                quote: matches!(req.source, OrderSource::Configure(_)).then_some(quote),
                idempotency: Some(key),
                completes: Some(&completion),
                records_key: Some(fingerprint),
                budget: budget.as_ref(),
                ..paid.new_order()
            })
            .await;
        if !charged(inserted, &paid.order)? {
            // The key was taken meanwhile: the regular way answers under it.
            return Ok(OneUnit::Regular(Decided::default()));
        }
        // The answer the key recorded is the one this request gets: built once.
        self.count_paid(&paid.order, Rail::Credit);
        Ok(OneUnit::Placed(paid.with_tokens(answer)))
    }

    /// A new order of the principal for `quote`, waiting for payment.
    async fn new_order(
        &self,
        principal: &Principal,
        key: &IdempotencyRef,
        quote: &Quote,
        product: &Product,
        method: PaymentMethod,
    ) -> Result<Order, DomainError> {
        let account_id = match method {
            PaymentMethod::Credit => principal.require_account()?.clone(),
            PaymentMethod::Card | PaymentMethod::Mpp => match principal.account_id() {
                Some(a) => a.clone(),
                None => self.public_account().await?,
            },
        };
        let now = self.clock.now();
        Ok(Order {
            id: OrderId::generate(),
            account_id: Some(account_id),
            agent_id: principal.agent_id().cloned(),
            status: OrderStatus::PendingPayment,
            payment_status: PaymentStatus::Unpaid,
            payment_method: method,
            product_id: product.id.clone(),
            quantity: quote.quantity,
            configuration: quote.configuration_normalized.clone(),
            configuration_warnings: quote.configuration_warnings.clone(),
            line_items: quote.line_items.clone(),
            total_minor: quote.total_minor,
            currency: quote.currency.clone(),
            quote_id: quote.id.clone(),
            idempotency_key: key.key.clone(),
            created_at: now,
            updated_at: now,
            provisioning_estimate: self
                .provisioning_estimate(product, &quote.configuration_normalized)
                .await,
            requires_install_configuration: product.requires_install_configuration,
            service_id: None,
            result: None,
            failure: None,
        })
    }

    async fn charge_and_create(
        &self,
        principal: &Principal,
        key: &IdempotencyRef,
        req: &OrderRequest,
        mpp_credential: Option<&str>,
        decided: Decided<'_>,
    ) -> Result<OrderOutcome, DomainError> {
        let (quote, product, method) = match decided.prepared {
            Some(prepared) => prepared,
            None => self.prepare_order(principal, req).await?,
        };
        let order = self
            .new_order(principal, key, &quote, product, method)
            .await?;
        // A quote made for this order alone is stored with it.
        let own_quote = matches!(req.source, OrderSource::Configure(_)).then_some(&quote);
        // An agent key's order passes its owner's rules first; its budgets are re-checked in
        // the order's own transaction.
        let gate = match decided.gate {
            Some(gate) => gate,
            None => self.govern_order(principal, product, &order).await?,
        };
        let budget = match gate {
            Gate::Proceed(guard) => guard,
            Gate::Escalate(escalation) if method == PaymentMethod::Credit => {
                if let Some(quote) = own_quote {
                    self.store
                        .insert_quote(quote)
                        .await
                        .map_err(store_failure)?;
                }
                return self.await_approval(order, escalation, key).await;
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
        if method != PaymentMethod::Credit {
            if let Some(quote) = own_quote {
                self.store
                    .insert_quote(quote)
                    .await
                    .map_err(store_failure)?;
            }
        }
        match method {
            PaymentMethod::Card => {
                return self
                    .place_card_order(order, req.billing.customer_email.clone(), product, key)
                    .await
            }
            PaymentMethod::Mpp => {
                return self.place_mpp_order(order, key, req, mpp_credential).await
            }
            PaymentMethod::Credit => {}
        }
        let paid = self.mark_paid(order, product, Rail::Credit).await?;
        let completion = self
            .answer_at_commit(&paid, None)
            .map(|answer| IdempotencyCompletion::new(key.clone(), answer.to_value()));
        let inserted = self
            .store
            .insert_order(&crate::ports::NewOrder {
                quote: own_quote,
                idempotency: Some(key),
                completes: completion.as_ref(),
                budget: budget.as_ref(),
                ..paid.new_order()
            })
            .await;
        // A new order updates no service, so it is never stale.
        charged(inserted, &paid.order)?;
        let answer = self
            .paid_committed(paid, Rail::Credit, Some(key), None)
            .await?;
        answer.ok_or_else(DomainError::internal)
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
    /// when there are enough, else the catalog's estimate — plus whatever the provisioner must
    /// prepare first for this configuration (the first machine of an image builds the image).
    async fn provisioning_estimate(
        &self,
        product: &storefront_domain::catalog::Product,
        configuration: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<storefront_domain::catalog::ProvisioningEstimate> {
        let fallback = product.provisioning_estimate;
        if product.kind != ProductKind::Async {
            return fallback;
        }
        let usual = match self
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
        };
        let preparation = configuration
            .get("image")
            .and_then(serde_json::Value::as_str)
            .zip(self.provisioners.get(&product.fulfiller))
            .and_then(|(image, provisioner)| provisioner.preparation_seconds(image));
        match (usual, preparation) {
            (Some(e), Some((least, most))) => {
                Some(storefront_domain::catalog::ProvisioningEstimate {
                    min_seconds: e.min_seconds + least,
                    max_seconds: e.max_seconds + most,
                })
            }
            (None, Some((least, most))) => Some(storefront_domain::catalog::ProvisioningEstimate {
                min_seconds: least,
                max_seconds: most,
            }),
            (usual, None) => usual,
        }
    }

    /// The install step (docs/api.md, "Install configuration"): the configuration a product needs
    /// after payment, validated
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
            .and_then(Applied::without_charge)
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
        // A signed URL is the agent's bearer credential: the kill switch voids it (the
        // account's own keys still reach the credentials).
        if principal.account_id().is_none() {
            if let Some(agent_id) = &order.agent_id {
                self.refuse_if_suspended(agent_id).await?;
            }
        }
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
        let views = orders.into_iter().map(|o| self.order_view_of(o)).collect();
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
        let refund = self.refund_for(&order, "refund: order canceled", now);
        order.status = OrderStatus::Canceled;
        if order.payment_status == PaymentStatus::Paid {
            order.payment_status = PaymentStatus::Refunded;
        }
        order.updated_at = now;
        let canceled = self.order_events(&[EventType::OrderCanceled], &order);
        let moved = self
            .store
            .apply_change(&Change {
                order: Some((&order, &[expected])),
                movement: refund.movement(),
                jobs: refund.job.as_slice(),
                events: &canceled,
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
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
