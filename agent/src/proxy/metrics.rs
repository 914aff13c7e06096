//! Proxy metrics. Label values come from closed sets (`Outcome`, `Reason`, the rejection
//! reasons below), never from request data, so cardinality stays bounded.

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::reason::{Outcome, Reason};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    decision: &'static str,
    reason: &'static str,
}

/// Why a connection was closed before any HTTP exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are the snake_case variant names")]
pub enum Rejection {
    /// The first bytes are not an HTTP/1.x request line or the HTTP/2 preface.
    not_http,
    /// Over `proxy.maxConnections`.
    max_connections,
    /// A captured connection whose original destination is unknown.
    unknown_destination,
    /// Nothing recognizable arrived within `headerReadTimeoutMillis`.
    header_timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectionLabels {
    reason: Rejection,
}

/// Metric families of the proxy; create once per process.
#[derive(Debug)]
pub struct ProxyMetrics {
    requests: Family<RequestLabels, Counter>,
    upstream_duration: Histogram,
    active_connections: Gauge,
    connections: Counter,
    rejected: Family<RejectionLabels, Counter>,
}

/// The `decision` label: the outcome class of a reason.
pub fn decision_label(reason: Reason) -> &'static str {
    match reason.outcome() {
        Outcome::Allow => "allow",
        Outcome::Unauthenticated => "unauthenticated",
        Outcome::Forbidden => "forbidden",
        Outcome::Unavailable => "unavailable",
        Outcome::ProxyError => "error",
    }
}

impl ProxyMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            // 100 µs .. ~3.3 s
            upstream_duration: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0,
            ]),
            active_connections: Gauge::default(),
            connections: Counter::default(),
            rejected: Family::default(),
        };
        registry.register(
            "requests",
            "HTTP requests by decision (allow, unauthenticated, forbidden, unavailable, error) and reason",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "upstream_duration",
            "Time from sending a request upstream to receiving its response headers",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        registry.register("active_connections", "Client connections open now", m.active_connections.clone());
        registry.register("connections", "Client connections accepted", m.connections.clone());
        registry.register(
            "proxy_rejected_connections",
            "Client connections closed before any HTTP exchange, by reason",
            m.rejected.clone(),
        );
        m
    }

    pub fn request(&self, reason: Reason) {
        self.requests.get_or_create(&RequestLabels { decision: decision_label(reason), reason: reason.as_str() }).inc();
    }

    pub fn upstream_duration(&self, seconds: f64) {
        self.upstream_duration.observe(seconds);
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
        self.active_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.active_connections.dec();
    }

    pub fn rejected(&self, reason: Rejection) {
        self.rejected.get_or_create(&RejectionLabels { reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        let mut registry = Registry::with_prefix("ward");
        let m = ProxyMetrics::new(&mut registry);
        m.request(Reason::Expired);
        m.rejected(Rejection::not_http);
        m.connection_opened();
        m.upstream_duration(0.002);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for want in [
            "ward_requests_total{decision=\"unauthenticated\",reason=\"expired\"} 1",
            "ward_proxy_rejected_connections_total{reason=\"not_http\"} 1",
            "ward_active_connections 1",
            "ward_connections_total 1",
            "ward_upstream_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
