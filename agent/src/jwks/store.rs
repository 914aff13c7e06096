//! The node's key store: one [`IssuerKeys`] per configured issuer, shared by every
//! connection and worker, kept in step with the config.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use super::{
    issuer::{IssuerKeys, IssuerStatus},
    metrics::JwksMetrics,
};
use crate::{
    config::Issuer,
    jwt::{Algorithm, key::VerifyingKey},
    reason::Reason,
};

/// An issuer and its refresh task, which stops when the entry is dropped.
#[derive(Debug)]
struct Entry {
    keys: Arc<IssuerKeys>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Issuers = HashMap<Arc<str>, Arc<Entry>>;

#[derive(Debug)]
pub struct KeyStore {
    metrics: Arc<JwksMetrics>,
    /// Read on every cold token without locking; replaced whole by `sync_issuers`.
    issuers: ArcSwap<Issuers>,
    /// Serialises config syncs (a reload racing another).
    sync: Mutex<()>,
}

impl KeyStore {
    pub fn new(metrics: Arc<JwksMetrics>) -> Arc<Self> {
        Arc::new(Self { metrics, issuers: ArcSwap::from_pointee(HashMap::new()), sync: Mutex::new(()) })
    }

    /// Bring the store in line with the config: start loading new issuers, stop and retire
    /// removed ones, apply changed settings (a changed source is refetched at once). Must be
    /// called inside a Tokio runtime. Keys of unchanged issuers are untouched.
    pub fn sync_issuers(self: &Arc<Self>, issuers: &[Issuer]) {
        let _serial = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.issuers.load_full();
        let mut next: Issuers = HashMap::with_capacity(issuers.len());
        for issuer in issuers {
            let name: &str = &issuer.issuer;
            if next.contains_key(name) {
                tracing::warn!(issuer = name, "issuer configured twice: the first entry is used");
                continue;
            }
            let entry = match old.get(name) {
                Some(entry) => {
                    if entry.keys.reconfigure(issuer) {
                        tracing::info!(issuer = name, "issuer key settings changed");
                    }
                    Arc::clone(entry)
                }
                None => {
                    let keys = IssuerKeys::new(issuer, Arc::clone(&self.metrics));
                    let task = tokio::spawn(keys.start());
                    tracing::info!(issuer = name, "loading keys of a new issuer");
                    Arc::new(Entry { keys, task })
                }
            };
            next.insert(Arc::from(name), entry);
        }
        self.issuers.store(Arc::new(next));
        for (name, entry) in old.iter() {
            if !self.issuers.load().contains_key(name) {
                // Tokens verified with these keys (and cached) stop being accepted now.
                entry.keys.retire_all();
                entry.task.abort();
                tracing::info!(issuer = %name, "issuer removed: its keys are retired");
            }
        }
    }

    /// The verifying key for a token. `UnknownIssuer` if the issuer is not configured;
    /// `KeysUnavailable` (503) if its keys are not loaded or too old; otherwise what the key
    /// set says (`UnknownKey` after at most one rate-limited refetch, `AmbiguousKey`,
    /// `KeyAlgMismatch`).
    pub async fn resolve(&self, issuer: &str, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, Reason> {
        let keys = {
            let issuers = self.issuers.load();
            Arc::clone(&issuers.get(issuer).ok_or(Reason::UnknownIssuer)?.keys)
        };
        keys.resolve(kid, alg).await
    }

    /// The issuer is configured and its keys are loaded and within `maxStalenessSeconds`
    /// (checked on verified-cache hits, so cached verdicts end with the keys).
    pub fn available(&self, issuer: &str) -> bool {
        self.issuers.load().get(issuer).is_some_and(|e| e.keys.available())
    }

    /// Every configured issuer has usable keys (for `/readyz`).
    pub fn all_loaded(&self) -> bool {
        self.issuers.load().values().all(|e| e.keys.available())
    }

    /// Per-issuer status, in config order of names (sorted).
    pub fn status(&self) -> Vec<IssuerStatus> {
        let mut all: Vec<IssuerStatus> = self.issuers.load().values().map(|e| e.keys.status()).collect();
        all.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        all
    }

    /// Configured issuer names.
    pub fn issuers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.issuers.load().values().map(|e| e.keys.issuer().to_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        for entry in self.issuers.load().values() {
            entry.task.abort();
        }
    }
}
