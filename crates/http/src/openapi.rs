//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! wire types' derived schemas (`utoipa`, `utoipa-axum`): a route cannot be served without being
//! documented, because the router and the document are built from the same list.
//!
//! Also the human reference at `/docs`, rendered on the server from the same document (no
//! external scripts or fonts).

use serde::Serialize;
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
