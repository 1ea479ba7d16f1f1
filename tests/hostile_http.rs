//! HTTP clients that misbehave: slow-loris connections trickling their headers or
//! their body, more connections than allowed, and malformed requests on every route.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads what the server sends until it closes (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    read.ok().map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_cut_off_and_capped_per_client() {
    let server = Server::start("[server]\nheader_timeout_ms = 1000\nmax_connections_per_ip = 5\n");
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Five connections trickling a header byte every 200 ms.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        let mut closed_after = Vec::new();
        for mut s in slow {
            let mut buf = [0u8; 256];
            loop {
                if s.write_all(b"X").await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ if started.elapsed() > Duration::from_secs(10) => break,
                    _ => {}
                }
            }
            closed_after.push(started.elapsed());
        }
        closed_after
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A sixth from the same address is refused with the contract's JSON error.
    let mut sixth = TcpStream::connect(&addr).await.unwrap();
    let _ = sixth.write_all(b"GET /rooms HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut sixth, Duration::from_secs(3)).await.expect("an answer, then closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#"{"error":"too many connections"}"#), "{answer}");

    // The trickling ones are cut off after the header timeout.
    let closed_after = trickle.await.unwrap();
    eprintln!("slow connections closed after {closed_after:?}");
    assert!(closed_after.iter().all(|t| *t < Duration::from_secs(3)), "{closed_after:?}");
    // And the server answers normally again.
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
}

/// A join whose body comes a byte every 2 s gets the contract's `408` 30 s after its
/// headers, and the server answers others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_slowly_gets_408_after_thirty_seconds() {
    let server = Server::start("");
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /rooms/slow/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 4000\r\n\r\nv=0")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        while started.elapsed() < Duration::from_secs(40) && writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200, "the server answers others while a body trickles in");
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(40), reader.read(&mut answer)).await;
    let waited = started.elapsed();
    trickle.abort();
    let n = read.expect("an answer within 40 s").expect("a readable answer");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    eprintln!("a trickled body answered after {waited:?}: {}", answer.lines().next().unwrap_or(""));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#"{"error":"request not received in time"}"#), "{answer}");
    assert!(waited >= Duration::from_secs(29) && waited < Duration::from_secs(33), "{waited:?}");
    let (_, rooms) = server.get_json("/rooms").await;
    assert!(!rooms.to_string().contains("slow"), "no room made of a half-received join: {rooms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_json_never_5xx() {
    let server = Server::start("");
    let http = reqwest::Client::new();
    let long = "a".repeat(10_000);
    let cases: Vec<(reqwest::Method, String, Option<&str>, Vec<u8>)> = vec![
        (reqwest::Method::POST, "/rooms/%F0%9F%98%80/join".into(), Some("application/sdp"), b"v=0".to_vec()),
        (reqwest::Method::POST, "/rooms/r/join".into(), Some("application/sdp"), vec![0xff; 100]),
        (reqwest::Method::POST, format!("/rooms/{long}/join"), Some("application/sdp"), b"v=0".to_vec()),
        (reqwest::Method::POST, "/rooms/r/join?name=%00%01".into(), Some("application/sdp"), b"v=0".to_vec()),
        (reqwest::Method::POST, format!("/rooms/r/join?{long}={long}"), Some("application/sdp"), b"v=0".to_vec()),
        (reqwest::Method::POST, "/rooms/r/layout".into(), Some("application/json"), b"{\"layout\":".to_vec()),
        (reqwest::Method::POST, "/rooms/r/layout".into(), Some("application/json"), vec![b'['; 100_000]),
        (reqwest::Method::POST, "/rooms/r/recording".into(), Some("application/json"), b"\"mp4\"".to_vec()),
        (reqwest::Method::POST, "/rooms/r/streams".into(), Some("application/json"), b"{\"url\":1}".to_vec()),
        (reqwest::Method::GET, "/recordings/..%2F..%2Fetc%2Fpasswd".into(), None, Vec::new()),
        (reqwest::Method::DELETE, "/rooms/r/participants/%2e%2e".into(), None, Vec::new()),
        (reqwest::Method::PATCH, "/whip/r/x".into(), Some("application/trickle-ice-sdpfrag"), vec![0; 10]),
        (reqwest::Method::POST, "/whep/r".into(), Some("application/sdp"), vec![b'v'; 70_000]),
        (reqwest::Method::PUT, "/rooms/r".into(), None, Vec::new()),
    ];
    for (method, path, content_type, body) in cases {
        let mut request = http.request(method.clone(), format!("{}{path}", server.url)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path:.60}: connection dropped: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let short = &path[..path.len().min(60)];
        assert!((400..500).contains(&status), "{method} {short}: {status} {text}");
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {short}: {status} not JSON: {text}"));
        assert!(json["error"].is_string(), "{method} {short}: {json}");
    }
    let (status, _) = server.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
}

/// A body the server refuses unread (too large) must not cost the client's next
/// request on the same keep-alive connection: the refusal closes that connection
/// cleanly instead of letting the client reuse one the server is about to drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_never_drops_the_next_request() {
    let server = Server::start("");
    let http = reqwest::Client::new();
    let oversized = vec![b'['; 100_000];
    for round in 0..200 {
        for (path, body) in [("/rooms/r/layout", oversized.clone()), ("/rooms/r/recording", b"\"mp4\"".to_vec())] {
            let response = http
                .post(format!("{}{path}", server.url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, POST {path}: connection dropped: {e:?}"));
            let status = response.status().as_u16();
            assert!((400..500).contains(&status), "round {round}, POST {path}: {status}");
            response.text().await.unwrap_or_else(|e| panic!("round {round}, POST {path}: body lost: {e:?}"));
        }
    }
}
