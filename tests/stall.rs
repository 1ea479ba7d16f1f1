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

    // Red's camera stops; the composite green receives keeps coming.
    red.stop_video();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = green.received.frames_decoded.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let decoded = green.received.frames_decoded.load(Ordering::Relaxed) - before;
    // 30 fps nominal: 60 frames in 2 s. Half of that is a stall-proof margin on a
    // loaded machine while a frozen mix would give ~0.
    assert!(decoded >= 30, "only {decoded} composite frames in 2 s after an input stalled");
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
