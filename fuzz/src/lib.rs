//! Shared pieces of the fuzz targets: an arbitrary JSON value with bounded depth, the fixed
//! issuer config, and a signing key whose public half is in the targets' key set.

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use serde_json::{Map, Number, Value};
use ward::{
    config::{self, Issuer},
    jwt::{key::KeySet, testkeys::TestKey},
};

pub const ISSUER: &str = "https://idp.fuzz.test";
pub const AUDIENCE: &str = "api";
pub const KID: &str = "fuzz-es256";
/// `maxTokenBytes` of the fuzz issuer, and the global cap given to `validate::parse`.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Any JSON value. `arbitrary` stops recursing when the input runs out, so depth is bounded
/// by the input length; [`Json::to_value`] caps it again so a value never exceeds what a
/// token could carry.
#[derive(Debug, Arbitrary, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn to_value(&self) -> Value {
        self.to_value_at(0)
    }

    fn to_value_at(&self, depth: usize) -> Value {
        if depth > 24 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(|j| j.to_value_at(depth + 1)).collect()),
            Json::Obj(members) => {
                let mut map = Map::new();
                for (k, v) in members {
                    map.insert(k.clone(), v.to_value_at(depth + 1));
                }
                Value::Object(map)
            }
        }
    }
}

/// The fuzz issuer: default rules, or strict ones (no skew, one-hour lifetime cap).
pub fn issuer(strict: bool) -> Arc<Issuer> {
    static DEFAULT: OnceLock<Arc<Issuer>> = OnceLock::new();
    static STRICT: OnceLock<Arc<Issuer>> = OnceLock::new();
    let cell = if strict { &STRICT } else { &DEFAULT };
    cell.get_or_init(|| {
        let extra = if strict { "  clockSkewSeconds: 0\n  maxLifetimeSeconds: 3600\n" } else { "" };
        let yaml = format!(
            "issuers:\n- issuer: \"{ISSUER}\"\n  audiences: [{AUDIENCE}, other]\n  maxTokenBytes: {MAX_TOKEN_BYTES}\n  \
             fromHeaders: [{{name: x-jwt}}, {{name: x-auth, prefix: \"Token \"}}]\n  fromParams: [access_token]\n  \
             fromCookies: [session]\n{extra}"
        );
        let mut cfg =
            config::parse_str(&yaml, "fuzz-issuer.yaml").unwrap_or_else(|e| panic!("fuzz issuer config: {e}"));
        Arc::new(cfg.issuers.remove(0))
    })
    .clone()
}

/// The P-256 key that signs structured tokens; generated once per fuzzing process.
pub fn signer() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::p256)
}

/// The signer's public key as `KID`, next to an unrelated Ed25519 key without a kid.
pub fn keyset() -> &'static KeySet {
    static SET: OnceLock<KeySet> = OnceLock::new();
    SET.get_or_init(|| {
        let doc = serde_json::json!({"keys": [
            signer().jwk(Some(KID), Some("ES256")),
            TestKey::ed25519().jwk(None, None),
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("fuzz key set: {e}"));
        assert_eq!(set.len(), 2, "both fuzz keys usable: {:?}", set.ignored());
        set
    })
}

/// Wall-clock seconds, fixed per process so a run is reproducible within itself.
pub fn now() -> u64 {
    static NOW: OnceLock<u64> = OnceLock::new();
    *NOW.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1_700_000_000, |d| d.as_secs())
    })
}
