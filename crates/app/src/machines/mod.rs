//! Machines: the services async orders deliver, their management actions, and the background
//! jobs that carry them out through a `Provisioner`.
//!
//! The database is the source of truth. A user-facing action only records the target state
//! (`restarting`, `terminating`, ...) and enqueues a job in the same transaction; the job drives
//! the machine there and records the result, retrying on failure. A service becomes `active` only
//! after an SSH handshake with it presented the expected host key.

mod jobs;

use crate::app::{store_failure, App};
use crate::jobs::kinds::{ReinstallMachine, RestartMachine, StopMachine, TerminateMachine};
use crate::jobs::JobKind;
use crate::page::{Page, PageRequest};
use crate::ports::{Applied, Backup, Change, Machine, MachineSpec, Provisioner};
use crate::principal::{Principal, TokenScope};
use serde::Serialize;
use std::sync::Arc;
use storefront_domain::ids::{AgentId, ServiceId};
use storefront_domain::job::Job;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::{format, Timestamp};
use storefront_domain::{DomainError, ErrorCode};

/// A service as the doors show it.
// docs/api.md, "Services".
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceView {
    pub id: String,
    pub order_id: String,
    pub product_id: String,
    pub status: ServiceStatus,
    pub display_name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Where the machine is; `null` once it is gone.
    pub server: Option<ServerView>,
    pub management_capabilities: Vec<String>,
    /// The machine's backups, oldest first: in the service's own view when its order bought
    /// backups (absent elsewhere, such as lists and events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<Backup>>,
}

/// The machine behind a service.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerView {
    pub host: Option<String>,
    /// Local machines have no public address.
    pub public_ipv4: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_username: String,
    pub image: String,
    pub region: String,
    /// `on`, `off`, `starting` or `stopping`.
    pub power_state: &'static str,
    /// `SHA256:...` of the machine's SSH host key.
    pub host_key_fingerprint: Option<String>,
    /// The machine's SSH host key (`ssh-ed25519 AAAA...`): pin it, do not trust on first use.
    /// It changes with a reinstall (a `service.reinstalled` event carries the new one).
    pub host_public_key: Option<String>,
    /// A ready line for an OpenSSH `known_hosts` file (`[host]:port ssh-ed25519 AAAA...`).
    pub known_hosts_line: Option<String>,
}

impl ServiceView {
    /// While the machine is on its way somewhere, when to poll again (seconds).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        matches!(
            self.status,
            ServiceStatus::Provisioning
                | ServiceStatus::Restarting
                | ServiceStatus::Reinstalling
                | ServiceStatus::Terminating
        )
        .then_some(2)
    }
}

impl From<&Service> for ServiceView {
    fn from(s: &Service) -> Self {
        let server = (!s.status.is_terminal()).then(|| ServerView {
            host: s.host.clone(),
            public_ipv4: None,
            ssh_port: s.ssh_port,
            ssh_username: s.ssh_username.clone(),
            image: s.image.clone(),
            region: s.region.clone(),
            power_state: s.status.power_state(),
            host_key_fingerprint: s.host_key_fingerprint.clone(),
            host_public_key: s.host_public_key.clone(),
            known_hosts_line: s.known_hosts_line(),
        });
        Self {
            id: s.id.to_string(),
            order_id: s.order_id.to_string(),
            product_id: s.product_id.clone(),
            status: s.status,
            display_name: s.display_name.clone(),
            created_at: format(&s.created_at),
            expires_at: s.expires_at.as_ref().map(format),
            server,
            management_capabilities: s.management_capabilities.clone(),
            backups: None,
        }
    }
}

/// What `GET .../credentials` returns: handoff material, shown to the key holder.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// Always `ssh` for machines.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub credentials: SshCredentials,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshCredentials {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: String,
    /// The generated OpenSSH private key; `null` when the order sent its own public key.
    pub private_key: Option<String>,
    /// `SHA256:...` of the machine's host key (the contract's name for it).
    pub public_key_fingerprint: Option<String>,
    /// The same fingerprint under its usual name.
    pub host_key_fingerprint: Option<String>,
    /// The machine's SSH host key (`ssh-ed25519 AAAA...`), to pin instead of trusting on first use.
    pub host_public_key: Option<String>,
    /// A ready line for an OpenSSH `known_hosts` file (`[host]:port ssh-ed25519 AAAA...`).
    pub known_hosts_line: Option<String>,
}

