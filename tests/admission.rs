//! Admission control: with a CPU budget, the join that would overflow it is refused
//! with 503 + Retry-After and a reason, before anything degrades; joins that fit (one
//! sharing a running encode) still get in, and the running room keeps its picture.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Server, publisher, wait_for_pixels};
use mcu_bench::client::{Client, ClientError};

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_join_that_would_overflow_the_budget_is_refused_and_the_room_plays_on() {
    // A room of two VP8 publishers is estimated at ~0.51 cores (compositor, two
    // decodes, one 720p VP8 encode); a second such room would need ~0.46 more.
    let config = "[rtc]\ninclude_loopback = true\ninterfaces = [\"lo\"]\n";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rec-admission-{}", std::process::id()));
    let dir = dir.display().to_string();
    let env = [("MCU_LISTEN", "127.0.0.1:0"), ("MCU_MAX_CPU_CORES", "0.9"), ("MCU_RECORDINGS_DIR", dir.as_str())];
    let server = Server::start_with(Some(config), &env);
    let red = server.join("a", publisher("red", RED, 440.0)).await;
    let green = server.join("a", publisher("green", GREEN, 660.0)).await;
    for c in [&red, &green] {
        assert!(c.wait_connected(Duration::from_secs(10)).await);
    }
    let grid = [(320, 360, RED), (960, 360, GREEN)];
    assert!(wait_for_pixels(&red, &grid, Duration::from_secs(20)).await.is_ok());

    let metrics = server.metrics().await;
    assert_eq!(metrics.get("mcu_cpu_budget_cores"), Some(&0.9));
    let used = metrics["mcu_cpu_estimated_cores"];
    assert!((0.4..0.6).contains(&used), "estimated use of one room of two: {used}");

    // A new room does not fit: 503, Retry-After, a reason naming the budget.
    let err = Client::join(&server.url, "b", publisher("blue", BLUE, 550.0)).await.err().expect("refused");
    match err {
        ClientError::Refused { status, body } => {
            assert_eq!(status, 503, "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
            let reason = json["error"].as_str().unwrap_or_default();
            assert!(reason.contains("CPU budget"), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // The same refusal seen over plain HTTP: it says when to retry.
    let offer = include_str!("fixtures/offers/chromium.sdp");
    let response = reqwest::Client::new()
        .post(format!("{}/rooms/b/join", server.url))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some(), "503 says when to retry");
    let (status, _) = server.get_json("/rooms/b").await;
    assert_eq!(status, 404, "the refused join built no room");

    // A third publisher in the running room shares its encode: it fits.
    let blue = server.join("a", publisher("blue", BLUE, 550.0)).await;
    assert!(blue.wait_connected(Duration::from_secs(10)).await);

    // An MP4 recording needs an H.264 encode nobody receives yet: it is counted.
    let before = server.metrics().await["mcu_cpu_estimated_cores"];
    let http = reqwest::Client::new();
    let recording = format!("{}/rooms/a/recording", server.url);
    let started = http
        .post(&recording)
        .header("content-type", "application/json")
        .body(r#"{"format": "mp4"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201, "{}", started.text().await.unwrap_or_default());
    let r = common::eventually(Duration::from_secs(5), || async {
        let after = server.metrics().await["mcu_cpu_estimated_cores"];
        if after > before + 0.1 { Ok(()) } else { Err(format!("{before} -> {after}")) }
    })
    .await;
    assert!(r.is_ok(), "the recording's encode counts against the budget: {r:?}");
    assert_eq!(http.delete(&recording).send().await.unwrap().status(), 200);

    // The room keeps its picture coming.
    let before = red.received.frames_received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let frames = red.received.frames_received.load(Ordering::Relaxed) - before;
    assert!(frames >= 60, "the running room keeps playing: {frames} frames in 3 s");
    for c in [red, green, blue] {
        c.close().await;
    }
}
