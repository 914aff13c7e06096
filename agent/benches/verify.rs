//! Token validation cost: cold validation per algorithm, a verified-cache hit, and the raw
//! signature verify of the crypto backend (aws-lc-rs) as the baseline, all in one run.
//!
//! `cargo bench -p ward --features bench --bench verify`

use std::{collections::HashMap, hint::black_box, sync::Arc};

use aws_lc_rs::signature as sig;
use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use ward::{
    authn::{Authenticator, IssuerSet, StaticKeys, metrics::AuthnMetrics},
    config::{CacheSettings, Issuer},
    jwt::{Algorithm, compact::B64, key::KeySet, testkeys::TestKey},
};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.bench";

fn claims() -> serde_json::Value {
    // A realistic access token: ~15 claims, like Keycloak's.
    json!({
        "iss": ISS, "aud": ["agent-api", "account"], "sub": "5f0c8a0e-6a5e-4a7b-9d1e-2c0b1e9f7a31",
        "exp": NOW + 300, "iat": NOW - 5, "nbf": NOW - 5, "jti": "b1d4c9e2-0c4f-4f5e-9a43-3d8f5b7c2a10",
        "azp": "frontend", "scope": "openid profile email", "email": "user@example.com",
        "email_verified": true, "preferred_username": "user", "role": "reader",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "reader"]},
        "groups": ["dev", "ops"]
    })
}

fn setup(key: &TestKey, alg: Algorithm, kid: &str) -> (Authenticator, IssuerSet, String) {
    let set = KeySet::parse(json!({"keys": [key.jwk(Some(kid), None)]}).to_string().as_bytes()).unwrap();
    let keys = Arc::new(StaticKeys(HashMap::from([(ISS.to_owned(), set)])));
    let authn = Authenticator::new(keys, &CacheSettings::default(), Arc::new(AuthnMetrics::unregistered()));
    let issuer: Issuer = serde_yaml_ng::from_str(&format!("issuer: {ISS}\naudiences: [agent-api]\n")).unwrap();
    let token =
        key.sign_raw(alg, &json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"}).to_string(), &claims().to_string());
    (authn, IssuerSet::new(&[issuer], 1), token)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let rsa = TestKey::rsa();
    let p256 = TestKey::p256();
    let ed = TestKey::ed25519();

    let mut g = c.benchmark_group("raw_verify");
    for (name, key, alg, vk) in [
        ("RS256", &rsa, Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256 as &'static dyn sig::VerificationAlgorithm),
        ("ES256", &p256, Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED),
        ("EdDSA", &ed, Algorithm::EdDSA, &sig::ED25519),
    ] {
        let (_, _, token) = setup(key, alg, "k");
        let (input, s) = token.rsplit_once('.').unwrap();
        let signature = B64.decode(s).unwrap();
        let public = key.0.public_key_bytes();
        let parsed = sig::ParsedPublicKey::new(vk, &public).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| parsed.verify_sig(black_box(input.as_bytes()), black_box(&signature)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cold_validation");
    for (name, key, alg) in
        [("RS256", &rsa, Algorithm::RS256), ("ES256", &p256, Algorithm::ES256), ("EdDSA", &ed, Algorithm::EdDSA)]
    {
        let (authn, issuers, token) = setup(key, alg, "k");
        // The key resolver here never awaits, so poll once instead of entering a runtime per
        // iteration: in the agent the call already runs inside a task.
        g.bench_function(name, |b| {
            b.iter(|| {
                let v = futures_util::FutureExt::now_or_never(authn.verify_uncached(&issuers, black_box(&token), NOW));
                v.expect("static keys never await").unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("verified_cache");
    let (authn, issuers, token) = setup(&rsa, Algorithm::RS256, "k");
    rt.block_on(authn.authenticate(&issuers, &token, NOW)).unwrap();
    g.bench_function("hit_RS256", |b| {
        b.iter(|| {
            let a = futures_util::FutureExt::now_or_never(authn.authenticate(&issuers, black_box(&token), NOW));
            assert!(a.expect("a hit never awaits").unwrap().cached);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
