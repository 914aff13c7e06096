//! Tokens: arbitrary bytes through the whole validation pipeline, and tokens built from the
//! input and signed with a real key, so the signature passes and the claim checks run on
//! hostile claims.
//!
//! Properties checked besides "no panic":
//! - every refusal is a 401-class reason (a token problem must never become a 403/503);
//! - a token the fuzz key really signed always passes the signature check;
//! - the strict JSON parser accepts nothing serde_json refuses, and agrees on the value;
//! - accepted claims really have the configured issuer, an accepted audience and an
//!   unexpired `exp`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use ward::{
    jwt::{
        Algorithm, json as strict_json,
        validate::{self, IssuerRules},
    },
    reason::{Outcome, Reason},
};
use ward_fuzz::{AUDIENCE, ISSUER, Json, KID, MAX_TOKEN_BYTES, issuer, keyset, now, signer};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any string as the token.
    Raw(String),
    /// Header and payload given as raw JSON text (duplicates, depth, odd numbers...).
    RawJson { header: String, payload: String, strict: bool },
    /// Header and claims built member by member.
    Built { header: Vec<HeaderMember>, claims: Vec<Claim>, strict: bool },
}

#[derive(Debug, Arbitrary)]
enum HeaderMember {
    Alg(AlgValue),
    Kid(KidValue),
    Typ(Json),
    Cty(Json),
    Crit(Json),
    B64(Json),
    Other(String, Json),
}

#[derive(Debug, Arbitrary)]
enum AlgValue {
    Es256,
    Name(String),
    None,
    Other(Json),
}

#[derive(Debug, Arbitrary)]
enum KidValue {
    Good,
    Name(String),
    Other(Json),
}

#[derive(Debug, Arbitrary)]
enum Claim {
    Iss(Option<Json>),
    Aud(AudValue),
    Exp(Time),
    Nbf(Time),
    Iat(Time),
    Sub(Json),
    Azp(Json),
    Other(String, Json),
}

#[derive(Debug, Arbitrary)]
enum AudValue {
    Good,
    List(Vec<Option<String>>),
    Other(Json),
}

#[derive(Debug, Arbitrary)]
enum Time {
    /// Seconds from now.
    Rel(i32),
    RelFloat(f32),
    Other(Json),
}

impl Time {
    fn value(&self) -> Value {
        match self {
            Time::Rel(d) => json!(now() as i64 + i64::from(*d)),
            Time::RelFloat(d) => {
                serde_json::Number::from_f64(now() as f64 + f64::from(*d)).map_or(Value::Null, Value::Number)
            }
            Time::Other(j) => j.to_value(),
        }
    }
}

fn header_json(members: &[HeaderMember]) -> String {
    // Written out by hand so duplicate members reach the parser too.
    let mut parts = Vec::new();
    for m in members {
        let (k, v) = match m {
            HeaderMember::Alg(AlgValue::Es256) => ("alg".to_owned(), json!("ES256")),
            HeaderMember::Alg(AlgValue::Name(n)) => ("alg".to_owned(), json!(n)),
            HeaderMember::Alg(AlgValue::None) => ("alg".to_owned(), json!("none")),
            HeaderMember::Alg(AlgValue::Other(j)) => ("alg".to_owned(), j.to_value()),
            HeaderMember::Kid(KidValue::Good) => ("kid".to_owned(), json!(KID)),
            HeaderMember::Kid(KidValue::Name(n)) => ("kid".to_owned(), json!(n)),
            HeaderMember::Kid(KidValue::Other(j)) => ("kid".to_owned(), j.to_value()),
            HeaderMember::Typ(j) => ("typ".to_owned(), j.to_value()),
            HeaderMember::Cty(j) => ("cty".to_owned(), j.to_value()),
            HeaderMember::Crit(j) => ("crit".to_owned(), j.to_value()),
            HeaderMember::B64(j) => ("b64".to_owned(), j.to_value()),
            HeaderMember::Other(k, j) => (k.clone(), j.to_value()),
        };
        parts.push(format!("{}:{v}", Value::String(k)));
    }
    format!("{{{}}}", parts.join(","))
}

