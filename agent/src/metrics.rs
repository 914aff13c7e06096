//! The one Prometheus registry. Each subsystem owns a `metrics.rs` with a struct that
//! registers its families on a sub-registry of this one at startup; the admin server encodes
//! the whole registry. Families are created once and survive config reloads.

use std::sync::Mutex;

use prometheus_client::{encoding::text::encode, registry::Registry};

/// All metric families, under the `ward_` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    /// Build the registry; `register` gets the `ward`-prefixed root to add families to.
    pub fn new(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("ward");
        register(&mut registry);
        Self { registry: Mutex::new(registry) }
    }

    /// Prometheus text exposition (OpenMetrics-compatible text with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
