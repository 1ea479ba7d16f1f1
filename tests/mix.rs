//! Three real participants: each sees the contract's grid with everyone's colour and
//! hears the other two tones but not its own (mix-minus). A publisher who says
//! nothing leaves the mix and hears everyone from the shared full-mix encode.

mod common;

use std::time::Duration;

use common::{Server, check_pixels, eventually, fresh_tone_levels, publisher, tone_levels};
use mcu::layout::{cell_at, fit_in_cell, grid_cells};
use mcu_bench::client::ClientOptions;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;
const BLACK: u32 = 0x000000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_participants_see_the_grid_and_hear_everyone_but_themselves() {
    let server = Server::start("");
    let people = [("red", RED, 440.0), ("green", GREEN, 660.0), ("blue", BLUE, 880.0)];
    let mut clients = Vec::new();
    for (name, color, hz) in people {
        clients.push(server.join("mix", publisher(name, color, hz)).await);
    }
    for c in &clients {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }

    // Video: the 2x2 grid, each 320x240 picture pillarboxed in its 640x360 cell.
    let cells = grid_cells(1280, 720, 3);
    let fourth = cell_at(1280, 720, 2, 2, 3);
    let mut expected: Vec<(u32, u32, u32)> = Vec::new();
    for (cell, (_, color, _)) in cells.iter().zip(people) {
        let (cx, cy) = cell.center();
        expected.push((cx, cy, color));
        let picture = fit_in_cell(*cell, 320, 240);
        // Inside the picture near its left edge, and in the black bar beside it.
        expected.push((picture.x + 10, cy, color));
        expected.push((cell.x + (picture.x - cell.x) / 2, cy, BLACK));
    }
    expected.push((fourth.center().0, fourth.center().1, BLACK));
    for (i, c) in clients.iter().enumerate() {
        let received = c.received.clone();
        let result = eventually(Duration::from_secs(20), || {
            let received = received.clone();
            let expected = expected.clone();
            async move {
                let frame = received.frame().ok_or("no frame decoded yet")?;
                if (frame.width, frame.height) != (1280, 720) {
                    return Err(format!("composite is {}x{}", frame.width, frame.height));
                }
                check_pixels(&frame, &expected)
            }
        })
        .await;
        assert!(result.is_ok(), "participant {i} composite: {result:?}");
        let frame = c.received.frame().unwrap();
        eprintln!(
            "participant {i} cell centres: {:?}",
            cells.iter().map(|r| frame.rgb_at(r.center().0, r.center().1)).collect::<Vec<_>>()
        );
    }

    // Audio: 2 s of fresh mix, each hears the other two tones, not its own.
    for c in &clients {
        c.received.clear_audio();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let tones = [440.0, 660.0, 880.0];
    for (i, c) in clients.iter().enumerate() {
        let pcm = c.received.recent_audio(65_536);
        assert!(pcm.len() >= 65_536, "participant {i} got {} samples of audio", pcm.len());
        let levels = tone_levels(&pcm, &tones);
        eprintln!("participant {i} tone levels 440/660/880 Hz: {levels:.3?}");
        for (j, level) in levels.iter().enumerate() {
            if i == j {
                assert!(*level < 0.05, "participant {i} hears its own tone {} Hz at {level:.3}: {levels:?}", tones[j]);
            } else {
                assert!(*level > 0.3, "participant {i} misses tone {} Hz ({level:.3}): {levels:?}", tones[j]);
            }
        }
    }

    // Room state lists all three, in join order, publishing both media.
    let (status, state) = server.get_json("/rooms/mix").await;
    assert_eq!(status, 200);
    let names: Vec<&str> =
        state["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["red", "green", "blue"]);
    assert!(state["participants"].as_array().unwrap().iter().all(|p| p["audio"] == true && p["video"] == true));
    assert_eq!(state["layout"], "grid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_publisher_leaves_the_mix_and_hears_everyone() {
    let server = Server::start("");
    let voice = |name: &str, hz: f32, silent: bool| ClientOptions {
        video_color: None,
        audio_only: true,
        start_muted: silent,
        ..publisher(name, 0, hz)
    };
    let a = server.join("vad", voice("a", 440.0, false)).await;
    let b = server.join("vad", voice("b", 660.0, false)).await;
    let quiet = server.join("vad", voice("quiet", 880.0, true)).await;
    for c in [&a, &b, &quiet] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }
    let speakers = |n: f64| {
        let server = &server;
        async move {
            let m = server.metrics().await;
            let now = m.get("mcu_audio_speakers").copied().unwrap_or(-1.0);
            if now == n { Ok(()) } else { Err(format!("mcu_audio_speakers {now}, want {n}")) }
        }
    };
    let two = eventually(Duration::from_secs(10), || speakers(2.0)).await;
    assert!(two.is_ok(), "two talk, one is silent: {two:?}");

    let tones = [440.0, 660.0, 880.0];
    let levels = fresh_tone_levels(&quiet, &tones).await;
    eprintln!("silent publisher hears 440/660/880 Hz: {levels:.3?}");
    assert!(levels[0] > 0.3 && levels[1] > 0.3, "the silent publisher hears both speakers: {levels:?}");
    let levels = fresh_tone_levels(&a, &tones).await;
    eprintln!("speaker a hears 440/660/880 Hz: {levels:.3?}");
    assert!(levels[0] < 0.05 && levels[1] > 0.3, "a speaker hears the other, not herself: {levels:?}");

    // The silent one speaks up: she is in the mix at once, with her own encode.
    quiet.cue(0);
    let three = eventually(Duration::from_secs(5), || speakers(3.0)).await;
    assert!(three.is_ok(), "all three talk: {three:?}");
    let levels = fresh_tone_levels(&a, &tones).await;
    eprintln!("speaker a hears 440/660/880 Hz: {levels:.3?}");
    assert!(levels[2] > 0.3 && levels[0] < 0.05, "a hears the new speaker: {levels:?}");
    let levels = fresh_tone_levels(&quiet, &tones).await;
    assert!(levels[2] < 0.05 && levels[0] > 0.3, "the new speaker does not hear herself: {levels:?}");

    for c in [a, b, quiet] {
        c.close().await;
    }
    let none = eventually(Duration::from_secs(10), || speakers(0.0)).await;
    assert!(none.is_ok(), "nobody left: {none:?}");
}
