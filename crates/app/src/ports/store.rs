//! The store port, split by aggregate so each use-case's needs read at a glance and each
//! adapter file implements one aggregate. [`Store`] is all of them together: what the app
//! holds (`Arc<dyn Store>`), and what an adapter gets for free once it implements every part.

use async_trait::async_trait;
use storefront_domain::account::{Account, ApiKey, DashboardSession, LoginCode};
use storefront_domain::agent::{Agent, Approval, ApprovalStatus, AuditEvent, DeviceGrant};
use storefront_domain::checkout::Checkout;
use storefront_domain::event::Event;
use storefront_domain::ids::ServiceId;
use storefront_domain::ids::{AccountId, JobId, KeyId, OrderId, QuoteId};
use storefront_domain::ids::{AgentId, ApprovalId, CheckoutId, PaymentId};
use storefront_domain::ids::{DeliveryId, EventId, WebhookEndpointId};
use storefront_domain::job::{Job, JobOutcome};
use storefront_domain::ledger::{LedgerEntry, LedgerMovement};
use storefront_domain::order::Order;
use storefront_domain::payment::Payment;
use storefront_domain::quote::Quote;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::webhook::{WebhookDelivery, WebhookEndpoint};

use super::{
    AgentForDecision, AgentRule, Applied, Change, ClaimOutcome, DeliveryFinish, EventFilter,
    IdempotencyCompletion, IdempotencyRef, NewOrder, OrderFilter, Refusal, ResourceToken,
    StoreResult,
};
use crate::page::PageRequest;

/// The event log, written by [`NewOrder`] and [`Change`]; read here.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Oldest first, at most `limit + 1` (to tell whether there are more).
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;
    async fn get_event(&self, id: &EventId) -> StoreResult<Option<Event>>;
    /// The last event of the account (or of one agent of it) that readers can see.
    async fn newest_event(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
    ) -> StoreResult<Option<EventId>>;
}

