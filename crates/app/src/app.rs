//! The application: the use-cases' shared state. Cheap to clone (everything behind `Arc`).

use crate::clock::Clock;
use crate::ports::{
    CardGateway, Fulfiller, Isolation, MppGateway, Provisioner, Store, StoreError, WebhookTransport,
};
use crate::secrets::{SecretBox, UrlSigner};
use chrono::Duration;
use std::collections::HashMap;
use std::sync::Arc;
use storefront_domain::catalog::Catalog;
use storefront_domain::money::Currency;
use storefront_domain::DomainError;

/// Operator settings the use-cases need.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Public base URL (no trailing slash) for signed URLs and discovery documents.
    pub base_url: String,
    /// Whether the operator set `base_url` (otherwise discovery documents follow the request's
    /// `Host`).
    pub base_url_configured: bool,
    /// How long a quote can be ordered (15 minutes by default; docs/api.md, "Quote lifetime").
    pub quote_ttl: Duration,
    /// How long a signed `status_url` stays valid.
    pub status_url_ttl: Duration,
    /// After this long without finishing, an idempotency claim is considered abandoned by a
    /// crashed process and may be taken over.
    pub idempotency_lock_timeout: Duration,
    /// The currency of new accounts (credits are minor units of it).
    pub account_currency: Currency,
    /// How long a card checkout session stays payable (Stripe allows 30 minutes to 24 hours).
    pub checkout_ttl: Duration,
    /// How long an MPP challenge can be paid.
    pub mpp_challenge_ttl: Duration,
    /// Host names the MCP endpoint answers (with the host of `base_url` and loopback).
    pub mcp_allowed_hosts: Vec<String>,
    /// Requests a minute per API key, and per client address without a key (0: no limit).
    pub rate_limit_per_minute: u32,
    pub public_rate_limit_per_minute: u32,
    /// Failed authentications a minute per client address before its keyed requests are refused
    /// for a while (0: no limit).
    pub failed_auth_per_minute: u32,
    /// Open connections at most, how long a client gets to send its headers, and how long a
    /// request may take (the HTTP server's limits).
    pub max_connections: usize,
    pub header_read_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    /// How long readiness waits for its write-path check before it reports the database
    /// unavailable.
    pub readiness_timeout: std::time::Duration,
    /// The SHA-256 of the token `/metrics` requires (`None`: `/metrics` is open).
    pub metrics_token_hash: Option<String>,
    /// How long an authenticated API key is remembered without reading the database again
    /// (zero: never). A key revoked by another process works here for at most this long.
    pub api_key_cache_ttl: Duration,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".into(),
            base_url_configured: false,
            quote_ttl: Duration::minutes(15),
            status_url_ttl: Duration::days(30),
            idempotency_lock_timeout: Duration::seconds(120),
            account_currency: Currency::usd(),
            checkout_ttl: Duration::hours(1),
            mpp_challenge_ttl: Duration::minutes(5),
            mcp_allowed_hosts: Vec::new(),
            rate_limit_per_minute: 1200,
            public_rate_limit_per_minute: 600,
            failed_auth_per_minute: 60,
            max_connections: 4096,
            header_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
            readiness_timeout: std::time::Duration::from_secs(2),
            metrics_token_hash: None,
            api_key_cache_ttl: Duration::seconds(5),
        }
    }
}

/// The application: every use-case, over the ports it was built with. Cloned for every request
/// (axum's state), so it is one shared pointer: a clone is one reference count, not one per part.
#[derive(Clone)]
pub struct App {
    state: Arc<AppState>,
}

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
    }
}

