//! Resource limits from `config.proxy`, read from the live snapshot when a connection is
//! accepted, and the connection limiter.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use super::metrics::ProxyMetrics;
use crate::config::ProxySettings;

/// hyper refuses an HTTP/1 read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_settings(s: &ProxySettings) -> Self {
        Self {
            max_header_bytes: s.max_header_bytes,
            header_read_timeout: Duration::from_millis(s.header_read_timeout_millis),
            idle_timeout: Duration::from_secs(s.idle_timeout_seconds),
            max_connections: s.max_connections,
            upstream_connect_timeout: Duration::from_millis(s.upstream_connect_timeout_millis),
            upstream_response_timeout: Duration::from_millis(s.upstream_response_timeout_millis),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_seconds),
        }
    }

    /// HTTP/1 read buffer: the whole request head must fit, so it bounds the head size
    /// (hyper answers 431 beyond it). hyper needs at least 8 KiB.
    pub fn h1_buffer(&self) -> usize {
        self.max_header_bytes.max(HYPER_MIN_BUF)
    }

    /// HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE` (h2 answers 431 beyond it).
    pub fn h2_header_list(&self) -> u32 {
        u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)
    }
}

/// Counts open client connections across all listeners of one proxy.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    open: Arc<AtomicUsize>,
    metrics: Arc<ProxyMetrics>,
}

impl ConnectionLimiter {
    pub fn new(metrics: Arc<ProxyMetrics>) -> Self {
        Self { open: Arc::new(AtomicUsize::new(0)), metrics }
    }

    /// A permit if fewer than `max` connections are open. The limit is the one of the
    /// snapshot current at accept time, so a reload that lowers it lets existing
    /// connections finish and refuses new ones until the count is under the new limit.
    pub fn try_acquire(&self, max: usize) -> Option<ConnectionPermit> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= max {
                return None;
            }
            match self.open.compare_exchange_weak(open, open + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => open = now,
            }
        }
        self.metrics.connection_opened();
        Some(ConnectionPermit { open: self.open.clone(), metrics: self.metrics.clone() })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open connection; releases its slot on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    open: Arc<AtomicUsize>,
    metrics: Arc<ProxyMetrics>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn limiter_holds_the_limit_and_releases_on_drop() {
        let limiter = ConnectionLimiter::new(Arc::new(ProxyMetrics::new(&mut Registry::default())));
        let a = limiter.try_acquire(2).expect("first");
        let b = limiter.try_acquire(2).expect("second");
        assert!(limiter.try_acquire(2).is_none(), "third is over the limit");
        drop(a);
        let c = limiter.try_acquire(2).expect("a slot was released");
        assert_eq!(limiter.open(), 2);
        drop((b, c));
        assert_eq!(limiter.open(), 0);
    }

    #[test]
    fn h1_buffer_respects_hypers_minimum() {
        let mut s = ProxySettings { max_header_bytes: 100, ..ProxySettings::default() };
        assert_eq!(Limits::from_settings(&s).h1_buffer(), 8192);
        s.max_header_bytes = 65536;
        assert_eq!(Limits::from_settings(&s).h1_buffer(), 65536);
    }
}
