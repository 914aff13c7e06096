//! Table-driven tests: one token built for each rule.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::{
    config::Issuer,
    jwt::{compact::B64, key::KeySet, testkeys::TestKey},
};
use base64::Engine;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.test";

fn issuer() -> Issuer {
    serde_yaml_ng::from_str(&format!("issuer: {ISS}\naudiences: [agent-api]\nmaxLifetimeSeconds: 86400\n"))
        .expect("issuer yaml")
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "agent-api", "sub": "alice", "exp": NOW + 600, "iat": NOW - 10, "role": "reader"})
}

struct Fixture {
    rsa: TestKey,
    ec: TestKey,
    ed: TestKey,
    set: KeySet,
    rules: IssuerRules,
}

fn fixture() -> Fixture {
    let (rsa, ec, ed) = (TestKey::rsa(), TestKey::p256(), TestKey::ed25519());
    let doc = json!({"keys": [rsa.jwk(Some("r1"), Some("RS256")), ec.jwk(Some("e1"), None), ed.jwk(Some("d1"), Some("EdDSA"))]});
    let set = KeySet::parse(doc.to_string().as_bytes()).expect("key set");
    assert_eq!(set.len(), 3, "ignored: {:?}", set.ignored());
    Fixture { rsa, ec, ed, set, rules: IssuerRules::new(Arc::new(issuer())) }
}

/// Full validation as the authenticator runs it, with a static key set.
fn validate(f: &Fixture, token: &str) -> Result<CheckedClaims, Reason> {
    let u = parse(token, 8192)?;
    if u.iss != ISS {
        return Err(Reason::UnknownIssuer);
    }
    f.rules.check_unverified(token, &u)?;
    let key = f.set.select(u.kid.as_deref(), u.alg)?;
    u.check_signature(&key)?;
    f.rules.check_claims(&u.into_payload(), NOW)
}

fn tok(key: &TestKey, alg: Algorithm, header: Value, payload: Value) -> String {
    key.sign_raw(alg, &header.to_string(), &payload.to_string())
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    if x.is_null() {
        v.as_object_mut().unwrap().remove(k);
    } else {
        v[k] = x;
    }
    v
}

