use std::{collections::HashMap, sync::Arc};

use serde_json::json;

use super::*;
use crate::{
    config::CacheSettings,
    jwt::{key::KeySet, testkeys::TestKey},
};

const NOW: u64 = 1_800_000_000;

fn issuer_cfg(aud: &str) -> Issuer {
    serde_yaml_ng::from_str(&format!("issuer: https://idp.test\naudiences: [{aud}]\n")).unwrap()
}

fn keys(set: KeySet) -> Arc<StaticKeys> {
    Arc::new(StaticKeys(HashMap::from([("https://idp.test".to_owned(), set)])))
}

fn token(key: &TestKey, kid: &str, sub: &str) -> String {
    let claims = json!({"iss": "https://idp.test", "aud": "api", "sub": sub, "exp": NOW + 100});
    key.sign_raw(Algorithm::RS256, &json!({"alg": "RS256", "kid": kid}).to_string(), &claims.to_string())
}

fn authenticator(keys: Arc<dyn KeyResolver>) -> Authenticator {
    Authenticator::new(keys, &CacheSettings::default(), Arc::new(AuthnMetrics::unregistered()))
}

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn second_use_is_a_cache_hit_until_expiry() {
    let k = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let authn = authenticator(keys(set));
    let issuers = IssuerSet::new(&[issuer_cfg("api")], 1);
    let t = token(&k, "a", "alice");
    block(async {
        let first = authn.authenticate(&issuers, &t, NOW).await.expect("valid");
        assert!(!first.cached);
        let second = authn.authenticate(&issuers, &t, NOW).await.expect("valid");
        assert!(second.cached);
        assert_eq!(second.identity.principal().as_deref(), Some("https://idp.test/alice"));
        // exp = NOW+100, skew 60: valid until NOW+160 exclusive, from cache or not.
        assert!(authn.authenticate(&issuers, &t, NOW + 159).await.is_ok());
        assert_eq!(authn.authenticate(&issuers, &t, NOW + 160).await.unwrap_err(), Reason::Expired);
    });
}

#[test]
fn retired_key_kills_cached_tokens_at_once() {
    let k = TestKey::rsa();
    let old = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let key = old.select(Some("a"), Algorithm::RS256).unwrap();
    let authn = authenticator(keys(old));
    let issuers = IssuerSet::new(&[issuer_cfg("api")], 1);
    let t = token(&k, "a", "alice");
    block(async {
        authn.authenticate(&issuers, &t, NOW).await.unwrap();
        assert!(authn.authenticate(&issuers, &t, NOW).await.unwrap().cached);
        key.retire();
        // The static resolver still has the (retired) key, so a re-verify would pass: the
        // point is that the cache must not answer. A real store no longer has the key.
        let again = authn.authenticate(&issuers, &t, NOW).await.unwrap();
        assert!(!again.cached, "a retired key's cache entry must not be served");
    });
}

#[test]
fn config_generation_change_revalidates() {
    let k = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let authn = authenticator(keys(set));
    let t = token(&k, "a", "alice");
    block(async {
        authn.authenticate(&IssuerSet::new(&[issuer_cfg("api")], 1), &t, NOW).await.unwrap();
        // Reload removes the audience: the cached verdict must not survive.
        let reloaded = IssuerSet::new(&[issuer_cfg("other")], 2);
        assert_eq!(authn.authenticate(&reloaded, &t, NOW).await.unwrap_err(), Reason::BadAudience);
    });
}

#[test]
fn failures_are_not_cached_and_unknown_issuer_is_refused() {
    let k = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let authn = authenticator(keys(set));
    let issuers = IssuerSet::new(&[issuer_cfg("api")], 1);
    let forged = token(&TestKey::rsa(), "a", "mallory");
    block(async {
        for _ in 0..2 {
            assert_eq!(authn.authenticate(&issuers, &forged, NOW).await.unwrap_err(), Reason::BadSignature);
        }
        assert_eq!(authn.cache_len(), 0);
        let other = IssuerSet::new(&[], 1);
        assert_eq!(authn.authenticate(&other, &forged, NOW).await.unwrap_err(), Reason::UnknownIssuer);
    });
}

#[test]
fn cache_is_bounded_by_entries_and_bytes() {
    let k = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let settings = CacheSettings { max_entries: 50, max_bytes: 1 << 20 };
    let authn = Authenticator::new(keys(set), &settings, Arc::new(AuthnMetrics::unregistered()));
    let issuers = IssuerSet::new(&[issuer_cfg("api")], 1);
    block(async {
        for i in 0..400 {
            authn.authenticate(&issuers, &token(&k, "a", &format!("user-{i}")), NOW).await.unwrap();
        }
    });
    assert!(authn.cache_len() <= 50, "entries {} exceed the bound", authn.cache_len());
    assert!(authn.cache.weight() <= 1 << 20);
}

/// Keys that can be made unavailable, as the key store does once they pass
/// `maxStalenessSeconds`.
struct FadingKeys {
    keys: Arc<StaticKeys>,
    available: std::sync::atomic::AtomicBool,
}

impl KeyResolver for FadingKeys {
    fn resolve<'a>(
        &'a self,
        issuer: &'a str,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, Reason>> + Send + 'a>> {
        Box::pin(async move {
            if !self.available(issuer) {
                return Err(Reason::KeysUnavailable);
            }
            self.keys.resolve(issuer, kid, alg).await
        })
    }

    fn available(&self, _issuer: &str) -> bool {
        self.available.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Regression: cache hits used to be served after the issuer's keys went stale, so an IdP
/// outage longer than maxStalenessSeconds never produced 503 for tokens seen before it.
#[test]
fn cached_tokens_get_503_once_keys_are_unavailable() {
    let k = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("a"), None)]}).to_string().as_bytes()).unwrap();
    let fading = Arc::new(FadingKeys { keys: keys(set), available: true.into() });
    let authn = authenticator(fading.clone());
    let issuers = IssuerSet::new(&[issuer_cfg("api")], 1);
    let t = token(&k, "a", "alice");
    block(async {
        assert!(!authn.authenticate(&issuers, &t, NOW).await.expect("valid").cached);
        assert!(authn.authenticate(&issuers, &t, NOW).await.expect("valid").cached);
        fading.available.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(authn.authenticate(&issuers, &t, NOW).await.unwrap_err(), Reason::KeysUnavailable);
        fading.available.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            authn.authenticate(&issuers, &t, NOW).await.expect("valid again").cached,
            "the entry survives the outage"
        );
    });
}
