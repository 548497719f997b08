//! The owner dashboard (`/dashboard`): sessions (owner key or one-time login code; expiry,
//! revocation, sign-out), CSRF on every form, and other accounts' objects never showing, by URL
//! guessing included — over plain HTTP. Then the whole owner journey in headless Chromium
//! (`tests/clients/dashboard_browser.mjs`), which writes a screenshot of each page.

mod common;

use common::machines::{image_dir, ssh};
use common::{Backend, TestServer};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A browser without JavaScript: keeps the session cookie, never follows redirects.
struct Browser<'a> {
    s: &'a TestServer,
    http: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: String,
    body: String,
    set_cookie: String,
}

impl Page {
    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("the page has a form") + marker.len();
        self.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(s: &'a TestServer) -> Self {
        Self {
            s,
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header(COOKIE, c),
            None => req,
        };
        let resp = req.send().await.expect("the server answers");
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (location, set_cookie) = (header(LOCATION), header(SET_COOKIE));
        if let Some(pair) = set_cookie.split(';').next().filter(|p| !p.is_empty()) {
            self.cookie = Some(pair.to_owned());
        }
        Page {
            status: resp.status().as_u16(),
            location,
            set_cookie,
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(self.s.url(path));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(self.s.url(path)).form(form);
        self.send(req).await
    }

    async fn sign_in(&mut self, credential: &str) -> Page {
        self.post("/dashboard/login", &[("credential", credential)])
            .await
    }
}

/// An account with an agent (id, key) whose every purchase waits for approval, and one such
/// purchase: (owner key, agent id, agent key, order id, approval id).
async fn account_with_waiting_order(s: &TestServer) -> (String, String, String, String, String) {
    let (_, owner) = s.account(5_000).await;
    let agent = s
        .post("/api/v1/agents", Some(&owner), &json!({"name": "buyer"}))
        .await;
    let agent_id = agent.body["data"]["agent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = s
        .post(
            &format!("/api/v1/agents/{agent_id}/keys"),
            Some(&owner),
            &json!({}),
        )
        .await;
    let agent_key = key.body["data"]["api_key"].as_str().unwrap().to_owned();
    let rule = s
        .post(
            &format!("/api/v1/agents/{agent_id}/rules"),
            Some(&owner),
            &json!({"kind": "product", "name": "ask me", "action": "escalate", "params": {"deny": ["web-search"]}}),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let order = s
        .order(
            Some(&agent_key),
            &common::uuid_like(),
            &json!({"product_id": "web-search", "configuration": {"query": "q", "max_results": 1}, "payment_method": "credit"}),
        )
        .await;
    assert_eq!(order.status, 202, "{:?}", order.body);
    let order_id = order.body["data"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approvals = s
        .get("/api/v1/approvals?status=pending", Some(&owner))
        .await;
    let approval_id = approvals.body["data"]["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (owner, agent_id, agent_key, order_id, approval_id)
}

dual_test!(sessions_open_with_owner_keys_or_login_codes_and_end);
async fn sessions_open_with_owner_keys_or_login_codes_and_end(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account, owner) = s.account(0).await;

    // Without a session every page leads to the sign-in form, remembering where it was going.
    let mut b = Browser::new(&s);
    let page = b.get("/dashboard/ledger?cursor=x").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location,
        "/dashboard/login?next=%2Fdashboard%2Fledger%3Fcursor%3Dx"
    );

    // An owner key opens a session in an HttpOnly, SameSite=Strict cookie scoped to the
    // dashboard (not Secure: this server's public URL is plain HTTP).
    let page = b.sign_in(&owner).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location, "/dashboard");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age="] {
        assert!(page.set_cookie.contains(attribute), "{}", page.set_cookie);
    }
    assert!(!page.set_cookie.contains("Secure"));
    let overview = b.get("/dashboard").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Pending approvals"));

    // Agent keys and wrong secrets open nothing.
    let agent = s
        .post("/api/v1/agents", Some(&owner), &json!({"name": "a"}))
        .await;
    let agent_id = agent.body["data"]["agent"]["id"].as_str().unwrap();
    let agent_key = s
        .post(
            &format!("/api/v1/agents/{agent_id}/keys"),
            Some(&owner),
            &json!({}),
        )
        .await
        .body["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut other = Browser::new(&s);
    assert_eq!(other.sign_in(&agent_key).await.status, 403);
    assert_eq!(other.sign_in("sf_live_nope").await.status, 401);
    assert_eq!(other.sign_in("").await.status, 400);
    // A sign-in form on another site cannot sign a visitor in (login CSRF).
    let req = other
        .http
        .post(s.url("/dashboard/login"))
        .header("Origin", "https://evil.example")
        .form(&[("credential", owner.as_str())]);
    assert_eq!(other.send(req).await.status, 403);
    assert!(other.cookie.is_none());

    // A login code works once, and only for ten minutes.
    let code = s.app.admin_login_code(&account).await.unwrap().code;
    let mut by_code = Browser::new(&s);
    assert_eq!(by_code.sign_in(&code).await.status, 303);
    assert_eq!(by_code.get("/dashboard/keys").await.status, 200);
    assert_eq!(Browser::new(&s).sign_in(&code).await.status, 401);
    let late = s.app.admin_login_code(&account).await.unwrap().code;
    s.clock.advance(chrono::Duration::minutes(11));
    assert_eq!(Browser::new(&s).sign_in(&late).await.status, 401);

    // Signing out ends the session on the server, not only in the browser; other sessions live.
    let signed_out = b.cookie.clone();
    let page = b.get("/dashboard").await;
    let out = b.post("/dashboard/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);
    let mut replay = Browser::new(&s);
    replay.cookie = signed_out;
    assert_eq!(replay.get("/dashboard").await.status, 303);
    assert_eq!(by_code.get("/dashboard").await.status, 200);

    // Revoking the key a session was opened with ends that session.
    let mut by_key = Browser::new(&s);
    let created = s
        .post(
            "/api/v1/account/api-keys",
            Some(&owner),
            &json!({"role": "owner", "name": "temp"}),
        )
        .await;
    let (key_id, secret) = (
        created.body["data"]["key_id"].as_str().unwrap().to_owned(),
        created.body["data"]["api_key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(by_key.sign_in(&secret).await.status, 303);
    assert_eq!(by_key.get("/dashboard").await.status, 200);
    let revoked = s
        .send(
            s.client
                .delete(s.url(&format!("/api/v1/account/api-keys/{key_id}")))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(by_key.get("/dashboard").await.status, 303);

    // Sessions expire after twelve hours.
    s.clock.advance(chrono::Duration::hours(12));
    assert_eq!(by_code.get("/dashboard").await.status, 303);
}

dual_test!(forms_without_the_session_csrf_token_are_refused);
async fn forms_without_the_session_csrf_token_are_refused(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, owner) = s.account(0).await;
    let mut b = Browser::new(&s);
    b.sign_in(&owner).await;
    let token = b.get("/dashboard/agents").await.csrf();

    // Another session's token is as wrong as none.
    let mut other = Browser::new(&s);
    other.sign_in(&owner).await;
    let foreign = other.get("/dashboard/agents").await.csrf();
    assert_ne!(token, foreign);

    for form in [
        vec![("name", "forged")],
        vec![("name", "forged"), ("csrf", "")],
        vec![("name", "forged"), ("csrf", foreign.as_str())],
    ] {
        let page = b.post("/dashboard/agents", &form).await;
        assert_eq!(page.status, 403, "{form:?}");
        assert!(page.body.contains("CSRF"));
    }
    let agents = s.get("/api/v1/agents", Some(&owner)).await;
    assert_eq!(agents.body["data"]["agents"].as_array().unwrap().len(), 0);

    let page = b
        .post("/dashboard/agents", &[("name", "real"), ("csrf", &token)])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let agents = s.get("/api/v1/agents", Some(&owner)).await;
    assert_eq!(agents.body["data"]["agents"][0]["name"], "real");

    // Every answer forbids caching and framing and loads nothing from elsewhere.
    let resp = s
        .client
        .get(s.url("/dashboard/login"))
        .send()
        .await
        .unwrap();
    let headers = resp.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));

    // A rule with a missing parameter comes back on the same page, naming it.
    let agent_id = agents.body["data"]["agents"][0]["id"].as_str().unwrap();
    let page = b
        .post(
            &format!("/dashboard/agents/{agent_id}/rules"),
            &[
                ("csrf", &token),
                ("kind", "budget"),
                ("action", "deny"),
                ("max_minor", "500"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("period"), "{}", page.body);
    assert!(page.body.contains("New rule"));
}

dual_test!(another_accounts_objects_never_show);
async fn another_accounts_objects_never_show(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, agent_id, agent_key, order_id, approval_id) = account_with_waiting_order(&s).await;
    let (_, intruder) = s.account(0).await;
    let mut b = Browser::new(&s);
    b.sign_in(&intruder).await;
    let token = b.get("/dashboard").await.csrf();

    for path in [
        format!("/dashboard/agents/{agent_id}"),
        format!("/dashboard/orders/{order_id}"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.body.contains("buyer"));
    }
    for path in [
        "/dashboard/agents",
        "/dashboard/approvals",
        "/dashboard/orders",
        "/dashboard",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        for secret in [&agent_id, &order_id, &approval_id] {
            assert!(
                !page.body.contains(secret.as_str()),
                "{path} shows {secret}"
            );
        }
    }
    for (path, form) in [
        (
            format!("/dashboard/approvals/{approval_id}/approve"),
            vec![],
        ),
        (
            format!("/dashboard/approvals/{approval_id}/deny"),
            vec![("reason", "mine now")],
        ),
        (format!("/dashboard/agents/{agent_id}/kill-switch"), vec![]),
        (format!("/dashboard/agents/{agent_id}/keys"), vec![]),
        (format!("/dashboard/orders/{order_id}/cancel"), vec![]),
        (format!("/dashboard/orders/{order_id}/credentials"), vec![]),
    ] {
        let mut form: Vec<(&str, &str)> = form;
        form.push(("csrf", &token));
        assert_eq!(b.post(&path, &form).await.status, 404, "{path}");
    }
    // Nothing changed for the owner of those objects.
    let order = s
        .get(&format!("/api/v1/orders/{order_id}"), Some(&agent_key))
        .await;
    assert_eq!(order.body["data"]["order"]["status"], "awaiting_approval");
}

dual_test!(the_device_page_approves_a_customer_agent);
async fn the_device_page_approves_a_customer_agent(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let email = format!("owner-{}@example.com", common::uuid_like());
    let (_, owner) = s.app.admin_create_account(&email, "Owner").await.unwrap();
    let device = s
        .post(
            "/api/v1/agent-auth/device",
            None,
            &json!({"customer_email": email, "agent_name": "helper"}),
        )
        .await;
    assert_eq!(device.status, 200, "{:?}", device.body);
    let data = &device.body["data"];
    let user_code = data["user_code"].as_str().unwrap();
    let uri = data["verification_uri_complete"].as_str().unwrap();
    let path = &uri[uri.find("/dashboard").unwrap()..];

    // Another account's owner cannot approve it.
    let (_, intruder) = s.account(0).await;
    let mut b = Browser::new(&s);
    b.sign_in(&intruder).await;
    let token = b.get(path).await.csrf();
    let page = b
        .post(
            "/dashboard/device",
            &[
                ("csrf", &token),
                ("user_code", user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status, 404);

    let mut b = Browser::new(&s);
    b.sign_in(&owner.api_key).await;
    let page = b.get(path).await;
    assert!(page.body.contains(user_code), "the code is filled in");
    let page = b
        .post(
            "/dashboard/device",
            &[
                ("csrf", &page.csrf()),
                ("user_code", user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("approved"));
    let token = s
        .post(
            "/api/v1/agent-auth/token",
            None,
            &json!({"device_code": data["device_code"]}),
        )
        .await;
    assert_eq!(token.status, 200, "{:?}", token.body);
    assert!(token.body["data"]["access_token"]
        .as_str()
        .unwrap()
        .starts_with("sf_live_"));
}

// ----- the browser -----

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn required() -> bool {
    std::env::var("STOREFRONT_TEST_CLIENTS").as_deref() == Ok("required")
}

/// Debian's chromium, or the one `STOREFRONT_TEST_CHROMIUM` names.
fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("STOREFRONT_TEST_CHROMIUM") {
        return Some(path);
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

/// Screenshots go to cargo's target directory (`target/screenshots/`).
fn screenshots_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_uses_the_dashboard_in_a_real_browser() {
    let playwright = clients_dir().join("node_modules/playwright-core/package.json");
    let (Some(chromium), true) = (chromium(), playwright.exists()) else {
        assert!(
            !required(),
            "STOREFRONT_TEST_CLIENTS=required but chromium or playwright-core is missing"
        );
        eprintln!("skipped: needs Debian's chromium and playwright-core (tests/clients; .ci/run installs both)");
        return;
    };
    let s = TestServer::start(&Backend::Sqlite).await;
    s.start_worker();
    let (_, owner) = s.account(10_000).await;
    let machines = image_dir().is_some();
    // With machines, the owner and the agent each buy one, and the agent's (1.74 USD) is above
    // its cap. Without, both buy web searches (1 cent, below any cap), so a product rule asks.
    let (product, configuration, rule) = if machines {
        (
            "bare-linux-machine",
            json!({"duration_minutes": 15}),
            json!({"kind": "per_transaction_cap", "max_minor": "100"}),
        )
    } else {
        (
            "web-search",
            json!({"query": "linux machine", "max_results": 2}),
            json!({"kind": "product", "deny": "web-search"}),
        )
    };
    let out = tokio::process::Command::new("node")
        .arg(clients_dir().join("dashboard_browser.mjs"))
        .env("STOREFRONT_URL", &s.base)
        .env("OWNER_KEY", &owner)
        .env("CHROMIUM", chromium)
        .env("SCREENSHOTS", screenshots_dir())
        .env("PRODUCT", product)
        .env("CONFIGURATION", configuration.to_string())
        .env("RULE", rule.to_string())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser journey failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .expect("the script prints its results");

    // What the browser did is what the API sees.
    let owner_order = s
        .get(
            &format!(
                "/api/v1/orders/{}",
                results["owner_order"].as_str().unwrap()
            ),
            Some(&owner),
        )
        .await;
    assert_eq!(owner_order.body["data"]["order"]["status"], "fulfilled");
    assert_eq!(owner_order.body["data"]["order"]["product_id"], product);
    let agent_order = s
        .get(
            &format!(
                "/api/v1/orders/{}",
                results["agent_order"].as_str().unwrap()
            ),
            Some(&owner),
        )
        .await;
    assert_eq!(agent_order.body["data"]["order"]["status"], "fulfilled");
    let approvals = s
        .get("/api/v1/approvals?status=approved", Some(&owner))
        .await;
    assert_eq!(
        approvals.body["data"]["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let agent = s
        .get(
            &format!("/api/v1/agents/{}", results["agent_id"].as_str().unwrap()),
            Some(&owner),
        )
        .await;
    assert_eq!(agent.body["data"]["agent"]["status"], "suspended");
    let paid: i64 = [&owner_order, &agent_order]
        .iter()
        .map(|o| o.body["data"]["order"]["total_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(s.balance(&owner).await, 10_000 - paid);

    // The credentials the page showed open the machine.
    if machines {
        let key = results["private_key"]
            .as_str()
            .expect("credentials were shown");
        let port = results["ssh_port"].as_u64().unwrap() as u16;
        assert_eq!(ssh(key, port, "echo dashboard").await.trim(), "dashboard");
    }
    for shot in [
        "01-login",
        "05-quote",
        "12-approvals",
        "14-killed",
        "21-overview-phone",
    ] {
        assert!(
            screenshots_dir().join(format!("{shot}.png")).exists(),
            "{shot}.png was written"
        );
    }
}

dual_test!(an_owner_manages_webhooks_and_reads_events_on_the_dashboard);
async fn an_owner_manages_webhooks_and_reads_events_on_the_dashboard(backend: Backend) {
    // Loopback URLs are allowed so that no host name is looked up; nothing runs deliveries.
    let s = TestServer::start_with(&backend, |c| c.webhooks.allow_private_targets = true).await;
    let (_, owner) = s.account(10_000).await;
    let bought = s
        .order(
            Some(&owner),
            "dash-events",
            &json!({"product_id": "web-search", "configuration": {"query": "q"}}),
        )
        .await;
    let order_id = bought.body["data"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut b = Browser::new(&s);
    b.sign_in(&owner).await;

    let events = b.get("/dashboard/events").await;
    assert_eq!(events.status, 200);
    for expected in [
        "order.created",
        "order.paid",
        "order.fulfilled",
        order_id.as_str(),
    ] {
        assert!(
            events.body.contains(expected),
            "the events page shows {expected}"
        );
    }
    let only_paid = b.get("/dashboard/events?type=order.paid").await;
    assert!(only_paid.body.contains("order.paid"));
    assert!(!only_paid.body.contains("order.created"));

    let token = b.get("/dashboard/webhooks").await.csrf();
    let bad = b
        .post(
            "/dashboard/webhooks",
            &[("csrf", &token), ("url", "not a url"), ("events", "*")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("not a valid URL"), "the reason is shown");
    let created = b
        .post(
            "/dashboard/webhooks",
            &[
                ("csrf", &token),
                ("url", "http://127.0.0.1:9/hooks"),
                ("events", "order.paid, service.active"),
                ("description", "ops chat"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let marker = "id=\"new-secret\" class=\"mono\" readonly value=\"";
    let start = created.body.find(marker).expect("the secret is shown") + marker.len();
    let secret = created.body[start..].split('"').next().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = b.get("/dashboard/webhooks").await;
    assert!(listed.body.contains("http://127.0.0.1:9/hooks"));
    assert!(!listed.body.contains(&secret), "the secret is shown once");
    let api = s.get("/api/v1/webhook-endpoints", Some(&owner)).await;
    let endpoint = api.body["data"]["webhook_endpoints"][0].clone();
    assert_eq!(endpoint["events"], json!(["order.paid", "service.active"]));
    let id = endpoint["id"].as_str().unwrap().to_owned();

    let tested = b
        .post(
            &format!("/dashboard/webhooks/{id}/test"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(
        (tested.status, tested.location.as_str()),
        (303, format!("/dashboard/webhooks/{id}").as_str())
    );
    let page = b.get(&format!("/dashboard/webhooks/{id}")).await;
    assert!(
        page.body.contains("ping") && page.body.contains("pending"),
        "{}",
        page.body
    );
    b.post(
        &format!("/dashboard/webhooks/{id}/toggle"),
        &[("csrf", &token)],
    )
    .await;
    let paused = s
        .get(&format!("/api/v1/webhook-endpoints/{id}"), Some(&owner))
        .await;
    assert_eq!(paused.body["data"]["webhook_endpoint"]["enabled"], false);

    // Another account's owner finds nothing there.
    let (_, intruder) = s.account(0).await;
    let mut other = Browser::new(&s);
    other.sign_in(&intruder).await;
    let other_token = other.get("/dashboard/webhooks").await.csrf();
    assert_eq!(
        other.get(&format!("/dashboard/webhooks/{id}")).await.status,
        404
    );
    assert_eq!(
        other
            .post(
                &format!("/dashboard/webhooks/{id}/delete"),
                &[("csrf", &other_token)]
            )
            .await
            .status,
        404
    );
    let deleted = b
        .post(
            &format!("/dashboard/webhooks/{id}/delete"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(deleted.status, 303);
    let gone = s.get("/api/v1/webhook-endpoints", Some(&owner)).await;
    assert!(gone.body["data"]["webhook_endpoints"]
        .as_array()
        .unwrap()
        .is_empty());
}
