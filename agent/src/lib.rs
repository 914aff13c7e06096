//! ward: node-level, sidecarless OIDC/JWT enforcement for Kubernetes.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`config`]: the YAML contract, precise errors, live reload.
//! - [`jwt`]: strict compact-JWS parsing, signature and claim checks.
//! - [`jwks`]: OIDC discovery and the one shared key cache per node.
//! - [`devidp`]: a dev OIDC issuer for demos and tests (never production).
//! - [`authn`]: token -> verified identity, with the verified-token cache.
//! - [`policy`]: Istio `AuthorizationPolicy` semantics over verified identities.
//! - [`enforce`]: one decision per request: authn, then policy.
//! - [`proxy`]: the HTTP data path (explicit listeners and captured connections).
//! - [`capture`]: eBPF transparent capture.
//! - [`admin`]: metrics, health, readiness, config dump.
//! - [`audit`]: one JSON line per decision.
pub mod admin;
pub mod app;
pub mod audit;
pub mod authn;
pub mod capture;
pub mod config;
pub mod devidp;
pub mod enforce;
pub mod explain;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod readiness;
pub mod reason;
pub mod time;
