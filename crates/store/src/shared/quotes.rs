//! Quotes.

use async_trait::async_trait;
use storefront_app::ports::{QuoteStore, StoreResult};
use storefront_domain::ids::QuoteId;
use storefront_domain::quote::Quote;
use storefront_domain::timestamp::format as ts;

use super::common::{commit, execute, to_json, Statements};
use super::db;
use super::rows::quote_from_row;

#[async_trait]
impl QuoteStore for db::Adapter {
    /// Batched with the quotes of other callers (see `crate::append`).
    async fn insert_quote(&self, q: &Quote) -> StoreResult<()> {
        let store = self.clone();
        self.appends()
            .quotes
            .append(q.clone(), move |quotes| {
                let store = store.clone();
                async move {
                    let mut tx = store.begin().await?;
                    insert_quote_rows(&mut tx, &quotes).await?;
                    commit(tx).await
                }
            })
            .await
    }

    async fn get_quote(&self, id: &QuoteId) -> StoreResult<Option<Quote>> {
        self.find_one(
            "SELECT * FROM quotes WHERE id = $1",
            id.as_str(),
            quote_from_row,
        )
        .await
    }
}

pub(super) async fn insert_quote_row(conn: &mut db::Connection, q: &Quote) -> StoreResult<()> {
    insert_quote_rows(conn, std::slice::from_ref(q)).await
}

/// Many quotes in one statement.
async fn insert_quote_rows(conn: &mut db::Connection, quotes: &[Quote]) -> StoreResult<()> {
    let mut insert = Statements::new("");
    push_quote_rows(&mut insert, quotes);
    execute(conn, insert).await?;
    Ok(())
}

/// The statement of [`insert_quote_rows`].
pub(super) fn push_quote_rows(insert: &mut Statements<'_>, quotes: &[Quote]) {
    insert.push(
        "INSERT INTO quotes (id, account_id, product_id, quantity, configuration, warnings, line_items,
                             total_minor, currency, catalog_version, management_capabilities, created_at, expires_at) ",
    );
    insert.push_values(quotes, |mut row, q| {
        row.push_bind(q.id.as_str().to_owned())
            .push_bind(q.account_id.as_ref().map(|a| a.as_str().to_owned()))
            .push_bind(q.product_id.clone())
            .push_bind(q.quantity)
            .push_bind(to_json(&q.configuration_normalized))
            .push_bind(to_json(&q.configuration_warnings))
            .push_bind(to_json(&q.line_items))
            .push_bind(q.total_minor)
            .push_bind(q.currency.as_str().to_owned())
            .push_bind(q.catalog_version.clone())
            .push_bind(to_json(&q.management_capabilities))
            .push_bind(ts(&q.created_at))
            .push_bind(ts(&q.expires_at));
    });
}
