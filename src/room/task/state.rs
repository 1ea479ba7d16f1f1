//! What the room shows of itself: its state for the API and the event stream, and
//! the summary the registry reads without asking the room.

use super::super::budget::EncodeLoad;
use super::super::media::recording_state;
use super::super::participant::Participant;
use super::super::{ParticipantId, ParticipantInfo, ReceiveInfo, RoomState};
use super::RoomTask;

impl RoomTask {
    /// Updates the room's snapshot in place (it runs after every event, RTCP
    /// reports included: no allocation).
    pub(super) fn publish_summary(&self) {
        let mut summary = self.slot.summary.lock().unwrap_or_else(|p| p.into_inner());
        let summary = &mut *summary;
        let viewers = self.participants.iter().filter(|p| p.viewer).count();
        summary.participants = self.participants.len() - viewers;
        summary.viewers = viewers;
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

    /// Whether the room has a participant (viewers alone do not keep it open).
    pub(super) fn has_participants(&self) -> bool {
        self.participants.iter().any(|p| !p.viewer)
    }

    pub(super) fn state(&self) -> RoomState {
        let layout = self.core.layout();
        RoomState {
            room: self.slot.name.to_string(),
            layout: layout.name(),
            pin: layout.pin().map(ToString::to_string),
            speaker: self.core.speaker().map(ToString::to_string),
            recording: self.media.as_ref().and_then(|m| m.recording.as_ref()).map(recording_state),
            recording_failed: self.recording_failed.clone(),
            participants: self.participants.iter().filter(|p| !p.viewer).map(|p| self.info(p)).collect(),
            viewers: self.participants.iter().filter(|p| p.viewer).count(),
            streams: self.stream_infos(),
        }
    }

    pub(super) fn notify_layout(&self) {
        let layout = self.core.layout();
        self.notices.send(
            "layout",
            || serde_json::json!({ "layout": layout.name(), "pin": layout.pin().map(ParticipantId::as_str) }),
        );
    }

    pub(super) fn info(&self, p: &Participant) -> ParticipantInfo {
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
}
