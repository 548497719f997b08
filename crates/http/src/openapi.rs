//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! wire types' derived schemas (`utoipa`, `utoipa-axum`): a route cannot be served without being
//! documented, because the router and the document are built from the same list.
//!
//! Also the human reference at `/docs`, rendered on the server from the same document (no
//! external scripts or fonts).

use serde::Serialize;
use serde_json::json;
use std::fmt::Write;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, ToSchema};

/// The success envelope: `{"ok": true, "data": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true` on success.
    pub ok: bool,
    pub data: T,
}

/// The error envelope: `{"ok": false, "error": {...}}`. MPP `402` answers add `order_id`,
/// `status` and, after a refused credential, `credential_status` and `reason`.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false` on errors.
    pub ok: bool,
    pub error: storefront_domain::error::ErrorBody,
    /// MPP `402`: the order waiting for payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// MPP `402`: `unpaid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// MPP `402` after a credential was presented: `rejected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_status: Option<String>,
    /// MPP `402` after a refused credential: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A page of a list: the items and the cursor of the next page (`null` on the last).
#[derive(Serialize, ToSchema)]
pub struct NextCursor {
    pub next_cursor: Option<String>,
}

/// Declares the bearer key and the document's metadata.
pub struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sf_live_... (owner or agent key) or sf_res_... (resource token)")
                    .description(Some(
                        "An API key, shown once when created, or a resource token scoped to one service.",
                    ))
                    .build(),
            ),
        );
    }
}

/// What holds for every operation once the routes are in: each can be rate limited.
pub fn finish(openapi: &mut OpenApi) {
    // Every operation can answer 429 (docs/api.md, "Error codes").
    let limited = utoipa::openapi::ResponseBuilder::new()
        .description("rate_limited: wait Retry-After seconds (RateLimit-* headers tell the quota)")
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    "ErrorEnvelope",
                )))
                .build(),
        )
        .build();
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| RefOr::T(limited.clone()));
        }
    }
}

/// The id and cursor alphabet: product ids (`a-z`, `0-9`, `-`) and prefixed ids (`ord_...`).
const CURSOR_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";

/// The document as served at `/openapi.json`: what utoipa derived, plus what the server enforces
/// but the derived schemas cannot say, so a client generated from it sends only what is
/// accepted:
/// - a required string of a request body is never empty (`minLength: 1`);
/// - `Idempotency-Key` is 1-255 characters, never `null`; a cursor is an id;
/// - an order names a stored quote or a product, exactly one (`oneOf`);
/// - links from what an answer creates to the operations that read or use it (create order →
///   get order, order → service, quote → order, agent → key), for stateful clients and tests.
///
/// The document is edited as JSON (utoipa's model has no room for some of it, such as `oneOf`
/// beside an object's properties): these are facts about the wire, not about Rust types.
pub fn to_json(openapi: &OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi).expect("the document serializes");
    refine_parameters(&mut doc);
    let bodies = request_body_schemas(&doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    {
        for name in bodies {
            // An empty soul is how the owner clears it.
            if name == "SoulBody" {
                continue;
            }
            if let Some(schema) = schemas.get_mut(&name) {
                require_non_empty_strings(schema);
            }
        }
        if let Some(order) = schemas.get_mut("OrderBody") {
            order["oneOf"] = json!([
                {"required": ["quote_id"], "properties": {"quote_id": {"type": "string", "minLength": 1}}},
                {"required": ["product_id"], "properties": {"product_id": {"type": "string", "minLength": 1}}},
            ]);
        }
    }
    add_links(&mut doc);
    doc
}

fn refine_parameters(doc: &mut serde_json::Value) {
    let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op
                .get_mut("parameters")
                .and_then(serde_json::Value::as_array_mut)
            else {
                continue;
            };
            for param in params {
                let schema = match (param["name"].as_str(), param["in"].as_str()) {
                    (Some("Idempotency-Key"), Some("header")) => {
                        json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"})
                    }
                    (Some("cursor"), Some("query")) => {
                        json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": CURSOR_PATTERN})
                    }
                    _ => continue,
                };
                param["schema"] = schema;
            }
        }
    }
}

