//! Orders (docs/api.md, "Orders" and "Idempotency").

use super::{ok, with_retry_after, Success};
use crate::error::{envelope, status_of, ApiError};
use crate::extract::Path;
use crate::extract::{
    idempotency_key, int_param, required_idempotency_key, ApiJson, ApiQuery, Caller,
};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use storefront_app::machines::Credentials;
use storefront_app::orders::ValidatedOrder;
use storefront_app::orders::{BillingDetails, OrderRequest, OrderSource};
use storefront_app::page::PageRequest;
use storefront_app::ports::OrderFilter;
use storefront_app::quotes::QuoteRequest;
use storefront_app::views::OrderOutcome;
use storefront_app::views::OrderView;
use storefront_app::App;
use storefront_domain::order::{OrderStatus, PaymentMethod};
use storefront_domain::DomainError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(validate))
        .routes(routes!(show))
        .routes(routes!(status))
        .routes(routes!(cancel))
        .routes(routes!(credentials))
        .routes(routes!(install))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrderData {
    order: OrderView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrderList {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

/// An order: a stored quote (`quote_id`), or a product with its configuration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderBody {
    /// A quote from POST /api/v1/quotes (then no product_id, quantity or configuration).
    quote_id: Option<String>,
    /// Quote and order in one step.
    product_id: Option<String>,
    quantity: Option<i64>,
    configuration: Option<Map<String, Value>>,
    /// `credit` (default with a key), `card` or `mpp` (default without a key).
    #[schema(value_type = Option<PaymentMethod>)]
    payment_method: Option<String>,
    /// The idempotency key, when not sent as the `Idempotency-Key` header.
    request_id: Option<String>,
    customer_email: Option<String>,
    billing_name: Option<String>,
    billing_street: Option<String>,
    billing_city: Option<String>,
    billing_postal_code: Option<String>,
    billing_country: Option<String>,
}

impl OrderBody {
    fn into_request(self) -> Result<(OrderRequest, Option<String>), DomainError> {
        let source = match (self.quote_id, self.product_id) {
            (Some(_), Some(_)) => {
                return Err(DomainError::validation(
                    "quote_id",
                    "Send either quote_id or product_id, not both.",
                    "Order a stored quote with quote_id alone, or send product_id with its configuration.",
                ))
            }
            (Some(q), None) => {
                if self.quantity.is_some() || self.configuration.is_some() {
                    return Err(DomainError::validation(
                        "configuration",
                        "A quote already fixes the quantity and configuration.",
                        "Remove quantity and configuration, or order by product_id instead of quote_id.",
                    ));
                }
                OrderSource::Quote(q)
            }
            (None, Some(product_id)) => OrderSource::Configure(QuoteRequest {
                product_id,
                quantity: self.quantity,
                configuration: self.configuration.unwrap_or_default(),
            }),
            (None, None) => {
                return Err(DomainError::validation(
                    "product_id",
                    "Say what to order.",
                    "Send quote_id (from POST /api/v1/quotes) or product_id with its configuration.",
                ))
            }
        };
        let payment_method = self
            .payment_method
            .map(|raw| {
                PaymentMethod::parse(&raw).ok_or_else(|| {
                    DomainError::validation(
                        "payment_method",
                        format!("'{raw}' is not a payment method."),
                        "Use \"credit\", \"card\" or \"mpp\".",
                    )
                })
            })
            .transpose()?;
        let billing = BillingDetails {
            customer_email: self.customer_email,
            billing_name: self.billing_name,
            billing_street: self.billing_street,
            billing_city: self.billing_city,
            billing_postal_code: self.billing_postal_code,
            billing_country: self.billing_country,
        };
        Ok((
            OrderRequest {
                source,
                payment_method,
                billing,
            },
            self.request_id,
        ))
    }
}

/// The preflight: prices and checks the order body, creates nothing.
#[utoipa::path(operation_id = "validate_order", post, path = "/orders/validate", tag = "orders", request_body = OrderBody,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "What would be ordered and how it can be paid", body = Envelope<ValidatedOrder>),
        (status = 400, description = "Invalid body (param names the field)", body = ErrorEnvelope),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 404, description = "No such product or quote", body = ErrorEnvelope),
        (status = 410, description = "The quote expired", body = ErrorEnvelope),
        (status = 503, description = "The product or payment method is not available here", body = ErrorEnvelope),
    ))]
async fn validate(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: ApiJson<OrderBody>,
) -> Result<Success, ApiError> {
    let (request, request_id) = body.body.into_request()?;
    let key = idempotency_key(&headers, request_id)?;
    let validated = app
        .validate_order(&principal, &request, key.map(|k| k.as_str().to_owned()))
        .await?;
    Ok(ok(validated))
}

