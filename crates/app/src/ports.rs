//! Ports: what the use-cases need from the outside world. Adapters live in other crates
//! (`storefront-store` for SQL, `storefront-providers` for fulfillers).
//!
//! The store's write methods are whole units of work: each runs in one database transaction,
//! so a state change, its ledger movement and its idempotency record commit together or not at
//! all. Conditional updates (`expected` states) make concurrent transitions safe without the
//! use-cases holding locks.

use async_trait::async_trait;
use serde_json::{Map, Value};
use storefront_domain::account::{Account, ApiKey, DashboardSession, LoginCode};
use storefront_domain::agent::{Agent, Approval, ApprovalStatus, AuditEvent, DeviceGrant};
use storefront_domain::catalog::Product;
use storefront_domain::checkout::{Checkout, CheckoutStatus};
use storefront_domain::ids::ServiceId;
use storefront_domain::ids::{AccountId, JobId, KeyId, OrderId, QuoteId};
use storefront_domain::ids::{AgentId, ApprovalId, CheckoutId, PaymentId};
use storefront_domain::job::{Job, JobOutcome};
use storefront_domain::ledger::{LedgerEntry, LedgerMovement};
use storefront_domain::order::{Order, OrderStatus};
use storefront_domain::payment::{Payment, PaymentState};
use storefront_domain::quote::Quote;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;

use crate::page::PageRequest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A debit would take the balance below zero; nothing was written.
    #[error("insufficient credits: balance {balance_minor}")]
    InsufficientCredits { balance_minor: i64 },
    /// A budget of the agent would be exceeded; nothing was written.
    #[error("budget exceeded: {spent_minor} spent of {max_minor}")]
    BudgetExceeded { spent_minor: i64, max_minor: i64 },
    /// A uniqueness rule was violated (duplicate id, e-mail, or idempotency key).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database failed; the message is for logs only.
    #[error("database: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where an idempotency key lives: the principal's scope, the route, and the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRef {
    pub scope: String,
    pub route: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The caller now holds the key and must complete or release it.
    Acquired,
    /// Someone claimed the key before: with its fingerprint and, once finished, its outcome.
    Existing {
        fingerprint: String,
        outcome: Option<Value>,
    },
}

/// Records the outcome of the request that held a key, in the same transaction as its effect.
#[derive(Debug, Clone, PartialEq)]
// A private field, not `#[non_exhaustive]`: the other modules of this crate must not build one
// either.
#[allow(clippy::manual_non_exhaustive)]
pub struct IdempotencyCompletion {
    pub key: IdempotencyRef,
    pub outcome: Value,
    /// Only [`IdempotencyCompletion::new`] makes one, so no stored answer keeps a signature.
    _stripped: (),
}

impl IdempotencyCompletion {
    /// The answer a key will replay, without the signatures of its signed URLs (bearer secrets
    /// are never stored; the replay signs them again).
    pub fn new(key: IdempotencyRef, mut outcome: Value) -> Self {
        crate::secrets::UrlSigner::strip_signatures(&mut outcome);
        Self {
            key,
            outcome,
            _stripped: (),
        }
    }
}

/// An order and what commits with it.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder<'a> {
    pub order: &'a Order,
    /// A quote made for this order alone (quote-and-order in one request), stored with it: one
    /// durable commit instead of two.
    pub quote: Option<&'a Quote>,
    pub idempotency: Option<&'a IdempotencyRef>,
    pub charge: Option<&'a LedgerMovement>,
    pub service: Option<&'a Service>,
    pub jobs: &'a [Job],
    /// Resource tokens of the service, stored hashed.
    pub resource_tokens: &'a [ResourceToken],
    /// A service change that must commit with the order (a lease extension), conditional on
    /// the service's current status.
    pub updates_service: Option<(&'a Service, &'a [ServiceStatus])>,
    pub completes: Option<&'a IdempotencyCompletion>,
    /// A pending card payment (the order's checkout session).
    pub payment: Option<&'a Payment>,
    /// Budgets the order must fit, checked in the order's own transaction.
    pub budget: Option<&'a BudgetGuard>,
    /// The owner's approval the order waits for (inserted after the order).
    pub approval: Option<&'a Approval>,
}

