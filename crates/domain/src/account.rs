//! Accounts and their API keys.

use crate::ids::{AccountId, AgentId, KeyId};
use crate::money::Currency;
use crate::timestamp::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub name: String,
    pub currency: Currency,
    pub balance_minor: i64,
    /// A charge that takes the balance below this writes a `balance.low` event (`null`: never).
    pub balance_low_minor: Option<i64>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    Owner,
    Agent,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Agent => "agent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Self::Owner),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: KeyId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub role: KeyRole,
    pub agent_id: Option<AgentId>,
    pub name: String,
    /// The first characters of the secret, enough for a person to tell keys apart.
    pub prefix: String,
    #[serde(skip)]
    pub secret_hash: String,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

/// Validates an e-mail address just enough to catch mistakes (one `@`, a dotted domain).
pub fn parse_email(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (local, domain) = raw.split_once('@')?;
    let ok = !local.is_empty()
        && raw.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    ok.then(|| raw.to_owned())
}

/// A one-time code an operator prints (`storefront admin login-code`) so an owner can sign in
/// to the dashboard without an API key. Only its hash is kept; it works once, briefly.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginCode {
    pub code_hash: String,
    pub account_id: AccountId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// A signed-in dashboard browser. The cookie holds the secret; only its hash is kept. A session
/// opened with an owner key ends when that key is revoked (`key_id`); one opened with a login
/// code has none.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardSession {
    pub secret_hash: String,
    pub account_id: AccountId,
    pub key_id: Option<KeyId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}
