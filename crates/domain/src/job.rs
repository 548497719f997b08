//! Durable background jobs: a row per job, claimed by one worker at a time under a lease,
//! retried with exponential backoff, abandoned leases taken over.

use crate::ids::JobId;
use crate::timestamp::Timestamp;
use chrono::Duration;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for `run_at`.
    Queued,
    /// Claimed by `locked_by` until `locked_until`.
    Running,
    Done,
    /// Gave up after `max_attempts`, or failed permanently.
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub payload: Value,
    pub status: JobStatus,
    /// Claims so far (a claim counts as an attempt even if the worker dies during it).
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub locked_by: Option<String>,
    pub locked_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Job {
    pub fn new(kind: &str, payload: Value, max_attempts: i64, now: Timestamp) -> Self {
        Self {
            id: JobId::generate(),
            kind: kind.to_owned(),
            payload,
            status: JobStatus::Queued,
            attempts: 0,
            max_attempts: max_attempts.max(1),
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// How a claimed job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Done,
    /// Try again at `run_at` (unless attempts are exhausted, then `Failed`).
    Retry {
        run_at: Timestamp,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// Delay before attempt `attempts + 1`: 2, 4, 8, ... seconds, at most an hour.
pub fn backoff(attempts: i64) -> Duration {
    let exponent = attempts.clamp(1, 12) as u32;
    Duration::seconds((1i64 << exponent).min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::seconds(2));
        assert_eq!(backoff(2), Duration::seconds(4));
        assert!(backoff(100) <= Duration::hours(1));
    }
}
