//! The room task: the shell around the room core. It owns the room's participants
//! (their connections) and media, turns commands and events into core inputs, and
//! performs the core's actions with GStreamer and webrtc-rs. It never awaits a
//! negotiation: joins are negotiated outside (see `join.rs`) and handed in ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

mod actions;
mod moderation;
mod recording;

use super::budget::EncodeLoad;
use super::core::{EncodeKey, Input, LayoutChoice, LayoutError, QualityError, RoomCore};
use super::join::Reservation;
use super::media::{RoomMedia, audio_track, finalize, recording_state, track_output};
use super::notice::{Notices, Subscription};
use super::participant::Participant;
use super::readers::{read_audio, read_video};
use super::registry::{RoomSlot, Rooms, ServerContext};
use super::{
    JoinError, LeaveError, ParticipantId, ParticipantInfo, ReceiveInfo, RecordingError, RecordingStarted,
    RecordingStopped, RoomState, UpdateError,
};
use crate::media::audio::AudioCommand;
use crate::media::codec::VideoCodec;
use crate::media::recorder::Container;
use crate::media::speaker::VoiceLevel;
use crate::media::tier::Quality;
use crate::rtc::codecs::video_capability;
use crate::rtc::forward::{ForwardEvent, Forwarder};
use crate::rtc::offer::OfferSummary;
use crate::rtc::peer::{self, OutgoingTracks, Peer, PeerEvent};

/// Requests to a room.
pub(super) enum RoomCommand {
    /// Reserve a place for a join and hand out the tracks to negotiate with.
    Reserve {
        summary: OfferSummary,
        reply: oneshot::Sender<Result<Reservation, JoinError>>,
    },
    /// Admit a negotiated peer into its reserved place.
    Admit {
        admission: Admission,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Leave {
        id: ParticipantId,
        by: Option<String>,
        reply: oneshot::Sender<Result<(), LeaveError>>,
    },
    /// Change the quality a participant receives (`by` as for `Leave`).
    SetQuality {
        id: ParticipantId,
        by: Option<String>,
        quality: Quality,
        reply: oneshot::Sender<Result<ParticipantInfo, UpdateError>>,
    },
    /// Change the layout; replies with the room's state.
    SetLayout {
        layout: LayoutChoice,
        reply: oneshot::Sender<Result<RoomState, LayoutError>>,
    },
    /// Subscribe to the room's events; `None` while it has no participant.
    Subscribe {
        reply: oneshot::Sender<Option<Subscription>>,
    },
    /// A moderator mutes or unmutes a participant's audio and/or video.
    Mute {
        id: ParticipantId,
        audio: Option<bool>,
        video: Option<bool>,
        reply: oneshot::Sender<Result<ParticipantInfo, UpdateError>>,
    },
    /// The room's state; `None` while it has no participant.
    State {
        reply: oneshot::Sender<Option<RoomState>>,
    },
    StartRecording {
        container: Container,
        reply: oneshot::Sender<Result<RecordingStarted, RecordingError>>,
    },
    StopRecording {
        reply: oneshot::Sender<Result<RecordingStopped, RecordingError>>,
    },
    /// Server shutdown: close every peer and stop.
    Close,
}

/// A negotiated join, ready to become a participant.
pub(super) struct Admission {
    pub id: ParticipantId,
    pub peer: Peer,
    pub summary: OfferSummary,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub quality: Quality,
}

/// Things that happen to the room, from callbacks, media threads and joins.
pub(super) enum RoomEvent {
    Peer(ParticipantId, PeerEvent),
    /// A receiver's forwarder switched encode or fell behind.
    Forward(ParticipantId, ForwardEvent),
    /// A publisher's decoder needs a keyframe (loss, or start).
    PublisherNeedsKeyframe(ParticipantId),
    /// A join ended (admitted or not); its reservation, if still held, is freed.
    JoinEnded(Option<ParticipantId>),
    /// The mixer's voice levels (every 200 ms).
    VoiceLevels(Vec<VoiceLevel<ParticipantId>>),
}

/// A place held for a join being negotiated.
struct Reserved {
    /// The publisher's own mix-minus track, when it publishes and receives audio.
    personal_audio: Option<Arc<TrackLocalStaticSample>>,
    /// Its video forwarder (writing into the video track it is negotiated with),
    /// when it receives video.
    forwarder: Option<Forwarder>,
}

pub(super) struct RoomTask {
    slot: RoomSlot,
    rooms: Arc<Rooms>,
    ctx: Arc<ServerContext>,
    core: RoomCore,
    /// In join order.
    participants: Vec<Participant>,
    /// Places held for joins being negotiated (they count against the room's limit).
    reserved: HashMap<ParticipantId, Reserved>,
    events: mpsc::UnboundedSender<RoomEvent>,
    /// The full mix for receivers who do not publish audio (exists before any media,
    /// so joins can be negotiated with it).
    shared_audio: Arc<TrackLocalStaticSample>,
    /// The pipelines, built with the first admitted participant.
    media: Option<RoomMedia>,
    /// The event stream's subscribers.
    notices: Notices,
    /// Whether `recording.auto` already started (or tried to start) this room's
    /// recording: a recording stopped by hand stays stopped.
    auto_recording_tried: bool,
}

/// A forwarder's tag for an encode (the forwarder reports which one it switched to).
fn tag(key: EncodeKey) -> u64 {
    (VideoCodec::ALL.iter().position(|c| *c == key.codec).unwrap_or(0) as u64) << 32 | key.tier as u64
}

fn untag(tag: u64) -> EncodeKey {
    EncodeKey {
        codec: VideoCodec::ALL[((tag >> 32) as usize).min(VideoCodec::ALL.len() - 1)],
        tier: tag as u32 as usize,
    }
}

impl RoomTask {
    pub fn spawn(
        slot: RoomSlot,
        rooms: Arc<Rooms>,
        commands: mpsc::Receiver<RoomCommand>,
        events: mpsc::UnboundedSender<RoomEvent>,
        events_rx: mpsc::UnboundedReceiver<RoomEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let ctx = Arc::clone(rooms.context());
        let media = &ctx.config.media;
        let (width, height, _) = media.canvas();
        let keyframe_interval = Duration::from_millis(media.keyframe_min_interval_ms);
        let task = RoomTask {
            slot,
            rooms,
            core: RoomCore::new(media.tiers(), (width, height), keyframe_interval),
            ctx,
            participants: Vec::new(),
            reserved: HashMap::new(),
            events,
            shared_audio: audio_track(),
            media: None,
            notices: Notices::new(),
            auto_recording_tried: false,
        };
        tokio::spawn(task.run(commands, events_rx))
    }

