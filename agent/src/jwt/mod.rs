//! Strict JWT validation (RFC 7515, RFC 7519, RFC 8725).
//!
//! [`compact`] splits and decodes a compact JWS with no leniency, [`json`] parses JSON that
//! refuses duplicate members and deep nesting, [`key`] turns JWKs into verifying keys once
//! per key-set load, and [`validate`] checks signature first, then claims.

mod alg;
pub mod compact;
pub mod json;
pub mod key;
/// Test and benchmark signing keys (never built into the agent for production use).
#[cfg(any(test, feature = "bench"))]
pub mod testkeys;
pub mod validate;

pub use alg::{Algorithm, KeyFamily};
