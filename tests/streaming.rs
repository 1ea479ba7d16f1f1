//! Live streaming out to a real RTMP server (nginx-rtmp on loopback): ffprobe finds
//! H.264 and AAC in what the server plays out, a frame pulled from it shows the grid,
//! a stream to a dead port retries without touching the conference, DELETE stops it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::rtmp::RtmpServer;
use common::{Server, color_matches, eventually, publisher, send_json, wait_for_pixels};
use mcu_bench::client::Client;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;

/// The first stream's state in the room state.
async fn stream_state(server: &Server, room: &str, id: &str) -> serde_json::Value {
    let (_, state) = server.get_json(&format!("/rooms/{room}")).await;
    state["streams"].as_array().and_then(|s| s.iter().find(|s| s["id"] == id).cloned()).unwrap_or_default()
}

/// Composite frames the server produced per second of media time, over the last
/// `frames` frames `client` received.
fn fps(client: &Client) -> f64 {
    client.received.media_fps(60).unwrap_or(0.0)
}

/// Streams and codecs ffprobe finds at `url`.
fn probe(url: &str) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "10000000", "-show_streams", "-of", "json", url])
        .output()
        .expect("ffprobe");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// One RGB frame of the live stream, scaled to 1280x720.
fn pull_frame(url: &str) -> Option<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-rw_timeout", "10000000", "-i", url, "-frames:v", "1"])
        .args(["-vf", "scale=1280:720", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .ok()?;
    (out.stdout.len() == 1280 * 720 * 3).then_some(out.stdout)
}

fn rgb_at(frame: &[u8], x: usize, y: usize) -> [u8; 3] {
    let at = (y * 1280 + x) * 3;
    [frame[at], frame[at + 1], frame[at + 2]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mix_goes_live_to_an_rtmp_server_and_a_dead_one_never_stalls_the_room() {
    let rtmp = RtmpServer::start();
    let server = Server::start("[recording]\nmax_streams_per_room = 2\n");
    let red = server.join("live", publisher("red", RED, 440.0)).await;
    let green = server.join("live", publisher("green", GREEN, 660.0)).await;
    wait_for_pixels(&red, &[(320, 360, RED), (960, 360, GREEN)], Duration::from_secs(15)).await.unwrap();

    // Bad requests first.
    let post = |room: &'static str, body: serde_json::Value| {
        let server = &server;
        async move { send_json(server, reqwest::Method::POST, &format!("/rooms/{room}/streams"), &body).await }
    };
    let (status, body) = post("live", serde_json::json!({ "url": "http://example.com/live/key" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("rtmp://"), "{body}");
    assert_eq!(post("live", serde_json::json!({ "address": "rtmp://a/b/c" })).await.0, 400);
    assert_eq!(post("nowhere", serde_json::json!({ "url": rtmp.url("x") })).await.0, 404);

    // A stream to nginx: connecting, then live.
    let (status, created) = post("live", serde_json::json!({ "url": rtmp.url("meeting") })).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["url"], rtmp.url("meeting"), "the creator gets the URL back");
    assert!(["connecting", "live"].contains(&created["state"].as_str().unwrap()), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let live = eventually(Duration::from_secs(20), || async {
        let stream = stream_state(&server, "live", &id).await;
        if stream["state"] == "live" { Ok(()) } else { Err(format!("{stream}")) }
    })
    .await;
    assert!(live.is_ok(), "the stream goes live: {live:?}\n{}", rtmp.log());
    let shown = stream_state(&server, "live", &id).await;
    assert_eq!(shown["url"], format!("rtmp://127.0.0.1:{}/live/****", rtmp.port), "the key is masked");

    // What a viewer of the channel gets: H.264 and AAC, and the grid.
    let url = rtmp.url("meeting");
    let probed = tokio::task::spawn_blocking(move || probe(&url)).await.unwrap();
    let codecs: Vec<&str> = probed["streams"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["codec_name"].as_str()).collect())
        .unwrap_or_default();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "ffprobe finds {codecs:?}: {probed}");
    let url = rtmp.url("meeting");
    let frame = tokio::task::spawn_blocking(move || pull_frame(&url)).await.unwrap().expect("a frame of the stream");
    for (x, y, color) in [(320, 360, RED), (960, 360, GREEN)] {
        assert!(color_matches(rgb_at(&frame, x, y), color), "({x},{y}) of the live stream: {:?}", rgb_at(&frame, x, y));
    }

    // A stream to a dead port retries; the conference keeps its frame rate.
    let before = fps(&red);
    let (status, dead) = post("live", serde_json::json!({ "url": "rtmp://127.0.0.1:1/live/dead" })).await;
    assert_eq!(status, 201, "{dead}");
    let dead_id = dead["id"].as_str().unwrap().to_owned();
    let retrying = eventually(Duration::from_secs(10), || async {
        let stream = stream_state(&server, "live", &dead_id).await;
        match stream["state"].as_str() {
            Some("retrying" | "failed") if stream["error"].is_string() => Ok(()),
            _ => Err(format!("{stream}")),
        }
    })
    .await;
    assert!(retrying.is_ok(), "{retrying:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = fps(&red);
    assert!(during >= before * 0.8, "composite at {during:.1} fps while a stream retries, {before:.1} before");
    assert_eq!(stream_state(&server, "live", &id).await["state"], "live", "the good stream is untouched");
    assert_eq!(post("live", serde_json::json!({ "url": rtmp.url("third") })).await.0, 409, "at most 2 streams");

    // DELETE stops a stream, once.
    for stream in [&dead_id, &id] {
        let (status, body) = send_json(
            &server,
            reqwest::Method::DELETE,
            &format!("/rooms/live/streams/{stream}"),
            &serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) =
        send_json(&server, reqwest::Method::DELETE, &format!("/rooms/live/streams/{id}"), &serde_json::json!({})).await;
    assert_eq!(status, 404);
    let (_, state) = server.get_json("/rooms/live").await;
    assert_eq!(state["streams"], serde_json::json!([]), "{state}");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
    red.close().await;
    green.close().await;
}
