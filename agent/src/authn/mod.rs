//! Token -> verified identity.
