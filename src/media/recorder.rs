//! Recording the room's mix to a file: a shared encode of the composite (VP8 in WebM,
//! H.264 in MP4) and the shared full Opus mix, muxed as they are (no second encode).
//! A live stream to an RTMP server is the same recorder writing FLV to the network
//! (H.264 as it is, the mix turned into AAC).
//!
//! Frames arrive from two threads (the composite's streaming thread, the audio mixer
//! thread) stamped with their capture time on the monotonic clock GStreamer and the
//! mixer share; a [`Timeline`] turns those into file timestamps, so audio and video
//! stay in sync and the file's duration is the wall time recorded.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::MediaError;
use super::template::{self, render};
use crate::metrics::{self, GaugeGuard};

/// The file format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// WebM: VP8 + Opus.
    Webm,
    /// Fragmented MP4: H.264 + Opus.
    Mp4,
}

impl Container {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Webm => "webm",
            Self::Mp4 => "mp4",
        }
    }

    /// The video codec it holds.
    pub fn video_codec(self) -> super::codec::VideoCodec {
        match self {
            Self::Webm => super::codec::VideoCodec::Vp8,
            Self::Mp4 => super::codec::VideoCodec::H264,
        }
    }
}

/// The composite's format, when the recording has video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// What a finished recording amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Media duration written.
    pub duration: Duration,
    /// File size.
    pub bytes: u64,
    /// Why writing stopped early, if it did (disk full, file removed, ...).
    pub error: Option<String>,
}

/// One recording in progress. Push frames from any thread; [`Recorder::finish`]
/// finalizes the file.
pub struct Recorder {
    pipeline: gst::Pipeline,
    video: Option<gst_app::AppSrc>,
    audio: gst_app::AppSrc,
    timeline: Mutex<Timeline<Bytes>>,
    failure: Arc<Mutex<Option<String>>>,
    target: Target,
    _live: GaugeGuard,
}

/// Where a recorder writes.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    /// An RTMP URL, its stream key masked (it is only logged).
    Stream(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => path.display().fmt(f),
            Self::Stream(url) => f.write_str(url),
        }
    }
}

/// Length of one audio frame from the mixer.
const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// How far behind its capture time an audio frame may be laid before the timeline
/// re-anchors; above the mixer's own catch-up window (five frames).
const MAX_AUDIO_LAG: Duration = Duration::from_millis(120);
/// How long finalizing may wait for the muxer to write its index.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

impl Recorder {
    /// Starts writing `path` (which must exist and be empty: the caller creates it so
    /// that no recording overwrites another).
    pub fn start(path: &Path, container: Container, video: Option<VideoFormat>) -> Result<Self, MediaError> {
        super::init()?;
        let (with_video, audio_only) = match container {
            Container::Webm => (template::RECORD_WEBM, template::RECORD_WEBM_AUDIO),
            Container::Mp4 => (template::RECORD_MP4, template::RECORD_MP4_AUDIO),
        };
        let pipeline = Self::launch(with_video, audio_only, video, path.to_string_lossy().as_ref())?;
        Self::run(pipeline, video.is_some(), Target::File(path.to_owned()))
    }

    /// Starts pushing FLV to the RTMP server at `url` (`rtmp://` or `rtmps://`). A
    /// server that refuses or drops the stream shows as [`Recorder::failure`].
    pub fn start_stream(url: &str, video: Option<VideoFormat>) -> Result<Self, MediaError> {
        super::init()?;
        let pipeline = Self::launch(template::STREAM_FLV, template::STREAM_FLV_AUDIO, video, url)?;
        Self::run(pipeline, video.is_some(), Target::Stream(crate::room::live::masked_url(url)))
    }

    /// Builds the pipeline from the template for `video` (or without), writing to
    /// `location`.
    fn launch(
        with_video: &str,
        audio_only: &str,
        video: Option<VideoFormat>,
        location: &str,
    ) -> Result<gst::Pipeline, MediaError> {
        let (template, values) = match video {
            Some(v) => (
                with_video,
                std::collections::HashMap::from([
                    ("width", v.width.to_string()),
                    ("height", v.height.to_string()),
                    ("fps", v.fps.to_string()),
                ]),
            ),
            None => (audio_only, std::collections::HashMap::new()),
        };
        let description = render(template, &values)?;
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| MediaError::Parse(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| MediaError::Pipeline("recording description is not a pipeline".into()))?;
        let file = pipeline.by_name("file").ok_or_else(|| MediaError::Pipeline("recording has no 'file'".into()))?;
        file.set_property("location", location);
        Ok(pipeline)
    }

