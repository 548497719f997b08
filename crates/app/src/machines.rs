//! Machines: the services async orders deliver, their management actions, and the background
//! jobs that carry them out through a `Provisioner`.
//!
//! The database is the source of truth. A user-facing action only records the target state
//! (`restarting`, `terminating`, ...) and enqueues a job in the same transaction; the job drives
//! the machine there and records the result, retrying on failure. A service becomes `active` only
//! after an SSH handshake with it presented the expected host key.

use crate::app::{store_failure, App};
use crate::jobs::{JobError, JobHandler, Worker};
use crate::page::{Page, PageRequest};
use crate::ports::{Change, Machine, MachineSpec, ProvisionError, Provisioner};
use crate::principal::{Principal, TokenScope};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use storefront_domain::catalog::Product;
use storefront_domain::ids::ServiceId;
use storefront_domain::job::Job;
use storefront_domain::ledger::{LedgerKind, LedgerMovement};
use storefront_domain::order::{Failure, Order, OrderStatus, PaymentStatus};
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::{format, Timestamp};
use storefront_domain::{DomainError, ErrorCode};

/// Attempts a provisioning job gets before the order fails and is refunded.
const PROVISION_ATTEMPTS: i64 = 5;
/// How long a freshly started machine gets to answer an SSH handshake.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the lease bought by this configuration lasts.
fn lease_seconds(product: &Product, order: &Order) -> i64 {
    let units = product
        .pricing
        .unit_field
        .as_ref()
        .and_then(|f| order.configuration.get(f))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let unit = match product.pricing.model {
        storefront_domain::catalog::PricingModel::PerMinute => 60,
        storefront_domain::catalog::PricingModel::PerHour => 3_600,
        storefront_domain::catalog::PricingModel::PerMonth => 30 * 86_400,
        storefront_domain::catalog::PricingModel::PerUse => 3_600,
    };
    units.saturating_mul(unit)
}

/// The service an order of `product` will deliver, waiting to be provisioned.
fn new_service(product: &Product, order: &Order, now: Timestamp) -> Service {
    let text = |field: &str| {
        order
            .configuration
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let id = ServiceId::generate();
    Service {
        display_name: text("hostname")
            .unwrap_or_else(|| format!("{}-{}", product.id, &id.as_str()[id.as_str().len() - 6..])),
        id,
        order_id: order.id.clone(),
        account_id: order
            .account_id
            .clone()
            .expect("credit orders have an account"),
        product_id: product.id.clone(),
        status: ServiceStatus::Provisioning,
        image: text("image").unwrap_or_else(|| "debian-12".into()),
        region: text("region").unwrap_or_else(|| "local".into()),
        authorized_key: text("ssh_public_key"),
        host: None,
        ssh_port: None,
        ssh_username: "root".into(),
        host_key_fingerprint: None,
        private_key_sealed: None,
        lease_seconds: lease_seconds(product, order),
        expires_at: None,
        activated_at: None,
        management_capabilities: product.management_capabilities.clone(),
        created_at: now,
        updated_at: now,
    }
}

fn job_for(kind: &str, service: &ServiceId, payload: Value, attempts: i64, now: Timestamp) -> Job {
    let mut body = json!({ "service_id": service });
    if let (Value::Object(b), Value::Object(extra)) = (&mut body, payload) {
        b.extend(extra);
    }
    Job::new(kind, body, attempts, now)
}

fn provision_job(service: &Service, now: Timestamp) -> Job {
    job_for(
        "machine.provision",
        &service.id,
        json!({}),
        PROVISION_ATTEMPTS,
        now,
    )
}

/// A service as the doors show it (`API.md` §7).
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
    /// `SHA256:...` of the machine's host key (seed 000's name for it).
    pub public_key_fingerprint: Option<String>,
    /// The same fingerprint under its usual name.
    pub host_key_fingerprint: Option<String>,
}

