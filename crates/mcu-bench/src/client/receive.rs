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

/// A decoded picture, as the decoder gave it (I420): luma is read as it is, so a
/// quality measure sees the codec's error and not a colour conversion's (a round
/// trip through 8-bit RGB alone costs natural pictures ~40 dB PSNR-Y: saturated
/// colours clip).
#[derive(Clone)]
pub struct DecodedFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    sample: gst::Sample,
}

impl DecodedFrame {
    /// A frame of I420 `sample`; `None` when its caps say no size.
    pub(crate) fn new(sample: gst::Sample) -> Option<Self> {
        let info = sample.caps().and_then(|c| gst_video::VideoInfo::from_caps(c).ok())?;
        Some(Self { width: info.width(), height: info.height(), sample })
    }

    /// The colour at `(x, y)` as `[r, g, b]`, averaged over a 9x9 block to ignore
    /// codec noise (BT.601 studio range, what VP8 and H.264 decoders output).
    pub fn rgb_at(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        let (x0, x1) = (x.saturating_sub(4), (x + 5).min(self.width));
        let (y0, y1) = (y.saturating_sub(4), (y + 5).min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return None;
        }
        let mean = |plane: u32, sub: u32| -> Option<f64> {
            self.with_plane(plane, |data, stride| {
                let (mut sum, mut n) = (0u64, 0u64);
                for yy in y0 / sub..=(y1 - 1) / sub {
                    for xx in x0 / sub..=(x1 - 1) / sub {
                        sum += u64::from(data[yy as usize * stride + xx as usize]);
                        n += 1;
                    }
                }
                sum as f64 / n as f64
            })
        };
        let (l, u, v) = (mean(0, 1)? - 16.0, mean(1, 2)? - 128.0, mean(2, 2)? - 128.0);
        let clamp = |c: f64| c.round().clamp(0.0, 255.0) as u8;
        Some([clamp(1.164 * l + 1.596 * v), clamp(1.164 * l - 0.392 * u - 0.813 * v), clamp(1.164 * l + 2.017 * u)])
    }

    /// The luma (studio range, 16..=235) of the `width` x `height` block at `(x, y)`,
    /// row by row; `None` when the block is not inside the frame.
    pub fn luma_block(&self, x: u32, y: u32, width: u32, height: u32) -> Option<Vec<u8>> {
        if x + width > self.width || y + height > self.height {
            return None;
        }
        self.with_plane(0, |data, stride| {
            let mut out = Vec::with_capacity((width * height) as usize);
            for row in y..y + height {
                out.extend_from_slice(&data[row as usize * stride + x as usize..][..width as usize]);
            }
            out
        })
    }

    /// Runs `read` on plane `index` (0 Y, 1 U, 2 V) and its stride.
    fn with_plane<T>(&self, index: u32, read: impl FnOnce(&[u8], usize) -> T) -> Option<T> {
        let buffer = self.sample.buffer()?;
        let info = gst_video::VideoInfo::from_caps(self.sample.caps()?).ok()?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
        let stride = usize::try_from(*frame.plane_stride().get(index as usize)?).ok()?;
        Some(read(frame.plane_data(index).ok()?, stride))
    }
}

/// The latest decoded frame of a stream, and every frame to one watcher while
/// someone watches.
#[derive(Default)]
pub struct FrameTap {
    latest: Mutex<Option<DecodedFrame>>,
    /// Frames decoded.
    pub decoded: AtomicU64,
    observer: Mutex<Option<std::sync::mpsc::SyncSender<DecodedFrame>>>,
}

impl FrameTap {
    /// Takes a decoded sample (on the decoder's streaming thread).
    pub(crate) fn push(&self, sample: gst::Sample) {
        let Some(frame) = DecodedFrame::new(sample) else { return };
        if let Ok(observer) = self.observer.lock()
            && let Some(observer) = observer.as_ref()
        {
            let _ = observer.try_send(frame.clone());
        }
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(frame);
        }
        self.decoded.fetch_add(1, Ordering::Relaxed);
    }

    /// The latest frame.
    pub fn latest(&self) -> Option<DecodedFrame> {
        self.latest.lock().ok()?.clone()
    }

    /// Every frame decoded from now on, in order (up to `backlog` waiting: frames
    /// beyond are not sent, and the watcher sees the gap in their count).
    pub fn observe(&self, backlog: usize) -> std::sync::mpsc::Receiver<DecodedFrame> {
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
}

/// What a jitter buffer counted (its `stats`): packets it gave up on, and those that
/// came after their deadline.
pub(crate) fn jitter_counts(jitter: &gst::Element) -> (u64, u64) {
    let stats = jitter.property::<gst::Structure>("stats");
    (stats.get::<u64>("num-lost").unwrap_or(0), stats.get::<u64>("num-late").unwrap_or(0))
}

/// Where a receiver's composite lost packets (counts since it joined).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VideoLosses {
    /// Packets its jitter buffer gave up on.
    pub lost: u64,
    /// Packets that came after their deadline (also counted in `lost`).
    pub late: u64,
    /// Keyframes its decoder asked for.
    pub keyframe_requests: u64,
}

impl VideoLosses {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            lost: self.lost.saturating_sub(earlier.lost),
            late: self.late.saturating_sub(earlier.late),
            keyframe_requests: self.keyframe_requests.saturating_sub(earlier.keyframe_requests),
        }
    }
}

/// Everything received so far.
#[derive(Default)]
pub struct Received {
    /// The decoded composite.
    pub video: FrameTap,
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
    /// Keyframes this receiver's decoder asked for (PLIs sent): at the start and
    /// after each loss it could not recover.
    pub keyframe_requests: Arc<AtomicU64>,
    /// The last seconds of decoded audio (48 kHz mono).
    pub audio: Mutex<VecDeque<i16>>,
    /// SSRC of the composite track, once it arrived.
    video_ssrc: Mutex<Option<u32>>,
    /// The codec the composite arrives in (`VP8`, `H264`), once it arrived.
    pub video_codec: Mutex<Option<String>>,
    pipelines: Mutex<Vec<gst::Pipeline>>,
}

impl Received {
    /// The latest composite frame.
    pub fn frame(&self) -> Option<DecodedFrame> {
        self.video.latest()
    }
    /// Composite frames decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.video.decoded.load(Ordering::Relaxed)
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
    pub fn observe_frames(&self, backlog: usize) -> std::sync::mpsc::Receiver<DecodedFrame> {
        self.video.observe(backlog)
    }

    /// Stops sending frames to the watcher.
    pub fn stop_observing(&self) {
        self.video.stop_observing();
    }

    /// What the composite's jitter buffer counted so far: packets it gave up on
    /// (never came, or came after their deadline) and packets that came too late.
    pub fn video_losses(&self) -> Option<VideoLosses> {
        let pipelines = self.pipelines.lock().ok()?;
        let (lost, late) = jitter_counts(&pipelines.iter().find_map(|p| p.by_name("jitter"))?);
        Some(VideoLosses { lost, late, keyframe_requests: self.keyframe_requests.load(Ordering::Relaxed) })
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
                sink_received.video.push(sample);
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
        let counted = Arc::clone(&received.keyframe_requests);
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if info.event().is_some_and(|e| gst_video::UpstreamForceKeyUnitEvent::parse(e).is_ok()) {
                counted.fetch_add(1, Ordering::Relaxed);
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
