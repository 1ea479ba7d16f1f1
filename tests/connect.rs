//! Every join connects. Many joins and leaves at once (the condition that used to
//! crash the server while a room's decode branches came and went), a client that
//! hangs up mid-join, and a room that stays responsive while joins negotiate.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Server, eventually};
use mcu_bench::connect::{ConnectPlan, ConnectSummary, run};

const CHURN: &str = "[server]\njoin_rate_per_min = 0\nmax_rooms = 200\n[media]\nwidth = 320\nheight = 180\n";

async fn gauges_all_zero(server: &Server) -> Result<(), String> {
    let m = server.gauges().await;
    let live: Vec<(&String, &f64)> = m.iter().filter(|(_, v)| **v != 0.0).collect();
    if live.is_empty() { Ok(()) } else { Err(format!("still live: {live:?}")) }
}

/// 160 real webrtc-rs peers, 24 in flight at once, in rooms of 3, with a busy loop on
/// every core: the conditions under which joins used to answer 201 and never
/// connect (see the README's architecture section). Each joins publishing audio and
/// video, waits for `connected` and leaves, so decode branches are added and removed
/// in the same pipelines all the time (which used to crash the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_and_leaves_at_once_on_a_busy_machine_all_connect() {
    let server = Server::start(CHURN);
    let hog = mcu_bench::connect::CpuHog::start();
    let plan = ConnectPlan {
        url: server.url.clone(),
        joins: 160,
        concurrency: 24,
        room_size: 3,
        room: "churn".into(),
        timeout: Duration::from_secs(10),
        audio_only: false,
    };
    let timings = run(&plan).await;
    drop(hog);
    let summary = ConnectSummary::of(&timings, plan.concurrency, true);
    eprintln!("{}\n{}", ConnectSummary::header(), summary.row());
    assert_eq!(summary.connected, plan.joins, "every join connects: {:#?}", summary.failures);

    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "the server is still up");
    assert_eq!(server.alarms(), Vec::<String>::new(), "no GStreamer critical, no panic");
    let r = eventually(Duration::from_secs(10), || gauges_all_zero(&server)).await;
    assert!(r.is_ok(), "everything freed after the last leave: {r:?}");
    let (_, rooms) = server.get_json("/rooms").await;
    assert_eq!(rooms, serde_json::json!([]));
}

/// A client that sends its offer and hangs up before the answer is never added: no
/// participant, no peer connection left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_join_is_not_added() {
    let server = Server::start(CHURN);
    let offer = mcu_bench::connect::sample_offer().await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    for _ in 0..5 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST /rooms/hangup/join HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        )
        .unwrap();
        stream.flush().unwrap();
        drop(stream);
    }
    // Whatever the timing, within a moment nothing of those joins remains.
    let r = eventually(Duration::from_secs(5), || async {
        let (status, state) = server.get_json("/rooms/hangup").await;
        if status != 404 {
            return Err(format!("room state {status}: {state}"));
        }
        gauges_all_zero(&server).await
    })
    .await;
    assert!(r.is_ok(), "hung-up joins left something behind: {r:?}");
}
