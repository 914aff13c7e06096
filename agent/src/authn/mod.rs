//! Token -> verified identity. The common case (the same token on many requests) is a
//! verified-cache hit: one hash, one lookup, a byte compare and three liveness checks. Cold
//! tokens go through [`crate::jwt`] with the key from the shared per-node key store.

mod cache;
pub mod metrics;

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Instant};

use serde_json::{Map, Value};

pub use self::cache::VerifiedCache;
use self::metrics::AuthnMetrics;
use crate::{
    config::{CacheSettings, Issuer},
    jwt::{
        Algorithm,
        key::VerifyingKey,
        validate::{self, IssuerRules},
    },
    reason::Reason,
};

/// Where verifying keys come from: the JWKS store in production, a fixed key set in tests.
pub trait KeyResolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, Reason>> + Send + 'a>>;

    /// Are `issuer`'s keys usable now (loaded, and not older than `maxStalenessSeconds`)?
    /// Fixed key sets never go stale.
    fn available(&self, issuer: &str) -> bool {
        let _ = issuer;
        true
    }
}

/// A verified token's identity and claims.
#[derive(Debug)]
pub struct Identity {
    pub issuer: Arc<str>,
    pub subject: Option<String>,
    pub audiences: Vec<String>,
    /// `azp`
    pub presenter: Option<String>,
    /// The whole payload.
    pub claims: Map<String, Value>,
    pub expires_at: u64,
}

impl Identity {
    /// A nested claim: `["realm_access", "roles"]`.
    pub fn claim(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.claims.get(*first)?;
        for name in rest {
            v = v.as_object()?.get(*name)?;
        }
        Some(v)
    }

    /// Istio's request principal: `iss/sub`.
    pub fn principal(&self) -> Option<String> {
        self.subject.as_ref().map(|sub| format!("{}/{}", self.issuer, sub))
    }
}

/// The issuers of one config generation, compiled.
#[derive(Debug, Default)]
pub struct IssuerSet {
    by_iss: HashMap<String, Arc<IssuerRules>>,
    /// Largest `maxTokenBytes`: the cap applied before the issuer is known.
    max_token_bytes: usize,
    generation: u64,
}

impl IssuerSet {
    pub fn new(issuers: &[Issuer], generation: u64) -> Self {
        let by_iss: HashMap<_, _> =
            issuers.iter().map(|i| (i.issuer.clone(), Arc::new(IssuerRules::new(Arc::new(i.clone()))))).collect();
        let max_token_bytes = issuers.iter().map(|i| i.max_token_bytes).max().unwrap_or(8 * 1024);
        Self { by_iss, max_token_bytes, generation }
    }

    pub fn get(&self, iss: &str) -> Option<&Arc<IssuerRules>> {
        self.by_iss.get(iss)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Arc<Identity>,
    pub issuer: Arc<Issuer>,
    /// Served from the verified-token cache.
    pub cached: bool,
}

pub struct Authenticator {
    keys: Arc<dyn KeyResolver>,
    cache: VerifiedCache,
    metrics: Arc<AuthnMetrics>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(keys: Arc<dyn KeyResolver>, cache: &CacheSettings, metrics: Arc<AuthnMetrics>) -> Self {
        Self { keys, cache: VerifiedCache::new(cache), metrics }
    }

    pub async fn authenticate(&self, issuers: &IssuerSet, token: &str, now: u64) -> Result<Authenticated, Reason> {
        let started = Instant::now();
        if let Some(hit) = self.cache.get(token, issuers.generation, now) {
            // A cached verdict must not outlive the keys it was made with: once the issuer's
            // keys are older than maxStalenessSeconds, fall through to full validation, which
            // answers 503 like it does for uncached tokens.
            if self.keys.available(&hit.identity.issuer) {
                self.metrics.observe_hit(started.elapsed());
                return Ok(Authenticated { identity: hit.identity.clone(), issuer: hit.issuer.clone(), cached: true });
            }
        }
        let result = self.verify(issuers, token, now).await;
        self.metrics.observe_miss(started.elapsed(), result.is_ok());
        result
    }

    /// Full validation that neither reads nor fills the cache (benchmarks).
    pub async fn verify_uncached(&self, issuers: &IssuerSet, token: &str, now: u64) -> Result<Arc<Identity>, Reason> {
        self.validate(issuers, token, now).await.map(|(identity, _, _)| identity)
    }

    async fn verify(&self, issuers: &IssuerSet, token: &str, now: u64) -> Result<Authenticated, Reason> {
        let (identity, rules, key) = self.validate(issuers, token, now).await?;
        let expires = identity.expires_at.saturating_add(rules.config.clock_skew_seconds);
        self.cache.insert(token, identity.clone(), rules.config.clone(), key, issuers.generation, expires);
        Ok(Authenticated { identity, issuer: rules.config.clone(), cached: false })
    }

    /// Structure, header, key, signature, then claims (RFC 8725 order).
    async fn validate(
        &self,
        issuers: &IssuerSet,
        token: &str,
        now: u64,
    ) -> Result<(Arc<Identity>, Arc<IssuerRules>, Arc<VerifyingKey>), Reason> {
        let unverified = validate::parse(token, issuers.max_token_bytes)?;
        let rules = issuers.get(&unverified.iss).ok_or(Reason::UnknownIssuer)?.clone();
        rules.check_unverified(token, &unverified)?;
        let key = self.keys.resolve(&rules.issuer, unverified.kid.as_deref(), unverified.alg).await?;
        unverified.check_signature(&key)?;
        let claims = unverified.into_payload();
        let checked = rules.check_claims(&claims, now)?;
        let identity = Arc::new(Identity {
            issuer: rules.issuer.clone(),
            subject: checked.subject,
            audiences: checked.audiences,
            presenter: checked.presenter,
            claims,
            expires_at: checked.expires_at,
        });
        Ok((identity, rules, key))
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

/// A fixed key set (for `ward explain --jwks FILE` and tests).
#[derive(Debug)]
pub struct StaticKeys(pub HashMap<String, crate::jwt::key::KeySet>);

impl KeyResolver for StaticKeys {
    fn resolve<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, Reason>> + Send + 'a>> {
        Box::pin(async move { self.0.get(issuer).ok_or(Reason::KeysUnavailable)?.select(kid, alg) })
    }
}

#[cfg(test)]
mod tests;

impl KeyResolver for crate::jwks::KeyStore {
    fn resolve<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, Reason>> + Send + 'a>> {
        Box::pin(crate::jwks::KeyStore::resolve(self, issuer, kid, alg))
    }

    fn available(&self, issuer: &str) -> bool {
        crate::jwks::KeyStore::available(self, issuer)
    }
}
