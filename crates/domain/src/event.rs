//! Events: what happened, recorded in the same transaction as the change itself (an outbox), so
//! the log is the truth that lists, streams and webhooks read (docs/api.md, "Events").

use crate::ids::{AccountId, AgentId, EventId};
use crate::ledger::LedgerEntry;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.fulfilled")]
    OrderFulfilled,
    #[serde(rename = "order.failed")]
    OrderFailed,
    #[serde(rename = "order.canceled")]
    OrderCanceled,
    #[serde(rename = "service.active")]
    ServiceActive,
    #[serde(rename = "service.restarted")]
    ServiceRestarted,
    #[serde(rename = "service.reinstalled")]
    ServiceReinstalled,
    #[serde(rename = "service.terminated")]
    ServiceTerminated,
    #[serde(rename = "service.expired")]
    ServiceExpired,
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    #[serde(rename = "approval.resolved")]
    ApprovalResolved,
    #[serde(rename = "agent.suspended")]
    AgentSuspended,
    #[serde(rename = "agent.reactivated")]
    AgentReactivated,
    #[serde(rename = "balance.low")]
    BalanceLow,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
    #[serde(rename = "webhook_endpoint.disabled")]
    WebhookEndpointDisabled,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        Self::OrderCreated,
        Self::OrderPaid,
        Self::OrderFulfilled,
        Self::OrderFailed,
        Self::OrderCanceled,
        Self::ServiceActive,
        Self::ServiceRestarted,
        Self::ServiceReinstalled,
        Self::ServiceTerminated,
        Self::ServiceExpired,
        Self::ApprovalRequested,
        Self::ApprovalResolved,
        Self::AgentSuspended,
        Self::AgentReactivated,
        Self::BalanceLow,
        Self::PaymentRefunded,
        Self::WebhookEndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::OrderPaid => "order.paid",
            Self::OrderFulfilled => "order.fulfilled",
            Self::OrderFailed => "order.failed",
            Self::OrderCanceled => "order.canceled",
            Self::ServiceActive => "service.active",
            Self::ServiceRestarted => "service.restarted",
            Self::ServiceReinstalled => "service.reinstalled",
            Self::ServiceTerminated => "service.terminated",
            Self::ServiceExpired => "service.expired",
            Self::ApprovalRequested => "approval.requested",
            Self::ApprovalResolved => "approval.resolved",
            Self::AgentSuspended => "agent.suspended",
            Self::AgentReactivated => "agent.reactivated",
            Self::BalanceLow => "balance.low",
            Self::PaymentRefunded => "payment.refunded",
            Self::WebhookEndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`, ordered by the time it happened.
    pub id: EventId,
    pub kind: EventType,
    pub account_id: AccountId,
    /// The agent whose action this is, when an agent key acted.
    pub agent_id: Option<AgentId>,
    /// The object as the API shows it at that moment, without secrets. Shared: the events one
    /// change writes (an order's `created`, `paid`, `fulfilled`) carry the same snapshot, built,
    /// and stored as text, once.
    pub data: Arc<Value>,
    pub created_at: Timestamp,
}

impl Event {
    pub fn new(
        kind: EventType,
        account_id: AccountId,
        agent_id: Option<AgentId>,
        data: impl Into<Arc<Value>>,
        at: Timestamp,
    ) -> Self {
        Self {
            id: EventId::generate_at(at),
            kind,
            account_id,
            agent_id,
            data: data.into(),
            created_at: at,
        }
    }
}

impl Event {
    /// `balance.low`, if `entry` took the balance from `threshold_minor` or more to below it.
    pub fn balance_low(entry: &LedgerEntry, threshold_minor: i64, currency: &str) -> Option<Self> {
        let before = entry.balance_after_minor - entry.amount_minor;
        (entry.balance_after_minor < threshold_minor && before >= threshold_minor).then(|| {
            Self::new(
                EventType::BalanceLow,
                entry.account_id.clone(),
                None,
                serde_json::json!({
                    "account_id": entry.account_id,
                    "balance_minor": entry.balance_after_minor,
                    "threshold_minor": threshold_minor,
                    "currency": currency,
                    "ledger_entry_id": entry.id,
                }),
                entry.created_at,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_by_their_wire_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::parse("order.unknown"), None);
    }
}
