//! A participant leaves: the others' composite re-flows from the 2x2 to the 2x1 grid.

mod common;

use std::time::Duration;

use common::{Server, publisher, wait_for_pixels};
use mcu::layout::grid_cells;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;
const BLACK: u32 = 0x000000;

fn grid_expectation(colors: &[u32]) -> Vec<(u32, u32, u32)> {
    let cells = grid_cells(1280, 720, colors.len());
    cells.iter().zip(colors).map(|(c, &color)| (c.center().0, c.center().1, color)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_grid_reflows_when_a_participant_leaves() {
    let server = Server::start("");
    let red = server.join("reflow", publisher("red", RED, 440.0)).await;
    let green = server.join("reflow", publisher("green", GREEN, 660.0)).await;
    let blue = server.join("reflow", publisher("blue", BLUE, 880.0)).await;

    let mut three = grid_expectation(&[RED, GREEN, BLUE]);
    three.push((960, 540, BLACK));
    for c in [&red, &green] {
        let r = wait_for_pixels(c, &three, Duration::from_secs(20)).await;
        assert!(r.is_ok(), "3-party grid: {r:?}");
    }

    assert_eq!(blue.leave().await.unwrap(), 204);

    // 2 publishers: two 640x720 columns; the 4:3 pictures are letterboxed, so the
    // former blue cell (bottom left) is now red and the bottom right is green.
    let mut two = grid_expectation(&[RED, GREEN]);
    two.extend([(320, 540, RED), (960, 540, GREEN), (320, 20, BLACK), (960, 700, BLACK)]);
    for c in [&red, &green] {
        let r = wait_for_pixels(c, &two, Duration::from_secs(10)).await;
        assert!(r.is_ok(), "2-party grid after leave: {r:?}");
    }
    let (_, state) = server.get_json("/rooms/reflow").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2));
}