    async fn run(mut self, mut commands: mpsc::Receiver<RoomCommand>, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        loop {
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(RoomCommand::Close) | None => break,
                    Some(cmd) => self.handle_command(cmd),
                },
                Some(event) = events.recv() => self.handle_event(event),
                _ = sleep_until(deadline) => self.core.handle_timeout(std::time::Instant::now()),
            }
            self.perform_actions();
            self.publish_summary();
            if self.participants.is_empty()
                && self.reserved.is_empty()
                && self.rooms.close_if_idle(&self.slot.name, self.slot.generation)
            {
                break;
            }
        }
        // Closing: the registry no longer routes to this room. Answer what is queued.
        commands.close();
        while let Some(cmd) = commands.recv().await {
            refuse(cmd);
        }
        if let Some(active) = self.media.as_mut().and_then(RoomMedia::detach_recording) {
            // The recording is finalized before anything else goes: it is the one
            // thing that outlives the room.
            let stopped = finalize(active).await;
            tracing::info!(room = %self.slot.name, file = stopped.file, duration_ms = stopped.duration_ms, "recording finalized");
        }
        while !self.participants.is_empty() {
            self.remove_participant(0, "room closing");
        }
        if let Some(m) = self.media.take() {
            // Pipeline and mixer teardown block on GStreamer state changes.
            let _ = tokio::task::spawn_blocking(move || drop(m)).await;
        }
        self.publish_summary();
        self.notices.send("closed", || serde_json::json!({}));
        tracing::info!(room = %self.slot.name, "room closed");
    }

    /// Updates the room's snapshot in place (it runs after every event, RTCP
    /// reports included: no allocation).
    fn publish_summary(&self) {
        let mut summary = self.slot.summary.lock().unwrap_or_else(|p| p.into_inner());
        let summary = &mut *summary;
        summary.participants = self.participants.len();
        summary.recording = self.media.as_ref().is_some_and(|m| m.recording.is_some());
        let load = &mut summary.load;
        load.video = self.media.as_ref().is_some_and(|m| m.video.is_some());
        load.participants = self.participants.len();
        load.video_publishers = self.participants.iter().filter(|p| p.video_input.is_some()).count();
        let tiers = self.core.tiers();
        load.encodes.clear();
        load.encodes
            .extend(self.core.running().filter_map(|key| Some(EncodeLoad::of(key.codec, tiers.get(key.tier)?))));
    }

    fn handle_command(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Reserve { summary, reply } => {
                let _ = reply.send(self.reserve(&summary));
            }
            RoomCommand::Admit { admission, reply } => {
                let id = admission.id.clone();
                let result = self.admit(admission);
                match &result {
                    Ok(()) => {
                        if let Some(p) = self.participants.last() {
                            self.notices.send("joined", || serde_json::json!({ "participant": self.info(p) }));
                        }
                        self.maybe_start_auto_recording()
                    }
                    Err(e) => tracing::info!(room = %self.slot.name, participant = %id, error = %e, "join refused"),
                }
                let _ = reply.send(result);
            }
            RoomCommand::Leave { id, by, reply } => {
                let result = match self.participants.iter().position(|p| p.id == id) {
                    Some(index) if by.is_some() && self.participants[index].owner != by => Err(LeaveError::NotYours),
                    Some(index) => {
                        self.remove_participant(index, "left");
                        Ok(())
                    }
                    None => Err(LeaveError::UnknownParticipant),
                };
                let _ = reply.send(result);
            }
            RoomCommand::SetQuality { id, by, quality, reply } => {
                let _ = reply.send(self.set_quality(&id, by, quality));
            }
            RoomCommand::State { reply } => {
                let _ = reply.send((!self.participants.is_empty()).then(|| self.state()));
            }
            RoomCommand::Mute { id, audio, video, reply } => {
                let _ = reply.send(self.mute(&id, audio, video));
            }
            RoomCommand::Subscribe { reply } => {
                let subscription = (!self.participants.is_empty())
                    .then(|| Subscription { state: self.state(), notices: self.notices.subscribe() });
                let _ = reply.send(subscription);
            }
            RoomCommand::SetLayout { layout, reply } => {
                let result = self.core.set_layout(layout).map(|()| self.state());
                if result.is_ok() {
                    let layout = self.core.layout();
                    tracing::info!(room = %self.slot.name, layout = layout.name(), pin = ?layout.pin(), "layout set");
                    self.notify_layout();
                }
                let _ = reply.send(result);
            }
            RoomCommand::StartRecording { container, reply } => {
                let _ = reply.send(self.start_recording(container));
            }
            RoomCommand::StopRecording { reply } => match self.media.as_mut().and_then(RoomMedia::detach_recording) {
                // Finalizing takes a moment; the room goes on meanwhile.
                Some(active) => {
                    self.notices.send("recording", || serde_json::json!({ "recording": null }));
                    if let Some(key) = active.encode {
                        self.core.handle(std::time::Instant::now(), Input::Consumer(key, false));
                    }
                    tokio::spawn(async move {
                        let _ = reply.send(Ok(finalize(active).await));
                    });
                }
                None => {
                    let _ = reply.send(Err(RecordingError::NotRecording));
                }
            },
            RoomCommand::Close => {}
        }
    }

    fn state(&self) -> RoomState {
        let layout = self.core.layout();
        RoomState {
            room: self.slot.name.to_string(),
            layout: layout.name(),
            pin: layout.pin().map(ToString::to_string),
            speaker: self.core.speaker().map(ToString::to_string),
            recording: self.media.as_ref().and_then(|m| m.recording.as_ref()).map(recording_state),
            participants: self.participants.iter().map(|p| self.info(p)).collect(),
        }
    }

    fn notify_layout(&self) {
        let layout = self.core.layout();
        self.notices.send(
            "layout",
            || serde_json::json!({ "layout": layout.name(), "pin": layout.pin().map(ParticipantId::as_str) }),
        );
    }

    fn info(&self, p: &Participant) -> ParticipantInfo {
        let receive = self.core.receiving(&p.id).map(|r| ReceiveInfo {
            codec: r.codec,
            quality: self.core.tiers().get(r.tier).map(|t| t.name.clone()).unwrap_or_default(),
            auto: r.auto,
        });
        ParticipantInfo {
            id: p.id.to_string(),
            name: p.name.clone(),
            audio: p.publishes_audio(),
            video: p.offer.published_video().is_some(),
            video_codec: p.offer.published_video(),
            receive,
            muted: p.muted,
        }
    }

    fn set_quality(
        &mut self,
        id: &ParticipantId,
        by: Option<String>,
        quality: Quality,
    ) -> Result<ParticipantInfo, UpdateError> {
        let p = self.participants.iter().find(|p| &p.id == id).ok_or(UpdateError::UnknownParticipant)?;
        if by.is_some() && p.owner != by {
            return Err(UpdateError::NotYours);
        }
        self.core.set_quality(std::time::Instant::now(), id, quality).map_err(|e| match e {
            QualityError::UnknownParticipant => UpdateError::UnknownParticipant,
            QualityError::NoVideo => UpdateError::NoVideo,
        })?;
        self.perform_actions();
        let p = self.participants.iter().find(|p| &p.id == id).ok_or(UpdateError::UnknownParticipant)?;
        Ok(self.info(p))
    }

    /// Holds a place for a join and picks the tracks it will receive.
    fn reserve(&mut self, summary: &OfferSummary) -> Result<Reservation, JoinError> {
        let max = self.ctx.config.server.max_participants_per_room;
        if self.participants.len() + self.reserved.len() >= max {
            return Err(JoinError::RoomFull(max));
        }
        let id = ParticipantId::new();
        // Publishers hear a mix-minus of their own; everyone else shares one encode.
        let personal_audio = summary.audio.is_some_and(|d| d.publishes() && d.receives()).then(audio_track);
        let mut forwarder = None;
        let video = summary.received_video().map(|format| {
            let capability = video_capability(format.codec, &format.fmtp);
            let track = Arc::new(TrackLocalStaticRTP::new(capability, "mix-video".into(), "mcu-mix".into()));
            let events = self.events.clone();
            let pid = id.clone();
            let on_event = Arc::new(move |event| {
                let _ = events.send(RoomEvent::Forward(pid.clone(), event));
            });
            let started = Forwarder::start(Arc::clone(&track), on_event);
            let nacks = started.nack_sink();
            forwarder = Some(started);
            (track, nacks)
        });
        let tracks =
            OutgoingTracks { audio: personal_audio.clone().unwrap_or_else(|| Arc::clone(&self.shared_audio)), video };
        self.reserved.insert(id.clone(), Reserved { personal_audio, forwarder });
        Ok(Reservation { id, tracks, events: self.events.clone() })
    }

    /// Turns a negotiated peer into a participant: media inputs and outputs wired,
    /// the core told. On failure the peer is closed and the place freed.
    fn admit(&mut self, admission: Admission) -> Result<(), JoinError> {
        let Some(reserved) = self.reserved.remove(&admission.id) else {
            close_peer(admission.peer);
            return Err(JoinError::Internal("the join's reservation was lost".into()));
        };
        let Admission { id, peer, summary, name, owner, quality } = admission;
        let name = name.unwrap_or_else(|| format!("guest-{}", &id.as_str()[..6]));
        let mut participant = Participant::new(id.clone(), name, owner, summary, peer);
        if let Err(e) = self.wire_media(&mut participant, reserved) {
            let peer = Arc::clone(&participant.peer);
            tokio::spawn(async move { peer.close().await });
            return Err(e);
        }
        let offer = &participant.offer;
        let receives =
            offer.received_video().map(|f| (f.clone(), quality, offer.video.as_ref().and_then(|v| v.max_bitrate_bps)));
        let input = Input::Join { id: id.clone(), publishes: offer.published_video(), receives };
        tracing::info!(room = %self.slot.name, participant = %id, name = participant.name, offer = ?participant.offer, "joined");
        self.participants.push(participant);
        self.core.handle(std::time::Instant::now(), input);
        Ok(())
    }

    fn wire_media(&mut self, participant: &mut Participant, reserved: Reserved) -> Result<(), JoinError> {
        let config = &self.ctx.config.media;
        let room = self.slot.name.as_str();
        if self.media.is_none() {
            let events = self.events.clone();
            let levels = Box::new(move |report: Vec<(Arc<str>, Option<f64>)>| {
                let levels = report
                    .into_iter()
                    .map(|(id, speaking_dbfs)| VoiceLevel { id: ParticipantId::from_shared(id), speaking_dbfs })
                    .collect();
                let _ = events.send(RoomEvent::VoiceLevels(levels));
            });
            self.media = Some(RoomMedia::start(room, config, levels)?);
        }
        let media = self.media.as_mut().ok_or_else(|| JoinError::Internal("room media missing".into()))?;
        if participant.offer.video.is_some() {
            media.ensure_video(room, config).map_err(|e| JoinError::Media(e.to_string()))?;
        }
        if let Some(codec) = participant.offer.published_video() {
            let events = self.events.clone();
            let pid = participant.id.clone();
            let needs_keyframe = Arc::new(move || {
                let _ = events.send(RoomEvent::PublisherNeedsKeyframe(pid.clone()));
            });
            let video = media.ensure_video(room, config).map_err(|e| JoinError::Media(e.to_string()))?;
            let key = participant.id.as_str().to_owned();
            let input = tokio::task::block_in_place(|| video.add_input(&key, codec, needs_keyframe))
                .map_err(|e| JoinError::Media(e.to_string()))?;
            participant.video_input = Some(input);
        }
        participant.forwarder = reserved.forwarder;
        if participant.publishes_audio() {
            media.audio.send(AudioCommand::AddSource(participant.id.shared()));
        }
        if let Some(track) = reserved.personal_audio {
            media.audio.send(AudioCommand::AddListener(participant.id.shared(), track_output(track)));
        } else if participant.receives_audio() {
            media.ensure_shared_audio(&self.shared_audio);
        }
        Ok(())
    }

    fn remove_participant(&mut self, index: usize, reason: &str) {
        self.notices.send("left", || serde_json::json!({ "participant": self.info(&self.participants[index]) }));
        let layout_before = self.core.layout().clone();
        let p = self.participants.remove(index);
        tracing::info!(room = %self.slot.name, participant = %p.id, reason, "participant removed");
        for reader in &p.readers {
            reader.abort();
        }
        if let Some(media) = self.media.as_mut() {
            if p.video_input.is_some()
                && let Some(video) = media.video.as_mut()
                && let Err(e) = tokio::task::block_in_place(|| video.remove_input(p.id.as_str()))
            {
                tracing::error!(room = %self.slot.name, error = %e, "cannot remove video input");
            }
            media.audio.send(AudioCommand::RemoveSource(p.id.shared()));
            media.audio.send(AudioCommand::RemoveListener(p.id.shared()));
        }
        self.core.handle(std::time::Instant::now(), Input::Leave(p.id.clone()));
        if *self.core.layout() != layout_before {
            self.notify_layout();
        }
        self.perform_actions();
        let peer = Arc::clone(&p.peer);
        tokio::spawn(async move { peer.close().await });
    }

    fn handle_event(&mut self, event: RoomEvent) {
        let now = std::time::Instant::now();
        match event {
            RoomEvent::Peer(id, PeerEvent::Track(track)) => self.start_reader(&id, track),
            RoomEvent::Peer(id, PeerEvent::State(state)) => {
                let Some(index) = self.participants.iter().position(|p| p.id == id) else { return };
                tracing::debug!(room = %self.slot.name, participant = %id, %state, "peer state");
                match state {
                    RTCPeerConnectionState::Connected => self.core.handle(now, Input::Connected(id)),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.remove_participant(index, "connection lost");
                    }
                    _ => {}
                }
            }
            RoomEvent::Peer(id, PeerEvent::KeyframeRequest) => self.core.handle(now, Input::ReceiverNeedsKeyframe(id)),
            RoomEvent::Peer(id, PeerEvent::Feedback(feedback)) => {
                let Some(p) = self.participants.iter_mut().find(|p| p.id == id) else { return };
                let sent = p.video_send_rate(now);
                tracing::debug!(room = %self.slot.name, participant = %id, ?feedback, sent_bps = sent as u64, "feedback");
                self.core.handle(now, Input::Feedback(id, feedback, sent));
            }
            RoomEvent::Forward(id, ForwardEvent::Switched(tag)) => {
                tracing::debug!(room = %self.slot.name, participant = %id, encode = ?untag(tag), "receiver switched");
                self.core.handle(now, Input::Switched(id, untag(tag)))
            }
            RoomEvent::Forward(id, ForwardEvent::NeedsKeyframe(_)) => {
                self.core.handle(now, Input::ReceiverNeedsKeyframe(id))
            }
            RoomEvent::PublisherNeedsKeyframe(id) => self.core.handle(now, Input::PublisherNeedsKeyframe(id)),
            RoomEvent::JoinEnded(Some(id)) => {
                self.reserved.remove(&id);
            }
            RoomEvent::JoinEnded(None) => {}
            RoomEvent::VoiceLevels(levels) => self.core.handle(now, Input::VoiceLevels(levels)),
        }
    }

    fn start_reader(&mut self, id: &ParticipantId, track: Arc<webrtc::track::track_remote::TrackRemote>) {
        use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
        let audio = self.media.as_ref().and_then(|m| m.audio.sender());
        let Some(p) = self.participants.iter_mut().find(|p| &p.id == id) else { return };
        let reader = match track.kind() {
            RTPCodecType::Video => {
                let Some(input) = p.video_input.clone() else { return };
                p.video_ssrc = Some(track.ssrc());
                tokio::spawn(read_video(track, input))
            }
            RTPCodecType::Audio => {
                if !p.publishes_audio() {
                    return;
                }
                let Some(mixer) = audio else { return };
                tokio::spawn(read_audio(track, id.shared(), mixer))
            }
            _ => return,
        };
        p.readers.push(reader);
        if p.video_ssrc.is_some() {
            self.core.handle(std::time::Instant::now(), Input::PublisherNeedsKeyframe(id.clone()));
        }
    }
}

