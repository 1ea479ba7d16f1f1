//! A room's media: the composite and its encodes (one per (codec, tier) in use, each
//! packetised once into a feed its receivers' forwarders read), the audio mixer and
//! the taps of the recording and the live streams. Built on the first admitted
//! participant; what runs is decided by the room core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use webrtc::media::Sample;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::core::EncodeKey;
use super::{JoinError, RecordingError, RecordingStarted, RecordingStopped};
use crate::config::MediaConfig;
use crate::media::MediaError;
use crate::media::audio::{AudioCommand, AudioMixer, AudioMixerConfig, AudioOutput, FRAME_DURATION, LevelSink};
use crate::media::encode::{EncodeSpec, EncodedFrame, FrameSink};
use crate::media::recorder::{Container, Recorder, VideoFormat};
use crate::media::tier::Tier;
use crate::media::video::VideoMixer;
use crate::rtc::codecs::opus_capability;
use crate::rtc::forward::{FrameFeed, FramePacketizer, new_feed};

/// Who listens to the audio mixer besides participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MixListener {
    /// The full mix shared by receivers who do not publish audio.
    SharedMix,
    /// The full mix going into a recording.
    Recording,
}

impl MixListener {
    /// The mixer's key for it (participant ids are hex, these cannot clash).
    pub fn key(self) -> Arc<str> {
        Arc::from(match self {
            Self::SharedMix => "*shared-mix",
            Self::Recording => "*recording",
        })
    }
}

/// A running encode: its receivers' feed, and the recording and streams it also feeds.
struct Encode {
    feed: FrameFeed,
    taps: Arc<Mutex<Vec<Arc<Recorder>>>>,
}

/// A recorder fed from the room: the frames of an encode (when it has video) and the
/// full mix, as the mixer listener `listener`.
pub(super) struct Tap {
    recorder: Arc<Recorder>,
    encode: Option<EncodeKey>,
    listener: Arc<str>,
}

impl Tap {
    /// A tap of `encode` and the mix into `recorder`; `listener` is its key at the
    /// mixer (unique in the room).
    pub fn new(recorder: Arc<Recorder>, encode: Option<EncodeKey>, listener: String) -> Self {
        Self { recorder, encode, listener: Arc::from(listener) }
    }

    /// The recorder, once the tap is detached.
    pub fn into_recorder(self) -> Arc<Recorder> {
        self.recorder
    }
}

/// The running pipelines of a room.
pub(super) struct RoomMedia {
    /// The composite, started the first time someone sends or wants video.
    pub video: Option<VideoMixer>,
    encodes: HashMap<EncodeKey, Encode>,
    pub audio: AudioMixer,
    /// Whether the shared full mix has its mixer listener.
    shared_audio_registered: bool,
    /// The running recording, if any.
    pub recording: Option<ActiveRecording>,
}

/// A recording in progress.
pub(super) struct ActiveRecording {
    pub started: RecordingStarted,
    pub recorder: Arc<Recorder>,
    /// What feeds it.
    tap: Tap,
}

impl ActiveRecording {
    /// The encode it records, when it has video.
    pub fn encode(&self) -> Option<EncodeKey> {
        self.tap.encode
    }
}

/// The name of an encode in the pipeline (and logs).
pub(super) fn encode_label(key: EncodeKey, tiers: &[Tier]) -> String {
    format!("{}-{}", key.codec, tiers.get(key.tier).map_or("?", |t| t.name.as_str()))
}

impl RoomMedia {
    /// Starts the audio mixer (video starts on demand, see [`Self::ensure_video`]);
    /// `levels` gets its voice level reports.
    pub fn start(room: &str, config: &MediaConfig, levels: LevelSink) -> Result<Self, JoinError> {
        let audio = AudioMixer::start(
            room,
            AudioMixerConfig {
                bitrate_bps: config.audio_bitrate_bps,
                jitter_packets: (config.audio_jitter_ms / 20).max(1) as usize,
                voice_threshold_dbfs: config.voice_threshold_dbfs,
            },
            Some(levels),
        )
        .map_err(|e| JoinError::Media(e.to_string()))?;
        Ok(Self { video: None, encodes: HashMap::new(), audio, shared_audio_registered: false, recording: None })
    }

