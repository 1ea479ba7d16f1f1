//! Helpers for integration tests: the real server binary on loopback, metrics,
//! colour and tone checks.
#![allow(dead_code)]

pub mod netns;
pub mod raw_peer;
pub mod redis;
pub mod relay;
pub mod rtmp;
pub mod sse;
pub mod watch;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mcu_bench::client::{Client, ClientOptions, DecodedFrame};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// The `mcu` binary, started as a user would, on loopback with a port chosen by the OS.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Log lines that mean a defect whatever the test checks: GStreamer criticals,
    /// panics.
    alarms: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The server's warning and error lines so far.
    warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server with the test defaults plus `extra_toml` (merged by section).
    pub fn start(extra_toml: &str) -> Server {
        let config = format!("[rtc]\ninclude_loopback = true\ninterfaces = [\"lo\"]\n{extra_toml}\n");
        // No CPU budget: tests load the machine on purpose (tests/admission.rs sets one).
        Server::start_with(Some(&config), &[("MCU_LISTEN", "127.0.0.1:0"), ("MCU_MAX_CPU_CORES", "0")])
    }

    /// Starts the server with an optional config file and extra environment, as an
    /// operator would (e.g. a container's environment and no file).
    pub fn start_with(config: Option<&str>, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcu"));
        command.arg("serve");
        if let Some(config) = config {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
            let path = dir.join(format!("mcu-test-{}-{}.toml", std::process::id(), rand_suffix()));
            std::fs::write(&path, config).expect("write config");
            command.arg("--config").arg(&path);
        }
        let mut child = command
            .envs(env.iter().copied())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info,webrtc=error".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mcu");
        // The server's log goes on to the test's stderr, watched for alarms.
        let alarms = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let seen = std::sync::Arc::clone(&alarms);
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let warned = std::sync::Arc::clone(&warnings);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if line.contains("WARN") || line.contains("ERROR") {
                    warned.lock().unwrap().push(line.clone());
                }
                if line.contains("-CRITICAL **") || line.contains("panicked at") {
                    seen.lock().unwrap().push(line);
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("server printed its listening line");
        let url = line.strip_prefix("listening on ").expect("listening line format").to_owned();
        Server { child, url, alarms, warnings }
    }

    /// The server's warning and error lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }

    /// GStreamer criticals and panics the server logged so far.
    pub fn alarms(&self) -> Vec<String> {
        self.alarms.lock().unwrap().clone()
    }

    /// Joins `room` with a synthetic participant.
    pub async fn join(&self, room: &str, options: ClientOptions) -> Client {
        Client::join(&self.url, room, options).await.expect("join")
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.expect("GET");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// The live-resource gauges.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let text = reqwest::get(format!("{}/metrics", self.url)).await.expect("metrics").text().await.unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// The live-resource gauges: the metrics without counters (`_total`), the CPU
    /// budget and estimate (configuration and a guess, not resources) and the
    /// process's heap figures.
    pub async fn gauges(&self) -> std::collections::BTreeMap<String, f64> {
        self.metrics()
            .await
            .into_iter()
            .filter(|(name, _)| {
                !name.contains("_total") && !name.starts_with("mcu_cpu_") && !name.starts_with("mcu_process_")
            })
            .collect()
    }

    /// Process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A loopback port free for both TCP and UDP, for a server the test starts (coturn,
/// nginx). Taken from 20000-29999, below the kernel's ephemeral range (32768 and up
/// here): a port the OS hands out for an outgoing connection or a `bind(0)` could be
/// taken again between this check and the server's own bind, and coturn whose TCP
/// port is taken never answers on UDP either.
pub fn free_server_port() -> u16 {
    use std::net::{TcpListener, UdpSocket};
    let start = (std::process::id() as u64 * 7919 + rand_suffix() / 1000) % 10_000;
    (0..10_000u64)
        .map(|i| 20_000 + ((start + i * 37) % 10_000) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port in 20000-29999")
}

/// Options for a participant sending a solid colour and a tone.
pub fn publisher(name: &str, color: u32, tone_hz: f32) -> ClientOptions {
    ClientOptions { name: Some(name.into()), video_color: Some(color), tone_hz: Some(tone_hz), ..Default::default() }
}

/// Whether `rgb` is within a codec's tolerance of `expected` (0xRRGGBB).
pub fn color_matches(rgb: [u8; 3], expected: u32) -> bool {
    let want = [(expected >> 16) as u8, (expected >> 8) as u8, expected as u8];
    rgb.iter().zip(want).all(|(&got, want)| got.abs_diff(want) <= 60)
}

/// Checks every `(x, y, colour)` on `frame`; returns the first mismatch.
pub fn check_pixels(frame: &DecodedFrame, expected: &[(u32, u32, u32)]) -> Result<(), String> {
    for &(x, y, color) in expected {
        let got = frame.rgb_at(x, y).ok_or("pixel read failed")?;
        if !color_matches(got, color) {
            return Err(format!("at ({x},{y}) expected #{color:06x}, got {got:?}"));
        }
    }
    Ok(())
}

/// Polls `check` every 200 ms until it returns Ok or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let result = check().await;
        if result.is_ok() || tokio::time::Instant::now() >= deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `client`'s latest composite frame shows every `(x, y, colour)`.
pub async fn wait_for_pixels(client: &Client, expected: &[(u32, u32, u32)], timeout: Duration) -> Result<(), String> {
    let received = client.received.clone();
    eventually(timeout, || {
        let received = received.clone();
        async move { check_pixels(&received.frame().ok_or("no frame decoded yet")?, expected) }
    })
    .await
}

/// A participant's id: the last segment of its join's `Location`.
pub fn id_of(client: &Client) -> String {
    client.location.rsplit('/').next().unwrap().to_owned()
}

/// Sends `body` as JSON with `method` to `path`; the status and the JSON answer
/// (`Null` when it is not JSON).
pub async fn send_json(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Tone levels (see [`tone_levels`]) in about 1.4 s of audio `client` hears from now.
pub async fn fresh_tone_levels(client: &Client, tones: &[f32]) -> Vec<f64> {
    client.received.clear_audio();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let pcm = client.received.recent_audio(65_536);
    assert!(pcm.len() >= 65_536, "got {} samples of audio", pcm.len());
    tone_levels(&pcm, tones)
}

/// Magnitude of the strongest FFT bin within 5 Hz of `hz` (Hann window), relative to
/// the strongest bin in the whole 100..4000 Hz band.
pub fn tone_levels(pcm: &[i16], tones: &[f32]) -> Vec<f64> {
    let n = pcm.len();
    let mut buf: Vec<Complex<f64>> = pcm
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / (n - 1) as f64).cos();
            Complex::new(f64::from(s) * w, 0.0)
        })
        .collect();
    let fft = FftPlanner::new().plan_fft_forward(n);
    fft.process(&mut buf);
    let bin_hz = 48_000.0 / n as f64;
    let peak_near = |hz: f64, width: f64| -> f64 {
        let lo = ((hz - width) / bin_hz).floor().max(0.0) as usize;
        let hi = ((hz + width) / bin_hz).ceil() as usize;
        buf[lo..=hi.min(n / 2)].iter().map(|c| c.norm()).fold(0.0, f64::max)
    };
    let band_peak = peak_near(2050.0, 1950.0).max(1.0);
    tones.iter().map(|&hz| peak_near(f64::from(hz), 5.0) / band_peak).collect()
}
