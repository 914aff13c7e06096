//! A misbehaving IdP (the dev IdP process in its fault modes): slow, stalling, huge, 5xx and
//! malformed answers end in the right, precise error; the fetch deadline and the size cap
//! hold; the last good keys stay in use throughout.

use serde_json::json;
use ward::{
    devidp::mint::{KidHeader, SigningKey, fill_claims},
    jwks::Health,
    jwt::Algorithm,
    reason::Reason,
    time::now_unix,
};
use ward_e2e::{
    idp::DevIdp,
    verifier::{Verifier, issuer},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_answers_fail_precisely_and_last_good_keys_stay() {
    let idp = DevIdp::start(&[]);
    let v = Verifier::new(&[issuer(&format!(
        "issuer: {}\naudiences: [api]\njwksUri: {}\njwks: {{unknownKidCooldownSeconds: 0, fetchTimeoutMillis: 500, maxResponseBytes: 65536}}",
        idp.issuer,
        idp.jwks_uri()
    ))]);
    v.check(&idp.mint(json!({"aud": "api"})).await).await.expect("initial load");
    let stranger = SigningKey::generate(Algorithm::ES256).expect("keygen");

    // (fault, expected `result` label, a phrase the error must contain)
    let cases = [
        // The server would answer after 5 s; only the 500 ms deadline makes this a timeout.
        (json!({"mode": "slow", "delayMillis": 5000}), "timeout", "fetchTimeoutMillis"),
        // Headers at once, body after 5 s: the deadline covers the body too.
        (json!({"mode": "stall", "delayMillis": 5000}), "timeout", "fetchTimeoutMillis"),
        // 10 MB, chunked: only the cap stops the read.
        (json!({"mode": "huge", "sizeBytes": 10_000_000}), "too_large", "maxResponseBytes"),
        (json!({"mode": "5xx"}), "http_status", "HTTP 500"),
        (json!({"mode": "down"}), "http_status", "HTTP 503"),
        (json!({"mode": "garbage"}), "bad_jwks", "not a JWKS"),
    ];
    for (i, (fault, result, phrase)) in cases.iter().enumerate() {
        // A token minted before the fault, never checked: it needs the cached keys.
        let good = idp.mint(json!({"aud": "api", "sub": format!("case{i}")})).await;
        idp.fault(fault.clone()).await;
        let before = v.fetches(&idp.issuer, result);
        // An unknown kid forces a refetch now (cooldown 0), which meets the fault.
        let mut claims = serde_json::Map::new();
        fill_claims(&mut claims, &idp.issuer, Some("api"), 600, now_unix());
        let probe = stranger.mint(None, &KidHeader::Value(format!("unknown-{i}")), &claims).expect("mint");
        assert_eq!(v.check(&probe).await.err(), Some(Reason::UnknownKey), "{fault}");
        assert_eq!(v.fetches(&idp.issuer, result), before + 1.0, "{fault}: expected one {result} fetch");
        let status = v.status(&idp.issuer);
        assert_eq!(status.health, Health::Stale, "{fault}");
        let error = status.last_error.expect("error recorded");
        assert!(error.contains(phrase), "{fault}: error does not mention {phrase:?}: {error}");
        let ok = v.check(&good).await.unwrap_or_else(|r| panic!("{fault}: last good keys not used: {r}"));
        assert!(!ok.cached);
        idp.fault(json!({"mode": "none"})).await;
    }
    // Healthy again: the next refetch succeeds.
    let fresh_kid = idp.rotate().await;
    let token = idp.mint(json!({"aud": "api"})).await;
    v.check(&token).await.unwrap_or_else(|r| panic!("after the faults, new key {fresh_kid} not followed: {r}"));
    assert_eq!(v.status(&idp.issuer).health, Health::Fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_without_usable_keys_keeps_the_last_good_one() {
    // A key set with only keys ward refuses (a symmetric key): the dev IdP never publishes
    // such a thing, so a bare loopback server answers it, and a config reload points the
    // issuer's jwksUri at it.
    let idp = DevIdp::start(&[]);
    let empty = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let empty_addr = empty.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = empty.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}]}"#;
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    let mut v =
        Verifier::new(&[issuer(&format!("issuer: {}\naudiences: [api]\njwksUri: {}", idp.issuer, idp.jwks_uri()))]);
    let token = idp.mint(json!({"aud": "api"})).await;
    v.check(&token).await.expect("initial load");
    // Reload pointing at the bad key set: the change of source triggers a fetch at once.
    v.reconfigure(&[issuer(&format!("issuer: {}\naudiences: [api]\njwksUri: http://{empty_addr}/jwks", idp.issuer))]);
    v.wait_for("the refetch from the new source", async |v| v.fetches(&idp.issuer, "no_usable_keys") >= 1.0).await;
    let status = v.status(&idp.issuer);
    assert_eq!(status.health, Health::Stale);
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("symmetric")), "{status:?}");
    v.check(&token).await.expect("the last good keys stay in use");
}
