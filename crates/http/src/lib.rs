//! The REST door. Handlers are thin: extract and validate the wire input, call one `App`
//! use-case, wrap the result in the envelope. `DomainError` becomes an HTTP response in exactly
//! one place ([`error`]).

mod dashboard;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
mod rest;

pub use rest::api;

use axum::http::{HeaderName, Request};
use axum::Router;
use std::time::Duration;
use storefront_app::App;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Request bodies above this size get `413 payload_too_large` (docs/api.md, "Conventions").
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application: routes, fallbacks and middleware. `doors` are further endpoints
/// (the MCP server) served behind the same middleware.
pub fn router(app: App, doors: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        // Only the path is logged: query strings can hold signed-URL signatures, which are
        // bearer secrets.
        .make_span_with(|req: &Request<_>| {
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Millis));
    metrics::handle();
    let app_request_timeout = app.settings().request_timeout;
    let limits = ratelimit::Limits::new(
        app.settings().rate_limit_per_minute,
        app.settings().public_rate_limit_per_minute,
        app.settings().failed_auth_per_minute,
    );
    let routes = rest::routes()
        .merge(dashboard::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .route_layer(metrics::TrackLayer)
        .with_state(app.clone())
        .merge(doors);
    // The middleware wraps the whole router once. `Router::layer` would instead wrap every route
    // in each layer, boxing it again each time, and axum clones a route's boxed service — the
    // whole nest of boxes — for each request it serves: the profile of a product read showed
    // those clones and drops at about a tenth of the server's time.
    let middleware = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            (app, app_request_timeout, limits),
            every_request,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(rest::shared_extensions())
        .service(routes);
    Router::new().fallback_service(middleware)
}

/// What every request passes, in one middleware (each `from_fn` layer clones the service inside
/// it for every request): the Host check, then the time limit, inside it — so that giving up on
/// an answer does not stop the work — a write run to completion, and inside that the rate limits.
async fn every_request(
    axum::extract::State((app, limit, limits)): axum::extract::State<(
        App,
        Duration,
        ratelimit::Limits,
    )>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(refusal) = host_refusal(&request) {
        return refusal;
    }
    let writes = !request.method().is_safe();
    let answer = ratelimit::limit(axum::extract::State(limits), request, next);
    time_limit(limit, run_to_completion(&app, writes, answer)).await
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` header, and no request carries
/// two — which one would count? (The answer matters: `/mcp` allows only listed hosts.) HTTP/2
/// names its authority in the request line; HTTP/1.0 may omit `Host`.
fn host_refusal(request: &axum::extract::Request) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let hosts = request
        .headers()
        .get_all(axum::http::header::HOST)
        .iter()
        .count();
    let missing = hosts == 0 && request.version() == axum::http::Version::HTTP_11;
    if hosts > 1 || missing {
        let message = if missing {
            "An HTTP/1.1 request needs a Host header."
        } else {
            "The request has more than one Host header."
        };
        return Some(
            error::ApiError(storefront_domain::DomainError::validation(
                "Host",
                message,
                "Send exactly one Host header naming this server.",
            ))
            .into_response(),
        );
    }
    None
}

/// Requests that may write (every method but GET, HEAD, OPTIONS and TRACE) run to completion in
/// a task of their own. When a client disconnects, hyper drops the request's future; without
/// this, a use-case would stop at whatever `.await` it had reached — between the charge and the
/// delivery, or between claiming an idempotency key and recording its outcome. Now a vanished
/// client only means that nobody reads the answer; the idempotency record keeps it for the
/// retry. Reads write nothing and stay cancellable.
async fn run_to_completion(
    app: &App,
    writes: bool,
    answer: impl std::future::Future<Output = axum::response::Response> + Send + 'static,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !writes {
        return answer.await;
    }
    match app.run_to_completion(answer).await {
        Ok(response) => response,
        // The panic goes on to `CatchPanicLayer`, which answers it like any other.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => error::ApiError(
            storefront_domain::DomainError::service_unavailable(
                "The server is shutting down.",
                "Retry the identical request; with an Idempotency-Key a retry never acts twice.",
            )
            .with_retry_after(5),
        )
        .into_response(),
    }
}

/// Answers a request that takes longer than the configured limit (body upload included) with
/// `503 service_unavailable`, so a stuck dependency or a trickling client cannot hold a
/// connection and its resources indefinitely.
async fn time_limit(
    limit: Duration,
    answer: impl std::future::Future<Output = axum::response::Response>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => error::ApiError(
            storefront_domain::DomainError::service_unavailable(
                format!("The request took longer than {} seconds.", limit.as_secs()),
                "Retry the identical request; with an Idempotency-Key a retry never acts twice.",
            )
            .with_retry_after(5),
        )
        .into_response(),
    }
}

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