    /// Starts a built pipeline.
    fn run(pipeline: gst::Pipeline, with_video: bool, target: Target) -> Result<Self, MediaError> {
        let appsrc = |name: &str| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| MediaError::Pipeline(format!("recording template lacks appsrc '{name}'")))
        };
        let audio = appsrc("audio")?;
        let video_src = if with_video { Some(appsrc("video")?) } else { None };

        // Errors (disk full, file removed) are noted for the API and logged; the
        // conference itself never depends on this pipeline.
        let failure = Arc::new(Mutex::new(None));
        let bus = pipeline.bus().ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
        let noted = Arc::clone(&failure);
        let file_name = target.to_string();
        bus.set_sync_handler(move |_, msg| match msg.view() {
            gst::MessageView::Error(e) => {
                tracing::error!(output = file_name, error = %e.error(), debug = ?e.debug(), "recording or stream failed");
                let mut slot = noted.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| e.error().to_string());
                gst::BusSyncReply::Pass
            }
            gst::MessageView::Eos(_) => gst::BusSyncReply::Pass,
            // Nothing reads other messages: drop them so a long recording does not
            // pile them up.
            _ => gst::BusSyncReply::Drop,
        });
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(MediaError::Pipeline(format!("cannot start recording pipeline: {e}")));
        }
        Ok(Self {
            pipeline,
            video: video_src,
            audio,
            timeline: Mutex::new(Timeline::new(with_video, 50)),
            failure,
            target,
            _live: GaugeGuard::new(&metrics::RECORDINGS),
        })
    }

    /// The current monotonic clock time, in the timescale of [`Recorder::push_video`]'s
    /// `captured_ns` (GStreamer's system clock).
    pub fn clock_now_ns() -> u64 {
        gst::SystemClock::obtain().time().nseconds()
    }

    /// Whether the recording has video.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Why the recording stopped writing, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Bytes a live stream has sent to its server so far (0 for a file).
    pub fn sent_bytes(&self) -> u64 {
        let Target::Stream(_) = self.target else { return 0 };
        let Some(sink) = self.pipeline.by_name("file") else { return 0 };
        let stats = sink.property::<Option<gst::Structure>>("stats");
        stats.and_then(|s| s.get::<u64>("out-bytes-total").ok()).unwrap_or(0)
    }

    /// Whether the file has started: its first video keyframe (or, without video,
    /// its first audio frame) arrived.
    pub fn started(&self) -> bool {
        self.lock_timeline().started()
    }

    /// Media time written so far.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.lock_timeline().end_ns())
    }

    fn lock_timeline(&self) -> std::sync::MutexGuard<'_, Timeline<Bytes>> {
        self.timeline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a composite frame captured at `captured_ns`. Frames before the first
    /// keyframe are skipped, so the file starts decodable.
    pub fn push_video(&self, captured_ns: u64, data: &Bytes, duration: Duration, keyframe: bool) {
        let Some(src) = &self.video else { return };
        let mut timeline = self.lock_timeline();
        let Some(pts) = timeline.video(captured_ns, keyframe, duration.as_nanos() as u64) else { return };
        let ready = timeline.take_ready_audio();
        // The timeline stays locked while pushing (appsrc never blocks: it is leaky),
        // so the mixer thread cannot slip a newer audio frame in before these.
        let mut buffer = gst::Buffer::from_slice(data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration.as_nanos() as u64));
            if !keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        let _ = src.push_buffer(buffer);
        for (pts, frame) in ready {
            self.push_audio_at(pts, frame);
        }
        drop(timeline);
    }

    /// Adds a 20 ms Opus frame of the full mix whose audio was captured at
    /// `captured_ns`.
    pub fn push_audio(&self, captured_ns: u64, frame: Bytes) {
        let mut timeline = self.lock_timeline();
        if let Some((pts, frame)) = timeline.audio(captured_ns, frame) {
            self.push_audio_at(pts, frame);
        }
        drop(timeline);
    }

    fn push_audio_at(&self, pts: u64, frame: Bytes) {
        let mut buffer = gst::Buffer::from_slice(frame);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(AUDIO_FRAME.as_nanos() as u64));
        }
        let _ = self.audio.push_buffer(buffer);
    }

    /// Ends the streams, waits for the muxer to write its index (duration, cues), and
    /// closes the file. Frames pushed afterwards are ignored. Blocks up to a few
    /// seconds: call from a blocking context.
    pub fn finish(&self) -> RecordingSummary {
        if let Some(v) = &self.video {
            let _ = v.end_of_stream();
        }
        let _ = self.audio.end_of_stream();
        let outcome = self.pipeline.bus().and_then(|bus| {
            bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
        });
        let _ = self.pipeline.set_state(gst::State::Null);
        if outcome.is_none() {
            tracing::warn!(file = %self.target, "recording did not finalize in time; what was written stays playable");
        }
        let bytes = match &self.target {
            Target::File(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Target::Stream(_) => self.sent_bytes(),
        };
        RecordingSummary { duration: self.duration(), bytes, error: self.failure() }
    }
}

