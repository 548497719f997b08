//! Webhook endpoints and the delivery of events to them (docs/events.md).
//!
//! Owners (and agents, for their own events) register URLs; each event an endpoint asked for is
//! queued for it in the transaction that writes the event, and a delivery loop in the worker
//! sends it, signed per Standard Webhooks, retrying with backoff for about three days. Every
//! outgoing request goes through the [`WebhookTransport`] port, which keeps it away from
//! addresses inside the provider's network.

use crate::app::{store_failure, App};
use crate::page::{Page, PageRequest};
use crate::ports::{DeliveryFinish, DisableOnFailure, WebhookTransport};
use crate::principal::Principal;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;
use std::sync::Arc;
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{DeliveryId, WebhookEndpointId};
use storefront_domain::timestamp::{format, Timestamp};
use storefront_domain::webhook::{
    failing_limit, retry_delay, AttemptResult, DeliveryStatus, WebhookDelivery, WebhookEndpoint,
    ALL_EVENTS,
};
use storefront_domain::{DomainError, ErrorCode};

/// How many endpoints one account may have.
pub const MAX_ENDPOINTS: usize = 16;
/// How long the secret before a rotation still signs deliveries.
pub fn rotation_overlap() -> chrono::Duration {
    chrono::Duration::hours(24)
}
/// How long a claimed delivery is held before another worker may take it over: longer than any
/// attempt may take.
fn attempt_lease() -> chrono::Duration {
    chrono::Duration::seconds(60)
}
/// Attempts in flight at once in one process.
const MAX_IN_FLIGHT: usize = 32;

/// A webhook endpoint as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpointView {
    /// `we_...`
    pub id: String,
    pub url: String,
    /// The event types sent here; `["*"]` is every type.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the storefront disabled the endpoint (a 410 answer, or three days of failures).
    pub disabled_reason: Option<String>,
    /// The agent whose events alone are sent here, when an agent key created it.
    pub agent_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&WebhookEndpoint> for WebhookEndpointView {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.to_string(),
            url: e.url.clone(),
            events: e.events.clone(),
            description: e.description.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            agent_id: e.agent_id.as_ref().map(ToString::to_string),
            created_at: format(&e.created_at),
            updated_at: format(&e.updated_at),
        }
    }
}

/// A new endpoint and its signing secret, which is shown only here (and on rotation).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointWithSecret {
    pub webhook_endpoint: WebhookEndpointView,
    /// `whsec_...`: verifies the `webhook-signature` of every delivery. Shown once.
    pub secret: String,
}

/// A delivery as the API shows it: the last attempt and the next one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    /// `whd_...`
    pub id: String,
    pub webhook_endpoint_id: String,
    /// The `webhook-id` header: the event's id.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The status code of the last answer, if one came.
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub created_at: String,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        let pending = d.status == DeliveryStatus::Pending;
        Self {
            id: d.id.to_string(),
            webhook_endpoint_id: d.endpoint_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.clone(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.filter(|_| pending).as_ref().map(format),
            last_attempt_at: d.last_attempt_at.as_ref().map(format),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            last_duration_ms: d.last_duration_ms,
            created_at: format(&d.created_at),
        }
    }
}

