//! The load generator: rooms of synthetic participants, and one measurement window
//! over them (server and generator CPU, what the probe saw, what everyone received).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::media::{BenchMedia, Voice};
use super::peer::{Counts, Participant, Spec, Target};
use super::probe::Probe;
use super::sys::{self, CpuWindow};

/// Running load: `rooms[r][i]` is participant `i` (join order) of room `r`; the probe
/// is `rooms[0][0]`.
pub struct Load {
    /// Participants per room.
    pub rooms: Vec<Vec<Participant>>,
    /// The probe's findings.
    pub probe: Arc<Probe>,
}

/// What the load sends.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub per_room: usize,
    /// Send (and receive) video too; audio is always sent.
    pub video: bool,
    /// Participants per room who talk (the first ones to join, the probe's clicker
    /// among them); the others send an open microphone's hiss. `None`: everyone.
    pub talkers: Option<usize>,
}

impl Shape {
    /// `rooms` rooms of `per_room` where everyone talks.
    pub fn talking(rooms: usize, per_room: usize, video: bool) -> Self {
        Self { rooms, per_room, video, talkers: None }
    }
}

/// Joins `shape.rooms` rooms of `shape.per_room` participants, one at a time;
/// `target(r)` says where room `r` is.
pub async fn start(target: impl Fn(usize) -> Target, shape: Shape, media: &Arc<BenchMedia>) -> Result<Load, String> {
    let probe = Arc::new(Probe::default());
    let mut rooms = Vec::new();
    for r in 0..shape.rooms {
        let target = target(r);
        let mut participants = Vec::new();
        for i in 0..shape.per_room {
            let spec = Spec {
                video: shape.video,
                audio: true,
                voice: if r == 0 && i == 1 {
                    Voice::Clicking
                } else if shape.talkers.is_some_and(|t| i >= t) {
                    Voice::Silent
                } else {
                    Voice::Talking
                },
                probe: (r == 0 && i == 0).then(|| Arc::clone(&probe)),
                name: format!("bench-{r}-{i}"),
            };
            let p = Participant::join(&target, spec, Arc::clone(media)).await?;
            if r == 0 {
                if shape.video
                    && let Ok(mut s) = probe.senders.lock()
                {
                    s.push(Arc::clone(&p.log));
                }
                if i == 1
                    && let Ok(mut c) = probe.clicker.lock()
                {
                    *c = Some((Arc::clone(&p.log), media.click_offset_samples));
                }
            }
            participants.push(p);
        }
        rooms.push(participants);
    }
    Ok(Load { rooms, probe })
}

impl Load {
    /// Leaves every participant.
    pub async fn stop(self) {
        let all: Vec<_> = self.rooms.into_iter().flatten().map(|p| tokio::spawn(p.leave())).collect();
        for j in all {
            let _ = j.await;
        }
    }

    fn counts(&self) -> (Counts, Counts) {
        let mut v = Counts::default();
        let mut a = Counts::default();
        for p in self.rooms.iter().flatten() {
            v = v + p.stats.video.counts();
            a = a + p.stats.audio.counts();
        }
        (v, a)
    }

