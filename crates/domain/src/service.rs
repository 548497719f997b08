//! Services: what an async order delivers (a machine lease), with its own state machine
//! (docs/api.md, "Services").

use crate::catalog::MachineSize;
use crate::ids::{AccountId, OrderId, ServiceId};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Provisioning,
    Active,
    Restarting,
    Reinstalling,
    Terminating,
    Terminated,
    Expired,
    Failed,
    /// Halted by the kill switch of the agent that bought it: files kept, processes gone, and
    /// started again when the owner reactivates the agent.
    Stopped,
}

impl ServiceStatus {
    pub const ALL: [ServiceStatus; 9] = [
        Self::Provisioning,
        Self::Active,
        Self::Restarting,
        Self::Reinstalling,
        Self::Stopped,
        Self::Terminating,
        Self::Terminated,
        Self::Expired,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Restarting => "restarting",
            Self::Reinstalling => "reinstalling",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Expired | Self::Failed)
    }

    /// `running | restarting | stopped` for the `server.power_state` field.
    pub fn power_state(self) -> &'static str {
        match self {
            Self::Active => "running",
            Self::Restarting | Self::Reinstalling | Self::Provisioning => "restarting",
            _ => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: ServiceId,
    pub order_id: OrderId,
    pub account_id: AccountId,
    pub product_id: String,
    pub status: ServiceStatus,
    pub display_name: String,
    pub image: String,
    pub region: String,
    /// The agent's own public key, when it brought one.
    pub authorized_key: Option<String>,
    pub host: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_username: String,
    pub host_key_fingerprint: Option<String>,
    /// The machine's host public key in OpenSSH format (`ssh-ed25519 AAAA...`), for pinning.
    pub host_public_key: Option<String>,
    /// What the machine gets (from its product and configuration); `None` for services ordered
    /// before sizes were recorded, which run unconfined.
    pub machine_size: Option<MachineSize>,
    /// Whether the order bought backups (`backups_enabled`).
    pub backups_enabled: bool,
    /// A generated private key, encrypted at rest; `None` when the agent brought its key.
    pub private_key_sealed: Option<String>,
    /// How long the lease lasts once active.
    pub lease_seconds: i64,
    pub expires_at: Option<Timestamp>,
    /// When it first became active (the end of provisioning).
    pub activated_at: Option<Timestamp>,
    pub management_capabilities: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Service {
    /// The machine's entry for an OpenSSH `known_hosts` file, when its address and key are known:
    /// `[host]:port key` (OpenSSH's form for a port other than 22) or `host key`.
    pub fn known_hosts_line(&self) -> Option<String> {
        let host = self.host.as_deref()?;
        let key = self.host_public_key.as_deref()?;
        Some(known_hosts_line(host, self.ssh_port.unwrap_or(22), key))
    }
}

/// An OpenSSH `known_hosts` line pinning `key` for `host` on `port`.
pub fn known_hosts_line(host: &str, port: u16, key: &str) -> String {
    if port == 22 {
        format!("{host} {key}")
    } else {
        format!("[{host}]:{port} {key}")
    }
}

impl ServiceStatus {
    /// States in which a machine runs (or is on its way back up) and its lease can grow.
    pub const LIVE: [ServiceStatus; 3] = [Self::Active, Self::Restarting, Self::Reinstalling];

    /// Every state before the end: the service still holds (or will hold) a machine.
    pub const NOT_FINAL: [ServiceStatus; 6] = [
        Self::Provisioning,
        Self::Active,
        Self::Restarting,
        Self::Reinstalling,
        Self::Stopped,
        Self::Terminating,
    ];
}

impl Service {
    /// Lengthens the lease by `seconds` (its expiry too, once it has one).
    pub fn extend_lease(&mut self, seconds: i64, now: Timestamp) {
        self.lease_seconds += seconds;
        self.expires_at = self
            .expires_at
            .map(|at| at + chrono::Duration::seconds(seconds));
        self.updated_at = now;
    }
}