fn not_ready(service: &Service) -> DomainError {
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

fn invalid_state(service: &Service, action: &str) -> DomainError {
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
    fn provisioner_of(&self, service: &Service) -> Result<&Arc<dyn Provisioner>, DomainError> {
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
    async fn owned_service(
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

    pub(crate) async fn load_service(&self, id: &ServiceId) -> Result<Service, DomainError> {
        self.store
            .get_service(id)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| DomainError::not_found("service", id.as_str()))
    }

    pub async fn get_service(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ServiceView, DomainError> {
        Ok(ServiceView::from(
            &self
                .owned_service(principal, id, Some(TokenScope::Read))
                .await?,
        ))
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
        job_kind: &str,
        payload: Value,
        update: impl FnOnce(&mut Service),
    ) -> Result<ServiceView, DomainError> {
        let token_scope = (target == ServiceStatus::Terminating).then_some(TokenScope::Terminate);
        let mut service = self.owned_service(principal, id, token_scope).await?;
        let verb = job_kind.trim_start_matches("machine.");
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
            ],
            _ => &[ServiceStatus::Active],
        };
        if !allowed.contains(&service.status) {
            return Err(invalid_state(&service, verb));
        }
        let from = service.status;
        let now = self.clock.now();
        service.status = target;
        service.updated_at = now;
        update(&mut service);
        let job = job_for(job_kind, &service.id, payload, 5, now);
        let moved = self
            .store
            .apply_change(&Change {
                service: Some((&service, &[from])),
                jobs: std::slice::from_ref(&job),
                ..Change::default()
            })
            .await
            .map_err(store_failure)?;
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
            "machine.restart",
            json!({}),
            |_| {},
        )
        .await
    }

    pub async fn reinstall_service(
        &self,
        principal: &Principal,
        id: &str,
        image: &str,
    ) -> Result<ServiceView, DomainError> {
        let service = self.owned_service(principal, id, None).await?;
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
            "machine.reinstall",
            json!({ "image": image }),
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
            "machine.terminate",
            json!({}),
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
            },
        })
    }

    /// Registers the machine job kinds on a worker.
    pub fn machine_jobs(&self, worker: Worker) -> Worker {
        let handler = Arc::new(MachineJobs { app: self.clone() });
        [
            "machine.provision",
            "machine.restart",
            "machine.reinstall",
            "machine.terminate",
            "machine.expire",
        ]
        .into_iter()
        .fold(worker, |w, kind| w.handle(kind, handler.clone()))
    }

    /// After a start: every service that should be running gets its machine started again
    /// (a lease does not outlive the process that ran it; its files do), and machines the
    /// database does not know as live are removed.
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
                Ok(_) => {
                    tracing::info!(service_id = %service.id, "machine running again after start")
                }
                Err(e) => {
                    tracing::error!(service_id = %service.id, error = %e, "could not start a machine again")
                }
            }
        }
        let keep = [
            ServiceStatus::Provisioning,
            ServiceStatus::Active,
            ServiceStatus::Restarting,
            ServiceStatus::Reinstalling,
            ServiceStatus::Terminating,
        ];
        let known: Vec<String> = self
            .store
            .services_in(&keep)
            .await
            .map_err(store_failure)?
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        for provisioner in self.provisioners.values() {
            for id in provisioner.list_owned().await.unwrap_or_default() {
                if !known.contains(&id) {
                    tracing::warn!(machine = %id, "removing a machine no live service owns");
                    let _ = provisioner.terminate(&id).await;
                }
            }
        }
        Ok(())
    }
}

fn spec_of(service: &Service) -> MachineSpec {
    MachineSpec {
        id: service.id.to_string(),
        image: service.image.clone(),
        hostname: service.display_name.clone(),
        authorized_key: service.authorized_key.clone(),
    }
}

struct MachineJobs {
    app: App,
}

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError {
        message: e.to_string(),
        retryable: true,
    }
}

