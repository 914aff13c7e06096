//! Interop with a real, OpenID Certified provider (panva/oidc-provider, tests/idp): a JWT
//! access token from the client-credentials grant is accepted by ward's validation, and a
//! rotation of the provider's signing keys is followed with no false rejection.

use std::sync::Arc;

use ward::{jwks::Health, reason::Reason};
use ward_e2e::{
    idp::{NODE_AUDIENCE, NODE_CLIENT_ID, NodeIdp},
    verifier::{Verifier, issuer},
};

fn config(op: &NodeIdp) -> ward::config::Issuer {
    issuer(&format!("issuer: {}\naudiences: [{NODE_AUDIENCE}]", op.issuer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_jwt_access_token_is_accepted() {
    let Some(op) = NodeIdp::start() else { return };
    let v = Verifier::new(&[config(&op)]);
    let token = op.client_credentials_token().await;
    let ok = v.check(&token).await.unwrap_or_else(|r| panic!("oidc-provider access token refused: {r}"));
    assert_eq!(ok.identity.subject.as_deref(), Some(NODE_CLIENT_ID));
    assert_eq!(ok.identity.audiences, vec![NODE_AUDIENCE.to_owned()]);
    assert_eq!(ok.identity.claims["client_id"], NODE_CLIENT_ID);
    assert_eq!(ok.identity.claims["scope"], "api:read");
    let status = v.status(&op.issuer);
    assert_eq!(status.health, Health::Fresh);
    assert_eq!(status.jwks_uri, Some(format!("{}/jwks", op.issuer)), "jwks_uri found through discovery");

    // The audience check is real: another audience is refused.
    let other = Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [someone-else]", op.issuer))]);
    assert_eq!(other.check(&token).await.err(), Some(Reason::BadAudience));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_rotation_is_followed_without_false_rejections() {
    let Some(op) = NodeIdp::start() else { return };
    // A node with the default settings, and one whose unknown-kid cooldown (30 s by
    // default) is off, so that it can follow several rotations in a few seconds.
    let default_node = Verifier::new(&[config(&op)]);
    let fast = Arc::new(Verifier::new(&[issuer(&format!(
        "issuer: {}\naudiences: [{NODE_AUDIENCE}]\njwks: {{unknownKidCooldownSeconds: 0}}",
        op.issuer
    ))]));
    let first = op.client_credentials_token().await;
    default_node.check(&first).await.expect("token before rotation");
    fast.check(&first).await.expect("token before rotation");

    let mut tokens = vec![first];
    for round in 0..3 {
        let rotated = op.rotate().await;
        // Requests keep coming while the provider rotates: every token it issued, old or new,
        // must verify, the new ones on their first presentation after the rotation.
        let fresh = op.client_credentials_token().await;
        tokens.push(fresh.clone());
        if round == 0 {
            default_node.check(&fresh).await.unwrap_or_else(|r| panic!("default settings: rotation not followed: {r}"));
        }
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (v, t) = (fast.clone(), fresh.clone());
                tokio::spawn(async move { v.check(&t).await.map(|_| ()) })
            })
            .collect();
        for c in checks {
            assert_eq!(c.await.expect("check task"), Ok(()), "round {round}: token of rotated key {rotated} refused");
        }
        for (i, t) in tokens.iter().enumerate() {
            assert!(
                fast.check(t).await.is_ok(),
                "round {round}: token #{i} refused after rotation (old keys are still published)"
            );
        }
    }
    assert_eq!(
        fast.metric(&format!(r#"ward_jwks_unknown_kid_refetches_total{{issuer="{}"}}"#, op.issuer)),
        Some(3.0),
        "each rotation is followed by exactly one refetch, however many requests race"
    );
    assert_eq!(fast.status(&op.issuer).keys.len(), 4);

    // The provider stops publishing the old keys: the next refetch (caused here by the next
    // new kid) retires them, and their tokens are refused, cached verdicts included.
    op.rotate().await;
    op.retire_old().await;
    let last = op.client_credentials_token().await;
    fast.check(&last).await.expect("token of the only published key");
    assert_eq!(fast.status(&op.issuer).keys.len(), 1);
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(fast.check(t).await.err(), Some(Reason::UnknownKey), "token #{i} of a removed key accepted");
    }
}
