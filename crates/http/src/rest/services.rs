//! `API.md` §7: services (provisioned machines) and their management actions.

use super::{ok, with_retry_after};
use crate::error::ApiError;
use crate::extract::{
    int_param, required_idempotency_key, ApiJson, ApiQuery, Caller, OptionalJson,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_app::machines::ServiceView;
use storefront_app::page::PageRequest;
use storefront_app::App;
use storefront_domain::idempotency::fingerprint;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/services", get(list))
        .route("/services/{service_id}", get(show).delete(terminate))
        .route("/services/{service_id}/restart", post(restart))
        .route("/services/{service_id}/reinstall", post(reinstall))
        .route("/services/{service_id}/terminate", post(terminate))
        .route("/services/{service_id}/credentials", get(credentials))
        .route("/services/{service_id}/extend", post(extend))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::parse(int_param("limit", q.limit.as_deref())?, q.cursor)?;
    let page = app.list_services(&principal, &page).await?;
    Ok(ok(
        json!({ "services": page.items, "next_cursor": page.next_cursor }),
    ))
}

async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let service = app.get_service(&principal, &id).await?;
    let retry_after = service.retry_after_seconds();
    Ok(with_retry_after(
        ok(json!({ "service": service })),
        retry_after,
    ))
}

/// `202 {service_id, status: "accepted", service}` (seed 002).
fn accepted(service: ServiceView) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        ok(json!({ "service_id": service.id, "status": "accepted", "service": service })),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn restart(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    OptionalJson(_): OptionalJson<Empty>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok(accepted(app.restart_service(&principal, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReinstallBody {
    image: String,
}

async fn reinstall(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<ReinstallBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok(accepted(
        app.reinstall_service(&principal, &id, &body.body.image)
            .await?,
    ))
}

async fn terminate(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok(accepted(app.terminate_service(&principal, &id).await?))
}

async fn credentials(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(app.service_credentials(&principal, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    additional_minutes: i64,
    request_id: Option<String>,
}

/// Extends the lease; charged once per idempotency key (key or `extend` resource token).
async fn extend(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ExtendBody>,
) -> Result<Response, ApiError> {
    let fingerprint = fingerprint(&body.raw);
    let key = required_idempotency_key(&headers, body.body.request_id)?;
    let (extension, replayed) = app
        .extend_service(
            &principal,
            &id,
            body.body.additional_minutes,
            key.as_str(),
            &fingerprint,
        )
        .await?;
    let mut response = (StatusCode::ACCEPTED, ok(extension)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
