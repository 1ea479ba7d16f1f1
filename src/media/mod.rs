//! The media plane: GStreamer pipelines for video, an Opus mixer thread for audio.
//!
//! Everything here runs on its own threads (GStreamer streaming threads, the mixer
//! thread), never on the async runtime; the room task drives it through small,
//! non-blocking calls.

pub mod audio;
mod audio_queue;
pub mod codec;
pub mod encode;
pub mod frame_size;
pub mod input_rate;
pub mod jitter;
pub mod keyframe;
pub mod label;
pub mod mix;
pub mod name_tags;
pub mod quality;
pub mod recorder;
pub mod speaker;
pub mod template;
pub mod tier;
pub mod video;
pub mod video_bus;
pub mod voice;

use std::sync::OnceLock;

/// Why a media resource could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// GStreamer itself failed to initialise.
    #[error("GStreamer init failed: {0}")]
    Init(String),
    /// A pipeline template could not be filled.
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    /// GStreamer rejected a pipeline description (missing plugin, bad syntax).
    #[error("cannot build pipeline: {0}")]
    Parse(String),
    /// A pipeline misbehaved (state change, linking, missing element).
    #[error("pipeline error: {0}")]
    Pipeline(String),
    /// The Opus codec refused its settings.
    #[error("opus: {0}")]
    Opus(String),
}

/// Initialises GStreamer once per process; later calls return the first result.
pub fn init() -> Result<(), MediaError> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(|| gstreamer::init().map_err(|e| e.to_string())).clone().map_err(MediaError::Init)
}

/// Caps glibc's malloc arenas at one per CPU and fixes the size from which blocks are
/// mapped on their own ([`MMAP_THRESHOLD`]). Call once at startup, before threads.
///
/// Every room brings short-lived GStreamer streaming threads and webrtc-rs tasks; with
/// glibc's default (eight arenas per CPU) each new thread may land in a fresh arena,
/// and memory freed there when the room closes stays in that arena. Measured with
/// rooms opened and closed in a loop: resident memory grew by ~30 MB per room with
/// the default and stayed between ~80 and ~125 MB with the cap (tests/soak.rs).
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let cpus = i32::try_from(cpus).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes glibc's allocator parameters; M_ARENA_MAX is
        // valid at any time and affects arenas created afterwards.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cpus);
        }
        // SAFETY: as above; a fixed threshold also turns off glibc's dynamic one.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Allocations at least this large get their own mapping, returned to the system
/// when freed. glibc starts at 128 KiB but raises the threshold to the size of every
/// mapped block freed (up to 32 MiB), so after the first video frame was freed every
/// frame (1.4 MB at 720p) came from the arenas, and a closed room's frames stayed
/// there, interleaved with live allocations no trim can move: the soak test's
/// per-period median RSS rose 6.6 % in two minutes and the idle RSS 36.6 -> 48.8 MiB,
/// with the allocator's bytes in use unchanged (4.3 -> 4.5 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 * 1024;