impl<'a> NewOrder<'a> {
    /// The order alone; callers add what commits with it.
    pub fn of(order: &'a Order) -> Self {
        Self {
            order,
            quote: None,
            idempotency: None,
            charge: None,
            service: None,
            jobs: &[],
            resource_tokens: &[],
            updates_service: None,
            completes: None,
            payment: None,
            budget: None,
            approval: None,
        }
    }
}

/// An agent's budgets, re-checked atomically with the order: the sum of the agent's live orders
/// since each limit's start, plus this order, must not exceed the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetGuard {
    pub agent_id: AgentId,
    pub amount_minor: i64,
    /// `(since, max_minor)`.
    pub limits: Vec<(Timestamp, i64)>,
}

/// A rule as stored, with its agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRule {
    pub agent_id: AgentId,
    pub rule: storefront_domain::governance::Rule,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A resource token as stored: only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceToken {
    pub token_hash: String,
    pub service_id: ServiceId,
    /// `read`, `extend` or `terminate`.
    pub scope: String,
    pub created_at: Timestamp,
}

/// Conditional changes that commit together or not at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    /// The new state of an order, if its current status is one of the listed.
    pub order: Option<(&'a Order, &'a [OrderStatus])>,
    /// The new state of a service, if its current status is one of the listed.
    pub service: Option<(&'a Service, &'a [ServiceStatus])>,
    pub movement: Option<&'a LedgerMovement>,
    /// A service to create (delivery starts once install configuration arrives).
    pub new_service: Option<&'a Service>,
    pub resource_tokens: &'a [ResourceToken],
    pub jobs: &'a [Job],
    pub completes: Option<&'a IdempotencyCompletion>,
    /// The new state of a payment, if its current status is one of the listed.
    pub payment: Option<(&'a Payment, &'a [PaymentState])>,
    /// A payment to record (an MPP settlement). Another payment of the same order or challenge
    /// makes the whole change fail with `Conflict`.
    pub new_payment: Option<&'a Payment>,
    /// A webhook event `(id, kind)` this change handles: if it was handled before, nothing is
    /// written and the change reports `false`.
    pub webhook_event: Option<(&'a str, &'a str)>,
    /// The new state of an approval, if its current status is one of the listed.
    pub approval: Option<(&'a Approval, &'a [ApprovalStatus])>,
    /// An approval to create (a checkout escalated on complete).
    pub new_approval: Option<&'a Approval>,
    /// The new state of a checkout session, if its current status is one of the listed.
    pub checkout: Option<(&'a Checkout, &'a [CheckoutStatus])>,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub product_id: Option<String>,
    pub page: PageRequest,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Readiness: the database answers reads.
    async fn ping(&self) -> StoreResult<()>;
    /// Readiness: a write transaction begins, writes and commits (one row, overwritten each
    /// time), so a write path that is stuck or refused shows up before an order finds it.
    async fn probe_write(&self, now: Timestamp) -> StoreResult<()>;

    /// Returns the named setting, storing `initial` first if it has none (first start).
    async fn setting_or_init(&self, name: &str, initial: &str) -> StoreResult<String>;
    /// Writes settings (insert or replace), all in one transaction.
    async fn put_settings(&self, settings: &[(&str, &str)]) -> StoreResult<()>;

    async fn create_account(&self, account: &Account, owner_key: &ApiKey) -> StoreResult<()>;
    async fn get_account(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn count_accounts(&self) -> StoreResult<i64>;

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

    /// Applies a movement to the balance and appends its ledger entry, atomically.
    async fn record_movement(
        &self,
        movement: &LedgerMovement,
        now: Timestamp,
    ) -> StoreResult<LedgerEntry>;
    /// Newest first, `limit + 1` rows after the cursor.
    async fn list_ledger(
        &self,
        account: &AccountId,
        page: &PageRequest,
    ) -> StoreResult<Vec<LedgerEntry>>;
    /// The sum of all ledger amounts of the account (equals its balance; checked by tests).
    async fn ledger_sum(&self, account: &AccountId) -> StoreResult<i64>;

    async fn insert_quote(&self, quote: &Quote) -> StoreResult<()>;
    async fn get_quote(&self, id: &QuoteId) -> StoreResult<Option<Quote>>;

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

    /// Inserts an order with everything that must commit with it — its charge, the service it
    /// will deliver, the jobs that will deliver it (outbox), its idempotency outcome — in one
    /// transaction. `InsufficientCredits` leaves nothing behind; so does `Ok(false)`, when the
    /// service to update was no longer in an expected state.
    async fn insert_order(&self, new: &NewOrder<'_>) -> StoreResult<bool>;
    /// Applies a set of conditional state changes in one transaction. `false` (and nothing
    /// written) when an order or service was no longer in one of its expected states: someone
    /// else won the race.
    async fn apply_change(&self, change: &Change<'_>) -> StoreResult<bool>;
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
    /// Services in any of `statuses` (for reconciliation at start).
    async fn services_in(&self, statuses: &[ServiceStatus]) -> StoreResult<Vec<Service>>;

    async fn enqueue_job(&self, job: &Job) -> StoreResult<()>;
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

    async fn insert_payment(&self, payment: &Payment) -> StoreResult<()>;
    async fn get_payment(&self, id: &PaymentId) -> StoreResult<Option<Payment>>;
    async fn find_payment_by_session(&self, session_id: &str) -> StoreResult<Option<Payment>>;
    async fn find_payment_for_order(&self, order_id: &OrderId) -> StoreResult<Option<Payment>>;

    async fn insert_agent(&self, agent: &Agent) -> StoreResult<()>;
    /// A live (not deleted) agent.
    async fn get_agent(&self, id: &AgentId) -> StoreResult<Option<Agent>>;
    async fn list_agents(&self, account: &AccountId) -> StoreResult<Vec<Agent>>;
    async fn update_agent(&self, agent: &Agent) -> StoreResult<bool>;
    /// Deletes the agent and revokes its keys, in one transaction.
    async fn delete_agent(&self, id: &AgentId, now: Timestamp) -> StoreResult<bool>;
    /// `Conflict` when the rule's code is taken (a concurrent create): retry with the next.
    async fn insert_rule(&self, rule: &AgentRule) -> StoreResult<()>;
    async fn list_rules(&self, agent: &AgentId) -> StoreResult<Vec<AgentRule>>;
    async fn update_rule(&self, rule: &AgentRule) -> StoreResult<bool>;
    async fn delete_rule(&self, agent: &AgentId, rule_id: &str) -> StoreResult<bool>;
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

/// Why a fulfiller could not deliver. `message` may be shown to the client; `detail` is for
/// the logs only (it may name upstream hosts).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({detail})")]
pub struct FulfillmentError {
    pub message: String,
    pub detail: String,
}

/// Delivers instant products inline.
#[async_trait]
pub trait Fulfiller: Send + Sync + 'static {
    async fn fulfill(
        &self,
        product: &Product,
        configuration: &Map<String, Value>,
        quantity: i64,
    ) -> Result<Value, FulfillmentError>;
}

/// What to provision: a machine for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    /// The service id; the provisioner names its resources after it (idempotency).
    pub id: String,
    pub image: String,
    pub hostname: String,
    /// The agent's OpenSSH public key; without one the provisioner generates a key pair.
    pub authorized_key: Option<String>,
}

/// A machine as the provisioner reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub image: String,
    /// `SHA256:...` of the machine's SSH host key.
    pub host_key_fingerprint: String,
    /// A generated private key, present only in the answer that generated it.
    pub private_key: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({detail})")]
pub struct ProvisionError {
    /// Safe to show to the client.
    pub message: String,
    /// For the logs.
    pub detail: String,
}

/// Creates and manages machines. Every method is idempotent: the database is the source of
/// truth and a reconciler may call any of them again after a crash.
#[async_trait]
pub trait Provisioner: Send + Sync + 'static {
    /// Why this provisioner cannot deliver on this host, if it cannot.
    fn unavailable_reason(&self) -> Option<String>;
    /// Images it can really deliver.
    fn images(&self) -> Vec<String>;
    /// Whether an agent's OpenSSH public key is acceptable (parsable, not weak); the reason if not.
    fn check_authorized_key(&self, key: &str) -> Result<(), String>;
    /// Creates the machine, or starts it again if it exists but is not running (files kept).
    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError>;
    /// Whether an SSH handshake with the machine succeeds and presents its host key.
    async fn ready(&self, id: &str) -> Result<bool, ProvisionError>;
    /// Kills every process of the machine and boots it again; its files are kept.
    async fn restart(&self, id: &str) -> Result<Machine, ProvisionError>;
    /// Wipes the machine (files and host key) and boots it fresh from `spec.image`.
    async fn reinstall(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError>;
    /// Removes the machine and everything of it. Terminating an absent machine succeeds.
    async fn terminate(&self, id: &str) -> Result<(), ProvisionError>;
    /// The ids of every machine it holds (for reconciliation).
    async fn list_owned(&self) -> Result<Vec<String>, ProvisionError>;
}

/// Why a payment provider call failed. `message` may be shown to the client; `detail` is for
/// the logs only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({detail})")]
pub struct GatewayError {
    pub message: String,
    pub detail: String,
}

/// A hosted card checkout to open for an order or a credit top-up.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    /// The order or top-up id; comes back in the webhook event (`client_reference_id`).
    pub reference: String,
    pub description: String,
    pub amount_minor: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    pub customer_email: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutSession {
    pub id: String,
    /// The hosted page for the human.
    pub url: String,
}

/// A verified card webhook event.
#[derive(Debug, Clone, PartialEq)]
pub enum CardEvent {
    /// The customer paid the checkout session.
    CheckoutCompleted {
        event_id: String,
        session_id: String,
        reference: Option<String>,
        amount_total: i64,
        currency: String,
        payment_intent: Option<String>,
    },
    /// The session expired (or was expired) unpaid.
    CheckoutExpired {
        event_id: String,
        session_id: String,
        reference: Option<String>,
    },
    /// An event this storefront does not act on.
    Other { event_id: String, kind: String },
}

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("no valid signature: {0}")]
    BadSignature(String),
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("the payload is not an event: {0}")]
    Malformed(String),
}

