//! Every error status of the contract's join/leave/room section, with its JSON body.

mod common;

use common::Server;
use mcu_bench::client::{Client, ClientOptions};

const OPUS_VP8_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";

async fn post(server: &Server, path: &str, content_type: Option<&str>, body: String) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", server.url)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.expect("POST");
    let status = r.status().as_u16();
    let json = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn assert_error(what: &str, (status, body): (u16, serde_json::Value), expected: u16) {
    assert_eq!(status, expected, "{what}: {body}");
    let reason = body["error"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{what}: error body must be {{\"error\": ...}}, got {body}");
}

fn watcher() -> ClientOptions {
    ClientOptions { video_color: None, tone_hz: None, receive: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_and_room_errors_have_the_contract_statuses() {
    let server = Server::start("[server]\nmax_participants_per_room = 1\nmax_rooms = 1\n");
    fn sdp(s: &str) -> Option<&str> {
        Some(s)
    }

    assert_error(
        "wrong content type",
        post(&server, "/rooms/a/join", sdp("text/plain"), OPUS_VP8_OFFER.into()).await,
        415,
    );
    assert_error("no content type", post(&server, "/rooms/a/join", None, OPUS_VP8_OFFER.into()).await, 415);
    let huge = format!("{OPUS_VP8_OFFER}{}", "a=x-padding:0123456789\r\n".repeat(3000));
    assert_error("oversize body", post(&server, "/rooms/a/join", sdp("application/sdp"), huge).await, 413);
    assert_error(
        "bad room name",
        post(&server, "/rooms/bad.name/join", sdp("application/sdp"), OPUS_VP8_OFFER.into()).await,
        400,
    );
    let long_room = "r".repeat(65);
    assert_error(
        "room name too long",
        post(&server, &format!("/rooms/{long_room}/join"), sdp("application/sdp"), OPUS_VP8_OFFER.into()).await,
        400,
    );
    assert_error("malformed SDP", post(&server, "/rooms/a/join", sdp("application/sdp"), "hello".into()).await, 400);
    let unsupported = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:102 H264/90000\r\n";
    assert_error(
        "unsupported codecs only",
        post(&server, "/rooms/a/join", sdp("application/sdp"), unsupported.into()).await,
        400,
    );
    // A well-formed Opus offer without ICE/DTLS attributes cannot be answered.
    assert_error(
        "offer without ICE credentials",
        post(&server, "/rooms/a/join", sdp("application/sdp"), OPUS_VP8_OFFER.into()).await,
        400,
    );

    // Failed joins leave no room behind.
    let (status, rooms) = server.get_json("/rooms").await;
    assert_eq!((status, rooms), (200, serde_json::json!([])));
    assert_error("unknown room", server.get_json("/rooms/nobody").await, 404);
    assert_error("bad room name in state", server.get_json("/rooms/no%20pe").await, 400);

    // Limits: one participant per room, one room per server.
    let first = Client::join(&server.url, "a", watcher()).await.expect("first join");
    match Client::join(&server.url, "a", watcher()).await {
        Err(mcu_bench::client::ClientError::Refused { status, body }) => {
            assert_eq!(status, 503, "room full: {body}");
            assert!(body.contains("\"error\""), "{body}");
        }
        other => panic!("second participant should be refused, got {:?}", other.map(|_| ())),
    }
    match Client::join(&server.url, "b", watcher()).await {
        Err(mcu_bench::client::ClientError::Refused { status, .. }) => assert_eq!(status, 503, "server full"),
        other => panic!("second room should be refused, got {:?}", other.map(|_| ())),
    }

    // Leave: unknown participant (existing room, and unknown room) is 404.
    let delete = |path: String| {
        let url = format!("{}{path}", server.url);
        async move {
            let r = reqwest::Client::new().delete(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(serde_json::Value::Null))
        }
    };
    assert_error("unknown participant", delete("/rooms/a/participants/nope".into()).await, 404);
    assert_error("unknown room on leave", delete("/rooms/zzz/participants/nope".into()).await, 404);
    assert_error("unknown route", server.get_json("/nowhere").await, 404);

    let (status, state) = server.get_json("/rooms/a").await;
    assert_eq!(status, 200);
    assert_eq!(state["recording"], serde_json::Value::Null);
    assert_eq!(state["participants"][0]["audio"], false, "a watcher publishes nothing");
    let (status, rooms) = server.get_json("/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(rooms, serde_json::json!([{"room": "a", "participants": 1, "recording": false}]));
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);

    assert_eq!(first.leave().await.unwrap(), 204);
}
