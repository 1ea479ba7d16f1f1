//! Diagnostic (ignored by default): rooms created and emptied again and again, with
//! the server's resident memory printed after each cycle.
//! `cargo test --test soak -- --ignored --nocapture`

mod common;

use std::time::Duration;

use common::{Server, publisher};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn memory_after_repeated_rooms() {
    let server = Server::start("");
    eprintln!("idle: {} KiB", rss_kib(server.pid()));
    for cycle in 0..12 {
        let room = format!("soak{cycle}");
        let a = server.join(&room, publisher("a", 0xff0000, 440.0)).await;
        let b = server.join(&room, publisher("b", 0x00ff00, 660.0)).await;
        assert!(a.wait_connected(Duration::from_secs(10)).await && b.wait_connected(Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.leave().await.unwrap();
        b.leave().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = server.metrics().await;
        let pid = server.pid();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
        eprintln!(
            "cycle {cycle}: {} KiB, {threads} threads, {fds} fds, pipelines {} peers {}",
            rss_kib(pid),
            m["mcu_pipelines"],
            m["mcu_peer_connections"]
        );
    }
}
