//! Token validation in the order RFC 8725 asks for: structure, header, key, signature, and
//! only then the claims.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Algorithm, compact, json, key::VerifyingKey};
use crate::{config::Issuer, reason::Reason};

/// A token split, decoded and parsed, whose signature is not yet checked. Nothing in it may
/// be trusted except to choose the issuer and key.
#[derive(Debug)]
pub struct Unverified<'a> {
    compact: compact::Compact<'a>,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The payload's `iss`, used only to pick the issuer's keys and rules.
    pub iss: String,
    payload: Map<String, Value>,
}

/// Structure and header checks. `max_bytes` is the largest `maxTokenBytes` of any issuer;
/// the issuer's own limit is checked in [`IssuerRules::check_unverified`].
pub fn parse(token: &str, max_bytes: usize) -> Result<Unverified<'_>, Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let compact = compact::split(token)?;
    let header = json::parse_object(&compact.header).map_err(|_| Reason::BadJson)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(Reason::AlgNone),
        Some(Value::String(a)) => Algorithm::from_jose(a).ok_or(Reason::AlgNotAllowed)?,
        _ => return Err(Reason::AlgNotAllowed),
    };
    // `crit` names extensions we would have to understand (RFC 7515 §4.1.11); `b64: false`
    // (RFC 7797) changes what is signed; `cty: JWT` means a nested token. None is supported,
    // so all are refused rather than half-honoured. `jku`, `x5u`, `jwk` and `x5c` are simply
    // never used: keys come only from the configured issuer's key set.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(Reason::UnsupportedHeader);
    }
    if let Some(cty) = header.get("cty") {
        match cty.as_str() {
            Some(c) if c.eq_ignore_ascii_case("JWT") => return Err(Reason::UnsupportedHeader),
            Some(_) => {}
            None => return Err(Reason::BadJson),
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Reason::UnknownKey),
    };
    let payload = json::parse_object(&compact.payload).map_err(|_| Reason::BadJson)?;
    let iss = match payload.get("iss") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(Reason::UnknownIssuer),
    };
    Ok(Unverified { compact, alg, kid, iss, payload })
}

impl<'a> Unverified<'a> {
    pub fn check_signature(&self, key: &VerifyingKey) -> Result<(), Reason> {
        if !key.fits(self.alg) {
            return Err(Reason::KeyAlgMismatch);
        }
        if key.verify(self.alg, self.compact.signing_input.as_bytes(), &self.compact.signature) {
            Ok(())
        } else {
            Err(Reason::BadSignature)
        }
    }

    /// The payload, for claim checks after the signature verified.
    pub fn into_payload(self) -> Map<String, Value> {
        self.payload
    }
}

/// One issuer's validation rules, compiled from its config.
#[derive(Debug, Clone)]
pub struct IssuerRules {
    pub config: Arc<Issuer>,
    pub issuer: Arc<str>,
    algorithms: Vec<Algorithm>,
}

/// What the claim checks established.
#[derive(Debug, Clone)]
pub struct CheckedClaims {
    pub subject: Option<String>,
    pub audiences: Vec<String>,
    pub presenter: Option<String>,
    pub expires_at: u64,
}

impl IssuerRules {
    pub fn new(config: Arc<Issuer>) -> Self {
        Self { issuer: Arc::from(config.issuer.as_str()), algorithms: config.algorithms.clone(), config }
    }

    /// Per-issuer checks that need no key: size and algorithm allowlist.
    pub fn check_unverified(&self, token: &str, unverified: &Unverified<'_>) -> Result<(), Reason> {
        if token.len() > self.config.max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        if !self.algorithms.contains(&unverified.alg) {
            return Err(Reason::AlgNotAllowed);
        }
        Ok(())
    }

    /// Claim checks; call only after the signature verified.
    pub fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<CheckedClaims, Reason> {
        // Exact, byte-for-byte: no trailing-slash or case folding (OIDC Core §3.1.3.7).
        if claims.get("iss").and_then(Value::as_str) != Some(&*self.issuer) {
            return Err(Reason::UnknownIssuer);
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(Reason::BadAudience))
                .collect::<Result<_, _>>()?,
            _ => return Err(Reason::BadAudience),
        };
        if !audiences.iter().any(|a| self.config.audiences.iter().any(|want| want == a)) {
            return Err(Reason::BadAudience);
        }
        let skew = self.config.clock_skew_seconds;
        let exp = numeric_date(claims.get("exp")).ok_or(Reason::MissingExp)?;
        if now >= exp.saturating_add(skew) {
            return Err(Reason::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(Some(nbf)).ok_or(Reason::NotYetValid)?;
            if nbf > now.saturating_add(skew) {
                return Err(Reason::NotYetValid);
            }
        }
        let iat = match claims.get("iat") {
            None => None,
            Some(v) => {
                let iat = numeric_date(Some(v)).ok_or(Reason::BadIssuedAt)?;
                if iat > now.saturating_add(skew) {
                    return Err(Reason::BadIssuedAt);
                }
                Some(iat)
            }
        };
        if let Some(max) = self.config.max_lifetime_seconds {
            let lifetime = exp.saturating_sub(iat.unwrap_or(now));
            if lifetime > max {
                return Err(Reason::LifetimeTooLong);
            }
        }
        let string_claim = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reason::BadClaimType),
        };
        Ok(CheckedClaims { subject: string_claim("sub")?, presenter: string_claim("azp")?, audiences, expires_at: exp })
    }
}

/// A JSON number (RFC 7519 NumericDate), as whole seconds. Negative, non-finite, strings
/// and booleans are refused. Fractions are truncated.
fn numeric_date(v: Option<&Value>) -> Option<u64> {
    let n = v?.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
