//! What a synthetic participant receives: the composite decoded to RGB (the latest
//! frame is kept) and the audio decoded to PCM (the last seconds are kept).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, MarshalSize};

use mcu::media::template::{self, render};

/// Seconds of received audio kept for analysis.
const AUDIO_KEPT_SAMPLES: usize = 48_000 * 3;

/// A decoded picture.
#[derive(Clone)]
pub struct RgbFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    sample: gst::Sample,
}

impl RgbFrame {
    /// The colour at `(x, y)` as `[r, g, b]`, averaged over a 9x9 block to ignore
    /// codec noise.
    pub fn rgb_at(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        let buffer = self.sample.buffer()?;
        let caps = self.sample.caps()?;
        let info = gst_video::VideoInfo::from_caps(caps).ok()?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).ok()?;
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        for yy in y.saturating_sub(4)..(y + 5).min(self.height) {
            for xx in x.saturating_sub(4)..(x + 5).min(self.width) {
                let i = yy as usize * stride + xx as usize * 3;
                for c in 0..3 {
                    sum[c] += u64::from(data[i + c]);
                }
                n += 1;
            }
        }
        (n > 0).then(|| [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8])
    }

    /// The studio-range luma (BT.601, 16..=235, as in the I420 the server composes)
    /// of the `width` x `height` block at `(x, y)`, row by row; `None` when the block
    /// is not inside the frame.
    pub fn luma_block(&self, x: u32, y: u32, width: u32, height: u32) -> Option<Vec<u8>> {
        if x + width > self.width || y + height > self.height {
            return None;
        }
        let buffer = self.sample.buffer()?;
        let info = gst_video::VideoInfo::from_caps(self.sample.caps()?).ok()?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).ok()?;
        let mut out = Vec::with_capacity((width * height) as usize);
        for yy in y..y + height {
            for xx in x..x + width {
                let i = yy as usize * stride + xx as usize * 3;
                let (r, g, b) = (f64::from(data[i]), f64::from(data[i + 1]), f64::from(data[i + 2]));
                out.push((16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round() as u8);
            }
        }
        Some(out)
    }
}

/// Everything received so far.
#[derive(Default)]
pub struct Received {
    /// The latest decoded composite frame.
    pub latest_frame: Mutex<Option<RgbFrame>>,
    /// Composite frames decoded.
    pub frames_decoded: AtomicU64,
    /// Video RTP packets received.
    pub video_packets: AtomicU64,
    /// Bytes of video RTP received.
    pub video_bytes: AtomicU64,
    /// Composite frames received (RTP marker bits), whether or not decoded yet.
    pub frames_received: AtomicU64,
    /// RTP timestamps of the last composite frames received (media time, 90 kHz).
    pub frame_timestamps: Mutex<VecDeque<u32>>,
    /// Audio RTP packets received.
    pub audio_packets: AtomicU64,
    /// Keyframes received (counted from the RTP payload, before decoding).
    pub keyframes: AtomicU64,
    /// The last seconds of decoded audio (48 kHz mono).
    pub audio: Mutex<VecDeque<i16>>,
    /// SSRC of the composite track, once it arrived.
    video_ssrc: Mutex<Option<u32>>,
    /// The codec the composite arrives in (`VP8`, `H264`), once it arrived.
    pub video_codec: Mutex<Option<String>>,
    /// Where every decoded frame is also sent, once someone watches them all.
    observer: Mutex<Option<std::sync::mpsc::SyncSender<RgbFrame>>>,
    pipelines: Mutex<Vec<gst::Pipeline>>,
}

impl Received {
    /// The latest composite frame.
    pub fn frame(&self) -> Option<RgbFrame> {
        self.latest_frame.lock().ok()?.clone()
    }
    /// A copy of the last `samples` audio samples (fewer if not yet received).
    pub fn recent_audio(&self, samples: usize) -> Vec<i16> {
        let audio = self.audio.lock().map(|a| a.clone()).unwrap_or_default();
        let skip = audio.len().saturating_sub(samples);
        audio.into_iter().skip(skip).collect()
    }
    /// The frame rate of the composite in media time over its last `frames` frames
    /// (from their RTP timestamps): what the server produced, however late it
    /// arrived.
    pub fn media_fps(&self, frames: usize) -> Option<f64> {
        let stamps = self.frame_timestamps.lock().ok()?;
        let recent: Vec<u32> = stamps.iter().rev().take(frames).copied().collect();
        let span = recent.first()?.wrapping_sub(*recent.last()?);
        (recent.len() > 1 && span > 0).then(|| (recent.len() - 1) as f64 * 90_000.0 / f64::from(span))
    }

