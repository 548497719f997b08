//! Readiness that tells the truth: the process is ready when the database answers reads *and*
//! takes a write — a write transaction begins, writes one row and commits within
//! `readiness_timeout`. A storefront that can still list products but can no longer sell must
//! leave the load balancer's rotation.
//!
//! The check is a durable commit, so its answer is reused for [`REUSE_FOR`] (on the injected
//! clock), and at most one check runs at a time: callers that arrive meanwhile wait for it, and a
//! check that outlives the time limit keeps running while later calls report it as late.

use crate::app::App;
use crate::ports::StoreResult;
use chrono::Duration;
use storefront_domain::timestamp::Timestamp;
use tokio::task::JoinHandle;

/// How long one write-path check answers for. Load balancers poll every few seconds; each check
/// costs a commit.
pub const REUSE_FOR: Duration = Duration::seconds(1);

/// Why the process is not ready, in words fit for an operator (no SQL, no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: String,
}

/// The last check's answer and the check in progress, if any.
#[derive(Default)]
pub(crate) struct WritePathChecks {
    last: Option<(Timestamp, Result<(), NotReady>)>,
    running: Option<JoinHandle<StoreResult<()>>>,
}

impl App {
    /// Whether the database answers reads and takes writes right now (see the module docs).
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let mut checks = self.readiness.lock().await;
        let now = self.clock.now();
        if let Some((at, answer)) = &checks.last {
            if *at <= now && now - *at < REUSE_FOR {
                return answer.clone();
            }
        }
        let answer = self.check_database(&mut checks).await;
        checks.last = Some((self.clock.now(), answer.clone()));
        answer
    }

    async fn check_database(&self, checks: &mut WritePathChecks) -> Result<(), NotReady> {
        let limit = self.settings.readiness_timeout;
        let seconds = limit.as_secs_f64();
        match tokio::time::timeout(limit, self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "readiness: the database does not answer reads");
                return Err(NotReady {
                    reason: "the database does not answer reads (see the server log)".into(),
                });
            }
            Err(_) => {
                return Err(NotReady {
                    reason: format!("the database did not answer a read within {seconds} s"),
                })
            }
        }
        // The write runs to completion in its own task: if it outlives the limit it goes on, and
        // the next check waits for the same one instead of queueing another behind it.
        let running = checks.running.get_or_insert_with(|| {
            let store = self.store.clone();
            let now = self.clock.now();
            self.run_to_completion(async move { store.probe_write(now).await })
        });
        let joined = match tokio::time::timeout(limit, running).await {
            Ok(joined) => joined,
            Err(_) => {
                metrics::counter!("storefront_store_failures_total", "kind" => "write_timeout")
                    .increment(1);
                tracing::error!(
                    timeout_seconds = seconds,
                    "readiness: the database did not complete a write transaction in time"
                );
                return Err(NotReady {
                    reason: format!(
                        "the database did not complete a write transaction within {seconds} s"
                    ),
                });
            }
        };
        checks.running = None;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "readiness: a write transaction failed");
                Err(NotReady {
                    reason: "the database refused a write transaction (see the server log)".into(),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "readiness: the write check did not finish");
                Err(NotReady {
                    reason: "the write check did not finish (see the server log)".into(),
                })
            }
        }
    }
}
