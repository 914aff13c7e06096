//! Per-request decisions.
