//! Discovery documents (docs/api.md, "Discovery"): what an agent reads first to learn what is for
//! sale and how to buy it. Generated from the live catalog and settings on every request, so they
//! cannot drift from what the API really does.

use crate::app::App;
use serde_json::{json, Value};
use storefront_domain::catalog::{Product, ProductKind};

/// What agents may not do with what they buy here (docs/api.md, "Discovery").
const PROHIBITED_USES: &[&str] = &[
    "Spam, unsolicited bulk messaging, phishing, credential harvesting, or impersonation.",
    "Network scanning, vulnerability probing, exploitation, denial-of-service activity, or traffic amplification against systems you do not own or have explicit permission to test.",
    "Malware, botnets, command-and-control infrastructure, cryptojacking, or evasion tooling.",
    "Cryptocurrency mining or other resource-draining workloads unrelated to the stated task.",
    "Hosting, storing, or distributing illegal, infringing, abusive, or deceptive content.",
    "Bypassing access controls, rate limits, geofencing, sanctions controls, or platform safety systems.",
    "Processing highly sensitive data without appropriate authorization, safeguards, and legal basis.",
];

/// The recommended workflow, step by step (docs/api.md, "Discovery").
const WORKFLOW: &[(&str, &str)] = &[
    ("discover", "GET /api/v1/products (filter with ?q= and ?category=); pick a product with \"available\": true."),
    ("requirements", "GET /api/v1/products/{product_id}/requirements for the fields its configuration needs."),
    ("quote", "POST /api/v1/quotes {product_id, configuration}; read configuration_normalized and configuration_warnings (invalid optional values are defaulted down, not clamped up)."),
    ("validate", "Optional: POST /api/v1/orders/validate with the order body; nothing is created."),
    ("order", "POST /api/v1/orders {quote_id} with a unique Idempotency-Key; retry with the same key and body after a network error, never with a new key."),
    ("poll", "Poll the signed status_url (or GET /api/v1/orders/{id}) honouring Retry-After until the order is fulfilled; fulfilled is not ready until credentials_available is true."),
    ("install", "If the order is awaiting_install_configuration, POST {config} to install_action.url."),
    ("use", "Fetch credentials from credentials_action.url once credentials_available is true; manage the service with /api/v1/services/{id} (restart, reinstall, extend, terminate)."),
    ("finish", "Terminate machines when done; leases also end at expires_at."),
];

