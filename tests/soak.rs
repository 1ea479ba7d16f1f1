//! A long run: in three rooms, participants join and leave every second, so each
//! room opens, fills, records, empties and closes every 12 seconds. Resident memory
//! is sampled after every step: its median over each of the last periods (the same
//! load as the first) must stay within 5 % of the first periods' after a warm-up.
//! (Peaks are printed, not compared: a period's peak is one sample, set by what
//! happens to coincide, a recording finalizing while encoders start.) Idle again at
//! the end, the server must hold what it held idle after the warm-up, within 5 %:
//! resident memory, and the allocator's bytes in use (`GET /metrics`). Every gauge is
//! 0 at the end, and file descriptors and threads are back to their idle count.
//! The test command runs it for 2 minutes; `make soak SOAK_SECS=1800` as long as
//! wanted (`MCU_SOAK_SECS`).

mod common;

use std::time::{Duration, Instant};

use common::{Server, publisher};
use mcu_bench::client::{Client, ClientOptions};

const ROOMS: usize = 3;
/// Steps (seconds) after which every room is back where it started.
const PERIOD: usize = 12;
/// Periods before the baseline is taken (allocator pools, plugin loading, caches).
const WARM_UP_PERIODS: usize = 2;
/// Periods whose medians are compared at the start and at the end.
const COMPARED_PERIODS: usize = 2;

/// What the process holds.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    fds: usize,
    threads: usize,
}

fn footprint(server: &Server) -> Footprint {
    let pid = server.pid();
    let count = |dir: &str| std::fs::read_dir(format!("/proc/{pid}/{dir}")).unwrap().count();
    Footprint { rss_kib: server.rss_kib(), fds: count("fd"), threads: count("task") }
}

/// The churn: who is in which room.
struct Churn {
    rooms: Vec<Vec<Client>>,
    step: usize,
    joins: usize,
    recordings: usize,
}

impl Churn {
    fn new() -> Self {
        Self { rooms: (0..ROOMS).map(|_| Vec::new()).collect(), step: 0, joins: 0, recordings: 0 }
    }

    /// One second's change. Room `step % 3` is visited: two joins then two leaves over
    /// its four visits of a period (the last leave closes it). A room starts
    /// recording the step after its second join and stops the step after its first
    /// leave, so it records with two participants and with one.
    async fn step(&mut self, server: &Server) {
        let room = self.step % ROOMS;
        let name = format!("soak{room}");
        let visit = (self.step % PERIOD) / ROOMS;
        if visit < 2 {
            let color = [0xff0000, 0x00ff00, 0x0000ff][self.joins % 3];
            let options = ClientOptions {
                video_size: (160, 120, 15),
                decode_video: false,
                ..publisher(&format!("p{}", self.joins), color, 440.0)
            };
            let client = server.join(&name, options).await;
            assert!(client.wait_connected(Duration::from_secs(10)).await, "join {} into {name} connected", self.joins);
            self.rooms[room].push(client);
            self.joins += 1;
        } else if !self.rooms[room].is_empty() {
            let client = self.rooms[room].remove(0);
            assert_eq!(client.leave().await.expect("leave"), 204);
        }
        // The room visited one step ago, after its second join or its first leave.
        let previous = (self.step + PERIOD - 1) % PERIOD;
        let (recorded, its_visit) = (previous % ROOMS, previous / ROOMS);
        if self.step > 0 && (its_visit == 1 || its_visit == 2) {
            let url = format!("{}/rooms/soak{recorded}/recording", server.url);
            let http = reqwest::Client::new();
            let response = if its_visit == 1 { http.post(url) } else { http.delete(url) }.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let expected = if its_visit == 1 { 201 } else { 200 };
            assert_eq!(status, expected, "recording in soak{recorded} at step {}: {body}", self.step);
            self.recordings += usize::from(its_visit == 1);
        }
        self.step += 1;
    }

    /// Runs `periods` periods, returning the resident memory samples of each.
    async fn run(&mut self, server: &Server, periods: usize) -> Vec<Vec<u64>> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut samples = Vec::new();
        for _ in 0..periods {
            let mut period = Vec::with_capacity(PERIOD);
            for _ in 0..PERIOD {
                tick.tick().await;
                self.step(server).await;
                period.push(footprint(server).rss_kib);
            }
            samples.push(period);
        }
        samples
    }
}

