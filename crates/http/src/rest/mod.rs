//! `/api/v1` routes, one module per resource, plus health and the fallbacks.

mod account;
mod agents;
mod checkouts;
mod device;
mod discovery;
mod events;
mod health;
mod orders;
mod payments;
mod products;
mod quotes;
mod services;
mod webhooks;

use crate::error::ApiError;
use axum::http::{Method, Uri};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;
use storefront_app::App;
use storefront_domain::{DomainError, ErrorCode};
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1` routes and the OpenAPI document made from the same list.
pub fn api() -> (Router<App>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    let (router, mut document) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .nest(
            "/api/v1",
            OpenApiRouter::new()
                .merge(products::routes())
                .merge(quotes::routes())
                .merge(orders::routes())
                .merge(account::routes())
                .merge(services::routes())
                .merge(payments::routes())
                .merge(agents::routes())
                .merge(checkouts::routes())
                .merge(device::routes())
                .merge(events::routes())
                .merge(webhooks::routes()),
        )
        .split_for_parts();
    crate::openapi::finish(&mut document);
    (router, document)
}

pub fn routes() -> Router<App> {
    let (api, document) = api();
    let json = Arc::new(crate::openapi::to_json(&document));
    let html = Arc::new(crate::openapi::render_docs(&json));
    Router::new()
        .merge(health::routes())
        .merge(discovery::routes())
        .merge(api)
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { Json((*json).clone()) }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let html = html.clone();
                async move { Html((*html).clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// What the routes find in every request's extensions: the catalog answers rendered once per
/// server. Added around the whole router (`crate::router`) rather than with `Router::layer`,
/// which would wrap every route in one more boxed service to clone on each request.
pub(crate) fn shared_extensions() -> axum::Extension<Arc<products::RenderedCatalog>> {
    axum::Extension(Arc::new(products::RenderedCatalog::default()))
}

/// A success envelope, already serialized: `{"ok": true, "data": ...}` written straight from
/// the typed data (no intermediate `serde_json::Value`, which cost a copy of every answer).
pub(crate) struct Success(pub(crate) axum::body::Bytes);

impl IntoResponse for Success {
    fn into_response(self) -> axum::response::Response {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.0,
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct Envelope<T> {
    ok: bool,
    data: T,
}

/// The success envelope: `{"ok": true, "data": ...}`.
pub(crate) fn ok<T: Serialize>(data: T) -> Success {
    let body = serde_json::to_vec(&Envelope { ok: true, data })
        .expect("answers are plain data and always serialize");
    Success(body.into())
}

/// A success envelope with `Retry-After` when the object is still on its way somewhere.
pub(crate) fn with_retry_after(
    body: Success,
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
