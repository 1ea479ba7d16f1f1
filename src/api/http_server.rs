//! The HTTP accept loop: warp's routes served by hyper with the limits warp's own
//! server does not set. A client that trickles its headers (slow-loris) is cut off
//! after `header_timeout`; open connections are capped overall and per client
//! address, and a connection over a cap gets a JSON `503` before it is closed, so
//! one client cannot take every socket the process may open.

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

/// The limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
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

impl Slot {
    fn take(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &HttpLimits) -> Option<Slot> {
        let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = o.per_ip.get(&ip).copied().unwrap_or(0);
        if o.total >= limits.max_connections || mine >= limits.max_connections_per_ip {
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
            tracing::warn!(client = %addr, "connection refused: too many open");
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = warp::service(routes.clone());
        let with_addr = with_client_addr(service, addr);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(with_addr));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

/// warp's service with the client's address put on each request.
fn with_client_addr<S>(service: S, addr: SocketAddr) -> WithClientAddr<S> {
    WithClientAddr { inner: service, addr }
}

#[derive(Clone)]
struct WithClientAddr<S> {
    inner: S,
    addr: SocketAddr,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithClientAddr<S>
where
    S: tower_service::Service<warp::http::Request<B>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: warp::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(ClientAddr(self.addr));
        self.inner.call(request)
    }
}