/// What `POST /webhook-endpoints` asks for.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// What `PATCH /webhook-endpoints/{id}` changes (absent fields stay).
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A fresh signing secret: `whsec_` and 32 random bytes in base64 (the form Standard Webhooks
/// libraries take).
fn new_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn validate_events(events: &[String]) -> Result<Vec<String>, DomainError> {
    let suggestion = || {
        format!(
            "List event types ({}), or [\"*\"] for all.",
            EventType::ALL.map(EventType::as_str).join(", ")
        )
    };
    if events.is_empty() {
        return Err(DomainError::validation(
            "events",
            "No event types were given.",
            suggestion(),
        ));
    }
    let mut chosen: Vec<String> = Vec::new();
    for e in events {
        if e != ALL_EVENTS && EventType::parse(e).is_none() {
            return Err(DomainError::validation(
                "events",
                format!("'{e}' is not an event type."),
                suggestion(),
            ));
        }
        if !chosen.contains(e) {
            chosen.push(e.clone());
        }
    }
    Ok(chosen)
}

fn validate_description(description: Option<String>) -> Result<Option<String>, DomainError> {
    match description {
        Some(d) if d.chars().count() > 500 => Err(DomainError::validation(
            "description",
            "The description is longer than 500 characters.",
            "Shorten the description.",
        )),
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

impl App {
    fn webhook_transport(&self) -> Result<&Arc<dyn WebhookTransport>, DomainError> {
        self.outbound.webhooks.as_ref().ok_or_else(|| {
            DomainError::service_unavailable(
                "Webhooks are not configured on this storefront.",
                "Ask the operator to enable webhook delivery, or read GET /api/v1/events.",
            )
        })
    }

    /// Checks a URL an endpoint would send to (its form and where it resolves).
    async fn validate_url(&self, url: &str) -> Result<String, DomainError> {
        let url = url.trim();
        if url.is_empty() || url.len() > 2048 {
            return Err(DomainError::validation(
                "url",
                "The URL is empty or longer than 2048 characters.",
                "Give the https:// URL that should receive the events.",
            ));
        }
        self.webhook_transport()?
            .check_url(url)
            .await
            .map_err(|why| {
                DomainError::validation(
                    "url",
                    format!("Webhooks cannot be sent to {url}: {why}."),
                    "Use a public https:// URL. For receivers on a private network, the operator can set webhooks.allow_private_targets.",
                )
            })?;
        Ok(url.to_owned())
    }

    /// The endpoint `id` if `principal` may manage it; `not_found` otherwise (another account's
    /// endpoints do not exist for it, nor another agent's for an agent).
    async fn endpoint_for(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<WebhookEndpoint, DomainError> {
        let account = principal.require_account()?;
        let not_found = || DomainError::not_found("webhook endpoint", id);
        let id = WebhookEndpointId::parse(id).ok_or_else(not_found)?;
        let endpoint = self
            .store
            .get_webhook_endpoint(&id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        let agent_may = match principal.agent_id() {
            Some(agent) => endpoint.agent_id.as_ref() == Some(agent),
            None => true,
        };
        if &endpoint.account_id != account || !agent_may {
            return Err(not_found());
        }
        Ok(endpoint)
    }

    /// `POST /api/v1/webhook-endpoints`: a new endpoint and its secret (shown this once).
    pub async fn create_webhook_endpoint(
        &self,
        principal: &Principal,
        new: NewEndpoint,
    ) -> Result<EndpointWithSecret, DomainError> {
        let account = principal.require_account()?.clone();
        let url = self.validate_url(&new.url).await?;
        let events = validate_events(&new.events)?;
        let description = validate_description(new.description)?;
        let existing = self
            .store
            .list_webhook_endpoints(&account, None, None, MAX_ENDPOINTS as u32)
            .await
            .map_err(store_failure)?;
        if existing.len() >= MAX_ENDPOINTS {
            return Err(DomainError::new(
                ErrorCode::InvalidState,
                format!("The account already has {MAX_ENDPOINTS} webhook endpoints."),
                "Delete an endpoint you no longer use, or subscribe an existing one to more events.",
            ));
        }
        let secret = new_signing_secret();
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: WebhookEndpointId::generate_at(now),
            account_id: account,
            agent_id: principal.agent_id().cloned(),
            url,
            events,
            description,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            secret_sealed: self.secret_box.seal(&secret),
            previous_secret_sealed: None,
            previous_secret_until: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_webhook_endpoint(&endpoint)
            .await
            .map_err(store_failure)?;
        tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
        Ok(EndpointWithSecret {
            webhook_endpoint: WebhookEndpointView::from(&endpoint),
            secret,
        })
    }

    pub async fn list_webhook_endpoints(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpointView>, DomainError> {
        let account = principal.require_account()?;
        if let Some(c) = &page.cursor {
            WebhookEndpointId::parse(c).ok_or_else(PageRequest::invalid_cursor)?;
        }
        let found = self
            .store
            .list_webhook_endpoints(
                account,
                principal.agent_id(),
                page.cursor.as_deref(),
                page.limit,
            )
            .await
            .map_err(store_failure)?;
        let page = Page::from_fetched(found, page.limit, |e| e.id.to_string());
        Ok(Page {
            items: page.items.iter().map(WebhookEndpointView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub async fn webhook_endpoint(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<WebhookEndpointView, DomainError> {
        Ok(WebhookEndpointView::from(
            &self.endpoint_for(principal, id).await?,
        ))
    }

    /// `PATCH`: a new URL, events, description, or enabled again (which clears its failures).
    pub async fn update_webhook_endpoint(
        &self,
        principal: &Principal,
        id: &str,
        changes: EndpointChanges,
    ) -> Result<WebhookEndpointView, DomainError> {
        let mut endpoint = self.endpoint_for(principal, id).await?;
        if let Some(url) = changes.url {
            endpoint.url = self.validate_url(&url).await?;
        }
        if let Some(events) = changes.events {
            endpoint.events = validate_events(&events)?;
        }
        if let Some(description) = changes.description {
            endpoint.description = validate_description(Some(description))?;
        }
        if let Some(enabled) = changes.enabled {
            if enabled && !endpoint.enabled {
                endpoint.disabled_reason = None;
                endpoint.failing_since = None;
            }
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = self.clock.now();
        self.store
            .update_webhook_endpoint(&endpoint)
            .await
            .map_err(store_failure)?;
        Ok(WebhookEndpointView::from(&endpoint))
    }

    /// `DELETE`: the endpoint and its deliveries, including those still waiting.
    pub async fn delete_webhook_endpoint(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(), DomainError> {
        let endpoint = self.endpoint_for(principal, id).await?;
        self.store
            .delete_webhook_endpoint(&endpoint.id)
            .await
            .map_err(store_failure)?;
        Ok(())
    }

    /// `POST .../rotate-secret`: a new secret (shown once); the old one keeps signing for 24
    /// hours, so deliveries carry both signatures while receivers switch.
    pub async fn rotate_webhook_secret(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<EndpointWithSecret, DomainError> {
        let mut endpoint = self.endpoint_for(principal, id).await?;
        let secret = new_signing_secret();
        let now = self.clock.now();
        endpoint.previous_secret_sealed = Some(std::mem::replace(
            &mut endpoint.secret_sealed,
            self.secret_box.seal(&secret),
        ));
        endpoint.previous_secret_until = Some(now + rotation_overlap());
        endpoint.updated_at = now;
        self.store
            .update_webhook_endpoint(&endpoint)
            .await
            .map_err(store_failure)?;
        tracing::info!(endpoint_id = %endpoint.id, "webhook secret rotated");
        Ok(EndpointWithSecret {
            webhook_endpoint: WebhookEndpointView::from(&endpoint),
            secret,
        })
    }

    /// `POST .../test`: queues a `ping` to the endpoint (sent like any event, even while the
    /// endpoint is disabled it waits until it is enabled again).
    pub async fn ping_webhook_endpoint(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<DeliveryView, DomainError> {
        let endpoint = self.endpoint_for(principal, id).await?;
        let delivery = WebhookDelivery::ping(&endpoint, self.clock.now());
        self.store
            .insert_delivery(&delivery)
            .await
            .map_err(store_failure)?;
        Ok(DeliveryView::from(&delivery))
    }

    /// `GET .../deliveries`: newest first.
    pub async fn list_webhook_deliveries(
        &self,
        principal: &Principal,
        id: &str,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>, DomainError> {
        let endpoint = self.endpoint_for(principal, id).await?;
        if let Some(c) = &page.cursor {
            DeliveryId::parse(c).ok_or_else(PageRequest::invalid_cursor)?;
        }
        let found = self
            .store
            .list_deliveries(&endpoint.id, page.cursor.as_deref(), page.limit)
            .await
            .map_err(store_failure)?;
        let page = Page::from_fetched(found, page.limit, |d| d.id.to_string());
        Ok(Page {
            items: page.items.iter().map(DeliveryView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// `POST /webhook-endpoints/deliveries/{id}/retry`: the delivery is due again now.
    pub async fn retry_webhook_delivery(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<DeliveryView, DomainError> {
        principal.require_account()?;
        let not_found = || DomainError::not_found("delivery", id);
        let delivery_id = DeliveryId::parse(id).ok_or_else(not_found)?;
        let delivery = self
            .store
            .get_delivery(&delivery_id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        // Reachable only through an endpoint the principal may manage.
        self.endpoint_for(principal, delivery.endpoint_id.as_str())
            .await
            .map_err(|_| not_found())?;
        if !self
            .store
            .retry_delivery(&delivery.id, self.clock.now())
            .await
            .map_err(store_failure)?
        {
            return Err(DomainError::new(
                ErrorCode::InvalidState,
                "The delivery is being attempted right now.",
                "Read its deliveries again in a minute; retry it then if it failed.",
            ));
        }
        let delivery = self
            .store
            .get_delivery(&delivery.id)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        Ok(DeliveryView::from(&delivery))
    }

    /// The `webhook-signature` header for a delivery at `now`: one `v1,...` signature per secret
    /// in use (two while a rotation overlaps), space-separated.
    fn webhook_signature(
        &self,
        endpoint: &WebhookEndpoint,
        delivery: &WebhookDelivery,
        now: Timestamp,
    ) -> Result<String, String> {
        let mut signatures = Vec::new();
        for sealed in endpoint.signing_secrets(now) {
            let secret = self.secret_box.open(sealed).ok_or(
                "the endpoint's signing secret cannot be unsealed (the storefront's secret key changed)",
            )?;
            let signer = standardwebhooks::Webhook::new(&secret)
                .map_err(|e| format!("unusable signing secret: {e}"))?;
            signatures.push(
                signer
                    .sign(
                        delivery.event_id.as_str(),
                        now.timestamp(),
                        delivery.body.as_bytes(),
                    )
                    .map_err(|e| format!("signing failed: {e}"))?,
            );
        }
        Ok(signatures.join(" "))
    }

    /// Makes one attempt of a claimed delivery and records how it went.
    async fn attempt_delivery(
        &self,
        worker: &str,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
    ) -> Result<DeliveryStatus, DomainError> {
        let transport = self.webhook_transport()?;
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let answer = match self.webhook_signature(&endpoint, &delivery, now) {
            Ok(signature) => {
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("webhook-id", delivery.event_id.to_string()),
                    ("webhook-timestamp", now.timestamp().to_string()),
                    ("webhook-signature", signature),
                ];
                transport
                    .post(&endpoint.url, &headers, &delivery.body)
                    .await
            }
            Err(why) => Err(why),
        };
        let error = match &answer {
            Ok(code) if (200..300).contains(code) => None,
            Ok(code) if (300..400).contains(code) => {
                Some(format!("answered {code}; redirects are not followed"))
            }
            Ok(code) => Some(format!("answered {code}")),
            Err(why) => Some(why.clone()),
        };
        let result = AttemptResult {
            status_code: answer.ok(),
            error,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            at: now,
        };
        let (status, next_attempt_at) = if result.delivered() {
            (DeliveryStatus::Delivered, None)
        } else if result.gone() {
            (DeliveryStatus::Failed, None)
        } else {
            let jitter = rand::random::<f64>() * 2.0 - 1.0;
            match retry_delay(delivery.attempts, jitter) {
                Some(delay) => (DeliveryStatus::Pending, Some(now + delay)),
                None => (DeliveryStatus::Failed, None),
            }
        };
        // What a failure may lead to: the endpoint disabled, and the event that says so.
        let disabled = (!result.delivered()).then(|| {
            let reason = if result.gone() {
                "The endpoint answered 410 Gone."
            } else {
                "Every delivery to the endpoint failed for 3 days."
            };
            let mut disabled = endpoint.clone();
            disabled.enabled = false;
            disabled.disabled_reason = Some(reason.to_owned());
            disabled.updated_at = now;
            let event = Event::new(
                EventType::WebhookEndpointDisabled,
                endpoint.account_id.clone(),
                endpoint.agent_id.clone(),
                serde_json::to_value(WebhookEndpointView::from(&disabled)).unwrap_or_default(),
                now,
            );
            DisableOnFailure {
                now: result.gone(),
                if_failing_since: now - failing_limit(),
                reason,
                event,
            }
        });
        let finish = DeliveryFinish {
            delivery: &delivery.id,
            endpoint: &endpoint.id,
            worker,
            result: &result,
            status,
            next_attempt_at,
            disable: disabled.as_ref(),
        };
        let held = self
            .store
            .finish_delivery(&finish)
            .await
            .map_err(store_failure)?;
        let label = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "retry",
            DeliveryStatus::Failed => "failed",
        };
        metrics::counter!("storefront_webhook_deliveries_total", "result" => label).increment(1);
        metrics::histogram!("storefront_webhook_attempt_seconds")
            .record(result.duration_ms as f64 / 1000.0);
        match &result.error {
            None => {
                tracing::info!(delivery_id = %delivery.id, endpoint_id = %endpoint.id, "webhook delivered")
            }
            Some(error) => {
                tracing::warn!(delivery_id = %delivery.id, endpoint_id = %endpoint.id, attempt = delivery.attempts, %error, next = label, "webhook attempt failed")
            }
        }
        if !held {
            tracing::warn!(delivery_id = %delivery.id, "delivery finished after its lease passed to another worker");
        }
        Ok(status)
    }

    /// Claims the deliveries that are due (up to `limit`), attempts them all at once and waits
    /// for them; how many there were. Tests drive delivery with this; the worker runs
    /// [`App::run_webhook_deliveries`].
    pub async fn deliver_due_webhooks(
        &self,
        worker: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryStatus>, DomainError> {
        let claimed = self.claim_due_deliveries(worker, limit).await?;
        let mut attempts = tokio::task::JoinSet::new();
        for (delivery, endpoint) in claimed {
            let (app, worker) = (self.clone(), worker.to_owned());
            attempts.spawn(async move { app.attempt_delivery(&worker, delivery, endpoint).await });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = attempts.join_next().await {
            if let Ok(Ok(status)) = done {
                outcomes.push(status);
            }
        }
        Ok(outcomes)
    }

    async fn claim_due_deliveries(
        &self,
        worker: &str,
        limit: u32,
    ) -> Result<Vec<(WebhookDelivery, WebhookEndpoint)>, DomainError> {
        if self.outbound.webhooks.is_none() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        self.store
            .claim_deliveries(worker, now, now + attempt_lease(), limit)
            .await
            .map_err(store_failure)
    }

    /// The delivery loop of a worker process: keeps up to 32 attempts in flight, claiming more
    /// as they finish, until `shutdown`; attempts in flight then finish (each is bounded by the
    /// transport's time limit). A process killed mid-attempt leaves its deliveries leased;
    /// another worker sends them again once the lease passes.
    pub async fn run_webhook_deliveries(
        &self,
        worker: String,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if self.outbound.webhooks.is_none() {
            return;
        }
        tokio::pin!(shutdown);
        let idle = std::time::Duration::from_millis(500);
        let mut in_flight = tokio::task::JoinSet::new();
        tracing::info!(worker = %worker, "webhook delivery started");
        loop {
            let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len()) as u32;
            // A store failure is logged where it happens; try again after the idle wait.
            let claimed = self
                .claim_due_deliveries(&worker, room)
                .await
                .unwrap_or_default();
            let claimed_any = !claimed.is_empty();
            for (delivery, endpoint) in claimed {
                let (app, worker) = (self.clone(), worker.clone());
                in_flight.spawn(async move {
                    let _ = app.attempt_delivery(&worker, delivery, endpoint).await;
                });
            }
            if claimed_any && in_flight.len() < MAX_IN_FLIGHT {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
        tracing::info!(worker = %worker, "webhook delivery stopped");
    }
}
