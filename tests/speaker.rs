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
