//! Keys for unit tests and benches of the validator: the dev IdP's signing keys, with JWKs
//! that tests can shape (kid and alg present or not).

use base64::Engine;
use serde_json::{Value, json};

use super::{Algorithm, compact::B64};
use crate::devidp::mint::SigningKey;

#[derive(Debug)]
pub struct TestKey(pub SigningKey);

impl TestKey {
    fn generate(alg: Algorithm) -> Self {
        TestKey(SigningKey::generate(alg).expect("test key generation"))
    }
    pub fn rsa() -> Self {
        Self::generate(Algorithm::RS256)
    }
    pub fn p256() -> Self {
        Self::generate(Algorithm::ES256)
    }
    pub fn p384() -> Self {
        Self::generate(Algorithm::ES384)
    }
    pub fn ed25519() -> Self {
        Self::generate(Algorithm::EdDSA)
    }

    /// The public JWK with exactly this kid and alg (each omitted when None), no `use`.
    pub fn jwk(&self, kid: Option<&str>, alg: Option<&str>) -> Value {
        let mut v = self.0.public_jwk();
        let obj = v.as_object_mut().expect("a JWK is an object");
        for member in ["kid", "alg", "use"] {
            obj.remove(member);
        }
        if let Some(kid) = kid {
            obj.insert("kid".into(), json!(kid));
        }
        if let Some(alg) = alg {
            obj.insert("alg".into(), json!(alg));
        }
        v
    }

    /// Sign `header.payload` (given as raw JSON text) with `alg`.
    pub fn sign_raw(&self, alg: Algorithm, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = self.signature(alg, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    pub fn signature(&self, alg: Algorithm, msg: &[u8]) -> Vec<u8> {
        self.0.sign(alg, msg).unwrap_or_else(|e| panic!("sign with {alg}: {e}"))
    }
}