    /// SSRC of the composite track, once it arrived.
    pub fn video_ssrc(&self) -> Option<u32> {
        *self.video_ssrc.lock().ok()?
    }
    /// Every composite frame decoded from now on, in order (up to `backlog` waiting:
    /// frames beyond are not sent, and the watcher sees the gap in their count).
    pub fn observe_frames(&self, backlog: usize) -> std::sync::mpsc::Receiver<RgbFrame> {
        let (tx, rx) = std::sync::mpsc::sync_channel(backlog);
        if let Ok(mut observer) = self.observer.lock() {
            *observer = Some(tx);
        }
        rx
    }

    /// Stops sending frames to the watcher.
    pub fn stop_observing(&self) {
        if let Ok(mut observer) = self.observer.lock() {
            *observer = None;
        }
    }

    /// Forgets the audio received so far (to analyse only what comes next).
    pub fn clear_audio(&self) {
        if let Ok(mut a) = self.audio.lock() {
            a.clear();
        }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Ok(pipelines) = self.pipelines.lock() {
            for p in pipelines.iter() {
                let _ = p.set_state(gst::State::Null);
            }
        }
    }
}

/// Decodes whatever tracks arrive on `pc` into `received` (video only counted, not
/// decoded, unless `decode_video`).
pub(super) fn attach(pc: &Arc<RTCPeerConnection>, received: Arc<Received>, decode_video: bool) {
    let weak_pc = Arc::downgrade(pc);
    pc.on_track(Box::new(move |track, _, _| {
        let received = Arc::clone(&received);
        match track.kind() {
            RTPCodecType::Video if !decode_video => {
                tokio::spawn(async move {
                    let h264 = track.codec().capability.mime_type.eq_ignore_ascii_case("video/h264");
                    while let Ok((packet, _)) = track.read_rtp().await {
                        count_video_packet(&received, &packet, h264);
                    }
                });
            }
            RTPCodecType::Video => {
                if let Err(e) = start_video_decoder(track, received, weak_pc.clone()) {
                    tracing::warn!(error = %e, "client video decoder");
                }
            }
            RTPCodecType::Audio => {
                tokio::spawn(decode_audio(track, received));
            }
            _ => {}
        }
        Box::pin(async {})
    }));
}

fn start_video_decoder(
    track: Arc<TrackRemote>,
    received: Arc<Received>,
    pc: std::sync::Weak<RTCPeerConnection>,
) -> Result<(), String> {
    let h264 = track.codec().capability.mime_type.eq_ignore_ascii_case("video/h264");
    let (encoding, decode) = if h264 {
        ("H264", "rtph264depay request-keyframe=true wait-for-keyframe=true ! h264parse ! avdec_h264")
    } else {
        ("VP8", "rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec")
    };
    if let Ok(mut c) = received.video_codec.lock() {
        *c = Some(encoding.to_owned());
    }
    let values = HashMap::from([
        ("jitter_ms", "50".to_owned()),
        ("encoding", encoding.to_owned()),
        ("decode", decode.to_owned()),
    ]);
    let description = render(template::CLIENT_RECEIVE_VIDEO, &values).map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    let appsrc = pipeline.by_name("rtp_in").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or("no appsrc")?;
    let appsink =
        pipeline.by_name("decoded").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or("no appsink")?;
    let sink_received = Arc::clone(&received);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let size = sample
                    .caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                    .map(|i| (i.width(), i.height()));
                if let Some((width, height)) = size
                    && let Ok(mut latest) = sink_received.latest_frame.lock()
                {
                    let frame = RgbFrame { width, height, sample };
                    if let Ok(observer) = sink_received.observer.lock()
                        && let Some(observer) = observer.as_ref()
                    {
                        let _ = observer.try_send(frame.clone());
                    }
                    *latest = Some(frame);
                    sink_received.frames_decoded.fetch_add(1, Ordering::Relaxed);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    // The decoder's keyframe requests become PLIs to the server.
    let ssrc = track.ssrc();
    if let Ok(mut s) = received.video_ssrc.lock() {
        *s = Some(ssrc);
    }
    let (pli_tx, mut pli_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    if let Some(pad) = appsrc.static_pad("src") {
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if info.event().is_some_and(|e| gst_video::UpstreamForceKeyUnitEvent::parse(e).is_ok()) {
                let _ = pli_tx.send(());
            }
            gst::PadProbeReturn::Ok
        });
    }
    tokio::spawn(async move {
        while pli_rx.recv().await.is_some() {
            let Some(pc) = pc.upgrade() else { break };
            let _ = pc.write_rtcp(&[Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc })]).await;
        }
    });
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    if let Ok(mut p) = received.pipelines.lock() {
        p.push(pipeline);
    }
    tokio::spawn(async move {
        while let Ok((packet, _)) = track.read_rtp().await {
            count_video_packet(&received, &packet, h264);
            let len = packet.marshal_size();
            if let Ok(mut buffer) = gst::Buffer::with_size(len) {
                if let Some(b) = buffer.get_mut()
                    && let Ok(mut map) = b.map_writable()
                {
                    let _ = packet.marshal_to(map.as_mut_slice());
                }
                let _ = appsrc.push_buffer(buffer);
            }
        }
    });
    Ok(())
}

