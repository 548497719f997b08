//! The money invariants the safety harnesses check straight in the database, after the server
//! has been through crashes or vanishing clients.

use sqlx::Row;

/// The `n` a counting query answers.
pub async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// For every account the ledger sums to the balance; no order has two charges; every failed or
/// canceled order nets to zero (refunded, or never charged). `when` names the moment checked.
pub async fn assert_ledger_consistent(pool: &sqlx::AnyPool, when: &str) {
    let rows = sqlx::query(
        "SELECT a.id, a.balance_minor, CAST((SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS BIGINT) AS total FROM accounts a",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for r in &rows {
        assert_eq!(
            r.get::<i64, _>("balance_minor"),
            r.get::<i64, _>("total"),
            "{when}: the ledger of account {} sums to its balance",
            r.get::<String, _>("id")
        );
    }
    let doubles = count(pool, "SELECT COUNT(*) AS n FROM (SELECT order_id FROM ledger_entries WHERE kind = 'charge' AND order_id IS NOT NULL GROUP BY order_id HAVING COUNT(*) > 1) d").await;
    assert_eq!(doubles, 0, "{when}: no order charged twice");
    let unrefunded = count(pool, "SELECT COUNT(*) AS n FROM orders o WHERE o.status IN ('failed', 'canceled')
           AND CAST((SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries l WHERE l.order_id = o.id) AS BIGINT) <> 0").await;
    assert_eq!(
        unrefunded, 0,
        "{when}: failed and canceled orders cost nothing"
    );
}

/// The distinct order states in the database, for the harnesses' summary line.
pub async fn order_statuses(pool: &sqlx::AnyPool) -> Vec<String> {
    sqlx::query("SELECT DISTINCT status FROM orders")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("status"))
        .collect()
}
