//! Claim policy with Istio `AuthorizationPolicy` semantics: DENY before ALLOW, AUDIT records.

pub mod eval;
pub mod model;
pub mod pattern;
