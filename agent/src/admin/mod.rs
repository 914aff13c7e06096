//! Admin endpoint: /metrics, /healthz, /readyz, /config_dump.
