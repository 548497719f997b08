//! `API.md` §3: the catalog.

use super::ok;
use crate::error::ApiError;
use crate::extract::{int_param, ApiQuery};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_app::page::PageRequest;
use storefront_app::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/products", get(list))
        .route("/products/{product_id}", get(show))
        .route("/products/{product_id}/requirements", get(requirements))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    q: Option<String>,
    category: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<App>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let page = app.list_products(query.q.as_deref(), query.category.as_deref(), &page)?;
    Ok(ok(
        json!({ "products": page.items, "next_cursor": page.next_cursor }),
    ))
}

async fn show(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let product = app.get_product(&id)?;
    Ok(ok(json!({ "product": product })))
}

async fn requirements(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(app.get_product(&id)?.requirements()))
}