/// Webhook endpoints and the delivery queue. Deliveries of events are queued by the units that
/// write the events ([`Change::events`] and the like); this claims, finishes and lists them.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_webhook_endpoint(&self, endpoint: &WebhookEndpoint) -> StoreResult<()>;
    async fn get_webhook_endpoint(
        &self,
        id: &WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Oldest first, after the endpoint `after`, at most `limit + 1`; an agent's own only when
    /// `agent` is set.
    async fn list_webhook_endpoints(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Writes what its owner may change (url, events, description, enabled and the secrets),
    /// clearing the failure record when the endpoint is enabled again.
    async fn update_webhook_endpoint(&self, endpoint: &WebhookEndpoint) -> StoreResult<()>;
    /// Deletes the endpoint and its deliveries; false if there was none.
    async fn delete_webhook_endpoint(&self, id: &WebhookEndpointId) -> StoreResult<bool>;

    /// Queues one delivery (a `ping`); deliveries of events are queued with the event.
    async fn insert_delivery(&self, delivery: &WebhookDelivery) -> StoreResult<()>;
    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<WebhookDelivery>>;
    /// Newest first, before the delivery `before`, at most `limit + 1`.
    async fn list_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        before: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Makes a delivery due at `now` again (whatever its status); false if it is in an attempt
    /// right now.
    async fn retry_delivery(&self, id: &DeliveryId, now: Timestamp) -> StoreResult<bool>;
    /// Claims up to `limit` due deliveries of enabled endpoints for `worker` until
    /// `lease_until` (counting an attempt each), with their endpoints. A delivery whose worker
    /// died is claimed again once its lease has passed; no two workers hold one at once.
    async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(WebhookDelivery, WebhookEndpoint)>>;
    /// Records an attempt's outcome if `worker` still holds the delivery (false otherwise), and
    /// what it means for the endpoint, in one transaction.
    async fn finish_delivery(&self, finish: &DeliveryFinish<'_>) -> StoreResult<bool>;
    /// Deliveries waiting (due or not), and when the oldest of them was queued.
    async fn delivery_backlog(&self) -> StoreResult<(i64, Option<Timestamp>)>;
}

/// Readiness probes and the settings table.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// Readiness: the database answers reads.
    async fn ping(&self) -> StoreResult<()>;
    /// Readiness: a write transaction begins, writes and commits (one row, overwritten each
    /// time), so a write path that is stuck or refused shows up before an order finds it.
    async fn probe_write(&self, now: Timestamp) -> StoreResult<()>;

    /// Returns the named setting, storing `initial` first if it has none (first start).
    async fn setting_or_init(&self, name: &str, initial: &str) -> StoreResult<String>;
    /// Writes settings (insert or replace), all in one transaction.
    async fn put_settings(&self, settings: &[(&str, &str)]) -> StoreResult<()>;
}

/// Accounts and how their owners and agents sign in: API keys, device grants, e-mailed
/// login codes and dashboard sessions.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, account: &Account, owner_key: &ApiKey) -> StoreResult<()>;
    async fn get_account(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn count_accounts(&self) -> StoreResult<i64>;
    async fn set_balance_low_threshold(
        &self,
        account: &AccountId,
        threshold_minor: Option<i64>,
    ) -> StoreResult<()>;

    async fn insert_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn find_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>>;
    async fn get_api_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a live key of the account; `false` when there is none.
    async fn revoke_api_key(
        &self,
        account: &AccountId,
        id: &KeyId,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// The agent's live orders (not failed, not canceled) since `since`: `(created_at, total)`.
    async fn insert_device_grant(&self, grant: &DeviceGrant) -> StoreResult<()>;
    async fn find_device_grant(&self, device_code_hash: &str) -> StoreResult<Option<DeviceGrant>>;
    async fn find_device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceGrant>>;
    /// Writes the grant if its status is still `expected_status`.
    async fn update_device_grant(
        &self,
        grant: &DeviceGrant,
        expected_status: &str,
    ) -> StoreResult<bool>;

    async fn insert_login_code(&self, code: &LoginCode) -> StoreResult<()>;
    async fn find_login_code(&self, code_hash: &str) -> StoreResult<Option<LoginCode>>;
    /// Marks an unused code used; `false` if another sign-in used it first.
    async fn use_login_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<bool>;
    async fn insert_dashboard_session(&self, session: &DashboardSession) -> StoreResult<()>;
    async fn find_dashboard_session(
        &self,
        secret_hash: &str,
    ) -> StoreResult<Option<DashboardSession>>;
    async fn end_dashboard_session(&self, secret_hash: &str, now: Timestamp) -> StoreResult<()>;
}

/// Quotes, which an order later refers to.
#[async_trait]
pub trait QuoteStore: Send + Sync {
    async fn insert_quote(&self, quote: &Quote) -> StoreResult<()>;
    async fn get_quote(&self, id: &QuoteId) -> StoreResult<Option<Quote>>;
}

/// Idempotency keys on their own; their outcomes normally commit with the effect (see
/// [`OrderStore`]).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims a key for a request with this fingerprint. A claim whose holder has not finished
    /// by `stale_before` (a crashed process) may be taken over.
    async fn claim_idempotency_key(
        &self,
        key: &IdempotencyRef,
        fingerprint: &str,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<ClaimOutcome>;
    /// Records the outcome of a key's request on its own (crash recovery; normally the outcome
    /// is recorded with the effect through `insert_order` / `apply_change`).
    async fn complete_idempotency_key(&self, completion: &IdempotencyCompletion)
        -> StoreResult<()>;
    /// Frees a key whose request did not act, so a corrected retry may use it.
    async fn release_idempotency_key(&self, key: &IdempotencyRef) -> StoreResult<()>;
    /// Unlocks a key whose request created something but has not finished (an order waiting
    /// for its MPP payment): the identical request may claim it again at once; another body
    /// still gets `idempotency_key_reused`.
    async fn unlock_idempotency_key(&self, key: &IdempotencyRef) -> StoreResult<()>;
    /// Whether the key was ever claimed (a read: it takes nothing).
    async fn idempotency_key_exists(&self, key: &IdempotencyRef) -> StoreResult<bool>;
}

/// Orders, the changes that move them (with everything that commits alongside), and the
/// ledger of the balance they charge.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Applies a movement to the balance and appends its ledger entry, atomically.
    async fn record_movement(
        &self,
        movement: &LedgerMovement,
        now: Timestamp,
    ) -> StoreResult<Result<LedgerEntry, Refusal>>;
    /// Newest first, `limit + 1` rows after the cursor.
    async fn list_ledger(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<LedgerEntry>>;
    /// The sum of all ledger amounts of the account (equals its balance; checked by tests).
    async fn ledger_sum(&self, account: &AccountId) -> StoreResult<i64>;

    /// Inserts an order with everything that must commit with it — its charge, the service it
    /// will deliver, the jobs that will deliver it (outbox), its idempotency outcome — in one
    /// transaction. A refusal (balance, budget) leaves nothing behind; so does
    /// [`Applied::Stale`], when the service to update was no longer in an expected state.
    async fn insert_order(&self, new: &NewOrder<'_>) -> StoreResult<Applied>;
    /// Applies a set of conditional state changes in one transaction. [`Applied::Stale`] (and
    /// nothing written) when an order or service was no longer in one of its expected states:
    /// someone else won the race.
    async fn apply_change(&self, change: &Change<'_>) -> StoreResult<Applied>;
    async fn get_order(&self, id: &OrderId) -> StoreResult<Option<Order>>;
    async fn find_order_by_idempotency_key(
        &self,
        key: &IdempotencyRef,
    ) -> StoreResult<Option<Order>>;
    /// Newest first, `limit + 1` rows after the cursor.
    async fn list_orders(
        &self,
        account: &AccountId,
        filter: &OrderFilter,
    ) -> StoreResult<Vec<Order>>;
}

/// Delivered services, their resource tokens and provisioning history.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    async fn get_service(&self, id: &ServiceId) -> StoreResult<Option<Service>>;
    /// How long the latest `limit` provisionings of a product took, in seconds.
    async fn recent_provisioning_seconds(
        &self,
        product_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<i64>>;
    async fn find_resource_token(&self, token_hash: &str) -> StoreResult<Option<ResourceToken>>;
    /// Newest first, `limit + 1` rows after the cursor.
    async fn list_services(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<Service>>;
    /// How many services are in each of `statuses` (statuses with none are left out).
    async fn count_services(
        &self,
        statuses: &[ServiceStatus],
    ) -> StoreResult<Vec<(ServiceStatus, i64)>>;
    /// The services of orders the agent placed that are in any of `statuses`.
    async fn agent_services(
        &self,
        agent: &AgentId,
        statuses: &[ServiceStatus],
    ) -> StoreResult<Vec<Service>>;
    /// Deletes every resource token of the service; how many there were.
    async fn revoke_resource_tokens(&self, service: &ServiceId) -> StoreResult<u64>;
    /// Services in any of `statuses` (for reconciliation at start).
    async fn services_in(&self, statuses: &[ServiceStatus]) -> StoreResult<Vec<Service>>;
}

/// What [`JobStore::job_backlog`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobBacklog {
    /// Queued jobs whose time has come.
    pub due: i64,
    /// Jobs a worker holds.
    pub running: i64,
    /// When the longest-waiting due job became due.
    pub oldest_due_at: Option<Timestamp>,
}

/// The job queue (outbox) and its leases.
#[async_trait]
pub trait JobStore: Send + Sync {
    async fn enqueue_job(&self, job: &Job) -> StoreResult<()>;
    /// The work waiting at `now`: jobs due and not yet taken, jobs held by a worker, and when
    /// the longest-waiting due job became due.
    async fn job_backlog(&self, now: Timestamp) -> StoreResult<JobBacklog>;
    /// Claims the next due job of one of `kinds` — queued and due, or running under a lease that
    /// expired (its worker died) — for `worker` until `lease_until`. No job is ever held by two
    /// workers: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite.
    async fn claim_job(
        &self,
        kinds: &[String],
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Job>>;
    /// Extends a held lease; `false` when the worker no longer holds the job.
    async fn heartbeat_job(
        &self,
        id: &JobId,
        worker: &str,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Records how a held job ended; `false` when the worker no longer holds it (its lease
    /// expired and another worker took the job over).
    async fn finish_job(
        &self,
        id: &JobId,
        worker: &str,
        outcome: &JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool>;
    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>>;
}

/// Card and MPP payments.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    async fn insert_payment(&self, payment: &Payment) -> StoreResult<()>;
    async fn get_payment(&self, id: &PaymentId) -> StoreResult<Option<Payment>>;
    async fn find_payment_by_session(&self, session_id: &str) -> StoreResult<Option<Payment>>;
    async fn find_payment_for_order(&self, order_id: &OrderId) -> StoreResult<Option<Payment>>;
}

/// Agents and what governs them: rules, the audit trail, checkouts, approvals and spending.
#[async_trait]
pub trait GovernanceStore: Send + Sync {
    async fn insert_agent(&self, agent: &Agent) -> StoreResult<()>;
    /// A live (not deleted) agent.
    async fn get_agent(&self, id: &AgentId) -> StoreResult<Option<Agent>>;
    /// A live agent with its rules (ordered by code) and, when one of them is enabled and reads
    /// spending (`RuleKind::READING_SPENDING`), what the agent spent since `spending_since` (as
    /// [`Self::agent_spending`]) — in one read: what a governance decision needs.
    async fn get_agent_for_decision(
        &self,
        id: &AgentId,
        spending_since: Timestamp,
    ) -> StoreResult<Option<AgentForDecision>>;
    async fn list_agents(&self, account: &AccountId) -> StoreResult<Vec<Agent>>;
    /// Saves the agent and, in the same transaction, the events that say what changed; `false`
    /// (and nothing written) when there is no such agent.
    async fn update_agent(&self, agent: &Agent, events: &[Event]) -> StoreResult<bool>;
    /// Deletes the agent and revokes its keys, in one transaction.
    async fn delete_agent(&self, id: &AgentId, now: Timestamp) -> StoreResult<bool>;

    /// `Conflict` when the rule's code is taken (a concurrent create): retry with the next.
    async fn insert_rule(&self, rule: &AgentRule) -> StoreResult<()>;
    async fn list_rules(&self, agent: &AgentId) -> StoreResult<Vec<AgentRule>>;
    async fn update_rule(&self, rule: &AgentRule) -> StoreResult<bool>;
    async fn delete_rule(&self, agent: &AgentId, rule_id: &str) -> StoreResult<bool>;

    async fn insert_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Oldest first, after the cursor, `limit + 1` rows.
    async fn list_audit(
        &self,
        account: &AccountId,
        agent: Option<&AgentId>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;

    async fn insert_checkout(&self, checkout: &Checkout) -> StoreResult<()>;
    async fn get_checkout(&self, id: &CheckoutId) -> StoreResult<Option<Checkout>>;
    /// The agent's checkouts that are not completed or canceled.
    async fn agent_open_checkouts(&self, agent: &AgentId) -> StoreResult<Vec<Checkout>>;
    async fn find_approval_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> StoreResult<Option<Approval>>;
    /// The agent's orders still waiting (for payment or approval).
    async fn agent_open_orders(&self, agent: &AgentId) -> StoreResult<Vec<Order>>;
    async fn get_approval(&self, id: &ApprovalId) -> StoreResult<Option<Approval>>;
    async fn find_approval_for_order(&self, order: &OrderId) -> StoreResult<Option<Approval>>;
    /// Newest first.
    async fn list_approvals(
        &self,
        account: &AccountId,
        status: Option<ApprovalStatus>,
    ) -> StoreResult<Vec<Approval>>;
    async fn agent_spending(
        &self,
        agent: &AgentId,
        since: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, i64)>>;
}
/// The whole store. Implemented for every type that implements all its parts, so an adapter
/// never names it.
pub trait Store:
    EventStore
    + WebhookStore
    + SettingsStore
    + AccountStore
    + QuoteStore
    + IdempotencyStore
    + OrderStore
    + ServiceStore
    + JobStore
    + PaymentStore
    + GovernanceStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: EventStore
        + WebhookStore
        + SettingsStore
        + AccountStore
        + QuoteStore
        + IdempotencyStore
        + OrderStore
        + ServiceStore
        + JobStore
        + PaymentStore
        + GovernanceStore
        + Send
        + Sync
        + 'static
{
}