impl App {
    /// `GET /.well-known/agent-storefront.json`.
    /// The public URL discovery documents name: the configured `base_url`, or — when none is
    /// configured — the scheme and `Host` the request came with (a plain host name or address
    /// with an optional port; anything else falls back to the default).
    pub fn public_base(&self, host: Option<&str>, https: bool) -> String {
        if self.settings.base_url_configured {
            return self.settings.base_url.clone();
        }
        let valid = |h: &&str| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        };
        match host.filter(valid) {
            Some(h) => format!("{}://{h}", if https { "https" } else { "http" }),
            None => self.settings.base_url.clone(),
        }
    }

    /// `base`: the public URL to write into the document (see `public_base`).
    pub fn manifest(&self, base: &str) -> Value {
        let products: Vec<Value> = self
            .catalog
            .products()
            .iter()
            .map(|p| {
                json!({
                    "id": p.id, "name": p.name, "category": p.category, "kind": p.kind,
                    "price_summary": p.pricing.summary(), "available": p.available,
                    "unavailable_reason": p.unavailable_reason,
                    "url": format!("{base}/api/v1/products/{}", p.id),
                })
            })
            .collect();
        json!({
            "name": "Storefront",
            "base_url": base,
            "version": env!("CARGO_PKG_VERSION"),
            "api_base": format!("{base}/api/v1"),
            "products": products,
            "workflow": WORKFLOW.iter().enumerate().map(|(i, (step, how))| json!({"step": i + 1, "name": step, "how": how})).collect::<Vec<_>>(),
            "payment_methods": self.payment_method_guide(),
            "auth": [
                {"scheme": "bearer", "prefix": "sf_live_", "header": "Authorization: Bearer <api key>", "for": "owner and agent keys: quote, order, pay with credit, manage services"},
                {"scheme": "bearer", "prefix": "sf_res_", "header": "Authorization: Bearer <resource token>", "for": "one action (read, extend, terminate) on one service; returned once with the order"},
                {"scheme": "signed_url", "query": ["expires", "sig"], "for": "status_url, install_action.url, credentials_action.url: exactly that method and path until expires"},
            ],
            "polling": {
                "honour_retry_after": true,
                "guidance": "Poll non-terminal orders and services no faster than their Retry-After header; provisioning_estimate says how long delivery usually takes.",
            },
            "idempotency": {"header": "Idempotency-Key", "body_alias": "request_id", "max_length": 255, "retention": "permanent"},
            "links": {
                "llms_txt": format!("{base}/llms.txt"),
                "openapi": format!("{base}/openapi.json"),
                "api_reference": format!("{base}/docs"),
                "agent_policy": format!("{base}/agent-policy.json"),
                "acceptable_use": format!("{base}/acceptable-use"),
                "health": format!("{base}/healthz"),
            },
            "mcp": {"url": format!("{base}/mcp"), "transport": "streamable-http", "auth": "the same bearer key as REST", "stdio_command": "storefront mcp"},
            "acceptable_use": {"summary": "Lawful, authorized development, automation, testing and compute only.", "prohibited": PROHIBITED_USES},
        })
    }

    /// The payment methods this storefront offers: unconfigured rails are not advertised.
    fn payment_method_guide(&self) -> Value {
        let offered = [
            (
                true,
                json!({"method": "credit", "requires": "an API key (owner or agent); the account's prepaid credits (1 credit = 1 minor unit)", "suits": "agents acting for an account that prepaid"}),
            ),
            (
                self.card_enabled(),
                json!({"method": "card", "requires": "customer_email and billing_name, billing_street, billing_city, billing_postal_code, billing_country (ISO 3166-1 alpha-2); never guess them", "flow": "the order answers payment_action.url, a hosted page for the human; it stays pending_payment until paid", "suits": "public agents with a customer who pays by card"}),
            ),
            (
                self.mpp_enabled(),
                json!({"method": "mpp", "requires": "an HTTP 402 Machine Payments Protocol client (method stripe, intent charge)", "flow": "POST /api/v1/orders without a key answers 402 with WWW-Authenticate: Payment; pay it and retry the identical body with the same Idempotency-Key (or request_id) and Authorization: Payment <credential>", "suits": "agents with a wallet, paying per request"}),
            ),
        ];
        Value::Array(
            offered
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, m)| m)
                .collect(),
        )
    }

    /// `GET /agent-policy.json` (docs/api.md, "Discovery"): what agents may and may not do here.
    pub fn agent_policy(&self, base: &str) -> Value {
        json!({
            "allowed": [
                "Browse, quote and validate without a key.",
                "Order and pay within the payment method your principal may use.",
                "Manage services you bought with your key or the resource token for that action.",
            ],
            "not_allowed": PROHIBITED_USES,
            "payment_methods": self.payment_method_guide(),
            "secrets": {
                "treat_as_bearer_secrets": ["API keys (sf_live_)", "resource tokens (sf_res_)", "signed URLs (status_url, install_action.url, credentials_action.url)", "machine private keys"],
                "guidance": "Never log secrets or paste them into chats; they are shown once and stored only hashed here.",
            },
            "retries": "Retry a failed request with the same Idempotency-Key and the same body; a new key is a new purchase.",
            "rate_limits": {
                "per_api_key_per_minute": self.settings.rate_limit_per_minute,
                "per_address_per_minute_without_key": self.settings.public_rate_limit_per_minute,
                "failed_authentications_per_address_per_minute": self.settings.failed_auth_per_minute,
                "unlimited_when": 0,
                "on_limit": "429 rate_limited with Retry-After; every answer carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset",
            },
            "acceptable_use": format!("{base}/acceptable-use"),
        })
    }

    /// `GET /acceptable-use`, Markdown (docs/api.md, "Discovery").
    pub fn acceptable_use(&self) -> String {
        let mut text = String::from("# Acceptable use\n\nUse what you buy here only for lawful, authorized development, automation, testing, debugging and compute tasks.\n\n## Not allowed\n\n");
        for rule in PROHIBITED_USES {
            text.push_str(&format!("- {rule}\n"));
        }
        text.push_str("\n## Secrets\n\nTreat API keys, resource tokens, signed URLs and machine credentials as secrets: do not log or publish them.\n\n## Enforcement\n\nThe operator may terminate services that break these rules, without refund.\n");
        text
    }

    /// `GET /llms.txt`: the same as the manifest, as plain text for a language model.
    /// A complete purchase with `curl` and a POSIX shell, for the first available machine (or,
    /// without one, the first available instant product), runnable as written.
    fn llms_example(&self, base: &str) -> String {
        let available = || self.catalog.products().iter().filter(|p| p.available);
        let machine =
            available().find(|p| p.kind == ProductKind::Async && !p.requires_install_configuration);
        let instant = available().find(|p| p.kind == ProductKind::Instant);
        let auth = "-H \"Authorization: Bearer $STOREFRONT_API_KEY\"";
        let json = "-H 'Content-Type: application/json'";
        let mut t = String::from("\n## Example: a complete purchase with curl\n\nSet STOREFRONT_API_KEY to your key (from the operator, or POST /api/v1/account/api-keys). Every call answers JSON; ids have a type prefix, so grep finds them.\n\n```sh\n");
        let quote = |product: &Product| {
            // Inside a single-quoted shell word: a quote in a default value must not end it.
            let configuration = Value::Object(product.example_configuration())
                .to_string()
                .replace('\'', "'\\''");
            format!(
                "curl -s {base}/api/v1/products/{id}/requirements\nQUOTE_ID=$(curl -s {base}/api/v1/quotes {json} -d '{{\"product_id\": \"{id}\", \"configuration\": {configuration}}}' | grep -o 'qt_[0-9a-f]*' | head -n 1)\nORDER=$(curl -s {base}/api/v1/orders {auth} {json} -H \"Idempotency-Key: order-$QUOTE_ID\" -d \"{{\\\"quote_id\\\": \\\"$QUOTE_ID\\\"}}\")\necho \"$ORDER\"\nORDER_ID=$(echo \"$ORDER\" | grep -o 'ord_[0-9a-f]*' | head -n 1)\n",
                id = product.id
            )
        };
        t.push_str(&format!("curl -s {base}/api/v1/products\n"));
        match (machine, instant) {
            (Some(m), _) => {
                t.push_str(&quote(m));
                t.push_str(&format!(
                    "# Machines take a moment: poll until credentials_available is true.\nuntil curl -s {base}/api/v1/orders/$ORDER_ID {auth} | grep -q '\"credentials_available\":true'; do sleep 3; done\nSERVICE_ID=$(curl -s {base}/api/v1/orders/$ORDER_ID {auth} | grep -o 'svc_[0-9a-f]*' | head -n 1)\ncurl -s {base}/api/v1/services/$SERVICE_ID/credentials {auth}\n# When finished:\ncurl -s -X POST {base}/api/v1/services/$SERVICE_ID/terminate {auth}\n"
                ));
            }
            (None, Some(i)) => {
                t.push_str(&quote(i));
                t.push_str(&format!(
                    "# Instant products answer fulfilled with the result at once.\ncurl -s {base}/api/v1/orders/$ORDER_ID {auth}\n"
                ));
            }
            (None, None) => t.push_str("# Nothing is available to buy here right now.\n"),
        }
        t.push_str("```\n");
        t
    }

    pub fn llms_txt(&self, base: &str) -> String {
        let mut t = format!("# Storefront\n\nThis storefront sells to AI agents. API base: {base}/api/v1 (JSON, envelope {{\"ok\": true, \"data\": ...}}).\n\n## Products\n\n");
        for p in self.catalog.products() {
            let availability = if p.available {
                String::new()
            } else {
                format!(
                    " — unavailable: {}",
                    p.unavailable_reason.as_deref().unwrap_or("not configured")
                )
            };
            let kind = match p.kind {
                ProductKind::Instant => "instant",
                ProductKind::Async => "async",
            };
            t.push_str(&format!(
                "- {} ({}, {kind}): {} — {}{availability}\n",
                p.id,
                p.name,
                p.pricing.summary(),
                p.description
            ));
        }
        t.push_str("\n## Workflow\n\n");
        for (i, (step, how)) in WORKFLOW.iter().enumerate() {
            t.push_str(&format!("{}. {step}: {how}\n", i + 1));
        }
        t.push_str(&self.llms_example(base));
        t.push_str(&format!(
            "\n## Documents\n\n- Manifest: {base}/.well-known/agent-storefront.json\n- OpenAPI 3.1: {base}/openapi.json (reference: {base}/docs)\n- Agent policy: {base}/agent-policy.json\n- Acceptable use: {base}/acceptable-use\n- MCP (streamable HTTP, same bearer key): {base}/mcp\n"
        ));
        t
    }
}
