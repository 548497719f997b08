//! Doing a request once per idempotency key, whichever door it came through.
//!
//! A key lives in a scope (the principal's account or agent) and a route, and remembers the
//! fingerprint of the request it first came with: the canonical JSON of the *parsed* request,
//! so REST, MCP, the dashboard and the CLI fingerprint the same purchase alike, however their
//! bodies were spelled. The states of a key:
//!
//! ```text
//!            claim                     act, and record the answer in the same transaction
//!   (none) ────────▶ held ────────────────────────────────────────────────▶ done ──▶ replayed
//!                     │  ▲                                                    to the identical
//!                     │  │ claimed again by the identical request             request
//!     nothing acted:  │  │ (the paid retry of a 402) or by anyone once
//!     released ◀──────┤  │ the holder is presumed dead (lock timeout)
//!                     └──┴── unlocked: an order exists but waits for payment
//! ```
//!
//! While a key is held, the identical request gets `idempotency_in_progress` (409, retry after
//! a second); another request under the same key gets `idempotency_key_reused` (422).

use crate::app::{store_failure, App};
use crate::ports::{ClaimOutcome, IdempotencyRef};
use crate::principal::Principal;
use serde::Serialize;
use serde_json::Value;
use storefront_domain::idempotency::IdempotencyKey;
use storefront_domain::{DomainError, ErrorCode};

/// What claiming a key came to.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The caller holds the key: it acts, then records the answer with its effect (or releases
    /// or unlocks the key if it did not act).
    Held(IdempotencyRef),
    /// The request was done before; this is its answer (signed URLs signed again).
    Replay(Value),
}

/// The fingerprint of a parsed request: a digest of its canonical JSON.
pub fn fingerprint(request: &impl Serialize) -> String {
    let value = serde_json::to_value(request).expect("requests are plain data");
    storefront_domain::idempotency::fingerprint(&value)
}

/// The canonical JSON of a parsed request (what a payment challenge binds).
pub fn canonical(request: &impl Serialize) -> String {
    let value = serde_json::to_value(request).expect("requests are plain data");
    storefront_domain::idempotency::canonical_json(&value)
}

impl IdempotencyRef {
    /// Where `key` lives for this principal on this route.
    pub fn new(principal: &Principal, route: impl Into<String>, key: &IdempotencyKey) -> Self {
        Self {
            scope: principal.idempotency_scope(),
            route: route.into(),
            key: key.as_str().to_owned(),
        }
    }
}

impl App {
    /// Claims `key` for a request with this fingerprint. A claim whose holder has not finished
    /// within `idempotency_lock_timeout` is presumed dead and taken over.
    pub(crate) async fn claim(
        &self,
        key: IdempotencyRef,
        fingerprint: &str,
    ) -> Result<Claim, DomainError> {
        let now = self.clock.now();
        let stale_before = now - self.settings.idempotency_lock_timeout;
        match self
            .store
            .claim_idempotency_key(&key, fingerprint, now, stale_before)
            .await
            .map_err(store_failure)?
        {
            ClaimOutcome::Acquired => Ok(Claim::Held(key)),
            ClaimOutcome::Existing {
                fingerprint: original,
                ..
            } if original != fingerprint => Err(DomainError::new(
                ErrorCode::IdempotencyKeyReused,
                "This idempotency key was already used for a different request.",
                "Send the identical request to get the original result, or use a new key for a new request.",
            )
            .with_param("Idempotency-Key")),
            ClaimOutcome::Existing {
                outcome: Some(mut stored),
                ..
            } => {
                self.signer.resign(&mut stored);
                Ok(Claim::Replay(stored))
            }
            ClaimOutcome::Existing { outcome: None, .. } => Err(DomainError::new(
                ErrorCode::IdempotencyInProgress,
                "A request with this idempotency key is still being processed.",
                "Retry the identical request in a second to get its result.",
            )
            .with_retry_after(1)),
        }
    }

    /// Frees a key whose request did not act, so a corrected request can use it.
    pub(crate) async fn release(&self, key: &IdempotencyRef) {
        if let Err(e) = self.store.release_idempotency_key(key).await {
            tracing::error!(error = %e, "could not release an idempotency key");
        }
    }

    /// Leaves a key bound to its request but claimable at once by the identical request: an
    /// order exists and waits for payment, and its paid retry comes under the same key.
    pub(crate) async fn unlock(&self, key: &IdempotencyRef) {
        if let Err(e) = self.store.unlock_idempotency_key(key).await {
            tracing::error!(error = %e, "could not unlock an idempotency key");
        }
    }
}

/// Reads a remembered answer back.
pub(crate) fn remembered<T: serde::de::DeserializeOwned>(stored: Value) -> Result<T, DomainError> {
    serde_json::from_value(stored).map_err(|e| {
        tracing::error!(error = %e, "stored idempotent outcome is unreadable");
        DomainError::internal()
    })
}
