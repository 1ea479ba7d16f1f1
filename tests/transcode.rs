//! Every client in its own codec and size: VP8 and H.264 publishers see each other,
//! an H.264-only receiver gets the composite in H.264, `quality` pins a tier and a
//! `PATCH` changes it, and an encode runs only while someone receives it.

mod common;

use std::time::Duration;

use common::{Server, eventually, publisher, wait_for_pixels};
use mcu::media::codec::VideoCodec;
use mcu_bench::client::{Client, ClientOptions};

const RED: u32 = 0xff0000;
const BLUE: u32 = 0x0000ff;

fn in_codec(name: &str, color: u32, codec: VideoCodec) -> ClientOptions {
    ClientOptions { video_codec: codec, ..publisher(name, color, 440.0) }
}

fn viewer(codec: VideoCodec, quality: Option<&str>) -> ClientOptions {
    ClientOptions {
        video_color: None,
        tone_hz: None,
        video_codec: codec,
        quality: quality.map(str::to_owned),
        ..Default::default()
    }
}

async fn frame_size(client: &Client, timeout: Duration, want: (u32, u32)) -> Result<(), String> {
    let received = client.received.clone();
    eventually(timeout, || {
        let received = received.clone();
        async move {
            let frame = received.frame().ok_or("no frame decoded yet")?;
            if (frame.width, frame.height) == want { Ok(()) } else { Err(format!("{}x{}", frame.width, frame.height)) }
        }
    })
    .await
}

async fn encoders(server: &Server) -> f64 {
    server.metrics().await.get("mcu_video_encoders").copied().unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp8_and_h264_publishers_see_each_other_each_in_its_own_codec() {
    let server = Server::start("");
    let red = server.join("codecs", in_codec("red-vp8", RED, VideoCodec::Vp8)).await;
    let blue = server.join("codecs", in_codec("blue-h264", BLUE, VideoCodec::H264)).await;
    for c in [&red, &blue] {
        assert!(c.wait_connected(Duration::from_secs(10)).await);
    }
    // Two publishers: side by side in a 2x1 grid.
    let both = [(320, 360, RED), (960, 360, BLUE)];
    for (who, c) in [("VP8 publisher", &red), ("H.264 publisher", &blue)] {
        let r = wait_for_pixels(c, &both, Duration::from_secs(20)).await;
        assert!(r.is_ok(), "{who} sees both colours: {r:?}");
        assert!(frame_size(c, Duration::from_secs(1), (1280, 720)).await.is_ok());
    }
    assert_eq!(red.received.video_codec.lock().unwrap().as_deref(), Some("VP8"));
    assert_eq!(blue.received.video_codec.lock().unwrap().as_deref(), Some("H264"));
    // Each (codec, tier) in use is encoded once: VP8 high and H.264 high.
    assert_eq!(encoders(&server).await, 2.0);

    let (status, state) = server.get_json("/rooms/codecs").await;
    assert_eq!(status, 200);
    let by_name = |name: &str| state["participants"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
    let red_state = by_name("red-vp8").unwrap();
    let blue_state = by_name("blue-h264").unwrap();
    assert_eq!(red_state["video_codec"], "VP8");
    assert_eq!(red_state["receive"], serde_json::json!({"codec": "VP8", "quality": "high", "auto": true}));
    assert_eq!(blue_state["video_codec"], "H264");
    assert_eq!(blue_state["receive"]["codec"], "H264");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiers_are_pinned_on_join_and_changed_by_patch() {
    let server = Server::start("");
    let red = server.join("tiers", in_codec("red", RED, VideoCodec::Vp8)).await;
    let low = server.join("tiers", viewer(VideoCodec::H264, Some("low"))).await;
    let r = frame_size(&low, Duration::from_secs(20), (320, 180)).await;
    assert!(r.is_ok(), "quality=low gets 320x180: {r:?}");
    assert!(wait_for_pixels(&low, &[(160, 90, RED)], Duration::from_secs(5)).await.is_ok(), "the same layout");

    // PATCH to medium: 640x360 within 10 s; then the low encode stops.
    let url = format!("{}{}", server.url, low.location);
    let patch = |body: &'static str| {
        reqwest::Client::new().patch(url.clone()).header("content-type", "application/json").body(body).send()
    };
    let response = patch(r#"{"quality": "medium"}"#).await.unwrap();
    assert_eq!(response.status(), 200);
    let info: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(info["receive"], serde_json::json!({"codec": "H264", "quality": "medium", "auto": false}));
    let r = frame_size(&low, Duration::from_secs(10), (640, 360)).await;
    assert!(r.is_ok(), "PATCH to medium gives 640x360: {r:?}");
    let r = eventually(Duration::from_secs(5), || async {
        let n = encoders(&server).await;
        if n == 2.0 { Ok(()) } else { Err(format!("{n} encoders")) }
    })
    .await;
    assert!(r.is_ok(), "VP8 high and H.264 medium run, H.264 low stopped: {r:?}");

    // Errors: an unknown tier is 400, on join and on PATCH; an unknown id 404.
    let response = patch(r#"{"quality": "ultra"}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("unknown quality"));
    let err = Client::join(&server.url, "tiers", viewer(VideoCodec::Vp8, Some("ultra"))).await.err().unwrap();
    assert!(matches!(err, mcu_bench::client::ClientError::Refused { status: 400, .. }), "{err}");
    let unknown = reqwest::Client::new()
        .patch(format!("{}/rooms/tiers/participants/nobody", server.url))
        .header("content-type", "application/json")
        .body(r#"{"quality": "low"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // The last receiver of an encode leaves: it stops (no CPU); the last one: all do.
    low.leave().await.unwrap();
    let r = eventually(Duration::from_secs(5), || async {
        let n = encoders(&server).await;
        if n == 1.0 { Ok(()) } else { Err(format!("{n} encoders")) }
    })
    .await;
    assert!(r.is_ok(), "only VP8 high left: {r:?}");
    red.leave().await.unwrap();
    let r = eventually(Duration::from_secs(5), || async {
        let n = encoders(&server).await;
        if n == 0.0 { Ok(()) } else { Err(format!("{n} encoders")) }
    })
    .await;
    assert!(r.is_ok(), "no encoder left: {r:?}");
}
