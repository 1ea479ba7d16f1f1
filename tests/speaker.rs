//! Active speaker and the speaker layout, with real peers: three publishers, one
//! talking (a tone) and two silent. The room state names the speaker; the speaker
//! layout shows her in the main area and the others in the strip, a pin overrides
//! her, and the grid comes back (pixels of the composite checked each time).

mod common;

use std::time::Duration;

use common::{Server, eventually, id_of, publisher, send_json, wait_for_pixels};
use mcu::layout::{Rect, fit_in_cell, grid_cells, speaker_cells};
use mcu_bench::client::ClientOptions;
use serde_json::{Value, json};

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;

async fn put_layout(server: &Server, room: &str, body: &Value) -> (u16, Value) {
    send_json(server, reqwest::Method::PUT, &format!("/rooms/{room}/layout"), body).await
}

/// The centre of each publisher's picture (320x240) in its cell, with its colour.
fn pictures(cells: &[Rect], colors: &[u32]) -> Vec<(u32, u32, u32)> {
    cells
        .iter()
        .zip(colors)
        .map(|(cell, &color)| {
            let (x, y) = fit_in_cell(*cell, 320, 240).center();
            (x, y, color)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_speaker_is_named_featured_and_can_be_overridden_by_a_pin() {
    let server = Server::start("");
    let person = |name: &str, color: u32, hz: f32, silent: bool| ClientOptions {
        start_muted: silent,
        ..publisher(name, color, hz)
    };
    let red = server.join("spk", person("red", RED, 440.0, false)).await;
    let green = server.join("spk", person("green", GREEN, 660.0, true)).await;
    let blue = server.join("spk", person("blue", BLUE, 880.0, true)).await;
    for c in [&red, &green, &blue] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }
    let (red_id, green_id) = (id_of(&red), id_of(&green));

    // Red talks, the others are silent: within 3 s the state names her.
    let named = eventually(Duration::from_secs(3), || async {
        let (_, state) = server.get_json("/rooms/spk").await;
        if state["speaker"] == red_id.as_str() { Ok(()) } else { Err(format!("speaker {}", state["speaker"])) }
    })
    .await;
    assert!(named.is_ok(), "the talking publisher is the speaker: {named:?}");
    let (_, state) = server.get_json("/rooms/spk").await;
    assert_eq!((state["layout"].as_str(), &state["pin"]), (Some("grid"), &Value::Null));

    // Speaker layout: red in the main area, green and blue along the strip.
    let (status, state) = put_layout(&server, "spk", &json!({"layout": "speaker"})).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!((state["layout"].as_str(), &state["pin"]), (Some("speaker"), &Value::Null));
    let featured_red = pictures(&speaker_cells(1280, 720, 3, 0), &[RED, GREEN, BLUE]);
    let shown = wait_for_pixels(&blue, &featured_red, Duration::from_secs(5)).await;
    assert!(shown.is_ok(), "speaker layout featuring red: {shown:?}");

    // A pin features green whoever talks; red moves to the strip's first cell.
    let (status, state) = put_layout(&server, "spk", &json!({"layout": "speaker", "pin": green_id})).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["pin"], green_id.as_str());
    let featured_green = pictures(&speaker_cells(1280, 720, 3, 1), &[RED, GREEN, BLUE]);
    let shown = wait_for_pixels(&red, &featured_green, Duration::from_secs(5)).await;
    assert!(shown.is_ok(), "speaker layout pinned to green: {shown:?}");
    assert_eq!(featured_green[0].1, 540 + 90, "red's picture is in the strip");

    // Bad requests change nothing.
    for (body, status) in [
        (json!({"layout": "mosaic"}), 400),
        (json!({"layout": "speaker", "pin": "nobody"}), 400),
        (json!({"layout": "grid", "pin": green_id}), 400),
    ] {
        let (got, error) = put_layout(&server, "spk", &body).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(error["error"].is_string(), "{body}: {error}");
    }
    let (got, error) = put_layout(&server, "no-such-room", &json!({"layout": "grid"})).await;
    assert_eq!(got, 404, "{error}");
    let (_, state) = server.get_json("/rooms/spk").await;
    assert_eq!(state["pin"], green_id.as_str());

    // Back to the grid.
    let (status, _) = put_layout(&server, "spk", &json!({"layout": "grid"})).await;
    assert_eq!(status, 200);
    let grid = pictures(&grid_cells(1280, 720, 3), &[RED, GREEN, BLUE]);
    let shown = wait_for_pixels(&green, &grid, Duration::from_secs(5)).await;
    assert!(shown.is_ok(), "grid again: {shown:?}");
}

/// The RFC 6464 level header is negotiated and read: two publishers send the same
/// tone (equal decoded levels), the one whose packets say it is 30 dB louder takes
/// the floor from the one who had it. From the decoded audio alone, a challenger
/// within 3 dB never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_clients_level_header_ranks_the_speakers() {
    let server = Server::start("");
    let claiming = |name: &str, hz: f32, level: u8| ClientOptions {
        claimed_audio_level: Some(level),
        video_color: None,
        receive: false,
        ..publisher(name, 0, hz)
    };
    let first = server.join("hdr", claiming("first", 440.0, 40)).await;
    assert!(first.wait_connected(Duration::from_secs(10)).await, "peer connected");
    let speaker_is = |id: String| {
        let server = &server;
        async move {
            eventually(Duration::from_secs(4), || async {
                let (_, state) = server.get_json("/rooms/hdr").await;
                if state["speaker"] == id.as_str() { Ok(()) } else { Err(format!("speaker {}", state["speaker"])) }
            })
            .await
        }
    };
    assert!(speaker_is(id_of(&first)).await.is_ok(), "alone, she has the floor");
    let loud = server.join("hdr", claiming("loud", 660.0, 10)).await;
    assert!(loud.wait_connected(Duration::from_secs(10)).await, "peer connected");
    let taken = speaker_is(id_of(&loud)).await;
    assert!(taken.is_ok(), "the publisher whose header says -10 dBov takes the floor from -40: {taken:?}");
}

