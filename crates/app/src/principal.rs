//! Who is calling. Built by each transport from its credentials; the use-cases decide what
//! each principal may do.

use storefront_domain::ids::{AccountId, AgentId, KeyId, ServiceId};
use storefront_domain::DomainError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An owner key, or a dashboard session: everything on its own account. `key_id` is the
    /// key used, `None` for a dashboard session opened with a one-time login code.
    Owner {
        account_id: AccountId,
        key_id: Option<KeyId>,
    },
    /// An agent key: buys and manages within the agent's rules; never manages keys.
    Agent {
        account_id: AccountId,
        key_id: KeyId,
        agent_id: Option<AgentId>,
    },
    /// A resource token: one action scope on one service, nothing else.
    Resource {
        service_id: ServiceId,
        scope: TokenScope,
    },
    /// No key: browse, quote, validate, and order with card or MPP; never spends credit.
    Public,
}

/// What a resource token allows on its service (docs/api.md, "Resource tokens").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    Read,
    Extend,
    Terminate,
}

impl TokenScope {
    pub const ALL: [TokenScope; 3] = [Self::Read, Self::Extend, Self::Terminate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Extend => "extend",
            Self::Terminate => "terminate",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl Principal {
    pub fn account_id(&self) -> Option<&AccountId> {
        match self {
            Self::Owner { account_id, .. } | Self::Agent { account_id, .. } => Some(account_id),
            Self::Resource { .. } | Self::Public => None,
        }
    }

    /// The agent an agent key acts for.
    pub fn agent_id(&self) -> Option<&AgentId> {
        match self {
            Self::Agent { agent_id, .. } => agent_id.as_ref(),
            _ => None,
        }
    }

    /// The account, `401 unauthorized` for a public caller, `403` for a resource token (it
    /// reaches its own service only).
    pub fn require_account(&self) -> Result<&AccountId, DomainError> {
        match self {
            Self::Resource { .. } => Err(DomainError::forbidden(
                "A resource token only reaches its own service.",
            )),
            _ => self.account_id().ok_or_else(DomainError::unauthorized),
        }
    }

    /// The account of an owner key, `403` for agent keys, `401` without a key.
    pub fn require_owner(&self) -> Result<&AccountId, DomainError> {
        match self {
            Self::Owner { account_id, .. } => Ok(account_id),
            Self::Agent { .. } => Err(DomainError::forbidden(
                "Agent keys cannot manage API keys or the account.",
            )),
            Self::Resource { .. } => Err(DomainError::forbidden(
                "A resource token only reaches its own service.",
            )),
            Self::Public => Err(DomainError::unauthorized()),
        }
    }

    /// The refusal of an action this principal may not take: `401 unauthorized` without a key
    /// (a key might allow it), `403 forbidden` with `message` for a key of the wrong kind.
    pub fn refuse(&self, message: &str) -> DomainError {
        match self {
            Self::Public => DomainError::unauthorized(),
            _ => DomainError::forbidden(message),
        }
    }

    /// The scope idempotency keys live in: the account, or for public agents the key alone.
    pub fn idempotency_scope(&self) -> String {
        match self {
            Self::Resource { service_id, .. } => format!("resource:{service_id}"),
            _ => match self.account_id() {
                Some(a) => a.to_string(),
                None => "public".to_owned(),
            },
        }
    }
}
