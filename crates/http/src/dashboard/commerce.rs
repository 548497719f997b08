//! The owner buys too (the MCP store's website checkout; docs/api.md, "Where the design comes
//! from"): the catalog, a quote form generated from each product's configuration fields, the
//! purchase with credits through the same quote and order use-cases the agents use; then orders and
//! machines.

use super::account::{order_rows, Empty, OrderRow};
use super::render::{html, html_with_status, money, when, Chrome, Notice};
use super::{fixable, see_other, Form, PageError, PageResult, Session};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use storefront_app::machines::Credentials;
use storefront_app::orders::{BillingDetails, OrderRequest, OrderSource};
use storefront_app::page::PageRequest;
use storefront_app::ports::OrderFilter;
use storefront_app::quotes::QuoteRequest;
use storefront_app::views::{OrderOutcome, OrderView};
use storefront_app::App;
use storefront_domain::catalog::{FieldSpec, FieldType, Product};
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::order::{OrderStatus, PaymentMethod};
use storefront_domain::quote::Quote;
use storefront_domain::service::ServiceStatus;

/// Form inputs of configuration fields carry this prefix, apart from the form's own fields.
const FIELD_PREFIX: &str = "cfg.";

// ----- catalog -----

pub struct ProductRow {
    pub id: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub price: String,
    pub available: bool,
    pub unavailable_reason: String,
}

#[derive(Template)]
#[template(path = "dashboard/catalog.html")]
pub struct CatalogPage {
    pub chrome: Chrome,
    pub products: Vec<ProductRow>,
}

pub async fn catalog(State(app): State<App>, session: Session) -> PageResult {
    let all = PageRequest {
        limit: 1000,
        cursor: None,
    };
    let products = app
        .list_products(None, None, &all)?
        .items
        .iter()
        .map(|p| ProductRow {
            id: p.id.clone(),
            name: p.name.clone(),
            category: p.category.clone(),
            description: p.description.clone(),
            price: p.pricing.summary(),
            available: p.available,
            unavailable_reason: p.unavailable_reason.clone().unwrap_or_default(),
        })
        .collect();
    Ok(html(&CatalogPage {
        chrome: Chrome::new("Catalog", "catalog", session.csrf()),
        products,
    }))
}

/// One configuration input, generated from a product's field.
pub struct FieldInput {
    pub input_name: String,
    pub label: String,
    pub help: String,
    /// `number`, `text`, `checkbox` or `select`.
    pub control: &'static str,
    pub value: String,
    pub checked: bool,
    pub options: Vec<String>,
    pub required: bool,
    pub max_length: String,
}

