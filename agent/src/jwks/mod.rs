//! OIDC discovery and the shared per-node JWKS cache.
//!
//! One [`KeyStore`] per process holds one key set per configured issuer, shared by every
//! connection. Each issuer's keys are found through discovery (or `jwksUri`), refreshed on
//! the IdP's `Cache-Control: max-age` (clamped), retried with backoff while the IdP fails,
//! and refetched at once, through a single flight and behind a cooldown, when a token names
//! an unknown `kid`. While the IdP is down the last good keys serve up to
//! `maxStalenessSeconds`; after that (or before any load) tokens get 503, not 401.
//!
//! - [`fetch`]: HTTP(S) GET with deadline and size cap; [`discovery`]: the `issuer` check.
//! - [`cache_control`], [`backoff`], [`kid_gate`], [`singleflight`]: the timing rules.
//! - [`issuer`]: one issuer's state and refresh loop; [`store`]: all of them.

mod backoff;
mod cache_control;
mod discovery;
mod error;
mod fetch;
mod issuer;
mod kid_gate;
pub mod metrics;
mod singleflight;
mod store;

pub use self::{
    error::JwksError,
    issuer::{Health, IssuerStatus},
    metrics::JwksMetrics,
    store::KeyStore,
};
