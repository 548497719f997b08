//! Stripe's webhook and credit top-ups (docs/api.md, "Card payments").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{ApiJson, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use storefront_app::payments::{TopUpView, WebhookAck};
use storefront_app::App;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(stripe_webhook))
        .routes(routes!(create_top_up))
        .routes(routes!(show_top_up))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TopUpData {
    top_up: TopUpView,
}

/// Stripe's webhook. The raw body is what Stripe signed, so it is read as bytes, not as JSON;
/// each event is applied once.
#[utoipa::path(operation_id = "stripe_webhook", post, path = "/webhooks/stripe", tag = "payments",
    request_body(content = Value, content_type = "application/json", description = "A Stripe event, exactly as Stripe sent it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 200, description = "Acknowledged: applied, duplicate or ignored", body = Envelope<WebhookAck>),
        (status = 400, description = "A missing, wrong or stale signature", body = ErrorEnvelope),
        (status = 503, description = "Card payments are not configured", body = ErrorEnvelope),
    ))]
async fn stripe_webhook(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Success, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let ack = app.handle_card_webhook(&body, signature).await?;
    Ok(ok(ack))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopUpBody {
    /// Minor units to add.
    #[schema(minimum = 100, maximum = 100_000_000_000_i64)]
    amount_minor: i64,
}

/// Buy credits by card: a checkout whose payment credits the account.
#[utoipa::path(operation_id = "create_top_up", post, path = "/account/top-ups", tag = "payments", request_body = TopUpBody, security(("api_key" = [])),
    responses(
        (status = 201, description = "The top-up with its hosted payment page", body = Envelope<TopUpData>),
        (status = 400, description = "Invalid amount", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys buy credits", body = ErrorEnvelope),
        (status = 503, description = "Card payments are not configured", body = ErrorEnvelope),
    ))]
async fn create_top_up(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<TopUpBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let top_up = app
        .create_top_up(&principal, body.body.amount_minor)
        .await?;
    Ok((StatusCode::CREATED, ok(TopUpData { top_up })))
}

/// A top-up of this account.
#[utoipa::path(operation_id = "get_top_up", get, path = "/account/top-ups/{top_up_id}", tag = "payments",
    params(("top_up_id" = String, Path, description = "A top-up id (pay_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The top-up", body = Envelope<TopUpData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys see top-ups", body = ErrorEnvelope),
        (status = 404, description = "No such top-up in this account", body = ErrorEnvelope),
    ))]
async fn show_top_up(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let top_up = app.get_top_up(&principal, &id).await?;
    Ok(ok(TopUpData { top_up }))
}