/// Switching layouts never shows a black composite: every frame a viewer decodes
/// while the layout flips between grid and speaker has pictures in it (a grid of two
/// 4:3 pictures is a third black, the speaker layout about half; a flash is all of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_layouts_never_shows_a_black_frame() {
    let server = Server::start("[media]\nlabels = false\n");
    let red = server.join("flip", publisher("red", RED, 440.0)).await;
    let green = server.join("flip", publisher("green", GREEN, 660.0)).await;
    for c in [&red, &green] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }
    let grid = pictures(&grid_cells(1280, 720, 2), &[RED, GREEN]);
    assert!(wait_for_pixels(&red, &grid, Duration::from_secs(10)).await.is_ok(), "grid first");

    // Share of non-black points of a 64x36 lattice over the frame.
    let lit_share = |client: &mcu_bench::client::Client| {
        let frame = client.received.frame()?;
        let points: Vec<bool> = (0..36u32)
            .flat_map(|row| (0..64u32).map(move |col| (col * 20 + 10, row * 20 + 10)))
            .map(|(x, y)| frame.rgb_at(x, y).is_some_and(|p| p.iter().any(|&c| c > 60)))
            .collect();
        Some(points.iter().filter(|&&lit| lit).count() as f64 / points.len() as f64)
    };
    let mut darkest = 1.0f64;
    let mut samples = 0;
    for i in 0..10 {
        let body = if i % 2 == 0 { json!({"layout": "speaker"}) } else { json!({"layout": "grid"}) };
        assert_eq!(put_layout(&server, "flip", &body).await.0, 200);
        let until = tokio::time::Instant::now() + Duration::from_millis(400);
        while tokio::time::Instant::now() < until {
            if let Some(share) = lit_share(&red) {
                darkest = darkest.min(share);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(samples > 100, "{samples} frames looked at");
    assert!(darkest > 0.3, "a frame with only {:.0} % of the picture lit", darkest * 100.0);
}
