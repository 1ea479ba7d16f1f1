//! Recording a room from its task: the recorded encode is a consumer the room core
//! keeps running, whoever else receives it.

use super::super::core::{EncodeKey, Input};
use super::super::{RecordingError, RecordingStarted};
use std::sync::Arc;
use std::time::Duration;

use super::{RoomEvent, RoomTask};
use crate::media::recorder::Container;

impl RoomTask {
    pub(super) fn start_recording(&mut self, container: Container) -> Result<RecordingStarted, RecordingError> {
        let Some(media) = self.media.as_ref() else { return Err(RecordingError::UnknownRoom) };
        // The recording has video when the room has a composite (someone negotiated
        // video, even only to watch: cameras may come later); it records the top
        // tier's encode in the container's codec, started for it if nobody receives
        // that.
        let encode = media.video.as_ref().map(|_| EncodeKey { codec: container.video_codec(), tier: 0 });
        if let Some(key) = encode {
            self.core.handle(std::time::Instant::now(), Input::Consumer(key, true));
            self.perform_actions();
        }
        let tier = self.core.tiers().first().cloned();
        let media = self.media.as_mut().ok_or(RecordingError::UnknownRoom)?;
        let result = media.start_recording(
            self.slot.name.as_str(),
            container,
            tier.as_ref(),
            encode,
            &self.ctx.config.media,
            &self.ctx.recordings,
        );
        if result.is_ok()
            && let Some(active) = self.media.as_ref().and_then(|m| m.recording.as_ref())
        {
            self.notices
                .send("recording", || serde_json::json!({ "recording": super::super::media::recording_state(active) }));
        }
        // The file starts at a keyframe: ask for one at once, and again each second
        // until one arrives (a file without one would have no video at all).
        match (&result, encode) {
            (Ok(_), Some(key)) => {
                self.core.handle(std::time::Instant::now(), Input::EncodeNeedsKeyframe(key));
                self.watch_first_keyframe(key);
            }
            (Err(_), Some(key)) => self.core.handle(std::time::Instant::now(), Input::Consumer(key, false)),
            _ => {}
        }
        result
    }

    /// Asks for the recording's keyframe again every second until its file starts;
    /// ends with the recording.
    fn watch_first_keyframe(&self, key: EncodeKey) {
        let Some(recorder) =
            self.media.as_ref().and_then(|m| m.recording.as_ref()).map(|r| Arc::downgrade(&r.recorder))
        else {
            return;
        };
        let (events, room) = (self.events.clone(), self.slot.name.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(recorder) = recorder.upgrade() else { return };
                if recorder.started() {
                    return;
                }
                tracing::warn!(room = %room, "the recording has no video keyframe after a second: asking again");
                if events.send(RoomEvent::EncodeNeedsKeyframe(key)).is_err() {
                    return;
                }
            }
        });
    }

    pub(super) fn maybe_start_auto_recording(&mut self) {
        if !self.ctx.config.recording.auto || self.auto_recording_tried {
            return;
        }
        self.auto_recording_tried = true;
        if let Err(e) = self.start_recording(Container::Webm) {
            tracing::error!(room = %self.slot.name, error = %e, "cannot start automatic recording");
        }
    }
}
