//! Key sets: arbitrary JWKS documents, and documents built from real and hostile JWKs, then
//! key selection and the hand-over from one key set to the next (rotation).
//!
//! Properties checked besides "no panic":
//! - `select` only returns live keys that fit the algorithm and carry the asked-for kid;
//! - a kid listed twice is never selectable;
//! - after `succeed`, a key of the old set is live only if the new set holds that same key.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use ward::{
    jwt::{Algorithm, key::KeySet, testkeys::TestKey},
    reason::Reason,
};
use ward_fuzz::Json;

/// Real public keys, so built JWKs can be valid and the hygiene checks past parsing run.
fn real_jwks() -> &'static [Value] {
    static KEYS: OnceLock<Vec<Value>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![
            TestKey::rsa().jwk(None, None),
            TestKey::p256().jwk(None, None),
            TestKey::p384().jwk(None, None),
            TestKey::ed25519().jwk(None, None),
        ]
    })
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// Two documents separated by a NUL byte (which JSON text cannot contain).
    Raw(Vec<u8>),
    Built(Vec<Jwk>, Vec<Jwk>),
}

#[derive(Debug, Arbitrary)]
struct Jwk {
    /// Start from one of the real keys (index mod 4), or from nothing.
    base: Option<u8>,
    kid: Option<Kid>,
    alg: Option<AlgValue>,
    edits: Vec<(Member, Option<Json>)>,
}

#[derive(Debug, Arbitrary)]
enum Kid {
    /// From a small set, so duplicates across entries are common.
    Small(u8),
    Any(Json),
}

#[derive(Debug, Arbitrary)]
enum AlgValue {
    Known(u8),
    Any(Json),
}

#[derive(Debug, Arbitrary)]
enum Member {
    Kty,
    Crv,
    X,
    Y,
    N,
    E,
    Use,
    KeyOps,
    Other(String),
}

impl Member {
    fn name(&self) -> &str {
        match self {
            Member::Kty => "kty",
            Member::Crv => "crv",
            Member::X => "x",
            Member::Y => "y",
            Member::N => "n",
            Member::E => "e",
            Member::Use => "use",
            Member::KeyOps => "key_ops",
            Member::Other(s) => s,
        }
    }
}

impl Jwk {
    fn value(&self) -> Value {
        let mut v = match self.base {
            Some(i) => real_jwks()[usize::from(i) % real_jwks().len()].clone(),
            None => json!({}),
        };
        let Some(obj) = v.as_object_mut() else { unreachable!("test JWKs are objects") };
        match &self.kid {
            Some(Kid::Small(k)) => {
                obj.insert("kid".into(), json!(format!("k{}", k % 4)));
            }
            Some(Kid::Any(j)) => {
                obj.insert("kid".into(), j.to_value());
            }
            None => {}
        }
        match &self.alg {
            Some(AlgValue::Known(a)) => {
                let alg = Algorithm::DEFAULT_ALLOWLIST[usize::from(*a) % Algorithm::DEFAULT_ALLOWLIST.len()];
                obj.insert("alg".into(), json!(alg.as_str()));
            }
            Some(AlgValue::Any(j)) => {
                obj.insert("alg".into(), j.to_value());
            }
            None => {}
        }
        for (member, value) in &self.edits {
            match value {
                Some(j) => obj.insert(member.name().to_owned(), j.to_value()),
                None => obj.remove(member.name()),
            };
        }
        v
    }
}

fn document(jwks: &[Jwk]) -> Vec<u8> {
    json!({"keys": jwks.iter().map(Jwk::value).collect::<Vec<_>>()}).to_string().into_bytes()
}

/// kids named by the document (whatever their validity), plus one surely absent.
fn kids_in(doc: &[u8]) -> Vec<String> {
    let mut kids = vec!["absent-kid".to_owned()];
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(doc) {
        if let Some(Value::Array(keys)) = map.get("keys") {
            kids.extend(keys.iter().filter_map(|k| k.get("kid")?.as_str().map(str::to_owned)));
        }
    }
    kids
}

fn count_kid(set: &KeySet, kid: &str) -> usize {
    set.keys().filter(|k| k.kid() == Some(kid)).count()
}

fn check_selection(doc: &[u8], set: &KeySet) {
    assert!(set.len() <= set.keys().count(), "usable keys exceed parsed keys");
    for kid in kids_in(doc) {
        for &alg in Algorithm::DEFAULT_ALLOWLIST {
            match set.select(Some(&kid), alg) {
                Ok(key) => {
                    assert!(key.fits(alg), "kid {kid:?}: selected key does not fit {alg:?}");
                    assert_eq!(key.kid(), Some(kid.as_str()), "select returned a key with another kid");
                    assert!(key.is_live(), "select returned a retired key");
                    assert_eq!(count_kid(set, &kid), 1, "kid {kid:?} is on several keys but was selectable");
                }
                Err(r) => assert!(
                    matches!(r, Reason::UnknownKey | Reason::AmbiguousKey | Reason::KeyAlgMismatch),
                    "unexpected reason {r} from select"
                ),
            }
        }
    }
    for &alg in Algorithm::DEFAULT_ALLOWLIST {
        if let Ok(key) = set.select(None, alg) {
            assert!(key.fits(alg), "kid-less selection returned a key that does not fit {alg:?}");
            if let Some(kid) = key.kid() {
                assert_eq!(count_kid(set, kid), 1, "kid-less selection returned a key with an ambiguous kid {kid:?}");
            }
        }
    }
}

fn check_succession(old: &KeySet, new: &mut KeySet) {
    let before: Vec<_> = old.keys().cloned().collect();
    new.succeed(old);
    for key in &before {
        let kept = new.keys().any(|k| Arc::ptr_eq(k, key));
        assert_eq!(key.is_live(), kept, "old key {:?}: live={} but kept={kept}", key.kid(), key.is_live());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let (a, b) = match input {
        Input::Raw(raw) => match raw.iter().position(|b| *b == 0) {
            Some(i) => (raw[..i].to_vec(), raw[i + 1..].to_vec()),
            None => (raw.clone(), raw),
        },
        Input::Built(a, b) => (document(&a), document(&b)),
    };
    let Ok(old) = KeySet::parse(&a) else { return };
    check_selection(&a, &old);
    let Ok(mut new) = KeySet::parse(&b) else { return };
    check_selection(&b, &new);
    check_succession(&old, &mut new);
    check_selection(&b, &new);
});
