//! `ward dev-idp`: a tiny OIDC issuer for the quick-start demo and for tests.
//!
//! **For demos and tests only, never production**: keys are generated at start and kept in
//! memory, anyone who can reach it can mint any token (`POST /mint`), and it speaks plain
//! HTTP. It serves:
//!
//! - `GET /.well-known/openid-configuration` and `GET /jwks` (with `Cache-Control: max-age`);
//! - `POST /mint[?alg=..&kid=..&noKid=true&key=<kid>]`: body = JSON claims; `iss`, `iat`,
//!   `exp` (+ttl) and `aud` (if `--audience`) are filled in unless given; answers the token;
//! - `POST /rotate[?alg=..]`: add a key and make it current (the old ones stay published);
//! - `POST /retire-old`: publish only the current key;
//! - `POST /fault`: `{"mode": "none"|"down"|"slow"|"stall"|"huge"|"garbage"|"5xx",
//!   "delayMillis": n, "sizeBytes": n}`, applied to discovery and JWKS;
//! - `GET /stats`: how often discovery and the JWKS were fetched (faulted answers included).

pub mod mint;
mod server;

use std::net::SocketAddr;

use crate::jwt::Algorithm;

pub use self::server::serve;

#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("generating a {alg} key failed in aws-lc")]
    KeyGeneration { alg: Algorithm },
    #[error("signing with key {kid:?} failed in aws-lc")]
    Signing { kid: String },
    #[error("algorithm {alg} does not fit key {kid:?}; choose an algorithm of the key's type, or another key")]
    AlgDoesNotFitKey { alg: Algorithm, kid: String },
    #[error("--alg must name at least one algorithm")]
    NoAlgorithm,
    #[error("dev IdP listener failed: {0}; check the --listen address")]
    Listener(#[source] std::io::Error),
}

/// Options of `ward dev-idp`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Run a development OIDC issuer (FOR DEMOS AND TESTS ONLY, NEVER PRODUCTION)",
    long_about = "Run a development OIDC issuer that serves discovery and a JWKS and mints any token it is asked \
                  for (POST /mint). FOR DEMOS AND TESTS ONLY, NEVER PRODUCTION: anyone who can reach it can \
                  obtain valid tokens, keys exist only in memory, and it speaks plain HTTP."
)]
pub struct DevIdpOptions {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// The `iss` of minted tokens and of the discovery document. Default: http://<bound address>.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Signing keys to create, one per algorithm; the first is the current key.
    #[arg(long = "alg", default_values_t = [Algorithm::RS256])]
    pub algorithms: Vec<Algorithm>,
    /// `Cache-Control: max-age` of the JWKS, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_age: u64,
    /// Lifetime of minted tokens (unless the request sets `exp`), in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// `aud` of minted tokens that do not set one.
    #[arg(long)]
    pub audience: Option<String>,
}

impl Default for DevIdpOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            issuer: None,
            algorithms: vec![Algorithm::RS256],
            max_age: 300,
            ttl: 3600,
            audience: None,
        }
    }
}
