//! `API.md` §6 and §9: the account, its balance, ledger and API keys.

use super::ok;
use crate::error::ApiError;
use crate::extract::{int_param, ApiJson, ApiQuery, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_app::page::PageRequest;
use storefront_app::App;
use storefront_domain::account::KeyRole;
use storefront_domain::DomainError;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/account", get(show))
        .route("/account/balance", get(balance))
        .route("/account/ledger", get(ledger))
        .route("/account/api-keys", get(list_keys).post(create_key))
        .route("/account/api-keys/{key_id}", delete(revoke_key))
}

async fn show(State(app): State<App>, Caller(principal): Caller) -> Result<Json<Value>, ApiError> {
    let account = app.account(&principal).await?;
    Ok(ok(json!({ "account": account })))
}

async fn balance(
    State(app): State<App>,
    Caller(principal): Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(app.balance(&principal).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn ledger(
    State(app): State<App>,
    Caller(principal): Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let page = app.ledger(&principal, &page).await?;
    Ok(ok(
        json!({ "entries": page.items, "next_cursor": page.next_cursor }),
    ))
}

async fn list_keys(
    State(app): State<App>,
    Caller(principal): Caller,
) -> Result<Json<Value>, ApiError> {
    let keys = app.list_api_keys(&principal).await?;
    Ok(ok(json!({ "api_keys": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    role: Option<String>,
    name: Option<String>,
}

async fn create_key(
    State(app): State<App>,
    Caller(principal): Caller,
    body: ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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

async fn revoke_key(
    State(app): State<App>,
    Caller(principal): Caller,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.revoke_api_key(&principal, &key_id).await?;
    Ok(ok(json!({ "key_id": key_id, "revoked": true })))
}