/// Card payments through a hosted checkout (Stripe Checkout).
#[async_trait]
pub trait CardGateway: Send + Sync + 'static {
    async fn create_checkout(&self, req: &CheckoutRequest)
        -> Result<CheckoutSession, GatewayError>;
    /// Refunds `amount_minor` of a payment; the same `idempotency_key` never refunds twice.
    async fn refund(
        &self,
        payment_reference: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError>;
    /// Checks the signature of a webhook delivery (against `now`) and reads the event.
    fn verify_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        now: Timestamp,
    ) -> Result<CardEvent, WebhookRejection>;
}

/// What an MPP challenge asks to be paid, bound into its id.
#[derive(Debug, Clone, PartialEq)]
pub struct MppCharge {
    pub order_id: String,
    pub amount_minor: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    pub description: String,
    /// The canonical request body the challenge answers (bound as its digest).
    pub body: Vec<u8>,
    pub expires_at: Timestamp,
}

/// A credential as presented, before it is settled.
#[derive(Debug, Clone, PartialEq)]
pub struct MppCredential {
    pub challenge_id: String,
    pub expires_at: Option<Timestamp>,
}

/// The MPP problem codes (draft-ryan-httpauth-payment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MppProblem {
    MalformedCredential,
    InvalidChallenge,
    VerificationFailed,
    PaymentExpired,
}

