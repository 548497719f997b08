//! The HTTP server loop with its limits and graceful shutdown.
//!
//! Limits (`AppSettings`): at most `max_connections` open connections (beyond that, new ones
//! wait in the kernel's backlog); a client that does not finish its request headers within
//! `header_read_timeout` is disconnected, so slow-header (slowloris) clients cannot hold the
//! server; request headers are capped at `MAX_HEADER_BYTES` (`431`). The per-request timeout and
//! the body limit are middleware (`storefront_http::router`).
//!
//! On SIGTERM or SIGINT the listener stops accepting, in-flight requests finish — also those
//! whose clients have gone, which run to completion on their own (`App::run_to_completion`) —
//! then the process exits.

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use storefront_app::App;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Request headers larger than this are refused (`431`).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

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
    let settings = app.settings().clone();
    let mcp = storefront_mcp::router(app.clone(), &hosts);
    let router = storefront_http::router(app.clone(), mcp);

    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    // Connections hold a receiver; closing the sender asks them to finish, and `closed()`
    // resolves once the last one has.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address keys the rate limit of calls without an API key.
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(axum::body::Body::new)
            },
        );
        let mut drain = drain_rx.clone();
        let header_read_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(MAX_HEADER_BYTES as u32);
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                _ = drain.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    // Event streams never end by themselves: end them, so that their connections can drain.
    app.begin_shutdown();
    drop(drain_rx);
    let _ = drain_tx.send(());
    drain_tx.closed().await;
    app.finish_in_flight(storefront_http::SHUTDOWN_GRACE).await;
    Ok(())
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
