//! A moderator mutes a participant, with real peers: muted audio leaves every mix
//! (the others stop hearing its tone), muted video leaves a black cell, and both come
//! back when unmuted. The room state says what is muted.

mod common;

use std::time::Duration;

use common::{Server, fresh_tone_levels, id_of, publisher, send_json, wait_for_pixels};
use mcu::layout::{fit_in_cell, grid_cells};
use mcu_bench::client::Client;
use serde_json::{Value, json};

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;

async fn mute(server: &Server, room: &str, id: &str, body: Value) -> (u16, Value) {
    send_json(server, reqwest::Method::POST, &format!("/rooms/{room}/participants/{id}/mute"), &body).await
}

/// How loud 440 Hz (red's tone) is in what `client` hears next.
async fn hears_red(client: &Client) -> f64 {
    fresh_tone_levels(client, &[440.0, 660.0]).await[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_muted_participant_leaves_the_mix_and_its_cell_goes_black() {
    let server = Server::start("");
    let red = server.join("mod", publisher("red", RED, 440.0)).await;
    let green = server.join("mod", publisher("green", GREEN, 660.0)).await;
    for c in [&red, &green] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }
    let red_id = id_of(&red);
    let cells = grid_cells(1280, 720, 2);
    let (rx, ry) = fit_in_cell(cells[0], 320, 240).center();
    let (gx, gy) = fit_in_cell(cells[1], 320, 240).center();
    let shown = wait_for_pixels(&green, &[(rx, ry, RED), (gx, gy, GREEN)], Duration::from_secs(10)).await;
    assert!(shown.is_ok(), "both pictures: {shown:?}");
    assert!(hears_red(&green).await > 0.3, "green hears red before the mute");

    let (status, info) = mute(&server, "mod", &red_id, json!({"audio": true, "video": true})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["muted"], json!({"audio": true, "video": true}));
    let level = hears_red(&green).await;
    assert!(level < 0.05, "red's tone is out of the mix: {level:.3}");
    let black = wait_for_pixels(&green, &[(rx, ry, 0x000000), (gx, gy, GREEN)], Duration::from_secs(5)).await;
    assert!(black.is_ok(), "red's cell is black, green's picture stays: {black:?}");
    let (_, state) = server.get_json("/rooms/mod").await;
    assert_eq!(state["participants"][0]["muted"], json!({"audio": true, "video": true}));
    assert_eq!(state["participants"][1]["muted"], json!({"audio": false, "video": false}));

    // Unmuting one medium leaves the other as it was.
    let (status, info) = mute(&server, "mod", &red_id, json!({"video": false})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["muted"], json!({"audio": true, "video": false}));
    let back = wait_for_pixels(&green, &[(rx, ry, RED)], Duration::from_secs(5)).await;
    assert!(back.is_ok(), "red's picture is back: {back:?}");
    assert!(hears_red(&green).await < 0.05, "still muted");
    assert_eq!(mute(&server, "mod", &red_id, json!({"audio": false})).await.0, 200);
    assert!(hears_red(&green).await > 0.3, "green hears red again");

    // Bad requests.
    assert_eq!(mute(&server, "mod", &red_id, json!({})).await.0, 400);
    assert_eq!(mute(&server, "mod", &red_id, json!({"audio": "yes"})).await.0, 400);
    assert_eq!(mute(&server, "mod", "nobody", json!({"audio": true})).await.0, 404);
    assert_eq!(mute(&server, "nowhere", &red_id, json!({"audio": true})).await.0, 404);
}
