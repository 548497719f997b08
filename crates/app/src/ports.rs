//! Ports: what the use-cases need from the outside world. Adapters live in other crates
//! (`storefront-store` for SQL, `storefront-providers` for fulfillers).
//!
//! The store's write methods are whole units of work: each runs in one database transaction,
//! so a state change, its ledger movement and its idempotency record commit together or not at
//! all. Conditional updates (`expected` states) make concurrent transitions safe without the
//! use-cases holding locks.

use async_trait::async_trait;
use serde_json::{Map, Value};
use storefront_domain::agent::{Approval, ApprovalStatus};
use storefront_domain::catalog::{MachineSize, Product};
use storefront_domain::checkout::{Checkout, CheckoutStatus};
use storefront_domain::event::{Event, EventType};
use storefront_domain::ids::{AgentId, DeliveryId, ServiceId, WebhookEndpointId};
use storefront_domain::job::Job;
use storefront_domain::ledger::LedgerMovement;
use storefront_domain::order::{Order, OrderStatus};
use storefront_domain::payment::{Payment, PaymentState};
use storefront_domain::quote::Quote;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::webhook::{AttemptResult, DeliveryStatus};

use crate::page::PageRequest;

/// A failure of the store: the write did not happen and the caller cannot fix it by asking
/// differently. Business answers ([`Refusal`], a stale state) are results, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// Why the data refused a write that takes money: an answer for the buyer, not a failure.
/// Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A debit would take the balance below zero.
    InsufficientCredits { balance_minor: i64 },
    /// A budget of the agent would be exceeded.
    BudgetExceeded { spent_minor: i64, max_minor: i64 },
}

/// What a conditional unit of work ([`NewOrder`], [`Change`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Applied {
    /// Everything was written, in one transaction.
    Done,
    /// An order, service, payment, approval or checkout was no longer in an expected state, or
    /// the webhook event was handled before: someone else won the race. Nothing was written.
    Stale,
    /// The balance or a budget refused it. Nothing was written.
    Refused(Refusal),
}

impl Applied {
    /// For units that take no money (state moves, refunds): written or stale. Such a unit is
    /// never refused; if it were, that is a fault of the caller, reported as a failure.
    pub fn without_charge(self) -> StoreResult<bool> {
        match self {
            Applied::Done => Ok(true),
            Applied::Stale => Ok(false),
            Applied::Refused(refusal) => Err(StoreError::Backend(format!(
                "a change that takes no money was refused: {refusal:?}"
            ))),
        }
    }
}

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
    /// The fingerprint of the request whose key `completes` records when the key was not
    /// claimed before (an order placed in one unit): the key is inserted done, and the whole
    /// unit is `Applied::Stale` if the key (or an order under it) already exists.
    pub records_key: Option<&'a str>,
    /// A pending card payment (the order's checkout session).
    pub payment: Option<&'a Payment>,
    /// Budgets the order must fit, checked in the order's own transaction.
    pub budget: Option<&'a BudgetGuard>,
    /// The owner's approval the order waits for (inserted after the order).
    pub approval: Option<&'a Approval>,
    /// What this order's creation tells the event log.
    pub events: &'a [Event],
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
            records_key: None,
            payment: None,
            budget: None,
            approval: None,
            events: &[],
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

/// What a governance decision reads about an agent ([`store::GovernanceStore::get_agent_for_decision`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentForDecision {
    pub agent: storefront_domain::agent::Agent,
    /// Ordered by code.
    pub rules: Vec<AgentRule>,
    /// When and how much the agent spent, oldest first; empty unless an enabled rule reads it.
    pub spending: Vec<(Timestamp, i64)>,
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
    /// A movement of the balance and when it happens (its ledger entry's time).
    pub movement: Option<(&'a LedgerMovement, Timestamp)>,
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
    /// A webhook event `(id, kind, received_at)` this change handles: if it was handled before,
    /// nothing is written and the change is [`Applied::Stale`].
    pub webhook_event: Option<(&'a str, &'a str, Timestamp)>,
    /// The new state of an approval, if its current status is one of the listed.
    pub approval: Option<(&'a Approval, &'a [ApprovalStatus])>,
    /// An approval to create (a checkout escalated on complete).
    pub new_approval: Option<&'a Approval>,
    /// The new state of a checkout session, if its current status is one of the listed.
    pub checkout: Option<(&'a Checkout, &'a [CheckoutStatus])>,
    /// What this change tells the event log (written only if the change is).
    pub events: &'a [Event],
}

/// An attempt's outcome as the delivery queue records it.
#[derive(Debug, Clone)]
pub struct DeliveryFinish<'a> {
    pub delivery: &'a DeliveryId,
    pub endpoint: &'a WebhookEndpointId,
    pub worker: &'a str,
    pub result: &'a AttemptResult,
    /// `Pending` with `next_attempt_at` for a retry; `Delivered` or `Failed` for good.
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Timestamp>,
    /// For a failed attempt: when it disables the endpoint (`None` for a delivered one).
    pub disable: Option<&'a DisableOnFailure>,
}

