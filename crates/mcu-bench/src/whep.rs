//! `mcu-bench all --only whep`: many WHEP viewers of one room. Two publishers make
//! the composite; 1, then 10, then 50 receive-only viewers watch it over WHEP. The
//! composite and its encode are the same for any number of viewers (they share the
//! one `high` VP8 encode and the full-mix Opus encode), so what the server's CPU
//! grows by is per-viewer work: SRTP, packet sending, RTCP.
//!
//! The viewers count the frames they receive (RTP markers and timestamps) without
//! decoding them: fifty 720p decoders would take the machine from the server. One
//! extra viewer decodes, to show the picture is whole (its frames decoded per second).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Client, ClientOptions, Endpoint};
use super::sys;

/// Viewer counts measured.
const STEPS: [usize; 3] = [1, 10, 50];
/// Seconds before each window (joins settle, encodes reach their rate).
const WARMUP_S: u64 = 5;
/// Seconds of each window.
const WINDOW_S: u64 = 10;

/// One viewer count.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WhepRow {
    /// WHEP viewers watching (besides the decoding one).
    pub viewers: usize,
    /// Server cores over the window.
    pub server_cores: f64,
    /// Slowest viewer's received frame rate (frames with a marker, per second).
    pub min_fps: f64,
    /// Median viewer's received frame rate.
    pub median_fps: f64,
    /// Frames per second the decoding viewer decoded.
    pub decoded_fps: f64,
    /// Video the server sent all viewers, Mb/s.
    pub sent_mbps: f64,
}

/// The figures.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WhepLoad {
    /// One row per viewer count.
    pub rows: Vec<WhepRow>,
    /// When (UTC).
    pub date: String,
}

/// Measures the steps against the server at `url` (process `pid`).
pub async fn measure(url: &str, pid: u32, date: String) -> Result<WhepLoad, String> {
    let room = "whep-load";
    let mut publishers = Vec::new();
    for (color, hz) in [(0xff0000, 440.0), (0x00ff00, 660.0)] {
        // Noise: the encode runs at its full bitrate, the worst case for what each
        // viewer costs to send.
        let options = ClientOptions {
            video_color: Some(color),
            tone_hz: Some(hz),
            receive: false,
            video_pattern: "snow".into(),
            ..Default::default()
        };
        publishers.push(Client::join(url, room, options).await.map_err(|e| e.to_string())?);
    }
    let watcher = ClientOptions { endpoint: Endpoint::Whep, video_color: None, tone_hz: None, ..Default::default() };
    let decoding = Client::join(url, room, watcher.clone()).await.map_err(|e| e.to_string())?;
    let mut viewers: Vec<Client> = Vec::new();
    let mut rows = Vec::new();
    for step in STEPS {
        while viewers.len() < step {
            let options = ClientOptions { decode_video: false, ..watcher.clone() };
            viewers.push(Client::join(url, room, options).await.map_err(|e| e.to_string())?);
        }
        tokio::time::sleep(Duration::from_secs(WARMUP_S)).await;
        let frames = |c: &Client| c.received.frames_received.load(Ordering::Relaxed);
        let packets = |c: &Client| c.received.video_bytes.load(Ordering::Relaxed);
        let before: Vec<u64> = viewers.iter().map(frames).collect();
        let bytes_before: u64 = viewers.iter().map(packets).sum();
        let decoded_before = decoding.received.frames_decoded();
        let cpu_before = sys::cpu_seconds(Some(pid)).ok_or("cannot read the server's CPU time")?;
        tokio::time::sleep(Duration::from_secs(WINDOW_S)).await;
        let cpu = sys::cpu_seconds(Some(pid)).ok_or("cannot read the server's CPU time")? - cpu_before;
        let window = WINDOW_S as f64;
        let mut fps: Vec<f64> = viewers.iter().zip(&before).map(|(c, b)| (frames(c) - b) as f64 / window).collect();
        fps.sort_by(f64::total_cmp);
        let sent: u64 = viewers.iter().map(packets).sum::<u64>() - bytes_before;
        let row = WhepRow {
            viewers: step,
            server_cores: cpu / window,
            min_fps: fps.first().copied().unwrap_or(0.0),
            median_fps: sys::percentile(&fps, 50.0),
            decoded_fps: (decoding.received.frames_decoded() - decoded_before) as f64 / window,
            sent_mbps: sent as f64 * 8.0 / window / 1e6,
        };
        eprintln!(
            "bench:   {:2} WHEP viewers: server {:.2} cores, viewers at {:.1} fps (slowest) / {:.1} (median), \
             decoded {:.1} fps, {:.1} Mb/s sent",
            row.viewers, row.server_cores, row.min_fps, row.median_fps, row.decoded_fps, row.sent_mbps
        );
        rows.push(row);
    }
    for client in viewers.into_iter().chain(publishers).chain([decoding]) {
        client.close().await;
    }
    Ok(WhepLoad { rows, date })
}

/// The BENCHMARKS.md section.
pub fn markdown(load: &WhepLoad) -> String {
    let mut s = String::from(
        "### 4e. WHEP viewers of one room\n\n\
         Two publishers (320x240 VP8 of noise, and Opus) make the composite, so its encode runs at its full \
         bitrate (the worst case for the cost of sending it); receive-only webrtc-rs peers watch it over \
         `POST /whep/{room}` (the `high` tier, 1280x720 VP8 at 30 fps, and the full mix). Every viewer is fed \
         from the same encode: the server's extra cost per viewer is SRTP and packet sending. The viewers count \
         received frames without decoding them; one more viewer decodes every frame to show the picture is whole. \
         Server CPU over a 10 s window after 5 s of warm-up.\n\n\
         | viewers | server cores | per extra viewer | slowest viewer fps | median fps | decoded fps | video sent |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let base = load.rows.first().map(|r| (r.viewers, r.server_cores));
    for row in &load.rows {
        let per_viewer = match base {
            Some((n, cores)) if row.viewers > n => {
                format!("{:.4}", (row.server_cores - cores) / (row.viewers - n) as f64)
            }
            _ => "—".to_owned(),
        };
        s.push_str(&format!(
            "| {} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} Mb/s |\n",
            row.viewers, row.server_cores, per_viewer, row.min_fps, row.median_fps, row.decoded_fps, row.sent_mbps
        ));
    }
    if let (Some(first), Some(last)) = (load.rows.first(), load.rows.last()) {
        s.push_str(&format!(
            "\n{} viewers cost {:.1}x the server CPU of {} ({}, `mcu-bench all --only whep`).\n",
            last.viewers,
            last.server_cores / first.server_cores.max(1e-9),
            first.viewers,
            load.date
        ));
    }
    s
}