/// Place an order exactly once per idempotency key. Instant products answer `201` fulfilled;
/// machines `202` processing; card orders `202` pending_payment with `payment_action`; MPP
/// orders without a credential `402` with a `WWW-Authenticate: Payment` challenge.
#[utoipa::path(operation_id = "create_order", post, path = "/orders", tag = "orders", request_body = OrderBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 printable characters; required unless request_id is in the body"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Fulfilled (instant products)", body = Envelope<OrderData>),
        (status = 202, description = "Accepted: processing, or waiting for payment or install configuration", body = Envelope<OrderData>),
        (status = 400, description = "Invalid body or missing billing details", body = ErrorEnvelope),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 402, description = "insufficient_credits, or an MPP challenge / refused credential", body = ErrorEnvelope),
        (status = 403, description = "The key may not buy", body = ErrorEnvelope),
        (status = 404, description = "No such product or quote", body = ErrorEnvelope),
        (status = 409, description = "The same key is still in flight", body = ErrorEnvelope),
        (status = 410, description = "The quote expired", body = ErrorEnvelope),
        (status = 422, description = "The key was used with another body", body = ErrorEnvelope),
        (status = 502, description = "Fulfilment failed; refunded", body = ErrorEnvelope),
        (status = 503, description = "Not available here", body = ErrorEnvelope),
    ))]
