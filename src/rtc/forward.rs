//! From shared encodes to each receiver: frames are packetised once per (codec, tier)
//! encode and fanned out; each receiver's forwarder writes them to its own track,
//! renumbered so that its stream stays one continuous RTP stream across tier
//! switches.
//!
//! Why not swap a receiver between shared `TrackLocalStaticSample`s: each of those
//! packetises with its own sequence numbers and timestamps, so a swap makes the
//! receiver's stream jump, which receivers take for massive loss, and a NACK responder
//! keyed by sequence number would then answer a NACK with a packet of the other
//! encode. Renumbering costs a header write per packet, which each receiver's SRTP
//! pays for anyway.
//!
//! The forwarder also answers the receiver's NACKs (webrtc-rs's responder is not
//! used): only with packets of the encode it now delivers, sent less than
//! [`RESEND_MAX_AGE`] ago, and within a budget of half its send rate. A receiver whose
//! link collapsed otherwise asks again and again for the packets it lost, and the
//! retransmissions alone keep the link full after it moved to a lower tier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use webrtc::rtp::codecs::h264::H264Payloader;
use webrtc::rtp::codecs::vp8::Vp8Payloader;
use webrtc::rtp::packet::Packet;
use webrtc::rtp::packetizer::{Packetizer, new_packetizer};
use webrtc::rtp::sequence::new_random_sequencer;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

use crate::media::codec::VideoCodec;
use crate::metrics::{self, GaugeGuard};

/// Largest RTP packet the server sends (IPv4 + UDP + SRTP stay under common MTUs).
const RTP_MTU: usize = 1200;
/// RTP video clock.
const VIDEO_CLOCK: u32 = 90_000;
/// Frames a slow receiver may lag behind before it skips to the next keyframe.
pub const FEED_DEPTH: usize = 64;
/// Packets kept for retransmission.
const HISTORY: usize = 512;
/// A packet older than this is not resent: the receiver's jitter buffer has given up
/// on it, or a keyframe will follow.
pub const RESEND_MAX_AGE: Duration = Duration::from_millis(800);
/// Retransmissions may add this share of what was sent lately.
const RESEND_SHARE: f64 = 0.5;
/// Retransmission budget that is always there (bytes), for a burst of loss.
const RESEND_BURST: f64 = 16_000.0;

/// One encoded frame, packetised once for every receiver of its encode.
#[derive(Debug)]
pub struct PacketizedFrame {
    /// The frame's RTP packets (payload type and SSRC are set per receiver).
    pub packets: Vec<Packet>,
    /// Whether a receiver can start decoding here.
    pub keyframe: bool,
    /// Payload bytes, for send-rate accounting.
    pub bytes: usize,
}

/// Packetises one encode's frames.
pub struct FramePacketizer {
    packetizer: Box<dyn Packetizer + Send + Sync>,
    clock: super::rtp_clock::RtpClock,
    /// RTP ticks the packetiser stamps next, counted from its random start.
    stamped: u64,
}

impl FramePacketizer {
    /// A packetiser for `codec` frames at nominally `fps`.
    pub fn new(codec: VideoCodec, fps: u32) -> Self {
        let payloader: Box<dyn webrtc::rtp::packetizer::Payloader + Send + Sync> = match codec {
            VideoCodec::Vp8 => {
                let mut payloader = Vp8Payloader::default();
                payloader.enable_picture_id = true;
                Box::new(payloader)
            }
            VideoCodec::H264 => Box::<H264Payloader>::default(),
        };
        Self {
            packetizer: Box::new(new_packetizer(
                RTP_MTU,
                0,
                0,
                payloader,
                Box::new(new_random_sequencer()),
                VIDEO_CLOCK,
            )),
            clock: super::rtp_clock::RtpClock::new(
                VIDEO_CLOCK,
                Duration::from_nanos(1_000_000_000 / u64::from(fps.max(1))),
            ),
            stamped: 0,
        }
    }

    /// Packetises one frame presented at `pts`, at the RTP time its PTS gives (see
    /// [`super::rtp_clock`]): frames an encoder dropped leave a gap instead of
    /// compressing time, and no rounding accumulates.
    pub fn packetize(&mut self, data: &Bytes, pts: Option<Duration>, keyframe: bool) -> Option<PacketizedFrame> {
        // The packetiser stamps its current timestamp: move it to this frame's, then
        // packetise without advancing (the next frame moves it again).
        let ticks = self.clock.ticks(pts);
        self.packetizer.skip_samples(ticks.wrapping_sub(self.stamped) as u32);
        self.stamped = ticks;
        let packets = self.packetizer.packetize(data, 0).ok()?;
        Some(PacketizedFrame { packets, keyframe, bytes: data.len() })
    }
}

