//! Agents: the software an account lets spend on its behalf, within the owner's rules
//! (docs/api.md, "Governance").

use crate::ids::{AccountId, AgentId};
use crate::timestamp::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    /// Waiting for the owner's confirmation (an account that requires it).
    Pending,
    /// Kill switch pulled: every call is refused until the owner reactivates it.
    Suspended,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Active, Self::Pending, Self::Suspended]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: AgentId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub status: AgentStatus,
    /// The owner's instructions to the agent, Markdown (its "soul").
    pub soul: String,
    pub trusted_stores: Vec<String>,
    pub blocked_stores: Vec<String>,
    /// Whether its first connection waits for the owner's confirmation.
    pub requires_confirmation: bool,
    /// What the agent said of itself when it connected.
    pub agent_type: Option<String>,
    pub platform: Option<String>,
    pub capabilities: Vec<String>,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub connected_at: Option<Timestamp>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// How the approver is asked (the governance API's word; docs/api.md, "Approvals"): the
/// approval appears on the owner's dashboard and in `GET /api/v1/approvals`.
pub const APPROVAL_METHOD: &str = "notification";

/// An escalated purchase waiting for (or decided by) the owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub id: crate::ids::ApprovalId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub agent_id: AgentId,
    /// The storefront order waiting for it.
    pub order_id: Option<crate::ids::OrderId>,
    /// Or the checkout session (a purchase elsewhere) waiting for it.
    pub checkout_id: Option<crate::ids::CheckoutId>,
    pub status: ApprovalStatus,
    /// Who must approve (from the rule), numbered from 1, the owner.
    pub tier: u8,
    /// The rule that escalated, `SF-001` style, and why.
    pub rule_code: String,
    pub reason: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The owner's reason when denying.
    pub decision_reason: Option<String>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<Timestamp>,
}

/// One governance record: a check, a decision, an approval, a kill switch (append-only).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: crate::ids::AuditId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub agent_id: Option<AgentId>,
    /// `check`, `order_decision`, `checkout_decision`, `approval`, `kill_switch`, `reactivate`.
    pub kind: String,
    /// `allow`, `deny`, `escalate`, `approved`, `denied`, `expired`, `suspended`, `active`.
    pub result: Option<String>,
    /// The rule that decided, `SF-001` style.
    pub rule_code: Option<String>,
    pub detail: serde_json::Value,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// A device authorization (RFC 8628): an agent asking for a key on a customer's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub device_code_hash: String,
    /// What the owner types or confirms, like `WDJB-MJHT`.
    pub user_code: String,
    pub customer_email: String,
    pub agent_name: String,
    /// `pending`, `approved`, `denied` or `consumed`.
    pub status: String,
    pub account_id: Option<AccountId>,
    pub agent_id: Option<AgentId>,
    pub interval_seconds: i64,
    pub last_polled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}
