//! The room task: the one owner of a room's participants, mixers and layout. It reacts
//! to commands (reserve, admit, leave, state) and to events from peers and pipelines,
//! in order, one at a time, and never awaits a negotiation: joins are negotiated
//! outside (see `join.rs`) and handed in ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, MarshalSize};

use super::join::Reservation;
use super::media::{RoomMedia, RoomTracks, finalize, recording_state, track_output};
use super::participant::Participant;
use super::registry::{RoomSlot, Rooms, ServerContext};
use super::{
    JoinError, LeaveError, ParticipantId, RecordingError, RecordingStarted, RecordingStopped, RoomState, RoomSummary,
};
use crate::media::audio::AudioCommand;
use crate::media::keyframe::KeyframePolicy;
use crate::media::video::VideoInput;
use crate::metrics::{self, GaugeGuard};
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
    /// The room's state; `None` while it has no participant.
    State {
        reply: oneshot::Sender<Option<RoomState>>,
    },
    StartRecording {
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
}

/// Things that happen to the room, from callbacks, media threads and joins.
pub(super) enum RoomEvent {
    Peer(ParticipantId, PeerEvent),
    /// A publisher's decoder needs a keyframe (loss, or start).
    PublisherNeedsKeyframe(ParticipantId),
    /// A join ended (admitted or not); its reservation, if still held, is freed.
    JoinEnded(Option<ParticipantId>),
}

/// A place held for a join being negotiated.
struct Reserved {
    /// The publisher's own mix-minus track, when it publishes and receives audio.
    personal_audio: Option<Arc<TrackLocalStaticSample>>,
}