/// Where an encode's frames go: subscribe a receiver with [`FrameFeed::subscribe`].
pub type FrameFeed = broadcast::Sender<Arc<PacketizedFrame>>;

/// A new feed for one encode.
pub fn new_feed() -> FrameFeed {
    broadcast::channel(FEED_DEPTH).0
}

/// What a forwarder tells its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardEvent {
    /// The receiver now gets the feed tagged `tag` (started on its keyframe).
    Switched(u64),
    /// The receiver fell behind on feed `tag` and waits for its next keyframe.
    NeedsKeyframe(u64),
}

enum Control {
    Switch {
        tag: u64,
        feed: broadcast::Receiver<Arc<PacketizedFrame>>,
    },
    /// The receiver lost these packets (RTCP NACK).
    Nack(Vec<u16>),
}

/// Hands a receiver's NACKs to its forwarder.
pub type NackSink = Arc<dyn Fn(Vec<u16>) + Send + Sync>;

/// Counters of one receiver's video.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Payload bytes written to the receiver's track.
    pub bytes: AtomicU64,
}

/// One receiver's video forwarder: a task writing the feed it is switched to into
/// the receiver's track.
pub struct Forwarder {
    control: mpsc::UnboundedSender<Control>,
    /// What it has sent.
    pub stats: Arc<ForwardStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Starts forwarding into `track`; nothing flows until the first [`Self::switch`].
    /// `on_event` is called from the forwarder's task; it must only forward.
    pub fn start(track: Arc<TrackLocalStaticRTP>, on_event: Arc<dyn Fn(ForwardEvent) + Send + Sync>) -> Self {
        let (control, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ForwardStats::default());
        let task = tokio::spawn(run(track, rx, Arc::clone(&stats), on_event));
        Self { control, stats, task }
    }

    /// Switches to the feed tagged `tag` at its next keyframe (the current feed keeps
    /// flowing until then).
    pub fn switch(&self, tag: u64, feed: &FrameFeed) {
        let _ = self.control.send(Control::Switch { tag, feed: feed.subscribe() });
    }

