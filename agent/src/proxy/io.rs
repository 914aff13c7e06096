//! The client socket as the HTTP server sees it: replays the bytes protocol detection
//! consumed, records activity for the idle and header-read timeouts, and can answer 408 as
//! it closes.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Notify,
};

use super::limits::ConnectionPermit;

const NONE: u64 = u64::MAX;

/// Per-connection bookkeeping shared by the socket wrapper, the request handler and the
/// watchdog. Holds the connection's permit, so the connection counts against
/// `maxConnections` until the socket (possibly inside an upgraded stream) is gone.
#[derive(Debug)]
pub struct ConnState {
    start: Instant,
    last_activity_ms: AtomicU64,
    /// When the current request head began arriving; `NONE` while a request is in flight
    /// or the connection is idle.
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// HTTP/1 only: HTTP/2 has no per-connection "request head" to time.
    track_heads: bool,
    head_started: Notify,
    answer_408_on_close: AtomicBool,
    _permit: ConnectionPermit,
}

impl ConnState {
    pub fn new(track_heads: bool, permit: ConnectionPermit) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            // Detection already read the first bytes of the first request.
            head_started_ms: AtomicU64::new(if track_heads { 0 } else { NONE }),
            in_flight: AtomicUsize::new(0),
            track_heads,
            head_started: Notify::new(),
            answer_408_on_close: AtomicBool::new(false),
            _permit: permit,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_activity_ms.store(now, Ordering::Relaxed);
        // Bytes arriving with no request in flight start the next request head. (Bytes of a
        // pipelined request read while one is in flight start no clock; the idle timeout
        // still bounds such a connection.)
        if self.track_heads
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.head_started.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_activity_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request head was parsed: its handler runs until the returned guard (moved into the
    /// response body) drops.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NONE, Ordering::Release);
        InFlight(self.clone())
    }

    /// Ask the socket to send `408 Request Timeout` when it is dropped.
    pub fn answer_408_on_close(&self) {
        self.answer_408_on_close.store(true, Ordering::Release);
    }

    /// Resolves when a timeout expires: the header-read timeout (only while a request head
    /// is arriving) or the idle timeout (no bytes either way).
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expired {
        let header_ms = u64::try_from(header_timeout.as_millis()).unwrap_or(NONE - 1);
        let idle_ms = u64::try_from(idle_timeout.as_millis()).unwrap_or(NONE - 1);
        loop {
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::Acquire);
            let head_deadline = if head == NONE { NONE } else { head.saturating_add(header_ms) };
            let idle_deadline = self.last_activity_ms.load(Ordering::Relaxed).saturating_add(idle_ms);
            if head_deadline <= now {
                return Expired::HeaderRead;
            }
            if idle_deadline <= now {
                return Expired::Idle;
            }
            let wait = Duration::from_millis(head_deadline.min(idle_deadline) - now);
            // A head starting while we sleep towards the idle deadline moves the deadline
            // earlier: wake up and recompute.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.head_started.notified() => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderRead,
    Idle,
}

/// Marks one request in flight; dropped when its response body is done (or abandoned).
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client socket with the detection bytes replayed first.
#[derive(Debug)]
pub struct ConnIo {
    prefix: BytesMut,
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl ConnIo {
    pub fn new(stream: TcpStream, prefix: BytesMut, state: Arc<ConnState>) -> Self {
        Self { prefix, stream, state }
    }
}

const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: application/json\r\n\
content-length: 74\r\n\r\n{\"error\":\"request headers not received in time\",\"reason\":\"header_timeout\"}";

impl Drop for ConnIo {
    fn drop(&mut self) {
        // The HTTP/1 server was still reading a request head (nothing written yet), so a
        // raw response is well-formed here. try_write never blocks; a 408 this small fits
        // the empty send buffer.
        if self.state.answer_408_on_close.load(Ordering::Acquire) {
            let _ = self.stream.try_write(RESPONSE_408);
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        res
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_408_has_the_right_length() {
        let text = std::str::from_utf8(RESPONSE_408).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        serde_json::from_str::<serde_json::Value>(body).expect("body is JSON");
    }
}