/// The allocator's figures in MiB: in use, free in its arenas, arenas.
async fn heap(server: &Server) -> (f64, f64, f64) {
    let metrics = server.metrics().await;
    let mib = |name: &str| metrics.get(name).copied().unwrap_or(0.0) / 1_048_576.0;
    (mib("mcu_process_heap_in_use_bytes"), mib("mcu_process_heap_free_bytes"), mib("mcu_process_heap_arena_bytes"))
}

/// Gauges of live resources that are not 0 (the CPU budget is configuration).
async fn live_gauges(server: &Server) -> Vec<(String, f64)> {
    server.gauges().await.into_iter().filter(|(_, value)| *value != 0.0).collect()
}

/// Waits for every gauge to reach 0, then for idle threads to retire (a tokio
/// blocking-pool thread lives 10 s after its last job, an unused GLib pool thread 15 s).
async fn settle(server: &Server) -> Vec<(String, f64)> {
    let until = Instant::now() + Duration::from_secs(15);
    let mut live = live_gauges(server).await;
    while !live.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        live = live_gauges(server).await;
    }
    tokio::time::sleep(Duration::from_secs(16)).await;
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_participants_and_recordings_churn_without_growth() {
    let total = std::env::var("MCU_SOAK_SECS").ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(120);
    // Everything but the two settlings (~17 s each) is whole periods.
    let periods = (total.saturating_sub(36) / PERIOD).max(WARM_UP_PERIODS + 2 * COMPARED_PERIODS);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rec-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_env = dir.display().to_string();
    let server = Server::start_with(None, &[("MCU_RECORDINGS_DIR", dir_env.as_str())]);
    let started = Instant::now();

    let mut churn = Churn::new();
    churn.run(&server, WARM_UP_PERIODS).await;
    let live = settle(&server).await;
    assert!(live.is_empty(), "gauges after the warm-up: {live:?}");
    let idle = footprint(&server);
    let idle_heap = heap(&server).await;
    let samples = churn.run(&server, periods - WARM_UP_PERIODS).await;
    let live = settle(&server).await;
    let end = footprint(&server);
    let end_heap = heap(&server).await;
    eprintln!("heap (MiB in use, free in arenas, arenas) after the warm-up {idle_heap:.1?}, at the end {end_heap:.1?}");
    let medians: Vec<u64> = samples
        .iter()
        .map(|period| {
            let mut sorted = period.clone();
            sorted.sort_unstable();
            sorted[sorted.len() / 2]
        })
        .collect();
    let peaks: Vec<u64> = samples.iter().map(|period| period.iter().copied().max().unwrap_or(0)).collect();
    eprintln!(
        "{} joins, {} recordings in {:?}; RSS per {PERIOD} s after the warm-up (KiB): medians {medians:?}, peaks \
         {peaks:?}; idle {idle:?} -> {end:?}",
        churn.joins,
        churn.recordings,
        started.elapsed()
    );

    assert!(live.is_empty(), "every gauge back to 0: {live:?}");
    assert!(churn.recordings >= periods * ROOMS - 1, "{} recordings", churn.recordings);
    let first = *medians[..COMPARED_PERIODS].iter().max().unwrap();
    let last = *medians[medians.len() - COMPARED_PERIODS..].iter().max().unwrap();
    let growth = last as f64 / first as f64 - 1.0;
    assert!(growth < 0.05, "resident memory under the same load grew {:.1} % ({first} -> {last} KiB)", growth * 100.0);
    // Idle again, the server holds what it held idle after the warm-up: the allocator
    // the same bytes in use (no leak), the process the same resident memory (what was
    // freed was given back).
    assert!(end_heap.0 <= idle_heap.0 * 1.05 + 1.0, "heap in use when idle grew: {idle_heap:.1?} -> {end_heap:.1?}");
    let kept = end.rss_kib as f64 / idle.rss_kib as f64 - 1.0;
    assert!(kept < 0.05, "idle resident memory grew {:.1} % ({} -> {} KiB)", kept * 100.0, idle.rss_kib, end.rss_kib);
    assert!(end.fds <= idle.fds, "file descriptors: {} -> {}", idle.fds, end.fds);
    assert!(end.threads <= idle.threads, "threads: {} -> {}", idle.threads, end.threads);
    assert!(server.alarms().is_empty(), "{:?}", server.alarms());
    let _ = std::fs::remove_dir_all(&dir);
}