impl MppProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedCredential => "malformed-credential",
            Self::InvalidChallenge => "invalid-challenge",
            Self::VerificationFailed => "verification-failed",
            Self::PaymentExpired => "payment-expired",
        }
    }
}

/// Why a credential was not accepted. `reason` is for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {reason}", problem.as_str())]
pub struct MppRejection {
    pub problem: MppProblem,
    pub reason: String,
    /// The provider could not be reached: nothing was decided, the same credential may be
    /// retried.
    pub retryable: bool,
}

/// A settled MPP payment.
#[derive(Debug, Clone, PartialEq)]
pub struct MppSettlement {
    /// The provider's payment id (a Stripe PaymentIntent).
    pub payment_reference: String,
    /// The `Payment-Receipt` header value.
    pub receipt: String,
}

/// HTTP 402 Machine Payments Protocol, method `stripe`, intent `charge`.
#[async_trait]
pub trait MppGateway: Send + Sync + 'static {
    /// The `WWW-Authenticate` value of a challenge for `charge`.
    fn challenge(&self, charge: &MppCharge) -> Result<String, GatewayError>;
    /// Parses an `Authorization: Payment` credential without judging it.
    fn inspect(&self, credential: &str) -> Result<MppCredential, MppRejection>;
    /// Verifies the credential against `charge` (binding, expiry, amount, order) and settles it.
    async fn settle(
        &self,
        credential: &str,
        charge: &MppCharge,
    ) -> Result<MppSettlement, MppRejection>;
}
