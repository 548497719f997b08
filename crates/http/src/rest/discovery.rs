//! Discovery documents (`API.md` §2), outside the envelope: generated from the live catalog.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use storefront_app::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/.well-known/agent-storefront.json", get(manifest))
        .route("/llms.txt", get(llms_txt))
        .route("/agent-policy.json", get(agent_policy))
        .route("/acceptable-use", get(acceptable_use))
}

async fn manifest(State(app): State<App>) -> impl IntoResponse {
    Json(app.manifest())
}

async fn llms_txt(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        app.llms_txt(),
    )
}

async fn agent_policy(State(app): State<App>) -> impl IntoResponse {
    Json(app.agent_policy())
}

async fn acceptable_use(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        app.acceptable_use(),
    )
}
