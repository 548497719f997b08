//! `API.md` §4: quotes.

use super::ok;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use storefront_app::quotes::QuoteRequest;
use storefront_app::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/quotes", post(create))
        .route("/quotes/{quote_id}", get(show))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteBody {
    pub product_id: String,
    pub quantity: Option<i64>,
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

async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<QuoteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let quote = app.create_quote(&principal, &body.body.into()).await?;
    Ok((StatusCode::CREATED, ok(json!({ "quote": quote }))))
}

async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let quote = app.get_quote(&principal, &id).await?;
    Ok(ok(json!({ "quote": quote })))
}
