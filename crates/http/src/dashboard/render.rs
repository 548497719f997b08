//! What every page shares: the frame (navigation, sign-out form, notices), the static assets
//! (served by the binary itself, so the dashboard works offline), and display helpers.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use storefront_domain::DomainError;

/// A message at the top of a page: an error with its suggestion, or a confirmation.
#[derive(Debug, Clone)]
pub struct Notice {
    pub error: bool,
    pub text: String,
    pub suggestion: String,
    /// The form field the error is about, when there is one.
    pub field: String,
}

impl Notice {
    pub fn error(e: &DomainError) -> Self {
        Self {
            error: true,
            text: e.message.clone(),
            suggestion: e.suggestion.clone(),
            field: e.param.clone().unwrap_or_default(),
        }
    }

    pub fn done(text: impl Into<String>) -> Self {
        Self {
            error: false,
            text: text.into(),
            suggestion: String::new(),
            field: String::new(),
        }
    }
}

/// The frame around a signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    /// The navigation entry to highlight.
    pub active: &'static str,
    pub csrf: String,
    pub notice: Option<Notice>,
}

impl Chrome {
    pub fn new(title: impl Into<String>, active: &'static str, csrf: String) -> Self {
        Self {
            title: title.into(),
            active,
            csrf,
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<Notice>) -> Self {
        self.notice = notice;
        self
    }

    /// The navigation, with the current page marked.
    pub fn nav(&self) -> Vec<NavLink> {
        Self::NAV
            .iter()
            .map(|(key, label)| NavLink {
                href: Self::href(key),
                label,
                current: *key == self.active,
            })
            .collect()
    }

    pub const NAV: [(&'static str, &'static str); 12] = [
        ("overview", "Overview"),
        ("catalog", "Catalog"),
        ("orders", "Orders"),
        ("services", "Machines"),
        ("agents", "Agents"),
        ("approvals", "Approvals"),
        ("ledger", "Ledger"),
        ("top-up", "Top up"),
        ("events", "Events"),
        ("webhooks", "Webhooks"),
        ("keys", "API keys"),
        ("device", "Connect an agent"),
    ];

    pub fn href(key: &str) -> String {
        if key == "overview" {
            "/dashboard".into()
        } else {
            format!("/dashboard/{key}")
        }
    }
}

pub struct NavLink {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// Renders a template as an HTML response.
pub fn html<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be rendered.",
            )
                .into_response()
        }
    }
}

/// Renders a page with a status (an error re-rendered on the form that caused it).
pub fn html_with_status<T: Template>(status: StatusCode, template: &T) -> Response {
    let mut response = html(template);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
pub struct ErrorPage {
    pub title: String,
    pub notice: Notice,
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/dashboard/dashboard.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../templates/dashboard/dashboard.js"),
    )
        .into_response()
}

/// `1234` minor units of `usd` → `12.34 USD`, as everywhere else.
pub use storefront_domain::money::display_minor_in as money;

/// An RFC 3339 timestamp shortened for tables: `2026-11-22 18:30 UTC`.
pub fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_cents_and_sign() {
        assert_eq!(money(1234, "usd"), "12.34 USD");
        assert_eq!(money(-5, "usd"), "-0.05 USD");
        assert_eq!(money(0, "eur"), "0.00 EUR");
    }

    #[test]
    fn times_are_shortened_to_minutes() {
        assert_eq!(when("2026-11-22T18:30:42.123Z"), "2026-11-22 18:30 UTC");
        assert_eq!(when("garbage"), "garbage");
    }
}
