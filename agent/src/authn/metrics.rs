//! Token validation metrics.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabel {
    /// `hit` or `miss`.
    pub cache: &'static str,
}

#[derive(Debug)]
pub struct AuthnMetrics {
    validation: Family<CacheLabel, Histogram>,
    cache_hits: Counter,
    cache_misses: Counter,
    verified: Counter,
}

/// Buckets from 1 µs to ~0.5 s: a cache hit is ~1 µs, an RSA verify tens of µs, a
/// JWKS refetch within a request up to the fetch timeout.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-6, 3.0, 13)
}

impl AuthnMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            validation: Family::new_with_constructor(|| Histogram::new(buckets())),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            verified: Counter::default(),
        };
        registry.register_with_unit(
            "token_validation_duration",
            "Time to authenticate a bearer token, by verified-cache outcome",
            Unit::Seconds,
            m.validation.clone(),
        );
        registry.register("verified_cache_hits", "Tokens served from the verified-token cache", m.cache_hits.clone());
        registry.register("verified_cache_misses", "Tokens that needed full validation", m.cache_misses.clone());
        registry.register(
            "tokens_verified",
            "Tokens whose signature and claims were fully verified (cache misses that passed)",
            m.verified.clone(),
        );
        m
    }

    /// Metrics not attached to any registry (tests, `ward explain`).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    pub fn observe_hit(&self, took: Duration) {
        self.cache_hits.inc();
        self.validation.get_or_create(&CacheLabel { cache: "hit" }).observe(took.as_secs_f64());
    }

    pub fn observe_miss(&self, took: Duration, verified: bool) {
        self.cache_misses.inc();
        if verified {
            self.verified.inc();
        }
        self.validation.get_or_create(&CacheLabel { cache: "miss" }).observe(took.as_secs_f64());
    }
}
