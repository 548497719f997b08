//! Test harness: the real server on 127.0.0.1:0 over a fresh SQLite file, spoken to over HTTP,
//! with a manual clock the test can move.
#![allow(dead_code)]

pub mod binary;
pub mod ledger;
pub mod machines;
pub mod payments;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use storefront::bootstrap::{build_app, open_store};
use storefront::config::Config;
use storefront_app::{App, ManualClock};

/// Prints (to stderr) why a background job failed or will be retried, so a test that times
/// out waiting on a job shows the cause. `STOREFRONT_TEST_LOG` (a tracing filter) widens or
/// silences it.
fn log_job_trouble() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("STOREFRONT_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("storefront_app::jobs=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init();
    });
}

/// Where a test's data lives. Every test runs on both: SQLite always, PostgreSQL when
/// `STOREFRONT_TEST_POSTGRES_URL` names a server (each test then gets a database of its own).
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

/// Declares the `sqlite` and `postgres` runs of a test function `NAME(backend: Backend)`, as
/// `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! dual_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::common::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(backend) = super::common::Backend::postgres() {
                    super::$name(backend).await
                }
            }
        }
    };
}

impl Backend {
    /// PostgreSQL if the environment names a server; otherwise `None`, saying why.
    pub fn postgres() -> Option<Self> {
        match std::env::var("STOREFRONT_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Postgres { admin_url: url }),
            _ => {
                eprintln!("skipped on PostgreSQL: set STOREFRONT_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it");
                None
            }
        }
    }

    /// A database URL no other test uses: a new SQLite file in `dir`, or a new PostgreSQL
    /// database (named `sf_test_*`, dropped by `.ci/run` before the next run).
    pub async fn fresh_database_url(&self, dir: &std::path::Path) -> String {
        match self {
            Self::Sqlite => format!("sqlite://{}", dir.join("storefront.db").display()),
            Self::Postgres { admin_url } => {
                use sqlx::Connection;
                let name = format!("sf_test_{}", uuid_like());
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .expect("PostgreSQL admin connection");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let mut url =
                    reqwest::Url::parse(admin_url).expect("STOREFRONT_TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                url.to_string()
            }
        }
    }
}

pub struct TestServer {
    pub base: String,
    /// The configuration the server runs with (its data directory and database), for processes
    /// that must share them (`storefront mcp`, admin commands).
    pub config: Config,
    pub app: App,
    pub store: Arc<dyn storefront_app::ports::Store>,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    stop_worker: tokio::sync::broadcast::Sender<()>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or_default()
    }
}

