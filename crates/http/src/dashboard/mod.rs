//! The owner dashboard: server-rendered HTML (askama) at `/dashboard`, for the humans who own
//! the money. Every action calls the same `App` use-case as the REST API with the session's
//! owner principal; this module only parses forms, renders pages and keeps the session.
//!
//! Sessions: a sign-in (owner key or one-time login code) sets an HttpOnly, SameSite=Strict
//! cookie (Secure when the public URL is HTTPS) holding a session secret the server keeps only as
//! a hash. Every form carries the session's CSRF token; [`Form`] refuses a POST without it, so a
//! form cannot be forgotten. Pages are `no-store` and framed by nobody.

mod account;
mod agents;
mod commerce;
mod notifications;
mod render;

use crate::error::status_of;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use render::{ErrorPage, Notice};
use serde::de::DeserializeOwned;
use storefront_app::dashboard::SessionCaller;
use storefront_app::{App, Principal};
use storefront_domain::{DomainError, ErrorCode};

pub const SESSION_COOKIE: &str = "sf_session";

/// The dashboard's routes (state: the `App`).
pub fn routes() -> Router<App> {
    Router::new()
        .route("/dashboard", get(account::overview))
        .route("/dashboard/", get(|| async { Redirect::to("/dashboard") }))
        .route(
            "/dashboard/login",
            get(account::login_page).post(account::login),
        )
        .route("/dashboard/logout", post(account::logout))
        .route("/dashboard/static/dashboard.css", get(render::stylesheet))
        .route("/dashboard/static/dashboard.js", get(render::script))
        .route("/dashboard/agents", get(agents::list).post(agents::create))
        .route("/dashboard/agents/{id}", get(agents::show))
        .route("/dashboard/agents/{id}/edit", post(agents::edit))
        .route("/dashboard/agents/{id}/delete", post(agents::delete))
        .route("/dashboard/agents/{id}/keys", post(agents::create_key))
        .route("/dashboard/agents/{id}/rules", post(agents::create_rule))
        .route(
            "/dashboard/agents/{id}/rules/{rule_id}/toggle",
            post(agents::toggle_rule),
        )
        .route(
            "/dashboard/agents/{id}/rules/{rule_id}/delete",
            post(agents::delete_rule),
        )
        .route("/dashboard/agents/{id}/soul", post(agents::soul))
        .route("/dashboard/agents/{id}/stores", post(agents::stores))
        .route("/dashboard/agents/{id}/kill-switch", post(agents::kill))
        .route(
            "/dashboard/agents/{id}/reactivate",
            post(agents::reactivate),
        )
        .route("/dashboard/approvals", get(agents::approvals))
        .route("/dashboard/approvals/{id}/approve", post(agents::approve))
        .route("/dashboard/approvals/{id}/deny", post(agents::deny))
        .route(
            "/dashboard/device",
            get(account::device_page).post(account::device_decide),
        )
        .route("/dashboard/ledger", get(account::ledger))
        .route(
            "/dashboard/keys",
            get(account::keys).post(account::create_key),
        )
        .route("/dashboard/keys/{id}/revoke", post(account::revoke_key))
        .route(
            "/dashboard/top-up",
            get(account::top_up_page).post(account::top_up),
        )
        .route("/dashboard/catalog", get(commerce::catalog))
        .route("/dashboard/catalog/{product_id}", get(commerce::product))
        .route(
            "/dashboard/catalog/{product_id}/quote",
            post(commerce::quote),
        )
        .route("/dashboard/buy", post(commerce::buy))
        .route("/dashboard/orders", get(commerce::orders))
        .route("/dashboard/orders/{id}", get(commerce::order))
        .route(
            "/dashboard/orders/{id}/cancel",
            post(commerce::cancel_order),
        )
        .route(
            "/dashboard/orders/{id}/credentials",
            post(commerce::order_credentials),
        )
        .route("/dashboard/services", get(commerce::services))
        .route("/dashboard/services/{id}", get(commerce::service))
        .route("/dashboard/services/{id}/extend", post(commerce::extend))
        .route(
            "/dashboard/services/{id}/terminate",
            post(commerce::terminate),
        )
        .route("/dashboard/events", get(notifications::events))
        .route(
            "/dashboard/webhooks",
            get(notifications::webhooks).post(notifications::create_webhook),
        )
        .route("/dashboard/webhooks/{id}", get(notifications::webhook))
        .route(
            "/dashboard/webhooks/{id}/test",
            post(notifications::test_webhook),
        )
        .route(
            "/dashboard/webhooks/{id}/toggle",
            post(notifications::toggle_webhook),
        )
        .route(
            "/dashboard/webhooks/{id}/rotate",
            post(notifications::rotate_webhook),
        )
        .route(
            "/dashboard/webhooks/{id}/delete",
            post(notifications::delete_webhook),
        )
        .route(
            "/dashboard/webhooks/deliveries/{id}/retry",
            post(notifications::retry_delivery),
        )
        .layer(axum::middleware::map_response(harden))
}

