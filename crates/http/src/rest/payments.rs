//! `API.md` §6: Stripe's webhook and credit top-ups.

use super::ok;
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_app::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/webhooks/stripe", post(stripe_webhook))
        .route("/account/top-ups", post(create_top_up))
        .route("/account/top-ups/{top_up_id}", get(show_top_up))
}

/// The raw body is what Stripe signed, so it is read as bytes, not as JSON.
async fn stripe_webhook(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let ack = app.handle_card_webhook(&body, signature).await?;
    Ok(ok(ack))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUpBody {
    amount_minor: i64,
}

async fn create_top_up(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<TopUpBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let top_up = app
        .create_top_up(&principal, body.body.amount_minor)
        .await?;
    Ok((StatusCode::CREATED, ok(json!({ "top_up": top_up }))))
}

async fn show_top_up(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let top_up = app.get_top_up(&principal, &id).await?;
    Ok(ok(json!({ "top_up": top_up })))
}
