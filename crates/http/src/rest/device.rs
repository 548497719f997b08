//! Customer-agent tokens through the Device Authorization Grant (RFC 8628; docs/api.md,
//! "Customer-agent tokens").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use storefront_app::device::{DeviceAuthorization, DeviceToken};
use storefront_app::App;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .routes(routes!(token))
        .routes(routes!(decide))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceBody {
    /// The e-mail of the customer's storefront account.
    customer_email: String,
    /// How the agent is named to the customer.
    agent_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    device_code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    /// The code the agent shows, like WDJB-MJHT.
    user_code: String,
    /// `approve` (default) or `deny`.
    decision: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Decided {
    user_code: String,
    /// `approved` or `denied`.
    status: String,
}

/// Start a device authorization: show the user code to the customer, then poll the token
/// endpoint every `interval` seconds.
#[utoipa::path(operation_id = "device_authorize", post, path = "/agent-auth/device", tag = "account", request_body = DeviceBody,
    responses(
        (status = 200, description = "Codes for the agent and the customer", body = Envelope<DeviceAuthorization>),
        (status = 400, description = "Invalid e-mail or agent name", body = ErrorEnvelope),
    ))]
async fn authorize(State(app): State<App>, body: ApiJson<DeviceBody>) -> Result<Success, ApiError> {
    let b = body.body;
    Ok(ok(app
        .device_authorize(&b.customer_email, &b.agent_name)
        .await?))
}

/// Poll for the token: `authorization_pending`, `slow_down`, `access_denied`, `expired_token`,
/// `invalid_grant` (RFC 8628), or the agent key.
#[utoipa::path(operation_id = "device_token", post, path = "/agent-auth/token", tag = "account", request_body = TokenBody,
    responses(
        (status = 200, description = "The agent key (shown once)", body = Envelope<DeviceToken>),
        (status = 400, description = "An RFC 8628 error code", body = ErrorEnvelope),
    ))]
async fn token(State(app): State<App>, body: ApiJson<TokenBody>) -> Result<Success, ApiError> {
    Ok(ok(app.device_token(&body.body.device_code).await?))
}

/// The owner approves or denies a user code (what the dashboard's device page does).
#[utoipa::path(operation_id = "device_decide", post, path = "/agent-auth/decide", tag = "account", request_body = DecideBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Decided", body = Envelope<Decided>),
        (status = 400, description = "Already decided, expired, or a bad decision", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys decide", body = ErrorEnvelope),
        (status = 404, description = "No such code for this account", body = ErrorEnvelope),
    ))]
async fn decide(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<DecideBody>,
) -> Result<Success, ApiError> {
    let b = body.body;
    let approve = match b.decision.as_deref() {
        None | Some("approve") => true,
        Some("deny") => false,
        Some(other) => {
            return Err(storefront_domain::DomainError::validation(
                "decision",
                format!("'{other}' is not a decision."),
                "Use \"approve\" or \"deny\".",
            )
            .into())
        }
    };
    app.device_decide(&principal, &b.user_code, approve).await?;
    Ok(ok(Decided {
        user_code: b.user_code.trim().to_ascii_uppercase(),
        status: if approve { "approved" } else { "denied" }.into(),
    }))
}
