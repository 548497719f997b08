//! Card and MPP payments.

use async_trait::async_trait;
use storefront_app::ports::{PaymentStore, StoreResult};
use storefront_domain::ids::{OrderId, PaymentId};
use storefront_domain::payment::{Payment, PaymentState};
use storefront_domain::timestamp::format as ts;

use super::common::{backend, commit, placeholders};
use super::db;
use super::rows::payment_from_row;

#[async_trait]
impl PaymentStore for db::Adapter {
    async fn insert_payment(&self, payment: &Payment) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_payment_row(&mut tx, payment).await?;
        commit(tx).await
    }

    async fn get_payment(&self, id: &PaymentId) -> StoreResult<Option<Payment>> {
        self.find_one(
            "SELECT * FROM payments WHERE id = $1",
            id.as_str(),
            payment_from_row,
        )
        .await
    }

    async fn find_payment_by_session(&self, session_id: &str) -> StoreResult<Option<Payment>> {
        self.find_one(
            "SELECT * FROM payments WHERE session_id = $1",
            session_id,
            payment_from_row,
        )
        .await
    }

    async fn find_payment_for_order(&self, order_id: &OrderId) -> StoreResult<Option<Payment>> {
        self.find_one(
            "SELECT * FROM payments WHERE order_id = $1",
            order_id.as_str(),
            payment_from_row,
        )
        .await
    }
}

pub(super) async fn insert_payment_row(conn: &mut db::Connection, p: &Payment) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payments (id, account_id, order_id, purpose, rail, amount_minor, currency, status, session_id,
                               checkout_url, payment_reference, challenge_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(p.id.as_str())
    .bind(p.account_id.as_ref().map(|a| a.as_str().to_owned()))
    .bind(p.order_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(p.purpose.as_str())
    .bind(p.rail.as_str())
    .bind(p.amount_minor)
    .bind(p.currency.as_str())
    .bind(p.status.as_str())
    .bind(p.session_id.as_deref())
    .bind(p.checkout_url.as_deref())
    .bind(p.payment_reference.as_deref())
    .bind(p.challenge_id.as_deref())
    .bind(ts(&p.created_at))
    .bind(ts(&p.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Conditional on the current status, like `update_order_row`.
pub(super) async fn update_payment_row(
    conn: &mut db::Connection,
    p: &Payment,
    expected: &[PaymentState],
) -> StoreResult<bool> {
    if expected.is_empty() {
        return Ok(false);
    }
    let placeholders = placeholders(5, expected.len());
    let sql = format!(
        "UPDATE payments SET status = $1, payment_reference = $2, updated_at = $3 WHERE id = $4 AND status IN ({})",
        placeholders
    );
    let mut query = sqlx::query(&sql)
        .bind(p.status.as_str())
        .bind(p.payment_reference.as_deref())
        .bind(ts(&p.updated_at))
        .bind(p.id.as_str());
    for status in expected {
        query = query.bind(status.as_str());
    }
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(backend)?
        .rows_affected()
        == 1)
}