impl MachineJobs {
    async fn wait_ready(
        &self,
        provisioner: &Arc<dyn Provisioner>,
        id: &str,
    ) -> Result<(), ProvisionError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if provisioner.ready(id).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ProvisionError {
            message: "The machine did not come up in time.".into(),
            detail: format!("no SSH handshake with {id}"),
        })
    }

    fn activate(&self, service: &mut Service, machine: &Machine, now: Timestamp) {
        service.status = ServiceStatus::Active;
        service.host = Some(machine.host.clone());
        service.ssh_port = Some(machine.port);
        service.ssh_username = machine.username.clone();
        service.image = machine.image.clone();
        service.host_key_fingerprint = Some(machine.host_key_fingerprint.clone());
        if let Some(key) = &machine.private_key {
            service.private_key_sealed = Some(self.app.secret_box.seal(key));
        }
        service.updated_at = now;
    }

    async fn provision(&self, job: &Job, mut service: Service) -> Result<(), JobError> {
        let app = &self.app;
        if service.status != ServiceStatus::Provisioning {
            return Ok(());
        }
        let provisioner = app
            .provisioner_of(&service)
            .map_err(|e| retry(e.message))?
            .clone();
        let started = async {
            let machine = provisioner.create(&spec_of(&service)).await?;
            self.wait_ready(&provisioner, service.id.as_str()).await?;
            Ok::<_, ProvisionError>(machine)
        }
        .await;
        let mut order = app
            .load_order(&service.order_id)
            .await
            .map_err(|e| retry(e.message))?;
        let now = app.clock.now();
        match started {
            Ok(machine) => {
                self.activate(&mut service, &machine, now);
                service.activated_at = Some(now);
                service.expires_at = Some(now + chrono::Duration::seconds(service.lease_seconds));
                order.status = OrderStatus::Fulfilled;
                order.updated_at = now;
                let mut expire = job_for("machine.expire", &service.id, json!({}), 5, now);
                expire.run_at = service.expires_at.unwrap_or(now);
                let applied = app
                    .store
                    .apply_change(&Change {
                        order: Some((&order, &[OrderStatus::Processing])),
                        service: Some((&service, &[ServiceStatus::Provisioning])),
                        jobs: std::slice::from_ref(&expire),
                        ..Change::default()
                    })
                    .await
                    .map_err(retry)?;
                if applied {
                    tracing::info!(service_id = %service.id, port = ?service.ssh_port, "machine active");
                }
                Ok(())
            }
            Err(e) if job.attempts < job.max_attempts => Err(retry(e)),
            Err(e) => {
                // Out of attempts: the order fails and is refunded, the machine removed.
                tracing::error!(service_id = %service.id, error = %e, "provisioning failed for good; refunding");
                let _ = provisioner.terminate(service.id.as_str()).await;
                service.status = ServiceStatus::Failed;
                service.updated_at = now;
                order.status = OrderStatus::Failed;
                order.failure = Some(Failure {
                    code: ErrorCode::FulfillmentFailed.as_str().into(),
                    message: e.message.clone(),
                });
                let (refund, refund_job) =
                    app.refund_for(&order, "refund: provisioning failed", now);
                if order.payment_status == PaymentStatus::Paid {
                    order.payment_status = PaymentStatus::Refunded;
                }
                order.updated_at = now;
                app.store
                    .apply_change(&Change {
                        order: Some((&order, &[OrderStatus::Processing])),
                        service: Some((&service, &[ServiceStatus::Provisioning])),
                        movement: refund.as_ref(),
                        jobs: refund_job.as_slice(),
                        ..Change::default()
                    })
                    .await
                    .map_err(retry)?;
                Ok(())
            }
        }
    }

    async fn transition(
        &self,
        mut service: Service,
        expected: ServiceStatus,
        job: &Job,
    ) -> Result<(), JobError> {
        let app = &self.app;
        if service.status != expected {
            return Ok(());
        }
        if expected == ServiceStatus::Terminating {
            return self.end_machine(service, ServiceStatus::Terminated).await;
        }
        let provisioner = app
            .provisioner_of(&service)
            .map_err(|e| retry(e.message))?
            .clone();
        let id = service.id.to_string();
        let machine = if expected == ServiceStatus::Restarting {
            provisioner.restart(&id).await
        } else {
            let mut spec = spec_of(&service);
            if let Some(image) = job.payload.get("image").and_then(Value::as_str) {
                spec.image = image.to_owned();
            }
            provisioner.reinstall(&spec).await
        }
        .map_err(retry)?;
        self.wait_ready(&provisioner, &id).await.map_err(retry)?;
        self.activate(&mut service, &machine, app.clock.now());
        app.store
            .apply_change(&Change {
                service: Some((&service, &[expected])),
                ..Change::default()
            })
            .await
            .map_err(retry)?;
        tracing::info!(service_id = %service.id, status = service.status.as_str(), "service action done");
        Ok(())
    }

    async fn expire(&self, service: Service) -> Result<(), JobError> {
        let app = &self.app;
        let now = app.clock.now();
        let live = [
            ServiceStatus::Active,
            ServiceStatus::Restarting,
            ServiceStatus::Reinstalling,
        ];
        if !live.contains(&service.status) {
            return Ok(());
        }
        match service.expires_at {
            Some(at) if at > now => {
                // Extended since this job was scheduled: come back at the new expiry.
                let mut later = job_for("machine.expire", &service.id, json!({}), 5, now);
                later.run_at = at;
                app.store.enqueue_job(&later).await.map_err(retry)?;
                return Ok(());
            }
            _ => {}
        }
        self.end_machine(service, ServiceStatus::Expired).await
    }

    /// Removes the machine and records the service as `ended` (terminated or expired), if it is
    /// still in the state it was read in.
    async fn end_machine(
        &self,
        mut service: Service,
        ended: ServiceStatus,
    ) -> Result<(), JobError> {
        let app = &self.app;
        let provisioner = app
            .provisioner_of(&service)
            .map_err(|e| retry(e.message))?
            .clone();
        provisioner
            .terminate(service.id.as_str())
            .await
            .map_err(retry)?;
        let from = service.status;
        service.status = ended;
        service.host = None;
        service.ssh_port = None;
        service.updated_at = app.clock.now();
        app.store
            .apply_change(&Change {
                service: Some((&service, &[from])),
                ..Change::default()
            })
            .await
            .map_err(retry)?;
        tracing::info!(service_id = %service.id, status = ended.as_str(), "machine removed");
        Ok(())
    }
}

