//! The room task: the shell around the room core. It owns the room's participants
//! (their connections) and media, turns commands and events into core inputs, and
//! performs the core's actions with GStreamer and webrtc-rs. It never awaits a
//! negotiation: joins are negotiated outside (see `join.rs`) and handed in ready.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

mod actions;
mod admission;
mod closing;
mod input_failure;
mod moderation;
mod recording;
mod state;
mod streams;

use closing::close_peer;

use super::core::{EncodeKey, Input, LayoutChoice, LayoutError, QualityError, RoomCore};
use super::join::Reservation;
use super::live::{StreamError, StreamInfo};
use super::media::{RoomMedia, audio_track, finalize};
use super::notice::{Notices, Subscription};
use super::participant::Participant;
use super::readers::{InputLimits, read_audio, read_video};
use super::registry::{RoomSlot, Rooms, ServerContext};
use super::{
    JoinError, LeaveError, ParticipantId, ParticipantInfo, RecordingError, RecordingStarted, RecordingStopped, Role,
    RoomState, UpdateError,
};
use crate::media::audio::AudioCommand;
use crate::media::codec::VideoCodec;
use crate::media::recorder::Container;
use crate::media::speaker::VoiceLevel;
use crate::media::tier::Quality;
use crate::rtc::forward::{ForwardEvent, Forwarder};
use crate::rtc::offer::OfferSummary;
use crate::rtc::peer::{self, Peer, PeerEvent};

/// Requests to a room.
pub(super) enum RoomCommand {
    /// Reserve a place for a join and hand out the tracks to negotiate with.
    Reserve {
        summary: OfferSummary,
        role: Role,
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
    /// Checks that a participant or viewer is here and `by` may act on it.
    CheckMember {
        id: ParticipantId,
        by: Option<String>,
        reply: oneshot::Sender<Result<(), LeaveError>>,
    },
    StartStream {
        url: String,
        reply: oneshot::Sender<Result<StreamInfo, StreamError>>,
    },
    StopStream {
        id: String,
        reply: oneshot::Sender<Result<StreamInfo, StreamError>>,
    },
    /// Server shutdown: close every peer and stop.
    Close,
    /// Test builds only: the room's task panics (see `tests/room_panic.rs`).
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// A negotiated join, ready to become a participant.
pub(super) struct Admission {
    pub id: ParticipantId,
    pub peer: Peer,
    pub summary: OfferSummary,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub quality: Quality,
    pub role: Role,
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
    /// A recording with no video keyframe yet, or a live stream's regular keyframe:
    /// force one of the encode at once.
    EncodeNeedsKeyframe(EncodeKey),
    /// The running recording (by id) could not write any more (disk full, file gone).
    RecordingFailed(String),
    /// A recording stopped for a failure has been finalized.
    RecordingFinalized(RecordingStopped),
    /// A live stream went live, failed, or is due for a retry.
    Stream(streams::StreamEvent),
    /// A publisher sent what the server does not take (why): it is removed.
    InputRefused(ParticipantId, String),
    /// A publisher's decode branch failed; it was restarted or given up.
    InputFailed(ParticipantId, crate::media::video_bus::InputFailure),
    /// An encode of the composite (by its key) failed; it was restarted or given up.
    OutputFailed(String, crate::media::video_bus::InputFailure),
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
    /// Live streams out, in start order.
    streams: Vec<streams::LiveStream>,
    /// Whether `recording.auto` already started (or tried to start) this room's
    /// recording: a recording stopped by hand stays stopped.
    auto_recording_tried: bool,
    /// The last recording stopped because it failed, until another starts.
    recording_failed: Option<RecordingStopped>,
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
            streams: Vec::new(),
            auto_recording_tried: false,
            recording_failed: None,
        };
        tokio::spawn(task.run(commands, events_rx))
    }

    async fn run(mut self, mut commands: mpsc::Receiver<RoomCommand>, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        // A panic in the loop ends the room, not the server: what the room holds
        // (peers, pipelines, threads) is let go as after a close, without trusting
        // the state the panic left behind.
        let served = AssertUnwindSafe(self.serve(&mut commands, &mut events)).catch_unwind().await;
        match served {
            Ok(()) => self.close(commands).await,
            Err(panic) => self.abandon(commands, closing::panic_message(&*panic)).await,
        }
    }

