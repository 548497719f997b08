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
        (name = "events", description = "What happened in the account, in order: a list and a live stream (Server-Sent Events)"),
        (name = "webhooks", description = "Endpoints that receive events, signed per Standard Webhooks, and their deliveries"),
    )
)]
pub struct ApiDoc;

/// `/docs`: every operation of the document with its parameters, body and answers, as HTML.
pub fn render_docs(doc: &serde_json::Value) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Start with <a href=\"/llms.txt\">/llms.txt</a>.</p>",
        escape(doc["info"]["title"].as_str().unwrap_or("")),
        prose(doc["info"]["description"].as_str().unwrap_or(""))
    );
    let schemas = &doc["components"]["schemas"];
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let summary = op["summary"]
                .as_str()
                .or(op["description"].as_str())
                .unwrap_or("");
            let _ = write!(
                body,
                "<section><h2><code>{} {}</code></h2><p>{}</p>",
                method.to_uppercase(),
                escape(path),
                prose(summary)
            );
            if let Some(d) = op["description"].as_str().filter(|d| *d != summary) {
                let _ = write!(body, "<p>{}</p>", prose(d));
            }
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                body.push_str("<h3>Parameters</h3><ul>");
                for p in params {
                    let _ = write!(
                        body,
                        "<li><code>{}</code> ({}, {}{}){} — {}</li>",
                        escape(p["name"].as_str().unwrap_or("")),
                        escape(p["in"].as_str().unwrap_or("")),
                        escape(&type_of(&p["schema"])),
                        constraints(&p["schema"]),
                        if p["required"] == true {
                            ", required"
                        } else {
                            ""
                        },
                        prose(p["description"].as_str().unwrap_or(""))
                    );
                }
                body.push_str("</ul>");
            }
            for (media, content) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let schema = resolve(&content["schema"], schemas);
                let _ = write!(body, "<h3>Body ({})</h3>", escape(media));
                if let Some(d) = schema["description"].as_str() {
                    let _ = write!(body, "<p>{}</p>", prose(d));
                }
                body.push_str(&fields(schema, schemas));
                let _ = write!(
                    body,
                    "<p>Example:</p><pre><code>{}</code></pre>",
                    escape(
                        &serde_json::to_string_pretty(&example(schema, schemas, 0))
                            .unwrap_or_default()
                    )
                );
            }
            body.push_str("<h3>Answers</h3><ul>");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let _ = write!(
                    body,
                    "<li><code>{}</code> {}</li>",
                    escape(status),
                    prose(response["description"].as_str().unwrap_or(""))
                );
            }
            body.push_str("</ul></section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Storefront API reference</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;line-height:1.45}}section{{border-top:1px solid #ccc;padding:.5rem 0}}code{{background:#f3f3f3;padding:0 .2rem}}pre{{background:#f3f3f3;padding:.5rem;overflow-x:auto}}table{{border-collapse:collapse}}td,th{{text-align:left;padding:.1rem .6rem .1rem 0;vertical-align:top}}h2{{font-size:1.1rem}}h3{{font-size:.95rem;margin-bottom:.2rem}}</style></head><body>{body}</body></html>"
    )
}

/// The schema a `$ref` names, or the schema itself.
fn resolve<'a>(
    schema: &'a serde_json::Value,
    schemas: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => &schemas[name],
        None => schema,
    }
}

/// A schema's type in words: `string`, `integer or null`, `array of Rule`, `PaymentMethod`.
fn type_of(schema: &serde_json::Value) -> String {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        return name.to_owned();
    }
    if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return choices.iter().map(type_of).collect::<Vec<_>>().join(" or ");
    }
    let of = |t: &str| {
        if t == "array" {
            format!("array of {}", type_of(&schema["items"]))
        } else {
            t.to_owned()
        }
    };
    match &schema["type"] {
        serde_json::Value::String(t) => of(t),
        serde_json::Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .map(of)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

/// The rules a value must follow, as `; 1-255 characters, one of: a, b`.
fn constraints(schema: &serde_json::Value) -> String {
    let mut rules = Vec::new();
    match (schema["minLength"].as_u64(), schema["maxLength"].as_u64()) {
        (Some(min), Some(max)) => rules.push(format!("{min}-{max} characters")),
        (Some(min), None) => rules.push(format!(
            "at least {min} character{}",
            if min == 1 { "" } else { "s" }
        )),
        (None, Some(max)) => rules.push(format!("at most {max} characters")),
        (None, None) => {}
    }
    match (schema["minimum"].as_i64(), schema["maximum"].as_i64()) {
        (Some(min), Some(max)) => rules.push(format!("{min} to {max}")),
        (Some(min), None) => rules.push(format!("at least {min}")),
        (None, Some(max)) => rules.push(format!("at most {max}")),
        (None, None) => {}
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        rules.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        rules.push(format!("matching {pattern}"));
    }
    if rules.is_empty() {
        String::new()
    } else {
        escape(&format!("; {}", rules.join(", ")))
    }
}

/// A body's fields, one row each: name, type and rules, required or not, what it is.
fn fields(schema: &serde_json::Value, schemas: &serde_json::Value) -> String {
    let Some(properties) = schema["properties"].as_object() else {
        return String::new();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    let mut rows = String::from(
        "<table><thead><tr><th>Field</th><th>Type</th><th></th><th>Description</th></tr></thead><tbody>",
    );
    for (name, property) in properties {
        let description = property["description"]
            .as_str()
            .or(resolve(property, schemas)["description"].as_str())
            .unwrap_or("");
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(&type_of(property)),
            constraints(property),
            if required.contains(&name.as_str()) {
                "required"
            } else {
                "optional"
            },
            prose(description)
        );
    }
    rows.push_str("</tbody></table>");
    if schema["oneOf"].is_array() {
        rows.push_str(
            "<p>Exactly one of the alternatives must be given (see the description).</p>",
        );
    }
    rows
}

/// A value that fits `schema`: its example or default when it has one, else the smallest value
/// its type and rules allow. Optional fields are left out of objects, except at the top.
fn example(
    schema: &serde_json::Value,
    schemas: &serde_json::Value,
    depth: usize,
) -> serde_json::Value {
    let schema = resolve(schema, schemas);
    if depth > 4 {
        return serde_json::Value::Null;
    }
    if let Some(v) = schema.get("example").or(schema.get("default")) {
        return v.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema["oneOf"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] != "null"))
    {
        if schema["properties"].is_null() {
            return example(first, schemas, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str())
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_owned(),
        _ if schema["properties"].is_object() => "object".into(),
        _ => "null".into(),
    };
    match kind.as_str() {
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            let properties = schema["properties"].as_object();
            let chosen = properties.into_iter().flatten().filter(|(name, _)| {
                required.contains(&name.as_str()) || (depth == 0 && required.is_empty())
            });
            serde_json::Value::Object(
                chosen
                    .map(|(name, p)| (name.clone(), example(p, schemas, depth + 1)))
                    .collect(),
            )
        }
        "array" => serde_json::Value::Array(vec![example(&schema["items"], schemas, depth + 1)]),
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(true),
        "string" => json!("..."),
        _ => serde_json::Value::Null,
    }
}

/// Escaped text whose Markdown code spans (`like this`) become `<code>` instead of showing
/// their backticks.
fn prose(raw: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(raw).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn escape(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
