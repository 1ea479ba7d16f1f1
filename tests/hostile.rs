//! Peers that send what the server does not expect.

mod common;

use std::time::Duration;

use common::webrtcbin::WebrtcbinSession;
use common::{Server, color_matches, wait_for_pixels};
use mcu_bench::client::{ClientOptions, Endpoint};

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;

/// A publisher offering two cameras (two VP8 m-lines, red and blue): only the first
/// is mixed. Both streams fed into one decoder would interleave two pictures in one
/// jitter buffer: the cell would flicker between them or break up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_camera_of_one_peer_is_not_mixed_into_the_first() {
    let server = Server::start("");
    let url = server.url.clone();
    let _cameras =
        tokio::task::spawn_blocking(move || WebrtcbinSession::publish_cameras(&url, "two", &[RED, BLUE], 440))
            .await
            .unwrap()
            .unwrap();
    let viewer = server
        .join("two", ClientOptions { endpoint: Endpoint::Whep, video_color: None, tone_hz: None, ..Default::default() })
        .await;
    wait_for_pixels(&viewer, &[(640, 360, RED)], Duration::from_secs(10)).await.unwrap();
    // Three seconds of the cell, sampled every 50 ms: always the first camera.
    let mut seen = Vec::new();
    for _ in 0..60 {
        if let Some(rgb) = viewer.received.frame().and_then(|f| f.rgb_at(640, 360)) {
            seen.push(rgb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wrong: Vec<&[u8; 3]> = seen.iter().filter(|rgb| !color_matches(**rgb, RED)).collect();
    assert!(seen.len() > 30 && wrong.is_empty(), "{} of {} samples not red: {wrong:?}", wrong.len(), seen.len());
    let (_, state) = server.get_json("/rooms/two").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "{state}");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// A publisher whose keyframes declare a larger picture than `media.max_input_pixels`
/// is removed before a decoder allocates for it, and says why in the log; the others
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_with_oversized_keyframes_is_removed_and_the_room_goes_on() {
    // 640x480 = 307200 pixels, over the limit; 320x240 = 76800, under it.
    let server = Server::start("[media]\nmax_input_pixels = 100000\n");
    let small = server.join("big", common::publisher("small", BLUE, 660.0)).await;
    let url = server.url.clone();
    let _big =
        tokio::task::spawn_blocking(move || WebrtcbinSession::publish_sized(&url, "big", &[(RED, 640, 480)], 440))
            .await
            .unwrap()
            .unwrap();
    let removed = common::eventually(Duration::from_secs(10), || async {
        let (_, state) = server.get_json("/rooms/big").await;
        match state["participants"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?} participants: {state}")),
        }
    })
    .await;
    assert!(removed.is_ok(), "the oversized publisher is removed: {removed:?}");
    let (_, state) = server.get_json("/rooms/big").await;
    assert_eq!(state["participants"][0]["name"], "small");
    assert!(
        server.logs().iter().any(|l| l.contains("removing a publisher") && l.contains("640x480")),
        "the log says why"
    );
    // The one left still gets its composite.
    wait_for_pixels(&small, &[(640, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}
