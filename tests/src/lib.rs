//! Harness for ward end-to-end tests.
