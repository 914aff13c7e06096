//! Kernel log records (aya-log) into the agent's tracing, from a small thread that waits on the
//! ring buffer. The kernel programs only log rare failures; counters cover the rest.

use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya_log::EbpfLogger;

/// Forwards `log` records from aya-log to `tracing`.
#[derive(Debug, Clone, Copy)]
pub struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let msg = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "ward::capture::kernel", "{msg}"),
            log::Level::Warn => tracing::warn!(target: "ward::capture::kernel", "{msg}"),
            log::Level::Info => tracing::info!(target: "ward::capture::kernel", "{msg}"),
            log::Level::Debug => tracing::debug!(target: "ward::capture::kernel", "{msg}"),
            log::Level::Trace => tracing::trace!(target: "ward::capture::kernel", "{msg}"),
        }
    }
    fn flush(&self) {}
}

#[derive(Debug)]
pub struct LogPump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogPump {
    pub fn start(mut logger: EbpfLogger<ToTracing>) -> std::io::Result<LogPump> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("ward-bpf-log".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd { fd: logger.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd. The timeout bounds how long Drop waits for us.
                unsafe { libc::poll(&mut pfd, 1, 200) };
                logger.flush();
            }
        })?;
        Ok(LogPump { stop, thread: Some(thread) })
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
