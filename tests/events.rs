//! The room's event stream (`GET /rooms/{room}/events`, Server-Sent Events) with real
//! peers: the state first, then joined, speaker, layout, quality, left and closed as
//! they happen.

mod common;

use std::time::Duration;

use common::sse::EventStream;
use common::{Server, id_of, publisher, send_json};
use mcu_bench::client::ClientOptions;
use serde_json::{Value, json};

async fn send(server: &Server, method: reqwest::Method, path: &str, body: Value) -> u16 {
    send_json(server, method, path, &body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_tells_what_happens_in_the_room() {
    let server = Server::start("");
    assert_eq!(EventStream::open(&server, "nobody-here").await.err(), Some(404));

    let red = server.join("ev", ClientOptions { start_muted: true, ..publisher("red", 0xff0000, 440.0) }).await;
    assert!(red.wait_connected(Duration::from_secs(10)).await);
    let mut events = EventStream::open(&server, "ev").await.expect("events");
    let (first, state) = events.next(Duration::from_secs(5)).await.expect("a first event");
    assert_eq!(first, "state");
    assert_eq!(state["room"], "ev");
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "{state}");

    let green = server.join("ev", ClientOptions { start_muted: true, ..publisher("green", 0x00ff00, 660.0) }).await;
    let joined = events.until("joined", Duration::from_secs(5)).await;
    assert_eq!(joined["participant"]["name"], "green", "{joined}");
    assert_eq!(joined["participant"]["id"], id_of(&green).as_str());

    // Red starts talking, green is silent: the floor goes to red within 3 s.
    assert_eq!(state["speaker"], Value::Null, "nobody has spoken yet");
    red.cue(0xff0000);
    let speaker = events.until("speaker", Duration::from_secs(3)).await;
    assert_eq!(speaker["speaker"], id_of(&red).as_str(), "{speaker}");

    assert_eq!(send(&server, reqwest::Method::PUT, "/rooms/ev/layout", json!({"layout": "speaker"})).await, 200);
    let layout = events.until("layout", Duration::from_secs(5)).await;
    assert_eq!(layout, json!({"layout": "speaker", "pin": null}));

    let path = format!("/rooms/ev/participants/{}", id_of(&green));
    assert_eq!(send(&server, reqwest::Method::PATCH, &path, json!({"quality": "low"})).await, 200);
    let quality = events.until("quality", Duration::from_secs(5)).await;
    assert_eq!(quality, json!({"participant": id_of(&green), "quality": "low"}));

    let path = format!("/rooms/ev/participants/{}/mute", id_of(&green));
    assert_eq!(send(&server, reqwest::Method::POST, &path, json!({"audio": true})).await, 200);
    let muted = events.until("muted", Duration::from_secs(5)).await;
    assert_eq!(muted["participant"]["muted"], json!({"audio": true, "video": false}), "{muted}");

    let green_id = id_of(&green);
    assert_eq!(green.leave().await.expect("leave"), 204);
    let left = events.until("left", Duration::from_secs(5)).await;
    assert_eq!(left["participant"]["id"], green_id.as_str());

    // The last one leaves: the room closes and the stream ends.
    red.leave().await.expect("leave");
    events.until("closed", Duration::from_secs(10)).await;
    assert!(events.next(Duration::from_secs(5)).await.is_none(), "the stream ends with the room");
}