#[test]
fn accepts_each_algorithm_family() {
    let f = fixture();
    for (key, alg, kid) in
        [(&f.rsa, Algorithm::RS256, "r1"), (&f.ec, Algorithm::ES256, "e1"), (&f.ed, Algorithm::EdDSA, "d1")]
    {
        let t = tok(key, alg, json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"}), claims());
        let c = validate(&f, &t).unwrap_or_else(|r| panic!("{alg} token refused: {r}"));
        assert_eq!(c.subject.as_deref(), Some("alice"));
        assert_eq!(c.audiences, vec!["agent-api"]);
    }
}

#[test]
fn rsa_key_without_declared_alg_serves_ps256() {
    let rsa = TestKey::rsa();
    let set = KeySet::parse(json!({"keys": [rsa.jwk(Some("k"), None)]}).to_string().as_bytes()).unwrap();
    let t = tok(&rsa, Algorithm::PS256, json!({"alg": "PS256", "kid": "k"}), claims());
    let u = parse(&t, 8192).unwrap();
    u.check_signature(&set.select(Some("k"), Algorithm::PS256).unwrap()).expect("PS256 verifies");
}

#[test]
fn table_of_rejections() {
    let f = fixture();
    let h = |alg: &str| json!({"alg": alg, "kid": "r1"});
    let rs = |header: Value, payload: Value| tok(&f.rsa, Algorithm::RS256, header, payload);
    let good = rs(h("RS256"), claims());
    let (gh, gp, gs) = {
        let mut it = good.split('.');
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let enc = |v: &Value| B64.encode(v.to_string());
    let ec_der_sig = {
        // ES256 with a DER-encoded signature instead of fixed R||S.
        let input = format!("{}.{}", enc(&json!({"alg": "ES256", "kid": "e1"})), enc(&claims()));
        let fixed = f.ec.signature(Algorithm::ES256, input.as_bytes());
        let mut der = vec![0x30, 0x44, 0x02, 0x20];
        der.extend_from_slice(&fixed[..32]);
        der.extend_from_slice(&[0x02, 0x20]);
        der.extend_from_slice(&fixed[32..]);
        format!("{input}.{}", B64.encode(der))
    };
    let cases: Vec<(&str, String, Reason)> = vec![
        ("too large", format!("{gh}.{}.{gs}", "A".repeat(9000)), Reason::TokenTooLarge),
        ("two segments", format!("{gh}.{gp}"), Reason::MalformedCompact),
        ("JWE five segments", format!("{gh}.{gp}.{gs}.{gs}.{gs}"), Reason::MalformedCompact),
        ("padding", format!("{gh}.{gp}.{gs}="), Reason::BadBase64),
        ("whitespace", format!("{gh}.{gp}.{gs} "), Reason::BadBase64),
        (
            "standard base64 alphabet",
            format!("{gh}.{gp}.{}", gs.replace('-', "+").replace('_', "/") + "+"),
            Reason::BadBase64,
        ),
        ("header not JSON", format!("{}.{gp}.{gs}", B64.encode("not json")), Reason::BadJson),
        (
            "duplicate header member",
            format!("{}.{gp}.{gs}", B64.encode(r#"{"alg":"RS256","alg":"none"}"#)),
            Reason::BadJson,
        ),
        (
            "duplicate claim",
            rs(h("RS256"), json!(0))
                .replace(&enc(&json!(0)), &B64.encode(r#"{"iss":"https://idp.test","iss":"https://evil"}"#)),
            Reason::BadJson,
        ),
        ("payload array", rs(h("RS256"), json!([1])), Reason::BadJson),
        ("alg none", format!("{}.{gp}.{gs}", enc(&json!({"alg": "none"}))), Reason::AlgNone),
        ("alg NoNe", format!("{}.{gp}.{gs}", enc(&json!({"alg": "NoNe"}))), Reason::AlgNone),
        ("alg HS256", format!("{}.{gp}.{gs}", enc(&json!({"alg": "HS256", "kid": "r1"}))), Reason::AlgNotAllowed),
        ("alg missing", format!("{}.{gp}.{gs}", enc(&json!({"kid": "r1"}))), Reason::AlgNotAllowed),
        ("alg lowercase", format!("{}.{gp}.{gs}", enc(&json!({"alg": "rs256"}))), Reason::AlgNotAllowed),
        ("crit", rs(json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]}), claims()), Reason::UnsupportedHeader),
        ("b64", rs(json!({"alg": "RS256", "kid": "r1", "b64": false}), claims()), Reason::UnsupportedHeader),
        ("cty JWT", rs(json!({"alg": "RS256", "kid": "r1", "cty": "jwt"}), claims()), Reason::UnsupportedHeader),
        ("no iss", rs(h("RS256"), with(claims(), "iss", Value::Null)), Reason::UnknownIssuer),
        ("iss array", rs(h("RS256"), with(claims(), "iss", json!([ISS]))), Reason::UnknownIssuer),
        ("iss trailing slash", rs(h("RS256"), with(claims(), "iss", json!(format!("{ISS}/")))), Reason::UnknownIssuer),
        ("unknown kid", rs(json!({"alg": "RS256", "kid": "nope"}), claims()), Reason::UnknownKey),
        ("key type mismatch", rs(json!({"alg": "RS256", "kid": "e1"}), claims()), Reason::KeyAlgMismatch),
        (
            "declared alg mismatch",
            tok(&f.rsa, Algorithm::RS384, json!({"alg": "RS384", "kid": "r1"}), claims()),
            Reason::KeyAlgMismatch,
        ),
        (
            "tampered payload",
            format!("{gh}.{}.{gs}", enc(&with(claims(), "role", json!("admin")))),
            Reason::BadSignature,
        ),
        (
            "signature by another key",
            tok(&TestKey::rsa(), Algorithm::RS256, h("RS256"), claims()),
            Reason::BadSignature,
        ),
        ("ES256 DER signature", ec_der_sig, Reason::BadSignature),
        ("aud missing", rs(h("RS256"), with(claims(), "aud", Value::Null)), Reason::BadAudience),
        ("aud other", rs(h("RS256"), with(claims(), "aud", json!("other"))), Reason::BadAudience),
        ("aud array without ours", rs(h("RS256"), with(claims(), "aud", json!(["a", "b"]))), Reason::BadAudience),
        ("aud number", rs(h("RS256"), with(claims(), "aud", json!(7))), Reason::BadAudience),
        ("exp missing", rs(h("RS256"), with(claims(), "exp", Value::Null)), Reason::MissingExp),
        ("exp string", rs(h("RS256"), with(claims(), "exp", json!((NOW + 600).to_string()))), Reason::MissingExp),
        ("expired beyond skew", rs(h("RS256"), with(claims(), "exp", json!(NOW - 61))), Reason::Expired),
        ("nbf future beyond skew", rs(h("RS256"), with(claims(), "nbf", json!(NOW + 61))), Reason::NotYetValid),
        ("nbf string", rs(h("RS256"), with(claims(), "nbf", json!("0"))), Reason::NotYetValid),
        ("iat future beyond skew", rs(h("RS256"), with(claims(), "iat", json!(NOW + 61))), Reason::BadIssuedAt),
        ("iat bool", rs(h("RS256"), with(claims(), "iat", json!(true))), Reason::BadIssuedAt),
        (
            "lifetime too long",
            rs(h("RS256"), with(with(claims(), "iat", json!(NOW - 10)), "exp", json!(NOW + 86_400))),
            Reason::LifetimeTooLong,
        ),
        ("sub number", rs(h("RS256"), with(claims(), "sub", json!(42))), Reason::BadClaimType),
    ];
    for (name, token, want) in cases {
        assert_eq!(validate(&f, &token).map(|_| ()), Err(want), "case {name:?}");
    }
}

#[test]
fn skew_boundaries_accept() {
    let f = fixture();
    let h = json!({"alg": "RS256", "kid": "r1"});
    for (name, claims) in [
        ("exp within skew", with(claims(), "exp", json!(NOW - 59))),
        ("nbf within skew", with(claims(), "nbf", json!(NOW + 60))),
        ("iat within skew", with(claims(), "iat", json!(NOW + 60))),
        ("aud array with ours", with(claims(), "aud", json!(["x", "agent-api"]))),
        ("fractional exp", with(claims(), "exp", json!((NOW + 600) as f64 + 0.5))),
    ] {
        let t = tok(&f.rsa, Algorithm::RS256, h.clone(), claims);
        validate(&f, &t).unwrap_or_else(|r| panic!("{name}: refused with {r}"));
    }
}

#[test]
fn algorithm_allowlist_is_per_issuer() {
    let mut f = fixture();
    let mut cfg = issuer();
    cfg.algorithms = vec![Algorithm::ES256];
    f.rules = IssuerRules::new(Arc::new(cfg));
    let t = tok(&f.rsa, Algorithm::RS256, json!({"alg": "RS256", "kid": "r1"}), claims());
    assert_eq!(validate(&f, &t).map(|_| ()), Err(Reason::AlgNotAllowed));
}

#[test]
fn key_hygiene() {
    let rsa = TestKey::rsa();
    let ec = TestKey::p256();
    let mut off_curve = ec.jwk(Some("bad-point"), None);
    let mut y = B64.decode(off_curve["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    off_curve["y"] = json!(B64.encode(&y));
    let small_rsa = json!({"kty": "RSA", "kid": "small", "n": B64.encode([0xC3u8; 128]), "e": "AQAB"});
    let docs = vec![
        ("enc use", with(rsa.jwk(Some("a"), None), "use", json!("enc"))),
        ("key_ops sign only", with(rsa.jwk(Some("a"), None), "key_ops", json!(["sign"]))),
        ("unknown kty", json!({"kty": "XYZ", "kid": "a"})),
        ("oct key", json!({"kty": "oct", "kid": "a", "k": "c2VjcmV0"})),
        ("alg disagrees", rsa.jwk(Some("a"), Some("ES256"))),
        ("alg unknown", rsa.jwk(Some("a"), Some("RSA-OAEP"))),
        ("rsa 1024", small_rsa),
        ("rsa zero modulus (found by fuzzing)", json!({"kty": "RSA", "kid": "z", "n": "AAAA", "e": "AQAB"})),
        ("point not on curve", off_curve),
        ("P-521", json!({"kty": "EC", "crv": "P-521", "kid": "a", "x": "AA", "y": "AA"})),
    ];
    for (name, jwk) in docs {
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 0, "{name}: key should be ignored");
        assert_eq!(set.ignored().len(), 1, "{name}: ignored key should be listed");
    }
    // Accepted forms.
    for (name, jwk) in [
        ("use sig", with(rsa.jwk(Some("a"), None), "use", json!("sig"))),
        ("key_ops verify", with(rsa.jwk(Some("a"), None), "key_ops", json!(["verify"]))),
    ] {
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1, "{name}: {:?}", set.ignored());
    }
    assert!(KeySet::parse(b"<html>").is_err());
    assert!(KeySet::parse(br#"{"kees": []}"#).is_err());
}

#[test]
fn duplicate_kid_is_unusable_and_kidless_needs_exactly_one() {
    let (a, b) = (TestKey::rsa(), TestKey::rsa());
    let dup = KeySet::parse(json!({"keys": [a.jwk(Some("k"), None), b.jwk(Some("k"), None)]}).to_string().as_bytes())
        .unwrap();
    assert_eq!(dup.select(Some("k"), Algorithm::RS256).unwrap_err(), Reason::AmbiguousKey);

    let one =
        KeySet::parse(json!({"keys": [a.jwk(None, None), TestKey::p256().jwk(None, None)]}).to_string().as_bytes())
            .unwrap();
    let key = one.select(None, Algorithm::RS256).expect("single RSA key fits");
    let t = tok(&a, Algorithm::RS256, json!({"alg": "RS256"}), claims());
    parse(&t, 8192).unwrap().check_signature(&key).expect("kid-less token verifies");

    let two = KeySet::parse(json!({"keys": [a.jwk(None, None), b.jwk(None, None)]}).to_string().as_bytes()).unwrap();
    assert_eq!(two.select(None, Algorithm::RS256).unwrap_err(), Reason::AmbiguousKey);
    assert_eq!(two.select(None, Algorithm::EdDSA).unwrap_err(), Reason::UnknownKey);
}

#[test]
fn succession_keeps_unchanged_keys_and_retires_removed_ones() {
    let (a, b, c) = (TestKey::rsa(), TestKey::rsa(), TestKey::p256());
    let old = KeySet::parse(json!({"keys": [a.jwk(Some("a"), None), b.jwk(Some("b"), None)]}).to_string().as_bytes())
        .unwrap();
    let old_a = old.select(Some("a"), Algorithm::RS256).unwrap();
    let old_b = old.select(Some("b"), Algorithm::RS256).unwrap();
    let mut new =
        KeySet::parse(json!({"keys": [a.jwk(Some("a"), None), c.jwk(Some("c"), None)]}).to_string().as_bytes())
            .unwrap();
    new.succeed(&old);
    assert!(Arc::ptr_eq(&old_a, &new.select(Some("a"), Algorithm::RS256).unwrap()), "unchanged key keeps its identity");
    assert!(old_a.is_live());
    assert!(!old_b.is_live(), "removed key is retired at once");
}

#[test]
fn es384_round_trip() {
    let k = TestKey::p384();
    let set = KeySet::parse(json!({"keys": [k.jwk(Some("p"), None)]}).to_string().as_bytes()).unwrap();
    let t = tok(&k, Algorithm::ES384, json!({"alg": "ES384", "kid": "p"}), claims());
    let u = parse(&t, 8192).unwrap();
    u.check_signature(&set.select(Some("p"), Algorithm::ES384).unwrap()).expect("ES384 verifies");
    assert_eq!(set.select(Some("p"), Algorithm::ES256).unwrap_err(), Reason::KeyAlgMismatch);
}
