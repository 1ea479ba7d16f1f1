//! Live-resource gauges: how many pipelines, decoders, mixers and peer connections
//! exist right now. Incremented when a resource is built and decremented when it is
//! really freed (in `Drop`), so `GET /metrics` shows leaks, not intentions.

use std::sync::atomic::{AtomicI64, Ordering};

/// One gauge.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    const fn new() -> Self {
        Self(AtomicI64::new(0))
    }
    /// One more live resource.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// `n` more (a counter's events).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// One fewer live resource.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Room media pipelines (one GStreamer pipeline per room with video).
pub static PIPELINES: Gauge = Gauge::new();
/// Publisher video decode branches linked into a compositor.
pub static VIDEO_DECODERS: Gauge = Gauge::new();
/// Composite encodes running, one per (codec, tier) in use.
pub static VIDEO_ENCODERS: Gauge = Gauge::new();
/// Receivers' video forwarders.
pub static VIDEO_FORWARDERS: Gauge = Gauge::new();
/// Audio mixer threads.
pub static AUDIO_MIXERS: Gauge = Gauge::new();
/// Audio sources (decoders) inside the mixers.
pub static AUDIO_SOURCES: Gauge = Gauge::new();
/// WebRTC peer connections not yet closed.
pub static PEER_CONNECTIONS: Gauge = Gauge::new();
/// Tasks reading a remote track.
pub static TRACK_READERS: Gauge = Gauge::new();
/// Recordings being written.
pub static RECORDINGS: Gauge = Gauge::new();
/// Audio publishers in a mix now (speaking): each has its own mix-minus encode, the
/// rest share their room's full-mix encode.
pub static AUDIO_SPEAKERS: Gauge = Gauge::new();
/// Encoded audio frames dropped because a listener's track writer fell behind
/// (a counter: only ever incremented).
pub static AUDIO_FRAMES_DROPPED: Gauge = Gauge::new();

/// Received audio packets dropped because the mixer thread had too many waiting (a
/// stalled mixer or a flooding peer; a counter).
pub static AUDIO_PACKETS_DROPPED: Gauge = Gauge::new();

/// Publishers' video packets their decode branch's jitter buffer gave up on: lost on
/// the way in and not resent in time (a counter). Each loss freezes that cell until
/// the keyframe the server then asks for.
pub static VIDEO_INPUT_PACKETS_LOST: Gauge = Gauge::new();
/// Keyframes the server's decoders asked publishers for (before the PLI throttle; a
/// counter): at the start of each input and after each unrecovered loss.
pub static VIDEO_KEYFRAMES_REQUESTED: Gauge = Gauge::new();
/// Composite frames dropped in front of an encoder that fell behind (a counter): the
/// encode's frame rate falls, its picture stays whole.
pub static VIDEO_ENCODE_FRAMES_DROPPED: Gauge = Gauge::new();
/// Times a receiver's forwarder fell behind its encode and skipped to the next
/// keyframe (a counter): the receiver's picture froze for the gap, it never broke.
pub static VIDEO_RECEIVER_RESYNCS: Gauge = Gauge::new();
/// Video packets receivers asked again for (RTCP NACK; a counter).
pub static VIDEO_PACKETS_NACKED: Gauge = Gauge::new();
/// Video packets resent to receivers (a counter): the NACKed ones still young enough
/// to help and within the retransmission budget.
pub static VIDEO_PACKETS_RESENT: Gauge = Gauge::new();

/// Rooms created since the server started (a counter): with bad joins refused before
/// any room is touched, it grows only with rooms that had a valid join.
pub static ROOMS_CREATED: Gauge = Gauge::new();

/// Joins refused, by reason (a counter per reason): a storm of broken offers shows
/// as what it is, not as server errors.
static JOIN_FAILURES: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts one refused join (join, WHIP or WHEP) for `reason` (a fixed, short word).
pub fn join_failed(reason: &'static str) {
    *JOIN_FAILURES.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_insert(0) += 1;
}

/// The CPU budget and its estimated use, cores.
#[derive(Debug, Clone, Copy)]
pub struct CpuLoad {
    /// The budget (`None`: no limit).
    pub budget: Option<f64>,
    /// Estimated use by what runs and joins in flight.
    pub estimated: f64,
}

