//! Quotes: normalize a configuration, price it deterministically, remember it for 15 minutes.

use crate::app::{store_failure, App};
use crate::catalog::unknown_product;
use crate::principal::Principal;
use serde_json::{Map, Value};
use storefront_domain::ids::QuoteId;
use storefront_domain::pricing::{check_quantity, normalize, price, total};
use storefront_domain::quote::Quote;
use storefront_domain::{DomainError, ErrorCode};

/// A request for a price, already parsed from the wire.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuoteRequest {
    pub product_id: String,
    pub quantity: Option<i64>,
    pub configuration: Map<String, Value>,
}

impl App {
    /// Prices a configuration without storing anything (validate and quote share it).
    pub(crate) fn price_request(
        &self,
        principal: &Principal,
        req: &QuoteRequest,
    ) -> Result<Quote, DomainError> {
        let product = self
            .catalog
            .get(&req.product_id)
            .ok_or_else(|| unknown_product(&req.product_id))?;
        let quantity = req.quantity.unwrap_or(1);
        check_quantity(product, quantity)?;
        let normalized = normalize(&product.fields, &req.configuration, "configuration")?;
        let line_items = price(product, quantity, &normalized.configuration)?;
        let total_minor = total(&line_items)?;
        let now = self.clock.now();
        Ok(Quote {
            id: QuoteId::generate(),
            account_id: principal.account_id().cloned(),
            product_id: product.id.clone(),
            quantity,
            configuration_normalized: normalized.configuration,
            configuration_warnings: normalized.warnings,
            line_items,
            total_minor,
            currency: product.pricing.currency.clone(),
            catalog_version: self.catalog.version().to_owned(),
            created_at: now,
            expires_at: now + self.settings.quote_ttl,
            management_capabilities: product.management_capabilities.clone(),
        })
    }

    pub async fn create_quote(
        &self,
        principal: &Principal,
        req: &QuoteRequest,
    ) -> Result<Quote, DomainError> {
        let quote = self.price_request(principal, req)?;
        self.store
            .insert_quote(&quote)
            .await
            .map_err(store_failure)?;
        Ok(quote)
    }

    /// A quote is visible to the account that made it; a public quote to anyone holding its id.
    pub async fn get_quote(&self, principal: &Principal, id: &str) -> Result<Quote, DomainError> {
        let not_found = || DomainError::not_found("quote", id);
        let quote_id = QuoteId::parse(id).ok_or_else(not_found)?;
        let quote = self
            .store
            .get_quote(&quote_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        match (&quote.account_id, principal.account_id()) {
            (None, _) => Ok(quote),
            (Some(owner), Some(caller)) if owner == caller => Ok(quote),
            _ => Err(not_found()),
        }
    }

    /// The quote an order refers to, still alive.
    pub(crate) async fn live_quote(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Quote, DomainError> {
        let quote = self
            .get_quote(principal, id)
            .await
            .map_err(|e| e.with_param("quote_id"))?;
        if quote.is_expired(self.clock.now()) {
            return Err(DomainError::new(
                ErrorCode::QuoteExpired,
                format!(
                    "Quote {} expired at {}.",
                    quote.id,
                    storefront_domain::timestamp::format(&quote.expires_at)
                ),
                "Create a new quote and order that one.",
            )
            .with_param("quote_id"));
        }
        Ok(quote)
    }
}