pub(super) struct RoomTask {
    slot: RoomSlot,
    rooms: Arc<Rooms>,
    ctx: Arc<ServerContext>,
    /// In join order: this is also the grid order of video publishers.
    participants: Vec<Participant>,
    /// Places held for joins being negotiated (they count against the room's limit).
    reserved: HashMap<ParticipantId, Reserved>,
    events: mpsc::UnboundedSender<RoomEvent>,
    tracks: RoomTracks,
    /// The pipelines, built with the first admitted participant.
    media: Option<RoomMedia>,
    composite_keyframes: KeyframePolicy,
    /// Whether `recording.auto` already started (or tried to start) this room's
    /// recording: a recording stopped by hand stays stopped.
    auto_recording_tried: bool,
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
        let keyframe_interval = Duration::from_millis(ctx.config.media.keyframe_min_interval_ms);
        let task = RoomTask {
            slot,
            rooms,
            ctx,
            participants: Vec::new(),
            reserved: HashMap::new(),
            events,
            tracks: RoomTracks::new(),
            media: None,
            composite_keyframes: KeyframePolicy::new(keyframe_interval),
            auto_recording_tried: false,
        };
        tokio::spawn(task.run(commands, events_rx))
    }

    async fn run(mut self, mut commands: mpsc::Receiver<RoomCommand>, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(RoomCommand::Close) | None => break,
                    Some(cmd) => self.handle_command(cmd),
                },
                Some(event) = events.recv() => self.handle_event(event),
                _ = sleep_until(deadline) => self.poll_keyframes(),
            }
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
            self.refuse(cmd);
        }
        if let Some(mut m) = self.media.take() {
            // The recording is finalized before anything else goes: it is the one
            // thing that outlives the room.
            if let Some(active) = m.detach_recording() {
                let stopped = finalize(active).await;
                tracing::info!(room = %self.slot.name, file = stopped.file, duration_ms = stopped.duration_ms, "recording finalized");
            }
            self.media = Some(m);
        }
        while !self.participants.is_empty() {
            self.remove_participant(0, "room closing");
        }
        if let Some(m) = self.media.take() {
            // Pipeline and mixer teardown block on GStreamer state changes.
            let _ = tokio::task::spawn_blocking(move || drop(m)).await;
        }
        self.publish_summary();
        tracing::info!(room = %self.slot.name, "room closed");
    }

    /// Answers a command that arrived while the room closes.
    fn refuse(&self, cmd: RoomCommand) {
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
            RoomCommand::State { reply } => {
                let _ = reply.send(None);
            }
            RoomCommand::StartRecording { reply } => {
                let _ = reply.send(Err(RecordingError::UnknownRoom));
            }
            RoomCommand::StopRecording { reply } => {
                let _ = reply.send(Err(RecordingError::NotRecording));
            }
            RoomCommand::Close => {}
        }
    }

    fn publish_summary(&self) {
        let mut summary = self.slot.summary.lock().unwrap_or_else(|p| p.into_inner());
        *summary = RoomSummary {
            room: self.slot.name.to_string(),
            participants: self.participants.len(),
            recording: self.media.as_ref().is_some_and(|m| m.recording.is_some()),
        };
    }

    fn handle_command(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Reserve { summary, reply } => {
                let _ = reply.send(self.reserve(summary));
            }
            RoomCommand::Admit { admission, reply } => {
                let id = admission.id.clone();
                let result = self.admit(admission);
                match &result {
                    Ok(()) => self.maybe_start_auto_recording(),
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
            RoomCommand::State { reply } => {
                let state = (!self.participants.is_empty()).then(|| RoomState {
                    room: self.slot.name.to_string(),
                    layout: "grid",
                    recording: self.media.as_ref().and_then(|m| m.recording.as_ref()).map(recording_state),
                    participants: self.participants.iter().map(Participant::info).collect(),
                });
                let _ = reply.send(state);
            }
            RoomCommand::StartRecording { reply } => {
                let result = match self.media.as_mut() {
                    Some(m) => m.start_recording(self.slot.name.as_str(), &self.ctx.config.media, &self.ctx.recordings),
                    None => Err(RecordingError::UnknownRoom),
                };
                let _ = reply.send(result);
            }
            RoomCommand::StopRecording { reply } => match self.media.as_mut().and_then(RoomMedia::detach_recording) {
                // Finalizing takes a moment; the room goes on meanwhile.
                Some(active) => {
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

    /// Holds a place for a join and picks the tracks it will receive.
    fn reserve(&mut self, summary: OfferSummary) -> Result<Reservation, JoinError> {
        let max = self.ctx.config.server.max_participants_per_room;
        if self.participants.len() + self.reserved.len() >= max {
            return Err(JoinError::RoomFull(max));
        }
        let id = ParticipantId::new();
        let publishes_audio = summary.audio.is_some_and(|d| d.publishes());
        let receives_audio = summary.audio.is_some_and(|d| d.receives());
        // Publishers hear a mix-minus of their own; everyone else shares one encode.
        let personal_audio = (publishes_audio && receives_audio).then(RoomTracks::personal_audio);
        let tracks = OutgoingTracks {
            audio: personal_audio.clone().unwrap_or_else(|| Arc::clone(&self.tracks.shared_audio)),
            video: Arc::clone(&self.tracks.video),
        };
        self.reserved.insert(id.clone(), Reserved { personal_audio });
        Ok(Reservation { id, tracks, events: self.events.clone() })
    }

    /// Turns a negotiated peer into a participant: media inputs and outputs wired,
    /// grid updated. On failure the peer is closed and the place freed.
    fn admit(&mut self, admission: Admission) -> Result<(), JoinError> {
        let Some(reserved) = self.reserved.remove(&admission.id) else {
            close_peer(admission.peer);
            return Err(JoinError::Internal("the join's reservation was lost".into()));
        };
        let Admission { id, peer, summary, name, owner } = admission;
        let name = name.unwrap_or_else(|| format!("guest-{}", &id.as_str()[..6]));
        let pli_interval = Duration::from_millis(self.ctx.config.media.keyframe_min_interval_ms);
        let mut participant = Participant::new(id.clone(), name, owner, summary, peer, pli_interval);
        if let Err(e) = self.wire_media(&mut participant, reserved) {
            let peer = Arc::clone(&participant.peer);
            tokio::spawn(async move { peer.close().await });
            return Err(e);
        }
        tracing::info!(room = %self.slot.name, participant = %id, name = participant.name, offer = ?summary, "joined");
        self.participants.push(participant);
        self.relayout();
        Ok(())
    }

    fn wire_media(&mut self, participant: &mut Participant, reserved: Reserved) -> Result<(), JoinError> {
        let config = &self.ctx.config.media;
        let room = self.slot.name.as_str();
        if self.media.is_none() {
            self.media = Some(RoomMedia::start(room, config)?);
        }
        let media = self.media.as_mut().ok_or_else(|| JoinError::Internal("room media missing".into()))?;
        if participant.offer.video.is_some() {
            media.ensure_video(room, config, &self.tracks.video)?;
        }
        if participant.publishes_video() {
            let events = self.events.clone();
            let pid = participant.id.clone();
            let needs_keyframe = Arc::new(move || {
                let _ = events.send(RoomEvent::PublisherNeedsKeyframe(pid.clone()));
            });
            let video = media.video.as_mut().ok_or_else(|| JoinError::Internal("no composite".into()))?;
            let key = participant.id.as_str().to_owned();
            let input = tokio::task::block_in_place(|| video.add_input(&key, needs_keyframe))
                .map_err(|e| JoinError::Media(e.to_string()))?;
            participant.video_input = Some(input);
        }
        if participant.publishes_audio() {
            media.audio.send(AudioCommand::AddSource(participant.id.shared()));
        }
        if let Some(track) = reserved.personal_audio {
            media.audio.send(AudioCommand::AddListener(participant.id.shared(), track_output(track)));
        } else if participant.offer.audio.is_some_and(|d| d.receives()) {
            media.ensure_shared_audio(&self.tracks.shared_audio);
        }
        Ok(())
    }

    fn maybe_start_auto_recording(&mut self) {
        if !self.ctx.config.recording.auto || self.auto_recording_tried {
            return;
        }
        self.auto_recording_tried = true;
        if let Some(m) = self.media.as_mut()
            && let Err(e) = m.start_recording(self.slot.name.as_str(), &self.ctx.config.media, &self.ctx.recordings)
        {
            tracing::error!(room = %self.slot.name, error = %e, "cannot start automatic recording");
        }
    }

    fn relayout(&self) {
        if let Some(video) = self.media.as_ref().and_then(|m| m.video.as_ref()) {
            let order: Vec<&str> =
                self.participants.iter().filter(|p| p.video_input.is_some()).map(|p| p.id.as_str()).collect();
            video.set_layout(&order);
        }
    }

    fn remove_participant(&mut self, index: usize, reason: &str) {
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
        self.relayout();
        let peer = Arc::clone(&p.peer);
        tokio::spawn(async move { peer.close().await });
    }

    fn handle_event(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::Peer(id, PeerEvent::Track(track)) => self.start_reader(&id, track),
            RoomEvent::Peer(id, PeerEvent::State(state)) => {
                let Some(index) = self.participants.iter().position(|p| p.id == id) else { return };
                tracing::debug!(room = %self.slot.name, participant = %id, %state, "peer state");
                match state {
                    RTCPeerConnectionState::Connected if self.participants[index].receives_video() => {
                        self.request_composite_keyframe();
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.remove_participant(index, "connection lost");
                    }
                    _ => {}
                }
            }
            RoomEvent::Peer(_, PeerEvent::KeyframeRequest) => self.request_composite_keyframe(),
            RoomEvent::PublisherNeedsKeyframe(id) => self.request_publisher_keyframe(&id),
            RoomEvent::JoinEnded(Some(id)) => {
                self.reserved.remove(&id);
            }
            RoomEvent::JoinEnded(None) => {}
        }
    }

    fn start_reader(&mut self, id: &ParticipantId, track: Arc<TrackRemote>) {
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
            self.request_publisher_keyframe(&id.clone());
        }
    }

    fn request_composite_keyframe(&mut self) {
        if self.composite_keyframes.request(Instant::now().into_std())
            && let Some(video) = self.media.as_ref().and_then(|m| m.video.as_ref())
        {
            video.force_keyframe();
        }
    }

    fn request_publisher_keyframe(&mut self, id: &ParticipantId) {
        let Some(p) = self.participants.iter_mut().find(|p| &p.id == id) else { return };
        if p.pli.request(Instant::now().into_std()) {
            send_pli(p);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.participants
            .iter()
            .filter_map(|p| p.pli.deadline())
            .chain(self.composite_keyframes.deadline())
            .min()
            .map(Instant::from_std)
    }

    fn poll_keyframes(&mut self) {
        let now = Instant::now().into_std();
        if self.composite_keyframes.poll(now)
            && let Some(video) = self.media.as_ref().and_then(|m| m.video.as_ref())
        {
            video.force_keyframe();
        }
        for p in &mut self.participants {
            if p.pli.poll(now) {
                send_pli(p);
            }
        }
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

/// Forwards a publisher's video RTP into its decode branch.
async fn read_video(track: Arc<TrackRemote>, input: VideoInput) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    while let Ok((packet, _)) = track.read_rtp().await {
        input.push_rtp(packet.marshal_size(), |buf| packet.marshal_to(buf).unwrap_or(0));
    }
}

/// Forwards a publisher's Opus payloads to the mixer.
async fn read_audio(track: Arc<TrackRemote>, source: Arc<str>, mixer: std::sync::mpsc::Sender<AudioCommand>) {
    let _live = GaugeGuard::new(&metrics::TRACK_READERS);
    while let Ok((packet, _)) = track.read_rtp().await {
        if packet.payload.is_empty() {
            continue;
        }
        let command = AudioCommand::Packet {
            source: Arc::clone(&source),
            seq: packet.header.sequence_number,
            payload: packet.payload,
        };
        if mixer.send(command).is_err() {
            break;
        }
    }
}
