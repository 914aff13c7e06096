//! Why a request was refused (or allowed). One enum, used by the enforcer, the proxy's
//! responses, the audit log, `ward explain` and the `reason` label of metrics, so the
//! same stable string names a failure everywhere.

use std::fmt;

/// A stable, machine-readable decision reason. The `as_str` values are part of ward's
/// interface (metrics labels, audit log, `ward explain`): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // ---- allowed
    /// Token valid and policy allows.
    Allowed,
    /// Destination not protected, or auth disabled on this listener.
    NotProtected,

    // ---- 401: token missing or unusable
    MissingToken,
    /// Several Authorization headers, or token sources that disagree.
    AmbiguousToken,
    /// `Authorization` present but not `Bearer <token>` per RFC 6750.
    MalformedAuthorization,
    TokenTooLarge,
    /// Not three dot-separated segments (JWE, extra segments, empty parts).
    MalformedCompact,
    /// A segment is not unpadded, canonical base64url.
    BadBase64,
    /// Header or payload is not strict JSON (duplicate members, depth, UTF-8, not an object).
    BadJson,
    AlgNone,
    /// `alg` missing, unknown, HMAC, or outside the issuer's allowlist.
    AlgNotAllowed,
    /// `crit`, `b64` or `cty: JWT` present.
    UnsupportedHeader,
    /// Payload's `iss` is missing, not a string, or names no configured issuer.
    UnknownIssuer,
    /// No usable key for the token's `kid`/`alg` after a refetch (or within the cooldown).
    UnknownKey,
    /// The kid appears more than once in the key set, so it is unusable.
    AmbiguousKey,
    /// Key type does not fit `alg`.
    KeyAlgMismatch,
    BadSignature,
    /// `aud` missing, of the wrong type, or without a configured audience.
    BadAudience,
    /// `exp` missing or not a number.
    MissingExp,
    Expired,
    /// `nbf` in the future (beyond skew), or not a number.
    NotYetValid,
    /// `iat` in the future (beyond skew), or not a number.
    BadIssuedAt,
    /// `exp - iat` (or `exp - now`) beyond `maxLifetimeSeconds`.
    LifetimeTooLong,
    /// A claim has the wrong JSON type (e.g. `sub` not a string).
    BadClaimType,

    // ---- 403
    /// A DENY policy matched.
    DeniedByPolicy,
    /// ALLOW policies apply to this destination and none matched.
    NoAllowMatch,

    // ---- 503
    /// The issuer's keys are not loaded, or older than `maxStaleness`.
    KeysUnavailable,

    // ---- proxy-level outcomes (not decisions about a token)
    UpstreamUnreachable,
    UpstreamTimeout,
    HeadersTooLarge,
    HeaderTimeout,
    BadRequest,
    NotHttp,
}

