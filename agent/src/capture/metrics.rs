//! `ward_capture_*` metrics: the kernel's per-CPU counters, summed at scrape time, plus the
//! number of protected prefixes and whether the programs are attached.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, PerCpuArray};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use ward_common::{Event, Program};

use super::pins::Layout;

pub struct CaptureCollector {
    counters: PerCpuArray<MapData, u64>,
    targets: Arc<AtomicU64>,
    layout: Layout,
}

impl std::fmt::Debug for CaptureCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureCollector").field("pin_path", &self.layout.root).finish()
    }
}

impl CaptureCollector {
    pub fn new(counters: PerCpuArray<MapData, u64>, targets: Arc<AtomicU64>, layout: Layout) -> Self {
        CaptureCollector { counters, targets, layout }
    }

    /// Sum of one counter over all CPUs (0 if the map cannot be read).
    pub fn total(counters: &PerCpuArray<MapData, u64>, event: Event) -> u64 {
        counters.get(&(event as u32), 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

impl Collector for CaptureCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (program, name, help, label) in [
            (
                Program::Connect,
                "capture_connect",
                "connect() calls seen by the capture programs, by verdict",
                "verdict",
            ),
            (Program::SockOps, "capture_sock_ops", "sock_ops events on captured and local connections", "event"),
            (Program::SkMsg, "capture_sk_msg", "sendmsg() calls seen by the sk_msg fast path, by verdict", "verdict"),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for event in Event::ALL.iter().filter(|e| e.program() == program) {
                let value = ConstCounter::new(Self::total(&self.counters, *event));
                let labels = [(label, event.as_str())];
                value.encode(family.encode_family(&labels)?)?;
            }
        }
        let targets = ConstGauge::new(self.targets.load(Ordering::Relaxed) as i64);
        targets.encode(encoder.encode_descriptor(
            "capture_protected_prefixes",
            "address prefixes in the kernel's protected-destination map",
            None,
            MetricType::Gauge,
        )?)?;
        let attached = ConstGauge::new(i64::from(self.layout.core_links_present()));
        attached.encode(encoder.encode_descriptor(
            "capture_attached",
            "1 while the capture programs are attached (pinned links present)",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