/// The component schemas that requests send as their body.
fn request_body_schemas(doc: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let operations = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|item| item.values());
    operations
        .filter_map(|op| op.pointer("/requestBody/content"))
        .filter_map(serde_json::Value::as_object)
        .flat_map(|content| content.values())
        .filter_map(|media| media.pointer("/schema/$ref")?.as_str())
        .filter_map(|r| r.strip_prefix("#/components/schemas/"))
        .map(str::to_owned)
        .collect()
}

/// `minLength: 1` on every required property of `schema` that is a plain string.
fn require_non_empty_strings(schema: &mut serde_json::Value) {
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for name in required {
        if let Some(property) = properties.get_mut(&name) {
            let plain = property["type"] == "string"
                && property.get("enum").is_none()
                && property.get("format").is_none()
                && property.get("minLength").is_none();
            if plain {
                property["minLength"] = json!(1);
            }
        }
    }
}

fn add_links(doc: &mut serde_json::Value) {
    let link = |operation: &str, parameters: serde_json::Value, description: &str| json!({"operationId": operation, "parameters": parameters, "description": description});
    let order_id = json!({"order_id": "$response.body#/data/order/id"});
    let agent_id = json!({"agent_id": "$response.body#/data/agent/id"});
    let first_product = json!({"product_id": "$response.body#/data/products/0/id"});
    let mut links = vec![
        (
            "/api/v1/orders",
            "post",
            "201",
            "GetOrder",
            link("get_order", order_id.clone(), "The order just created."),
        ),
        (
            "/api/v1/orders",
            "post",
            "202",
            "GetOrder",
            link("get_order", order_id.clone(), "The order just created."),
        ),
        (
            "/api/v1/orders",
            "post",
            "202",
            "CancelOrder",
            link(
                "cancel_order",
                order_id.clone(),
                "Cancel it while it waits.",
            ),
        ),
        (
            "/api/v1/orders/{order_id}",
            "get",
            "200",
            "GetService",
            link(
                "get_service",
                json!({"service_id": "$response.body#/data/order/service_id"}),
                "The machine this order delivers (orders of machines).",
            ),
        ),
        (
            "/api/v1/quotes",
            "post",
            "201",
            "GetQuote",
            link(
                "get_quote",
                json!({"quote_id": "$response.body#/data/quote/id"}),
                "The quote just made.",
            ),
        ),
        (
            "/api/v1/quotes",
            "post",
            "201",
            "OrderQuote",
            json!({
                "operationId": "create_order",
                "requestBody": {"quote_id": "$response.body#/data/quote/id"},
                "description": "Order the quote (with an Idempotency-Key of your own).",
            }),
        ),
        (
            "/api/v1/products",
            "get",
            "200",
            "GetProduct",
            link(
                "get_product",
                first_product.clone(),
                "The first product listed.",
            ),
        ),
        (
            "/api/v1/products",
            "get",
            "200",
            "GetRequirements",
            link(
                "get_product_requirements",
                first_product,
                "What the first product listed needs.",
            ),
        ),
    ];
    for (name, operation, description) in [
        ("GetAgent", "get_agent", "The agent just created."),
        ("CreateAgentKey", "create_agent_key", "A key for the agent."),
        ("UpdateAgent", "update_agent", "Change the agent."),
        ("ListRules", "list_rules", "The agent's rules."),
        ("CreateRule", "create_rule", "Add a rule."),
        (
            "SetSoul",
            "set_soul",
            "The owner's instructions to the agent.",
        ),
        ("SetStores", "set_stores", "Trusted and blocked stores."),
        ("KillSwitch", "owner_kill_switch", "Suspend the agent."),
        ("Reactivate", "reactivate_agent", "Lift a suspension."),
    ] {
        links.push((
            "/api/v1/agents",
            "post",
            "201",
            name,
            link(operation, agent_id.clone(), description),
        ));
    }
    for (path, method, status, name, value) in links {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(response) = doc.pointer_mut(&pointer) {
            response["links"][name] = value;
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront API",
        description = "The agent storefront: discover products, get deterministic quotes, order idempotently, pay with credit, card or HTTP 402 (MPP), receive machines with SSH credentials and manage them. Every response under /api/v1 uses the envelope {\"ok\": true, \"data\": ...} or {\"ok\": false, \"error\": {code, message, suggestion, param, type}}.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = "catalog", description = "Products and what they need"),
        (name = "quotes", description = "Deterministic prices"),
        (name = "orders", description = "Idempotent orders on every rail"),
        (name = "payments", description = "Card checkout, top-ups and the Stripe webhook"),
        (name = "services", description = "Machines and their management"),
        (name = "account", description = "Balance, ledger and API keys"),
        (name = "governance", description = "Agents, their rules and the agent's pre-action check"),
    )
)]
pub struct ApiDoc;

