//! A room whose task panics ends alone: its participants are disconnected, its
//! pipelines, threads and connections are freed, the registry forgets it (the name can
//! be used again at once), and a room beside it never misses a frame. Needs the test
//! build's fault route (`--features mcu/fault-injection`, as `make test` builds).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Server, wait_for_pixels};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;
const YELLOW: u32 = 0xffff00;

/// The live gauges but the speakers count (it follows who talks).
async fn gauges(server: &Server) -> BTreeMap<String, f64> {
    let mut gauges = server.gauges().await;
    gauges.remove("mcu_audio_speakers");
    gauges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_whose_task_panics_frees_what_it_held_and_the_others_go_on() {
    let server = Server::start("");
    let calm = server.join("calm", common::publisher("calm-a", BLUE, 660.0)).await;
    let _calm_b = server.join("calm", common::publisher("calm-b", GREEN, 880.0)).await;
    wait_for_pixels(&calm, &[(320, 360, BLUE), (960, 360, GREEN)], Duration::from_secs(10)).await.unwrap();
    let before = gauges(&server).await;

    let doomed_a = server.join("doomed", common::publisher("doomed-a", RED, 440.0)).await;
    let doomed_b = server.join("doomed", common::publisher("doomed-b", YELLOW, 550.0)).await;
    wait_for_pixels(&doomed_a, &[(320, 360, RED), (960, 360, YELLOW)], Duration::from_secs(10)).await.unwrap();
    assert_ne!(gauges(&server).await, before, "the second room holds resources of its own");

    let frames_before = calm.received.frames_received.load(Ordering::Relaxed);
    let started = Instant::now();
    let response =
        reqwest::Client::new().post(format!("{}/rooms/doomed/faults/panic", server.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);

    // Everything the room held is let go: the gauges are the calm room's alone.
    let freed = common::eventually(Duration::from_secs(10), || async {
        let now = gauges(&server).await;
        if now == before { Ok(()) } else { Err(format!("gauges {now:?}, before the room {before:?}")) }
    })
    .await;
    eprintln!("freed after {:?}", started.elapsed());
    assert!(freed.is_ok(), "{freed:?}");
    let (status, _) = server.get_json("/rooms/doomed").await;
    assert_eq!(status, 404, "the registry forgot the room");
    let (_, list) = server.get_json("/rooms").await;
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|r| r["room"].as_str()).collect();
    assert_eq!(names, ["calm"], "{list}");
    // Its participants are disconnected (their applications can rejoin).
    let disconnected = common::eventually(Duration::from_secs(10), || async {
        match (doomed_a.pc.connection_state(), doomed_b.pc.connection_state()) {
            (RTCPeerConnectionState::Connected, _) | (_, RTCPeerConnectionState::Connected) => {
                Err("a participant of the failed room is still connected".to_owned())
            }
            _ => Ok(()),
        }
    })
    .await;
    assert!(disconnected.is_ok(), "{disconnected:?}");
    eprintln!("disconnected after {:?}", started.elapsed());
    assert!(server.logs().iter().any(|l| l.contains("the room's task panicked") && l.contains("doomed")));

    // The room beside it never stalled: its frame rate over the whole failure.
    let fps = (calm.received.frames_received.load(Ordering::Relaxed) - frames_before) as f64
        / started.elapsed().as_secs_f64();
    eprintln!("calm room: {fps:.1} fps during the failure");
    assert!(fps >= 25.0, "the other room's frame rate: {fps:.1}");
    wait_for_pixels(&calm, &[(320, 360, BLUE), (960, 360, GREEN)], Duration::from_secs(5)).await.unwrap();

    // The name is free again: a new room starts under it.
    let again = server.join("doomed", common::publisher("again", RED, 440.0)).await;
    wait_for_pixels(&again, &[(640, 360, RED)], Duration::from_secs(10)).await.unwrap();
    // The one panic is the injected one (no second one while closing).
    let alarms = server.alarms();
    assert!(alarms.len() == 1 && alarms[0].contains("src/room/task/mod.rs"), "{alarms:?}");
}