/// The HTTP-level class a reason falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// 401
    Unauthenticated,
    /// 403
    Forbidden,
    /// 503
    Unavailable,
    /// Errors the proxy produces itself (4xx/5xx other than the above).
    ProxyError,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::Allowed,
        Reason::NotProtected,
        Reason::MissingToken,
        Reason::AmbiguousToken,
        Reason::MalformedAuthorization,
        Reason::TokenTooLarge,
        Reason::MalformedCompact,
        Reason::BadBase64,
        Reason::BadJson,
        Reason::AlgNone,
        Reason::AlgNotAllowed,
        Reason::UnsupportedHeader,
        Reason::UnknownIssuer,
        Reason::UnknownKey,
        Reason::AmbiguousKey,
        Reason::KeyAlgMismatch,
        Reason::BadSignature,
        Reason::BadAudience,
        Reason::MissingExp,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::BadIssuedAt,
        Reason::LifetimeTooLong,
        Reason::BadClaimType,
        Reason::DeniedByPolicy,
        Reason::NoAllowMatch,
        Reason::KeysUnavailable,
        Reason::UpstreamUnreachable,
        Reason::UpstreamTimeout,
        Reason::HeadersTooLarge,
        Reason::HeaderTimeout,
        Reason::BadRequest,
        Reason::NotHttp,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::NotProtected => "not_protected",
            Reason::MissingToken => "missing_token",
            Reason::AmbiguousToken => "ambiguous_token",
            Reason::MalformedAuthorization => "malformed_authorization",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MalformedCompact => "malformed_compact",
            Reason::BadBase64 => "bad_base64",
            Reason::BadJson => "bad_json",
            Reason::AlgNone => "alg_none",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownKey => "unknown_key",
            Reason::AmbiguousKey => "ambiguous_key",
            Reason::KeyAlgMismatch => "key_alg_mismatch",
            Reason::BadSignature => "bad_signature",
            Reason::BadAudience => "bad_audience",
            Reason::MissingExp => "missing_exp",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadIssuedAt => "bad_iat",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::BadClaimType => "bad_claim_type",
            Reason::DeniedByPolicy => "denied_by_policy",
            Reason::NoAllowMatch => "no_allow_match",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::UpstreamUnreachable => "upstream_unreachable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::HeaderTimeout => "header_timeout",
            Reason::BadRequest => "bad_request",
            Reason::NotHttp => "not_http",
        }
    }

    pub const fn outcome(self) -> Outcome {
        match self {
            Reason::Allowed | Reason::NotProtected => Outcome::Allow,
            Reason::DeniedByPolicy | Reason::NoAllowMatch => Outcome::Forbidden,
            Reason::KeysUnavailable => Outcome::Unavailable,
            Reason::UpstreamUnreachable
            | Reason::UpstreamTimeout
            | Reason::HeadersTooLarge
            | Reason::HeaderTimeout
            | Reason::BadRequest
            | Reason::NotHttp => Outcome::ProxyError,
            _ => Outcome::Unauthenticated,
        }
    }

    /// Text for `error_description` in a `WWW-Authenticate` challenge (RFC 6750 §3).
    /// Says what is wrong without echoing anything from the token.
    pub const fn description(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::NotProtected => "destination not protected",
            Reason::MissingToken => "no bearer token",
            Reason::AmbiguousToken => "more than one token in the request",
            Reason::MalformedAuthorization => "Authorization header is not 'Bearer <token>'",
            Reason::TokenTooLarge => "token exceeds the size limit",
            Reason::MalformedCompact => "token is not a compact JWS",
            Reason::BadBase64 => "token segment is not canonical base64url",
            Reason::BadJson => "token header or payload is not valid JSON",
            Reason::AlgNone => "unsigned tokens are not accepted",
            Reason::AlgNotAllowed => "signing algorithm not allowed",
            Reason::UnsupportedHeader => "token uses an unsupported header parameter",
            Reason::UnknownIssuer => "issuer not trusted",
            Reason::UnknownKey => "signing key not found",
            Reason::AmbiguousKey => "signing key id is ambiguous",
            Reason::KeyAlgMismatch => "signing key does not fit the algorithm",
            Reason::BadSignature => "signature verification failed",
            Reason::BadAudience => "audience not accepted",
            Reason::MissingExp => "token has no valid exp",
            Reason::Expired => "token expired",
            Reason::NotYetValid => "token not yet valid",
            Reason::BadIssuedAt => "token iat is invalid",
            Reason::LifetimeTooLong => "token lifetime exceeds the limit",
            Reason::BadClaimType => "a registered claim has the wrong type",
            Reason::DeniedByPolicy => "denied by policy",
            Reason::NoAllowMatch => "no policy allows this request",
            Reason::KeysUnavailable => "signing keys unavailable",
            Reason::UpstreamUnreachable => "upstream unreachable",
            Reason::UpstreamTimeout => "upstream timed out",
            Reason::HeadersTooLarge => "request headers too large",
            Reason::HeaderTimeout => "request headers not received in time",
            Reason::BadRequest => "bad request",
            Reason::NotHttp => "not HTTP",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate reason name {}", r.as_str());
            assert!(
                r.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{} is not snake_case",
                r.as_str()
            );
        }
    }
}
