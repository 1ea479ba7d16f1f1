//! Many nodes, one cluster: each node publishes itself and the rooms it owns in Redis
//! (contract v1.1, "Many nodes"). A room lives on one node; any node answers any
//! request for it by forwarding it to the owner (`api::cluster`). Ownership is a Redis
//! key per room set with `NX` (two joins racing for a new room on two nodes meet in
//! one) and a lease: the owner extends it every 2 s, so a node that dies loses its
//! rooms within 10 s. Decisions are pure (`placement`, `signature`); this module is
//! the I/O.

pub mod placement;
pub mod signature;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterConfig;
use placement::{ClusterRoom, NodeRecord, RefreshClock};

/// Why the cluster could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis is unreachable or refused a command.
    #[error("cluster store unavailable: {0}")]
    Store(#[from] redis::RedisError),
    /// This node is not (yet) registered: Redis restarted moments ago, and rooms
    /// running somewhere may not have been claimed again yet. New rooms wait.
    #[error("the cluster is re-registering its nodes; try again in a moment")]
    Registering,
    /// The room's owner kept changing to dead nodes while it was being placed.
    #[error("the room's node is gone; try again")]
    OwnerGone,
}

/// Where a request for a room is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Here.
    Local,
    /// On another node.
    Remote {
        /// Its id.
        node: String,
        /// Its HTTP base URL.
        url: String,
    },
}

/// Claims every room key in KEYS for ARGV[1] (extending its lease to ARGV[2] ms)
/// unless another node holds it; returns the keys another node holds.
const CLAIM_OR_EXTEND: &str = r"
local lost = {}
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost";

/// Gives up every room key in KEYS that ARGV[1] holds.
const RELEASE: &str = r"
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then released = released + redis.call('DEL', key) end
end
return released";

const SECRET_KEY: &str = "mcu:secret";

fn node_key(id: &str) -> String {
    format!("mcu:node:{id}")
}

fn room_key(room: &str) -> String {
    format!("mcu:room:{room}")
}

/// What this node tells the cluster about itself each refresh.
#[derive(Debug, Clone, Default)]
pub struct LocalState {
    /// Its rooms with participants (what `GET /rooms` lists).
    pub rooms: Vec<ClusterRoom>,
    /// Every room name it holds, including rooms whose first join is still being
    /// negotiated: their ownership is extended too.
    pub held: Vec<String>,
    /// Estimated CPU cores in use.
    pub load: f64,
    /// Its CPU budget.
    pub cpu_budget: Option<f64>,
    /// The most rooms it takes.
    pub max_rooms: usize,
}

/// What the refresh learnt, shared with the request path.
#[derive(Default)]
struct Learnt {
    clock: RefreshClock,
    /// The cluster's shared secret (signs forwarded requests), once read.
    secret: Option<Vec<u8>>,
    /// Whether the last refresh reached Redis: while not, requests are answered
    /// where they land at once, without waiting on Redis.
    reachable: bool,
}

/// This node's membership of the cluster.
pub struct Cluster {
    id: String,
    url: String,
    redis: ConnectionManager,
    learnt: Mutex<Learnt>,
    started: Instant,
}

