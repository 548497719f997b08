//! The background jobs that drive machines to the state their service records: provision,
//! restart, reinstall, stop (the kill switch), terminate, and end a lease at its expiry. Each re-reads its service and
//! does nothing if the service has moved on, so a job retried or run late is harmless.

use super::spec_of;
use crate::app::App;
use crate::jobs::kinds::{
    ExpireLease, ProvisionMachine, ReinstallMachine, RestartMachine, StopMachine, TerminateMachine,
};
use crate::jobs::{JobError, JobKind};
use crate::ports::{Applied, Change, Machine, ProvisionError, Provisioner};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use storefront_domain::event::EventType;
use storefront_domain::ids::ServiceId;
use storefront_domain::job::Job;
use storefront_domain::order::OrderStatus;
use storefront_domain::service::{Service, ServiceStatus};
use storefront_domain::timestamp::Timestamp;

/// How long a freshly started machine gets to answer an SSH handshake.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

async fn service_of(app: &App, id: &ServiceId) -> Result<Service, JobError> {
    app.load_service(id)
        .await
        .map_err(|e| JobError::retry(e.message))
}

fn provisioner_of(app: &App, service: &Service) -> Result<Arc<dyn Provisioner>, JobError> {
    app.provisioner_of(service)
        .cloned()
        .map_err(|e| JobError::retry(e.message))
}

async fn wait_ready(provisioner: &Arc<dyn Provisioner>, id: &str) -> Result<(), ProvisionError> {
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

/// Records a running machine on its service.
fn activate(app: &App, service: &mut Service, machine: &Machine, now: Timestamp) {
    service.status = ServiceStatus::Active;
    service.host = Some(machine.host.clone());
    service.ssh_port = Some(machine.port);
    service.ssh_username = machine.username.clone();
    service.image = machine.image.clone();
    service.host_key_fingerprint = Some(machine.host_key_fingerprint.clone());
    service.host_public_key = Some(machine.host_public_key.clone());
    if let Some(key) = &machine.private_key {
        service.private_key_sealed = Some(app.secret_box.seal(key));
    }
    service.updated_at = now;
}

#[async_trait]
impl JobKind for ProvisionMachine {
    const KIND: &'static str = "machine.provision";
    /// Out of attempts, the order fails and is refunded.
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, job: &Job) -> Result<(), JobError> {
        let mut service = service_of(app, &self.service_id).await?;
        if service.status != ServiceStatus::Provisioning {
            return Ok(());
        }
        let provisioner = provisioner_of(app, &service)?;
        let started = async {
            let machine = provisioner.create(&spec_of(&service)).await?;
            wait_ready(&provisioner, service.id.as_str()).await?;
            Ok::<_, ProvisionError>(machine)
        }
        .await;
        let mut order = app
            .load_order(&service.order_id)
            .await
            .map_err(|e| JobError::retry(e.message))?;
        let now = app.clock.now();
        match started {
            Ok(machine) => {
                activate(app, &mut service, &machine, now);
                service.activated_at = Some(now);
                let expires_at = now + chrono::Duration::seconds(service.lease_seconds);
                service.expires_at = Some(expires_at);
                order.status = OrderStatus::Fulfilled;
                order.updated_at = now;
                let expire = ExpireLease {
                    service_id: service.id.clone(),
                }
                .due_at(expires_at, now);
                let mut fulfilled = app.order_events(&[EventType::OrderFulfilled], &order);
                fulfilled.push(app.service_event(
                    EventType::ServiceActive,
                    &service,
                    order.agent_id.clone(),
                ));
                let applied = app
                    .store
                    .apply_change(&Change {
                        order: Some((&order, &[OrderStatus::Processing])),
                        service: Some((&service, &[ServiceStatus::Provisioning])),
                        jobs: std::slice::from_ref(&expire),
                        events: &fulfilled,
                        ..Change::default()
                    })
                    .await
                    .and_then(Applied::without_charge)
                    .map_err(JobError::retry)?;
                if applied {
                    tracing::info!(service_id = %service.id, port = ?service.ssh_port, "machine active");
                }
                Ok(())
            }
            Err(e) if job.attempts < job.max_attempts => Err(JobError::retry(e)),
            Err(e) => {
                // Out of attempts: the order fails and is refunded, the machine removed.
                tracing::error!(service_id = %service.id, error = %e, "provisioning failed for good; refunding");
                let _ = provisioner.terminate(service.id.as_str()).await;
                service.status = ServiceStatus::Failed;
                service.updated_at = now;
                let refund = app.fail(&mut order, e.message, "refund: provisioning failed", now);
                let failed = app.order_events(&[EventType::OrderFailed], &order);
                app.store
                    .apply_change(&Change {
                        order: Some((&order, &[OrderStatus::Processing])),
                        service: Some((&service, &[ServiceStatus::Provisioning])),
                        movement: refund.movement(),
                        jobs: refund.job.as_slice(),
                        events: &failed,
                        ..Change::default()
                    })
                    .await
                    .and_then(Applied::without_charge)
                    .map_err(JobError::retry)?;
                Ok(())
            }
        }
    }
}

