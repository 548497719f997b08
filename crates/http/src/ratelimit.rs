//! Rate limits (`API.md` §12): per API key, and per client address for calls without one, as
//! a GCRA token bucket (`governor`) whose burst equals the per-minute quota. Every limited
//! answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refused one
//! is `429 rate_limited` with `Retry-After`. Health and metrics are never limited.
//!
//! The buckets live in the process: behind a load balancer each replica enforces its share.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use storefront_domain::{DomainError, ErrorCode};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The buckets of one process.
#[derive(Clone)]
pub struct Limits {
    keys: Option<(Arc<Keyed>, u32)>,
    public: Option<(Arc<Keyed>, u32)>,
}

fn limiter(per_minute: u32) -> Option<(Arc<Keyed>, u32)> {
    NonZeroU32::new(per_minute).map(|n| {
        (
            Arc::new(
                RateLimiter::keyed(Quota::per_minute(n))
                    .with_middleware::<StateInformationMiddleware>(),
            ),
            per_minute,
        )
    })
}

impl Limits {
    pub fn new(per_key_per_minute: u32, public_per_minute: u32) -> Self {
        Self {
            keys: limiter(per_key_per_minute),
            public: limiter(public_per_minute),
        }
    }
}

fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The bucket a request draws from: a hash of its bearer credential (the secret itself is never
/// kept), else its peer address.
fn bucket(request: &Request) -> (bool, String) {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim());
    match bearer {
        Some(secret) => (
            true,
            format!(
                "key:{}",
                hex::encode(&Sha256::digest(secret.as_bytes())[..12])
            ),
        ),
        None => {
            let addr = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into());
            (false, format!("ip:{addr}"))
        }
    }
}

fn set(response: &mut Response, name: &'static str, value: u64) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from(value));
}

pub async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let (keyed, key) = bucket(&request);
    let Some((limiter, quota)) = (if keyed { &limits.keys } else { &limits.public }).clone() else {
        return next.run(request).await;
    };
    // Buckets of clients gone quiet are dropped, so random keys cannot grow memory unbounded.
    if limiter.len() > 100_000 {
        limiter.retain_recent();
    }
    match limiter.check_key(&key) {
        Ok(state) => {
            let mut response = next.run(request).await;
            set(&mut response, "ratelimit-limit", u64::from(quota));
            set(
                &mut response,
                "ratelimit-remaining",
                u64::from(state.remaining_burst_capacity()),
            );
            set(&mut response, "ratelimit-reset", 60);
            response
        }
        Err(not_until) => {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1);
            let mut response = ApiError(
                DomainError::new(
                    ErrorCode::RateLimited,
                    format!("More than {quota} requests a minute."),
                    "Wait Retry-After seconds, then retry; spread requests out.",
                )
                .with_retry_after(wait),
            )
            .into_response();
            set(&mut response, "ratelimit-limit", u64::from(quota));
            set(&mut response, "ratelimit-remaining", 0);
            set(&mut response, "ratelimit-reset", wait);
            response
        }
    }
}
