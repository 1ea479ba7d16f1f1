//! A publisher whose video the server cannot decode: its decode branch is restarted
//! with a keyframe asked for, or, failing again and again, the publisher is removed.
//! An encode of the composite whose encoder fails is restarted (its receivers get a
//! keyframe), or left stopped when it keeps failing. The event stream says which
//! (`input_failed`, `output_failed`).

use super::super::ParticipantId;
use super::super::core::Input;
use super::{RoomEvent, RoomTask};
use crate::media::video_bus::{InputFailure, RESTART_WINDOW, RESTARTS_ALLOWED};

impl RoomTask {
    pub(super) fn input_failed(&mut self, id: ParticipantId, failure: InputFailure) {
        if !self.participants.iter().any(|p| p.id == id) {
            return;
        }
        let InputFailure { error, restarted } = failure;
        self.notices.send(
            "input_failed",
            || serde_json::json!({ "participant": id.as_str(), "error": error, "restarted": restarted }),
        );
        if restarted {
            tracing::warn!(room = %self.slot.name, participant = %id, error, "a publisher's video failed to decode: restarted");
            self.core.handle(std::time::Instant::now(), Input::PublisherNeedsKeyframe(id));
        } else {
            let why = format!(
                "its video failed to decode more than {RESTARTS_ALLOWED} times in {} s ({error})",
                RESTART_WINDOW.as_secs()
            );
            self.handle_event(RoomEvent::InputRefused(id, why));
        }
    }

    pub(super) fn output_failed(&mut self, encode: String, failure: InputFailure) {
        let InputFailure { error, restarted } = failure;
        if restarted {
            tracing::warn!(room = %self.slot.name, encode, error, "an encode of the composite failed: restarted");
        } else {
            tracing::error!(
                room = %self.slot.name, encode, error,
                "an encode of the composite failed more than {RESTARTS_ALLOWED} times in {} s: stopped",
                RESTART_WINDOW.as_secs()
            );
        }
        self.notices
            .send("output_failed", || serde_json::json!({ "encode": encode, "error": error, "restarted": restarted }));
    }
}
