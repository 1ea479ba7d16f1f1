//! Bandwidth adaptation over a real bottleneck: a receiver in its own network
//! namespace, joined to the server's by a veth pair whose server side is limited with
//! `tc tbf` to 300 kbit/s. On `auto` it drops to `low` within 5 s and keeps decoding;
//! with the limit lifted it climbs back within 20 s. Needs root (to make the
//! namespace); elsewhere it says why and skips.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Server;
use common::netns::Namespace;
use mcu_bench::client::{Client, ClientOptions};

/// Runs in the namespace (re-executed test binary): a receive-only participant on
/// `auto` that prints what it decodes, four times a second, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for a_receiver_behind_a_bottleneck_follows_its_bandwidth"]
async fn helper_receiver_in_the_namespace() {
    let Ok(url) = std::env::var("MCU_TEST_SERVER") else { return };
    let options = ClientOptions { video_color: None, tone_hz: None, loopback_only: false, ..Default::default() };
    let client = Client::join(&url, "thin", options).await.expect("join");
    assert!(client.wait_connected(Duration::from_secs(10)).await);
    loop {
        if let Some(frame) = client.received.frame() {
            let decoded = client.received.frames_decoded();
            println!("FRAME {}x{} {decoded}", frame.width, frame.height);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the helper last printed: the picture size and frames decoded so far.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<((u32, u32), u64)>,
    last: ((u32, u32), u64),
}

impl Receiver {
    /// Waits until the helper decodes a `size` picture; returns how long it took.
    fn wait_for(&mut self, size: impl Fn((u32, u32)) -> bool, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                self.last = line;
                if size(line.0) {
                    return Ok(start.elapsed());
                }
            }
        }
        Err(format!("after {timeout:?} it decodes {:?}", self.last.0))
    }

    fn decoded_over(&mut self, window: Duration) -> u64 {
        let before = self.last.1;
        let end = Instant::now() + window;
        while Instant::now() < end {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                self.last = line;
            }
        }
        self.last.1 - before
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_behind_a_bottleneck_follows_its_bandwidth() {
    let Some(link) = Namespace::or_skip() else { return };
    let config = format!("[rtc]\ninterfaces = [\"{}\"]\n", link.host_interface);
    let server = Server::start_with(Some(&config), &[("MCU_LISTEN", "0.0.0.0:0")]);
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    // A publisher whose picture (scrolling colour bars) keeps every encode near its
    // bitrate: the top tier needs far more than the link carries.
    let publisher = ClientOptions {
        video_pattern: "smpte horizontal-speed=4".into(),
        loopback_only: false,
        receive: false,
        ..common::publisher("noise", 0xffffff, 440.0)
    };
    let _publisher = server.join("thin", publisher).await;

    let mut child = Command::new("ip")
        .args(["netns", "exec", &link.name])
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_receiver_in_the_namespace", "--nocapture"])
        .env("MCU_TEST_SERVER", format!("http://{}:{port}", link.host_address))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the receiver in the namespace");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("FRAME") {
                continue;
            }
            let size = parts
                .next()
                .and_then(|s| s.split_once('x'))
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
            let decoded = parts.next().and_then(|d| d.parse().ok());
            if let (Some(size), Some(decoded)) = (size, decoded) {
                let _ = tx.send((size, decoded));
            }
        }
    });
    let mut receiver = Receiver { child, lines, last: ((0, 0), 0) };

    let r = receiver.wait_for(|s| s == (1280, 720), Duration::from_secs(20));
    assert!(r.is_ok(), "on an open link auto starts at high: {r:?}");

    link.limit("300kbit").unwrap();
    let took = receiver.wait_for(|s| s == (320, 180), Duration::from_secs(5));
    eprintln!("300 kbit/s: low after {took:?}");
    assert!(took.is_ok(), "drops to low within 5 s: {took:?}");
    let decoded = receiver.decoded_over(Duration::from_secs(3));
    eprintln!("decoded {decoded} frames in 3 s behind the bottleneck");
    assert!(decoded >= 15, "keeps decoding behind the bottleneck: {decoded} frames in 3 s (15 fps nominal)");

    link.unlimit().unwrap();
    let took = receiver.wait_for(|(w, _)| w >= 640, Duration::from_secs(20));
    eprintln!("limit lifted: {:?} after {took:?}", receiver.last.0);
    assert!(took.is_ok(), "climbs back within 20 s: {took:?}");
}