/// What an [`App`] holds.
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) fulfillers: Arc<HashMap<String, Arc<dyn Fulfiller>>>,
    pub(crate) signer: UrlSigner,
    pub(crate) settings: Arc<AppSettings>,
    /// Provisioners by the `fulfiller` name products use (`local`).
    pub(crate) provisioners: Arc<HashMap<String, Arc<dyn Provisioner>>>,
    /// Seals machine credentials at rest.
    pub(crate) secret_box: SecretBox,
    /// Card payments (Stripe Checkout), when configured.
    pub(crate) card: Option<Arc<dyn CardGateway>>,
    /// HTTP 402 Machine Payments Protocol payments, when configured.
    pub(crate) mpp: Option<Arc<dyn MppGateway>>,
    /// The account that owns purchases made without a key, once known.
    pub(crate) public_account: Arc<tokio::sync::OnceCell<storefront_domain::ids::AccountId>>,
    /// Use-cases running to completion in tasks of their own (see [`App::run_to_completion`]);
    /// shutdown waits for them.
    pub(crate) in_flight: tokio_util::task::TaskTracker,
    /// The last write-path check, reused for a moment (see [`App::readiness`]).
    pub(crate) readiness: Arc<tokio::sync::Mutex<crate::health::WritePathChecks>>,
    /// What telling others about events needs (one shared handle: an `App` is cloned for every
    /// request, and each handle it holds is one more shared counter to update).
    pub(crate) outbound: Arc<Outbound>,
    /// Recently authenticated API keys (see [`crate::key_cache`]).
    pub(crate) key_cache: crate::key_cache::KeyCache,
}