#[async_trait]
impl JobHandler for MachineJobs {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let id = job
            .payload
            .get("service_id")
            .and_then(Value::as_str)
            .and_then(ServiceId::parse)
            .ok_or(JobError {
                message: "job without a service_id".into(),
                retryable: false,
            })?;
        let service = self
            .app
            .load_service(&id)
            .await
            .map_err(|e| retry(e.message))?;
        match job.kind.as_str() {
            "machine.provision" => self.provision(job, service).await,
            "machine.restart" => {
                self.transition(service, ServiceStatus::Restarting, job)
                    .await
            }
            "machine.reinstall" => {
                self.transition(service, ServiceStatus::Reinstalling, job)
                    .await
            }
            "machine.terminate" => {
                self.transition(service, ServiceStatus::Terminating, job)
                    .await
            }
            "machine.expire" => self.expire(service).await,
            other => Err(JobError {
                message: format!("unknown job kind {other}"),
                retryable: false,
            }),
        }
    }
}

/// The answer to a lease extension, as its idempotency key remembers it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extension {
    pub service_id: String,
    pub status: String,
    pub service: Value,
    /// The order that paid for the extension.
    pub order: Value,
}

/// `(extension, replayed)`.
pub type ExtendResult = (Extension, bool);

impl App {
    /// Extends an active lease by `additional_minutes`, rounded up to whole billing units
    /// (minutes, hours or months) and charged at the product's unit price, exactly once per
    /// idempotency key. The charge is an order of its own, so the ledger keeps one charge per
    /// order and the extension shows in the order history.
    pub async fn extend_service(
        &self,
        principal: &Principal,
        id: &str,
        additional_minutes: i64,
        key: &str,
        fingerprint: &str,
    ) -> Result<ExtendResult, DomainError> {
        let service = self
            .owned_service(principal, id, Some(TokenScope::Extend))
            .await?;
        let key_ref = crate::ports::IdempotencyRef {
            scope: principal.idempotency_scope(),
            route: format!("POST /api/v1/services/{}/extend", service.id),
            key: key.to_owned(),
        };
        if let Some(stored) = self.claim_idempotency(&key_ref, fingerprint).await? {
            let extension = serde_json::from_value(stored).map_err(|_| DomainError::internal())?;
            return Ok((extension, true));
        }
        match self
            .charge_extension(principal, service, additional_minutes, &key_ref)
            .await
        {
            Ok(extension) => Ok((extension, false)),
            Err(e) => {
                self.release_idempotency(&key_ref).await;
                Err(e)
            }
        }
    }

