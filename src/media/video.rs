//! The room's video: one GStreamer pipeline compositing every publisher into the grid
//! and encoding it once for everybody.
//!
//! ```text
//! appsrc(RTP) ! rtpjitterbuffer ! rtpvp8depay ! vp8dec ─┐   (one branch per publisher)
//! videotestsrc (clock, alpha 0) ────────────────────── compositor ! vp8enc ! appsink
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::MediaError;
use super::template::{self, render};
use crate::config::MediaConfig;
use crate::layout;
use crate::metrics::{self, GaugeGuard};

/// One encoded frame of the shared composite.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The VP8 frame; shares the GStreamer buffer's memory (no copy).
    pub data: Bytes,
    /// Time until the next frame: advances the RTP timestamp.
    pub duration: Duration,
    /// Whether receivers can start decoding here.
    pub keyframe: bool,
    /// When the frame's content was captured (its pipeline running time made
    /// absolute), on GStreamer's monotonic system clock: lines video up with audio in
    /// recordings.
    pub captured_ns: u64,
}

/// Where encoded frames go; called on a GStreamer streaming thread, must not block.
pub type FrameSink = Arc<dyn Fn(EncodedFrame) + Send + Sync>;
/// Called on a GStreamer streaming thread when a publisher's decoder needs a keyframe.
pub type KeyframeNeeded = Arc<dyn Fn() + Send + Sync>;

/// The pushing end of one publisher's decode branch.
#[derive(Clone)]
pub struct VideoInput {
    appsrc: gst_app::AppSrc,
}

impl VideoInput {
    /// Pushes one RTP packet of `len` bytes, written in place by `fill` (one
    /// allocation, no intermediate copy). Never blocks: a stalled branch drops.
    pub fn push_rtp(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> usize) {
        let Ok(mut buffer) = gst::Buffer::with_size(len) else { return };
        {
            let Some(buf) = buffer.get_mut() else { return };
            let Ok(mut map) = buf.map_writable() else { return };
            let written = fill(map.as_mut_slice());
            drop(map);
            buf.set_size(written);
        }
        // Errors mean the branch is shutting down; the reader stops soon after.
        let _ = self.appsrc.push_buffer(buffer);
    }
}

/// A linked publisher branch.
struct Branch {
    bin: gst::Bin,
    pad: gst::Pad,
    _live: GaugeGuard,
}

/// The compositor pipeline of one room.
pub struct VideoMixer {
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    branches: HashMap<String, Branch>,
    config: MediaConfig,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    _live: GaugeGuard,
}