fn field_inputs(fields: &[FieldSpec], entered: &Map<String, Value>) -> Vec<FieldInput> {
    fields
        .iter()
        .map(|f| {
            let current = entered.get(&f.name).or(f.default.as_ref());
            let value = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let mut help = f.description.clone();
            if let (Some(min), Some(max)) = (f.minimum, f.maximum) {
                help = format!("{help} ({min}–{max})").trim().to_owned();
            }
            FieldInput {
                input_name: format!("{FIELD_PREFIX}{}", f.name),
                label: f.name.replace('_', " "),
                help,
                control: match f.field_type {
                    FieldType::Integer => "number",
                    FieldType::Boolean => "checkbox",
                    FieldType::Enum => "select",
                    FieldType::String => "text",
                },
                checked: current == Some(&Value::Bool(true)),
                value,
                options: f.values.clone(),
                required: f.required,
                max_length: f.max_length.map(|m| m.to_string()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The form's values as a configuration: numbers for integer fields (as typed when they are not
/// numbers, so the quote names the field), booleans for checkboxes, empty inputs left out.
fn configuration_from(fields: &[FieldSpec], form: &[(String, String)]) -> Map<String, Value> {
    let entered = |name: &str| {
        form.iter()
            .find(|(k, _)| k.strip_prefix(FIELD_PREFIX) == Some(name))
            .map(|(_, v)| v.trim())
    };
    let mut configuration = Map::new();
    for f in fields {
        let value = match (f.field_type, entered(&f.name)) {
            (FieldType::Boolean, raw) => Value::Bool(raw.is_some()),
            (_, None | Some("")) => continue,
            (FieldType::Integer, Some(raw)) => raw
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(raw)),
            (_, Some(raw)) => Value::from(raw),
        };
        configuration.insert(f.name.clone(), value);
    }
    configuration
}

#[derive(Template)]
#[template(path = "dashboard/product.html")]
pub struct ProductPage {
    pub chrome: Chrome,
    pub id: String,
    pub description: String,
    pub price: String,
    pub available: bool,
    pub unavailable_reason: String,
    pub fields: Vec<FieldInput>,
    pub quantity: String,
    pub max_quantity: u32,
}

fn product_page(
    session: &Session,
    product: &Product,
    entered: &Map<String, Value>,
    quantity: &str,
    notice: Option<Notice>,
) -> ProductPage {
    ProductPage {
        chrome: Chrome::new(product.name.clone(), "catalog", session.csrf()).with_notice(notice),
        id: product.id.clone(),
        description: product.description.clone(),
        price: product.pricing.summary(),
        available: product.available,
        unavailable_reason: product.unavailable_reason.clone().unwrap_or_default(),
        fields: field_inputs(&product.fields, entered),
        quantity: quantity.to_owned(),
        max_quantity: product.max_quantity,
    }
}

pub async fn product(
    State(app): State<App>,
    session: Session,
    Path(product_id): Path<String>,
) -> PageResult {
    let product = app.get_product(&product_id)?;
    Ok(html(&product_page(
        &session,
        product,
        &Map::new(),
        "1",
        None,
    )))
}

pub struct LineRow {
    pub description: String,
    pub quantity: i64,
    pub unit: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "dashboard/quote.html")]
pub struct QuotePage {
    pub chrome: Chrome,
    pub quote_id: String,
    pub product_id: String,
    pub configuration: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub lines: Vec<LineRow>,
    pub total: String,
    pub expires: String,
    pub balance: String,
    /// Generated with the page, so submitting it twice buys once.
    pub idempotency_key: String,
}

fn line_rows(lines: &[storefront_domain::pricing::LineItem], currency: &str) -> Vec<LineRow> {
    lines
        .iter()
        .map(|l| LineRow {
            description: l.description.clone(),
            quantity: l.quantity,
            unit: money(l.unit_minor, currency),
            amount: money(l.amount_minor, currency),
        })
        .collect()
}

fn quote_page(session: &Session, product: &Product, quote: &Quote, balance: String) -> QuotePage {
    let currency = quote.currency.as_str();
    QuotePage {
        chrome: Chrome::new(
            format!("Quote for {}", product.name),
            "catalog",
            session.csrf(),
        ),
        quote_id: quote.id.to_string(),
        product_id: product.id.clone(),
        configuration: quote
            .configuration_normalized
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.replace('_', " "), shown)
            })
            .collect(),
        warnings: quote
            .configuration_warnings
            .iter()
            .map(|w| format!("{}: {}", w.field, w.message))
            .collect(),
        lines: line_rows(&quote.line_items, currency),
        total: money(quote.total_minor, currency),
        expires: when(&storefront_domain::timestamp::format(&quote.expires_at)),
        balance,
        idempotency_key: uuid::Uuid::now_v7().to_string(),
    }
}

