//! The enforcing HTTP proxy.