/// Restarts or rebuilds the machine of a service in `expected` (`restarting`, `reinstalling`)
/// and records it active again.
async fn bring_back(
    app: &App,
    service_id: &ServiceId,
    expected: ServiceStatus,
    image: Option<&str>,
) -> Result<(), JobError> {
    let mut service = service_of(app, service_id).await?;
    if service.status != expected {
        return Ok(());
    }
    let provisioner = provisioner_of(app, &service)?;
    let id = service.id.to_string();
    let machine = match image {
        None => provisioner.restart(&id).await,
        Some(image) => {
            let mut spec = spec_of(&service);
            spec.image = image.to_owned();
            provisioner.reinstall(&spec).await
        }
    }
    .map_err(JobError::retry)?;
    wait_ready(&provisioner, &id)
        .await
        .map_err(JobError::retry)?;
    activate(app, &mut service, &machine, app.clock.now());
    let done = match image {
        None => EventType::ServiceRestarted,
        Some(_) => EventType::ServiceReinstalled,
    };
    let buyer = app
        .buyer_of(&service)
        .await
        .map_err(|e| JobError::retry(e.message))?;
    let event = app.service_event(done, &service, buyer);
    app.store
        .apply_change(&Change {
            service: Some((&service, &[expected])),
            events: std::slice::from_ref(&event),
            ..Change::default()
        })
        .await
        .and_then(Applied::without_charge)
        .map_err(JobError::retry)?;
    tracing::info!(service_id = %service.id, status = service.status.as_str(), "service action done");
    Ok(())
}

#[async_trait]
impl JobKind for RestartMachine {
    const KIND: &'static str = "machine.restart";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        bring_back(app, &self.service_id, ServiceStatus::Restarting, None).await
    }
}

#[async_trait]
impl JobKind for StopMachine {
    const KIND: &'static str = "machine.stop";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let service = service_of(app, &self.service_id).await?;
        if service.status != ServiceStatus::Stopped {
            return Ok(());
        }
        provisioner_of(app, &service)?
            .stop(service.id.as_str())
            .await
            .map_err(JobError::retry)?;
        tracing::info!(service_id = %service.id, "machine stopped (kill switch)");
        Ok(())
    }
}

#[async_trait]
impl JobKind for ReinstallMachine {
    const KIND: &'static str = "machine.reinstall";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        bring_back(
            app,
            &self.service_id,
            ServiceStatus::Reinstalling,
            Some(&self.image),
        )
        .await
    }
}

#[async_trait]
impl JobKind for TerminateMachine {
    const KIND: &'static str = "machine.terminate";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let service = service_of(app, &self.service_id).await?;
        if service.status != ServiceStatus::Terminating {
            return Ok(());
        }
        end_machine(app, service, ServiceStatus::Terminated).await
    }
}

#[async_trait]
impl JobKind for ExpireLease {
    const KIND: &'static str = "machine.expire";
    const MAX_ATTEMPTS: i64 = 5;

    async fn run(self, app: &App, _job: &Job) -> Result<(), JobError> {
        let service = service_of(app, &self.service_id).await?;
        let now = app.clock.now();
        // A machine stopped by the kill switch still ends with its lease.
        if !ServiceStatus::LIVE.contains(&service.status)
            && service.status != ServiceStatus::Stopped
        {
            return Ok(());
        }
        if let Some(at) = service.expires_at.filter(|at| *at > now) {
            // Extended since this job was scheduled: come back at the new expiry.
            let later = self.due_at(at, now);
            app.store
                .enqueue_job(&later)
                .await
                .map_err(JobError::retry)?;
            return Ok(());
        }
        end_machine(app, service, ServiceStatus::Expired).await
    }
}

/// Removes the machine and records the service as `ended` (terminated or expired), if it is
/// still in the state it was read in.
async fn end_machine(
    app: &App,
    mut service: Service,
    ended: ServiceStatus,
) -> Result<(), JobError> {
    let provisioner = provisioner_of(app, &service)?;
    provisioner
        .terminate(service.id.as_str())
        .await
        .map_err(JobError::retry)?;
    let from = service.status;
    service.status = ended;
    service.host = None;
    service.ssh_port = None;
    service.updated_at = app.clock.now();
    let kind = match ended {
        ServiceStatus::Expired => EventType::ServiceExpired,
        _ => EventType::ServiceTerminated,
    };
    let buyer = app
        .buyer_of(&service)
        .await
        .map_err(|e| JobError::retry(e.message))?;
    let event = app.service_event(kind, &service, buyer);
    app.store
        .apply_change(&Change {
            service: Some((&service, &[from])),
            events: std::slice::from_ref(&event),
            ..Change::default()
        })
        .await
        .and_then(Applied::without_charge)
        .map_err(JobError::retry)?;
    tracing::info!(service_id = %service.id, status = ended.as_str(), "machine removed");
    Ok(())
}
