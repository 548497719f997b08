//! Checkout sessions for purchases an agent makes elsewhere (docs/api.md, "Checkout sessions"): the
//! storefront evaluates the owner's rules, asks for approval when a rule escalates, and records the
//! receipt the agent reports after paying with its own means. No money moves here.
//!
//! ```text
//! not_ready_for_payment ──(update items)──▶ ready_for_payment ──(complete)──▶ approved ──(receipt)──▶ completed
//!          └────────────────────────(cancel, rules deny, expiry)──────────────────────▶ canceled
//! ```

use crate::error::DomainError;
use crate::ids::{AccountId, AgentId, CheckoutId, LineItemId};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The governance API's limits (docs/api.md, "Checkout sessions").
pub const MAX_NAME: usize = 200;
pub const MAX_UNIT_AMOUNT: i64 = 99_999_999;
pub const MAX_QUANTITY: i64 = 10_000;
pub const MAX_SKU: usize = 100;
pub const MAX_CATEGORY: usize = 100;
pub const MAX_METADATA_BYTES: usize = 10 * 1024;
pub const MAX_ITEMS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    NotReadyForPayment,
    ReadyForPayment,
    Approved,
    Completed,
    Canceled,
}

impl CheckoutStatus {
    pub const ALL: [CheckoutStatus; 5] = [
        Self::NotReadyForPayment,
        Self::ReadyForPayment,
        Self::Approved,
        Self::Completed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReadyForPayment => "not_ready_for_payment",
            Self::ReadyForPayment => "ready_for_payment",
            Self::Approved => "approved",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One item as the agent sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Required, up to 200 characters.
    pub name: String,
    /// Minor units, 1 to 99,999,999.
    pub unit_amount: i64,
    /// 1 to 10,000.
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// An item as stored: with its line id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub id: LineItemId,
    pub item: Item,
}

impl Line {
    pub fn total(&self) -> i64 {
        self.item.unit_amount * self.item.quantity
    }
}

/// Checks the items against the governance API's limits and returns the total, naming the field
/// at fault.
pub fn validate_items(items: &[Item]) -> Result<i64, DomainError> {
    if items.len() > MAX_ITEMS {
        return Err(DomainError::validation(
            "items",
            format!("At most {MAX_ITEMS} items per checkout."),
            "Split the purchase.",
        ));
    }
    let mut total: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        let field = |f: &str| format!("items[{i}].{f}");
        let name = item.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(DomainError::validation(
                field("name"),
                format!("An item name must be 1-{MAX_NAME} characters."),
                "Send the product's name.",
            ));
        }
        if !(1..=MAX_UNIT_AMOUNT).contains(&item.unit_amount) {
            return Err(DomainError::validation(
                field("unit_amount"),
                format!("unit_amount must be a whole number of minor units from 1 to {MAX_UNIT_AMOUNT}."),
                "Send cents as an integer, like 4999 for 49.99.",
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(DomainError::validation(
                field("quantity"),
                format!("quantity must be from 1 to {MAX_QUANTITY}."),
                "Send a positive whole number.",
            ));
        }
        if item
            .sku
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SKU)
        {
            return Err(DomainError::validation(
                field("sku"),
                format!("sku is over {MAX_SKU} characters."),
                "Send a shorter SKU.",
            ));
        }
        if item
            .category
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CATEGORY)
        {
            return Err(DomainError::validation(
                field("category"),
                format!("category is over {MAX_CATEGORY} characters."),
                "Send a shorter category.",
            ));
        }
        total += item.unit_amount * item.quantity;
    }
    Ok(total)
}

/// What completing with a receipt records (the checkout's `order`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptOrder {
    pub id: String,
    pub checkout_session_id: String,
    pub external_payment_id: String,
    pub provider: String,
    pub amount_charged: i64,
    pub completed_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkout {
    pub id: CheckoutId,
    pub account_id: AccountId,
    pub agent_id: AgentId,
    pub status: CheckoutStatus,
    /// Lowercase ISO 4217.
    pub currency: String,
    pub lines: Vec<Line>,
    pub total_minor: i64,
    pub merchant_name: Option<String>,
    pub merchant_domain: Option<String>,
    pub category: Option<String>,
    pub metadata: Option<Value>,
    pub rule_result: Option<String>,
    pub rule_name: Option<String>,
    pub reason: Option<String>,
    pub order: Option<ReceiptOrder>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Checkout {
    /// The category rules see: the checkout's, else the first item's.
    pub fn effective_category(&self) -> Option<String> {
        self.category
            .clone()
            .or_else(|| self.lines.iter().find_map(|l| l.item.category.clone()))
    }
}