/// `/docs`: every operation of the document with its parameters, body and answers, as HTML.
pub fn render_docs(api: &OpenApi) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Start with <a href=\"/llms.txt\">/llms.txt</a>.</p>",
        escape(&api.info.title),
        escape(api.info.description.as_deref().unwrap_or(""))
    );
    for (path, item) in &api.paths.paths {
        for (method, op) in operations(item) {
            let _ = write!(
                body,
                "<section><h2><code>{method} {}</code></h2><p>{}</p>",
                escape(path),
                escape(
                    op.summary
                        .as_deref()
                        .or(op.description.as_deref())
                        .unwrap_or("")
                )
            );
            if let Some(d) = op
                .description
                .as_deref()
                .filter(|d| Some(*d) != op.summary.as_deref())
            {
                let _ = write!(body, "<p>{}</p>", escape(d));
            }
            if let Some(params) = &op.parameters {
                body.push_str("<h3>Parameters</h3><ul>");
                for p in params.iter().filter_map(|p| match p {
                    RefOr::T(p) => Some(p),
                    RefOr::Ref(_) => None,
                }) {
                    let _ = write!(
                        body,
                        "<li><code>{}</code> ({}){} — {}</li>",
                        escape(&p.name),
                        serde_json::to_value(&p.parameter_in)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        if matches!(p.required, utoipa::openapi::Required::True) {
                            ", required"
                        } else {
                            ""
                        },
                        escape(p.description.as_deref().unwrap_or(""))
                    );
                }
                body.push_str("</ul>");
            }
            if let Some(RefOr::T(req)) = &op.request_body {
                for (media, content) in &req.content {
                    let schema = match content {
                        RefOr::T(c) => schema_name(&c.schema),
                        RefOr::Ref(r) => r.ref_location.clone(),
                    };
                    let _ = write!(
                        body,
                        "<h3>Body ({})</h3><p><code>{}</code></p>",
                        escape(media),
                        escape(&schema)
                    );
                }
            }
            body.push_str("<h3>Answers</h3><ul>");
            for (status, response) in &op.responses.responses {
                let description = match response {
                    RefOr::T(r) => r.description.clone(),
                    RefOr::Ref(r) => r.ref_location.clone(),
                };
                let _ = write!(
                    body,
                    "<li><code>{}</code> {}</li>",
                    escape(status),
                    escape(&description)
                );
            }
            body.push_str("</ul></section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Storefront API reference</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;line-height:1.45}}section{{border-top:1px solid #ccc;padding:.5rem 0}}code{{background:#f3f3f3;padding:0 .2rem}}h2{{font-size:1.1rem}}h3{{font-size:.95rem;margin-bottom:.2rem}}</style></head><body>{body}</body></html>"
    )
}

fn operations(
    item: &utoipa::openapi::PathItem,
) -> Vec<(&'static str, &utoipa::openapi::path::Operation)> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

fn schema_name(schema: &Option<RefOr<utoipa::openapi::schema::Schema>>) -> String {
    match schema {
        Some(RefOr::Ref(r)) => r
            .ref_location
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        Some(RefOr::T(_)) => "inline schema (see /openapi.json)".into(),
        None => String::new(),
    }
}

fn escape(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
