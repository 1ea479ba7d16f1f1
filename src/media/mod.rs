//! The media plane: GStreamer pipelines for video, an Opus mixer thread for audio.
//!
//! Everything here runs on its own threads (GStreamer streaming threads, the mixer
//! thread), never on the async runtime; the room task drives it through small,
//! non-blocking calls.

pub mod audio;
pub mod jitter;
pub mod keyframe;
pub mod mix;
pub mod template;
pub mod video;

use std::sync::Once;

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
    static ONCE: Once = Once::new();
    static mut RESULT: Option<String> = None;
    ONCE.call_once(|| {
        if let Err(e) = gstreamer::init() {
            // SAFETY: written once inside call_once, read only after it completed.
            unsafe { RESULT = Some(e.to_string()) };
        }
    });
    // SAFETY: call_once above has completed, so RESULT is no longer written.
    match unsafe { (*std::ptr::addr_of!(RESULT)).clone() } {
        Some(e) => Err(MediaError::Init(e)),
        None => Ok(()),
    }
}
