//! An impairing UDP relay between one client and the server: loss, delay with jitter
//! (which reorders packets), and outages, separately on the uplink (client to server)
//! and the downlink. The client's offer and the server's answer are rewritten so that
//! each side's only candidate is the relay; every packet (STUN, DTLS, SRTP, SRTCP) then
//! crosses it, as it would cross a bad network. This kernel has no netem, hence a relay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcu_bench::client::{SdpKind, SdpRewrite};
use tokio::net::UdpSocket;

/// What one direction of the link does to packets.
#[derive(Debug, Clone, Default)]
pub struct Impairment {
    /// Share of packets dropped (0.05: 5 %).
    pub loss: f64,
    /// Delay of every packet.
    pub delay: Duration,
    /// Each packet's delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    /// Every packet is dropped until then.
    pub outage_until: Option<Instant>,
}

#[derive(Default)]
struct Direction {
    impairment: Mutex<Impairment>,
    passed: AtomicU64,
    dropped: AtomicU64,
}

/// A running relay; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    server: Arc<Mutex<Option<SocketAddr>>>,
    up: Arc<Direction>,
    down: Arc<Direction>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Binds on loopback and starts relaying.
    pub async fn start() -> Relay {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let addr = socket.local_addr().unwrap();
        let server = Arc::new(Mutex::new(None::<SocketAddr>));
        let (up, down) = (Arc::new(Direction::default()), Arc::new(Direction::default()));
        let task = tokio::spawn(relay(socket, Arc::clone(&server), Arc::clone(&up), Arc::clone(&down)));
        Relay { addr, server, up, down, task }
    }

    /// The rewrite that puts this relay between the client and the server.
    pub fn rewrite(&self) -> SdpRewrite {
        let (relay, server) = (self.addr, Arc::clone(&self.server));
        SdpRewrite(Arc::new(move |kind, sdp| {
            if kind == SdpKind::Answer
                && let Some(addr) = sdp.lines().find_map(candidate_addr)
            {
                *server.lock().unwrap() = Some(addr);
            }
            rewrite_candidates(sdp, relay)
        }))
    }

    /// Impairs the client's packets to the server.
    pub fn set_uplink(&self, impairment: Impairment) {
        *self.up.impairment.lock().unwrap() = impairment;
    }

    /// Impairs the server's packets to the client.
    pub fn set_downlink(&self, impairment: Impairment) {
        *self.down.impairment.lock().unwrap() = impairment;
    }

    /// Packets (passed, dropped) so far on the uplink and the downlink.
    pub fn counts(&self) -> [(u64, u64); 2] {
        [&self.up, &self.down].map(|d| (d.passed.load(Ordering::Relaxed), d.dropped.load(Ordering::Relaxed)))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    socket: Arc<UdpSocket>,
    server: Arc<Mutex<Option<SocketAddr>>>,
    up: Arc<Direction>,
    down: Arc<Direction>,
) {
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 2048];
    let mut random = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else { return };
        let server_addr = *server.lock().unwrap();
        let (direction, to) = if Some(from) == server_addr {
            (&down, client)
        } else {
            client = Some(from);
            (&up, server_addr)
        };
        let Some(to) = to else { continue };
        let impairment = direction.impairment.lock().unwrap().clone();
        let mut uniform = || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            (random >> 11) as f64 / (1u64 << 53) as f64
        };
        let out = impairment.outage_until.is_some_and(|until| Instant::now() < until);
        if out || uniform() < impairment.loss {
            direction.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        direction.passed.fetch_add(1, Ordering::Relaxed);
        let spread = impairment.jitter.as_secs_f64() * (2.0 * uniform() - 1.0);
        let delay = Duration::from_secs_f64((impairment.delay.as_secs_f64() + spread).max(0.0));
        let packet = buf[..len].to_vec();
        if delay.is_zero() {
            let _ = socket.send_to(&packet, to).await;
        } else {
            let socket = Arc::clone(&socket);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&packet, to).await;
            });
        }
    }
}

/// The address of an `a=candidate` line.
fn candidate_addr(line: &str) -> Option<SocketAddr> {
    let fields: Vec<&str> = line.strip_prefix("a=candidate:")?.split_whitespace().collect();
    format!("{}:{}", fields.get(4)?, fields.get(5)?).parse().ok()
}

/// Every candidate's address replaced by `to`.
fn rewrite_candidates(sdp: &str, to: SocketAddr) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        match line.strip_prefix("a=candidate:") {
            Some(rest) => {
                let mut fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                if fields.len() > 5 {
                    fields[4] = to.ip().to_string();
                    fields[5] = to.port().to_string();
                }
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str("\r\n");
            }
            None => out.push_str(line),
        }
    }
    out
}
