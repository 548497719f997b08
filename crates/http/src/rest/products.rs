//! The catalog (docs/api.md, "Catalog").

use super::{ok, Success};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{int_param, ApiQuery};
use crate::openapi::{Envelope, ErrorEnvelope};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
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

/// The answers that depend on nothing but the catalog — the first page of the whole catalog and
/// each product — rendered once per server: the catalog changes only with a restart, and these
/// are the hottest reads agents make.
#[derive(Default)]
pub(crate) struct RenderedCatalog {
    first_page: OnceLock<Bytes>,
    products: OnceLock<HashMap<String, Bytes>>,
}

impl RenderedCatalog {
    fn first_page(&self, app: &App) -> Result<Bytes, ApiError> {
        if let Some(page) = self.first_page.get() {
            return Ok(page.clone());
        }
        let page = app.list_products(None, None, &PageRequest::parse(None, None)?)?;
        let rendered = render(ok(ProductList {
            products: page.items,
            next_cursor: page.next_cursor,
        }));
        Ok(self.first_page.get_or_init(|| rendered).clone())
    }

    fn product(&self, app: &App, id: &str) -> Result<Bytes, ApiError> {
        let all = self.products.get_or_init(|| {
            app.catalog()
                .products()
                .iter()
                .map(|product| (product.id.clone(), render(ok(ProductData { product }))))
                .collect()
        });
        match all.get(id) {
            Some(rendered) => Ok(rendered.clone()),
            // Not in the catalog: the use-case answers with its `not_found`.
            None => {
                app.get_product(id)?;
                Err(ApiError(storefront_domain::DomainError::internal()))
            }
        }
    }
}

fn render(body: super::Success) -> Bytes {
    body.0
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// List or search the catalog.
#[utoipa::path(operation_id = "list_products", get, path = "/products", tag = "catalog", params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = Envelope<ProductList>),
        (status = 400, description = "A bad query parameter (named in param)", body = ErrorEnvelope),
    ))]
async fn list(
    State(app): State<App>,
    Extension(rendered): Extension<Arc<RenderedCatalog>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    if query.q.is_none()
        && query.category.is_none()
        && query.limit.is_none()
        && query.cursor.is_none()
    {
        return Ok(json_response(rendered.first_page(&app)?));
    }
    let page = PageRequest::parse(int_param("limit", query.limit.as_deref())?, query.cursor)?;
    let page = app.list_products(query.q.as_deref(), query.category.as_deref(), &page)?;
    Ok(ok(ProductList {
        products: page.items,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// One product with its pricing and configuration schema.
#[utoipa::path(operation_id = "get_product", get, path = "/products/{product_id}", tag = "catalog",
    params(("product_id" = String, Path, description = "A product id, like bare-linux-machine")),
    responses(
        (status = 200, description = "The product", body = Envelope<ProductData>),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
async fn show(
    State(app): State<App>,
    Extension(rendered): Extension<Arc<RenderedCatalog>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(rendered.product(&app, &id)?))
}

/// What an order of the product needs: required and optional fields with their allowed values
/// and defaults, the configuration's JSON Schema, payment methods, install configuration.
#[utoipa::path(operation_id = "get_product_requirements", get, path = "/products/{product_id}/requirements", tag = "catalog",
    params(("product_id" = String, Path, description = "A product id")),
    responses(
        (status = 200, description = "The checkout requirements", body = Envelope<Value>),
        (status = 404, description = "No such product", body = ErrorEnvelope),
    ))]
async fn requirements(State(app): State<App>, Path(id): Path<String>) -> Result<Success, ApiError> {
    Ok(ok(app.get_product(&id)?.requirements()))
}