/// Renders the gauges in the Prometheus text format.
pub fn render(rooms: usize, participants: usize, cpu: CpuLoad) -> String {
    let gauges: [(&str, &str, i64); 12] = [
        ("mcu_rooms", "Rooms with at least one participant", rooms as i64),
        ("mcu_participants", "Participants in all rooms", participants as i64),
        ("mcu_pipelines", "Live room media pipelines", PIPELINES.get()),
        ("mcu_video_decoders", "Live publisher video decode branches", VIDEO_DECODERS.get()),
        ("mcu_video_encoders", "Composite encodes running (one per codec and tier in use)", VIDEO_ENCODERS.get()),
        ("mcu_video_forwarders", "Receivers' video forwarders", VIDEO_FORWARDERS.get()),
        ("mcu_audio_mixers", "Live audio mixer threads", AUDIO_MIXERS.get()),
        ("mcu_audio_sources", "Live audio decoders in mixers", AUDIO_SOURCES.get()),
        ("mcu_peer_connections", "Peer connections not yet closed", PEER_CONNECTIONS.get()),
        ("mcu_track_readers", "Tasks reading remote tracks", TRACK_READERS.get()),
        ("mcu_recordings", "Recordings being written", RECORDINGS.get()),
        ("mcu_audio_speakers", "Audio publishers in a mix now, each with its own encode", AUDIO_SPEAKERS.get()),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
    }
    let counters = [
        (
            "mcu_audio_frames_dropped_total",
            "Audio frames dropped because a listener's writer fell behind",
            AUDIO_FRAMES_DROPPED.get(),
        ),
        (
            "mcu_audio_packets_dropped_total",
            "Received audio packets dropped because too many waited for the mixer",
            AUDIO_PACKETS_DROPPED.get(),
        ),
        (
            "mcu_video_input_packets_lost_total",
            "Publishers' video packets lost and not resent in time (the cell froze until a keyframe)",
            VIDEO_INPUT_PACKETS_LOST.get(),
        ),
        (
            "mcu_video_keyframes_requested_total",
            "Keyframes the server's decoders asked publishers for",
            VIDEO_KEYFRAMES_REQUESTED.get(),
        ),
        (
            "mcu_video_encode_frames_dropped_total",
            "Composite frames dropped in front of an encoder that fell behind",
            VIDEO_ENCODE_FRAMES_DROPPED.get(),
        ),
        (
            "mcu_video_receiver_resyncs_total",
            "Times a receiver fell behind its encode and resumed at the next keyframe",
            VIDEO_RECEIVER_RESYNCS.get(),
        ),
        (
            "mcu_video_packets_nacked_total",
            "Video packets receivers asked again for (NACK)",
            VIDEO_PACKETS_NACKED.get(),
        ),
        ("mcu_video_packets_resent_total", "Video packets resent to receivers", VIDEO_PACKETS_RESENT.get()),
    ];
    for (name, help, value) in counters {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
    }
    let created = ROOMS_CREATED.get();
    out.push_str(&format!(
        "# HELP mcu_rooms_created_total Rooms created since start\n# TYPE mcu_rooms_created_total counter\n\
         mcu_rooms_created_total {created}\n"
    ));
    out.push_str("# HELP mcu_join_failures_total Joins refused, by reason\n# TYPE mcu_join_failures_total counter\n");
    for (reason, count) in JOIN_FAILURES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        out.push_str(&format!("mcu_join_failures_total{{reason=\"{reason}\"}} {count}\n"));
    }
    let cores = [
        ("mcu_cpu_budget_cores", "CPU cores media may use (0: no limit)", cpu.budget.unwrap_or(0.0)),
        ("mcu_cpu_estimated_cores", "Estimated CPU cores used by what runs and joins in flight", cpu.estimated),
    ];
    for (name, help, value) in cores {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value:.3}\n"));
    }
    if let Some(heap) = crate::memory::heap_usage() {
        let heap = [
            ("mcu_process_heap_in_use_bytes", "Bytes the allocator handed out and not freed", heap.in_use),
            ("mcu_process_heap_free_bytes", "Bytes freed into the allocator's arenas, not returned", heap.free),
            ("mcu_process_heap_arena_bytes", "Bytes the allocator's arenas took from the system", heap.arenas),
        ];
        for (name, help, value) in heap {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        }
    }
    out
}

/// Increments a gauge now and decrements it when dropped: tie it to the resource.
#[derive(Debug)]
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    /// Counts one live resource on `gauge` until the guard drops.
    pub fn new(gauge: &'static Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
