//! A request whose body the server answered without reading (too large, refused
//! before its handler read it) must end its connection cleanly.
//!
//! hyper decides keep-alive when it writes the response head, and only afterwards
//! notices that the handler dropped the body unread; it then closes a connection whose
//! response said `keep-alive`. A client that sends its next request at once has
//! already reused that connection and loses the request (hyper's client reports
//! `IncompleteMessage`). So: a request body is tracked to its end, and a response to a
//! request whose body was left unread says `Connection: close`; after the connection
//! ends, the server stops writing and reads what the client still sends for a moment
//! before closing, since closing a socket with unread input resets it and can destroy
//! the response before the client reads it (the "lingering close" of Apache and Go).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a closing connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_millis(500);

/// A request body that records whether it was read to its end.
pub struct TrackedBody<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

/// Whether a request's body was read to its end (or had none).
#[derive(Clone)]
pub struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    /// True once the body's last frame was read.
    pub fn reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<B: Body> TrackedBody<B> {
    /// Wraps `inner`; the returned handle tells whether it was read to the end.
    pub fn new(inner: B) -> (Self, BodyEnd) {
        let ended = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (TrackedBody { inner, ended: Arc::clone(&ended) }, BodyEnd(ended))
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks `response` as the connection's last when its request's body was not read.
pub fn close_if_unread(response: &mut warp::reply::Response, body: &BodyEnd) {
    if !body.reached() {
        response.headers_mut().insert(warp::http::header::CONNECTION, warp::http::HeaderValue::from_static("close"));
    }
}

/// Ends a connection: stops writing, then reads and discards what the client still
/// sends until it closes or `LINGER` passes.
pub async fn linger_and_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A connection's socket as hyper sees it; when hyper drops it, the socket closes
/// with `linger_and_close` and `held` (the connection's slot) is kept until then.
pub struct LingeringStream<H: Send + Unpin + 'static> {
    stream: Option<TcpStream>,
    held: Option<H>,
}

impl<H: Send + Unpin + 'static> LingeringStream<H> {
    pub fn new(stream: TcpStream, held: H) -> Self {
        LingeringStream { stream: Some(stream), held: Some(held) }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        // `stream` is only taken in `drop`.
        Pin::new(self.get_mut().stream.as_mut().expect("a stream until dropped"))
    }
}

impl<H: Send + Unpin + 'static> Drop for LingeringStream<H> {
    fn drop(&mut self) {
        let (Some(stream), held) = (self.stream.take(), self.held.take()) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                linger_and_close(stream).await;
                drop(held);
            });
        }
    }
}

impl<H: Send + Unpin + 'static> tokio::io::AsyncRead for LingeringStream<H> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl<H: Send + Unpin + 'static> tokio::io::AsyncWrite for LingeringStream<H> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_body_read_to_its_end_is_marked_ended() {
        let (body, end) = TrackedBody::new(Full::new(bytes::Bytes::from_static(b"abc")));
        assert!(!end.reached());
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"abc");
        assert!(end.reached());
    }

    #[test]
    fn an_empty_body_is_ended_from_the_start_and_a_refused_one_closes() {
        let (_, empty) = TrackedBody::new(http_body_util::Empty::<bytes::Bytes>::new());
        assert!(empty.reached());
        let (_unread, end) = TrackedBody::new(Full::new(bytes::Bytes::from_static(b"abc")));
        let mut response = warp::reply::Response::new(Default::default());
        close_if_unread(&mut response, &end);
        assert_eq!(response.headers()[warp::http::header::CONNECTION], "close");
    }
}
