//! Config reload metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Debug, Default)]
pub struct ReloadMetrics {
    pub reloads: Family<ResultLabel, Counter>,
    /// 1 when the file on disk is the config in force, 0 when the last attempt was refused.
    pub last_reload_ok: Gauge,
    pub last_success_time: Gauge,
    pub generation: Gauge,
}

impl ReloadMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("config_reloads", "Config reload attempts by result", m.reloads.clone());
        registry.register(
            "config_last_reload_successful",
            "1 if the last config load succeeded, 0 if it was refused and the previous config is still in force",
            m.last_reload_ok.clone(),
        );
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "Unix time of the last successful config load",
            prometheus_client::registry::Unit::Seconds,
            m.last_success_time.clone(),
        );
        registry.register("config_generation", "Generation number of the config in force", m.generation.clone());
        m
    }

    pub fn success(&self, generation: u64) {
        self.reloads.get_or_create(&ResultLabel { result: "success" }).inc();
        self.last_reload_ok.set(1);
        self.last_success_time.set(crate::time::now_unix() as i64);
        self.generation.set(generation as i64);
    }

    pub fn failure(&self) {
        self.reloads.get_or_create(&ResultLabel { result: "error" }).inc();
        self.last_reload_ok.set(0);
    }
}