pub async fn quote(
    State(app): State<App>,
    Path(product_id): Path<String>,
    form: Form<Vec<(String, String)>>,
) -> PageResult {
    let session = form.session;
    let product = app.get_product(&product_id)?;
    let configuration = configuration_from(&product.fields, &form.data);
    let quantity_raw = form
        .data
        .iter()
        .find(|(k, _)| k == "quantity")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let quantity = match quantity_raw.as_str() {
        "" => Ok(None),
        raw => raw.parse::<i64>().map(Some).map_err(|_| {
            storefront_domain::DomainError::validation(
                "quantity",
                format!("'{raw}' is not a whole number."),
                format!("Enter a quantity from 1 to {}.", product.max_quantity),
            )
        }),
    };
    let request = quantity.map(|quantity| QuoteRequest {
        product_id: product_id.clone(),
        quantity,
        configuration: configuration.clone(),
    });
    let result = match request {
        Ok(request) => app.create_quote(session.principal(), &request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(quote) => {
            let balance = app.balance(session.principal()).await?;
            let balance = money(balance.balance_minor, &balance.currency);
            Ok(html(&quote_page(&session, product, &quote, balance)))
        }
        Err(e) if fixable(&e) => {
            let page = product_page(
                &session,
                product,
                &configuration,
                &quantity_raw,
                Some(Notice::error(&e)),
            );
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct BuyForm {
    quote_id: String,
    idempotency_key: String,
}

/// Buys a quote with the account's credits, exactly once per form (its idempotency key).
pub async fn buy(State(app): State<App>, form: Form<BuyForm>) -> PageResult {
    let session = form.session;
    let BuyForm {
        quote_id,
        idempotency_key,
    } = form.data;
    let key = IdempotencyKey::parse_param(&idempotency_key, "idempotency_key")?;
    let request = OrderRequest {
        source: OrderSource::Quote(quote_id),
        payment_method: Some(PaymentMethod::Credit),
        billing: BillingDetails::default(),
    };
    let placed = app
        .place_order(session.principal(), &key, &request, None)
        .await?;
    let order = match placed.outcome {
        OrderOutcome::Created { order, .. } | OrderOutcome::Accepted { order, .. } => order,
        // Charged nothing (or refunded): the error page says why.
        OrderOutcome::Failed { error } => return Err(error.into()),
    };
    see_other(&format!("/dashboard/orders/{}", order.id))
}

// ----- orders -----

#[derive(Template)]
#[template(path = "dashboard/orders.html")]
pub struct OrdersPage {
    pub chrome: Chrome,
    pub orders: Vec<OrderRow>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn orders(
    State(app): State<App>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let page = app
        .list_orders(
            session.principal(),
            &OrderFilter {
                page: PageRequest::parse(Some(50), q.cursor)?,
                ..OrderFilter::default()
            },
        )
        .await?;
    Ok(html(&OrdersPage {
        chrome: Chrome::new("Orders", "orders", session.csrf()),
        orders: order_rows(&page.items),
        next_cursor: page.next_cursor,
    }))
}

/// SSH credentials as shown once, on the answer to an explicit request.
pub struct CredentialsView {
    pub host: String,
    pub port: String,
    pub username: String,
    pub private_key: String,
    pub fingerprint: String,
    pub ssh_command: String,
}

impl From<Credentials> for CredentialsView {
    fn from(c: Credentials) -> Self {
        let c = c.credentials;
        let host = c.host.unwrap_or_default();
        let port = c.port.map(|p| p.to_string()).unwrap_or_default();
        Self {
            ssh_command: format!("ssh -i ./key -p {port} {}@{host}", c.username),
            host,
            port,
            username: c.username,
            private_key: c.private_key.unwrap_or_default(),
            fingerprint: c.host_key_fingerprint.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/order.html")]
pub struct OrderPage {
    pub chrome: Chrome,
    pub id: String,
    pub status: String,
    pub payment: String,
    pub product_id: String,
    pub total: String,
    pub created: String,
    pub lines: Vec<LineRow>,
    pub service_id: String,
    pub failure: String,
    pub approval: String,
    pub in_progress: bool,
    pub cancelable: bool,
    pub credentials_available: bool,
    pub credentials: Option<CredentialsView>,
}

fn order_page(
    session: &Session,
    order: &OrderView,
    notice: Option<Notice>,
    credentials: Option<CredentialsView>,
) -> OrderPage {
    let status = order.status;
    OrderPage {
        chrome: Chrome::new(format!("Order {}", order.id), "orders", session.csrf())
            .with_notice(notice),
        id: order.id.clone(),
        status: status.as_str().to_owned(),
        payment: format!(
            "{} ({})",
            order.payment_method.as_str(),
            order.payment_status.as_str()
        ),
        product_id: order.product_id.clone(),
        total: money(order.total_minor, &order.currency),
        created: when(&order.created_at),
        lines: line_rows(&order.line_items, &order.currency),
        service_id: order.service_id.clone().unwrap_or_default(),
        failure: order
            .failure
            .as_ref()
            .map(|f| format!("{}: {}", f.code, f.message))
            .unwrap_or_default(),
        approval: order
            .approval
            .as_ref()
            .and_then(|a| a.get("status"))
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .unwrap_or_default(),
        in_progress: matches!(
            status,
            OrderStatus::Paid
                | OrderStatus::Processing
                | OrderStatus::AwaitingApproval
                | OrderStatus::PendingPayment
        ),
        cancelable: matches!(
            status,
            OrderStatus::PendingPayment
                | OrderStatus::AwaitingApproval
                | OrderStatus::AwaitingInstallConfiguration
        ),
        credentials_available: order.credentials_available,
        credentials,
    }
}

pub async fn order(State(app): State<App>, session: Session, Path(id): Path<String>) -> PageResult {
    let (order, _) = app.get_order(session.principal(), &id).await?;
    Ok(html(&order_page(&session, &order, None, None)))
}

pub async fn cancel_order(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let session = form.session;
    match app.cancel_order(session.principal(), &id).await {
        Ok(_) => see_other(&format!("/dashboard/orders/{id}")),
        Err(e) if fixable(&e) => {
            let (order, _) = app.get_order(session.principal(), &id).await?;
            let page = order_page(&session, &order, Some(Notice::error(&e)), None);
            Ok(html_with_status(StatusCode::CONFLICT, &page))
        }
        Err(e) => Err(e.into()),
    }
}

/// Shows the machine's credentials on this answer only (the page itself never carries them).
pub async fn order_credentials(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let session = form.session;
    let (order, _) = app.get_order(session.principal(), &id).await?;
    match app.order_credentials(session.principal(), &id, None).await {
        Ok(credentials) => {
            let notice = Notice::done("Save the private key now: this page does not keep it.");
            Ok(html(&order_page(
                &session,
                &order,
                Some(notice),
                Some(credentials.into()),
            )))
        }
        Err(e) if fixable(&e) => Ok(html_with_status(
            StatusCode::CONFLICT,
            &order_page(&session, &order, Some(Notice::error(&e)), None),
        )),
        Err(e) => Err(e.into()),
    }
}

// ----- machines (services) -----

pub struct ServiceRow {
    pub id: String,
    pub name: String,
    pub product_id: String,
    pub status: String,
    pub expires: String,
    pub address: String,
}

#[derive(Template)]
#[template(path = "dashboard/services.html")]
pub struct ServicesPage {
    pub chrome: Chrome,
    pub services: Vec<ServiceRow>,
    pub next_cursor: Option<String>,
}

fn service_row(s: &storefront_app::machines::ServiceView) -> ServiceRow {
    ServiceRow {
        id: s.id.clone(),
        name: s.display_name.clone(),
        product_id: s.product_id.clone(),
        status: s.status.as_str().to_owned(),
        expires: s.expires_at.as_deref().map(when).unwrap_or_default(),
        address: s
            .server
            .as_ref()
            .map(|m| {
                format!(
                    "{}@{}:{}",
                    m.ssh_username,
                    m.host.clone().unwrap_or_default(),
                    m.ssh_port.map(|p| p.to_string()).unwrap_or_default()
                )
            })
            .unwrap_or_default(),
    }
}

pub async fn services(
    State(app): State<App>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let page = app
        .list_services(
            session.principal(),
            &PageRequest::parse(Some(50), q.cursor)?,
        )
        .await?;
    Ok(html(&ServicesPage {
        chrome: Chrome::new("Machines", "services", session.csrf()),
        services: page.items.iter().map(service_row).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Template)]
#[template(path = "dashboard/service.html")]
pub struct ServicePage {
    pub chrome: Chrome,
    pub service: ServiceRow,
    pub order_id: String,
    pub image: String,
    pub power: String,
    pub active: bool,
    pub idempotency_key: String,
}

async fn service_page(
    app: &App,
    session: &Session,
    id: &str,
    notice: Option<Notice>,
) -> Result<ServicePage, PageError> {
    let s = app.get_service(session.principal(), id).await?;
    Ok(ServicePage {
        chrome: Chrome::new(
            format!("Machine {}", s.display_name),
            "services",
            session.csrf(),
        )
        .with_notice(notice),
        order_id: s.order_id.clone(),
        image: s
            .server
            .as_ref()
            .map(|m| m.image.clone())
            .unwrap_or_default(),
        power: s
            .server
            .as_ref()
            .map(|m| m.power_state.to_owned())
            .unwrap_or_default(),
        active: s.status == ServiceStatus::Active,
        service: service_row(&s),
        idempotency_key: uuid::Uuid::now_v7().to_string(),
    })
}

pub async fn service(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    Ok(html(&service_page(&app, &session, &id, None).await?))
}

async fn after_service_action<T>(
    app: &App,
    session: &Session,
    id: &str,
    result: Result<T, storefront_domain::DomainError>,
) -> PageResult {
    match result {
        Ok(_) => see_other(&format!("/dashboard/services/{id}")),
        Err(e) if fixable(&e) => {
            let page = service_page(app, session, id, Some(Notice::error(&e))).await?;
            Ok(html_with_status(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct ExtendForm {
    #[serde(default)]
    additional_minutes: String,
    idempotency_key: String,
}

pub async fn extend(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<ExtendForm>,
) -> PageResult {
    let session = form.session;
    let raw = form.data.additional_minutes.trim().to_owned();
    let result = match raw.parse::<i64>() {
        Ok(minutes) => {
            let extend = async {
                let key =
                    IdempotencyKey::parse_param(&form.data.idempotency_key, "idempotency_key")?;
                app.extend_service(session.principal(), &id, minutes, &key)
                    .await
                    .map(|_| ())
            };
            extend.await
        }
        Err(_) => Err(storefront_domain::DomainError::validation(
            "additional_minutes",
            format!("'{raw}' is not a whole number of minutes."),
            "Enter the minutes to add, e.g. 60.",
        )),
    };
    after_service_action(&app, &session, &id, result).await
}

pub async fn terminate(
    State(app): State<App>,
    Path(id): Path<String>,
    form: Form<Empty>,
) -> PageResult {
    let result = app.terminate_service(form.session.principal(), &id).await;
    after_service_action(&app, &form.session, &id, result).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str, field_type: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            field_type,
            required: false,
            description: String::new(),
            default: None,
            minimum: None,
            maximum: None,
            values: vec![],
            max_length: None,
            format: None,
        }
    }

    #[test]
    fn form_values_take_their_field_types() {
        let fields = [
            field("duration_minutes", FieldType::Integer),
            field("image", FieldType::Enum),
            field("monitoring", FieldType::Boolean),
            field("hostname", FieldType::String),
            field("ssh_key", FieldType::String),
        ];
        let form = [
            ("csrf".to_owned(), "x".to_owned()),
            ("cfg.duration_minutes".to_owned(), " 90 ".to_owned()),
            ("cfg.image".to_owned(), "debian-12".to_owned()),
            ("cfg.hostname".to_owned(), "".to_owned()),
            ("cfg.ssh_key".to_owned(), "not a key".to_owned()),
        ];
        let configuration = configuration_from(&fields, &form);
        assert_eq!(
            Value::Object(configuration),
            json!({"duration_minutes": 90, "image": "debian-12", "monitoring": false, "ssh_key": "not a key"})
        );
        let typo = [("cfg.duration_minutes".to_owned(), "ninety".to_owned())];
        assert_eq!(
            configuration_from(&fields, &typo).get("duration_minutes"),
            Some(&json!("ninety"))
        );
    }
}
