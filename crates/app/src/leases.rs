//! Lease extensions: more time on a running machine, bought as an order of its own (so the
//! ledger keeps one charge per order and the extension shows in the order history), paid from
//! account credit through the lifecycle like any order, or held for the owner's approval.

use crate::agents::Gate;
use crate::app::App;
use crate::idempotency::{fingerprint, remembered, Claim};
use crate::lifecycle::{charged, lease_over, Paid, Rail};
use crate::machines::ServiceView;
use crate::ports::{IdempotencyCompletion, IdempotencyRef};
use crate::principal::{Principal, TokenScope};
use crate::views::OrderView;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storefront_domain::catalog::Product;
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::ids::{OrderId, QuoteId};
use storefront_domain::order::{
    Order, OrderStatus, PaymentMethod, PaymentStatus, ADDED_SECONDS_FIELD, EXTENDS_SERVICE_FIELD,
};
use storefront_domain::pricing::LineItem;
use storefront_domain::quote::Quote;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::DomainError;

/// The answer to a lease extension, as its idempotency key remembers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extension {
    pub service_id: String,
    pub status: String,
    pub service: Value,
    /// The order that paid for the extension.
    pub order: Value,
}

/// `(extension, replayed)`.
pub type ExtendResult = (Extension, bool);

/// A lease extension as parsed from any door (what its idempotency key fingerprints).
#[derive(Debug, Clone, Serialize)]
struct ExtendRequest {
    additional_minutes: i64,
}

fn plain(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("plain data")
}

impl App {
    /// Extends an active lease by `additional_minutes`, rounded up to whole billing units
    /// (minutes, hours or months) and charged at the product's unit price, exactly once per
    /// idempotency key.
    pub async fn extend_service(
        &self,
        principal: &Principal,
        id: &str,
        additional_minutes: i64,
        key: &IdempotencyKey,
    ) -> Result<ExtendResult, DomainError> {
        let service = self
            .owned_service(principal, id, Some(TokenScope::Extend))
            .await?;
        let route = format!("POST /api/v1/services/{}/extend", service.id);
        let request = ExtendRequest { additional_minutes };
        let key = match self
            .claim(
                IdempotencyRef::new(principal, route, key),
                &fingerprint(&request),
            )
            .await?
        {
            Claim::Replay(stored) => return Ok((remembered(stored)?, true)),
            Claim::Held(key) => key,
        };
        match self
            .charge_extension(principal, service, additional_minutes, &key)
            .await
        {
            Ok(extension) => Ok((extension, false)),
            Err(e) => {
                self.release(&key).await;
                Err(e)
            }
        }
    }

    async fn charge_extension(
        &self,
        principal: &Principal,
        service: Service,
        additional_minutes: i64,
        key: &IdempotencyRef,
    ) -> Result<Extension, DomainError> {
        if !ServiceStatus::LIVE.contains(&service.status) {
            return Err(crate::machines::invalid_state(&service, "be extended"));
        }
        let product = self
            .catalog
            .get(&service.product_id)
            .ok_or_else(DomainError::internal)?;
        let (order, quote) = self
            .extension_order(principal, &service, product, additional_minutes, key)
            .await?;
        // An agent key's extension passes the owner's rules like an order.
        let budget = match self.govern_order(principal, product, &order).await? {
            Gate::Proceed(guard) => guard,
            Gate::Escalate(escalation) => {
                self.store
                    .insert_quote(&quote)
                    .await
                    .map_err(crate::app::store_failure)?;
                let waiting = |order: &OrderView| Extension {
                    service_id: service.id.to_string(),
                    status: "awaiting_approval".into(),
                    service: plain(ServiceView::from(&service)),
                    order: plain(order),
                };
                let view = self
                    .hold_for_approval(order, escalation, key, |order| plain(waiting(order)))
                    .await?;
                return Ok(waiting(&view));
            }
        };
        let paid = self.mark_paid(order, product, Rail::Credit).await?;
        let extension = self.accepted_extension(&paid)?;
        let completion = IdempotencyCompletion::new(key.clone(), plain(&extension));
        let applied = self
            .store
            .insert_order(&crate::ports::NewOrder {
                quote: Some(&quote),
                idempotency: Some(key),
                completes: Some(&completion),
                budget: budget.as_ref(),
                ..paid.new_order()
            })
            .await;
        if !charged(applied, &paid.order)? {
            let current = self.load_service(&service.id).await?;
            return Err(lease_over(&current));
        }
        self.paid_committed(paid, Rail::Credit, Some(key), None)
            .await?;
        Ok(extension)
    }

