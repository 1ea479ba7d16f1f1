//! Access control with a secret configured: tokens minted by the `token` command,
//! every refusal as the contract's 401/403 with a JSON reason, the open endpoints,
//! the per-IP join limit and CORS.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;
use mcu::auth::{Claims, Permission, mint, unix_now};
use mcu_bench::client::{Client, ClientError, ClientOptions};

const SECRET: &str = "test-secret-0123456789";

fn token(room: &str, perms: &[Permission], ttl: i64) -> String {
    let exp = (unix_now() as i64 + ttl) as u64;
    mint(SECRET, &Claims { sub: "tester".into(), room: room.into(), exp, perms: perms.to_vec() }).unwrap()
}

fn secured_server(extra: &str) -> Server {
    Server::start(&format!("[auth]\nsecret = {SECRET:?}\n{extra}"))
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(serde_json::Value::Null))
}

async fn join_status(server: &Server, room: &str, token: Option<String>, options: ClientOptions) -> (u16, String) {
    match Client::join(&server.url, room, ClientOptions { token, ..options }).await {
        Ok(client) => {
            client.close().await;
            (201, String::new())
        }
        Err(ClientError::Refused { status, body }) => (status, body),
        Err(e) => panic!("join failed unexpectedly: {e}"),
    }
}

fn publisher() -> ClientOptions {
    ClientOptions { video_color: Some(0xff0000), tone_hz: Some(440.0), receive: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_need_a_valid_token_with_the_right_permissions() {
    let server = secured_server("");
    let both = [Permission::Publish, Permission::Subscribe];

    let cases: Vec<(&str, Option<String>, ClientOptions, u16, &str)> = vec![
        ("missing token", None, publisher(), 401, "missing bearer token"),
        ("expired", Some(token("a", &both, -30)), publisher(), 401, "expired"),
        (
            "wrong signature",
            Some(
                mint(
                    "another-secret",
                    &Claims { sub: "x".into(), room: "a".into(), exp: unix_now() + 60, perms: both.to_vec() },
                )
                .unwrap(),
            ),
            publisher(),
            401,
            "bad signature",
        ),
        ("garbage", Some("not-a-token".into()), publisher(), 401, "invalid token"),
        ("other room", Some(token("b", &both, 60)), publisher(), 403, "not \"a\""),
        ("subscribe only, sending", Some(token("a", &[Permission::Subscribe], 60)), publisher(), 403, "publish"),
        ("publish only, receiving", Some(token("a", &[Permission::Publish], 60)), publisher(), 403, "subscribe"),
    ];
    for (what, token, options, status, reason) in cases {
        let (got, body) = join_status(&server, "a", token, options).await;
        let error =
            serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
        assert_eq!(got, status, "{what}: {body}");
        assert!(error.as_deref().is_some_and(|e| e.contains(reason)), "{what}: error {error:?} should say {reason:?}");
    }

    // The token command mints what the server accepts.
    let minted = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["token", "--room", "a", "--identity", "alice", "--perms", "publish,subscribe", "--ttl", "60"])
        .env("MCU_AUTH_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let cli_token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let client = Client::join(&server.url, "a", ClientOptions { token: Some(cli_token.clone()), ..publisher() })
        .await
        .expect("a valid token joins");
    assert!(client.wait_connected(Duration::from_secs(10)).await);
    // A watch-only join needs only `subscribe`; a wildcard room covers any room.
    let viewer = ClientOptions { video_color: None, tone_hz: None, ..Default::default() };
    let (status, body) = join_status(&server, "a", Some(token("*", &[Permission::Subscribe], 60)), viewer).await;
    assert_eq!(status, 201, "{body}");

    // Room state needs any valid token for that room.
    assert_eq!(get(&server, "/rooms/a", None).await.0, 401);
    assert_eq!(get(&server, "/rooms/a", Some(&token("b", &both, 60))).await.0, 403);
    let (status, state) = get(&server, "/rooms/a", Some(&cli_token)).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(client.leave().await.unwrap(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn management_needs_record_or_admin_and_healthz_stays_open() {
    let server = secured_server("");
    let user = token("r", &[Permission::Publish, Permission::Subscribe], 60);
    let recorder = token("r", &[Permission::Record], 60);
    let admin = token("*", &[Permission::Admin], 60);

    assert_eq!(get(&server, "/healthz", None).await.0, 200);
    assert_eq!(get(&server, "/", None).await.0, 200, "the page itself is public");
    for path in ["/rooms", "/recordings", "/metrics"] {
        assert_eq!(get(&server, path, None).await.0, 401, "{path} without a token");
        let (status, body) = get(&server, path, Some(&user)).await;
        assert_eq!(status, 403, "{path} with a participant token: {body}");
        assert!(body["error"].as_str().unwrap().contains("admin"), "{body}");
    }
    assert_eq!(get(&server, "/rooms", Some(&admin)).await.0, 200);
    assert_eq!(get(&server, "/recordings", Some(&admin)).await.0, 200);

    let http = reqwest::Client::new();
    let url = format!("{}/rooms/r/recording", server.url);
    assert_eq!(http.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&url).bearer_auth(&user).send().await.unwrap().status(), 403);
    // Allowed, and then the room is unknown.
    assert_eq!(http.post(&url).bearer_auth(&recorder).send().await.unwrap().status(), 404);
    assert_eq!(http.delete(&url).bearer_auth(&admin).send().await.unwrap().status(), 404);
    assert_eq!(get(&server, "/recordings/x.webm", Some(&user)).await.0, 403);

    // ICE servers: any valid token.
    assert_eq!(get(&server, "/ice-servers", None).await.0, 401);
    let (status, doc) = get(&server, "/ice-servers", Some(&user)).await;
    assert_eq!(status, 200);
    assert!(doc["iceServers"].is_array() && doc["ttl"].is_u64(), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_per_address_are_rate_limited() {
    let server = Server::start("[server]\njoin_rate_per_min = 3\n");
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        // An unusable offer still counts as a join attempt.
        let r = http
            .post(format!("{}/rooms/limited/join", server.url))
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_the_configured_origins_only() {
    let server = Server::start("[auth]\ncors_origins = [\"https://app.example\"]\n");
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/rooms/x/join", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    // Same-origin and non-browser requests are unaffected.
    assert_eq!(http.get(format!("{}/healthz", server.url)).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_joiner_or_an_admin_removes_a_participant() {
    let server = secured_server("");
    let mint_for = |sub: &str, perms: &[Permission]| {
        mint(SECRET, &Claims { sub: sub.into(), room: "own".into(), exp: unix_now() + 60, perms: perms.to_vec() })
            .unwrap()
    };
    let alice = mint_for("alice", &[Permission::Publish, Permission::Subscribe]);
    let mallory = mint_for("mallory", &[Permission::Subscribe]);
    let admin = mint_for("ops", &[Permission::Admin]);
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let options = ClientOptions { token: Some(alice.clone()), ..publisher() };
        clients.push(Client::join(&server.url, "own", options).await.expect("join"));
    }
    let locations: Vec<String> = clients.iter().map(|c| format!("{}{}", server.url, c.location)).collect();
    let status = http.delete(&locations[0]).bearer_auth(&mallory).send().await.unwrap().status();
    assert_eq!(status, 403, "another identity cannot remove alice");
    assert_eq!(http.delete(&locations[0]).bearer_auth(&alice).send().await.unwrap().status(), 204);
    assert_eq!(http.delete(&locations[1]).bearer_auth(&admin).send().await.unwrap().status(), 204);
    for client in clients {
        client.close().await;
    }
}
