//! A moderator's hand on a participant: muting its audio (out of every mix) or its
//! video (a black cell), from `POST /rooms/{room}/participants/{id}/mute`.

use super::RoomTask;
use crate::media::audio::AudioCommand;
use crate::room::{ParticipantId, ParticipantInfo, UpdateError};

impl RoomTask {
    /// Applies what is given (`None`: unchanged) and tells the event stream.
    pub(super) fn mute(
        &mut self,
        id: &ParticipantId,
        audio: Option<bool>,
        video: Option<bool>,
    ) -> Result<ParticipantInfo, UpdateError> {
        let p = self.participants.iter_mut().find(|p| &p.id == id).ok_or(UpdateError::UnknownParticipant)?;
        if let Some(muted) = audio {
            p.muted.audio = muted;
            if let Some(media) = &self.media {
                media.audio.send(AudioCommand::SetMuted(id.shared(), muted));
            }
        }
        if let Some(muted) = video {
            p.muted.video = muted;
            if let Some(video) = self.media.as_mut().and_then(|m| m.video.as_mut()) {
                video.set_hidden(id.as_str(), muted);
            }
        }
        let muted = p.muted;
        tracing::info!(room = %self.slot.name, participant = %id, audio = muted.audio, video = muted.video, "muted by a moderator");
        let info = self
            .participants
            .iter()
            .find(|p| &p.id == id)
            .map(|p| self.info(p))
            .ok_or(UpdateError::UnknownParticipant)?;
        self.notices.send("muted", || serde_json::json!({ "participant": info }));
        Ok(info)
    }
}
