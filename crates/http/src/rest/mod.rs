//! `/api/v1` routes, one module per resource, plus health and the fallbacks.

mod account;
mod discovery;
mod health;
mod orders;
mod payments;
mod products;
mod quotes;
mod services;

use crate::error::ApiError;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use storefront_app::App;
use storefront_domain::{DomainError, ErrorCode};

pub fn routes() -> Router<App> {
    Router::new()
        .merge(health::routes())
        .merge(discovery::routes())
        .nest(
            "/api/v1",
            Router::new()
                .merge(products::routes())
                .merge(quotes::routes())
                .merge(orders::routes())
                .merge(account::routes())
                .merge(services::routes())
                .merge(payments::routes()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The success envelope: `{"ok": true, "data": ...}`.
pub(crate) fn ok<T: Serialize>(data: T) -> Json<Value> {
    Json(json!({ "ok": true, "data": data }))
}

/// A success envelope with `Retry-After` when the object is still on its way somewhere.
pub(crate) fn with_retry_after(
    body: Json<Value>,
    retry_after: Option<u64>,
) -> axum::response::Response {
    let mut response = body.into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(seconds),
        );
    }
    response
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    ApiError(DomainError::new(
        ErrorCode::NotFound,
        format!("There is no endpoint at {}.", uri.path()),
        "See /openapi.json for the available endpoints.",
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    let mut response = ApiError(DomainError::new(
        ErrorCode::ValidationError,
        format!("{method} is not allowed on {}.", uri.path()),
        "Check the method in the API reference (/openapi.json).",
    ))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}
