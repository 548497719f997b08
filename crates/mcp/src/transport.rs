//! The two ways in: streamable HTTP (mounted at `/mcp` by the HTTP door) and stdio.

use crate::StorefrontTools;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use storefront_app::{App, Principal};

/// The `/mcp` endpoint as an axum router. `allowed_hosts` guards against DNS rebinding: requests
/// whose `Host` is not listed are refused (loopback names are always allowed).
pub fn router(app: App, allowed_hosts: &[String]) -> axum::Router {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    hosts.extend(allowed_hosts.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_json_response(true);
    let service = StreamableHttpService::new(
        move || Ok(StorefrontTools::new(app.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(session_end_status))
}

/// Ending a session (`DELETE /mcp`) answers `204 No Content`: rmcp says `202 Accepted`, which
/// clients such as the Python SDK report as a failed termination, though the session is gone.
async fn session_end_status(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ending = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if ending && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// Serves the tools on stdin/stdout for one principal until the client closes the stream.
pub async fn serve_stdio(app: App, principal: Principal) -> std::io::Result<()> {
    let service = StorefrontTools::for_principal(app, principal)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    service.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
