//! The single translation of `DomainError` into HTTP: status code, envelope, and the headers
//! that go with some errors (`Retry-After`, `WWW-Authenticate`).

use crate::openapi::ErrorEnvelope;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use storefront_domain::{DomainError, ErrorCode};

/// A `DomainError` on its way out through REST.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self(e)
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden
        | ErrorCode::InvalidSignature
        | ErrorCode::SignatureExpired
        | ErrorCode::RulesDenied
        | ErrorCode::SpendingCapExceeded
        | ErrorCode::KillSwitchActive => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::ValidationError | ErrorCode::MalformedJson | ErrorCode::InvalidState => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::InsufficientCredits
        | ErrorCode::PaymentRequired
        | ErrorCode::MalformedCredential
        | ErrorCode::InvalidChallenge
        | ErrorCode::VerificationFailed
        | ErrorCode::PaymentExpired => StatusCode::PAYMENT_REQUIRED,
        ErrorCode::NotReady | ErrorCode::IdempotencyInProgress => StatusCode::CONFLICT,
        ErrorCode::QuoteExpired | ErrorCode::ApprovalExpired | ErrorCode::CheckoutExpired => {
            StatusCode::GONE
        }
        ErrorCode::CheckoutNotFound | ErrorCode::ApprovalNotFound => StatusCode::NOT_FOUND,
        ErrorCode::CheckoutNotReady | ErrorCode::CheckoutCompleted | ErrorCode::ApprovalPending => {
            StatusCode::CONFLICT
        }
        ErrorCode::ApprovalDenied => StatusCode::FORBIDDEN,
        // RFC 8628 answers its token errors with 400.
        ErrorCode::ReceiptMismatch
        | ErrorCode::AuthorizationPending
        | ErrorCode::SlowDown
        | ErrorCode::AccessDenied
        | ErrorCode::ExpiredToken
        | ErrorCode::InvalidGrant => StatusCode::BAD_REQUEST,
        ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::FulfillmentFailed => StatusCode::BAD_GATEWAY,
        ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The error envelope body.
pub fn envelope(e: &DomainError) -> serde_json::Value {
    // A 402 names the order waiting for payment and, after a refused credential, why
    // (docs/api.md, "MPP (HTTP 402)").
    let demand = e.payment.as_deref();
    let rejected = demand.filter(|d| d.credential_rejected);
    let body = ErrorEnvelope {
        ok: false,
        error: e.body(),
        order_id: demand.map(|d| d.order_id.clone()),
        status: demand.map(|_| "unpaid".to_owned()),
        credential_status: rejected.map(|_| "rejected".to_owned()),
        reason: rejected.and_then(|d| d.reason.clone()),
    };
    serde_json::to_value(body).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut response = (status_of(e.code), Json(envelope(&e))).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = e.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if e.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(demand) = &e.payment {
            for challenge in &demand.challenges {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.append(header::WWW_AUTHENTICATE, v);
                }
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

/// A handler panicked: answer like any internal error (the panic itself is logged by tracing's
/// panic hook in the binary, never sent to the client).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError(DomainError::internal()).into_response()
}