async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: ApiJson<OrderBody>,
) -> Result<Response, ApiError> {
    let (request, request_id) = body.body.into_request()?;
    let key = required_idempotency_key(&headers, request_id)?;
    let placed = app
        .place_order(&principal, &key, &request, payment_credential(&headers))
        .await?;
    let receipt = match &placed.outcome {
        OrderOutcome::Created {
            payment_receipt, ..
        }
        | OrderOutcome::Accepted {
            payment_receipt, ..
        } => payment_receipt.clone(),
        OrderOutcome::Failed { .. } => None,
    };
    let mut response = match placed.outcome {
        OrderOutcome::Created { order, .. } => {
            let location = format!("/api/v1/orders/{}", order.id);
            let mut r = (StatusCode::CREATED, ok(OrderData { order })).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        OrderOutcome::Accepted {
            order,
            retry_after_seconds,
            ..
        } => {
            let location = format!("/api/v1/orders/{}", order.id);
            let mut r = (StatusCode::ACCEPTED, ok(OrderData { order })).into_response();
            if let Some(s) = retry_after_seconds {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        OrderOutcome::Failed { error } => {
            (status_of(error.code), Json(envelope(&error))).into_response()
        }
    };
    if placed.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(v) = receipt.and_then(|r| HeaderValue::from_str(&r).ok()) {
        response.headers_mut().insert("payment-receipt", v);
    }
    Ok(response)
}

/// The MPP credential: `Authorization: Payment ...`, or `Payment-Authorization` when
/// `Authorization` carries an API key.
fn payment_credential(headers: &HeaderMap) -> Option<&str> {
    let is_payment = |v: &&str| {
        v.split(' ')
            .next()
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("payment"))
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(is_payment)
        .or_else(|| {
            headers
                .get("payment-authorization")
                .and_then(|v| v.to_str().ok())
        })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    /// Only orders of this product.
    product_id: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The account's orders, newest first.
#[utoipa::path(operation_id = "list_orders", get, path = "/orders", tag = "orders", params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of orders", body = Envelope<OrderList>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Success, ApiError> {
    let status = query
        .status
        .filter(|s| !s.is_empty())
        .map(|s| {
            OrderStatus::parse(&s).ok_or_else(|| {
                let all: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
                DomainError::validation(
                    "status",
                    format!("'{s}' is not an order status."),
                    format!("Use one of: {}.", all.join(", ")),
                )
            })
        })
        .transpose()?;
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let filter = OrderFilter {
        status,
        product_id: query.product_id.filter(|p| !p.is_empty()),
        page,
    };
    let page = app.list_orders(&principal, &filter).await?;
    Ok(ok(OrderList {
        orders: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One order of the account; `Retry-After` while it is not done.
#[utoipa::path(operation_id = "get_order", get, path = "/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "An order id (ord_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The order", body = Envelope<OrderData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
        (status = 404, description = "No such order in this account", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (order, retry_after) = app.get_order(&principal, &id).await?;
    Ok(with_retry_after(ok(OrderData { order }), retry_after))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignedQuery {
    /// Expiry of a signed URL (unix seconds), as handed out.
    expires: Option<String>,
    /// Signature of a signed URL, as handed out.
    sig: Option<String>,
}

/// A signed URL's query is accepted in exactly the one form the API hands out,
/// `expires=<unix seconds>&sig=<base64url>`: no second `sig` (which one would count?), no
/// percent-encoding, no reordering, no other parameter. Anything else that mentions `expires`
/// or `sig` is `403 invalid_signature`; a query without them is no signature at all.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SignedQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        if !pairs.iter().any(|(k, _)| *k == "expires" || *k == "sig") {
            return Ok(Self {
                expires: None,
                sig: None,
            });
        }
        match pairs.as_slice() {
            [("expires", expires), ("sig", sig)]
                if !expires.contains('%') && !sig.contains('%') =>
            {
                Ok(Self {
                    expires: Some((*expires).to_owned()),
                    sig: Some((*sig).to_owned()),
                })
            }
            _ => Err(ApiError(storefront_app::secrets::invalid_signature())),
        }
    }
}

impl SignedQuery {
    /// The URL signature to check: present whenever the caller has no key (a missing one then
    /// fails as `invalid_signature`), absent when a key speaks for itself.
    fn signature(
        &self,
        principal: &storefront_app::Principal,
    ) -> Option<(Option<&str>, Option<&str>)> {
        let signed =
            self.expires.is_some() || self.sig.is_some() || principal.account_id().is_none();
        signed.then_some((self.expires.as_deref(), self.sig.as_deref()))
    }
}

/// `GET <status_url>`: no key; the signature authorizes exactly this path until it expires.
/// The order without secrets.
#[utoipa::path(operation_id = "get_order_status", get, path = "/orders/{order_id}/status", tag = "orders",
    params(("order_id" = String, Path, description = "An order id"), SignedQuery),
    responses(
        (status = 200, description = "The order, without credentials or tokens", body = Envelope<OrderData>),
        (status = 403, description = "invalid_signature or signature_expired", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
    ))]
async fn status(
    State(app): State<App>,
    Path(id): Path<String>,
    q: SignedQuery,
) -> Result<Response, ApiError> {
    let (order, retry_after) = app
        .order_status(&id, q.expires.as_deref(), q.sig.as_deref())
        .await?;
    Ok(with_retry_after(ok(OrderData { order }), retry_after))
}

/// Cancel an order that has not started delivery; what was paid is refunded.
#[utoipa::path(operation_id = "cancel_order", post, path = "/orders/{order_id}/cancel", tag = "orders",
    params(("order_id" = String, Path, description = "An order id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The canceled order", body = Envelope<OrderData>),
        (status = 400, description = "invalid_state: delivery started", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
        (status = 404, description = "No such order in this account", body = ErrorEnvelope),
    ))]
async fn cancel(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Success, ApiError> {
    let order = app.cancel_order(&principal, &id).await?;
    Ok(ok(OrderData { order }))
}

/// `GET /api/v1/orders/{id}/credentials` with a key, or the signed `credentials_action.url`.
#[utoipa::path(operation_id = "get_order_credentials", get, path = "/orders/{order_id}/credentials", tag = "orders",
    params(("order_id" = String, Path, description = "An order id"), SignedQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "SSH credentials of the order's machine", body = Envelope<Credentials>),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 403, description = "invalid_signature or signature_expired", body = ErrorEnvelope),
        (status = 404, description = "No such order, or it has no machine", body = ErrorEnvelope),
        (status = 409, description = "not_ready: the machine is not active yet (Retry-After)", body = ErrorEnvelope),
    ))]
async fn credentials(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    q: SignedQuery,
) -> Result<Success, ApiError> {
    let signature = q.signature(&principal);
    Ok(ok(app
        .order_credentials(&principal, &id, signature)
        .await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallBody {
    /// Values for the product's install_schema.
    config: Map<String, Value>,
}

/// `POST <install_action.url>` `{config}` (or the same path with a key): the configuration a
/// product needs after payment; then delivery starts.
#[utoipa::path(operation_id = "submit_install_configuration", post, path = "/orders/{order_id}/install", tag = "orders", request_body = InstallBody,
    params(("order_id" = String, Path, description = "An order id"), SignedQuery),
    security((), ("api_key" = [])),
    responses(
        (status = 202, description = "Delivery starts", body = Envelope<OrderData>),
        (status = 400, description = "Invalid configuration, or the order takes none now", body = ErrorEnvelope),
        (status = 401, description = "An unknown or revoked key", body = ErrorEnvelope),
        (status = 403, description = "invalid_signature or signature_expired", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
    ))]
async fn install(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    q: SignedQuery,
    body: ApiJson<InstallBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let signature = q.signature(&principal);
    let order = app
        .submit_install_configuration(&principal, &id, signature, &body.body.config)
        .await?;
    Ok((StatusCode::ACCEPTED, ok(OrderData { order })))
}
