//! The one media UDP port, shared by every peer connection (ICE UDP mux).
//!
//! webrtc-ice's `UDPMuxDefault` routes a datagram by its source address once that
//! address is known, else by the ufrag in a STUN request's USERNAME. Its bookkeeping
//! has a flaw: when a peer's connection closes, the connection forgets its addresses
//! *before* the mux asks it which addresses to unmap, so every address a closed peer
//! used stays mapped to the dead connection for the life of the process. A later
//! client that comes from the same address and port (a reused ephemeral port on one
//! host, many users behind one NAT) then has its ICE checks delivered to the dead
//! peer and dropped; it connects only if the server happens to send to that address
//! first, which it never does for a peer-reflexive (NATed, mDNS-hidden) client.
//!
//! This mux is the same design with the unmapping done right: a closed connection's
//! addresses are found by scanning the map for its key.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::{Mutex, watch};
use webrtc::ice::udp_mux::{UDPMux, UDPMuxConn, UDPMuxConnParams, UDPMuxWriter};
use webrtc::stun::attributes::ATTR_USERNAME;
use webrtc::stun::message::{Message as StunMessage, is_message as is_stun_message};
use webrtc::util::{Conn, Error};

/// Largest datagram read from the socket.
const RECEIVE_MTU: usize = 8192;

/// The shared media port.
pub struct MediaPortMux {
    socket: Box<dyn Conn + Send + Sync>,
    /// Connections by local ufrag (one per peer connection).
    conns: Mutex<HashMap<String, UDPMuxConn>>,
    /// Connections by remote address, learnt when a connection sends to it.
    addresses: std::sync::RwLock<HashMap<SocketAddr, UDPMuxConn>>,
    closed: watch::Sender<bool>,
}

impl MediaPortMux {
    /// Starts reading `socket` and routing what arrives.
    pub fn new(socket: impl Conn + Send + Sync + 'static) -> Arc<Self> {
        let (closed, closed_rx) = watch::channel(false);
        let mux = Arc::new(Self {
            socket: Box::new(socket),
            conns: Mutex::new(HashMap::new()),
            addresses: std::sync::RwLock::new(HashMap::new()),
            closed,
        });
        tokio::spawn(Arc::clone(&mux).read_loop(closed_rx));
        mux
    }

    /// Remote addresses currently mapped to a connection (for metrics and tests).
    pub fn mapped_addresses(&self) -> usize {
        self.addresses.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn conn_for_address(&self, addr: &SocketAddr) -> Option<UDPMuxConn> {
        self.addresses.read().unwrap_or_else(|p| p.into_inner()).get(addr).cloned()
    }

    async fn conn_for_stun(&self, datagram: &[u8]) -> Option<UDPMuxConn> {
        let mut message = StunMessage::new();
        message.unmarshal_binary(datagram).ok()?;
        let (username, found) = message.attributes.get(ATTR_USERNAME);
        if !found {
            return None;
        }
        let username = String::from_utf8(username.value).ok()?;
        // USERNAME is "<our ufrag>:<their ufrag>".
        let ufrag = username.split(':').next()?;
        self.conns.lock().await.get(ufrag).cloned()
    }

    async fn read_loop(self: Arc<Self>, mut closed: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; RECEIVE_MTU];
        loop {
            let (len, addr) = tokio::select! {
                read = self.socket.recv_from(&mut buffer) => match read {
                    Ok(r) => r,
                    Err(Error::Io(e)) if e.0.kind() == ErrorKind::TimedOut => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "media port read failed; media stops");
                        return;
                    }
                },
                _ = closed.changed() => return,
            };
            let datagram = &buffer[..len];
            let conn = match self.conn_for_address(&addr) {
                Some(conn) => Some(conn),
                None if is_stun_message(datagram) => self.conn_for_stun(datagram).await,
                None => None,
            };
            match conn {
                Some(conn) => {
                    if let Err(e) = conn.write_packet(datagram, addr).await {
                        tracing::debug!(%addr, error = %e, "dropping a datagram for a closing peer");
                    }
                }
                None => tracing::trace!(%addr, "dropping a datagram from an unknown peer"),
            }
        }
    }

    /// Forgets a connection and every address it was reached from.
    fn unmap(&self, ufrag: &str) {
        self.addresses.write().unwrap_or_else(|p| p.into_inner()).retain(|_, conn| conn.key() != ufrag);
    }
}

