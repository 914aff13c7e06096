//! Signing keys and token minting for the dev IdP and for Rust tests. FOR DEMOS AND TESTS
//! ONLY: keys live in memory and are generated at start.

use std::fmt;

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::{KeySize, PublicKeyComponents},
    signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair},
};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::DevIdpError;
use crate::jwt::{Algorithm, KeyFamily, compact::B64};

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key with its `kid` and the `alg` its JWK declares.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// What to put in the token header's `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KidHeader {
    /// The signing key's kid.
    #[default]
    Key,
    /// No `kid` member.
    Omit,
    /// This value, whatever the key (to test unknown kids).
    Value(String),
}

impl SigningKey {
    /// A fresh key for `alg` (RSA 2048 for RS*/PS*, P-256/P-384, Ed25519) with a random kid.
    pub fn generate(alg: Algorithm) -> Result<Self, DevIdpError> {
        let suffix: u64 = rand::random();
        Self::with_kid(alg, format!("{}-{:012x}", alg.as_str().to_ascii_lowercase(), suffix >> 16))
    }

    pub fn with_kid(alg: Algorithm, kid: impl Into<String>) -> Result<Self, DevIdpError> {
        let keygen = |_| DevIdpError::KeyGeneration { alg };
        let pair = match alg.family() {
            KeyFamily::Rsa => Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(keygen)?),
            KeyFamily::EcP256 => {
                Pair::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(keygen)?)
            }
            KeyFamily::EcP384 => {
                Pair::Ec(EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).map_err(keygen)?)
            }
            KeyFamily::Ed25519 => Pair::Ed(Ed25519KeyPair::generate().map_err(keygen)?),
        };
        Ok(Self { kid: kid.into(), alg, pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK, as published in the JWKS (`use: sig`, `alg` declared).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
            }
            Pair::Ec(k) => {
                let point = k.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if self.alg == Algorithm::ES384 { "P-384" } else { "P-256" };
                json!({"kty": "EC", "crv": crv, "x": B64.encode(&point[1..1 + len]), "y": B64.encode(&point[1 + len..])})
            }
            Pair::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())}),
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg.as_str());
        jwk
    }

    /// The public key as aws-lc expects it for verification (PKCS#1 DER, SEC1 point, or raw
    /// Ed25519), for benchmarks of the raw crypto backend.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(k) => k.public_key().as_ref().to_vec(),
            Pair::Ec(k) => k.public_key().as_ref().to_vec(),
            Pair::Ed(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// Sign `message` with `alg`, which must fit the key type (an RSA key signs any RS*/PS*,
    /// whatever its JWK declares, so tests can produce tokens whose `alg` the JWK forbids).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, DevIdpError> {
        let mismatch = || DevIdpError::AlgDoesNotFitKey { alg, kid: self.kid.clone() };
        if alg.family() != self.alg.family() {
            return Err(mismatch());
        }
        let rng = SystemRandom::new();
        let signing = |_| DevIdpError::Signing { kid: self.kid.clone() };
        match &self.pair {
            Pair::Rsa(k) => {
                let encoding: &'static dyn sig::RsaEncoding = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_SHA512,
                    _ => return Err(mismatch()),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(encoding, &rng, message, &mut out).map_err(signing)?;
                Ok(out)
            }
            // FIXED signing: R‖S of fixed length, as JWS requires (RFC 7518 §3.4), not DER.
            Pair::Ec(k) => Ok(k.sign(&rng, message).map_err(signing)?.as_ref().to_vec()),
            Pair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }

    /// A compact JWS over `claims` (used as given: see [`fill_claims`]).
    pub fn mint(
        &self,
        alg: Option<Algorithm>,
        kid: &KidHeader,
        claims: &Map<String, Value>,
    ) -> Result<String, DevIdpError> {
        let alg = alg.unwrap_or(self.alg);
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg.as_str()));
        header.insert("typ".into(), json!("JWT"));
        match kid {
            KidHeader::Key => {
                header.insert("kid".into(), json!(self.kid));
            }
            KidHeader::Omit => {}
            KidHeader::Value(v) => {
                header.insert("kid".into(), json!(v));
            }
        }
        let input = format!(
            "{}.{}",
            B64.encode(Value::Object(header).to_string()),
            B64.encode(Value::Object(claims.clone()).to_string())
        );
        let signature = self.sign(alg, input.as_bytes())?;
        Ok(format!("{input}.{}", B64.encode(signature)))
    }
}