    async fn charge_extension(
        &self,
        principal: &Principal,
        mut service: Service,
        additional_minutes: i64,
        key_ref: &crate::ports::IdempotencyRef,
    ) -> Result<Extension, DomainError> {
        use storefront_domain::catalog::PricingModel;
        let live = [
            ServiceStatus::Active,
            ServiceStatus::Restarting,
            ServiceStatus::Reinstalling,
        ];
        if !live.contains(&service.status) {
            return Err(invalid_state(&service, "be extended"));
        }
        let product = self
            .catalog
            .get(&service.product_id)
            .ok_or_else(DomainError::internal)?;
        let unit_seconds: i64 = match product.pricing.model {
            PricingModel::PerMinute => 60,
            PricingModel::PerHour => 3_600,
            PricingModel::PerMonth => 30 * 86_400,
            PricingModel::PerUse => return Err(invalid_state(&service, "be extended")),
        };
        if !(1..=525_600).contains(&additional_minutes) {
            return Err(DomainError::validation(
                "additional_minutes",
                format!("{additional_minutes} is not a valid extension."),
                "Send a whole number of minutes from 1 to 525600.",
            ));
        }
        let units = (additional_minutes * 60 + unit_seconds - 1) / unit_seconds;
        let held_units = service.lease_seconds / unit_seconds;
        if let Some(max) = product.pricing.max_units {
            if held_units + units > max {
                let room = (max - held_units).max(0) * unit_seconds / 60;
                return Err(DomainError::validation(
                    "additional_minutes",
                    format!(
                        "The lease would exceed the product's maximum of {max} {}.",
                        product.pricing.model.unit_label(max)
                    ),
                    format!("Extend by at most {room} minutes."),
                ));
            }
        }
        let paid_for = self.load_order(&service.order_id).await?;
        let unit_minor = match &product.pricing.unit_minor_by {
            Some(by) => paid_for
                .configuration
                .get(&by.field)
                .and_then(Value::as_str)
                .and_then(|v| by.prices.get(v))
                .copied()
                .unwrap_or(product.pricing.unit_minor),
            None => product.pricing.unit_minor,
        };
        let amount = units
            .checked_mul(unit_minor)
            .ok_or_else(DomainError::internal)?;
        let now = self.clock.now();
        let line = storefront_domain::pricing::LineItem {
            description: format!(
                "Extension of {}: {units} {}",
                service.id,
                product.pricing.model.unit_label(units)
            ),
            quantity: units,
            unit_minor,
            amount_minor: amount,
        };
        let mut configuration = serde_json::Map::new();
        configuration.insert("extends_service_id".into(), json!(service.id));
        configuration.insert("additional_minutes".into(), json!(additional_minutes));
        configuration.insert("added_seconds".into(), json!(units * unit_seconds));
        let quote = storefront_domain::quote::Quote {
            id: storefront_domain::ids::QuoteId::generate(),
            account_id: Some(service.account_id.clone()),
            product_id: product.id.clone(),
            quantity: 1,
            configuration_normalized: configuration.clone(),
            configuration_warnings: Vec::new(),
            line_items: vec![line.clone()],
            total_minor: amount,
            currency: product.pricing.currency.clone(),
            catalog_version: self.catalog.version().to_owned(),
            created_at: now,
            expires_at: now,
            management_capabilities: Vec::new(),
        };
        let mut order = Order {
            id: storefront_domain::ids::OrderId::generate(),
            account_id: Some(service.account_id.clone()),
            // An agent's extensions count toward its budgets like its orders.
            agent_id: principal.agent_id().cloned(),
            status: OrderStatus::Fulfilled,
            payment_status: PaymentStatus::Paid,
            payment_method: storefront_domain::order::PaymentMethod::Credit,
            product_id: product.id.clone(),
            quantity: 1,
            configuration,
            configuration_warnings: Vec::new(),
            line_items: vec![line],
            total_minor: amount,
            currency: product.pricing.currency.clone(),
            quote_id: quote.id.clone(),
            idempotency_key: key_ref.key.clone(),
            created_at: now,
            updated_at: now,
            provisioning_estimate: None,
            requires_install_configuration: false,
            service_id: Some(service.id.clone()),
            result: Some(
                json!({ "extended_service_id": service.id, "added_seconds": units * unit_seconds }),
            ),
            failure: None,
        };
        // An agent key's extension passes the owner's rules like an order.
        let budget = match self
            .govern_order(
                principal,
                product,
                amount,
                product.pricing.currency.as_str(),
            )
            .await?
        {
            crate::agents::Gate::Proceed(guard) => guard,
            crate::agents::Gate::Escalate(escalation) => {
                self.store
                    .insert_quote(&quote)
                    .await
                    .map_err(store_failure)?;
                order.status = OrderStatus::AwaitingApproval;
                order.payment_status = PaymentStatus::Unpaid;
                order.result = None;
                let waiting = |order: &crate::views::OrderView| Extension {
                    service_id: service.id.to_string(),
                    status: "awaiting_approval".into(),
                    service: serde_json::to_value(ServiceView::from(&service)).expect("plain data"),
                    order: serde_json::to_value(order).expect("plain data"),
                };
                let view = self
                    .hold_for_approval(order, escalation, key_ref, |order| {
                        serde_json::to_value(waiting(order)).expect("plain data")
                    })
                    .await?;
                return Ok(waiting(&view));
            }
        };
        let from = service.status;
        let added = units * unit_seconds;
        service.lease_seconds += added;
        service.expires_at = service
            .expires_at
            .map(|at| at + chrono::Duration::seconds(added));
        service.updated_at = now;
        let extension = Extension {
            service_id: service.id.to_string(),
            status: "accepted".into(),
            service: serde_json::to_value(ServiceView::from(&service)).expect("plain data"),
            order: serde_json::to_value(self.order_view(&order)).expect("plain data"),
        };
        let charge = (amount > 0).then(|| LedgerMovement {
            account_id: service.account_id.clone(),
            kind: LedgerKind::Charge,
            amount_minor: -amount,
            order_id: Some(order.id.clone()),
            description: format!("lease extension of {} ({})", service.id, order.id),
        });
        let completion = crate::ports::IdempotencyCompletion::new(
            key_ref.clone(),
            serde_json::to_value(&extension).expect("plain data"),
        );
        let applied = self
            .store
            .insert_order(&crate::ports::NewOrder {
                order: &order,
                quote: Some(&quote),
                idempotency: Some(key_ref),
                charge: charge.as_ref(),
                service: None,
                jobs: &[],
                resource_tokens: &[],
                updates_service: Some((&service, &[from])),
                completes: Some(&completion),
                payment: None,
                budget: budget.as_ref(),
                approval: None,
            })
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::InsufficientCredits { balance_minor } => {
                    crate::orders::insufficient_credits(balance_minor, amount, &order.currency)
                }
                crate::ports::StoreError::BudgetExceeded {
                    spent_minor,
                    max_minor,
                } => DomainError::new(
                    ErrorCode::SpendingCapExceeded,
                    format!("This extension would exceed the agent's budget: {spent_minor} already spent of {max_minor}."),
                    "Ask the account owner to raise the budget.",
                ),
                other => store_failure(other),
            })?;
        if !applied {
            let current = self.load_service(&service.id).await?;
            return Err(invalid_state(&current, "be extended"));
        }
        tracing::info!(service_id = %service.id, added_seconds = added, charged_minor = amount, "lease extended");
        Ok(extension)
    }
}

