//! The IdP goes away: the last good keys keep serving (and the node says so), until they
//! are older than maxStalenessSeconds; then tokens get 503 (KeysUnavailable), not 401.
//! When the IdP returns, the node recovers by itself.

use serde_json::json;
use ward::{jwks::Health, reason::Reason};
use ward_e2e::{
    idp::DevIdp,
    verifier::{Verifier, issuer},
};

fn config(idp: &DevIdp, max_staleness: u64) -> ward::config::Issuer {
    // max-age 1 from the IdP, clamped to minRefreshSeconds 1: the node refreshes every second.
    issuer(&format!(
        "issuer: {}\naudiences: [api]\njwks: {{minRefreshSeconds: 1, maxStalenessSeconds: {max_staleness}, fetchTimeoutMillis: 500}}",
        idp.issuer
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_serves_stale_keys_then_keys_unavailable_then_recovers() {
    let mut idp = DevIdp::start(&["--max-age", "1"]);
    let mut v = Verifier::new(&[config(&idp, 3600)]);
    let token = idp.mint(json!({"sub": "alice", "aud": "api"})).await;
    v.check(&token).await.expect("token while the IdP is up");
    let iss = idp.issuer.clone();
    let gauge = |name: &str| format!(r#"ward_jwks_{name}{{issuer="{iss}"}}"#);

    // The IdP process dies: connections are refused.
    idp.stop();
    v.wait_for("a failed refresh", async |v| v.status(&iss).health == Health::Stale).await;
    let status = v.status(&iss);
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("failed")), "{status:?}");
    assert_eq!(v.metric(&gauge("stale")), Some(1.0));
    assert_eq!(v.metric(&gauge("available")), Some(1.0));
    assert!(v.fetches(&iss, "connect_error") >= 1.0);
    // Stale keys still serve, for a full verification too: a reload (same settings) starts
    // a new verified-cache generation, so this check cannot be a cache hit.
    v.reconfigure(&[config(&idp, 3600)]);
    let verified = v.check(&token).await;
    assert!(verified.is_ok_and(|a| !a.cached), "stale keys must keep serving within maxStalenessSeconds");
    assert!(v.store.all_loaded(), "stale but usable keys keep the node ready");

    // Now the keys are older than maxStalenessSeconds: 503, not 401.
    v.reconfigure(&[config(&idp, 1)]);
    // Including the verdict cached a moment ago: expired keys are retired.
    v.wait_for("keys to expire", async |v| v.check(&token).await.err() == Some(Reason::KeysUnavailable)).await;
    assert_eq!(v.status(&iss).health, Health::Expired);
    assert_eq!(v.metric(&gauge("available")), Some(0.0));
    assert_eq!(v.metric(&gauge("stale")), Some(1.0));
    assert!(!v.store.all_loaded());

    // The IdP comes back (same address, new keys): the refresh loop notices by itself.
    idp.restart();
    let fresh = idp.mint(json!({"sub": "bob", "aud": "api"})).await;
    v.wait_for("recovery", async |v| v.check(&fresh).await.is_ok()).await;
    assert_eq!(v.status(&iss).health, Health::Fresh);
    assert_eq!(v.metric(&gauge("stale")), Some(0.0));
    assert_eq!(v.metric(&gauge("available")), Some(1.0));
    assert_eq!(v.check(&token).await.err(), Some(Reason::UnknownKey), "the old IdP's key is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_loaded_give_keys_unavailable() {
    let mut idp = DevIdp::start(&[]);
    let token = idp.mint(json!({"aud": "api"})).await;
    idp.stop();
    let v = Verifier::new(&[config(&idp, 3600)]);
    assert_eq!(v.check(&token).await.err(), Some(Reason::KeysUnavailable));
    assert_eq!(v.status(&idp.issuer).health, Health::Failing);
    assert!(!v.store.all_loaded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_answering_503_is_an_outage_too() {
    let idp = DevIdp::start(&["--max-age", "1"]);
    let v = Verifier::new(&[config(&idp, 3600)]);
    let token = idp.mint(json!({"aud": "api"})).await;
    v.check(&token).await.expect("token while the IdP is up");
    idp.fault(json!({"mode": "down"})).await;
    v.wait_for("a 503 refresh", async |v| v.fetches(&idp.issuer, "http_status") >= 1.0).await;
    assert_eq!(v.status(&idp.issuer).health, Health::Stale);
    let err = v.status(&idp.issuer).last_error.expect("error");
    assert!(err.contains("HTTP 503"), "{err}");
    idp.fault(json!({"mode": "none"})).await;
    v.wait_for("recovery", async |v| v.status(&idp.issuer).health == Health::Fresh).await;
}
