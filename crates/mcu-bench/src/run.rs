//! `mcu-bench all`: every measurement, against servers the benchmark starts itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::capacity::{self, CapRow};
use super::content::Content;
use super::janus::Janus;
use super::load::{self, Shape, Window};
use super::media::{BenchMedia, Voice};
use super::peer::{Participant, Spec, Target};
use super::probe::Probe;
pub use super::server::{Server, server_exe};
use super::{limit, sys};
use mcu::config::MediaConfig;

/// Talkers in an audio-only room: a meeting where three people talk over each other
/// and everyone else listens with an open microphone.
pub const AUDIO_ONLY_TALKERS: usize = 3;

/// How long each part runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Warm-up before a window (s).
    pub warmup: f64,
    /// Mixing-overhead window (s).
    pub mixing: f64,
    /// Capacity step window (s).
    pub capacity: f64,
    /// Audio-only comparison window (s).
    pub audio: f64,
    /// Joins timed.
    pub joins: usize,
}

/// One row of the mixing-overhead table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixRow {
    /// Participants in the room.
    pub n: usize,
    /// What the load saw.
    pub window: Window,
    /// The reference pipeline's CPU (cores).
    pub limit_cpu: Option<f64>,
    /// Every process while the reference ran (cores).
    pub limit_machine_cpu: Option<f64>,
    /// Frames per second the reference kept.
    #[serde(default)]
    pub limit_fps: Option<f64>,
}

/// One audio-only comparison row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudioRow {
    /// Participants in the room.
    pub n: usize,
    /// This server.
    pub mcu: Option<Window>,
    /// Janus AudioBridge.
    pub janus: Option<Window>,
    /// Why Janus could not be measured.
    pub janus_error: Option<String>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Results {
    /// CPU, memory, OS, versions.
    pub machine: Vec<(String, String)>,
    /// When (UTC).
    pub date: String,
    /// Sender media bitrate (bit/s).
    pub video_bitrate: f64,
    /// Server RSS with no room (MiB).
    pub idle_rss_mib: f64,
    /// Mixing overhead, N = 4, 9, 16.
    pub mixing: Vec<MixRow>,
    /// RSS slope over the mixing runs (MiB per participant).
    pub rss_per_participant_mib: f64,
    /// Offer sent -> first decoded composite frame (ms).
    pub join_ms: Vec<f64>,
    /// Single-room capacity steps (every content class).
    pub capacity_single: Vec<CapRow>,
    /// Four-person-rooms capacity steps (every content class).
    pub capacity_rooms: Vec<CapRow>,
    /// Audio-only, this server vs Janus.
    pub audio_only: Vec<AudioRow>,
    /// `perf report` of the server at N = 16, when perf works.
    pub profile: Option<String>,
    /// Join reliability and speed (`mcu-bench connect` runs).
    #[serde(default)]
    pub connect: Vec<super::connect::ConnectSummary>,
    /// When the join runs were made (UTC; they may come from a later partial run).
    #[serde(default)]
    pub connect_date: String,
    /// One encode's cost and picture quality per tier, codec and encoder setting.
    #[serde(default)]
    pub encode: Vec<super::encode::EncodeRow>,
    /// When the encoder runs were made (UTC).
    #[serde(default)]
    pub encode_date: String,
    /// What the name labels cost.
    #[serde(default)]
    pub labels: Option<super::labels::LabelCost>,
    /// Many WHEP viewers of one room.
    #[serde(default)]
    pub whep: Option<super::whep::WhepLoad>,
    /// What a receiver of each tier sees, per content class, beside its room's cost.
    #[serde(default)]
    pub received: Vec<super::received::ReceivedRow>,
    /// When the received-picture runs were made (UTC).
    #[serde(default)]
    pub received_date: String,
    /// What a receiver sees on a quiet and a starved machine, per VP8 encoder setting.
    #[serde(default)]
    pub starved: Vec<super::starved::StarvedRow>,
    /// When the starved-machine runs were made (UTC).
    #[serde(default)]
    pub starved_date: String,
}

