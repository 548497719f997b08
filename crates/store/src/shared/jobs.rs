//! The job queue: jobs are claimed under a lease, so a dead worker's job is taken over.

use async_trait::async_trait;
use storefront_app::ports::{JobBacklog, JobStore, StoreResult};
use storefront_domain::ids::JobId;
use storefront_domain::job::{Job, JobOutcome, JobStatus};
use storefront_domain::timestamp::{format as ts, Timestamp};

use super::common::{backend, commit, parse_ts, placeholders, to_json};
use super::db;
use super::rows::job_from_row;

#[async_trait]
impl JobStore for db::Adapter {
    async fn enqueue_job(&self, job: &Job) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_job_row(&mut tx, job).await?;
        commit(tx).await
    }

    async fn job_backlog(&self, now: Timestamp) -> StoreResult<JobBacklog> {
        // Both counts walk the (status, run_at) index.
        let (due, oldest): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(run_at) FROM jobs WHERE status = 'queued' AND run_at <= $1",
        )
        .bind(ts(&now))
        .fetch_one(self.reader())
        .await
        .map_err(backend)?;
        let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
            .fetch_one(self.reader())
            .await
            .map_err(backend)?;
        Ok(JobBacklog {
            due,
            running,
            oldest_due_at: oldest.as_deref().map(parse_ts).transpose()?,
        })
    }

    async fn claim_job(
        &self,
        kinds: &[String],
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let placeholders = placeholders(4, kinds.len());
        let sql = format!(
            "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id = (SELECT id FROM jobs
                         WHERE kind IN ({})
                           AND ((status = 'queued' AND run_at <= $3) OR (status = 'running' AND locked_until < $3))
                         ORDER BY run_at, id LIMIT 1 {})
             RETURNING *",
            placeholders,
            db::JOB_CLAIM_LOCK
        );
        let now_s = ts(&now);
        let mut query = sqlx::query(&sql)
            .bind(worker)
            .bind(ts(&lease_until))
            .bind(&now_s);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let mut tx = self.begin().await?;
        let row = query.fetch_optional(&mut *tx).await.map_err(backend)?;
        commit(tx).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn heartbeat_job(
        &self,
        id: &JobId,
        worker: &str,
        lease_until: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(ts(&lease_until))
        .bind(id.as_str())
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        commit(tx).await?;
        Ok(held)
    }

    async fn finish_job(
        &self,
        id: &JobId,
        worker: &str,
        outcome: &JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (status, run_at, error) = match outcome {
            JobOutcome::Done => (JobStatus::Done, None, None),
            JobOutcome::Retry { run_at, error } => {
                (JobStatus::Queued, Some(ts(run_at)), Some(error.clone()))
            }
            JobOutcome::Failed { error } => (JobStatus::Failed, None, Some(error.clone())),
        };
        let mut tx = self.begin().await?;
        // A retry past the last attempt fails the job instead.
        let held = sqlx::query(
            "UPDATE jobs SET
                 status = CASE WHEN $1 = 'queued' AND attempts >= max_attempts THEN 'failed' ELSE $1 END,
                 run_at = COALESCE($2, run_at), last_error = COALESCE($3, last_error),
                 locked_by = NULL, locked_until = NULL, updated_at = $4
             WHERE id = $5 AND locked_by = $6 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(run_at)
        .bind(error)
        .bind(ts(&now))
        .bind(id.as_str())
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        commit(tx).await?;
        Ok(held)
    }

    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        self.find_one(
            "SELECT * FROM jobs WHERE id = $1",
            id.as_str(),
            job_from_row,
        )
        .await
    }
}

pub(super) async fn insert_job_row(conn: &mut db::Connection, job: &Job) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(job.id.as_str())
    .bind(&job.kind)
    .bind(to_json(&job.payload))
    .bind(job.status.as_str())
    .bind(job.attempts)
    .bind(job.max_attempts)
    .bind(ts(&job.run_at))
    .bind(ts(&job.created_at))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
