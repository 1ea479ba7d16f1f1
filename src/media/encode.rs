//! One encode of the composite for one (codec, tier): a bin hung from the
//! compositor's tee (scaler, frame rate, encoder, appsink) that hands every encoded
//! frame to a [`FrameSink`]. It exists while someone receives it: built when the first
//! receiver of that codec and tier arrives, freed (no CPU) when the last one leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::MediaError;
use super::codec::VideoCodec;
use super::template::{self, render};
use crate::config::MediaConfig;
use crate::metrics::{self, GaugeGuard};

/// One encoded frame of a composite encode.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The frame (a VP8 frame, an H.264 access unit in byte-stream form); shares the
    /// GStreamer buffer's memory (no copy).
    pub data: Bytes,
    /// Presentation time in the pipeline (drives RTP timestamps).
    pub pts: Option<Duration>,
    /// Time until the next frame.
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

/// What one encode produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSpec {
    /// The codec.
    pub codec: VideoCodec,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frame rate.
    pub fps: u32,
    /// Target bitrate.
    pub bitrate_bps: u32,
}

/// A linked encode branch.
pub(super) struct EncodeBranch {
    pub bin: gst::Bin,
    /// The tee's request pad feeding it.
    pub tee_pad: gst::Pad,
    pub appsink: gst_app::AppSink,
    _live: GaugeGuard,
}

impl EncodeBranch {
    /// Builds the branch's bin (not yet linked) named `out-{key}`: `spec`'s scaler,
    /// rate and encoder, frames to `frames`.
    pub fn build(
        config: &MediaConfig,
        key: &str,
        spec: &EncodeSpec,
        frames: FrameSink,
    ) -> Result<(gst::Bin, gst_app::AppSink), MediaError> {
        let description = render(template::VIDEO_OUTPUT, &values(config, spec)?)?;
        let bin =
            gst::parse::bin_from_description(&description, false).map_err(|e| MediaError::Parse(e.to_string()))?;
        bin.set_property("name", format!("out-{key}"));
        shield_sink(&bin)?;
        // The leaky queue in front of the encoder drops a frame each time it is full.
        if let Some(queue) = bin.by_name("encode_in") {
            queue.connect("overrun", false, |_| {
                metrics::VIDEO_ENCODE_FRAMES_DROPPED.inc();
                None
            });
        }
        let appsink = bin
            .by_name("encoded")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| MediaError::Pipeline("output template lacks appsink 'encoded'".into()))?;
        let frame_period = Duration::from_nanos(1_000_000_000 / u64::from(spec.fps.max(1)));
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(frame) = to_frame(sink, sample, frame_period) {
                        frames(frame);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok((bin, appsink))
    }

    /// Wraps a linked, started bin.
    pub fn new(bin: gst::Bin, tee_pad: gst::Pad, appsink: gst_app::AppSink) -> Self {
        Self { bin, tee_pad, appsink, _live: GaugeGuard::new(&metrics::VIDEO_ENCODERS) }
    }

    /// Asks this encode for a keyframe now.
    pub fn force_keyframe(&self) {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        self.appsink.send_event(event);
    }
}

/// Gives the bin its sink pad, which tells the tee feeding it that every push went
/// well: the error a failed encoder returns for its frames (until the bus thread
/// takes the branch down) must not stop the shared compositor, which feeds every
/// other encode and the recordings. The failure itself reaches the bus, where the
/// branch is restarted, the tee skipping it while it is down (`video_bus.rs`).
fn shield_sink(bin: &gst::Bin) -> Result<(), MediaError> {
    let entry = bin
        .by_name("encode_in")
        .and_then(|e| e.static_pad("sink"))
        .ok_or_else(|| MediaError::Pipeline("output template lacks its 'encode_in' queue".into()))?;
    let shielded = |result: Result<gst::FlowSuccess, gst::FlowError>| result.or(Ok(gst::FlowSuccess::Ok));
    let sink = gst::GhostPad::builder_with_target(&entry)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?
        .name("sink")
        .chain_function(move |pad, parent, buffer| shielded(gst::ProxyPad::chain_default(pad, parent, buffer)))
        .chain_list_function(move |pad, parent, list| shielded(gst::ProxyPad::chain_list_default(pad, parent, list)))
        .build();
    bin.add_pad(&sink).map_err(|e| MediaError::Pipeline(e.to_string()))
}

fn to_frame(sink: &gst_app::AppSink, sample: gst::Sample, frame_period: Duration) -> Option<EncodedFrame> {
    let buffer = sample.buffer_owned()?;
    let pts = buffer.pts().map(|t| Duration::from_nanos(t.nseconds()));
    let duration = buffer.duration().map_or(frame_period, |d| Duration::from_nanos(d.nseconds()));
    // Capture time is the frame's running time (through its segment: x264enc's
    // timestamps carry a 1000-hour offset that its segment takes back) on the clock.
    let running = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .zip(buffer.pts())
        .and_then(|(segment, pts)| segment.to_running_time(pts));
    let captured_ns = match (sink.base_time(), running) {
        (Some(base), Some(running)) => (base + running).nseconds(),
        _ => 0,
    };
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    let mapped = buffer.into_mapped_buffer_readable().ok()?;
    Some(EncodedFrame { data: Bytes::from_owner(mapped), pts, duration, keyframe, captured_ns })
}

/// Encoder threads: `media.encoder_threads` on a big canvas, 1 on small ones (threads
/// cost more than they give on a few hundred macroblocks).
fn threads(config: &MediaConfig, spec: &EncodeSpec) -> u32 {
    if spec.width * spec.height >= 640 * 360 { config.encoder_threads.max(1) } else { 1 }
}

/// The encoder description (GStreamer launch syntax) an encode of `spec` runs: the
/// configured one or the embedded template, with its placeholders filled in.
pub fn encoder_description(config: &MediaConfig, spec: &EncodeSpec) -> Result<String, MediaError> {
    Ok(values(config, spec)?.remove("encoder").unwrap_or_default())
}

fn values(config: &MediaConfig, spec: &EncodeSpec) -> Result<HashMap<&'static str, String>, MediaError> {
    let mut values = HashMap::from([
        ("width", spec.width.to_string()),
        ("height", spec.height.to_string()),
        ("fps", spec.fps.to_string()),
        ("bitrate_bps", spec.bitrate_bps.to_string()),
        ("bitrate_kbps", (spec.bitrate_bps / 1000).to_string()),
        ("keyframe_max_dist", (spec.fps * 10).to_string()),
        ("threads", threads(config, spec).to_string()),
    ]);
    let encoder = match spec.codec {
        VideoCodec::Vp8 => config.video_encoder.as_deref().unwrap_or(template::VIDEO_ENCODE_VP8),
        VideoCodec::H264 => config.h264_encoder.as_deref().unwrap_or(template::VIDEO_ENCODE_H264),
    };
    let encoder = render(encoder, &values)?;
    values.insert("encoder", encoder);
    Ok(values)
}