impl Recorder {
    /// Stops at once, without finalizing (a failed live stream: nothing to save).
    /// Blocks on the state change: call from a blocking context.
    pub fn abort(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Not finished (e.g. a panic elsewhere): at least close the file.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Places frames on the file's timeline from their capture times.
///
/// The file starts at the first video keyframe (or the first audio frame when there
/// is no video); audio that arrives before that waits in a short queue and is kept
/// from the keyframe's moment on. Audio frames are laid end to end (20 ms apart), also
/// when a stalled mixer catches up in a burst, and re-anchored to their capture time
/// only when they fall further behind than the mixer ever catches up (it skips ticks).
#[derive(Debug)]
pub struct Timeline<A> {
    has_video: bool,
    zero: Option<u64>,
    pending_audio: VecDeque<(u64, A)>,
    max_pending: usize,
    ready_audio: Vec<(u64, A)>,
    last_video: Option<u64>,
    next_audio: Option<u64>,
    end: u64,
}

impl<A> Timeline<A> {
    /// A timeline for a file with or without video; at most `max_pending` audio
    /// frames wait for the first keyframe.
    pub fn new(has_video: bool, max_pending: usize) -> Self {
        Self {
            has_video,
            zero: None,
            pending_audio: VecDeque::new(),
            max_pending,
            ready_audio: Vec::new(),
            last_video: None,
            next_audio: None,
            end: 0,
        }
    }

    /// The file timestamp of a video frame, or `None` to skip it.
    pub fn video(&mut self, captured: u64, keyframe: bool, duration: u64) -> Option<u64> {
        let zero = match self.zero {
            Some(z) => z,
            None if keyframe => {
                self.zero = Some(captured);
                // Audio captured from the keyframe on is kept; older audio is not.
                while let Some((t, frame)) = self.pending_audio.pop_front() {
                    if let Some(placed) = self.place_audio(t, frame) {
                        self.ready_audio.push(placed);
                    }
                }
                captured
            }
            None => return None,
        };
        let pts = captured.checked_sub(zero)?;
        if self.last_video.is_some_and(|last| pts <= last) {
            return None;
        }
        self.last_video = Some(pts);
        self.end = self.end.max(pts + duration);
        Some(pts)
    }

    /// Audio that became writable when the first keyframe fixed the start.
    pub fn take_ready_audio(&mut self) -> Vec<(u64, A)> {
        std::mem::take(&mut self.ready_audio)
    }

    /// The file timestamp of an audio frame, `None` if it is held (waiting for video)
    /// or dropped (captured before the start).
    pub fn audio(&mut self, captured: u64, frame: A) -> Option<(u64, A)> {
        if self.zero.is_none() {
            if !self.has_video {
                self.zero = Some(captured);
            } else {
                if self.pending_audio.len() == self.max_pending {
                    self.pending_audio.pop_front();
                }
                self.pending_audio.push_back((captured, frame));
                return None;
            }
        }
        self.place_audio(captured, frame)
    }

    fn place_audio(&mut self, captured: u64, frame: A) -> Option<(u64, A)> {
        let frame_ns = AUDIO_FRAME.as_nanos() as u64;
        let at = captured.checked_sub(self.zero?)?;
        let pts = match self.next_audio {
            // The mixer skipped ticks (it resumes from "now" when it falls more than
            // five frames behind): keep the gap as time.
            Some(next) if at > next + MAX_AUDIO_LAG.as_nanos() as u64 => at,
            // On time, or catching up after a short stall: end to end.
            Some(next) => next,
            None => at,
        };
        self.next_audio = Some(pts + frame_ns);
        self.end = self.end.max(pts + frame_ns);
        Some((pts, frame))
    }

    /// Media time covered so far, in nanoseconds.
    pub fn end_ns(&self) -> u64 {
        self.end
    }

    /// Whether the start is fixed (the first keyframe, or audio frame without video).
    pub fn started(&self) -> bool {
        self.zero.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_at_the_first_keyframe_and_keeps_audio_from_then_on() {
        let mut t = Timeline::new(true, 50);
        assert_eq!(t.audio(1000 * MS, "a0"), None);
        assert_eq!(t.audio(1020 * MS, "a1"), None);
        assert_eq!(t.audio(1040 * MS, "a2"), None);
        assert_eq!(t.video(1010 * MS, false, 33 * MS), None, "delta frames before a keyframe are skipped");
        assert!(!t.started(), "audio alone does not start a file with video");
        assert_eq!(t.video(1015 * MS, true, 33 * MS), Some(0));
        assert!(t.started());
        // a0 is older than the keyframe; a1 and a2 follow it.
        assert_eq!(t.take_ready_audio(), vec![(5 * MS, "a1"), (25 * MS, "a2")]);
        assert_eq!(t.video(1048 * MS, false, 33 * MS), Some(33 * MS));
        assert_eq!(t.audio(1060 * MS, "a3"), Some((45 * MS, "a3")));
    }

    #[test]
    fn audio_only_starts_with_the_first_frame() {
        let mut t = Timeline::new(false, 50);
        assert_eq!(t.audio(500 * MS, 0), Some((0, 0)));
        assert_eq!(t.audio(521 * MS, 1), Some((20 * MS, 1)), "small jitter is smoothed");
        assert_eq!(t.audio(539 * MS, 2), Some((40 * MS, 2)));
        assert_eq!(t.end_ns(), 60 * MS);
    }

    #[test]
    fn a_catch_up_burst_is_laid_end_to_end_and_skipped_ticks_stay_a_gap() {
        let mut t = Timeline::new(false, 50);
        t.audio(0, ());
        // A 60 ms stall, then the mixer catches up: four frames in a burst.
        let burst: Vec<u64> = [80, 81, 82, 83].iter().filter_map(|&ms| t.audio(ms * MS, ()).map(|p| p.0)).collect();
        assert_eq!(burst, vec![20 * MS, 40 * MS, 60 * MS, 80 * MS], "no frame dropped, none overlapping");
        // The mixer skipped ticks: the gap is kept as time.
        assert_eq!(t.audio(500 * MS, ()).map(|p| p.0), Some(500 * MS));
        assert_eq!(t.audio(521 * MS, ()).map(|p| p.0), Some(520 * MS));
    }

    #[test]
    fn waiting_audio_is_bounded() {
        let mut t = Timeline::new(true, 3);
        for i in 0..10u64 {
            t.audio(i * 20 * MS, i);
        }
        assert_eq!(t.video(0, true, 33 * MS), Some(0));
        let kept: Vec<u64> = t.take_ready_audio().into_iter().map(|(_, f)| f).collect();
        assert_eq!(kept, vec![7, 8, 9]);
    }

    #[test]
    fn duration_is_the_end_of_the_last_frame() {
        let mut t = Timeline::new(true, 50);
        t.video(1_000 * MS, true, 33 * MS);
        t.video(7_000 * MS, false, 33 * MS);
        t.audio(6_990 * MS, ());
        assert_eq!(t.end_ns(), 6_033 * MS);
        assert_eq!(t.video(6_500 * MS, false, 33 * MS), None, "video never goes back in time");
    }
}
