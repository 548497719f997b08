//! Recently authenticated API keys, so that a busy agent's requests do not each pay a database
//! read to learn who is calling.
//!
//! The trade-off (ARCHITECTURE.md, "Authentication cache"): a key revoked through this process —
//! `DELETE /api/v1/keys/{id}`, deleting an agent — stops at once, because revoking empties the
//! cache. A key revoked through *another* process on the same database (another replica, an
//! `admin` command) keeps working here for at most `api_key_cache_seconds` (5 by default; 0
//! turns the cache off). What an agent key may spend is never decided from the cache: the agent's
//! status and rules are read fresh by every check and order.

use crate::principal::Principal;
use chrono::Duration;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use storefront_domain::timestamp::Timestamp;

/// Entries kept at most; past it, expired entries go, and if that is not enough, all of them
/// (a flood of distinct valid keys is not a pattern worth a finer policy).
const MAX_ENTRIES: usize = 65_536;

pub(crate) struct KeyCache {
    ttl: Duration,
    /// By the SHA-256 of the secret (the same digest the database keeps; never the secret).
    entries: Mutex<HashMap<String, (Principal, Timestamp)>>,
    /// Bumped by every revocation: a lookup that read the database before a revocation does
    /// not store what it read after it (the key may be the one just revoked).
    generation: AtomicU64,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Taken before reading a key from the database, handed back to [`Self::remember`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The principal of a key authenticated less than the cache's lifetime ago.
    pub(crate) fn get(&self, secret_hash: &str, now: Timestamp) -> Option<Principal> {
        if self.ttl <= Duration::zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(secret_hash)
            .filter(|(_, until)| now < *until)
            .map(|(principal, _)| principal.clone())
    }

    pub(crate) fn remember(
        &self,
        secret_hash: String,
        principal: &Principal,
        now: Timestamp,
        read_at_generation: u64,
    ) {
        if self.ttl <= Duration::zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock `forget_all` also takes, so no stale entry slips in after it.
        if self.generation() != read_at_generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(secret_hash, (principal.clone(), now + self.ttl));
    }

    /// Forgets every key: called after any revocation, which is rare, so that no revoked key
    /// outlives its revocation in this process.
    pub(crate) fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_domain::ids::AccountId;

    fn owner() -> Principal {
        Principal::Owner {
            account_id: AccountId::generate(),
            key_id: None,
        }
    }

    #[test]
    fn an_entry_lives_exactly_its_lifetime() {
        let cache = KeyCache::new(Duration::seconds(5));
        let now = chrono::Utc::now();
        let who = owner();
        cache.remember("h".into(), &who, now, cache.generation());
        assert_eq!(
            cache.get("h", now + Duration::milliseconds(4_999)),
            Some(who)
        );
        assert_eq!(cache.get("h", now + Duration::seconds(5)), None);
        assert_eq!(cache.get("other", now), None);
    }

    #[test]
    fn a_zero_lifetime_keeps_nothing_and_forgetting_empties_it() {
        let off = KeyCache::new(Duration::zero());
        let now = chrono::Utc::now();
        off.remember("h".into(), &owner(), now, off.generation());
        assert_eq!(off.get("h", now), None);

        let cache = KeyCache::new(Duration::seconds(5));
        cache.remember("h".into(), &owner(), now, cache.generation());
        cache.forget_all();
        assert_eq!(cache.get("h", now), None);
    }

    #[test]
    fn a_read_from_before_a_revocation_is_not_remembered() {
        let cache = KeyCache::new(Duration::seconds(5));
        let now = chrono::Utc::now();
        let read_at = cache.generation();
        cache.forget_all();
        cache.remember("h".into(), &owner(), now, read_at);
        assert_eq!(cache.get("h", now), None);
    }
}
