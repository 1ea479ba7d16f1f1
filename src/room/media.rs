//! A room's media: the outgoing tracks (cheap, exist from the start so joins can be
//! negotiated before any media runs) and the pipelines behind them (the composite and
//! the audio mixer, built on the first admitted participant), plus the recording tap.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use webrtc::media::Sample;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::{JoinError, RecordingStarted, RecordingStopped};
use crate::config::MediaConfig;
use crate::media::audio::{AudioCommand, AudioMixer, AudioMixerConfig, AudioOutput, FRAME_DURATION};
use crate::media::recorder::Recorder;
use crate::media::video::{EncodedFrame, FrameSink, VideoMixer};
use crate::rtc::engine::{opus_capability, vp8_capability};

/// Id of the mixer listener feeding the shared full-mix track.
pub(super) const SHARED_MIX: &str = "*shared-mix";
/// Id of the mixer listener feeding a recording (the full mix, shared encode).
pub(super) const RECORDING_MIX: &str = "*recording";

/// The tracks every receiver's peer is negotiated with.
pub(super) struct RoomTracks {
    /// The composite, one encode and one packetisation for every video receiver.
    pub video: Arc<TrackLocalStaticSample>,
    /// The full mix for receivers who do not publish audio.
    pub shared_audio: Arc<TrackLocalStaticSample>,
}

impl RoomTracks {
    pub fn new() -> Self {
        Self {
            video: Arc::new(TrackLocalStaticSample::new(vp8_capability(), "mix-video".into(), "mcu-mix".into())),
            shared_audio: Arc::new(TrackLocalStaticSample::new(
                opus_capability(),
                "mix-audio".into(),
                "mcu-mix".into(),
            )),
        }
    }

    /// A track for one publisher's own mix-minus.
    pub fn personal_audio() -> Arc<TrackLocalStaticSample> {
        Arc::new(TrackLocalStaticSample::new(opus_capability(), "mix-audio".into(), "mcu-mix".into()))
    }
}

/// The running pipelines of a room.
pub(super) struct RoomMedia {
    /// The composite, started the first time someone sends or wants video.
    pub video: Option<VideoMixer>,
    video_writer: Option<tokio::task::JoinHandle<()>>,
    pub audio: AudioMixer,
    /// Whether the shared full mix already has its mixer listener.
    pub shared_audio_registered: bool,
    /// The running recording, if any.
    pub recording: Option<ActiveRecording>,
    /// The recorder the composite's frames also go to, set while recording video.
    pub video_tap: Arc<std::sync::Mutex<Option<Arc<Recorder>>>>,
}

/// A recording in progress.
pub(super) struct ActiveRecording {
    pub started: RecordingStarted,
    pub recorder: Arc<Recorder>,
}

impl RoomMedia {
    /// Starts the audio mixer (video starts on demand, see [`Self::ensure_video`]).
    pub fn start(room: &str, config: &MediaConfig) -> Result<Self, JoinError> {
        let audio = AudioMixer::start(
            room,
            AudioMixerConfig {
                bitrate_bps: config.audio_bitrate_bps,
                jitter_packets: (config.audio_jitter_ms / 20).max(1) as usize,
            },
        )
        .map_err(|e| JoinError::Media(e.to_string()))?;
        Ok(Self {
            video: None,
            video_writer: None,
            audio,
            shared_audio_registered: false,
            recording: None,
            video_tap: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// Starts the composite the first time a participant sends or wants video.
    pub fn ensure_video(
        &mut self,
        room: &str,
        config: &MediaConfig,
        track: &Arc<TrackLocalStaticSample>,
    ) -> Result<(), JoinError> {
        if self.video.is_some() {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::channel::<EncodedFrame>(16);
        let tap = Arc::clone(&self.video_tap);
        let sink: FrameSink = Arc::new(move |frame: EncodedFrame| {
            if let Some(recorder) = tap.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                recorder.push_video(frame.captured_ns, &frame.data, frame.duration, frame.keyframe);
            }
            // Full means the network side is stalled: drop rather than block GStreamer.
            let _ = tx.try_send(frame);
        });
        let mixer = tokio::task::block_in_place(|| VideoMixer::start(config, room, sink))
            .map_err(|e| JoinError::Media(e.to_string()))?;
        let track = Arc::clone(track);
        self.video_writer = Some(tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let sample = Sample { data: frame.data, duration: frame.duration, ..Default::default() };
                if let Err(e) = track.write_sample(&sample).await {
                    tracing::trace!(error = %e, "composite write");
                }
            }
        }));
        self.video = Some(mixer);
        Ok(())
    }

