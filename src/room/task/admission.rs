//! Admitting a join: a place held while it negotiates (with the tracks it will
//! receive), then the negotiated peer wired to the room's media.

use std::sync::Arc;

use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

use super::super::core::Input;
use super::super::join::Reservation;
use super::super::media::{RoomMedia, audio_track, track_output};
use super::super::participant::Participant;
use super::super::{JoinError, ParticipantId, Role};
use super::{Admission, Reserved, RoomEvent, RoomTask, close_peer};
use crate::media::audio::AudioCommand;
use crate::media::speaker::VoiceLevel;
use crate::rtc::codecs::video_capability;
use crate::rtc::forward::Forwarder;
use crate::rtc::offer::OfferSummary;
use crate::rtc::peer::OutgoingTracks;

impl RoomTask {
    /// Holds a place for a join and picks the tracks it will receive.
    pub(super) fn reserve(&mut self, summary: &OfferSummary, role: Role) -> Result<Reservation, JoinError> {
        // Viewers and participants have limits of their own (a place held for a join
        // counts against both: it is cheap and brief).
        let server = &self.ctx.config.server;
        let viewers = self.participants.iter().filter(|p| p.viewer).count();
        let reserved = self.reserved.len();
        if role == Role::Viewer {
            if viewers + reserved >= server.max_viewers_per_room {
                return Err(JoinError::ViewersFull(server.max_viewers_per_room));
            }
        } else if self.participants.len() - viewers + reserved >= server.max_participants_per_room {
            return Err(JoinError::RoomFull(server.max_participants_per_room));
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
    pub(super) fn admit(&mut self, admission: Admission) -> Result<(), JoinError> {
        let Some(reserved) = self.reserved.remove(&admission.id) else {
            close_peer(admission.peer);
            return Err(JoinError::Internal("the join's reservation was lost".into()));
        };
        let Admission { id, peer, summary, name, owner, quality, role } = admission;
        let name = name.unwrap_or_else(|| format!("guest-{}", &id.as_str()[..6]));
        let mut participant = Participant::new(id.clone(), name, owner, summary, peer);
        participant.viewer = role == Role::Viewer;
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
            let events = self.events.clone();
            video.on_input_failed(Arc::new(move |key, failure| {
                let id = ParticipantId::from_shared(Arc::from(key));
                let _ = events.send(RoomEvent::InputFailed(id, failure));
            }));
            let events = self.events.clone();
            video.on_output_failed(Arc::new(move |key, failure| {
                let _ = events.send(RoomEvent::OutputFailed(key.to_owned(), failure));
            }));
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
}