fn not_ready(service: &Service) -> DomainError {
    if service.status == ServiceStatus::Stopped {
        return DomainError::new(
            ErrorCode::InvalidState,
            format!(
                "Service {} is stopped: the agent that bought it was suspended (kill switch).",
                service.id
            ),
            "The machine starts again, with its files, when the owner reactivates the agent.",
        );
    }
    if service.status.is_terminal() || service.status == ServiceStatus::Terminating {
        // Polling would never help: the machine and its keys are gone for good.
        let how = match service.status {
            ServiceStatus::Expired => "its lease expired",
            ServiceStatus::Failed => "it failed to provision",
            _ => "it was terminated",
        };
        return DomainError::new(
            ErrorCode::InvalidState,
            format!(
                "Service {} is {}: {how}, and its credentials are gone.",
                service.id,
                service.status.as_str()
            ),
            "Order a new machine.",
        );
    }
    DomainError::new(
        ErrorCode::NotReady,
        format!(
            "Service {} is {}; credentials are handed over once it is active.",
            service.id,
            service.status.as_str()
        ),
        "Poll the order or service and fetch the credentials when its status is \"active\".",
    )
    .with_retry_after(2)
}

pub(crate) fn invalid_state(service: &Service, action: &str) -> DomainError {
    DomainError::new(
        ErrorCode::InvalidState,
        format!(
            "Service {} is {} and cannot {action} now.",
            service.id,
            service.status.as_str()
        ),
        "Check the service's status; actions need an active service.",
    )
}

impl App {
    pub(crate) fn provisioner_of(
        &self,
        service: &Service,
    ) -> Result<&Arc<dyn Provisioner>, DomainError> {
        let product = self
            .catalog
            .get(&service.product_id)
            .ok_or_else(DomainError::internal)?;
        self.provisioner(&product.fulfiller).ok_or_else(|| {
            DomainError::service_unavailable(
                "The provider of this service is not configured.",
                "Try again later.",
            )
        })
    }

    /// The service if the principal may act on it with `scope`: a key of its account may do
    /// anything; a resource token only its own scope on its own service (`None`: keys only).
    pub(crate) async fn owned_service(
        &self,
        principal: &Principal,
        id: &str,
        scope: Option<TokenScope>,
    ) -> Result<Service, DomainError> {
        // Without any credential the answer is 401 whatever the id (and whether it exists).
        if matches!(principal, Principal::Public) {
            return Err(DomainError::unauthorized());
        }
        let not_found = || DomainError::not_found("service", id);
        let sid = ServiceId::parse(id).ok_or_else(not_found)?;
        if let Principal::Resource {
            service_id,
            scope: held,
        } = principal
        {
            if service_id != &sid {
                return Err(not_found());
            }
            if scope != Some(*held) {
                return Err(DomainError::forbidden(format!(
                    "This {} token cannot do that; each resource token allows one action.",
                    held.as_str()
                )));
            }
        }
        let service = self
            .store
            .get_service(&sid)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        match principal {
            Principal::Resource { .. } => Ok(service),
            _ if principal.require_account()? == &service.account_id => Ok(service),
            _ => Err(not_found()),
        }
    }