    /// Feeds the shared full mix to its track, once.
    pub fn ensure_shared_audio(&mut self, track: &Arc<TrackLocalStaticSample>) {
        if !self.shared_audio_registered {
            self.shared_audio_registered = true;
            self.audio.send(AudioCommand::AddListener(Arc::from(SHARED_MIX), track_output(Arc::clone(track))));
        }
    }

    /// Disconnects the running recording from the room's media, for finalizing.
    pub fn detach_recording(&mut self) -> Option<ActiveRecording> {
        let active = self.recording.take()?;
        self.video_tap.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.audio.send(AudioCommand::RemoveListener(Arc::from(RECORDING_MIX)));
        Some(active)
    }
}

impl Drop for RoomMedia {
    fn drop(&mut self) {
        if let Some(w) = self.video_writer.take() {
            w.abort();
        }
    }
}

/// What `GET /rooms/{room}` shows of a running recording.
pub(super) fn recording_state(active: &ActiveRecording) -> serde_json::Value {
    let mut state = serde_json::json!({
        "id": active.started.id,
        "file": active.started.file,
        "video": active.started.video,
        "started_at_ms": active.started.started_at_ms,
        "duration_ms": active.recorder.duration().as_millis() as u64,
    });
    if let Some(error) = active.recorder.failure() {
        state["error"] = error.into();
    }
    state
}

/// Finalizes a detached recording on a blocking thread.
pub(super) async fn finalize(active: ActiveRecording) -> RecordingStopped {
    let recorder = Arc::clone(&active.recorder);
    let summary = tokio::task::spawn_blocking(move || recorder.finish()).await.ok();
    let (duration_ms, bytes, error) = match summary {
        Some(s) => (s.duration.as_millis() as u64, s.bytes, s.error),
        None => (0, 0, Some("finalizing panicked".to_owned())),
    };
    if let Some(e) = &error {
        tracing::error!(file = active.started.file, error = e, "recording ended with an error");
    }
    RecordingStopped { file: active.started.file, duration_ms, bytes, error }
}

/// Writes a listener's Opus frames to its track from the mixer thread.
pub(super) fn track_output(track: Arc<TrackLocalStaticSample>) -> Box<dyn AudioOutput> {
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |frame: Bytes| {
        let sample = Sample { data: frame, duration: FRAME_DURATION, ..Default::default() };
        let _ = runtime.block_on(track.write_sample(&sample));
    })
}

impl RoomMedia {
    /// Starts recording the composite (if the room has video) and the full mix.
    pub fn start_recording(
        &mut self,
        room: &str,
        config: &MediaConfig,
        store: &crate::recordings::RecordingStore,
    ) -> Result<RecordingStarted, super::RecordingError> {
        use super::RecordingError;
        use crate::media::recorder::VideoFormat;
        if self.recording.is_some() {
            return Err(RecordingError::AlreadyRecording);
        }
        let new = tokio::task::block_in_place(|| store.create(room))?;
        // The recording has video when the room has a composite (someone negotiated
        // video, even only to watch: cameras may come later); a room of audio-only
        // clients records audio only.
        let format =
            self.video.as_ref().map(|_| VideoFormat { width: config.width, height: config.height, fps: config.fps });
        let recorder = match tokio::task::block_in_place(|| Recorder::start(&new.path, format)) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                let _ = std::fs::remove_file(&new.path);
                return Err(RecordingError::Media(e.to_string()));
            }
        };
        if format.is_some() {
            *self.video_tap.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&recorder));
        }
        // The mixer emits a tick's frame about one jitter-buffer depth after its audio
        // arrived; stamping it that much earlier lines it up with the video.
        let audio_delay_ns = u64::from(config.audio_jitter_ms) * 1_000_000;
        let audio_recorder = Arc::clone(&recorder);
        let output = move |frame: Bytes| {
            audio_recorder.push_audio(Recorder::clock_now_ns().saturating_sub(audio_delay_ns), frame);
        };
        self.audio.send(AudioCommand::AddListener(Arc::from(RECORDING_MIX), Box::new(output)));
        if let Some(video) = &self.video {
            video.force_keyframe();
        }
        let started_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let started = RecordingStarted {
            id: new.id,
            file: new.file,
            room: room.to_owned(),
            video: format.is_some(),
            started_at_ms,
        };
        tracing::info!(room, file = started.file, video = started.video, "recording started");
        self.recording = Some(ActiveRecording { started: started.clone(), recorder });
        Ok(started)
    }
}
