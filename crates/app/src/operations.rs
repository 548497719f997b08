//! What an operator's monitoring reads (`/metrics`): the machines by status and the work the
//! background workers have not caught up with (jobs, webhook deliveries), measured on the injected clock; and who may read
//! it.

use crate::app::{store_failure, App};
use crate::secrets::{constant_time_eq, hash_secret};
use storefront_domain::service::ServiceStatus;
use storefront_domain::DomainError;

/// A snapshot of the storefront's moving parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operations {
    /// Machines in every status that is not final (final ones only grow, and are in the
    /// services list).
    pub services_by_status: Vec<(ServiceStatus, i64)>,
    /// Queued jobs whose time has come.
    pub jobs_due: i64,
    /// Jobs a worker holds.
    pub jobs_running: i64,
    /// How long the longest-waiting due job has waited, in seconds (0 when none waits).
    pub oldest_due_job_seconds: i64,
    /// Webhook deliveries not yet delivered (due or waiting for a retry).
    pub webhooks_waiting: i64,
    /// How long ago the oldest of them was queued, in seconds (0 when none waits).
    pub oldest_webhook_seconds: i64,
}

impl App {
    pub async fn operations(&self) -> Result<Operations, DomainError> {
        let now = self.clock.now();
        let counted = self
            .store
            .count_services(&ServiceStatus::NOT_FINAL)
            .await
            .map_err(store_failure)?;
        // Every status is reported, zero included, so a gauge drops to 0 instead of vanishing.
        let services_by_status = ServiceStatus::NOT_FINAL
            .iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                (*status, n)
            })
            .collect();
        let backlog = self.store.job_backlog(now).await.map_err(store_failure)?;
        let (webhooks_waiting, oldest_webhook) =
            self.store.delivery_backlog().await.map_err(store_failure)?;
        Ok(Operations {
            webhooks_waiting,
            oldest_webhook_seconds: oldest_webhook.map_or(0, |at| (now - at).num_seconds().max(0)),
            services_by_status,
            jobs_due: backlog.due,
            jobs_running: backlog.running,
            oldest_due_job_seconds: backlog
                .oldest_due_at
                .map_or(0, |at| (now - at).num_seconds().max(0)),
        })
    }

    /// Whether a request may read the metrics: anyone when the operator set no `metrics_token`,
    /// otherwise only with `Authorization: Bearer <metrics_token>`.
    pub fn authorize_metrics(&self, bearer: Option<&str>) -> Result<(), DomainError> {
        let Some(expected) = &self.settings.metrics_token_hash else {
            return Ok(());
        };
        match bearer {
            Some(token) if constant_time_eq(&hash_secret(token), expected) => Ok(()),
            _ => Err(DomainError::unauthorized()),
        }
    }
}
