//! Liveness and readiness (outside the envelope).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use storefront_app::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers reads and takes a write (`App::readiness`); otherwise `503`
/// with the reason. Also says which provisioners can deliver here and, for those that cannot,
/// why (they do not make the process unready: other products still sell).
async fn readyz(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    let provisioners: serde_json::Map<String, serde_json::Value> = app
        .provisioner_status()
        .into_iter()
        .map(|(name, reason, isolation)| {
            let isolation: serde_json::Map<String, serde_json::Value> = isolation
                .into_iter()
                .map(|i| {
                    let state = json!({ "enforced": i.enforced, "detail": i.detail });
                    (i.name.to_owned(), state)
                })
                .collect();
            (
                name,
                json!({ "available": reason.is_none(), "reason": reason, "isolation": isolation }),
            )
        })
        .collect();
    match app.readiness().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "provisioners": provisioners })),
        ),
        Err(not_ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "database unavailable",
                "reason": not_ready.reason,
                "provisioners": provisioners,
            })),
        ),
    }
}
