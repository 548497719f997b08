//! Quotes: a priced, normalized configuration that an order can reference while it lives.

use crate::ids::{AccountId, QuoteId};
use crate::money::Currency;
use crate::pricing::{ConfigurationWarning, LineItem};
use crate::timestamp::{rfc3339, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub id: QuoteId,
    /// The account that asked for it; `None` for a public agent's quote.
    #[serde(skip)]
    pub account_id: Option<AccountId>,
    pub product_id: String,
    pub quantity: i64,
    pub configuration_normalized: Map<String, Value>,
    pub configuration_warnings: Vec<ConfigurationWarning>,
    pub line_items: Vec<LineItem>,
    pub total_minor: i64,
    pub currency: Currency,
    pub catalog_version: String,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    pub management_capabilities: Vec<String>,
}

impl Quote {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}
