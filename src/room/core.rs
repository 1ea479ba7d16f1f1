//! The room's decisions, apart from its I/O (str0m's model): inputs and `now` go in,
//! actions come out of [`RoomCore::poll_action`]; the room task performs them with
//! GStreamer and webrtc-rs. Decided here: who is in the layout and where, which
//! (codec, tier) encodes must run (exactly those someone receives or records), which
//! encode each receiver gets (its codec, its pinned tier or its bandwidth's), when to
//! force a keyframe of an encode and when to ask a publisher for one, who has the
//! floor (active speaker) and which layout arranges the composite.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::ParticipantId;
use crate::layout::{self, Rect};
use crate::media::codec::{VideoCodec, VideoFormat};
use crate::media::keyframe::KeyframePolicy;
use crate::media::speaker::{SpeakerDetector, VoiceLevel};
use crate::media::tier::{Feedback, Quality, Tier, TierPolicy};

/// One encode of the composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EncodeKey {
    /// Its codec.
    pub codec: VideoCodec,
    /// Its tier (index into the tier list, highest first).
    pub tier: usize,
}

/// What the room task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start this encode (its first frame is a keyframe).
    StartEncode(EncodeKey),
    /// Stop this encode: nobody receives or records it any more.
    StopEncode(EncodeKey),
    /// Force a keyframe of this encode now.
    ForceKeyframe(EncodeKey),
    /// Have this receiver's video come from this encode, from its next keyframe on.
    Route(ParticipantId, EncodeKey),
    /// Place the video publishers' pictures (on the canvas); others are hidden.
    Layout(Vec<(ParticipantId, Rect)>),
    /// Ask this publisher for a keyframe (RTCP PLI).
    Pli(ParticipantId),
    /// This receiver's tier changed (for the room's events and log).
    TierChanged(ParticipantId, usize),
    /// The active speaker changed (`None`: the speaker left).
    Speaker(Option<ParticipantId>),
}

/// How the composite is arranged (contract: `grid`, or `speaker` with an optional
/// pinned participant featured instead of the active speaker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LayoutChoice {
    /// Everyone in equal cells, in join order.
    #[default]
    Grid,
    /// One featured publisher in the main area, the others in a strip.
    Speaker {
        /// Featured whoever speaks when `None`.
        pin: Option<ParticipantId>,
    },
}

impl LayoutChoice {
    /// Its name in the API.
    pub fn name(&self) -> &'static str {
        match self {
            LayoutChoice::Grid => "grid",
            LayoutChoice::Speaker { .. } => "speaker",
        }
    }

    /// The pinned participant, if any.
    pub fn pin(&self) -> Option<&ParticipantId> {
        match self {
            LayoutChoice::Speaker { pin } => pin.as_ref(),
            LayoutChoice::Grid => None,
        }
    }
}

/// Why a layout could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// No such room.
    #[error("unknown room")]
    UnknownRoom,
    /// The pin names nobody in the room.
    #[error("unknown pin: no such participant in the room")]
    UnknownPin,
}

/// What the room core is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A participant was admitted.
    Join {
        /// Who.
        id: ParticipantId,
        /// The codec of the video it publishes, if it does.
        publishes: Option<VideoCodec>,
        /// The format it receives the composite in, what it asked for, and the
        /// bandwidth its offer allows.
        receives: Option<(VideoFormat, Quality, Option<u64>)>,
    },
    /// A participant left.
    Leave(ParticipantId),
    /// Its peer connection is up: it needs a keyframe to start.
    Connected(ParticipantId),
    /// A receiver asked for a keyframe (PLI/FIR), or its forwarder fell behind.
    ReceiverNeedsKeyframe(ParticipantId),
    /// A receiver's forwarder now delivers this encode.
    Switched(ParticipantId, EncodeKey),
    /// A publisher's decoder needs a keyframe (its track started, or loss).
    PublisherNeedsKeyframe(ParticipantId),
    /// A receiver's RTCP feedback, with what was sent to it lately (bits/s).
    Feedback(ParticipantId, Feedback, f64),
    /// Something besides receivers (a recording, a live stream) needs an encode, or
    /// no longer; counted, so several such consumers can share one encode.
    Consumer(EncodeKey, bool),
    /// Something besides receivers (a recording starting) needs a keyframe of it
    /// now: forced at once, not coalesced.
    EncodeNeedsKeyframe(EncodeKey),
    /// The publishers' voice levels over the mixer's last report interval.
    VoiceLevels(Vec<VoiceLevel<ParticipantId>>),
}

