//! Audit log: one JSON line per decision.
