//! The room task: the one owner of a room's participants, mixers and layout. It reacts
//! to commands (join, leave, state) and to events from peers and pipelines, in order,
//! one at a time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use webrtc::media::Sample;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, MarshalSize};

use super::participant::Participant;
use super::registry::{Rooms, ServerContext};
use super::{
    JoinAnswer, JoinError, JoinRequest, LeaveError, ParticipantId, RecordingError, RecordingStarted, RecordingStopped,
    RoomName, RoomState,
};
use crate::media::audio::{AudioCommand, AudioMixer, AudioMixerConfig, AudioOutput, FRAME_DURATION};
use crate::media::keyframe::KeyframePolicy;
use crate::media::recorder::{Recorder, VideoFormat};
use crate::media::video::{EncodedFrame, FrameSink, VideoInput, VideoMixer};
use crate::metrics::{self, GaugeGuard};
use crate::rtc::engine::{opus_capability, vp8_capability};
use crate::rtc::offer::inspect_offer;
use crate::rtc::peer::{self, OutgoingTracks, PeerEvent};

/// Requests to a room.
pub(super) enum RoomCommand {
    Join {
        request: JoinRequest,
        reply: oneshot::Sender<JoinOutcome>,
    },
    Leave {
        id: ParticipantId,
        by: Option<String>,
        reply: oneshot::Sender<Result<(), LeaveError>>,
    },
    State {
        reply: oneshot::Sender<RoomState>,
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

/// A join's result, or the request handed back because the room was closing.
pub(super) enum JoinOutcome {
    Done(Result<JoinAnswer, JoinError>),
    Retry(JoinRequest),
}

/// Things that happen to the room, from callbacks and media threads.
enum RoomEvent {
    Peer(ParticipantId, PeerEvent),
    /// A publisher's decoder needs a keyframe (loss, or start).
    PublisherNeedsKeyframe(ParticipantId),
}

/// The room's media: the composite (created with the first video participant), the
/// audio mixer, and the outgoing tracks shared by many peers.
struct RoomMedia {
    video: Option<VideoMixer>,
    /// The composite, one encode and one packetisation for every video receiver.
    video_track: Arc<TrackLocalStaticSample>,
    video_writer: Option<tokio::task::JoinHandle<()>>,
    audio: AudioMixer,
    /// The full mix for receivers who do not publish audio.
    shared_audio_track: Arc<TrackLocalStaticSample>,
    shared_audio_registered: bool,
    /// The running recording, if any.
    recording: Option<ActiveRecording>,
    /// The recorder the composite's frames also go to, set while recording video.
    video_tap: Arc<std::sync::Mutex<Option<Arc<Recorder>>>>,
}

/// A recording in progress.
struct ActiveRecording {
    started: RecordingStarted,
    recorder: Arc<Recorder>,
}

pub(super) struct RoomTask {
    name: RoomName,
    generation: u64,
    rooms: Arc<Rooms>,
    ctx: Arc<ServerContext>,
    /// In join order: this is also the grid order of video publishers.
    participants: Vec<Participant>,
    events: mpsc::UnboundedSender<RoomEvent>,
    composite_keyframes: KeyframePolicy,
    /// Whether `recording.auto` already started (or tried to start) this room's
    /// recording: a recording stopped by hand stays stopped.
    auto_recording_tried: bool,
}

/// Id of the mixer listener feeding the shared full-mix track.
const SHARED_MIX: &str = "*shared-mix";
/// Id of the mixer listener feeding a recording (the full mix, shared encode).
const RECORDING_MIX: &str = "*recording";

impl RoomTask {
    pub fn spawn(
        name: RoomName,
        generation: u64,
        rooms: Arc<Rooms>,
        commands: mpsc::Receiver<RoomCommand>,
    ) -> tokio::task::JoinHandle<()> {
        let ctx = Arc::clone(rooms.context());
        let (events, events_rx) = mpsc::unbounded_channel();
        let keyframe_interval = Duration::from_millis(ctx.config.media.keyframe_min_interval_ms);
        let task = RoomTask {
            name,
            generation,
            rooms,
            ctx,
            participants: Vec::new(),
            events,
            composite_keyframes: KeyframePolicy::new(keyframe_interval),
            auto_recording_tried: false,
        };
        tokio::spawn(task.run(commands, events_rx))
    }

    async fn run(mut self, mut commands: mpsc::Receiver<RoomCommand>, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        let mut media = match self.start_media() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "cannot start room media");
                None
            }
        };
        while let Some(m) = media.as_mut() {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(RoomCommand::Close) | None => break,
                    Some(cmd) => self.handle_command(cmd, m).await,
                },
                Some(event) = events.recv() => self.handle_event(event, m).await,
                _ = sleep_until(deadline) => self.poll_keyframes(m),
            }
            if self.participants.is_empty() {
                break;
            }
        }
        // Closing: new requests go to a new room from now on.
        self.rooms.remove_if_current(&self.name, self.generation);
        commands.close();
        while let Some(cmd) = commands.recv().await {
            match cmd {
                RoomCommand::Join { request, reply } => {
                    let outcome = if media.is_some() {
                        JoinOutcome::Retry(request)
                    } else {
                        JoinOutcome::Done(Err(JoinError::Media("room media could not start".into())))
                    };
                    let _ = reply.send(outcome);
                }
                RoomCommand::Leave { reply, .. } => {
                    let _ = reply.send(Err(LeaveError::UnknownParticipant));
                }
                RoomCommand::StartRecording { reply } => {
                    let _ = reply.send(Err(RecordingError::UnknownRoom));
                }
                RoomCommand::StopRecording { reply } => {
                    let _ = reply.send(Err(RecordingError::NotRecording));
                }
                RoomCommand::State { .. } | RoomCommand::Close => {}
            }
        }
        if let Some(mut m) = media {
            // The recording is finalized before anything else goes: it is the one
            // thing that outlives the room.
            if let Some(active) = self.detach_recording(&mut m) {
                let stopped = finalize(active).await;
                tracing::info!(room = %self.name, file = stopped.file, duration_ms = stopped.duration_ms, "recording finalized");
            }
            while !self.participants.is_empty() {
                self.remove_participant(0, "room closing", &mut m);
            }
            if let Some(w) = m.video_writer.take() {
                w.abort();
            }
            // Pipeline and mixer teardown block on GStreamer state changes.
            let _ = tokio::task::spawn_blocking(move || drop(m)).await;
        }
        tracing::info!(room = %self.name, "room closed");
    }

    fn start_media(&self) -> Result<RoomMedia, JoinError> {
        let media = &self.ctx.config.media;
        let audio = AudioMixer::start(
            self.name.as_str(),
            AudioMixerConfig {
                bitrate_bps: media.audio_bitrate_bps,
                jitter_packets: (media.audio_jitter_ms / 20).max(1) as usize,
            },
        )
        .map_err(|e| JoinError::Media(e.to_string()))?;
        Ok(RoomMedia {
            video: None,
            video_track: Arc::new(TrackLocalStaticSample::new(vp8_capability(), "mix-video".into(), "mcu-mix".into())),
            video_writer: None,
            audio,
            shared_audio_track: Arc::new(TrackLocalStaticSample::new(
                opus_capability(),
                "mix-audio".into(),
                "mcu-mix".into(),
            )),
            shared_audio_registered: false,
            recording: None,
            video_tap: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// Starts the composite the first time a participant sends or wants video.
    fn ensure_video(&self, media: &mut RoomMedia) -> Result<(), JoinError> {
        if media.video.is_some() {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::channel::<EncodedFrame>(16);
        let tap = Arc::clone(&media.video_tap);
        let sink: FrameSink = Arc::new(move |frame: EncodedFrame| {
            if let Some(recorder) = tap.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                recorder.push_video(frame.captured_ns, &frame.data, frame.duration, frame.keyframe);
            }
            // Full means the network side is stalled: drop rather than block GStreamer.
            let _ = tx.try_send(frame);
        });
        let mixer = tokio::task::block_in_place(|| VideoMixer::start(&self.ctx.config.media, self.name.as_str(), sink))
            .map_err(|e| JoinError::Media(e.to_string()))?;
        let track = Arc::clone(&media.video_track);
        media.video_writer = Some(tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let sample = Sample { data: frame.data, duration: frame.duration, ..Default::default() };
                if let Err(e) = track.write_sample(&sample).await {
                    tracing::trace!(error = %e, "composite write");
                }
            }
        }));
        media.video = Some(mixer);
        Ok(())
    }

    async fn handle_command(&mut self, cmd: RoomCommand, media: &mut RoomMedia) {
        match cmd {
            RoomCommand::Join { request, reply } => {
                let result = self.join(request, media).await;
                if let Err(e) = &result {
                    tracing::info!(room = %self.name, error = %e, "join failed");
                }
                if result.is_ok() && self.ctx.config.recording.auto && !self.auto_recording_tried {
                    self.auto_recording_tried = true;
                    if let Err(e) = self.start_recording(media) {
                        tracing::error!(room = %self.name, error = %e, "cannot start automatic recording");
                    }
                }
                let _ = reply.send(JoinOutcome::Done(result));
            }
            RoomCommand::Leave { id, by, reply } => {
                let result = match self.participants.iter().position(|p| p.id == id) {
                    Some(index) if by.is_some() && self.participants[index].owner != by => Err(LeaveError::NotYours),
                    Some(index) => {
                        self.remove_participant(index, "left", media);
                        Ok(())
                    }
                    None => Err(LeaveError::UnknownParticipant),
                };
                let _ = reply.send(result);
            }
            RoomCommand::State { reply } => {
                let _ = reply.send(RoomState {
                    room: self.name.to_string(),
                    layout: "grid",
                    recording: media.recording.as_ref().map(recording_state),
                    participants: self.participants.iter().map(Participant::info).collect(),
                });
            }
            RoomCommand::StartRecording { reply } => {
                let _ = reply.send(self.start_recording(media));
            }
            RoomCommand::StopRecording { reply } => match self.detach_recording(media) {
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

    async fn join(&mut self, request: JoinRequest, media: &mut RoomMedia) -> Result<JoinAnswer, JoinError> {
        let config = &self.ctx.config;
        let max = config.server.max_participants_per_room;
        if self.participants.len() >= max {
            return Err(JoinError::RoomFull(max));
        }
        let offer = inspect_offer(&request.offer)?;
        if offer.video.is_some() {
            self.ensure_video(media)?;
        }
        let id = ParticipantId::new();
        let publishes_audio = offer.audio.is_some_and(|d| d.publishes());
        let receives_audio = offer.audio.is_some_and(|d| d.receives());
        // Publishers hear a mix-minus of their own; everyone else shares one encode.
        let personal_audio = (publishes_audio && receives_audio)
            .then(|| Arc::new(TrackLocalStaticSample::new(opus_capability(), "mix-audio".into(), "mcu-mix".into())));
        let tracks = OutgoingTracks {
            audio: personal_audio.clone().unwrap_or_else(|| Arc::clone(&media.shared_audio_track)),
            video: Arc::clone(&media.video_track),
        };
        let events = self.events.clone();
        let peer_id = id.clone();
        let on_event: Arc<dyn Fn(PeerEvent) + Send + Sync> = Arc::new(move |event| {
            let _ = events.send(RoomEvent::Peer(peer_id.clone(), event));
        });
        let timeout = Duration::from_millis(config.server.join_timeout_ms);
        let peer = tokio::time::timeout(
            timeout,
            peer::answer_offer(&self.ctx.engine, request.offer, offer, tracks, timeout, on_event),
        )
        .await
        .map_err(|_| JoinError::Negotiation("negotiation timed out".into()))?
        .map_err(|e| JoinError::Negotiation(e.to_string()))?;
        let answer = peer.answer.clone();

        let name = request.name.unwrap_or_else(|| format!("guest-{}", &id.as_str()[..6]));
        let pli_interval = Duration::from_millis(config.media.keyframe_min_interval_ms);
        let mut participant = Participant::new(id.clone(), name, request.owner, offer, peer, pli_interval);
        if participant.publishes_video() {
            let events = self.events.clone();
            let pid = id.clone();
            let needs_keyframe = Arc::new(move || {
                let _ = events.send(RoomEvent::PublisherNeedsKeyframe(pid.clone()));
            });
            let video = media.video.as_mut().ok_or_else(|| JoinError::Media("no composite".into()))?;
            match tokio::task::block_in_place(|| video.add_input(id.as_str(), needs_keyframe)) {
                Ok(input) => participant.video_input = Some(input),
                Err(e) => {
                    participant.peer.close().await;
                    return Err(JoinError::Media(e.to_string()));
                }
            }
        }
        if publishes_audio {
            media.audio.send(AudioCommand::AddSource(id.shared()));
        }
        if let Some(track) = personal_audio {
            media.audio.send(AudioCommand::AddListener(id.shared(), track_output(track)));
        } else if receives_audio && !media.shared_audio_registered {
            media.shared_audio_registered = true;
            let track = Arc::clone(&media.shared_audio_track);
            media.audio.send(AudioCommand::AddListener(Arc::from(SHARED_MIX), track_output(track)));
        }
        tracing::info!(room = %self.name, participant = %id, name = participant.name, ?offer, "joined");
        self.participants.push(participant);
        self.relayout(media);
        Ok(JoinAnswer { id, answer })
    }

    /// Starts recording the composite (if the room has video) and the full mix.
    fn start_recording(&mut self, media: &mut RoomMedia) -> Result<RecordingStarted, RecordingError> {
        if media.recording.is_some() {
            return Err(RecordingError::AlreadyRecording);
        }
        let new = tokio::task::block_in_place(|| self.ctx.recordings.create(self.name.as_str()))?;
        let config = &self.ctx.config.media;
        // The recording has video when the room has a composite (someone negotiated
        // video, even only to watch: cameras may come later); a room of audio-only
        // clients records audio only.
        let format =
            media.video.as_ref().map(|_| VideoFormat { width: config.width, height: config.height, fps: config.fps });
        let recorder = match tokio::task::block_in_place(|| Recorder::start(&new.path, format)) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                let _ = std::fs::remove_file(&new.path);
                return Err(RecordingError::Media(e.to_string()));
            }
        };
        if format.is_some() {
            *media.video_tap.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&recorder));
        }
        // The mixer emits a tick's frame about one jitter-buffer depth after its audio
        // arrived; stamping it that much earlier lines it up with the video.
        let audio_delay_ns = u64::from(config.audio_jitter_ms) * 1_000_000;
        let audio_recorder = Arc::clone(&recorder);
        let output = move |frame: Bytes| {
            audio_recorder.push_audio(Recorder::clock_now_ns().saturating_sub(audio_delay_ns), frame);
        };
        media.audio.send(AudioCommand::AddListener(Arc::from(RECORDING_MIX), Box::new(output)));
        if let Some(video) = &media.video {
            video.force_keyframe();
        }
        let started_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let started = RecordingStarted {
            id: new.id,
            file: new.file,
            room: self.name.to_string(),
            video: format.is_some(),
            started_at_ms,
        };
        tracing::info!(room = %self.name, file = started.file, video = started.video, "recording started");
        media.recording = Some(ActiveRecording { started: started.clone(), recorder });
        Ok(started)
    }

    /// Disconnects the running recording from the room's media, for finalizing.
    fn detach_recording(&self, media: &mut RoomMedia) -> Option<ActiveRecording> {
        let active = media.recording.take()?;
        media.video_tap.lock().unwrap_or_else(|p| p.into_inner()).take();
        media.audio.send(AudioCommand::RemoveListener(Arc::from(RECORDING_MIX)));
        Some(active)
    }

    fn relayout(&self, media: &RoomMedia) {
        if let Some(video) = &media.video {
            let order: Vec<&str> =
                self.participants.iter().filter(|p| p.video_input.is_some()).map(|p| p.id.as_str()).collect();
            video.set_layout(&order);
        }
    }

    fn remove_participant(&mut self, index: usize, reason: &str, media: &mut RoomMedia) {
        let p = self.participants.remove(index);
        tracing::info!(room = %self.name, participant = %p.id, reason, "participant removed");
        for reader in &p.readers {
            reader.abort();
        }
        if p.video_input.is_some()
            && let Some(video) = media.video.as_mut()
        {
            tokio::task::block_in_place(|| video.remove_input(p.id.as_str()));
        }
        media.audio.send(AudioCommand::RemoveSource(p.id.shared()));
        media.audio.send(AudioCommand::RemoveListener(p.id.shared()));
        self.relayout(media);
        let peer = Arc::clone(&p.peer);
        tokio::spawn(async move { peer.close().await });
    }

    async fn handle_event(&mut self, event: RoomEvent, media: &mut RoomMedia) {
        match event {
            RoomEvent::Peer(id, PeerEvent::Track(track)) => self.start_reader(&id, track, media),
            RoomEvent::Peer(id, PeerEvent::State(state)) => {
                let Some(index) = self.participants.iter().position(|p| p.id == id) else { return };
                tracing::debug!(room = %self.name, participant = %id, %state, "peer state");
                match state {
                    RTCPeerConnectionState::Connected if self.participants[index].receives_video() => {
                        self.request_composite_keyframe(media);
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        self.remove_participant(index, "connection lost", media);
                    }
                    _ => {}
                }
            }
            RoomEvent::Peer(_, PeerEvent::KeyframeRequest) => self.request_composite_keyframe(media),
            RoomEvent::PublisherNeedsKeyframe(id) => self.request_publisher_keyframe(&id),
        }
    }

    fn start_reader(&mut self, id: &ParticipantId, track: Arc<TrackRemote>, media: &RoomMedia) {
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
                let Some(mixer) = media.audio.sender() else { return };
                tokio::spawn(read_audio(track, id.shared(), mixer))
            }
            _ => return,
        };
        p.readers.push(reader);
        if p.video_ssrc.is_some() {
            self.request_publisher_keyframe(&id.clone());
        }
    }

    fn request_composite_keyframe(&mut self, media: &RoomMedia) {
        if self.composite_keyframes.request(Instant::now().into_std())
            && let Some(video) = &media.video
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

    fn poll_keyframes(&mut self, media: &RoomMedia) {
        let now = Instant::now().into_std();
        if self.composite_keyframes.poll(now)
            && let Some(video) = &media.video
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

/// What `GET /rooms/{room}` shows of a running recording.
fn recording_state(active: &ActiveRecording) -> serde_json::Value {
    let mut state = serde_json::json!({
        "id": active.started.id,
        "file": active.started.file,
        "video": active.started.video,
        "started_at_ms": active.started.started_at_ms,
        "duration_ms": active.recorder.duration().as_millis() as u64,
    });
    if let Some(error) = active.recorder.failure() {
        state["error"] = error.into();
    }
    state
}

/// Finalizes a detached recording on a blocking thread.
async fn finalize(active: ActiveRecording) -> RecordingStopped {
    let recorder = Arc::clone(&active.recorder);
    let summary = tokio::task::spawn_blocking(move || recorder.finish()).await.ok();
    let (duration_ms, bytes, error) = match summary {
        Some(s) => (s.duration.as_millis() as u64, s.bytes, s.error),
        None => (0, 0, Some("finalizing panicked".to_owned())),
    };
    if let Some(e) = &error {
        tracing::error!(file = active.started.file, error = e, "recording ended with an error");
    }
    RecordingStopped { file: active.started.file, duration_ms, bytes, error }
}

/// Writes a listener's Opus frames to its track from the mixer thread.
fn track_output(track: Arc<TrackLocalStaticSample>) -> Box<dyn AudioOutput> {
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |frame: Bytes| {
        let sample = Sample { data: frame, duration: FRAME_DURATION, ..Default::default() };
        let _ = runtime.block_on(track.write_sample(&sample));
    })
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