/// Answers a command that arrived while the room closes.
fn refuse(cmd: RoomCommand) {
    match cmd {
        RoomCommand::Reserve { reply, .. } => {
            let _ = reply.send(Err(JoinError::ShuttingDown));
        }
        RoomCommand::Admit { admission, reply } => {
            close_peer(admission.peer);
            let _ = reply.send(Err(JoinError::ShuttingDown));
        }
        RoomCommand::Leave { reply, .. } => {
            let _ = reply.send(Err(LeaveError::UnknownParticipant));
        }
        RoomCommand::SetQuality { reply, .. } => {
            let _ = reply.send(Err(UpdateError::UnknownParticipant));
        }
        RoomCommand::State { reply } => {
            let _ = reply.send(None);
        }
        RoomCommand::Subscribe { reply } => {
            let _ = reply.send(None);
        }
        RoomCommand::Mute { reply, .. } => {
            let _ = reply.send(Err(UpdateError::UnknownParticipant));
        }
        RoomCommand::SetLayout { reply, .. } => {
            let _ = reply.send(Err(LayoutError::UnknownRoom));
        }
        RoomCommand::StartRecording { reply, .. } => {
            let _ = reply.send(Err(RecordingError::UnknownRoom));
        }
        RoomCommand::StopRecording { reply } => {
            let _ = reply.send(Err(RecordingError::NotRecording));
        }
        RoomCommand::Close => {}
    }
}

/// Closes a peer that never became a participant.
fn close_peer(peer: Peer) {
    tokio::spawn(async move { peer.close().await });
}

fn send_pli(p: &Participant) {
    if let Some(ssrc) = p.video_ssrc {
        let peer = Arc::clone(&p.peer);
        tokio::spawn(async move { peer::request_keyframe(&peer.connection, ssrc).await });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
