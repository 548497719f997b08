//! Crash safety: a mixed workload — credit orders (some retried with their idempotency key),
//! escalated orders then canceled, orders whose fulfilment fails and is refunded, lease
//! extensions when machines run here — against the real binary, which is killed with SIGKILL at
//! a random moment, fifty times, and restarted. Then the invariants must hold:
//!
//! - for every account the ledger sums to the balance;
//! - no order is charged twice, and a failed or canceled order is not charged at all in the end;
//! - no acknowledged order is lost: every order a client was told about exists, every one it was
//!   told is fulfilled still is, and its idempotency key replays that same order;
//! - every interrupted job resumes and finishes.

mod common;

use common::binary::{admin_account, database, get_json, poll_order, start, GUARD};
use common::ledger::{assert_ledger_consistent, count, order_statuses};
use common::machines::image_dir;
use common::Backend;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KILLS: usize = 50;

/// The built-in catalog plus a product whose upstream refuses every connection, so its orders
/// fail and are refunded.
fn write_config(dir: &Path, machines: bool) -> std::path::PathBuf {
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/src/default_catalog.toml"),
    )
    .unwrap();
    let catalog = format!(
        r#"{builtin}

[[products]]
id = "flaky-search"
sku = "flaky-search"
name = "Search through an upstream that is down"
category = "search"
description = "Always fails: its upstream refuses connections."
kind = "instant"
fulfiller = "dead-upstream"
max_quantity = 1
[products.pricing]
model = "per_use"
unit_minor = 3
currency = "usd"
[[products.fields]]
name = "query"
type = "string"
required = true
"#
    );
    std::fs::write(dir.join("catalog.toml"), catalog).unwrap();
    let images = match (machines, image_dir()) {
        (true, Some(d)) => format!("image_dir = {:?}\n", d.display().to_string()),
        _ => String::new(),
    };
    let config = format!(
        r#"catalog_file = "catalog.toml"
rate_limit_per_minute = 0
public_rate_limit_per_minute = 0
job_lease_seconds = 2
idempotency_lock_seconds = 2
{images}
[[upstreams]]
name = "dead-upstream"
method = "GET"
url = "http://127.0.0.1:1/search"
query = {{ q = "{{query}}" }}
timeout_ms = 500
results_pointer = "/results"
fields = {{ title = "/title", url = "/url", snippet = "/snippet" }}
"#,
    );
    let path = dir.join("storefront.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// What the clients were told, to check against the database after the crashes.
#[derive(Default)]
struct Acknowledged {
    /// Idempotency key → (order id, status the client saw).
    orders: BTreeMap<String, (String, String)>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    owner: String,
    agent: String,
    service: Option<String>,
    seen: Arc<Mutex<Acknowledged>>,
}

impl Client {
    async fn order(&self, key: &str, bearer: &str, body: &Value) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(bearer)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.ok()?;
        if let Some(order) = body["data"]["order"].as_object() {
            self.seen.lock().unwrap().orders.insert(
                key.to_owned(),
                (
                    order["id"].as_str().unwrap().to_owned(),
                    order["status"].as_str().unwrap().to_owned(),
                ),
            );
        }
        Some((status, body))
    }

    /// One random step of the workload; errors (the server dying mid-request) are expected.
    async fn step(&self, n: u64) {
        let search = json!({"product_id": "web-search", "configuration": {"query": "crash"}, "payment_method": "credit"});
        let choice = rand::rng().random_range(0..6);
        match choice {
            // A new purchase.
            0 | 1 => {
                self.order(&format!("buy-{n}"), &self.owner, &search).await;
            }
            // A retry of an earlier purchase with the same key: never a second charge.
            2 => {
                let key = {
                    let seen = self.seen.lock().unwrap();
                    let keys: Vec<_> = seen
                        .orders
                        .keys()
                        .filter(|k| k.starts_with("buy-"))
                        .cloned()
                        .collect();
                    (!keys.is_empty())
                        .then(|| keys[rand::rng().random_range(0..keys.len())].clone())
                };
                if let Some(key) = key {
                    self.order(&key, &self.owner, &search).await;
                }
            }
            // An agent purchase that waits for approval, then canceled by the owner.
            3 => {
                if let Some((202, body)) =
                    self.order(&format!("ask-{n}"), &self.agent, &search).await
                {
                    let id = body["data"]["order"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = self
                        .http
                        .post(format!("{}/api/v1/orders/{id}/cancel", self.base))
                        .bearer_auth(&self.owner)
                        .send()
                        .await;
                }
            }
            // A purchase whose fulfilment fails: refunded.
            4 => {
                let flaky = json!({"product_id": "flaky-search", "configuration": {"query": "x"}, "payment_method": "credit"});
                self.order(&format!("flaky-{n}"), &self.owner, &flaky).await;
            }
            // A lease extension, when there is a machine.
            _ => {
                if let Some(service) = &self.service {
                    let _ = self
                        .http
                        .post(format!("{}/api/v1/services/{service}/extend", self.base))
                        .bearer_auth(&self.owner)
                        .header("Idempotency-Key", format!("extend-{n}"))
                        .json(&json!({"additional_minutes": 15}))
                        .send()
                        .await;
                }
            }
        }
    }
}

fn kill(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
}

async fn database_url(dir: &Path, db: &Option<String>) -> String {
    db.clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("data/storefront.db").display()))
}