impl VideoMixer {
    /// Builds and starts the pipeline; `frames` receives every encoded frame.
    pub fn start(config: &MediaConfig, name: &str, frames: FrameSink) -> Result<Self, MediaError> {
        super::init()?;
        let values = Self::template_values(config)?;
        let description = render(template::VIDEO_COMPOSITE, &values)?;
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| MediaError::Parse(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| MediaError::Pipeline("composite description is not a pipeline".into()))?;
        pipeline.set_property("name", format!("room-{name}"));
        let compositor = by_name(&pipeline, "composite")?;
        // The clock source is only there to keep the output rate: never drawn.
        if let Some(clock_pad) = compositor.static_pad("sink_0") {
            clock_pad.set_property("alpha", 0.0f64);
        }
        let appsink = by_name(&pipeline, "encoded")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| MediaError::Pipeline("'encoded' is not an appsink".into()))?;
        let frame_period = Duration::from_nanos(1_000_000_000 / u64::from(config.fps));
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample({
                    let mut last_pts: Option<gst::ClockTime> = None;
                    move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                        // RTP time follows presentation time, so frames the encoder
                        // dropped leave a gap instead of compressing time.
                        let duration = match (buffer.pts(), last_pts) {
                            (Some(pts), Some(last)) if pts > last => Duration::from_nanos((pts - last).nseconds()),
                            _ => frame_period,
                        };
                        last_pts = buffer.pts();
                        let captured_ns = match (sink.base_time(), buffer.pts()) {
                            (Some(base), Some(pts)) => (base + pts).nseconds(),
                            _ => 0,
                        };
                        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        frames(EncodedFrame { data: Bytes::from_owner(mapped), duration, keyframe, captured_ns });
                        Ok(gst::FlowSuccess::Ok)
                    }
                })
                .build(),
        );
        let bus_thread = spawn_bus_logger(&pipeline, name)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("cannot start composite pipeline: {e}")))?;
        Ok(Self {
            pipeline,
            compositor,
            branches: HashMap::new(),
            config: config.clone(),
            bus_thread: Some(bus_thread),
            _live: GaugeGuard::new(&metrics::PIPELINES),
        })
    }

    fn template_values(config: &MediaConfig) -> Result<HashMap<&'static str, String>, MediaError> {
        let mut values = HashMap::from([
            ("fps", config.fps.to_string()),
            ("width", config.width.to_string()),
            ("height", config.height.to_string()),
            ("bitrate_bps", config.video_bitrate_bps.to_string()),
            ("keyframe_max_dist", (config.fps * 10).to_string()),
            ("latency_ns", (u64::from(config.compositor_latency_ms) * 1_000_000).to_string()),
            ("jitter_ms", config.video_jitter_ms.to_string()),
        ]);
        let encoder_template = config.video_encoder.as_deref().unwrap_or(template::VIDEO_ENCODE_VP8);
        let encoder = render(encoder_template, &values)?;
        values.insert("encoder", encoder);
        Ok(values)
    }

    /// Adds a publisher's decode branch under `key`, linked to a new compositor pad.
    /// `keyframe_needed` fires when its decoder asks for a keyframe.
    pub fn add_input(&mut self, key: &str, keyframe_needed: KeyframeNeeded) -> Result<VideoInput, MediaError> {
        if self.branches.contains_key(key) {
            return Err(MediaError::Pipeline(format!("input {key} already exists")));
        }
        let values = Self::template_values(&self.config)?;
        let description = render(template::VIDEO_DECODE_VP8, &values)?;
        let bin = gst::parse::bin_from_description(&description, true).map_err(|e| MediaError::Parse(e.to_string()))?;
        bin.set_property("name", format!("in-{key}"));
        let appsrc = bin
            .by_name("rtp_in")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| MediaError::Pipeline("decode template lacks appsrc 'rtp_in'".into()))?;
        // The depayloader/decoder ask for keyframes with an upstream event; it ends at
        // the appsrc, where it becomes a PLI to the publisher.
        if let Some(src_pad) = appsrc.static_pad("src") {
            src_pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if info.event().is_some_and(|ev| gst_video::UpstreamForceKeyUnitEvent::parse(ev).is_ok()) {
                    keyframe_needed();
                }
                gst::PadProbeReturn::Ok
            });
        }
        self.pipeline.add(&bin).map_err(|e| MediaError::Pipeline(e.to_string()))?;
        let pad = self
            .compositor
            .request_pad_simple("sink_%u")
            .ok_or_else(|| MediaError::Pipeline("compositor gave no pad".into()))?;
        pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        // Hidden until the layout places it.
        pad.set_property("width", 0i32);
        pad.set_property("height", 0i32);
        let src = bin.static_pad("src").ok_or_else(|| MediaError::Pipeline("decode branch has no src pad".into()))?;
        if let Err(e) = src.link(&pad) {
            self.compositor.release_request_pad(&pad);
            let _ = self.pipeline.remove(&bin);
            return Err(MediaError::Pipeline(format!("cannot link decode branch: {e:?}")));
        }
        if let Err(e) = bin.sync_state_with_parent() {
            self.compositor.release_request_pad(&pad);
            let _ = bin.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&bin);
            return Err(MediaError::Pipeline(format!("cannot start decode branch: {e}")));
        }
        self.branches.insert(key.to_owned(), Branch { bin, pad, _live: GaugeGuard::new(&metrics::VIDEO_DECODERS) });
        Ok(VideoInput { appsrc })
    }

    /// Unlinks and frees a publisher's branch. Blocks briefly (state change): call
    /// from a blocking context.
    ///
    /// The branch's state is locked before it goes to NULL: while it is still in the
    /// pipeline, a state change of the pipeline (the bin re-applying its state after
    /// another branch's change) would otherwise take it back to PLAYING, and the
    /// branch would then be freed while its threads run (a crash seen with joins and
    /// leaves in quick succession).
    pub fn remove_input(&mut self, key: &str) -> Result<(), MediaError> {
        let Some(branch) = self.branches.remove(key) else { return Ok(()) };
        branch.bin.set_locked_state(true);
        // Releasing the pad first wakes a decoder blocked on it (flushing).
        self.compositor.release_request_pad(&branch.pad);
        let result = branch.bin.set_state(gst::State::Null);
        let (_, state, _) = branch.bin.state(gst::ClockTime::ZERO);
        let _ = self.pipeline.remove(&branch.bin);
        match result {
            Ok(_) if state == gst::State::Null => Ok(()),
            _ => Err(MediaError::Pipeline(format!("decode branch {key} did not stop: {result:?}, now {state:?}"))),
        }
    }

    /// Places the inputs in grid order (`keys` in join order); inputs not listed are
    /// hidden.
    pub fn set_layout(&self, keys: &[&str]) {
        let cells = layout::grid_cells(self.config.width, self.config.height, keys.len());
        for (key, branch) in &self.branches {
            let cell = keys.iter().position(|k| k == key).map(|i| cells[i]);
            let (x, y, w, h) = cell.map_or((0, 0, 0, 0), |c| (c.x, c.y, c.width, c.height));
            branch.pad.set_property("xpos", x as i32);
            branch.pad.set_property("ypos", y as i32);
            branch.pad.set_property("width", w as i32);
            branch.pad.set_property("height", h as i32);
        }
    }

    /// Asks the shared encoder for a keyframe now.
    pub fn force_keyframe(&self) {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        if let Some(sink) = self.pipeline.by_name("encoded") {
            sink.send_event(event);
        }
    }
}

