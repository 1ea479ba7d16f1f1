//! The HTTP accept loop: warp's routes served by hyper with the limits warp's own
//! server does not set. A client that trickles its headers (slow-loris) is cut off
//! after `header_timeout` (which is also how long an idle keep-alive connection
//! stays open); one that trickles its body gets a `408` after `REQUEST_TIMEOUT`; open
//! connections are capped overall and per client address (an IPv6 client per /64),
//! and a connection over a cap gets a JSON `503` before it is closed, so one client
//! cannot take every socket the process may open. A connection ends with a lingering
//! close, and one whose request body went unread ends after its response
//! (`unread_body`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use warp::{Filter, Reply};

use super::unread_body::{self, TrackedBody};

/// Time from a request's headers to its response's (the body included). Responses
/// that stream (events) count until their headers; joins are bounded well below by
/// `server.join_timeout_ms`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address (0: no per-address limit, e.g.
    /// behind a reverse proxy, where every client has the proxy's address).
    pub max_connections_per_ip: usize,
}

/// The client's address, on every request (`warp::ext::optional::<ClientAddr>()`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Open connections, overall and per address.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One counted connection; uncounted when dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

/// The address a client is counted under: an IPv6 client's /64 (one subscriber's
/// network; it has more addresses than any cap).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)))
        }
        other => other,
    }
}

impl Slot {
    fn take(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &HttpLimits) -> Option<Slot> {
        let ip = client_key(ip);
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = o.per_ip.get(&ip).copied().unwrap_or(0);
        let per_ip_full = limits.max_connections_per_ip > 0 && mine >= limits.max_connections_per_ip;
        if o.total >= limits.max_connections || per_ip_full {
            return None;
        }
        o.total += 1;
        *o.per_ip.entry(ip).or_insert(0) += 1;
        Some(Slot { open: Arc::clone(open), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.total -= 1;
        if let Some(n) = o.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over a cap and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"too many connections"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
    // Closing with the request unread would reset the connection before the client
    // reads the answer.
    unread_body::linger_and_close(stream).await;
}

/// Raises the process's open-file limit to its hard limit and returns how many HTTP
/// connections fit under it, leaving room for everything else the server opens
/// (recordings, GStreamer, the UDP socket): a cap above the limit would fail accepts
/// with EMFILE before refusing anyone cleanly.
pub fn connections_that_fit(wanted: usize) -> usize {
    const RESERVED: u64 = 256;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let fit = usize::try_from(soft.saturating_sub(RESERVED)).unwrap_or(usize::MAX).max(1);
    if fit < wanted {
        tracing::warn!(wanted, fit, "server.max_connections lowered to fit the open-file limit");
    }
    wanted.min(fit)
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open requests
/// finish for up to a second.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Mutex::new(Open::default()));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_refusal_logged: Option<std::time::Instant> = None;
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&open, addr.ip(), &limits) else {
            // One line per second at most: a flood must not flood the log too.
            let now = std::time::Instant::now();
            if last_refusal_logged.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                tracing::warn!(client = %addr, "connection refused: too many open");
                last_refusal_logged = Some(now);
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = warp::service(routes.clone());
        let with_addr = WithClientAddr { inner: service, addr };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        // The slot is held until the socket's lingering close ends.
        let stream = TokioIo::new(unread_body::LingeringStream::new(stream, slot));
        let connection = graceful.watch(http.serve_connection(stream, TowerToHyperService::new(with_addr)));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

/// warp's service with the client's address put on each request, a `408` for a
/// request not answered within `REQUEST_TIMEOUT`, and `Connection: close` on the
/// answer to a request whose body was not read (see `unread_body`).
#[derive(Clone)]
struct WithClientAddr<S> {
    inner: S,
    addr: SocketAddr,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithClientAddr<S>
where
    B: hyper::body::Body,
    S: tower_service::Service<
            warp::http::Request<TrackedBody<B>>,
            Response = warp::reply::Response,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = warp::reply::Response;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: warp::http::Request<B>) -> Self::Future {
        let (mut head, body) = request.into_parts();
        head.extensions.insert(ClientAddr(self.addr));
        let (body, body_end) = TrackedBody::new(body);
        let response = self.inner.call(warp::http::Request::from_parts(head, body));
        Box::pin(async move {
            let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(answered)) => answered,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    super::error::ApiError::new(warp::http::StatusCode::REQUEST_TIMEOUT, "request not received in time")
                        .into_response()
                }
            };
            unread_body::close_if_unread(&mut response, &body_end);
            Ok(response)
        })
    }
}
