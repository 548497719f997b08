//! `API.md` §5: orders.

use super::{ok, with_retry_after};
use crate::error::{envelope, status_of, ApiError};
use crate::extract::{
    idempotency_key, int_param, required_idempotency_key, ApiJson, ApiQuery, Caller,
};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use storefront_app::orders::{BillingDetails, OrderRequest, OrderSource};
use storefront_app::page::PageRequest;
use storefront_app::payments::MppAttempt;
use storefront_app::ports::OrderFilter;
use storefront_app::quotes::QuoteRequest;
use storefront_app::views::OrderOutcome;
use storefront_app::App;
use storefront_domain::idempotency::{canonical_json, fingerprint};
use storefront_domain::order::{OrderStatus, PaymentMethod};
use storefront_domain::DomainError;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/orders", post(create).get(list))
        .route("/orders/validate", post(validate))
        .route("/orders/{order_id}", get(show))
        .route("/orders/{order_id}/status", get(status))
        .route("/orders/{order_id}/cancel", post(cancel))
        .route("/orders/{order_id}/credentials", get(credentials))
        .route("/orders/{order_id}/install", post(install))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    quote_id: Option<String>,
    product_id: Option<String>,
    quantity: Option<i64>,
    configuration: Option<Map<String, Value>>,
    payment_method: Option<String>,
    /// Seed 004: the idempotency key may travel in the body.
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

async fn validate(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: ApiJson<OrderBody>,
) -> Result<Json<Value>, ApiError> {
    let (request, request_id) = body.body.into_request()?;
    let key = idempotency_key(&headers, request_id)?;
    let validated = app
        .validate_order(&principal, &request, key.map(|k| k.as_str().to_owned()))
        .await?;
    Ok(ok(validated))
}

async fn create(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: ApiJson<OrderBody>,
) -> Result<Response, ApiError> {
    let fingerprint = fingerprint(&body.raw);
    let canonical = canonical_json(&body.raw);
    let (request, request_id) = body.body.into_request()?;
    let key = required_idempotency_key(&headers, request_id)?;
    let attempt = MppAttempt {
        credential: payment_credential(&headers),
        body: canonical.as_bytes(),
    };
    let placed = app
        .place_order(&principal, key.as_str(), &fingerprint, &request, attempt)
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
            let mut r = (StatusCode::CREATED, ok(json!({ "order": order }))).into_response();
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
            let mut r = (StatusCode::ACCEPTED, ok(json!({ "order": order }))).into_response();
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    product_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(ok(
        json!({ "orders": page.items, "next_cursor": page.next_cursor }),
    ))
}

async fn show(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (order, retry_after) = app.get_order(&principal, &id).await?;
    Ok(with_retry_after(ok(json!({ "order": order })), retry_after))
}

#[derive(Deserialize)]
struct SignedQuery {
    expires: Option<String>,
    sig: Option<String>,
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
async fn status(
    State(app): State<App>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SignedQuery>,
) -> Result<Response, ApiError> {
    let (order, retry_after) = app
        .order_status(&id, q.expires.as_deref(), q.sig.as_deref())
        .await?;
    Ok(with_retry_after(ok(json!({ "order": order })), retry_after))
}

async fn cancel(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let order = app.cancel_order(&principal, &id).await?;
    Ok(ok(json!({ "order": order })))
}

/// `GET /api/v1/orders/{id}/credentials` with a key, or the signed `credentials_action.url`.
async fn credentials(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SignedQuery>,
) -> Result<Json<Value>, ApiError> {
    let signature = q.signature(&principal);
    Ok(ok(app
        .order_credentials(&principal, &id, signature)
        .await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    config: Map<String, Value>,
}

/// `POST <install_action.url>` `{config}` (or the same path with a key).
async fn install(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    body: ApiJson<InstallBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let signature = q.signature(&principal);
    let order = app
        .submit_install_configuration(&principal, &id, signature, &body.body.config)
        .await?;
    Ok((StatusCode::ACCEPTED, ok(json!({ "order": order }))))
}
