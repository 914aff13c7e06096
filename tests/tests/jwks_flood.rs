//! A flood of tokens with random kids cannot become a flood of JWKS fetches: the fetches
//! the dev IdP process counts stay within the unknown-kid cooldown bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use ward::{
    devidp::mint::{KidHeader, SigningKey, fill_claims},
    jwt::Algorithm,
    reason::Reason,
    time::now_unix,
};
use ward_e2e::{
    idp::DevIdp,
    verifier::{Verifier, issuer},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_kid_flood_stays_within_the_cooldown_bound() {
    const COOLDOWN_SECS: u64 = 1;
    let idp = DevIdp::start(&[]);
    let v = Arc::new(Verifier::new(&[issuer(&format!(
        "issuer: {}\naudiences: [api]\njwks: {{unknownKidCooldownSeconds: {COOLDOWN_SECS}}}",
        idp.issuer
    ))]));
    let good = idp.mint(json!({"aud": "api"})).await;
    v.check(&good).await.expect("initial load");
    let fetches_before = idp.stats().await.jwks;

    // The attacker's tokens: signed by a key the IdP never published, each with a new kid.
    // The kid is looked up before any signature check, so each is a potential refetch.
    let attacker = Arc::new(SigningKey::generate(Algorithm::RS256).expect("keygen"));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flood_for = Duration::from_millis(3500);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (v, attacker, sent) = (v.clone(), attacker.clone(), sent.clone());
        let issuer = idp.issuer.clone();
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < flood_for {
                let mut claims = serde_json::Map::new();
                claims.insert("aud".into(), json!("api"));
                fill_claims(&mut claims, &issuer, None, 600, now_unix());
                let token = attacker.mint(None, &KidHeader::Value(format!("random-{w}-{i}")), &claims).expect("mint");
                assert_eq!(
                    v.check(&token).await.err(),
                    Some(Reason::UnknownKey),
                    "a random kid was not refused as unknown"
                );
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for w in workers {
        w.await.expect("flood worker");
    }
    let elapsed = started.elapsed();
    let refetches = idp.stats().await.jwks - fetches_before;
    let sent = sent.load(Ordering::Relaxed);
    // One refetch at once, then at most one per cooldown of flood time. (The bound grows
    // with the measured duration, so a slow machine cannot make this fail.)
    let bound = 1 + elapsed.as_secs() / COOLDOWN_SECS;
    eprintln!("{sent} unknown-kid requests in {elapsed:?} caused {refetches} JWKS fetches (bound {bound})");
    assert!(sent >= 100, "the flood was too small to show anything: {sent} requests");
    assert!(refetches >= 1, "the first unknown kid must refetch at once");
    assert!(refetches <= bound, "{refetches} refetches for {sent} random kids in {elapsed:?}: more than {bound}");
    let suppressed = v
        .metric(&format!(r#"ward_jwks_unknown_kid_refetches_suppressed_total{{issuer="{}"}}"#, idp.issuer))
        .expect("suppressed counter");
    assert!(suppressed as u64 >= sent - refetches * 64, "suppressed {suppressed} of {sent}");
    // Legitimate tokens were unaffected.
    v.check(&good).await.expect("a valid token during the flood");
}
