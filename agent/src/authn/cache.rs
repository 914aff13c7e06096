//! The verified-token cache: bounded in entries and bytes, keyed by a keyed hash of the token.
//!
//! The full token is stored and compared on a hit, so a hash collision (even a deliberate
//! one) can only cause a miss, never let a different token through. An entry is served only
//! while: it was verified under the current config generation (a reload that changes an
//! issuer's audiences or skew must not keep old verdicts), its key is still in the issuer's
//! key set (`VerifyingKey::is_live`), and it has not expired.

use std::{hash::BuildHasher, sync::Arc};

use quick_cache::{Weighter, sync::Cache};

use super::Identity;
use crate::{
    config::{CacheSettings, Issuer},
    jwt::key::VerifyingKey,
};

#[derive(Debug)]
pub struct Entry {
    token: Box<str>,
    pub identity: Arc<Identity>,
    pub issuer: Arc<Issuer>,
    key: Arc<VerifyingKey>,
    generation: u64,
    /// exp + skew: served strictly before this second.
    valid_until: u64,
}

#[derive(Clone)]
struct EntryWeight {
    /// Every entry weighs at least this, so `max_bytes / floor` bounds the entry count.
    floor: u64,
}

/// Rough heap footprint: the token, the decoded claims map (a few times the payload size)
/// and fixed overhead.
fn footprint(token_len: usize) -> u64 {
    (token_len as u64) * 4 + 512
}

impl Weighter<u64, Arc<Entry>> for EntryWeight {
    fn weight(&self, _key: &u64, entry: &Arc<Entry>) -> u64 {
        footprint(entry.token.len()).max(self.floor)
    }
}

pub struct VerifiedCache {
    map: Cache<u64, Arc<Entry>, EntryWeight>,
    hasher: foldhash::quality::RandomState,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").field("entries", &self.map.len()).finish()
    }
}

impl VerifiedCache {
    pub fn new(settings: &CacheSettings) -> Self {
        let entries = settings.max_entries.max(1) as u64;
        let bytes = (settings.max_bytes as u64).max(entries);
        let floor = bytes.div_ceil(entries);
        Self {
            map: Cache::with_weighter(entries as usize, bytes, EntryWeight { floor }),
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    pub fn get(&self, token: &str, generation: u64, now: u64) -> Option<Arc<Entry>> {
        let h = self.hasher.hash_one(token);
        let entry = self.map.get(&h)?;
        if *entry.token != *token {
            return None;
        }
        if entry.generation != generation || !entry.key.is_live() || now >= entry.valid_until {
            self.map.remove(&h);
            return None;
        }
        Some(entry)
    }

    pub fn insert(
        &self,
        token: &str,
        identity: Arc<Identity>,
        issuer: Arc<Issuer>,
        key: Arc<VerifyingKey>,
        generation: u64,
        valid_until: u64,
    ) {
        let h = self.hasher.hash_one(token);
        let entry = Entry { token: token.into(), identity, issuer, key, generation, valid_until };
        self.map.insert(h, Arc::new(entry));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes accounted to entries.
    pub fn weight(&self) -> u64 {
        self.map.weight()
    }
}