    /// Starts the composite the first time a participant sends or wants video.
    pub fn ensure_video(&mut self, room: &str, config: &MediaConfig) -> Result<&mut VideoMixer, MediaError> {
        if self.video.is_none() {
            self.video = Some(tokio::task::block_in_place(|| VideoMixer::start(config, room))?);
        }
        self.video.as_mut().ok_or_else(|| MediaError::Pipeline("no composite".into()))
    }

    /// Starts an encode of the composite.
    pub fn start_encode(
        &mut self,
        room: &str,
        config: &MediaConfig,
        key: EncodeKey,
        tiers: &[Tier],
    ) -> Result<(), MediaError> {
        let tier = tiers.get(key.tier).ok_or_else(|| MediaError::Pipeline(format!("no tier {}", key.tier)))?;
        let spec = EncodeSpec {
            codec: key.codec,
            width: tier.width,
            height: tier.height,
            fps: tier.fps,
            bitrate_bps: tier.bitrate_bps,
        };
        let feed = new_feed();
        let taps: Arc<Mutex<Vec<Arc<Recorder>>>> = Arc::default();
        let packetizer = Mutex::new(FramePacketizer::new(key.codec, tier.fps));
        let (to_feed, to_taps) = (feed.clone(), Arc::clone(&taps));
        let first = std::sync::atomic::AtomicBool::new(true);
        let label_dbg = encode_label(key, tiers);
        let sink: FrameSink = Arc::new(move |frame: EncodedFrame| {
            if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!(
                    encode = label_dbg,
                    keyframe = frame.keyframe,
                    receivers = to_feed.receiver_count(),
                    "first frame of an encode"
                );
            }
            for recorder in to_taps.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                recorder.push_video(frame.captured_ns, &frame.data, frame.duration, frame.keyframe);
            }
            let packetized =
                packetizer.lock().unwrap_or_else(|p| p.into_inner()).packetize(&frame.data, frame.pts, frame.keyframe);
            if let Some(packetized) = packetized {
                // No receiver subscribed yet is fine: the frame is simply not sent.
                let _ = to_feed.send(Arc::new(packetized));
            }
        });
        let label = encode_label(key, tiers);
        let video = self.ensure_video(room, config)?;
        tokio::task::block_in_place(|| video.add_output(&label, &spec, sink))?;
        self.encodes.insert(key, Encode { feed, taps });
        Ok(())
    }

    /// Stops an encode.
    pub fn stop_encode(&mut self, key: EncodeKey, tiers: &[Tier]) -> Result<(), MediaError> {
        self.encodes.remove(&key);
        match self.video.as_mut() {
            Some(video) => tokio::task::block_in_place(|| video.remove_output(&encode_label(key, tiers))),
            None => Ok(()),
        }
    }

    /// The feed of a running encode.
    pub fn feed(&self, key: EncodeKey) -> Option<&FrameFeed> {
        self.encodes.get(&key).map(|e| &e.feed)
    }

    /// Forces a keyframe of a running encode.
    pub fn force_keyframe(&self, key: EncodeKey, tiers: &[Tier]) {
        if let Some(video) = &self.video {
            video.force_keyframe(&encode_label(key, tiers));
        }
    }

    /// Feeds the shared full mix to its track, once.
    pub fn ensure_shared_audio(&mut self, track: &Arc<TrackLocalStaticSample>) {
        if !self.shared_audio_registered {
            self.shared_audio_registered = true;
            let output = track_output(Arc::clone(track));
            self.audio.send(AudioCommand::AddListener(MixListener::SharedMix.key(), output));
        }
    }

    /// Feeds `tap`'s recorder from its encode (which must run) and the full mix.
    pub fn attach(&mut self, tap: &Tap, config: &MediaConfig) {
        if let Some(encode) = tap.encode.and_then(|k| self.encodes.get(&k)) {
            encode.taps.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::clone(&tap.recorder));
        }
        // The mixer emits a tick's frame about one jitter-buffer depth after its audio
        // arrived; stamping it that much earlier lines it up with the video.
        let audio_delay_ns = u64::from(config.audio_jitter_ms) * 1_000_000;
        let recorder = Arc::clone(&tap.recorder);
        let output = move |frame: Bytes| {
            recorder.push_audio(Recorder::clock_now_ns().saturating_sub(audio_delay_ns), frame);
        };
        self.audio.send(AudioCommand::AddListener(Arc::clone(&tap.listener), Box::new(output)));
    }

    /// Stops feeding `tap`'s recorder.
    pub fn detach(&mut self, tap: &Tap) {
        if let Some(encode) = tap.encode.and_then(|k| self.encodes.get(&k)) {
            encode.taps.lock().unwrap_or_else(|p| p.into_inner()).retain(|r| !Arc::ptr_eq(r, &tap.recorder));
        }
        self.audio.send(AudioCommand::RemoveListener(Arc::clone(&tap.listener)));
    }

    /// Starts recording `encode` (when the room has video; it must run) and the full
    /// mix.
    pub fn start_recording(
        &mut self,
        room: &str,
        container: Container,
        tier: Option<&Tier>,
        encode: Option<EncodeKey>,
        config: &MediaConfig,
        store: &crate::recordings::RecordingStore,
    ) -> Result<RecordingStarted, RecordingError> {
        if self.recording.is_some() {
            return Err(RecordingError::AlreadyRecording);
        }
        let new = tokio::task::block_in_place(|| store.create(room, container))?;
        let format =
            tier.filter(|_| encode.is_some()).map(|t| VideoFormat { width: t.width, height: t.height, fps: t.fps });
        let recorder = match tokio::task::block_in_place(|| Recorder::start(&new.path, container, format)) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                let _ = std::fs::remove_file(&new.path);
                return Err(RecordingError::Media(e.to_string()));
            }
        };
        let encode = encode.filter(|_| format.is_some());
        let tap = Tap { recorder: Arc::clone(&recorder), encode, listener: MixListener::Recording.key() };
        self.attach(&tap, config);
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
        self.recording = Some(ActiveRecording { started: started.clone(), recorder, tap });
        Ok(started)
    }

    /// Disconnects the running recording from the room's media, for finalizing.
    pub fn detach_recording(&mut self) -> Option<ActiveRecording> {
        let active = self.recording.take()?;
        self.detach(&active.tap);
        Some(active)
    }
}

/// An Opus track: one publisher's own mix-minus, or the shared full mix.
pub(super) fn audio_track() -> Arc<TrackLocalStaticSample> {
    Arc::new(TrackLocalStaticSample::new(opus_capability(), "mix-audio".into(), "mcu-mix".into()))
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

/// Encoded frames a listener's writer may fall behind by (160 ms) before frames drop.
const AUDIO_WRITE_QUEUE: usize = 8;

/// Hands a listener's Opus frames from the mixer thread to a task that writes them to
/// its track. The mixer never waits on the WebRTC stack (its locks are shared with
/// tasks that may be queued behind others on a busy runtime), so a slow write delays
/// one listener's packets, not every listener's next tick. The task ends when the
/// mixer drops the output (the listener left).
pub(super) fn track_output(track: Arc<TrackLocalStaticSample>) -> Box<dyn AudioOutput> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(AUDIO_WRITE_QUEUE);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let sample = Sample { data: frame, duration: FRAME_DURATION, ..Default::default() };
            let _ = track.write_sample(&sample).await;
        }
    });
    Box::new(move |frame: Bytes| {
        if tx.try_send(frame).is_err() {
            crate::metrics::AUDIO_FRAMES_DROPPED.inc();
        }
    })
}