    async fn serve(
        &mut self,
        commands: &mut mpsc::Receiver<RoomCommand>,
        events: &mut mpsc::UnboundedReceiver<RoomEvent>,
    ) {
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
            if !self.has_participants()
                && self.reserved.is_empty()
                && self.rooms.close_if_idle(&self.slot.name, self.slot.generation)
            {
                break;
            }
        }
    }

    fn handle_command(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Reserve { summary, role, reply } => {
                let _ = reply.send(self.reserve(&summary, role));
            }
            RoomCommand::Admit { admission, reply } => {
                let id = admission.id.clone();
                let result = self.admit(admission);
                match &result {
                    Ok(()) => {
                        if let Some(p) = self.participants.last().filter(|p| !p.viewer) {
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
                let _ = reply.send(self.has_participants().then(|| self.state()));
            }
            RoomCommand::Mute { id, audio, video, reply } => {
                let _ = reply.send(self.mute(&id, audio, video));
            }
            RoomCommand::Subscribe { reply } => {
                let subscription = self
                    .has_participants()
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
                    if let Some(key) = active.encode() {
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
            RoomCommand::CheckMember { id, by, reply } => {
                let result = match self.participants.iter().find(|p| p.id == id) {
                    Some(p) if by.is_some() && p.owner != by => Err(LeaveError::NotYours),
                    Some(_) => Ok(()),
                    None => Err(LeaveError::UnknownParticipant),
                };
                let _ = reply.send(result);
            }
            RoomCommand::StartStream { url, reply } => {
                let _ = reply.send(self.start_stream(url));
            }
            RoomCommand::StopStream { id, reply } => {
                let _ = reply.send(self.stop_stream(&id));
            }
            RoomCommand::Close => {}
            #[cfg(feature = "fault-injection")]
            RoomCommand::Panic => panic!("fault injection: room {} panics", self.slot.name),
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

    fn remove_participant(&mut self, index: usize, reason: &str) {
        if !self.participants[index].viewer {
            self.notices.send("left", || serde_json::json!({ "participant": self.info(&self.participants[index]) }));
        }
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
            RoomEvent::EncodeNeedsKeyframe(key) => self.core.handle(now, Input::EncodeNeedsKeyframe(key)),
            RoomEvent::RecordingFailed(id) => self.stop_failed_recording(&id),
            // A recording started meanwhile makes the failure old news.
            RoomEvent::RecordingFinalized(stopped) => {
                if self.media.as_ref().is_none_or(|m| m.recording.is_none()) {
                    self.recording_failed = Some(stopped);
                }
            }
            RoomEvent::Stream(event) => self.handle_stream_event(event),
            RoomEvent::InputFailed(id, failure) => self.input_failed(id, failure),
            RoomEvent::OutputFailed(encode, failure) => self.output_failed(encode, failure),
            RoomEvent::InputRefused(id, why) => {
                if let Some(index) = self.participants.iter().position(|p| p.id == id) {
                    tracing::warn!(room = %self.slot.name, participant = %id, why, "removing a publisher");
                    self.remove_participant(index, "input refused");
                }
            }
        }
    }

    fn start_reader(&mut self, id: &ParticipantId, track: Arc<webrtc::track::track_remote::TrackRemote>) {
        use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
        let audio = self.media.as_ref().and_then(|m| m.audio.sender());
        let Some(p) = self.participants.iter_mut().find(|p| &p.id == id) else { return };
        // One track per kind: a second one (an extra m-line, an SSRC-declared
        // simulcast layer) would interleave its packets with the first in one jitter
        // buffer and decoder. It is left unread.
        let already = match track.kind() {
            RTPCodecType::Video => p.video_ssrc,
            _ => p.audio_ssrc,
        };
        if let Some(ssrc) = already {
            tracing::warn!(room = %self.slot.name, participant = %id, kind = %track.kind(), ssrc = track.ssrc(), reading = ssrc, "ignoring a second track of a kind");
            return;
        }
        let (events, pid) = (self.events.clone(), id.clone());
        let refused: Box<dyn FnOnce(String) + Send> = Box::new(move |why| {
            let _ = events.send(RoomEvent::InputRefused(pid, why));
        });
        let reader = match track.kind() {
            RTPCodecType::Video => {
                let Some(input) = p.video_input.clone() else { return };
                p.video_ssrc = Some(track.ssrc());
                let media = &self.ctx.config.media;
                let limits = InputLimits {
                    max_pixels: media.max_input_pixels,
                    max_video_bps: media.max_input_bitrate_bps,
                    refused,
                };
                tokio::spawn(read_video(track, input, limits))
            }
            RTPCodecType::Audio => {
                if !p.publishes_audio() {
                    return;
                }
                let Some(mixer) = audio else { return };
                p.audio_ssrc = Some(track.ssrc());
                tokio::spawn(read_audio(track, id.shared(), mixer, refused))
            }
            _ => return,
        };
        p.readers.push(reader);
        if p.video_ssrc.is_some() {
            self.core.handle(std::time::Instant::now(), Input::PublisherNeedsKeyframe(id.clone()));
        }
    }
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