impl TestServer {
    pub async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: &Backend, configure: impl FnOnce(&mut Config)) -> Self {
        log_job_trouble();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            database_url: Some(backend.fresh_database_url(dir.path()).await),
            demo_account: false,
            lease_runner: Some(env!("CARGO_BIN_EXE_storefront").into()),
            image_dir: std::env::var("STOREFRONT_TEST_IMAGE_DIR")
                .ok()
                .filter(|d| !d.is_empty())
                .map(Into::into),
            ..Config::default()
        };
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(ManualClock::default());
        let store = open_store(&config).await.expect("store opens");
        // A configured public URL wins, as in the binary.
        let public = config.base_url.clone().unwrap_or_else(|| base.clone());
        let app = build_app(&config, store.clone(), clock.clone(), public)
            .await
            .expect("app builds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = app.clone();
        tokio::spawn(async move {
            storefront::serve::serve(served, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            base,
            config: config.clone(),
            app,
            store,
            clock,
            client: reqwest::Client::new(),
            stop_worker: tokio::sync::broadcast::channel(1).0,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// A new account with `credits`; returns (account id, owner key).
    pub async fn account(&self, credits: i64) -> (String, String) {
        let email = format!("owner-{}@example.com", uuid_like());
        let (account, key) = self
            .app
            .admin_create_account(&email, "Test owner")
            .await
            .expect("account");
        if credits > 0 {
            self.app
                .admin_grant_credits(account.id.as_str(), credits, "test credits")
                .await
                .expect("credits");
        }
        (account.id.to_string(), key.api_key)
    }

    /// An agent with a key of its own, in a new account with `credits`:
    /// (owner key, agent id, agent key).
    pub async fn agent(&self, credits: i64) -> (String, String, String) {
        let (_, owner) = self.account(credits).await;
        let created = self
            .post(
                "/api/v1/agents",
                Some(&owner),
                &serde_json::json!({"name": "buyer", "description": "buys compute"}),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.body["data"]["agent"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = self
            .post(
                &format!("/api/v1/agents/{id}/keys"),
                Some(&owner),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(key.status, 201, "{:?}", key.body);
        let key = key.body["data"]["api_key"].as_str().unwrap().to_owned();
        (owner, id, key)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        self.send(req).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        self.send(req).await
    }

    pub async fn order(&self, key: Option<&str>, idempotency_key: &str, body: &Value) -> Reply {
        let mut req = self
            .client
            .post(self.url("/api/v1/orders"))
            .header("Idempotency-Key", idempotency_key)
            .json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        self.send(req).await
    }

    /// Runs a background worker with the machine jobs until the server is dropped.
    pub fn start_worker(&self) {
        let app = self.app.clone();
        let mut stop = self.stop_worker.subscribe();
        tokio::spawn(async move {
            let worker = app.background_jobs(storefront_app::jobs::Worker::new(
                app.clone(),
                "test-worker",
            ));
            worker
                .run(async move {
                    let _ = stop.recv().await;
                })
                .await
        });
    }

    /// Asks for a management action on a service (`restart`, `reinstall`), checks it is
    /// accepted, and waits until the service is active again; returns its view.
    pub async fn service_action_done(&self, key: &str, service_id: &str, action: &str) -> Value {
        let asked = self
            .post(
                &format!("/api/v1/services/{service_id}/{action}"),
                Some(key),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(asked.status, 202, "{action}: {:?}", asked.body);
        self.poll_until(&format!("/api/v1/services/{service_id}"), Some(key), |b| {
            b["data"]["service"]["status"] == "active"
        })
        .await
    }

    /// Terminates a service (`DELETE`), checks it is accepted, and waits until it is terminated.
    pub async fn terminate_service_done(&self, key: &str, service_id: &str) {
        let asked = self
            .send(
                self.client
                    .delete(self.url(&format!("/api/v1/services/{service_id}")))
                    .bearer_auth(key),
            )
            .await;
        assert_eq!(asked.status, 202, "terminate: {:?}", asked.body);
        self.poll_until(&format!("/api/v1/services/{service_id}"), Some(key), |b| {
            b["data"]["service"]["status"] == "terminated"
        })
        .await;
    }

    /// Polls `path` until `done` holds for its body: a real system settling, bounded at 90 s.
    ///
    /// The manual clock moves on by the real time each wait takes. A job that a real engine made
    /// fail once is retried after a backoff counted on the app's clock, and a clock held still
    /// would keep that retry from ever running (the test would then time out on a system that
    /// recovers by design).
    pub async fn poll_until(
        &self,
        path: &str,
        key: Option<&str>,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let r = self.get(path, key).await;
            if done(&r.body) {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never reached the expected state: {}",
                r.body
            );
            let waited = tokio::time::Instant::now();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            self.clock
                .advance(chrono::Duration::from_std(waited.elapsed()).expect("a short wait"));
        }
    }

    pub async fn balance(&self, key: &str) -> i64 {
        self.get("/api/v1/account/balance", Some(key)).await.body["data"]["balance_minor"]
            .as_i64()
            .expect("balance")
    }

    /// Every ledger entry of the key's account, newest first, following cursors.
    pub async fn ledger(&self, key: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/account/ledger?limit=100&cursor={c}"),
                None => "/api/v1/account/ledger?limit=100".to_owned(),
            };
            let page = self.get(&path, Some(key)).await;
            assert_eq!(page.status, 200, "{:?}", page.body);
            entries.extend(
                page.body["data"]["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
            match page.body["data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return entries,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.stop_worker.send(());
    }
}

pub fn uuid_like() -> String {
    storefront_domain::ids::OrderId::generate().as_str()[4..].to_owned()
}

/// A valid configuration for a monthly VPS.
pub fn vps_config() -> Value {
    serde_json::json!({"hostname": "deploy-node-01", "region": "local", "image": "debian-12", "billing_term_months": 1})
}