    pub async fn get_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ServiceView, DomainError> {
        let service = self
            .owned_service(principal, id, Some(TokenScope::Read))
            .await?;
        let mut view = ServiceView::from(&service);
        if service.backups_enabled && !service.status.is_terminal() {
            if let Ok(provisioner) = self.provisioner_of(&service) {
                let listed = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    provisioner.backups(service.id.as_str()),
                )
                .await;
                match listed {
                    Ok(Ok(backups)) => view.backups = Some(backups),
                    // The service is still shown; its backups are missing from this answer only.
                    Ok(Err(e)) => {
                        tracing::warn!(service_id = %service.id, error = %e, "could not list backups")
                    }
                    Err(_) => {
                        tracing::warn!(service_id = %service.id, "listing backups timed out")
                    }
                }
            }
        }
        Ok(view)
    }

    pub async fn list_services(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<ServiceView>, DomainError> {
        let account = principal.require_account()?;
        if let Some(c) = &page.cursor {
            if ServiceId::parse(c).is_none() {
                return Err(PageRequest::invalid_cursor());
            }
        }
        let services = self
            .store
            .list_services(account, page)
            .await
            .map_err(store_failure)?;
        let views = services.iter().map(ServiceView::from).collect();
        Ok(Page::from_fetched(views, page.limit, |v: &ServiceView| {
            v.id.clone()
        }))
    }

    /// Records a target state and enqueues the job that reaches it, if the service is active.
    async fn request_action(
        &self,
        principal: &Principal,
        id: &str,
        target: ServiceStatus,
        job: impl FnOnce(&Service) -> Job,
        update: impl FnOnce(&mut Service),
    ) -> Result<ServiceView, DomainError> {
        let token_scope = (target == ServiceStatus::Terminating).then_some(TokenScope::Terminate);
        let mut service = self.owned_service(principal, id, token_scope).await?;
        let verb = match target {
            ServiceStatus::Restarting => "restart",
            ServiceStatus::Reinstalling => "reinstall",
            _ => "terminate",
        };
        let capability = match target {
            ServiceStatus::Restarting => Some("server:restart"),
            ServiceStatus::Reinstalling => Some("server:reinstall"),
            _ => None,
        };
        if let Some(cap) = capability {
            if !service.management_capabilities.iter().any(|c| c == cap) {
                return Err(DomainError::new(
                    ErrorCode::InvalidState,
                    format!("This service does not support {verb}."),
                    format!(
                        "See management_capabilities: {}.",
                        service.management_capabilities.join(", ")
                    ),
                ));
            }
        }
        let allowed: &[ServiceStatus] = match target {
            ServiceStatus::Terminating => &[
                ServiceStatus::Active,
                ServiceStatus::Provisioning,
                ServiceStatus::Restarting,
                ServiceStatus::Reinstalling,
                ServiceStatus::Stopped,
            ],
            _ => &[ServiceStatus::Active],
        };
        if !allowed.contains(&service.status) {
            return Err(invalid_state(&service, verb));
        }
        let now = self.clock.now();
        service.updated_at = now;
        update(&mut service);
        let job = job(&service);
        let moved = self.move_service(&mut service, target, now, job).await?;
        if !moved {
            let current = self.load_service(&service.id).await?;
            return Err(invalid_state(&current, verb));
        }
        tracing::info!(service_id = %service.id, action = verb, "service action accepted");
        Ok(ServiceView::from(&service))
    }

    pub async fn restart_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ServiceView, DomainError> {
        self.request_action(
            principal,
            id,
            ServiceStatus::Restarting,
            |s| {
                RestartMachine {
                    service_id: s.id.clone(),
                }
                .due_now(s.updated_at)
            },
            |_| {},
        )
        .await
    }

    pub async fn reinstall_service(
        &self,
        principal: &Principal,
        id: &str,
        image: Option<&str>,
    ) -> Result<ServiceView, DomainError> {
        let service = self.owned_service(principal, id, None).await?;
        // Without a choice, the machine is rebuilt from the image it runs.
        let image = image.unwrap_or(&service.image);
        let product = self
            .catalog
            .get(&service.product_id)
            .ok_or_else(DomainError::internal)?;
        let offered: Vec<String> = product
            .field("image")
            .map(|f| f.values.clone())
            .unwrap_or_default();
        if !offered.iter().any(|i| i == image) {
            return Err(DomainError::validation(
                "image",
                format!("'{image}' is not an image of {}.", product.id),
                format!("Use one of: {}.", offered.join(", ")),
            ));
        }
        let image = image.to_owned();
        self.request_action(
            principal,
            id,
            ServiceStatus::Reinstalling,
            |s| {
                ReinstallMachine {
                    service_id: s.id.clone(),
                    image: s.image.clone(),
                }
                .due_now(s.updated_at)
            },
            move |s| s.image = image,
        )
        .await
    }

    pub async fn terminate_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ServiceView, DomainError> {
        self.request_action(
            principal,
            id,
            ServiceStatus::Terminating,
            |s| {
                TerminateMachine {
                    service_id: s.id.clone(),
                }
                .due_now(s.updated_at)
            },
            |_| {},
        )
        .await
    }

    pub async fn service_credentials(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Credentials, DomainError> {
        let service = self.owned_service(principal, id, None).await?;
        self.credentials_of(&service)
    }

    pub(crate) fn credentials_of(&self, service: &Service) -> Result<Credentials, DomainError> {
        if service.status != ServiceStatus::Active {
            return Err(not_ready(service));
        }
        let private_key = match &service.private_key_sealed {
            Some(sealed) => Some(self.secret_box.open(sealed).ok_or_else(|| {
                tracing::error!(service_id = %service.id, "sealed credentials do not open with the configured key");
                DomainError::internal()
            })?),
            None => None,
        };
        Ok(Credentials {
            kind: "ssh",
            credentials: SshCredentials {
                host: service.host.clone(),
                port: service.ssh_port,
                username: service.ssh_username.clone(),
                private_key,
                public_key_fingerprint: service.host_key_fingerprint.clone(),
                host_key_fingerprint: service.host_key_fingerprint.clone(),
                host_public_key: service.host_public_key.clone(),
                known_hosts_line: service.known_hosts_line(),
            },
        })
    }

    /// (a lease does not outlive the process that ran it; its files do), and machines the
    /// database does not know as live are removed.
    /// What a machine started again by reconciliation tells that its record may lack: a new
    /// port (its old one was taken in the meantime; agents would be sent to the old address) or,
    /// for a service recorded before host keys were handed over, its host key.
    async fn record_restarted_machine(&self, service: &Service, machine: &Machine) {
        let same_key =
            service.host_key_fingerprint.as_deref() == Some(machine.host_key_fingerprint.as_str());
        let moved = service.ssh_port != Some(machine.port)
            || service.host.as_deref() != Some(machine.host.as_str());
        let keyless = same_key && service.host_public_key.is_none();
        if !moved && !keyless {
            return;
        }
        // Read again: reconciliation may have taken long, and a change made meanwhile (a paid
        // extension) must not be written over.
        let Ok(mut current) = self.load_service(&service.id).await else {
            return;
        };
        current.host = Some(machine.host.clone());
        current.ssh_port = Some(machine.port);
        if current.host_key_fingerprint.as_deref() == Some(machine.host_key_fingerprint.as_str()) {
            current.host_public_key = Some(machine.host_public_key.clone());
        }
        current.updated_at = self.clock.now();
        let change = Change {
            service: Some((&current, &[current.status])),
            ..Change::default()
        };
        if let Err(e) = self.store.apply_change(&change).await {
            tracing::error!(service_id = %service.id, error = %e, "could not record a machine's new address");
        }
    }

    pub async fn reconcile_machines(&self) -> Result<(), DomainError> {
        let live = [
            ServiceStatus::Active,
            ServiceStatus::Restarting,
            ServiceStatus::Reinstalling,
        ];
        let services = self.store.services_in(&live).await.map_err(store_failure)?;
        for service in &services {
            let Ok(provisioner) = self.provisioner_of(service) else {
                continue;
            };
            match provisioner.create(&spec_of(service)).await {
                Ok(machine) => {
                    tracing::info!(service_id = %service.id, "machine running again after start");
                    self.record_restarted_machine(service, &machine).await;
                }
                Err(e) => {
                    tracing::error!(service_id = %service.id, error = %e, "could not start a machine again")
                }
            }
        }
        // What the engines hold is listed before the database is read: a machine created in
        // between (by another worker) is then known, not removed as an orphan.
        let mut held = Vec::new();
        for provisioner in self.provisioners.values() {
            held.push((
                provisioner,
                provisioner.list_owned().await.unwrap_or_default(),
            ));
        }
        // A stopped machine is kept (not started): the kill switch holds it.
        let known: Vec<String> = self
            .store
            .services_in(&ServiceStatus::NOT_FINAL)
            .await
            .map_err(store_failure)?
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        for (provisioner, ids) in held {
            for id in ids {
                if !known.contains(&id) {
                    tracing::warn!(machine = %id, "removing a machine no live service owns");
                    let _ = provisioner.terminate(&id).await;
                }
            }
        }
        Ok(())
    }
}

/// What the kill switch did to the machines of an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachinesHeld {
    /// Machines halted (files kept) until the agent is reactivated.
    pub stopped: usize,
    /// Services whose resource tokens no longer work.
    pub tokens_revoked: usize,
}

