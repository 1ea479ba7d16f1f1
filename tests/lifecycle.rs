//! Participants that vanish are removed and everything they used is freed; an empty
//! room costs nothing; SIGTERM exits cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, eventually, publisher};

/// Runs in a child process (re-executed test binary): joins and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for participant_that_vanishes_is_removed_and_freed"]
async fn helper_participant_that_will_be_killed() {
    let Ok(url) = std::env::var("MCU_TEST_SERVER") else { return };
    let client =
        mcu_bench::client::Client::join(&url, "vanish", publisher("doomed", 0x0000ff, 880.0)).await.expect("join");
    assert!(client.wait_connected(Duration::from_secs(10)).await);
    println!("JOINED");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn gauges(server: &Server) -> Vec<(&'static str, f64)> {
    let m = server.metrics().await;
    [
        "mcu_pipelines",
        "mcu_video_decoders",
        "mcu_audio_mixers",
        "mcu_audio_sources",
        "mcu_peer_connections",
        "mcu_track_readers",
    ]
    .into_iter()
    .map(|k| (k, m.get(k).copied().unwrap_or(-1.0)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn participant_that_vanishes_is_removed_and_freed() {
    let server = Server::start("");
    let stayer = server.join("vanish", publisher("stayer", 0xff0000, 440.0)).await;
    assert!(stayer.wait_connected(Duration::from_secs(10)).await);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_participant_that_will_be_killed", "--nocapture"])
        .env("MCU_TEST_SERVER", &server.url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "helper exited before joining");
        if line.contains("JOINED") {
            break;
        }
    }
    let (_, state) = server.get_json("/rooms/vanish").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2));
    let with_two = gauges(&server).await;
    assert!(with_two.contains(&("mcu_video_decoders", 2.0)), "{with_two:?}");
    assert!(with_two.contains(&("mcu_peer_connections", 2.0)), "{with_two:?}");

    // The process vanishes: no DELETE, no DTLS close.
    child.kill().unwrap();
    child.wait().unwrap();

    // Removed within the ICE failure timeout (10 s by default), with its decoder,
    // audio source, peer connection and readers freed.
    let r = eventually(Duration::from_secs(25), || async {
        let (_, state) = server.get_json("/rooms/vanish").await;
        let names: Vec<String> = state["participants"]
            .as_array()
            .map(|a| a.iter().map(|p| p["name"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default();
        if names != ["stayer"] {
            return Err(format!("participants {names:?}"));
        }
        let g = gauges(&server).await;
        let want = [
            ("mcu_pipelines", 1.0),
            ("mcu_video_decoders", 1.0),
            ("mcu_audio_mixers", 1.0),
            ("mcu_audio_sources", 1.0),
            ("mcu_peer_connections", 1.0),
            ("mcu_track_readers", 2.0),
        ];
        if g != want { Err(format!("gauges {g:?}")) } else { Ok(()) }
    })
    .await;
    assert!(r.is_ok(), "vanished participant: {r:?}");

    // The last one leaves: the room and all its media are gone.
    assert_eq!(stayer.leave().await.unwrap(), 204);
    let r = eventually(Duration::from_secs(10), || async {
        let (status, _) = server.get_json("/rooms/vanish").await;
        let g = gauges(&server).await;
        if status == 404 && g.iter().all(|(_, v)| *v == 0.0) { Ok(()) } else { Err(format!("{status} {g:?}")) }
    })
    .await;
    assert!(r.is_ok(), "empty room freed: {r:?}");
    let (_, rooms) = server.get_json("/rooms").await;
    assert_eq!(rooms, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_closes_peers_and_exits_zero() {
    let mut server = Server::start("");
    let client = server.join("bye", publisher("a", 0x00ff00, 660.0)).await;
    assert!(client.wait_connected(Duration::from_secs(10)).await);
    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(10)));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit within 10 s with status 0");
    // The server closed the peer connection rather than letting it time out.
    let r = eventually(Duration::from_secs(8), || async {
        use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState as S;
        match client.pc.connection_state() {
            S::Closed | S::Failed | S::Disconnected => Ok(()),
            s => Err(format!("{s}")),
        }
    })
    .await;
    assert!(r.is_ok(), "client saw the server go: {r:?}");
}