/// Why a quality could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualityError {
    /// No such participant.
    #[error("unknown participant")]
    UnknownParticipant,
    /// The participant receives no video.
    #[error("the participant receives no video")]
    NoVideo,
}

/// What a receiver gets, for the room state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiving {
    /// The codec.
    pub codec: VideoCodec,
    /// The tier (index).
    pub tier: usize,
    /// Whether the tier follows the bandwidth.
    pub auto: bool,
}

struct Receiver {
    format: VideoFormat,
    quality: Quality,
    /// The best tier its decoder takes (tiers from here down fit).
    best_fit: usize,
    policy: Option<TierPolicy>,
    /// The encode it should get.
    target: EncodeKey,
    /// The encode its forwarder delivers, once switched.
    current: Option<EncodeKey>,
}

struct Member {
    publishes: Option<VideoCodec>,
    publisher_keyframes: KeyframePolicy,
    receiver: Option<Receiver>,
}

/// A room's decisions.
pub struct RoomCore {
    tiers: Vec<Tier>,
    canvas: (u32, u32),
    keyframe_interval: Duration,
    /// In join order (also the layout order of video publishers).
    order: Vec<ParticipantId>,
    members: HashMap<ParticipantId, Member>,
    running: BTreeSet<EncodeKey>,
    encode_keyframes: BTreeMap<EncodeKey, KeyframePolicy>,
    /// How many consumers besides receivers need each encode.
    consumers: BTreeMap<EncodeKey, usize>,
    layout: LayoutChoice,
    speaker: SpeakerDetector<ParticipantId>,
    actions: VecDeque<Action>,
}

impl RoomCore {
    /// A room with these tiers (highest first) composing on a `canvas`.
    pub fn new(tiers: Vec<Tier>, canvas: (u32, u32), keyframe_interval: Duration) -> Self {
        Self {
            tiers,
            canvas,
            keyframe_interval,
            order: Vec::new(),
            members: HashMap::new(),
            running: BTreeSet::new(),
            encode_keyframes: BTreeMap::new(),
            consumers: BTreeMap::new(),
            layout: LayoutChoice::Grid,
            speaker: SpeakerDetector::default(),
            actions: VecDeque::new(),
        }
    }

    /// The active speaker.
    pub fn speaker(&self) -> Option<&ParticipantId> {
        self.speaker.current()
    }

    /// The layout.
    pub fn layout(&self) -> &LayoutChoice {
        &self.layout
    }

    /// Sets the layout (`PUT .../layout`); a pin must name a participant in the room.
    pub fn set_layout(&mut self, layout: LayoutChoice) -> Result<(), LayoutError> {
        if layout.pin().is_some_and(|pin| !self.members.contains_key(pin)) {
            return Err(LayoutError::UnknownPin);
        }
        if layout != self.layout {
            self.layout = layout;
            self.relayout();
        }
        Ok(())
    }

