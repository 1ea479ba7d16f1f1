//! A broken join costs nobody else: offers that pass the syntax check but cannot be
//! negotiated (a real browser offer with its DTLS fingerprint, ICE username fragment
//! or ICE password cut out) get a `400` naming what is missing, at once and before any
//! room is touched, while valid joins beside them connect; no room is created for
//! them, and every gauge returns to where it was.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, publisher};

const CHROMIUM: &str = include_str!("fixtures/offers/chromium.sdp");

/// The Chromium offer without any line starting with `a={attribute}`.
fn without(attribute: &str) -> String {
    let cut = format!("a={attribute}");
    CHROMIUM.split_inclusive("\r\n").filter(|line| !line.starts_with(&cut)).collect()
}

/// The live gauges but the speakers count (it follows who talks).
async fn gauges(server: &Server) -> BTreeMap<String, f64> {
    let mut gauges = server.gauges().await;
    gauges.remove("mcu_audio_speakers");
    gauges
}

async fn counter(server: &Server, name: &str) -> f64 {
    server.metrics().await.get(name).copied().unwrap_or(0.0)
}

/// Posts 50 offers of each broken kind at once, beside 4 valid joins, into `room`;
/// checks every answer and returns the valid clients.
async fn storm(server: &Server, room: &str) -> Vec<mcu_bench::client::Client> {
    let kinds =
        [("fingerprint", "DTLS fingerprint"), ("ice-ufrag", "ICE username fragment"), ("ice-pwd", "ICE password")];
    let http = reqwest::Client::new();
    let mut broken = Vec::new();
    for (attribute, named) in kinds {
        let offer = without(attribute);
        for _ in 0..50 {
            let request = http
                .post(format!("{}/rooms/{room}/join", server.url))
                .header("content-type", "application/sdp")
                .body(offer.clone())
                .send();
            broken.push(async move {
                let response = request.await.expect("an answer");
                let status = response.status().as_u16();
                let body: serde_json::Value =
                    serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
                (named, status, body)
            });
        }
    }
    let valid = (0..4).map(|i| server.join(room, publisher(&format!("valid-{i}"), 0x00ff00, 440.0 + 110.0 * i as f32)));
    let (answers, clients) = tokio::join!(futures::future::join_all(broken), futures::future::join_all(valid));
    for (named, status, body) in &answers {
        let error = body["error"].as_str().unwrap_or_default();
        assert!(*status == 400 && error.contains(named), "an offer without its {named}: {status} {body}");
    }
    for client in &clients {
        assert!(client.wait_connected(Duration::from_secs(15)).await, "a valid join beside the storm connected");
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_offers_get_400s_and_create_no_room_in_a_fresh_room_or_a_live_one() {
    // Many clients, all on loopback here: no per-address limits.
    let server = Server::start("[server]\njoin_rate_per_min = 0\nmax_connections_per_ip = 0\n");
    let idle = gauges(&server).await;
    let created = counter(&server, "mcu_rooms_created_total").await;

    // A fresh room: the storm and the valid joins arrive together.
    let clients = storm(&server, "fresh").await;
    assert_eq!(counter(&server, "mcu_rooms_created_total").await - created, 1.0, "one room: the valid joins'");
    let (_, state) = server.get_json("/rooms/fresh").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(4), "{state}");

    // A live room: the same storm beside it.
    let live = server.join("live", publisher("resident", 0x0000ff, 330.0)).await;
    assert!(live.wait_connected(Duration::from_secs(10)).await);
    let more = storm(&server, "live").await;
    assert_eq!(counter(&server, "mcu_rooms_created_total").await - created, 2.0, "rooms created = rooms joined");
    let (_, state) = server.get_json("/rooms/live").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(5), "{state}");

    let metrics = server.metrics().await;
    let failures = |reason: &str| metrics.get(&format!("mcu_join_failures_total{{reason=\"{reason}\"}}")).copied();
    assert_eq!(failures("no_fingerprint"), Some(100.0), "{metrics:?}");
    assert_eq!(failures("no_ice_credentials"), Some(200.0), "{metrics:?}");

    for client in clients.into_iter().chain(more).chain([live]) {
        assert_eq!(client.leave().await.unwrap(), 204);
    }
    let settled = common::eventually(Duration::from_secs(15), || async {
        let now = gauges(&server).await;
        if now == idle { Ok(()) } else { Err(format!("{now:?} != {idle:?}")) }
    })
    .await;
    assert!(settled.is_ok(), "every gauge back to its start: {settled:?}");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}
