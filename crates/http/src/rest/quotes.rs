//! Quotes (docs/api.md, "Quotes").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{ApiJson, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use storefront_app::quotes::QuoteRequest;
use storefront_app::App;
use storefront_domain::quote::Quote;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteBody {
    /// The product to price.
    pub product_id: String,
    /// How many units (default 1, at most the product's max_quantity).
    pub quantity: Option<i64>,
    /// The product's configuration fields; camelCase spellings (`billingTermMonths`) are accepted.
    pub configuration: Option<Map<String, Value>>,
}

impl From<QuoteBody> for QuoteRequest {
    fn from(b: QuoteBody) -> Self {
        QuoteRequest {
            product_id: b.product_id,
            quantity: b.quantity,
            configuration: b.configuration.unwrap_or_default(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QuoteData {
    quote: Quote,
}

/// Price a configuration: normalized configuration, warnings for values that were defaulted
/// down, line items, total; valid until `expires_at`.
#[utoipa::path(operation_id = "create_quote", post, path = "/quotes", tag = "quotes", request_body = QuoteBody,
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "The stored quote", body = Envelope<QuoteData>),
        (status = 400, description = "Invalid body or configuration (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 404, description = "No such product", body = ErrorEnvelope),
        (status = 413, description = "Body over 64 KiB", body = ErrorEnvelope),
    ))]
async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<QuoteBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let quote = app.create_quote(&principal, &body.body.into()).await?;
    Ok((StatusCode::CREATED, ok(QuoteData { quote })))
}

/// A quote made by this account (or a public quote).
#[utoipa::path(operation_id = "get_quote", get, path = "/quotes/{quote_id}", tag = "quotes",
    params(("quote_id" = String, Path, description = "A quote id (qt_...)")),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The quote", body = Envelope<QuoteData>),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 404, description = "No such quote visible to this caller", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let quote = app.get_quote(&principal, &id).await?;
    Ok(ok(QuoteData { quote }))
}
