//! Runs the server: builds the WebRTC stack, binds HTTP, serves until shutdown, then
//! closes every room.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::http_server::HttpLimits;
use crate::config::Config;
use crate::recordings::RecordingStore;
use crate::room::{Rooms, ServerContext};
use crate::rtc::engine::{EngineError, RtcEngine};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The WebRTC stack could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The cluster store's URL is unusable.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// GStreamer is missing or broken.
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

/// A started server.
pub struct RunningServer {
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// The media UDP port actually bound.
    pub udp_port: u16,
    /// The rooms (for in-process embedding and tests).
    pub rooms: Arc<Rooms>,
    serve: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// The cluster refresh, stopped before this node deregisters.
    cluster_refresh: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, closes every room, waits for the HTTP server to finish.
    pub async fn shutdown(self) {
        // Out of the cluster first: no new room is placed here while the rooms drain.
        if let (Some(refresh), Some(cluster)) = (self.cluster_refresh, self.rooms.context().cluster.clone()) {
            refresh.abort();
            cluster.deregister(&self.rooms.names()).await;
        }
        let _ = self.stop.send(());
        self.rooms.shutdown(Duration::from_secs(8)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.serve).await;
    }
}

/// Starts the server; returns once it accepts connections.
pub async fn start(config: Config) -> Result<RunningServer, ServeError> {
    config.validate()?;
    crate::media::init()?;
    let engine = RtcEngine::build(&config.rtc).await?;
    let udp_port = engine.udp_port;
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Listen { addr: listen, reason: e.to_string() })?;
    let http_addr = listener.local_addr().map_err(|e| ServeError::Listen { addr: listen, reason: e.to_string() })?;
    if config.auth.secret.is_none() {
        tracing::warn!("no MCU_AUTH_SECRET: the server is open; anyone who reaches it can join, record and list rooms");
    }
    let recordings = RecordingStore::new(config.recording.dir.clone());
    let cluster = crate::cluster::Cluster::connect(&config.cluster)?;
    let rooms = Rooms::new(Arc::new(ServerContext { config, engine, recordings, cluster: cluster.clone() }));
    let cluster_refresh = cluster.map(|cluster| {
        tracing::info!(node = cluster.id(), "cluster node: rooms shared through Redis");
        let weak = Arc::downgrade(&rooms);
        cluster.spawn_refresh(move || local_state(&weak))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let routes = crate::api::routes(Arc::clone(&rooms));
    let server = &rooms.context().config.server;
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(server.header_timeout_ms),
        max_connections: crate::api::http_server::connections_that_fit(server.max_connections),
        max_connections_per_ip: server.max_connections_per_ip,
    };
    let serve = tokio::spawn(crate::api::http_server::serve(listener, routes, limits, async move {
        let _ = stopped.await;
    }));
    Ok(RunningServer { http_addr, udp_port, rooms, serve, stop, cluster_refresh })
}

/// What this node publishes to the cluster; `None` once the server is gone.
fn local_state(rooms: &std::sync::Weak<Rooms>) -> Option<crate::cluster::LocalState> {
    let rooms = rooms.upgrade()?;
    let server = &rooms.context().config.server;
    Some(crate::cluster::LocalState {
        rooms: rooms
            .list()
            .into_iter()
            .map(|r| crate::cluster::placement::ClusterRoom {
                room: r.room,
                participants: r.participants,
                recording: r.recording,
            })
            .collect(),
        held: rooms.names(),
        load: rooms.estimated_cores(),
        cpu_budget: rooms.cpu_budget(),
        max_rooms: server.max_rooms,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
