//! Three nodes sharing one Redis (started by the test, like the nodes): a room lives
//! on one node and any node answers for it; new rooms spread; a join race ends in one
//! room; a killed node's rooms are freed within 10 s and start again on a survivor;
//! Redis restarted under the cluster: nodes re-register, rooms keep going.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::sse::EventStream;
use common::{Server, publisher, wait_for_pixels};
use mcu_bench::client::{Client, ClientOptions};

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;

struct Cluster {
    redis: Redis,
    nodes: Vec<Option<Server>>,
}

/// A node of the cluster at `redis`, named `id`, on a port chosen beforehand (its
/// URL is announced to the others).
fn node(redis: &Redis, id: &str) -> Server {
    let port = common::free_server_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://127.0.0.1:{port}");
    let config = "[rtc]\ninclude_loopback = true\ninterfaces = [\"lo\"]\n";
    Server::start_with(
        Some(config),
        &[
            ("MCU_LISTEN", listen.as_str()),
            ("MCU_NODE_URL", url.as_str()),
            ("MCU_NODE_ID", id),
            ("MCU_REDIS_URL", redis.url().as_str()),
            ("MCU_MAX_CPU_CORES", "0"),
            ("MCU_JOIN_RATE_PER_MIN", "0"),
        ],
    )
}

/// Redis and three nodes, a, b and c, all registered; `None` (after saying why) where
/// Redis cannot run.
async fn cluster() -> Option<Cluster> {
    let redis = match Redis::start() {
        Ok(redis) => redis,
        Err(why) => {
            eprintln!("SKIPPED: no Redis here: {why}");
            return None;
        }
    };
    let nodes: Vec<Option<Server>> = ["a", "b", "c"].iter().map(|id| Some(node(&redis, id))).collect();
    let cluster = Cluster { redis, nodes };
    let registered = common::eventually(Duration::from_secs(10), || async {
        let (_, nodes) = cluster.at(0).get_json("/nodes").await;
        match nodes.as_array().map(Vec::len) {
            Some(3) => Ok(()),
            other => Err(format!("{other:?} nodes: {nodes}")),
        }
    })
    .await;
    assert!(registered.is_ok(), "{registered:?}");
    Some(cluster)
}

