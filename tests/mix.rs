//! Three real participants: each sees the contract's grid with everyone's colour and
//! hears the other two tones but not its own (mix-minus).

mod common;

use std::time::Duration;

use common::{Server, check_pixels, eventually, publisher, tone_levels};
use mcu::layout::{cell_at, fit_in_cell, grid_cells};

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