dual_test!(invariants_hold_after_fifty_kills);
async fn invariants_hold_after_fifty_kills(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&backend, dir.path()).await;
    let machines = image_dir().is_some();
    let config = write_config(dir.path(), machines);
    let config_arg = ["--config", config.to_str().unwrap()];
    let (_, owner) = admin_account(dir.path(), db.as_deref(), "crash@example.com", 1_000_000).await;

    // Setup on a first, orderly run: an agent whose purchases wait for approval, a machine.
    let mut server = start(dir.path(), db.as_deref(), &config_arg).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.base))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    let agent: Value = post("/api/v1/agents", json!({"name": "crasher"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent_id = agent["data"]["agent"]["id"].as_str().unwrap().to_owned();
    let key: Value = post(&format!("/api/v1/agents/{agent_id}/keys"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent_key = key["data"]["api_key"].as_str().unwrap().to_owned();
    let rule = post(
        &format!("/api/v1/agents/{agent_id}/rules"),
        json!({"kind": "product", "name": "ask", "action": "escalate", "params": {"deny": ["web-search"]}}),
    )
    .await
    .unwrap();
    assert_eq!(rule.status(), 201);
    let service = if machines {
        let r: Value = http
            .post(format!("{}/api/v1/orders", server.base))
            .bearer_auth(&owner)
            .header("Idempotency-Key", "machine")
            .json(&json!({"product_id": "bare-linux-machine", "configuration": {"duration_minutes": 60}, "payment_method": "credit"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["data"]["order"]["id"].as_str().unwrap().to_owned();
        let order = poll_order(&http, &server.base, &owner, &id, |o| {
            o["status"] == "fulfilled"
        })
        .await;
        order["service_id"].as_str().map(str::to_owned)
    } else {
        None
    };

    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let mut step = 0u64;
    for _ in 0..KILLS {
        let client = Arc::new(Client {
            http: http.clone(),
            base: server.base.clone(),
            owner: owner.clone(),
            agent: agent_key.clone(),
            service: service.clone(),
            seen: seen.clone(),
        });
        // Three clients run steps until the server dies under them.
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let client = client.clone();
            let first = step;
            step += 1_000;
            tasks.push(tokio::spawn(async move {
                for n in first..first + 1_000 {
                    client.step(n).await;
                }
            }));
        }
        // A random kill point is the point of this test, not a timing assumption.
        let after = rand::rng().random_range(20..400);
        tokio::time::sleep(Duration::from_millis(after)).await;
        kill(&server.child);
        let _ = server.child.wait().await;
        for t in tasks {
            t.abort();
        }
        server = start(dir.path(), db.as_deref(), &config_arg).await;
    }

    // Every acknowledged order is there, as acknowledged, and its key replays it.
    let acknowledged = std::mem::take(&mut seen.lock().unwrap().orders);
    assert!(
        acknowledged.len() >= KILLS,
        "the workload ran ({} orders)",
        acknowledged.len()
    );
    for (key, (id, status)) in &acknowledged {
        let o = get_json(
            &http,
            &format!("{}/api/v1/orders/{id}", server.base),
            Some(&owner),
        )
        .await;
        let now = o["data"]["order"]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("order {id} ({key}) is lost: {o}"));
        if status == "fulfilled" {
            assert_eq!(now, "fulfilled", "{id} stays fulfilled");
        }
        if key.starts_with("buy-") {
            let replay = http
                .post(format!("{}/api/v1/orders", server.base))
                .bearer_auth(&owner)
                .header("Idempotency-Key", key)
                .json(&json!({"product_id": "web-search", "configuration": {"query": "crash"}, "payment_method": "credit"}))
                .send()
                .await
                .unwrap();
            let body: Value = replay.json().await.unwrap();
            assert_eq!(
                body["data"]["order"]["id"],
                id.as_str(),
                "{key} replays its order"
            );
        }
    }

    // Interrupted jobs resume and finish (the restarted server runs the worker), among them
    // the fulfilment of instant orders whose request died between the charge and the delivery.
    let pool = sqlx::any::AnyPoolOptions::new();
    sqlx::any::install_default_drivers();
    let db_url = database_url(dir.path(), &db).await;
    let pool = pool.max_connections(1).connect(&db_url).await.unwrap();
    let deadline = tokio::time::Instant::now() + GUARD * 2;
    loop {
        let open: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') AND run_at <= $1",
        )
        .bind(storefront_domain::timestamp::format(&chrono::Utc::now()))
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>("n");
        let paid: i64 = count(
            &pool,
            "SELECT COUNT(*) AS n FROM orders WHERE status = 'paid'",
        )
        .await;
        if open == 0 && paid == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} jobs never finished; {paid} orders stay paid and undelivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: i64 = count(
        &pool,
        "SELECT COUNT(*) AS n FROM jobs WHERE status = 'failed'",
    )
    .await;
    assert_eq!(failed, 0, "no job gave up");

    // The ledger: sums to the balance; at most one charge per order; failed and canceled orders
    // end with their charge refunded (or never charged).
    assert_ledger_consistent(&pool, "after the kills").await;
    let statuses = order_statuses(&pool).await;
    eprintln!(
        "{KILLS} kills, {} acknowledged orders, order states seen: {statuses:?}",
        acknowledged.len()
    );
    kill(&server.child);
}
