//! Audit log: one JSON object per line for every request decision, on its own stream.
//!
//! Lines go to a dedicated writer thread through a bounded queue, never through `tracing`
//! (whose human log goes to stderr): stdout carries nothing but audit lines, so a log
//! shipper can parse it without filtering. A request never waits for the writer: when the
//! queue is full the line is dropped and counted in `ward_audit_dropped_lines_total`.
//!
//! A line holds addresses, method, normalized path, host, the token's `iss` and `sub`, the
//! decision, reason, deciding policy, matching AUDIT policies, latency and HTTP version.
//! Never the token, never any other claim. Denials are always written; allows are sampled
//! by `audit.allowSampleRate`.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, mpsc},
    time::SystemTime,
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::Serialize;

use crate::{config::AuditSettings, reason::Reason};

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// One decision, as written.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub listener: &'a str,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub http_version: &'static str,
    pub iss: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub status: u16,
    pub policy: Option<&'a str>,
    #[serde(serialize_with = "names")]
    pub audit_policies: &'a [Arc<str>],
    pub latency_us: u64,
}

fn names<S: serde::Serializer>(names: &&[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(|n| &**n))
}

#[derive(Debug)]
pub struct AuditLog {
    sink: Option<mpsc::SyncSender<String>>,
    dropped: Counter,
}

impl AuditLog {
    /// Audit lines to stdout, registering `audit_dropped_lines_total` on `registry`.
    pub fn stdout(registry: &mut Registry) -> Self {
        Self::to_writer(Box::new(std::io::stdout()), registry)
    }

    /// Audit lines to any writer (tests use a file or pipe).
    pub fn to_writer(mut out: Box<dyn Write + Send>, registry: &mut Registry) -> Self {
        let dropped = Counter::default();
        registry.register(
            "audit_dropped_lines",
            "Audit lines dropped because the writer could not keep up",
            dropped.clone(),
        );
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        let spawned = std::thread::Builder::new().name("ward-audit".into()).spawn(move || {
            let mut buf = std::io::BufWriter::with_capacity(64 * 1024, &mut out);
            while let Ok(line) = rx.recv() {
                let _ = buf.write_all(line.as_bytes());
                // Flush when the queue is drained, so lines appear promptly when quiet and
                // are batched when busy.
                while let Ok(line) = rx.try_recv() {
                    let _ = buf.write_all(line.as_bytes());
                }
                let _ = buf.flush();
            }
        });
        match spawned {
            Ok(_) => Self { sink: Some(tx), dropped },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the audit writer thread; audit lines are dropped");
                Self { sink: None, dropped }
            }
        }
    }

    /// No audit log (e.g. `ward explain`, benchmarks of the data path alone).
    pub fn disabled() -> Self {
        Self { sink: None, dropped: Counter::default() }
    }

    /// Whether a decision with this reason is to be written under `settings`.
    pub fn wants(&self, settings: &AuditSettings, reason: Reason) -> bool {
        if self.sink.is_none() || !settings.enabled {
            return false;
        }
        match reason.outcome() {
            crate::reason::Outcome::Allow => {
                settings.allow_sample_rate >= 1.0
                    || (settings.allow_sample_rate > 0.0 && rand::random::<f64>() < settings.allow_sample_rate)
            }
            _ => true,
        }
    }

    pub fn write(&self, record: &Record<'_>) {
        let Some(sink) = &self.sink else { return };
        let Ok(mut line) = serde_json::to_string(record) else { return };
        line.push('\n');
        if sink.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

/// RFC 3339 UTC time with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_micros())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Mutex,
        time::{Duration, Instant},
    };

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(1_709_210_096), "2024-02-29T12:34:56.000000Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59.000000Z");
    }

    #[test]
    fn lines_are_json_and_sampling_applies_to_allows_only() {
        let out = Shared::default();
        let log = AuditLog::to_writer(Box::new(out.clone()), &mut Registry::default());
        let never = AuditSettings { enabled: true, allow_sample_rate: 0.0 };
        assert!(!log.wants(&never, Reason::Allowed));
        assert!(log.wants(&never, Reason::Expired));
        assert!(log.wants(&never, Reason::NoAllowMatch));
        assert!(!log.wants(&AuditSettings { enabled: false, allow_sample_rate: 1.0 }, Reason::Expired));
        let audit_policies = [Arc::<str>::from("log-admin")];
        log.write(&Record {
            time: rfc3339(SystemTime::now()),
            listener: "api",
            source: "127.0.0.1:5000".parse().expect("addr"),
            destination: "127.0.0.1:8080".parse().expect("addr"),
            method: "GET",
            path: "/admin",
            host: Some("api"),
            http_version: "HTTP/1.1",
            iss: Some("https://idp"),
            sub: Some("alice"),
            decision: "forbidden",
            reason: Reason::NoAllowMatch.as_str(),
            status: 403,
            policy: None,
            audit_policies: &audit_policies,
            latency_us: 12,
        });
        // The writer thread is asynchronous; wait for the line (bounded by the deadline).
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
            if text.ends_with('\n') {
                break text;
            }
            assert!(Instant::now() < deadline, "audit line never written");
            std::thread::sleep(Duration::from_millis(5));
        };
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("one JSON line");
        assert_eq!(v["reason"], "no_allow_match");
        assert_eq!(v["sub"], "alice");
        assert_eq!(v["audit_policies"][0], "log-admin");
    }
}
