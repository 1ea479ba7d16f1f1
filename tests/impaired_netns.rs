//! Loss on a real link: one client of the call runs in a network namespace of its own,
//! joined to the server's host by a veth pair, and nftables drops 5 % of the UDP
//! packets at the receiving side's input (the server's for a publisher's uplink, the
//! client's for a receiver's downlink): lost on the wire, as far as either end can
//! tell. NACK/RTX and PLI must repair the picture, Opus FEC and concealment the sound.
//! (Delay, jitter and outages are in `impaired.rs`, through a relay: this kernel has
//! no netem.) Skipped, saying why, where namespaces cannot be made.

mod common;

use std::time::Duration;

use common::netns::Namespace;
use common::watch::{longest_audio_gap_ms, watch_cell};
use common::{Server, publisher, wait_for_pixels};
use mcu_bench::client::{ClientOptions, Received};

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;
/// Centres of the two cells of the grid (the publisher `p` joined first).
const P_CELL: (u32, u32) = (320, 360);
const V_CELL: (u32, u32) = (960, 360);

/// The server on the host, its candidate on the host's end of the veth pair (the
/// clients outside the namespace reach it too: see `options`).
fn server_for(ns: &Namespace) -> Server {
    let config = format!("[rtc]\ninterfaces = [\"{}\"]\n", ns.host_interface);
    let listen = format!("{}:0", ns.host_address);
    Server::start_with(Some(&config), &[("MCU_LISTEN", listen.as_str()), ("MCU_MAX_CPU_CORES", "0")])
}

/// A client gathering on every interface: one on the host reaches the server's
/// address on the veth pair from that same address (an answer from loopback to a
/// check sent there would be refused).
fn options(name: &str, color: u32, hz: f32) -> ClientOptions {
    ClientOptions { audio_fec: true, loopback_only: false, ..publisher(name, color, hz) }
}

/// `v` watches `p`'s cell and listens to `p` for 6 s under the loss.
async fn assert_call_holds(v: &Received, ns: &Namespace, what: &str) {
    v.clear_audio();
    let (share, longest_wrong) = watch_cell(v, P_CELL, RED, Duration::from_secs(6)).await;
    let gap = longest_audio_gap_ms(v, 5);
    let fps = v.media_fps(60).unwrap_or(0.0);
    let dropped = ns.dropped();
    eprintln!(
        "{what}: p's cell right in {:.1} % of samples (longest wrong {longest_wrong:?}), longest audio gap {gap} ms, \
         {fps:.1} fps; {dropped} packets dropped by nftables",
        share * 100.0
    );
    assert!(dropped > 0, "{what}: the loss rule dropped nothing");
    assert!(share >= 0.95 && longest_wrong < Duration::from_secs(1), "{what}: picture {share:.3}, {longest_wrong:?}");
    assert!(gap < 100.0, "{what}: audio gap of {gap} ms");
    assert!(fps >= 25.0, "{what}: {fps:.1} fps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_at_the_servers_input_from_a_publisher_is_repaired() {
    let Some(ns) = Namespace::or_skip() else { return };
    let server = server_for(&ns);
    let p = ns.join(&server.url, "net", options("p", RED, 440.0)).await;
    let v = server.join("net", options("v", BLUE, 660.0)).await;
    wait_for_pixels(&v, &[(P_CELL.0, P_CELL.1, RED), (V_CELL.0, V_CELL.1, BLUE)], Duration::from_secs(10))
        .await
        .unwrap();
    ns.lose_on_host_input(5).unwrap();
    assert_call_holds(&v.received, &ns, "5 % loss, publisher uplink (server input)").await;
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_at_a_receivers_input_is_repaired() {
    let Some(ns) = Namespace::or_skip() else { return };
    let server = server_for(&ns);
    let _p = server.join("net", options("p", RED, 440.0)).await;
    let v = ns.join(&server.url, "net", options("v", BLUE, 660.0)).await;
    let shown = common::eventually(Duration::from_secs(10), || async {
        match v.received.frame() {
            Some(frame) => common::check_pixels(&frame, &[(P_CELL.0, P_CELL.1, RED), (V_CELL.0, V_CELL.1, BLUE)]),
            None => Err("no frame yet".into()),
        }
    })
    .await;
    assert!(shown.is_ok(), "{shown:?}");
    ns.lose_on_namespace_input(5).unwrap();
    assert_call_holds(&v.received, &ns, "5 % loss, receiver downlink (client input)").await;
}

/// A server configured with two interfaces (loopback and the veth pair's) gathers on
/// the first only, and every join connects. With a candidate on each, webrtc-rs
/// credited a check's answer to whichever candidate's reading loop took it from the
/// shared media port, and 2 joins in 6 stayed "connecting".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_on_a_host_with_two_addresses_connects_every_join() {
    let Some(ns) = Namespace::or_skip() else { return };
    let config = format!("[rtc]\ninclude_loopback = true\ninterfaces = [\"lo\", \"{}\"]\n", ns.host_interface);
    let server = Server::start_with(Some(&config), &[("MCU_LISTEN", "127.0.0.1:0"), ("MCU_MAX_CPU_CORES", "0")]);
    let mut stalled = Vec::new();
    for round in 0..12 {
        let client = server.join(&format!("two-{round}"), publisher("p", RED, 440.0)).await;
        if !client.wait_connected(Duration::from_secs(5)).await {
            stalled.push((round, client.pc.connection_state()));
        }
        client.close().await;
    }
    assert!(stalled.is_empty(), "joins that never connected: {stalled:?}");
}
