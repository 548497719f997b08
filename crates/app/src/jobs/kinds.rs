//! Every kind of background job and its payload, in one place. Each is run by the module that
//! owns its work (`impl JobKind` there): machines by `machines`, orders by `lifecycle`, refunds
//! by `payments`, approvals by `approvals`.
//!
//! The kind names and payload fields are stored in the jobs table: renaming one strands the jobs
//! already queued under the old name.

use serde::{Deserialize, Serialize};
use storefront_domain::ids::{ApprovalId, OrderId, PaymentId, ServiceId};

/// Starts the machine of a new service and activates it once SSH answers; out of attempts, the
/// order fails and is refunded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionMachine {
    pub service_id: ServiceId,
}

/// Restarts a service's machine (the service is `restarting`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartMachine {
    pub service_id: ServiceId,
}

/// Halts a service's machine, keeping its files (the service is `stopped`: the kill switch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopMachine {
    pub service_id: ServiceId,
}

/// Rebuilds a service's machine from `image` (the service is `reinstalling`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReinstallMachine {
    pub service_id: ServiceId,
    pub image: String,
}

/// Removes a service's machine (the service is `terminating`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminateMachine {
    pub service_id: ServiceId,
}

/// Ends a lease at its expiry, or comes back later if it was extended meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireLease {
    pub service_id: ServiceId,
}

/// Fulfils a paid instant order that no request is waiting to fulfil (paid by card or approval),
/// or whose request died before it recorded the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FulfillOrder {
    pub order_id: OrderId,
}

/// Pays money back through the provider that took it. Names the payment when it is known (a
/// payment for an order that no longer waited), else the order whose payment it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundPayment {
    #[serde(default)]
    pub payment_id: Option<PaymentId>,
    #[serde(default)]
    pub order_id: Option<OrderId>,
    pub reason: String,
}

/// Expires an approval nobody decided in time (its order is canceled).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireApproval {
    pub approval_id: ApprovalId,
}
