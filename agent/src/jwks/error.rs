//! Everything that can go wrong while loading an issuer's keys. Each message names the URL
//! and the setting or the IdP-side thing an operator should look at.

use std::path::PathBuf;

use crate::jwt::key::KeySetError;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(
        "{what} {url:?} is not a usable http(s) URL ({why}); check `issuer`, `jwksUri` and `discoveryUri` in the config"
    )]
    BadUrl { what: &'static str, url: String, why: String },

    #[error("cannot read caFile {path}: {source}; check the path and that the agent can read it")]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "caFile {path} holds no usable PEM certificate ({why}); it must contain `-----BEGIN CERTIFICATE-----` blocks"
    )]
    CaFileInvalid { path: PathBuf, why: String },

    #[error("no trusted CA certificates: the system store is empty or unreadable ({why}) and no caFile is configured")]
    NoRoots { why: String },

    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),

    #[error(
        "GET {url} failed: {detail}; check that the IdP is reachable from the node (DNS, routes, network policy, \
         egress proxy) and, for https, that its certificate chains to the system roots or the issuer's caFile"
    )]
    Connect { url: String, detail: String },

    #[error(
        "GET {url} did not complete within {timeout_ms} ms (jwks.fetchTimeoutMillis); the IdP is slow or \
         unreachable, or the timeout is too short for it"
    )]
    Timeout { url: String, timeout_ms: u64 },

    #[error("GET {url} answered HTTP {status}{}; check the URL and the IdP's health", redirect_hint(.location))]
    Status { url: String, status: u16, location: Option<String> },

    #[error(
        "GET {url} answered more than {limit} bytes (jwks.maxResponseBytes); the URL may point at the wrong \
         document, or the limit is too small for this IdP's key set"
    )]
    TooLarge { url: String, limit: usize },

    #[error(
        "GET {url} answered Content-Type {content_type:?}, not JSON; the URL may point at a login or error page \
         instead of the {what}"
    )]
    NotJson { url: String, content_type: String, what: &'static str },

    #[error("reading the body of {url} failed: {detail}")]
    Body { url: String, detail: String },

    #[error("the discovery document at {url} is not usable: {why}")]
    BadDiscovery { url: String, why: String },

    #[error(
        "the discovery document at {url} names issuer {found:?}, but the config says {configured:?}; they must be \
         byte-identical (OpenID Connect Discovery 1.0 §4.3): fix `issuer` in the config (trailing slash? \
         scheme? port?) or `discoveryUri`"
    )]
    IssuerMismatch { url: String, found: String, configured: String },

    #[error("the key set at {url} is not a JWKS: {source}")]
    KeySet {
        url: String,
        #[source]
        source: KeySetError,
    },

    #[error(
        "the key set at {url} has no usable signing key ({ignored}); the last good keys stay in use. Check the \
         IdP's key configuration: ward accepts RSA >= 2048 bits, EC P-256/P-384 and Ed25519 keys with use=sig"
    )]
    NoUsableKeys { url: String, ignored: String },
}

fn redirect_hint(location: &Option<String>) -> String {
    match location {
        Some(to) => format!(" (redirect to {to:?}; redirects are not followed, configure the final URL)"),
        None => String::new(),
    }
}

impl JwksError {
    /// The `result` label of `ward_jwks_fetches_total`: a small fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            JwksError::BadUrl { .. }
            | JwksError::CaFileRead { .. }
            | JwksError::CaFileInvalid { .. }
            | JwksError::NoRoots { .. }
            | JwksError::Tls(_) => "config_error",
            JwksError::Connect { .. } => "connect_error",
            JwksError::Timeout { .. } => "timeout",
            JwksError::Status { .. } => "http_status",
            JwksError::TooLarge { .. } => "too_large",
            JwksError::NotJson { .. } => "not_json",
            JwksError::Body { .. } => "body_error",
            JwksError::BadDiscovery { .. } => "bad_discovery",
            JwksError::IssuerMismatch { .. } => "issuer_mismatch",
            JwksError::KeySet { .. } => "bad_jwks",
            JwksError::NoUsableKeys { .. } => "no_usable_keys",
        }
    }

    /// Every value [`JwksError::kind`] can return, plus `ok`.
    pub const RESULTS: &'static [&'static str] = &[
        "ok",
        "config_error",
        "connect_error",
        "timeout",
        "http_status",
        "too_large",
        "not_json",
        "body_error",
        "bad_discovery",
        "issuer_mismatch",
        "bad_jwks",
        "no_usable_keys",
    ];
}
