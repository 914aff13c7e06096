//! Key rotation at the dev IdP process: followed within the request that first shows the
//! new kid, with one fetch however many requests race; removed keys stop working at once.

use std::sync::Arc;

use serde_json::json;
use ward::reason::Reason;
use ward_e2e::{
    idp::DevIdp,
    verifier::{Verifier, issuer},
};

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().expect("token header");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("header base64");
    let v: serde_json::Value = serde_json::from_slice(&header).expect("header JSON");
    v["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_followed_within_the_request() {
    let idp = DevIdp::start(&[]);
    let v = Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [api]", idp.issuer))]);
    let before = idp.mint(json!({"sub": "a", "aud": "api"})).await;
    v.check(&before).await.unwrap_or_else(|r| panic!("token before rotation refused: {r}"));
    assert_eq!(idp.stats().await.jwks, 1);

    let rotated = idp.rotate().await;
    let after = idp.mint(json!({"sub": "b", "aud": "api"})).await;
    assert_eq!(kid_of(&after), rotated["current"].as_str().expect("current kid"));
    // The very first request with the new kid succeeds: it waits for the refetch it caused.
    let ok = v.check(&after).await.unwrap_or_else(|r| panic!("token after rotation refused: {r}"));
    assert_eq!(ok.identity.subject.as_deref(), Some("b"));
    assert_eq!(idp.stats().await.jwks, 2, "exactly one refetch");
    assert_eq!(v.metric(&format!(r#"ward_jwks_unknown_kid_refetches_total{{issuer="{}"}}"#, idp.issuer)), Some(1.0));
    // The old key is still published, so its tokens still verify.
    assert!(v.check(&before).await.is_ok(), "old key still published: its tokens stay valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_requests_share_one_refetch() {
    let idp = DevIdp::start(&[]);
    let v = Arc::new(Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [api]", idp.issuer))]));
    v.check(&idp.mint(json!({"aud": "api"})).await).await.expect("initial load");
    idp.rotate().await;
    // Distinct tokens, so that none is served from the verified cache.
    let mut tokens = Vec::new();
    for i in 0..32 {
        tokens.push(idp.mint(json!({"sub": format!("s{i}"), "aud": "api"})).await);
    }
    let checks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let v = v.clone();
            tokio::spawn(async move { v.check(&t).await.map(|_| ()) })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.expect("check task"), Ok(()), "a request with the new kid was refused");
    }
    // One refetch caused by the new kid, whatever the scheduled refresh did meanwhile (on a
    // loaded machine one may be in flight when the rotation lands: requests that joined it
    // and still miss the kid get their own round).
    assert_eq!(
        v.metric(&format!(r#"ward_jwks_unknown_kid_refetches_total{{issuer="{}"}}"#, idp.issuer)),
        Some(1.0),
        "32 concurrent requests with a new kid caused one refetch"
    );
    assert!(idp.stats().await.jwks <= 3, "initial load, at most one scheduled refresh, one refetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_keys_are_retired_and_cached_tokens_die() {
    let idp = DevIdp::start(&[]);
    let v = Verifier::new(&[issuer(&format!(
        "issuer: {}\naudiences: [api]\njwks: {{unknownKidCooldownSeconds: 0}}",
        idp.issuer
    ))]);
    let old = idp.mint(json!({"aud": "api"})).await;
    v.check(&old).await.expect("old token");
    assert!(v.check(&old).await.expect("old token again").cached, "second check is a verified-cache hit");

    idp.rotate().await;
    idp.retire_old().await;
    let new = idp.mint(json!({"aud": "api"})).await;
    // This refetch brings a key set without the old key: the old key is retired, and the
    // cached verdict for the old token goes with it.
    v.check(&new).await.expect("new token");
    assert_eq!(v.check(&old).await.err(), Some(Reason::UnknownKey), "a token of a removed key was accepted");
    assert_eq!(v.status(&idp.issuer).keys.len(), 1);
}
