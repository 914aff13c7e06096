use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{jwt::Algorithm, policy::model::Policy};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub issuers: Vec<Issuer>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub capture: Option<Capture>,
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub audit: AuditSettings,
}

/// One trusted OIDC issuer (Istio's `jwtRules` entry).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Issuer {
    /// Compared byte for byte with the token's `iss` and the discovery document's `issuer`.
    pub issuer: String,
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Skip discovery and fetch keys from here.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Default: `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_uri: Option<String>,
    /// Allowed `alg` values. Default: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Refuse tokens whose `exp - iat` (or `exp - now` without `iat`) exceeds this.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Tokens larger than this are refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Extra PEM CA bundle trusted for this issuer's HTTPS endpoints (besides system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Extra token locations, as in Istio `jwtRules`. `Authorization: Bearer` is always read.
    #[serde(default)]
    pub from_headers: Vec<TokenHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Copy claims into request headers for the upstream.
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token in the request sent upstream (Istio default: true here, as asked).
    #[serde(default = "default_true")]
    pub forward_original_token: bool,
    #[serde(default)]
    pub jwks: JwksSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenHeader {
    pub name: String,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimToHeader {
    pub header: String,
    /// Claim path: `email`, or nested `realm_access.roles` / `[realm_access][roles]`.
    pub claim: String,
}

/// Key-set cache tuning for one issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwksSettings {
    /// Lower clamp for `Cache-Control: max-age` driven refresh.
    #[serde(default = "default_min_refresh")]
    pub min_refresh_seconds: u64,
    /// Upper clamp, and the interval when the IdP sends no max-age.
    #[serde(default = "default_max_refresh")]
    pub max_refresh_seconds: u64,
    /// How long the last good keys keep serving while the IdP fails. After that: 503.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_seconds: u64,
    /// Minimum spacing between refetches caused by unknown `kid`s.
    #[serde(default = "default_kid_cooldown")]
    pub unknown_kid_cooldown_seconds: u64,
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_millis: u64,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            min_refresh_seconds: default_min_refresh(),
            max_refresh_seconds: default_max_refresh(),
            max_staleness_seconds: default_max_staleness(),
            unknown_kid_cooldown_seconds: default_kid_cooldown(),
            fetch_timeout_millis: default_fetch_timeout_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

/// An explicit (non-transparent) listener: clients connect here, ward forwards to `upstream`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// `false` turns enforcement off on this listener (a plain proxy; for benchmarks).
    #[serde(default = "default_true")]
    pub enforce: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Admin {
    pub listen: SocketAddr,
}

/// Transparent capture with eBPF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capture {
    /// cgroup v2 directory whose processes are captured. Relative paths are taken under the
    /// cgroup2 mount found in /proc/self/mountinfo.
    pub cgroup: PathBuf,
    /// The capture listener: an address the pods can reach. IPv4 (or IPv6 when the node is
    /// IPv6-only): connections to IPv4 and v4-mapped destinations are redirected here.
    pub listen: SocketAddr,
    /// IPv6 capture listener for native IPv6 destinations (dual-stack nodes). Without one, a
    /// pod's IPv6 connection to a protected destination fails instead of bypassing ward.
    #[serde(default, rename = "listenV6")]
    pub listen_v6: Option<SocketAddr>,
    /// Same-node sk_msg fast path.
    #[serde(default)]
    pub sk_msg: Option<bool>,
    /// Where programs, links and maps are pinned.
    #[serde(default = "default_bpffs")]
    pub pin_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySettings {
    /// `realm` of `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Request line plus headers; larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Time to receive a complete request head; slower gets 408.
    #[serde(default = "default_header_timeout_ms")]
    pub header_read_timeout_millis: u64,
    /// Close client connections idle this long.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_connect_timeout_ms")]
    pub upstream_connect_timeout_millis: u64,
    /// Time for the upstream to send response headers; slower gets 504.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_response_timeout_millis: u64,
    /// Drain deadline on SIGTERM.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            realm: default_realm(),
            max_header_bytes: default_max_header_bytes(),
            header_read_timeout_millis: default_header_timeout_ms(),
            idle_timeout_seconds: default_idle_timeout(),
            max_connections: default_max_connections(),
            upstream_connect_timeout_millis: default_connect_timeout_ms(),
            upstream_response_timeout_millis: default_upstream_timeout_ms(),
            shutdown_grace_seconds: default_shutdown_grace(),
        }
    }
}

/// The verified-token cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheSettings {
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { max_entries: default_cache_entries(), max_bytes: default_cache_bytes() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditSettings {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Fraction of allowed requests logged (denials are always logged).
    #[serde(default = "default_sample")]
    pub allow_sample_rate: f64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { enabled: true, allow_sample_rate: default_sample() }
    }
}

pub fn default_algorithms() -> Vec<Algorithm> {
    Algorithm::DEFAULT_ALLOWLIST.to_vec()
}
fn default_clock_skew() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8 * 1024
}
fn default_true() -> bool {
    true
}
fn default_min_refresh() -> u64 {
    300
}
fn default_max_refresh() -> u64 {
    24 * 3600
}
fn default_max_staleness() -> u64 {
    24 * 3600
}
fn default_kid_cooldown() -> u64 {
    30
}
fn default_fetch_timeout_ms() -> u64 {
    5_000
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}
fn default_bpffs() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/ward")
}
fn default_realm() -> String {
    "ward".to_owned()
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    300
}
fn default_max_connections() -> usize {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_upstream_timeout_ms() -> u64 {
    30_000
}
fn default_shutdown_grace() -> u64 {
    10
}
fn default_cache_entries() -> usize {
    100_000
}
fn default_cache_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_sample() -> f64 {
    1.0
}