    /// The encodes running now.
    pub fn running(&self) -> impl Iterator<Item = EncodeKey> + '_ {
        self.running.iter().copied()
    }

    /// The tiers.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The next action to perform, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What a participant receives.
    pub fn receiving(&self, id: &ParticipantId) -> Option<Receiving> {
        let r = self.members.get(id)?.receiver.as_ref()?;
        Some(Receiving { codec: r.format.codec, tier: r.target.tier, auto: r.quality == Quality::Auto })
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Join { id, publishes, receives } => self.join(now, id, publishes, receives),
            Input::Leave(id) => {
                if self.members.remove(&id).is_some() {
                    self.order.retain(|o| *o != id);
                    if self.speaker.remove(&id) {
                        self.actions.push_back(Action::Speaker(None));
                    }
                    if self.layout.pin() == Some(&id) {
                        self.layout = LayoutChoice::Speaker { pin: None };
                    }
                    self.relayout();
                    self.reconcile();
                }
            }
            Input::VoiceLevels(levels) => {
                if let Some(speaker) = self.speaker.update(now, &levels) {
                    self.actions.push_back(Action::Speaker(Some(speaker)));
                    if self.layout == (LayoutChoice::Speaker { pin: None }) {
                        self.relayout();
                    }
                }
            }
            Input::Connected(id) | Input::ReceiverNeedsKeyframe(id) => {
                if let Some(r) = self.members.get(&id).and_then(|m| m.receiver.as_ref()) {
                    let key = r.current.unwrap_or(r.target);
                    self.keyframe(now, key);
                }
            }
            Input::Switched(id, key) => {
                if let Some(r) = self.members.get_mut(&id).and_then(|m| m.receiver.as_mut()) {
                    r.current = Some(key);
                    self.reconcile();
                }
            }
            Input::PublisherNeedsKeyframe(id) => {
                if let Some(m) = self.members.get_mut(&id)
                    && m.publishes.is_some()
                    && m.publisher_keyframes.request(now)
                {
                    self.actions.push_back(Action::Pli(id));
                }
            }
            Input::Feedback(id, feedback, sent_bps) => {
                let moved = self
                    .members
                    .get_mut(&id)
                    .and_then(|m| m.receiver.as_mut())
                    .and_then(|r| Some((r.best_fit, r.policy.as_mut()?.on_feedback(now, feedback, sent_bps)?)));
                if let Some((best_fit, tier)) = moved {
                    self.retarget(now, &id, best_fit + tier);
                }
            }
            Input::EncodeNeedsKeyframe(key) => self.keyframe_now(now, key),
            Input::Consumer(key, on) => {
                let count = self.consumers.entry(key).or_default();
                *count = if on { *count + 1 } else { count.saturating_sub(1) };
                if *count == 0 {
                    self.consumers.remove(&key);
                }
                self.reconcile();
            }
        }
    }

    /// Sets what a receiver asked for (`PATCH`).
    pub fn set_quality(&mut self, now: Instant, id: &ParticipantId, quality: Quality) -> Result<(), QualityError> {
        let member = self.members.get(id).ok_or(QualityError::UnknownParticipant)?;
        let best_fit = member.receiver.as_ref().ok_or(QualityError::NoVideo)?.best_fit;
        let bitrates = self.bitrates_from(best_fit);
        let receiver =
            self.members.get_mut(id).and_then(|m| m.receiver.as_mut()).ok_or(QualityError::UnknownParticipant)?;
        receiver.quality = quality;
        let tier = match quality {
            Quality::Pinned(tier) => {
                receiver.policy = None;
                tier.max(receiver.best_fit)
            }
            Quality::Auto => {
                // Start from where it is; the policy moves it as the link allows.
                let start = receiver.target.tier - receiver.best_fit;
                receiver.policy = Some(TierPolicy::new(bitrates, start, now));
                receiver.target.tier
            }
        };
        self.retarget(now, id, tier);
        Ok(())
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let members = self.members.values();
        let publishers = members.clone().filter_map(|m| m.publisher_keyframes.deadline());
        let policies = members.filter_map(|m| m.receiver.as_ref()?.policy.as_ref()?.next_tick());
        let encodes = self.encode_keyframes.values().filter_map(KeyframePolicy::deadline);
        publishers.chain(policies).chain(encodes).min()
    }

    /// Does what is due at `now`: deferred keyframes and PLIs, tier moves up.
    pub fn handle_timeout(&mut self, now: Instant) {
        for key in self.running.clone() {
            if self.encode_keyframes.get_mut(&key).is_some_and(|p| p.poll(now)) {
                self.actions.push_back(Action::ForceKeyframe(key));
            }
        }
        let mut moves = Vec::new();
        for id in &self.order {
            let Some(m) = self.members.get_mut(id) else { continue };
            if m.publisher_keyframes.poll(now) {
                self.actions.push_back(Action::Pli(id.clone()));
            }
            if let Some(r) = m.receiver.as_mut()
                && let Some(tier) = r.policy.as_mut().and_then(|p| p.on_tick(now))
            {
                moves.push((id.clone(), r.best_fit + tier));
            }
        }
        for (id, tier) in moves {
            self.retarget(now, &id, tier);
        }
    }

    fn join(
        &mut self,
        now: Instant,
        id: ParticipantId,
        publishes: Option<VideoCodec>,
        receives: Option<(VideoFormat, Quality, Option<u64>)>,
    ) {
        let receiver = receives.map(|(format, quality, cap_bps)| {
            // The best tier the receiver's decoder takes (the lowest if none does).
            let best_fit = (0..self.tiers.len())
                .find(|&i| {
                    let t = &self.tiers[i];
                    format.fits(t.width, t.height, t.fps)
                })
                .unwrap_or(self.tiers.len() - 1);
            let bitrates = self.bitrates_from(best_fit);
            let (tier, policy) = match quality {
                Quality::Pinned(tier) => (tier.max(best_fit), None),
                Quality::Auto => {
                    let start = TierPolicy::start_tier(&bitrates, cap_bps);
                    (best_fit + start, Some(TierPolicy::new(bitrates, start, now)))
                }
            };
            Receiver {
                target: EncodeKey { codec: format.codec, tier },
                format,
                quality,
                best_fit,
                policy,
                current: None,
            }
        });
        let target = receiver.as_ref().map(|r| r.target);
        let member = Member { publishes, publisher_keyframes: KeyframePolicy::new(self.keyframe_interval), receiver };
        self.members.insert(id.clone(), member);
        self.order.push(id.clone());
        if publishes.is_some() {
            self.relayout();
        }
        self.reconcile();
        if let Some(key) = target {
            self.actions.push_back(Action::Route(id.clone(), key));
            self.keyframe(now, key);
        }
    }

    fn bitrates_from(&self, best_fit: usize) -> Vec<u32> {
        self.tiers[best_fit..].iter().map(|t| t.bitrate_bps).collect()
    }

    /// Moves a receiver to `tier` of its codec: the encode is started if needed, the
    /// forwarder switches at its next keyframe (forced now).
    fn retarget(&mut self, now: Instant, id: &ParticipantId, tier: usize) {
        let Some(r) = self.members.get_mut(id).and_then(|m| m.receiver.as_mut()) else { return };
        let key = EncodeKey { codec: r.format.codec, tier: tier.min(self.tiers.len() - 1) };
        if key == r.target {
            return;
        }
        r.target = key;
        self.reconcile();
        self.actions.push_back(Action::Route(id.clone(), key));
        self.actions.push_back(Action::TierChanged(id.clone(), key.tier));
        self.keyframe(now, key);
    }

    /// Forces a keyframe of `key` now, or once its coalescing window ends.
    fn keyframe(&mut self, now: Instant, key: EncodeKey) {
        if !self.running.contains(&key) {
            return;
        }
        let interval = self.keyframe_interval;
        if self.encode_keyframes.entry(key).or_insert_with(|| KeyframePolicy::new(interval)).request(now) {
            self.actions.push_back(Action::ForceKeyframe(key));
        }
    }

    /// Forces a keyframe of `key` at once, inside a coalescing window too: a
    /// recording starts at a keyframe, and waiting out a window that receivers'
    /// requests opened would cut up to `keyframe_min_interval_ms` off its start.
    fn keyframe_now(&mut self, now: Instant, key: EncodeKey) {
        if !self.running.contains(&key) {
            return;
        }
        let interval = self.keyframe_interval;
        self.encode_keyframes.entry(key).or_insert_with(|| KeyframePolicy::new(interval)).force(now);
        self.actions.push_back(Action::ForceKeyframe(key));
    }

    /// Starts the encodes someone needs and stops the others.
    fn reconcile(&mut self) {
        let mut needed: BTreeSet<EncodeKey> = self.consumers.keys().copied().collect();
        for r in self.members.values().filter_map(|m| m.receiver.as_ref()) {
            needed.insert(r.target);
            needed.extend(r.current);
        }
        for key in self.running.difference(&needed).copied().collect::<Vec<_>>() {
            self.running.remove(&key);
            self.encode_keyframes.remove(&key);
            self.actions.push_back(Action::StopEncode(key));
        }
        for key in needed.difference(&self.running).copied().collect::<Vec<_>>() {
            self.running.insert(key);
            self.actions.push_back(Action::StartEncode(key));
        }
    }

    fn relayout(&mut self) {
        let publishers: Vec<ParticipantId> = self
            .order
            .iter()
            .filter(|id| self.members.get(*id).is_some_and(|m| m.publishes.is_some()))
            .cloned()
            .collect();
        let (w, h) = self.canvas;
        let cells = match &self.layout {
            LayoutChoice::Grid => layout::grid_cells(w, h, publishers.len()),
            LayoutChoice::Speaker { pin } => {
                // The pinned one, else the active speaker, else the first to join.
                let featured = pin.as_ref().or(self.speaker.current());
                let index = featured.and_then(|f| publishers.iter().position(|p| p == f)).unwrap_or(0);
                layout::speaker_cells(w, h, publishers.len(), index)
            }
        };
        self.actions.push_back(Action::Layout(publishers.into_iter().zip(cells).collect()));
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