    /// The answer to an extension that was charged.
    fn accepted_extension(&self, paid: &Paid) -> Result<Extension, DomainError> {
        let (service, _) = paid.extended.as_ref().ok_or_else(DomainError::internal)?;
        Ok(Extension {
            service_id: service.id.to_string(),
            status: "accepted".into(),
            service: plain(ServiceView::from(service)),
            order: plain(self.order_view(&paid.order)),
        })
    }

    /// The order (and its quote) that buys `additional_minutes` more of the service's lease, in
    /// whole billing units at the unit price the service was bought at.
    async fn extension_order(
        &self,
        principal: &Principal,
        service: &Service,
        product: &Product,
        additional_minutes: i64,
        key: &IdempotencyRef,
    ) -> Result<(Order, Quote), DomainError> {
        let Some(unit_seconds) = product.pricing.model.unit_seconds() else {
            return Err(crate::machines::invalid_state(service, "be extended"));
        };
        if !(1..=525_600).contains(&additional_minutes) {
            return Err(DomainError::validation(
                "additional_minutes",
                format!("{additional_minutes} is not a valid extension."),
                "Send a whole number of minutes from 1 to 525600.",
            ));
        }
        let units = (additional_minutes * 60 + unit_seconds - 1) / unit_seconds;
        let held_units = service.lease_seconds / unit_seconds;
        if let Some(max) = product.pricing.max_units {
            if held_units + units > max {
                let room = (max - held_units).max(0) * unit_seconds / 60;
                return Err(DomainError::validation(
                    "additional_minutes",
                    format!(
                        "The lease would exceed the product's maximum of {max} {}.",
                        product.pricing.model.unit_label(max)
                    ),
                    format!("Extend by at most {room} minutes."),
                ));
            }
        }
        let paid_for = self.load_order(&service.order_id).await?;
        let unit_minor = match &product.pricing.unit_minor_by {
            Some(by) => paid_for
                .configuration
                .get(&by.field)
                .and_then(Value::as_str)
                .and_then(|v| by.prices.get(v))
                .copied()
                .unwrap_or(product.pricing.unit_minor),
            None => product.pricing.unit_minor,
        };
        let amount = units
            .checked_mul(unit_minor)
            .ok_or_else(DomainError::internal)?;
        let now = self.clock.now();
        let line = LineItem {
            description: format!(
                "Extension of {}: {units} {}",
                service.id,
                product.pricing.model.unit_label(units)
            ),
            quantity: units,
            unit_minor,
            amount_minor: amount,
        };
        let mut configuration = serde_json::Map::new();
        configuration.insert(EXTENDS_SERVICE_FIELD.into(), json!(service.id));
        configuration.insert("additional_minutes".into(), json!(additional_minutes));
        configuration.insert(ADDED_SECONDS_FIELD.into(), json!(units * unit_seconds));
        let quote = Quote {
            id: QuoteId::generate(),
            account_id: Some(service.account_id.clone()),
            product_id: product.id.clone(),
            quantity: 1,
            configuration_normalized: configuration.clone(),
            configuration_warnings: Vec::new(),
            line_items: vec![line.clone()],
            total_minor: amount,
            currency: product.pricing.currency.clone(),
            catalog_version: self.catalog.version().to_owned(),
            created_at: now,
            expires_at: now,
            management_capabilities: Vec::new(),
        };
        let order = Order {
            id: OrderId::generate(),
            account_id: Some(service.account_id.clone()),
            // An agent's extensions count toward its budgets like its orders.
            agent_id: principal.agent_id().cloned(),
            status: OrderStatus::PendingPayment,
            payment_status: PaymentStatus::Unpaid,
            payment_method: PaymentMethod::Credit,
            product_id: product.id.clone(),
            quantity: 1,
            configuration,
            configuration_warnings: Vec::new(),
            line_items: vec![line],
            total_minor: amount,
            currency: product.pricing.currency.clone(),
            quote_id: quote.id.clone(),
            idempotency_key: key.key.clone(),
            created_at: now,
            updated_at: now,
            provisioning_estimate: None,
            requires_install_configuration: false,
            service_id: Some(service.id.clone()),
            result: None,
            failure: None,
        };
        Ok((order, quote))
    }
}
