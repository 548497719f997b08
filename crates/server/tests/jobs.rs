//! The durable job engine: every job runs exactly once across concurrent workers, failures are
//! retried with backoff, and a dead worker's job is taken over when its lease expires.

mod common;

use async_trait::async_trait;
use common::{Backend, TestServer};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use storefront_app::jobs::{JobError, JobHandler, Worker};
use storefront_domain::job::{Job, JobOutcome, JobStatus};

/// Records which worker ran which job.
#[derive(Default)]
struct Tally {
    runs: Mutex<HashMap<String, usize>>,
}

#[async_trait]
impl JobHandler for Tally {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(job.id.to_string())
            .or_default() += 1;
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// Fails its first attempt, succeeds after.
struct FailsOnce;

#[async_trait]
impl JobHandler for FailsOnce {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        if job.attempts == 1 {
            Err(JobError {
                message: "provider busy".into(),
                retryable: true,
            })
        } else {
            Ok(())
        }
    }
}

dual_test!(concurrent_workers_run_every_job_exactly_once);
async fn concurrent_workers_run_every_job_exactly_once(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            s.app
                .enqueue_job("tally", json!({"n": i}), 3)
                .await
                .unwrap(),
        );
    }
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let worker = Worker::new(s.app.clone(), format!("w{w}")).handle("tally", tally.clone());
            tokio::spawn(async move { while worker.run_once().await.unwrap() {} })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let runs = tally.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 60, "every job ran");
    assert!(runs.values().all(|n| *n == 1), "no job ran twice: {runs:?}");
    for id in ids {
        let job = s.app.job(&id).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Done, 1));
    }
}

dual_test!(a_failed_attempt_is_retried_after_its_backoff);
async fn a_failed_attempt_is_retried_after_its_backoff(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let id = s.app.enqueue_job("flaky", json!({}), 3).await.unwrap();
    let worker = Worker::new(s.app.clone(), "w").handle("flaky", Arc::new(FailsOnce));
    assert!(worker.run_once().await.unwrap());
    let job = s.app.job(&id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.last_error.as_deref(), Some("provider busy"));
    assert!(
        !worker.run_once().await.unwrap(),
        "not due before its backoff"
    );
    s.clock.advance(chrono::Duration::seconds(3));
    assert!(worker.run_once().await.unwrap());
    let job = s.app.job(&id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 2));
}

dual_test!(a_dead_workers_job_is_taken_over_when_its_lease_expires);
async fn a_dead_workers_job_is_taken_over_when_its_lease_expires(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let id = s.app.enqueue_job("tally", json!({}), 5).await.unwrap();
    // A worker claims the job and dies without finishing or renewing it.
    let now = s.app.clock().now();
    let claimed = s
        .store
        .claim_job(
            &["tally".into()],
            "dead",
            now,
            now + chrono::Duration::seconds(30),
        )
        .await
        .unwrap();
    assert_eq!(claimed.map(|j| j.id), Some(id.clone()));
    let tally = Arc::new(Tally::default());
    let worker = Worker::new(s.app.clone(), "alive").handle("tally", tally.clone());
    assert!(!worker.run_once().await.unwrap(), "the lease still holds");
    s.clock.advance(chrono::Duration::seconds(31));
    assert!(worker.run_once().await.unwrap(), "taken over");
    let job = s.app.job(&id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 2));
    let late = s
        .store
        .finish_job(&id, "dead", &JobOutcome::Done, s.app.clock().now())
        .await
        .unwrap();
    assert!(!late, "the dead worker no longer holds the job");
}

dual_test!(a_job_that_keeps_failing_stops_at_max_attempts);
async fn a_job_that_keeps_failing_stops_at_max_attempts(backend: Backend) {
    struct Always;
    #[async_trait]
    impl JobHandler for Always {
        async fn run(&self, _job: &Job) -> Result<(), JobError> {
            Err(JobError {
                message: "down".into(),
                retryable: true,
            })
        }
    }
    let s = TestServer::start(&backend).await;
    let id = s.app.enqueue_job("down", json!({}), 2).await.unwrap();
    let worker = Worker::new(s.app.clone(), "w").handle("down", Arc::new(Always));
    assert!(worker.run_once().await.unwrap());
    s.clock.advance(chrono::Duration::hours(2));
    assert!(worker.run_once().await.unwrap());
    let job = s.app.job(&id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 2));
    s.clock.advance(chrono::Duration::hours(2));
    assert!(
        !worker.run_once().await.unwrap(),
        "a failed job is not picked up again"
    );
}