impl Cluster {
    /// Joins the cluster configured (`None` when clustering is off). The Redis
    /// connection is made lazily and remade after a failure: a node starts, and keeps
    /// its rooms running, while Redis is away.
    pub fn connect(config: &ClusterConfig) -> Result<Option<Arc<Cluster>>, ClusterError> {
        let (Some(url), Some(node_url)) = (config.redis_url.as_deref(), config.node_url.as_deref()) else {
            return Ok(None);
        };
        if !config.enabled() {
            return Ok(None);
        }
        let client = redis::Client::open(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(1);
        let redis = client.get_connection_manager_lazy(manager)?;
        let url = node_url.trim_end_matches('/').to_owned();
        Ok(Some(Arc::new(Cluster {
            id: config.id(),
            url,
            redis,
            learnt: Mutex::new(Learnt::default()),
            started: Instant::now(),
        })))
    }

    fn learnt(&self) -> std::sync::MutexGuard<'_, Learnt> {
        self.learnt.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether Redis answered the last refresh.
    pub fn reachable(&self) -> bool {
        self.learnt().reachable
    }

    /// The header for a request this node forwards for `client`; `None` before the
    /// cluster's secret is known.
    pub fn sign(&self, client: Option<IpAddr>) -> Option<String> {
        let secret = self.learnt().secret.clone()?;
        Some(signature::sign(&secret, &self.id, unix_ms(), client))
    }

    /// What a forwarded request's header says, if another node of this cluster
    /// signed it.
    pub fn verify(&self, value: &str) -> Option<signature::Forwarded> {
        let secret = self.learnt().secret.clone()?;
        signature::verify(&secret, value, unix_ms()).filter(|f| f.node != self.id)
    }

    /// Where `room` is answered. With `create`, a room that exists nowhere is placed
    /// on the least-loaded live node and claimed for it (the claim that wins a race
    /// is the one every racer then follows); without, it is answered here (as
    /// unknown).
    pub async fn place(&self, room: &str, create: bool) -> Result<Placement, ClusterError> {
        let mut redis = self.redis.clone();
        let key = room_key(room);
        // Twice at most: an owner found dead is removed, then the room placed afresh.
        for _ in 0..2 {
            let mut owner: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
            if owner.is_none() && create {
                owner = Some(self.claim(&mut redis, &key).await?);
            }
            tracing::debug!(room, ?owner, create, "placing");
            let node = match owner {
                None => return Ok(Placement::Local),
                Some(node) if node == self.id => return Ok(Placement::Local),
                Some(node) => node,
            };
            let record: Option<String> = redis::cmd("GET").arg(node_key(&node)).query_async(&mut redis).await?;
            let now = redis_ms(&mut redis).await?;
            match record.and_then(|r| serde_json::from_str::<NodeRecord>(&r).ok()) {
                Some(r) if placement::is_live(&r, now) => return Ok(Placement::Remote { node, url: r.url }),
                // Silent for a lease: gone with its rooms (its key lapses in a moment
                // anyway).
                _ => {
                    let _: i64 = redis::Script::new(RELEASE).key(&key).arg(&node).invoke_async(&mut redis).await?;
                    if !create {
                        return Ok(Placement::Local);
                    }
                }
            }
        }
        Err(ClusterError::OwnerGone)
    }

    /// Places a new room on the least-loaded live node with capacity (this one if
    /// none has) and claims it for that node; returns whoever holds the claim
    /// (another node's placement may have won the race). Refused while this node is
    /// not registered: after a Redis restart, the rooms running somewhere are claimed
    /// again only at their nodes' next refresh.
    async fn claim(&self, redis: &mut ConnectionManager, key: &str) -> Result<String, ClusterError> {
        let nodes = self.nodes().await?;
        if !nodes.iter().any(|n| n.node == self.id) {
            return Err(ClusterError::Registering);
        }
        let owned = self.owned_counts().await?;
        let now = redis_ms(redis).await?;
        let target = placement::choose_node(&nodes, &owned, now).map_or(self.id.clone(), |n| n.node.clone());
        for _ in 0..3 {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(&target)
                .arg("NX")
                .arg("PX")
                .arg(placement::LEASE_MS)
                .query_async(&mut *redis)
                .await?;
            if claimed.is_some() {
                return Ok(target);
            }
            let holder: Option<String> = redis::cmd("GET").arg(key).query_async(&mut *redis).await?;
            if let Some(holder) = holder {
                return Ok(holder);
            }
            // Released between the two: claim again.
        }
        Err(ClusterError::OwnerGone)
    }

    /// Takes a new room that another node placed here and forwarded the first request
    /// of: true when the claim is (now) this node's.
    pub async fn accept(&self, room: &str) -> Result<bool, ClusterError> {
        let mut redis = self.redis.clone();
        let lost: Vec<String> = redis::Script::new(CLAIM_OR_EXTEND)
            .key(room_key(room))
            .arg(&self.id)
            .arg(placement::LEASE_MS)
            .invoke_async(&mut redis)
            .await?;
        Ok(lost.is_empty())
    }

    /// Every live node's record.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        let mut redis = self.redis.clone();
        let keys = scan(&mut redis, "mcu:node:*").await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut redis).await?;
        let now = redis_ms(&mut redis).await?;
        let mut nodes: Vec<NodeRecord> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str::<NodeRecord>(&v).ok())
            .filter(|n| placement::is_live(n, now))
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// Rooms owned per node, from the ownership keys (current to the last claim).
    async fn owned_counts(&self) -> Result<HashMap<String, usize>, ClusterError> {
        let mut redis = self.redis.clone();
        let keys = scan(&mut redis, "mcu:room:*").await?;
        let mut counts = HashMap::new();
        if keys.is_empty() {
            return Ok(counts);
        }
        let owners: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut redis).await?;
        for owner in owners.into_iter().flatten() {
            *counts.entry(owner).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Publishes this node's record, reads (or sets) the cluster's secret, and
    /// extends (or, after Redis came back, claims afresh) the ownership of its rooms.
    pub async fn refresh(&self, state: &LocalState) -> Result<(), ClusterError> {
        let mut redis = self.redis.clone();
        let fresh_secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let _: Option<String> =
            redis::cmd("SET").arg(SECRET_KEY).arg(fresh_secret).arg("NX").query_async(&mut redis).await?;
        let secret: Option<String> = redis::cmd("GET").arg(SECRET_KEY).query_async(&mut redis).await?;
        let record = NodeRecord {
            node: self.id.clone(),
            url: self.url.clone(),
            rooms: state.rooms.len(),
            participants: state.rooms.iter().map(|r| r.participants).sum(),
            load: state.load,
            cpu_budget: state.cpu_budget,
            max_rooms: state.max_rooms,
            updated_ms: redis_ms(&mut redis).await?,
            room_list: state.rooms.clone(),
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        let _: () = redis::cmd("SET")
            .arg(node_key(&self.id))
            .arg(json)
            .arg("PX")
            .arg(placement::LEASE_MS)
            .query_async(&mut redis)
            .await?;
        let monotonic = self.started.elapsed().as_millis() as u64;
        let lapsed = self.learnt().clock.lapsed(monotonic);
        if !state.held.is_empty() {
            let claim = redis::Script::new(CLAIM_OR_EXTEND);
            let mut script = claim.prepare_invoke();
            for room in &state.held {
                script.key(room_key(room));
            }
            let lost: Vec<String> = script.arg(&self.id).arg(placement::LEASE_MS).invoke_async(&mut redis).await?;
            for key in lost {
                tracing::warn!(
                    room = key.trim_start_matches("mcu:room:"),
                    lapsed,
                    "another node owns a room running here"
                );
            }
        }
        let mut learnt = self.learnt();
        learnt.clock.refreshed(monotonic);
        learnt.secret = secret.map(String::into_bytes);
        learnt.reachable = true;
        Ok(())
    }

    /// Gives up rooms that closed here.
    pub async fn release(&self, rooms: &[String]) -> Result<(), ClusterError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        let release = redis::Script::new(RELEASE);
        let mut script = release.prepare_invoke();
        for room in rooms {
            script.key(room_key(room));
        }
        let _: i64 = script.arg(&self.id).invoke_async(&mut redis).await?;
        Ok(())
    }

    /// Leaves the cluster at once (graceful shutdown): this node's record and rooms
    /// go. Bounded to a second: an unreachable Redis must not hold up the shutdown
    /// (the leases run out by themselves).
    pub async fn deregister(&self, rooms: &[String]) {
        let leave = async {
            self.release(rooms).await?;
            let mut redis = self.redis.clone();
            let _: i64 = redis::cmd("DEL").arg(node_key(&self.id)).query_async(&mut redis).await?;
            Ok::<(), ClusterError>(())
        };
        match tokio::time::timeout(Duration::from_secs(1), leave).await {
            Ok(Ok(())) => tracing::info!(node = self.id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(node = self.id, error = %e, "cannot deregister (the leases run out in 10 s)"),
            Err(_) => tracing::warn!(node = self.id, "deregistering timed out (the leases run out in 10 s)"),
        }
    }

    /// Refreshes every [`placement::REFRESH_MS`] with what `state` reports, until
    /// `state` returns `None` (the server is gone).
    pub fn spawn_refresh(
        self: &Arc<Self>,
        state: impl Fn() -> Option<LocalState> + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(placement::REFRESH_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = state() else { return };
                let was_reachable = cluster.reachable();
                match cluster.refresh(&state).await {
                    Ok(()) if !was_reachable => tracing::info!(node = cluster.id, "registered in the cluster store"),
                    Ok(()) => {}
                    Err(e) => {
                        cluster.learnt().reachable = false;
                        if was_reachable {
                            tracing::warn!(node = cluster.id, error = %e, "cannot refresh this node in the cluster store; rooms keep running");
                        }
                    }
                }
            }
        })
    }
}

/// Unix time in ms on this machine's clock (signatures only: records use Redis's).
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Redis's clock, in Unix ms: every node's record times and liveness checks use it,
/// so nodes whose clocks differ agree on who is alive.
async fn redis_ms(redis: &mut ConnectionManager) -> Result<u64, ClusterError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(redis).await?;
    Ok(secs * 1000 + micros / 1000)
}

async fn scan(redis: &mut ConnectionManager, pattern: &str) -> Result<Vec<String>, ClusterError> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).query_async(redis).await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