/// The event doors' shared state.
#[derive(Clone, Default)]
pub(crate) struct Outbound {
    /// Sends webhooks, when configured.
    pub(crate) webhooks: Option<Arc<dyn WebhookTransport>>,
    /// Open event streams per key (see [`App::open_event_stream`]).
    pub(crate) streams: crate::events::StreamCounts,
    /// Cancelled when the process begins to shut down: long-lived answers (event streams) end.
    pub(crate) shutting_down: tokio_util::sync::CancellationToken,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Catalog,
        clock: Arc<dyn Clock>,
        fulfillers: HashMap<String, Arc<dyn Fulfiller>>,
        signer: UrlSigner,
        settings: AppSettings,
    ) -> Self {
        let key_cache = crate::key_cache::KeyCache::new(settings.api_key_cache_ttl);
        let state = AppState {
            key_cache,
            store,
            catalog: Arc::new(catalog),
            clock,
            fulfillers: Arc::new(fulfillers),
            signer,
            settings: Arc::new(settings),
            provisioners: Arc::new(HashMap::new()),
            secret_box: SecretBox::ephemeral(),
            card: None,
            mpp: None,
            public_account: Arc::new(tokio::sync::OnceCell::new()),
            in_flight: tokio_util::task::TaskTracker::new(),
            readiness: Arc::default(),
            outbound: Arc::default(),
        };
        Self {
            state: Arc::new(state),
        }
    }

    /// The parts, for the `with_*` builders: they run before the app is shared.
    fn configure(&mut self) -> &mut AppState {
        Arc::get_mut(&mut self.state).expect("an App is configured before it is cloned")
    }

    /// Sends webhooks through this transport.
    pub fn with_webhook_transport(mut self, transport: Arc<dyn WebhookTransport>) -> Self {
        Arc::make_mut(&mut self.configure().outbound).webhooks = Some(transport);
        self
    }

    /// Ends long-lived answers (event streams) so that the server can drain; called once when
    /// shutdown begins.
    pub fn begin_shutdown(&self) {
        self.outbound.shutting_down.cancel();
    }

    /// Resolves when shutdown has begun.
    pub fn shutdown_started(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.outbound.shutting_down.clone().cancelled_owned()
    }

    /// Offers card payments through this gateway.
    pub fn with_card_gateway(mut self, gateway: Arc<dyn CardGateway>) -> Self {
        self.configure().card = Some(gateway);
        self
    }

    /// Offers MPP payments through this gateway.
    pub fn with_mpp_gateway(mut self, gateway: Arc<dyn MppGateway>) -> Self {
        self.configure().mpp = Some(gateway);
        self
    }

    pub fn card_enabled(&self) -> bool {
        self.card.is_some()
    }

    pub fn mpp_enabled(&self) -> bool {
        self.mpp.is_some()
    }

    /// Registers the provisioner that delivers products whose `fulfiller` is `name`.
    pub fn with_provisioner(mut self, name: &str, provisioner: Arc<dyn Provisioner>) -> Self {
        Arc::make_mut(&mut self.configure().provisioners).insert(name.to_owned(), provisioner);
        self
    }

    /// Sets the key that seals machine credentials at rest (it must be the same for every
    /// process on one database).
    pub fn with_secret_box(mut self, secret_box: SecretBox) -> Self {
        self.configure().secret_box = secret_box;
        self
    }

    pub fn provisioner(&self, name: &str) -> Option<&Arc<dyn Provisioner>> {
        self.provisioners.get(name)
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Each provisioner, why it cannot deliver here if it cannot, and how it confines its
    /// machines (for `/readyz`).
    pub fn provisioner_status(&self) -> Vec<(String, Option<String>, Vec<Isolation>)> {
        let mut status: Vec<_> = self
            .provisioners
            .iter()
            .map(|(name, p)| (name.clone(), p.unavailable_reason(), p.isolation()))
            .collect();
        status.sort_by(|a, b| a.0.cmp(&b.0));
        status
    }

    /// Replaces the database's URL-signing key; the retired one keeps verifying URLs already
    /// handed out (the last three are kept: URLs live 30 days, so rotate at most that often).
    /// Running servers sign with the new key after a restart.
    pub async fn rotate_signing_key(&self) -> Result<(), DomainError> {
        use crate::secrets::{random_token, PREVIOUS_SIGNING_KEYS_SETTING, SIGNING_KEY_SETTING};
        let current = self
            .store
            .setting_or_init(SIGNING_KEY_SETTING, &random_token())
            .await
            .map_err(store_failure)?;
        let previous = self
            .store
            .setting_or_init(PREVIOUS_SIGNING_KEYS_SETTING, "[]")
            .await
            .map_err(store_failure)?;
        let mut keys = vec![current];
        keys.extend(serde_json::from_str::<Vec<String>>(&previous).unwrap_or_default());
        keys.truncate(3);
        let keys = serde_json::to_string(&keys).expect("strings serialize");
        self.store
            .put_settings(&[
                (SIGNING_KEY_SETTING, &random_token()),
                (PREVIOUS_SIGNING_KEYS_SETTING, &keys),
            ])
            .await
            .map_err(store_failure)
    }

    /// Runs `work` to its end in a task of its own, whatever happens to the caller: a client
    /// that disconnects, or a time limit that gives up waiting, only means that nobody reads the
    /// result. Anything that writes in several steps (charge, then deliver; claim an idempotency
    /// key, then record its outcome) must not stop between them because its caller went away.
    /// Shutdown waits for these tasks ([`App::finish_in_flight`]).
    pub fn run_to_completion<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.in_flight.spawn(work)
    }

    /// Waits, at most `grace`, for the work started by [`App::run_to_completion`] to end; says
    /// whether it all did.
    pub async fn finish_in_flight(&self, grace: std::time::Duration) -> bool {
        self.in_flight.close();
        let finished = tokio::time::timeout(grace, self.in_flight.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                tasks = self.in_flight.len(),
                "shutting down with requests still running; their idempotency keys let clients retry them"
            );
        }
        finished
    }
}

impl App {
    pub(crate) async fn load_order(
        &self,
        id: &storefront_domain::ids::OrderId,
    ) -> Result<storefront_domain::order::Order, DomainError> {
        self.store
            .get_order(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| DomainError::not_found("order", id.as_str()))
    }

    pub(crate) async fn load_service(
        &self,
        id: &storefront_domain::ids::ServiceId,
    ) -> Result<storefront_domain::service::Service, DomainError> {
        self.store
            .get_service(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| DomainError::not_found("service", id.as_str()))
    }
}

/// Translates a storage failure the caller cannot act on into `internal_error`, logging the
/// cause (which may name tables or SQL) instead of returning it.
pub(crate) fn store_failure(e: StoreError) -> DomainError {
    tracing::error!(error = %e, "store operation failed");
    DomainError::internal()
}
