//! The Events and Webhooks pages: what happened in the account, and the endpoints that are told
//! (create with the secret shown once, test, rotate, pause, delete, deliveries and retries).

use super::account::Empty;
use super::render::{html, html_with_status, when, Chrome, Notice};
use super::{fixable, see_other, Form, PageError, PageResult, Session};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use storefront_app::events::EventView;
use storefront_app::page::PageRequest;
use storefront_app::webhooks::{DeliveryView, EndpointChanges, NewEndpoint, WebhookEndpointView};
use storefront_app::App;

// ----- events -----

pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub at: String,
    /// The object the event is about (`ord_...`, `svc_...`), and where the dashboard shows it.
    pub subject: String,
    pub link: Option<String>,
    pub state: String,
}

impl From<&EventView> for EventRow {
    fn from(e: &EventView) -> Self {
        let subject = e.data["id"].as_str().unwrap_or("-").to_owned();
        let link = match subject.split('_').next() {
            Some("ord") => Some(format!("/dashboard/orders/{subject}")),
            Some("svc") => Some(format!("/dashboard/services/{subject}")),
            Some("agt") => Some(format!("/dashboard/agents/{subject}")),
            Some("apr") => Some(format!("/dashboard/approvals#approval-{subject}")),
            Some("we") => Some(format!("/dashboard/webhooks/{subject}")),
            _ => None,
        };
        Self {
            id: e.id.clone(),
            kind: e.kind.as_str().to_owned(),
            at: when(&e.created_at),
            subject,
            link,
            state: e.data["status"].as_str().unwrap_or("").to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/events.html")]
pub struct EventsPage {
    pub chrome: Chrome,
    pub events: Vec<EventRow>,
    pub kind: String,
    pub next: Option<String>,
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

pub async fn events(
    State(app): State<App>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    let kind = q.kind.unwrap_or_default();
    let kinds: Vec<String> = kind
        .split(',')
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    let page = PageRequest {
        limit: 100,
        cursor: None,
    };
    let found = app
        .list_events(session.principal(), q.after, &kinds, &page)
        .await?;
    Ok(html(&EventsPage {
        chrome: Chrome::new("Events", "events", session.csrf()),
        events: found.items.iter().map(EventRow::from).collect(),
        next: found.next_cursor,
        kind,
    }))
}

// ----- webhooks -----

#[derive(Template)]
#[template(path = "dashboard/webhooks.html")]
pub struct WebhooksPage {
    pub chrome: Chrome,
    pub endpoints: Vec<WebhookEndpointView>,
    /// An endpoint just created or rotated: its secret, shown this once.
    pub new_secret: Option<String>,
    pub event_types: String,
}

async fn webhooks_page(
    app: &App,
    session: &Session,
    notice: Option<Notice>,
    new_secret: Option<String>,
) -> Result<WebhooksPage, PageError> {
    let page = PageRequest {
        limit: 100,
        cursor: None,
    };
    let endpoints = app
        .list_webhook_endpoints(session.principal(), &page)
        .await?
        .items;
    Ok(WebhooksPage {
        chrome: Chrome::new("Webhooks", "webhooks", session.csrf()).with_notice(notice),
        endpoints,
        new_secret,
        event_types: storefront_domain::event::EventType::ALL
            .map(|t| t.as_str())
            .join(", "),
    })
}

pub async fn webhooks(State(app): State<App>, session: Session) -> PageResult {
    Ok(html(&webhooks_page(&app, &session, None, None).await?))
}

#[derive(Deserialize)]
pub struct EndpointForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    events: String,
    #[serde(default)]
    description: String,
}

fn event_list(raw: &str) -> Vec<String> {
    let list: Vec<String> = raw
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        vec!["*".to_owned()]
    } else {
        list
    }
}

pub async fn create_webhook(State(app): State<App>, form: Form<EndpointForm>) -> PageResult {
    let session = form.session;
    let new = NewEndpoint {
        url: form.data.url,
        events: event_list(&form.data.events),
        description: Some(form.data.description),
    };
    match app.create_webhook_endpoint(session.principal(), new).await {
        Ok(created) => {
            let notice = Notice::done(format!(
                "Endpoint {} created. Copy its signing secret now: it is not shown again.",
                created.webhook_endpoint.id
            ));
            let page = webhooks_page(&app, &session, Some(notice), Some(created.secret)).await?;
            Ok(html(&page))
        }
        Err(e) if fixable(&e) => {
            let page = webhooks_page(&app, &session, Some(Notice::error(&e)), None).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn rotate_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let session = form.session;
    let rotated = app.rotate_webhook_secret(session.principal(), &id).await?;
    let notice = Notice::done(format!(
        "New signing secret for {}. The old one keeps signing for 24 hours; copy this one now.",
        rotated.webhook_endpoint.id
    ));
    let page = webhooks_page(&app, &session, Some(notice), Some(rotated.secret)).await?;
    Ok(html(&page))
}

pub async fn test_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    app.ping_webhook_endpoint(form.session.principal(), &id)
        .await?;
    see_other(&format!("/dashboard/webhooks/{id}"))
}

pub async fn toggle_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let principal = form.session.principal();
    let endpoint = app.webhook_endpoint(principal, &id).await?;
    let changes = EndpointChanges {
        enabled: Some(!endpoint.enabled),
        ..EndpointChanges::default()
    };
    app.update_webhook_endpoint(principal, &id, changes).await?;
    see_other(&format!("/dashboard/webhooks/{id}"))
}

pub async fn delete_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    app.delete_webhook_endpoint(form.session.principal(), &id)
        .await?;
    see_other("/dashboard/webhooks")
}

#[derive(Template)]
#[template(path = "dashboard/webhook.html")]
pub struct WebhookPage {
    pub chrome: Chrome,
    pub endpoint: WebhookEndpointView,
    pub deliveries: Vec<DeliveryView>,
}

pub async fn webhook(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let principal = session.principal();
    let endpoint = app.webhook_endpoint(principal, &id).await?;
    let page = PageRequest {
        limit: 100,
        cursor: None,
    };
    let deliveries = app
        .list_webhook_deliveries(principal, &id, &page)
        .await?
        .items
        .into_iter()
        .map(|mut d| {
            d.created_at = when(&d.created_at);
            d.next_attempt_at = d.next_attempt_at.as_deref().map(when);
            d
        })
        .collect();
    Ok(html(&WebhookPage {
        chrome: Chrome::new("Webhook endpoint", "webhooks", session.csrf()),
        endpoint,
        deliveries,
    }))
}

pub async fn retry_delivery(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let delivery = app
        .retry_webhook_delivery(form.session.principal(), &id)
        .await?;
    see_other(&format!(
        "/dashboard/webhooks/{}",
        delivery.webhook_endpoint_id
    ))
}
