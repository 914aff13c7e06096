//! Key-set metrics. The `issuer` label takes only configured issuers, and a removed issuer's
//! series are removed with it, so the label set stays bounded by the config.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IssuerLabel {
    pub issuer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FetchLabels {
    pub issuer: String,
    /// `ok` or a [`super::JwksError::kind`].
    pub result: &'static str,
}

#[derive(Debug)]
pub struct JwksMetrics {
    fetches: Family<FetchLabels, Counter>,
    fetch_duration: Family<IssuerLabel, Histogram>,
    keys: Family<IssuerLabel, Gauge>,
    last_success: Family<IssuerLabel, Gauge>,
    stale: Family<IssuerLabel, Gauge>,
    available: Family<IssuerLabel, Gauge>,
    kid_refetches: Family<IssuerLabel, Counter>,
    kid_suppressed: Family<IssuerLabel, Counter>,
}

/// 1 ms .. ~30 s: loopback IdPs answer in a millisecond, slow ones hit the fetch timeout.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.8, 11)
}

impl JwksMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            fetches: Family::default(),
            fetch_duration: Family::new_with_constructor(|| Histogram::new(buckets())),
            keys: Family::default(),
            last_success: Family::default(),
            stale: Family::default(),
            available: Family::default(),
            kid_refetches: Family::default(),
            kid_suppressed: Family::default(),
        };
        registry.register(
            "jwks_fetches",
            "Key-set refresh attempts (discovery, when used, plus JWKS) by issuer and result",
            m.fetches.clone(),
        );
        registry.register_with_unit(
            "jwks_fetch_duration",
            "Time of a key-set refresh attempt, discovery included",
            Unit::Seconds,
            m.fetch_duration.clone(),
        );
        registry.register("jwks_keys", "Usable signing keys in the issuer's current key set", m.keys.clone());
        registry.register_with_unit(
            "jwks_last_success_timestamp",
            "Unix time of the last successful key-set fetch",
            Unit::Seconds,
            m.last_success.clone(),
        );
        registry.register(
            "jwks_stale",
            "1 while the last refresh failed and older keys are served (or none are usable)",
            m.stale.clone(),
        );
        registry.register(
            "jwks_available",
            "1 while the issuer's keys are usable; 0 means its tokens get 503 (never loaded, or older than maxStalenessSeconds)",
            m.available.clone(),
        );
        registry.register(
            "jwks_unknown_kid_refetches",
            "Refetches started because a token named a kid not in the key set",
            m.kid_refetches.clone(),
        );
        registry.register(
            "jwks_unknown_kid_refetches_suppressed",
            "Unknown-kid refetches not started because of the cooldown or the negative cache",
            m.kid_suppressed.clone(),
        );
        m
    }

    /// Metrics not attached to any registry (tests, `ward explain`).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    fn label(issuer: &str) -> IssuerLabel {
        IssuerLabel { issuer: issuer.to_owned() }
    }

    pub fn fetched(&self, issuer: &str, result: &'static str, took: Duration) {
        self.fetches.get_or_create(&FetchLabels { issuer: issuer.to_owned(), result }).inc();
        self.fetch_duration.get_or_create(&Self::label(issuer)).observe(took.as_secs_f64());
    }

    pub fn loaded(&self, issuer: &str, keys: usize, unix_time: u64) {
        let l = Self::label(issuer);
        self.keys.get_or_create(&l).set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.last_success.get_or_create(&l).set(i64::try_from(unix_time).unwrap_or(i64::MAX));
    }

    pub fn health(&self, issuer: &str, stale: bool, available: bool) {
        let l = Self::label(issuer);
        self.stale.get_or_create(&l).set(i64::from(stale));
        self.available.get_or_create(&l).set(i64::from(available));
    }

    pub fn kid_refetch(&self, issuer: &str) {
        self.kid_refetches.get_or_create(&Self::label(issuer)).inc();
    }

    pub fn kid_suppressed(&self, issuer: &str) {
        self.kid_suppressed.get_or_create(&Self::label(issuer)).inc();
    }

    /// Drop every series of an issuer that left the config.
    pub fn remove_issuer(&self, issuer: &str) {
        let l = Self::label(issuer);
        for family in [&self.keys, &self.last_success, &self.stale, &self.available] {
            family.remove(&l);
        }
        for family in [&self.kid_refetches, &self.kid_suppressed] {
            family.remove(&l);
        }
        self.fetch_duration.remove(&l);
        for result in super::JwksError::RESULTS {
            self.fetches.remove(&FetchLabels { issuer: issuer.to_owned(), result });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn names_and_removal() {
        let mut jwks = None;
        let metrics = Metrics::new(|r| jwks = Some(JwksMetrics::new(r)));
        let jwks = jwks.expect("registered");
        jwks.fetched("https://a", "ok", Duration::from_millis(3));
        jwks.fetched("https://a", "timeout", Duration::from_secs(5));
        jwks.loaded("https://a", 2, 1_800_000_000);
        jwks.health("https://a", false, true);
        jwks.kid_refetch("https://a");
        jwks.kid_suppressed("https://a");
        let text = metrics.encode();
        for want in [
            r#"ward_jwks_fetches_total{issuer="https://a",result="ok"} 1"#,
            r#"ward_jwks_fetches_total{issuer="https://a",result="timeout"} 1"#,
            r#"ward_jwks_keys{issuer="https://a"} 2"#,
            r#"ward_jwks_last_success_timestamp_seconds{issuer="https://a"} 1800000000"#,
            r#"ward_jwks_stale{issuer="https://a"} 0"#,
            r#"ward_jwks_available{issuer="https://a"} 1"#,
            r#"ward_jwks_unknown_kid_refetches_total{issuer="https://a"} 1"#,
            r#"ward_jwks_unknown_kid_refetches_suppressed_total{issuer="https://a"} 1"#,
            "ward_jwks_fetch_duration_seconds_count",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        jwks.remove_issuer("https://a");
        let text = metrics.encode();
        assert!(!text.contains("https://a"), "series of a removed issuer remain:\n{text}");
    }
}
