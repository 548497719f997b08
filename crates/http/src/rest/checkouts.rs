//! Checkout sessions for purchases an agent makes elsewhere (docs/api.md, "Checkout sessions").
//! Every endpoint answers the CheckoutResponse as `data`.

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use storefront_app::checkouts::{CheckoutInput, CheckoutResponse, ReceiptInput};
use storefront_app::App;
use storefront_domain::checkout::Item;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, show))
        .routes(routes!(update))
        .routes(routes!(complete))
        .routes(routes!(receipt))
        .routes(routes!(cancel))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckoutBody {
    /// The cart (at most 100 items).
    items: Option<Vec<Item>>,
    /// ISO 4217 (default USD).
    currency: Option<String>,
    merchant_name: Option<String>,
    merchant_domain: Option<String>,
    category: Option<String>,
    /// Under 10 KB of JSON.
    metadata: Option<Value>,
}

impl From<CheckoutBody> for CheckoutInput {
    fn from(b: CheckoutBody) -> Self {
        Self {
            items: b.items,
            currency: b.currency,
            merchant_name: b.merchant_name,
            merchant_domain: b.merchant_domain,
            category: b.category,
            metadata: b.metadata,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    checkout_id: String,
    /// Replaces every item.
    items: Option<Vec<Item>>,
    merchant_name: Option<String>,
    merchant_domain: Option<String>,
    category: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckoutRef {
    checkout_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    checkout_id: String,
    /// Up to 500 characters.
    reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Receipt {
    /// The payment provider's transaction id.
    external_id: String,
    provider: String,
    /// Minor units actually charged; must equal the approved total.
    amount_charged: i64,
    currency: Option<String>,
    paid_at: Option<String>,
    metadata: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReceiptBody {
    checkout_id: String,
    receipt: Receipt,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ShowQuery {
    checkout_id: String,
}

/// Create a checkout session; the rules run on the cart.
#[utoipa::path(operation_id = "create_checkout", post, path = "/agent/checkout", tag = "governance", request_body = CheckoutBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "ready_for_payment, not_ready_for_payment, or canceled by a deny", body = Envelope<CheckoutResponse>),
        (status = 400, description = "Over a limit (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or kill_switch_active", body = ErrorEnvelope),
    ))]
async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<CheckoutBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let checkout = app.create_checkout(&principal, body.body.into()).await?;
    Ok((StatusCode::CREATED, ok(checkout)))
}

/// Read a checkout session.
#[utoipa::path(operation_id = "get_checkout", get, path = "/agent/checkout", tag = "governance", params(ShowQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The checkout", body = Envelope<CheckoutResponse>),
        (status = 400, description = "No checkout_id", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or kill_switch_active", body = ErrorEnvelope),
        (status = 404, description = "checkout_not_found", body = ErrorEnvelope),
        (status = 410, description = "checkout_expired", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Success, ApiError> {
    Ok(ok(app.get_checkout(&principal, &q.checkout_id).await?))
}

/// Update the cart or merchant before approval; the rules run again.
#[utoipa::path(operation_id = "update_checkout", put, path = "/agent/checkout/update", tag = "governance", request_body = UpdateBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The checkout", body = Envelope<CheckoutResponse>),
        (status = 400, description = "Over a limit (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or kill_switch_active", body = ErrorEnvelope),
        (status = 404, description = "checkout_not_found", body = ErrorEnvelope),
        (status = 409, description = "checkout_not_ready, checkout_completed or approval_pending", body = ErrorEnvelope),
        (status = 410, description = "checkout_expired", body = ErrorEnvelope),
    ))]
async fn update(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<UpdateBody>,
) -> Result<Success, ApiError> {
    let b = body.body;
    let input = CheckoutInput {
        items: b.items,
        currency: None,
        merchant_name: b.merchant_name,
        merchant_domain: b.merchant_domain,
        category: b.category,
        metadata: b.metadata,
    };
    Ok(ok(app
        .update_checkout(&principal, &b.checkout_id, input)
        .await?))
}

/// Ask to proceed: approved when the rules allow; escalated to the owner otherwise (poll the
/// approval).
#[utoipa::path(operation_id = "complete_checkout", post, path = "/agent/checkout/complete", tag = "governance", request_body = CheckoutRef,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "approved, or ready_for_payment with approval_required", body = Envelope<CheckoutResponse>),
        (status = 400, description = "An invalid body", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "rules_denied, approval_denied, pending or kill_switch_active", body = ErrorEnvelope),
        (status = 404, description = "checkout_not_found", body = ErrorEnvelope),
        (status = 409, description = "checkout_not_ready, checkout_completed or approval_pending", body = ErrorEnvelope),
        (status = 410, description = "checkout_expired", body = ErrorEnvelope),
    ))]
async fn complete(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<CheckoutRef>,
) -> Result<Success, ApiError> {
    Ok(ok(app
        .complete_checkout(&principal, &body.body.checkout_id)
        .await?))
}

/// Report the payment made elsewhere: the final step.
#[utoipa::path(operation_id = "checkout_receipt", post, path = "/agent/checkout/receipt", tag = "governance", request_body = ReceiptBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "completed, with its order", body = Envelope<CheckoutResponse>),
        (status = 400, description = "receipt_mismatch or a missing field", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or kill_switch_active", body = ErrorEnvelope),
        (status = 404, description = "checkout_not_found", body = ErrorEnvelope),
        (status = 409, description = "checkout_not_ready or checkout_completed", body = ErrorEnvelope),
        (status = 410, description = "checkout_expired", body = ErrorEnvelope),
    ))]
async fn receipt(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<ReceiptBody>,
) -> Result<Success, ApiError> {
    let ReceiptBody {
        checkout_id,
        receipt,
    } = body.body;
    let input = ReceiptInput {
        external_id: receipt.external_id,
        provider: receipt.provider,
        amount_charged: receipt.amount_charged,
        currency: receipt.currency,
        paid_at: receipt.paid_at,
        metadata: receipt.metadata,
    };
    Ok(ok(app
        .checkout_receipt(&principal, &checkout_id, input)
        .await?))
}

/// Cancel a checkout (any state but completed).
#[utoipa::path(operation_id = "cancel_checkout", post, path = "/agent/checkout/cancel", tag = "governance", request_body = CancelBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "canceled", body = Envelope<CheckoutResponse>),
        (status = 400, description = "A reason over 500 characters", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Not an agent key; pending or kill_switch_active", body = ErrorEnvelope),
        (status = 404, description = "checkout_not_found", body = ErrorEnvelope),
        (status = 409, description = "checkout_completed", body = ErrorEnvelope),
        (status = 410, description = "checkout_expired", body = ErrorEnvelope),
    ))]
async fn cancel(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<CancelBody>,
) -> Result<Success, ApiError> {
    let CancelBody {
        checkout_id,
        reason,
    } = body.body;
    Ok(ok(app
        .cancel_checkout(&principal, &checkout_id, reason)
        .await?))
}
