//! Orders and their state machine (docs/api.md, "Order states").
//!
//! ```text
//! pending_payment ─▶ awaiting_approval ─▶ paid ─▶ awaiting_install_configuration ─▶ processing ─▶ fulfilled
//!        │                   │             │                                          │
//!        └──▶ canceled ◀─────┘             └──────────────────────────────────────────┴──▶ failed (refunded)
//! ```

use crate::catalog::{Product, ProductKind, ProvisioningEstimate};
use crate::ids::{AccountId, AgentId, OrderId, QuoteId, ServiceId};
use crate::json::RawJson;
use crate::money::Currency;
use crate::pricing::{ConfigurationWarning, LineItem};
use crate::timestamp::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    AwaitingApproval,
    Paid,
    AwaitingInstallConfiguration,
    Processing,
    Fulfilled,
    Failed,
    Canceled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        Self::PendingPayment,
        Self::AwaitingApproval,
        Self::Paid,
        Self::AwaitingInstallConfiguration,
        Self::Processing,
        Self::Fulfilled,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Paid => "paid",
            Self::AwaitingInstallConfiguration => "awaiting_install_configuration",
            Self::Processing => "processing",
            Self::Fulfilled => "fulfilled",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Fulfilled | Self::Failed | Self::Canceled)
    }

    /// States from which an order may still be canceled: nothing has started to be delivered.
    pub const CANCELABLE: [OrderStatus; 4] = [
        Self::PendingPayment,
        Self::AwaitingApproval,
        Self::Paid,
        Self::AwaitingInstallConfiguration,
    ];

    pub fn is_cancelable(self) -> bool {
        Self::CANCELABLE.contains(&self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    Paid,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpaid => "unpaid",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "unpaid" => Some(Self::Unpaid),
            "paid" => Some(Self::Paid),
            "refunded" => Some(Self::Refunded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Credit,
    Card,
    Mpp,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credit => "credit",
            Self::Card => "card",
            Self::Mpp => "mpp",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "credit" => Some(Self::Credit),
            "card" => Some(Self::Card),
            "mpp" => Some(Self::Mpp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub id: OrderId,
    #[serde(skip)]
    pub account_id: Option<AccountId>,
    /// The agent whose key placed it (budgets and rates count these).
    #[serde(skip)]
    pub agent_id: Option<AgentId>,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub payment_method: PaymentMethod,
    pub product_id: String,
    pub quantity: i64,
    pub configuration: Map<String, Value>,
    /// What normalization changed in the requested configuration (from the quote).
    pub configuration_warnings: Vec<ConfigurationWarning>,
    pub line_items: Vec<LineItem>,
    pub total_minor: i64,
    pub currency: Currency,
    pub quote_id: QuoteId,
    pub idempotency_key: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
    pub provisioning_estimate: Option<ProvisioningEstimate>,
    pub requires_install_configuration: bool,
    pub service_id: Option<ServiceId>,
    /// What the fulfiller returned, kept as its JSON text: only ever shown (see [`RawJson`]).
    pub result: Option<RawJson>,
    pub failure: Option<Failure>,
}

/// The configuration field of a lease extension's order that names the service it extends.
pub const EXTENDS_SERVICE_FIELD: &str = "extends_service_id";
/// The configuration field of a lease extension's order that says how much it adds.
pub const ADDED_SECONDS_FIELD: &str = "added_seconds";

impl Order {
    /// The status an order of `product` moves to once its money is secured: an instant product
    /// stays `paid` until its fulfiller answers, a product that needs install configuration
    /// waits for it, a machine starts provisioning.
    pub fn status_once_paid(product: &Product) -> OrderStatus {
        match (product.kind, product.requires_install_configuration) {
            (ProductKind::Instant, _) => OrderStatus::Paid,
            (ProductKind::Async, true) => OrderStatus::AwaitingInstallConfiguration,
            (ProductKind::Async, false) => OrderStatus::Processing,
        }
    }

    /// The service whose lease this order extends, and by how many seconds; `None` for any
    /// other order.
    pub fn lease_extension(&self) -> Option<(ServiceId, i64)> {
        let service = self
            .configuration
            .get(EXTENDS_SERVICE_FIELD)
            .and_then(Value::as_str)
            .and_then(ServiceId::parse)?;
        let added = self
            .configuration
            .get(ADDED_SECONDS_FIELD)
            .and_then(Value::as_i64)?;
        Some((service, added))
    }

    /// Money for this order is secured. A lease extension is delivered by that alone (its lease
    /// grows in the same transaction); any other order moves to [`Order::status_once_paid`].
    pub fn mark_paid(&mut self, product: &Product, now: Timestamp) {
        self.payment_status = PaymentStatus::Paid;
        self.updated_at = now;
        self.status = match self.lease_extension() {
            Some((service, added)) => {
                self.result = Some(RawJson::from_value(&serde_json::json!({
                    "extended_service_id": service,
                    "added_seconds": added,
                })));
                OrderStatus::Fulfilled
            }
            None => Self::status_once_paid(product),
        };
    }

    /// Seconds an agent should wait before polling again, from the provisioning estimate
    /// (about a third of the expected time, between 1 and 60 seconds: patient polling, see
    /// docs/api.md, "Polling"). `None` once the order is terminal.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        if self.status.is_terminal() {
            return None;
        }
        let estimate = self
            .provisioning_estimate
            .map(|e| e.max_seconds.max(e.min_seconds))
            .unwrap_or(5);
        Some((estimate / 3).clamp(1, 60))
    }
}
