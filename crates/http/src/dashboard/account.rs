//! Signing in and out, the overview, the ledger, API keys, top-ups and the device-flow page.

use super::render::{html, html_with_status, money, when, Chrome, Notice};
use super::{fixable, see_other, session_cookie, Form, PageError, PageResult, Session};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;
use storefront_app::dashboard::SESSION_TTL_SECONDS;
use storefront_app::page::PageRequest;
use storefront_app::ports::OrderFilter;
use storefront_app::App;
use storefront_domain::account::KeyRole;
use storefront_domain::agent::ApprovalStatus;

// ----- sign-in -----

#[derive(Template)]
#[template(path = "dashboard/login.html")]
pub struct LoginPage {
    pub next: String,
    pub notice: Option<Notice>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only a dashboard path may follow a sign-in, so the parameter cannot send anyone elsewhere.
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/dashboard") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/dashboard".into())
}

pub async fn login_page(Query(q): Query<NextQuery>) -> axum::response::Response {
    html(&LoginPage {
        next: safe_next(q.next),
        notice: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    credential: String,
    #[serde(default)]
    next: Option<String>,
}

/// Whether a browser's `Origin` (when it sends one) is this server: a page elsewhere must not
/// sign a visitor in to an account of its choosing (login CSRF).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| !host.is_empty() && authority == host)
}

/// The sign-in form has no session yet, so no CSRF token; it only ever creates a session for
/// whoever knows the secret, and only from a page of this server (`Origin`).
pub async fn login(
    State(app): State<App>,
    jar: CookieJar,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> axum::response::Response {
    let next = safe_next(form.next);
    if !same_origin(&headers) {
        let e = storefront_domain::DomainError::forbidden(
            "This sign-in form was sent from another site.",
        );
        return html_with_status(
            StatusCode::FORBIDDEN,
            &LoginPage {
                next,
                notice: Some(Notice::error(&e)),
            },
        );
    }
    match app.dashboard_sign_in(&form.credential).await {
        Ok(session) => {
            let jar = jar.add(session_cookie(&app, session.secret, SESSION_TTL_SECONDS));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(e) => html_with_status(
            super::super::error::status_of(e.code),
            &LoginPage {
                next,
                notice: Some(Notice::error(&e)),
            },
        ),
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(app): State<App>,
    jar: CookieJar,
    form: Form<Empty>,
) -> Result<impl IntoResponse, PageError> {
    app.dashboard_sign_out(&form.session.secret).await?;
    let jar = jar.remove(Cookie::build(super::SESSION_COOKIE).path("/dashboard"));
    Ok((jar, Redirect::to("/dashboard/login")))
}

// ----- overview -----

pub struct SpendRow {
    pub agent_id: String,
    pub name: String,
    pub status: String,
    pub today: String,
    pub month: String,
}

pub struct OrderRow {
    pub id: String,
    pub product_id: String,
    pub status: String,
    pub total: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub account_name: String,
    pub balance: String,
    pub spend_today: String,
    pub spend_month: String,
    pub agents: Vec<SpendRow>,
    pub orders: Vec<OrderRow>,
    pub pending_approvals: usize,
}

pub(super) fn order_rows(orders: &[storefront_app::views::OrderView]) -> Vec<OrderRow> {
    orders
        .iter()
        .map(|o| OrderRow {
            id: o.id.clone(),
            product_id: o.product_id.clone(),
            status: o.status.as_str().to_owned(),
            total: money(o.total_minor, &o.currency),
            created: when(&o.created_at),
        })
        .collect()
}

pub async fn overview(State(app): State<App>, session: Session) -> PageResult {
    let principal = session.principal();
    let account = app.account(principal).await?;
    let currency = account.currency.to_string();
    let spending = app.spending_by_agent(principal).await?;
    let orders = app
        .list_orders(
            principal,
            &OrderFilter {
                page: PageRequest {
                    limit: 10,
                    cursor: None,
                },
                ..OrderFilter::default()
            },
        )
        .await?;
    let pending = app
        .list_approvals(principal, Some(ApprovalStatus::Pending.as_str()))
        .await?;
    let page = OverviewPage {
        chrome: Chrome::new("Overview", "overview", session.csrf()),
        account_name: account.name.clone(),
        balance: money(account.balance_minor, &currency),
        spend_today: money(spending.iter().map(|s| s.today_minor).sum(), &currency),
        spend_month: money(spending.iter().map(|s| s.month_minor).sum(), &currency),
        agents: spending
            .iter()
            .map(|s| SpendRow {
                agent_id: s.agent_id.clone(),
                name: s.name.clone(),
                status: s.status.as_str().to_owned(),
                today: money(s.today_minor, &currency),
                month: money(s.month_minor, &currency),
            })
            .collect(),
        orders: order_rows(&orders.items),
        pending_approvals: pending.len(),
    };
    Ok(html(&page))
}

// ----- ledger -----

pub struct LedgerRow {
    pub when: String,
    pub kind: String,
    pub description: String,
    pub order_id: String,
    pub amount: String,
    pub credit: bool,
    pub balance: String,
}

#[derive(Template)]
#[template(path = "dashboard/ledger.html")]
pub struct LedgerPage {
    pub chrome: Chrome,
    pub rows: Vec<LedgerRow>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct CursorQuery {
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn ledger(
    State(app): State<App>,
    session: Session,
    Query(q): Query<CursorQuery>,
) -> PageResult {
    let principal = session.principal();
    let currency = app.account(principal).await?.currency.to_string();
    let page = app
        .ledger(principal, &PageRequest::parse(Some(50), q.cursor)?)
        .await?;
    let rows = page
        .items
        .iter()
        .map(|e| LedgerRow {
            when: when(&storefront_domain::timestamp::format(&e.created_at)),
            kind: e.kind.as_str().to_owned(),
            description: e.description.clone(),
            order_id: e
                .order_id
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default(),
            amount: money(e.amount_minor, &currency),
            credit: e.amount_minor >= 0,
            balance: money(e.balance_after_minor, &currency),
        })
        .collect();
    Ok(html(&LedgerPage {
        chrome: Chrome::new("Ledger", "ledger", session.csrf()),
        rows,
        next_cursor: page.next_cursor,
    }))
}

// ----- API keys -----

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub agent_id: String,
    pub prefix: String,
    pub created: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "dashboard/keys.html")]
pub struct KeysPage {
    pub chrome: Chrome,
    pub keys: Vec<KeyRow>,
    /// A key just created: its secret, shown this once.
    pub new_secret: Option<String>,
}

async fn keys_page(
    app: &App,
    session: &Session,
    notice: Option<Notice>,
    new_secret: Option<String>,
) -> Result<KeysPage, PageError> {
    let keys = app
        .list_api_keys(session.principal())
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id.to_string(),
            name: k.name.clone(),
            role: k.role.as_str().to_owned(),
            agent_id: k.agent_id.map(|a| a.to_string()).unwrap_or_default(),
            prefix: k.prefix.clone(),
            created: when(&storefront_domain::timestamp::format(&k.created_at)),
            revoked: k.revoked_at.is_some(),
        })
        .collect();
    Ok(KeysPage {
        chrome: Chrome::new("API keys", "keys", session.csrf()).with_notice(notice),
        keys,
        new_secret,
    })
}

pub async fn keys(State(app): State<App>, session: Session) -> PageResult {
    Ok(html(&keys_page(&app, &session, None, None).await?))
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
}

pub async fn create_key(State(app): State<App>, form: Form<NewKeyForm>) -> PageResult {
    let session = form.session;
    let name = Some(form.data.name).filter(|n| !n.trim().is_empty());
    match app
        .create_api_key(session.principal(), KeyRole::Owner, name)
        .await
    {
        Ok(key) => {
            let notice = Notice::done(format!(
                "Owner key {} created. Copy the secret now: it is not shown again.",
                key.key_id
            ));
            let page = keys_page(&app, &session, Some(notice), Some(key.api_key)).await?;
            Ok(html(&page))
        }
        Err(e) if fixable(&e) => {
            let page = keys_page(&app, &session, Some(Notice::error(&e)), None).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_key(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    app.revoke_api_key(form.session.principal(), &id).await?;
    see_other("/dashboard/keys")
}

// ----- top-up -----

#[derive(Template)]
#[template(path = "dashboard/top_up.html")]
pub struct TopUpPage {
    pub chrome: Chrome,
    pub card_enabled: bool,
    pub balance: String,
}

async fn top_up_view(
    app: &App,
    session: &Session,
    notice: Option<Notice>,
) -> Result<TopUpPage, PageError> {
    let balance = app.balance(session.principal()).await?;
    Ok(TopUpPage {
        chrome: Chrome::new("Top up", "top-up", session.csrf()).with_notice(notice),
        card_enabled: app.card_enabled(),
        balance: money(balance.balance_minor, &balance.currency),
    })
}

pub async fn top_up_page(State(app): State<App>, session: Session) -> PageResult {
    Ok(html(&top_up_view(&app, &session, None).await?))
}

#[derive(Deserialize)]
pub struct TopUpForm {
    #[serde(default)]
    amount: String,
}

/// Major units as typed (`25` or `25.50`) → minor units, naming the field when it is not money.
fn parse_amount(raw: &str) -> Result<i64, storefront_domain::DomainError> {
    let invalid = || {
        storefront_domain::DomainError::validation(
            "amount",
            format!("'{raw}' is not an amount."),
            "Enter an amount like 25 or 25.50.",
        )
    };
    let raw = raw.trim();
    let (whole, cents) = raw.split_once('.').unwrap_or((raw, ""));
    if whole.is_empty() || cents.len() > 2 || !cents.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let cents: i64 = format!("{cents:0<2}").parse().map_err(|_| invalid())?;
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents))
        .filter(|v| *v >= 0)
        .ok_or_else(invalid)
}

pub async fn top_up(State(app): State<App>, form: Form<TopUpForm>) -> PageResult {
    let session = form.session;
    let result = match parse_amount(&form.data.amount) {
        Ok(amount) => app.create_top_up(session.principal(), amount).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(top_up) => {
            let url = top_up
                .payment_action
                .as_ref()
                .and_then(|a| a.get("url"))
                .and_then(|u| u.as_str())
                .map(str::to_owned);
            match url {
                // The card form is Stripe's hosted page.
                Some(url) => Ok(Redirect::to(&url).into_response()),
                None => see_other("/dashboard/ledger"),
            }
        }
        Err(e) if fixable(&e) => {
            let page = top_up_view(&app, &session, Some(Notice::error(&e))).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

// ----- device flow (RFC 8628 verification page) -----

#[derive(Template)]
#[template(path = "dashboard/device.html")]
pub struct DevicePage {
    pub chrome: Chrome,
    pub user_code: String,
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    user_code: String,
}

pub async fn device_page(
    session: Session,
    Query(q): Query<DeviceQuery>,
) -> axum::response::Response {
    html(&DevicePage {
        chrome: Chrome::new("Connect an agent", "device", session.csrf()),
        user_code: q.user_code,
    })
}

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    decision: String,
}

pub async fn device_decide(State(app): State<App>, form: Form<DeviceForm>) -> PageResult {
    let session = form.session;
    let approve = form.data.decision == "approve";
    let result = app
        .device_decide(session.principal(), &form.data.user_code, approve)
        .await;
    let (notice, status) = match result {
        Ok(()) if approve => (
            Notice::done(format!(
                "Code {} approved: the agent receives its key on its next poll. Set its rules on the Agents page.",
                form.data.user_code.trim().to_ascii_uppercase()
            )),
            StatusCode::OK,
        ),
        Ok(()) => (
            Notice::done("Denied: the agent gets no access."),
            StatusCode::OK,
        ),
        Err(e) if fixable(&e) || e.code == storefront_domain::ErrorCode::NotFound => {
            (Notice::error(&e), super::super::error::status_of(e.code))
        }
        Err(e) => return Err(e.into()),
    };
    let page = DevicePage {
        chrome: Chrome::new("Connect an agent", "device", session.csrf()).with_notice(Some(notice)),
        user_code: String::new(),
    };
    Ok(html_with_status(status, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_in_major_units() {
        assert_eq!(parse_amount("25").unwrap(), 2500);
        assert_eq!(parse_amount("25.5").unwrap(), 2550);
        assert_eq!(parse_amount(" 0.05 ").unwrap(), 5);
        for bad in ["", "-1", "1.234", "abc", "1.x", ".5"] {
            assert_eq!(
                parse_amount(bad).unwrap_err().param.as_deref(),
                Some("amount"),
                "{bad}"
            );
        }
    }

    #[test]
    fn sign_ins_come_from_this_server_only() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "shop.example:8080".parse().unwrap());
        assert!(same_origin(&headers), "no Origin: not a cross-site form");
        headers.insert(header::ORIGIN, "https://shop.example:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
    }

    #[test]
    fn only_dashboard_paths_follow_a_sign_in() {
        assert_eq!(
            safe_next(Some("/dashboard/agents".into())),
            "/dashboard/agents"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/api/v1/account",
            "/dashboard\\@x",
        ] {
            assert_eq!(safe_next(Some(bad.into())), "/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }
}