impl Results {
    /// Fills the parts not measured in this run (`measured` says which were) from an
    /// earlier run, so a partial run updates its own figures only.
    pub fn keep_unmeasured(&mut self, earlier: Results, measured: impl Fn(&str) -> bool) {
        // The machine and date describe the main run; a part measured later says when.
        if !measured("mixing") {
            self.machine = earlier.machine;
            self.date = earlier.date;
        }
        if !measured("mixing") && !measured("limit") {
            self.mixing = earlier.mixing;
            self.idle_rss_mib = earlier.idle_rss_mib;
            self.rss_per_participant_mib = earlier.rss_per_participant_mib;
            self.video_bitrate = earlier.video_bitrate;
        }
        if !measured("join") {
            self.join_ms = earlier.join_ms;
        }
        if !measured("profile") {
            self.profile = earlier.profile;
        }
        if !measured("capacity") {
            self.capacity_single = earlier.capacity_single;
            self.capacity_rooms = earlier.capacity_rooms;
        }
        if !measured("audio") {
            self.audio_only = earlier.audio_only;
        }
        if !measured("connect") {
            self.connect = earlier.connect;
            self.connect_date = earlier.connect_date;
        }
        if !measured("encode") {
            self.encode = earlier.encode;
            self.encode_date = earlier.encode_date;
        }
        if !measured("labels") {
            self.labels = earlier.labels;
        }
        if !measured("whep") {
            self.whep = earlier.whep;
        }
        if !measured("received") {
            self.received = earlier.received;
            self.received_date = earlier.received_date;
        }
        if measured("starved") {
            // Rows of other server builds (a comparison) stay, before this one's.
            let measured: Vec<String> = self.starved.iter().map(|r| r.server.clone()).collect();
            let mut rows: Vec<_> = earlier.starved.into_iter().filter(|r| !measured.contains(&r.server)).collect();
            rows.append(&mut self.starved);
            self.starved = rows;
        } else {
            self.starved = earlier.starved;
            self.starved_date = earlier.starved_date;
        }
    }

    /// Largest single room that passed with `content`.
    pub fn max_single(&self, content: Content) -> usize {
        capacity::largest_pass(self.capacity_single.iter().filter(|r| r.content == content), |r| r.per_room)
    }
    /// Largest number of 4-person rooms that passed with `content`.
    pub fn max_rooms(&self, content: Content) -> usize {
        capacity::largest_pass(self.capacity_rooms.iter().filter(|r| r.content == content), |r| r.rooms)
    }
}

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

/// Starts `shape` on `server`, warms up, measures one window, leaves.
pub(super) async fn window_on(
    target: impl Fn(usize) -> Target,
    pid: u32,
    shape: Shape,
    media: &Arc<BenchMedia>,
    warmup: f64,
    secs: f64,
) -> Result<Window, String> {
    let load = load::start(target, shape, media).await?;
    let flowing = load.wait_flowing(shape.video, Duration::from_secs(20)).await;
    if !flowing {
        eprintln!("bench:   warning: not everyone receives media after 20 s");
    }
    sleep(warmup).await;
    let w = load.measure(Some(pid), secs).await;
    load.stop().await;
    sleep(1.5).await;
    Ok(w)
}

/// A capacity step passes: the probe keeps >= 29 fps and the audio has no gap.
pub(super) fn passes(w: &Window) -> bool {
    w.probe_fps >= 29.0 && w.audio_gap_free()
}

