//! Services (provisioned machines) and their management actions (docs/api.md, "Services").

use super::{ok, with_retry_after, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{
    int_param, required_idempotency_key, ApiJson, ApiQuery, Caller, OptionalJson,
};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use storefront_app::leases::Extension;
use storefront_app::machines::Credentials;
use storefront_app::machines::ServiceView;
use storefront_app::page::PageRequest;
use storefront_app::App;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, delete))
        .routes(routes!(restart))
        .routes(routes!(reinstall))
        .routes(routes!(terminate))
        .routes(routes!(credentials))
        .routes(routes!(extend))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ServiceData {
    service: ServiceView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ServiceList {
    services: Vec<ServiceView>,
    next_cursor: Option<String>,
}

/// `202 {service_id, status: "accepted", service}`: the action is queued.
#[derive(Serialize, ToSchema)]
pub(crate) struct Accepted {
    service_id: String,
    /// Always `accepted`.
    status: &'static str,
    service: ServiceView,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The account's services (machines), newest first.
#[utoipa::path(operation_id = "list_services", get, path = "/services", tag = "services", params(PageQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of services", body = Envelope<ServiceList>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Success, ApiError> {
    let page = PageRequest::parse(int_param("limit", q.limit.as_deref())?, q.cursor)?;
    let page = app.list_services(&principal, &page).await?;
    Ok(ok(ServiceList {
        services: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One service: status, where the machine is, lease expiry. `Retry-After` while it settles.
#[utoipa::path(operation_id = "get_service", get, path = "/services/{service_id}", tag = "services",
    params(("service_id" = String, Path, description = "A service id (svc_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The service", body = Envelope<ServiceData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let service = app.get_service(&principal, &id).await?;
    let retry_after = service.retry_after_seconds();
    Ok(with_retry_after(ok(ServiceData { service }), retry_after))
}

fn accepted(service: ServiceView) -> (StatusCode, Success) {
    (
        StatusCode::ACCEPTED,
        ok(Accepted {
            service_id: service.id.clone(),
            status: "accepted",
            service,
        }),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Restart the machine (files kept).
#[utoipa::path(operation_id = "restart_service", post, path = "/services/{service_id}/restart", tag = "services",
    params(("service_id" = String, Path, description = "A service id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Restarting", body = Envelope<Accepted>),
        (status = 400, description = "invalid_state: not possible in the service's state", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
    ))]
async fn restart(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    OptionalJson(_empty): OptionalJson<Empty>,
) -> Result<(StatusCode, Success), ApiError> {
    Ok(accepted(app.restart_service(&principal, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReinstallBody {
    /// One of the product's images, like `debian-12`; without it, the image the machine runs.
    #[serde(default)]
    image: Option<String>,
}

/// Reinstall the machine from an image (files and host key wiped). The body is optional.
#[utoipa::path(operation_id = "reinstall_service", post, path = "/services/{service_id}/reinstall", tag = "services", request_body = ReinstallBody,
    params(("service_id" = String, Path, description = "A service id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Reinstalling", body = Envelope<Accepted>),
        (status = 400, description = "invalid_state: not possible in the service's state", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
    ))]
async fn reinstall(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReinstallBody>,
) -> Result<(StatusCode, Success), ApiError> {
    Ok(accepted(
        app.reinstall_service(&principal, &id, body.image.as_deref())
            .await?,
    ))
}

/// Terminate the machine now (files removed).
#[utoipa::path(operation_id = "terminate_service", post, path = "/services/{service_id}/terminate", tag = "services",
    params(("service_id" = String, Path, description = "A service id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Terminating", body = Envelope<Accepted>),
        (status = 400, description = "invalid_state: not possible in the service's state", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
    ))]
async fn terminate(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Success), ApiError> {
    Ok(accepted(app.terminate_service(&principal, &id).await?))
}

/// Terminate the machine now (`DELETE` on the service).
#[utoipa::path(operation_id = "delete_service", delete, path = "/services/{service_id}", tag = "services",
    params(("service_id" = String, Path, description = "A service id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Terminating", body = Envelope<Accepted>),
        (status = 400, description = "invalid_state: not possible in the service's state", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
    ))]
async fn delete(
    state: State<App>,
    caller: Caller,
    path: Path<String>,
) -> Result<(StatusCode, Success), ApiError> {
    terminate(state, caller, path).await
}

/// SSH credentials of an active machine.
#[utoipa::path(operation_id = "get_service_credentials", get, path = "/services/{service_id}/credentials", tag = "services",
    params(("service_id" = String, Path, description = "A service id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The credentials", body = Envelope<Credentials>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token cannot read credentials", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
        (status = 409, description = "not_ready: not active yet (Retry-After)", body = ErrorEnvelope),
    ))]
async fn credentials(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    Ok(ok(app.service_credentials(&principal, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtendBody {
    /// Minutes to add (rounded up to the product's billing unit).
    additional_minutes: i64,
    /// The idempotency key, when not sent as a header.
    request_id: Option<String>,
}

/// Extends the lease; charged once per idempotency key (key or `extend` resource token).
#[utoipa::path(operation_id = "extend_service", post, path = "/services/{service_id}/extend", tag = "services", request_body = ExtendBody,
    params(
        ("service_id" = String, Path, description = "A service id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Required unless request_id is in the body"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Extended and charged", body = Envelope<Extension>),
        (status = 400, description = "invalid_state: not possible in the service's state", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "The resource token has another scope or service", body = ErrorEnvelope),
        (status = 404, description = "No such service in this account", body = ErrorEnvelope),
        (status = 402, description = "insufficient_credits", body = ErrorEnvelope),
        (status = 409, description = "The same key is still in flight", body = ErrorEnvelope),
        (status = 422, description = "The key was used with another body", body = ErrorEnvelope),
    ))]
async fn extend(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: ApiJson<ExtendBody>,
) -> Result<Response, ApiError> {
    let key = required_idempotency_key(&headers, body.body.request_id)?;
    let (extension, replayed) = app
        .extend_service(&principal, &id, body.body.additional_minutes, &key)
        .await?;
    let mut response = (StatusCode::ACCEPTED, ok(extension)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
