//! One participant as its room sees it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{ParticipantId, ParticipantInfo};
use crate::media::keyframe::KeyframePolicy;
use crate::media::video::VideoInput;
use crate::rtc::offer::OfferSummary;
use crate::rtc::peer::Peer;

/// A participant: its connection, what it negotiated, and what it feeds.
pub(super) struct Participant {
    pub id: ParticipantId,
    pub name: String,
    /// Identity of the token it joined with, when tokens are required.
    pub owner: Option<String>,
    /// What the offer asked for (publish/receive audio/video).
    pub offer: OfferSummary,
    pub peer: Arc<Peer>,
    /// Where its video RTP goes, when it publishes video.
    pub video_input: Option<VideoInput>,
    /// SSRC of its video track, once it arrived (target of our PLIs).
    pub video_ssrc: Option<u32>,
    /// Throttles the PLIs we send it.
    pub pli: KeyframePolicy,
    /// Tasks reading its tracks; aborted when it leaves.
    pub readers: Vec<JoinHandle<()>>,
}

impl Participant {
    pub fn new(
        id: ParticipantId,
        name: String,
        owner: Option<String>,
        offer: OfferSummary,
        peer: Peer,
        pli_interval: Duration,
    ) -> Self {
        Self {
            id,
            name,
            owner,
            offer,
            peer: Arc::new(peer),
            video_input: None,
            video_ssrc: None,
            pli: KeyframePolicy::new(pli_interval),
            readers: Vec::new(),
        }
    }

    pub fn publishes_audio(&self) -> bool {
        self.offer.audio.is_some_and(|d| d.publishes())
    }
    pub fn publishes_video(&self) -> bool {
        self.offer.video.is_some_and(|d| d.publishes())
    }
    pub fn receives_video(&self) -> bool {
        self.offer.video.is_some_and(|d| d.receives())
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.to_string(),
            name: self.name.clone(),
            audio: self.publishes_audio(),
            video: self.publishes_video(),
        }
    }
}