/// When a failed attempt disables its endpoint: at once (`now`: it answered 410) or if it has
/// failed since before `if_failing_since` (three days of failures). `event` (a
/// `webhook_endpoint.disabled`) is then written with it.
#[derive(Debug, Clone)]
pub struct DisableOnFailure {
    pub now: bool,
    pub if_failing_since: Timestamp,
    pub reason: &'static str,
    pub event: Event,
}

/// Which events to list: an account's, or one agent's of it; after an event; of some types.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub account: storefront_domain::ids::AccountId,
    pub agent: Option<AgentId>,
    /// Only events after this one (an event id).
    pub after: Option<String>,
    /// Only these types (all when empty).
    pub kinds: Vec<EventType>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub product_id: Option<String>,
    pub page: PageRequest,
}

pub mod store;
pub use store::*;

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
    /// Whether fulfilling only computes inside this process: no call out, no effect anywhere
    /// else, so running it again (or for an order that is then refused) costs nothing but CPU.
    /// An order of such a product is fulfilled before its payment commits and stored fulfilled
    /// in that one transaction (`orders.rs`, "placed in one unit").
    fn computes_in_process(&self) -> bool {
        false
    }

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
    /// The resources to give the machine and hold it to; `None`: unconfined (older services).
    pub size: Option<MachineSize>,
    /// The catalog region it was ordered in (a provisioner may map it to a place).
    pub region: Option<String>,
    /// Whether the order bought backups (a provisioner that can keeps scheduled snapshots).
    pub backups: bool,
}

/// One backup (snapshot) of a machine, as the service view lists them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backup {
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
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
    /// The host public key itself, OpenSSH format without a comment (`ssh-ed25519 AAAA...`).
    pub host_public_key: String,
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

/// One way a provisioner confines its machines (network, cpu, memory, processes, disk), and
/// whether it is in force on this host: `/readyz` lists them so an operator sees what a customer's
/// machine can and cannot do here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Isolation {
    pub name: &'static str,
    pub enforced: bool,
    pub detail: String,
}

/// Creates and manages machines. Every method is idempotent: the database is the source of
/// truth and a reconciler may call any of them again after a crash.
#[async_trait]
pub trait Provisioner: Send + Sync + 'static {
    /// Why this provisioner cannot deliver on this host, if it cannot.
    fn unavailable_reason(&self) -> Option<String>;
    /// How machines are confined here (empty when the provisioner has nothing to say).
    fn isolation(&self) -> Vec<Isolation> {
        Vec::new()
    }
    /// Images it can really deliver.
    fn images(&self) -> Vec<String>;
    /// Whether an agent's OpenSSH public key is acceptable (parsable, not weak); the reason if not.
    fn check_authorized_key(&self, key: &str) -> Result<(), String>;
    /// Extra seconds (least, most) before a machine of `image` can start here, such as an image
    /// still to be built; `None` when it can start at once.
    fn preparation_seconds(&self, image: &str) -> Option<(u64, u64)>;
    /// Creates the machine, or starts it again if it exists but is not running (files kept).
    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError>;
    /// Whether an SSH handshake with the machine succeeds and presents its host key.
    async fn ready(&self, id: &str) -> Result<bool, ProvisionError>;
    /// Kills every process of the machine and boots it again; its files are kept.
    async fn restart(&self, id: &str) -> Result<Machine, ProvisionError>;
    /// Halts every process of the machine and leaves it down; its files are kept and
    /// `restart` boots it again. Stopping a stopped or absent machine succeeds.
    async fn stop(&self, id: &str) -> Result<(), ProvisionError>;
    /// Wipes the machine (files and host key) and boots it fresh from `spec.image`.
    async fn reinstall(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError>;
    /// Removes the machine and everything of it. Terminating an absent machine succeeds.
    async fn terminate(&self, id: &str) -> Result<(), ProvisionError>;
    /// The ids of every machine it holds (for reconciliation).
    async fn list_owned(&self) -> Result<Vec<String>, ProvisionError>;
    /// The machine's backups, oldest first (none where the provisioner keeps none).
    async fn backups(&self, _id: &str) -> Result<Vec<Backup>, ProvisionError> {
        Ok(Vec::new())
    }
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

/// Sends webhooks over HTTP, inside the boundary outgoing requests live in (docs/events.md,
/// "Outgoing requests"): allowed schemes and addresses only, no redirects, bounded time.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Whether `url` may receive webhooks: its form, its scheme and every address its host
    /// resolves to now. The reason, in words, when it may not.
    async fn check_url(&self, url: &str) -> Result<(), String>;
    /// POSTs `body` with `headers` to `url`, checking the addresses again as it connects; the
    /// status code of the answer, or why there was none.
    async fn post(&self, url: &str, headers: &[(&str, String)], body: &str) -> Result<u16, String>;
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
