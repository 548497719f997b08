//! The background worker: claims due jobs of the kinds it has handlers for, keeps their lease
//! alive while a handler runs, and records the outcome (done, retry with backoff, failed).
//!
//! Any number of workers, in any number of processes, may run against one database: the store
//! guarantees a job is held by one worker at a time, and a job whose worker died is taken over
//! once its lease expires.

use crate::app::{store_failure, App};
use async_trait::async_trait;
use chrono::Duration;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use storefront_domain::ids::JobId;
use storefront_domain::job::{backoff, Job, JobOutcome};
use storefront_domain::timestamp::Timestamp;
use storefront_domain::DomainError;

pub mod kinds;

/// Why a handler did not finish its job.
#[derive(Debug, Clone)]
pub struct JobError {
    pub message: String,
    /// Worth another attempt later (a timeout, a busy provider) or not (bad payload).
    pub retryable: bool,
}

impl JobError {
    /// A failure worth another attempt later.
    pub fn retry(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (a payload that names nothing, say).
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            retryable: false,
        }
    }
}

/// Runs jobs of one kind, whatever their payload (the worker's own interface; typed kinds go
/// through [`JobKind`]).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), JobError>;
}

/// A kind of background job: its name in the jobs table, its payload and how to run it. The
/// payload types live in [`kinds`]; each is run by the module that owns its work, and
/// [`App::background_jobs`] registers them all.
#[async_trait]
pub trait JobKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `kind` column.
    const KIND: &'static str;
    /// Attempts before the job fails for good.
    const MAX_ATTEMPTS: i64;

    async fn run(self, app: &App, job: &Job) -> Result<(), JobError>;

    /// This job, due at `run_at`.
    fn due_at(&self, run_at: Timestamp, now: Timestamp) -> Job {
        let payload = serde_json::to_value(self).expect("job payloads are plain data");
        let mut job = Job::new(Self::KIND, payload, Self::MAX_ATTEMPTS, now);
        job.run_at = run_at;
        job
    }

    /// This job, due now.
    fn due_now(&self, now: Timestamp) -> Job {
        self.due_at(now, now)
    }
}

/// Adapts a typed [`JobKind`] to the worker: a payload that does not parse fails the job for
/// good instead of being retried.
struct Typed<K> {
    app: App,
    kind: PhantomData<fn() -> K>,
}

#[async_trait]
impl<K: JobKind> JobHandler for Typed<K> {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let payload: K = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::fatal(format!("unreadable {} payload: {e}", K::KIND)))?;
        payload.run(&self.app, job).await
    }
}

pub struct Worker {
    app: App,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    id: String,
    lease: Duration,
    idle_poll: std::time::Duration,
}

impl App {
    /// Enqueues a job due now.
    pub async fn enqueue_job(
        &self,
        kind: &str,
        payload: Value,
        max_attempts: i64,
    ) -> Result<JobId, DomainError> {
        let job = Job::new(kind, payload, max_attempts, self.clock.now());
        self.store.enqueue_job(&job).await.map_err(store_failure)?;
        Ok(job.id)
    }

    pub async fn job(&self, id: &JobId) -> Result<Option<Job>, DomainError> {
        self.store.get_job(id).await.map_err(store_failure)
    }

    /// Registers every background job kind on a worker: the one list of them.
    pub fn background_jobs(&self, worker: Worker) -> Worker {
        use kinds::*;
        worker
            .register::<ProvisionMachine>()
            .register::<RestartMachine>()
            .register::<StopMachine>()
            .register::<ReinstallMachine>()
            .register::<TerminateMachine>()
            .register::<ExpireLease>()
            .register::<FulfillOrder>()
            .register::<RefundPayment>()
            .register::<ExpireApproval>()
    }
}

impl Worker {
    /// A worker named `id` (unique per process: it identifies lease holders in the jobs table).
    pub fn new(app: App, id: impl Into<String>) -> Self {
        Self {
            app,
            handlers: HashMap::new(),
            id: id.into(),
            lease: Duration::seconds(30),
            idle_poll: std::time::Duration::from_millis(500),
        }
    }

    pub fn handle(mut self, kind: &str, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.to_owned(), handler);
        self
    }

    /// Runs jobs of the typed kind `K`.
    pub fn register<K: JobKind>(self) -> Self {
        let handler = Arc::new(Typed::<K> {
            app: self.app.clone(),
            kind: PhantomData,
        });
        self.handle(K::KIND, handler)
    }

    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// Claims and runs one due job. `Ok(false)` when nothing was due.
    pub async fn run_once(&self) -> Result<bool, DomainError> {
        let kinds = self.kinds();
        let store = &self.app.store;
        let now = self.app.clock.now();
        let Some(job) = store
            .claim_job(&kinds, &self.id, now, now + self.lease)
            .await
            .map_err(store_failure)?
        else {
            return Ok(false);
        };
        let handler = self.handlers[&job.kind].clone();
        tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, "job started");

        // Keep the lease alive while the handler runs, renewing well before it lapses. The
        // renewer is asked to stop between renewals, never aborted in the middle of one.
        let (stop_heartbeat, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let heartbeat = {
            let (app, id, worker, lease) = (
                self.app.clone(),
                job.id.clone(),
                self.id.clone(),
                self.lease,
            );
            let every = lease.to_std().unwrap_or_default() / 3;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    let until = app.clock.now() + lease;
                    match app.store.heartbeat_job(&id, &worker, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job_id = %id, "job lease lost to another worker");
                            return;
                        }
                        Err(e) => tracing::warn!(job_id = %id, error = %e, "job heartbeat failed"),
                    }
                }
            })
        };
        let result = handler.run(&job).await;
        let _ = stop_heartbeat.send(());
        let _ = heartbeat.await;

        let now = self.app.clock.now();
        let outcome = match result {
            Ok(()) => JobOutcome::Done,
            Err(e) if e.retryable && job.attempts < job.max_attempts => JobOutcome::Retry {
                run_at: now + backoff(job.attempts),
                error: e.message,
            },
            Err(e) => JobOutcome::Failed { error: e.message },
        };
        match &outcome {
            JobOutcome::Done => tracing::info!(job_id = %job.id, "job done"),
            JobOutcome::Retry { error, .. } => {
                tracing::warn!(job_id = %job.id, error = %error, "job will be retried")
            }
            JobOutcome::Failed { error } => {
                tracing::error!(job_id = %job.id, error = %error, "job failed")
            }
        }
        let result_label = match &outcome {
            JobOutcome::Done => "done",
            JobOutcome::Retry { .. } => "retry",
            JobOutcome::Failed { .. } => "failed",
        };
        metrics::counter!("storefront_jobs_total", "kind" => job.kind.clone(), "result" => result_label).increment(1);
        let held = store
            .finish_job(&job.id, &self.id, &outcome, now)
            .await
            .map_err(store_failure)?;
        if !held {
            tracing::warn!(job_id = %job.id, "job finished after its lease passed to another worker");
        }
        Ok(true)
    }

    /// Runs jobs until `shutdown` resolves; between empty polls it waits `idle_poll`. A job in
    /// progress when shutdown comes is finished first.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        if self.handlers.is_empty() {
            tracing::info!(worker = %self.id, "worker has no job kinds registered; idle until shutdown");
            shutdown.await;
            return;
        }
        tracing::info!(worker = %self.id, kinds = ?self.kinds(), "worker started");
        loop {
            // A store failure is logged where it happens; back off as if idle and try again.
            let worked = self.run_once().await.unwrap_or_default();
            if worked {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.idle_poll) => {}
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }
}
