//! Live reload.
