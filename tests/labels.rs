//! Names drawn in the composite, with real peers: each publisher's display name sits
//! in its cell's bottom-left corner (the received picture matches that name's label,
//! not another's), follows its cell into the speaker layout at the new size, stays on
//! a cell whose video a moderator muted, and is absent with `media.labels = false`.

mod common;

use std::time::Duration;

use common::{Server, eventually, id_of, publisher, send_json, wait_for_pixels};
use mcu::layout::{Rect, fit_in_cell, grid_cells, speaker_cells};
use mcu::media::label::{LabelFont, label_position};
use mcu_bench::client::Client;
use serde_json::json;

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;

/// Mean absolute luma difference between what `client` receives where `name`'s
/// label for `cell` goes and that label as rendered; `drawn_as` renders another
/// name at the same place (to compare with).
fn label_error(client: &Client, cell: Rect, drawn_as: &str) -> Result<f64, String> {
    let frame = client.received.frame().ok_or("no frame yet")?;
    let label = LabelFont::embedded().render(drawn_as, cell).ok_or("no label fits")?;
    let (x, y) = label_position(cell, label.height);
    let seen = frame.luma_block(x, y, label.width, label.height).ok_or("label outside the frame")?;
    let total: u64 = seen.iter().zip(&label.i420).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum();
    Ok(total as f64 / seen.len() as f64)
}

/// Waits until `name`'s label is what `client` sees in `cell`: close to its own
/// rendering and clearly further from `other`'s.
async fn wait_for_label(client: &Client, cell: Rect, name: &str, other: &str) -> Result<(), String> {
    eventually(Duration::from_secs(5), || async {
        let own = label_error(client, cell, name)?;
        let wrong = label_error(client, cell, other)?;
        if own < 12.0 && wrong > own * 2.0 {
            Ok(())
        } else {
            Err(format!("{name}: error {own:.1} against its label, {wrong:.1} against {other}'s"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_cell_carries_its_publishers_name() {
    let server = Server::start("");
    let alice = server.join("names", publisher("Alice", RED, 440.0)).await;
    let bob = server.join("names", publisher("Bob Ross", BLUE, 660.0)).await;
    for c in [&alice, &bob] {
        assert!(c.wait_connected(Duration::from_secs(10)).await, "peer connected");
    }
    let cells = grid_cells(1280, 720, 2);
    let centres: Vec<(u32, u32, u32)> = cells
        .iter()
        .zip([RED, BLUE])
        .map(|(c, color)| {
            let (x, y) = fit_in_cell(*c, 320, 240).center();
            (x, y, color)
        })
        .collect();
    let shown = wait_for_pixels(&bob, &centres, Duration::from_secs(10)).await;
    assert!(shown.is_ok(), "both pictures: {shown:?}");
    let drawn = wait_for_label(&bob, cells[0], "Alice", "Bob Ross").await;
    assert!(drawn.is_ok(), "Alice's name on her cell: {drawn:?}");
    let drawn = wait_for_label(&alice, cells[1], "Bob Ross", "Alice").await;
    assert!(drawn.is_ok(), "Bob's name on his cell: {drawn:?}");

    // The speaker layout, Bob pinned: his label is redrawn for the main area (larger
    // text), Alice's for her strip cell.
    let (status, state) = send_json(
        &server,
        reqwest::Method::PUT,
        "/rooms/names/layout",
        &json!({"layout": "speaker", "pin": id_of(&bob)}),
    )
    .await;
    assert_eq!(status, 200, "{state}");
    let cells = speaker_cells(1280, 720, 2, 1);
    let drawn = wait_for_label(&alice, cells[1], "Bob Ross", "Alice").await;
    assert!(drawn.is_ok(), "Bob's name in the main area: {drawn:?}");
    let drawn = wait_for_label(&alice, cells[0], "Alice", "Bob Ross").await;
    assert!(drawn.is_ok(), "Alice's name in the strip: {drawn:?}");

    // A muted camera leaves a black cell with the name on it.
    let (status, info) = send_json(
        &server,
        reqwest::Method::POST,
        &format!("/rooms/names/participants/{}/mute", id_of(&alice)),
        &json!({"video": true}),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    let (x, y) = fit_in_cell(cells[0], 320, 240).center();
    let black = wait_for_pixels(&alice, &[(x, y, 0x000000)], Duration::from_secs(5)).await;
    assert!(black.is_ok(), "Alice's cell is black: {black:?}");
    let drawn = wait_for_label(&alice, cells[0], "Alice", "Bob Ross").await;
    assert!(drawn.is_ok(), "her name stays: {drawn:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn labels_can_be_turned_off() {
    let server = Server::start("[media]\nlabels = false\n");
    let alice = server.join("plain", publisher("Alice", RED, 440.0)).await;
    assert!(alice.wait_connected(Duration::from_secs(10)).await, "peer connected");
    let cell = grid_cells(1280, 720, 1)[0];
    let (x, y) = fit_in_cell(cell, 320, 240).center();
    let shown = wait_for_pixels(&alice, &[(x, y, RED)], Duration::from_secs(10)).await;
    assert!(shown.is_ok(), "her picture: {shown:?}");
    // Where the label would be: the black bar under her 4:3 picture, nothing on it.
    let label = LabelFont::embedded().render("Alice", cell).unwrap();
    let (lx, ly) = label_position(cell, label.height);
    let frame = alice.received.frame().unwrap();
    let block = frame.luma_block(lx, ly, label.width, label.height).unwrap();
    let brightest = block.iter().max().copied().unwrap_or(0);
    assert!(brightest < 40, "no text where the label would be (brightest luma {brightest})");
    assert!(label_error(&alice, cell, "Alice").unwrap() > 20.0);
}
