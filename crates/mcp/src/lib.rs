//! The MCP door (docs/api.md, "MCP"): the MCP store's tools over the official `rmcp` SDK,
//! served as streamable HTTP at `/mcp` and over stdio (`storefront mcp`) from one tool router.
//!
//! Tools are thin: each parses its input (the MCP store's camelCase spellings accepted as aliases),
//! calls the same `App` use-case as REST, and returns the same JSON the REST `data` field carries.
//! A `DomainError` becomes a tool result with `isError: true` whose content is the REST error
//! object (`code`, `message`, `suggestion`, `param`), so an agent reads one vocabulary everywhere.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::schemars::JsonSchema;
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use storefront_app::orders::{BillingDetails, OrderRequest, OrderSource};
use storefront_app::page::PageRequest;
use storefront_app::quotes::QuoteRequest;
use storefront_app::views::OrderOutcome;
use storefront_app::{App, Principal};
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::order::PaymentMethod;
use storefront_domain::DomainError;

mod parameters;
mod transport;
use parameters::Parameters;
pub use transport::{router, serve_stdio};

/// The tool server. Over HTTP each call authenticates its own `Authorization` header (a revoked
/// key stops at once); over stdio the principal is fixed when the process starts.
#[derive(Clone)]
pub struct StorefrontTools {
    app: App,
    fixed: Option<Principal>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    /// Free-text search over names, descriptions and tags.
    #[serde(default, alias = "query")]
    pub q: Option<String>,
    /// Only products of this category (for example `compute`, `search`).
    #[serde(default)]
    pub category: Option<String>,
    /// How many products to return (1-100, default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// The product id, like `bare-linux-machine`.
    #[serde(alias = "productId", alias = "catalogItemId")]
    pub product_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct QuoteInput {
    /// The product id, like `bare-linux-machine`.
    #[serde(alias = "productId", alias = "catalogItemId")]
    pub product_id: String,
    /// How many units (default 1).
    #[serde(default)]
    pub quantity: Option<i64>,
    /// The product's configuration fields (see catalog_checkout_requirements); camelCase
    /// spellings of the field names are accepted.
    #[serde(default)]
    pub configuration: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct PurchaseInput {
    /// The quote to buy, from quote_create.
    #[serde(alias = "quoteId")]
    pub quote_id: String,
    /// A unique string per purchase (a UUID); retrying with the same key never buys twice.
    #[serde(alias = "idempotencyKey")]
    pub idempotency_key: String,
    /// `credit` (default with an API key) or `card`.
    #[serde(default, alias = "paymentMethod")]
    pub payment_method: Option<String>,
    /// Card payments only: the customer's e-mail address (never guessed).
    #[serde(default, alias = "customerEmail")]
    pub customer_email: Option<String>,
    #[serde(default, alias = "billingName")]
    pub billing_name: Option<String>,
    #[serde(default, alias = "billingStreet")]
    pub billing_street: Option<String>,
    #[serde(default, alias = "billingCity")]
    pub billing_city: Option<String>,
    #[serde(default, alias = "billingPostalCode")]
    pub billing_postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, like `CZ`.
    #[serde(default, alias = "billingCountry")]
    pub billing_country: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct EventsInput {
    /// Only events after this one (`evt_...`: the `next_cursor` of the previous call, or the last
    /// event seen); from the oldest without it.
    #[serde(default)]
    pub after: Option<String>,
    /// Only these types (`order.paid`, `service.active`, `approval.resolved`, ...).
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// How many events to return (1-100, default 20).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    #[serde(alias = "orderId")]
    pub order_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    /// The service (machine) id from the order, like `svc_...`.
    #[serde(alias = "serviceId", alias = "server_id", alias = "serverId")]
    pub service_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct ReinstallInput {
    #[serde(alias = "serviceId", alias = "server_id", alias = "serverId")]
    pub service_id: String,
    /// The image to install, one of the product's images (like `debian-12`).
    #[serde(alias = "os", alias = "imageId")]
    pub image: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    #[serde(alias = "serviceId")]
    pub service_id: String,
    /// Minutes to add to the lease.
    #[serde(alias = "additionalMinutes")]
    pub additional_minutes: i64,
    /// A unique string per extension; retrying with the same key never charges twice.
    #[serde(alias = "idempotencyKey")]
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// A tool's answer: the REST `data` as structured content (and as text for clients that only
/// read text), or the REST error object with `isError: true`.
fn answer<T: Serialize>(result: Result<T, DomainError>) -> CallToolResult {
    match result {
        Ok(data) => {
            let value = serde_json::to_value(data).unwrap_or(Value::Null);
            let mut r = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
            r.structured_content = Some(value);
            r
        }
        Err(e) => {
            let mut error = serde_json::to_value(e.body()).unwrap_or_default();
            // What REST says in headers (Retry-After, WWW-Authenticate) travels in the object.
            if let Some(s) = e.retry_after_seconds {
                error["retry_after_seconds"] = json!(s);
            }
            if let Some(demand) = &e.payment {
                error["order_id"] = json!(demand.order_id);
                error["payment_challenges"] = json!(demand.challenges);
            }
            let body = json!({ "error": error });
            let mut r = CallToolResult::error(vec![ContentBlock::text(body.to_string())]);
            r.structured_content = Some(body);
            r
        }
    }
}

fn payment_method(raw: Option<&str>) -> Result<Option<PaymentMethod>, DomainError> {
    raw.map(|m| {
        PaymentMethod::parse(m).ok_or_else(|| {
            DomainError::validation(
                "payment_method",
                format!("'{m}' is not a payment method."),
                "Use \"credit\" or \"card\".",
            )
        })
    })
    .transpose()
}

/// The JSON Schema of a tool's successful structured result: an object with these top-level
/// fields (each `(name, type)`; `a|b` allows either JSON type). The fields' own shapes are the
/// REST `data` documented in `/openapi.json`.
fn shape(fields: &[(&str, &str)]) -> std::sync::Arc<Map<String, Value>> {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, kind)| {
            let types: Vec<&str> = kind.split('|').collect();
            let schema = if types.len() == 1 {
                json!({ "type": types[0] })
            } else {
                json!({ "type": types })
            };
            ((*name).to_owned(), schema)
        })
        .collect();
    let required: Vec<Value> = fields.iter().map(|(name, _)| json!(name)).collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    schema.insert("required".into(), Value::Array(required));
    std::sync::Arc::new(schema)
}

impl StorefrontTools {
    /// Tools whose caller is identified per request (HTTP).
    pub fn new(app: App) -> Self {
        Self {
            app,
            fixed: None,
            tool_router: Self::tool_router(),
        }
    }

    /// Tools acting for one principal (stdio).
    pub fn for_principal(app: App, principal: Principal) -> Self {
        Self {
            app,
            fixed: Some(principal),
            tool_router: Self::tool_router(),
        }
    }

    /// The caller: the fixed principal, or the bearer key of this HTTP request.
    async fn principal(&self, extensions: &Extensions) -> Result<Principal, DomainError> {
        if let Some(p) = &self.fixed {
            self.app.ensure_not_suspended(p).await?;
            return Ok(p.clone());
        }
        let header = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
            .map(|v| v.to_str().map_err(|_| DomainError::unauthorized()))
            .transpose()?;
        let principal = match header.and_then(|h| h.split_once(' ')) {
            Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => {
                self.app.authenticate(secret.trim()).await?
            }
            _ => Principal::Public,
        };
        self.app.ensure_not_suspended(&principal).await?;
        Ok(principal)
    }

    async fn purchase(
        &self,
        principal: &Principal,
        input: PurchaseInput,
    ) -> Result<Value, DomainError> {
        let method = payment_method(input.payment_method.as_deref())?;
        if method == Some(PaymentMethod::Mpp) {
            return Err(DomainError::validation(
                "payment_method",
                "MPP payments go through HTTP 402 on POST /api/v1/orders, not through MCP tools.",
                "Pay with \"credit\" (an API key) or \"card\", or use the REST endpoint with an MPP client.",
            ));
        }
        let request = OrderRequest {
            source: OrderSource::Quote(input.quote_id.clone()),
            payment_method: method,
            billing: BillingDetails {
                customer_email: input.customer_email.clone(),
                billing_name: input.billing_name.clone(),
                billing_street: input.billing_street.clone(),
                billing_city: input.billing_city.clone(),
                billing_postal_code: input.billing_postal_code.clone(),
                billing_country: input.billing_country.clone(),
            },
        };
        let key = IdempotencyKey::parse_param(&input.idempotency_key, "idempotency_key")?;
        let placed = self
            .app
            .place_order(principal, &key, &request, None)
            .await?;
        match placed.outcome {
            OrderOutcome::Created { order, .. } | OrderOutcome::Accepted { order, .. } => {
                Ok(json!({ "order": order, "replayed": placed.replayed }))
            }
            OrderOutcome::Failed { error } => Err(error),
        }
    }
}

#[tool_router]
impl StorefrontTools {
    #[tool(output_schema = shape(&[("products", "array"), ("next_cursor", "string|null")]), 
        description = "Search the catalog. Returns products with id, name, category, kind (instant or async), price summary and availability; page with cursor. Start here, then call catalog_checkout_requirements for the product you want."
    )]
    async fn catalog_search(&self, Parameters(input): Parameters<SearchInput>) -> CallToolResult {
        answer(input.and_then(|input| {
            PageRequest::parse(input.limit, input.cursor).and_then(|page| {
                let page =
                    self.app
                        .list_products(input.q.as_deref(), input.category.as_deref(), &page)?;
                Ok(json!({ "products": page.items, "next_cursor": page.next_cursor }))
            })
        }))
    }

    #[tool(output_schema = shape(&[("product_id", "string")]), 
        description = "What a product needs before it can be bought: its configuration fields (required and optional, with allowed values and defaults), the JSON Schema of its configuration, payment methods and whether it needs install configuration after payment."
    )]
    async fn catalog_checkout_requirements(
        &self,
        Parameters(input): Parameters<ProductInput>,
    ) -> CallToolResult {
        answer(input.and_then(|input| {
            self.app
                .get_product(&input.product_id)
                .map(|p| p.requirements())
        }))
    }

    #[tool(output_schema = shape(&[("quote", "object")]), 
        description = "Price a configuration deterministically. Unknown or out-of-range values are normalized and reported in configuration_warnings (\"defaulted down\"). Returns a quote_id valid for 15 minutes; buy it with purchase_create."
    )]
    async fn quote_create(
        &self,
        Parameters(input): Parameters<QuoteInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let quote = self
                .app
                .create_quote(
                    &principal,
                    &QuoteRequest {
                        product_id: input.product_id,
                        quantity: input.quantity,
                        configuration: input.configuration,
                    },
                )
                .await?;
            Ok(json!({ "quote": quote }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("order", "object"), ("replayed", "boolean")]), 
        description = "Buy a quote. Needs an API key for payment_method credit (the default); card needs every billing field and returns payment_action.url for the human. Reuse the same idempotency_key when retrying: it never buys twice. Machines come back processing with a provisioning_estimate; wait for the service.active event (events_list) or poll order_get or service_get until credentials are available."
    )]
    async fn purchase_create(
        &self,
        Parameters(input): Parameters<PurchaseInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            self.purchase(&principal, input).await
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("order", "object"), ("retry_after_seconds", "integer|null")]), 
        description = "An order of this account: status, payment, provisioning estimate, the service id of a machine, and whether its credentials are available. Its changes are also events (order.paid, order.fulfilled, ...: events_list)."
    )]
    async fn order_get(
        &self,
        Parameters(input): Parameters<OrderInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let (order, retry) = self.app.get_order(&principal, &input.order_id).await?;
            Ok(json!({ "order": order, "retry_after_seconds": retry }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("service", "object")]), 
        description = "A machine (service): status (provisioning, active, restarting, reinstalling, terminating, terminated, expired, failed), host, SSH port and username, image, lease expiry."
    )]
    async fn service_get(
        &self,
        Parameters(input): Parameters<ServiceInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let service = self.app.get_service(&principal, &input.service_id).await?;
            Ok(json!({ "service": service }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("service", "object")]), 
        description = "Restart a machine: its processes are stopped and it boots again with its files kept. Poll service_get until status is active again, or wait for the service.restarted event (events_list)."
    )]
    async fn server_restart(
        &self,
        Parameters(input): Parameters<ServiceInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let service = self
                .app
                .restart_service(&principal, &input.service_id)
                .await?;
            Ok(json!({ "service": service }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("service", "object")]), 
        description = "Reinstall a machine from an image: every file and the host key are wiped. Poll service_get until active; fetch new credentials with credentials_get."
    )]
    async fn server_reinstall(
        &self,
        Parameters(input): Parameters<ReinstallInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let service = self
                .app
                .reinstall_service(&principal, &input.service_id, Some(&input.image))
                .await?;
            Ok(json!({ "service": service }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("extension", "object"), ("replayed", "boolean")]), 
        description = "Extend a machine's lease by additional_minutes, charged from the account's credit at the product's per-minute price. Reuse the same idempotency_key when retrying."
    )]
    async fn lease_extend(
        &self,
        Parameters(input): Parameters<ExtendInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let key = IdempotencyKey::parse_param(&input.idempotency_key, "idempotency_key")?;
            let (extension, replayed) = self
                .app
                .extend_service(
                    &principal,
                    &input.service_id,
                    input.additional_minutes,
                    &key,
                )
                .await?;
            Ok(json!({ "extension": extension, "replayed": replayed }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("service", "object")]), 
        description = "Terminate a machine now: it is removed with its files. Terminate machines when finished."
    )]
    async fn lease_terminate(
        &self,
        Parameters(input): Parameters<ServiceInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let service = self
                .app
                .terminate_service(&principal, &input.service_id)
                .await?;
            Ok(json!({ "service": service }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("type", "string"), ("credentials", "object")]), 
        description = "SSH credentials of an active machine: host, port, username, the generated private key (when the order sent no public key) and the host key fingerprint. Answers not_ready with retry_after_seconds until the machine is active."
    )]
    async fn credentials_get(
        &self,
        Parameters(input): Parameters<ServiceInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            self.app
                .service_credentials(&principal, &input.service_id)
                .await
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("events", "array"), ("next_cursor", "string|null")]),
        description = "What happened, oldest first: order.created/paid/fulfilled/failed/canceled, service.active/restarted/reinstalled/terminated/expired, approval.requested/resolved, agent.suspended/reactivated, balance.low, payment.refunded. Each event has id, type, created_at and data (the object as order_get or service_get shows it). Instead of polling an order, call this with after = the last event id you saw; an agent key sees its own agent's events."
    )]
    async fn events_list(
        &self,
        Parameters(input): Parameters<EventsInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            let input = input?;
            let page = PageRequest::parse(input.limit, None)?;
            let events = self
                .app
                .list_events(
                    &principal,
                    input.after,
                    &input.types.unwrap_or_default(),
                    &page,
                )
                .await?;
            Ok(json!({ "events": events.items, "next_cursor": events.next_cursor }))
        };
        answer(result.await)
    }

    #[tool(output_schema = shape(&[("credits", "integer"), ("balance_minor", "integer"), ("currency", "string")]), description = "The account's credit balance (1 credit = 1 minor unit of its currency).")]
    async fn account_balance(
        &self,
        Parameters(input): Parameters<NoInput>,
        extensions: Extensions,
    ) -> CallToolResult {
        let result = async {
            let principal = self.principal(&extensions).await?;
            input?;
            self.app.balance(&principal).await
        };
        answer(result.await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for StorefrontTools {
    fn get_info(&self) -> ServerConfig {
        let base = &self.app.settings().base_url;
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("storefront", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "An agent storefront. Flow: catalog_search → catalog_checkout_requirements → quote_create → purchase_create (with an idempotency_key) → order_get / service_get until the machine is active → credentials_get → server_restart / server_reinstall / lease_extend / lease_terminate. events_list tells what changed since the last event you saw, instead of polling. Pay with account credit (an API key as 'Authorization: Bearer'). Errors carry code, message and suggestion. Full guide: {base}/llms.txt"
            ))
    }
}