/// Runs every measurement.
/// Runs the parts in `only` (all when empty): connect, encode, labels, whep, received, starved, mixing,
/// join, profile, limit, capacity, audio.
pub async fn all(media_dir: &Path, work: &Path, timing: Timing, only: &[String]) -> Result<Results, String> {
    let want = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    let mut r = Results { machine: machine(), date: date(), ..Default::default() };
    let config = MediaConfig::default();

    // Joins, one after another and many at once, with and without a CPU hog.
    if want("connect") {
        eprintln!(
            "bench: [0/5] joins connect (1000 one after another, 200 with 50 at once; with and without a CPU hog)"
        );
        let server = Server::start(work)?;
        sleep(1.0).await;
        r.connect = super::connect::bench_rows(&server.url).await;
        r.connect_date = date();
    }
    // One encode per tier, codec and encoder setting: cost and picture quality.
    if want("encode") {
        eprintln!("bench: [0/5] one encode per tier, codec and encoder: cores, bitrate, PSNR/SSIM");
        let photos = media_dir.join("photos");
        r.encode = tokio::task::spawn_blocking(move || super::encode::measure_all(&photos))
            .await
            .map_err(|e| e.to_string())??;
        r.encode_date = date();
    }
    if want("labels") {
        eprintln!("bench: [0/5] name labels: rasterising, redrawing, compositing");
        let when = date();
        r.labels = Some(
            tokio::task::spawn_blocking(move || super::labels::measure(when)).await.map_err(|e| e.to_string())??,
        );
    }
    if want("whep") {
        eprintln!("bench: [0/5] WHEP viewers of one room: 1, 10, 50");
        let server = Server::start(work)?;
        sleep(1.0).await;
        r.whep = Some(super::whep::measure(&server.url, server.pid(), date()).await?);
    }
    if want("received") {
        eprintln!("bench: [0/5] what a receiver of each tier sees (PSNR/SSIM of every cell) beside the room's CPU");
        // Without name labels: they are drawn on every cell and no source has them.
        let server = Server::start_configured(work, "[media]\nlabels = false\n")?;
        sleep(1.0).await;
        r.received = super::received::measure(&server.url, server.pid(), &media_dir.join("photos")).await?;
        r.received_date = date();
    }
    if want("starved") {
        eprintln!("bench: [0/5] photographs at high on a quiet and a starved machine, per VP8 encoder setting");
        // `MCU_BENCH_SERVER` names another build run through `MCU_BIN`, whose rows
        // then stay beside this build's.
        let server = std::env::var("MCU_BENCH_SERVER").unwrap_or_else(|_| "this build".to_owned());
        r.starved = super::starved::measure(work, &media_dir.join("photos"), &server).await?;
        r.starved_date = date();
    }
    if !["mixing", "join", "profile", "limit", "capacity", "audio"].iter().any(|p| want(p)) {
        return Ok(r);
    }
    let media = super::media::prepare(media_dir, Content::ZonePlate)?;
    r.video_bitrate = media.video_bitrate;

    // 1 + 5: mixing overhead, memory.
    eprintln!("bench: [1/5] mixing overhead and memory (N = 4, 9, 16)");
    let server = Server::start(work)?;
    sleep(2.0).await;
    r.idle_rss_mib = sys::rss_mib(Some(server.pid())).unwrap_or(0.0);
    for n in [4, 9, 16] {
        if !want("mixing") {
            break;
        }
        let shape = Shape::talking(1, n, true);
        let w =
            window_on(|_| server.target(format!("mix{n}")), server.pid(), shape, &media, timing.warmup, timing.mixing)
                .await?;
        eprintln!("bench:   N={n:2} {}", w.summary());
        r.mixing.push(MixRow { n, window: w, limit_cpu: None, limit_machine_cpu: None, limit_fps: None });
    }
    // Join time: a probe joins a room of three, again and again.
    if want("join") {
        join_times(&server, &media, timing.joins, &mut r.join_ms).await?;
    }
    // Profile at N = 16.
    if want("profile") {
        r.profile = profile(&server, &media).await;
    }
    drop(server);

    // The reference pipeline.
    eprintln!("bench: [3/5] reference pipeline (gst-launch-1.0, same media work, no WebRTC)");
    for row in &mut r.mixing {
        if !want("limit") {
            break;
        }
        let machine = sys::CpuWindow::start(&[]);
        match limit::measure(&media, &config, row.n, 3.0, timing.mixing).await {
            Ok((cpu, fps)) => {
                row.limit_cpu = Some(cpu);
                row.limit_fps = fps;
                row.limit_machine_cpu = Some(machine.machine());
                eprintln!(
                    "bench:   N={:2} reference cpu {cpu:.2} | {} fps | machine {:.2}",
                    row.n,
                    fps.map_or("?".into(), |f| format!("{f:.1}")),
                    machine.machine()
                );
            }
            Err(e) => eprintln!("bench:   N={:2} reference failed: {e}", row.n),
        }
    }

    // Capacity, per content class.
    eprintln!("bench: [4/5] capacity (>= 29 fps at the probe, no audio gap), per content class");
    for content in Content::ALL {
        if !want("capacity") {
            break;
        }
        // The zone plate's mixing runs are its first single-room steps.
        let (media, known) = if content == media.content {
            let known = r.mixing.iter().map(|m| CapRow {
                content,
                rooms: 1,
                per_room: m.n,
                window: m.window.clone(),
                pass: passes(&m.window),
            });
            (media.clone(), known.collect())
        } else {
            (super::media::prepare(media_dir, content)?, Vec::new())
        };
        let (single, rooms) = capacity::search(work, &media, timing, known).await?;
        r.capacity_single.extend(single);
        r.capacity_rooms.extend(rooms);
    }

    // Audio only: this server vs Janus AudioBridge.
    eprintln!("bench: [5/5] audio-only rooms, this server vs Janus AudioBridge");
    for n in [10, 25, 50] {
        if !want("audio") {
            break;
        }
        let shape = Shape { rooms: 1, per_room: n, video: false, talkers: Some(AUDIO_ONLY_TALKERS) };
        let server = Server::start(work)?;
        sleep(1.0).await;
        let mcu =
            window_on(|_| server.target(format!("audio{n}")), server.pid(), shape, &media, timing.warmup, timing.audio)
                .await;
        drop(server);
        let mcu = match mcu {
            Ok(w) => {
                eprintln!("bench:   mcu   N={n:2}: {}", w.summary());
                Some(w)
            }
            Err(e) => {
                eprintln!("bench:   mcu   N={n:2}: failed: {e}");
                None
            }
        };
        let (janus, janus_error) = match janus_window(work, shape, &media, timing).await {
            Ok(w) => {
                eprintln!("bench:   janus N={n:2}: {}", w.summary());
                (Some(w), None)
            }
            Err(e) => {
                eprintln!("bench:   janus N={n:2}: failed: {e}");
                (None, Some(e))
            }
        };
        r.audio_only.push(AudioRow { n, mcu, janus, janus_error });
    }

    // RSS per participant: least-squares slope over the mixing runs.
    let pts: Vec<(f64, f64)> =
        r.mixing.iter().filter_map(|m| m.window.server_rss_mib.map(|rss| (m.n as f64, rss))).collect();
    r.rss_per_participant_mib = slope(&pts);
    Ok(r)
}

