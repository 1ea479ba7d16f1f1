//! What a synthetic participant sends: a test pattern (VP8 or H.264) and a sine tone,
//! in real time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use webrtc::media::Sample;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::ClientError;
use crate::picture::PannedPicture;
use mcu::media::codec::VideoCodec;
use mcu::media::template::{self, render};

/// Stops a sender when dropped.
pub(super) enum SenderHandle {
    Video(gst::Pipeline),
    Tone { stop: Arc<AtomicBool>, muted: Arc<AtomicBool> },
}

impl SenderHandle {
    /// Changes the camera's colour from the next frame on.
    pub(super) fn set_color(&self, color: u32) {
        if let SenderHandle::Video(p) = self
            && let Some(camera) = p.by_name("camera")
            && camera.has_property("foreground-color")
        {
            camera.set_property("foreground-color", 0xff00_0000 | color);
        }
    }

    /// Mutes or unmutes the tone from the next 20 ms frame on.
    pub(super) fn set_muted(&self, mute: bool) {
        if let SenderHandle::Tone { muted, .. } = self {
            muted.store(mute, Ordering::SeqCst);
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        match self {
            SenderHandle::Video(p) => {
                let _ = p.set_state(gst::State::Null);
            }
            SenderHandle::Tone { stop, .. } => stop.store(true, Ordering::SeqCst),
        }
    }
}

/// What a synthetic camera shows and how it encodes it.
pub(super) struct Camera<'a> {
    /// The solid colour of `solid-color` (0xRRGGBB).
    pub color: u32,
    /// Width, height, frame rate.
    pub size: (u32, u32, u32),
    pub codec: VideoCodec,
    /// A `videotestsrc` pattern (with any further properties).
    pub pattern: &'a str,
    /// A picture panned one pixel a frame, shown instead of the pattern.
    pub picture: Option<Arc<PannedPicture>>,
    pub bitrate_bps: u32,
}