    /// Where the receiver's NACKs go.
    pub fn nack_sink(&self) -> NackSink {
        let control = self.control.clone();
        Arc::new(move |lost| {
            let _ = control.send(Control::Nack(lost));
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renumbering state of one receiver's stream.
struct Rewriter {
    next_seq: u16,
    ts_offset: u32,
    /// RTP timestamp and time of the last frame written.
    last: Option<(u32, Instant)>,
}

/// A packet sent to the receiver, kept for retransmission.
struct Sent {
    packet: Packet,
    at: Instant,
    resent: u8,
}

/// What the receiver was sent lately, to answer its NACKs.
struct History {
    packets: std::collections::VecDeque<Sent>,
    /// The first sequence number of the encode now delivered: older packets belong
    /// to an encode the receiver no longer decodes.
    epoch: Option<u16>,
    /// Retransmission budget, bytes, refilled from what is sent.
    budget: f64,
}

impl History {
    fn new() -> Self {
        Self { packets: std::collections::VecDeque::with_capacity(HISTORY), epoch: None, budget: RESEND_BURST }
    }

    fn sent(&mut self, packet: Packet, at: Instant) {
        self.budget = (self.budget + packet.payload.len() as f64 * RESEND_SHARE).min(RESEND_BURST * 4.0);
        if self.packets.len() == HISTORY {
            self.packets.pop_front();
        }
        self.packets.push_back(Sent { packet, at, resent: 0 });
    }

    /// The packets to resend for a NACK of `lost` at `now`.
    fn resend(&mut self, lost: &[u16], now: Instant) -> Vec<Packet> {
        let mut out = Vec::new();
        let epoch = self.epoch;
        for seq in lost {
            // Sequence numbers wrap: "after the epoch" is within half the space.
            if epoch.is_some_and(|e| seq.wrapping_sub(e) >= 0x8000) {
                continue;
            }
            let Some(sent) = self.packets.iter_mut().rev().find(|s| s.packet.header.sequence_number == *seq) else {
                continue;
            };
            let size = sent.packet.payload.len() as f64;
            if now.duration_since(sent.at) > RESEND_MAX_AGE || sent.resent >= 2 || size > self.budget {
                continue;
            }
            self.budget -= size;
            sent.resent += 1;
            out.push(sent.packet.clone());
        }
        out
    }
}

impl Rewriter {
    /// Lines a new source's timestamps up after the last frame written: the gap is
    /// the wall time since, at least one tick.
    fn rebase(&mut self, first_ts: u32, now: Instant) {
        let target = match self.last {
            Some((ts, at)) => {
                let elapsed = (now.duration_since(at).as_secs_f64() * f64::from(VIDEO_CLOCK)) as u32;
                ts.wrapping_add(elapsed.max(1))
            }
            None => first_ts,
        };
        self.ts_offset = target.wrapping_sub(first_ts);
    }

    fn rewrite(&mut self, packet: &Packet) -> Packet {
        let mut out = packet.clone();
        out.header.sequence_number = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        out.header.timestamp = packet.header.timestamp.wrapping_add(self.ts_offset);
        out
    }
}

async fn run(
    track: Arc<TrackLocalStaticRTP>,
    mut control: mpsc::UnboundedReceiver<Control>,
    stats: Arc<ForwardStats>,
    on_event: Arc<dyn Fn(ForwardEvent) + Send + Sync>,
) {
    let _live = GaugeGuard::new(&metrics::VIDEO_FORWARDERS);
    let mut out = Output {
        track,
        rewriter: Rewriter { next_seq: rand_u16(), ts_offset: 0, last: None },
        history: History::new(),
        stats,
    };
    let mut current: Option<(u64, broadcast::Receiver<Arc<PacketizedFrame>>)> = None;
    // A feed waiting for its keyframe to take over (or, with no current, to start).
    let mut pending: Option<(u64, broadcast::Receiver<Arc<PacketizedFrame>>)> = None;
    loop {
        tokio::select! {
            biased;
            command = control.recv() => match command {
                Some(Control::Switch { tag, feed }) => pending = Some((tag, feed)),
                Some(Control::Nack(lost)) => out.resend(&lost).await,
                None => return,
            },
            frame = recv(&mut pending) => match frame {
                Ok(frame) if frame.keyframe => {
                    let Some((tag, feed)) = pending.take() else { continue };
                    out.start_source(&frame);
                    current = Some((tag, feed));
                    on_event(ForwardEvent::Switched(tag));
                    out.write(&frame).await;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => pending = None,
            },
            frame = recv(&mut current) => match frame {
                Ok(frame) => out.write(&frame).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Frames were lost to this receiver: resume at the next keyframe.
                    if let Some((tag, feed)) = current.take() {
                        metrics::VIDEO_RECEIVER_RESYNCS.inc();
                        on_event(ForwardEvent::NeedsKeyframe(tag));
                        pending = Some((tag, feed));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => current = None,
            },
        }
    }
}

/// The writing end of a forwarder.
struct Output {
    track: Arc<TrackLocalStaticRTP>,
    rewriter: Rewriter,
    history: History,
    stats: Arc<ForwardStats>,
}

impl Output {
    /// A new source starts at this keyframe: timestamps continue, and NACKs for what
    /// came before are no longer answered.
    fn start_source(&mut self, frame: &PacketizedFrame) {
        if let Some(first) = frame.packets.first() {
            self.rewriter.rebase(first.header.timestamp, Instant::now());
        }
        self.history.epoch = Some(self.rewriter.next_seq);
    }

    async fn write(&mut self, frame: &PacketizedFrame) {
        let now = Instant::now();
        for packet in &frame.packets {
            let packet = self.rewriter.rewrite(packet);
            if let Err(e) = self.track.write_rtp(&packet).await {
                tracing::trace!(error = %e, "forwarding to a receiver");
            }
            self.history.sent(packet, now);
        }
        if let Some(last) = frame.packets.last() {
            self.rewriter.last = Some((last.header.timestamp.wrapping_add(self.rewriter.ts_offset), now));
        }
        self.stats.bytes.fetch_add(frame.bytes as u64, Ordering::Relaxed);
    }

    async fn resend(&mut self, lost: &[u16]) {
        let resent = self.history.resend(lost, Instant::now());
        metrics::VIDEO_PACKETS_NACKED.add(lost.len() as i64);
        metrics::VIDEO_PACKETS_RESENT.add(resent.len() as i64);
        for packet in resent {
            if let Err(e) = self.track.write_rtp(&packet).await {
                tracing::trace!(error = %e, "retransmitting to a receiver");
            }
        }
    }
}

async fn recv(
    feed: &mut Option<(u64, broadcast::Receiver<Arc<PacketizedFrame>>)>,
) -> Result<Arc<PacketizedFrame>, broadcast::error::RecvError> {
    match feed {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn rand_u16() -> u16 {
    let id = uuid::Uuid::new_v4();
    u16::from_le_bytes([id.as_bytes()[0], id.as_bytes()[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32) -> Packet {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.header.timestamp = ts;
        p
    }

    #[test]
    fn a_switch_keeps_the_stream_continuous() {
        let t0 = Instant::now();
        let mut r = Rewriter { next_seq: 65_534, ts_offset: 0, last: None };
        // Feed A.
        r.rebase(1_000, t0);
        let a = [r.rewrite(&packet(7, 1_000)), r.rewrite(&packet(8, 1_000))];
        r.last = Some((a[1].header.timestamp, t0));
        assert_eq!([a[0].header.sequence_number, a[1].header.sequence_number], [65_534, 65_535]);
        assert_eq!(a[0].header.timestamp, 1_000);
        // Feed B, 33 ms later, with unrelated numbering.
        r.rebase(4_000_000_000, t0 + Duration::from_millis(33));
        let b = r.rewrite(&packet(30_000, 4_000_000_000));
        assert_eq!(b.header.sequence_number, 0, "wraps on from A");
        assert_eq!(b.header.timestamp, 1_000 + 2_970, "33 ms of 90 kHz after A's last frame");
        let b2 = r.rewrite(&packet(30_001, 4_000_003_000));
        assert_eq!((b2.header.sequence_number, b2.header.timestamp), (1, 1_000 + 2_970 + 3_000));
    }

    fn sent(history: &mut History, seq: u16, at: Instant) {
        let mut p = packet(seq, 0);
        p.payload = Bytes::from(vec![0; 1000]);
        history.sent(p, at);
    }

    #[test]
    fn nacks_are_answered_only_for_recent_packets_of_the_current_encode() {
        let t0 = Instant::now();
        let mut h = History::new();
        for seq in 100..110 {
            sent(&mut h, seq, t0);
        }
        h.epoch = Some(105);
        let resent: Vec<u16> = h
            .resend(&[101, 106, 107, 200], t0 + Duration::from_millis(100))
            .iter()
            .map(|p| p.header.sequence_number)
            .collect();
        assert_eq!(resent, [106, 107], "not before the epoch, not unknown ones");
        assert!(h.resend(&[108], t0 + RESEND_MAX_AGE + Duration::from_millis(1)).is_empty(), "too old");
        // At most twice per packet.
        assert_eq!(h.resend(&[106], t0).len(), 1);
        assert!(h.resend(&[106], t0).is_empty());
    }

    #[test]
    fn retransmissions_stay_within_their_budget() {
        let t0 = Instant::now();
        let mut h = History::new();
        for seq in 0..200 {
            sent(&mut h, seq, t0);
        }
        h.budget = 3_500.0;
        let all: Vec<u16> = (0..200).collect();
        assert_eq!(h.resend(&all, t0).len(), 3, "1000-byte packets within 3500 bytes");
    }

    #[test]
    fn frames_are_stamped_by_presentation_time() {
        let mut p = FramePacketizer::new(VideoCodec::Vp8, 30);
        let data = Bytes::from_static(&[0x10, 0, 0, 0x9d, 0x01, 0x2a, 1, 2, 3]);
        let at = |ms| Some(Duration::from_millis(ms));
        let ts = |f: Option<PacketizedFrame>| f.unwrap().packets[0].header.timestamp;
        let t0 = ts(p.packetize(&data, at(0), true));
        let t1 = ts(p.packetize(&data, at(33), false));
        // The encoder dropped two frames: the gap shows in the timestamps.
        let t2 = ts(p.packetize(&data, at(133), false));
        assert_eq!(t1.wrapping_sub(t0), 2_970, "33 ms of 90 kHz: the PTS, not a nominal period");
        assert_eq!(t2.wrapping_sub(t1), 9_000);
    }

    #[test]
    fn large_frames_are_split_under_the_mtu() {
        let mut p = FramePacketizer::new(VideoCodec::H264, 30);
        let mut au = vec![0, 0, 0, 1, 0x65];
        au.extend(std::iter::repeat_n(0xab, 5000));
        let frame = p.packetize(&Bytes::from(au), None, true).unwrap();
        assert!(frame.packets.len() >= 5);
        assert!(frame.packets.iter().all(|pk| pk.payload.len() <= RTP_MTU - 12));
        assert!(frame.packets.last().unwrap().header.marker);
    }
}
