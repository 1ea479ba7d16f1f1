//! Through a real coturn (Debian's `turnserver`, started here on loopback with the
//! same deploy/turnserver.conf the compose file mounts): a participant that allows
//! only relayed candidates joins with the credentials from `GET /ice-servers` and
//! receives the mixed stream.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, publisher};
use mcu_bench::client::{Client, ClientOptions};
use webrtc::ice_transport::ice_server::RTCIceServer;

const TURN_SECRET: &str = "turn-test-secret";

struct Coturn(Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// coturn as deployed, plus what a loopback test needs: listen and relay on
/// 127.0.0.1, and allow relaying to the MCU there (loopback peers are otherwise
/// refused, like every private range in the config).
fn start_coturn(port: u16) -> Coturn {
    let binary = Path::new("/usr/bin/turnserver");
    assert!(binary.exists(), "coturn is not installed: run `make test-deps`");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/turnserver.conf");
    // Relay ports below the ephemeral range too (the listening port is 20000-29999).
    let relay = 30_000 + (port % 2_000);
    let coturn = Coturn(
        Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg(format!("--static-auth-secret={TURN_SECRET}"))
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args(["--allowed-peer-ip=127.0.0.1", "--allow-loopback-peers"])
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay + 200))
            .arg(format!("--pidfile={}/turnserver-{port}.pid", env!("CARGO_TARGET_TMPDIR")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver"),
    );
    // Ready once it answers a STUN binding request: holding its port is not enough
    // (it binds before its relay threads run, and a TURN allocation sent in between
    // goes unanswered; seen as an offer without relay candidates).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut request = webrtc::stun::message::Message::new();
    request
        .build(&[Box::new(webrtc::stun::agent::TransactionId::new()), Box::new(webrtc::stun::message::BINDING_REQUEST)])
        .unwrap();
    for _ in 0..100 {
        let _ = probe.send_to(&request.raw, ("127.0.0.1", port));
        let mut buf = [0u8; 1500];
        if probe.recv_from(&mut buf).is_ok() {
            return coturn;
        }
    }
    panic!("turnserver did not answer on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_only_participant_receives_the_mix_through_coturn() {
    let turn_port = common::free_server_port();
    let _coturn = start_coturn(turn_port);
    let server = Server::start(&format!(
        "[turn]\nurls = [\"turn:127.0.0.1:{turn_port}?transport=udp\"]\nsecret = {TURN_SECRET:?}\nttl_s = 600\n"
    ));
    let _red = server.join("relayed", publisher("red", 0xff0000, 440.0)).await;

    let (status, doc) = server.get_json("/ice-servers").await;
    assert_eq!(status, 200);
    let entry = &doc["iceServers"][0];
    let username = entry["username"].as_str().expect("TURN username").to_owned();
    assert!(username.ends_with(":anonymous"), "REST-scheme username: {username}");
    let ice_servers = vec![RTCIceServer {
        urls: entry["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect(),
        username,
        credential: entry["credential"].as_str().unwrap().to_owned(),
    }];
    let viewer = Client::join(
        &server.url,
        "relayed",
        ClientOptions { video_color: None, tone_hz: None, ice_servers, relay_only: true, ..Default::default() },
    )
    .await
    .expect("join through TURN");
    let offer = viewer.pc.local_description().await.expect("local description").sdp;
    assert!(offer.contains("typ relay"), "the offer has relayed candidates:\n{offer}");
    assert!(!offer.contains("typ host"), "and no host candidates:\n{offer}");
    assert!(viewer.wait_connected(Duration::from_secs(15)).await, "connected through the relay");

    common::wait_for_pixels(&viewer, &[(640, 360, 0xff0000)], Duration::from_secs(15))
        .await
        .expect("the composite arrives through the relay");
    let frames = viewer.received.frames_decoded();
    eprintln!("relayed viewer decoded {frames} composite frames");
}
