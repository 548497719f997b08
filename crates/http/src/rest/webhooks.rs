//! Webhook endpoints and their deliveries (docs/events.md).

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::{int_param, ApiJson, ApiQuery, Caller, Path};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use storefront_app::page::PageRequest;
use storefront_app::webhooks::{
    DeliveryView, EndpointChanges, EndpointWithSecret, NewEndpoint, WebhookEndpointView,
};
use storefront_app::App;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(test))
        .routes(routes!(deliveries))
        .routes(routes!(retry))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointBody {
    /// Where events are sent: an `https://` URL on the public internet.
    url: String,
    /// Event types to send (`order.paid`, ...), or `["*"]` for all.
    events: Vec<String>,
    /// Up to 500 characters, for people.
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `true` enables a disabled endpoint again (and forgets its failures); `false` pauses it
    /// (events are still queued and sent once it is enabled).
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointData {
    webhook_endpoint: WebhookEndpointView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointList {
    webhook_endpoints: Vec<WebhookEndpointView>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryData {
    delivery: DeliveryView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    deliveries: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedEndpoint {
    id: String,
    /// Always `true`.
    deleted: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListQuery {
    fn page(self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(
            int_param("limit", self.limit.as_deref())?,
            self.cursor,
        )?)
    }
}

/// Register a URL to receive events, signed per Standard Webhooks. The answer holds the signing
/// secret (`whsec_...`), shown only here. An agent key's endpoint receives that agent's events.
#[utoipa::path(operation_id = "create_webhook_endpoint", post, path = "/webhook-endpoints", tag = "webhooks",
    request_body = EndpointBody, security(("api_key" = [])),
    responses(
        (status = 201, description = "The endpoint and its secret (shown once)", body = Envelope<EndpointWithSecret>),
        (status = 400, description = "A bad URL (or one that reaches a private address) or event type", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token has no webhooks", body = ErrorEnvelope),
        (status = 503, description = "Webhooks are not configured", body = ErrorEnvelope),
    ))]
async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<EndpointBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let b = body.body;
    let created = app
        .create_webhook_endpoint(
            &principal,
            NewEndpoint {
                url: b.url,
                events: b.events,
                description: b.description,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, ok(created)))
}

/// The endpoints of the account (an owner key) or of the agent (an agent key), oldest first.
#[utoipa::path(operation_id = "list_webhook_endpoints", get, path = "/webhook-endpoints", tag = "webhooks",
    params(ListQuery), security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of endpoints", body = Envelope<EndpointList>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token has no webhooks", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Success, ApiError> {
    let page = app.list_webhook_endpoints(&principal, &q.page()?).await?;
    Ok(ok(EndpointList {
        webhook_endpoints: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One endpoint (never its secret).
#[utoipa::path(operation_id = "get_webhook_endpoint", get, path = "/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = Envelope<EndpointData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let webhook_endpoint = app.webhook_endpoint(&principal, &id).await?;
    Ok(ok(EndpointData { webhook_endpoint }))
}

/// Change an endpoint's URL, events or description, or enable or pause it.
#[utoipa::path(operation_id = "update_webhook_endpoint", patch, path = "/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    request_body = EndpointPatch,
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = Envelope<EndpointData>),
        (status = 400, description = "A bad URL or event type", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn update(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: ApiJson<EndpointPatch>,
) -> Result<Success, ApiError> {
    let b = body.body;
    let changes = EndpointChanges {
        url: b.url,
        events: b.events,
        description: b.description,
        enabled: b.enabled,
    };
    let webhook_endpoint = app
        .update_webhook_endpoint(&principal, &id, changes)
        .await?;
    Ok(ok(EndpointData { webhook_endpoint }))
}

/// Delete an endpoint; deliveries still waiting are dropped.
#[utoipa::path(operation_id = "delete_webhook_endpoint", delete, path = "/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = Envelope<DeletedEndpoint>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn delete(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    app.delete_webhook_endpoint(&principal, &id).await?;
    Ok(ok(DeletedEndpoint { id, deleted: true }))
}

/// A new signing secret (shown once). For 24 hours deliveries carry a signature with the old
/// secret too, so receivers can switch without missing one.
#[utoipa::path(operation_id = "rotate_webhook_secret", post, path = "/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint and its new secret (shown once)", body = Envelope<EndpointWithSecret>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn rotate_secret(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    Ok(ok(app.rotate_webhook_secret(&principal, &id).await?))
}

/// Send the endpoint a `ping` event, signed like every delivery.
#[utoipa::path(operation_id = "test_webhook_endpoint", post, path = "/webhook-endpoints/{endpoint_id}/test", tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "The ping is queued; its delivery", body = Envelope<DeliveryData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn test(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Success), ApiError> {
    let delivery = app.ping_webhook_endpoint(&principal, &id).await?;
    Ok((StatusCode::ACCEPTED, ok(DeliveryData { delivery })))
}

/// The endpoint's deliveries, newest first: status, attempts, the last answer and the next try.
#[utoipa::path(operation_id = "list_webhook_deliveries", get, path = "/webhook-endpoints/{endpoint_id}/deliveries", tag = "webhooks",
    params(("endpoint_id" = String, Path, description = "A webhook endpoint id (we_...)"), ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = Envelope<DeliveryList>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint for this key", body = ErrorEnvelope),
    ))]
async fn deliveries(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Success, ApiError> {
    let page = app
        .list_webhook_deliveries(&principal, &id, &q.page()?)
        .await?;
    Ok(ok(DeliveryList {
        deliveries: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Send a delivery again now (a failed one, or one waiting for its next try).
#[utoipa::path(operation_id = "retry_webhook_delivery", post, path = "/webhook-endpoints/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("delivery_id" = String, Path, description = "A delivery id (whd_...)")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "The delivery is due again", body = Envelope<DeliveryData>),
        (status = 400, description = "The delivery is being attempted right now", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 404, description = "No such delivery for this key", body = ErrorEnvelope),
    ))]
async fn retry(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Success), ApiError> {
    let delivery = app.retry_webhook_delivery(&principal, &id).await?;
    Ok((StatusCode::ACCEPTED, ok(DeliveryData { delivery })))
}
