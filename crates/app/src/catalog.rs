//! Catalog use-cases: browse, fetch, requirements.

use crate::app::App;
use crate::page::{Page, PageRequest};
use storefront_domain::catalog::Product;
use storefront_domain::DomainError;

impl App {
    pub fn list_products(
        &self,
        q: Option<&str>,
        category: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Product>, DomainError> {
        let mut matches = self.catalog.search(q, category).peekable();
        if let Some(cursor) = &page.cursor {
            // Skip up to and including the cursor's product; a cursor naming no product of the
            // result set is rejected rather than silently restarting.
            if self.catalog.get(cursor).is_none() {
                return Err(PageRequest::invalid_cursor());
            }
            for p in matches.by_ref() {
                if &p.id == cursor {
                    break;
                }
            }
        }
        let fetched: Vec<Product> = matches.take(page.limit as usize + 1).cloned().collect();
        Ok(Page::from_fetched(fetched, page.limit, |p| p.id.clone()))
    }

    pub fn get_product(&self, id: &str) -> Result<&Product, DomainError> {
        self.catalog.get(id).ok_or_else(|| unknown_product(id))
    }
}

pub(crate) fn unknown_product(id: &str) -> DomainError {
    DomainError::new(
        storefront_domain::ErrorCode::NotFound,
        format!("There is no product '{id}'."),
        "List the products and use one of their ids.",
    )
    .with_param("product_id")
}
