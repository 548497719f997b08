//! One error type for the whole domain and application layer. Each transport translates it once
//! (REST: status + envelope; later MCP and CLI). The `code` is stable and part of the contract.

use serde::{Deserialize, Serialize};

/// Stable error codes of the contract (docs/api.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    InvalidSignature,
    SignatureExpired,
    NotFound,
    ValidationError,
    MalformedJson,
    InvalidState,
    InsufficientCredits,
    NotReady,
    IdempotencyInProgress,
    QuoteExpired,
    IdempotencyKeyReused,
    PayloadTooLarge,
    RateLimited,
    InternalError,
    FulfillmentFailed,
    ServiceUnavailable,
    /// The agent's rules refuse this (docs/api.md, "Rules").
    RulesDenied,
    /// A per-transaction cap or a budget refuses this.
    SpendingCapExceeded,
    /// The agent is suspended; only the owner can reactivate it.
    KillSwitchActive,
    /// The owner did not decide in time; the order was canceled.
    ApprovalExpired,
    /// The governance API's checkout errors (docs/api.md, "Checkout sessions").
    CheckoutNotFound,
    CheckoutExpired,
    CheckoutNotReady,
    CheckoutCompleted,
    ApprovalPending,
    ApprovalDenied,
    ApprovalNotFound,
    ReceiptMismatch,
    /// RFC 8628's token errors.
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    InvalidGrant,
    /// An MPP challenge: pay and retry.
    PaymentRequired,
    /// MPP problem codes (draft-ryan-httpauth-payment), spelled as the spec spells them.
    #[serde(rename = "malformed-credential")]
    MalformedCredential,
    #[serde(rename = "invalid-challenge")]
    InvalidChallenge,
    #[serde(rename = "verification-failed")]
    VerificationFailed,
    #[serde(rename = "payment-expired")]
    PaymentExpired,
}

/// The broad family of an error, reported as `error.type` in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Permission,
    Payment,
    Conflict,
    RateLimit,
    Upstream,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidSignature => "invalid_signature",
            Self::SignatureExpired => "signature_expired",
            Self::NotFound => "not_found",
            Self::ValidationError => "validation_error",
            Self::MalformedJson => "malformed_json",
            Self::InvalidState => "invalid_state",
            Self::InsufficientCredits => "insufficient_credits",
            Self::NotReady => "not_ready",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::QuoteExpired => "quote_expired",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::FulfillmentFailed => "fulfillment_failed",
            Self::ServiceUnavailable => "service_unavailable",
            Self::RulesDenied => "rules_denied",
            Self::SpendingCapExceeded => "spending_cap_exceeded",
            Self::KillSwitchActive => "kill_switch_active",
            Self::ApprovalExpired => "approval_expired",
            Self::CheckoutNotFound => "checkout_not_found",
            Self::CheckoutExpired => "checkout_expired",
            Self::CheckoutNotReady => "checkout_not_ready",
            Self::CheckoutCompleted => "checkout_completed",
            Self::ApprovalPending => "approval_pending",
            Self::ApprovalDenied => "approval_denied",
            Self::ApprovalNotFound => "approval_not_found",
            Self::ReceiptMismatch => "receipt_mismatch",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::AccessDenied => "access_denied",
            Self::ExpiredToken => "expired_token",
            Self::InvalidGrant => "invalid_grant",
            Self::PaymentRequired => "payment_required",
            Self::MalformedCredential => "malformed-credential",
            Self::InvalidChallenge => "invalid-challenge",
            Self::VerificationFailed => "verification-failed",
            Self::PaymentExpired => "payment-expired",
        }
    }

    pub fn error_type(self) -> ErrorType {
        match self {
            Self::Unauthorized => ErrorType::Authentication,
            Self::Forbidden
            | Self::InvalidSignature
            | Self::SignatureExpired
            | Self::RulesDenied
            | Self::SpendingCapExceeded
            | Self::KillSwitchActive => ErrorType::Permission,
            Self::NotFound
            | Self::ValidationError
            | Self::MalformedJson
            | Self::InvalidState
            | Self::QuoteExpired
            | Self::ApprovalExpired
            | Self::CheckoutNotFound
            | Self::CheckoutExpired
            | Self::CheckoutNotReady
            | Self::CheckoutCompleted
            | Self::ApprovalPending
            | Self::ApprovalDenied
            | Self::ApprovalNotFound
            | Self::ReceiptMismatch
            | Self::AuthorizationPending
            | Self::SlowDown
            | Self::AccessDenied
            | Self::ExpiredToken
            | Self::InvalidGrant
            | Self::PayloadTooLarge => ErrorType::InvalidRequest,
            Self::InsufficientCredits
            | Self::PaymentRequired
            | Self::MalformedCredential
            | Self::InvalidChallenge
            | Self::VerificationFailed
            | Self::PaymentExpired => ErrorType::Payment,
            Self::NotReady | Self::IdempotencyInProgress | Self::IdempotencyKeyReused => {
                ErrorType::Conflict
            }
            Self::RateLimited => ErrorType::RateLimit,
            Self::InternalError => ErrorType::Internal,
            Self::FulfillmentFailed | Self::ServiceUnavailable => ErrorType::Upstream,
        }
    }
}