/// Everything that delivers a machine order, created with the order (or with its install
/// configuration): the service, its provisioning job, and resource tokens (secrets shown once;
/// only their hashes are stored).
pub(crate) struct Delivery {
    pub service: Service,
    pub jobs: Vec<Job>,
    pub stored_tokens: Vec<crate::ports::ResourceToken>,
    tokens: Vec<(TokenScope, String)>,
}

impl Delivery {
    /// `management_tokens` for the one response that shows them.
    pub fn tokens_view(&self) -> Value {
        let token = |scope: TokenScope| {
            self.tokens
                .iter()
                .find(|(s, _)| *s == scope)
                .map(|(_, t)| t.clone())
        };
        json!({
            "read_token": token(TokenScope::Read),
            "extend_token": token(TokenScope::Extend),
            "terminate_token": token(TokenScope::Terminate),
        })
    }
}

impl App {
    /// The delivery of an async order whose product a provisioner delivers; `None` otherwise.
    /// Sets the order's `service_id`.
    pub(crate) fn machine_delivery(
        &self,
        product: &Product,
        order: &mut Order,
        now: Timestamp,
    ) -> Option<Delivery> {
        if product.kind != storefront_domain::catalog::ProductKind::Async {
            return None;
        }
        self.provisioner(&product.fulfiller)?;
        let service = new_service(product, order, now);
        order.service_id = Some(service.id.clone());
        let tokens: Vec<(TokenScope, String)> = TokenScope::ALL
            .into_iter()
            .map(|scope| (scope, crate::secrets::new_resource_token()))
            .collect();
        let stored_tokens = tokens
            .iter()
            .map(|(scope, secret)| crate::ports::ResourceToken {
                token_hash: crate::secrets::hash_secret(secret),
                service_id: service.id.clone(),
                scope: scope.as_str().to_owned(),
                created_at: now,
            })
            .collect();
        Some(Delivery {
            jobs: vec![provision_job(&service, now)],
            service,
            stored_tokens,
            tokens,
        })
    }
}
