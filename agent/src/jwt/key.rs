//! JSON Web Keys (RFC 7517/7518/8037) turned into verifying keys, once per key-set load.
//!
//! Key hygiene happens here: a key that is not plainly a signature-verification key of a
//! supported type and size is ignored (and listed, so operators can see why).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use aws_lc_rs::{digest, signature as sig};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Algorithm, KeyFamily, compact::B64, json};
use crate::reason::Reason;

/// Smallest RSA modulus accepted (RFC 8725 §3.5; NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// A public key ready to verify signatures. Shared by every connection through `Arc`.
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    /// The JWK's `alg`, if it named one: then only that algorithm may use the key.
    declared_alg: Option<Algorithm>,
    /// RFC 7638 thumbprint: identifies the key material across refreshes.
    thumbprint: [u8; 32],
    /// One parsed aws-lc key per algorithm the key may serve (RSA keys serve RS*/PS*).
    parsed: Vec<(Algorithm, sig::ParsedPublicKey)>,
    /// Cleared when a key-set refresh no longer contains this key: tokens verified with it,
    /// including cached ones, stop being accepted at once.
    live: AtomicBool,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.declared_alg)
            .field("live", &self.is_live())
            .finish()
    }
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn family(&self) -> KeyFamily {
        self.family
    }

    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// May this key verify a token signed with `alg`?
    pub fn fits(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.declared_alg.is_none_or(|a| a == alg)
    }

    /// Verify `signature` over `message`. ECDSA signatures must be fixed-length R‖S
    /// (RFC 7518 §3.4): the FIXED aws-lc algorithms refuse DER and wrong lengths.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Mark the key as gone from its issuer's key set.
    pub fn retire(&self) {
        self.live.store(false, Ordering::Release);
    }

    fn same_key(&self, other: &VerifyingKey) -> bool {
        self.thumbprint == other.thumbprint && self.kid == other.kid && self.declared_alg == other.declared_alg
    }
}

/// Why a JWK in a set was ignored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IgnoredKey {
    pub kid: Option<String>,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("the JWKS document is not valid JSON ({0}); check that jwks_uri points at the key set, not an HTML page")]
    Json(#[from] json::JsonError),
    #[error("the JWKS document has no \"keys\" array; check jwks_uri")]
    NoKeys,
}

/// A parsed, hygiene-checked key set.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, usize>,
    /// kids that appear on more than one usable key: unusable.
    ambiguous: HashSet<String>,
    ignored: Vec<IgnoredKey>,
}

impl KeySet {
    pub fn parse(document: &[u8]) -> Result<KeySet, KeySetError> {
        let doc = json::parse_object(document)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(KeySetError::NoKeys);
        };
        let mut set = KeySet::default();
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            match entry.as_object().ok_or("not a JSON object").and_then(parse_jwk) {
                Ok(key) => set.keys.push(Arc::new(key)),
                Err(why) => set.ignored.push(IgnoredKey { kid, why: why.to_owned() }),
            }
        }
        let mut seen = HashSet::new();
        for key in &set.keys {
            if let Some(kid) = &key.kid
                && !seen.insert(kid.clone())
            {
                set.ambiguous.insert(kid.clone());
            }
        }
        for (i, key) in set.keys.iter().enumerate() {
            if let Some(kid) = &key.kid
                && !set.ambiguous.contains(kid)
            {
                set.by_kid.insert(kid.clone(), i);
            }
        }
        for kid in &set.ambiguous {
            set.ignored.push(IgnoredKey { kid: Some(kid.clone()), why: "kid appears more than once".to_owned() });
        }
        Ok(set)
    }

    /// Usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
            - self.keys.iter().filter(|k| k.kid.as_ref().is_some_and(|kid| self.ambiguous.contains(kid))).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ignored(&self) -> &[IgnoredKey] {
        &self.ignored
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<VerifyingKey>> {
        self.keys.iter()
    }

    /// The key for a token with this `kid` (or none) and `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, Reason> {
        match kid {
            Some(kid) => {
                if self.ambiguous.contains(kid) {
                    return Err(Reason::AmbiguousKey);
                }
                let key = self.by_kid.get(kid).map(|&i| &self.keys[i]).ok_or(Reason::UnknownKey)?;
                if key.fits(alg) { Ok(key.clone()) } else { Err(Reason::KeyAlgMismatch) }
            }
            None => {
                let mut fitting = self
                    .keys
                    .iter()
                    .filter(|k| k.fits(alg) && !k.kid.as_ref().is_some_and(|kid| self.ambiguous.contains(kid)));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key.clone()),
                    (None, _) => Err(Reason::UnknownKey),
                    (Some(_), Some(_)) => Err(Reason::AmbiguousKey),
                }
            }
        }
    }

    /// Take over from the previous key set of the same issuer: keep the previous `Arc` for
    /// unchanged keys (so verified-cache entries stay valid) and retire keys that are gone.
    pub fn succeed(&mut self, previous: &KeySet) {
        for key in &mut self.keys {
            if let Some(old) = previous.keys.iter().find(|old| old.same_key(key) && old.is_live()) {
                *key = old.clone();
            }
        }
        for old in &previous.keys {
            if !self.keys.iter().any(|k| Arc::ptr_eq(k, old)) {
                old.retire();
            }
        }
    }

    /// Retire every key (the issuer was removed from the config).
    pub fn retire_all(&self) {
        self.keys.iter().for_each(|k| k.retire());
    }
}

