//! `API.md` §3: the catalog.

use super::ok;
use crate::error::ApiError;
use crate::extract::{int_param, ApiQuery};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_app::page::PageRequest;
use storefront_app::App;
use storefront_domain::catalog::Product;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(requirements))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Free-text search over names, descriptions and tags.
    q: Option<String>,
    /// Only products of this category.
    category: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProductList {
    products: Vec<Product>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProductData<'a> {
    product: &'a Product,
}

/// List or search the catalog.
#[utoipa::path(operation_id = "list_products", get, path = "/products", tag = "catalog", params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = Envelope<ProductList>),
        (status = 400, description = "A bad query parameter (named in param)", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let page = app.list_products(query.q.as_deref(), query.category.as_deref(), &page)?;
    Ok(ok(ProductList {
        products: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One product with its pricing and configuration schema.
#[utoipa::path(operation_id = "get_product", get, path = "/products/{product_id}", tag = "catalog",
    params(("product_id" = String, Path, description = "A product id, like bare-linux-machine")),
    responses(
        (status = 200, description = "The product", body = Envelope<ProductData>),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
async fn show(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let product = app.get_product(&id)?;
    Ok(ok(ProductData { product }))
}

/// What an order of the product needs: required and optional fields with their allowed values
/// and defaults, the configuration's JSON Schema, payment methods, install configuration.
#[utoipa::path(operation_id = "get_product_requirements", get, path = "/products/{product_id}/requirements", tag = "catalog",
    params(("product_id" = String, Path, description = "A product id")),
    responses(
        (status = 200, description = "The checkout requirements", body = Envelope<Value>),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
async fn requirements(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(ok(app.get_product(&id)?.requirements()))
}
