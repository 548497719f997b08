//! Time comes through a trait so tests can move it (quote expiry, idempotency locks, leases).

use chrono::Duration;
use std::sync::Mutex;
use storefront_domain::timestamp::{truncate, Timestamp};

pub trait Clock: Send + Sync + 'static {
    /// The current time, truncated to the millisecond (the precision of storage and the wire).
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        truncate(chrono::Utc::now())
    }
}

/// A clock that only moves when told to. Starts at the real current time.
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            now: Mutex::new(truncate(chrono::Utc::now())),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
