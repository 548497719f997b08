//! The account, its balance, ledger and API keys (docs/api.md, "Credit ledger" and "Accounts
//! and keys").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{int_param, ApiJson, ApiQuery, Caller};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use storefront_app::accounts::{Balance, CreatedKey};
use storefront_app::page::PageRequest;
use storefront_app::App;
use storefront_domain::account::KeyRole;
use storefront_domain::account::{Account, ApiKey};
use storefront_domain::ledger::LedgerEntry;
use storefront_domain::DomainError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(show, update))
        .routes(routes!(balance))
        .routes(routes!(ledger))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccountData {
    account: Account,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LedgerPage {
    entries: Vec<LedgerEntry>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KeyList {
    api_keys: Vec<ApiKey>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    key_id: String,
    /// Always `true`.
    revoked: bool,
}

/// The account of the key.
#[utoipa::path(operation_id = "get_account", get, path = "/account", tag = "account", security(("api_key" = [])),
    responses(
        (status = 200, description = "The account", body = Envelope<AccountData>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
    ))]
async fn show(State(app): State<App>, Caller(principal): Caller) -> Result<Success, ApiError> {
    let account = app.account(&principal).await?;
    Ok(ok(AccountData { account }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountPatch {
    /// A charge that takes the balance below this many minor units writes a `balance.low` event;
    /// `null` turns it off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    balance_low_minor: Option<Option<i64>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Change the account's settings (owner keys): the `balance.low` threshold.
#[utoipa::path(operation_id = "update_account", patch, path = "/account", tag = "account", request_body = AccountPatch,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The account", body = Envelope<AccountData>),
        (status = 400, description = "A bad threshold", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys change the account", body = ErrorEnvelope),
    ))]
async fn update(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<AccountPatch>,
) -> Result<Success, ApiError> {
    let account = match body.body.balance_low_minor {
        Some(threshold) => app.set_balance_low_threshold(&principal, threshold).await?,
        None => app.account(&principal).await?,
    };
    Ok(ok(AccountData { account }))
}

/// The credit balance (1 credit = 1 minor unit of the account's currency).
#[utoipa::path(operation_id = "get_balance", get, path = "/account/balance", tag = "account", security(("api_key" = [])),
    responses(
        (status = 200, description = "The balance", body = Envelope<Balance>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
    ))]
async fn balance(State(app): State<App>, Caller(principal): Caller) -> Result<Success, ApiError> {
    Ok(ok(app.balance(&principal).await?))
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

/// The append-only ledger, newest first; each entry with the balance it produced.
#[utoipa::path(operation_id = "list_ledger", get, path = "/account/ledger", tag = "account", params(PageQuery), security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of ledger entries", body = Envelope<LedgerPage>),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "A resource token reaches only its service", body = ErrorEnvelope),
    ))]
async fn ledger(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Success, ApiError> {
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let page = app.ledger(&principal, &page).await?;
    Ok(ok(LedgerPage {
        entries: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// The account's API keys (never their secrets).
#[utoipa::path(operation_id = "list_api_keys", get, path = "/account/api-keys", tag = "account", security(("api_key" = [])),
    responses(
        (status = 200, description = "The keys", body = Envelope<KeyList>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage keys", body = ErrorEnvelope),
    ))]
async fn list_keys(State(app): State<App>, Caller(principal): Caller) -> Result<Success, ApiError> {
    let keys = app.list_api_keys(&principal).await?;
    Ok(ok(KeyList { api_keys: keys }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyBody {
    /// `owner` (default) or `agent`.
    #[schema(value_type = Option<KeyRole>)]
    role: Option<String>,
    /// A label, 1-100 printable characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    name: Option<String>,
}

/// Create an API key; its secret is in this answer only.
#[utoipa::path(operation_id = "create_api_key", post, path = "/account/api-keys", tag = "account", request_body = CreateKeyBody, security(("api_key" = [])),
    responses(
        (status = 201, description = "The key, with its secret (shown once)", body = Envelope<CreatedKey>),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage keys", body = ErrorEnvelope),
    ))]
async fn create_key(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Success), ApiError> {
    let role = match body.body.role.as_deref() {
        None => KeyRole::Owner,
        Some(raw) => KeyRole::parse(raw).ok_or_else(|| {
            DomainError::validation(
                "role",
                format!("'{raw}' is not a key role."),
                "Use \"owner\" or \"agent\".",
            )
        })?,
    };
    let created = app.create_api_key(&principal, role, body.body.name).await?;
    Ok((StatusCode::CREATED, ok(created)))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(operation_id = "revoke_api_key", delete, path = "/account/api-keys/{key_id}", tag = "account",
    params(("key_id" = String, Path, description = "A key id (key_...)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Revoked", body = Envelope<Revoked>),
        (status = 401, description = "No key, or an unknown or revoked one", body = ErrorEnvelope),
        (status = 403, description = "Only owner keys manage keys", body = ErrorEnvelope),
        (status = 404, description = "No such live key in this account", body = ErrorEnvelope),
    ))]
async fn revoke_key(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(key_id): Path<String>,
) -> Result<Success, ApiError> {
    app.revoke_api_key(&principal, &key_id).await?;
    Ok(ok(Revoked {
        key_id,
        revoked: true,
    }))
}