impl Cluster {
    fn at(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// Each listed room's node, as node `i` lists them.
    async fn placement(&self, i: usize) -> BTreeMap<String, (String, u64)> {
        let (_, rooms) = self.at(i).get_json("/rooms").await;
        rooms
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((r["room"].as_str()?.to_owned(), (r["node"].as_str()?.to_owned(), r["participants"].as_u64()?)))
            })
            .collect()
    }

    /// A participant joined to `room` through node `i`, the room's node and that
    /// node's index (the placement decides where the room goes).
    async fn room_through(&self, i: usize, room: &str) -> (Client, String, usize) {
        let client = self.at(i).join(room, listener("l")).await;
        assert!(client.wait_connected(Duration::from_secs(10)).await);
        let owner = self.owner_of(room).await.expect("the room is listed");
        let index = ["a", "b", "c"].iter().position(|id| owner == *id).expect("a known node");
        (client, owner, index)
    }

    /// The node `room` is listed on (by node a), once listed (within 5 s).
    async fn owner_of(&self, room: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some((node, _)) = self.placement(0).await.get(room) {
                return Some(node.clone());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

fn listener(name: &str) -> ClientOptions {
    ClientOptions { video_color: None, audio_only: true, ..publisher(name, 0, 440.0) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_joining_through_another_node_lands_in_the_rooms_node() {
    let Some(cluster) = cluster().await else { return };
    let first = cluster.at(0).join("meet", publisher("first", RED, 440.0)).await;
    let second = cluster.at(1).join("meet", publisher("second", BLUE, 660.0)).await;
    for client in [&first, &second] {
        wait_for_pixels(client, &[(320, 360, RED), (960, 360, BLUE)], Duration::from_secs(15)).await.unwrap();
    }
    // Every node lists the one room, on one node, with both.
    let agreed = common::eventually(Duration::from_secs(5), || async {
        let views = [cluster.placement(0).await, cluster.placement(1).await, cluster.placement(2).await];
        let meet: Vec<_> = views.iter().map(|v| v.get("meet").cloned()).collect();
        if meet.iter().all(|m| m.as_ref().is_some_and(|(_, n)| *n == 2)) && meet.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            Err(format!("{views:?}"))
        }
    })
    .await;
    assert!(agreed.is_ok(), "{agreed:?}");
    // The room's state, its event stream and its participants answer on any node.
    let (status, state) = cluster.at(2).get_json("/rooms/meet").await;
    assert_eq!((status, state["participants"].as_array().map(Vec::len)), (200, Some(2)), "{state}");
    let mut events = EventStream::open(cluster.at(2), "meet").await.expect("the event stream through node c");
    let (name, data) = events.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!((name.as_str(), data["participants"].as_array().map(Vec::len)), ("state", Some(2)), "{data}");
    assert_eq!(second.leave().await.unwrap(), 204, "DELETE through the node it joined by");
    let (name, data) = events.next(Duration::from_secs(5)).await.expect("the leave, relayed as it happens");
    assert_eq!(name, "left", "{data}");
}

/// A client cannot pose as a node: a forged forwarding header is ignored (the
/// request is forwarded to the room's node as any other), and a room is never
/// started a second time by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_forwarding_header_is_ignored() {
    let Some(cluster) = cluster().await else { return };
    let (_client, _, index) = cluster.room_through(0, "guarded").await;
    let elsewhere = (index + 1) % 3;
    let listed = common::eventually(Duration::from_secs(5), || async {
        match cluster.placement(elsewhere).await.contains_key("guarded") {
            true => Ok(()),
            false => Err("not listed yet".to_owned()),
        }
    })
    .await;
    assert!(listed.is_ok(), "{listed:?}");
    let forged = format!(
        "mallory;{};;00",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
    );
    let (status, state) = {
        let r = reqwest::Client::new()
            .get(format!("{}/rooms/guarded", cluster.at(elsewhere).url))
            .header("x-mcu-forwarded", forged.clone())
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap_or_default()).unwrap_or_default(),
        )
    };
    assert_eq!((status, state["participants"].as_array().map(Vec::len)), (200, Some(1)), "{state}");
    let offer =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/offers/chromium.sdp")).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/rooms/guarded/join", cluster.at(elsewhere).url))
        .header("content-type", "application/sdp")
        .header("x-mcu-forwarded", forged)
        .body(offer)
        .send()
        .await
        .unwrap();
    let placement = cluster.placement(elsewhere).await;
    assert_eq!(placement.get("guarded").map(|(node, _)| node.as_str()), Some(["a", "b", "c"][index]), "{placement:?}");
    drop(response);
    let listed: Vec<String> = [0, 1, 2].iter().filter(|&&i| i != index).map(|&i| cluster.at(i).url.clone()).collect();
    for url in listed {
        let rooms: serde_json::Value =
            serde_json::from_str(&reqwest::get(format!("{url}/rooms")).await.unwrap().text().await.unwrap()).unwrap();
        let here = rooms.as_array().unwrap().iter().filter(|r| r["room"] == "guarded").count();
        assert_eq!(here, 1, "one room of that name in the cluster: {rooms}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_new_rooms_spread_over_three_nodes() {
    let Some(cluster) = cluster().await else { return };
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..6 {
        let client = cluster.at(0).join(&format!("spread-{i}"), listener("l")).await;
        assert!(client.wait_connected(Duration::from_secs(10)).await, "room {i} connected");
        clients.push(client);
    }
    let spread = common::eventually(Duration::from_secs(5), || async {
        let placement = cluster.placement(1).await;
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for (node, _) in placement.values() {
            *per_node.entry(node.clone()).or_default() += 1;
        }
        if placement.len() == 6 && per_node.values().all(|&n| n == 2) { Ok(()) } else { Err(format!("{placement:?}")) }
    })
    .await;
    assert!(spread.is_ok(), "two rooms per node: {spread:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_joins_racing_for_a_new_room_on_two_nodes_meet_in_one() {
    let Some(cluster) = cluster().await else { return };
    for round in 0..3 {
        let room = format!("race-{round}");
        let (x, y) = tokio::join!(cluster.at(0).join(&room, listener("x")), cluster.at(1).join(&room, listener("y")));
        for client in [&x, &y] {
            assert!(client.wait_connected(Duration::from_secs(10)).await);
        }
        let (status, state) = cluster.at(2).get_json(&format!("/rooms/{room}")).await;
        assert_eq!((status, state["participants"].as_array().map(Vec::len)), (200, Some(2)), "{room}: {state}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_rooms_are_freed_within_ten_seconds_and_start_again_on_a_survivor() {
    let Some(mut cluster) = cluster().await else { return };
    let (_client, owner, index) = cluster.room_through(0, "doomed").await;
    let survivor = (index + 1) % 3;
    let killed_at = Instant::now();
    unsafe { libc::kill(cluster.at(index).pid() as i32, libc::SIGKILL) };
    cluster.nodes[index] = None;
    let freed = common::eventually(Duration::from_secs(15), || async {
        let listed = cluster.placement(survivor).await.contains_key("doomed");
        let (_, nodes) = cluster.at(survivor).get_json("/nodes").await;
        let nodes = nodes.as_array().map_or(0, Vec::len);
        if !listed && nodes == 2 { Ok(()) } else { Err(format!("listed {listed}, {nodes} nodes")) }
    })
    .await;
    let freed_after = killed_at.elapsed();
    eprintln!("a killed node's room freed after {freed_after:?}");
    assert!(freed.is_ok() && freed_after < Duration::from_secs(12), "{freed:?} after {freed_after:?}");
    let again = cluster.at(survivor).join("doomed", publisher("again", RED, 440.0)).await;
    wait_for_pixels(&again, &[(640, 360, RED)], Duration::from_secs(10)).await.unwrap();
    let placement = cluster.placement(survivor).await;
    let (node, participants) = placement.get("doomed").cloned().unwrap_or_default();
    assert!(node != owner && participants == 1, "restarted on a survivor: {placement:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_under_a_running_cluster_leaves_the_rooms_running() {
    let Some(mut cluster) = cluster().await else { return };
    let first = cluster.at(0).join("steady", publisher("first", RED, 440.0)).await;
    let _second = cluster.at(1).join("steady", publisher("second", BLUE, 660.0)).await;
    wait_for_pixels(&first, &[(320, 360, RED), (960, 360, BLUE)], Duration::from_secs(15)).await.unwrap();
    let listed = common::eventually(Duration::from_secs(5), || async {
        match cluster.placement(2).await.get("steady") {
            Some((_, 2)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(listed.is_ok(), "the room is listed everywhere: {listed:?}");
    let before = cluster.placement(2).await["steady"].clone();
    let (frames_before, started) = (first.received.frames_received.load(Ordering::Relaxed), Instant::now());
    cluster.redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.redis.restart().unwrap();
    let restarted = Instant::now();
    let back = common::eventually(Duration::from_secs(10), || async {
        let (_, nodes) = cluster.at(0).get_json("/nodes").await;
        let placement = cluster.placement(0).await;
        match (nodes.as_array().map(Vec::len), placement.get("steady")) {
            (Some(3), Some(room)) if *room == before => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("nodes registered and the room listed again {:?} after Redis restarted", restarted.elapsed());
    assert!(back.is_ok(), "{back:?}");
    let fps = (first.received.frames_received.load(Ordering::Relaxed) - frames_before) as f64
        / started.elapsed().as_secs_f64();
    eprintln!("the room meanwhile: {fps:.1} fps");
    assert!(fps >= 25.0, "the room kept going: {fps:.1} fps");
    // And the cluster takes joins again, into the same room.
    let third = cluster.at(2).join("steady", listener("third")).await;
    assert!(third.wait_connected(Duration::from_secs(10)).await);
    let (_, state) = cluster.at(0).get_json("/rooms/steady").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(3), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_with_sigterm_leaves_the_cluster_at_once_with_its_rooms() {
    let Some(mut cluster) = cluster().await else { return };
    let (_client, _, index) = cluster.room_through(2, "leaving").await;
    let other = (index + 1) % 3;
    let stopped_at = Instant::now();
    unsafe { libc::kill(cluster.at(index).pid() as i32, libc::SIGTERM) };
    let gone = common::eventually(Duration::from_secs(5), || async {
        let (_, nodes) = cluster.at(other).get_json("/nodes").await;
        let listed = cluster.placement(other).await.contains_key("leaving");
        match nodes.as_array().map(Vec::len) {
            Some(2) if !listed => Ok(()),
            n => Err(format!("{n:?} nodes, room listed {listed}")),
        }
    })
    .await;
    eprintln!("a stopped node left the cluster after {:?}", stopped_at.elapsed());
    assert!(gone.is_ok() && stopped_at.elapsed() < Duration::from_secs(3), "{gone:?}");
    let exit = cluster.nodes[index].as_mut().unwrap().wait_exit(Duration::from_secs(12));
    assert!(exit.is_some_and(|s| s.success()), "exited cleanly: {exit:?}");
    // The room's name is free at once: a join starts it on a node still running.
    let again = cluster.at(other).join("leaving", listener("again")).await;
    assert!(again.wait_connected(Duration::from_secs(10)).await);
}