impl App {
    /// The kill switch's hold on the machines an agent bought: every resource token it was
    /// handed stops working, and — unless the owner keeps them running — running machines are
    /// stopped (not deleted) until the agent is reactivated.
    pub(crate) async fn hold_agent_machines(
        &self,
        agent: &AgentId,
        stop_machines: bool,
    ) -> Result<MachinesHeld, DomainError> {
        let services = self
            .store
            .agent_services(agent, &ServiceStatus::NOT_FINAL)
            .await
            .map_err(store_failure)?;
        let mut held = MachinesHeld::default();
        for mut service in services {
            if self
                .store
                .revoke_resource_tokens(&service.id)
                .await
                .map_err(store_failure)?
                > 0
            {
                held.tokens_revoked += 1;
            }
            // Only a running machine is stopped; one on its way up is stopped once it runs
            // only if the switch is pulled again (its owner sees it in the services list).
            if !stop_machines || service.status != ServiceStatus::Active {
                continue;
            }
            let now = self.clock.now();
            let job = StopMachine {
                service_id: service.id.clone(),
            }
            .due_now(now);
            if self
                .move_service(&mut service, ServiceStatus::Stopped, now, job)
                .await?
            {
                held.stopped += 1;
            }
        }
        Ok(held)
    }

    /// Moves a service from the status it was read in to `to` at `now`, with the job that acts
    /// on it, in one transaction; `false` when someone else moved it first.
    async fn move_service(
        &self,
        service: &mut Service,
        to: ServiceStatus,
        now: Timestamp,
        job: Job,
    ) -> Result<bool, DomainError> {
        let from = service.status;
        service.status = to;
        service.updated_at = now;
        self.store
            .apply_change(&Change {
                service: Some((service, &[from])),
                jobs: std::slice::from_ref(&job),
                ..Change::default()
            })
            .await
            .and_then(Applied::without_charge)
            .map_err(store_failure)
    }

    /// Starts again, files kept, the machines the kill switch stopped; how many.
    pub(crate) async fn release_agent_machines(
        &self,
        agent: &AgentId,
    ) -> Result<usize, DomainError> {
        let stopped = self
            .store
            .agent_services(agent, &[ServiceStatus::Stopped])
            .await
            .map_err(store_failure)?;
        let mut started = 0;
        for mut service in stopped {
            let now = self.clock.now();
            let job = RestartMachine {
                service_id: service.id.clone(),
            }
            .due_now(now);
            if self
                .move_service(&mut service, ServiceStatus::Restarting, now, job)
                .await?
            {
                started += 1;
            }
        }
        Ok(started)
    }
}

fn spec_of(service: &Service) -> MachineSpec {
    MachineSpec {
        id: service.id.to_string(),
        image: service.image.clone(),
        hostname: service.display_name.clone(),
        authorized_key: service.authorized_key.clone(),
        size: service.machine_size,
        region: Some(service.region.clone()),
        backups: service.backups_enabled,
    }
}
