//! JWS signature algorithms ward accepts (RFC 7518 §3, RFC 8037).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Only asymmetric algorithms exist here: HMAC with a public JWKS would let anyone who can
/// read the key set forge tokens, and `none` is never a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The key type an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl Algorithm {
    pub const DEFAULT_ALLOWLIST: &'static [Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub const fn family(self) -> KeyFamily {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::EcP256,
            Algorithm::ES384 => KeyFamily::EcP384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// Parse a JOSE `alg` value exactly (case-sensitive, as RFC 7515 requires).
    pub fn from_jose(s: &str) -> Option<Self> {
        Self::DEFAULT_ALLOWLIST.iter().copied().find(|a| a.as_str() == s)
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = Self::from_jose(s) {
            return Ok(a);
        }
        let why = if s.eq_ignore_ascii_case("none") {
            "unsigned tokens are never accepted"
        } else if s.to_ascii_uppercase().starts_with("HS") {
            "HMAC cannot be verified with public keys from a JWKS"
        } else {
            "expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
        };
        Err(format!("algorithm {s:?} is not supported: {why}"))
    }
}

impl TryFrom<String> for Algorithm {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Algorithm> for String {
    fn from(a: Algorithm) -> String {
        a.as_str().to_owned()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