impl Drop for VideoMixer {
    fn drop(&mut self) {
        let keys: Vec<String> = self.branches.keys().cloned().collect();
        for key in keys {
            if let Err(e) = self.remove_input(&key) {
                tracing::error!(error = %e, "removing a decode branch");
            }
        }
        // Stop the bus thread first: a bus drops messages once the pipeline is NULL.
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty("mcu-stop")));
        }
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn by_name(pipeline: &gst::Pipeline, name: &str) -> Result<gst::Element, MediaError> {
    pipeline.by_name(name).ok_or_else(|| MediaError::Pipeline(format!("pipeline has no element named '{name}'")))
}

/// Logs the pipeline's errors and warnings and keeps its latency current as inputs
/// come and go; exits on the `mcu-stop` message posted at teardown.
fn spawn_bus_logger(pipeline: &gst::Pipeline, room: &str) -> Result<std::thread::JoinHandle<()>, MediaError> {
    let bus = pipeline.bus().ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
    let weak = pipeline.downgrade();
    let room = room.to_owned();
    std::thread::Builder::new()
        .name(format!("bus-{room}"))
        .spawn(move || {
            for msg in bus.iter_timed(gst::ClockTime::NONE) {
                use gst::MessageView;
                match msg.view() {
                    MessageView::Application(a) if a.structure().is_some_and(|s| s.name() == "mcu-stop") => break,
                    MessageView::Error(e) => tracing::error!(
                        room,
                        source = ?e.src().map(|s| s.path_string()),
                        error = %e.error(),
                        debug = ?e.debug(),
                        "video pipeline error"
                    ),
                    MessageView::Warning(w) => tracing::debug!(
                        room,
                        source = ?w.src().map(|s| s.path_string()),
                        warning = %w.error(),
                        "video pipeline warning"
                    ),
                    MessageView::Latency(_) => {
                        if let Some(p) = weak.upgrade() {
                            let _ = p.recalculate_latency();
                        }
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| MediaError::Pipeline(format!("cannot spawn bus thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Branches come and go while packets flow into them (publishers joining and
    /// leaving at once): every removed branch reaches NULL before it is freed. Without
    /// the locked state a removed branch was sometimes taken back to PLAYING by the
    /// pipeline and freed running: "Trying to dispose element ... PLAYING", then a
    /// crash.
    #[test]
    fn inputs_removed_while_packets_flow_stop_cleanly() {
        use gst::glib;
        crate::media::init().unwrap();
        static CRITICALS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        glib::log_set_handler(Some("GStreamer"), glib::LogLevels::LEVEL_CRITICAL, false, false, |_, _, message| {
            CRITICALS.lock().unwrap().push(message.to_owned());
        });
        // The broken removal also deadlocked now and then: a hang is a failure too.
        let finished = Arc::new(AtomicBool::new(false));
        let watchdog = Arc::clone(&finished);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            if !watchdog.load(Ordering::SeqCst) {
                eprintln!("inputs_removed_while_packets_flow_stop_cleanly: stuck for 60 s (deadlocked removal)");
                std::process::abort();
            }
        });
        let config = MediaConfig { width: 320, height: 180, ..Default::default() };
        for round in 0..12 {
            let mut mixer = VideoMixer::start(&config, &format!("churn{round}"), Arc::new(|_| {})).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut pushers = Vec::new();
            let mut keys: Vec<String> = Vec::new();
            for i in 0..30 {
                let key = format!("p{i}");
                let input = mixer.add_input(&key, Arc::new(|| {})).unwrap();
                keys.push(key);
                let stop = Arc::clone(&stop);
                pushers.push(std::thread::spawn(move || {
                    // A VP8 RTP packet with a keyframe-looking header and junk after it.
                    let mut packet = vec![0x80u8, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0x10, 0x02, 0x00, 0x9d, 0x01];
                    packet.extend([0x55; 100]);
                    let mut seq: u16 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        packet[2..4].copy_from_slice(&seq.to_be_bytes());
                        seq = seq.wrapping_add(1);
                        input.push_rtp(packet.len(), |b| {
                            b.copy_from_slice(&packet);
                            packet.len()
                        });
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }));
                let order: Vec<&str> = keys.iter().map(String::as_str).collect();
                mixer.set_layout(&order);
                std::thread::sleep(Duration::from_millis(5));
                if i % 2 == 1 {
                    let gone = keys.remove(0);
                    mixer.remove_input(&gone).unwrap();
                }
            }
            for key in keys {
                mixer.remove_input(&key).unwrap();
            }
            drop(mixer);
            stop.store(true, Ordering::Relaxed);
            for p in pushers {
                p.join().unwrap();
            }
        }
        finished.store(true, Ordering::SeqCst);
        let criticals = CRITICALS.lock().unwrap().clone();
        assert!(criticals.is_empty(), "GStreamer criticals: {criticals:#?}");
    }
}
