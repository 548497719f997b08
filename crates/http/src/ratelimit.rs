//! Rate limits (docs/api.md, "Error codes"): per API key, and per client address for calls without
//! one, as a GCRA token bucket (`governor`) whose burst equals the per-minute quota. Every limited
//! answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a refused one is
//! `429 rate_limited` with `Retry-After`. Health and metrics are never limited.
//!
//! Failed authentication is throttled per client address too: a caller that keeps presenting
//! unknown, revoked or malformed keys (guessing, or a misconfigured client) gets
//! `failed_auth_per_minute` failures, then `429` for every keyed request from that address until
//! the bucket refills — the next key is not even looked up. Each key's own bucket cannot do this:
//! every random key is a fresh bucket.
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
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storefront_domain::{DomainError, ErrorCode};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The buckets of one process.
#[derive(Clone)]
pub struct Limits {
    keys: Option<(Arc<Keyed>, u32)>,
    public: Option<(Arc<Keyed>, u32)>,
    failed_auth: Option<Arc<FailedAuth>>,
}

/// Failed authentications per client address, and the addresses refused for now.
struct FailedAuth {
    bucket: Arc<Keyed>,
    per_minute: u32,
    refused_until: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailedAuth {
    /// How long `address` is still refused, if it is.
    fn refused_for(&self, address: IpAddr) -> Option<Duration> {
        let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = *refused.get(&address)?;
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                refused.remove(&address);
                None
            }
        }
    }

    /// Counts a failure of `address`; the one that empties its bucket starts a refusal that
    /// lasts until the bucket has room again.
    fn record(&self, address: IpAddr) {
        let exhausted = match self.bucket.check_key(&address.to_string()) {
            Ok(state) => state.remaining_burst_capacity() == 0,
            Err(_) => true,
        };
        if !exhausted {
            return;
        }
        let refill = Duration::from_secs(60) / self.per_minute.max(1);
        let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() > 100_000 {
            let now = Instant::now();
            refused.retain(|_, until| *until > now);
            self.bucket.retain_recent();
        }
        refused.insert(address, Instant::now() + refill);
    }
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
    /// Requests a minute per key and per address without a key, and failed authentications a
    /// minute per address; `0` turns a limit off.
    pub fn new(
        per_key_per_minute: u32,
        public_per_minute: u32,
        failed_auth_per_minute: u32,
    ) -> Self {
        Self {
            keys: limiter(per_key_per_minute),
            public: limiter(public_per_minute),
            failed_auth: limiter(failed_auth_per_minute).map(|(bucket, per_minute)| {
                Arc::new(FailedAuth {
                    bucket,
                    per_minute,
                    refused_until: Mutex::new(HashMap::new()),
                })
            }),
        }
    }
}

fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

fn peer_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
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
            let addr = peer_address(request).map_or_else(|| "unknown".into(), |a| a.to_string());
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
    let failed_auth = limits
        .failed_auth
        .as_ref()
        .filter(|_| keyed)
        .zip(peer_address(&request));
    if let Some((failed, address)) = failed_auth {
        if let Some(left) = failed.refused_for(address) {
            return too_many_failed_authentications(failed.per_minute, left);
        }
    }
    let response = draw(&limits, keyed, &key, request, next).await;
    if let Some((failed, address)) = failed_auth {
        if response.status() == axum::http::StatusCode::UNAUTHORIZED {
            failed.record(address);
        }
    }
    response
}

/// `429` for an address that failed authentication too often.
fn too_many_failed_authentications(per_minute: u32, left: Duration) -> Response {
    refused(
        per_minute,
        left.as_secs().max(1),
        format!(
            "More than {per_minute} requests a minute from this address with unknown, revoked or malformed API keys."
        ),
        "Check the key you send (it is shown once, when it is created); wait Retry-After seconds before trying again.",
    )
}

/// `429 rate_limited` with `Retry-After` and the `RateLimit-*` headers of an empty bucket.
fn refused(quota: u32, wait: u64, message: String, suggestion: &str) -> Response {
    let mut response = ApiError(
        DomainError::new(ErrorCode::RateLimited, message, suggestion).with_retry_after(wait),
    )
    .into_response();
    set(&mut response, "ratelimit-limit", u64::from(quota));
    set(&mut response, "ratelimit-remaining", 0);
    set(&mut response, "ratelimit-reset", wait);
    response
}

/// Draws from the request's own bucket (its key's, or its address's without a key) and runs it,
/// or refuses it.
async fn draw(limits: &Limits, keyed: bool, key: &str, request: Request, next: Next) -> Response {
    let Some((limiter, quota)) = (if keyed { &limits.keys } else { &limits.public }).clone() else {
        return next.run(request).await;
    };
    // Buckets of clients gone quiet are dropped, so random keys cannot grow memory unbounded.
    if limiter.len() > 100_000 {
        limiter.retain_recent();
    }
    match limiter.check_key(&key.to_owned()) {
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
            refused(
                quota,
                wait,
                format!("More than {quota} requests a minute."),
                "Wait Retry-After seconds, then retry; spread requests out.",
            )
        }
    }
}