/// Starts `camera`, encoded in its codec; PLI/FIR from the server force a keyframe.
pub(super) fn start_video(
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<RTCRtpSender>,
    camera: Camera<'_>,
) -> Result<SenderHandle, ClientError> {
    let Camera { color, size: (width, height, fps), codec, pattern, picture, bitrate_bps } = camera;
    let source = match picture {
        Some(_) => format!(
            "appsrc name=camera is-live=true format=time do-timestamp=true \
             caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        ),
        None => format!(
            "videotestsrc name=camera is-live=true pattern={pattern} foreground-color=0x{:08x}",
            0xff00_0000 | color
        ),
    };
    let mut values = HashMap::from([
        ("camera", source),
        ("width", width.to_string()),
        ("height", height.to_string()),
        ("fps", fps.to_string()),
        ("bitrate_bps", bitrate_bps.to_string()),
        ("bitrate_kbps", (bitrate_bps / 1000).to_string()),
        ("keyframe_max_dist", (fps * 4).to_string()),
        ("threads", "1".to_owned()),
    ]);
    let encoder = match codec {
        VideoCodec::Vp8 => {
            "vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bitrate_bps} \
                            keyframe-max-dist={keyframe_max_dist} lag-in-frames=0 error-resilient=default"
        }
        VideoCodec::H264 => template::VIDEO_ENCODE_H264,
    };
    let encoder = render(encoder, &values).map_err(|e| ClientError::Media(e.to_string()))?;
    values.insert("encoder", encoder);
    let description = render(template::CLIENT_SEND_VIDEO, &values).map_err(|e| ClientError::Media(e.to_string()))?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| ClientError::Media(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| ClientError::Media("not a pipeline".into()))?;
    let appsink = pipeline
        .by_name("encoded")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| ClientError::Media("no appsink".into()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Bytes, Duration)>(16);
    let period = Duration::from_nanos(1_000_000_000 / u64::from(fps));
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer_owned()
                    && let Ok(map) = buffer.into_mapped_buffer_readable()
                {
                    let _ = tx.try_send((Bytes::from_owner(map), period));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    tokio::spawn(async move {
        while let Some((data, duration)) = rx.recv().await {
            let _ = track.write_sample(&Sample { data, duration, ..Default::default() }).await;
        }
    });
    let weak = pipeline.downgrade();
    tokio::spawn(async move {
        while let Ok((packets, _)) = sender.read_rtcp().await {
            let keyframe = packets.iter().any(|p| {
                p.as_any().downcast_ref::<PictureLossIndication>().is_some()
                    || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
            });
            if keyframe
                && let Some(pipeline) = weak.upgrade()
                && let Some(sink) = pipeline.by_name("encoded")
            {
                sink.send_event(gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build());
            }
        }
    });
    pipeline.set_state(gst::State::Playing).map_err(|e| ClientError::Media(e.to_string()))?;
    if let Some(picture) = picture
        && let Some(appsrc) = pipeline.by_name("camera").and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    {
        pan(appsrc, picture, (width, height, fps))?;
    }
    Ok(SenderHandle::Video(pipeline))
}

/// Pushes the views of `picture` into `camera` in real time, one pixel further each
/// frame, on a thread of its own that ends with the pipeline.
fn pan(
    camera: gst_app::AppSrc,
    picture: Arc<PannedPicture>,
    (width, height, fps): (u32, u32, u32),
) -> Result<(), ClientError> {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(fps.max(1)));
    let size = (width * height * 3 / 2) as usize;
    std::thread::Builder::new()
        .name("camera-pan".into())
        .spawn(move || {
            let mut next = Instant::now();
            for frame in 0u64.. {
                let Ok(mut buffer) = gst::Buffer::with_size(size) else { return };
                if let Some(buffer) = buffer.get_mut()
                    && let Ok(mut map) = buffer.map_writable()
                {
                    picture.write_frame(frame, (width, height), map.as_mut_slice());
                }
                if camera.push_buffer(buffer).is_err() {
                    return;
                }
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
        .map_err(|e| ClientError::Media(e.to_string()))?;
    Ok(())
}

/// How a tone is sent.
pub(super) struct Tone {
    /// Silent from the start.
    pub muted: bool,
    /// The RFC 6464 level claimed instead of the measured one.
    pub claimed_level: Option<u8>,
    /// Opus in-band FEC (VoIP mode, 10 % expected loss).
    pub fec: bool,
}

/// Starts a sine tone at `hz`, Opus-encoded in 20 ms frames on its own thread;
/// silence while `muted`. Each packet carries its RFC 6464 level (when negotiated):
/// the frame's own, or `claimed_level`.
pub(super) fn start_tone(track: Arc<TrackLocalStaticSample>, hz: f32, tone: Tone) -> Result<SenderHandle, ClientError> {
    let Tone { muted, claimed_level, fec } = tone;
    let media = |e: opus::Error| ClientError::Media(e.to_string());
    let application = if fec { opus::Application::Voip } else { opus::Application::Audio };
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, application).map_err(media)?;
    if fec {
        encoder.set_inband_fec(true).map_err(media)?;
        encoder.set_packet_loss_perc(10).map_err(media)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let muted = Arc::new(AtomicBool::new(muted));
    let silent = Arc::clone(&muted);
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("tone-{hz}"))
        .spawn(move || {
            let mut pcm = [0i16; 960];
            let mut out = [0u8; 1500];
            let mut phase = 0f64;
            let step = std::f64::consts::TAU * f64::from(hz) / 48_000.0;
            let mut next = Instant::now();
            while !stopped.load(Ordering::SeqCst) {
                let gain = if silent.load(Ordering::SeqCst) { 0.0 } else { 8000.0 };
                for s in pcm.iter_mut() {
                    *s = (phase.sin() * gain) as i16;
                    phase = (phase + step) % std::f64::consts::TAU;
                }
                if let Ok(n) = encoder.encode(&pcm, &mut out) {
                    let sample = Sample {
                        data: Bytes::copy_from_slice(&out[..n]),
                        duration: Duration::from_millis(20),
                        ..Default::default()
                    };
                    let level = claimed_level.unwrap_or_else(|| dbov(&pcm));
                    let header = AudioLevelExtension { level, voice: level < 127 };
                    let _ = runtime.block_on(track.sample_writer().with_audio_level(header).write_sample(&sample));
                }
                next += Duration::from_millis(20);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
        .map_err(|e| ClientError::Media(e.to_string()))?;
    Ok(SenderHandle::Tone { stop, muted })
}

/// The RFC 6464 level of a frame: its RMS in -dBov, 0 (full scale) to 127 (silence).
fn dbov(pcm: &[i16]) -> u8 {
    let level = mcu::media::voice::level_dbfs(pcm);
    (-level).round().clamp(0.0, 127.0) as u8
}