fn string<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, &'static str> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("a member has the wrong JSON type"),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let s = string(jwk, name)?.ok_or("a required key member is missing")?;
    B64.decode(s).map_err(|_| "a key member is not canonical base64url")
}

fn parse_jwk(jwk: &Map<String, Value>) -> Result<VerifyingKey, &'static str> {
    if let Some(u) = string(jwk, "use")?
        && u != "sig"
    {
        return Err("use is not \"sig\"");
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not an array")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("key_ops does not include \"verify\"");
        }
    }
    let kid = string(jwk, "kid")?.map(str::to_owned);
    let declared_alg = match string(jwk, "alg")? {
        None => None,
        Some(a) => Some(Algorithm::from_jose(a).ok_or("alg is not a supported signature algorithm")?),
    };
    let kty = string(jwk, "kty")?.ok_or("kty is missing")?;
    let (family, thumb_json, public_bytes) = match kty {
        "RSA" => {
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            let n_trim = trim_zeros(&n);
            // An empty or all-zero modulus has 0 bits (and must not underflow).
            let bits = n_trim.first().map_or(0, |b| n_trim.len() * 8 - b.leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            let thumb = format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                string(jwk, "e")?.unwrap_or_default(),
                string(jwk, "n")?.unwrap_or_default()
            );
            (KeyFamily::Rsa, thumb, rsa_public_key_der(n_trim, trim_zeros(&e)))
        }
        "EC" => {
            let crv = string(jwk, "crv")?.ok_or("crv is missing")?;
            let (family, len) = match crv {
                "P-256" => (KeyFamily::EcP256, 32),
                "P-384" => (KeyFamily::EcP384, 48),
                _ => return Err("unsupported EC curve"),
            };
            let x = b64_member(jwk, "x")?;
            let y = b64_member(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err("EC coordinate has the wrong length for its curve");
            }
            let thumb = format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                string(jwk, "x")?.unwrap_or_default(),
                string(jwk, "y")?.unwrap_or_default()
            );
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, thumb, point)
        }
        "OKP" => {
            if string(jwk, "crv")? != Some("Ed25519") {
                return Err("unsupported OKP curve (only Ed25519)");
            }
            let x = b64_member(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes");
            }
            let thumb = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, string(jwk, "x")?.unwrap_or_default());
            (KeyFamily::Ed25519, thumb, x)
        }
        "oct" => return Err("symmetric (oct) keys are never used"),
        _ => return Err("unknown kty"),
    };
    if let Some(alg) = declared_alg
        && alg.family() != family
    {
        return Err("alg disagrees with the key type");
    }
    let algs: Vec<Algorithm> = match declared_alg {
        Some(a) => vec![a],
        None => Algorithm::DEFAULT_ALLOWLIST.iter().copied().filter(|a| a.family() == family).collect(),
    };
    let mut parsed = Vec::with_capacity(algs.len());
    for alg in algs {
        // Parsing validates the material: RSA size and exponent, EC point on the curve.
        let key = sig::ParsedPublicKey::new(verification_alg(alg), &public_bytes)
            .map_err(|_| "key material rejected by the crypto library (bad modulus/exponent or point not on curve)")?;
        parsed.push((alg, key));
    }
    let mut thumbprint = [0u8; 32];
    thumbprint.copy_from_slice(digest::digest(&digest::SHA256, thumb_json.as_bytes()).as_ref());
    Ok(VerifyingKey { kid, family, declared_alg, thumbprint, parsed, live: AtomicBool::new(true) })
}

fn verification_alg(alg: Algorithm) -> &'static dyn sig::VerificationAlgorithm {
    match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
    }
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let pad = v.first().is_none_or(|b| b & 0x80 != 0);
        out.push(0x02);
        der_len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}
