//! Many nodes, one cluster: each node publishes itself and the rooms it owns in Redis
//! (contract v1.1, "Many nodes"). A room lives on one node; any node answers any
//! request for it by forwarding it to the owner (`api::cluster_routes`). Ownership is
//! a Redis key per room set with `NX` (two joins racing for a new room on two nodes
//! meet in one) and a lease: the owner extends it every 2 s, so a node that dies loses
//! its rooms within 10 s. Decisions are pure (`placement`); this module is the I/O.

pub mod placement;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterConfig;
use placement::{ClusterRoom, NodeRecord, RefreshClock};

/// Why the cluster could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis is unreachable or refused a command.
    #[error("cluster store unavailable: {0}")]
    Store(#[from] redis::RedisError),
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

/// Ownership of a room: extended when it is this node's; claimed afresh when the key
/// is gone (Redis restarted, or the lease lapsed while Redis was away).
const CLAIM_OR_EXTEND: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Gives a room up if this node owns it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

fn node_key(id: &str) -> String {
    format!("mcu:node:{id}")
}

fn room_key(room: &str) -> String {
    format!("mcu:room:{room}")
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What this node tells the cluster about itself each refresh.
#[derive(Debug, Clone, Default)]
pub struct LocalState {
    /// Its rooms.
    pub rooms: Vec<ClusterRoom>,
    /// Estimated CPU cores in use.
    pub load: f64,
}

/// This node's membership of the cluster.
pub struct Cluster {
    id: String,
    url: String,
    redis: ConnectionManager,
    clock: Mutex<RefreshClock>,
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
            .set_number_of_retries(2);
        let redis = client.get_connection_manager_lazy(manager)?;
        let url = node_url.trim_end_matches('/').to_owned();
        Ok(Some(Arc::new(Cluster { id: config.id(), url, redis, clock: Mutex::new(RefreshClock::default()) })))
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
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
            match record.and_then(|r| serde_json::from_str::<NodeRecord>(&r).ok()) {
                Some(r) if placement::is_live(&r, now_ms()) => return Ok(Placement::Remote { node, url: r.url }),
                // Silent for a lease: gone with its rooms (its key would lapse in a
                // moment anyway).
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

    /// Places a new room on the least-loaded live node (this one if none is known)
    /// and claims it for that node; returns whoever holds the claim (another node's
    /// placement may have won the race).
    async fn claim(&self, redis: &mut ConnectionManager, key: &str) -> Result<String, ClusterError> {
        let nodes = self.nodes().await?;
        let owned = self.owned_counts().await?;
        let target = placement::choose_node(&nodes, &owned, now_ms()).map_or(self.id.clone(), |n| n.node.clone());
        let claimed: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&target)
            .arg("NX")
            .arg("PX")
            .arg(placement::LEASE_MS)
            .query_async(redis)
            .await?;
        if claimed.is_some() {
            return Ok(target);
        }
        let holder: Option<String> = redis::cmd("GET").arg(key).query_async(redis).await?;
        Ok(holder.unwrap_or(target))
    }

    /// Every live node's record.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        let mut redis = self.redis.clone();
        let keys = self.scan(&mut redis, "mcu:node:*").await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut redis).await?;
        let now = now_ms();
        let mut nodes: Vec<NodeRecord> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str::<NodeRecord>(&v).ok())
            .filter(|n| placement::is_live(n, now))
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// Rooms owned per node, from the ownership keys.
    async fn owned_counts(&self) -> Result<HashMap<String, usize>, ClusterError> {
        let mut redis = self.redis.clone();
        let keys = self.scan(&mut redis, "mcu:room:*").await?;
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

    async fn scan(&self, redis: &mut ConnectionManager, pattern: &str) -> Result<Vec<String>, ClusterError> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(redis)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Publishes this node's record and extends (or, after Redis came back, claims
    /// afresh) the ownership of its rooms.
    pub async fn refresh(&self, state: &LocalState) -> Result<(), ClusterError> {
        let now = now_ms();
        let record = NodeRecord {
            node: self.id.clone(),
            url: self.url.clone(),
            rooms: state.rooms.len(),
            participants: state.rooms.iter().map(|r| r.participants).sum(),
            load: state.load,
            updated_ms: now,
            room_list: state.rooms.clone(),
        };
        let mut redis = self.redis.clone();
        let json = serde_json::to_string(&record).unwrap_or_default();
        let _: () = redis::cmd("SET")
            .arg(node_key(&self.id))
            .arg(json)
            .arg("PX")
            .arg(placement::LEASE_MS)
            .query_async(&mut redis)
            .await?;
        let script = redis::Script::new(CLAIM_OR_EXTEND);
        let lapsed = self.clock.lock().unwrap_or_else(|p| p.into_inner()).lapsed(now);
        for room in &state.rooms {
            let held: i64 = script
                .key(room_key(&room.room))
                .arg(&self.id)
                .arg(placement::LEASE_MS)
                .invoke_async(&mut redis)
                .await?;
            if held == 0 {
                tracing::warn!(
                    room = room.room,
                    lapsed,
                    "another node owns a room running here (its lease lapsed while Redis was away)"
                );
            }
        }
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).refreshed(now);
        Ok(())
    }

    /// Gives up a room that closed here.
    pub async fn release(&self, room: &str) {
        let mut redis = self.redis.clone();
        let released: Result<i64, _> =
            redis::Script::new(RELEASE).key(room_key(room)).arg(&self.id).invoke_async(&mut redis).await;
        if let Err(e) = released {
            tracing::warn!(room, error = %e, "cannot release a room in the cluster store (its lease runs out in 10 s)");
        }
    }

    /// Leaves the cluster at once (graceful shutdown): this node's record and rooms go.
    pub async fn deregister(&self, rooms: &[String]) {
        for room in rooms {
            self.release(room).await;
        }
        let mut redis = self.redis.clone();
        let removed: Result<i64, _> = redis::cmd("DEL").arg(node_key(&self.id)).query_async(&mut redis).await;
        match removed {
            Ok(_) => tracing::info!(node = self.id, "left the cluster"),
            Err(e) => tracing::warn!(node = self.id, error = %e, "cannot deregister (the record runs out in 10 s)"),
        }
    }

    /// Refreshes every [`placement::REFRESH_MS`] with what `state` reports, until the
    /// returned task is aborted.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        state: impl Fn() -> LocalState + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(placement::REFRESH_MS / 2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                if !cluster.clock.lock().unwrap_or_else(|p| p.into_inner()).due(now_ms()) {
                    continue;
                }
                match cluster.refresh(&state()).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(node = cluster.id, "cluster store reachable again: registered");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(node = cluster.id, error = %e, "cannot refresh this node in the cluster store; rooms keep running");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
