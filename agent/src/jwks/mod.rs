//! OIDC discovery and the shared per-node JWKS cache.
