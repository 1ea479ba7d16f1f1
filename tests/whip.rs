//! WHIP publishers and WHEP viewers with two independent WebRTC implementations:
//! GStreamer's `webrtcbin` and webrtc-rs. A viewer sees the publishers' colours and
//! hears their tones; the HTTP side follows RFC 9725 (Location, ETag, DELETE, PATCH,
//! OPTIONS with the ICE servers, auth, CORS).

mod common;

use std::time::Duration;

use common::{Server, color_matches, eventually, fresh_tone_levels, tone_levels, wait_for_pixels};
use mcu::auth::{Claims, Permission, mint, unix_now};
use mcu_bench::client::{Client, ClientError, ClientOptions, Endpoint};
use mcu_bench::webrtcbin::WebrtcbinSession;

const GREEN: u32 = 0x00ff00;
const RED: u32 = 0xff0000;

fn whep_viewer() -> ClientOptions {
    ClientOptions { endpoint: Endpoint::Whep, video_color: None, tone_hz: None, receive: true, ..Default::default() }
}

fn whip_publisher(color: u32, tone_hz: f32) -> ClientOptions {
    ClientOptions {
        endpoint: Endpoint::Whip,
        video_color: Some(color),
        tone_hz: Some(tone_hz),
        receive: false,
        name: Some("obs".into()),
        ..Default::default()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whep_viewer_sees_and_hears_whip_publishers_across_implementations() {
    let server = Server::start("");
    let url = server.url.clone();

    // webrtcbin publishes over WHIP: green and 660 Hz.
    let gst_publisher = blocking(move || WebrtcbinSession::publish(&url, "whip", GREEN, 660)).await.unwrap();
    assert!(gst_publisher.location.starts_with("/whip/whip/"), "{}", gst_publisher.location);
    let (_, state) = server.get_json("/rooms/whip").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(state["participants"][0]["video"], true, "{state}");
    assert_eq!(state["participants"][0]["receive"], serde_json::Value::Null, "a WHIP publisher receives nothing");

    // webrtc-rs watches over WHEP: the publisher's colour and tone.
    let viewer = server.join("whip", whep_viewer()).await;
    assert!(viewer.location.starts_with("/whep/whip/"), "{}", viewer.location);
    wait_for_pixels(&viewer, &[(640, 360, GREEN)], Duration::from_secs(10)).await.unwrap();
    let levels = fresh_tone_levels(&viewer, &[660.0]).await;
    assert!(levels[0] > 0.5, "the viewer hears the WHIP publisher's tone: {levels:?}");
    let (_, state) = server.get_json("/rooms/whip").await;
    assert_eq!(state["viewers"], 1, "{state}");
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "a viewer is not a participant: {state}");

    // webrtc-rs publishes over WHIP with a sendrecv offer: answered recvonly.
    let rs_publisher = server.join("whip", ClientOptions { receive: true, ..whip_publisher(RED, 440.0) }).await;
    assert!(!rs_publisher.answer.contains("a=sendrecv"), "{}", rs_publisher.answer);
    assert!(!rs_publisher.answer.contains("a=sendonly"), "the server sends a WHIP publisher nothing");

    // webrtcbin watches over WHEP: both publishers side by side, both tones.
    let url = server.url.clone();
    let gst_viewer = blocking(move || WebrtcbinSession::view(&url, "whip")).await.unwrap();
    eventually(Duration::from_secs(15), || {
        let left = gst_viewer.rgb_at(320, 360);
        let right = gst_viewer.rgb_at(960, 360);
        async move {
            match (left, right) {
                (Some(l), Some(r)) if color_matches(l, GREEN) && color_matches(r, RED) => Ok(()),
                other => Err(format!("left/right of the webrtcbin viewer's picture: {other:?}")),
            }
        }
    })
    .await
    .unwrap();
    gst_viewer.audio.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pcm: Vec<i16> = {
        let audio = gst_viewer.audio.lock().unwrap();
        audio[audio.len().saturating_sub(65_536)..].to_vec()
    };
    assert!(pcm.len() >= 65_536, "the webrtcbin viewer decoded {} samples", pcm.len());
    let levels = tone_levels(&pcm, &[440.0, 660.0]);
    assert!(levels.iter().all(|&l| l > 0.3), "the webrtcbin viewer hears both tones: {levels:?}");
    let (_, state) = server.get_json("/rooms/whip").await;
    assert_eq!(state["viewers"], 2, "{state}");

    // DELETE on the session resource ends it.
    let response =
        reqwest::Client::new().delete(format!("{}{}", server.url, gst_publisher.location)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (_, state) = server.get_json("/rooms/whip").await;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(1), "{state}");
    let response =
        reqwest::Client::new().delete(format!("{}{}", server.url, gst_publisher.location)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404, "a session ends once");
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_and_whep_resources_follow_rfc_9725() {
    let server = Server::start("[turn]\nurls = [\"stun:127.0.0.1:3478\", \"turn:127.0.0.1:3478\"]\nsecret = \"t\"\n");
    let http = reqwest::Client::new();

    // A viewer of a room that does not exist.
    match Client::join(&server.url, "nobody-here", whep_viewer()).await {
        Err(ClientError::Refused { status, body }) => {
            assert_eq!((status, body.contains("error")), (404, true), "{body}")
        }
        other => panic!("WHEP on an unknown room: {:?}", other.err()),
    }

    // OPTIONS: what it takes and the ICE servers, TURN credentials included.
    let options = http.request(reqwest::Method::OPTIONS, format!("{}/whip/opts", server.url)).send().await.unwrap();
    assert_eq!(options.status().as_u16(), 204);
    assert_eq!(options.headers()["accept-post"], "application/sdp");
    let links: Vec<&str> = options.headers().get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(links.iter().any(|l| l.starts_with("<stun:127.0.0.1:3478>; rel=\"ice-server\"")), "{links:?}");
    assert!(
        links.iter().any(|l| l.starts_with("<turn:127.0.0.1:3478>; rel=\"ice-server\"; username=\"")
            && l.contains("credential=\"")
            && l.ends_with("credential-type=\"password\"")),
        "{links:?}"
    );

    // POST: 201 with Location, ETag and the ICE servers.
    let publisher = server.join("opts", whip_publisher(RED, 440.0)).await;
    let resource = format!("{}{}", server.url, publisher.location);
    let patch = |content_type: &'static str, if_match: Option<&'static str>| {
        let mut request = http.patch(&resource).header("content-type", content_type).body("a=end-of-candidates\r\n");
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    assert_eq!(patch("application/trickle-ice-sdpfrag", None).await.unwrap().status().as_u16(), 204);
    assert_eq!(patch("application/trickle-ice-sdpfrag", Some("*")).await.unwrap().status().as_u16(), 204);
    assert_eq!(patch("application/trickle-ice-sdpfrag", Some("\"other\"")).await.unwrap().status().as_u16(), 412);
    assert_eq!(patch("application/sdp", None).await.unwrap().status().as_u16(), 415);
    let unknown = http
        .patch(format!("{}/whip/opts/0123456789abcdef", server.url))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);

    // The headers of a fresh POST (raw, to read them all).
    let viewer_offer = viewer_offer_sdp().await;
    let created = http
        .post(format!("{}/whep/opts", server.url))
        .header("content-type", "application/sdp")
        .body(viewer_offer)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let headers = created.headers().clone();
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/whep/opts/"), "{location}");
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(headers["etag"].to_str().unwrap(), format!("\"{id}\""));
    assert_eq!(headers["content-type"], "application/sdp");
    assert!(headers.get_all("link").iter().count() >= 2, "{headers:?}");
    let ended = http.delete(format!("{}{location}", server.url)).send().await.unwrap();
    assert_eq!(ended.status().as_u16(), 200);

    // A WHIP offer that only wants to receive is not a publisher's.
    let wrong = http
        .post(format!("{}/whip/opts", server.url))
        .header("content-type", "application/sdp")
        .body(viewer_offer_sdp().await)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 400);
    assert!(wrong.text().await.unwrap().contains("recvonly"));
    let wrong_type = http.post(format!("{}/whep/opts", server.url)).body("v=0").send().await.unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);
    publisher.close().await;
}

