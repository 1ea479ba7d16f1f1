//! Calls over bad networks: each client's packets cross an impairing relay
//! (`common::relay`): 5 % loss, 50 ± 20 ms of jitter (which reorders), and 2 s
//! outages, on a publisher's uplink and on a receiver's downlink. The publisher `p`
//! (red, 440 Hz) and the receiver `v` (blue, 660 Hz) share a room; `v` sees `p` in the
//! left cell and hears only `p`. Recovery times are printed.

mod common;

use std::time::{Duration, Instant};

use common::relay::{Impairment, Relay};
use common::watch::{longest_audio_gap_ms, watch_cell};
use common::{Server, color_matches, publisher, wait_for_pixels};
use mcu_bench::client::{Client, ClientOptions};

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;
const GREEN: u32 = 0x00ff00;
/// Centres of the two cells of the grid (`p` joined first).
const P_CELL: (u32, u32) = (320, 360);
const V_CELL: (u32, u32) = (960, 360);

struct Call {
    _server: Server,
    p: Client,
    v: Client,
    p_link: Relay,
    v_link: Relay,
}

async fn call() -> Call {
    let server = Server::start("");
    let (p_link, v_link) = (Relay::start().await, Relay::start().await);
    let options = |name: &str, color, hz, link: &Relay| ClientOptions {
        audio_fec: true,
        sdp_rewrite: Some(link.rewrite()),
        ..publisher(name, color, hz)
    };
    let p = server.join("net", options("p", RED, 440.0, &p_link)).await;
    let v = server.join("net", options("v", BLUE, 660.0, &v_link)).await;
    for c in [&p, &v] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "connected through the relay");
    }
    wait_for_pixels(&v, &[(P_CELL.0, P_CELL.1, RED), (V_CELL.0, V_CELL.1, BLUE)], Duration::from_secs(10))
        .await
        .unwrap();
    Call { _server: server, p, v, p_link, v_link }
}

/// Time from now until `client` shows `color` at `at` (`None` after `limit`).
async fn time_until_shown(client: &Client, at: (u32, u32), color: u32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if client.received.frame().and_then(|f| f.rgb_at(at.0, at.1)).is_some_and(|rgb| color_matches(rgb, color)) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Asserts the picture stayed right and the tone continuous under an impairment.
async fn assert_call_holds(call: &Call, what: &str) {
    call.v.received.clear_audio();
    let (share, longest_wrong) = watch_cell(&call.v.received, P_CELL, RED, Duration::from_secs(6)).await;
    let gap = longest_audio_gap_ms(&call.v.received, 5);
    let fps = call.v.received.media_fps(60).unwrap_or(0.0);
    let [[(p_up, p_up_lost), _], [_, (v_down, v_down_lost)]] = [call.p_link.counts(), call.v_link.counts()];
    eprintln!(
        "{what}: p's cell right in {:.1} % of samples (longest wrong {longest_wrong:?}), longest audio gap {gap} ms, \
         {fps:.1} fps; packets: p's uplink {p_up} passed {p_up_lost} dropped, v's downlink {v_down} passed \
         {v_down_lost} dropped",
        share * 100.0
    );
    assert!(share >= 0.95 && longest_wrong < Duration::from_secs(1), "{what}: picture {share:.3}, {longest_wrong:?}");
    assert!(gap < 100.0, "{what}: audio gap of {gap} ms");
    assert!(fps >= 25.0, "{what}: {fps:.1} fps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_on_a_publishers_uplink_is_repaired() {
    let call = call().await;
    call.p_link.set_uplink(Impairment { loss: 0.05, ..Default::default() });
    assert_call_holds(&call, "5 % loss, publisher uplink").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_on_a_receivers_downlink_is_repaired() {
    let call = call().await;
    call.v_link.set_downlink(Impairment { loss: 0.05, ..Default::default() });
    assert_call_holds(&call, "5 % loss, receiver downlink").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jitter_and_reordering_on_both_sides_are_absorbed() {
    let call = call().await;
    let jittery =
        Impairment { delay: Duration::from_millis(50), jitter: Duration::from_millis(20), ..Default::default() };
    call.p_link.set_uplink(jittery.clone());
    call.v_link.set_downlink(jittery);
    assert_call_holds(&call, "50 ± 20 ms jitter, publisher uplink and receiver downlink").await;
}

/// `p` changes colour during a 2 s outage of `link` (its uplink or `v`'s downlink):
/// the time from the end of the outage until `v` shows the new colour.
async fn recovery_after_outage(call: &Call, uplink: bool) -> Duration {
    let until = Instant::now() + Duration::from_secs(2);
    let outage = Impairment { outage_until: Some(until), ..Default::default() };
    if uplink {
        call.p_link.set_uplink(outage);
    } else {
        call.v_link.set_downlink(outage);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.p.cue(GREEN);
    if uplink {
        // The mix goes on for everyone else: v's own cell and frame rate.
        let (share, _) = watch_cell(&call.v.received, V_CELL, BLUE, Duration::from_secs(1)).await;
        let fps = call.v.received.media_fps(30).unwrap_or(0.0);
        assert!(share >= 0.95 && fps >= 25.0, "during p's outage v still gets the mix: {share:.2}, {fps:.1} fps");
    }
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let recovered = time_until_shown(&call.v, P_CELL, GREEN, Duration::from_secs(5)).await;
    recovered.expect("the picture recovers within 5 s of the outage's end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_two_second_outage_on_a_publishers_uplink_recovers_within_a_second() {
    let call = call().await;
    let recovery = recovery_after_outage(&call, true).await;
    eprintln!("2 s outage, publisher uplink: picture current again {recovery:?} after it ended");
    assert!(recovery < Duration::from_secs(1), "frozen for {recovery:?} after the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_two_second_outage_on_a_receivers_downlink_recovers_within_a_second() {
    let call = call().await;
    let recovery = recovery_after_outage(&call, false).await;
    eprintln!("2 s outage, receiver downlink: picture current again {recovery:?} after it ended");
    assert!(recovery < Duration::from_secs(1), "frozen for {recovery:?} after the outage");
}
