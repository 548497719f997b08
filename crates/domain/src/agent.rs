//! Agents: the software an account lets spend on its behalf, within the owner's rules
//! (`API.md` §8).

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
    /// The owner's instructions to the agent, Markdown (seed 003's "soul").
    pub soul: String,
    pub trusted_stores: Vec<String>,
    pub blocked_stores: Vec<String>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}