/// An error the client may see: what is wrong, what to do next, and which field it concerns.
/// Internal causes never go in here; they are logged where they happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DomainError {
    pub code: ErrorCode,
    pub message: String,
    pub suggestion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Seconds after which a retry makes sense (in-flight idempotency, not-ready resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// What to pay, for `402` answers of the MPP rail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Box<PaymentDemand>>,
}

/// An HTTP 402 payment demand (docs/api.md, "MPP (HTTP 402)"): the order waiting for payment, the
/// challenges that would pay it, and — when a credential was presented and refused — why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDemand {
    pub order_id: String,
    /// `WWW-Authenticate: Payment ...` values, one per accepted method.
    pub challenges: Vec<String>,
    /// Whether a credential was refused (`credential_status: "rejected"`).
    pub credential_rejected: bool,
    pub reason: Option<String>,
}

// Built once, here, so that REST and MCP cannot drift apart.
/// The `error` object of every failed answer (in REST's envelope and in MCP's tool result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, machine-readable (docs/api.md, "Errors").
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
    /// What to do next.
    pub suggestion: String,
    /// The request field concerned, as a JSON path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(rename = "type")]
    pub kind: ErrorType,
}

impl DomainError {
    /// The error object every door answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            suggestion: self.suggestion.clone(),
            param: self.param.clone(),
            kind: self.code.error_type(),
        }
    }

    pub fn new(code: ErrorCode, message: impl Into<String>, suggestion: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            suggestion: suggestion.into(),
            param: None,
            retry_after_seconds: None,
            payment: None,
        }
    }

    pub fn with_payment_demand(mut self, demand: PaymentDemand) -> Self {
        self.payment = Some(Box::new(demand));
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// A request field is invalid: names the field and says how to fix it.
    pub fn validation(
        param: impl Into<String>,
        message: impl Into<String>,
        suggestion: impl Into<String>,
    ) -> Self {
        Self::new(ErrorCode::ValidationError, message, suggestion).with_param(param)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("No {what} with id '{id}' is visible to this key."),
            format!("Check the {what} id; list the available ones with the matching GET endpoint."),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "An internal error occurred.",
            "Retry after a short delay; if it persists, report the X-Request-Id to the operator.",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "Missing, unknown or revoked API key.",
            "Send 'Authorization: Bearer <api key>' with a valid key.",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            message,
            "Use a key whose role allows this action (an owner key manages keys and the account).",
        )
    }

    pub fn service_unavailable(message: impl Into<String>, suggestion: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message, suggestion)
    }

    /// Whether a request that ended in this error acted (and so consumes its idempotency key).
    /// Validation, insufficient credits, payment challenges, rate limits and errors before any
    /// effect leave the key free for a corrected retry (docs/api.md, "Idempotency").
    pub fn consumes_idempotency_key(&self) -> bool {
        matches!(self.code, ErrorCode::FulfillmentFailed)
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