async fn janus_window(work: &Path, shape: Shape, media: &Arc<BenchMedia>, timing: Timing) -> Result<Window, String> {
    let janus = Janus::start(work, 18_088).await?;
    let room = janus.create_room(1234).await?;
    let base = janus.base.clone();
    window_on(|_| Target::Janus { base: base.clone(), room }, janus.pid(), shape, media, timing.warmup, timing.audio)
        .await
}

async fn join_times(server: &Server, media: &Arc<BenchMedia>, joins: usize, out: &mut Vec<f64>) -> Result<(), String> {
    eprintln!("bench: [2/5] join time ({} joins into a room of 3)", joins);
    let others = load::start(|_| server.target("join".into()), Shape::talking(1, 3, true), media).await?;
    others.wait_flowing(true, Duration::from_secs(10)).await;
    for i in 0..joins {
        let probe = Arc::new(Probe::default());
        let spec = Spec {
            video: true,
            audio: true,
            voice: Voice::Talking,
            probe: Some(Arc::clone(&probe)),
            name: format!("joiner{i}"),
        };
        let p = Participant::join(&server.target("join".into()), spec, Arc::clone(media)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while probe.first_frame_ns.load(Ordering::Relaxed) == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = probe.first_frame_ns.load(Ordering::Relaxed);
        if first > 0 {
            out.push((first - p.offer_sent_ns) as f64 / 1e6);
        }
        p.leave().await;
        sleep(0.5).await;
    }
    others.stop().await;
    eprintln!("bench:   join p50 {:.0} ms p95 {:.0} ms", sys::percentile(out, 50.0), sys::percentile(out, 95.0));
    Ok(())
}

/// Least-squares slope of `y` over `x`.
pub fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = pts.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    num / den
}

/// `perf record` of the server during a 16-person room; `perf report` by shared
/// object and by symbol. `None` when perf is missing or not permitted.
async fn profile(server: &Server, media: &Arc<BenchMedia>) -> Option<String> {
    let ok = Command::new("perf").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        eprintln!("bench:   perf not available: no profile");
        return None;
    }
    eprintln!("bench:   profiling the server at N = 16 (perf record, 10 s)");
    let shape = Shape::talking(1, 16, true);
    let load = load::start(|_| server.target("profile".into()), shape, media).await.ok()?;
    load.wait_flowing(true, Duration::from_secs(20)).await;
    sleep(3.0).await;
    let data = std::env::temp_dir().join(format!("mcu-bench-perf-{}.data", std::process::id()));
    let pid = server.pid().to_string();
    let data_s = data.to_string_lossy().to_string();
    let recorded = tokio::task::spawn_blocking(move || {
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p", &pid, "-o", &data_s, "--", "sleep", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    })
    .await
    .ok()?;
    load.stop().await;
    if !recorded.is_ok_and(|s| s.success()) {
        return None;
    }
    let report = |sort: &str, limit: &str| -> String {
        Command::new("perf")
            .args(["report", "-i"])
            .arg(&data)
            .args(["--stdio", "--no-children", "-g", "none", "--sort", sort, "--percent-limit", limit])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                    .map(str::trim_end)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let by_thread = report("comm", "1");
    let by_dso = report("dso", "1");
    let by_sym = report("dso,sym", "1.5");
    let _ = std::fs::remove_file(&data);
    Some(format!("By thread:\n{by_thread}\n\nBy shared object:\n{by_dso}\n\nBy symbol:\n{by_sym}"))
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map_or("?".into(), |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| o.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| l[12..].trim_matches('"').to_owned()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let gst = gstreamer::version_string().to_string();
    let janus = Command::new("janus")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "not installed".into());
    vec![
        ("CPU".into(), format!("{model}, {cores} cores available")),
        ("Memory".into(), mem),
        ("OS".into(), format!("{os}, Linux {kernel}")),
        ("GStreamer".into(), gst),
        ("Janus".into(), janus),
    ]
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Default output locations.
pub fn default_paths() -> (PathBuf, PathBuf) {
    (PathBuf::from("BENCHMARKS.md"), PathBuf::from("docs/bench"))
}