/// Fill `iss`, `iat` and `exp` (`iat + ttl`), and `aud` when a default is given, unless the
/// claims already have them (so tests can mint expired or odd tokens).
pub fn fill_claims(claims: &mut Map<String, Value>, issuer: &str, audience: Option<&str>, ttl_seconds: u64, now: u64) {
    claims.entry("iss").or_insert_with(|| json!(issuer));
    claims.entry("iat").or_insert_with(|| json!(now));
    claims.entry("exp").or_insert_with(|| json!(now.saturating_add(ttl_seconds)));
    if let Some(aud) = audience {
        claims.entry("aud").or_insert_with(|| json!(aud));
    }
}

/// `{"keys": [...]}` for these keys.
pub fn jwks_document<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Value {
    json!({"keys": keys.into_iter().map(SigningKey::public_jwk).collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::Issuer,
        jwt::{key::KeySet, validate},
        reason::Reason,
    };

    const NOW: u64 = 1_800_000_000;

    fn rules() -> validate::IssuerRules {
        let issuer: Issuer = serde_yaml_ng::from_str("issuer: http://idp.test\naudiences: [api]\n").expect("issuer");
        validate::IssuerRules::new(Arc::new(issuer))
    }

    fn check(set: &KeySet, token: &str) -> Result<(), Reason> {
        let u = validate::parse(token, 16 * 1024)?;
        rules().check_unverified(token, &u)?;
        let key = set.select(u.kid.as_deref(), u.alg)?;
        u.check_signature(&key)?;
        rules().check_claims(&u.into_payload(), NOW).map(|_| ())
    }

    #[test]
    fn every_algorithm_mints_tokens_ward_accepts() {
        let keys: Vec<SigningKey> =
            [Algorithm::RS256, Algorithm::PS384, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA]
                .into_iter()
                .map(|a| SigningKey::generate(a).expect("keygen"))
                .collect();
        let set = KeySet::parse(jwks_document(&keys).to_string().as_bytes()).expect("jwks");
        assert_eq!(set.len(), keys.len(), "ignored: {:?}", set.ignored());
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("alice"));
        fill_claims(&mut claims, "http://idp.test", Some("api"), 3600, NOW - 10);
        assert_eq!(claims["exp"], json!(NOW - 10 + 3600));
        for key in &keys {
            let token = key.mint(None, &KidHeader::Key, &claims).expect("mint");
            assert_eq!(check(&set, &token), Ok(()), "{} token refused", key.alg());
        }
    }

    #[test]
    fn overrides_produce_the_expected_refusals() {
        let rsa = SigningKey::generate(Algorithm::RS256).expect("keygen");
        let set = KeySet::parse(jwks_document([&rsa]).to_string().as_bytes()).expect("jwks");
        let mut claims = Map::new();
        fill_claims(&mut claims, "http://idp.test", Some("api"), 3600, NOW);
        let unknown = rsa.mint(None, &KidHeader::Value("nope".into()), &claims).expect("mint");
        assert_eq!(check(&set, &unknown), Err(Reason::UnknownKey));
        let no_kid = rsa.mint(None, &KidHeader::Omit, &claims).expect("mint");
        assert_eq!(check(&set, &no_kid), Ok(()), "the single fitting key is used without kid");
        let pss = rsa.mint(Some(Algorithm::PS256), &KidHeader::Key, &claims).expect("mint");
        assert_eq!(check(&set, &pss), Err(Reason::KeyAlgMismatch), "the JWK declares RS256");
        assert!(matches!(
            rsa.mint(Some(Algorithm::ES256), &KidHeader::Key, &claims),
            Err(DevIdpError::AlgDoesNotFitKey { .. })
        ));
        let mut expired = claims.clone();
        expired.insert("exp".into(), json!(NOW - 3600));
        fill_claims(&mut expired, "http://idp.test", Some("api"), 3600, NOW);
        assert_eq!(expired["exp"], json!(NOW - 3600), "given claims are kept");
        assert_eq!(check(&set, &rsa.mint(None, &KidHeader::Key, &expired).expect("mint")), Err(Reason::Expired));
    }
}
