//! The security matrix (OWASP API Security Top 10, 2023: broken object- and function-level
//! authorization, broken authentication): every operation of the live `/openapi.json` — read
//! from there, so a new route cannot escape — is called as every principal kind (docs/api.md,
//! "Principals") against account A's objects, and each answer must be one the contract allows:
//!
//! - nobody ever gets a 5xx;
//! - without a key, routes that need one answer `401`, and A's objects are never shown;
//! - another account's owner gets `404` for A's objects (existence does not leak), another
//!   account's agent `403` or `404`; lists and account pages show them nothing of A's;
//! - A's agent gets `403` on owner-only routes;
//! - a resource token reaches only its own service within its scope;
//! - a tampered or expired signed URL gets `403 invalid_signature` / `signature_expired`.
//!
//! Afterwards A's objects are all still there, unchanged.

mod common;

use common::machines::image_dir;
use common::{payments, Backend, Reply, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Account A's objects, by the path parameter that names them.
struct Fixture {
    owner: String,
    agent_key: String,
    email: String,
    ids: BTreeMap<&'static str, String>,
    checkout_id: String,
    /// Resource tokens of A's machine by scope (only when machines run here).
    tokens: BTreeMap<&'static str, String>,
    status_url: String,
}

fn data(r: &Reply, pointer: &str) -> String {
    r.body
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {}", r.body))
        .to_owned()
}

async fn fixture(s: &TestServer, machines: bool) -> Fixture {
    let email = format!("a-{}@example.com", common::uuid_like());
    let (account, created) = s.app.admin_create_account(&email, "A").await.unwrap();
    s.app
        .admin_grant_credits(account.id.as_str(), 100_000, "matrix")
        .await
        .unwrap();
    let owner = created.api_key;
    let mut ids = BTreeMap::new();
    ids.insert("product_id", "web-search".to_owned());

    let extra = s
        .post(
            "/api/v1/account/api-keys",
            Some(&owner),
            &json!({"role": "owner", "name": "spare"}),
        )
        .await;
    ids.insert("key_id", data(&extra, "/data/key_id"));

    let agent = s
        .post("/api/v1/agents", Some(&owner), &json!({"name": "a-agent"}))
        .await;
    let agent_id = data(&agent, "/data/agent/id");
    let agent_key = data(
        &s.post(
            &format!("/api/v1/agents/{agent_id}/keys"),
            Some(&owner),
            &json!({}),
        )
        .await,
        "/data/api_key",
    );
    let rule = s
        .post(
            &format!("/api/v1/agents/{agent_id}/rules"),
            Some(&owner),
            &json!({"kind": "product", "name": "ask", "action": "escalate", "params": {"deny": ["web-search"]}}),
        )
        .await;
    ids.insert("rule_id", data(&rule, "/data/rule/id"));
    ids.insert("agent_id", agent_id);

    // An agent purchase waiting for approval, and a checkout session.
    let waiting = s
        .order(
            Some(&agent_key),
            &common::uuid_like(),
            &json!({"product_id": "web-search", "configuration": {"query": "a"}, "payment_method": "credit"}),
        )
        .await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    let approvals = s
        .get("/api/v1/approvals?status=pending", Some(&owner))
        .await;
    ids.insert("approval_id", data(&approvals, "/data/approvals/0/id"));
    let checkout = s
        .post(
            "/api/v1/agent/checkout",
            Some(&agent_key),
            &json!({"items": [{"name": "Cable", "unit_amount": 500, "quantity": 1}], "merchant_domain": "shop.example"}),
        )
        .await;
    assert_eq!(checkout.status, 201, "{:?}", checkout.body);
    let checkout_id = data(&checkout, "/data/id");

    let quote = s
        .post(
            "/api/v1/quotes",
            Some(&owner),
            &json!({"product_id": "web-search", "configuration": {"query": "q"}}),
        )
        .await;
    ids.insert("quote_id", data(&quote, "/data/quote/id"));
    let top_up = s
        .post(
            "/api/v1/account/top-ups",
            Some(&owner),
            &json!({"amount_minor": 1000}),
        )
        .await;
    assert_eq!(top_up.status, 201, "{:?}", top_up.body);
    ids.insert("top_up_id", data(&top_up, "/data/top_up/id"));

    // The order the owner bought: a machine when machines run here (with its resource
    // tokens), else a search.
    let (order, mut tokens) = if machines {
        let r = s
            .order(
                Some(&owner),
                &common::uuid_like(),
                &json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 15}, "payment_method": "credit"}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let mut tokens = BTreeMap::new();
        for scope in ["read", "extend", "terminate"] {
            tokens.insert(
                scope,
                data(&r, &format!("/data/order/management_tokens/{scope}_token")),
            );
        }
        (r, tokens)
    } else {
        let r = s
            .order(
                Some(&owner),
                &common::uuid_like(),
                &json!({"product_id": "web-search", "configuration": {"query": "b"}, "payment_method": "credit"}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        (r, BTreeMap::new())
    };
    let order_id = data(&order, "/data/order/id");
    let status_url = data(&order, "/data/order/status_url");
    if machines {
        let done = s
            .poll_until(&format!("/api/v1/orders/{order_id}"), Some(&owner), |b| {
                b["data"]["order"]["status"] == "fulfilled"
            })
            .await;
        ids.insert(
            "service_id",
            done["data"]["order"]["service_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    } else {
        // No machine here: a well-formed id that names nothing, so every caller gets 404.
        ids.insert(
            "service_id",
            format!("svc_{}", common::uuid_like().replace('-', "")),
        );
        tokens.clear();
    }
    ids.insert("order_id", order_id);

    // A webhook endpoint of A's and a delivery to it (a ping). Loopback URLs are allowed on this
    // server so that no made-up host name is looked up; no delivery loop runs, nothing is sent.
    let endpoint = s
        .post(
            "/api/v1/webhook-endpoints",
            Some(&owner),
            &json!({"url": "http://127.0.0.1:9/hooks", "events": ["*"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{:?}", endpoint.body);
    let endpoint_id = data(&endpoint, "/data/webhook_endpoint/id");
    let ping = s
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint_id}/test"),
            Some(&owner),
            &json!({}),
        )
        .await;
    ids.insert("delivery_id", data(&ping, "/data/delivery/id"));
    ids.insert("endpoint_id", endpoint_id);
    Fixture {
        owner,
        agent_key,
        email,
        ids,
        checkout_id,
        tokens,
        status_url,
    }
}

/// A body the operation accepts, so answers reflect authorization rather than validation.
fn body_for(method: &Method, path: &str, f: &Fixture) -> Option<Value> {
    let checkout = json!({"checkout_id": f.checkout_id});
    let search = json!({"product_id": "web-search", "configuration": {"query": "m"}, "payment_method": "credit"});
    let body = match (method.as_str(), path) {
        ("POST", "/api/v1/account/api-keys") => json!({"role": "owner", "name": "m"}),
        ("POST", "/api/v1/account/top-ups") => json!({"amount_minor": 1000}),
        ("POST", "/api/v1/agent-auth/decide") => {
            json!({"user_code": "BCDF-GHJK", "decision": "approve"})
        }
        ("POST", "/api/v1/agent-auth/device") => {
            json!({"customer_email": f.email, "agent_name": "m"})
        }
        ("POST", "/api/v1/agent-auth/token") => json!({"device_code": "unknown"}),
        ("POST", "/api/v1/agent/check") => {
            json!({"action": "purchase", "transaction": {"amount_minor": 100, "currency": "usd", "merchant_name": "M", "merchant_domain": "m.example", "category": "compute"}})
        }
        ("POST", "/api/v1/agent/checkout") => {
            json!({"items": [{"name": "M", "unit_amount": 100, "quantity": 1}]})
        }
        ("POST", "/api/v1/agent/checkout/cancel")
        | ("POST", "/api/v1/agent/checkout/complete")
        | ("PUT", "/api/v1/agent/checkout/update") => checkout,
        ("POST", "/api/v1/agent/checkout/receipt") => {
            json!({"checkout_id": f.checkout_id, "receipt": {"external_id": "pi_1", "provider": "stripe", "amount_charged": 500}})
        }
        ("POST", "/api/v1/agent/connect") => {
            json!({"agent_name": "m", "agent_type": "t", "platform": "p", "capabilities": []})
        }
        ("POST", "/api/v1/agent/kill-switch") => json!({"confirm": true, "reason": "matrix"}),
        ("POST", "/api/v1/agents") => json!({"name": "m"}),
        ("PATCH", "/api/v1/agents/{agent_id}") => json!({"name": "renamed"}),
        ("POST", "/api/v1/agents/{agent_id}/kill-switch") => {
            json!({"confirm": true, "reason": "matrix"})
        }
        ("POST", "/api/v1/agents/{agent_id}/rules") => {
            json!({"kind": "per_transaction_cap", "name": "m", "params": {"max_minor": 5}})
        }
        ("PATCH", "/api/v1/agents/{agent_id}/rules/{rule_id}") => json!({"enabled": false}),
        ("PUT", "/api/v1/agents/{agent_id}/soul") => json!({"soul": "be frugal"}),
        ("PUT", "/api/v1/agents/{agent_id}/stores") => {
            json!({"trusted": ["shop.example"], "blocked": []})
        }
        ("POST", "/api/v1/approvals/{approval_id}/deny") => json!({"reason": "m"}),
        ("POST", "/api/v1/orders") | ("POST", "/api/v1/orders/validate") => search,
        ("POST", "/api/v1/orders/{order_id}/install") => json!({"config": {}}),
        ("POST", "/api/v1/quotes") => {
            json!({"product_id": "web-search", "configuration": {"query": "m"}})
        }
        ("POST", "/api/v1/services/{service_id}/extend") => json!({"additional_minutes": 15}),
        ("POST", "/api/v1/services/{service_id}/reinstall") => json!({"image": "debian-12"}),
        ("POST", "/api/v1/webhooks/stripe") => json!({}),
        ("POST", "/api/v1/webhook-endpoints") => {
            json!({"url": "http://127.0.0.1:9/hooks", "events": ["order.paid"]})
        }
        ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}") => json!({"description": "m"}),
        (m, _) if m == "GET" || m == "DELETE" => return None,
        _ => json!({}),
    };
    Some(body)
}

fn query_for(path: &str, f: &Fixture) -> String {
    match path {
        "/api/v1/agent/checkout" => format!("?checkout_id={}", f.checkout_id),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    OtherOwner,
    OtherAgent,
    ThisAgent,
    Token(&'static str),
}

/// Operations that would destroy A's fixtures when they succeed for a principal that may use
/// them; those principals are not sent there (others still are).
fn destroys_fixture(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("POST", "/api/v1/agent/kill-switch")
            | ("DELETE", "/api/v1/services/{service_id}")
            | ("POST", "/api/v1/services/{service_id}/terminate")
            | ("POST", "/api/v1/services/{service_id}/reinstall")
            | ("POST", "/api/v1/agent/checkout/cancel")
    )
}

async fn call(
    s: &TestServer,
    method: &Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut req = s
        .client
        .request(method.clone(), s.url(url))
        .header("Idempotency-Key", common::uuid_like());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    if url.starts_with("/api/v1/events/stream") {
        // A stream that opens never ends: its status and headers are the answer.
        let resp = req.send().await.expect("request reaches the server");
        if resp.status().is_success() {
            return Reply {
                status: resp.status(),
                headers: resp.headers().clone(),
                body: Value::Null,
            };
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        return Reply {
            status,
            headers,
            body,
        };
    }
    s.send(req).await
}

dual_test!(every_route_answers_every_principal_as_the_contract_allows);
async fn every_route_answers_every_principal_as_the_contract_allows(backend: Backend) {
    let (s, _stripe) = payments::start_with(&backend, |c| {
        c.rate_limit_per_minute = 0;
        c.public_rate_limit_per_minute = 0;
        c.webhooks.allow_private_targets = true;
    })
    .await;
    s.start_worker();
    let machines = image_dir().is_some();
    let f = fixture(&s, machines).await;
    let (_, other_owner) = s.account(10_000).await;
    let other_agent = {
        let a = s
            .post(
                "/api/v1/agents",
                Some(&other_owner),
                &json!({"name": "b-agent"}),
            )
            .await;
        let id = data(&a, "/data/agent/id");
        data(
            &s.post(
                &format!("/api/v1/agents/{id}/keys"),
                Some(&other_owner),
                &json!({}),
            )
            .await,
            "/data/api_key",
        )
    };
    // What must never appear in an answer to another account.
    let secrets_of_a: Vec<String> = f
        .ids
        .iter()
        .filter(|(name, _)| **name != "product_id")
        .map(|(_, v)| v.clone())
        .chain([f.checkout_id.clone(), f.email.clone()])
        .collect();

    let spec = s.get("/openapi.json", None).await.body;
    let mut covered = 0;
    let mut failures = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let security = op.get("security").and_then(Value::as_array);
            // `null` or a `{}` alternative: the route also answers callers without a key.
            let open = security.is_none_or(|alts| alts.iter().any(|a| a == &json!({})));
            let owns_objects = path.contains('{') && !path.contains("{product_id}");
            let service_route = path.contains("{service_id}");
            let mut url = path.clone();
            for (name, value) in &f.ids {
                url = url.replace(&format!("{{{name}}}"), value);
            }
            url.push_str(&query_for(path, &f));
            let body = body_for(&method, path, &f);
            let mut principals = vec![
                Who::Nobody,
                Who::OtherOwner,
                Who::OtherAgent,
                Who::ThisAgent,
            ];
            principals.extend(f.tokens.keys().map(|scope| Who::Token(scope)));
            for who in principals {
                if matches!(who, Who::ThisAgent | Who::Token(_)) && destroys_fixture(&method, path)
                {
                    continue;
                }
                let key = match who {
                    Who::Nobody => None,
                    Who::OtherOwner => Some(other_owner.as_str()),
                    Who::OtherAgent => Some(other_agent.as_str()),
                    Who::ThisAgent => Some(f.agent_key.as_str()),
                    Who::Token(scope) => Some(f.tokens[scope].as_str()),
                };
                let r = call(&s, &method, &url, key, body.as_ref()).await;
                let status = r.status.as_u16();
                let text = r.body.to_string();
                let mut verdict: Option<String> = None;
                if status >= 500 {
                    verdict = Some("a server error".into());
                }
                match who {
                    Who::Nobody => {
                        if !open && status != 401 {
                            verdict = Some("not 401 without a key".into());
                        }
                        if owns_objects && r.status.is_success() {
                            verdict = Some("A's object shown to nobody".into());
                        }
                    }
                    Who::OtherOwner | Who::OtherAgent => {
                        // A key of the wrong kind is refused for what it is (403) before anything
                        // is looked up (agent keys on owner routes, owner keys on agent routes,
                        // any key on a signed URL's route); otherwise another account's object
                        // is 404.
                        let role_refusal = who == Who::OtherAgent
                            || path.starts_with("/api/v1/agent/")
                            || security.is_none();
                        let allowed: &[u16] = if role_refusal { &[403, 404] } else { &[404] };
                        if owns_objects && !allowed.contains(&status) {
                            verdict = Some(format!("not {allowed:?} for another account's object"));
                        }
                        // Echoing the id the caller sent is not a leak; anything else of A's is.
                        let sent = format!(
                            "{url} {}",
                            body.as_ref().map(Value::to_string).unwrap_or_default()
                        );
                        if let Some(leak) = secrets_of_a
                            .iter()
                            .find(|v| text.contains(v.as_str()) && !sent.contains(v.as_str()))
                        {
                            verdict = Some(format!("shows A's {leak}"));
                        }
                    }
                    Who::ThisAgent => {
                        let owner_only = path.starts_with("/api/v1/agents")
                            || path.starts_with("/api/v1/approvals")
                            || path.starts_with("/api/v1/account/api-keys")
                            || path.starts_with("/api/v1/account/top-ups")
                            || path.starts_with("/api/v1/audit")
                            || path == "/api/v1/agent-auth/decide";
                        if owner_only && status != 403 {
                            verdict = Some("an agent key on an owner-only route".into());
                        }
                    }
                    Who::Token(scope) => {
                        let in_scope = service_route
                            && match scope {
                                "read" => method == Method::GET,
                                "extend" => path.ends_with("/extend"),
                                _ => path.ends_with("/terminate") || method == Method::DELETE,
                            };
                        let public = security.is_none();
                        // Open routes answer a token as they answer anybody.
                        if r.status.is_success() && !in_scope && !open && !public {
                            verdict = Some(format!("a {scope} token reached beyond its scope"));
                        }
                        let own_service = scope == "read"
                            && method == Method::GET
                            && path == "/api/v1/services/{service_id}";
                        if !r.status.is_success() && own_service {
                            verdict = Some(format!("a {scope} token refused its own service"));
                        }
                    }
                }
                if let Some(v) = verdict {
                    failures.push(format!("{method} {path} as {who:?}: {v} ({status} {text})"));
                }
            }
            covered += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let routes: usize = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        covered, routes,
        "every operation of /openapi.json was tried"
    );

    // Signed URLs: exactly that path until `expires`; a changed signature, path or expiry fails.
    let (path, query) = f.status_url.split_once('?').unwrap();
    let path = &path[path.find("/api/").unwrap()..];
    let ok = s.get(&format!("{path}?{query}"), None).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let tampered_sig = query.replace("sig=", "sig=0");
    let other_order = path.replace(&f.ids["order_id"], &f.ids["approval_id"]);
    let later = {
        let expires: i64 = query
            .split('&')
            .find_map(|p| p.strip_prefix("expires="))
            .unwrap()
            .parse()
            .unwrap();
        query.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 1),
        )
    };
    for (url, why) in [
        (format!("{path}?{tampered_sig}"), "tampered signature"),
        (format!("{path}?{later}"), "extended expiry"),
        (format!("{other_order}?{query}"), "another path"),
    ] {
        let r = s.get(&url, None).await;
        assert!(
            r.status == 403 || r.status == 404,
            "{why}: {} {:?}",
            r.status,
            r.body
        );
        assert!(
            r.status == 404 || r.code() == "invalid_signature",
            "{why}: {:?}",
            r.body
        );
    }
    s.clock.advance(chrono::Duration::days(31));
    let expired = s.get(&format!("{path}?{query}"), None).await;
    assert_eq!(expired.status, 403);
    assert_eq!(expired.code(), "signature_expired");

    // A's objects are intact after everything the others tried.
    for path in [
        format!("/api/v1/agents/{}", f.ids["agent_id"]),
        format!("/api/v1/orders/{}", f.ids["order_id"]),
        format!("/api/v1/quotes/{}", f.ids["quote_id"]),
    ] {
        assert_eq!(s.get(&path, Some(&f.owner)).await.status, 200, "{path}");
    }
    let approval = s
        .get("/api/v1/approvals?status=pending", Some(&f.owner))
        .await;
    let still_pending = approval.body["data"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == f.ids["approval_id"].as_str());
    assert!(still_pending, "nobody else decided A's approval");
    let agent = s
        .get(
            &format!("/api/v1/agents/{}", f.ids["agent_id"]),
            Some(&f.owner),
        )
        .await;
    // (A's own agent renamed itself by connecting; nobody else suspended or removed it.)
    assert_eq!(agent.body["data"]["agent"]["status"], "active");
}
