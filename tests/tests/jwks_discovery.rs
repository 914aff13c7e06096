//! Discovery against the dev IdP process: the discovery document's `issuer` must be the
//! configured one byte for byte; `jwksUri` skips discovery.

use serde_json::json;
use ward::{jwks::Health, reason::Reason};
use ward_e2e::{
    idp::DevIdp,
    verifier::{Verifier, issuer},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_loads_keys_and_tokens_verify() {
    let idp = DevIdp::start(&["--alg", "ES256", "--alg", "RS256", "--alg", "EdDSA"]);
    let v = Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [api]", idp.issuer))]);
    // The first request waits for the initial load (started by sync_issuers).
    for alg in ["ES256", "RS256", "EdDSA"] {
        let token = idp.mint_with(json!({"sub": "alice", "aud": "api"}), &format!("alg={alg}")).await;
        let ok = v.check(&token).await.unwrap_or_else(|r| panic!("{alg} token refused: {r}"));
        assert_eq!(ok.identity.subject.as_deref(), Some("alice"));
    }
    let status = v.status(&idp.issuer);
    assert_eq!(status.health, Health::Fresh);
    assert_eq!(status.keys.len(), 3);
    assert_eq!(status.jwks_uri.as_deref(), Some(idp.jwks_uri().as_str()));
    assert!(v.store.all_loaded());
    let stats = idp.stats().await;
    assert_eq!((stats.discovery, stats.jwks), (1, 1), "one discovery and one JWKS fetch for three tokens");
    assert_eq!(v.fetches(&idp.issuer, "ok"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_with_another_issuer_is_refused() {
    let idp = DevIdp::start(&[]);
    // One trailing slash: a classic misconfiguration. The discovery document says the
    // issuer without it, so nothing from this IdP may be trusted for this config entry.
    let configured = format!("{}/", idp.issuer);
    let v = Verifier::new(&[issuer(&format!(
        "issuer: {configured}\naudiences: [api]\ndiscoveryUri: {}",
        idp.discovery_uri()
    ))]);
    let token = idp.mint(json!({"iss": configured, "aud": "api"})).await;
    assert_eq!(
        v.check(&token).await.err(),
        Some(Reason::KeysUnavailable),
        "keys from a mismatched issuer must not be used"
    );
    let status = v.status(&configured);
    assert_eq!(status.health, Health::Failing);
    let error = status.last_error.expect("the error is reported");
    assert!(error.contains("byte-identical") && error.contains(&idp.issuer), "unhelpful error: {error}");
    assert_eq!(v.fetches(&configured, "issuer_mismatch"), 1.0);
    assert_eq!(idp.stats().await.jwks, 0, "the JWKS of a mismatched issuer is never fetched");
    assert!(!v.store.all_loaded());
    assert_eq!(v.metric(&format!(r#"ward_jwks_available{{issuer="{configured}"}}"#)), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_uri_skips_discovery() {
    let idp = DevIdp::start(&[]);
    let v = Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [api]\njwksUri: {}", idp.issuer, idp.jwks_uri()))]);
    let token = idp.mint(json!({"aud": "api"})).await;
    v.check(&token).await.unwrap_or_else(|r| panic!("token refused: {r}"));
    let stats = idp.stats().await;
    assert_eq!((stats.discovery, stats.jwks), (0, 1));
}
