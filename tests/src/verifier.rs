//! ward's token validation as the agent runs it (key store, authenticator with its verified
//! cache, metrics registry), in the test process, for tests that drive IdPs directly.

use std::sync::Arc;

use ward::{
    authn::{Authenticated, Authenticator, IssuerSet, metrics::AuthnMetrics},
    config::{CacheSettings, Issuer},
    jwks::{IssuerStatus, JwksMetrics, KeyStore},
    metrics::Metrics,
    reason::Reason,
    time::now_unix,
};

/// An issuer entry from YAML (the config file's syntax), e.g.
/// `issuer: http://127.0.0.1:9000\naudiences: [api]\njwks: {minRefreshSeconds: 1}`.
pub fn issuer(yaml: &str) -> Issuer {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("bad issuer YAML ({e}):\n{yaml}"))
}

#[derive(Debug)]
pub struct Verifier {
    pub store: Arc<KeyStore>,
    pub metrics: Arc<Metrics>,
    authn: Authenticator,
    issuers: IssuerSet,
    generation: u64,
}

impl Verifier {
    /// Must be called inside a Tokio runtime: the key store starts loading at once.
    pub fn new(issuers: &[Issuer]) -> Self {
        let mut parts = None;
        let metrics = Arc::new(Metrics::new(|r| parts = Some((JwksMetrics::new(r), AuthnMetrics::new(r)))));
        let (jwks, authn) = parts.expect("metrics registered");
        let store = KeyStore::new(Arc::new(jwks));
        store.sync_issuers(issuers);
        let authn = Authenticator::new(store.clone(), &CacheSettings::default(), Arc::new(authn));
        Self { store, metrics, authn, issuers: IssuerSet::new(issuers, 1), generation: 1 }
    }

    /// A config reload.
    pub fn reconfigure(&mut self, issuers: &[Issuer]) {
        self.generation += 1;
        self.store.sync_issuers(issuers);
        self.issuers = IssuerSet::new(issuers, self.generation);
    }

    /// Authenticate a bearer token (verified cache first, as the agent does).
    pub async fn check(&self, token: &str) -> Result<Authenticated, Reason> {
        self.authn.authenticate(&self.issuers, token, now_unix()).await
    }

    pub fn status(&self, issuer: &str) -> IssuerStatus {
        self.store
            .status()
            .into_iter()
            .find(|s| s.issuer == issuer)
            .unwrap_or_else(|| panic!("no status for issuer {issuer}"))
    }

    /// The value of one sample, e.g. `ward_jwks_stale{issuer="http://..."}`; None if absent.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("metric {series} value {v:?}: {e}")))
    }

    pub fn fetches(&self, issuer: &str, result: &str) -> f64 {
        self.metric(&format!(r#"ward_jwks_fetches_total{{issuer="{issuer}",result="{result}"}}"#)).unwrap_or(0.0)
    }

    /// Wait (polling; bounded by a generous safety deadline) until `cond` holds.
    pub async fn wait_for(&self, what: &str, mut cond: impl AsyncFnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !cond(self).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}; key store: {:#?}",
                self.store.status()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