#[async_trait]
impl UDPMux for MediaPortMux {
    async fn close(&self) -> Result<(), Error> {
        if self.closed.send_replace(true) {
            return Err(Error::ErrAlreadyClosed);
        }
        let conns = std::mem::take(&mut *self.conns.lock().await);
        for conn in conns.values() {
            conn.close();
        }
        // Drop every connection: they reference the mux back (weakly) and each other.
        self.addresses.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    async fn get_conn(self: Arc<Self>, ufrag: &str) -> Result<Arc<dyn Conn + Send + Sync>, Error> {
        if *self.closed.borrow() {
            return Err(Error::ErrUseClosedNetworkConn);
        }
        let mut conns = self.conns.lock().await;
        if let Some(conn) = conns.get(ufrag) {
            return Ok(Arc::new(conn.clone()));
        }
        let params = UDPMuxConnParams {
            local_addr: self.socket.local_addr()?,
            key: ufrag.to_owned(),
            udp_mux: Arc::downgrade(&self) as Weak<dyn UDPMuxWriter + Send + Sync>,
        };
        let conn = UDPMuxConn::new(params);
        let mut closed = conn.close_rx();
        let mux = Arc::downgrade(&self);
        let key = ufrag.to_owned();
        tokio::spawn(async move {
            let _ = closed.changed().await;
            if let Some(mux) = mux.upgrade() {
                mux.remove_conn_by_ufrag(&key).await;
            }
        });
        conns.insert(ufrag.to_owned(), conn.clone());
        Ok(Arc::new(conn))
    }

    async fn remove_conn_by_ufrag(&self, ufrag: &str) {
        self.conns.lock().await.remove(ufrag);
        self.unmap(ufrag);
    }
}

#[async_trait]
impl UDPMuxWriter for MediaPortMux {
    async fn register_conn_for_address(&self, conn: &UDPMuxConn, addr: SocketAddr) {
        if *self.closed.borrow() {
            return;
        }
        let mut addresses = self.addresses.write().unwrap_or_else(|p| p.into_inner());
        match addresses.get(&addr) {
            Some(old) if old.key() == conn.key() => {}
            Some(old) => {
                // The address moved to another peer (a new client on a reused port).
                old.remove_address(&addr);
                addresses.insert(addr, conn.clone());
            }
            None => {
                addresses.insert(addr, conn.clone());
            }
        }
    }

    async fn send_to(&self, buf: &[u8], target: &SocketAddr) -> Result<usize, Error> {
        self.socket.send_to(buf, *target).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc::ice::udp_mux::UDPMuxDefault;
    use webrtc::ice::udp_mux::UDPMuxParams;

    #[tokio::test]
    async fn a_closed_peer_leaves_no_address_behind() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mux = MediaPortMux::new(socket);
        let conn = Arc::clone(&mux).get_conn("peerufrag1").await.unwrap();
        conn.send_to(b"hello", client.local_addr().unwrap()).await.unwrap();
        assert_eq!(mux.mapped_addresses(), 1, "sending maps the address");
        conn.close().await.unwrap();
        // The unmapping runs on a task woken by the close.
        for _ in 0..100 {
            if mux.mapped_addresses() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(mux.mapped_addresses(), 0);
    }

    /// A client that talked to a peer that then closed sends a STUN check for a new
    /// peer on the same mux, from the same address; returns what the new peer got
    /// within 300 ms (`None`: nothing).
    async fn check_after_a_peer_closed(mux: Arc<dyn UDPMux + Send + Sync>) -> Option<(usize, SocketAddr, usize)> {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client_addr = client.local_addr().unwrap();
        let old = Arc::clone(&mux).get_conn("peerufrag1").await.unwrap();
        old.send_to(b"hello", client_addr).await.unwrap();
        old.close().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let fresh = Arc::clone(&mux).get_conn("peerufrag2").await.unwrap();
        let mut request = StunMessage::new();
        request
            .build(&[
                Box::new(webrtc::stun::message::BINDING_REQUEST),
                Box::new(webrtc::stun::textattrs::Username::new(ATTR_USERNAME, "peerufrag2:client".to_owned())),
            ])
            .unwrap();
        client.send_to(&request.raw, fresh.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 1500];
        let got = tokio::time::timeout(std::time::Duration::from_millis(300), fresh.recv_from(&mut buf)).await;
        got.ok()
            .and_then(Result::ok)
            .map(|(n, from)| (n, from, request.raw.len()))
            .filter(|(_, from, _)| *from == client_addr)
    }

    /// The flaw this module exists for, shown on webrtc-ice's own mux: the address
    /// stays mapped to the closed connection and the new peer never hears the check.
    /// (When this fails, upstream fixed it and the default mux can be used again.)
    #[tokio::test]
    async fn webrtc_ice_default_mux_keeps_dead_routes() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let got = check_after_a_peer_closed(UDPMuxDefault::new(UDPMuxParams::new(socket))).await;
        assert!(got.is_none(), "the default mux delivered the check to the new peer: upstream fixed the flaw");
    }

    #[tokio::test]
    async fn a_new_peer_is_reached_from_an_address_a_closed_peer_used() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let got = check_after_a_peer_closed(MediaPortMux::new(socket)).await;
        let (received, _, sent) = got.expect("the check reaches the new peer");
        assert_eq!(received, sent);
    }
}
