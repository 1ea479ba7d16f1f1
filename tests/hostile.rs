//! Peers that send what the server does not expect.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::raw_peer::RawPeer;
use common::sse::EventStream;
use common::{Server, color_matches, wait_for_pixels};
use gstreamer::prelude::*;
use mcu_bench::client::{ClientOptions, Endpoint};
use mcu_bench::webrtcbin::WebrtcbinSession;
use webrtc::rtp::packet::Packet;

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;

/// A publisher offering two cameras (two VP8 m-lines, red and blue): only the first
/// is mixed. Both streams fed into one decoder would interleave two pictures in one
/// jitter buffer: the cell would flicker between them or break up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_camera_of_one_peer_is_not_mixed_into_the_first() {
    let server = Server::start("");
    let url = server.url.clone();
    let _cameras =
        tokio::task::spawn_blocking(move || WebrtcbinSession::publish_cameras(&url, "two", &[RED, BLUE], 440))
            .await
            .unwrap()
            .unwrap();
    let viewer = server
        .join("two", ClientOptions { endpoint: Endpoint::Whep, video_color: None, tone_hz: None, ..Default::default() })
        .await;
    wait_for_pixels(&viewer, &[(640, 360, RED)], Duration::from_secs(10)).await.unwrap();
    // Three seconds of the cell, sampled every 50 ms: always the first camera.
    let mut seen = Vec::new();
    for _ in 0..60 {
        if let Some(rgb) = viewer.received.frame().and_then(|f| f.rgb_at(640, 360)) {
            seen.push(rgb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wrong: Vec<&[u8; 3]> = seen.iter().filter(|rgb| !color_matches(**rgb, RED)).collect();
    assert!(seen.len() > 30 && wrong.is_empty(), "{} of {} samples not red: {wrong:?}", wrong.len(), seen.len());
    let (_, state) = server.get_json("/rooms/two").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "{state}");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// A publisher whose keyframes declare a larger picture than `media.max_input_pixels`
/// is removed before a decoder allocates for it, and says why in the log; the others
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_with_oversized_keyframes_is_removed_and_the_room_goes_on() {
    // 640x480 = 307200 pixels, over the limit; 320x240 = 76800, under it.
    let server = Server::start("[media]\nmax_input_pixels = 100000\n");
    let small = server.join("big", common::publisher("small", BLUE, 660.0)).await;
    let url = server.url.clone();
    let _big =
        tokio::task::spawn_blocking(move || WebrtcbinSession::publish_sized(&url, "big", &[(RED, 640, 480)], 440))
            .await
            .unwrap()
            .unwrap();
    let removed = common::eventually(Duration::from_secs(10), || async {
        let (_, state) = server.get_json("/rooms/big").await;
        match state["participants"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?} participants: {state}")),
        }
    })
    .await;
    assert!(removed.is_ok(), "the oversized publisher is removed: {removed:?}");
    let (_, state) = server.get_json("/rooms/big").await;
    assert_eq!(state["participants"][0]["name"], "small");
    assert!(
        server.logs().iter().any(|l| l.contains("removing a publisher") && l.contains("640x480")),
        "the log says why"
    );
    // The one left still gets its composite.
    wait_for_pixels(&small, &[(640, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// A VP8 RTP packet whose payload is noise behind a valid descriptor (an interframe:
/// nothing a decoder can make a picture of).
fn garbage_vp8(payload_type: u8, ssrc: u32, seq: u16, timestamp: u32, marker: bool, size: usize) -> Packet {
    let mut payload = vec![0u8; size];
    let mut x = u32::from(seq).wrapping_mul(2_654_435_761) ^ ssrc;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    payload[0] = 0x10; // start of partition 0
    payload[1] |= 0x01; // inter frame
    Packet {
        header: webrtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload: payload.into(),
    }
}

/// A publisher flooding RTP at 50 Mb/s is removed for its rate within about a second
/// (the log says so); a room beside it keeps its frame rate and the server's memory
/// stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_flooding_rtp_is_removed_and_other_rooms_keep_their_frame_rate() {
    let server = Server::start("");
    let calm = server.join("calm", common::publisher("calm", BLUE, 660.0)).await;
    wait_for_pixels(&calm, &[(640, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    let rss_before = server.rss_kib() / 1024;
    let flood = RawPeer::join(&server.url, "/whip/flood").await.unwrap();
    let (payload_type, ssrc) = flood.negotiated();
    let frames_before = calm.received.frames_received.load(Ordering::Relaxed);
    let started = Instant::now();
    // 1200-byte packets, 52 every 10 ms: 50 Mb/s, until the server
    // hangs up (the room, whose only participant the flood is, closes).
    let mut seq = 0u16;
    let mut sent_bytes = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut gone = false;
    let mut ticks = 0u32;
    while started.elapsed() < Duration::from_secs(8) && !gone {
        tick.tick().await;
        ticks += 1;
        for _ in 0..52 {
            seq = seq.wrapping_add(1);
            let packet = garbage_vp8(payload_type, ssrc, seq, u32::from(seq / 10) * 3000, seq.is_multiple_of(10), 1188);
            if flood.send_rtp(&packet).await.is_err() {
                break;
            }
            sent_bytes += 1200;
        }
        if ticks.is_multiple_of(10) {
            gone = server.get_json("/rooms/flood").await.0 == 404;
        }
    }
    let flooded_for = started.elapsed();
    let sent_mbps = sent_bytes as f64 * 8.0 / flooded_for.as_secs_f64() / 1e6;
    eprintln!("flood: {sent_mbps:.1} Mb/s for {flooded_for:?}");
    assert!(gone, "the flooding publisher's room closed within 8 s ({sent_mbps:.1} Mb/s sent)");
    assert!(
        server.logs().iter().any(|l| l.contains("removing a publisher") && l.contains("max_input_bitrate_bps")),
        "the log says why"
    );
    flood.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames = calm.received.frames_received.load(Ordering::Relaxed) - frames_before;
    let fps = frames as f64 / started.elapsed().as_secs_f64();
    let rss_after = server.rss_kib() / 1024;
    eprintln!("calm room: {fps:.1} fps received during and after; rss {rss_before} -> {rss_after} MiB");
    assert!(fps >= 25.0, "the other room kept its frame rate: {fps:.1} fps");
    assert!(rss_after < rss_before + 64, "memory bounded: {rss_before} -> {rss_after} MiB");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// Noise in VP8 packets, an SSRC that changes every 50 packets and a flood of PLIs
/// (500 a second) from one participant: the other participant's cell and frame rate
/// are untouched, and the PLIs do not become a keyframe storm (they are answered at
/// most every `keyframe_min_interval_ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_new_ssrcs_and_a_pli_flood_leave_the_room_working() {
    use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    let server = Server::start("");
    let good = server.join("rough", common::publisher("good", BLUE, 660.0)).await;
    wait_for_pixels(&good, &[(640, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    let rough = RawPeer::join(&server.url, "/rooms/rough/join").await.unwrap();
    let (payload_type, first_ssrc) = rough.negotiated();
    let composite = rough.server_video_ssrc.expect("the answer declares the composite's SSRC");
    // The grid now has two cells; the good one is the first.
    wait_for_pixels(&good, &[(320, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    let keyframes_before = good.received.keyframes.load(Ordering::Relaxed);
    let frames_before = good.received.frames_received.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut seq = 0u16;
    let mut ssrc = first_ssrc;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut wrong = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        tick.tick().await;
        // 1 packet (1 Mb/s) and 5 PLIs every 10 ms.
        seq = seq.wrapping_add(1);
        if seq.is_multiple_of(50) {
            ssrc = ssrc.wrapping_mul(747_796_405).wrapping_add(1);
        }
        let packet = garbage_vp8(payload_type, ssrc, seq, u32::from(seq / 3) * 3000, seq.is_multiple_of(3), 1188);
        rough.send_rtp(&packet).await.unwrap();
        for _ in 0..5 {
            let pli = PictureLossIndication { sender_ssrc: first_ssrc, media_ssrc: composite };
            rough.send_rtcp(&[Box::new(pli)]).await.unwrap();
        }
        if seq.is_multiple_of(25)
            && let Some(rgb) = good.received.frame().and_then(|f| f.rgb_at(320, 360))
            && !color_matches(rgb, BLUE)
        {
            wrong.push(rgb);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let keyframes = good.received.keyframes.load(Ordering::Relaxed) - keyframes_before;
    let fps = (good.received.frames_received.load(Ordering::Relaxed) - frames_before) as f64 / elapsed;
    eprintln!("good: {fps:.1} fps, {keyframes} keyframe packets in {elapsed:.1} s of PLIs");
    assert!(wrong.is_empty(), "the good cell stayed blue: {wrong:?}");
    assert!(fps >= 25.0, "frame rate kept: {fps:.1}");
    // Keyframes at most every 500 ms (plus the scheduled ones): ~10 in 5 s.
    assert!(keyframes <= 14, "{keyframes} keyframes for 2500 PLIs");
    let (status, state) = server.get_json("/rooms/rough").await;
    assert_eq!(status, 200);
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2), "{state}");
    rough.close().await;
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// A VP8 keyframe no decoder can make a picture of: a header declaring 320x240 and a
/// first partition longer than the frame, then noise.
fn garbage_vp8_keyframe(payload_type: u8, ssrc: u32, seq: u16, timestamp: u32) -> Packet {
    let mut packet = garbage_vp8(payload_type, ssrc, seq, timestamp, true, 1000);
    let mut payload = packet.payload.to_vec();
    // Descriptor (start of partition 0), frame tag (keyframe, shown, a first partition
    // of 100000 bytes: far more than the frame holds), start code, 320x240.
    payload[..11].copy_from_slice(&[0x10, 0x10, 0xd4, 0x30, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    packet.payload = payload.into();
    packet
}

/// A publisher whose keyframes are noise: its decoder fails, the branch is restarted
/// (an `input_failed` event says so), and when it fails again and again the publisher
/// is removed, with a log line saying why. The other participant's picture and frame
/// rate never change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_whose_video_cannot_be_decoded_is_restarted_then_removed() {
    let server = Server::start("");
    let good = server.join("broken", common::publisher("good", BLUE, 660.0)).await;
    wait_for_pixels(&good, &[(640, 360, BLUE)], Duration::from_secs(10)).await.unwrap();
    let mut events = EventStream::open(&server, "broken").await.expect("events");
    let raw = RawPeer::join(&server.url, "/rooms/broken/join").await.unwrap();
    let (payload_type, ssrc) = raw.negotiated();
    let frames_before = good.received.frames_received.load(Ordering::Relaxed);
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for seq in 0..600u16 {
            tick.tick().await;
            if raw.send_rtp(&garbage_vp8_keyframe(payload_type, ssrc, seq, u32::from(seq) * 3000)).await.is_err() {
                break;
            }
        }
        raw.close().await;
    });
    let mut failures = Vec::new();
    while let Some((name, data)) = events.next(Duration::from_secs(20)).await {
        if name == "input_failed" {
            eprintln!("after {:?}: {data}", started.elapsed());
            failures.push(data["restarted"].as_bool());
            if failures.last() == Some(&Some(false)) {
                break;
            }
        }
    }
    assert!(failures.len() >= 2 && failures[0] == Some(true), "restarted first: {failures:?}");
    assert_eq!(failures.last(), Some(&Some(false)), "then given up: {failures:?}");
    let removed = common::eventually(Duration::from_secs(5), || async {
        let (_, state) = server.get_json("/rooms/broken").await;
        match state["participants"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}: {state}")),
        }
    })
    .await;
    assert!(removed.is_ok(), "{removed:?}");
    assert!(server.logs().iter().any(|l| l.contains("removing a publisher") && l.contains("failed to decode")));
    let fps = (good.received.frames_received.load(Ordering::Relaxed) - frames_before) as f64
        / started.elapsed().as_secs_f64();
    assert!(fps >= 25.0, "the other participant's frame rate: {fps:.1}");
    // The grid is back to one cell, the good one.
    wait_for_pixels(&good, &[(640, 360, BLUE)], Duration::from_secs(5)).await.unwrap();
    sender.abort();
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// One real VP8 keyframe of a solid `color` picture of `width`x`height`.
fn vp8_keyframe(width: u32, height: u32, color: u32) -> bytes::Bytes {
    mcu::media::init().unwrap();
    let description = format!(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color={} \
         ! video/x-raw,format=I420,width={width},height={height},framerate=30/1 \
         ! vp8enc deadline=1 ! appsink name=out sync=false",
        0xff00_0000u32 | color
    );
    let pipeline = gstreamer::parse::launch(&description).unwrap().downcast::<gstreamer::Pipeline>().unwrap();
    let sink = pipeline.by_name("out").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    pipeline.set_state(gstreamer::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("an encoded keyframe");
    let frame = bytes::Bytes::copy_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
    pipeline.set_state(gstreamer::State::Null).unwrap();
    assert_eq!(frame[0] & 1, 0, "a keyframe");
    frame
}

/// Sends one VP8 frame as RTP packets (1200-byte payloads, marker on the last).
async fn send_vp8_frame(peer: &RawPeer, frame: &bytes::Bytes, seq: &mut u16, timestamp: u32) -> Result<(), String> {
    use webrtc::rtp::packetizer::Payloader;
    let (payload_type, ssrc) = peer.negotiated();
    let payloads = webrtc::rtp::codecs::vp8::Vp8Payloader::default().payload(1200, frame).map_err(|e| e.to_string())?;
    let last = payloads.len() - 1;
    for (i, payload) in payloads.into_iter().enumerate() {
        *seq = seq.wrapping_add(1);
        let header = webrtc::rtp::header::Header {
            version: 2,
            marker: i == last,
            payload_type,
            sequence_number: *seq,
            timestamp,
            ssrc,
            ..Default::default()
        };
        peer.send_rtp(&Packet { header, payload }).await?;
    }
    Ok(())
}

/// A publisher whose every frame is a keyframe of another size (64x64 to 1920x1080):
/// its cell shows its picture all along, nothing is restarted, the room's and another
/// room's frame rates hold and memory stays bounded. Then a 4096x2304 keyframe, over
/// `media.max_input_pixels`: the publisher is removed, the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_changing_resolution_every_frame_is_shown_until_it_declares_too_much() {
    let server = Server::start("");
    let calm = server.join("calm", common::publisher("calm", BLUE, 660.0)).await;
    let good = server.join("sizes", common::publisher("good", 0x00ff00, 550.0)).await;
    wait_for_pixels(&good, &[(640, 360, 0x00ff00)], Duration::from_secs(10)).await.unwrap();
    let sizes = [(64, 64), (320, 240), (1920, 1080), (160, 90), (640, 360), (1280, 720), (176, 144), (854, 480)];
    let keyframes: Vec<bytes::Bytes> = sizes.iter().map(|&(w, h)| vp8_keyframe(w, h, RED)).collect();
    let huge = vp8_keyframe(4096, 2304, RED);
    let raw = RawPeer::join(&server.url, "/rooms/sizes/join").await.unwrap();
    let rss_before = server.rss_kib() / 1024;
    let (calm_before, good_before) =
        (calm.received.frames_received.load(Ordering::Relaxed), good.received.frames_received.load(Ordering::Relaxed));
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let (mut seq, mut tick) = (0u16, tokio::time::interval(Duration::from_millis(33)));
        for n in 0..180u32 {
            tick.tick().await;
            send_vp8_frame(&raw, &keyframes[n as usize % keyframes.len()], &mut seq, n * 3000).await.unwrap();
        }
        raw
    });
    // The publisher's cell (right of the good one), sampled every 50 ms once shown.
    wait_for_pixels(&good, &[(320, 360, 0x00ff00), (960, 360, RED)], Duration::from_secs(5)).await.unwrap();
    let mut samples = Vec::new();
    while !sender.is_finished() {
        if let Some(rgb) = good.received.frame().and_then(|f| f.rgb_at(960, 360)) {
            samples.push(rgb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raw = sender.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let fps = |client: &mcu_bench::client::Client, before: u64| {
        (client.received.frames_received.load(Ordering::Relaxed) - before) as f64 / elapsed
    };
    let (calm_fps, good_fps) = (fps(&calm, calm_before), fps(&good, good_before));
    let rss_after = server.rss_kib() / 1024;
    let red = samples.iter().filter(|rgb| color_matches(**rgb, RED)).count();
    eprintln!(
        "{red} of {} samples red; fps: calm room {calm_fps:.1}, same room {good_fps:.1}; rss {rss_before} -> {rss_after} MiB",
        samples.len()
    );
    assert!(samples.len() >= 40 && red == samples.len(), "the changing publisher's cell: {samples:?}");
    assert!(calm_fps >= 25.0 && good_fps >= 25.0, "frame rates: {calm_fps:.1}, {good_fps:.1}");
    assert!(rss_after < rss_before + 128, "memory bounded: {rss_before} -> {rss_after} MiB");
    assert!(!server.logs().iter().any(|l| l.contains("failed to decode")), "no decode failure");

    let mut seq = 1000u16;
    send_vp8_frame(&raw, &huge, &mut seq, 600_000).await.unwrap();
    let removed = common::eventually(Duration::from_secs(5), || async {
        let (_, state) = server.get_json("/rooms/sizes").await;
        match state["participants"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}: {state}")),
        }
    })
    .await;
    assert!(removed.is_ok(), "{removed:?}");
    assert!(server.logs().iter().any(|l| l.contains("removing a publisher") && l.contains("4096x2304")));
    wait_for_pixels(&good, &[(640, 360, 0x00ff00)], Duration::from_secs(5)).await.unwrap();
    raw.close().await;
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}