/// A receive-only offer with every candidate, from a webrtc-rs peer that is then
/// dropped (for raw HTTP checks).
async fn viewer_offer_sdp() -> String {
    use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
    use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
    use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
    let pc = mcu_bench::client::new_api(true).unwrap().new_peer_connection(Default::default()).await.unwrap();
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, send_encodings: vec![] };
        pc.add_transceiver_from_kind(kind, Some(init)).await.unwrap();
    }
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let sdp = pc.local_description().await.unwrap().sdp;
    pc.close().await.unwrap();
    sdp
}

const SECRET: &str = "whip-secret-0123456789";

fn token(room: &str, perms: &[Permission]) -> String {
    mint(SECRET, &Claims { sub: "obs".into(), room: room.into(), exp: unix_now() + 600, perms: perms.to_vec() })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whip_and_whep_take_the_same_tokens_and_answer_cors() {
    let server = Server::start_with(
        Some(&format!(
            "[rtc]\ninclude_loopback = true\ninterfaces = [\"lo\"]\n[auth]\nsecret = {SECRET:?}\n\
             cors_origins = [\"https://player.example\"]\n"
        )),
        &[("MCU_LISTEN", "127.0.0.1:0"), ("MCU_MAX_CPU_CORES", "0")],
    );
    let status = |result: Result<Client, ClientError>| match result {
        Ok(_) => 201,
        Err(ClientError::Refused { status, .. }) => status,
        Err(e) => panic!("{e}"),
    };
    let with = |options: ClientOptions, token: Option<String>| ClientOptions { token, ..options };
    assert_eq!(status(Client::join(&server.url, "sec", with(whip_publisher(RED, 440.0), None)).await), 401);
    let watch_only = Some(token("sec", &[Permission::Subscribe]));
    assert_eq!(status(Client::join(&server.url, "sec", with(whip_publisher(RED, 440.0), watch_only)).await), 403);
    let publish = Some(token("sec", &[Permission::Publish]));
    let publisher = Client::join(&server.url, "sec", with(whip_publisher(RED, 440.0), publish.clone())).await.unwrap();
    assert_eq!(status(Client::join(&server.url, "sec", with(whep_viewer(), publish)).await), 403);
    let viewer =
        Client::join(&server.url, "sec", with(whep_viewer(), Some(token("sec", &[Permission::Subscribe])))).await;
    let viewer = viewer.unwrap();
    // Another identity's session is not yours to end.
    let stranger =
        mint(SECRET, &Claims { sub: "someone-else".into(), room: "sec".into(), exp: unix_now() + 600, perms: vec![] })
            .unwrap();
    let response = reqwest::Client::new()
        .delete(format!("{}{}", server.url, publisher.location))
        .bearer_auth(stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    // A browser player on the allowed origin: the preflight and the exposed headers.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/whep/sec", server.url))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, authorization, if-match")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 200);
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("if-match") && allowed.contains("authorization"), "{allowed}");
    let patch_preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}{}", server.url, viewer.location))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(patch_preflight.status().as_u16(), 200);
    let state = reqwest::Client::new()
        .get(format!("{}/rooms/sec", server.url))
        .header("origin", "https://player.example")
        .bearer_auth(token("sec", &[Permission::Subscribe]))
        .send()
        .await
        .unwrap();
    let exposed = state.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["location", "etag", "link"] {
        assert!(exposed.contains(header), "{header} is exposed: {exposed}");
    }
    viewer.close().await;
    publisher.close().await;
}
