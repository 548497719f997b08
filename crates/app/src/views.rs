//! What the doors show: wire-ready views of domain objects, with the signed URLs that only the
//! application can mint. A view is also what an idempotency key remembers, so a replay returns
//! the very same body.

use crate::app::App;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use storefront_domain::catalog::ProvisioningEstimate;
use storefront_domain::json::RawJson;
use storefront_domain::order::{Failure, Order, OrderStatus, PaymentMethod, PaymentStatus};
use storefront_domain::pricing::{ConfigurationWarning, LineItem};
use storefront_domain::timestamp::{format, Timestamp};
use storefront_domain::DomainError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedAction {
    pub method: String,
    pub url: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub payment_method: PaymentMethod,
    pub product_id: String,
    pub quantity: i64,
    pub configuration: Map<String, Value>,
    pub configuration_warnings: Vec<ConfigurationWarning>,
    pub line_items: Vec<LineItem>,
    pub total_minor: i64,
    pub currency: String,
    pub quote_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub status_url: String,
    pub idempotency_key: String,
    pub approval: Option<Value>,
    pub payment_action: Option<Value>,
    pub provisioning_estimate: Option<ProvisioningEstimate>,
    pub requires_install_configuration: bool,
    pub install_action: Option<SignedAction>,
    pub credentials_available: bool,
    pub credentials_action: Option<SignedAction>,
    pub service_id: Option<String>,
    // Written out as stored, never parsed (see `RawJson`); the schema is any JSON value.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub result: Option<RawJson>,
    pub failure: Option<Failure>,
    pub management_tokens: Option<Value>,
}

/// The path a signed `install_action.url` authorizes (with `POST`).
pub fn install_path(order_id: &str) -> String {
    format!("/api/v1/orders/{order_id}/install")
}

/// The path a signed `credentials_action.url` authorizes.
pub fn credentials_path(order_id: &str) -> String {
    format!("/api/v1/orders/{order_id}/credentials")
}

/// The path a signed `status_url` authorizes.
pub fn status_path(order_id: &str) -> String {
    format!("/api/v1/orders/{order_id}/status")
}

impl App {
    /// Adds what depends on the order's service: whether credentials can be fetched, and the
    /// signed URL to fetch them.
    pub(crate) fn with_service(
        &self,
        mut view: OrderView,
        order: &Order,
        service: Option<&storefront_domain::service::Service>,
    ) -> OrderView {
        if order.service_id.is_some() {
            let path = credentials_path(order.id.as_str());
            let expires_at = order.created_at + self.settings.status_url_ttl;
            view.credentials_action = Some(self.signed_action("GET", &path, expires_at));
        }
        // The order and its service are read separately; both must agree before credentials are
        // announced, so a poll never sees them available on an order still `processing`.
        view.credentials_available = order.status
            == storefront_domain::order::OrderStatus::Fulfilled
            && service
                .is_some_and(|s| s.status == storefront_domain::service::ServiceStatus::Active);
        view
    }

    /// `method` on this server's `path`, signed until `expires_at`.
    fn signed_action(&self, method: &str, path: &str, expires_at: Timestamp) -> SignedAction {
        SignedAction {
            method: method.into(),
            url: format!(
                "{}{path}?{}",
                self.settings.base_url,
                self.signer.sign(method, path, expires_at)
            ),
            expires_at: format(&expires_at),
        }
    }

    pub(crate) fn order_view(&self, order: &Order) -> OrderView {
        self.order_view_of(order.clone())
    }

    /// [`App::order_view`] of an order the caller no longer needs: its configuration, line items
    /// and result move into the view instead of being copied (a page of orders is mostly these).
    pub(crate) fn order_view_of(&self, order: Order) -> OrderView {
        let path = status_path(order.id.as_str());
        // The expiry derives from the order's creation, so every rendering of the same order is
        // identical (a replayed response must be byte-for-byte the original).
        let expires_at = order.created_at + self.settings.status_url_ttl;
        let query = self.signer.sign("GET", &path, expires_at);
        // After payment, install configuration goes to a signed URL (docs/api.md, "Install configuration").
        let install_action = (order.status == OrderStatus::AwaitingInstallConfiguration)
            .then(|| self.signed_action("POST", &install_path(order.id.as_str()), expires_at));
        OrderView {
            id: order.id.to_string(),
            status: order.status,
            payment_status: order.payment_status,
            payment_method: order.payment_method,
            product_id: order.product_id,
            quantity: order.quantity,
            configuration: order.configuration,
            configuration_warnings: order.configuration_warnings,
            line_items: order.line_items,
            total_minor: order.total_minor,
            currency: order.currency.to_string(),
            quote_id: order.quote_id.to_string(),
            created_at: format(&order.created_at),
            updated_at: format(&order.updated_at),
            status_url: format!("{}{path}?{query}", self.settings.base_url),
            idempotency_key: order.idempotency_key,
            approval: None,
            payment_action: None,
            provisioning_estimate: order.provisioning_estimate,
            requires_install_configuration: order.requires_install_configuration,
            install_action,
            credentials_available: false,
            credentials_action: None,
            service_id: order.service_id.as_ref().map(ToString::to_string),
            // Filled in by `with_service` when the service is known to be active.
            result: order.result,
            failure: order.failure,
            management_tokens: None,
        }
    }
}

/// How an order request ended, as remembered by its idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OrderOutcome {
    /// Finished inline (instant products): `201`.
    Created {
        order: OrderView,
        /// The MPP `Payment-Receipt` of the payment that bought it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_receipt: Option<String>,
    },
    /// Accepted for background work (async products): `202` with `Retry-After`.
    Accepted {
        order: OrderView,
        retry_after_seconds: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_receipt: Option<String>,
    },
    /// Acted and failed (for example `fulfillment_failed`, refunded): replayed as the same error.
    Failed { error: DomainError },
}

impl OrderOutcome {
    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("outcomes are plain data")
    }

    /// The same outcome, carrying the MPP receipt of its payment.
    pub(crate) fn with_receipt(self, receipt: String) -> Self {
        match self {
            Self::Created { order, .. } => Self::Created {
                order,
                payment_receipt: Some(receipt),
            },
            Self::Accepted {
                order,
                retry_after_seconds,
                ..
            } => Self::Accepted {
                order,
                retry_after_seconds,
                payment_receipt: Some(receipt),
            },
            failed => failed,
        }
    }
}
