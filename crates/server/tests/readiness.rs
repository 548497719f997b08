//! `/readyz` tells the truth about the write path: while another process holds the database's
//! write lock (SQLite) or the table the check writes (PostgreSQL), reads still answer but the
//! process is not ready (`503` with the reason, and a counted store failure); once the lock is
//! gone, it is ready again.

mod common;

use common::{Backend, TestServer};
use sqlx::Connection;

dual_test!(a_stuck_write_path_makes_the_process_unready);
async fn a_stuck_write_path_makes_the_process_unready(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.readiness_timeout_seconds = 1).await;
    let ready = s.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");

    // Another client takes the write path away.
    sqlx::any::install_default_drivers();
    let mut blocker = sqlx::AnyConnection::connect(&s.config.database_url())
        .await
        .unwrap();
    let statements: &[&str] = match backend {
        Backend::Sqlite => &["BEGIN IMMEDIATE"],
        Backend::Postgres { .. } => &["BEGIN", "LOCK TABLE write_probe IN ACCESS EXCLUSIVE MODE"],
    };
    for sql in statements {
        sqlx::raw_sql(sql).execute(&mut blocker).await.unwrap();
    }
    // The last answer counts for a second of the server's clock; move past it.
    s.clock.advance(chrono::Duration::seconds(2));

    let unready = s.get("/readyz", None).await;
    assert_eq!(unready.status, 503, "{}", unready.body);
    assert_eq!(unready.body["status"], "database unavailable");
    let reason = unready.body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not complete a write transaction within 1 s"),
        "the reason names the write path: {reason}"
    );
    // Liveness and reads are unaffected: the process is up, it just cannot sell.
    assert_eq!(s.get("/healthz", None).await.status, 200);
    assert_eq!(s.get("/api/v1/products", None).await.status, 200);
    let metrics = s.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.starts_with("storefront_store_failures_total{kind=\"write_timeout\"}")),
        "the failure is counted by kind"
    );

    // A later check (past the reuse window) waits on the same stuck write and says the same.
    s.clock.advance(chrono::Duration::seconds(2));
    let again = s.get("/readyz", None).await;
    assert_eq!(again.status, 503, "{}", again.body);

    // The lock goes; after the reuse window the process is ready again.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    s.clock.advance(chrono::Duration::seconds(2));
    let ready = s.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    // And it sells again.
    let (_, owner) = s.account(10_000).await;
    let quote = s
        .post(
            "/api/v1/quotes",
            Some(&owner),
            &serde_json::json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 90}}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
}
