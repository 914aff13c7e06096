//! The response body type of the proxy: the upstream's body, streamed frame by frame, or a
//! small local one. Carries the request's in-flight guard so the connection knows when the
//! response is done.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::io::InFlight;

#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    _in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: Incoming, in_flight: Option<InFlight>) -> Self {
        Self { inner: Inner::Upstream(body), _in_flight: in_flight }
    }

    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { inner: Inner::Local((!bytes.is_empty()).then_some(bytes)), _in_flight: None }
    }

    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
