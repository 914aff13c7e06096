//! Signing keys and token minting for unit tests of the validator.

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use base64::Engine;
use serde_json::{json, Value};

use super::{compact::B64, Algorithm};

pub enum TestKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    pub fn rsa() -> Self {
        TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen"))
    }
    pub fn p256() -> Self {
        TestKey::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256 keygen"), "P-256")
    }
    pub fn p384() -> Self {
        TestKey::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).expect("p384 keygen"), "P-384")
    }
    pub fn ed25519() -> Self {
        TestKey::Ed(Ed25519KeyPair::generate().expect("ed25519 keygen"))
    }

    /// The public JWK with the given kid (and alg, when Some).
    pub fn jwk(&self, kid: Option<&str>, alg: Option<&str>) -> Value {
        let mut v = match self {
            TestKey::Rsa(k) => {
                let n = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "n": B64.encode(&n.n), "e": B64.encode(&n.e)})
            }
            TestKey::Ec(k, crv) => {
                let pt = k.public_key().as_ref();
                let len = (pt.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "x": B64.encode(&pt[1..1 + len]), "y": B64.encode(&pt[1 + len..])})
            }
            TestKey::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())}),
        };
        if let Some(kid) = kid {
            v["kid"] = json!(kid);
        }
        if let Some(alg) = alg {
            v["alg"] = json!(alg);
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
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(k) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_SHA512,
                    other => panic!("RSA key cannot sign {other}"),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, msg, &mut out).expect("rsa sign");
                out
            }
            TestKey::Ec(k, _) => k.sign(&rng, msg).expect("ecdsa sign").as_ref().to_vec(),
            TestKey::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}
