//! The media plane: GStreamer pipelines for video, an Opus mixer thread for audio.
//!
//! Everything here runs on its own threads (GStreamer streaming threads, the mixer
//! thread), never on the async runtime; the room task drives it through small,
//! non-blocking calls.

pub mod audio;
pub mod jitter;
pub mod keyframe;
pub mod mix;
pub mod recorder;
pub mod template;
pub mod video;

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