fn claims_json(claims: &[Claim]) -> String {
    let mut parts = Vec::new();
    for c in claims {
        let (k, v) = match c {
            Claim::Iss(None) => ("iss", json!(ISSUER)),
            Claim::Iss(Some(j)) => ("iss", j.to_value()),
            Claim::Aud(AudValue::Good) => ("aud", json!(AUDIENCE)),
            Claim::Aud(AudValue::List(l)) => {
                ("aud", Value::Array(l.iter().map(|a| a.as_deref().map_or(json!(AUDIENCE), |s| json!(s))).collect()))
            }
            Claim::Aud(AudValue::Other(j)) => ("aud", j.to_value()),
            Claim::Exp(t) => ("exp", t.value()),
            Claim::Nbf(t) => ("nbf", t.value()),
            Claim::Iat(t) => ("iat", t.value()),
            Claim::Sub(j) => ("sub", j.to_value()),
            Claim::Azp(j) => ("azp", j.to_value()),
            Claim::Other(k, j) => {
                parts.push(format!("{}:{}", Value::String(k.clone()), j.to_value()));
                continue;
            }
        };
        parts.push(format!("\"{k}\":{v}"));
    }
    format!("{{{}}}", parts.join(","))
}

fn refused(r: Reason, what: &str) {
    assert_eq!(r.outcome(), Outcome::Unauthenticated, "{what}: token problem {r} must be a 401");
}

/// The strict parser may refuse more than serde_json, never less, and must agree on values.
fn strict_is_subset(bytes: &[u8]) {
    if let Ok(strict) = strict_json::parse(bytes) {
        let lax: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!("strict JSON accepted what serde_json refuses ({e}): {:?}", String::from_utf8_lossy(bytes))
        });
        assert_eq!(strict, lax, "strict and serde_json disagree on {:?}", String::from_utf8_lossy(bytes));
    }
}

/// The whole pipeline on one token; `signed_by_us`: the fuzz key signed exactly these bytes.
fn validate(token: &str, strict: bool, signed_by_us: bool) {
    let rules = IssuerRules::new(issuer(strict));
    let unverified = match validate::parse(token, MAX_TOKEN_BYTES) {
        Ok(u) => u,
        Err(r) => return refused(r, "parse"),
    };
    if let Err(r) = rules.check_unverified(token, &unverified) {
        return refused(r, "check_unverified");
    }
    let key = match keyset().select(unverified.kid.as_deref(), unverified.alg) {
        Ok(k) => k,
        Err(r) => return refused(r, "select"),
    };
    assert!(key.fits(unverified.alg), "select returned a key that does not fit {:?}", unverified.alg);
    match unverified.check_signature(&key) {
        Ok(()) => {}
        Err(r) => {
            assert!(
                !(signed_by_us && unverified.alg == Algorithm::ES256 && key.kid() == Some(KID)),
                "a token the fuzz key signed failed its signature check ({r}): {token}"
            );
            return refused(r, "signature");
        }
    }
    let claims: Map<String, Value> = unverified.into_payload();
    match rules.check_claims(&claims, now()) {
        Ok(checked) => {
            assert_eq!(claims.get("iss"), Some(&json!(ISSUER)), "accepted a foreign iss");
            assert!(
                checked.audiences.iter().any(|a| a == AUDIENCE || a == "other"),
                "accepted audiences {:?}",
                checked.audiences
            );
            let skew = if strict { 0 } else { rules.config.clock_skew_seconds };
            assert!(
                now() < checked.expires_at.saturating_add(skew),
                "accepted an expired token (exp {})",
                checked.expires_at
            );
            if let Some(sub) = claims.get("sub") {
                assert_eq!(checked.subject.as_ref().map(|s| json!(s)).as_ref(), Some(sub), "sub not carried as is");
            }
        }
        Err(r) => refused(r, "claims"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let sign = |header: &str, payload: &str| signer().sign_raw(Algorithm::ES256, header, payload);
    match input {
        Input::Raw(token) => validate(&token, false, false),
        Input::RawJson { header, payload, strict } => {
            strict_is_subset(header.as_bytes());
            strict_is_subset(payload.as_bytes());
            validate(&sign(&header, &payload), strict, true);
        }
        Input::Built { header, claims, strict } => {
            let (h, p) = (header_json(&header), claims_json(&claims));
            strict_is_subset(p.as_bytes());
            validate(&sign(&h, &p), strict, true);
        }
    }
});
