//! Discovery documents (docs/api.md, "Discovery"), outside the envelope: generated from the live
//! catalog.

use axum::extract::State;
use axum::http::{header, HeaderMap};
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

/// The base URL the documents name: configured, or taken from this request.
fn base(app: &App, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    app.public_base(host, https)
}

async fn manifest(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    Json(app.manifest(&base(&app, &headers)))
}

async fn llms_txt(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        app.llms_txt(&base(&app, &headers)),
    )
}

async fn agent_policy(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    Json(app.agent_policy(&base(&app, &headers)))
}

async fn acceptable_use(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        app.acceptable_use(),
    )
}
