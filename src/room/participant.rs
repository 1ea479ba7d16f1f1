//! One participant as its room task sees it: its connection and the I/O attached to
//! it. Decisions about it live in the room core.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::ParticipantId;
use crate::media::video::VideoInput;
use crate::rtc::forward::Forwarder;
use crate::rtc::offer::OfferSummary;
use crate::rtc::peer::Peer;

/// A participant: its connection, what it negotiated, and what it feeds.
pub(super) struct Participant {
    pub id: ParticipantId,
    pub name: String,
    /// Identity of the token it joined with, when tokens are required.
    pub owner: Option<String>,
    /// What the offer asked for (publish/receive audio/video, the video format).
    pub offer: OfferSummary,
    pub peer: Arc<Peer>,
    /// Where its video RTP goes, when it publishes video.
    pub video_input: Option<VideoInput>,
    /// SSRC of its video track, once it arrived (target of our PLIs).
    pub video_ssrc: Option<u32>,
    /// SSRC of its audio track, once it arrived.
    pub audio_ssrc: Option<u32>,
    /// Writes the encode it receives into its video track, when it receives video.
    pub forwarder: Option<Forwarder>,
    /// Video bytes sent to it and when, at the last rate measurement, and that rate.
    pub sent: (u64, Instant, f64),
    /// Tasks reading its tracks; aborted when it leaves.
    pub readers: Vec<JoinHandle<()>>,
    /// What a moderator muted.
    pub muted: super::Muted,
    /// A WHEP viewer: watches, is no participant of the grid or the state's list.
    pub viewer: bool,
}

impl Participant {
    pub fn new(id: ParticipantId, name: String, owner: Option<String>, offer: OfferSummary, peer: Peer) -> Self {
        Self {
            id,
            name,
            owner,
            offer,
            peer: Arc::new(peer),
            video_input: None,
            video_ssrc: None,
            audio_ssrc: None,
            forwarder: None,
            sent: (0, Instant::now(), 0.0),
            readers: Vec::new(),
            muted: super::Muted::default(),
            viewer: false,
        }
    }

    pub fn publishes_audio(&self) -> bool {
        self.offer.audio.is_some_and(|d| d.publishes())
    }

    pub fn receives_audio(&self) -> bool {
        self.offer.audio.is_some_and(|d| d.receives())
    }

    /// The video bits/s sent to it lately (over the time since the previous
    /// measurement, at least half a second).
    pub fn video_send_rate(&mut self, now: Instant) -> f64 {
        let Some(forwarder) = &self.forwarder else { return 0.0 };
        let bytes = forwarder.stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
        let (last_bytes, last_at, rate) = self.sent;
        let secs = now.duration_since(last_at).as_secs_f64();
        if secs < 0.5 {
            return rate;
        }
        let rate = bytes.saturating_sub(last_bytes) as f64 * 8.0 / secs;
        self.sent = (bytes, now, rate);
        rate
    }
}
