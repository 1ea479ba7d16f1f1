//! Pure cluster decisions: which nodes are alive, where a new room goes, when a node
//! refreshes what it holds. Times are milliseconds of the Unix clock, passed in.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A node silent this long is gone, with its rooms (the contract's 10 s); also the
/// lifetime of every key a node writes.
pub const LEASE_MS: u64 = 10_000;
/// How often a node refreshes its record and its rooms' ownership (at least every
/// 2 s, as the contract asks).
pub const REFRESH_MS: u64 = 2_000;

/// One room as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRoom {
    /// Room name.
    pub room: String,
    /// Participant count.
    pub participants: usize,
    /// Whether it is being recorded.
    pub recording: bool,
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub node: String,
    /// Its HTTP base URL.
    pub url: String,
    /// Rooms it runs.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
    /// CPU cores its media is estimated to use (admission control's figure).
    pub load: f64,
    /// When it wrote this (Unix ms).
    pub updated_ms: u64,
    /// Its rooms, for a cluster-wide `GET /rooms`.
    #[serde(default)]
    pub room_list: Vec<ClusterRoom>,
}

/// Whether a record written at `updated_ms` is still alive at `now_ms` (Redis expires
/// it too; this also covers a clock that went backwards, and a record read just
/// before it expired).
pub fn is_live(record: &NodeRecord, now_ms: u64) -> bool {
    now_ms.saturating_sub(record.updated_ms) < LEASE_MS
}

/// The live node a new room goes to: the one owning fewest rooms (`owned`: counts
/// from the ownership keys, current to the last claim, unlike the records), then the
/// least CPU load, then the fewest participants; ties by id, so that nodes deciding
/// at once agree.
pub fn choose_node<'a>(nodes: &'a [NodeRecord], owned: &HashMap<String, usize>, now_ms: u64) -> Option<&'a NodeRecord> {
    nodes.iter().filter(|n| is_live(n, now_ms)).min_by(|a, b| {
        let rooms = |n: &NodeRecord| owned.get(&n.node).copied().unwrap_or(0);
        rooms(a)
            .cmp(&rooms(b))
            .then(a.load.total_cmp(&b.load))
            .then(a.participants.cmp(&b.participants))
            .then(a.node.cmp(&b.node))
    })
}

/// When a node last refreshed successfully, and whether its leases may have lapsed
/// meanwhile (Redis down or restarted): then it claims its rooms afresh rather than
/// only extending them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefreshClock {
    last_ok_ms: Option<u64>,
}

impl RefreshClock {
    /// Whether a refresh is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.last_ok_ms.is_none_or(|last| now_ms.saturating_sub(last) >= REFRESH_MS)
    }

    /// Whether this node's leases may have lapsed by `now_ms` (never refreshed, or not
    /// for a whole lease).
    pub fn lapsed(&self, now_ms: u64) -> bool {
        self.last_ok_ms.is_none_or(|last| now_ms.saturating_sub(last) >= LEASE_MS)
    }

    /// A refresh succeeded at `now_ms`.
    pub fn refreshed(&mut self, now_ms: u64) {
        self.last_ok_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, load: f64, participants: usize, updated_ms: u64) -> NodeRecord {
        NodeRecord {
            node: id.into(),
            url: format!("http://{id}"),
            rooms: 0,
            participants,
            load,
            updated_ms,
            room_list: Vec::new(),
        }
    }

    #[test]
    fn a_new_room_goes_to_the_node_owning_fewest_rooms_then_least_loaded() {
        let nodes = [node("a", 0.5, 3, 1000), node("b", 0.2, 8, 1000), node("c", 0.2, 1, 1000)];
        let owned = HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 1), ("c".to_owned(), 2)]);
        assert_eq!(choose_node(&nodes, &owned, 2000).unwrap().node, "b", "fewest rooms, then load");
        let none_owned = HashMap::new();
        assert_eq!(choose_node(&nodes, &none_owned, 2000).unwrap().node, "c", "equal load: fewer participants");
    }

    #[test]
    fn six_rooms_placed_one_after_another_spread_over_three_nodes() {
        let nodes = [node("a", 0.0, 0, 0), node("b", 0.0, 0, 0), node("c", 0.0, 0, 0)];
        let mut owned: HashMap<String, usize> = HashMap::new();
        for _ in 0..6 {
            let chosen = choose_node(&nodes, &owned, 100).unwrap().node.clone();
            *owned.entry(chosen).or_default() += 1;
        }
        assert_eq!(owned.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn a_node_silent_for_a_lease_is_not_chosen() {
        let nodes = [node("a", 0.0, 0, 0), node("b", 9.0, 50, 9_000)];
        assert_eq!(choose_node(&nodes, &HashMap::new(), 9_999).unwrap().node, "a");
        assert_eq!(choose_node(&nodes, &HashMap::new(), 10_000).unwrap().node, "b", "a's record is 10 s old");
        assert!(choose_node(&nodes, &HashMap::new(), 19_000).is_none());
    }

    #[test]
    fn refreshes_are_due_every_two_seconds_and_leases_lapse_after_ten() {
        let mut clock = RefreshClock::default();
        assert!(clock.due(0) && clock.lapsed(0), "never refreshed");
        clock.refreshed(1_000);
        assert!(!clock.due(2_999) && clock.due(3_000));
        assert!(!clock.lapsed(10_999) && clock.lapsed(11_000));
    }
}