/// Headers every dashboard answer carries: nothing cached (pages show balances and one-time
/// secrets), nothing framed, nothing loaded from elsewhere.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A signed-in owner, from the session cookie. Without a valid session the browser is sent to
/// the sign-in page (and back here afterwards).
pub struct Session {
    pub caller: SessionCaller,
    pub secret: String,
}

impl Session {
    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }

    pub fn csrf(&self) -> String {
        self.caller.csrf_token.clone()
    }
}

impl FromRequestParts<App> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let secret = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
        let session = match secret {
            Some(secret) => app
                .dashboard_session(&secret)
                .await
                .map(|caller| Self { caller, secret }),
            None => Err(DomainError::unauthorized()),
        };
        session.map_err(|e| match e.code {
            ErrorCode::Unauthorized => to_login(parts),
            _ => PageError(e).into_response(),
        })
    }
}

/// Where a browser without a session goes: the sign-in page, remembering a page to come back to
/// (only a dashboard path, so the parameter cannot send anyone elsewhere).
fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path();
    let back = match (
        parts.method == axum::http::Method::GET,
        parts.uri.path_and_query(),
    ) {
        (true, Some(pq)) if path.starts_with("/dashboard") => pq.as_str().to_owned(),
        _ => "/dashboard".to_owned(),
    };
    let next: String = url_encode(&back);
    Redirect::to(&format!("/dashboard/login?next={next}")).into_response()
}

fn url_encode(raw: &str) -> String {
    serde_urlencoded::to_string([("", raw)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A form posted by a signed-in owner, with its CSRF token checked before anything runs.
pub struct Form<T> {
    pub session: Session,
    pub data: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<App> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, app).await?;
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, app).await.map_err(|_| {
            PageError(DomainError::new(
                ErrorCode::PayloadTooLarge,
                "The form is too large.",
                "Send less text.",
            ))
            .into_response()
        })?;
        let token = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .map(|f| f.csrf)
            .unwrap_or_default();
        if !session.caller.csrf_matches(&token) {
            return Err(PageError(DomainError::new(
                ErrorCode::Forbidden,
                "This form is not from a page of this session (missing or wrong CSRF token).",
                "Reload the page and submit the form again.",
            ))
            .into_response());
        }
        let data = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            PageError(DomainError::validation(
                "form",
                format!("The form could not be read: {e}."),
                "Reload the page and fill in the form again.",
            ))
            .into_response()
        })?;
        Ok(Self { session, data })
    }
}

/// A failure on its way out as an HTML page (the dashboard's one translation of `DomainError`).
pub struct PageError(pub DomainError);

impl From<DomainError> for PageError {
    fn from(e: DomainError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let page = ErrorPage {
            title: match status {
                StatusCode::NOT_FOUND => "Not found".to_owned(),
                StatusCode::FORBIDDEN => "Not allowed".to_owned(),
                s if s.is_server_error() => "Something went wrong".to_owned(),
                _ => "That did not work".to_owned(),
            },
            notice: Notice::error(&self.0),
        };
        (status, render::html(&page)).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// `303 See Other` to a dashboard page after a form (so reloading does not post again).
pub fn see_other(path: &str) -> PageResult {
    Ok(Redirect::to(path).into_response())
}

/// Whether an error is the user's to fix on the same page (re-render it with the message) rather
/// than a page of its own.
pub fn fixable(e: &DomainError) -> bool {
    matches!(
        status_of(e.code),
        StatusCode::BAD_REQUEST
            | StatusCode::CONFLICT
            | StatusCode::PAYMENT_REQUIRED
            | StatusCode::FORBIDDEN
            | StatusCode::GONE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::BAD_GATEWAY
    ) && e.code != ErrorCode::KillSwitchActive
}

/// The session cookie for a new session (Secure when the public URL is HTTPS).
pub fn session_cookie(app: &App, secret: String, max_age_seconds: i64) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, secret))
        .path("/dashboard")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.settings().base_url.starts_with("https://"))
        .max_age(time_seconds(max_age_seconds))
        .build()
}

fn time_seconds(seconds: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(seconds)
}
