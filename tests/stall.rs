//! The composite keeps its frame rate when a publisher's camera stalls, and a
//! receiver's PLI is answered with a keyframe within 1 s.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Server, check_pixels, color_matches, eventually, publisher, wait_for_pixels};

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_keeps_flowing_when_an_input_stalls_and_pli_gets_a_keyframe() {
    // A 640x360 canvas: the property is the same at any size, and this keeps the
    // server and the two clients beside it far from the machine's limit.
    let server = Server::start("[media]\nwidth = 640\nheight = 360\n");
    let mut red = server.join("stall", publisher("red", RED, 440.0)).await;
    let green = server.join("stall", publisher("green", GREEN, 660.0)).await;
    let two = [(160, 180, RED), (480, 180, GREEN)];
    let r = wait_for_pixels(&green, &two, Duration::from_secs(20)).await;
    assert!(r.is_ok(), "2-party grid: {r:?}");

    // Red's camera stops; the composite green receives keeps its frame rate. The rate
    // is read from the frames' RTP timestamps (media time): what the server produced,
    // whatever the network or this machine's load did to their arrival. A frozen mix
    // gives no frames, one that waits for the stalled input gives fewer.
    let flowing = green.received.frames_received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flowing = green.received.frames_received.load(Ordering::Relaxed) - flowing;
    eprintln!(
        "with both cameras: {flowing} frames, {:.1} fps in media time",
        green.received.media_fps(flowing as usize).unwrap_or(0.0)
    );
    red.stop_video();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = green.received.frames_received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrived = green.received.frames_received.load(Ordering::Relaxed) - before;
    let fps = green.received.media_fps(arrived as usize).unwrap_or(0.0);
    eprintln!("after red's camera stalled: {arrived} composite frames in 2 s, {fps:.1} fps in media time");
    assert!(arrived >= 2, "the composite froze: {arrived} frames in 2 s");
    assert!(fps >= 27.0, "the composite lost its frame rate: {fps:.1} fps (30 nominal)");
    let frame = green.received.frame().unwrap();
    let stalled_cell = frame.rgb_at(160, 180).unwrap();
    assert!(
        color_matches(stalled_cell, RED) || color_matches(stalled_cell, 0),
        "stalled input shows its last frame or black, got {stalled_cell:?}"
    );
    assert!(check_pixels(&frame, &[(480, 180, GREEN)]).is_ok(), "live input still shown");

    // PLI -> keyframe within 1 s, three times (the periodic keyframe is every 10 s).
    for attempt in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let keyframes = green.received.keyframes.load(Ordering::Relaxed);
        let asked = Instant::now();
        assert!(green.request_keyframe().await, "PLI sent");
        let r = eventually(Duration::from_millis(1000), || {
            let received = green.received.clone();
            async move {
                if received.keyframes.load(Ordering::Relaxed) > keyframes {
                    Ok(())
                } else {
                    Err("no keyframe".to_owned())
                }
            }
        })
        .await;
        assert!(r.is_ok(), "attempt {attempt}: no keyframe within 1 s of PLI");
        assert!(
            asked.elapsed() <= Duration::from_millis(1200),
            "attempt {attempt}: keyframe after {:?}",
            asked.elapsed()
        );
    }
}