    /// Waits until every participant receives audio (and the probe decodes video),
    /// at most `timeout`; returns whether they all did.
    pub async fn wait_flowing(&self, video: bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let audio_ok = self.rooms.iter().flatten().all(|p| p.stats.audio.packets.load(Ordering::Relaxed) > 0);
            let video_ok = !video || self.probe.frames.load(Ordering::Relaxed) > 0;
            if audio_ok && video_ok {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Measures for `secs` seconds.
    pub async fn measure(&self, server_pid: Option<u32>, secs: f64) -> Window {
        self.probe.reset();
        for p in self.rooms.iter().flatten() {
            p.stats.audio.max_gap_us.store(0, Ordering::Relaxed);
        }
        let frames0 = self.probe.frames.load(Ordering::Relaxed);
        let (v0, a0) = self.counts();
        self.probe.measuring.store(true, Ordering::Relaxed);
        let cpu = CpuWindow::start(&[server_pid, None]);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let machine_cpu = cpu.machine();
        let (used, wall) = cpu.stop();
        self.probe.measuring.store(false, Ordering::Relaxed);
        let (v1, a1) = self.counts();
        let frames = self.probe.frames.load(Ordering::Relaxed) - frames0;
        let receivers = self.rooms.iter().map(Vec::len).sum::<usize>();
        let max_audio_gap_ms =
            self.rooms.iter().flatten().map(|p| p.stats.audio.max_gap_us.load(Ordering::Relaxed)).max().unwrap_or(0)
                as f64
                / 1000.0;
        let take = |m: &std::sync::Mutex<Vec<f64>>| m.lock().map(|v| v.clone()).unwrap_or_default();
        let (video, audio) = (v1 - v0, a1 - a0);
        Window {
            wall_s: wall,
            server_cpu: server_pid.map(|_| used[0]),
            loadgen_cpu: used[1],
            machine_cpu,
            server_rss_mib: server_pid.and_then(|p| sys::rss_mib(Some(p))),
            probe_fps: frames as f64 / wall,
            receivers,
            video_fps_per_receiver: video.frames as f64 / wall / receivers.max(1) as f64,
            video_packets: video.packets,
            video_lost: video.lost,
            audio_packets: audio.packets,
            audio_lost: audio.lost,
            audio_late: audio.late,
            audio_packets_expected: (wall * 50.0) as u64 * receivers as u64,
            max_audio_gap_ms,
            video_latency_ms: take(&self.probe.video_latency_ms),
            audio_latency_ms: take(&self.probe.audio_latency_ms),
            probe_decode_ms: take(&self.probe.probe_decode_ms),
            stamps_read: self.probe.stamps_read.load(Ordering::Relaxed),
            stamps_failed: self.probe.stamps_failed.load(Ordering::Relaxed),
        }
    }
}

/// One measurement window.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Window {
    /// Length (s).
    pub wall_s: f64,
    /// Server CPU, cores (user+sys seconds per wall second).
    pub server_cpu: Option<f64>,
    /// The load generator's own CPU, cores.
    pub loadgen_cpu: f64,
    /// Every process on the machine (cores): what else ran shows as the rest.
    pub machine_cpu: f64,
    /// Server RSS at the end (MiB).
    pub server_rss_mib: Option<f64>,
    /// Composite frames per second decoded by the probe.
    pub probe_fps: f64,
    /// Receiving participants.
    pub receivers: usize,
    /// Composite frames (marker bits) per second per receiver.
    pub video_fps_per_receiver: f64,
    /// Video packets received by everyone.
    pub video_packets: u64,
    /// Video sequence numbers skipped.
    pub video_lost: u64,
    /// Audio packets received by everyone.
    pub audio_packets: u64,
    /// Audio sequence numbers skipped.
    pub audio_lost: u64,
    /// Audio inter-arrivals > 60 ms.
    pub audio_late: u64,
    /// 50 packets/s per receiver.
    pub audio_packets_expected: u64,
    /// Longest audio inter-arrival at any receiver (ms).
    pub max_audio_gap_ms: f64,
    /// Video latency samples (ms).
    pub video_latency_ms: Vec<f64>,
    /// Audio latency samples (ms).
    pub audio_latency_ms: Vec<f64>,
    /// The probe's own decode time samples (ms).
    pub probe_decode_ms: Vec<f64>,
    /// Barcodes read.
    pub stamps_read: u64,
    /// Barcodes unreadable.
    pub stamps_failed: u64,
}

impl Window {
    /// Whether the audio was gap-free for everyone: no lost packet, no inter-arrival
    /// over 60 ms.
    pub fn audio_gap_free(&self) -> bool {
        self.audio_lost == 0 && self.audio_late == 0
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        let lat = |v: &[f64]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("p50 {:.0} p95 {:.0} ms", sys::percentile(v, 50.0), sys::percentile(v, 95.0))
            }
        };
        format!(
            "server cpu {} | loadgen cpu {:.2} | machine {:.2} | rss {} | probe {:.1} fps (rx {:.1} fps, probe decode {}, stamps {}/{}) | audio pkts {}/{} lost {} late {} max gap {:.0} ms | video lat {} | audio lat {}",
            self.server_cpu.map_or("-".into(), |c| format!("{c:.2}")),
            self.loadgen_cpu,
            self.machine_cpu,
            self.server_rss_mib.map_or("-".into(), |r| format!("{r:.0} MiB")),
            self.probe_fps,
            self.video_fps_per_receiver,
            lat(&self.probe_decode_ms),
            self.stamps_read,
            self.stamps_read + self.stamps_failed,
            self.audio_packets,
            self.audio_packets_expected,
            self.audio_lost,
            self.audio_late,
            self.max_audio_gap_ms,
            lat(&self.video_latency_ms),
            lat(&self.audio_latency_ms),
        )
    }
}
