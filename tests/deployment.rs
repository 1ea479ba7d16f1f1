//! The deployment files agree with the server: the compose file is valid and sets
//! exactly the variables the server reads, and the server runs as the container
//! does (environment only, one UDP port, a public IP in its candidates).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, publisher};
use mcu_bench::client::{Client, ClientOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_compose_file_is_valid_and_sets_the_variables_the_server_reads() {
    let out = Command::new("bash")
        .arg(root().join("scripts/check-compose.sh"))
        .arg("--print-env")
        .output()
        .expect("run scripts/check-compose.sh");
    assert!(out.status.success(), "compose file invalid: {}", String::from_utf8_lossy(&out.stderr));
    let in_compose: BTreeSet<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    // MCU_CONFIG names a file; the container is configured by environment alone.
    let read_by_server: BTreeSet<String> =
        mcu::config::ENV_VARS.iter().filter(|v| **v != "MCU_CONFIG").map(|v| v.to_string()).collect();
    assert_eq!(in_compose, read_by_server, "docker-compose.yml vs the variables the server reads");

    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    for var in &read_by_server {
        assert!(example.contains(var.as_str()), ".env.example documents {var}");
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for word in dockerfile.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("MCU_") {
            assert!(mcu::config::ENV_VARS.contains(&word), "Dockerfile sets {word}, which the server does not read");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_runs_from_the_container_environment() {
    let udp_port = common::free_server_port().to_string();
    let recordings = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("container-rec-{}", std::process::id()));
    // As in docker-compose.yml: no config file; the public IP is where clients reach
    // the published port (here loopback, like `MCU_PUBLIC_IP=127.0.0.1` for a trial).
    let server = Server::start_with(
        None,
        &[
            ("MCU_LISTEN", "127.0.0.1:0"),
            ("MCU_UDP_PORT", &udp_port),
            ("MCU_PUBLIC_IP", "127.0.0.1"),
            ("MCU_RECORDINGS_DIR", recordings.to_str().unwrap()),
            ("MCU_AUTH_SECRET", ""),
            ("MCU_TURN_URLS", ""),
            ("MCU_CORS_ORIGINS", ""),
        ],
    );
    let red = server.join("container", publisher("red", 0xff0000, 440.0)).await;
    let viewer = Client::join(
        &server.url,
        "container",
        ClientOptions { video_color: None, tone_hz: None, ..Default::default() },
    )
    .await
    .expect("join");
    let answer = &viewer.answer;
    let candidates: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate")).collect();
    assert!(!candidates.is_empty(), "answer has candidates:\n{answer}");
    for c in &candidates {
        let fields: Vec<&str> = c.split_whitespace().collect();
        assert_eq!(
            (fields[4], fields[5]),
            ("127.0.0.1", udp_port.as_str()),
            "every candidate is PUBLIC_IP:UDP_PORT: {c}"
        );
    }
    assert!(viewer.wait_connected(Duration::from_secs(10)).await);
    common::wait_for_pixels(&viewer, &[(640, 360, 0xff0000)], Duration::from_secs(15))
        .await
        .expect("the composite arrives over the one UDP port");
    red.close().await;
    viewer.close().await;
}