/// Counts a received video packet: bytes, frames (marker bits) and their media time,
/// keyframes.
fn count_video_packet(received: &Received, packet: &webrtc::rtp::packet::Packet, h264: bool) {
    received.video_packets.fetch_add(1, Ordering::Relaxed);
    received.video_bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
    if packet.header.marker {
        received.frames_received.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut stamps) = received.frame_timestamps.lock() {
            if stamps.len() >= 600 {
                stamps.pop_front();
            }
            stamps.push_back(packet.header.timestamp);
        }
    }
    if if h264 { starts_h264_keyframe(&packet.payload) } else { starts_vp8_keyframe(&packet.payload) } {
        received.keyframes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether an H.264 RTP payload (RFC 6184) starts a keyframe: an IDR slice, or the
/// SPS that comes before one (alone, in a STAP-A, or the start of an FU-A).
pub fn starts_h264_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    match first & 0x1f {
        5 | 7 => true,
        // STAP-A: the first aggregated NAL unit's type.
        24 => payload.get(3).is_some_and(|&n| matches!(n & 0x1f, 5 | 7)),
        // FU-A: the start of a fragmented NAL unit.
        28 => payload.get(1).is_some_and(|&h| h & 0x80 != 0 && matches!(h & 0x1f, 5 | 7)),
        _ => false,
    }
}

/// Whether an RTP payload (RFC 7741) is the first packet of a VP8 keyframe.
pub fn starts_vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    let start_of_partition = first & 0x10 != 0;
    let partition_zero = first & 0x07 == 0;
    if !start_of_partition || !partition_zero {
        return false;
    }
    let mut offset = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else { return false };
        offset = 2;
        if ext & 0x80 != 0 {
            // Picture ID: 7 or 15 bits.
            let Some(&pid) = payload.get(offset) else { return false };
            offset += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            offset += 1; // TID/KEYIDX
        }
    }
    // VP8 frame tag: bit 0 is 0 for a keyframe.
    payload.get(offset).is_some_and(|&tag| tag & 0x01 == 0)
}

async fn decode_audio(track: Arc<TrackRemote>, received: Arc<Received>) {
    let Ok(mut decoder) = opus::Decoder::new(48_000, opus::Channels::Mono) else { return };
    let mut pcm = vec![0i16; 5760];
    while let Ok((packet, _)) = track.read_rtp().await {
        received.audio_packets.fetch_add(1, Ordering::Relaxed);
        if let Ok(n) = decoder.decode(&packet.payload, &mut pcm, false)
            && let Ok(mut audio) = received.audio.lock()
        {
            audio.extend(&pcm[..n]);
            let excess = audio.len().saturating_sub(AUDIO_KEPT_SAMPLES);
            audio.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::starts_vp8_keyframe;

    #[test]
    fn recognises_vp8_keyframe_start() {
        // S=1, PID=0, no extension; frame tag bit 0 = 0 (keyframe) / 1 (delta).
        assert!(starts_vp8_keyframe(&[0x10, 0x50, 0x01]));
        assert!(!starts_vp8_keyframe(&[0x10, 0x51, 0x01]));
        // Continuation packet.
        assert!(!starts_vp8_keyframe(&[0x00, 0x50]));
        // X=1 with 15-bit picture id (I=1, M=1): tag at offset 4.
        assert!(starts_vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x50]));
        assert!(!starts_vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x51]));
        assert!(!starts_vp8_keyframe(&[]));
    }
}
