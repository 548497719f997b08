//! The HTTP server loop with graceful shutdown: on SIGTERM or SIGINT the listener stops
//! accepting, in-flight requests finish, then the process exits.

use std::future::Future;
use storefront_app::App;
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut hosts = app.settings().mcp_allowed_hosts.clone();
    // The public host always reaches its own MCP endpoint.
    if let Some(host) = app
        .settings()
        .base_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
    {
        hosts.push(host.to_owned());
        if let Some((name, _port)) = host.rsplit_once(':') {
            hosts.push(name.to_owned());
        }
    }
    let mcp = storefront_mcp::router(app.clone(), &hosts);
    let router = storefront_http::router(app, mcp);
    // The peer address keys the rate limit of calls without an API key.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
