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
    let server = Server::start("");
    let mut red = server.join("stall", publisher("red", RED, 440.0)).await;
    let green = server.join("stall", publisher("green", GREEN, 660.0)).await;
    let two = [(320, 360, RED), (960, 360, GREEN)];
    let r = wait_for_pixels(&green, &two, Duration::from_secs(20)).await;
    assert!(r.is_ok(), "2-party grid: {r:?}");

    // Red's camera stops; the composite green receives keeps coming. The rate is
    // compared with the same receiver's rate just before, on the same machine: a
    // frozen mix gives ~0, a busy machine slows both windows alike.
    let frames_in = |secs: u64| {
        let received = green.received.clone();
        async move {
            let before = received.frames_received.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            received.frames_received.load(Ordering::Relaxed) - before
        }
    };
    let flowing = frames_in(2).await;
    red.stop_video();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = frames_in(2).await;
    eprintln!("composite frames in 2 s: {flowing} with both cameras, {stalled} after red's stalled");
    assert!(flowing > 0, "no composite frames at all");
    assert!(
        stalled * 10 >= flowing * 7,
        "the composite slowed down when an input stalled: {flowing} frames in 2 s before, {stalled} after"
    );
    let frame = green.received.frame().unwrap();
    let stalled_cell = frame.rgb_at(320, 360).unwrap();
    assert!(
        color_matches(stalled_cell, RED) || color_matches(stalled_cell, 0),
        "stalled input shows its last frame or black, got {stalled_cell:?}"
    );
    assert!(check_pixels(&frame, &[(960, 360, GREEN)]).is_ok(), "live input still shown");

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
