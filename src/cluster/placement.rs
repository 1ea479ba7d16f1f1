//! Pure cluster decisions: which nodes are alive, where a new room goes, whether a
//! node's leases may have lapsed. Times are milliseconds, passed in: record times
//! are Redis's clock (`TIME`), so nodes whose clocks differ agree on who is alive.

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
    /// Its CPU budget in cores (`None`: no limit).
    #[serde(default)]
    pub cpu_budget: Option<f64>,
    /// The most rooms it takes.
    #[serde(default = "unlimited")]
    pub max_rooms: usize,
    /// When it wrote this (Redis time, Unix ms).
    pub updated_ms: u64,
    /// Its rooms, for a cluster-wide `GET /rooms`.
    #[serde(default)]
    pub room_list: Vec<ClusterRoom>,
}

fn unlimited() -> usize {
    usize::MAX
}

/// Whether a record written at `updated_ms` is still alive at `now_ms`, both on
/// Redis's clock (Redis expires it too; this covers a record read just before).
pub fn is_live(record: &NodeRecord, now_ms: u64) -> bool {
    now_ms.saturating_sub(record.updated_ms) < LEASE_MS
}

/// The share of its CPU budget a node uses (its cores in use without a budget).
fn load_share(node: &NodeRecord) -> f64 {
    node.cpu_budget.filter(|b| *b > 0.0).map_or(node.load, |budget| node.load / budget)
}

/// Whether a node can take one more room: below its room cap and its CPU budget.
fn has_capacity(node: &NodeRecord, owned: usize) -> bool {
    owned.max(node.rooms) < node.max_rooms && node.cpu_budget.is_none_or(|b| node.load < b)
}

/// The least-loaded live node with capacity, for a new room: the one owning fewest
/// rooms (`owned`: counts from the ownership keys, current to the last claim, unlike
/// the records refreshed every 2 s), then the smallest share of its CPU budget, then
/// the fewest participants; ties by id, so that nodes deciding at once agree.
pub fn choose_node<'a>(nodes: &'a [NodeRecord], owned: &HashMap<String, usize>, now_ms: u64) -> Option<&'a NodeRecord> {
    let rooms = |n: &NodeRecord| owned.get(&n.node).copied().unwrap_or(0);
    nodes.iter().filter(|n| is_live(n, now_ms) && has_capacity(n, rooms(n))).min_by(|a, b| {
        rooms(a)
            .cmp(&rooms(b))
            .then(load_share(a).total_cmp(&load_share(b)))
            .then(a.participants.cmp(&b.participants))
            .then(a.node.cmp(&b.node))
    })
}

/// When a node last refreshed successfully (on its own monotonic clock), and
/// whether its leases may have lapsed meanwhile (Redis down or restarted).
#[derive(Debug, Clone, Copy, Default)]
pub struct RefreshClock {
    last_ok_ms: Option<u64>,
}

impl RefreshClock {
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
            cpu_budget: None,
            max_rooms: 64,
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
    fn a_node_at_its_room_cap_or_cpu_budget_takes_no_new_room() {
        let mut full = node("a", 0.0, 0, 0);
        full.max_rooms = 2;
        let mut busy = node("b", 3.9, 0, 0);
        busy.cpu_budget = Some(4.0);
        let mut spent = node("c", 4.0, 0, 0);
        spent.cpu_budget = Some(4.0);
        let owned = HashMap::from([("a".to_owned(), 2)]);
        let nodes = [full, busy, spent];
        assert_eq!(choose_node(&nodes, &owned, 0).unwrap().node, "b", "a is at its cap, c at its budget");
        assert!(choose_node(&nodes[2..], &owned, 0).is_none());
    }

    #[test]
    fn load_counts_as_a_share_of_each_nodes_budget() {
        let mut big = node("a", 3.0, 0, 0);
        big.cpu_budget = Some(16.0);
        let mut small = node("b", 1.0, 0, 0);
        small.cpu_budget = Some(2.0);
        assert_eq!(choose_node(&[big, small], &HashMap::new(), 0).unwrap().node, "a", "3 of 16 cores < 1 of 2");
    }

    #[test]
    fn leases_lapse_after_ten_seconds_without_a_refresh() {
        let mut clock = RefreshClock::default();
        assert!(clock.lapsed(0), "never refreshed");
        clock.refreshed(1_000);
        assert!(!clock.lapsed(10_999) && clock.lapsed(11_000));
    }
}
